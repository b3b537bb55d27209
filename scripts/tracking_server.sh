#!/usr/bin/env bash
# The team's MLflow tracking server: PostgreSQL as the backend store, artifacts served by the
# server itself (so clients need no access to the artifact storage).
#
#   scripts/tracking_server.sh postgres   start PostgreSQL (installing Debian's package if missing),
#                                         create the role and database, print the backend store URI
#   scripts/tracking_server.sh start      postgres + `mlflow server` in the background; prints the
#                                         MLFLOW_TRACKING_URI to export
#   scripts/tracking_server.sh stop       stop the mlflow server this script started
#
# Secrets stay the owner's: everything this script writes (the server folder, its logs, the
# artifacts folder) is made under umask 077; the database password lives in $EDSR_SERVER_DIR/pgpass
# (libpq's password file, 0600), never on a command line, and the server's URIs carry none.
#
# Settings (environment variables, defaults in brackets):
#   EDSR_PG_USER [mlflow]  EDSR_PG_DB [mlflow]  EDSR_PG_PORT [5432]
#   EDSR_PG_PASSWORD [random, made once and kept in $EDSR_SERVER_DIR/pg_password]
#   EDSR_SERVER_HOST [127.0.0.1]  EDSR_SERVER_PORT [5000]  EDSR_SERVER_DIR [./server]
#   EDSR_ARTIFACTS [$EDSR_SERVER_DIR/artifacts]: a folder, or s3://bucket/prefix for S3-compatible
#       storage (then set MLFLOW_S3_ENDPOINT_URL, AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY and
#       pip install boto3 where the server runs)
#   EDSR_AUTH [0]: 1 adds MLflow's basic authentication (--app-name basic-auth; see README), with
#       EDSR_ADMIN_PASSWORD the first admin's password (required then)
#   MLFLOW [mlflow]: the mlflow executable
set -euo pipefail
umask 077

PG_USER=${EDSR_PG_USER:-mlflow}
PG_DB=${EDSR_PG_DB:-mlflow}
PG_PORT=${EDSR_PG_PORT:-5432}
HOST=${EDSR_SERVER_HOST:-127.0.0.1}
PORT=${EDSR_SERVER_PORT:-5000}
SERVER_DIR=${EDSR_SERVER_DIR:-server}
ARTIFACTS=${EDSR_ARTIFACTS:-$SERVER_DIR/artifacts}
MLFLOW=${MLFLOW:-mlflow}

say() { echo "tracking_server: $*" >&2; }
die() { say "error: $*"; exit 1; }

as_root() { if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi; }
as_postgres() { if [ "$(id -u)" = 0 ]; then su postgres -c "$*"; else sudo -u postgres sh -c "$*"; fi; }

# The server folder and what it holds are the owner's alone, also when an older version of this
# script made them readable.
secure_server_dir() {
    mkdir -p "$SERVER_DIR"
    chmod 700 "$SERVER_DIR"
    local file
    for file in basic_auth.ini secret_key pg_password pgpass mlflow.log; do
        [ -e "$SERVER_DIR/$file" ] && chmod 600 "$SERVER_DIR/$file"
    done
    return 0
}

# The role's password: EDSR_PG_PASSWORD, else one made at random the first time and kept.
load_pg_password() {
    secure_server_dir
    if [ -n "${EDSR_PG_PASSWORD:-}" ]; then
        PG_PASSWORD=$EDSR_PG_PASSWORD
    else
        [ -s "$SERVER_DIR/pg_password" ] || head -c 24 /dev/urandom | od -An -tx1 | tr -d ' \n' >"$SERVER_DIR/pg_password"
        PG_PASSWORD=$(cat "$SERVER_DIR/pg_password")
    fi
    case "$PG_PASSWORD" in *"'"*|*'\'*|*:*|*@*|*/*) die "EDSR_PG_PASSWORD must not hold ' \\ : @ or /";; esac
}

# With the password, for `postgres` to print (stdout, read by $(...), never an argument).
backend_uri() { echo "postgresql://$PG_USER:$PG_PASSWORD@127.0.0.1:$PG_PORT/$PG_DB"; }
# Without it: what `mlflow server` and basic_auth.ini get; libpq reads the password from PGPASSFILE.
backend_uri_without_password() { echo "postgresql://$PG_USER@127.0.0.1:$PG_PORT/$PG_DB"; }
write_pgpass() {
    printf '127.0.0.1:%s:*:%s:%s\n' "$PG_PORT" "$PG_USER" "$PG_PASSWORD" >"$SERVER_DIR/pgpass"
    chmod 600 "$SERVER_DIR/pgpass"
    export PGPASSFILE
    PGPASSFILE="$(cd "$SERVER_DIR" && pwd)/pgpass"
}

ensure_postgres_installed() {
    command -v pg_lsclusters >/dev/null && [ -n "$(pg_lsclusters -h 2>/dev/null)" ] && return
    command -v apt-get >/dev/null || die "PostgreSQL is not installed and this is not a Debian/Ubuntu machine: install PostgreSQL, then run again"
    say "installing PostgreSQL from the Debian packages"
    as_root apt-get update -qq
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql >/dev/null
}

