#!/bin/bash
# Section "packed" (issue 13): split vs packed virtqueues on siovd's null
# backend, through siov-bench (libsiov drives either format: --packed), 4 KiB
# randread at QD 1 and 32, split and packed alternating per round; and each
# format with VIRTIO_F_IN_ORDER (--in-order) beside it, the order of the four
# sides reversed every other round.  Figures: IOPS per target CPU-second, mean
# latency, IOPS; the ratios packed / split and in-order / not (per format),
# per round, and their spread.
# Usage: sections/packed.sh BUILD DIR (see bench/README.md; QUICK=1: shorter;
#   PACKED_INORDER=0: split and packed only)
set -euo pipefail
BUILD=$1 DIR=$2
. "$(dirname "$0")/../lib.sh"
QDS=${QDS:-"1 32"}
SIDES="split packed"
[ "${PACKED_INORDER:-1}" = 0 ] || SIDES="split split-inorder packed packed-inorder"
have_siovd || { echo "packed: siovd or siov-bench not built" >&2; exit 77; }
$FIG meta "$DIR" --name packed --title "Split vs packed virtqueues, IN_ORDER off and on (siovd null backend)" \
	--setup "4 KiB randread, target on CPU $TCPU, siov-bench polling on CPU $LCPU, $RUNTIME s per run, $ROUNDS rounds, sides ($SIDES) in turn, reversed every other round."

record() { # SIDE QD JSON
	local id=packed.null.randread.4k.qd$2
	if [ ! -s "$3" ]; then
		$FIG add "$DIR" --id "$id.iops_per_cpu_s" --side "$1" --value none
		return
	fi
	$FIG add "$DIR" --id "$id.iops_per_cpu_s" --side "$1" --value "$(jget "$3" 'd["iops_per_target_cpu_s"]')" \
		--label "siovd null, 4 KiB randread, QD $2: IOPS per target CPU-second (ring format, IN_ORDER)" --unit "IOPS/CPU-s"
	$FIG add "$DIR" --id "$id.lat_mean_us" --side "$1" --value "$(jget "$3" 'd["lat_ns"]["mean"]/1e3')" \
		--label "siovd null, 4 KiB randread, QD $2: mean latency (ring format, IN_ORDER)" --unit "µs" --better lower
	$FIG add "$DIR" --id "$id.iops" --side "$1" --value "$(jget "$3" 'd["iops"]')" \
		--label "siovd null, 4 KiB randread, QD $2: IOPS (ring format, IN_ORDER)" --unit IOPS
	echo "packed: $1 qd=$2: $(jget "$3" '"%.0f IOPS, mean %.2f us, %.2f of a CPU" % (d["iops"], d["lat_ns"]["mean"]/1e3, d["target_cpu_s"]/d["runtime_s"])')"
}

mkdir -p "$DIR/raw"
for round in $(seq "$ROUNDS"); do
	order=$SIDES
	[ $((round % 2)) = 1 ] || order=$(echo "$SIDES" | tr ' ' '\n' | tac | tr '\n' ' ')
	for qd in $QDS; do
		for side in $order; do
			out=$DIR/raw/$side-qd$qd-r$round.json
			flag=()
			case $side in packed*) flag+=(--packed) ;; esac
			case $side in *-inorder) flag+=(--in-order) ;; esac
			run_target siovd null "$out" --rw randread --bs 4k --iodepth "$qd" "${flag[@]}" || true
			record "$side" "$qd" "$out"
		done
	done
done
for qd in $QDS; do
	id=packed.null.randread.4k.qd$qd
	for pair in packed:split split-inorder:split packed-inorder:packed; do
		of=${pair%:*} to=${pair#*:}
		case " $SIDES " in *" $of "*) ;; *) continue ;; esac
		for m in iops_per_cpu_s lat_mean_us iops; do
			$FIG ratio "$DIR" --id "$id.$m" --of "$of" --to "$to"
		done
	done
done
