#!/bin/bash
# Section "file": siovd's file backend (O_DIRECT) against fio's io_uring
# engine on the same file from the same CPU (the native speed issue 13 asks
# siovd to reach: >= 1.0x) and against qemu-storage-daemon's file export
# (aio=io_uring, cache.direct=on; siovd must never be below it).  Random
# reads and writes, 4 KiB and 64 KiB, QD 1, 32 and 128; each round runs
# siovd, fio and qsd back to back on one configuration (the order turns).
# Usage: sections/file.sh BUILD DIR   env: FILE_MB=1024 FILE_DIR=/var/tmp
#   QUICK=1: 4 KiB randread at QD 32 only.  RWS, BSS, QDS pick a subset.
#   FILE_BASE_BUILD=DIR: also run the siovd of that build tree (say, main's)
#   as side "base" in every round, for an A/B of two builds in one run.
#   FILE_CLIENT=irq (default) or poll: how siov-bench waits for completions.
#   A guest's driver waits on interrupts; and on a shared machine a polling
#   client is the CPU hog the scheduler runs last, so it measures the
#   scheduler rather than the target (docs/performance.md).
set -euo pipefail
BUILD=$1 DIR=$2
. "$(dirname "$0")/../lib.sh"
FILE_MB=${FILE_MB:-1024}
FILE_DIR=${FILE_DIR:-/var/tmp}
FILE_CLIENT=${FILE_CLIENT:-irq}
RWS=${RWS:-"randread randwrite"}
BSS=${BSS:-"4k 64k"}
QDS=${QDS:-"1 32 128"}
if [ "$QUICK" = 1 ]; then RWS=randread BSS=4k QDS=32; fi
have_siovd || { echo "file: siovd or siov-bench not built" >&2; exit 77; }
FILE=$(mktemp "$FILE_DIR/siov-bench-disk.XXXXXX")
trap 'bench_cleanup; rm -f "$FILE"' EXIT
dd if=/dev/zero of="$FILE" bs=1M count="$FILE_MB" oflag=direct status=none
# What the disk itself saw during each run (bench/lib.sh disk_mark).
DISK_STAT=$(disk_dev_stat "$FILE")
[ -r "$DISK_STAT" ] || DISK_STAT=""
LOAD_START=$(cut -d' ' -f1-3 /proc/loadavg)
$FIG meta "$DIR" --name file --title "File backend (O_DIRECT): siovd vs fio io_uring and qemu-storage-daemon" \
	--setup "A $FILE_MB MiB preallocated file in $FILE_DIR ($(df -T "$FILE_DIR" | awk 'NR==2{print $2}')). siovd and qsd on CPU $TCPU with siov-bench (--$FILE_CLIENT) on CPU $LCPU; fio --ioengine=io_uring --direct=1 runs on CPU $TCPU, the CPU siovd issues its I/O from, on the same file with fio's defaults otherwise, which match what siovd does: no registered files, no fixed buffers (guest memory is not pinned), no hipri, no sqthread, one SQE per submit as slots free (iodepth_batch 1; siovd submits what a round popped), non-vectored reads and writes, 4 KiB pages of buffer memory on both sides. Disk queue depth: the device's aqu-sz over each run (/proc/diskstats time_in_queue over the run's wall time; the whole device, so the host's other I/O counts too). $RUNTIME s per run, $ROUNDS rounds; one round runs siovd, fio and qsd back to back per configuration, in an order that turns each round."

# add ID SIDE VALUE LABEL UNIT [BETTER]
add() { $FIG add "$DIR" --id "$1" --side "$2" --value "$3" --label "$4" --unit "$5" ${6:+--better $6}; }

# add_disk ID SIDE OUT WHAT: the device's queue depth and request size during the run
add_disk() {
	[ -n "$DISK_STAT" ] && [ -s "$3.disk" ] || return 0
	add "$1.disk_depth" "$2" "$(disk_depth "$3" aqu)" "$4: disk queue depth (aqu-sz)" requests
	add "$1.disk_req_kib" "$2" "$(disk_depth "$3" kib)" "$4: mean request size at the disk" KiB
}

