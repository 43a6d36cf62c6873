#!/bin/bash
# make demo: siovd carves virtual disks out of one sparse file.  A real Linux
# guest (QEMU, TCG) attaches to four of them over vhost-user-blk and runs a
# verified fio workload, while N client processes (default 64) each open a VDEV
# of their own through libsiov (siov-bench, verified random reads and writes)
# at the same time.  Then a table shows each VDEV's IOPS, mean latency and
# verification, and the total: dozens of devices sharing one backend.
# While the guest's fio runs, the guest is live-migrated to a second siovd
# serving the same four windows of the same file (two hosts sharing storage);
# its workload finishes there, and the summary gives the migration's total
# time and downtime beside the verification.
# Everything lives in a temporary directory that is removed on exit.
# Usage: test/guest/demo.sh BUILD_DIR
#   SIOV_DEMO_CLIENTS=N          client processes, one VDEV each (default 64, 0 = none)
#   SIOV_DEMO_CLIENT_SECONDS=S   how long each client runs (default 5)
#   SIOV_DEMO_MIGRATE=0          no live migration (default 1 on siovd)
#   (SIOV_GUEST_BACKEND=qsd runs the same demo on qemu-storage-daemon, without migration)
build=${1:?usage: demo.sh BUILD_DIR}
build=$(cd "$build" && pwd)
SIOVD=$build/app/siovd/siovd
SIOVCTL=$build/app/siovctl/siovctl
SIOVBENCH=$build/app/siov-bench/siov-bench
SIOV_GUEST_CACHE=$build/test/guest
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/net-lib.sh"
. "$(dirname "$0")/migrate-lib.sh"
MIGRATE=${SIOV_DEMO_MIGRATE:-1}
[ "$BACKEND" = siovd ] || MIGRATE=0
NCLIENTS=${SIOV_DEMO_CLIENTS:-64}
CLIENT_SECS=${SIOV_DEMO_CLIENT_SECONDS:-5}
mkdir -p "$SIOV_GUEST_CACHE"
if [ "$BACKEND" = siovd ] && { [ ! -x "$SIOVD" ] || [ ! -x "$SIOVCTL" ]; }; then
	die "no siovd/siovctl in $build: run 'make build' first"
fi
[ "$NCLIENTS" = 0 ] || [ -x "$SIOVBENCH" ] || die "no siov-bench in $build: run 'make build' first"
command -v jq >/dev/null || die "jq is needed to read the results (scripts/deps.sh demo installs it)"
# demo_network (issue 11): two guests with siov NICs on network t1 exchange 4
# MiB checked with sha256, a third on t2 cannot reach them; then a table of
# every port's packets, bytes and drops as the switch counted them.
demo_network() {
	local v bad=0
	echo
	echo "== siov demo: virtual NICs =="
	be_network t1
	be_network t2
	be_nic a t1 52:54:00:de:00:01
	be_nic b t1 52:54:00:de:00:02
	be_nic c t2 52:54:00:de:00:03
	be_ready
	echo "network t1: ports a, b; network t2: port c (same subnet, other tenant)"
	net_scripts 0
	guest_start b 420 b
	local pb=$GUEST_PID
	guest_start a 420 a
	local pa=$GUEST_PID
	guest_start c 420 c
	local pc=$GUEST_PID
	GUEST_PID=$pc guest_wait c
	GUEST_PID=$pa guest_wait a
	GUEST_PID=$pb guest_wait b
	net_check_transfer
	echo "a -> b: 4 MiB over TCP, sha256 ${sum_a%% *} on both sides; c reached nobody"
	printf '%-4s %-8s %10s %12s %10s %12s  %s\n' port network rx_pkts rx_bytes tx_pkts tx_bytes drops
	for v in a b c; do
		stats "$v" | jq -r --arg v "$v" '[$v, (if $v == "c" then "t2" else "t1" end), .net.rx_packets,
			.net.rx_bytes, .net.tx_packets, .net.tx_bytes,
			([.net.rx_drops, .net.tx_drops | to_entries[] | select(.value > 0) | "\(.key)=\(.value)"]
			 | join(" ") | if . == "" then "none" else . end)] | @tsv' |
			awk -F'\t' '{ printf "%-4s %-8s %10s %12s %10s %12s  %s\n", $1, $2, $3, $4, $5, $6, $7 }'
	done
	echo "(a's spoofed drops: it sent as another MAC at the end, and the switch dropped it)"
}

