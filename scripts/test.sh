#!/usr/bin/env bash
# Runs every test of qun: unit tests, the storage conformance suites, and the
# end-to-end suites that start real `qun serve` processes (QUN_E2E=1).
#
# Suites that need a service get it from here: the service is installed from
# Debian's packages when missing, started as a throwaway instance on a free
# loopback port inside a temporary folder, and stopped and removed on exit.
#   PostgreSQL -> QUN_TEST_POSTGRES (a URL of a server where tests may create
#                 databases); set it yourself to use a server of your own.
#   NATS       -> QUN_TEST_NATS_SERVER (the nats-server binary; the multi-node
#                 suites start and restart their own instances).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

export QUN_E2E=1
export CARGO_TERM_COLOR="${CARGO_TERM_COLOR:-never}"

log() { echo "test.sh: $*" >&2; }
die() {
    log "error: $*"
    exit 1
}

# Temporary folders of started services, removed on exit.
SERVICE_DIRS=()
# Commands that stop started services, run on exit (last started, first stopped).
STOP_COMMANDS=()

cleanup() {
    local i
    for ((i = ${#STOP_COMMANDS[@]} - 1; i >= 0; i--)); do
        eval "${STOP_COMMANDS[$i]}" || true
    done
    for dir in "${SERVICE_DIRS[@]}"; do
        rm -rf "$dir"
    done
}
trap cleanup EXIT
# Interrupted or terminated: exit, so that the cleanup above still runs.
trap 'exit 130' INT
trap 'exit 143' TERM

# apt-get install PACKAGE... (runs apt-get update once first).
APT_UPDATED=""
apt_install() {
    [ "$(id -u)" -eq 0 ] || die "installing $* needs root (or install it yourself)"
    command -v apt-get >/dev/null || die "no apt-get to install $* with; install it yourself"
    if [ -z "$APT_UPDATED" ]; then
        log "apt-get update"
        apt-get update -qq
        APT_UPDATED=1
    fi
    log "apt-get install $*"
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "$@" >/dev/null
}

# A TCP port on 127.0.0.1 that nothing listens on right now, below the
# kernel's range for outgoing connections (whose ports a probe cannot see).
free_port() {
    local port tries low
    low=$(cut -f1 /proc/sys/net/ipv4/ip_local_port_range 2>/dev/null || true)
    [[ "$low" =~ ^[0-9]+$ ]] && [ "$low" -gt 11000 ] || low=32768
    for ((tries = 0; tries < 100; tries++)); do
        port=$((10000 + RANDOM % (low - 10000)))
        if ! (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
            echo "$port"
            return 0
        fi
    done
    die "found no free port"
}

# Runs a command as the service user (PostgreSQL refuses to run as root),
# from a folder that user may enter.
as_service_user() {
    if [ "$(id -u)" -eq 0 ]; then
        (cd / && runuser -u postgres -- "$@")
    else
        "$@"
    fi
}

# The folder holding initdb and pg_ctl (the newest installed version).
postgres_bin() {
    local dir
    for dir in $(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V -r); do
        if [ -x "$dir/initdb" ] && [ -x "$dir/pg_ctl" ]; then
            echo "$dir"
            return 0
        fi
    done
    if command -v initdb >/dev/null && command -v pg_ctl >/dev/null; then
        dirname "$(command -v initdb)"
        return 0
    fi
    return 1
}

# Installs PostgreSQL if missing, starts a throwaway server and exports
# QUN_TEST_POSTGRES. Does nothing when QUN_TEST_POSTGRES is set already.
start_postgres() {
    if [ -n "${QUN_TEST_POSTGRES:-}" ]; then
        log "using the PostgreSQL server of QUN_TEST_POSTGRES"
        return 0
    fi
    local started=$SECONDS bin dir port
    if ! bin=$(postgres_bin); then
        apt_install postgresql-15 || apt_install postgresql
        bin=$(postgres_bin) || die "PostgreSQL was installed but initdb/pg_ctl are not found"
    fi
    dir=$(mktemp -d "${TMPDIR:-/tmp}/qun-test-postgres.XXXXXX")
    SERVICE_DIRS+=("$dir")
    if [ "$(id -u)" -eq 0 ]; then
        id postgres >/dev/null 2>&1 || die "there is no 'postgres' user to run PostgreSQL as"
        chown postgres: "$dir"
    fi
    as_service_user "$bin/initdb" -D "$dir/data" -U postgres --auth=trust --encoding=UTF8 \
        --locale=C --no-sync >"$dir/initdb.log" 2>&1 ||
        { cat "$dir/initdb.log" >&2; die "initdb failed"; }

    local tries
    for ((tries = 0; tries < 5; tries++)); do
        port=$(free_port)
        if as_service_user "$bin/pg_ctl" -D "$dir/data" -l "$dir/server.log" -w -t 60 \
            -o "-c listen_addresses=127.0.0.1 -c port=$port -c unix_socket_directories='$dir' -c max_connections=300" \
            start >/dev/null; then
            STOP_COMMANDS+=("as_service_user '$bin/pg_ctl' -D '$dir/data' -m fast -w stop >/dev/null")
            export QUN_TEST_POSTGRES="postgres://postgres@127.0.0.1:$port/postgres"
            log "PostgreSQL $("$bin/pg_ctl" --version | awk '{print $3}') ready on 127.0.0.1:$port in $((SECONDS - started)) s"
            return 0
        fi
        log "PostgreSQL did not start on port $port; trying another"
        tail -n 20 "$dir/server.log" >&2 || true
        as_service_user "$bin/pg_ctl" -D "$dir/data" -m immediate stop >/dev/null 2>&1 || true
    done
    die "PostgreSQL would not start (its log is above)"
}

# nats-server for the multi-node suites, which start and restart their own
# instances (QUN_TEST_NATS_SERVER names the binary).
ensure_nats() {
    if [ -z "${QUN_TEST_NATS_SERVER:-}" ]; then
        command -v nats-server >/dev/null || apt_install nats-server
        QUN_TEST_NATS_SERVER=$(command -v nats-server) || die "nats-server is not installed"
        export QUN_TEST_NATS_SERVER
    fi
    log "NATS: $("$QUN_TEST_NATS_SERVER" --version)"
}

main() {
    cargo build --workspace --tests --bins
    start_postgres
    ensure_nats
    local out status=0
    out=$(mktemp)
    SERVICE_DIRS+=("$out")
    cargo test --workspace --no-fail-fast -- --test-threads="${QUN_TEST_THREADS:-4}" 2>&1 | tee "$out" || status=$?
    # One closing line for all the suites cargo ran.
    awk '/^test result:/ { for (i = 1; i <= NF; i++) { if ($i ~ /^passed/) p += $(i-1); if ($i ~ /^failed/) f += $(i-1) } }
         END { printf "total: %d passed, %d failed\n", p, f }' "$out"
    return "$status"
}

# Sourcing the script (to start a service by hand) defines the functions only.
if [ "${BASH_SOURCE[0]}" = "$0" ]; then
    main "$@"
fi
