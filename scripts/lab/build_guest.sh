#!/usr/bin/env bash
# Build the kvmweb lab tiny guest: a Debian cloud kernel plus a busybox
# initramfs with virtio modules, busybox acpid, udhcpc and ping, and qemu-guest-agent.
#
# Everything comes from Debian packages fetched with `apt-get download` and
# unpacked with `dpkg-deb -x` (nothing is installed on the host).
# Output: var/lab/guest/{vmlinuz,initrd.gz,build.stamp}. Rebuilds only when
# the inputs (this script, scripts/lab/guest/*, the downloaded .debs) change.
#
# Usage: scripts/lab/build_guest.sh [--force]
set -euo pipefail
# shellcheck source=scripts/lab/common.sh
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"

FORCE=0
[[ ${1:-} == --force ]] && FORCE=1

lab_require_root
lab_apt_ensure cpio gzip

OUT="$LAB_GUEST_DIR"
DEBS="$OUT/debs"
mkdir -p "$DEBS"

# Kernel modules the guest loads at boot (their dependencies are added).
MODULES=(virtio_pci virtio_console virtio_blk virtio_balloon virtio-rng
         virtio_net button evdev)

fetch_debs() {
  # Reuse downloaded .debs: only ask apt when one is missing.
  local have=0 pattern
  for pattern in 'linux-image-*-cloud-amd64_*.deb' 'busybox-static_*.deb' 'qemu-guest-agent_*.deb'; do
    [[ -n $(find "$DEBS" -maxdepth 1 -name "$pattern" -print -quit) ]] && have=$((have + 1))
  done
  ((have == 3)) && return 0

  if [[ -z $(apt-cache policy linux-image-cloud-amd64 2>/dev/null | awk '/Candidate:/ && $2 != "(none)"') ]]; then
    lab_log "apt package lists are empty: running apt-get update"
    timeout 600 apt-get update -q >&2 || lab_die "apt-get update failed"
  fi
  local kpkg
  kpkg=$(apt-cache depends linux-image-cloud-amd64 2>/dev/null |
    awk '/Depends: linux-image-[0-9]/ {print $2; exit}')
  [[ -n $kpkg ]] || lab_die "cannot resolve the kernel package of linux-image-cloud-amd64"
  lab_log "downloading busybox-static $kpkg qemu-guest-agent"
  rm -f "$DEBS"/*.deb
  # apt drops privileges to _apt for downloads: give it a directory it can write.
  local tmp
  tmp=$(mktemp -d)
  chmod 0777 "$tmp"
  (cd "$tmp" && timeout 600 apt-get download -q busybox-static "$kpkg" qemu-guest-agent >&2) ||
    { rm -rf "$tmp"; lab_die "apt-get download failed"; }
  mv "$tmp"/*.deb "$DEBS"/
  rm -rf "$tmp"
}

fetch_debs

stamp_inputs() {
  {
    cat "$LAB_SCRIPTS_DIR/build_guest.sh" "$LAB_SCRIPTS_DIR/common.sh"
    (cd "$LAB_SCRIPTS_DIR/guest" && sha256sum ./*)
    (cd "$DEBS" && find . -maxdepth 1 -name '*.deb' | LC_ALL=C sort)
    printf '%s\n' "${MODULES[@]}"
  } | sha256sum | cut -d' ' -f1
}
STAMP=$(stamp_inputs)
if ((FORCE == 0)) && [[ -f $OUT/vmlinuz && -f $OUT/initrd.gz && -f $OUT/build.stamp ]] &&
  [[ $(cat "$OUT/build.stamp") == "$STAMP" ]]; then
  lab_log "guest image is up to date ($OUT)"
  exit 0
fi

start=$SECONDS
lab_log "building the tiny guest in $OUT"
WORK=$(mktemp -d "${TMPDIR:-/tmp}/kvmweb-guest.XXXXXX")
trap 'rm -rf "$WORK"' EXIT
PKG="$WORK/pkg"
ROOT="$WORK/root"
mkdir -p "$PKG" "$ROOT"
for deb in "$DEBS"/*.deb; do
  dpkg-deb -x "$deb" "$PKG"
done

KVER=$(find "$PKG/lib/modules" -mindepth 1 -maxdepth 1 -printf "%f\n" | head -n1)
[[ -n $KVER && -f $PKG/boot/vmlinuz-$KVER ]] || lab_die "kernel not found in the unpacked packages"
MODSRC="$PKG/lib/modules/$KVER"

# Skeleton and busybox applets.
mkdir -p "$ROOT"/{bin,sbin,usr/bin,usr/sbin,etc,proc,sys,dev,run,tmp,root,var,lib64,mnt}
mkdir -p "$ROOT"/lib/x86_64-linux-gnu "$ROOT/usr/share/udhcpc" "$ROOT/etc/acpi/PWRF"
ln -s ../run "$ROOT/var/run"
install -m 0755 "$PKG/bin/busybox" "$ROOT/bin/busybox"
while read -r applet; do
  [[ -z $applet || $applet == bin/busybox ]] && continue
  [[ -e $ROOT/$applet || -L $ROOT/$applet ]] && continue
  mkdir -p "$ROOT/$(dirname "$applet")"
  ln -s /bin/busybox "$ROOT/$applet"
done < <("$ROOT/bin/busybox" --list-full)

# Kernel modules with their dependencies (read from each .ko's modinfo).
declare -A SEEN=()
ORDER=()
find_ko() { find "$MODSRC/kernel" -name "$1.ko" -o -name "$(tr '_-' '-_' <<<"$1").ko" | head -n1; }
add_module() {
  local m=$1 ko deps d
  [[ -n ${SEEN[$m]:-} ]] && return 0
  SEEN[$m]=1
  ko=$(find_ko "$m")
  [[ -n $ko ]] || lab_die "kernel module $m not found in $KVER"
  deps=$(tr '\0' '\n' <"$ko" | sed -n 's/^depends=//p' | head -n1)
  for d in ${deps//,/ }; do add_module "$d"; done
  ORDER+=("$ko")
}
for m in "${MODULES[@]}"; do add_module "$m"; done
for ko in "${ORDER[@]}"; do
  rel=${ko#"$MODSRC"/}
  install -D -m 0644 "$ko" "$ROOT/lib/modules/$KVER/$rel"
done
cp "$MODSRC"/modules.order "$MODSRC"/modules.builtin* "$ROOT/lib/modules/$KVER/" 2>/dev/null || true
"$ROOT/bin/busybox" depmod -b "$ROOT" "$KVER"
printf '%s\n' "${MODULES[@]}" >"$ROOT/etc/modules"

# qemu-guest-agent and the libraries it links against (found with ldd).
install -m 0755 "$PKG/usr/sbin/qemu-ga" "$ROOT/usr/sbin/qemu-ga"
ldd_out=$(ldd "$PKG/usr/sbin/qemu-ga")
if grep -q 'not found' <<<"$ldd_out"; then
  lab_die "qemu-ga needs libraries missing on this host: $(grep 'not found' <<<"$ldd_out" | tr '\n' ' ') (install qemu-system-x86 first)"
fi
while read -r lib; do
  [[ -n $lib && -e $lib ]] || continue
  mkdir -p "$ROOT/$(dirname "$lib")"
  cp -L "$lib" "$ROOT/$lib"
done < <(awk '/=> \// {print $3} /^\s*\/lib/ {print $1}' <<<"$ldd_out")

# Configuration, init scripts and helpers.
G="$LAB_SCRIPTS_DIR/guest"
install -m 0755 "$G/init" "$ROOT/init"
install -m 0644 "$G/inittab" "$ROOT/etc/inittab"
install -m 0755 "$G/rc.sh" "$ROOT/etc/rc.sh"
install -m 0755 "$G/rc.shutdown" "$ROOT/etc/rc.shutdown"
rm -f "$ROOT/sbin/shutdown"
install -m 0755 "$G/shutdown" "$ROOT/sbin/shutdown"
install -m 0755 "$G/power-button" "$ROOT/etc/acpi/PWRF/00000080"
install -m 0755 "$G/udhcpc.script" "$ROOT/usr/share/udhcpc/default.script"
install -m 0755 "$G/netwatch" "$ROOT/etc/netwatch.sh"
printf 'root::0:0:root:/root:/bin/sh\n' >"$ROOT/etc/passwd"
printf 'root:x:0:\n' >"$ROOT/etc/group"
printf 'export PATH=/sbin:/bin:/usr/sbin:/usr/bin\nexport PS1="\\h:\\w# "\n' >"$ROOT/etc/profile"

(cd "$ROOT" && find . -print0 | LC_ALL=C sort -z |
  cpio --null -o -H newc --quiet --owner=0:0) | gzip -6 >"$WORK/initrd.gz"
install -m 0644 "$PKG/boot/vmlinuz-$KVER" "$OUT/vmlinuz.new"
install -m 0644 "$WORK/initrd.gz" "$OUT/initrd.gz.new"
mv -f "$OUT/vmlinuz.new" "$OUT/vmlinuz"
mv -f "$OUT/initrd.gz.new" "$OUT/initrd.gz"
printf '%s\n' "$KVER" >"$OUT/kernel.version"
printf '%s\n' "$STAMP" >"$OUT/build.stamp"
lab_log "guest built in $((SECONDS - start)) s: kernel $KVER $(du -h "$OUT/vmlinuz" | cut -f1), initrd $(du -h "$OUT/initrd.gz" | cut -f1)"
