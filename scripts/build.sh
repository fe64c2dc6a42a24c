#!/bin/bash
# build.sh: configures and builds archeval in ./build (out of tree).
# Extra arguments go to configure.
set -eu
top=$(cd "$(dirname "$0")/.." && pwd)
cd "$top"
[ -x configure ] && [ configure -nt configure.ac ] || autoreconf -fi >/dev/null
mkdir -p build
cd build
[ -f Makefile ] && [ "${AE_RECONFIGURE:-0}" = 0 ] || ../configure "$@"
make -j"$(nproc)"