# Prints nothing on stdout (PostgreSQL's own tools talk there: "Removed stale pid file."), so that
# `postgres` prints exactly one line, the URI, for $(...) to capture.
start_postgres() {
    ensure_postgres_installed
    local version cluster status
    read -r version cluster _ status _ < <(pg_lsclusters -h | awk -v port="$PG_PORT" '$3 == port' | head -n1)
    [ -n "${version:-}" ] || die "no PostgreSQL cluster on port $PG_PORT (see pg_lsclusters); set EDSR_PG_PORT"
    if [ "$status" != online ]; then
        say "starting PostgreSQL $version/$cluster on port $PG_PORT"
        # A postmaster killed uncleanly can hold its lock file for a moment: try a few times.
        local attempt
        for attempt in 1 2 3; do
            as_root pg_ctlcluster "$version" "$cluster" start && break
            [ "$attempt" = 3 ] && die "PostgreSQL $version/$cluster did not start; see pg_lsclusters and its log file"
            say "PostgreSQL did not start; trying again in 3 s"
            sleep 3
        done
    fi
    # A role that may create databases (the tests make a throw-away one each), and its database.
    # The password goes to psql on stdin (printf is a shell builtin): never in a process's arguments.
    as_postgres "psql -p $PG_PORT -qtAc \"SELECT 1 FROM pg_roles WHERE rolname = '$PG_USER'\"" | grep -q 1 ||
        as_postgres "psql -p $PG_PORT -qc \"CREATE ROLE $PG_USER LOGIN CREATEDB\""
    printf "ALTER ROLE %s PASSWORD '%s';\n" "$PG_USER" "$PG_PASSWORD" | as_postgres "psql -p $PG_PORT -q" >/dev/null
    as_postgres "psql -p $PG_PORT -qtAc \"SELECT 1 FROM pg_database WHERE datname = '$PG_DB'\"" | grep -q 1 ||
        as_postgres "createdb -p $PG_PORT -O $PG_USER $PG_DB"
}

start_server() {
    load_pg_password
    start_postgres >&2
    write_pgpass
    [[ "$ARTIFACTS" == *://* ]] || { mkdir -p "$ARTIFACTS" && chmod 700 "$ARTIFACTS"; }
    if [ -f "$SERVER_DIR/mlflow.pid" ] && kill -0 "$(cat "$SERVER_DIR/mlflow.pid")" 2>/dev/null; then
        say "already running (pid $(cat "$SERVER_DIR/mlflow.pid"))"
    else
        local auth=()
        if [ "${EDSR_AUTH:-0}" = 1 ]; then
            [ -n "${EDSR_ADMIN_PASSWORD:-}" ] || die "EDSR_AUTH=1 needs EDSR_ADMIN_PASSWORD, the password of the server's first admin user"
            auth=(--app-name basic-auth)
            # Users live in their own database, next to the runs.
            export MLFLOW_AUTH_CONFIG_PATH="$SERVER_DIR/basic_auth.ini"
            # Flask's CSRF protection needs a fixed secret; kept beside the config, made once.
            [ -f "$SERVER_DIR/secret_key" ] || head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n' >"$SERVER_DIR/secret_key"
            export MLFLOW_FLASK_SERVER_SECRET_KEY="${MLFLOW_FLASK_SERVER_SECRET_KEY:-$(cat "$SERVER_DIR/secret_key")}"
            [ -f "$MLFLOW_AUTH_CONFIG_PATH" ] || cat >"$MLFLOW_AUTH_CONFIG_PATH" <<EOF
[mlflow]
default_permission = READ
database_uri = $(backend_uri_without_password)
admin_username = admin
admin_password = $EDSR_ADMIN_PASSWORD
authorization_function = mlflow.server.auth:authenticate_request_basic_auth
EOF
        fi
        say "starting mlflow server on $HOST:$PORT (log: $SERVER_DIR/mlflow.log)"
        nohup "$MLFLOW" server --host "$HOST" --port "$PORT" \
            --backend-store-uri "$(backend_uri_without_password)" --serve-artifacts --artifacts-destination "$ARTIFACTS" \
            "${auth[@]}" >"$SERVER_DIR/mlflow.log" 2>&1 &
        echo $! >"$SERVER_DIR/mlflow.pid"
        for _ in $(seq 120); do
            curl -fsS "http://$HOST:$PORT/health" >/dev/null 2>&1 && break
            kill -0 "$(cat "$SERVER_DIR/mlflow.pid")" 2>/dev/null || die "mlflow server exited; see $SERVER_DIR/mlflow.log"
            sleep 1
        done
        curl -fsS "http://$HOST:$PORT/health" >/dev/null || die "mlflow server did not answer in 120 s; see $SERVER_DIR/mlflow.log"
    fi
    echo "export MLFLOW_TRACKING_URI=http://$HOST:$PORT"
}

stop_server() {
    [ -f "$SERVER_DIR/mlflow.pid" ] || die "no $SERVER_DIR/mlflow.pid: nothing this script started"
    # `mlflow server` runs its workers as children: stop the whole group.
    pkill -TERM -P "$(cat "$SERVER_DIR/mlflow.pid")" 2>/dev/null || true
    kill "$(cat "$SERVER_DIR/mlflow.pid")" 2>/dev/null || true
    rm -f "$SERVER_DIR/mlflow.pid"
    say "stopped"
}

case "${1:-}" in
    postgres) load_pg_password; start_postgres >&2; backend_uri ;;
    start) start_server ;;
    stop) stop_server ;;
    *) die "usage: $0 postgres|start|stop" ;;
esac
