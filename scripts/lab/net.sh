#!/usr/bin/env bash
# The lab host's networking, for the network tests (issue 8). Nothing here
# touches the main network namespace:
#
#   netns kvmweb-up  (the "upstream LAN": the router and its DHCP server)
#     lan0 198.51.100.1/24, dnsmasq handing out 198.51.100.100-199
#       |  veth pair
#   netns kvmweb-lab (the lab host, where libvirtd runs)
#     up0  the host's "physical NIC", enslaved to
#     br0  the public bridge, 198.51.100.2/24, default route via 198.51.100.1
#          (so NAT networks reach "upstream"; ip_forward is on in kvmweb-lab only)
#     up1  a second "physical NIC" on the upstream LAN, for macvtap networks: a veth
#          whose peer up1p is a port of br0 (up0 itself cannot carry macvtap: a
#          bridge port refuses it with EBUSY). Its guests sit on the upstream LAN.
#     ovsbr0  an Open vSwitch bridge on the userspace datapath
#          (datapath_type=netdev: this kernel has no openvswitch module), served by
#          ovsdb-server and ovs-vswitchd started here with their default paths,
#          since libvirt runs ovs-vsctl on the default database socket.
#
# Usage: scripts/lab/net.sh up|down|status|describe
#   up        create what is missing (idempotent); needs the kvmweb-lab netns
#   down      remove all of it (the kvmweb-lab namespace itself stays)
#   status    print what exists (exit 0 when all of it runs, 3 otherwise)
#   describe  print the names and addresses as JSON (tests/lab/network.py)
# lab.sh sources this file and calls lab_net_up / lab_net_down.
# shellcheck source=scripts/lab/common.sh
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"

NET_LAB_NETNS="${KVMWEB_LAB_NETNS:-kvmweb-lab}"
NET_UP_NETNS="kvmweb-up"
NET_UPLINK="up0"       # in kvmweb-lab: plays the host's physical NIC
NET_UPLINK_PEER="lan0" # in kvmweb-up
NET_BRIDGE="br0"
NET_MACVTAP_NIC="up1"       # in kvmweb-lab: the lower device of macvtap networks
NET_MACVTAP_NIC_PEER="up1p" # in kvmweb-lab: its link to the LAN, a port of br0
NET_OVS_BRIDGE="ovsbr0"
NET_UPSTREAM_PREFIX="198.51.100" # TEST-NET-2: exists nowhere else
NET_UPSTREAM_IP="$NET_UPSTREAM_PREFIX.1"
NET_HOST_IP="$NET_UPSTREAM_PREFIX.2"
NET_UPSTREAM_DHCP_START="$NET_UPSTREAM_PREFIX.100"
NET_UPSTREAM_DHCP_END="$NET_UPSTREAM_PREFIX.199"
NET_RUN_DIR="$LAB_RUN_DIR/upstream"
NET_DNSMASQ_PID="$NET_RUN_DIR/dnsmasq.pid"
NET_DNSMASQ_LEASES="$NET_RUN_DIR/dnsmasq.leases"
NET_DNSMASQ_LOG="$NET_RUN_DIR/dnsmasq.log"
# Open vSwitch's default paths (what ovs-vsctl, and so libvirt, use).
NET_OVS_RUN="/var/run/openvswitch"
NET_OVS_DB="/etc/openvswitch/conf.db"
NET_OVS_SCHEMA="/usr/share/openvswitch/vswitch.ovsschema"
NET_OVSDB_PID="$NET_OVS_RUN/ovsdb-server.pid"
NET_VSWITCHD_PID="$NET_OVS_RUN/ovs-vswitchd.pid"
NET_OVS_LOG_DIR="/var/log/openvswitch"

net_in_lab() { ip netns exec "$NET_LAB_NETNS" "$@"; }
net_ovs_vsctl() { timeout 30 ovs-vsctl --timeout=20 "$@"; }

