#!/bin/bash
# Section "spdk": siovd's null backend against SPDK's vhost target (null
# bdev), both driven by SPDK's own bdevperf through its virtio-user
# initiator, the client SPDK's users benchmark with. 4 KiB randread at
# QD 1, 32 and 128, rounds alternating siovd and SPDK.
# Figures: IOPS, IOPS per target CPU-second (issue 13: >= 1.5x SPDK), mean
# latency as bdevperf reports it, and each target's CPU while idle.
#
# SPDK is not a Debian package, so `make bench` cannot build it: this
# section runs only when SPDK_DIR names a built SPDK tree (build/bin/vhost,
# build/examples/bdevperf, scripts/rpc.py; docs/performance.md says how it
# was built) and exits 77 otherwise. Both SPDK programs need hugepages: the
# section raises vm.nr_hugepages to SPDK_HUGEPAGES (default 1024, 2 GiB)
# for its run and puts the old value back. siovd itself needs none.
# SPDK_BASE_BUILD=DIR adds a third side, "base": siovd from another build
# (e.g. main's, or the same one), started with SPDK_BASE_ARGS instead of
# SIOVD_ARGS, in the same rounds: an A/B of a change or an option under
# bdevperf (SPDK_BASE_BUILD=build SIOVD_ARGS="--poll-hold-ns 1000").
# siovd's sides also record its per-queue counters (vdev_stats): avail-index
# reads and used-index writes per request, which say how the engine and
# bdevperf meet in shared memory whatever the machine's load.
# Usage: sections/spdk.sh BUILD DIR   (env: SPDK_DIR, SPDK_BASE_BUILD, QDS, RUNTIME, ROUNDS)
set -euo pipefail
BUILD=$1 DIR=$2
. "$(dirname "$0")/../lib.sh"
QDS=${QDS:-"1 32 128"}
[ "$QUICK" = 1 ] && QDS=${QUICK_QDS:-"32"}
SPDK_HUGEPAGES=${SPDK_HUGEPAGES:-1024}
have_siovd || { echo "spdk: siovd or siov-bench not built" >&2; exit 77; }
if [ -z "${SPDK_DIR:-}" ] || [ ! -x "$SPDK_DIR/build/bin/vhost" ] ||
	[ ! -x "$SPDK_DIR/build/examples/bdevperf" ]; then
	echo "spdk: SPDK_DIR does not name a built SPDK tree (not a Debian package; see docs/performance.md)" >&2
	exit 77
fi
VHOST=$SPDK_DIR/build/bin/vhost
BDEVPERF=$SPDK_DIR/build/examples/bdevperf
RPC="python3 $SPDK_DIR/scripts/rpc.py -s $WORK/spdk.rpc"
CLK=$(getconf CLK_TCK)
# bdevperf on one core does its I/O on one queue, but SPDK's initiator scans
# the disk on a queue of its own first and, with one queue, may find it still
# taken when bdevperf's job starts ("no more unused virtio queues"): two
# queues on both targets, as in SPDK's own vhost tests.
export VDEV_QUEUES=2

old_huge=$(cat /proc/sys/vm/nr_hugepages)
HUGE=$WORK/huge
restore_huge() {
	stop_target
	umount "$HUGE" 2>/dev/null || true
	bench_cleanup
	echo "$old_huge" >/proc/sys/vm/nr_hugepages || true
}
trap restore_huge EXIT
if [ "$old_huge" -lt "$SPDK_HUGEPAGES" ]; then
	echo "$SPDK_HUGEPAGES" >/proc/sys/vm/nr_hugepages
	[ "$(cat /proc/sys/vm/nr_hugepages)" -ge "$SPDK_HUGEPAGES" ] ||
		{ echo "spdk: could not reserve $SPDK_HUGEPAGES hugepages" >&2; exit 77; }
