#!/bin/bash
# Guests come and go on the same VDEVs: a guest powers off and the next one
# finds its data and a working device; a guest killed with SIGKILL in the
# middle of I/O leaves the back end serving, and the guest after it finds the
# data written before the crash and does verified I/O again.
. "$(dirname "$0")/lib.sh"
setup "$@"

disk=$WORK/disk.img
W=$((32 * MiB))
A_OFF=$((1 * MiB)) B_OFF=$((1 * MiB + W))

be_start
be_backend b0 "$disk" $((96 * MiB))
be_vdev v0 b0 $A_OFF $W 2
be_vdev v1 b0 $B_OFF $W 1
be_ready

# 1: write, power off.
guest_script first MiB=$MiB <<'G'
wait_disks 2
fill vda 0 $((4 * MiB)) 40
fill vdb 0 $((4 * MiB)) 41
check vda 0 $((4 * MiB)) 40
check vdb 0 $((4 * MiB)) 41
say "first guest wrote its data"
G
run_guest first 120 v0 v1
be_alive

# 2: a new guest on the same sockets sees it and writes more.
guest_script second MiB=$MiB <<'G'
wait_disks 2
check vda 0 $((4 * MiB)) 40
check vdb 0 $((4 * MiB)) 41
fill vda $((4 * MiB)) $((4 * MiB)) 42
fill vdb $((4 * MiB)) $((4 * MiB)) 43
check vda $((4 * MiB)) $((4 * MiB)) 42
check vdb $((4 * MiB)) $((4 * MiB)) 43
say "second guest found the first one's data and wrote its own"
G
run_guest second 120 v0 v1
be_alive

# 3: a guest killed hard while fio has requests in flight on both disks.
guest_script crash MiB=$MiB <<'G'
wait_disks 2
for d in vda vdb; do
	fio --name=$d --filename=/dev/$d --ioengine=libaio --iodepth=16 --direct=1 --rw=randrw \
		--bs=4k --offset=$((8 * MiB)) --size=$((16 * MiB)) --time_based --runtime=300 \
		--eta=never --output=/tmp/$d.out &
done
sleep 1
echo SIOV-IO-RUNNING
wait
fail "fio ended before the guest was killed"
G
guest_start crash 120 v0 v1
guest_wait_marker crash SIOV-IO-RUNNING 60
if have_stats; then
	# Be sure the back end is busy with this guest's I/O at the moment of the kill.
	r0=$(vstat v0 .requests) n=0
	while [ "$(vstat v0 .requests)" -le $((r0 + 200)) ]; do
		n=$((n + 1))
		[ $n -le 100 ] || die "v0 served no I/O from the crashing guest in 10 s"
		sleep 0.1
	done
else
	sleep 1
fi
guest_kill9 crash
be_alive
if have_stats; then
	# The requests of the dead guest must drain; the VDEVs must not be broken.
	for v in v0 v1; do
		n=0
		until [ "$(vstat $v .inflight)" = 0 ]; do
			n=$((n + 1))
			[ $n -le 100 ] || die "$v still has $(vstat $v .inflight) requests in flight 10 s after the guest died"
			sleep 0.1
		done
		br=$(vstat $v '.broken_reason // ""')
		[ -z "$br" ] || die "$v is broken after its guest was killed: $br"
		log "$v after the kill: $(stats $v | jq -c '{requests, errors, inflight, state}')"
	done
fi

# 4: the next guest finds everything written before and works.
guest_script after MiB=$MiB <<'G'
wait_disks 2
check vda 0 $((4 * MiB)) 40
check vdb 0 $((4 * MiB)) 41
check vda $((4 * MiB)) $((4 * MiB)) 42
check vdb $((4 * MiB)) $((4 * MiB)) 43
for d in vda vdb; do
	fio --name=$d --filename=/dev/$d --ioengine=libaio --iodepth=8 --direct=1 --rw=randwrite \
		--bs=4k --offset=$((8 * MiB)) --size=$((4 * MiB)) --verify=crc32c --verify_fatal=1 \
		--eta=never --output=/tmp/$d.out || { cat /tmp/$d.out; fail "fio verify on $d failed after the crash"; }
done
fill vda $((28 * MiB)) $((4 * MiB)) 44
check vda $((28 * MiB)) $((4 * MiB)) 44
say "the guest after the crash found all data and did verified I/O"
G
run_guest after 120 v0 v1

file_check "$disk" $A_OFF $((4 * MiB)) 40 0
file_check "$disk" $B_OFF $((4 * MiB)) 41 0
file_check "$disk" $((A_OFF + 4 * MiB)) $((4 * MiB)) 42 $((4 * MiB))
file_check "$disk" $((B_OFF + 4 * MiB)) $((4 * MiB)) 43 $((4 * MiB))
file_check "$disk" $((A_OFF + 28 * MiB)) $((4 * MiB)) 44 $((28 * MiB))
log "backend file holds every guest's data at its place"
be_alive
be_stop