# The upstream namespace, the veth pair between it and the lab, and br0 over up0.
net_upstream_up() {
  lab_netns_exists "$NET_LAB_NETNS" || lab_die "netns $NET_LAB_NETNS does not exist (scripts/lab/lab.sh start creates it)"
  lab_netns_ensure "$NET_UP_NETNS"
  local have_lab=0 have_up=0
  ip -n "$NET_LAB_NETNS" link show "$NET_UPLINK" >/dev/null 2>&1 && have_lab=1
  ip -n "$NET_UP_NETNS" link show "$NET_UPLINK_PEER" >/dev/null 2>&1 && have_up=1
  if ((have_lab == 0 || have_up == 0)); then
    ip -n "$NET_LAB_NETNS" link del "$NET_UPLINK" 2>/dev/null || true
    ip -n "$NET_UP_NETNS" link del "$NET_UPLINK_PEER" 2>/dev/null || true
    lab_log "creating veth $NET_UPLINK ($NET_LAB_NETNS) <-> $NET_UPLINK_PEER ($NET_UP_NETNS)"
    ip -n "$NET_LAB_NETNS" link add "$NET_UPLINK" type veth peer name "$NET_UPLINK_PEER" netns "$NET_UP_NETNS"
  fi
  ip -n "$NET_UP_NETNS" addr replace "$NET_UPSTREAM_IP/24" dev "$NET_UPLINK_PEER"
  ip -n "$NET_UP_NETNS" link set "$NET_UPLINK_PEER" up

  if ! ip -n "$NET_LAB_NETNS" link show "$NET_BRIDGE" >/dev/null 2>&1; then
    lab_log "creating bridge $NET_BRIDGE over $NET_UPLINK in netns $NET_LAB_NETNS"
    ip -n "$NET_LAB_NETNS" link add "$NET_BRIDGE" type bridge stp_state 0 forward_delay 0
  fi
  ip -n "$NET_LAB_NETNS" link set "$NET_UPLINK" master "$NET_BRIDGE"
  ip -n "$NET_LAB_NETNS" link set "$NET_UPLINK" up
  ip -n "$NET_LAB_NETNS" addr replace "$NET_HOST_IP/24" dev "$NET_BRIDGE"
  ip -n "$NET_LAB_NETNS" link set "$NET_BRIDGE" up
  ip -n "$NET_LAB_NETNS" route replace default via "$NET_UPSTREAM_IP" dev "$NET_BRIDGE"
  # NAT and routed networks forward through the lab host (libvirt turns it on too).
  net_in_lab sysctl -q -w net.ipv4.ip_forward=1
}

net_macvtap_nic_up() {
  if ! ip -n "$NET_LAB_NETNS" link show "$NET_MACVTAP_NIC" >/dev/null 2>&1 ||
    ! ip -n "$NET_LAB_NETNS" link show "$NET_MACVTAP_NIC_PEER" >/dev/null 2>&1; then
    ip -n "$NET_LAB_NETNS" link del "$NET_MACVTAP_NIC" 2>/dev/null || true
    ip -n "$NET_LAB_NETNS" link del "$NET_MACVTAP_NIC_PEER" 2>/dev/null || true
    lab_log "creating veth $NET_MACVTAP_NIC <-> $NET_MACVTAP_NIC_PEER (port of $NET_BRIDGE) in netns $NET_LAB_NETNS"
    ip -n "$NET_LAB_NETNS" link add "$NET_MACVTAP_NIC" type veth peer name "$NET_MACVTAP_NIC_PEER"
  fi
  # A bridge takes its lowest port MAC: pin br0 to up0's, so the upstream's ARP entry stays right.
  ip -n "$NET_LAB_NETNS" link set "$NET_BRIDGE" address "$(net_in_lab cat "/sys/class/net/$NET_UPLINK/address")"
  ip -n "$NET_LAB_NETNS" link set "$NET_MACVTAP_NIC_PEER" master "$NET_BRIDGE"
  ip -n "$NET_LAB_NETNS" link set "$NET_MACVTAP_NIC_PEER" up
  ip -n "$NET_LAB_NETNS" link set "$NET_MACVTAP_NIC" up
}

net_dnsmasq_up() {
  local pid
  if pid=$(lab_pid_alive "$NET_DNSMASQ_PID" dnsmasq); then
    [[ $(lab_pid_netns "$pid") == "$NET_UP_NETNS" ]] ||
      lab_die "dnsmasq pid $pid from $NET_DNSMASQ_PID is not in netns $NET_UP_NETNS"
    return 0
  fi
  mkdir -p "$NET_RUN_DIR"
  rm -f "$NET_DNSMASQ_PID"
  : >"$NET_DNSMASQ_LEASES"
  lab_log "starting the upstream DHCP server (dnsmasq in netns $NET_UP_NETNS)"
  # No DNS (port 0): the upstream LAN only hands out addresses and a default route.
  ip netns exec "$NET_UP_NETNS" dnsmasq \
    --conf-file=/dev/null --port=0 --user=root --group=root \
    --interface="$NET_UPLINK_PEER" --bind-interfaces --except-interface=lo \
    --dhcp-range="$NET_UPSTREAM_DHCP_START,$NET_UPSTREAM_DHCP_END,255.255.255.0,1h" \
    --dhcp-option=option:router,"$NET_UPSTREAM_IP" --dhcp-authoritative \
    --dhcp-leasefile="$NET_DNSMASQ_LEASES" --pid-file="$NET_DNSMASQ_PID" \
    --log-dhcp --log-facility="$NET_DNSMASQ_LOG"
  local deadline=$((SECONDS + 10))
  until pid=$(lab_pid_alive "$NET_DNSMASQ_PID" dnsmasq); do
    ((SECONDS < deadline)) || lab_die "the upstream dnsmasq did not start (log: $NET_DNSMASQ_LOG)"
    sleep 0.1
  done
}

