#!/usr/bin/env bash
# Make sure a Redis server answers on REDIS_URL (first argument, else $REDIS_URL,
# else redis://127.0.0.1:6379/0).
#
# If none answers and the URL names this machine, start a private, memory-only
# redis-server as a daemon whose pidfile lives under var/run/, and print that
# pidfile's path on stdout, so the caller can stop it (kill "$(cat PIDFILE)").
# Nothing is printed on stdout when an existing server answered.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
URL="${1:-${REDIS_URL:-redis://127.0.0.1:6379/0}}"
VAR="${KVMWEB_VAR_DIR:-$ROOT/var}"

say() { printf '\033[1m[redis]\033[0m %s\n' "$*" >&2; }

# host and port from redis://[user:pass@]host[:port][/db]
hostport="${URL#*://}"
hostport="${hostport##*@}"
hostport="${hostport%%/*}"
hostport="${hostport%%\?*}"
if [[ $hostport == \[*\]* ]]; then           # [::1]:6379
    host="${hostport%%]*}"; host="${host#[}"
    port="${hostport##*]}"; port="${port#:}"
else
    host="${hostport%%:*}"
    port="${hostport#"$host"}"; port="${port#:}"
fi
host="${host:-127.0.0.1}"
port="${port:-6379}"

ping() {
    if command -v redis-cli >/dev/null; then
        [[ "$(timeout 3 redis-cli -u "$URL" ping 2>/dev/null)" == PONG ]]
    else
        # No client: speak the protocol through bash's /dev/tcp.
        timeout 3 bash -c "exec 3<>/dev/tcp/$host/$port && printf 'PING\r\n' >&3 && read -r reply <&3 && [[ \$reply == +PONG* ]]" 2>/dev/null
    fi
}

if ping; then
    say "answers on $host:$port"
    exit 0
fi

case "$host" in
    127.*|localhost|::1) ;;
    *) say "ERROR: no Redis answers on $URL, and it is not on this machine: start it yourself"; exit 1 ;;
esac

if ! command -v redis-server >/dev/null; then
    say "ERROR: no Redis answers on $URL and redis-server is not installed (run scripts/setup.sh)"
    exit 1
fi

mkdir -p "$VAR/run" "$VAR/log"
pidfile="$VAR/run/redis-$port.pid"
bind="127.0.0.1"
[[ $host == ::1 ]] && bind="::1"
say "none answers on $host:$port: starting a private memory-only redis-server"
redis-server --bind "$bind" --port "$port" --save '' --appendonly no \
    --daemonize yes --pidfile "$pidfile" --logfile "$VAR/log/redis-$port.log" --dir "$VAR"

for _ in $(seq 50); do
    if ping; then
        echo "$pidfile"
        exit 0
    fi
    sleep 0.2
done
say "ERROR: the private redis-server did not answer; see $VAR/log/redis-$port.log"
[[ -s $pidfile ]] && kill "$(cat "$pidfile")" 2>/dev/null || true
exit 1
