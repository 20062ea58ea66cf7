# shellcheck shell=bash disable=SC2034
# Shared helpers for the kvmweb KVM lab scripts. Source it; do not run it.
#
# Everything the lab starts lives in network namespaces it creates itself
# (kvmweb-lab, kvmweb-h1, kvmweb-h2): no libvirt network, bridge, dnsmasq or
# guest NIC is ever created in the main network namespace.

LAB_SCRIPTS_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
LAB_REPO_DIR="$(cd "$LAB_SCRIPTS_DIR/../.." && pwd)"
LAB_VAR_DIR="${KVMWEB_LAB_VAR:-$LAB_REPO_DIR/var/lab}"
LAB_GUEST_DIR="$LAB_VAR_DIR/guest"
LAB_RUN_DIR="/run/kvmweb-lab"
# Where every lab host finds the guest kernel and initrd (readable by the
# libvirt-qemu user whatever the permissions of the repository checkout).
LAB_BOOT_DIR="/var/lib/libvirt/boot/kvmweb-lab"
LAB_POOL_NAME="kvmweb-lab"
LAB_POOL_DIR="/var/lib/libvirt/images/kvmweb-lab"
LAB_PYTHON="${KVMWEB_LAB_PYTHON:-$LAB_REPO_DIR/.venv/bin/python}"

LAB_APT_PACKAGES=(
  libvirt-daemon-system libvirt-daemon-driver-qemu libvirt-clients
  qemu-system-x86 qemu-utils dnsmasq-base iptables bridge-utils iproute2
  cpio gzip util-linux procps openvswitch-switch
)

