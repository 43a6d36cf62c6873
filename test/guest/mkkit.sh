#!/bin/bash
# Builds the guest kit for the siov guest tests into KITDIR, or reuses it:
#   vmlinux          the uncompressed kernel ELF of the host's Debian kernel
#   initramfs.cpio   uncompressed: busybox-static, virtio modules, fio and its
#                    libraries, blkop (static), /init and the guest helpers
#   blkop            the same helper built for the host, to check backend files
# Uncompressed kernel and cpio halve the boot time under TCG. The kit is
# rebuilt only when an input changes (a hash of them is kept in KITDIR/stamp);
# a lock makes concurrent callers wait for one build.
# Usage: mkkit.sh KITDIR     (env SIOV_GUEST_KERNEL=/boot/vmlinuz-X to pick one)
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
kit=${1:?usage: mkkit.sh KITDIR}
mkdir -p "$kit"
kit=$(cd "$kit" && pwd)

die() { echo "mkkit: $*" >&2; exit 1; }
skip() { echo "mkkit: SKIP: $*" >&2; exit 77; }

kernel=${SIOV_GUEST_KERNEL:-$(ls -1v /boot/vmlinuz-* 2>/dev/null | tail -n1 || true)}
[ -n "$kernel" ] && [ -r "$kernel" ] || skip "no readable kernel in /boot (install linux-image-amd64)"
kver=${kernel##*/vmlinuz-}
moddir=/lib/modules/$kver
[ -d "$moddir" ] || skip "no modules for kernel $kver in $moddir"
busybox=$(command -v busybox || true)
[ -n "$busybox" ] || skip "busybox not installed (busybox-static)"
case "$(LC_ALL=C ldd "$busybox" 2>&1 || true)" in
*"not a dynamic executable"*) ;;
*) skip "$busybox is not static (install busybox-static)" ;;
esac
fio=$(command -v fio || true)
[ -n "$fio" ] || skip "fio not installed"
command -v cpio >/dev/null || skip "cpio not installed"
command -v gcc >/dev/null || skip "gcc not installed"

modules="virtio_ring virtio virtio_pci_modern_dev virtio_pci_legacy_dev virtio_pci virtio_blk failover net_failover virtio_net qemu_fw_cfg"

inputs() {
	echo "kernel $kernel $(stat -c '%s %Y' "$kernel")"
	echo "busybox $(stat -L -c '%s %Y' "$busybox") fio $(stat -L -c '%s %Y' "$fio")"
	cat "$here/mkkit.sh" "$here/init" "$here/guest-lib.sh" "$here/blkop.c"
}
stamp=$(inputs | sha256sum | cut -d' ' -f1)

exec 9>"$kit/.lock"
flock -w 600 9 || die "timed out waiting for the lock on $kit"
if [ -f "$kit/stamp" ] && [ "$(cat "$kit/stamp")" = "$stamp" ] &&
	[ -f "$kit/vmlinux" ] && [ -f "$kit/initramfs.cpio" ] && [ -x "$kit/blkop" ]; then
	exit 0
fi
echo "mkkit: building the guest kit in $kit (kernel $kver)" >&2
rm -f "$kit/stamp"
tmp=$(mktemp -d "$kit/.build.XXXXXX")
trap 'rm -rf "$tmp"' EXIT

# The kernel: vmlinuz is a boot stub followed by an xz stream whose payload is
# the ELF vmlinux. Try every xz magic until one decompresses to an ELF.
extract_kernel() {
	local off
	command -v xz >/dev/null || return 1
	for off in $(LC_ALL=C grep -obUaP '\xfd7zXZ\x00' "$kernel" | cut -d: -f1); do
		tail -c +$((off + 1)) "$kernel" | xz -dc 2>/dev/null >"$tmp/vmlinux" || true
		if [ "$(head -c 4 "$tmp/vmlinux" | od -An -c | tr -d ' ')" = '177ELF' ]; then
			return 0
		fi
	done
	return 1
}
if ! extract_kernel; then
	# Not xz: let QEMU boot the compressed image, slower but it works.
	echo "mkkit: no xz ELF payload in $kernel (or no xz-utils); booting it compressed, slower" >&2
	cp "$kernel" "$tmp/vmlinux"
fi

root=$tmp/root
mkdir -p "$root"/{bin,sbin,usr/bin,usr/sbin,proc,sys,dev,tmp,lib/modules,etc}
cp "$busybox" "$root/bin/busybox"
for app in $("$busybox" --list); do
	[ -e "$root/bin/$app" ] || ln -s busybox "$root/bin/$app"
done
install -m 0755 "$here/init" "$root/init"
install -m 0644 "$here/guest-lib.sh" "$root/lib/siov-guest.sh"

for m in $modules; do
	src=$(find "$moddir/kernel" \( -name "$m.ko" -o -name "$m.ko.xz" -o -name "$m.ko.zst" -o -name "$m.ko.gz" \) -print -quit)
	[ -n "$src" ] || die "module $m not found under $moddir"
	case "$src" in
	*.xz) xz -dc "$src" >"$root/lib/modules/$m.ko" ;;
	*.zst) zstd -qdc "$src" >"$root/lib/modules/$m.ko" ;;
	*.gz) gzip -dc "$src" >"$root/lib/modules/$m.ko" ;;
	*) cp "$src" "$root/lib/modules/$m.ko" ;;
	esac
done

gcc -static -O2 -Wall -Wextra -o "$root/bin/blkop" "$here/blkop.c"
gcc -O2 -Wall -Wextra -o "$tmp/blkop" "$here/blkop.c"

# fio and every library the dynamic loader will ask for, at the same paths,
# stripped to keep the cpio (and the guest's RAM) small.
install -D -m 0755 "$fio" "$root/usr/bin/fio"
strip -s "$root/usr/bin/fio" 2>/dev/null || true
ldd "$fio" | awk '/=> \//{print $3} /^\t\/[^ ]+ \(/{print $1}' | while read -r lib; do
	dst=$root$lib
	mkdir -p "$(dirname "$dst")"
	cp -L "$lib" "$dst"
	strip --strip-unneeded "$dst" 2>/dev/null || true
done

(cd "$root" && find . -mindepth 1 | LC_ALL=C sort | cpio --quiet -o -H newc -R 0:0) >"$tmp/initramfs.cpio"

# /dev/console must exist before /init runs (the kernel opens it for PID 1's
# stdio). A device node needs root to create in the staging tree, so write its
# newc entry directly and append it as a second archive: the kernel unpacks
# concatenated archives in order.
newc_entry() { # NAME MODE RDEV_MAJOR RDEV_MINOR
	local name=$1 hdr pad
	hdr=$(printf '070701%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X' \
		0 "$2" 0 0 1 0 0 0 0 "$3" "$4" $((${#name} + 1)) 0)
	printf '%s%s\0' "$hdr" "$name"
	pad=$(((4 - (110 + ${#name} + 1) % 4) % 4))
	[ $pad = 0 ] || head -c $pad /dev/zero
}
{
	newc_entry dev/console $((0020600)) 5 1
	newc_entry TRAILER!!! 0 0 0
} >>"$tmp/initramfs.cpio"

mv "$tmp/vmlinux" "$kit/vmlinux"
mv "$tmp/initramfs.cpio" "$kit/initramfs.cpio"
mv "$tmp/blkop" "$kit/blkop"
echo "$stamp" >"$kit/stamp"
echo "mkkit: kit ready: $(du -sh "$kit/initramfs.cpio" | cut -f1) initramfs" >&2
