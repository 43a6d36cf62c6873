#!/bin/bash
# fio in the guest with crc32c verification: a few thousand random requests of
# mixed sizes, several in flight, on two VDEVs that are adjacent windows of one
# backend, the first on split virtqueues, the second on packed ones
# (VIRTIO_F_RING_PACKED: packed=on). Every block must verify, the back end must
# count the requests and no error, and the bytes around the windows must be
# untouched.
. "$(dirname "$0")/lib.sh"
setup "$@"

disk=$WORK/disk.img
W=$((32 * MiB))
A_OFF=$((4 * MiB)) B_OFF=$((4 * MiB + W))

be_start
be_backend b0 "$disk" $((128 * MiB))
file_fill "$disk" 0 $A_OFF 70
file_fill "$disk" $((B_OFF + W)) $MiB 71
be_vdev v0 b0 $A_OFF $W 2
be_vdev v1 b0 $B_OFF $W 2
VDEV_DEVOPTS[v1]=,packed=on
be_ready

guest_script fio W=$W <<'G'
wait_disks 2
expect_size vda $W
expect_size vdb $W
cat > /tmp/verify.fio <<JOB
[global]
ioengine=libaio
iodepth=8
direct=1
rw=randwrite
bssplit=4k/35:8k/20:16k/20:64k/15:128k/10
size=$W
verify=crc32c
verify_fatal=1
verify_backlog=128
do_verify=1
randrepeat=0
thread
[vda]
filename=/dev/vda
[vdb]
filename=/dev/vdb
JOB
if ! fio --eta=never --output=/tmp/fio.out /tmp/verify.fio; then
	cat /tmp/fio.out
	fail "fio verification failed"
fi
grep -E '^ *(read|write):|^ *(READ|WRITE):|err=' /tmp/fio.out || true
grep -q 'err= 0' /tmp/fio.out || fail "fio reports errors"
say "fio: all blocks verified (crc32c)"
G
run_guest fio 240 v0 v1

file_check "$disk" 0 $A_OFF 70
file_check "$disk" $((B_OFF + W)) $MiB 71
log "backend file: bytes around the windows untouched"
if have_stats; then
	for v in v0 v1; do
		r=$(vstat $v .requests)
		[ "$r" -ge 1000 ] || die "vdev_stats: $v counted only $r requests for a fio run of thousands"
		[ "$(vstat $v .errors)" = 0 ] || die "vdev_stats: $v has errors: $(stats $v)"
		[ "$(vstat $v .inflight)" = 0 ] || die "vdev_stats: $v has requests in flight after the guest left"
		ring=$(vstat $v '[.queues[].ring] | unique | join(",")')
		want=split
		[ $v = v1 ] && want=packed
		[ "$ring" = $want ] || die "vdev_stats: $v ran on $ring rings, not $want"
		log "$v ($ring rings): $r requests, read $(vstat $v .bytes_read) B, wrote $(vstat $v .bytes_written) B, mean latency $(vstat $v .latency_us_mean) us"
	done
fi
be_alive
be_stop
