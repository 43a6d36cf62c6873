#!/bin/bash
# The RBD backend on a real one-node Ceph cluster (Debian's ceph-mon and
# ceph-osd on memstore, started here under a temporary directory and stopped
# by pid), with a Linux guest on a VDEV of an image made with `rbd create`:
#  1. clear errors for a missing pool, a missing image, an unreadable ceph.conf,
#     a missing or refused key and an unreachable monitor (within a bounded time);
#  2. the guest: flush, BLKDISCARD and BLKZEROOUT ranges read back as zeros
#     with their neighbours intact (and so does the image, read on the host
#     with `rbd export`), then rounds of verified fio (crc32c);
#  3. siovd is SIGKILLed in the middle of fio and started again on its state
#     dir: the new instance must take the image's exclusive lock from the dead
#     one, which Ceph then lists as blocklisted (no write of the dead instance
#     can land after the new one's), and the guest (QEMU reconnect=1) sees no
#     error.
# Exits 77 only when Ceph or QEMU is not installed.
# Usage: t-rbd.sh --siovd PATH --siovctl PATH --cache DIR
. "$(dirname "$0")/../guest/lib.sh"
. "$(dirname "$0")/ceph-lib.sh"
[ "${SIOV_GUEST_BACKEND:-siovd}" = siovd ] || skip "the RBD backend is siovd's"
why=$(ceph_missing)
[ -z "$why" ] || skip "$why"
setup "$@"

IMG_SIZE=$((48 * MiB)) FIO=$((8 * MiB))
D=$((20 * MiB)) Z=$((28 * MiB)) ZOFF=$((29 * MiB + 4096)) ZLEN=$((MiB + 8192))
t0=$(date +%s.%N)
ceph_start "$WORK/ceph"
log "one-node Ceph cluster up in $(awk -v a="$t0" -v b="$(date +%s.%N)" 'BEGIN{printf "%.1f", b-a}') s (mon pid $CEPH_MON_PID, osd pid $CEPH_OSD_PID)"
rbd -c "$CEPH_CONF" create --size $((IMG_SIZE / MiB))M rbd/img 2>>"$WORK/ceph/rbd.out" || die "rbd create failed"

be_start
expect_error() { # PATTERN ARGS...: backend_create must fail with PATTERN
	local pat=$1 out
	shift
	if out=$(ctl backend_create --name bad --type rbd "$@" 2>&1); then
		die "backend_create $* succeeded"
	fi
	echo "$out" | grep -q "$pat" || die "backend_create $*: '$out' does not say '$pat'"
	log "refused: $(echo "$out" | tail -n1 | sed 's/^siovctl: //')"
}
expect_error "pool 'nopool' does not exist" --pool nopool --image img --conf "$CEPH_CONF"
expect_error "image 'noimg' in pool 'rbd' does not exist" --pool rbd --image noimg --conf "$CEPH_CONF"
expect_error "cannot read Ceph configuration" --pool rbd --image img --conf "$WORK/nothing.conf"
# Keys and monitors.  The cluster runs without cephx, so a wrong key is seen
# the way a client sees a cluster that never accepts it: a client that wants
# cephx with no keyring at all fails at once; with a key the monitors do not
# take, or with no monitor at the address, it fails once the connect time
# is over (--timeout-ms, at most 10 s: it must answer before siovctl's own
# 30 s and holds siovd's control thread meanwhile).
sed 's/^auth client required = none/auth client required = cephx/' "$CEPH_CONF" >"$WORK/nokey.conf"
sed 's/^auth client required = none/auth client required = cephx/' "$CEPH_CONF" >"$WORK/badkey.conf"
echo "keyring = $WORK/none.keyring" >>"$WORK/nokey.conf"
ceph-authtool --create-keyring "$WORK/bad.keyring" --gen-key -n client.admin >/dev/null || die "ceph-authtool failed"
echo "keyring = $WORK/bad.keyring" >>"$WORK/badkey.conf"
sed "s/^mon host = .*/mon host = 127.0.0.1:$(free_port)/" "$CEPH_CONF" >"$WORK/nomon.conf"
expect_error_within() { # SECONDS PATTERN ARGS...: expect_error, answered within SECONDS
	local t=$(date +%s.%N) max=$1
	shift
	expect_error "$@"
	awk -v a="$t" -v b="$(date +%s.%N)" -v m="$max" 'BEGIN{exit !(b - a < m)}' ||
		die "backend_create $* took longer than $max s to fail"
}
expect_error_within 5 "check the key(ring) of that client" --pool rbd --image img --conf "$WORK/nokey.conf"
expect_error_within 8 "no monitor answered within 2 s" --pool rbd --image img --conf "$WORK/badkey.conf" --timeout-ms 2000
expect_error_within 20 "no monitor answered within 10 s" --pool rbd --image img --conf "$WORK/nomon.conf"
ctl daemon_info >/dev/null || die "siovd does not answer after the refused backends"
[ "$(ctl backend_list | jq 'map(select(.name == "bad")) | length')" = 0 ] || die "a refused backend is listed"
ctl backend_create --name r0 --type rbd --pool rbd --image img --conf "$CEPH_CONF" --timeout-ms 30000 >/dev/null ||
	die "backend_create rbd failed"