one_config() { # RW BS QD ROUND
	local rw=$1 bs=$2 qd=$3 round=$4 id=file.$1.$2.qd$3 dir=read what out side
	[ "$rw" = randwrite ] && dir=write
	what="file, $bs $rw, QD $qd"
	# The order turns each round so no side always runs first after the others.
	local sides=(siovd fio qsd ${FILE_BASE_BUILD:+base}) k
	for k in "${!sides[@]}"; do
		side=${sides[$(((k + round) % ${#sides[@]}))]}
		out=$DIR/raw/$id-$side-r$round.json
		if [ "$side" = fio ]; then
			if run_fio "$out" --filename="$FILE" --rw="$rw" --bs="$bs" --iodepth="$qd"; then
				add "$id.iops" fio "$(fio_get "$out" $dir iops)" "$what: IOPS" IOPS
				add "$id.lat_mean_us" fio "$(fio_get "$out" $dir lat)" "$what: mean latency" µs lower
				add_disk "$id" fio "$out" "$what"
			else
				add "$id.iops" fio none "$what: IOPS" IOPS
			fi
			continue
		fi
		[ "$side" = qsd ] && [ -z "$QSD" ] && continue
		if [ "$side" = base ]; then
			SIOVD=$FILE_BASE_BUILD/app/siovd/siovd SIOVCTL=$FILE_BASE_BUILD/app/siovctl/siovctl \
				run_target siovd "$FILE" "$out" --rw "$rw" --bs "$bs" --iodepth "$qd" --"$FILE_CLIENT" || :
		else
			run_target "$side" "$FILE" "$out" --rw "$rw" --bs "$bs" --iodepth "$qd" --"$FILE_CLIENT" || :
		fi
		if [ -s "$out" ]; then
			add "$id.iops" $side "$(jget "$out" 'd["iops"]')" "$what: IOPS" IOPS
			add "$id.lat_mean_us" $side "$(jget "$out" 'd["lat_ns"]["mean"]/1e3')" "$what: mean latency" µs lower
			add_disk "$id" $side "$out" "$what"
			add "$id.cpu_util" $side "$(jget "$out" 'd["target_cpu_s"]/d["runtime_s"]')" "$what: target CPU (share of one CPU)" CPU lower
			if [ -s "$out.engine" ] && [ "$(head -c1 "$out.engine")" = "[" ]; then
				add "$id.ring_to_submit_us" $side "$(jget "$out.engine" 'd[0]["ring_to_submit_us"]')" \
					"$what: siovd ring->submit per request" µs lower
				add "$id.submit_to_cqe_us" $side "$(jget "$out.engine" 'd[0]["submit_to_cqe_us"]')" \
					"$what: siovd submit->CQE reaped per request" µs lower
				add "$id.cqe_to_used_us" $side "$(jget "$out.engine" 'd[0]["cqe_to_used_us"]')" \
					"$what: siovd CQE->used published and notified" µs lower
			fi
		else
			add "$id.iops" $side none "$what: IOPS" IOPS
		fi
	done
	echo "file: $id round $round done"
}

for round in $(seq "$ROUNDS"); do
	for rw in $RWS; do for bs in $BSS; do for qd in $QDS; do
		one_config "$rw" "$bs" "$qd" "$round"
	done; done; done
done
for rw in $RWS; do for bs in $BSS; do for qd in $QDS; do
	id=file.$rw.$bs.qd$qd
	$FIG ratio "$DIR" --id "$id.iops" --of siovd --to fio --target 1.0
	[ -n "$QSD" ] && $FIG ratio "$DIR" --id "$id.iops" --of siovd --to qsd --target 1.0 --every-round
	$FIG ratio "$DIR" --id "$id.lat_mean_us" --of siovd --to fio
	if [ -n "${FILE_BASE_BUILD:-}" ]; then
		$FIG ratio "$DIR" --id "$id.iops" --of siovd --to base
		$FIG ratio "$DIR" --id "$id.disk_depth" --of siovd --to base
	fi
done; done; done
$FIG note "$DIR" "Load average (1, 5, 15 min) at the start of this section: $LOAD_START; at its end: $(cut -d' ' -f1-3 /proc/loadavg). The machine was shared: read the per-round ratios and their spread."