lab_log() { printf '[lab %s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
lab_die() { printf '[lab %s] ERROR: %s\n' "$(date +%H:%M:%S)" "$*" >&2; exit 1; }

lab_require_root() {
  [[ $(id -u) -eq 0 ]] || lab_die "the KVM lab needs root (network namespaces, libvirtd)"
}

# Install the given Debian packages with apt-get, only the ones missing.
lab_apt_ensure() {
  local missing=() p
  for p in "$@"; do
    if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed'; then
      missing+=("$p")
    fi
  done
  ((${#missing[@]} == 0)) && return 0
  lab_log "installing missing packages: ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  timeout 600 apt-get update -q >&2 || lab_die "apt-get update failed"
  # No systemd here: keep maintainer scripts from starting daemons.
  local policy_rc=/usr/sbin/policy-rc.d created_policy=0
  if [[ ! -e $policy_rc ]]; then
    printf '#!/bin/sh\nexit 101\n' >"$policy_rc" && chmod 0755 "$policy_rc" && created_policy=1
  fi
  local rc=0
  timeout 1200 apt-get install -y -q --no-install-recommends "${missing[@]}" >&2 || rc=$?
  ((created_policy)) && rm -f "$policy_rc"
  ((rc == 0)) || lab_die "apt-get install ${missing[*]} failed (rc=$rc)"
}

# /dev/kvm is root:root 0600 without udev: libvirtd then probes QEMU slowly.
lab_fix_kvm_perms() {
  if [[ -c /dev/kvm ]]; then
    getent group kvm >/dev/null && chown root:kvm /dev/kvm
    chmod 0660 /dev/kvm
  fi
}

# Read a pid from a pidfile; print it only if that process is alive and its
# executable's name matches $2 (so a stale pidfile is ignored).
lab_pid_alive() {
  local pidfile=$1 name=$2 pid comm
  [[ -s $pidfile ]] || return 1
  pid=$(tr -dc '0-9' <"$pidfile")
  [[ -n $pid ]] || return 1
  lab_proc_running "$pid" || return 1
  comm=$(cat "/proc/$pid/comm" 2>/dev/null) || return 1
  [[ $comm == "$name" ]] || return 1
  printf '%s\n' "$pid"
}

# True while pid exists and is not a zombie (PID 1 may reap orphans late).
lab_proc_running() {
  local state
  state=$(awk '{print $3}' "/proc/$1/stat" 2>/dev/null) || return 1
  [[ -n $state && $state != Z && $state != X ]]
}

# SIGTERM the process named in pidfile (if alive and really $name), wait up
# to $3 seconds, then SIGKILL. Removes the pidfile.
lab_stop_pidfile() {
  local pidfile=$1 name=$2 wait_s=${3:-15} pid i
  if pid=$(lab_pid_alive "$pidfile" "$name"); then
    lab_log "stopping $name (pid $pid)"
    kill -TERM "$pid" 2>/dev/null || true
    for ((i = 0; i < wait_s * 10; i++)); do
      lab_proc_running "$pid" || break
      sleep 0.1
    done
    if lab_proc_running "$pid"; then
      lab_log "$name (pid $pid) ignored SIGTERM; sending SIGKILL"
      kill -KILL "$pid" 2>/dev/null || true
      sleep 0.2
    fi
  fi
  rm -f "$pidfile"
}

lab_netns_exists() { ip netns list 2>/dev/null | awk '{print $1}' | grep -qx "$1"; }

# Create (or reuse) a network namespace with loopback up.
lab_netns_ensure() {
  local ns=$1
  if ! lab_netns_exists "$ns"; then
    lab_log "creating network namespace $ns"
    ip netns add "$ns"
  fi
  ip -n "$ns" link set lo up
}

# Kill every process still inside a namespace this lab created, then delete it.
lab_netns_delete() {
  local ns=$1 pids i
  lab_netns_exists "$ns" || return 0
  for i in 1 2 3; do
    pids=$(ip netns pids "$ns" 2>/dev/null | tr '\n' ' ')
    [[ -z ${pids// /} ]] && break
    lab_log "terminating leftover processes in netns $ns: $pids"
    # shellcheck disable=SC2086
    kill -TERM $pids 2>/dev/null || true
    sleep 1
  done
  pids=$(ip netns pids "$ns" 2>/dev/null | tr '\n' ' ')
  if [[ -n ${pids// /} ]]; then
    # shellcheck disable=SC2086
    kill -KILL $pids 2>/dev/null || true
    sleep 0.3
  fi
  lab_log "deleting network namespace $ns"
  ip netns delete "$ns" 2>/dev/null || true
}

# iproute2 bind-mounts /run/netns onto itself; drop that once it is empty.
lab_netns_dir_cleanup() {
  if [[ -d /run/netns ]] && [[ -z $(ls -A /run/netns 2>/dev/null) ]]; then
    if findmnt -rn /run/netns >/dev/null 2>&1; then
      umount /run/netns 2>/dev/null || true
    fi
  fi
}

# Which network namespace (name) a pid lives in; empty for the main one.
lab_pid_netns() { ip netns identify "$1" 2>/dev/null || true; }

# virsh with a hard deadline so nothing ever hangs.
lab_virsh() {
  local uri=$1
  shift
  timeout "${LAB_VIRSH_TIMEOUT:-30}" virsh -q -c "$uri" "$@"
}

# Wait until a libvirtd answers at $uri (deadline $2 seconds).
lab_wait_libvirtd() {
  local uri=$1 deadline=$((SECONDS + ${2:-60}))
  while ((SECONDS < deadline)); do
    if LAB_VIRSH_TIMEOUT=5 lab_virsh "$uri" version >/dev/null 2>&1; then
      return 0
    fi
    sleep 0.2
  done
  return 1
}

# Destroy every active guest of a host, in parallel, with a deadline.
lab_destroy_all() {
  local uri=$1 label=$2 dom pids=()
  for dom in $(lab_virsh "$uri" list --name --state-running --state-paused --state-other 2>/dev/null || true); do
    lab_log "$label: destroying guest $dom"
    lab_virsh "$uri" destroy "$dom" >/dev/null 2>&1 &
    pids+=($!)
  done
  ((${#pids[@]} == 0)) || wait "${pids[@]}" 2>/dev/null || true
}

# Copy src to dst only if content differs (atomic replace).
lab_install_file() {
  local src=$1 dst=$2 mode=${3:-0644}
  if [[ -f $dst ]] && cmp -s "$src" "$dst"; then return 0; fi
  install -D -m "$mode" "$src" "$dst.tmp.$$"
  mv -f "$dst.tmp.$$" "$dst"
}

# Test runs hold a shared lock on this file while they use a lab (tests/lab/locks.py);
# `stop` does not pull the lab from under them unless forced.
lab_users_lock() { echo "${KVMWEB_LAB_LOCK_DIR:-/run/lock}/kvmweb-lab-$1.users"; }

# Succeeds when nobody else uses the lab $1 (or $2 is --force).
lab_may_stop() {
  local which=$1 force=${2:-} lock
  [[ $force == --force ]] && return 0
  lock=$(lab_users_lock "$which")
  [[ -e $lock ]] || return 0
  if flock -n -x "$lock" true 2>/dev/null; then
    return 0
  fi
  lab_log "another test run is using the lab ($lock is locked): not stopping it (use 'stop --force')"
  return 1
}
