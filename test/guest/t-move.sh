#!/bin/bash
# vdev_move under a running guest: fio verify runs on a VDEV while its data
# moves to a window of another backend (a temporary mirror, then a switch, as
# QEMU's blockdev-mirror does).  siovd is killed with SIGKILL in the middle of
# the copy and restarted: it finds the move in its state and finishes it.  The
# guest sees no error, its verification passes, the VDEV ends up on the new
# backend, and the guest's whole disk (its checksum) equals the new window on
# the host, byte for byte.
. "$(dirname "$0")/lib.sh"
[ "${SIOV_GUEST_BACKEND:-siovd}" = siovd ] || skip "vdev_move is siovd's"
setup "$@"

W=$((32 * MiB))
mv_stat() { stats v0 | jq -c "$1"; }

be_start
be_backend x "$WORK/x.img" $((64 * MiB))
be_backend y "$WORK/y.img" $((128 * MiB))
be_vdev v0 x $MiB $W 2
be_ready

guest_script mv MiB=$MiB W=$W <<'G'
wait_disks 1
fill vda 0 $((4 * MiB)) 61
echo SIOV-IO-RUNNING
fio_verify move $((4 * MiB)) $((12 * MiB)) 20 "across the move"
check vda 0 $((4 * MiB)) 61
echo "SIOV-MD5 $(md5sum /dev/vda | cut -d' ' -f1)"
say "fio verified every block while the disk moved"
G
GUEST_RECONNECT=1 guest_start mv 240 v0
guest_wait_marker mv SIOV-IO-RUNNING 90
guest_wait_requests mv v0 300 20

ctl vdev_move --name v0 --backend y --offset $((8 * MiB)) --rate 4M >/dev/null || die "vdev_move failed"
[ "$(mv_stat .move.to)" = '"y"' ] || die "vdev_stats shows no move: $(mv_stat .move)"
n=0
until [ "$(mv_stat .move.done_bytes)" -gt $((4 * MiB)) ]; do
	n=$((n + 1))
	[ $n -le 100 ] || die "the move does not progress: $(mv_stat .move)"
	sleep 0.1
done
log "killing siovd with SIGKILL in the middle of the move ($(mv_stat .move))"
siovd_kill
forget_pid "$BE_PID"
BE_PID=
be_start
wait_for_path "${VDEV_SOCK[v0]}" 20 "$BE_PID"
# The restarted siovd found the move in its state (at the default rate it
# may be over already by the time we look).
grep -q "vdev v0: still moving to y" "$WORK/backend.log" ||
	die "after the restart siovd did not take the move up again: $(stats v0)"
n=0
until [ "$(mv_stat .move)" = null ]; do
	n=$((n + 1))
	[ $n -le 300 ] || die "the move did not finish within 30 s of the restart: $(mv_stat .move)"
	sleep 0.1
done
[ "$(ctl vdev_list --name v0 | jq -c '.[0] | [.backend, .offset]')" = "[\"y\",$((8 * MiB))]" ] ||
	die "after the move the VDEV is at $(ctl vdev_list --name v0 | jq -c '.[0] | [.backend, .offset]')"
log "the move finished after the restart: v0 is on y at 8 MiB"
grep -qE 'I/O error|SIOV-TEST-FAIL' "$WORK/mv.console" && die "the guest saw an error"

guest_wait mv
[ "$(vstat v0 .errors)" = 0 ] || die "vdev_stats: errors: $(stats v0)"
sum=$(sed -n 's/^SIOV-MD5 \([0-9a-f]*\).*/\1/p' "$WORK/mv.console" | tr -d '\r')
[ -n "$sum" ] || die "the guest printed no checksum"
host=$(dd if="$WORK/y.img" bs=1M skip=8 count=32 status=none | md5sum | cut -d' ' -f1)
[ "$sum" = "$host" ] || die "the guest's disk ($sum) differs from y's window ($host)"
log "the guest's disk and y's window are identical byte for byte ($sum)"
be_alive
be_stop
