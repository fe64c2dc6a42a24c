#!/bin/sh
# summary.sh BUILDDIR: adds up every test's result after `make check` and
# prints one line in Check's format, the last line of the test output.
# Check programs contribute their own "N%: Checks: ..." counts; other
# tests (Python, shell) their "N passed, M failed" line, or one check
# from their automake result.  Skipped tests count nothing.
dir=${1:-.}
find "$dir" -name '*.trs' | sort | while read -r trs; do
  log=${trs%.trs}.log
  res=$(sed -n 's/^:test-result: //p' "$trs" | head -n 1)
  line=$(grep -E '^[0-9]+%: Checks: [0-9]+, Failures: [0-9]+, Errors: [0-9]+' "$log" 2>/dev/null | tail -n 1)
  if [ -n "$line" ]; then
    echo "$line" | sed -E 's/^[0-9]+%: Checks: ([0-9]+), Failures: ([0-9]+), Errors: ([0-9]+).*/\1 \2 \3/'
    continue
  fi
  line=$(grep -E '^[0-9]+ passed, [0-9]+ failed' "$log" 2>/dev/null | tail -n 1)
  if [ -n "$line" ]; then
    p=$(echo "$line" | sed -E 's/^([0-9]+) passed, ([0-9]+) failed.*/\1/')
    f=$(echo "$line" | sed -E 's/^([0-9]+) passed, ([0-9]+) failed.*/\2/')
    echo "$((p + f)) $f 0"
    continue
  fi
  case "$res" in
    PASS|XFAIL) echo "1 0 0" ;;
    FAIL|XPASS) echo "1 1 0" ;;
    ERROR) echo "1 0 1" ;;
  esac
done | awk '{c += $1; f += $2; e += $3}
  END { if (c == 0) { print "0%: Checks: 0, Failures: 0, Errors: 0"; exit }
        printf "%d%%: Checks: %d, Failures: %d, Errors: %d\n", int(100 * (c - f - e) / c), c, f, e }'
