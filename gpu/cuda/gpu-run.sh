#!/bin/sh
# gpu-run.sh: the CUDA backend's checks for a session that has a GPU
# machine (build here, run there; ../shared/device/README.md).
#
#   gpu/cuda/gpu-run.sh prepare   here, no GPU needed: configures and
#       builds build-gpu/ (--with-cuda, CUDA_ARCH=sm_90), the parity test,
#       the error test and the benchmark; bundles their shared libraries
#       into .devlibs/; copies the first 64 CIFAR-10 images under
#       tests/bench/out/data/ (both ignored by git).  Prints what to carry
#       (about 56 MiB of the 64 allowed).
#   gpu/cuda/gpu-run.sh run       there: runs the three programs, writes
#       full logs to $OUT (or tests/bench/out/gpu-logs) and prints a short
#       summary last.
#
# AE_GPU_BUILD names another build folder.  Nothing here is run by make
# check; it owns no state beyond the folders named above.
set -u
top=$(cd "$(dirname "$0")/../.." && pwd)
cd "$top" || exit 1
build=${AE_GPU_BUILD:-build-gpu}
progs="tests/unit/test_cuda_errors tests/unit/test_cuda_parity"
progs="$progs tests/bench/bench_cuda"

prepare() {
  mkdir -p "$build" || return 1
  if [ ! -f "$build/Makefile" ]; then
    (cd "$build" && ../configure --enable-werror --with-cuda \
      CUDA_ARCH="${CUDA_ARCH:-sm_90}" -q) || return 1
  fi
  (cd "$build" && make -j2 && make -j2 $progs) || return 1
  bins=""
  for p in $progs; do bins="$bins $build/$p"; done
  rm -rf .devlibs
  # shellcheck disable=SC2086
  "$top/../shared/device/bundle-libs.sh" .devlibs $bins || return 1
  mkdir -p tests/bench/out/data/cifar10
  # The benchmark reads the first 64 images only (the carry limit is
  # 64 MiB, most of it the bundled libraries).
  head -c $((64 * 3072)) \
    "$top/../shared/data/cifar10/cifar10_train_4660_u8_nchw.bin" \
    >tests/bench/out/data/cifar10/cifar10_train_4660_u8_nchw.bin || return 1
  du -sh .devlibs tests/bench/out/data
  echo "carry: .devlibs tests/bench/out/data $(for p in $progs; do
    printf '%s ' "$build/$p"; done)"
  echo "command: sh gpu/cuda/gpu-run.sh run"
}

run() {
  logs=${OUT:-$top/tests/bench/out/gpu-logs}
  mkdir -p "$logs"
  LD_LIBRARY_PATH="$top/.devlibs${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
  AE_SHARED_DATA="$top/tests/bench/out/data"
  export LD_LIBRARY_PATH AE_SHARED_DATA
  if command -v nvidia-smi >/dev/null 2>&1; then
    nvidia-smi >"$logs/nvidia-smi.txt" 2>&1
  else
    echo "no nvidia-smi" >"$logs/nvidia-smi.txt"
  fi
  git rev-parse HEAD >"$logs/commit.txt" 2>/dev/null
  status=0
  for p in $progs; do
    name=$(basename "$p")
    "$build/$p" >"$logs/$name.log" 2>&1
    rc=$?
    echo "$name: exit $rc" >>"$logs/summary.txt"
    case "$name:$rc" in
    bench_cuda:0 | test_*:0) ;;
    *) status=1 ;;
    esac
  done
  echo "== nvidia-smi"; head -15 "$logs/nvidia-smi.txt"
  for p in $progs; do
    name=$(basename "$p")
    echo "== $name"; tail -20 "$logs/$name.log"
  done
  echo "== summary"; cat "$logs/summary.txt"
  return $status
}

case "${1:-}" in
prepare) prepare ;;
run) run ;;
*) echo "usage: $0 prepare|run" >&2; exit 2 ;;
esac
