#!/bin/sh
# deps.sh: installs everything archeval builds, tests and runs with, from
# Debian's packages.  Safe to run again; uses sudo when not root.
set -eu
SUDO=""
if [ "$(id -u)" != 0 ]; then SUDO="sudo"; fi
PKGS="build-essential autoconf automake libtool pkg-config
  libmicrohttpd-dev libjansson-dev libuv1-dev check
  libopenblas-dev liblapacke-dev zlib1g-dev libcurl4-openssl-dev
  libsqlite3-dev curl python3 python3-jsonschema valgrind wrk dataset-fashion-mnist
  systemd yamllint shellcheck clang clang-format libpq-dev postgresql
  protobuf-c-compiler libprotobuf-c-dev libonnx-dev libonnx-testdata
  python3-numpy python3-torch python3-torchvision chromium"
missing=""
for p in $PKGS; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing="$missing $p"
done
if [ -n "$missing" ]; then
  echo "deps.sh: installing:$missing"
  $SUDO env DEBIAN_FRONTEND=noninteractive apt-get update -qq
  # shellcheck disable=SC2086
  $SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $missing
fi