setup

disk=$WORK/siov-backend.img
W=$((64 * MiB))               # a guest VDEV's window
CW=$((8 * MiB))               # a client VDEV's window
CBASE=$((1024 * MiB))         # client windows start here, after the guests'
DISK_SIZE=$((CBASE + NCLIENTS * CW))
NAMES=(vm0 vm1 vm2 vm3)
CLIENTS=()
for ((i = 0; i < NCLIENTS; i++)); do CLIENTS+=("$(printf 'c%03d' $i)"); done

echo
echo "== siov demo =="
echo "backend b0: a ${DISK_SIZE}-byte sparse file, $disk"
be_start
be_backend b0 "$disk" $DISK_SIZE
for i in 0 1 2 3; do
	be_vdev ${NAMES[$i]} b0 $((i * 256 * MiB)) $W 2
	echo "VDEV ${NAMES[$i]}: window [$((i * 256)) MiB, +$((W / MiB)) MiB) of b0, 2 queues, socket ${VDEV_SOCK[${NAMES[$i]}]}"
done
for ((i = 0; i < NCLIENTS; i++)); do
	be_vdev "${CLIENTS[$i]}" b0 $((CBASE + i * CW)) $CW 1
done
[ "$NCLIENTS" = 0 ] ||
	echo "VDEV ${CLIENTS[0]}..${CLIENTS[$((NCLIENTS - 1))]}: $NCLIENTS windows of $((CW / MiB)) MiB from $((CBASE / MiB)) MiB of b0, 1 queue each, one libsiov client process per VDEV"
be_ready
[ "$BACKEND" = siovd ] && echo "siovd: $(ctl daemon_info | jq -c . 2>/dev/null || true)"
if [ "$MIGRATE" = 1 ]; then
	# The second "host": another siovd with the same four windows of the same file.
	side_start B
	RPC=${SIDE_RPC[B]}
	ctl backend_create --name b0 --type file --path "$disk" >/dev/null || die "backend_create on B failed"
	for i in 0 1 2 3; do
		VDEV_SOCK[B/${NAMES[$i]}]=$WORK/side-B/${NAMES[$i]}.sock
		VDEV_QUEUES[B/${NAMES[$i]}]=2
		ctl vdev_create --name "${NAMES[$i]}" --type blk --backend b0 --offset $((i * 256 * MiB)) \
			--size $W --socket "${VDEV_SOCK[B/${NAMES[$i]}]}" >/dev/null || die "vdev_create on B failed"
	done
	RPC=$WORK/rpc.sock
	echo "second siovd (pid ${SIDE_PID[B]}): the same 4 windows of b0, for the live migration"
fi

# Long enough for the migration to happen under it.
guest_script demo RUNTIME=$([ "$MIGRATE" = 1 ] && echo 20 || echo 6) <<'G'
wait_disks 4
cat > /tmp/demo.fio <<JOB
[global]
time_based
runtime=$RUNTIME
ioengine=libaio
iodepth=8
direct=1
rw=randwrite
bssplit=4k/40:16k/30:64k/20:256k/10
size=32M
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
# terse v3: 3 job name, 5 error, 6 KiB read, 40 read lat mean (us),
# 47 KiB written, 49 write IOPS, 81 write lat mean (us).
awk -F';' '$1 == 3 { print "SIOV-DEMO", $3, $5, $6, $40, $47, $49, $81 }' /tmp/fio.terse
[ $rc = 0 ] || fail "fio verification failed (status $rc)"
G

# cpu_s PID: user+system CPU seconds a process has used so far.
cpu_s() {
	awk -v hz="$(getconf CLK_TCK)" '{ sub(/.*\) /, ""); print ($12 + $13) / hz }' "/proc/$1/stat" 2>/dev/null || echo 0
}

