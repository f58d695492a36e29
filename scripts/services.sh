#!/usr/bin/env bash
# Make sure PostgreSQL and NATS (with JetStream) are reachable at DATABASE_URL
# and NATS_URL.
#
#   DATABASE_URL  default postgres://postgres@127.0.0.1:5432/blockfill
#   NATS_URL      default nats://127.0.0.1:4222 (comma-separated list allowed;
#                 only the first server is checked)
#
# For a local host (127.0.0.1, localhost, ::1) a service that is down is
# started (and installed with apt-get when we are root on Debian and its
# binaries are missing), and the PostgreSQL database named in DATABASE_URL is
# created if it does not exist. A remote host is only checked.
#
# Optional knobs:
#   SERVICES_WAIT_SECS  how long to wait for a service to come up (default 30)
#   NATS_STORE_DIR      JetStream store dir for a nats-server we start
#                       (default /var/lib/nats-server, or
#                       /var/lib/nats-server-PORT for a port other than 4222)
#   NATS_LOG_FILE       log file for a nats-server we start (same pattern)
#
# stderr: one line per service ("postgres: up at HOST:PORT"); stdout stays free for a caller's JSON.
# stderr: progress and errors.
set -euo pipefail

DATABASE_URL="${DATABASE_URL:-postgres://postgres@127.0.0.1:5432/blockfill}"
NATS_URL="${NATS_URL:-nats://127.0.0.1:4222}"
WAIT_SECS="${SERVICES_WAIT_SECS:-30}"
NATS_BIN=/usr/sbin/nats-server

log() { printf 'services: %s\n' "$*" >&2; }
die() {
  printf 'services: ERROR: %s\n' "$*" >&2
  exit 1
}

# ---------------------------------------------------------------- helpers ---

# Percent-decode a URL component (user, password, database name).
urldecode() {
  printf '%b' "${1//%/\\x}"
}

