#!/bin/bash
# siovd dies (SIGKILL) and stops (SIGTERM) under a guest's verified I/O, comes
# back from its state dir, and the guest loses no request.
#
# A: one guest on v0 (2 queues) runs rounds of an fio crc32c write+verify job
#    (libaio, iodepth 8, two jobs so both virtqueues carry I/O, mixed sizes).
#    While fio runs, siovd is killed with SIGKILL twice (at a moment when
#    vdev_stats shows requests in flight) and started again after 0.7 s with
#    the same --state-dir and --rpc-socket, and nothing re-created by RPC: the
#    state dir must bring the VDEVs back, QEMU (chardev reconnect=1) must
#    reattach, and requests left in flight must be resubmitted from the
#    INFLIGHT_SHMFD region (SIGKILLs go on, up to 5, until one caught
#    requests in flight). Then three clean stops: SIGTERM while fio runs,
#    siovd must exit 0 within 5 s with every socket file removed and no
#    sanitizer report, and a new siovd on the same state dir must serve the
#    guest again.
# B: one guest on v1 and v2 (2 queues each), the same fio job on both disks,
#    v2 on packed virtqueues (packed=on: the in-flight records of a packed
#    ring), siovd killed with SIGKILL 2 to 5 times (until requests were caught
#    in flight on the packed disk): multi-VDEV, multi-queue recovery.
#
# The guest keeps starting fio rounds until the host writes a stop flag into
# the backend file (outside the fio area), so every restart happens in the
# middle of fio and one full round runs after the last one. The guest must see
# every block verify, no fio error and no I/O error in dmesg (the host also
# watches the console for the kernel's "is not a head" and I/O errors); the host
# requires each restarted siovd to serve the guest's I/O again, and reports
# how many requests each one resubmitted ("resubmitting N request(s)").
. "$(dirname "$0")/lib.sh"
[ "${SIOV_GUEST_BACKEND:-siovd}" = siovd ] || skip "restart from a state dir is siovd's"
setup "$@"

disk=$WORK/disk.img
W=$((40 * MiB))    # each VDEV's window
FIO=$((32 * MiB))  # fio works on [0, FIO) of each disk
FLAG=$((36 * MiB)) # host -> guest: "stop after this round"
V0_OFF=$((1 * MiB)) V1_OFF=$((1 * MiB + W)) V2_OFF=$((1 * MiB + 2 * W))
KILL_PAUSE=${SIOV_RESTART_PAUSE:-0.7}
TERM_LIMIT=5 # seconds a SIGTERM'd siovd may take to drain and exit
TERM_COUNT=${SIOV_RESTART_TERMS:-3} # clean stops in A (0: SIGKILL only, to diagnose)

INSTANCE=0
declare -A LOG_FROM=() # instance -> first line of its output in backend.log
RESTARTS=0 RESUBMITTED=0 KILLS_WITH_RESUBMIT=0 KILLS=0 TERMS=0 PACKED_RESUBMITS=0

secs_since() { awk -v a="$1" -v b="$(date +%s.%N)" 'BEGIN{printf "%.2f", b-a}'; }

# reaped PID: the process is gone and waited for; lib.sh's cleanup must not
# signal its (possibly recycled) PID.
reaped() {
	if declare -F forget_pid >/dev/null; then
		forget_pid "$1"
	fi
}

