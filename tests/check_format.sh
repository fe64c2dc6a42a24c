#!/bin/sh
# check_format.sh: the C sources stay formatted by the tree's .clang-format.
#
# Checks every .c, .h, .cu and .cuh file under the folders of AE_FORMAT_DIRS (default:
# the whole tree's api gpu server clients tests), less the paths matched by
# the shell patterns of AE_FORMAT_SKIP, with `clang-format --dry-run
# -Werror`, and prints each file that would change.  Exits 77 (skipped)
# without clang-format.  Prints "N passed, M failed" last.
set -u
srcdir=${1:-${AE_SRCDIR:-$(cd "$(dirname "$0")/.." && pwd)}}
dirs=${AE_FORMAT_DIRS:-api gpu server clients tests}
skip=${AE_FORMAT_SKIP:-}
format=${CLANG_FORMAT:-clang-format}
if ! command -v "$format" >/dev/null 2>&1; then
  echo "clang-format not found: skipped"
  exit 77
fi
cd "$srcdir" || exit 99
passed=0 failed=0
for f in $(find $dirs -type f \( -name '*.c' -o -name '*.h' -o -name '*.cu' -o -name '*.cuh' \) |
  LC_ALL=C sort); do
  skipped=0
  for pattern in $skip; do
    # shellcheck disable=SC2254
    case $f in $pattern) skipped=1 ;; esac
  done
  [ "$skipped" -eq 1 ] && continue
  if "$format" --dry-run -Werror "$f" >/dev/null 2>&1; then
    passed=$((passed + 1))
  else
    echo "FAIL $f: not formatted (clang-format -i $f)"
    failed=$((failed + 1))
  fi
done
echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
