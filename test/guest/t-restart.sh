#!/bin/bash
# siovd restarts and its configuration is back: after SIGTERM and a new start
# on the same state dir, every VDEV listens again on its socket with its
# window, read-only flag and size, and a new guest finds the data written
# before the restart and can write again.
. "$(dirname "$0")/lib.sh"
[ "${SIOV_GUEST_BACKEND:-siovd}" = siovd ] || skip "persistence is siovd's: nothing to test on $SIOV_GUEST_BACKEND"
setup "$@"

disk=$WORK/disk.img
A_OFF=$((2 * MiB)) A_SIZE=$((16 * MiB))
B_OFF=$((40 * MiB)) B_SIZE=$((8 * MiB))

be_start
be_backend b0 "$disk" $((64 * MiB))
be_vdev v0 b0 $A_OFF $A_SIZE 2
be_vdev v1 b0 $B_OFF $B_SIZE 1 ro
file_fill "$disk" $B_OFF $B_SIZE 61 0
be_ready

guest_script before A_SIZE=$A_SIZE <<'G'
wait_disks 2
fill vda 0 $A_SIZE 60
check vda 0 $A_SIZE 60
G
run_guest before 120 v0 v1

be_restart
for v in v0 v1; do
	[ -n "$(stats $v)" ] || die "$v is gone after the restart"
done
log "siovd restarted; vdev_list: $(ctl vdev_list | jq -c '[.[]? // . | .name?]' 2>/dev/null || true)"

guest_script after A_SIZE=$A_SIZE B_SIZE=$B_SIZE MiB=$MiB <<'G'
wait_disks 2
expect_size vda $A_SIZE
expect_size vdb $B_SIZE
check vda 0 $A_SIZE 60
[ "$(cat /sys/block/vdb/ro)" = 1 ] || fail "vdb is no longer read-only after the restart"
check vdb 0 $B_SIZE 61
expect_refused blkop trywrite /dev/vdb 0 4096
fill vda $MiB $MiB 62
check vda $MiB $MiB 62
say "after the restart: same disks, same data, writable where it was"
G
run_guest after 120 v0 v1

file_check "$disk" $A_OFF $MiB 60 0
file_check "$disk" $((A_OFF + MiB)) $MiB 62 $MiB
file_check "$disk" $((A_OFF + 2 * MiB)) $((A_SIZE - 2 * MiB)) 60 $((2 * MiB))
file_check "$disk" $B_OFF $B_SIZE 61 0
be_alive
be_stop
