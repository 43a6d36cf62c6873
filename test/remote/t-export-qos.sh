#!/bin/bash
# An exported VDEV's NBD I/O is the VDEV's I/O: it counts in vdev_stats and
# obeys the VDEV's QoS limits, as a VM's does.  Instance A exports a VDEV of
# a ram backend; instance B has an NBD backend on that export and siov-bench
# drives a VDEV of it.  Checked on A:
#  - without a limit, vdev_stats counts every request that came over NBD
#    (requests and bytes as siov-bench did them, the export's share shown
#    under "export");
#  - with iops_limit 200, siov-bench through the gateway gets about 200 IOPS
#    (generous margins: a shared machine), the VDEV's buckets count the
#    requests admitted and throttled, and nothing fails;
#  - with bps_limit 2M (and no IOPS limit), 64 KiB writes get about 2 MiB/s.
# Rates are compared loosely (0.5x to 1.3x of the limit over a few seconds);
# the point is that the limit applies at all, the QoS figures are measured in
# bench/sections/qos.sh.
# Usage: t-export-qos.sh SIOVD SIOVCTL SIOV_BENCH
. "$(dirname "$0")/lib.sh"
setup "$@"
MiB=1048576
RUN=3

instance_start a
ctl a backend_create --name r0 --type ram --size $((16 * MiB)) >/dev/null
ctl a vdev_create --name e0 --backend r0 --size $((16 * MiB)) --socket "$WORK/e0.vu" >/dev/null
ctl a export_create --vdev e0 --listen "unix:$WORK/e0.nbd" >/dev/null
instance_start b
ctl b backend_create --name n0 --type nbd --uri "nbd+unix:///e0?socket=$WORK/e0.nbd" --settle-ms 0 >/dev/null
ctl b vdev_create --name v0 --backend n0 --socket "$WORK/v0.vu" --queues 1 >/dev/null
wait_for_path "$WORK/v0.vu" 10 "${SIOVD_INST_PID[b]}"

# bench OUT ARGS...: siov-bench on B's VDEV for RUN s; its JSON in OUT.
bench() {
	local out=$1
	shift
	timeout 60 "$BENCH" --socket "$WORK/v0.vu" --runtime $RUN --iodepth 8 --json "$@" >"$out" ||
		die "siov-bench $* failed: $(tail -n 3 "$out")"
	[ "$(jq .errors "$out")" = 0 ] || die "siov-bench saw errors: $(cat "$out")"
}
# within VALUE LIMIT: VALUE is between 0.5x and 1.3x LIMIT.
within() { awk -v v="$1" -v l="$2" 'BEGIN{exit !(v >= 0.5 * l && v <= 1.3 * l)}'; }
astat() { vstat a e0 "$1"; }

# 1. Counted: what came over NBD is in A's vdev_stats.
r0=$(astat .requests)
bench "$WORK/free.json" --rw randwrite --bs 4k
done_reqs=$(jq .ios "$WORK/free.json")
r1=$(astat .requests)
[ "$(astat .export.requests)" = "$r1" ] || die "the export's requests are not the VDEV's: $(ctl a vdev_stats --name e0)"
[ $((r1 - r0)) -gt 100 ] && [ $((r1 - r0)) -ge "$done_reqs" ] ||
	die "vdev_stats on A counted $((r1 - r0)) requests over NBD, siov-bench did $done_reqs"
[ "$(astat .bytes_written)" -ge $(((r1 - r0) * 4096)) ] || die "A's bytes_written: $(ctl a vdev_stats --name e0)"
[ "$(astat .errors)" = 0 ] || die "A counts errors: $(ctl a vdev_stats --name e0)"
log "no limit: $(jq -r '"\(.iops | floor) IOPS"' "$WORK/free.json") through the gateway; A's vdev_stats counted $((r1 - r0)) requests (siov-bench: $done_reqs)"

# 2. iops_limit 200 holds for the NBD client.
ctl a vdev_set_qos --name e0 --iops-limit 200 >/dev/null
t0=$(astat .qos.throttled)
bench "$WORK/iops.json" --rw randwrite --bs 4k
iops=$(jq .iops "$WORK/iops.json")
within "$iops" 200 || die "with iops_limit 200 the NBD client got $iops IOPS"
[ "$(astat .qos.throttled)" -gt "$t0" ] || die "A's buckets throttled nothing: $(ctl a vdev_stats --name e0 | jq -c '.[0].qos')"
[ "$(astat .export.throttled)" -gt 0 ] || die "no export request waited: $(ctl a vdev_stats --name e0 | jq -c '.[0].export')"
log "iops_limit 200: the NBD client got $(printf %.0f "$iops") IOPS; $(ctl a vdev_stats --name e0 | jq -c '.[0].qos | {admitted, throttled}')"

# 3. bps_limit 2M holds too (64 KiB writes, no IOPS limit).
ctl a vdev_set_qos --name e0 --iops-limit 0 --bps-limit 2M >/dev/null
bench "$WORK/bps.json" --rw randwrite --bs 64k
bps=$(jq '.iops * 65536' "$WORK/bps.json")
within "$bps" $((2 * MiB)) || die "with bps_limit 2M the NBD client wrote $bps bytes/s"
[ "$(astat .errors)" = 0 ] || die "A counts errors: $(ctl a vdev_stats --name e0)"
log "bps_limit 2M: the NBD client wrote $(awk -v b="$bps" 'BEGIN{printf "%.2f", b / 1048576}') MiB/s"

instance_stop b
ctl a export_delete --vdev e0 >/dev/null
instance_stop a
