#!/usr/bin/env bash
# Local services for this checkout: Redis (the stream, AOF on) and a MongoDB-wire
# server (mongod when on PATH, else FerretDB on SQLite), the database held to
# DB_IOPS read and write I/O operations per second by a cgroup v1 blkio group.
#
#   scripts/services.sh [up]   ensure both run; print REDIS_URL=… MONGODB_URL=… lines
#   scripts/services.sh up redis   only Redis (e.g. a second one with REDIS_APPENDFSYNC=always)
#   scripts/services.sh stop   stop what this checkout started
#   scripts/services.sh env    print the lines without starting anything
#
# REDIS_URL / MONGODB_URL already set: that service is used as given, nothing started.
# Idempotent: a service already running for this checkout is reused.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
DATA=${SPILLWAY_DATA_DIR:-$ROOT/.data}
REDIS_PORT=${SPILLWAY_REDIS_PORT:-6390}
DB_PORT=${SPILLWAY_DB_PORT:-27030}
DB_DEBUG_PORT=${SPILLWAY_DB_DEBUG_PORT:-27031}
DB_IOPS=${DB_IOPS:-100}
REDIS_MAXMEMORY=${REDIS_MAXMEMORY:-4gb}
# everysec: a killed Redis loses nothing it acknowledged, a machine crash up to about
# a second of it; always: nothing even then, at a cost in latency (npm run bench:ingest).
REDIS_APPENDFSYNC=${REDIS_APPENDFSYNC:-everysec}
# The AOF is rewritten once it has grown this much and doubled (Redis's default: 64mb).
# The stream is written and deleted many times over in a spike; a rewrite during one
# takes a core for seconds (on 2 cores, Redis then answered ingest after more than
# REDIS_TIMEOUT_MS), so not before the AOF holds maxmemory's worth.
REDIS_AOF_REWRITE_MIN_SIZE=${REDIS_AOF_REWRITE_MIN_SIZE:-$REDIS_MAXMEMORY}
# Built tools are shared by every data dir of this checkout (one FerretDB build).
BIN=${SPILLWAY_BIN_DIR:-$ROOT/.data/bin}
FERRETDB_VERSION=v1.24.2
CGROUP_NAME=${SPILLWAY_DB_CGROUP:-spillway-db-$DB_PORT}
CGROUP=/sys/fs/cgroup/blkio/$CGROUP_NAME

log() { printf 'services: %s\n' "$*" >&2; }
warn() { printf '\nservices: WARNING: %s\n\n' "$*" >&2; }
die() { printf 'services: error: %s\n' "$*" >&2; exit 1; }

port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

wait_port() { # port seconds what
  local i
  for ((i = 0; i < $2 * 10; i++)); do
    port_open "$1" && return 0
    sleep 0.1
  done
  die "$3 did not listen on 127.0.0.1:$1 within $2 s (log: $DATA/$3.log)"
}

alive() { [ -f "$1" ] && kill -0 "$(cat "$1")" 2>/dev/null; }

apt_install() {
  log "installing Debian package(s) $* (apt-get)"
  apt-get update -qq >&2
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@" >&2
}

# --- Redis -------------------------------------------------------------------

# Spillway's scripts need Redis 7 (script flags, PEXPIRE NX, XINFO lag); an older
# one fails them part-way. Debian 12 and Ubuntu 24.04 ship 7; Ubuntu 22.04 ships 6.0.
require_redis_7() {
  local found major
  found=$(redis-server --version 2>/dev/null | sed -n 's/.* v=\([0-9][0-9.]*\).*/\1/p')
  major=${found%%.*}
  if ! [[ $major =~ ^[0-9]+$ ]] || ((major < 7)); then
    die "Redis 7 or newer is needed, found ${found:-an unknown version} ($(command -v redis-server)). Install Redis 7 (Debian 12 or Ubuntu 24.04: apt-get install redis-server; elsewhere Redis's own packages, https://packages.redis.io), or set REDIS_URL to a Redis 7 server"
  fi
}

