#!/bin/sh
# check_format.sh: fails when a C or CUDA source of the tree is not as the
# tree's own .clang-format lays it out.  Run by `make check`; skips (77)
# outside a git checkout or without clang-format.  To fix: run
# `clang-format -i` on the files it names.
top=${AE_SRCDIR:-$(cd "$(dirname "$0")/.." && pwd)}
cd "$top" || exit 99
command -v clang-format >/dev/null 2>&1 || { echo "SKIP: no clang-format"; exit 77; }
git rev-parse --is-inside-work-tree >/dev/null 2>&1 || {
  echo "SKIP: not a git checkout"; exit 77; }
files=$(git ls-files '*.c' '*.h' '*.cu' '*.cuh')
bad=0
for f in $files; do
  [ -f "$f" ] || continue
  if ! clang-format --dry-run -Werror "$f" >/dev/null 2>&1; then
    echo "not formatted: $f"
    bad=$((bad + 1))
  fi
done
n=$(echo "$files" | wc -w)
if [ "$bad" -ne 0 ]; then
  echo "$bad of $n files differ from .clang-format (clang-format -i FILE)"
  echo "0 passed, 1 failed"
  exit 1
fi
echo "$n files formatted as .clang-format says"
echo "1 passed, 0 failed"
