#!/bin/bash
# The libvirt recipe (docs/migration.md) against a real libvirtd from
# Debian's packages: a domain with two vhostuser disks on siovd VDEVs, no
# `queues` (QEMU's default: one queue per vCPU, 2 vCPUs), memfd shared memory,
# reconnect, <acpi/> for the direct-kernel guest to see fw_cfg.  siovd runs
# with --socket-group kvm --socket-mode 0660 so libvirt's QEMU (user
# libvirt-qemu) can connect.  The guest does crc32c-verified fio on both
# disks; the host checks the data in the backend file.  When no libvirtd
# runs, the test starts virtlogd and libvirtd itself and stops them by pid.
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/migrate-lib.sh"
[ "${SIOV_GUEST_BACKEND:-siovd}" = siovd ] || skip "the libvirt recipe is siovd's"
command -v libvirtd >/dev/null && command -v virsh >/dev/null || skip "libvirtd/virsh not installed (libvirt-daemon-system, libvirt-clients)"
id libvirt-qemu >/dev/null 2>&1 || skip "no libvirt-qemu user (libvirt-daemon-system not configured)"
[ "$(id -u)" = 0 ] || skip "starting libvirtd needs root"
setup "$@"
VIRSH=(timeout 60 virsh -q -c qemu:///system)
DOM=siov-test-$$

start_libvirt() {
	if [ -S /run/libvirt/libvirt-sock ] && "${VIRSH[@]}" version >/dev/null 2>&1; then
		log "using the running libvirtd"
		return
	fi
	pgrep -x virtlogd >/dev/null || { virtlogd >>"$WORK/virtlogd.log" 2>&1 & PIDS+=($!); }
	libvirtd >>"$WORK/libvirtd.log" 2>&1 &
	PIDS+=($!)
	wait_for_path /run/libvirt/libvirt-sock 30 $!
	local i=0
	until "${VIRSH[@]}" version >/dev/null 2>&1; do
		i=$((i + 1))
		[ $i -le 100 ] || die "libvirtd does not answer: $(tail -5 "$WORK/libvirtd.log")"
		sleep 0.1
	done
	log "started libvirtd"
}

# libvirt's QEMU runs as libvirt-qemu: it must reach the sockets and read the files.
chmod 0755 "$WORK"
disk=$WORK/disk.img
W=$((32 * MiB))
truncate -s $((MiB + 2 * W)) "$disk"
SIOV_GUEST_SIOVD_ARGS="--socket-group kvm --socket-mode 0660" side_start A
mkdir -p "$WORK/side-A"
chmod 0755 "$WORK/side-A"
side_vdev A v0 "$disk" $MiB $W
side_vdev A v1 "$disk" $((MiB + W)) $W
for v in v0 v1; do
	[ "$(stat -c '%G %a' "${VDEV_SOCK[A/$v]}")" = "kvm 660" ] || die "socket ${VDEV_SOCK[A/$v]} is not kvm 0660: $(stat -c '%G %a' "${VDEV_SOCK[A/$v]}")"
done
start_libvirt

guest_script lv MiB=$MiB <<'G'
wait_disks 2
for d in vda vdb; do
	fill $d 0 $((4 * MiB)) 60
	fio --name=$d --filename=/dev/$d --ioengine=libaio --iodepth=8 --direct=1 --rw=randwrite \
		--bssplit=4k/60:16k/30:64k/10 --offset=$((8 * MiB)) --size=$((16 * MiB)) --io_size=$((4 * MiB)) \
		--verify=crc32c --verify_fatal=1 --verify_backlog=64 --eta=never --output=/tmp/fio.out ||
		{ cat /tmp/fio.out; fail "fio on $d failed"; }
	check $d 0 $((4 * MiB)) 60
done
say "two vhostuser disks, verified writes on both"
G
chmod 0644 "$WORK/lv.guest.sh"
cat >"$WORK/dom.xml" <<XML
<domain type='$([ "$ACCEL" = kvm ] && echo kvm || echo qemu)'>
  <name>$DOM</name>
  <memory unit='MiB'>512</memory>
  <vcpu>2</vcpu>
  <memoryBacking><source type='memfd'/><access mode='shared'/></memoryBacking>
  <sysinfo type='fwcfg'><entry name='opt/test' file='$WORK/lv.guest.sh'/></sysinfo>
  <os>
    <type arch='x86_64' machine='pc'>hvm</type>
    <kernel>$KIT/vmlinux</kernel>
    <initrd>$KIT/initramfs.cpio</initrd>
    <cmdline>console=ttyS0 quiet panic=-1 oops=panic no_timer_check</cmdline>
  </os>
  <features><acpi/></features>
  <on_poweroff>destroy</on_poweroff>
  <on_reboot>destroy</on_reboot>
  <devices>
    <disk type='vhostuser' device='disk'>
      <driver name='qemu' type='raw'/>
      <source type='unix' path='${VDEV_SOCK[A/v0]}'><reconnect enabled='yes' timeout='1'/></source>
      <target dev='vda' bus='virtio'/>
    </disk>
    <disk type='vhostuser' device='disk'>
      <driver name='qemu' type='raw'/>
      <source type='unix' path='${VDEV_SOCK[A/v1]}'><reconnect enabled='yes' timeout='1'/></source>
      <target dev='vdb' bus='virtio'/>
    </disk>
    <serial type='pty'><log file='$WORK/lv.console' append='off'/><target port='0'/></serial>
    <memballoon model='none'/>
  </devices>
</domain>
XML
trap '"${VIRSH[@]}" destroy "$DOM" >/dev/null 2>&1 || true; cleanup' EXIT
"${VIRSH[@]}" create "$WORK/dom.xml" >/dev/null 2>"$WORK/virsh.err" || die "virsh create failed: $(cat "$WORK/virsh.err")"
log "domain $DOM started by libvirtd"
i=0
while "${VIRSH[@]}" domstate "$DOM" >/dev/null 2>&1; do
	i=$((i + 1))
	[ $i -le 1800 ] || die "domain $DOM did not finish within 180 s: $(tail -3 "$WORK/lv.console")"
	sleep 0.1
done
grep -q '^SIOV-TEST-PASS' "$WORK/lv.console" || die "guest: $(grep -m1 'SIOV-TEST-FAIL' "$WORK/lv.console" || tail -3 "$WORK/lv.console")"
side_use A
for v in v0 v1; do
	nq=$(stats $v | jq '[.queues[] | select(.requests > 0)] | length')
	[ "$nq" -ge 1 ] || die "$v served nothing: $(stats $v)"
	[ "$(vstat $v .errors)" = 0 ] || die "$v: errors: $(stats $v)"
done
log "libvirt's QEMU started $(stats v0 | jq '.queues | length') queue(s) per disk with no queues attribute"
file_check "$disk" $MiB $((4 * MiB)) 60 0
file_check "$disk" $((MiB + W)) $((4 * MiB)) 60 0
side_stop A
