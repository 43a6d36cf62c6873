#!/bin/bash
# Reservations hold when the disk is the bottleneck, and group shares hold
# across engines (issue 13), as a user would see them through siov-bench:
#
# 1. eight VDEVs reserving IOPS (iops_min, QD 8, clients waiting on
#    interrupts) beside one unreserved QD 128 neighbour, all windows of one
#    O_DIRECT file on a real disk (not tmpfs): every reserved VDEV gets at
#    least 95% of its reservation.  The file's capacity is measured first
#    (the same load without reservations) and the reservations sum to 40% of
#    it, 5% each, about what a QD 8 VDEV gets beside a QD 128 one without
#    them (64 KiB reads, so that the disk is the bottleneck); a round that falls short is measured again once,
#    capacity first, so that a loaded machine does not fail it.
# 2. three equal VDEVs in a group limited to 1,500 IOPS (null backend, QD 16
#    each) on two engines, one alone on its engine: each gets its third
#    within 25%, and the group its limit within 10%.  A round in which the
#    host kept an engine off the CPU for more than a quarter of it is measured
#    again; if both were, the shares measured the scheduler and are not judged.
#
# Usage: t-reserve.sh SIOVD SIOVCTL SIOV_BENCH
#   env: SIOV_TEST_DISK_DIR (default /var/tmp), RESERVE_SECONDS (default 3)
set -euo pipefail
SIOVD=$1 SIOVCTL=$2 BENCH=$3
command -v jq >/dev/null || { echo "SKIP: jq not installed"; exit 77; }
[ "$(nproc)" -ge 2 ] || { echo "SKIP: needs 2 CPUs for 2 engines"; exit 77; }
. "$(dirname "$0")/../lib/siovd.sh"
DISK_DIR=${SIOV_TEST_DISK_DIR:-/var/tmp}
SECS=${RESERVE_SECONDS:-3}
N=8 WIN_MB=32
WORK=$(mktemp -d /tmp/siov-reserve.XXXXXX)
DISK=""
PIDS=()
cleanup() {
	for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
	wait 2>/dev/null || true
	rm -rf "$WORK"
	[ -z "$DISK" ] || rm -f "$DISK"
}
trap cleanup EXIT
PASSED=0 FAILED=0
ok() { echo "ok: $*"; PASSED=$((PASSED + 1)); }
bad() { echo "FAIL: $*"; FAILED=$((FAILED + 1)); }
finish() {
	siovd_stop || bad "siovd did not stop cleanly on SIGTERM"
	PIDS=()
	echo "$PASSED passed, $FAILED failed"
	[ "$FAILED" = 0 ]
	exit $?
}

# One client thread per reserved VDEV (no --threads): a thread shared by
# several --irq jobs sleeps on one queue while the others' completions wait,
# which once made the bench's victims measure their client (32-48 % of their
# reservation) rather than siovd.  siov-bench refuses that now.
if "$BENCH" --irq --threads 1 --socket "$WORK/x.sock" --socket "$WORK/y.sock" 2>"$WORK/t.err" >/dev/null ||
	! grep -q "thread per job" "$WORK/t.err"; then
	bad "siov-bench accepted --irq with one thread for two VDEVs: $(cat "$WORK/t.err")"
else
	ok "siov-bench refuses --irq with a thread shared by several VDEVs"
fi

# Part 1 needs a file on a disk; without one it is skipped (said why) and part 2 still runs.
fstype=$(df -T "$DISK_DIR" | awk 'NR==2{print $2}')
case $fstype in
tmpfs | ramfs) echo "SKIP part 1: $DISK_DIR is $fstype, not a disk (set SIOV_TEST_DISK_DIR)" ;;
*)
	DISK=$(mktemp "$DISK_DIR/siov-reserve.XXXXXX")
	# Written, not fallocated: reads of unwritten extents never reach the disk.
	dd if=/dev/zero of="$DISK" bs=1M count=$(((N + 1) * WIN_MB)) oflag=direct status=none ||
		{ echo "SKIP part 1: no O_DIRECT file in $DISK_DIR"; rm -f "$DISK"; DISK=""; }
	;;
esac
SIOVD_DIR=$WORK
# Part 1 on one engine, as in issue 13's report; part 2 restarts it with two.
siovd_start reserve --engines 1 || { echo "FAIL: siovd did not start"; exit 1; }
PIDS+=("$SIOVD_PID")
ctl() { siovd_ctl "$@"; }

