#!/bin/sh
# pg_cluster.sh: a throwaway PostgreSQL cluster for the store's tests
# (issue 15).  No test needs a server of its own: this one lives in a
# temporary dir, listens on a Unix socket in that dir only (no TCP port),
# runs as an unprivileged user when called as root (initdb refuses root;
# CI runs as root), and is stopped and removed at the end, also when the
# command fails, times out or is interrupted.
#
#   pg_cluster.sh run CMD [ARG...]
#       start a cluster, run CMD with the variables below in its
#       environment (killed after AE_PG_TIMEOUT seconds, default 900),
#       then stop and remove the cluster; exits with CMD's status.
#   pg_cluster.sh start        start one; print the variables (for eval)
#   pg_cluster.sh stop DIR     stop and remove the cluster in DIR
#   pg_cluster.sh server-stop DIR | server-start DIR
#       stop (pg_ctl stop -m fast) or start again the server only (the
#       reconnect test does both mid-test).
#
# Variables: AE_TEST_PG_DIR (the cluster's dir), AE_TEST_PG_DSN (a libpq
# conninfo for the database "archeval", role "archeval", trust auth),
# AE_TEST_PG_URL (the same as a postgresql:// URL), AE_TEST_PG_STOP and
# AE_TEST_PG_START (shell commands running server-stop / server-start).
# Settings: AE_PG_BINDIR (where initdb is; default: PATH, then the newest
# /usr/lib/postgresql/*/bin), AE_PG_USER (the server's user when run as
# root; default nobody), AE_PG_TMP (parent of the dir; default /tmp: a
# socket path must stay under 108 bytes), AE_PG_TCP_PORT (also listen on
# 127.0.0.1:PORT, and give DSNs over TCP).  Exits 77 (skip) when no initdb.
#
# The server runs with fsync=off: the tests check the store's logic, and
# a thrown-away cluster needs no durability (it makes CREATE DATABASE and
# commits much cheaper on CI's disks); AE_PG_DURABLE=1 keeps PostgreSQL's
# defaults (fsync on), for latency measurements.
set -eu

self=$(cd "$(dirname "$0")" && pwd)/$(basename "$0")
port=${AE_PG_TCP_PORT:-5432}

now() { date +%s.%N; }
elapsed() { awk -v a="$1" -v b="$(now)" 'BEGIN { printf "%.2f", b - a }'; }
say() { echo "pg_cluster: $*" >&2; }

find_bindir() {
  if [ -n "${AE_PG_BINDIR:-}" ]; then
    [ -x "$AE_PG_BINDIR/initdb" ] && { echo "$AE_PG_BINDIR"; return 0; }
    return 1
  fi
  if command -v initdb >/dev/null 2>&1 && command -v pg_ctl >/dev/null 2>&1
  then
    # Resolve links (/usr/local/bin/initdb -> the version's bin dir).
    d=$(dirname "$(readlink -f "$(command -v initdb)")")
    if [ -x "$d/pg_ctl" ] && [ -x "$d/createdb" ]; then
      echo "$d"
      return 0
    fi
  fi
  # Newest version first (sort -V: 15 after 9.6).
  # shellcheck disable=SC2012
  for d in $(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V -r); do
    if [ -x "$d/initdb" ] && [ -x "$d/pg_ctl" ] && [ -x "$d/createdb" ]; then
      echo "$d"
      return 0
    fi
  done
  return 1
}

# Runs a command as the server's user: as is, or through runuser as root.
as_server() {
  if [ "$(id -u)" = 0 ]; then
    runuser -u "${AE_PG_USER:-nobody}" -- "$@"
  else
    "$@"
  fi
}

server_start() {
  dir=$1
  bindir=$(cat "$dir/bindir")
  (cd "$dir" && as_server "$bindir/pg_ctl" -D "$dir/data" \
    -l "$dir/server.log" -w -t 60 -o "$(cat "$dir/options")" start \
    >"$dir/pg_ctl.log" 2>&1) || {
    say "pg_ctl start failed:"
    cat "$dir/pg_ctl.log" "$dir/server.log" >&2 2>/dev/null || true
    return 1
  }
}

server_stop() {
  dir=$1
  bindir=$(cat "$dir/bindir")
  [ -f "$dir/data/postmaster.pid" ] || return 0
  (cd "$dir" && as_server "$bindir/pg_ctl" -D "$dir/data" -m fast -w \
    -t 30 stop >>"$dir/pg_ctl.log" 2>&1) ||
    (cd "$dir" && as_server "$bindir/pg_ctl" -D "$dir/data" \
      -m immediate -w -t 30 stop >>"$dir/pg_ctl.log" 2>&1) || return 1
}

# Stops the server and removes DIR (only one of ours: ae_pg.*).
cluster_remove() {
  dir=$1
  case $(basename "$dir") in ae_pg.*) ;; *) return 1 ;; esac
  [ -d "$dir" ] || return 0
  t0=$(now)
  server_stop "$dir" || say "could not stop the server in $dir"
  rm -rf "$dir"
  say "stopped and removed in $(elapsed "$t0") s"
}

