#!/usr/bin/env bash
# The kvmweb KVM lab host: the system libvirtd (qemu:///system, socket
# /run/libvirt/libvirt-sock) and virtlogd, both running inside the network
# namespace kvmweb-lab, so every network, bridge, dnsmasq or guest NIC that
# libvirt may create stays out of the main namespace. scripts/lab/net.sh adds
# the upstream LAN (netns kvmweb-up), the public bridge br0 and Open vSwitch.
#
# Usage: scripts/lab/lab.sh start|stop|status|demo|uri|describe
#   start   start the lab (no-op when it is already running)
#   stop [--force]  destroy running guests, stop the daemons, delete the namespace
#           (without --force, not while a test run holds the users lock)
#   status  print what runs (exit 0 when the lab answers, 3 otherwise)
#   demo    start the lab and make sure the demo guests exist:
#           demo-running (running) and demo-off (shut off)
#   uri     print the libvirt URI of the lab host
#   describe  print the host as JSON (URI, netns, path mapping)
set -euo pipefail
# shellcheck source=scripts/lab/common.sh
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"
# shellcheck source=scripts/lab/net.sh
source "$(dirname "${BASH_SOURCE[0]}")/net.sh"

NETNS="${KVMWEB_LAB_NETNS:-kvmweb-lab}"
URI="qemu:///system"
SOCK="/run/libvirt/libvirt-sock"
LIBVIRTD_PID="/run/libvirtd.pid"
VIRTLOGD_PID="/run/virtlogd.pid"
VIRTLOGD_SOCK="/run/libvirt/virtlogd-sock"
LIBVIRTD_LOG="/var/log/libvirt/libvirtd-kvmweb-lab.log"

answers() { LAB_VIRSH_TIMEOUT=5 lab_virsh "$URI" version >/dev/null 2>&1; }

# Pids of every running process whose executable is named $1.
pids_named() {
  local d
  for d in /proc/[0-9]*; do
    [[ $(cat "$d/comm" 2>/dev/null) == "$1" ]] && lab_proc_running "${d#/proc/}" && printf '%s\n' "${d#/proc/}"
  done
  return 0
}

start_virtlogd() {
  local pid p
  if pid=$(lab_pid_alive "$VIRTLOGD_PID" virtlogd); then
    lab_log "virtlogd already running (pid $pid, netns '$(lab_pid_netns "$pid")')"
    return 0
  fi
  if [[ -S $VIRTLOGD_SOCK ]]; then
    for p in $(pids_named virtlogd); do
      if [[ $(lab_pid_netns "$p") != kvmweb-h* ]]; then
        # virtlogd opens no network: one started by someone else serves the lab as well.
        lab_log "using the virtlogd already running (pid $p, not started by the lab)"
        return 0
      fi
    done
  fi
  rm -f "$VIRTLOGD_PID" "$VIRTLOGD_SOCK" "${VIRTLOGD_SOCK/virtlogd-sock/virtlogd-admin-sock}"
  lab_log "starting virtlogd in netns $NETNS"
  mkdir -p /run/libvirt /var/log/libvirt/qemu
  ip netns exec "$NETNS" virtlogd -d -p "$VIRTLOGD_PID"
  local deadline=$((SECONDS + 15))
  until [[ -S $VIRTLOGD_SOCK ]]; do
    ((SECONDS < deadline)) || lab_die "virtlogd did not create $VIRTLOGD_SOCK within 15 s"
    sleep 0.1
  done
}

# Succeeds (0) when the lab's libvirtd already runs; dies when a libvirtd that
# the lab did not start answers; returns 1 when none answers.
check_libvirtd() {
  local pid ns p
  if pid=$(lab_pid_alive "$LIBVIRTD_PID" libvirtd); then
    ns=$(lab_pid_netns "$pid")
    if [[ $ns != "$NETNS" ]]; then
      lab_die "a libvirtd (pid $pid) not started by the lab runs in network namespace '${ns:-main}'; stop it first (the lab runs libvirtd only inside netns $NETNS)"
    fi
    lab_log "libvirtd already running in netns $NETNS (pid $pid)"
    lab_wait_libvirtd "$URI" 60 || lab_die "libvirtd pid $pid does not answer on $SOCK"
    return 0
  fi
  if answers; then
    for p in $(pids_named libvirtd); do
      if [[ $(lab_pid_netns "$p") == "$NETNS" ]]; then
        lab_log "libvirtd already running in netns $NETNS (pid $p, pidfile missing)"
        return 0
      fi
    done
    lab_die "a libvirt daemon not started by the lab answers on $SOCK; stop it first (the lab runs libvirtd only inside netns $NETNS)"
  fi
  return 1
}

