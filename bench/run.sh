#!/bin/bash
# siov's benchmarks, side by side with the peers on this machine, in one run.
# Runs alternate A B A B so drift (other load, thermal) hits both sides alike:
#  1. siovd null backend vs qemu-storage-daemon null-co (read-zeroes=off, so
#     neither touches read buffers): 4 KiB randread at QD 1, 32, 128 through
#     siov-bench: IOPS, latency, IOPS per CPU-second of the target.
#  2. siovd file backend vs fio --ioengine=io_uring --direct=1 on the same
#     file at QD 32 (the near-native ratio); qemu-storage-daemon's file export
#     is measured too, for reference.
# The target is pinned to CPU 0 and the load (siov-bench or fio) to CPU 1.
# Writes raw JSON, results.json and results.md under bench/results/<stamp>/.
# Usage: bench/run.sh [BUILD]   env: RUNTIME=5 ROUNDS=2 QDS="1 32 128"
#        FILE_MB=1024 FILE_DIR=/var/tmp OUT=dir
set -euo pipefail

BUILD=${1:-build}
RUNTIME=${RUNTIME:-5}
ROUNDS=${ROUNDS:-2}
QDS=${QDS:-"1 32 128"}
FILE_MB=${FILE_MB:-1024}
FILE_DIR=${FILE_DIR:-/var/tmp}
HERE=$(cd "$(dirname "$0")" && pwd)
BENCH=$BUILD/app/siov-bench/siov-bench
SIOVD=$BUILD/app/siovd/siovd
SIOVCTL=$BUILD/app/siovctl/siovctl
QSD=$(command -v qemu-storage-daemon || true)
OUT=${OUT:-$HERE/results/$(date +%Y%m%d-%H%M%S)}
TCPU=0
LCPU=1
[ "$(nproc)" -ge 2 ] || LCPU=0

[ -x "$BENCH" ] || { echo "bench: $BENCH not built" >&2; exit 1; }
mkdir -p "$OUT/raw"
WORK=$(mktemp -d /tmp/siov-bench.XXXXXX)
FILE=$(mktemp "$FILE_DIR/siov-bench-disk.XXXXXX")
TPID=""

cleanup() {
	stop_target
	rm -rf "$WORK" "$FILE"
}
trap cleanup EXIT

have_siovd() { [ -x "$SIOVD" ] && [ -x "$SIOVCTL" ]; }

