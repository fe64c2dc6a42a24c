#!/bin/sh
# summary.sh BUILDDIR...: adds up every test's result after `make check` and
# prints one line in Check's format, the last line of the test output.
# Check programs contribute their own "N%: Checks: ..." counts; other
# tests (Python, shell) their "N passed, M failed" line, or one check
# from their automake result.  Skipped tests count nothing.  A test that
# automake judged FAIL or ERROR always counts at least one failure, even if
# its log's own counts look clean (a crash after the summary, say).
[ $# -gt 0 ] || set -- .
find "$@" -name '*.trs' | sort | while read -r trs; do
  log=${trs%.trs}.log
  res=$(sed -n 's/^:test-result: //p' "$trs" | head -n 1)
  c=0 f=0 e=0
  line=$(grep -E '^[0-9]+%: Checks: [0-9]+, Failures: [0-9]+, Errors: [0-9]+' "$log" 2>/dev/null | tail -n 1)
  if [ -n "$line" ]; then
    # shellcheck disable=SC2046
    set -- $(echo "$line" | sed -E 's/^[0-9]+%: Checks: ([0-9]+), Failures: ([0-9]+), Errors: ([0-9]+).*/\1 \2 \3/')
    c=$1 f=$2 e=$3
  else
    line=$(grep -E '^[0-9]+ passed, [0-9]+ failed' "$log" 2>/dev/null | tail -n 1)
    if [ -n "$line" ]; then
      # shellcheck disable=SC2046
      set -- $(echo "$line" | sed -E 's/^([0-9]+) passed, ([0-9]+) failed.*/\1 \2/')
      c=$(($1 + $2)) f=$2
    elif [ "$res" != SKIP ]; then
      c=1
    fi
  fi
  case "$res" in
    FAIL|XPASS) [ $((f + e)) -gt 0 ] || { f=1; [ "$c" -gt 0 ] || c=1; } ;;
    ERROR) [ $((f + e)) -gt 0 ] || { e=1; [ "$c" -gt 0 ] || c=1; } ;;
  esac
  echo "$c $f $e"
done | awk '{c += $1; f += $2; e += $3}
  END { if (c == 0) { print "0%: Checks: 0, Failures: 0, Errors: 0"; exit }
        printf "%d%%: Checks: %d, Failures: %d, Errors: %d\n", int(100 * (c - f - e) / c), c, f, e }'