# Creates and starts a cluster; sets $cluster_dir.
cluster_start() {
  bindir=$(find_bindir) || {
    say "no PostgreSQL server binaries (initdb): skipped" \
      "(apt-get install postgresql)"
    exit 77
  }
  t0=$(now)
  cluster_dir=$(mktemp -d "${AE_PG_TMP:-/tmp}/ae_pg.XXXXXX")
  dir=$cluster_dir
  if [ "$(id -u)" = 0 ]; then
    chown "${AE_PG_USER:-nobody}" "$dir"
    chmod 0711 "$dir"
  fi
  echo "$bindir" >"$dir/bindir"
  durability="-c fsync=off -c full_page_writes=off -c synchronous_commit=off"
  [ "${AE_PG_DURABLE:-0}" = 0 ] || durability=""
  listen=""
  [ -z "${AE_PG_TCP_PORT:-}" ] || listen=127.0.0.1
  echo "-c listen_addresses='$listen' -c unix_socket_directories='$dir'" \
    "-c port=$port $durability -c max_connections=40" \
    "-c shared_buffers=16MB" >"$dir/options"
  (cd "$dir" && as_server "$bindir/initdb" -D "$dir/data" -U archeval \
    -A trust -E UTF8 --locale=C -N >"$dir/initdb.log" 2>&1) || {
    say "initdb failed:"
    cat "$dir/initdb.log" >&2
    return 1
  }
  t_initdb=$(elapsed "$t0")
  server_start "$dir" || return 1
  t_start=$(elapsed "$t0")
  "$bindir/createdb" -h "$dir" -p "$port" -U archeval archeval || return 1
  say "ready in $(elapsed "$t0") s (initdb done at $t_initdb s, server" \
    "up at $t_start s; $bindir${durability:+; fsync off})"
}

cluster_exports() {
  dir=$1
  AE_TEST_PG_DIR=$dir
  AE_TEST_PG_DSN="host=$dir port=$port user=archeval dbname=archeval"
  AE_TEST_PG_URL="postgresql://archeval@/archeval?host=$dir&port=$port"
  if [ -n "${AE_PG_TCP_PORT:-}" ]; then
    AE_TEST_PG_DSN="host=127.0.0.1 port=$port user=archeval dbname=archeval"
    AE_TEST_PG_URL="postgresql://archeval@127.0.0.1:$port/archeval"
  fi
  # Commands for system(): the quotes are meant for the shell that runs
  # them.
  # shellcheck disable=SC2089,SC2090
  AE_TEST_PG_STOP="'$self' server-stop '$dir'"
  # shellcheck disable=SC2089,SC2090
  AE_TEST_PG_START="'$self' server-start '$dir'"
  # shellcheck disable=SC2090
  export AE_TEST_PG_DIR AE_TEST_PG_DSN AE_TEST_PG_URL AE_TEST_PG_STOP \
    AE_TEST_PG_START
}

usage() {
  sed -n '2,/^set -eu/p' "$self" | sed 's/^# \{0,1\}//; /^set -eu/d' >&2
  exit 2
}

[ $# -ge 1 ] || usage
command=$1
shift
case $command in
run)
  [ $# -ge 1 ] || usage
  cluster_dir=""
  trap '[ -z "$cluster_dir" ] || cluster_remove "$cluster_dir"' EXIT
  trap 'exit 129' HUP
  trap 'exit 130' INT
  trap 'exit 143' TERM
  cluster_start
  cluster_exports "$cluster_dir"
  say "DSN: $AE_TEST_PG_DSN"
  # In the background, so that a signal to this script is handled at
  # once (the trap ends the command, then EXIT removes the cluster).
  timeout -k 10 "${AE_PG_TIMEOUT:-900}" "$@" &
  child=$!
  trap 'kill -TERM "$child" 2>/dev/null; exit 129' HUP
  trap 'kill -TERM "$child" 2>/dev/null; exit 130' INT
  trap 'kill -TERM "$child" 2>/dev/null; exit 143' TERM
  status=0
  wait "$child" || status=$?
  [ "$status" != 124 ] || say "the command timed out"
  exit "$status"
  ;;
start)
  cluster_dir=""
  trap '[ -z "$cluster_dir" ] || cluster_remove "$cluster_dir"' EXIT
  cluster_start
  cluster_exports "$cluster_dir"
  trap - EXIT
  for v in AE_TEST_PG_DIR AE_TEST_PG_DSN AE_TEST_PG_URL; do
    eval "echo \"$v='\$$v'\""
  done
  echo "AE_TEST_PG_STOP=\"$AE_TEST_PG_STOP\""
  echo "AE_TEST_PG_START=\"$AE_TEST_PG_START\""
  ;;
stop)
  [ $# -eq 1 ] || usage
  cluster_remove "$1"
  ;;
server-stop)
  [ $# -eq 1 ] || usage
  server_stop "$1"
  ;;
server-start)
  [ $# -eq 1 ] || usage
  server_start "$1"
  ;;
*) usage ;;
esac