ensure_redis() {
  local pidfile=$DATA/redis/redis.pid
  mkdir -p "$DATA/redis"
  if alive "$pidfile" && port_open "$REDIS_PORT"; then
    log "redis already running on $REDIS_PORT (pid $(cat "$pidfile"))"
    return
  fi
  command -v redis-server >/dev/null || apt_install redis-server
  require_redis_7
  port_open "$REDIS_PORT" && die "port $REDIS_PORT is taken by another process; set SPILLWAY_REDIS_PORT"
  case $REDIS_APPENDFSYNC in everysec | always) ;; *) die "REDIS_APPENDFSYNC must be everysec or always" ;; esac
  log "starting redis on 127.0.0.1:$REDIS_PORT (AOF $REDIS_APPENDFSYNC, rewritten from $REDIS_AOF_REWRITE_MIN_SIZE, noeviction, maxmemory $REDIS_MAXMEMORY)"
  redis-server --port "$REDIS_PORT" --bind 127.0.0.1 --dir "$DATA/redis" \
    --appendonly yes --appendfsync "$REDIS_APPENDFSYNC" --save '' \
    --maxmemory "$REDIS_MAXMEMORY" --maxmemory-policy noeviction \
    --auto-aof-rewrite-min-size "$REDIS_AOF_REWRITE_MIN_SIZE" \
    --maxclients 20000 --tcp-backlog 4096 \
    --daemonize yes --pidfile "$pidfile" --logfile "$DATA/redis.log" >&2 9>&-
  wait_port "$REDIS_PORT" 20 redis
}

stop_redis() {
  local pidfile=$DATA/redis/redis.pid
  if alive "$pidfile"; then
    log "stopping redis (pid $(cat "$pidfile"))"
    redis-cli -p "$REDIS_PORT" shutdown >/dev/null 2>&1 || kill "$(cat "$pidfile")" 2>/dev/null || true
    for _ in $(seq 50); do alive "$pidfile" || break; sleep 0.1; done
  fi
}

# --- MongoDB-wire server ------------------------------------------------------

ferretdb_bin() {
  local bin=$BIN/ferretdb-$FERRETDB_VERSION
  if [ ! -x "$bin" ]; then
    command -v go >/dev/null || die "Go is needed to install FerretDB $FERRETDB_VERSION (or put mongod on PATH)"
    log "installing FerretDB $FERRETDB_VERSION from the Go module proxy (one-off, about a minute)"
    # `go install …/cmd/ferretdb@$FERRETDB_VERSION` builds a binary that panics at start:
    # the module lacks build/version/version.txt, which its release tooling writes. So the
    # same module is downloaded, that one file added, and the same command built.
    local mod src
    mod=$(cd /tmp && GOFLAGS=-mod=mod go mod download -json "github.com/FerretDB/FerretDB@$FERRETDB_VERSION" |
      sed -n 's/^[[:space:]]*"Dir": "\(.*\)",$/\1/p')
    [ -n "$mod" ] || die "go mod download of FerretDB $FERRETDB_VERSION failed"
    src=$DATA/build/ferretdb-$FERRETDB_VERSION
    rm -rf "$src" && mkdir -p "$DATA/build" "$BIN"
    cp -r "$mod" "$src" && chmod -R u+w "$src"
    echo "$FERRETDB_VERSION" >"$src/build/version/version.txt"
    (cd "$src" && go build -o "$bin" ./cmd/ferretdb) >&2
    rm -rf "$src"
  fi
  echo "$bin"
}

# MAJ:MIN of the block device holding a directory (the whole disk, which blkio throttles).
block_device_of() {
  local src dev
  src=$(findmnt -n -o SOURCE --target "$1" 2>/dev/null | head -1)
  [ -b "$src" ] || return 1
  dev=$(lsblk -ndo PKNAME "$src" 2>/dev/null | head -1)
  if [ -n "$dev" ]; then lsblk -ndo MAJ:MIN "/dev/$dev" | tr -d ' '; else lsblk -ndo MAJ:MIN "$src" | tr -d ' '; fi
}

