#!/usr/bin/env bash
# Two libvirt hosts side by side for migration tests: h1 and h2.
#
# Each libvirtd runs in its own network namespace (kvmweb-h1, kvmweb-h2) AND
# its own private mount namespace, where per-host directories are bound over
# /run/libvirt, /etc/libvirt (fresh copies of the .conf files),
# /var/lib/libvirt, /var/cache/libvirt, /var/log/libvirt and
# /run/kvmweb-lab/vnc. A veth pair joins the two namespaces on a private
# subnet (10.213.0.0/24) that exists nowhere else; each daemon listens for
# plain TCP (auth none) on its own address only, for peer-to-peer migration.
#
# The main namespace reaches each host through its unix socket:
#   qemu+unix:///system?socket=/run/kvmweb-lab/<host>/run/libvirt-sock
#
# Usage: scripts/lab/two_hosts.sh start|stop [--force]|status|describe
#   describe  print the hosts as JSON (URIs, addresses, path mapping)
set -euo pipefail
# shellcheck source=scripts/lab/common.sh
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"

HOSTS=(h1 h2)
SUBNET_PREFIX="10.213.0"
declare -A ADDR=([h1]="$SUBNET_PREFIX.1" [h2]="$SUBNET_PREFIX.2")
declare -A VETH=([h1]="kvmweb-v1" [h2]="kvmweb-v2")
declare -A HOST_UUID=([h1]="6b766d77-6562-4c61-8201-000000000001" [h2]="6b766d77-6562-4c61-8201-000000000002")

netns_of() { echo "kvmweb-$1"; }
run_dir() { echo "$LAB_RUN_DIR/$1"; }
state_dir() { echo "$LAB_VAR_DIR/hosts/$1"; }
sock_of() { echo "$(run_dir "$1")/run/libvirt-sock"; }
uri_of() { echo "qemu+unix:///system?socket=$(sock_of "$1")"; }
tcp_uri_of() { echo "qemu+tcp://${ADDR[$1]}/system"; }

answers() { LAB_VIRSH_TIMEOUT=5 lab_virsh "$(uri_of "$1")" version >/dev/null 2>&1; }

setup_network() {
  local h
  for h in "${HOSTS[@]}"; do lab_netns_ensure "$(netns_of "$h")"; done
  local n1 n2
  n1=$(netns_of h1)
  n2=$(netns_of h2)
  local have1=0 have2=0
  ip -n "$n1" link show "${VETH[h1]}" >/dev/null 2>&1 && have1=1
  ip -n "$n2" link show "${VETH[h2]}" >/dev/null 2>&1 && have2=1
  if ((have1 != have2)) || ((have1 == 0)); then
    ip -n "$n1" link del "${VETH[h1]}" 2>/dev/null || true
    ip -n "$n2" link del "${VETH[h2]}" 2>/dev/null || true
    lab_log "creating veth ${VETH[h1]} ($n1) <-> ${VETH[h2]} ($n2)"
    ip -n "$n1" link add "${VETH[h1]}" type veth peer name "${VETH[h2]}" netns "$n2"
  fi
  for h in "${HOSTS[@]}"; do
    ip -n "$(netns_of "$h")" addr replace "${ADDR[$h]}/24" dev "${VETH[$h]}"
    ip -n "$(netns_of "$h")" link set "${VETH[$h]}" up
  done
}

# Strip the keys we set from a copied .conf, then append our values.
conf_set() {
  local file=$1
  shift
  local keys=() kv
  for kv in "$@"; do keys+=("${kv%%=*}"); done
  local re
  re="^[[:space:]]*($(IFS='|'; echo "${keys[*]}"))[[:space:]]*="
  grep -Ev "$re" "$file" >"$file.tmp" || true
  {
    echo
    echo "# --- kvmweb lab ($(basename "$file")) ---"
    for kv in "$@"; do echo "${kv%%=*} = ${kv#*=}"; done
  } >>"$file.tmp"
  mv -f "$file.tmp" "$file"
}