start_libvirtd() {
  local pid p
  # Nothing answers: whatever pidfile or socket is left is stale.
  for p in $(pids_named libvirtd); do
    if [[ $(lab_pid_netns "$p") == "$NETNS" ]]; then
      lab_log "killing unresponsive lab libvirtd pid $p"
      kill -KILL "$p" 2>/dev/null || true
    fi
  done
  rm -f "$LIBVIRTD_PID" "$SOCK" "$SOCK-ro" "$SOCK-admin"
  lab_log "starting libvirtd in netns $NETNS"
  local t0=$SECONDS
  mkdir -p /var/log/libvirt
  LIBVIRT_LOG_OUTPUTS="3:file:$LIBVIRTD_LOG" ip netns exec "$NETNS" libvirtd -d -p "$LIBVIRTD_PID"
  if ! lab_wait_libvirtd "$URI" 90; then
    tail -n 20 "$LIBVIRTD_LOG" >&2 2>/dev/null || true
    lab_die "libvirtd did not answer on $SOCK within 90 s (log: $LIBVIRTD_LOG)"
  fi
  pid=$(lab_pid_alive "$LIBVIRTD_PID" libvirtd) || lab_die "libvirtd answered but $LIBVIRTD_PID is missing"
  [[ $(lab_pid_netns "$pid") == "$NETNS" ]] || lab_die "libvirtd pid $pid is not in netns $NETNS"
  lab_log "libvirtd up in $((SECONDS - t0)) s (pid $pid, netns $NETNS)"
}

ensure_pool() {
  local info
  if ! lab_virsh "$URI" pool-info "$LAB_POOL_NAME" >/dev/null 2>&1; then
    lab_log "defining storage pool $LAB_POOL_NAME at $LAB_POOL_DIR"
    lab_virsh "$URI" pool-define-as "$LAB_POOL_NAME" dir --target "$LAB_POOL_DIR" >/dev/null
  fi
  info=$(lab_virsh "$URI" pool-info "$LAB_POOL_NAME")
  if grep -Eq '^Persistent:\s+no' <<<"$info"; then
    # Left active but without its config file (e.g. /etc/libvirt/storage was wiped).
    lab_log "making storage pool $LAB_POOL_NAME persistent again"
    local xml
    xml=$(mktemp)
    lab_virsh "$URI" pool-dumpxml "$LAB_POOL_NAME" >"$xml"
    lab_virsh "$URI" pool-define "$xml" >/dev/null
    rm -f "$xml"
  fi
  if ! grep -Eq '^State:\s+running' <<<"$info"; then
    mkdir -p "$LAB_POOL_DIR"
    lab_virsh "$URI" pool-start "$LAB_POOL_NAME" >/dev/null
  fi
  lab_virsh "$URI" pool-autostart "$LAB_POOL_NAME" >/dev/null
}

# QEMU (as the libvirt-qemu user on this host) creates the guests' VNC sockets here.
ensure_vnc_dir() {
  local owner
  owner=$(stat -c %U:%G /var/lib/libvirt/qemu 2>/dev/null || echo root:root)
  mkdir -p "$LAB_RUN_DIR/vnc"
  chown "$owner" "$LAB_RUN_DIR/vnc"
  chmod 0755 "$LAB_RUN_DIR/vnc"
}

install_boot_files() {
  mkdir -p "$LAB_BOOT_DIR"
  lab_install_file "$LAB_GUEST_DIR/vmlinuz" "$LAB_BOOT_DIR/vmlinuz"
  lab_install_file "$LAB_GUEST_DIR/initrd.gz" "$LAB_BOOT_DIR/initrd.gz"
}