# start_clients: one siov-bench per client VDEV, all at once: 4 KiB random
# reads and writes, 4 in flight, every read of a written block checked,
# interrupt mode (64 pollers would starve the guest on two cores).
CPIDS=()
start_clients() {
	local i v
	for ((i = 0; i < NCLIENTS; i++)); do
		v=${CLIENTS[$i]}
		timeout -k 5 $((CLIENT_SECS + 60)) "$SIOVBENCH" --socket "${VDEV_SOCK[$v]}" --rw randrw --verify \
			--bs 4k --iodepth 4 --size 2M --runtime "$CLIENT_SECS" --irq --json \
			>"$WORK/$v.json" 2>"$WORK/$v.err" &
		CPIDS+=($!)
		PIDS+=($!)
	done
}

# wait_clients: their exit statuses, in $WORK/NAME.rc.
wait_clients() {
	local i rc
	for ((i = 0; i < ${#CPIDS[@]}; i++)); do
		rc=0
		wait "${CPIDS[$i]}" || rc=$?
		forget_pid "${CPIDS[$i]}"
		echo $rc >"$WORK/${CLIENTS[$i]}.rc"
	done
}

# finish_guest: waits for QEMU (bounded by guest_start's timeout) and says
# whether the guest passed, without dying, so the table is printed either way.
finish_guest() {
	local rc=0
	while kill -0 "$GUEST_PID" 2>/dev/null; do sleep 0.2; done
	wait "$GUEST_PID" || rc=$?
	forget_pid "$GUEST_PID"
	rm -f "$WORK/$CONSOLE.qemu.pid"
	grep -q '^SIOV-TEST-PASS' "$WORK/$CONSOLE.console" && return 0
	echo "guest: $(grep -m1 '^SIOV-TEST-FAIL' "$WORK/$CONSOLE.console" | tr -d '\r' || echo "no result (QEMU status $rc)")" >&2
	return 1
}

echo "booting a Linux guest (QEMU TCG, 2 vCPUs) on the four guest VDEVs ..."
t0=$(date +%s.%N)
cpu0=$(cpu_s "$BE_PID")
CONSOLE=demo
[ "$MIGRATE" = 1 ] && ACCEL=$(mig_accel) # see migrate-lib.sh
GUEST_QMP=$MIGRATE guest_start demo 240 "${NAMES[@]}"
guest_wait_marker demo "running fio" 120
mig="not migrated"
if [ "$MIGRATE" = 1 ]; then
	# The destination: the same QEMU command line on B's sockets, plus -incoming.
	cp "$WORK/demo.guest.sh" "$WORK/demo-b.guest.sh"
	src_pid=$GUEST_PID
	GUEST_QMP=1 GUEST_INCOMING=1 guest_start demo-b 240 "${NAMES[@]/#/B/}"
	wait_for_path "$WORK/demo-b.mig" 20 "$GUEST_PID"
	echo "live-migrating the guest from siovd A to siovd B while its fio runs ..."
	vm_migrate demo demo-b
	mig="siovd A -> siovd B: total ${MIG_TOTAL_MS} ms, downtime ${MIG_DOWNTIME_MS} ms ($MIG_STATUS)"
	echo "migration $mig"
	qmp demo quit >/dev/null 2>&1 || true
	timeout 20 tail --pid="$src_pid" -f /dev/null || kill -9 "$src_pid" 2>/dev/null || true
	wait "$src_pid" 2>/dev/null || true
	forget_pid "$src_pid"
	rm -f "$WORK/demo.qemu.pid"
	CONSOLE=demo-b
fi
# The clients start once the guest is on B: 64 more processes on two cores
# during the copy would only stretch it.
if [ "$NCLIENTS" != 0 ]; then
	echo "guest fio running; starting $NCLIENTS siov-bench clients for $CLIENT_SECS s ..."
	start_clients
	wait_clients
fi
grc=0
finish_guest || grc=$?
cpu1=$(cpu_s "$BE_PID")
secs=$(awk -v a="$t0" -v b="$(date +%s.%N)" 'BEGIN { printf "%.1f", b - a }')
echo "guest and clients finished in $secs s"

# The table: IOPS and mean latency as the consumer measured them (fio in the
# guest, siov-bench for clients), siovd's own mean latency per VDEV
# (vdev_stats: request taken from the ring to completion), the verdict.
allstats='[]'
have_stats && allstats=$(ctl vdev_stats | jq -c 'if type == "array" then . else [.] end')
bad=0 tot_g=0 tot_c=0
row() { printf '%-5s %-13s %-11s %9s %11s %11s  %s\n' "$@"; }
echo
row VDEV consumer "window MiB" IOPS "lat us" "siovd us" verification
be_lat() {
	have_stats || { echo -; return; }
	jq -r --arg n "$1" '.[] | select(.name == $n) | .latency_us_mean | floor' <<<"$allstats"
}
for i in 0 1 2 3; do
	v=${NAMES[$i]} d=vd$(printf "\\x$(printf %x $((97 + i)))")
	line=$(cat "$WORK"/demo*.console | tr -d '\r' | grep "^SIOV-DEMO $d " || true)
	err=x rkb=0 rlat=0 wkb=0 wiops=0 wlat=0
	[ -z "$line" ] || read -r _ _ err rkb rlat wkb wiops wlat <<<"$line"
	verdict="FAILED"
	[ "$err" = 0 ] && [ $grc = 0 ] && verdict="OK (fio crc32c)"
	[ -n "$line" ] || verdict="no result"
	[ "$verdict" = "OK (fio crc32c)" ] || bad=$((bad + 1))
	# fio's read side covers only the verify reads (their runtime is not the
	# job's): they re-read what was written, with the same sizes, so the job
	# did (read + written) / written times the write IOPS over its runtime.
	read -r iops lat < <(awk -v rk="$rkb" -v rl="$rlat" -v wk="$wkb" -v wi="$wiops" -v wl="$wlat" \
		'BEGIN { n = rk + wk; printf "%d %d\n", wk ? wi * n / wk : 0, n ? (rk * rl + wk * wl) / n : 0 }')
	tot_g=$((tot_g + iops))
	row "$v" "guest $d" "$((i * 256))+$((W / MiB))" "$iops" "$lat" "$(be_lat "$v")" "$verdict"
done
for ((i = 0; i < NCLIENTS; i++)); do
	v=${CLIENTS[$i]} j=$WORK/${CLIENTS[$i]}.json
	iops=0 lat=- verdict="no result: $(head -c 80 "$WORK/$v.err" 2>/dev/null)"
	if jq -e . "$j" >/dev/null 2>&1; then
		read -r iops lat nver nerr nbad < <(jq -r '[(.iops | floor), (.lat_ns.mean / 1000 | floor),
			.verified, .errors, .verify_errors] | @tsv' "$j")
		if [ "$(cat "$WORK/$v.rc")" = 0 ] && [ "$nerr" = 0 ] && [ "$nbad" = 0 ] && [ "$nver" -gt 0 ]; then
			verdict="OK ($nver reads checked)"
		else
			verdict="FAILED ($nerr errors, $nbad of $nver reads bad)"
		fi
	fi
	case "$verdict" in OK*) ;; *) bad=$((bad + 1)) ;; esac
	tot_c=$((tot_c + iops))
	row "$v" "siov-bench" "$(((CBASE + i * CW) / MiB))+$((CW / MiB))" "$iops" "$lat" "$(be_lat "$v")" "$verdict"
done
echo
echo "total: $((4 + NCLIENTS)) VDEVs on one backend file: $((tot_g + tot_c)) IOPS" \
	"(guest $tot_g over 4 disks, $NCLIENTS libsiov clients $tot_c),"
have_stats && echo "       siovd used $(awk -v a="$cpu0" -v b="$cpu1" 'BEGIN { printf "%.1f", b - a }') CPU-s in $secs s on a $(nproc)-core machine shared with QEMU and the clients"
echo "(IOPS and lat us: as measured by fio in the guest / siov-bench in each client;" \
	"siovd us: vdev_stats, ring to completion)"
echo
guest_verdict=$([ $grc = 0 ] && echo "fio crc32c verification OK" || echo "verification FAILED")
echo "live migration: $mig; guest: $guest_verdict"
echo
[ $bad = 0 ] || die "$bad VDEV(s) failed verification or produced no result; see above"
if [ "$MIGRATE" = 1 ]; then
	side_stop B
	# B's VDEVs are gone with it: nothing waits for their sockets any more.
	for k in "${!VDEV_SOCK[@]}"; do
		[ "${k%%/*}" != B ] || unset "VDEV_SOCK[$k]" "VDEV_QUEUES[$k]"
	done
fi
[ "$BACKEND" = siovd ] && demo_network
be_stop
echo "demo: PASS: $((4 + NCLIENTS)) VDEVs on one backend, all data verified. Cleaning up."