wait_sock() { # path pid
	for _ in $(seq 500); do
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

# start_qsd null|file: serves $WORK/vu.sock
start_qsd() {
	local blk
	if [ "$1" = null ]; then
		blk=(--blockdev "driver=null-co,node-name=d0,size=1073741824,read-zeroes=off")
	else
		blk=(--blockdev "driver=file,node-name=f0,filename=$FILE,cache.direct=on,aio=io_uring"
		     --blockdev "driver=raw,node-name=d0,file=f0")
	fi
	taskset -c $TCPU "$QSD" "${blk[@]}" --export \
		"type=vhost-user-blk,id=e0,node-name=d0,addr.type=unix,addr.path=$WORK/vu.sock,writable=on,num-queues=1" \
		>"$WORK/target.log" 2>&1 &
	TPID=$!
	wait_sock "$WORK/vu.sock" "$TPID"
}

# start_siovd null|file: serves $WORK/vu.sock
start_siovd() {
	mkdir -p "$WORK/state"
	taskset -c $TCPU "$SIOVD" --rpc-socket "$WORK/rpc.sock" --state-dir "$WORK/state" \
		>"$WORK/target.log" 2>&1 &
	TPID=$!
	wait_sock "$WORK/rpc.sock" "$TPID"
	if [ "$1" = null ]; then
		"$SIOVCTL" -s "$WORK/rpc.sock" backend_create --name b0 --type null --size 1073741824 >/dev/null
	else
		"$SIOVCTL" -s "$WORK/rpc.sock" backend_create --name b0 --type file --path "$FILE" >/dev/null
	fi
	"$SIOVCTL" -s "$WORK/rpc.sock" vdev_create --name v0 --type blk --backend b0 \
		--socket "$WORK/vu.sock" --queues 1 >/dev/null
	wait_sock "$WORK/vu.sock" "$TPID"
}

# bench_once SIDE BACKEND QD ROUND
bench_once() {
	local side=$1 be=$2 qd=$3 round=$4 out="$OUT/raw/$2-$1-qd$3-r$4.json"
	if ! "start_$side" "$be"; then
		echo "bench: $side did not start:" >&2
		cat "$WORK/target.log" >&2
		stop_target
		return 0
	fi
	if taskset -c $LCPU "$BENCH" --socket "$WORK/vu.sock" --rw randread --bs 4k \
		--iodepth "$qd" --runtime "$RUNTIME" --target-pid "$TPID" --json >"$out.tmp"; then
		python3 -c 'import json,sys; d=json.load(open(sys.argv[1])); d.update(side=sys.argv[2], backend=sys.argv[3], round=int(sys.argv[4])); json.dump(d, open(sys.argv[5],"w"))' \
			"$out.tmp" "$side" "$be" "$round" "$out"
		echo "bench: $be $side qd=$qd round=$round: $(python3 -c 'import json,sys; d=json.load(open(sys.argv[1])); print("%.0f IOPS, mean %.2f us" % (d["iops"], d["lat_ns"]["mean"]/1e3))' "$out")"
	else
		echo "bench: $be $side qd=$qd round=$round failed" >&2
	fi
	rm -f "$out.tmp"
	stop_target
}

# fio_once QD ROUND [SIDE CPU]: native io_uring on the file.  The reference
# ("fio") issues its I/O from the target's CPU, as siovd does: on this VM the
# disk's completions are cheaper on one CPU than the other, and the ratio
# should compare the I/O paths, not the CPUs.  "fio-cpu1" is the other CPU.
fio_once() {
	local side=${3:-fio} cpu=${4:-$TCPU}
	local out="$OUT/raw/file-$side-qd$1-r$2.json"
	taskset -c $cpu fio --name=native --filename="$FILE" --ioengine=io_uring --direct=1 \
		--rw=randread --bs=4k --iodepth="$1" --runtime="$RUNTIME" --time_based \
		--output-format=json >"$out.tmp" 2>/dev/null
	python3 -c 'import json,sys; d=json.load(open(sys.argv[1])); r=d["jobs"][0]["read"]; json.dump(dict(side=sys.argv[5], backend="file", round=int(sys.argv[2]), iodepth=int(sys.argv[3]), iops=r["iops"], lat_ns=dict(mean=r["clat_ns"]["mean"]+r.get("slat_ns",{}).get("mean",0))), open(sys.argv[4],"w"))' \
		"$out.tmp" "$2" "$1" "$out" "$side"
	rm -f "$out.tmp"
	echo "bench: file $side (cpu $cpu) qd=$1 round=$2: $(python3 -c 'import json,sys; print("%.0f IOPS" % json.load(open(sys.argv[1]))["iops"])' "$out")"
}

describe_machine() {
	python3 - "$OUT/machine.json" "$QSD" "$HERE/.." <<'PY'
import json, os, platform, subprocess, sys
def sh(c):
    try: return subprocess.run(c, shell=True, capture_output=True, text=True).stdout.strip()
    except Exception: return ""
model = sh("grep -m1 'model name' /proc/cpuinfo | cut -d: -f2").strip()
json.dump({"cpu": model, "cpus": os.cpu_count(), "kernel": platform.release(),
           "mem_gib": round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30, 1),
           "qemu_storage_daemon": sh(sys.argv[2] + " --version | head -1") if sys.argv[2] else "",
           "fio": sh("fio --version"), "virtualized": sh("systemd-detect-virt || true"),
           "siov_git": sh("git -C %s rev-parse --short HEAD" % sys.argv[3])},
          open(sys.argv[1], "w"), indent=1)
PY
}

describe_machine
have_siovd || echo "bench: siovd not built ($SIOVD): measuring the peers only" >&2
[ -n "$QSD" ] || echo "bench: qemu-storage-daemon not installed: measuring siovd only" >&2

# 1. null backends: A B A B per queue depth.
for round in $(seq "$ROUNDS"); do
	for qd in $QDS; do
		have_siovd && bench_once siovd null "$qd" "$round"
		[ -n "$QSD" ] && bench_once qsd null "$qd" "$round"
	done
done

# 2. file backend vs native io_uring on the same file, QD 32.
dd if=/dev/zero of="$FILE" bs=1M count="$FILE_MB" oflag=direct status=none
for round in $(seq "$ROUNDS"); do
	have_siovd && bench_once siovd file 32 "$round"
	fio_once 32 "$round"
	fio_once 32 "$round" fio-cpu1 $LCPU
	[ -n "$QSD" ] && bench_once qsd file 32 "$round"
done

python3 "$HERE/summarize.py" "$OUT"
echo "bench: results in $OUT"
