#!/bin/sh
# test_golden_avx2.sh: the golden corpus's avx2 set on a CPU with AVX-512F.
# test_golden.py checks the class the CPU runs as (expected/ there); here
# the daemon runs as the avx2 class (AE_CPU_CLASS=avx2: its AVX-512 paths
# off, OpenBLAS's Haswell kernels; gpu/host/cpu_class.h) and the same test
# holds it to expected-avx2/, so one AVX-512 machine checks both sets.
# Skips (77) on a CPU without AVX-512F, where test_golden.py already checks
# the avx2 set, or without AVX2 and FMA.
set -eu
srcdir=${AE_SRCDIR:-$(cd "$(dirname "$0")/../.." && pwd)}
flags=$(grep -m1 '^flags' /proc/cpuinfo 2>/dev/null || true)
for f in avx512f avx2 fma; do
  case " $flags " in
  *" $f "*) ;;
  *)
    echo "no $f on this CPU: skipped (test_golden.py checks its own class)"
    exit 77
    ;;
  esac
done
AE_CPU_CLASS=avx2
export AE_CPU_CLASS
unset AE_GOLDEN_CPU_CLASS
exec "${PYTHON3:-python3}" "$srcdir/tests/integration/test_golden.py"
