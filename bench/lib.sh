# Shell helpers for bench sections (sourced, not run): start and stop a target
# (siovd or qemu-storage-daemon) serving one vhost-user-blk socket, run
# siov-bench or fio against it, and record figures with bench/figures.py.
# A section sets BUILD and DIR (its arguments) and sources this file; the
# driver (bench/run.sh) exports QUICK, TCPU and LCPU (RUNTIME and ROUNDS
# when the user set them; the defaults are here).
# Everything started here is stopped by pid (stop_target, the EXIT trap).

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
FIG="python3 $HERE/figures.py"
QUICK=${QUICK:-0}
if [ "$QUICK" = 1 ]; then RUNTIME=${RUNTIME:-2} ROUNDS=${ROUNDS:-2}; fi
RUNTIME=${RUNTIME:-5}
ROUNDS=${ROUNDS:-3}
TCPU=${TCPU:-0}
LCPU=${LCPU:-1}
[ "$(nproc)" -ge 2 ] || LCPU=0
BENCH=$BUILD/app/siov-bench/siov-bench
SIOVD=$BUILD/app/siovd/siovd
SIOVCTL=$BUILD/app/siovctl/siovctl
QSD=$(command -v qemu-storage-daemon || true)
WORK=$(mktemp -d /tmp/siov-bench.XXXXXX)
TPID=""
mkdir -p "$DIR/raw"

bench_cleanup() {
	stop_target
	rm -rf "$WORK"
}
trap bench_cleanup EXIT

have_siovd() { [ -x "$SIOVD" ] && [ -x "$SIOVCTL" ] && [ -x "$BENCH" ]; }

wait_sock() { # path pid (SOCK_WAIT: tries of 10 ms, default 500)
	for _ in $(seq "${SOCK_WAIT:-500}"); do
		[ -S "$1" ] && return 0
		kill -0 "$2" 2>/dev/null || return 1
		sleep 0.01
	done
	return 1
}

