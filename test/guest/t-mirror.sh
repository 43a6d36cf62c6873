#!/bin/bash
# A guest runs fio verify on a VDEV whose backend is a mirror of two files,
# while the host does to the mirror what an operator does to a RAID 1:
#   - a member fails mid-run: the guest sees no error, the member is marked
#     failed with its reason;
#   - it is re-added: the bitmap resync copies only the chunks written while it
#     was out (asserted by the counters);
#   - a third file replaces the first online: it is added (full resync), siovd
#     is killed with SIGKILL in the middle of that resync and restarted, the
#     resync goes on from where it was (not from zero), and the first member is
#     removed;
# then fio's crc32c verification passes, vdev_stats shows no error, and the
# two remaining members are compared byte for byte on the host.
. "$(dirname "$0")/lib.sh"
[ "${SIOV_GUEST_BACKEND:-siovd}" = siovd ] || skip "the mirror is siovd's"
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

be_start
for f in a b; do
	ctl backend_create --name $f --type file --path "$WORK/$f.img" --size $SIZE >/dev/null ||
		die "backend_create $f failed"
done
ctl backend_create --name m --type mirror --members a,b --resync-rate 1G >/dev/null ||
	die "backend_create mirror failed"
wait_state b in_sync 30
be_vdev v0 m 0 $W 2
be_ready

guest_script m MiB=$MiB W=$W <<'G'
wait_disks 1
fill vda 0 $((4 * MiB)) 60
echo SIOV-IO-RUNNING
fio --name=mirror --filename=/dev/vda --ioengine=libaio --iodepth=8 --direct=1 --rw=randwrite \
	--bssplit=4k/60:16k/30:64k/10 --offset=$((4 * MiB)) --size=$((12 * MiB)) --time_based --runtime=30 \
	--verify=crc32c --verify_fatal=1 --verify_backlog=64 --eta=never --output=/tmp/fio.out ||
	{ cat /tmp/fio.out; fail "fio on the mirror failed"; }
grep -E 'err=' /tmp/fio.out
grep -q 'err= 0' /tmp/fio.out || fail "fio reports errors"
check vda 0 $((4 * MiB)) 60
say "fio verified every block while members failed, came back and were replaced"
G
GUEST_RECONNECT=1 guest_start m 240 v0
guest_wait_marker m SIOV-IO-RUNNING 90
n=0
until [ "$(vstat v0 .requests)" -gt 300 ]; do
	n=$((n + 1))
	[ $n -le 200 ] || die "the guest's fio did not reach siovd within 20 s"
	sleep 0.1
done

# 1. A member fails under load; writes go on to the other.
ctl backend_fail_member --name m --member b >/dev/null || die "backend_fail_member failed"
[ "$(member b .state)" = failed ] || die "b is not failed: $(mstat .mirror)"
[ -n "$(member b .reason)" ] || die "b failed without a reason"
w0=$(member a .writes)
sleep 3
guest_ok
[ "$(member a .writes)" -gt $((w0 + 100)) ] || die "writes did not go on with one member: $(mstat .mirror)"
log "b failed ($(member b .reason)); $(($(member a .writes) - w0)) writes went on to a alone"

# 2. It comes back: only what was written meanwhile is copied.
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