# Dies when an Open vSwitch daemon runs outside the lab: the lab will not share one.
net_ovs_check_foreign() {
  local name pid ns
  for name in ovsdb-server ovs-vswitchd; do
    for pid in $(pgrep -x "$name" || true); do
      ns=$(lab_pid_netns "$pid")
      [[ $ns == "$NET_LAB_NETNS" ]] ||
        lab_die "$name pid $pid runs in network namespace '${ns:-main}', not started by the lab; stop it first"
    done
  done
}

net_ovs_up() {
  net_ovs_check_foreign
  mkdir -p "$NET_OVS_RUN" "$NET_OVS_LOG_DIR" "$(dirname "$(readlink -f "$NET_OVS_DB")")"
  if [[ ! -s $NET_OVS_DB ]]; then
    lab_log "creating the Open vSwitch database $NET_OVS_DB"
    ovsdb-tool create "$NET_OVS_DB" "$NET_OVS_SCHEMA"
  elif ovsdb-tool needs-conversion "$NET_OVS_DB" "$NET_OVS_SCHEMA" | grep -qx yes; then
    ovsdb-tool convert "$NET_OVS_DB" "$NET_OVS_SCHEMA"
  fi
  if ! lab_pid_alive "$NET_OVSDB_PID" ovsdb-server >/dev/null; then
    lab_log "starting ovsdb-server in netns $NET_LAB_NETNS"
    net_in_lab ovsdb-server "$NET_OVS_DB" \
      --remote="punix:$NET_OVS_RUN/db.sock" --remote=db:Open_vSwitch,Open_vSwitch,manager_options \
      --pidfile="$NET_OVSDB_PID" --detach -vconsole:off --log-file="$NET_OVS_LOG_DIR/ovsdb-server.log"
    net_ovs_vsctl --no-wait init
  fi
  if ! lab_pid_alive "$NET_VSWITCHD_PID" ovs-vswitchd >/dev/null; then
    lab_log "starting ovs-vswitchd in netns $NET_LAB_NETNS (userspace datapath)"
    net_in_lab ovs-vswitchd "unix:$NET_OVS_RUN/db.sock" \
      --pidfile="$NET_VSWITCHD_PID" --detach -vconsole:off --log-file="$NET_OVS_LOG_DIR/ovs-vswitchd.log"
  fi
  net_ovs_vsctl --may-exist add-br "$NET_OVS_BRIDGE" -- set bridge "$NET_OVS_BRIDGE" datapath_type=netdev
  local deadline=$((SECONDS + 20))
  until ip -n "$NET_LAB_NETNS" link show "$NET_OVS_BRIDGE" >/dev/null 2>&1; do
    ((SECONDS < deadline)) || lab_die "ovs-vswitchd made no $NET_OVS_BRIDGE device (log: $NET_OVS_LOG_DIR/ovs-vswitchd.log)"
    sleep 0.1
  done
  ip -n "$NET_LAB_NETNS" link set "$NET_OVS_BRIDGE" up
}

lab_net_up() {
  lab_require_root
  # iputils-ping: the tests ping guests from the upstream namespace (routed networks).
  lab_apt_ensure dnsmasq-base openvswitch-switch iputils-ping
  net_upstream_up
  net_macvtap_nic_up
  net_dnsmasq_up
  net_ovs_up
  lab_log "lab networks ready: $NET_BRIDGE over $NET_UPLINK, macvtap NIC $NET_MACVTAP_NIC (upstream $NET_UPSTREAM_IP in netns $NET_UP_NETNS), OVS bridge $NET_OVS_BRIDGE"
}

# Stop a daemon from its pidfile, only when it runs in netns $3.
net_stop_in() {
  local pidfile=$1 name=$2 ns=$3 pid
  if pid=$(lab_pid_alive "$pidfile" "$name"); then
    if [[ $(lab_pid_netns "$pid") == "$ns" ]]; then
      lab_stop_pidfile "$pidfile" "$name" 10
    else
      lab_log "$name pid $pid is not in netns $ns: leaving it alone"
    fi
  fi
}

