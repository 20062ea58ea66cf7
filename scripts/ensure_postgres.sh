#!/usr/bin/env bash
# Make sure a PostgreSQL server is there for the tests, and print its DATABASE_URL on
# stdout (all messages go to stderr).
#
#   1. DATABASE_URL already set: print it unchanged.
#   2. A server answers on 127.0.0.1:5432: find a role that may log in without a
#      password (postgres, then root), make sure database `test` exists, use it.
#   3. Otherwise install Debian's postgresql (apt), start its cluster without systemd,
#      create role `kvmweb` (password `kvmweb`, CREATEDB) owning database `test`.
# The role needs CREATEDB: pytest-django creates and drops `test_<name>` databases.
set -euo pipefail

HOST=127.0.0.1
PORT=5432
DB="test"

say() { printf '\033[1m[postgres]\033[0m %s\n' "$*" >&2; }

if [[ -n "${DATABASE_URL:-}" ]]; then
    say "using DATABASE_URL from the environment"
    echo "$DATABASE_URL"
    exit 0
fi

as_root() {
    if [[ $(id -u) -eq 0 ]]; then "$@"
    elif command -v sudo >/dev/null; then sudo "$@"
    else echo "ensure_postgres: need root to run: $*" >&2; return 1
    fi
}

apt_install() {
    say "installing OS packages: $*"
    as_root apt-get update -q >&2
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "$@" >&2
}

answers() {
    if command -v pg_isready >/dev/null; then
        pg_isready -q -h "$HOST" -p "$PORT" -t 3
    else
        timeout 3 bash -c "exec 3<>/dev/tcp/$HOST/$PORT" 2>/dev/null
    fi
}

# psql as ROLE (with PGPASSWORD if given) on DATABASE; extra args follow.
q() {
    local role=$1 password=$2 database=$3; shift 3
    PGPASSWORD="$password" PGCONNECT_TIMEOUT=5 psql -X -q -w -h "$HOST" -p "$PORT" \
        -U "$role" -d "$database" -v ON_ERROR_STOP=1 "$@"
}

# Print the URL for role/password if it can log in and create databases, after
# making sure database `test` exists.
try_role() {
    local role=$1 password=$2
    q "$role" "$password" postgres -Atc 'select 1' >/dev/null 2>&1 || return 1
    local can
    can="$(q "$role" "$password" postgres -Atc \
        "select rolsuper or rolcreatedb from pg_roles where rolname = current_user")"
    if [[ $can != t ]]; then
        say "role $role may log in but not create databases; skipping it"
        return 1
    fi
    if [[ "$(q "$role" "$password" postgres -Atc "select 1 from pg_database where datname = '$DB'")" != 1 ]]; then
        say "creating database $DB"
        q "$role" "$password" postgres -c "create database \"$DB\"" >&2
    fi
    if [[ -n $password ]]; then
        echo "postgres://$role:$password@$HOST:$PORT/$DB"
    else
        echo "postgres://$role@$HOST:$PORT/$DB"
    fi
}

find_role() {
    try_role postgres "" || try_role root "" || try_role kvmweb kvmweb
}

if ! answers; then
    if ! dpkg-query -W -f='${Status}' postgresql 2>/dev/null | grep -q 'install ok installed'; then
        apt_install postgresql
    fi
    ver="$(ls /etc/postgresql | sort -V | tail -n1)"
    if [[ -z $ver ]]; then
        say "ERROR: postgresql is installed but has no cluster under /etc/postgresql"
        exit 1
    fi
    say "starting cluster $ver/main (no systemd)"
    as_root pg_ctlcluster --skip-systemctl-redirect "$ver" main start >&2 || true
    for _ in $(seq 60); do answers && break; sleep 0.5; done
    if ! answers; then
        say "ERROR: PostgreSQL $ver/main did not start; see /var/log/postgresql/"
        exit 1
    fi
fi

command -v psql >/dev/null || apt_install postgresql-client

if url="$(find_role)"; then
    say "using $url"
    echo "$url"
    exit 0
fi

# Neither trust role works: create our own through the local socket as the postgres
# OS user (peer authentication), which needs root and a cluster on this machine.
if ! id postgres >/dev/null 2>&1; then
    say "ERROR: PostgreSQL answers on $HOST:$PORT but no known role can log in; set DATABASE_URL"
    exit 1
fi
say "creating role kvmweb (CREATEDB) through the local socket"
as_root runuser -u postgres -- psql -X -q -v ON_ERROR_STOP=1 -d postgres >&2 <<'SQL'
DO $$
BEGIN
    IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'kvmweb') THEN
        CREATE ROLE kvmweb LOGIN CREATEDB PASSWORD 'kvmweb';
    ELSE
        ALTER ROLE kvmweb LOGIN CREATEDB PASSWORD 'kvmweb';
    END IF;
END
$$;
SQL
if url="$(try_role kvmweb kvmweb)"; then
    say "using $url"
    echo "$url"
    exit 0
fi
say "ERROR: could not log in to PostgreSQL on $HOST:$PORT as kvmweb; set DATABASE_URL"
exit 1
