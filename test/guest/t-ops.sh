#!/bin/bash
# Queues and commands: a 2-queue VDEV on a 2-CPU guest gets I/O on both
# queues when both CPUs write; flush reaches the back end; discard and
# write-zeroes leave zeros in the guest and in the backend file and nothing
# else changed around them.
. "$(dirname "$0")/lib.sh"
setup "$@"

disk=$WORK/disk.img
V_OFF=$((8 * MiB)) V_SIZE=$((64 * MiB))
D=$((40 * MiB))      # discard area: 4 MiB pattern, the middle 2 MiB discarded
Z=$((48 * MiB))      # write-zeroes area: 4 MiB pattern, [Z+1M+512, +2M-1024) zeroed
ZOFF=$((Z + MiB + 512)) ZLEN=$((2 * MiB - 1024))

be_start
be_backend b0 "$disk" $((128 * MiB))
file_fill "$disk" 0 $V_OFF 80
file_fill "$disk" $((V_OFF + V_SIZE)) $MiB 81
be_vdev v0 b0 $V_OFF $V_SIZE 2
be_ready

guest_script ops V_SIZE=$V_SIZE D=$D Z=$Z ZOFF=$ZOFF ZLEN=$ZLEN MiB=$MiB <<'G'
wait_disks 1
expect_size vda $V_SIZE
nq=$(ls -d /sys/block/vda/mq/* | wc -l)
[ "$nq" = 2 ] || fail "vda has $nq hardware queues, want 2 (num-queues=2)"
[ "$(grep -c ^processor /proc/cpuinfo)" = 2 ] || fail "the guest does not have 2 CPUs"

# One writer pinned on each CPU: blk-mq maps CPU n to queue n.
fio --name=mq --filename=/dev/vda --direct=1 --ioengine=psync --rw=randwrite --bs=4k \
	--size=4M --offset_increment=4M --numjobs=2 --cpus_allowed=0-1 --cpus_allowed_policy=split \
	--verify=crc32c --verify_fatal=1 --thread --eta=never --output=/tmp/fio.out ||
	{ cat /tmp/fio.out; fail "fio on both queues failed"; }
# The guest's own view: how often blk-mq ran each hardware queue.
mount -t debugfs debugfs /sys/kernel/debug 2>/dev/null || true
for h in 0 1; do
	q=$(cat /sys/kernel/debug/block/vda/hctx$h/run 2>/dev/null || echo unknown)
	say "hardware queue $h (CPUs $(ls /sys/kernel/debug/block/vda/hctx$h | sed -n 's/^cpu//p' | tr '\n' ' ')): run $q times"
	[ "$q" = unknown ] || [ "$q" -gt 0 ] || fail "the guest never ran hardware queue $h"
done
say "fio on 2 CPUs: writes verified"

wc=$(cat /sys/block/vda/queue/write_cache)
[ "$wc" = "write back" ] || fail "vda: write_cache is '$wc': no VIRTIO_BLK_F_FLUSH, so a flush never reaches the back end"
fill vda 0 $MiB 20
blkop flush /dev/vda || fail "fsync (flush) of vda failed"
sync
say "flushed"

dmax=$(cat /sys/block/vda/queue/discard_max_bytes)
[ "$dmax" -gt 0 ] || fail "vda does not offer discard (discard_max_bytes 0)"
fill vda $D $((4 * MiB)) 21
blkop discard /dev/vda $((D + MiB)) $((2 * MiB)) || fail "BLKDISCARD failed"
check_layout vda $D:$MiB:21 $((D + MiB)):$((2 * MiB)):z $((D + 3 * MiB)):$MiB:21
say "discarded range reads zeros, its neighbours kept their data"

zmax=$(cat /sys/block/vda/queue/write_zeroes_max_bytes)
[ "$zmax" -gt 0 ] || fail "vda does not offer write-zeroes (write_zeroes_max_bytes 0)"
fill vda $Z $((4 * MiB)) 22
blkop zeroout /dev/vda $ZOFF $ZLEN || fail "BLKZEROOUT failed"
check_layout vda $Z:$((ZOFF - Z)):22 $ZOFF:$ZLEN:z $((ZOFF + ZLEN)):$((Z + 4 * MiB - ZOFF - ZLEN)):22
say "write-zeroes range reads zeros, its neighbours kept their data"
G
run_guest ops 150 v0

file_check "$disk" $V_OFF $MiB 20 0
file_layout "$disk" $V_OFF $D:$MiB:21 $((D + MiB)):$((2 * MiB)):z $((D + 3 * MiB)):$MiB:21
file_layout "$disk" $V_OFF $Z:$((ZOFF - Z)):22 $ZOFF:$ZLEN:z $((ZOFF + ZLEN)):$((Z + 4 * MiB - ZOFF - ZLEN)):22
file_check "$disk" 0 $V_OFF 80
file_check "$disk" $((V_OFF + V_SIZE)) $MiB 81
log "backend file: zeros where discarded and zeroed, neighbours and guards intact"

if have_stats; then
	s=$(stats v0)
	log "v0 stats: $s"
	q0=$(vstat v0 '.queues[] | select(.index == 0) | .writes')
	q1=$(vstat v0 '.queues[] | select(.index == 1) | .writes')
	[ "$q0" -gt 0 ] && [ "$q1" -gt 0 ] || die "vdev_stats: writes per queue are $q0 and $q1: both queues must have served I/O"
	fl=$(vstat v0 '[.queues[].flushes] | add')
	di=$(vstat v0 '[.queues[].discards] | add')
	wz=$(vstat v0 '[.queues[].write_zeroes] | add')
	[ "$fl" -gt 0 ] || die "vdev_stats: no flushes counted after the guest's fsync"
	[ "$di" -gt 0 ] || die "vdev_stats: no discards counted after BLKDISCARD"
	[ "$wz" -gt 0 ] || die "vdev_stats: no write-zeroes counted after BLKZEROOUT"
	[ "$(vstat v0 .errors)" = 0 ] || die "vdev_stats: v0 has errors"
	log "stats agree: writes on queue 0: $q0, queue 1: $q1; flushes $fl, discards $di, write-zeroes $wz"
fi
be_alive
be_stop