# parse_url URL DEFAULT_PORT -> sets U_SCHEME U_USER U_PASS U_HOST U_PORT U_PATH
# Handles scheme://[user[:pass]@]host[:port][/path][?query][#frag], with
# [v6] hosts. Bash only.
parse_url() {
  local url="$1" rest authority userinfo hostport
  [[ "$url" == *://* ]] || url="nats://$url" # bare host:port (NATS accepts it)
  U_SCHEME="${url%%://*}"
  rest="${url#*://}"
  authority="${rest%%[/?#]*}"
  U_PATH="${rest:${#authority}}"
  U_PATH="${U_PATH%%[?#]*}"
  U_PATH="${U_PATH#/}"
  if [[ "$authority" == *@* ]]; then
    userinfo="${authority%@*}"
    hostport="${authority##*@}"
  else
    userinfo=""
    hostport="$authority"
  fi
  U_USER="${userinfo%%:*}"
  if [[ "$userinfo" == *:* ]]; then U_PASS="${userinfo#*:}"; else U_PASS=""; fi
  if [[ "$hostport" == \[* ]]; then
    U_HOST="${hostport#\[}"
    U_HOST="${U_HOST%%]*}"
    U_PORT="${hostport#*]}"
    U_PORT="${U_PORT#:}"
  else
    U_HOST="${hostport%%:*}"
    if [[ "$hostport" == *:* ]]; then U_PORT="${hostport##*:}"; else U_PORT=""; fi
  fi
  U_PORT="${U_PORT:-$2}"
  [[ "$U_PORT" =~ ^[0-9]+$ ]] || die "bad port '$U_PORT' in URL '$1'"
}

is_local() {
  case "$1" in
    "" | 127.0.0.1 | localhost | ::1) return 0 ;;
    *) return 1 ;;
  esac
}

# host:port for messages ([::1]:5432 for IPv6).
hp() { if [[ "$1" == *:* ]]; then printf '[%s]:%s' "$1" "$2"; else printf '%s:%s' "$1" "$2"; fi; }

# TCP connect with a timeout, via bash's /dev/tcp (there is no nc).
tcp_up() {
  # shellcheck disable=SC2016 # $1/$2 are expanded by the inner bash
  timeout 3 bash -c 'exec 3<>"/dev/tcp/$1/$2"' _ "$1" "$2" 2>/dev/null
}

# wait_until SECONDS CMD... : poll CMD every 0.5 s until it succeeds.
wait_until() {
  local secs="$1" deadline
  shift
  deadline=$((SECONDS + secs))
  until "$@"; do
    ((SECONDS < deadline)) || return 1
    sleep 0.5
  done
}

can_apt() { [[ -f /etc/debian_version && "$(id -u)" == 0 ]] && command -v apt-get >/dev/null; }

APT_UPDATED=0
# apt_install PKG... : install Debian packages (root on Debian only).
apt_install() {
  can_apt || die "missing $*: install it (Debian/Ubuntu: sudo apt-get install -y $*) or point the URL at a running server"
  if ((APT_UPDATED == 0)); then
    log "apt-get update"
    DEBIAN_FRONTEND=noninteractive apt-get update -qq >&2 || die "apt-get update failed"
    APT_UPDATED=1
  fi
  log "apt-get install -y $*"
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@" >&2 || die "apt-get install -y $* failed"
}

# --------------------------------------------------------------- postgres ---

pg_up() {
  tcp_up "$PG_HOST" "$PG_PORT" || return 1
  if command -v pg_isready >/dev/null; then
    pg_isready -q -h "$PG_HOST" -p "$PG_PORT" -t 3 >/dev/null 2>&1 || return 1
  fi
}

pg_server_installed() {
  command -v pg_ctlcluster >/dev/null && command -v pg_createcluster >/dev/null &&
    compgen -G '/usr/lib/postgresql/*/bin/postgres' >/dev/null
}

pg_start() {
  [[ "$(id -u)" == 0 ]] || die "PostgreSQL is not running at $(hp "$PG_HOST" "$PG_PORT") and only root can start it: sudo pg_ctlcluster <version> main start (or set DATABASE_URL)"
  pg_server_installed || apt_install postgresql
  command -v pg_isready >/dev/null || apt_install postgresql-client

  # The cluster listening on the wanted port, if any ("15 main 5432 down ...").
  local ver="" name="" status=""
  read -r ver name status < <(pg_lsclusters -h 2>/dev/null | awk -v p="$PG_PORT" '$3 == p { print $1, $2, $4; exit }') || true
  if [[ -z "$ver" ]]; then
    if pg_lsclusters -h 2>/dev/null | grep -q .; then
      die "no PostgreSQL cluster is configured on port $PG_PORT (existing: $(pg_lsclusters -h | awk '{ printf "%s%s/%s:%s", (NR > 1 ? ", " : ""), $1, $2, $3 }')); fix DATABASE_URL or the cluster's port"
    fi
    ver="$(find /usr/lib/postgresql -mindepth 1 -maxdepth 1 -printf '%f\n' | sort -V | tail -1)"
    name=main
    log "creating PostgreSQL cluster $ver/$name on port $PG_PORT (trust auth for local and host connections)"
    pg_createcluster -p "$PG_PORT" "$ver" "$name" -- --auth-local=trust --auth-host=trust >&2 ||
      die "pg_createcluster $ver $name failed"
  fi
  PG_CLUSTER="$ver/$name"
  if [[ "$status" == online* ]]; then
    log "PostgreSQL cluster $ver/$name is running; waiting for it to accept connections"
    return 0
  fi
  log "starting PostgreSQL cluster $ver/$name"
  pg_ctlcluster --skip-systemctl-redirect "$ver" "$name" start >&2 ||
    die "pg_ctlcluster $ver $name start failed (see /var/log/postgresql/postgresql-$ver-$name.log)"
}

pg_ensure_db() {
  if ! command -v psql >/dev/null || ! command -v createdb >/dev/null; then apt_install postgresql-client; fi
  local db_sql="${PG_DB//\'/\'\'}" exists maint
  for maint in postgres template1; do
    if exists="$(psql -X -q -h "$PG_HOST" -p "$PG_PORT" -U "$PG_USER" -d "$maint" -tAc \
      "select 1 from pg_database where datname = '$db_sql'" 2>&1)"; then
      break
    fi
  done || true
  case "$exists" in
    1) return 0 ;;
    "")
      log "creating database $PG_DB"
      createdb -h "$PG_HOST" -p "$PG_PORT" -U "$PG_USER" -- "$PG_DB" >&2 ||
        die "createdb $PG_DB at $(hp "$PG_HOST" "$PG_PORT") as $PG_USER failed"
      ;;
    *) die "cannot query PostgreSQL at $(hp "$PG_HOST" "$PG_PORT") as $PG_USER: $exists" ;;
  esac
}

