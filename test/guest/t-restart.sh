#!/bin/bash
# siovd restarts under a guest's verified I/O and no request is lost.
#
# A: one guest on v0 (2 queues) runs rounds of an fio crc32c write+verify job
#    (libaio, iodepth 8, two jobs so both virtqueues carry I/O, mixed sizes).
#    While fio runs, siovd is killed with SIGKILL twice (at a moment when
#    vdev_stats shows requests in flight) and started again after 0.7 s with
#    the same --state-dir and --rpc-socket, and nothing re-created by RPC: the
#    state dir must bring the VDEVs back and QEMU (chardev reconnect=1) must
#    reattach, and requests left in flight must be resubmitted from the
#    INFLIGHT_SHMFD region. Then a clean stop: SIGTERM while fio runs, siovd
#    must exit 0 within 5 s with every socket file removed and no sanitizer
#    report, and a new siovd on the same state dir must serve the guest again.
# B: one guest on v1 and v2 (2 queues each), the same fio job on both disks,
#    siovd killed with SIGKILL twice: multi-VDEV, multi-queue recovery.
#
# The guest keeps starting fio rounds until the host writes a stop flag into
# the backend file (outside the fio area), so every restart happens in the
# middle of fio and one full round runs after the last one. The guest must see
# every block verify, no fio error and no I/O error in dmesg; the host
# requires each restarted siovd to serve the guest's I/O again, and reports
# how many requests each one resubmitted ("resubmitting N request(s)").
. "$(dirname "$0")/lib.sh"
setup "$@"
[ "$BACKEND" = siovd ] || skip "restart with a state dir is a siovd test"

disk=$WORK/disk.img
W=$((40 * MiB))   # each VDEV's window
FIO=$((32 * MiB)) # fio works on [0, FIO) of each disk
FLAG=$((36 * MiB)) # host -> guest: "stop after this round"
V0_OFF=$((1 * MiB)) V1_OFF=$((1 * MiB + W)) V2_OFF=$((1 * MiB + 2 * W))
KILL_PAUSE=${SIOV_RESTART_PAUSE:-0.7}
TERM_LIMIT=5 # seconds a SIGTERM'd siovd may take to drain and exit

INSTANCE=0
declare -A LOG_FROM=() # instance -> first line of its output in backend.log
RESTARTS=0 RESUBMITTED=0 KILLS_WITH_RESUBMIT=0

# restart_launch: starts siovd exactly as be_start does (same socket, same
# state dir) and waits until it answers; creates nothing.
restart_launch() {
	local i=0 t0
	t0=$(date +%s.%N)
	INSTANCE=$((INSTANCE + 1))
	touch "$WORK/backend.log"
	LOG_FROM[$INSTANCE]=$(($(wc -l <"$WORK/backend.log") + 1))
	echo "=== t-restart: siovd instance $INSTANCE ===" >>"$WORK/backend.log"
	"$SIOVD" --rpc-socket "$RPC" --state-dir "$WORK/state" ${SIOV_GUEST_ENGINES:+--engines $SIOV_GUEST_ENGINES} \
		>>"$WORK/backend.log" 2>&1 &
	BE_PID=$!
	PIDS+=("$BE_PID")
	# The socket file of a killed siovd is still there: wait for an answer.
	until timeout 5 "$SIOVCTL" -s "$RPC" daemon_info >/dev/null 2>&1; do
		kill -0 "$BE_PID" 2>/dev/null || die "siovd instance $INSTANCE (pid $BE_PID) died at start: $(instance_log $INSTANCE | tail -n 5)"
		i=$((i + 1))
		[ $i -le 200 ] || die "siovd instance $INSTANCE does not answer daemon_info within 20 s"
		sleep 0.1
	done
	log "siovd instance $INSTANCE (pid $BE_PID) answers after $(awk -v a="$t0" -v b="$(date +%s.%N)" 'BEGIN{printf "%.2f", b-a}') s"
}

# instance_log N: what siovd instance N printed.
instance_log() {
	local from=${LOG_FROM[$1]} to
	if [ -n "${LOG_FROM[$(($1 + 1))]:-}" ]; then
		to=$((${LOG_FROM[$(($1 + 1))]} - 1))
	else
		to='$'
	fi
	sed -n "${from},${to}p" "$WORK/backend.log"
}

# replayed VDEV...: the restarted siovd has the VDEVs from its state dir.
replayed() {
	local v
	for v in "$@"; do
		stats "$v" >/dev/null
	done
	[ "$(ctl vdev_stats | jq -c '[if type == "array" then .[] else . end | .name] | sort')" = '["v0","v1","v2"]' ] ||
		die "restarted siovd does not have exactly v0 v1 v2: $(ctl vdev_stats | jq -c '[if type == "array" then .[] else . end | .name]')"
}

