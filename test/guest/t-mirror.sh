#!/bin/bash
# A guest runs fio verify on a VDEV whose backend is a mirror of a local file
# (a) and an NBD member (b: nbdkit, file plugin behind its error filter),
# while the host does to the mirror what a RAID 1 lives through:
#   - b starts failing mid-run (nbdkit's error filter): the guest sees no
#     error, b is marked failed with the reason;
#   - b is re-added once it is healthy: the bitmap resync copies only the
#     chunks written while it was out (asserted by the counters);
#   - b's nbdkit is killed (SIGKILL): b fails once its requests time out, the
#     guest sees no error; nbdkit comes back on the same file, the NBD backend
#     reconnects, b is re-added and resynced from the bitmap again;
#   - a third file replaces the first online: it is added (full resync), siovd
#     is killed with SIGKILL in the middle of that resync and restarted, the
#     resync goes on from where it was (not from zero), and the first member is
#     removed;
# then fio's crc32c verification passes, vdev_stats shows no error, and the
# two remaining members (nbdkit's file and c) are compared byte for byte.
. "$(dirname "$0")/lib.sh"
[ "${SIOV_GUEST_BACKEND:-siovd}" = siovd ] || skip "the mirror is siovd's"
command -v nbdkit >/dev/null || skip "nbdkit not installed"
setup "$@"

SIZE=$((64 * MiB))
W=$((32 * MiB))

mstat() { ctl backend_stats --name m | jq -c "$1"; }
member() { mstat ".mirror.members[] | select(.name == \"$1\") | $2" | tr -d '"'; }
wait_state() { # MEMBER STATE SECONDS
	local i=0
	until [ "$(member "$1" .state)" = "$2" ]; do
		i=$((i + 1))
		[ $i -le $(($3 * 10)) ] || die "member $1 not $2 within $3 s: $(mstat .mirror)"
		sleep 0.1
	done
}
guest_ok() {
	if grep -qE 'I/O error|SIOV-TEST-FAIL' "$WORK/m.console"; then
		die "the guest saw an error: $(grep -m1 -E 'I/O error|SIOV-TEST-FAIL' "$WORK/m.console" | tr -d '\r')"
	fi
}

NBDKIT_PID=
nbd_start() { # nbdkit serving b.img on a Unix socket, failing while $WORK/b.err exists
	nbdkit -f -U "$WORK/b.nbd" --filter=error file "$WORK/b.img" \
		error-rate=1 error-file="$WORK/b.err" >>"$WORK/nbdkit.log" 2>&1 &
	NBDKIT_PID=$!
	PIDS+=("$NBDKIT_PID")
	wait_for_path "$WORK/b.nbd" 10 "$NBDKIT_PID"
}
truncate -s $SIZE "$WORK/b.img"
nbd_start
be_start
ctl backend_create --name a --type file --path "$WORK/a.img" --size $SIZE >/dev/null ||
	die "backend_create a failed"
ctl backend_create --name b --type nbd --uri "nbd+unix:///?socket=$WORK/b.nbd" --timeout-ms 2000 \
	--settle-ms 200 >/dev/null || die "backend_create b (nbd) failed"
ctl backend_create --name m --type mirror --members a,b --resync-rate 1G >/dev/null ||
	die "backend_create mirror failed"
wait_state b in_sync 30
be_vdev v0 m 0 $W 2
be_ready

guest_script m MiB=$MiB W=$W <<'G'
wait_disks 1
fill vda 0 $((4 * MiB)) 60
echo SIOV-IO-RUNNING
fio_verify mirror $((4 * MiB)) $((12 * MiB)) 30 "on the mirror"
check vda 0 $((4 * MiB)) 60
say "fio verified every block while members failed, came back and were replaced"
G
GUEST_RECONNECT=1 guest_start m 240 v0
guest_wait_marker m SIOV-IO-RUNNING 90
guest_wait_requests m v0 300 20

