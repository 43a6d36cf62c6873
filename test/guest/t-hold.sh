#!/bin/bash
# The error policy "hold" when the file system under a file backend fills up:
# the guest runs fio verify on a VDEV (--error-policy hold) whose backend file
# lives on a small tmpfs (size=) that another file nearly fills.  The writes
# that find no room fail with ENOSPC on the host; siovd keeps them (never
# completed, counted in vdev_stats with the reason, a warning in its log) and
# the queue stops taking new requests.  The host then makes room and calls
# vdev_resume: the held requests are retried in order, fio finishes, its
# crc32c verification is clean and the guest has seen no I/O error.
# A tmpfs needs no loop device; the test runs in a mount namespace of its own
# (unshare -m), so the mount goes away with it whatever happens.
if [ -z "${SIOV_HOLD_NS:-}" ]; then
	command -v unshare >/dev/null || { echo "SKIP: t-hold: unshare (util-linux) missing" >&2; exit 77; }
	if ! unshare -m --propagation private true 2>/dev/null; then
		echo "SKIP: t-hold: cannot make a mount namespace here (needs CAP_SYS_ADMIN)" >&2
		exit 77
	fi
	SIOV_HOLD_NS=1 exec unshare -m --propagation private "$0" "$@"
fi
. "$(dirname "$0")/lib.sh"
[ "${SIOV_GUEST_BACKEND:-siovd}" = siovd ] || skip "the error policy is siovd's"
setup "$@"

FS=$WORK/fs
mkdir -p "$FS"
mount -t tmpfs -o size=24m tmpfs "$FS" 2>/dev/null || skip "cannot mount a tmpfs here"
CLEANUP_HOOKS+=("umount '$FS'")
# 20 of the 24 MiB are taken: the guest's writes run out of room after ~4 MiB.
dd if=/dev/zero of="$FS/filler" bs=1M count=20 status=none 2>/dev/null || true
W=$((16 * MiB))

be_start
ctl backend_create --name b0 --type file --path "$FS/disk.img" --size $((32 * MiB)) >/dev/null ||
	die "backend_create failed"
sock=$WORK/v0.sock
VDEV_SOCK[v0]=$sock VDEV_QUEUES[v0]=2
ctl vdev_create --name v0 --backend b0 --size $W --queues 2 --socket "$sock" --error-policy hold:300 >/dev/null ||
	die "vdev_create with --error-policy hold failed"
be_ready

guest_script hold MiB=$MiB <<'G'
wait_disks 1
echo SIOV-IO-RUNNING
fio --name=hold --filename=/dev/vda --ioengine=libaio --iodepth=8 --direct=1 --rw=randwrite \
	--bs=16k --size=$((12 * MiB)) --verify=crc32c --verify_fatal=1 --do_verify=1 \
	--eta=never --output=/tmp/fio.out ||
	{ cat /tmp/fio.out; fail "fio through a full file system failed"; }
grep -E 'err=' /tmp/fio.out
grep -q 'err= 0' /tmp/fio.out || fail "fio reports errors"
dmesg | grep -qiE 'I/O error|critical (target|medium|space)' && fail "the kernel saw an I/O error: $(dmesg | grep -iE 'I/O error|critical' | head -1)"
say "fio verified every block across a full file system and a resume"
G
guest_start hold 240 v0
guest_wait_marker hold SIOV-IO-RUNNING 90
n=0
until [ "$(vstat v0 .error_policy.held)" -gt 0 ]; do
	n=$((n + 1))
	[ $n -le 600 ] || die "no request was held within 60 s: $(stats v0 | jq -c .error_policy)"
	sleep 0.1
done
sleep 2 # the queues stop; more of the in-flight requests come to be held
held=$(vstat v0 .error_policy.held)
reason=$(vstat v0 .error_policy.reason)
[ "$reason" = "No space left on device" ] || die "held for '$reason', not ENOSPC"
[ "$(vstat v0 .errors)" = 0 ] || die "requests failed to the guest although held: $(stats v0)"
grep -q "holding requests" "$WORK/backend.log" || die "no event in siovd's log for the hold"
r0=$(vstat v0 .requests)
sleep 1
[ "$(vstat v0 .requests)" = "$r0" ] || die "the queue kept completing requests while holding"
log "$held request(s) held ($reason), none failed, the queue stopped"

rm -f "$FS/filler"
ctl vdev_resume --name v0 >/dev/null || die "vdev_resume failed"
n=0
until [ "$(vstat v0 .error_policy.held)" = 0 ]; do
	n=$((n + 1))
	[ $n -le 100 ] || die "the held requests were not retried within 10 s of vdev_resume: $(stats v0 | jq -c .error_policy)"
	sleep 0.1
done
log "room made, vdev_resume: the held requests went through ($(stats v0 | jq -c '.error_policy | {held_total, hold_events}'))"
guest_wait hold
[ "$(vstat v0 .errors)" = 0 ] || die "vdev_stats: errors: $(stats v0)"
[ "$(vstat v0 .error_policy.policy)" = "hold:300s" ] || die "policy shown as $(vstat v0 .error_policy.policy)"
ctl vdev_set_error_policy --name v0 --error-policy report >/dev/null || die "vdev_set_error_policy failed"
[ "$(vstat v0 .error_policy.policy)" = report ] || die "the policy did not change at run time"
be_alive
be_stop
