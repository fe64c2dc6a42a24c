/* blas_env.c: sets OPENBLAS_CORETYPE from the CPU's features and
 * OPENBLAS_THREAD_TIMEOUT, and re-executes the program once (see
 * blas_env.h).
 *
 * Process-wide: touches the environment and execs; call from main before
 * any thread starts.  No data of its own. */
#include "gpu/host/blas_env.h"

#include "api/status.h"
#include "gpu/host/cpu_class.h"
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define GUARD_VAR "AE_BLAS_REEXECED"
/* OpenBLAS's idle threads spin 2^n cycles (n = 28 by default, about a
 * tenth of a second) after each threaded call; 4 is its least. */
#define THREAD_TIMEOUT "4"

/* Valgrind preloads its core: an exec of /proc/self/exe there would run
 * the tool binary, so leave the choice alone. */
static int under_valgrind(void) {
  const char *pre = getenv("LD_PRELOAD");
  return pre && strstr(pre, "vgpreload") != NULL;
}

/* The OpenBLAS core name for this CPU, or NULL to keep its own choice. */
static const char *core_for_cpu(void) {
  switch (ae_cpu_class_get()) {
  case AE_CPU_CLASS_AVX512:
    return "SkylakeX";
  case AE_CPU_CLASS_AVX2:
    return "Haswell";
  case AE_CPU_CLASS_OTHER:
    break;
  }
  return NULL;
}

int ae_blas_tune_and_reexec(int argc, char **argv) {
  if (getenv(GUARD_VAR)) return AE_OK;
  if (argc < 1 || !argv || !argv[0] || under_valgrind()) return AE_OK;
  const char *off = getenv("AE_NO_CORETYPE");
  int core_off = off && strcmp(off, "0") != 0 && off[0];
  const char *core =
      core_off || getenv("OPENBLAS_CORETYPE") ? NULL : core_for_cpu();
  int set_timeout = getenv("OPENBLAS_THREAD_TIMEOUT") == NULL;
  if (!core && !set_timeout) return AE_OK;
  if (setenv(GUARD_VAR, "1", 1) != 0 ||
      (core && setenv("OPENBLAS_CORETYPE", core, 1) != 0) ||
      (set_timeout &&
       setenv("OPENBLAS_THREAD_TIMEOUT", THREAD_TIMEOUT, 1) != 0))
    return AE_EIO;
  execv("/proc/self/exe", argv);
  /* Still here: the exec failed; go on as we are. */
  if (core) unsetenv("OPENBLAS_CORETYPE");
  if (set_timeout) unsetenv("OPENBLAS_THREAD_TIMEOUT");
  return AE_EIO;
}
