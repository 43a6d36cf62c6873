#!/bin/bash
# Section "net" (issue 11): siovd's switch against DPDK's own vhost-user back
# end.  Front ends are two DPDK testpmd processes (Debian's dpdk-dev, no
# hugepages), each with one net_virtio_user port: one transmits (txonly) 64 B
# or 1500 B frames to the other's MAC, the other receives (rxonly).  The back
# end between them, on CPU $TCPU, is either siovd (one engine; a network with
# two net VDEVs) or testpmd's net_vhost back end io-forwarding between two
# vhost-user ports on one lcore.  Figures: packets received per second, and
# per CPU-second of the back end (Mpps and Gbit/s); the idle cost of a port.
# Usage: sections/net.sh BUILD DIR (see bench/README.md; NET_SIZES="64 1500").
set -euo pipefail
BUILD=$1 DIR=$2
. "$(dirname "$0")/../lib.sh"
TESTPMD=$(command -v dpdk-testpmd || true)
[ -n "$TESTPMD" ] || { echo "net: dpdk-testpmd not installed (dpdk-dev)" >&2; exit 77; }
[ -x "$SIOVD" ] && [ -x "$SIOVCTL" ] || { echo "net: siovd not built" >&2; exit 77; }
SIZES=${NET_SIZES:-"64 1500"}
[ "$QUICK" = 1 ] && SIZES=${NET_SIZES:-64}
MAC_TX=52:54:00:be:00:01
MAC_RX=52:54:00:be:00:02
HZ=$(getconf CLK_TCK)
$FIG meta "$DIR" --name net --title "Virtual NICs: siovd's switch vs DPDK's net_vhost back end" \
	--setup "Two testpmd front ends (net_virtio_user, --no-huge) on CPU $LCPU: one txonly, one rxonly; the back end on CPU $TCPU: siovd (1 engine, one network, two net VDEVs) or testpmd net_vhost io-forwarding between two vhost-user ports on one lcore. $RUNTIME s per run after 2 s of warm-up, $ROUNDS rounds alternating siovd and dpdk."

declare -A TP_FD=() TP_PID=()
# tp_start NAME CPU ARGS...: an interactive testpmd reading commands from a fifo.
tp_start() {
	local name=$1 cpu=$2 fd
	shift 2
	mkfifo "$WORK/$name.in"
	taskset -c "$cpu" stdbuf -oL "$TESTPMD" --lcores "0@$cpu,1@$cpu" --no-huge -m 256 --no-pci \
		--file-prefix "siovbench$$$name" "$@" <"$WORK/$name.in" >"$WORK/$name.out" 2>&1 &
	TP_PID[$name]=$!
	exec {fd}>"$WORK/$name.in"
	TP_FD[$name]=$fd
}
tp_cmd() { echo "$2" >&"${TP_FD[$1]}"; }
tp_stop() {
	local name=$1
	[ -n "${TP_PID[$name]:-}" ] || return 0
	tp_cmd "$name" quit 2>/dev/null || true
	exec {TP_FD[$name]}>&-
	timeout 10 tail --pid="${TP_PID[$name]}" -f /dev/null 2>/dev/null || kill -9 "${TP_PID[$name]}" 2>/dev/null || true
	wait "${TP_PID[$name]}" 2>/dev/null || true
	unset "TP_PID[$name]"
	rm -f "$WORK/$name.in"
}
stop_all() {
	tp_stop tx
	tp_stop rx
	tp_stop be
	stop_target
}
trap 'stop_all; [ -n "${NET_KEEP:-}" ] || rm -rf "$WORK"' EXIT

# rx_packets: the receiver's RX-packets now.
rx_packets() {
	local before
	before=$(grep -c 'RX-packets' "$WORK/rx.out" || true)
	tp_cmd rx "show port stats 0"
	for _ in $(seq 200); do
		[ "$(grep -c 'RX-packets' "$WORK/rx.out" || true)" -gt "$before" ] && break
		sleep 0.05
	done
	grep 'RX-packets' "$WORK/rx.out" | tail -1 | awk '{print $2}'
}
cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }

start_backend() { # SIDE
	if [ "$1" = siovd ]; then
		mkdir -p "$WORK/state"
		taskset -c "$TCPU" "$SIOVD" --rpc-socket "$WORK/rpc.sock" --state-dir "$WORK/state" --engines 1 \
			>"$WORK/target.log" 2>&1 &
		TPID=$!
		wait_sock "$WORK/rpc.sock" "$TPID" || return 1
		"$SIOVCTL" -s "$WORK/rpc.sock" network_create --name bench >/dev/null
		"$SIOVCTL" -s "$WORK/rpc.sock" vdev_create --name p0 --type net --network bench \
			--mac "$MAC_TX" --socket "$WORK/p0.sock" >/dev/null
		"$SIOVCTL" -s "$WORK/rpc.sock" vdev_create --name p1 --type net --network bench \
			--mac "$MAC_RX" --socket "$WORK/p1.sock" >/dev/null
	else
		tp_start be "$TCPU" --vdev "net_vhost0,iface=$WORK/p0.sock,queues=1" \
			--vdev "net_vhost1,iface=$WORK/p1.sock,queues=1" -- -i --forward-mode=io \
			--total-num-mbufs=16384
		TPID=${TP_PID[be]}
		tp_cmd be start
	fi
	wait_sock "$WORK/p0.sock" "$TPID" && wait_sock "$WORK/p1.sock" "$TPID"
}