prepare_state() {
  local h=$1 st rd
  st=$(state_dir "$h")
  rd=$(run_dir "$h")
  # Fresh configuration and state every start; the QEMU capability cache is
  # kept so that a restart does not probe QEMU again.
  rm -rf "${st:?}/etc" "${st:?}/lib" "${st:?}/log" "${rd:?}/run" "${rd:?}/vnc"
  mkdir -p "$st"/{etc,lib,cache,log} "$st/log/qemu" "$st/etc/qemu" "$st/etc/nwfilter" \
    "$st/lib/boot/kvmweb-lab" "$st/lib/images/kvmweb-lab" "$rd/run" "$rd/vnc"
  cp /etc/libvirt/*.conf "$st/etc/"
  # Seed the QEMU capability cache from the main lab host if it has one:
  # libvirtd re-probes QEMU by itself when the copy does not match.
  if [[ ! -d $st/cache/qemu/capabilities && -d /var/cache/libvirt/qemu/capabilities ]]; then
    mkdir -p "$st/cache/qemu"
    cp -a /var/cache/libvirt/qemu/capabilities "$st/cache/qemu/"
  fi
  conf_set "$st/etc/libvirtd.conf" \
    'listen_tcp=1' 'listen_tls=0' 'auth_tcp="none"' \
    "listen_addr=\"${ADDR[$h]}\"" "host_uuid=\"${HOST_UUID[$h]}\""
  conf_set "$st/etc/qemu.conf" \
    'user="root"' 'group="root"' \
    "migration_address=\"${ADDR[$h]}\"" "migration_host=\"${ADDR[$h]}\""
  install -m 0644 "$LAB_GUEST_DIR/vmlinuz" "$st/lib/boot/kvmweb-lab/vmlinuz"
  install -m 0644 "$LAB_GUEST_DIR/initrd.gz" "$st/lib/boot/kvmweb-lab/initrd.gz"
}

start_host() {
  local h=$1 ns rd st pid
  ns=$(netns_of "$h")
  rd=$(run_dir "$h")
  st=$(state_dir "$h")
  if pid=$(lab_pid_alive "$rd/libvirtd.pid" libvirtd) && [[ $(lab_pid_netns "$pid") == "$ns" ]]; then
    if answers "$h"; then
      lab_log "$h: libvirtd already running (pid $pid)"
      return 0
    fi
    lab_log "$h: libvirtd pid $pid does not answer; killing it"
    kill -KILL "$pid" 2>/dev/null || true
    sleep 0.3
  fi
  lab_netns_ensure "$ns"
  local start_virtlogd=1
  if pid=$(lab_pid_alive "$rd/virtlogd.pid" virtlogd) && [[ $(lab_pid_netns "$pid") == "$ns" ]]; then
    start_virtlogd=0
  fi
  local leftovers
  leftovers=$(ip netns pids "$ns" 2>/dev/null | tr '\n' ' ' || true)
  if [[ -n ${leftovers// /} && -d $st/etc && -d $rd/run ]]; then
    # A crashed daemon: its guests (and maybe virtlogd) still run. Keep the state
    # so that the new libvirtd finds and reconnects to them.
    lab_log "$h: recovering after a crashed libvirtd (still running in $ns: $leftovers)"
  else
    if [[ -n ${leftovers// /} ]]; then
      lab_log "$h: killing leftover processes in netns $ns without state: $leftovers"
      # shellcheck disable=SC2086
      kill -KILL $leftovers 2>/dev/null || true
      sleep 0.3
    fi
    start_virtlogd=1
    prepare_state "$h"
  fi
  rm -f "$rd/libvirtd.pid" "$rd/run/libvirt-sock" "$rd/run/libvirt-sock-ro" "$rd/run/libvirt-admin-sock"
  if ((start_virtlogd)); then
    rm -f "$rd/virtlogd.pid" "$rd/run/virtlogd-sock" "$rd/run/virtlogd-admin-sock"
  fi
  mkdir -p /run/libvirt /run/kvmweb-lab/vnc /etc/libvirt /var/lib/libvirt /var/cache/libvirt /var/log/libvirt
  lab_log "$h: starting libvirtd in netns $ns with a private mount namespace"
  # shellcheck disable=SC2016
  timeout 60 ip netns exec "$ns" unshare -m --propagation private bash -euo pipefail -c '
    rd=$1 st=$2 start_virtlogd=$3
    mount --bind "$rd/run" /run/libvirt
    mount --bind "$rd/vnc" /run/kvmweb-lab/vnc
    mount --bind "$st/etc" /etc/libvirt
    mount --bind "$st/lib" /var/lib/libvirt
    mount --bind "$st/cache" /var/cache/libvirt
    mount --bind "$st/log" /var/log/libvirt
    if ((start_virtlogd)); then
      virtlogd -d -p "$rd/virtlogd.pid"
    fi
    for _ in $(seq 150); do [[ -S /run/libvirt/virtlogd-sock ]] && break; sleep 0.1; done
    [[ -S /run/libvirt/virtlogd-sock ]] || { echo "virtlogd did not start" >&2; exit 1; }
    LIBVIRT_LOG_OUTPUTS="3:file:/var/log/libvirt/libvirtd.log" libvirtd -d -l -p "$rd/libvirtd.pid"
  ' _ "$rd" "$st" "$start_virtlogd" || lab_die "$h: starting the daemons failed"
}

wait_host() {
  local h=$1 pid
  if ! lab_wait_libvirtd "$(uri_of "$h")" 90; then
    tail -n 20 "$(state_dir "$h")/log/libvirtd.log" >&2 2>/dev/null || true
    lab_die "$h: libvirtd did not answer on $(sock_of "$h") within 90 s (log: $(state_dir "$h")/log/libvirtd.log)"
  fi
  pid=$(lab_pid_alive "$(run_dir "$h")/libvirtd.pid" libvirtd) || lab_die "$h: libvirtd pidfile missing"
  [[ $(lab_pid_netns "$pid") == "$(netns_of "$h")" ]] || lab_die "$h: libvirtd pid $pid is not in netns $(netns_of "$h")"
  local uri
  uri=$(uri_of "$h")
  if ! lab_virsh "$uri" pool-info "$LAB_POOL_NAME" >/dev/null 2>&1; then
    lab_virsh "$uri" pool-define-as "$LAB_POOL_NAME" dir --target "$LAB_POOL_DIR" >/dev/null
  fi
  local info
  info=$(lab_virsh "$uri" pool-info "$LAB_POOL_NAME")
  grep -Eq '^State:\s+running' <<<"$info" ||
    lab_virsh "$uri" pool-start "$LAB_POOL_NAME" >/dev/null
  lab_log "$h: ready at $uri (netns $(netns_of "$h"), ${ADDR[$h]})"
}

stop_host() {
  local h=$1 ns rd st pid uri
  ns=$(netns_of "$h")
  rd=$(run_dir "$h")
  st=$(state_dir "$h")
  uri=$(uri_of "$h")
  if pid=$(lab_pid_alive "$rd/libvirtd.pid" libvirtd); then
    if [[ $(lab_pid_netns "$pid") == "$ns" ]]; then
      if answers "$h"; then
        lab_destroy_all "$uri" "$h"
      fi
      lab_stop_pidfile "$rd/libvirtd.pid" libvirtd 20
    else
      lab_log "$h: libvirtd pid $pid is not in netns $ns: leaving it alone"
    fi
  fi
  if pid=$(lab_pid_alive "$rd/virtlogd.pid" virtlogd) && [[ $(lab_pid_netns "$pid") == "$ns" ]]; then
    lab_stop_pidfile "$rd/virtlogd.pid" virtlogd 10
  fi
  lab_netns_delete "$ns"
  rm -rf "${st:?}/etc" "${st:?}/lib" "${st:?}/log" "${rd:?}"
}

cmd_start() {
  lab_require_root
  lab_apt_ensure "${LAB_APT_PACKAGES[@]}"
  lab_fix_kvm_perms
  "$LAB_SCRIPTS_DIR/build_guest.sh"
  setup_network
  local h
  for h in "${HOSTS[@]}"; do start_host "$h"; done
  # Both daemons probe QEMU (cold start) in parallel; wait for each.
  for h in "${HOSTS[@]}"; do wait_host "$h"; done
  lab_log "two hosts ready: $(uri_of h1) and $(uri_of h2)"
}

cmd_stop() {
  lab_require_root
  lab_may_stop two-hosts "${1:-}" || return 0
  local h
  local pids=()
  for h in "${HOSTS[@]}"; do
    stop_host "$h" &
    pids+=($!)
  done
  wait "${pids[@]}"
  # /run/kvmweb-lab/vnc belongs to the main lab host while it runs.
  if ! lab_pid_alive /run/libvirtd.pid libvirtd >/dev/null; then
    rmdir "$LAB_RUN_DIR/vnc" 2>/dev/null || true
  fi
  rmdir "$LAB_RUN_DIR" 2>/dev/null || true
  lab_netns_dir_cleanup
  lab_log "two hosts stopped"
}

cmd_status() {
  local h pid rc=0
  for h in "${HOSTS[@]}"; do
    if pid=$(lab_pid_alive "$(run_dir "$h")/libvirtd.pid" libvirtd) && answers "$h"; then
      echo "$h: running (libvirtd pid $pid, netns $(lab_pid_netns "$pid"), ${ADDR[$h]}, $(uri_of "$h"))"
    else
      echo "$h: not running"
      rc=3
    fi
  done
  return $rc
}

cmd_describe() {
  local h first=1
  printf '{"hosts": ['
  for h in "${HOSTS[@]}"; do
    ((first)) || printf ', '
    first=0
    printf '{"name": "%s", "uri": "%s", "netns": "%s", "address": "%s", "tcp_uri": "%s", "socket": "%s", "paths": {"/var/log/libvirt": "%s", "/var/lib/libvirt": "%s", "/run/libvirt": "%s", "/run/kvmweb-lab/vnc": "%s", "/etc/libvirt": "%s"}}' \
      "$h" "$(uri_of "$h")" "$(netns_of "$h")" "${ADDR[$h]}" "$(tcp_uri_of "$h")" "$(sock_of "$h")" \
      "$(state_dir "$h")/log" "$(state_dir "$h")/lib" "$(run_dir "$h")/run" "$(run_dir "$h")/vnc" "$(state_dir "$h")/etc"
  done
  printf ']}\n'
}

cd "$LAB_REPO_DIR"
case "${1:-}" in
  start) cmd_start ;;
  stop) cmd_stop "${2:-}" ;;
  status) cmd_status ;;
  describe) cmd_describe ;;
  *)
    echo "usage: $0 start|stop|status|describe" >&2
    exit 2
    ;;
esac