fi
# A hugetlbfs of the section's own, so nothing else on the machine is touched.
mkdir -p "$HUGE"
mount -t hugetlbfs -o pagesize=2M nodev "$HUGE" ||
	{ echo "spdk: could not mount hugetlbfs" >&2; exit 77; }

$FIG meta "$DIR" --name spdk --title "Null backend: siovd vs SPDK vhost, SPDK bdevperf as the client" \
	--setup "4 KiB randread, target on CPU $TCPU, bdevperf (virtio-user, 2 queues of 256, I/O on one) on CPU $LCPU, $RUNTIME s per run, $ROUNDS rounds alternating siovd and SPDK $(git -C "$SPDK_DIR" describe --tags 2>/dev/null || echo '?'). SPDK's reactor polls at 100% of a core whatever the load."

SIDES="siovd spdk"
BASE=${SPDK_BASE_BUILD:-}
if [ -n "$BASE" ]; then
	BASE=$(cd "$BASE" && pwd)
	[ -x "$BASE/app/siovd/siovd" ] || { echo "spdk: no siovd in $BASE" >&2; exit 77; }
	SIDES="siovd base spdk"
fi

# start_base: start_siovd with the base build's siovd and siovctl
start_base() {
	local s=$SIOVD c=$SIOVCTL rc=0
	SIOVD=$BASE/app/siovd/siovd SIOVCTL=$BASE/app/siovctl/siovctl
	SIOVD_ARGS=${SPDK_BASE_ARGS:-} start_siovd "$@" || rc=$?
	SIOVD=$s SIOVCTL=$c
	return $rc
}

cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }

# start_spdk: SPDK vhost with a null bdev, socket $WORK/vu.sock
start_spdk() {
	mkdir -p "$WORK/spdk"
	"$VHOST" --huge-dir "$HUGE" -m "$((1 << TCPU))" -S "$WORK/spdk" -s 1024 -r "$WORK/spdk.rpc" \
		>"$WORK/target.log" 2>&1 &
	TPID=$!
	wait_sock "$WORK/spdk.rpc" "$TPID" || return 1
	$RPC bdev_null_create Null0 1024 4096 >/dev/null
	$RPC vhost_create_blk_controller vhost.0 Null0 >/dev/null
	ln -sf "$WORK/spdk/vhost.0" "$WORK/vu.sock"
}

# idle_util: the target's CPU share over one quiet second
idle_util() {
	local t0 t1
	t0=$(cpu_ticks "$TPID")
	sleep 1
	t1=$(cpu_ticks "$TPID")
	echo "scale=3; ($t1 - $t0) / $CLK" | bc
}

# run_one SIDE QD OUT: one bdevperf run; OUT gets "iops lat_us util idle_util"
run_one() {
	local side=$1 qd=$2 out=$3 log=$WORK/bdevperf.log t0 t1 w0 w1 idle
	: >"$out"
	"start_$side" null || { cat "$WORK/target.log" >&2; stop_target; return 1; }
	idle=$(idle_util)
	cat >"$WORK/bdevperf.json" <<EOF
{"subsystems": [{"subsystem": "bdev", "config": [{"method": "bdev_virtio_attach_controller",
 "params": {"name": "VirtioBlk0", "dev_type": "blk", "trtype": "user",
            "traddr": "$WORK/vu.sock", "vq_count": 2, "vq_size": 256}}]}]}
EOF
	"$BDEVPERF" --huge-dir "$HUGE" -m "$((1 << LCPU))" -s 512 -g --json "$WORK/bdevperf.json" -q "$qd" -o 4096 \
		-w randread -t "$RUNTIME" >"$log" 2>&1 &
	local cpid=$!
	# The target's CPU counts from the start of the I/O phase, not bdevperf's set-up.
	for _ in $(seq 3000); do
		grep -q "Running I/O for" "$log" && break
		kill -0 "$cpid" 2>/dev/null || break
		sleep 0.01
	done
	t0=$(cpu_ticks "$TPID") w0=$(date +%s.%N)
	wait "$cpid" || { cat "$log" >&2; stop_target; return 1; }
	t1=$(cpu_ticks "$TPID") w1=$(date +%s.%N)
	if [ "$side" != spdk ]; then
		"$SIOVCTL" -s "$WORK/rpc.sock" vdev_stats >"$out.vdev" 2>/dev/null || true
		"$SIOVCTL" -s "$WORK/rpc.sock" engine_stats >"$out.engine" 2>/dev/null || true
	fi
	stop_target
	rm -f "$WORK/vu.sock"
	# " Total : IOPS MiB/s Fail/s TO/s Average min max"
	awk -v t0="$t0" -v t1="$t1" -v w0="$w0" -v w1="$w1" -v clk="$CLK" -v idle="$idle" '
		/Total[ ]*:/ { sub(/.*Total[ ]*:/, ""); iops = $1; lat = $5 }
		END { if (iops > 0) printf "%s %s %.3f %s\n", iops, lat, (t1 - t0) / clk / (w1 - w0), idle }' \
		"$log" >"$out"
	[ -s "$out" ]
}