# Prepares the blkio group; prints its path, or nothing (with a loud warning) when it cannot.
prepare_cgroup() {
  [ "$DB_IOPS" = 0 ] && { log "DB_IOPS=0: database I/O not limited"; return; }
  local dev
  if ! dev=$(block_device_of "$DATA") || [ -z "$dev" ]; then
    warn "cannot find the block device of $DATA: the database runs WITHOUT the $DB_IOPS IOPS limit"
    return
  fi
  if ! mkdir -p "$CGROUP" 2>/dev/null ||
    ! echo "$dev $DB_IOPS" >"$CGROUP/blkio.throttle.write_iops_device" 2>/dev/null ||
    ! echo "$dev $DB_IOPS" >"$CGROUP/blkio.throttle.read_iops_device" 2>/dev/null; then
    warn "cannot create blkio group $CGROUP (cgroup v1 blkio not writable?): the database runs WITHOUT the $DB_IOPS IOPS limit"
    return
  fi
  log "database limited to $DB_IOPS read + $DB_IOPS write IOPS on device $dev ($CGROUP)"
  echo "$CGROUP"
}

ensure_db() {
  local pidfile=$DATA/db.pid cgroup
  mkdir -p "$DATA/db"
  if alive "$pidfile" && port_open "$DB_PORT"; then
    log "database already running on $DB_PORT (pid $(cat "$pidfile"))"
    return
  fi
  port_open "$DB_PORT" && die "port $DB_PORT is taken by another process; set SPILLWAY_DB_PORT"
  cgroup=$(prepare_cgroup)
  local cmd
  if command -v mongod >/dev/null; then
    cmd=(mongod --dbpath "$DATA/db" --port "$DB_PORT" --bind_ip 127.0.0.1 --quiet)
    log "starting mongod on 127.0.0.1:$DB_PORT"
  else
    cmd=("$(ferretdb_bin)" --handler=sqlite "--sqlite-url=file:$DATA/db/" \
      "--listen-addr=127.0.0.1:$DB_PORT" "--debug-addr=127.0.0.1:$DB_DEBUG_PORT" \
      --telemetry=disable --log-level=warn --state-dir="$DATA/db")
    log "starting FerretDB $FERRETDB_VERSION (SQLite) on 127.0.0.1:$DB_PORT, metrics on :$DB_DEBUG_PORT"
  fi
  # The subshell joins the blkio group before exec, so every thread of the
  # database is limited from its first I/O. setsid detaches it from the caller's
  # terminal: a Ctrl-C meant for `npm start` must not reach the database.
  (
    [ -n "$cgroup" ] && echo "$BASHPID" >"$cgroup/cgroup.procs"
    exec setsid "${cmd[@]}"
  ) >>"$DATA/db.log" 2>&1 </dev/null 9>&- &
  echo $! >"$pidfile"
  disown || true
  wait_port "$DB_PORT" 60 db
}

stop_db() {
  local pidfile=$DATA/db.pid pid
  if alive "$pidfile"; then
    pid=$(cat "$pidfile")
    log "stopping database (pid $pid)"
    kill "$pid" 2>/dev/null || true
    for _ in $(seq 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -9 "$pid" 2>/dev/null || true
  fi
  rm -f "$pidfile"
}

print_env() {
  echo "REDIS_URL=${REDIS_URL:-redis://127.0.0.1:$REDIS_PORT}"
  echo "MONGODB_URL=${MONGODB_URL:-mongodb://127.0.0.1:$DB_PORT/}"
  if [ -z "${MONGODB_URL:-}" ]; then
    command -v mongod >/dev/null || echo "DB_METRICS_URL=http://127.0.0.1:$DB_DEBUG_PORT/debug/metrics"
    [ "$DB_IOPS" != 0 ] && [ -d "$CGROUP" ] && echo "DB_BLKIO_CGROUP=$CGROUP"
  fi
  return 0
}

mkdir -p "$DATA"
case "${1:-up}" in
up)
  exec 9>"$DATA/services.lock"
  flock 9
  case ${2:-all} in
  all)
    if [ -n "${REDIS_URL:-}" ]; then log "REDIS_URL is set: using it"; else ensure_redis; fi
    if [ -n "${MONGODB_URL:-}" ]; then log "MONGODB_URL is set: using it"; else ensure_db; fi
    print_env
    ;;
  redis)
    ensure_redis
    echo "REDIS_URL=redis://127.0.0.1:$REDIS_PORT"
    ;;
  *) die "unknown service '$2' (use: all, redis)" ;;
  esac
  ;;
stop)
  exec 9>"$DATA/services.lock"
  flock 9
  stop_redis
  stop_db
  ;;
env) print_env ;;
*) die "unknown command '$1' (use: up, stop, env)" ;;
esac