# serving NAME N SECONDS: the current siovd has served N requests of NAME
# (counters start at 0 in a new process), i.e. the guest reattached.
serving() {
	local i=0 n=$(($3 * 10))
	while [ "$(vstat "$1" .requests)" -lt "$2" ]; do
		i=$((i + 1))
		guest_alive
		[ $i -le $n ] || die "siovd instance $INSTANCE: $1 served only $(vstat "$1" .requests) requests in $3 s (state $(vstat "$1" .state)): the guest did not reattach"
		sleep 0.1
	done
}

guest_alive() {
	grep -q '^SIOV-TEST-FAIL' "$WORK/$GNAME.console" && die "guest $GNAME: $(grep -m1 '^SIOV-TEST-FAIL' "$WORK/$GNAME.console")"
	grep -q '^SIOV-TEST-PASS' "$WORK/$GNAME.console" && die "guest $GNAME finished before the host said stop"
	kill -0 "$GUEST_PID" 2>/dev/null || die "guest $GNAME ended early"
}

# busy VDEV...: best effort: returns as soon as one of the VDEVs has a request
# in flight in siovd (up to 3 s), so that the kill catches some.
busy() {
	local i v
	for i in $(seq 60); do
		for v in "$@"; do
			[ "$(vstat "$v" .inflight)" -gt 0 ] && return 0
		done
		sleep 0.05
	done
	return 0
}

# resubmits N: "resubmitting" lines of instance N, summed.
resubmits() {
	instance_log "$1" | sed -n 's/.*: resubmitting \([0-9]*\) request(s).*/\1/p' | awk '{s += $1} END {print s + 0}'
}

# kill9_restart VDEV...: SIGKILL with I/O in flight, pause, start again, and
# the guest's I/O flows on every VDEV.
kill9_restart() {
	local pid=$BE_PID t0 n
	busy "$@"
	local before
	before=$(for v in "$@"; do printf '%s:%s ' "$v" "$(stats "$v" | jq -c '{requests, inflight}')"; done)
	kill -9 "$pid"
	t0=$(date +%s.%N)
	wait "$pid" 2>/dev/null || true
	log "siovd instance $INSTANCE killed with SIGKILL (before: $before)"
	sleep "$KILL_PAUSE"
	restart_launch
	replayed "$@"
	for v in "$@"; do
		serving "$v" 200 60
	done
	RESTARTS=$((RESTARTS + 1))
	n=$(resubmits $INSTANCE)
	RESUBMITTED=$((RESUBMITTED + n))
	[ "$n" -gt 0 ] && KILLS_WITH_RESUBMIT=$((KILLS_WITH_RESUBMIT + 1))
	log "guest I/O flows again $(awk -v a="$t0" -v b="$(date +%s.%N)" 'BEGIN{printf "%.2f", b-a}') s after the kill; instance $INSTANCE resubmitted $n request(s)$(instance_log $INSTANCE | grep -o 'vdev [^ ]* queue [0-9]*: resubmitting [0-9]* request(s)' | sed 's/^/; /' | tr -d '\n')"
}

# term_restart VDEV...: a clean stop in the middle of I/O, then a new siovd.
term_restart() {
	local pid=$BE_PID rc=0 t0 dt s
	busy "$@"
	t0=$(date +%s.%N)
	kill -TERM "$pid"
	timeout "$TERM_LIMIT" tail --pid="$pid" -f /dev/null ||
		die "siovd instance $INSTANCE did not exit within $TERM_LIMIT s of SIGTERM"
	wait "$pid" || rc=$?
	dt=$(awk -v a="$t0" -v b="$(date +%s.%N)" 'BEGIN{printf "%.2f", b-a}')
	[ $rc = 0 ] || die "siovd instance $INSTANCE exited with status $rc after SIGTERM"
	if instance_log $INSTANCE | grep -Eq 'ERROR: (AddressSanitizer|LeakSanitizer)|runtime error:'; then
		die "siovd instance $INSTANCE (SIGTERM) has a sanitizer report"
	fi
	for s in "${VDEV_SOCK[@]}" "$RPC"; do
		[ ! -e "$s" ] || die "siovd instance $INSTANCE left $s behind after SIGTERM"
	done
	log "siovd instance $INSTANCE: SIGTERM -> exit 0 in $dt s, every socket file removed"
	sleep "$KILL_PAUSE"
	restart_launch
	replayed "$@"
	for v in "$@"; do
		serving "$v" 200 60
	done
	RESTARTS=$((RESTARTS + 1))
	log "guest I/O flows again after the clean restart; instance $INSTANCE resubmitted $(resubmits $INSTANCE) request(s)"
}