cmd_start() {
  lab_require_root
  lab_apt_ensure "${LAB_APT_PACKAGES[@]}"
  lab_fix_kvm_perms
  "$LAB_SCRIPTS_DIR/build_guest.sh"
  install_boot_files
  ensure_vnc_dir
  lab_netns_ensure "$NETNS"
  # Upstream LAN, br0 and Open vSwitch first: libvirt may autostart networks that use them.
  lab_net_up
  local running=0
  check_libvirtd && running=1
  start_virtlogd
  ((running)) || start_libvirtd
  ensure_pool
  lab_log "lab host ready: $URI (libvirtd in netns $NETNS)"
}

cmd_stop() {
  lab_require_root
  lab_may_stop lab "${1:-}" || return 0
  local pid ns dom net
  if pid=$(lab_pid_alive "$LIBVIRTD_PID" libvirtd); then
    ns=$(lab_pid_netns "$pid")
    if [[ $ns != "$NETNS" ]]; then
      lab_log "libvirtd pid $pid runs in netns '${ns:-main}', not started by the lab: leaving it alone"
    else
      if answers; then
        lab_destroy_all "$URI" lab
        for net in $(lab_virsh "$URI" net-list --name 2>/dev/null || true); do
          lab_log "stopping libvirt network $net (inside netns $NETNS)"
          lab_virsh "$URI" net-destroy "$net" >/dev/null 2>&1 || true
        done
      fi
      lab_stop_pidfile "$LIBVIRTD_PID" libvirtd 20
    fi
  else
    rm -f "$LIBVIRTD_PID"
  fi
  if pid=$(lab_pid_alive "$VIRTLOGD_PID" virtlogd); then
    if [[ $(lab_pid_netns "$pid") == "$NETNS" ]]; then
      lab_stop_pidfile "$VIRTLOGD_PID" virtlogd 10
    else
      lab_log "virtlogd pid $pid is not in netns $NETNS: leaving it alone"
    fi
  else
    rm -f "$VIRTLOGD_PID"
  fi
  lab_net_down
  lab_netns_delete "$NETNS"
  lab_netns_dir_cleanup
  # QEMU leaves its VNC socket files behind when it is killed.
  rm -f "$LAB_RUN_DIR"/vnc/*.sock
  # The two migration hosts bind their own directory over .../vnc: keep it while they exist.
  if [[ -z $(find "$LAB_RUN_DIR" -mindepth 1 -maxdepth 1 ! -name vnc 2>/dev/null) ]]; then
    rmdir "$LAB_RUN_DIR/vnc" "$LAB_RUN_DIR" 2>/dev/null || true
  fi
  lab_log "lab stopped"
}

cmd_status() {
  local pid rc=3
  if lab_netns_exists "$NETNS"; then
    echo "netns $NETNS: present"
  else
    echo "netns $NETNS: absent"
  fi
  if pid=$(lab_pid_alive "$VIRTLOGD_PID" virtlogd); then
    echo "virtlogd: pid $pid (netns '$(lab_pid_netns "$pid")')"
  else
    echo "virtlogd: not running"
  fi
  if pid=$(lab_pid_alive "$LIBVIRTD_PID" libvirtd); then
    echo "libvirtd: pid $pid (netns '$(lab_pid_netns "$pid")')"
    if answers; then
      echo "uri: $URI (answers)"
      lab_virsh "$URI" list --all 2>/dev/null || true
      rc=0
    else
      echo "uri: $URI (does not answer)"
    fi
  else
    echo "libvirtd: not running"
  fi
  lab_net_status 2>/dev/null || true
  return $rc
}

cmd_describe() {
  printf '{"name": "lab", "uri": "%s", "netns": "%s", "socket": "%s", "paths": {"/var/log/libvirt": "/var/log/libvirt", "/var/lib/libvirt": "/var/lib/libvirt", "/run/libvirt": "/run/libvirt", "/run/kvmweb-lab/vnc": "%s/vnc", "/etc/libvirt": "/etc/libvirt"}}\n' \
    "$URI" "$NETNS" "$SOCK" "$LAB_RUN_DIR"
}

cmd_demo() {
  cmd_start
  "$LAB_PYTHON" -m tests.lab.guests --host lab demo
}

cd "$LAB_REPO_DIR"
case "${1:-}" in
  start) cmd_start ;;
  stop) cmd_stop "${2:-}" ;;
  status) cmd_status ;;
  demo) cmd_demo ;;
  uri) echo "$URI" ;;
  describe) cmd_describe ;;
  *)
    echo "usage: $0 start|stop|status|demo|uri|describe" >&2
    exit 2
    ;;
esac
