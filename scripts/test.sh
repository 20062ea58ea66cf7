#!/usr/bin/env bash
# `make test`: every layer, or a failure. Sets up (with the dev requirements and
# Chromium), makes sure PostgreSQL and Redis answer, builds the lab guest and starts
# the lab, then runs ruff, mypy, Django's checks and the whole pytest suite (unit,
# integration, e2e). Extra arguments go to pytest (e.g. `scripts/test.sh tests/unit`).
#
# Environment: DATABASE_URL (else a local PostgreSQL, installed if needed),
# KVMWEB_TEST_REDIS_URL (redis://127.0.0.1:6379/8: apart from `make run`'s databases).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"

say() { printf '\033[1m[test]\033[0m %s\n' "$*" >&2; }

# The tests' own environment, apart from `make run`'s: var/test/, Redis DB 8 (and 9 for
# the channel layer), DEBUG off and a fixed throwaway key.
export KVMWEB_VAR_DIR="$ROOT/var/test"
export REDIS_URL="${KVMWEB_TEST_REDIS_URL:-redis://127.0.0.1:6379/8}"
unset CHANNEL_REDIS_URL
export SECRET_KEY="test-only-secret-key-not-for-production-0123456789abcdef"
export DEBUG=0
export KVMWEB_CHROMIUM="${KVMWEB_CHROMIUM:-/usr/bin/chromium}"
export PATH="$ROOT/.venv/bin:$PATH"
mkdir -p "$KVMWEB_VAR_DIR"

bash scripts/setup.sh --dev --no-migrate

redis_pidfile=""
lab_started=0
cleanup() {
    if [[ -n $redis_pidfile && -s $redis_pidfile ]]; then
        say "stopping the private redis-server"
        kill "$(cat "$redis_pidfile")" 2>/dev/null || true
        rm -f "$redis_pidfile"
    fi
    if (( lab_started )); then
        say "stopping the lab"
        timeout 120 bash scripts/lab/lab.sh stop || say "WARNING: scripts/lab/lab.sh stop failed"
    fi
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

DATABASE_URL="$(scripts/ensure_postgres.sh)"
export DATABASE_URL
redis_pidfile="$(scripts/ensure_redis.sh "$REDIS_URL")"

say "migrate (on $DATABASE_URL)"
python manage.py migrate --noinput -v 0

# The lab: a real libvirtd in network namespace kvmweb-lab and a tiny guest image.
if [[ -f scripts/lab/build_guest.sh ]]; then
    say "building the lab guest"
    bash scripts/lab/build_guest.sh
fi
if [[ -f scripts/lab/lab.sh ]]; then
    if bash scripts/lab/lab.sh status >/dev/null 2>&1; then
        say "the lab already runs"
    else
        say "starting the lab"
        lab_started=1
        bash scripts/lab/lab.sh start
    fi
fi

say "ruff check"
ruff check .
ruff format --check .
say "mypy"
mypy kvmweb hosts vms storage networks stats consoles teams
say "manage.py check"
python manage.py check --fail-level WARNING
say "makemigrations --check"
python manage.py makemigrations --check --dry-run
say "pytest"
python -m pytest "$@"
