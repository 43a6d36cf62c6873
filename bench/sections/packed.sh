#!/bin/bash
# Section "packed" (issue 13): split vs packed virtqueues on siovd's null
# backend, through siov-bench (libsiov drives either format: --packed), 4 KiB
# randread at QD 1, 32 and 128 (QDS), split and packed alternating per round,
# and each format with VIRTIO_F_IN_ORDER (--in-order) beside it, the order of
# the four sides reversed every other round.  Figures: IOPS per target
# CPU-second, mean latency, IOPS; the ratios packed / split and in-order / not
# (per format), per round, and their spread.  Then, unless QUICK=1 or
# PACKED_IR=0, one QD 32 run of each format with siovd and then siov-bench
# under callgrind: instructions per request on each side of the ring, which do
# not depend on the load (bench/vg_uring_wait.c lets siovd run under valgrind
# 3.19).
# Usage: sections/packed.sh BUILD DIR (see bench/README.md; QUICK=1: shorter;
#   PACKED_INORDER=0: split and packed only)
set -euo pipefail
BUILD=$1 DIR=$2
. "$(dirname "$0")/../lib.sh"
QDS=${QDS:-"1 32 128"}
[ "$QUICK" = 1 ] && QDS=${QDS_QUICK:-"1 32"}
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

# ---- instructions per request (callgrind): load-independent ----
ir_record() { # SIDE WHO CALLGRIND_OUT REQUESTS: WHO is siovd or bench
	local id=packed.null.randread.4k.qd32.ir f vals i=0
	if [ "$2" = siovd ]; then
		f=(engine_main siov_vq_pop siov_vq_complete)
	else
		f=(job_run siov_prep_read siov_submit siov_reap)
	fi
	if [ ! -s "$3" ] || [ "${4:-0}" = 0 ]; then
		echo "packed: no callgrind profile of $2 ($1)" >&2
		return
	fi
	mapfile -t vals < <(python3 "$HERE/callgrind_ir.py" "$3" "$4" "${f[@]}")
	for fn in "${f[@]}"; do
		$FIG add "$DIR" --id "$id.$2.$fn" --side "$1" --value "${vals[$i]}" --better lower \
			--label "QD 32, instructions per request (callgrind), $2: $fn and what it calls (split / packed rings)" --unit Ir
		i=$((i + 1))
	done
	echo "packed: $1 $2 Ir/request: ${f[*]} = ${vals[*]}"
}

if [ "$QUICK" != 1 ] && [ "${PACKED_IR:-1}" != 0 ]; then
	if ! command -v valgrind >/dev/null || ! command -v callgrind_annotate >/dev/null ||
		! cc -O2 -shared -fPIC -o "$WORK/vgwait.so" "$HERE/vg_uring_wait.c" -ldl -luring 2>"$WORK/cc.log"; then
		echo "packed: no valgrind or cannot build vg_uring_wait.so: no instruction counts" >&2
		exit 0
	fi
	for side in split packed; do
		flag=()
		[ "$side" = packed ] && flag=(--packed)
		cg=$DIR/raw/$side-qd32.siovd.cg
		out=$DIR/raw/$side-qd32-ir-siovd.json
		SOCK_WAIT=6000 SIOVD_WRAP="env LD_PRELOAD=$WORK/vgwait.so valgrind -q --tool=callgrind --callgrind-out-file=$cg" \
			RUNTIME=6 run_target siovd null "$out" --rw randread --bs 4k --iodepth 32 "${flag[@]}" || true
		ir_record "$side" siovd "$cg" "$(jget "$out.engine" 'sum(e["requests"] for e in d)' 2>/dev/null || echo 0)"
		cg=$DIR/raw/$side-qd32.bench.cg
		out=$DIR/raw/$side-qd32-ir-bench.json
		BENCH_WRAP="valgrind -q --tool=callgrind --callgrind-out-file=$cg" \
			RUNTIME=6 run_target siovd null "$out" --rw randread --bs 4k --iodepth 32 "${flag[@]}" || true
		ir_record "$side" bench "$cg" "$(jget "$out" 'd["ios"]' 2>/dev/null || echo 0)"
	done
	for fn in siovd.engine_main siovd.siov_vq_pop siovd.siov_vq_complete bench.job_run \
		bench.siov_prep_read bench.siov_submit bench.siov_reap; do
		$FIG ratio "$DIR" --id "packed.null.randread.4k.qd32.ir.$fn" --of packed --to split || true
	done
	$FIG note "$DIR" "Instructions per request: one 6 s QD 32 run per format with siovd under callgrind (bench/vg_uring_wait.c), then one with siov-bench under it; inclusive counts divided by the requests served. siov-bench polls, so its siov_reap count includes empty polls and depends on how fast siovd answered."
fi
