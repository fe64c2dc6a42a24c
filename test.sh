#!/bin/bash
# test.sh: the README's test command.  Installs the dependencies, builds
# with warnings as errors and runs every test (unit, integration against a
# real daemon, clients, a short fuzz run) in build/; then builds again with
# ASan and UBSan in build-asan/ and runs the suite there too.  The last
# line is Check's summary over both runs.  AE_NO_SANITIZERS=1 skips the
# second run.
set -u
top=$(cd "$(dirname "$0")" && pwd)
cd "$top" || exit 1
scripts/deps.sh || exit 1

# run_suite DIR CONFIGURE-ARGS...: configure out of tree, build, make check.
run_suite() {
  dir=$1; shift
  mkdir -p "$top/$dir"
  (cd "$top/$dir" && "$top/configure" -q "$@" && make -j"$(nproc)" >make.out 2>&1) || {
    tail -n 40 "$top/$dir/make.out" 2>/dev/null; return 1; }
  rc=0
  (cd "$top/$dir" && make -j"$(nproc)" check >make-check.out 2>&1) || rc=$?
  grep -E '^(PASS|FAIL|SKIP|XFAIL|XPASS|ERROR):' "$top/$dir/make-check.out" |
    sed "s|^|[$dir] |"
  if [ "$rc" != 0 ]; then
    # shellcheck disable=SC2046
    for f in $(grep -lE '^:test-result: (FAIL|ERROR)' $(find "$top/$dir" -name '*.trs') 2>/dev/null); do
      echo "==== ${f%.trs}.log"; tail -n 60 "${f%.trs}.log"
    done
  fi
  return "$rc"
}

[ -x configure ] && [ configure -nt configure.ac ] || autoreconf -fi >/dev/null 2>&1 || exit 1
status=0
run_suite build --enable-werror || status=1
dirs=build
if [ "${AE_NO_SANITIZERS:-0}" != 1 ]; then
  run_suite build-asan --enable-werror --enable-sanitizers --without-cuda || status=1
  dirs="build build-asan"
fi
# shellcheck disable=SC2086
sh "$top/tests/summary.sh" $dirs
exit "$status"