# restart_launch: starts siovd exactly as be_start does (same socket, same
# state dir) and waits until it answers; creates nothing.
restart_launch() {
	local t0
	t0=$(date +%s.%N)
	INSTANCE=$((INSTANCE + 1))
	LOG_FROM[$INSTANCE]=$(($(wc -l <"$WORK/backend.log") + 1))
	echo "=== restart-kill: siovd instance $INSTANCE ===" >>"$WORK/backend.log"
	# test/lib/siovd.sh: same directory, state and options as be_start.  The
	# socket file of a killed siovd is still there: ready means an answer.
	siovd_restart || die "siovd instance $INSTANCE died or does not answer at start: $(instance_log $INSTANCE | tail -n 5)"
	BE_PID=$SIOVD_PID
	PIDS+=("$BE_PID")
	log "siovd instance $INSTANCE (pid $BE_PID) answers after $(secs_since "$t0") s"
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

# replayed: the restarted siovd has exactly v0 v1 v2, from its state dir.
replayed() {
	local names
	names=$(ctl vdev_stats | jq -c '[if type == "array" then .[] else . end | .name] | sort') ||
		die "vdev_stats failed on siovd instance $INSTANCE"
	[ "$names" = '["v0","v1","v2"]' ] || die "siovd instance $INSTANCE has VDEVs $names, not v0 v1 v2"
}

guest_alive() {
	grep -q '^SIOV-TEST-FAIL' "$WORK/$GNAME.console" && die "guest $GNAME: $(grep -m1 '^SIOV-TEST-FAIL' "$WORK/$GNAME.console")"
	# The guest kernel's complaints reach the console at once (fio may hang).
	if grep -Eq 'is not a head|I/O error|blk_update_request|fio: io_u error' "$WORK/$GNAME.console"; then
		die "guest $GNAME after siovd instance $INSTANCE took over: $(grep -Em4 'is not a head|I/O error|blk_update_request|fio: io_u error' "$WORK/$GNAME.console" | tr -d '\r' | tr '\n' '|')"
	fi
	grep -q '^SIOV-TEST-PASS' "$WORK/$GNAME.console" && die "guest $GNAME finished before the host said stop"
	kill -0 "$GUEST_PID" 2>/dev/null || die "guest $GNAME ended early"
}

# serving NAME N SECONDS: the current siovd has served N requests of NAME
# (counters start at 0 in a new process), i.e. the guest reattached.
serving() {
	local i=0 n=$(($3 * 10)) r
	while :; do
		r=$(vstat "$1" .requests)
		[ "$r" -ge "$2" ] && return 0
		i=$((i + 1))
		guest_alive
		[ $i -le $n ] || die "siovd instance $INSTANCE: $1 served only $r requests in $3 s (state $(vstat "$1" .state)): the guest did not reattach"
		sleep 0.1
	done
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

# resubmits N: the requests instance N said it resubmitted, summed.
resubmits() {
	instance_log "$1" | sed -n 's/.*: resubmitting \([0-9]*\) request(s).*/\1/p' | awk '{s += $1} END {print s + 0}'
}
resubmit_lines() {
	instance_log "$1" | grep -o 'vdev [^ ]* queue [0-9]*: resubmitting [0-9]* request(s)' | sed 's/^/; /' | tr -d '\n'
}

# kill9_restart VDEV...: SIGKILL with I/O in flight, pause, start again, and
# the guest's I/O flows on every VDEV.
kill9_restart() {
	local pid=$BE_PID t0 n before v
	guest_alive
	busy "$@"
	before=$(for v in "$@"; do printf '%s %s ' "$v" "$(stats "$v" | jq -c '{requests, inflight}')"; done)
	siovd_kill
	t0=$(date +%s.%N)
	reaped "$pid"
	KILLS=$((KILLS + 1))
	log "siovd instance $INSTANCE killed with SIGKILL (just before: $before)"
	sleep "$KILL_PAUSE"
	restart_launch
	replayed
	for v in "$@"; do
		serving "$v" 200 30
	done
	RESTARTS=$((RESTARTS + 1))
	n=$(resubmits $INSTANCE)
	RESUBMITTED=$((RESUBMITTED + n))
	[ "$n" -gt 0 ] && KILLS_WITH_RESUBMIT=$((KILLS_WITH_RESUBMIT + 1))
	if [ -n "${PACKED_VDEV:-}" ] && instance_log $INSTANCE | grep -q "vdev $PACKED_VDEV queue [0-9]*: resubmitting"; then
		PACKED_RESUBMITS=$((PACKED_RESUBMITS + 1))
	fi
	log "guest I/O flows again $(secs_since "$t0") s after the kill; instance $INSTANCE resubmitted $n request(s)$(resubmit_lines $INSTANCE)"
}

# kill9_until_resubmit MIN MAX VDEV...: at least MIN kills, then more (up to
# MAX) until one of this series caught a request in flight (on PACKED_VDEV if
# set): the kill's moment is a guess, and the back end is idle much of the time.
kill9_until_resubmit() {
	local min=$1 max=$2 k=0 caught0=$KILLS_WITH_RESUBMIT packed0=$PACKED_RESUBMITS
	shift 2
	caught() {
		if [ -n "${PACKED_VDEV:-}" ]; then
			[ $PACKED_RESUBMITS != "$packed0" ]
		else
			[ $KILLS_WITH_RESUBMIT != "$caught0" ]
		fi
	}
	while [ $k -lt "$min" ] || { ! caught && [ $k -lt "$max" ]; }; do
		kill9_restart "$@"
		k=$((k + 1))
	done
}

# term_restart VDEV...: a clean stop in the middle of I/O, then a new siovd.
term_restart() {
	local pid=$BE_PID rc=0 t0 dt s v before
	guest_alive
	busy "$@"
	before=$(for v in "$@"; do printf '%s %s ' "$v" "$(stats "$v" | jq -c '{requests, inflight}')"; done)
	t0=$(date +%s.%N)
	kill -TERM "$pid"
	timeout "$TERM_LIMIT" tail --pid="$pid" -f /dev/null ||
		die "siovd instance $INSTANCE did not exit within $TERM_LIMIT s of SIGTERM"
	siovd_reap
	rc=$SIOVD_STATUS
	reaped "$pid"
	dt=$(secs_since "$t0")
	[ $rc = 0 ] || die "siovd instance $INSTANCE exited with status $rc after SIGTERM"
	if instance_log $INSTANCE | grep -Eq 'ERROR: (AddressSanitizer|LeakSanitizer)|runtime error:'; then
		die "siovd instance $INSTANCE (SIGTERM) has a sanitizer report"
	fi
	for s in "${VDEV_SOCK[@]}" "$RPC"; do
		[ ! -e "$s" ] || die "siovd instance $INSTANCE left $s behind after SIGTERM"
	done
	log "siovd instance $INSTANCE: SIGTERM -> exit 0 in $dt s, every socket file removed (just before: $before)"
	sleep "$KILL_PAUSE"
	restart_launch
	replayed
	for v in "$@"; do
		serving "$v" 200 30
	done
	RESTARTS=$((RESTARTS + 1))
	TERMS=$((TERMS + 1))
	log "guest I/O flows again $(secs_since "$t0") s after SIGTERM; instance $INSTANCE resubmitted $(resubmits $INSTANCE) request(s)"
}

# guest_start_reconnect NAME SECONDS VDEV...: lib.sh's guest_start, with
# reconnect=1 on every chardev so that QEMU reattaches to a restarted siovd
# (guest_start puts VDEV_SOCK[v] right after "path=", so the option rides
# along; the socket paths have no comma).
guest_start_reconnect() {
	local v
	local -A saved=()
	for v in "${!VDEV_SOCK[@]}"; do
		saved[$v]=${VDEV_SOCK[$v]}
		VDEV_SOCK[$v]=${VDEV_SOCK[$v]},reconnect=1
	done
	guest_start "$@"
	for v in "${!saved[@]}"; do
		VDEV_SOCK[$v]=${saved[$v]}
	done
	GNAME=$1
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
fsync=16
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
	ios=$(sed -n 's/.*issued rwts: total=\([0-9]*\),\([0-9]*\).*/\1+\2+/p' /tmp/fio.out | tr -d '\n')
	echo "SIOV-FIO-OK round $round $(cut -d' ' -f1 /proc/uptime) requests $((${ios}0))"
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

# stop_guest NAME VDEV_OFFSET: the flag, then the guest must finish its round.
stop_guest() {
	file_fill "$disk" $(($2 + FLAG)) 4096 77 $FLAG
	sync "$disk"
	guest_wait "$1"
	log "guest $1: $(grep -c '^SIOV-FIO-OK' "$WORK/$1.console") fio rounds verified, requests per round: $(sed -n 's/^SIOV-FIO-OK.* requests //p' "$WORK/$1.console" | tr -d '\r' | tr '\n' ' ')"
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
guest_body | guest_script a NDISK=1 FIO=$FIO FLAG=$FLAG
guest_start_reconnect a 240 v0
guest_wait_marker a SIOV-FIO-ROUND 90
serving v0 300 60
kill9_until_resubmit 2 5 v0
A_KILLS_RESUB=$KILLS_WITH_RESUBMIT
# Three clean stops: each one has a chance to find requests in flight.
for i in $(seq "$TERM_COUNT"); do
	term_restart v0
done
stop_guest a $V0_OFF
for v in v0; do
	[ "$(vstat $v .errors)" = 0 ] || die "$v counts errors: $(stats $v)"
	[ "$(vstat $v .inflight)" = 0 ] || die "$v has requests in flight after its guest left: $(stats $v)"
done
log "A done in $(secs_since "$TA") s"

# ---- B: two VDEVs, 2 queues each: SIGKILL twice -------------------------------
TB=$(date +%s.%N)
guest_body | guest_script b NDISK=2 FIO=$FIO FLAG=$FLAG
VDEV_DEVOPTS[v2]=,packed=on
PACKED_VDEV=v2
guest_start_reconnect b 240 v1 v2
guest_wait_marker b SIOV-FIO-ROUND 90
serving v1 300 60
serving v2 300 60
kill9_until_resubmit 2 5 v1 v2
stop_guest b $V1_OFF
for v in v1 v2; do
	[ "$(vstat $v .errors)" = 0 ] || die "$v counts errors: $(stats $v)"
	[ "$(vstat $v .inflight)" = 0 ] || die "$v has requests in flight after its guest left: $(stats $v)"
done
[ "$(vstat v2 '[.queues[].ring] | unique | join(",")')" = packed ] || die "v2 did not run on packed rings: $(stats v2)"
log "packed v2: $PACKED_RESUBMITS kill(s) caught requests in flight on it"
log "B done in $(secs_since "$TB") s"

log "$RESTARTS restarts under guest I/O ($KILLS x SIGKILL, $TERMS x SIGTERM); every fio round verified: 0 requests lost"
log "resubmitted after SIGKILL: $RESUBMITTED request(s); $KILLS_WITH_RESUBMIT of $KILLS kills caught requests in flight (A: $A_KILLS_RESUB)"
if [ "$PACKED_RESUBMITS" = 0 ]; then
	log "WARNING: no SIGKILL caught a request in flight on the packed ring: its resubmission was not exercised"
fi
if [ "$KILLS_WITH_RESUBMIT" = 0 ]; then
	log "WARNING: no SIGKILL caught a request in flight: the resubmission path was not exercised"
fi
be_alive
be_stop