stop_target() {
	if [ -n "$TPID" ]; then
		kill "$TPID" 2>/dev/null || true
		wait "$TPID" 2>/dev/null || true
		TPID=""
	fi
	rm -rf "$WORK/state" "$WORK"/*.sock
}

# start_qsd null|FILE: serves $WORK/vu.sock from CPU $TCPU
start_qsd() {
	local blk
	if [ "$1" = null ]; then
		blk=(--blockdev "driver=null-co,node-name=d0,size=1073741824,read-zeroes=off")
	else
		blk=(--blockdev "driver=file,node-name=f0,filename=$1,cache.direct=on,aio=io_uring"
		     --blockdev "driver=raw,node-name=d0,file=f0")
	fi
	taskset -c "$TCPU" "$QSD" "${blk[@]}" --export \
		"type=vhost-user-blk,id=e0,node-name=d0,addr.type=unix,addr.path=$WORK/vu.sock,writable=on,num-queues=1" \
		>"$WORK/target.log" 2>&1 &
	TPID=$!
	wait_sock "$WORK/vu.sock" "$TPID"
}

# start_siovd null|FILE [siovd options...]: serves $WORK/vu.sock from CPU $TCPU
# (VDEV_QUEUES queues, default 1; SIOVD_ARGS: more siovd options, e.g. --poll-hold-ns 1000)
start_siovd() {
	local be=$1
	shift
	mkdir -p "$WORK/state"
	# SIOVD_WRAP: a command siovd runs under (packed.sh counts instructions with valgrind).
	# shellcheck disable=SC2086
	taskset -c "$TCPU" ${SIOVD_WRAP:-} "$SIOVD" --rpc-socket "$WORK/rpc.sock" --state-dir "$WORK/state" ${SIOVD_ARGS:-} "$@" \
		>"$WORK/target.log" 2>&1 &
	TPID=$!
	wait_sock "$WORK/rpc.sock" "$TPID" || return 1
	if [ "$be" = null ]; then
		"$SIOVCTL" -s "$WORK/rpc.sock" backend_create --name b0 --type null --size 1073741824 >/dev/null
	else
		"$SIOVCTL" -s "$WORK/rpc.sock" backend_create --name b0 --type file --path "$be" >/dev/null
	fi
	"$SIOVCTL" -s "$WORK/rpc.sock" vdev_create --name v0 --type blk --backend b0 \
		--socket "$WORK/vu.sock" --queues "${VDEV_QUEUES:-1}" >/dev/null
	wait_sock "$WORK/vu.sock" "$TPID"
}

# disk_mark OUT: with DISK_STAT set (a /sys/dev/block/MAJ:MIN/stat file),
# appends the clock and that device's counters to OUT.disk, so disk_depth can
# tell what the device saw during the run (not during the target's start).
disk_mark() {
	[ -n "${DISK_STAT:-}" ] || return 0
	echo "$(date +%s.%N) $(cat "$DISK_STAT")" >>"$1.disk"
}

# disk_dev_stat FILE: the stat file of the block device FILE lives on
disk_dev_stat() {
	python3 -c 'import os, sys; d = os.stat(sys.argv[1]).st_dev
print("/sys/dev/block/%d:%d/stat" % (os.major(d), os.minor(d)))' "$1"
}

# disk_depth OUT KEY: from OUT.disk (two disk_marks), the device's mean queue
# depth (aqu-sz: requests in flight, averaged over the run), its depth while
# busy, or the mean request size in KiB; the whole device, so others' I/O
# counts too.
disk_depth() {
	python3 - "$1.disk" "$2" <<'PY'
import sys
rows = [l.split() for l in open(sys.argv[1]) if l.strip()]
if len(rows) < 2:
    print("none"); sys.exit()
t0, t1 = float(rows[-2][0]), float(rows[-1][0])
d = [int(b) - int(a) for a, b in zip(rows[-2][1:], rows[-1][1:])]
ios, sectors = d[0] + d[4], d[2] + d[6]
key = sys.argv[2]
if key == "aqu":
    print("%.2f" % (d[10] / 1e3 / max(t1 - t0, 1e-9)))
elif key == "busy_depth":
    print("%.2f" % (d[10] / d[9]) if d[9] else "none")
else:
    print("%.1f" % (sectors / 2 / ios) if ios else "none")
PY
}

# jget FILE EXPR: evaluates a Python expression over the JSON in FILE as d
jget() {
	python3 -c 'import json,sys; d=json.load(open(sys.argv[1])); print(eval(sys.argv[2]))' "$1" "$2"
}

# run_target SIDE BACKEND OUT siov-bench-args...: starts SIDE (siovd|qsd) on
# BACKEND, runs siov-bench from CPU $LCPU for $RUNTIME s, leaves its JSON in
# OUT (empty on failure; siovd's engine_stats in OUT.engine) and stops the target.
run_target() {
	local side=$1 be=$2 out=$3
	shift 3
	: >"$out"
	if ! "start_$side" "$be"; then
		echo "bench: $side did not start:" >&2
		cat "$WORK/target.log" >&2
		stop_target
		return 1
	fi
	disk_mark "$out"
	# shellcheck disable=SC2086
	taskset -c "$LCPU" ${BENCH_WRAP:-} "$BENCH" --socket "$WORK/vu.sock" --runtime "$RUNTIME" \
		--target-pid "$TPID" --json "$@" >"$out.tmp" && head -1 "$out.tmp" >"$out"
	disk_mark "$out"
	rm -f "$out.tmp"
	# siovd's own per-request counters (docs/performance.md), next to the run's JSON.
	if [ "$side" = siovd ]; then
		"$SIOVCTL" -s "$WORK/rpc.sock" engine_stats >"$out.engine" 2>/dev/null || : >"$out.engine"
	fi
	stop_target
	[ -s "$out" ]
}

# run_fio OUT fio-args...: native fio from the target's CPU, JSON in OUT
run_fio() {
	local out=$1
	shift
	disk_mark "$out"
	taskset -c "$TCPU" fio --name=native --ioengine=io_uring --direct=1 --runtime="$RUNTIME" \
		--time_based --output-format=json "$@" >"$out" 2>/dev/null || : >"$out"
	disk_mark "$out"
	[ -s "$out" ]
}

# fio_get OUT read|write KEY: iops, or lat_us (completion + submission, mean)
fio_get() {
	python3 -c '
import json, sys
j = json.load(open(sys.argv[1]))["jobs"][0][sys.argv[2]]
if sys.argv[3] == "iops":
    print(j["iops"])
else:
    print((j["clat_ns"]["mean"] + j.get("slat_ns", {}).get("mean", 0)) / 1e3)' "$@"
}
