#!/bin/sh
# check_layers.sh: no circles between the files of server/ or of gpu/, and
# no include against the layers (api/ <- gpu/ <- server/).
#
# A unit is a file without its extension: foo.c and foo.h are one unit
# (likewise .cu and .cuh); a typed instance of foo.c (a file that includes
# it) and foo_internal.h belong to unit foo.  Two graphs of units are checked:
#   1. includes: the `#include "..."` lines of every .c/.h/.cu/.cuh file
#      under api/, gpu/ and server/;
#   2. calls (when the objects were built): which unit's object uses a
#      symbol another unit's object defines (nm), the link map of the
#      daemon (server/archevald-*.o) and the engine (gpu/**/libaeengine_a-*.o).
# A circle among the units of server/, or among those of gpu/, fails and is
# printed (tsort finds it); so does an include of server/ from gpu/ or api/,
# or of gpu/ from api/.  A callback registered at run time is not an edge:
# that is how a lower file reports to a higher one.
#
# Usage: check_layers.sh [SRCDIR [BUILDDIR]]; from `make check` the
# directories come from AE_SRCDIR and AE_BUILDDIR.  AE_LAYERS_DIRS lists the
# folders checked for circles (default "server gpu"); a folder also named in
# AE_LAYERS_WARN_DIRS has its circles printed as WARN without failing (for
# a folder whose circles are being removed).  Prints "N passed, M failed"
# last.
set -u
srcdir=${1:-${AE_SRCDIR:-$(cd "$(dirname "$0")/.." && pwd)}}
builddir=${2:-${AE_BUILDDIR:-}}
dirs=${AE_LAYERS_DIRS:-server gpu}
warn_dirs=" ${AE_LAYERS_WARN_DIRS:-} "
passed=0 failed=0 warned=0
work=$(mktemp -d "${TMPDIR:-/tmp}/aelayers.XXXXXX") || exit 99
trap 'rm -rf "$work"' EXIT

pass() { echo "PASS $1"; passed=$((passed + 1)); }
fail() { echo "FAIL $1"; failed=$((failed + 1)); }

cd "$srcdir" || exit 99

# ---- the include graph: "FROM_UNIT TO_UNIT FROM_FILE TO_FILE" ----
find api gpu server -type f \( -name '*.c' -o -name '*.h' -o -name '*.cu' \
  -o -name '*.cuh' \) | LC_ALL=C sort >"$work/files"
while read -r file; do
  sed -n 's/^[[:space:]]*#[[:space:]]*include[[:space:]]*"\([^"]*\)".*/\1/p' \
    "$file" | while read -r target; do
    dir=$(dirname "$file")
    if [ -f "$target" ]; then
      :
    elif [ -f "$dir/$target" ]; then
      target="$dir/$target"
    else
      continue # config.h, generated or system headers
    fi
    # Normalise "./" and "a/../" segments.
    target=$(echo "$target" | sed -e 's|/\./|/|g' -e 's|^\./||' \
      -e ':a' -e 's|[^/][^/]*/\.\./||' -e 'ta')
    echo "${file%.*} ${target%.*} $file $target"
  done
done <"$work/files" >"$work/includes"

# Two kinds of file are part of another unit, not units of their own: a
# source that #includes a .c file is a typed instance of it (net64.c is
# net.c compiled for float64), and FOO_internal.h is the private header of
# unit FOO.  Both are folded into that unit.
awk '
  NR == FNR { if ($3 ~ /\.c$/ && $4 ~ /\.c$/) alias[$1] = $2; next }
  {
    for (i = 1; i <= 2; i++) {
      u = $i
      if (u in alias) u = alias[u]
      if (u ~ /_internal$/) {
        base = u; sub(/_internal$/, "", base)
        if (system("[ -f " base ".c ] || [ -f " base ".h ]") == 0) u = base
      }
      $i = u
    }
    print
  }' "$work/includes" "$work/includes" >"$work/includes.units"
mv "$work/includes.units" "$work/includes"

# ---- layers ----
awk '
  $3 ~ /^api\// && $4 ~ /^(gpu|server)\// { print "  " $3 " includes " $4 }
  $3 ~ /^gpu\// && $4 ~ /^server\// { print "  " $3 " includes " $4 }
' "$work/includes" >"$work/against"
if [ -s "$work/against" ]; then
  fail "includes against the layers (api <- gpu <- server):"
  cat "$work/against"
else
  pass "layers: api/ includes neither gpu/ nor server/, gpu/ not server/"
fi

# Fails (printing the circle) when the edges "A B" of $3 have a loop; only
# warns when folder $1 is in AE_LAYERS_WARN_DIRS.
check_circles() {
  folder=$1 what=$2 edges=$3
  if [ ! -s "$edges" ]; then
    pass "$what: no edges"
    return
  fi
  if tsort "$edges" >/dev/null 2>"$work/loop"; then
    pass "$what: no circle ($(wc -l <"$edges") edges)"
  else
    case $warn_dirs in
    *" $folder "*)
      echo "WARN $what: a circle (not failing: AE_LAYERS_WARN_DIRS):"
      warned=$((warned + 1)) ;;
    *) fail "$what: a circle:" ;;
    esac
    sed -e 's/^tsort: [^:]*: //' -e 's/^tsort: /  /' "$work/loop"
  fi
}

for d in $dirs; do
  awk -v d="$d/" 'index($1, d) == 1 && index($2, d) == 1 && $1 != $2 {
    print $1, $2 }' "$work/includes" | LC_ALL=C sort -u >"$work/inc.$d"
  check_circles "$d" "includes between the files of $d/" "$work/inc.$d"
done

# ---- the call graph, from the objects ----
if [ -n "$builddir" ] && [ -d "$builddir" ] && command -v nm >/dev/null; then
  : >"$work/defs"
  : >"$work/uses"
  # An object's unit: its folder and its name less automake's prefix.
  for obj in $(cd "$builddir" && find server gpu -name '*.o' \
    \( -name 'archevald-*' -o -name 'libaeengine_a-*' \) | LC_ALL=C sort); do
    base=$(basename "$obj" .o)
    unit="$(dirname "$obj")/${base#*-}"
    # An object left from a source that is gone is not part of the build.
    [ -f "$unit.c" ] || [ -f "$unit.cu" ] || continue
    nm -P --defined-only "$builddir/$obj" 2>/dev/null |
      awk -v u="$unit" '$2 ~ /^[TDBRVWGS]$/ { print $1, u }' >>"$work/defs"
    nm -P -u "$builddir/$obj" 2>/dev/null |
      awk -v u="$unit" '{ print $1, u }' >>"$work/uses"
  done
  if [ -s "$work/defs" ]; then
    awk 'NR == FNR { def[$1] = $2; next }
         ($1 in def) && def[$1] != $2 { print $2, def[$1] }' \
      "$work/defs" "$work/uses" | LC_ALL=C sort -u >"$work/calls"
    for d in $dirs; do
      awk -v d="$d/" 'index($1, d) == 1 && index($2, d) == 1 { print }' \
        "$work/calls" >"$work/calls.$d"
      check_circles "$d" "calls between the files of $d/ (nm)" \
        "$work/calls.$d"
    done
  else
    echo "SKIP calls: no objects under $builddir"
  fi
else
  echo "SKIP calls: no build directory (or no nm)"
fi

[ "$warned" -eq 0 ] || echo "($warned warnings)"
echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