# The guest: fio rounds until the flag says stop, then dmesg must be clean.
guest_body() {
	cat <<'G'
wait_disks $NDISK
devs=$(ls -d /sys/block/vd* | sed 's|.*/||' | tr '\n' ' ')
{
	cat <<JOB
[global]
ioengine=libaio
iodepth=8
direct=1
rw=randwrite
bssplit=4k/35:8k/20:16k/20:64k/15:128k/10
size=$((FIO / 2))
offset_increment=$((FIO / 2))
numjobs=2
verify=crc32c
verify_fatal=1
do_verify=1
randrepeat=0
thread
group_reporting
JOB
	for d in $devs; do
		printf '[%s]\nfilename=/dev/%s\n' $d $d
	done
} > /tmp/job.fio
round=0
while :; do
	round=$((round + 1))
	echo "SIOV-FIO-ROUND $round $(cut -d' ' -f1 /proc/uptime)"
	if ! fio --eta=never --output=/tmp/fio.out /tmp/job.fio; then
		cat /tmp/fio.out
		fail "fio round $round failed (verify or I/O error)"
	fi
	grep -q 'err= 0' /tmp/fio.out || { cat /tmp/fio.out; fail "fio round $round reports errors"; }
	ios=$(sed -n 's/.*issued rwts: total=\([0-9]*\),\([0-9]*\).*/\1+\2/p' /tmp/fio.out | tr '\n' '+')
	echo "SIOV-FIO-OK round $round ios ${ios}0 = $((${ios}0))"
	if blkop check /dev/vda $FLAG 4096 77 >/dev/null 2>&1; then
		break
	fi
	[ $round -lt 40 ] || fail "the host never said stop"
done
if dmesg | grep -Ei 'I/O error|blk_update_request|critical target error|Buffer I/O|virtio_blk.*(error|timeout)'; then
	fail "the guest kernel logged I/O errors"
fi
say "$round fio rounds verified (crc32c), no I/O error in dmesg"
G
}

be_start
INSTANCE=1
LOG_FROM[1]=1
be_backend b0 "$disk" $((1 * MiB + 3 * W + MiB))
be_vdev v0 b0 $V0_OFF $W 2
be_vdev v1 b0 $V1_OFF $W 2
be_vdev v2 b0 $V2_OFF $W 2
be_ready
[ -s "$WORK/state/siovd.json" ] || die "siovd wrote no $WORK/state/siovd.json"

# ---- A: one VDEV, 2 queues: SIGKILL twice, then SIGTERM ---------------------
TA=$(date +%s.%N)
GNAME=a
guest_body | guest_script a NDISK=1 FIO=$FIO FLAG=$FLAG
guest_start a 240 v0
guest_wait_marker a SIOV-FIO-ROUND 90
serving v0 300 60
kill9_restart v0
kill9_restart v0
A_KILLS_RESUB=$KILLS_WITH_RESUBMIT
term_restart v0
file_fill "$disk" $((V0_OFF + FLAG)) 4096 77 $FLAG
sync "$disk"
guest_wait a
rounds=$(grep -c '^SIOV-FIO-OK' "$WORK/a.console")
log "A: $rounds fio rounds verified: $(grep '^SIOV-FIO-OK' "$WORK/a.console" | sed 's/.*= //' | tr '\n' ' ')requests each; $(($(date +%s | cut -d. -f1) - ${TA%.*})) s"
[ "$(vstat v0 .errors)" = 0 ] || die "v0 counts errors: $(stats v0)"
[ "$(vstat v0 .inflight)" = 0 ] || die "v0 has requests in flight after its guest left: $(stats v0)"

# ---- B: two VDEVs, 2 queues each: SIGKILL twice -------------------------------
TB=$(date +%s.%N)
GNAME=b
guest_body | guest_script b NDISK=2 FIO=$FIO FLAG=$FLAG
guest_start b 240 v1 v2
guest_wait_marker b SIOV-FIO-ROUND 90
serving v1 300 60
serving v2 300 60
kill9_restart v1 v2
kill9_restart v1 v2
file_fill "$disk" $((V1_OFF + FLAG)) 4096 77 $FLAG
sync "$disk"
guest_wait b
rounds=$(grep -c '^SIOV-FIO-OK' "$WORK/b.console")
log "B: $rounds fio rounds verified: $(grep '^SIOV-FIO-OK' "$WORK/b.console" | sed 's/.*= //' | tr '\n' ' ')requests each; $(($(date +%s | cut -d. -f1) - ${TB%.*})) s"
for v in v1 v2; do
	[ "$(vstat $v .errors)" = 0 ] || die "$v counts errors: $(stats $v)"
	[ "$(vstat $v .inflight)" = 0 ] || die "$v has requests in flight after its guest left: $(stats $v)"
done

log "$RESTARTS restarts under load (4 x SIGKILL, 1 x SIGTERM), every fio round verified: 0 requests lost"
log "resubmitted after SIGKILL: $RESUBMITTED request(s) in total; $KILLS_WITH_RESUBMIT of 4 kills caught requests in flight (A: $A_KILLS_RESUB of 2)"
if [ "$KILLS_WITH_RESUBMIT" = 0 ]; then
	log "WARNING: no SIGKILL caught a request in flight: the resubmission path was not exercised this run"
fi
be_alive
be_stop
