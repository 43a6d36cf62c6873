#!/bin/bash
# Section "mirror": what the mirror backend costs and what its resync does to
# the guest next to it.
#   1. Write IOPS and mean latency of a mirror of two files against one file
#      (4 KiB randwrite, QD 1 and 32, siov-bench on one VDEV; sides one_file
#      and mirror2, back to back per round).
#   2. Resync rate while a client writes (4 KiB randwrite, QD 8) and that
#      client's IOPS: without a resync (no_resync), with a full resync of a
#      new member at the default rate limit (resync_default, 200 MiB/s) and at
#      a 32 MiB/s limit (resync_32M).  The rate is the bytes the member was
#      sent during the client's run divided by the run's length.
# Usage: sections/mirror.sh BUILD DIR   env: MIRROR_MB=1024 FILE_DIR=/var/tmp
#   QUICK=1: QD 32 only, one resync limit.
set -euo pipefail
BUILD=$1 DIR=$2
. "$(dirname "$0")/../lib.sh"
MIRROR_MB=${MIRROR_MB:-1024}
FILE_DIR=${FILE_DIR:-/var/tmp}
QDS=${QDS:-"1 32"}
RESYNCS=${RESYNCS:-"no_resync resync_default resync_32M"}
if [ "$QUICK" = 1 ]; then QDS=32 RESYNCS="no_resync resync_default"; fi
have_siovd || { echo "mirror: siovd or siov-bench not built" >&2; exit 77; }
command -v jq >/dev/null || { echo "mirror: jq not installed" >&2; exit 77; }
FILES=()
for f in a b c; do FILES+=("$(mktemp "$FILE_DIR/siov-bench-mirror-$f.XXXXXX")"); done
trap 'bench_cleanup; rm -f "${FILES[@]}"' EXIT
for f in "${FILES[@]}"; do
	dd if=/dev/zero of="$f" bs=1M count="$MIRROR_MB" oflag=direct status=none
done
$FIG meta "$DIR" --name mirror --title "Mirror backend: write cost, and a resync next to a running client" \
	--setup "Files of $MIRROR_MB MiB, preallocated, in $FILE_DIR ($(df -T "$FILE_DIR" | awk 'NR==2{print $2}')). siovd (1 engine) on CPU $TCPU, siov-bench polling on CPU $LCPU, $RUNTIME s per run, $ROUNDS rounds; the resync thread is siovd's and shares its CPU."

add() { $FIG add "$DIR" --id "$1" --side "$2" --value "$3" --label "$4" --unit "$5" ${6:+--better $6}; }
ctl() { "$SIOVCTL" -s "$WORK/rpc.sock" "$@"; }

# start_mirror N: siovd with file backends a (and b), a mirror m of the first
# N of them (N=0: no mirror, the VDEV is on a alone), VDEV v0.
start_mirror() {
	local n=$1 be=a
	mkdir -p "$WORK/state"
	taskset -c "$TCPU" "$SIOVD" --rpc-socket "$WORK/rpc.sock" --state-dir "$WORK/state" --engines 1 \
		>"$WORK/target.log" 2>&1 &
	TPID=$!
	wait_sock "$WORK/rpc.sock" "$TPID" || return 1
	ctl backend_create --name a --type file --path "${FILES[0]}" >/dev/null
	ctl backend_create --name b --type file --path "${FILES[1]}" >/dev/null
	ctl backend_create --name c --type file --path "${FILES[2]}" >/dev/null
	if [ "$n" -gt 0 ]; then
		[ "$n" = 1 ] && ctl backend_create --name m --type mirror --members a >/dev/null
		[ "$n" = 2 ] && ctl backend_create --name m --type mirror --members a,b --resync-rate 4G >/dev/null
		be=m
		# The initial copy of b must be over before anything is measured.
		for _ in $(seq 600); do
			[ "$(ctl backend_stats --name m | jq '[.mirror.members[] | select(.state != "in_sync")] | length')" = 0 ] && break
			sleep 0.1
		done
	fi
	ctl vdev_create --name v0 --type blk --backend $be --socket "$WORK/vu.sock" --queues 1 >/dev/null
	wait_sock "$WORK/vu.sock" "$TPID"
}

