#!/bin/sh
# run.sh: runs libFuzzer harnesses for a while each (the `make fuzz` rule).
#
# Usage: run.sh SRCDIR BUILDDIR SECONDS NAME...
# Each harness tests/fuzz/NAME (built by `make fuzz-build`) runs for
# SECONDS on a fresh copy of tests/fuzz/corpus/NAME/ in
# BUILDDIR/tests/fuzz/work/NAME; crashes go to
# BUILDDIR/tests/fuzz/artifacts/NAME/.  Prints the executions of each and
# any finding; exits non-zero when a harness found something.  FUZZ_JOBS
# (default 1) runs that many harnesses at once.
set -u
srcdir=$1 builddir=$2 seconds=$3
shift 3
jobs=${FUZZ_JOBS:-1}
status=0

run_one() {
  name=$1
  bin=$builddir/tests/fuzz/$name
  work=$builddir/tests/fuzz/work/$name
  art=$builddir/tests/fuzz/artifacts/$name
  log=$builddir/tests/fuzz/$name.log
  if [ ! -x "$bin" ]; then
    echo "$name: not built"
    return 1
  fi
  rm -rf "$work"
  mkdir -p "$work" "$art"
  if [ -d "$srcdir/tests/fuzz/corpus/$name" ]; then
    cp "$srcdir/tests/fuzz/corpus/$name"/* "$work"/ 2>/dev/null
  fi
  "$bin" -max_total_time="$seconds" -timeout=25 -rss_limit_mb=2560 \
    -max_len=8192 -print_final_stats=1 -artifact_prefix="$art/" \
    "$work" >"$log" 2>&1
  rc=$?
  execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -1)
  cov=$(grep -o 'cov: [0-9]*' "$log" | tail -1)
  corpus=$(ls "$work" | wc -l)
  if [ $rc -eq 0 ]; then
    echo "$name: ${execs:-?} executions in ${seconds}s, $cov," \
      "corpus $corpus files, no finding"
  else
    echo "$name: FINDING (exit $rc) after ${execs:-?} executions; log $log"
    grep -E '==ERROR|^SUMMARY|runtime error|Test unit written' "$log" |
      head -20
  fi
  return $rc
}

if [ "$jobs" -le 1 ]; then
  for name in "$@"; do
    run_one "$name" || status=1
  done
else
  # Runs in batches of $jobs, each writing its summary to a file.
  set -- "$@"
  while [ $# -gt 0 ]; do
    pids= names=
    i=0
    while [ $i -lt "$jobs" ] && [ $# -gt 0 ]; do
      run_one "$1" >"$builddir/tests/fuzz/$1.summary" 2>&1 &
      pids="$pids $!" names="$names $1"
      shift
      i=$((i + 1))
    done
    for p in $pids; do wait "$p" || status=1; done
    for n in $names; do cat "$builddir/tests/fuzz/$n.summary"; done
  done
fi
exit $status