# 1. The NBD member starts failing under load; writes go on to a.
w0=$(member a .writes)
touch "$WORK/b.err"
wait_state b failed 20
[ -n "$(member b .reason)" ] || die "b failed without a reason"
# Until 100 more writes landed on a (not 2 s of a TCG guest on a loaded machine).
writes_go_on() { guest_ok && [ "$(member a .writes)" -gt $((w0 + 100)) ]; }
wait_until 60 "writes did not go on with one member within 60 s" writes_go_on
log "b failed ($(member b .reason)); $(($(member a .writes) - w0)) writes went on to a alone"

# readd: b is healthy again; only what was written meanwhile is copied.
readd() {
	local dirty chunk before copied
	dirty=$(mstat .mirror.dirty_chunks)
	chunk=$(mstat .mirror.chunk_size)
	before=$(member b .resync_bytes)
	ctl backend_add_member --name m --member b >/dev/null || die "re-adding b failed"
	wait_state b in_sync 60
	copied=$(($(member b .resync_bytes) - before))
	[ "$dirty" -gt 0 ] || die "no chunk was marked dirty while b was out"
	[ $copied -lt $((SIZE / 2)) ] || die "the bitmap resync copied $copied bytes of $SIZE: not just what changed"
	[ $copied -ge $((dirty * chunk)) ] || die "the bitmap resync copied $copied bytes, less than the $dirty dirty chunks"
	log "b re-added: the bitmap resync copied $copied bytes ($dirty dirty chunks of $chunk, while fio kept writing)"
	guest_ok
}
rm -f "$WORK/b.err"
readd

# 2. b's server dies; b fails once its requests time out, and comes back.
kill -9 "$NBDKIT_PID"
wait "$NBDKIT_PID" 2>/dev/null || true
forget_pid "$NBDKIT_PID"
log "nbdkit SIGKILLed"
wait_state b failed 30
guest_ok
log "b failed ($(member b .reason)); the guest saw no error"
rm -f "$WORK/b.nbd"
nbd_start
sleep 1 # the NBD backend reconnects by itself (backoff)
readd

# 3. Online replacement of a by c, with a SIGKILL in the middle of c's resync.
ctl backend_create --name c --type file --path "$WORK/c.img" --size $SIZE >/dev/null || die "backend_create c failed"
ctl backend_set_resync_rate --name m --rate 4M >/dev/null || die "set_resync_rate failed"
ctl backend_add_member --name m --member c >/dev/null || die "adding c failed"
n=0
until [ "$(member c .resync.done_bytes)" -gt $((4 * MiB)) ]; do
	n=$((n + 1))
	[ $n -le 100 ] || die "c's resync does not progress: $(mstat .mirror)"
	sleep 0.1
done
done_before=$(member c .resync.done_bytes)
log "killing siovd with SIGKILL in the middle of c's resync ($done_before of $SIZE bytes copied)"
siovd_kill
forget_pid "$BE_PID"
BE_PID=
be_start
wait_for_path "${VDEV_SOCK[v0]}" 20 "$BE_PID"
[ "$(member c .state)" = resyncing ] || die "after the restart c is not resyncing: $(mstat .mirror)"
total=$(member c .resync.total_bytes)
[ "$total" -lt $((SIZE - done_before / 2)) ] ||
	die "the resync started over after the restart ($total bytes to copy of $SIZE)"
log "after the restart c's resync goes on: $total bytes left to copy"
ctl backend_set_resync_rate --name m --rate 1G >/dev/null || die "set_resync_rate failed"
wait_state c in_sync 60
ctl backend_remove_member --name m --member a >/dev/null || die "removing a failed"
[ "$(mstat '.members | join(",")' | tr -d '"')" = b,c ] || die "members after the replacement: $(mstat .members)"
log "a replaced by c online"
guest_ok

guest_wait m
[ "$(vstat v0 .errors)" = 0 ] || die "vdev_stats: errors: $(stats v0)"
be_alive
be_stop
cmp "$WORK/b.img" "$WORK/c.img" || die "the members b and c differ after the run"
log "members b and c are identical byte for byte"