ensure_postgres() {
  parse_url "$DATABASE_URL" 5432
  case "$U_SCHEME" in postgres | postgresql) ;; *) die "DATABASE_URL must be postgres://... (got scheme '$U_SCHEME')" ;; esac
  PG_HOST="${U_HOST:-127.0.0.1}"
  PG_PORT="$U_PORT"
  PG_USER="$(urldecode "${U_USER:-${PGUSER:-$(id -un)}}")"
  PG_DB="$(urldecode "${U_PATH:-$PG_USER}")"
  if [[ -n "$U_PASS" ]]; then
    PGPASSWORD="$(urldecode "$U_PASS")"
    export PGPASSWORD
  fi
  local where
  where="$(hp "$PG_HOST" "$PG_PORT")"

  if ! pg_up; then
    is_local "$PG_HOST" || die "PostgreSQL at $where (DATABASE_URL) is not reachable"
    PG_CLUSTER=""
    pg_start
    wait_until "$WAIT_SECS" pg_up ||
      die "PostgreSQL at $where (DATABASE_URL) did not become ready within ${WAIT_SECS}s${PG_CLUSTER:+ (is $PG_HOST in listen_addresses of /etc/postgresql/$PG_CLUSTER/postgresql.conf?)}"
  fi
  if is_local "$PG_HOST"; then pg_ensure_db; fi
  echo "postgres: up at $where" >&2
}

# ------------------------------------------------------------------- nats ---

# The INFO line a NATS server sends on connect (empty if none).
nats_info() {
  # shellcheck disable=SC2016 # $1/$2 are expanded by the inner bash
  timeout 3 bash -c 'exec 3<>"/dev/tcp/$1/$2" && IFS= read -r -t 2 line <&3 && printf "%s\n" "$line"' \
    _ "$1" "$2" 2>/dev/null || true
}

nats_up() { [[ "$(nats_info "$NATS_HOST" "$NATS_PORT")" == INFO* ]]; }

nats_start() {
  if [[ ! -x "$NATS_BIN" ]]; then
    apt_install nats-server
    [[ -x "$NATS_BIN" ]] || die "nats-server was installed but $NATS_BIN is missing"
  fi
  local suffix="" store log_file pid_file run_dir
  [[ "$NATS_PORT" == 4222 ]] || suffix="-$NATS_PORT"
  store="${NATS_STORE_DIR:-/var/lib/nats-server$suffix}"
  log_file="${NATS_LOG_FILE:-/var/log/nats-server$suffix.log}"
  NATS_LOG="$log_file"
  run_dir=/run
  [[ -w "$run_dir" ]] || run_dir="${TMPDIR:-/tmp}"
  pid_file="$run_dir/nats-server$suffix.pid"
  mkdir -p "$store" "$(dirname "$log_file")" ||
    die "cannot create $store or $(dirname "$log_file") (set NATS_STORE_DIR / NATS_LOG_FILE, or run as root)"
  log "starting nats-server with JetStream on $(hp "$NATS_HOST" "$NATS_PORT") (store $store, log $log_file)"
  # The pidfile makes start-stop-daemon match only this instance, so a
  # nats-server already running on another port does not count as "running".
  start-stop-daemon --start --oknodo --background \
    --pidfile "$pid_file" --make-pidfile \
    --exec "$NATS_BIN" -- -a "$NATS_BIND" -p "$NATS_PORT" -js -sd "$store" -l "$log_file" >&2 ||
    die "start-stop-daemon failed to start $NATS_BIN"
}

ensure_nats() {
  local first="${NATS_URL%%,*}" where info
  first="${first#"${first%%[![:space:]]*}"}"
  first="${first%"${first##*[![:space:]]}"}"
  parse_url "$first" 4222
  NATS_HOST="${U_HOST:-127.0.0.1}"
  NATS_PORT="$U_PORT"
  where="$(hp "$NATS_HOST" "$NATS_PORT")"

  if ! nats_up; then
    is_local "$NATS_HOST" || die "NATS at $where (NATS_URL) is not reachable"
    case "$NATS_HOST" in
      ::1) NATS_BIND=::1 ;;
      *) NATS_BIND=127.0.0.1 ;;
    esac
    nats_start
    if ! wait_until "$WAIT_SECS" nats_up; then
      tail -n 5 "$NATS_LOG" >&2 2>/dev/null || true
      die "NATS at $where (NATS_URL) did not become ready within ${WAIT_SECS}s (log: $NATS_LOG)"
    fi
  fi
  # The INFO line says whether JetStream is enabled ("jetstream":true).
  info="$(nats_info "$NATS_HOST" "$NATS_PORT")"
  [[ "$info" == *'"jetstream":true'* ]] ||
    die "NATS at $where (NATS_URL) is up but JetStream is not enabled: restart nats-server with -js (or jetstream {} in its config)"
  echo "nats: up at $where" >&2
}

ensure_postgres
ensure_nats
