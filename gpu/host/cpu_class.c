/* cpu_class.c: the instruction-set class the host engine runs as (see
 * cpu_class.h): the CPU's features, once, and the AE_CPU_CLASS cap.
 *
 * One state, set once under pthread_once; any thread reads it. */
#include "gpu/host/cpu_class.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#define CAP_VAR "AE_CPU_CLASS"
#define CAP_AVX2 "avx2" /* the one value known */

static ae_cpu_class detected_class;

static void detect_once(void) {
  ae_cpu_class c = AE_CPU_CLASS_OTHER;
#if defined(__GNUC__) && defined(__x86_64__)
  __builtin_cpu_init();
  int avx2_fma =
      __builtin_cpu_supports("avx2") != 0 && __builtin_cpu_supports("fma") != 0;
  if (__builtin_cpu_supports("avx512f") && avx2_fma)
    c = AE_CPU_CLASS_AVX512;
  else if (avx2_fma)
    c = AE_CPU_CLASS_AVX2;
#endif
  const char *cap = getenv(CAP_VAR);
  if (cap && strcmp(cap, CAP_AVX2) == 0 && c > AE_CPU_CLASS_AVX2)
    c = AE_CPU_CLASS_AVX2;
  detected_class = c;
}

const char *ae_cpu_class_unknown_cap(void) {
  const char *cap = getenv(CAP_VAR);
  return cap && strcmp(cap, CAP_AVX2) != 0 ? cap : NULL;
}

ae_cpu_class ae_cpu_class_get(void) {
  static pthread_once_t once = PTHREAD_ONCE_INIT;
  pthread_once(&once, detect_once);
  return detected_class;
}

const char *ae_cpu_class_name(ae_cpu_class c) {
  switch (c) {
  case AE_CPU_CLASS_AVX512:
    return "avx512";
  case AE_CPU_CLASS_AVX2:
    return "avx2";
  case AE_CPU_CLASS_OTHER:
    break;
  }
  return "other";
}
