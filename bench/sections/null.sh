#!/bin/bash
# Section "null": siovd's null backend against qemu-storage-daemon's null-co
# (read-zeroes=off, so neither touches the buffers): 4 KiB randread through
# siov-bench at QD 1, 32 and 128, alternating siovd and qsd per round.
# Figures: IOPS per CPU-second of the target (issue 13: >= 4x qsd in every
# round at QD 32/128), QD 1 mean latency (<= 0.25x), IOPS.
# Usage: sections/null.sh BUILD DIR (see bench/README.md; QUICK=1: QD 1 and 32)
set -euo pipefail
BUILD=$1 DIR=$2
. "$(dirname "$0")/../lib.sh"
QDS=${QDS:-"1 32 128"}
[ "$QUICK" = 1 ] && QDS=${QUICK_QDS:-"1 32"}
have_siovd || { echo "null: siovd or siov-bench not built" >&2; exit 77; }
$FIG meta "$DIR" --name null --title "Null backend: siovd vs qemu-storage-daemon" \
	--setup "4 KiB randread, target on CPU $TCPU, siov-bench polling on CPU $LCPU, $RUNTIME s per run, $ROUNDS rounds alternating siovd and qsd."
[ -n "$QSD" ] || $FIG note "$DIR" "qemu-storage-daemon is not installed: siovd only."

record() { # SIDE QD JSON
	local id=null.randread.4k.qd$2
	if [ ! -s "$3" ]; then
		$FIG add "$DIR" --id "$id.iops_per_cpu_s" --side "$1" --value none
		return
	fi
	$FIG add "$DIR" --id "$id.iops_per_cpu_s" --side "$1" --value "$(jget "$3" 'd["iops_per_target_cpu_s"]')" \
		--label "null, 4 KiB randread, QD $2: IOPS per target CPU-second" --unit "IOPS/CPU-s"
	$FIG add "$DIR" --id "$id.lat_mean_us" --side "$1" --value "$(jget "$3" 'd["lat_ns"]["mean"]/1e3')" \
		--label "null, 4 KiB randread, QD $2: mean latency" --unit "µs" --better lower
	$FIG add "$DIR" --id "$id.iops" --side "$1" --value "$(jget "$3" 'd["iops"]')" \
		--label "null, 4 KiB randread, QD $2: IOPS" --unit IOPS
	echo "null: $1 qd=$2: $(jget "$3" '"%.0f IOPS, mean %.2f us, %.2f of a CPU" % (d["iops"], d["lat_ns"]["mean"]/1e3, d["target_cpu_s"]/d["runtime_s"])')"
}

for round in $(seq "$ROUNDS"); do
	for qd in $QDS; do
		for side in siovd qsd; do
			[ "$side" = qsd ] && [ -z "$QSD" ] && continue
			out=$DIR/raw/$side-qd$qd-r$round.json
			run_target "$side" null "$out" --rw randread --bs 4k --iodepth "$qd" || true
			record "$side" "$qd" "$out"
		done
	done
done
for qd in $QDS; do
	id=null.randread.4k.qd$qd
	if [ "$qd" -ge 32 ]; then
		$FIG ratio "$DIR" --id "$id.iops_per_cpu_s" --of siovd --to qsd --target 4 --every-round
	else
		$FIG ratio "$DIR" --id "$id.iops_per_cpu_s" --of siovd --to qsd
	fi
	if [ "$qd" = 1 ]; then
		$FIG ratio "$DIR" --id "$id.lat_mean_us" --of siovd --to qsd --target 0.25
	else
		$FIG ratio "$DIR" --id "$id.lat_mean_us" --of siovd --to qsd
	fi
	$FIG ratio "$DIR" --id "$id.iops" --of siovd --to qsd
done