# ---- 1. reservations on a disk-bound backend ----
# 64 KiB reads make the disk, not the engine's CPU, the bottleneck (on a
# loaded 2-CPU machine 4 KiB reads measure the scheduler instead).  The
# neighbour is v0, the reserved ones v1..v8.
[ -z "$DISK" ] || ctl backend_create --name disk --type file --path "$DISK" >/dev/null
for i in $(seq 0 $N); do
	[ -n "$DISK" ] || break
	ctl vdev_create --name v$i --backend disk --offset $((i * WIN_MB))M --size ${WIN_MB}M \
		--socket "$WORK/v$i.sock" --queues 1 >/dev/null
done
bench() { # OUT BS ARGS...: siov-bench, random reads
	local out=$1 bs=$2
	shift 2
	"$BENCH" --rw randread --bs "$bs" --json "$@" >"$out" 2>"$out.err"
}
# Everyone at once, v0 at QD 128 and v1..v8 at QD 8 on interrupts, for SECS
# seconds; leaves nb.json and resv.json (per VDEV IOPS on its 2nd line).
load() { # SECS
	local socks=() i nbpid
	for i in $(seq 1 $N); do socks+=(--socket "$WORK/v$i.sock"); done
	bench "$WORK/nb.json" 64k --socket "$WORK/v0.sock" --iodepth 128 --runtime $(($1 + 1)) &
	nbpid=$!
	PIDS+=("$nbpid")
	sleep 0.5
	bench "$WORK/resv.json" 64k "${socks[@]}" --iodepth 8 --irq --per-socket --runtime "$1" || true
	wait "$nbpid" || true
}
nb_iops() { head -1 "$WORK/nb.json" | jq '.iops | floor' 2>/dev/null || echo 0; }
resv_iops() { sed -n 2p "$WORK/resv.json" | jq -c "[.per_socket_iops[] | floor] | $1" 2>/dev/null || echo 0; }
set_resv() { for i in $(seq 1 $N); do ctl vdev_set_qos --name v$i --iops-min "$1" >/dev/null; done; }
# One round: the capacity (the same load without reservations), reservations
# summing to 40% of it, then the load again.  True if every reserved VDEV got
# 95% of its reservation.
reserve_round() {
	local cap resv worst
	set_resv 0
	load 2
	cap=$(($(nb_iops) + $(resv_iops add)))
	resv=$((cap * 40 / 100 / N))
	[ "$resv" -le 3000 ] || resv=3000
	[ "$resv" -ge 20 ] || { echo "the disk gave only $cap IOPS: too slow or loaded to tell"; return 1; }
	echo "capacity $cap IOPS (without reservations each small VDEV got $(resv_iops min)-$(resv_iops max))"
	set_resv "$resv"
	load "$SECS"
	worst=$(resv_iops min)
	echo "$N x iops_min $resv: worst reserved VDEV $worst IOPS, neighbour $(nb_iops) IOPS;" \
		"each: $(resv_iops .)"
	[ "$worst" -ge $((resv * 95 / 100)) ]
}
if [ -z "$DISK" ]; then
	:
elif reserve_round; then
	ok "every reserved VDEV got >= 95% of its reservation beside a QD 128 neighbour"
elif echo "once more (a loaded machine can starve one round)" && reserve_round; then
	ok "every reserved VDEV got >= 95% of its reservation beside a QD 128 neighbour (2nd round)"
else
	bad "a reserved VDEV got less than 95% of its reservation in two rounds"
fi
for f in resv nb; do
	[ -n "$DISK" ] || break
	head -1 "$WORK/$f.json" | jq -e '.errors == 0' >/dev/null ||
		bad "$f: I/O errors: $(head -1 "$WORK/$f.json" | jq -c .errors) $(tail -2 "$WORK/$f.json.err")"
done
for i in $(seq 0 $N); do [ -z "$DISK" ] || ctl vdev_delete --name v$i >/dev/null; done
siovd_stop || bad "siovd did not stop cleanly on SIGTERM"
SIOVD_ARGS=(--engines 2)
siovd_restart || { bad "siovd did not restart with 2 engines"; PIDS=(); finish; }
PIDS=("$SIOVD_PID")

