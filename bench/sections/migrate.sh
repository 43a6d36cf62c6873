#!/bin/bash
# Section "migrate" (issue 9): what live migration costs.
#  1. Dirty logging on the data path: siovd's null backend, 4 KiB randread at
#     QD 32 through siov-bench, with logging off and on (siov-bench --dirty-log
#     hands siovd a log and keeps VHOST_F_LOG_ALL on, as QEMU does while it
#     migrates), alternating per round: IOPS per target CPU-second and IOPS.
#  2. A guest migration (test/guest/migrate-once.sh): a TCG guest running fio
#     crc32c random writes migrates between two instances on one file, siovd
#     and qemu-storage-daemon alternating: total time and downtime as QEMU
#     reports them.  Skipped with QUICK=1 or MIGRATE_GUEST=0 (a minute a run;
#     MIGRATE_ROUNDS rounds, default 2).
# Usage: sections/migrate.sh BUILD DIR (see bench/README.md)
set -euo pipefail
BUILD=$1 DIR=$2
. "$(dirname "$0")/../lib.sh"
GUEST=${MIGRATE_GUEST:-1}
[ "$QUICK" = 1 ] && GUEST=0
have_siovd || { echo "migrate: siovd or siov-bench not built" >&2; exit 77; }
$FIG meta "$DIR" --name migrate --title "Live migration: dirty logging cost, migration time and downtime" \
	--setup "Logging: null backend, 4 KiB randread QD 32, target on CPU $TCPU, siov-bench polling on CPU $LCPU, $RUNTIME s per run, $ROUNDS rounds alternating off and on. Guest: 512 MiB TCG guest, fio crc32c random writes, two daemons on one file, QMP migrate over a unix socket."

id=migrate.null.randread.4k.qd32
for round in $(seq "$ROUNDS"); do
	for side in log_off log_on; do
		out=$DIR/raw/$side-r$round.json
		mkdir -p "$DIR/raw"
		flag=()
		[ "$side" = log_on ] && flag=(--dirty-log)
		if run_target siovd null "$out" --rw randread --bs 4k --iodepth 32 "${flag[@]}"; then
			$FIG add "$DIR" --id "$id.iops_per_cpu_s" --side "$side" --value "$(jget "$out" 'd["iops_per_target_cpu_s"]')" \
				--label "siovd null, 4 KiB randread, QD 32: IOPS per target CPU-second (dirty logging off / on)" --unit "IOPS/CPU-s"
			$FIG add "$DIR" --id "$id.iops" --side "$side" --value "$(jget "$out" 'd["iops"]')" \
				--label "siovd null, 4 KiB randread, QD 32: IOPS (dirty logging off / on)" --unit IOPS
			echo "migrate: $side: $(jget "$out" '"%.0f IOPS, %.0f IOPS per CPU-s" % (d["iops"], d["iops_per_target_cpu_s"])')"
		else
			$FIG add "$DIR" --id "$id.iops_per_cpu_s" --side "$side" --value none
			$FIG add "$DIR" --id "$id.iops" --side "$side" --value none
		fi
	done
done
$FIG ratio "$DIR" --id "$id.iops_per_cpu_s" --of log_on --to log_off
$FIG ratio "$DIR" --id "$id.iops" --of log_on --to log_off

if [ "$GUEST" != 1 ]; then
	$FIG note "$DIR" "guest migration skipped (QUICK=1 or MIGRATE_GUEST=0)"
	exit 0
fi
command -v qemu-system-x86_64 >/dev/null || { $FIG note "$DIR" "no QEMU: guest migration skipped"; exit 0; }
cache=$BUILD/test/guest
for round in $(seq "${MIGRATE_ROUNDS:-2}"); do
	for side in siovd qsd; do
		[ "$side" = qsd ] && [ -z "$QSD" ] && continue
		out=$DIR/raw/guest-$side-r$round.json
		if SIOV_GUEST_BACKEND=$side "$HERE/../test/guest/migrate-once.sh" --siovd "$SIOVD" \
			--siovctl "$SIOVCTL" --cache "$cache" >"$out" 2>"$DIR/raw/guest-$side-r$round.log" &&
			[ "$(jget "$out" 'd["verified"]')" = True ]; then
			$FIG add "$DIR" --id migrate.guest.total_ms --side "$side" --value "$(jget "$out" 'd["total_ms"]')" \
				--label "guest migration under fio verify: total time (QEMU)" --unit ms --better lower
			$FIG add "$DIR" --id migrate.guest.downtime_ms --side "$side" --value "$(jget "$out" 'd["downtime_ms"]')" \
				--label "guest migration under fio verify: downtime (QEMU)" --unit ms --better lower
			echo "migrate: guest on $side: $(cat "$out")"
		else
			echo "migrate: guest migration on $side failed: $(tail -3 "$DIR/raw/guest-$side-r$round.log")" >&2
			$FIG add "$DIR" --id migrate.guest.total_ms --side "$side" --value none
			$FIG add "$DIR" --id migrate.guest.downtime_ms --side "$side" --value none
		fi
	done
done
$FIG ratio "$DIR" --id migrate.guest.total_ms --of siovd --to qsd
$FIG ratio "$DIR" --id migrate.guest.downtime_ms --of siovd --to qsd