lab_net_down() {
  lab_require_root
  if [[ -S $NET_OVS_RUN/db.sock ]] && lab_pid_alive "$NET_OVSDB_PID" ovsdb-server >/dev/null; then
    # Its ports (libvirt's taps) go with it; the database then holds no lab state.
    net_ovs_vsctl --if-exists del-br "$NET_OVS_BRIDGE" || true
  fi
  net_stop_in "$NET_VSWITCHD_PID" ovs-vswitchd "$NET_LAB_NETNS"
  net_stop_in "$NET_OVSDB_PID" ovsdb-server "$NET_LAB_NETNS"
  # ovs-vswitchd's userspace datapath leaves its tap devices behind when killed.
  if lab_netns_exists "$NET_LAB_NETNS"; then
    ip -n "$NET_LAB_NETNS" link del "$NET_OVS_BRIDGE" 2>/dev/null || true
    ip -n "$NET_LAB_NETNS" link del ovs-netdev 2>/dev/null || true
    ip -n "$NET_LAB_NETNS" link del "$NET_MACVTAP_NIC" 2>/dev/null || true
    ip -n "$NET_LAB_NETNS" link del "$NET_BRIDGE" 2>/dev/null || true
    ip -n "$NET_LAB_NETNS" link del "$NET_UPLINK" 2>/dev/null || true
  fi
  net_stop_in "$NET_DNSMASQ_PID" dnsmasq "$NET_UP_NETNS"
  rm -rf "$NET_RUN_DIR"
  lab_netns_delete "$NET_UP_NETNS"
  lab_netns_dir_cleanup
  lab_log "lab networks removed"
}

lab_net_status() {
  local rc=0 pid name pidfile
  if lab_netns_exists "$NET_UP_NETNS"; then echo "netns $NET_UP_NETNS: present"; else
    echo "netns $NET_UP_NETNS: absent"
    rc=3
  fi
  if ip -n "$NET_LAB_NETNS" -br addr show "$NET_BRIDGE" 2>/dev/null; then :; else
    echo "$NET_BRIDGE: absent"
    rc=3
  fi
  if ip -n "$NET_LAB_NETNS" -br link show "$NET_MACVTAP_NIC" 2>/dev/null; then :; else
    echo "$NET_MACVTAP_NIC: absent"
    rc=3
  fi
  for name in dnsmasq ovsdb-server ovs-vswitchd; do
    case $name in
      dnsmasq) pidfile=$NET_DNSMASQ_PID ;;
      ovsdb-server) pidfile=$NET_OVSDB_PID ;;
      ovs-vswitchd) pidfile=$NET_VSWITCHD_PID ;;
    esac
    if pid=$(lab_pid_alive "$pidfile" "$name"); then
      echo "$name: pid $pid (netns '$(lab_pid_netns "$pid")')"
    else
      echo "$name: not running"
      rc=3
    fi
  done
  if lab_pid_alive "$NET_OVSDB_PID" ovsdb-server >/dev/null; then
    echo "ovs bridges: $(net_ovs_vsctl list-br | tr '\n' ' ')"
  fi
  return $rc
}

lab_net_describe() {
  printf '{"lab_netns": "%s", "upstream_netns": "%s", "uplink": "%s", "bridge": "%s", "macvtap_nic": "%s", "ovs_bridge": "%s", ' \
    "$NET_LAB_NETNS" "$NET_UP_NETNS" "$NET_UPLINK" "$NET_BRIDGE" "$NET_MACVTAP_NIC" "$NET_OVS_BRIDGE"
  printf '"upstream_ip": "%s", "host_ip": "%s", "prefix": 24, "upstream_dhcp": ["%s", "%s"], "upstream_leases": "%s"}\n' \
    "$NET_UPSTREAM_IP" "$NET_HOST_IP" "$NET_UPSTREAM_DHCP_START" "$NET_UPSTREAM_DHCP_END" "$NET_DNSMASQ_LEASES"
}

if [[ ${BASH_SOURCE[0]} == "$0" ]]; then
  set -euo pipefail
  case "${1:-}" in
    up) lab_net_up ;;
    down) lab_net_down ;;
    status) lab_net_status ;;
    describe) lab_net_describe ;;
    *)
      echo "usage: $0 up|down|status|describe" >&2
      exit 2
      ;;
  esac
fi
