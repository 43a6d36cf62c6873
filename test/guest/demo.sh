#!/bin/bash
# make demo: siovd carves four virtual disks out of one sparse file, a real
# Linux guest (QEMU, TCG) attaches to all four over vhost-user-blk and runs a
# verified fio workload on them, and the per-disk statistics are printed.
# Everything lives in a temporary directory that is removed on exit.
# Usage: test/guest/demo.sh BUILD_DIR
#   (SIOV_GUEST_BACKEND=qsd runs the same demo on qemu-storage-daemon)
build=${1:?usage: demo.sh BUILD_DIR}
build=$(cd "$build" && pwd)
SIOVD=$build/app/siovd/siovd
SIOVCTL=$build/app/siovctl/siovctl
SIOV_GUEST_CACHE=$build/test/guest
. "$(dirname "$0")/lib.sh"
mkdir -p "$SIOV_GUEST_CACHE"
if [ "$BACKEND" = siovd ] && { [ ! -x "$SIOVD" ] || [ ! -x "$SIOVCTL" ]; }; then
	die "no siovd/siovctl in $build: run 'make build' first"
fi
setup

disk=$WORK/siov-backend.img
DISK_SIZE=$((1024 * MiB)) W=$((64 * MiB))
NAMES=(vm0 vm1 vm2 vm3)

echo
echo "== siov demo =="
echo "backend b0: a ${DISK_SIZE}-byte sparse file, $disk"
be_start
be_backend b0 "$disk" $DISK_SIZE
for i in 0 1 2 3; do
	be_vdev ${NAMES[$i]} b0 $((i * 256 * MiB)) $W 2
	echo "VDEV ${NAMES[$i]}: window [$((i * 256)) MiB, +$((W / MiB)) MiB) of b0, 2 queues, socket ${VDEV_SOCK[${NAMES[$i]}]}"
done
be_ready
[ "$BACKEND" = siovd ] && echo "siovd: $(ctl daemon_info | jq -c . 2>/dev/null || true)"

guest_script demo <<'G'
wait_disks 4
cat > /tmp/demo.fio <<JOB
[global]
ioengine=libaio
iodepth=8
direct=1
rw=randwrite
bssplit=4k/40:16k/30:64k/20:256k/10
size=48M
verify=crc32c
verify_fatal=1
verify_backlog=64
do_verify=1
thread
[vda]
filename=/dev/vda
[vdb]
filename=/dev/vdb
[vdc]
filename=/dev/vdc
[vdd]
filename=/dev/vdd
JOB
say "running fio (random writes of 4k-256k, 8 in flight per disk, every block verified with crc32c)"
rc=0
fio --eta=never --output-format=terse --output=/tmp/fio.terse /tmp/demo.fio || rc=$?
# terse v3: 3 job name, 5 error, 6 KiB read, 8 read IOPS, 47 KiB written, 49 write IOPS.
awk -F';' '$1 == 3 { print "SIOV-DEMO", $3, $5, $6, $8, $47, $49 }' /tmp/fio.terse
[ $rc = 0 ] || fail "fio verification failed (status $rc)"
G
echo "booting a Linux guest (QEMU TCG, 2 vCPUs) on the four VDEVs ..."
t0=$(date +%s)
rc=0
( run_guest demo 240 "${NAMES[@]}" ) || rc=$?
echo "guest finished in $(($(date +%s) - t0)) s"

echo
printf '%-5s %-5s %-13s %9s %13s %9s %9s %11s  %s\n' VDEV disk "window (MiB)" requests "queue 0/1" "read MiB" "wrote MiB" "latency us" "crc32c verify"
for i in 0 1 2 3; do
	v=${NAMES[$i]} d=vd$(printf "\\x$(printf %x $((97 + i)))")
	line=$(tr -d '\r' <"$WORK/demo.console" | grep "^SIOV-DEMO $d " || true)
	err=x rkb=0 wkb=0
	[ -z "$line" ] || read -r _ _ err rkb _ wkb _ <<<"$line"
	verdict=FAILED
	[ "$err" = 0 ] && [ $rc = 0 ] && verdict="OK"
	[ -n "$line" ] || verdict="no result"
	if have_stats; then
		s=$(stats $v)
		req=$(jq -r .requests <<<"$s")
		br=$(jq -r .bytes_read <<<"$s")
		bw=$(jq -r .bytes_written <<<"$s")
		lat=$(jq -r .latency_us_mean <<<"$s")
		perq=$(jq -r '[.queues[].requests | tostring] | join("/")' <<<"$s")
	else
		req=- perq=- lat=- br=$((rkb * 1024)) bw=$((wkb * 1024))
	fi
	printf '%-5s %-5s %-13s %9s %13s %9s %9s %11s  %s\n' "$v" "$d" "$((i * 256))+$((W / MiB))" "$req" "$perq" \
		"$(awk -v b="$br" 'BEGIN{printf "%.1f", b/1048576}')" \
		"$(awk -v b="$bw" 'BEGIN{printf "%.1f", b/1048576}')" \
		"$([ "$lat" = - ] && echo - || awk -v b="$lat" 'BEGIN{printf "%.0f", b}')" "$verdict"
done
have_stats && echo "(requests, bytes and latency: siovd's vdev_stats; verification: fio in the guest)" ||
	echo "(the qsd peer has no vdev_stats: MiB are fio's own counts)"
echo
[ $rc = 0 ] || die "the guest workload failed; see the console above"
be_stop
echo "demo: PASS — 4 VDEVs on one backend, all data verified in the guest. Cleaning up."
