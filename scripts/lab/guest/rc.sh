#!/bin/sh
# System start of the kvmweb lab tiny guest. Ends by printing the boot marker.
export PATH=/sbin:/bin:/usr/sbin:/usr/bin
MARKER="KVMWEB-LAB-GUEST-BOOTED"

name=tiny
read -r cmdline < /proc/cmdline
for arg in $cmdline; do
  case "$arg" in
    kvmweb.name=*) name="${arg#kvmweb.name=}" ;;
  esac
done
hostname "$name"
echo "$name" > /etc/hostname

# Kernel modules listed at build time (dependencies resolved by modprobe).
while read -r mod; do
  [ -n "$mod" ] && modprobe "$mod" 2>/dev/null
done < /etc/modules

ip link set lo up

# ACPI power button -> /etc/acpi/PWRF/00000080 -> poweroff.
acpid -c /etc/acpi -l /run/acpid.log

# Guest agent on the virtio port named org.qemu.guest_agent.0.
ga_dev=""
i=0
while [ $i -lt 50 ]; do
  for p in /sys/class/virtio-ports/*; do
    [ -r "$p/name" ] || continue
    if [ "$(cat "$p/name")" = "org.qemu.guest_agent.0" ] && [ -e "/dev/${p##*/}" ]; then
      ga_dev="/dev/${p##*/}"
    fi
  done
  [ -n "$ga_dev" ] && break
  # No virtio-serial controller at all: do not wait.
  [ -d /sys/class/virtio-ports ] || [ $i -lt 10 ] || break
  i=$((i + 1))
  usleep 100000
done
if [ -n "$ga_dev" ]; then
  qemu-ga -d -m virtio-serial -p "$ga_dev" -f /run/qemu-ga.pid -t /run
  ga_state="qemu-ga on $ga_dev"
else
  ga_state="no guest agent channel"
fi

# DHCP on every NIC, now and hot-plugged later, in the background: boot does not wait for
# leases. Each NIC's address is printed on the serial console (KVMWEB-NET ...).
/etc/netwatch.sh </dev/null >/dev/null 2>&1 &

disks=""
for b in /sys/block/*; do
  case "${b##*/}" in ram*|loop*|"*") ;; *) disks="$disks${b##*/} " ;; esac
done
uptime_s=$(cut -d' ' -f1 /proc/uptime)

# Something visible on the VGA screen (tty1) for the dashboard console.
{
  printf '\033[2J\033[H'
  echo "=============================================="
  echo "  kvmweb lab guest: $name"
  echo "=============================================="
  echo "  kernel: $(uname -r)"
  echo "  disks:  ${disks:-none}"
  echo "  agent:  $ga_state"
  echo "  booted in ${uptime_s}s"
  echo
  echo "  $MARKER name=$name"
  echo
} > /dev/tty1 2>/dev/null

echo "$MARKER name=$name uptime=${uptime_s} disks=${disks} agent=${ga_dev:-none}" > /dev/ttyS0
