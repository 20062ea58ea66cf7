#!/usr/bin/env bash
# `make run`: set up, then run the whole kvmweb stack in the foreground under honcho
# (see Procfile): nginx on http://127.0.0.1:$PORT in front of gunicorn and daphne, a
# Celery worker and Celery beat. Ctrl-C stops everything this script started: the
# Procfile processes, the private Redis and the lab (only if it started them).
#
# Environment: PORT (8000), REDIS_URL, DATABASE_URL (SQLite under var/), DEBUG (0),
# SECRET_KEY (kept in var/secret_key when unset), KVMWEB_VAR_DIR (var/),
# KVMWEB_ADMIN_PASSWORD, KVMWEB_NO_LAB=1 to leave the lab alone.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"

say() { printf '\033[1m[run]\033[0m %s\n' "$*" >&2; }
warn() { printf '\033[1;33m[run] WARNING:\033[0m %s\n' "$*" >&2; }

export PORT="${PORT:-8000}"
export REDIS_URL="${REDIS_URL:-redis://127.0.0.1:6379/0}"
export DEBUG="${DEBUG:-0}"
mkdir -p "${KVMWEB_VAR_DIR:-$ROOT/var}"
KVMWEB_VAR_DIR="$(cd "${KVMWEB_VAR_DIR:-$ROOT/var}" && pwd)"
export KVMWEB_VAR_DIR
VAR="$KVMWEB_VAR_DIR"
export PATH="$ROOT/.venv/bin:$PATH"

if timeout 2 bash -c "exec 3<>/dev/tcp/127.0.0.1/$PORT" 2>/dev/null; then
    echo "run: something already listens on 127.0.0.1:$PORT (another make run?); set PORT to use another port" >&2
    exit 1
fi

mkdir -p "$VAR/run" "$VAR/log"
chmod 700 "$VAR/run"   # the app's sockets: only this user (and nginx's workers, run as it) may connect

# DEBUG is off by default, so the settings need a SECRET_KEY: keep one under var/.
if [[ -z "${SECRET_KEY:-}" ]] && ! grep -qs '^SECRET_KEY=.' .env; then
    if [[ ! -s "$VAR/secret_key" ]]; then
        (umask 077; python3 -c 'import secrets; print(secrets.token_urlsafe(50))' > "$VAR/secret_key")
    fi
    SECRET_KEY="$(cat "$VAR/secret_key")"
    export SECRET_KEY
fi

bash scripts/setup.sh

# --- from here on, everything started is stopped on exit ------------------------------
redis_pidfile=""
lab_started=0
honcho_pid=""
banner_pid=""
cleanup() {
    trap '' INT TERM
    if [[ -n $banner_pid ]]; then kill "$banner_pid" 2>/dev/null || true; fi
    if [[ -n $honcho_pid ]] && kill -0 "$honcho_pid" 2>/dev/null; then
        say "stopping the processes"
        kill -TERM "$honcho_pid" 2>/dev/null || true
        wait "$honcho_pid" 2>/dev/null || true
    fi
    if [[ -n $redis_pidfile && -s $redis_pidfile ]]; then
        say "stopping the private redis-server"
        kill "$(cat "$redis_pidfile")" 2>/dev/null || true
        rm -f "$redis_pidfile"
    fi
    if (( lab_started )); then
        say "stopping the lab"
        timeout 120 scripts/lab/lab.sh stop || warn "scripts/lab/lab.sh stop failed"
    fi
}
trap cleanup EXIT
trap 'exit 0' INT     # Ctrl-C is how one stops it: not an error
trap 'exit 143' TERM

redis_pidfile="$(scripts/ensure_redis.sh "$REDIS_URL")"

# The lab: a real libvirtd in network namespace kvmweb-lab, reachable as qemu:///system.
if [[ "${KVMWEB_NO_LAB:-0}" == 1 ]]; then
    say "KVMWEB_NO_LAB=1: leaving the lab alone"
elif [[ -f scripts/lab/lab.sh ]]; then
    if bash scripts/lab/lab.sh status >/dev/null 2>&1; then
        say "the lab already runs"
    else
        say "starting the lab"
        if timeout 300 bash scripts/lab/lab.sh start; then
            lab_started=1
        else
            warn "the lab did not start; the local host will be the simulated test:///default"
        fi
    fi
    if bash scripts/lab/lab.sh status >/dev/null 2>&1; then
        timeout 600 bash scripts/lab/lab.sh demo \
            || warn "the lab's demo guests could not be created (scripts/lab/lab.sh demo)"
    fi
else
    warn "scripts/lab/lab.sh is missing: no lab host"
fi

# The admin account and the local host.
credentials=""
if python manage.py help kvmweb_bootstrap >/dev/null 2>&1; then
    # Show what it printed even when it fails: a generated password is shown only once.
    if ! credentials="$(python manage.py kvmweb_bootstrap)"; then
        printf '%s\n' "$credentials"
        echo "run: manage.py kvmweb_bootstrap failed" >&2
        exit 1
    fi
    printf '%s\n' "$credentials"
else
    warn "manage.py kvmweb_bootstrap does not exist yet: no admin account was created"
fi

# The proxy's configuration, rendered for this var dir and port.
python scripts/nginx_conf.py --var-dir "$VAR" --listen "127.0.0.1:$PORT" --out "$VAR/run/nginx.conf"
nginx -q -t -c "$VAR/run/nginx.conf" -e "$VAR/log/nginx-error.log"
rm -f "$VAR/run/gunicorn.sock" "$VAR/run/daphne.sock"

url="http://127.0.0.1:$PORT"
(
    # Print where to log in once the proxy and the app answer.
    for _ in $(seq 120); do
        code="$(python - "$url/login/" <<'PY' 2>/dev/null || true
import sys, urllib.request, urllib.error
try:
    print(urllib.request.urlopen(sys.argv[1], timeout=2).status)
except urllib.error.HTTPError as e:
    print(e.code)
PY
)"
        if [[ $code == 200 ]]; then
            {
                printf '\n\033[1mkvmweb is running at %s/\033[0m  (Ctrl-C stops it)\n' "$url"
                if [[ -n $credentials ]]; then printf '%s\n' "$credentials"; fi
                printf '\n'
            } >&2
            exit 0
        fi
        sleep 1
    done
    warn "$url/login/ did not answer 200 within 120 s; see the process output above"
) &
banner_pid=$!

say "starting the processes (Procfile)"
# -e /dev/null: the settings read .env themselves; honcho must not override the environment.
honcho -f Procfile -e /dev/null start &
honcho_pid=$!
rc=0
wait "$honcho_pid" || rc=$?
honcho_pid=""
# honcho exits 130 when it got SIGINT (Ctrl-C): a requested stop, not a failure.
if (( rc == 130 )); then rc=0; fi
exit "$rc"
