#!/bin/bash
# One live migration under verified I/O, for bench/sections/migrate.sh and
# by hand: two back-end instances on one file (SIOV_GUEST_BACKEND=siovd|qsd),
# a guest on A running fio crc32c random writes, QMP migrate to a QEMU with
# -incoming on B, then the guest finishes on B and its verification is judged.
# Prints one JSON line: {"backend", "total_ms", "downtime_ms", "verified"}.
# Usage: migrate-once.sh --siovd PATH --siovctl PATH --cache DIR
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/migrate-lib.sh"
setup "$@"

disk=$WORK/disk.img
OFF=$MiB
side_start A
side_start B
side_vdev A v0 "$disk" $OFF $((32 * MiB))
side_vdev B v0 "$disk" $OFF $((32 * MiB))
migrate_guest_script mig
vm_start g1 A v0 mig
vm_wait_marker g1 SIOV-IO-RUNNING 120
vm_wait_requests A v0 300 60
vm_start g2 B v0 mig incoming
vm_migrate g1 g2
vm_quit g1
vm_wait_requests B v0 200 60
stop_guest_io "$disk" $OFF
vm_wait_marker g2 '^SIOV-TEST-' 180
verified=false
grep -q '^SIOV-TEST-PASS' "$WORK/g2.console" && file_check "$disk" $OFF $((8 * MiB)) 50 0 && verified=true
printf '{"backend": "%s", "total_ms": %s, "downtime_ms": %s, "verified": %s}\n' \
	"$BACKEND" "$MIG_TOTAL_MS" "$MIG_DOWNTIME_MS" "$verified"
vm_quit g2
side_stop A
side_stop B
[ "$verified" = true ]
