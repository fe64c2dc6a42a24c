#!/bin/sh
# ci-fuzz.sh: the short fuzz run of `make check`.
#
# Builds the libFuzzer harnesses (make fuzz-build), replays every file of
# tests/fuzz/regressions/NAME/ through harness NAME once, then fuzzes each
# harness for FUZZ_CI_SECONDS (15) on a copy of its seed corpus.  Exits 77
# (skipped) when clang or libFuzzer is missing.  Prints `N passed, M failed`
# last.  Runs from the build directory (as `make check` does).
set -u
srcdir=${AE_SRCDIR:-$(cd "$(dirname "$0")/../.." && pwd)}
builddir=${AE_BUILDDIR:-$(pwd)}
seconds=${FUZZ_CI_SECONDS:-15}
names=${FUZZ_NAMES:-fuzz_request fuzz_graph fuzz_idx fuzz_dataset fuzz_router}
clang=${FUZZ_CLANG:-}
passed=0 failed=0

if [ -z "$clang" ] || ! command -v "$clang" >/dev/null 2>&1; then
  echo "clang not found: skipped"
  exit 77
fi
probe=$(mktemp -d "${TMPDIR:-/tmp}/aefuzzprobe.XXXXXX") || exit 99
cat >"$probe/p.c" <<'PROBE'
int LLVMFuzzerTestOneInput(const char *d, unsigned long n);
int LLVMFuzzerTestOneInput(const char *d, unsigned long n) {
  (void)d;
  (void)n;
  return 0;
}
PROBE
if ! "$clang" -fsanitize=fuzzer,address,undefined -o "$probe/p" "$probe/p.c" \
  >/dev/null 2>&1; then
  rm -rf "$probe"
  echo "libFuzzer (clang -fsanitize=fuzzer) not available: skipped"
  exit 77
fi
rm -rf "$probe"

cd "$builddir" || exit 99
for name in $names; do
  blog=tests/fuzz/$name.build.log
  if ! ${FUZZ_MAKE:-make} -s "tests/fuzz/$name" >"$blog" 2>&1 ||
    [ ! -x "tests/fuzz/$name" ]; then
    if grep -q 'not built in a CUDA build' "$blog"; then
      echo "SKIP $name: $(cat "$blog")"
      continue
    fi
    echo "FAIL $name: build failed"
    cat "$blog"
    failed=$((failed + 1))
    continue
  fi
  # The regressions: each file once.
  regs=$srcdir/tests/fuzz/regressions/$name
  if [ -d "$regs" ] && [ -n "$(ls "$regs")" ]; then
    if "tests/fuzz/$name" -runs=0 "$regs"/* >"tests/fuzz/$name.reg.log" 2>&1
    then
      echo "PASS $name: $(ls "$regs" | wc -l) regression inputs"
      passed=$((passed + 1))
    else
      echo "FAIL $name: a regression input fails again"
      tail -30 "tests/fuzz/$name.reg.log"
      failed=$((failed + 1))
    fi
  fi
  # The short run.
  if out=$(sh "$srcdir/tests/fuzz/run.sh" "$srcdir" "$builddir" "$seconds" \
    "$name"); then
    echo "PASS $out"
    passed=$((passed + 1))
  else
    echo "FAIL $out"
    tail -40 "tests/fuzz/$name.log"
    failed=$((failed + 1))
  fi
done
echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
