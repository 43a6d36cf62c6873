#!/bin/bash
# Section "arch": siovd before and after the issue-8 reshape (layers, the
# device-model interface, engine-owned queue state, one completion path), in
# one run, side by side: "before" is siovd built from ARCH_BASE_BUILD (a build
# directory of the pre-refactor commit, e.g. 00315be), "after" is BUILD.  Both
# are driven by BUILD's siov-bench.  4 KiB randread on the null backend at
# QD 1, 32 and 128 and on a file (O_DIRECT) at QD 32; each round runs before
# and after back to back on one configuration, in an order that turns.
# Skipped (77) unless ARCH_BASE_BUILD is set; not part of a plain make bench.
# Usage: ARCH_BASE_BUILD=DIR sections/arch.sh BUILD DIR
#   env: FILE_MB=1024 FILE_DIR=/var/tmp, QDS (null), FILE_QDS (file)
set -euo pipefail
BUILD=$1 DIR=$2
. "$(dirname "$0")/../lib.sh"
BASE=${ARCH_BASE_BUILD:-}
[ -n "$BASE" ] || { echo "arch: set ARCH_BASE_BUILD to a build of the pre-refactor commit" >&2; exit 77; }
BASE=$(cd "$BASE" && pwd)
[ -x "$BASE/app/siovd/siovd" ] || { echo "arch: no siovd in $BASE" >&2; exit 77; }
have_siovd || { echo "arch: siovd or siov-bench not built" >&2; exit 77; }
QDS=${QDS:-"1 32 128"}
FILE_QDS=${FILE_QDS:-32}
FILE_MB=${FILE_MB:-1024}
FILE_DIR=${FILE_DIR:-/var/tmp}
[ "$QUICK" = 1 ] && QDS=32
FILE=$(mktemp "$FILE_DIR/siov-bench-arch.XXXXXX")
trap 'bench_cleanup; rm -f "$FILE"' EXIT
dd if=/dev/zero of="$FILE" bs=1M count="$FILE_MB" oflag=direct status=none
AFTER_SIOVD=$SIOVD AFTER_SIOVCTL=$SIOVCTL
AFTER_REV=$(git -C "$(dirname "$0")/../.." describe --always --dirty 2>/dev/null || echo "?")
BASE_REV=${ARCH_BASE_REV:-"the pre-refactor commit"}
$FIG meta "$DIR" --name arch --title "Issue 8 reshape: siovd before vs after" \
	--setup "before: $BASE_REV (built in $BASE); after: $AFTER_REV (built in $BUILD). siovd on CPU $TCPU, siov-bench polling on CPU $LCPU, 4 KiB randread, $RUNTIME s per run, $ROUNDS rounds, before and after back to back per configuration (the order turns). File: $FILE_MB MiB in $FILE_DIR, O_DIRECT."

add() { $FIG add "$DIR" --id "$1" --side "$2" --value "$3" --label "$4" --unit "$5" ${6:+--better $6}; }

# use_side before|after: which siovd start_siovd (lib.sh) runs
use_side() {
	if [ "$1" = before ]; then
		SIOVD=$BASE/app/siovd/siovd SIOVCTL=$BASE/app/siovctl/siovctl
	else
		SIOVD=$AFTER_SIOVD SIOVCTL=$AFTER_SIOVCTL
	fi
}

one_config() { # BACKEND(null|file) QD ROUND
	local be=$1 qd=$2 round=$3 id=arch.$1.randread.4k.qd$2 what="$1, 4 KiB randread, QD $2"
	local sides=(after before) k side out target=null
	[ "$be" = file ] && target=$FILE
	for k in 0 1; do
		side=${sides[$(((k + round) % 2))]}
		use_side "$side"
		out=$DIR/raw/$id-$side-r$round.json
		if run_siovd_side "$target" "$out" --rw randread --bs 4k --iodepth "$qd"; then
			add "$id.iops" "$side" "$(jget "$out" 'd["iops"]')" "$what: IOPS" IOPS
			add "$id.iops_per_cpu_s" "$side" "$(jget "$out" 'd["iops_per_target_cpu_s"]')" \
				"$what: IOPS per target CPU-second" "IOPS/CPU-s"
			add "$id.lat_mean_us" "$side" "$(jget "$out" 'd["lat_ns"]["mean"]/1e3')" \
				"$what: mean latency" µs lower
		else
			add "$id.iops" "$side" none "$what: IOPS" IOPS
		fi
	done
	echo "arch: $id round $round done" >&2
}

run_siovd_side() { run_target siovd "$@"; }

for round in $(seq "$ROUNDS"); do
	for qd in $QDS; do one_config null "$qd" "$round"; done
	for qd in $FILE_QDS; do one_config file "$qd" "$round"; done
done
for id in $(for qd in $QDS; do echo arch.null.randread.4k.qd$qd; done) \
	$(for qd in $FILE_QDS; do echo arch.file.randread.4k.qd$qd; done); do
	for m in iops iops_per_cpu_s lat_mean_us; do
		$FIG ratio "$DIR" --id "$id.$m" --of after --to before
	done
done
