#!/bin/bash
# Live migration between two siovd instances on one file (two hosts sharing
# storage), under a guest running fio crc32c-verified random writes, with QMP
# `migrate` to a QEMU started with -incoming:
#   1. A -> B cancelled halfway: the guest goes on on A, A's logging is off;
#   2. A -> B while siovd B is restarted before the switch-over;
#   3. siovd A restarted (the guest is on B), then B -> A: back and forth.
# The guest finishes on A with no I/O error and a clean verify; the host finds
# the data written before the first migration in the file; no VDEV broke.
# The VDEVs are created without --queues and QEMU is started without
# num-queues on a 2-vCPU guest: QEMU's default of one queue per vCPU.
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/migrate-lib.sh"
setup "$@"
[ "$BACKEND" = siovd ] || skip "the migration scenarios restart siovd; bench/migrate.sh compares with qsd"

disk=$WORK/disk.img
OFF=$MiB
W=$((32 * MiB))

side_start A
side_start B
side_vdev A v0 "$disk" $OFF $W
side_vdev B v0 "$disk" $OFF $W
migrate_guest_script mig

vm_start g1 A v0 mig
vm_wait_marker g1 SIOV-IO-RUNNING 90
vm_wait_requests A v0 300 60
side_use A
nq=$(stats v0 | jq '[.queues[] | select(.requests > 0 or .engine >= 0)] | length')
[ "$nq" = 2 ] || die "a 2-vCPU guest with QEMU's default num-queues should use 2 queues, vdev_stats shows $nq: $(stats v0)"
log "default VDEV, default num-queues: the guest runs on 2 queues"

# 1. Cancelled halfway: the source keeps running, logging off again.
vm_start g2 B v0 mig incoming
vm_migrate g1 g2 cancel_after g1 1
[ "$MIG_STATUS" = cancelled ] || die "the migration was not cancelled: $MIG_STATUS"
vm_quit g2
side_use A
i=0
until [ "$(vstat v0 '.dirty_logging | tostring')" = false ]; do
	i=$((i + 1))
	[ $i -le 100 ] || die "dirty logging still on on A 10 s after the cancel: $(stats v0)"
	sleep 0.1
done
vm_wait_requests A v0 200 30
log "cancelled: the guest goes on on A, dirty logging off"

# 2. A -> B, siovd B restarted before the switch-over.
vm_start g2 B v0 mig incoming
vm_migrate g1 g2 side_restart B
vm_quit g1
vm_wait_requests B v0 200 60
side_use A
[ "$(vstat v0 '.connected | tostring')" = false ] || die "the source QEMU quit but A's VDEV is still connected"
[ "$(vstat v0 '.dirty_logging | tostring')" = false ] || die "A's VDEV still logs after the source QEMU quit"
t1=$MIG_TOTAL_MS d1=$MIG_DOWNTIME_MS

# 3. siovd A restarted while the guest is on B, then back to A.
side_restart A
vm_start g3 A v0 mig incoming
vm_migrate g2 g3
vm_quit g2
vm_wait_requests A v0 200 60
log "back on A: A -> B ($t1 ms, downtime $d1 ms) -> A ($MIG_TOTAL_MS ms, downtime $MIG_DOWNTIME_MS ms)"

stop_guest_io "$disk" $OFF
vm_wait_marker g3 '^SIOV-TEST-PASS' 180
grep -q 'SIOV-ROUND' "$WORK/g3.console" || die "no fio round finished on A after the migrations"
file_check "$disk" $OFF $((8 * MiB)) 50 0
for x in A B; do
	side_use $x
	[ "$(vstat v0 .errors)" = 0 ] || die "side $x: I/O errors: $(stats v0)"
	[ "$(vstat v0 .state)" != broken ] || die "side $x: VDEV broken: $(stats v0)"
done
vm_quit g3
side_stop A
side_stop B