record_counters() { # SIDE QD VDEV_STATS_JSON: shared-memory accesses per request
	local id=spdk.randread.4k.qd$2 v
	for v in avail_reads used_writes; do
		$FIG add "$DIR" --id "$id.$v" --side "$1" --better lower --unit "per request" \
			--label "null, 4 KiB randread, QD $2, bdevperf: siovd's $v per request (vdev_stats)" \
			--value "$(jget "$3" "(lambda q: q['$v'] / max(q['requests'], 1))(max(d[0]['queues'], key=lambda q: q['requests']))")"
	done
}

record() { # SIDE QD OUT
	local id=spdk.randread.4k.qd$2 iops lat util idle
	if [ ! -s "$3" ]; then
		$FIG add "$DIR" --id "$id.iops" --side "$1" --value none
		return
	fi
	read -r iops lat util idle <"$3"
	$FIG add "$DIR" --id "$id.iops" --side "$1" --value "$iops" \
		--label "null, 4 KiB randread, QD $2, bdevperf: IOPS" --unit IOPS
	$FIG add "$DIR" --id "$id.iops_per_cpu_s" --side "$1" \
		--value "$(echo "scale=1; $iops / ($util + 0.001)" | bc)" \
		--label "null, 4 KiB randread, QD $2, bdevperf: IOPS per target CPU-second" --unit "IOPS/CPU-s"
	$FIG add "$DIR" --id "$id.lat_mean_us" --side "$1" --value "$lat" \
		--label "null, 4 KiB randread, QD $2, bdevperf: mean latency" --unit "µs" --better lower
	$FIG add "$DIR" --id "spdk.idle_cpu" --side "$1" --value "$idle" \
		--label "target CPU while attached and idle" --unit "CPU" --better lower
	[ -s "$3.vdev" ] && record_counters "$1" "$2" "$3.vdev"
	echo "spdk: $1 qd=$2: $iops IOPS, mean $lat us, $util of a CPU (idle $idle)"
}

for round in $(seq "$ROUNDS"); do
	for qd in $QDS; do
		for side in $SIDES; do
			out=$DIR/raw/$side-qd$qd-r$round.txt
			run_one "$side" "$qd" "$out" || true
			record "$side" "$qd" "$out"
		done
	done
done
for qd in $QDS; do
	id=spdk.randread.4k.qd$qd
	$FIG ratio "$DIR" --id "$id.iops_per_cpu_s" --of siovd --to spdk --target 1.5 --every-round
	$FIG ratio "$DIR" --id "$id.iops" --of siovd --to spdk
	$FIG ratio "$DIR" --id "$id.lat_mean_us" --of siovd --to spdk
	[ -n "$BASE" ] || continue
	for m in iops_per_cpu_s iops lat_mean_us avail_reads used_writes; do
		$FIG ratio "$DIR" --id "$id.$m" --of siovd --to base
	done
done
