#!/bin/sh
# test.sh: the README's test command.  Installs the dependencies, builds
# with warnings as errors, runs every test (unit, integration against a
# real daemon, clients) and ends with Check's summary line over all of them.
set -u
top=$(cd "$(dirname "$0")" && pwd)
cd "$top"
scripts/deps.sh || exit 1
AE_RECONFIGURE=1 scripts/build.sh --enable-werror || exit 1
cd build
status=0
make -j"$(nproc)" check >make-check.out 2>&1 || status=$?
grep -E '^(PASS|FAIL|SKIP|XFAIL|XPASS|ERROR):' make-check.out
if [ "$status" != 0 ]; then
  for f in $(grep -lE '^:test-result: (FAIL|ERROR)' $(find . -name '*.trs') 2>/dev/null); do
    echo "==== ${f%.trs}.log"; tail -n 60 "${f%.trs}.log"
  done
fi
sh "$top/tests/summary.sh" .
exit "$status"
