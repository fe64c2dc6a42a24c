/* blas_env.c: sets OPENBLAS_CORETYPE from the CPU's features and
 * re-executes the program once (see blas_env.h).
 *
 * Process-wide: touches the environment and execs; call from main before
 * any thread starts.  No data of its own. */
#include "gpu/host/blas_env.h"

#include "api/status.h"
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define GUARD_VAR "AE_BLAS_REEXECED"

/* Valgrind preloads its core: an exec of /proc/self/exe there would run
 * the tool binary, so leave the choice alone. */
static int under_valgrind(void) {
  const char *pre = getenv("LD_PRELOAD");
  return pre && strstr(pre, "vgpreload") != NULL;
}

/* The OpenBLAS core name for this CPU, or NULL to keep its own choice. */
static const char *core_for_cpu(void) {
#if defined(__GNUC__) && (defined(__x86_64__) || defined(__i386__))
  __builtin_cpu_init();
  if (__builtin_cpu_supports("avx512f")) return "SkylakeX";
  if (__builtin_cpu_supports("avx2")) return "Haswell";
#endif
  return NULL;
}

int ae_blas_tune_and_reexec(int argc, char **argv) {
  const char *off = getenv("AE_NO_CORETYPE");
  if (off && strcmp(off, "0") != 0 && off[0]) return AE_OK;
  if (getenv("OPENBLAS_CORETYPE") || getenv(GUARD_VAR)) return AE_OK;
  if (argc < 1 || !argv || !argv[0] || under_valgrind()) return AE_OK;
  const char *core = core_for_cpu();
  if (!core) return AE_OK;
  if (setenv(GUARD_VAR, "1", 1) != 0 ||
      setenv("OPENBLAS_CORETYPE", core, 1) != 0)
    return AE_EIO;
  execv("/proc/self/exe", argv);
  /* Still here: the exec failed; go on as we are. */
  unsetenv("OPENBLAS_CORETYPE");
  return AE_EIO;
}
