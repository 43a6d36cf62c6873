#!/bin/bash
# Instructions per request of siovd's ring code, by ring format and IN_ORDER
# (issue 13): one QD 32 (VQ_IR_QD) null-backend run per side with siovd under
# callgrind (bench/vg_uring_wait.c lets it run under valgrind 3.19), inclusive
# counts of the ring calls divided by the requests served.  Instruction counts do not
# depend on the load, so this is what decides a change to the ring code; the
# `packed` section then confirms it in wall-clock figures.
# Usage: bench/vq_ir.sh BUILD OUTDIR [SIDES]   (SIDES default:
#   "split split-inorder packed packed-inorder"; RUNTIME default 4)
set -euo pipefail
BUILD=$(cd "$1" && pwd) DIR=$2
SIDES=${3:-"split split-inorder packed packed-inorder"}
mkdir -p "$DIR"
DIR=$(cd "$DIR" && pwd)
. "$(dirname "$0")/lib.sh"
RUNTIME=${VQ_IR_RUNTIME:-4}
QD=${VQ_IR_QD:-32}
cc -O2 -shared -fPIC -o "$WORK/vgwait.so" "$HERE/vg_uring_wait.c" -ldl -luring
FNS=(siov_vq_pop siov_vq_complete siov_vq_complete_many siov_vq_notify blk_process engine_main)
echo "side ${FNS[*]}"
for side in $SIDES; do
	flag=()
	case $side in packed*) flag+=(--packed) ;; esac
	case $side in *-inorder) flag+=(--in-order) ;; esac
	cg=$DIR/$side.cg out=$DIR/$side.json
	SOCK_WAIT=6000 SIOVD_WRAP="env LD_PRELOAD=$WORK/vgwait.so valgrind -q --tool=callgrind --callgrind-out-file=$cg" \
		run_target siovd null "$out" --rw randread --bs 4k --iodepth "$QD" "${flag[@]}" || true
	req=$(jget "$out.engine" 'sum(e["requests"] for e in d)' 2>/dev/null || echo 0)
	echo "$side $(python3 "$HERE/callgrind_ir.py" "$cg" "$req" "${FNS[@]}" | tr '\n' ' ') requests=$req"
done