# run SIDE SIZE: one measurement; prints "pps cpu_s".
run() {
	local side=$1 size=$2 p0 p1 c0 c1 t0 t1
	start_backend "$side" || { stop_all; return 1; }
	tp_start rx "$LCPU" --vdev "net_virtio_user0,path=$WORK/p1.sock,queues=1,mac=$MAC_RX" \
		-- -i --forward-mode=rxonly --total-num-mbufs=8192
	tp_start tx "$LCPU" --vdev "net_virtio_user0,path=$WORK/p0.sock,queues=1,mac=$MAC_TX" \
		-- -i --forward-mode=txonly --eth-peer="0,$MAC_RX" --txpkts="$((size - 4))" \
		--total-num-mbufs=8192
	sleep 2
	tp_cmd rx start
	tp_cmd tx start
	sleep 2
	p0=$(rx_packets) c0=$(cpu_ticks "$TPID") t0=$(date +%s.%N)
	sleep "$RUNTIME"
	p1=$(rx_packets) c1=$(cpu_ticks "$TPID") t1=$(date +%s.%N)
	stop_all
	[ -n "$p0" ] && [ -n "$p1" ] || return 1
	python3 -c 'import sys; p0,p1,c0,c1,t0,t1,hz=map(float,sys.argv[1:]); dt=t1-t0; print((p1-p0)/dt, (c1-c0)/hz/dt)' \
		"$p0" "$p1" "$c0" "$c1" "$t0" "$t1" "$HZ"
}

for round in $(seq "$ROUNDS"); do
	for size in $SIZES; do
		for side in siovd dpdk; do
			id=net.txrx.${size}b
			if ! out=$(run "$side" "$size") || [ -z "$out" ]; then
				$FIG add "$DIR" --id "$id.mpps_per_cpu_s" --side "$side" --value none
				continue
			fi
			read -r pps cpu <<<"$out"
			echo "net: $side ${size} B: $(python3 -c "print('%.3f Mpps, %.2f of a CPU' % ($pps/1e6, $cpu))")" >&2
			$FIG add "$DIR" --id "$id.mpps_per_cpu_s" --side "$side" \
				--value "$(python3 -c "print($pps / 1e6 / max($cpu, 0.01))")" \
				--label "$size B frames, port to port: Mpps per back-end CPU-second" --unit "Mpps/CPU-s"
			$FIG add "$DIR" --id "$id.gbps_per_cpu_s" --side "$side" \
				--value "$(python3 -c "print($pps * $size * 8 / 1e9 / max($cpu, 0.01))")" \
				--label "$size B frames, port to port: Gbit/s per back-end CPU-second" --unit "Gbit/s/CPU-s"
			$FIG add "$DIR" --id "$id.mpps" --side "$side" --value "$(python3 -c "print($pps / 1e6)")" \
				--label "$size B frames, port to port: Mpps received" --unit Mpps
			$FIG add "$DIR" --id "$id.cpu" --side "$side" --value "$cpu" \
				--label "$size B frames: back-end CPU (cores busy)" --unit cores --better lower
		done
	done
done
for size in $SIZES; do
	id=net.txrx.${size}b
	$FIG ratio "$DIR" --id "$id.mpps_per_cpu_s" --of siovd --to dpdk --target 1
	$FIG ratio "$DIR" --id "$id.mpps" --of siovd --to dpdk
done
$FIG note "$DIR" "DPDK's back end polls its lcore whether or not frames flow (1 core busy at idle); siovd's engine sleeps when its queues are idle."

# ---- Round trips (port to port, ping-pong) ----
# test/hostile/net-rtt attaches to both ports with the hostile test's own
# front end (no libsiov, no DPDK) and bounces a 64-byte frame between them,
# each side spinning on its receive ring: the figure is the back end's
# latency plus two ring round trips.  Same back ends as above.
NET_RTT=$BUILD/test/hostile/net-rtt
rtt_run() { # SIDE COUNT: prints net-rtt's JSON line
	local out
	start_backend "$1" || { stop_all; return 1; }
	out=$(taskset -c "$LCPU" timeout 120 "$NET_RTT" "$WORK/p0.sock" "$WORK/p1.sock" "$2" 64) || {
		echo "net: $1: net-rtt failed (status $?): ${out:-no output}" >&2
		stop_all
		return 1
	}
	stop_all
	echo "$out"
}
rtt_section() {
	local count=${NET_RTT_COUNT:-20000} round side json p
	[ -x "$NET_RTT" ] || { echo "net: $NET_RTT not built: no round-trip figures" >&2; return 0; }
	[ "$QUICK" = 1 ] && count=2000
	for round in $(seq "$ROUNDS"); do
		for side in siovd dpdk; do
			if ! json=$(rtt_run "$side" "$count"); then
				$FIG add "$DIR" --id net.rtt.64b.p50_us --side "$side" --value none
				continue
			fi
			echo "net: $side round trip: $json" >&2
			for p in p50 p99; do
				$FIG add "$DIR" --id "net.rtt.64b.${p}_us" --side "$side" \
					--value "$(python3 -c 'import json,sys; print(json.loads(sys.argv[1])[sys.argv[2]])' "$json" "${p}_us")" \
					--label "64 B frame port to port and back (spinning front ends): $p round trip" \
					--unit us --better lower
			done
		done
	done
	$FIG ratio "$DIR" --id net.rtt.64b.p50_us --of siovd --to dpdk
	$FIG note "$DIR" "Round trips: DPDK's back end polls its lcore all the time; siovd's engine is woken by the kick (and polls for --poll-us after work)."
}
rtt_section