# ---- 2. a group's shares across two engines ----
# Engines take new queues by fewest queues, so g1 -> e0, g2 -> e1, g3 -> e0
# when attached in that order: g2 is alone on its engine.
GROUP_IOPS=1500
ctl backend_create --name nul --type null --size 1G >/dev/null
ctl group_create --name tenant --iops-limit $GROUP_IOPS >/dev/null
for g in g1 g2 g3; do
	ctl vdev_create --name $g --backend nul --offset $((${g#g} * 64))M --size 64M \
		--socket "$WORK/$g.sock" --queues 1 --group tenant >/dev/null
done
engine_of() { ctl vdev_stats --name "$1" | jq '.[0].queues[0].engine // -1'; }
# "THREAD NS" per siovd engine thread: how long it has waited on a run queue
# (schedstat; none without CONFIG_SCHED_INFO, and the check stays strict).
engines_wait() {
	local t
	for t in /proc/"$SIOVD_PID"/task/*; do
		case $(cat "$t/comm" 2>/dev/null) in
		siov-eng*) echo "${t##*/} $(awk '{print $2}' "$t/schedstat" 2>/dev/null || echo 0)" ;;
		esac
	done
}
# The longest an engine waited since BEFORE (engines_wait's output), in ns.
engines_waited() { engines_wait | awk -v b="$1" 'BEGIN{n=split(b,a," |\n");
	for(i=1;i<n;i+=2)w[a[i]]=a[i+1]} {d=$2-w[$1]; if(d>m)m=d} END{printf "%.0f\n", m}'; }
# A round in which an engine waited for a CPU longer than a quarter of it
# measured the host's scheduler: with the engines at 75-90 % of the
# round on run queues (load 16 here) the member whose engine the scheduler
# ran less got less, 464-487 against 536-540, and a member that does not ask
# for 100 ms lends its part by design (lib/qos/qos.c, GROUP_ACTIVE_NS).
STARVED=0
# siov-bench attaches its sockets in order, so g1 -> e0, g2 -> e1, g3 -> e0.
group_round() {
	local x lo hi w0 t0 waited
	w0=$(engines_wait) t0=$(date +%s%N)
	bench "$WORK/g.json" 4k --socket "$WORK/g1.sock" --socket "$WORK/g2.sock" \
		--socket "$WORK/g3.sock" --iodepth 16 --irq --per-socket --runtime "$SECS" &
	PIDS+=($!)
	sleep 1
	echo "engines: g1 $(engine_of g1), g2 $(engine_of g2), g3 $(engine_of g3)"
	wait $! || true
	waited=$(engines_waited "$w0") t0=$(($(date +%s%N) - t0))
	echo "an engine waited up to $((waited / 1000000)) ms for a CPU in the $((t0 / 1000000)) ms round"
	STARVED=$((waited * 4 > t0))
	x=$(sed -n 2p "$WORK/g.json" | jq -c '[.per_socket_iops[] | floor]' 2>/dev/null || echo '[0,0,0]')
	LAST=$x
	lo=$((GROUP_IOPS / 3 * 75 / 100)) hi=$((GROUP_IOPS / 3 * 125 / 100))
	echo "group limit $GROUP_IOPS: g1, g2, g3 got $x IOPS, $(jq add <<<"$x") together;" \
		"throttled: $(for g in g1 g2 g3; do ctl vdev_stats --name $g | jq -c '.[0].qos.throttled'; done | tr '\n' ' ')"
	jq -e "all(.[]; . >= $lo and . <= $hi) and
		add >= $GROUP_IOPS * 0.9 and add <= $GROUP_IOPS * 1.1" <<<"$x" >/dev/null
}
if group_round; then
	ok "a group over two engines: each member its third within 25%, the group its limit within 10%"
elif STARVED1=$STARVED && echo "once more" && group_round; then
	ok "a group over two engines: shares within 25%, the limit within 10% (2nd round)"
elif [ "$STARVED1$STARVED" = 11 ] && jq -e "add <= $GROUP_IOPS * 1.1" <<<"$LAST" >/dev/null; then
	# Not a verdict on the shares; an unloaded machine (CI) checks them.  No
	# scheduler lets a group exceed its limit, so that is still checked.
	echo "SKIP group shares: in both rounds an engine of siovd waited for a CPU more than a" \
		"quarter of the time, so the shares measured this machine's scheduler (the limit held)"
else
	bad "group shares across two engines missed their third by more than 25% (or the limit by 10%) in two rounds"
fi
finish
