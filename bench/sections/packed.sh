#!/bin/bash
# Section "packed" (issue 13): split vs packed virtqueues on siovd's null
# backend, through siov-bench (libsiov drives either format: --packed), 4 KiB
# randread at QD 1 and 32, split and packed alternating per round.  Figures:
# IOPS per target CPU-second, mean latency, IOPS; the ratio packed / split per
# round and its spread.
# Usage: sections/packed.sh BUILD DIR (see bench/README.md; QUICK=1: shorter)
set -euo pipefail
BUILD=$1 DIR=$2
. "$(dirname "$0")/../lib.sh"
QDS=${QDS:-"1 32"}
have_siovd || { echo "packed: siovd or siov-bench not built" >&2; exit 77; }
$FIG meta "$DIR" --name packed --title "Split vs packed virtqueues (siovd null backend)" \
	--setup "4 KiB randread, target on CPU $TCPU, siov-bench polling on CPU $LCPU, $RUNTIME s per run, $ROUNDS rounds alternating split and packed rings."

record() { # SIDE QD JSON
	local id=packed.null.randread.4k.qd$2
	if [ ! -s "$3" ]; then
		$FIG add "$DIR" --id "$id.iops_per_cpu_s" --side "$1" --value none
		return
	fi
	$FIG add "$DIR" --id "$id.iops_per_cpu_s" --side "$1" --value "$(jget "$3" 'd["iops_per_target_cpu_s"]')" \
		--label "siovd null, 4 KiB randread, QD $2: IOPS per target CPU-second (split / packed rings)" --unit "IOPS/CPU-s"
	$FIG add "$DIR" --id "$id.lat_mean_us" --side "$1" --value "$(jget "$3" 'd["lat_ns"]["mean"]/1e3')" \
		--label "siovd null, 4 KiB randread, QD $2: mean latency (split / packed rings)" --unit "µs" --better lower
	$FIG add "$DIR" --id "$id.iops" --side "$1" --value "$(jget "$3" 'd["iops"]')" \
		--label "siovd null, 4 KiB randread, QD $2: IOPS (split / packed rings)" --unit IOPS
	echo "packed: $1 qd=$2: $(jget "$3" '"%.0f IOPS, mean %.2f us, %.2f of a CPU" % (d["iops"], d["lat_ns"]["mean"]/1e3, d["target_cpu_s"]/d["runtime_s"])')"
}

mkdir -p "$DIR/raw"
for round in $(seq "$ROUNDS"); do
	for qd in $QDS; do
		for side in split packed; do
			out=$DIR/raw/$side-qd$qd-r$round.json
			flag=()
			[ "$side" = packed ] && flag=(--packed)
			run_target siovd null "$out" --rw randread --bs 4k --iodepth "$qd" "${flag[@]}" || true
			record "$side" "$qd" "$out"
		done
	done
done
for qd in $QDS; do
	id=packed.null.randread.4k.qd$qd
	$FIG ratio "$DIR" --id "$id.iops_per_cpu_s" --of packed --to split
	$FIG ratio "$DIR" --id "$id.lat_mean_us" --of packed --to split
	$FIG ratio "$DIR" --id "$id.iops" --of packed --to split
done