# The host's "stop" flag lives on a small file-backed disk.
be_backend f0 "$WORK/flag.img" $MiB
be_vdev v0 r0 0 $IMG_SIZE 1
be_vdev flag f0 0 $MiB 1
be_ready

guest_script g FIO=$FIO D=$D Z=$Z ZOFF=$ZOFF ZLEN=$ZLEN MiB=$MiB <<'G'
wait_disks 2
fill vda 0 $MiB 20
blkop flush /dev/vda || fail "flush failed"
fill vda $D $((4 * MiB)) 21
blkop discard /dev/vda $((D + MiB)) $((2 * MiB)) || fail "BLKDISCARD failed"
check_layout vda $D:$MiB:21 $((D + MiB)):$((2 * MiB)):z $((D + 3 * MiB)):$MiB:21
fill vda $Z $((4 * MiB)) 22
blkop zeroout /dev/vda $ZOFF $ZLEN || fail "BLKZEROOUT failed"
check_layout vda $Z:$((ZOFF - Z)):22 $ZOFF:$ZLEN:z $((ZOFF + ZLEN)):$((Z + 4 * MiB - ZOFF - ZLEN)):22
say "flush, discard and write-zeroes on the RBD image"
fio_rounds $FIO $((2 * MiB)) vdb 0 vda
say "$ROUNDS fio rounds verified on RBD"
G
GUEST_RECONNECT=1 guest_start g 300 v0 flag
guest_wait_marker g SIOV-FIO-ROUND 120
guest_wait_requests g v0 800 60
log "before the kill: $(stats v0 | jq -c '{requests, inflight}'); lock: $(rbd -c "$CEPH_CONF" lock ls rbd/img 2>/dev/null | tail -n1)"
old=$(rbd -c "$CEPH_CONF" lock ls rbd/img 2>/dev/null | awk 'NR > 2 {print $NF}' | tail -n1)
[ -n "$old" ] || die "siovd does not hold the image's exclusive lock"
forget_pid "$BE_PID"
siovd_kill
t1=$(date +%s.%N)
# Up to 60 s: the new instance takes the lock only once the dead one's watch has expired.
SIOVD_START_TIMEOUT=60 siovd_restart || die "the restarted siovd did not answer"
BE_PID=$SIOVD_PID
PIDS+=("$BE_PID")
log "siovd SIGKILLed and restarted: answers after $(awk -v a="$t1" -v b="$(date +%s.%N)" 'BEGIN{printf "%.1f", b-a}') s"
[ -n "$(stats v0)" ] || die "v0 is not back"
bl=$(ceph -c "$CEPH_CONF" osd blocklist ls 2>/dev/null | grep -F "$old" || true)
[ -n "$bl" ] || die "the dead instance ($old) is not blocklisted: $(ceph -c "$CEPH_CONF" osd blocklist ls 2>&1 | tr '\n' ' ')"
log "the dead instance is fenced: blocklist has '$bl'"
grep "rbd rbd/img" "$WORK/backend.log" | tail -n1 | grep -q "exclusive lock held" || die "the new instance does not hold the lock"
guest_wait_round g 120
file_fill "$WORK/flag.img" 0 4096 77 0
sync "$WORK/flag.img"
guest_wait g
[ "$(vstat v0 .errors)" = 0 ] || die "v0 counts errors: $(stats v0)"
be_stop
# The image itself, read by Ceph's own tool.
rbd -c "$CEPH_CONF" export rbd/img "$WORK/img.raw" >/dev/null 2>&1 || die "rbd export failed"
file_check "$WORK/img.raw" 0 $MiB 20 0
file_layout "$WORK/img.raw" 0 $D:$MiB:21 $((D + MiB)):$((2 * MiB)):z $((D + 3 * MiB)):$MiB:21
file_layout "$WORK/img.raw" 0 $Z:$((ZOFF - Z)):22 $ZOFF:$ZLEN:z $((ZOFF + ZLEN)):$((Z + 4 * MiB - ZOFF - ZLEN)):22
log "rbd export: the guest's patterns, discarded and zeroed ranges are in the image"
ceph_stop