bench_run() { # OUT siov-bench-args...
	local out=$1
	shift
	taskset -c "$LCPU" "$BENCH" --socket "$WORK/vu.sock" --runtime "$RUNTIME" --target-pid "$TPID" \
		--json "$@" >"$out.tmp" && head -1 "$out.tmp" >"$out"
	rm -f "$out.tmp"
	[ -s "$out" ]
}

write_cost() { # QD ROUND
	local qd=$1 round=$2 id=mirror.randwrite.4k.qd$1 side n out
	local sides=(one_file mirror2)
	for k in 0 1; do
		side=${sides[$(((k + round) % 2))]}
		n=0
		[ "$side" = mirror2 ] && n=2
		out=$DIR/raw/$id-$side-r$round.json
		if start_mirror $n && bench_run "$out" --rw randwrite --bs 4k --iodepth "$qd"; then
			add "$id.iops" $side "$(jget "$out" 'd["iops"]')" "4 KiB randwrite, QD $qd: IOPS" IOPS
			add "$id.lat_mean_us" $side "$(jget "$out" 'd["lat_ns"]["mean"]/1e3')" "4 KiB randwrite, QD $qd: mean latency" µs lower
		else
			add "$id.iops" $side none "4 KiB randwrite, QD $qd: IOPS" IOPS
		fi
		stop_target
	done
	echo "mirror: $id round $round done"
}

resync_effect() { # SIDE ROUND
	local side=$1 round=$2 out=$DIR/raw/resync-$1-r$2.json b0 b1 t0 t1
	start_mirror 1 || { add mirror.resync.client_iops "$side" none "client IOPS" IOPS; return; }
	case $side in
	resync_default) ctl backend_set_resync_rate --name m --rate 0 >/dev/null ;;
	resync_32M) ctl backend_set_resync_rate --name m --rate 32M >/dev/null ;;
	esac
	[ "$side" != no_resync ] && ctl backend_add_member --name m --member c >/dev/null
	t0=$(date +%s.%N)
	b0=$(ctl backend_stats --name m | jq '[.mirror.members[].resync_bytes] | add')
	if bench_run "$out" --rw randwrite --bs 4k --iodepth 8; then
		t1=$(date +%s.%N)
		b1=$(ctl backend_stats --name m | jq '[.mirror.members[].resync_bytes] | add')
		add mirror.resync.client_iops "$side" "$(jget "$out" 'd["iops"]')" \
			"client 4 KiB randwrite QD 8 during a resync: IOPS" IOPS
		add mirror.resync.client_lat_mean_us "$side" "$(jget "$out" 'd["lat_ns"]["mean"]/1e3')" \
			"client 4 KiB randwrite QD 8 during a resync: mean latency" µs lower
		[ "$side" != no_resync ] && add mirror.resync.rate_mib_s "$side" \
			"$(awk -v b=$((b1 - b0)) -v a="$t0" -v z="$t1" 'BEGIN{printf "%.1f", b / (z - a) / 1048576}')" \
			"resync rate while the client runs" MiB/s
	else
		add mirror.resync.client_iops "$side" none "client IOPS" IOPS
	fi
	stop_target
	echo "mirror: resync $side round $round done"
}

for round in $(seq "$ROUNDS"); do
	for qd in $QDS; do write_cost "$qd" "$round"; done
	for s in $RESYNCS; do resync_effect "$s" "$round"; done
done
for qd in $QDS; do
	$FIG ratio "$DIR" --id mirror.randwrite.4k.qd$qd.iops --of mirror2 --to one_file
	$FIG ratio "$DIR" --id mirror.randwrite.4k.qd$qd.lat_mean_us --of mirror2 --to one_file
done
for s in $RESYNCS; do
	[ "$s" = no_resync ] || $FIG ratio "$DIR" --id mirror.resync.client_iops --of "$s" --to no_resync
done
$FIG note "$DIR" "A resync here copies a whole $MIRROR_MB MiB member onto a new one (a full resync); a bitmap resync after an outage copies only the chunks written meanwhile."
