#!/usr/bin/env bash
# Prepare this machine and the work tree to run (or, with --dev, to test) kvmweb.
# Idempotent and fast when nothing changed: OS packages are installed only when
# missing, pip runs only when the requirements changed, npm only when the lockfile did.
#
#   scripts/setup.sh            run setup: OS packages, .venv, requirements.txt, assets,
#                               collectstatic, migrate
#   scripts/setup.sh --dev      also requirements-dev.txt and Chromium (for the tests)
#   --no-migrate                skip `manage.py migrate` (the caller migrates later)
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"

dev=0
migrate=1
for arg in "$@"; do
    case "$arg" in
        --dev) dev=1 ;;
        --no-migrate) migrate=0 ;;
        *) echo "setup: unknown argument $arg" >&2; exit 2 ;;
    esac
done

say() { printf '\033[1m[setup]\033[0m %s\n' "$*" >&2; }

VAR="${KVMWEB_VAR_DIR:-$ROOT/var}"
STAMPS="$ROOT/var/stamps"
mkdir -p "$VAR" "$STAMPS"

# --- OS packages -------------------------------------------------------------------
APT_PACKAGES=(
    python3-venv python3-dev build-essential pkg-config
    libvirt-dev libvirt-clients libvirt-daemon-system libvirt-daemon-driver-qemu
    qemu-system-x86 qemu-utils dnsmasq-base iptables bridge-utils iproute2 cpio
    redis-server nginx
)
if (( dev )); then
    APT_PACKAGES+=(chromium)
fi

# Run a command as root (directly, or through sudo when we are not root).
as_root() {
    if [[ $(id -u) -eq 0 ]]; then "$@"
    elif command -v sudo >/dev/null; then sudo "$@"
    else echo "setup: need root to run: $*" >&2; return 1
    fi
}

# Install the Debian packages given that are not installed yet, without letting
# their maintainer scripts start system services (we start what we need ourselves).
apt_install_missing() {
    local missing=() pkg
    for pkg in "$@"; do
        if ! dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q 'install ok installed'; then
            missing+=("$pkg")
        fi
    done
    (( ${#missing[@]} )) || return 0
    say "installing OS packages: ${missing[*]}"
    local policy=/usr/sbin/policy-rc.d added_policy=0
    if [[ ! -e $policy ]]; then
        as_root sh -c "printf '#!/bin/sh\nexit 101\n' > $policy && chmod 755 $policy"
        added_policy=1
    fi
    local rc=0
    as_root apt-get update -q || rc=$?
    if (( rc == 0 )); then
        as_root env DEBIAN_FRONTEND=noninteractive \
            apt-get install -y -q --no-install-recommends "${missing[@]}" || rc=$?
    fi
    if (( added_policy )); then as_root rm -f "$policy"; fi
    return "$rc"
}

# Node.js and npm may come from elsewhere than Debian (nodesource, nvm): only install
# Debian's when the commands are missing.
if ! command -v node >/dev/null || ! command -v npm >/dev/null; then
    APT_PACKAGES+=(nodejs npm)
fi
apt_install_missing "${APT_PACKAGES[@]}"

# --- Python virtualenv ---------------------------------------------------------------
if [[ ! -x .venv/bin/python ]]; then
    say "creating .venv"
    python3 -m venv .venv
    rm -f "$STAMPS"/pip-*
fi
PY="$ROOT/.venv/bin/python"

pyver="$("$PY" -c 'import sys; print(sys.version)')"
hash_of() { { echo "$pyver"; cat "$@"; } | sha256sum | cut -d' ' -f1; }
runtime_hash="$(hash_of requirements.txt)"
dev_hash="$(hash_of requirements.txt requirements-dev.txt)"

if (( dev )); then
    if [[ "$(cat "$STAMPS/pip-dev" 2>/dev/null)" != "$dev_hash" ]]; then
        say "installing requirements-dev.txt"
        "$PY" -m pip install --disable-pip-version-check --progress-bar off -q -r requirements-dev.txt
        echo "$dev_hash" > "$STAMPS/pip-dev"
    fi
else
    # A dev install satisfies the runtime requirements too.
    if [[ "$(cat "$STAMPS/pip-runtime" 2>/dev/null)" != "$runtime_hash" \
          && "$(cat "$STAMPS/pip-dev" 2>/dev/null)" != "$dev_hash" ]]; then
        say "installing requirements.txt"
        "$PY" -m pip install --disable-pip-version-check --progress-bar off -q -r requirements.txt
        echo "$runtime_hash" > "$STAMPS/pip-runtime"
    fi
fi

# --- Front-end assets (npm ci + copy into static/vendor/) ---------------------------
# vendor_assets.sh --check compares static/vendor/ with package.json/package-lock.json.
if [[ -f scripts/vendor_assets.sh ]]; then
    if ! bash scripts/vendor_assets.sh --check >/dev/null 2>&1; then
        say "vendoring front-end assets (scripts/vendor_assets.sh)"
        bash scripts/vendor_assets.sh
    fi
else
    say "WARNING: scripts/vendor_assets.sh is missing: front-end assets are not vendored"
fi

# --- Django: static files and database --------------------------------------------
# The settings demand SECRET_KEY when DEBUG is off; outside the tests and compose
# (which set their own), use the key kept under var/ (the same file the settings
# generate for DEBUG=1).
if [[ -z "${SECRET_KEY:-}" ]] && ! grep -qs '^SECRET_KEY=.' .env; then
    if [[ ! -s "$VAR/secret_key" ]]; then
        (umask 077; "$PY" -c 'import secrets; print(secrets.token_urlsafe(50))' > "$VAR/secret_key")
    fi
    SECRET_KEY="$(cat "$VAR/secret_key")"
    export SECRET_KEY
fi

say "collectstatic"
"$PY" manage.py collectstatic --noinput -v 0
if (( migrate )); then
    say "migrate"
    "$PY" manage.py migrate --noinput -v 1
fi
say "done"
