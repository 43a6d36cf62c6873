#!/bin/bash
# siovd restarts under a running guest: QEMU (reconnect=1) connects again to
# the VDEV that siovd recreated from its state dir, the guest's I/O resumes
# (requests in flight at the restart are replayed, none lost), and fio's
# crc32c verification across the restart passes. The guest sees no error.
. "$(dirname "$0")/lib.sh"
[ "${SIOV_GUEST_BACKEND:-siovd}" = siovd ] || skip "restarting the back end under a guest is tested on siovd only"
setup "$@"

disk=$WORK/disk.img
W=$((32 * MiB))

be_start
be_backend b0 "$disk" $((64 * MiB))
be_vdev v0 b0 $MiB $W 2
be_ready

guest_script live MiB=$MiB <<'G'
wait_disks 1
fill vda 0 $((8 * MiB)) 50
echo SIOV-IO-RUNNING
fio_verify live $((8 * MiB)) $((16 * MiB)) 12 "across the siovd restart"
check vda 0 $((8 * MiB)) 50
say "I/O went on across the back end's restart, every block verified"
G
GUEST_RECONNECT=1 guest_start live 180 v0
guest_wait_marker live SIOV-IO-RUNNING 60
guest_wait_requests live v0 300 10
log "restarting siovd under the running guest ($(vstat v0 .inflight) requests in flight)"
be_restart
n=0
until [ "$(vstat v0 .requests)" -gt 100 ]; do
	if grep -qE 'I/O error|is not a head|SIOV-TEST-FAIL' "$WORK/live.console"; then
		die "the guest failed after the restart: $(grep -m1 -E 'I/O error|is not a head|SIOV-TEST-FAIL' "$WORK/live.console" | tr -d '\r')"
	fi
	n=$((n + 1))
	[ $n -le 300 ] || die "the guest did not come back to the restarted siovd within 30 s: $(stats v0)"
	sleep 0.1
done
log "the guest is back: $(stats v0 | jq -c '{requests, errors, inflight, state}')"
guest_wait live
file_check "$disk" $MiB $((8 * MiB)) 50 0
[ "$(vstat v0 .errors)" = 0 ] || die "vdev_stats: errors after the restart: $(stats v0)"
be_alive
be_stop
