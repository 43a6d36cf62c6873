#!/bin/bash
# Hostile clients on siovd's NBD export (a raw-socket client, nbd_hostile.py):
# out-of-range, zero-length, oversized and unknown requests get the NBD
# errors the protocol names and the connection stays in step (a refused
# write's payload is skipped); a bad magic, a write larger than the maximum
# payload, unknown client flags and an option too large to skip close that
# connection only; writes and trims on a read-only export get EPERM; siovd
# stays up and counts the protocol errors.  Then the server-side fence: on an
# export whose backend is slow (an NBD backend on nbdkit with delay-write),
# a client writes and disconnects; a new connection is served only after that
# write has completed, and reads it.
# Usage: t-export-hostile.sh SIOVD SIOVCTL SIOV_BENCH
. "$(dirname "$0")/lib.sh"
command -v python3 >/dev/null || skip "python3 not installed"
command -v nbdkit >/dev/null || skip "nbdkit not installed"
setup "$@"
HERE=$(cd "$(dirname "$0")" && pwd)
MiB=1048576
instance_start a
ctl a backend_create --name r0 --type ram --size $((16 * MiB)) >/dev/null
ctl a vdev_create --name h0 --backend r0 --size $((8 * MiB)) --socket "$WORK/h0.vu" >/dev/null
ctl a vdev_create --name h1 --backend r0 --offset $((8 * MiB)) --size $((4 * MiB)) --readonly \
	--socket "$WORK/h1.vu" >/dev/null
ctl a export_create --vdev h0 --listen "unix:$WORK/h0.nbd" >/dev/null
ctl a export_create --vdev h1 --listen "unix:$WORK/h1.nbd" >/dev/null
ctl_fails a "is exported over NBD" vdev_delete --name h0
python3 "$HERE/nbd_hostile.py" rw "$WORK/h0.nbd" h0 $((8 * MiB)) >&2 || die "hostile client on h0"
python3 "$HERE/nbd_hostile.py" ro "$WORK/h1.nbd" h1 >&2 || die "read-only export"
kill -0 "${SIOVD_INST_PID[a]}" || die "siovd died"
pe=$(ctl a export_list | jq '[.[] | select(.vdev == "h0")][0].protocol_errors')
[ "$pe" -ge 4 ] || die "export h0 counts $pe protocol errors, expected at least 4"
log "siovd up; export h0 counts $pe protocol errors"

# QEMU's NBD client (structured replies, GO, block sizes) on the same export.
if command -v qemu-io >/dev/null; then
	out=$(timeout 30 qemu-io -f raw -c 'write -P 0x5a 4096 1M' -c 'read -P 0x5a 4096 1M' \
		-c 'discard 0 4096' -c 'write -z 2M 64k' -c 'read -P 0 2M 64k' -c flush \
		"nbd+unix:///h0?socket=$WORK/h0.nbd" 2>&1) || die "qemu-io on the export failed: $out"
	! echo "$out" | grep -qi "fail\|error\|mismatch" || die "qemu-io: $out"
	log "qemu-io (QEMU's NBD client): write, read-back pattern, discard, write-zeroes, flush all fine"
fi

# The fence: writes take DELAY s on the server behind the export.
DELAY=1.5
truncate -s $((8 * MiB)) "$WORK/slow.img"
nbdkit_start slow -U "$WORK/slow.sock" --filter=delay file "$WORK/slow.img" delay-write=1500ms
wait_for_path "$WORK/slow.sock" 10 "${NBDKIT_PID[slow]}"
ctl a backend_create --name slow --type nbd --uri "nbd+unix:///?socket=$WORK/slow.sock" --settle-ms 0 >/dev/null
ctl a vdev_create --name s0 --backend slow --socket "$WORK/s0.vu" >/dev/null
ctl a export_create --vdev s0 --listen "unix:$WORK/s0.nbd" >/dev/null
python3 "$HERE/nbd_hostile.py" fence "$WORK/s0.nbd" s0 $DELAY >&2 || die "server-side fence"
ctl a export_delete --vdev s0 >/dev/null
ctl a export_delete --vdev h0 >/dev/null
[ ! -e "$WORK/h0.nbd" ] || die "export_delete left its socket file"
ctl a vdev_delete --name h0 >/dev/null
instance_stop a
