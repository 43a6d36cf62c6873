#!/bin/bash
# Section "net" (issue 11): siovd's switch against DPDK's own vhost-user back
# end.  Front ends are two DPDK testpmd processes (Debian's dpdk-dev, no
# hugepages), each with one net_virtio_user port: one transmits (txonly) 64 B
# or 1500 B frames to the other's MAC, the other receives (rxonly).  The back
# end between them, on CPU $TCPU, is either siovd (one engine; a network with
# two net VDEVs) or testpmd's net_vhost back end io-forwarding between two
# vhost-user ports on one lcore.  Figures, per round (siovd and DPDK
# alternate): frames the back end put into the receiver's ring per second and
# per CPU-second of the back end (Mpps and Gbit/s), what the front ends sent
# and received (testpmd's own rates), the back end's CPU with both front ends
# attached and no traffic, its RSS; the ping round trip from a namespace
# through a TAP and the back end to a testpmd icmpecho port; siovd's memory
# per idle port.
# Usage: sections/net.sh BUILD DIR (see bench/README.md; NET_SIZES="64 1500",
# NET_IDLE_SECONDS=3, NET_PINGS=100, NET_IDLE_PORTS=200, NET_KEEP=1 keeps the work dir).
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

# show_stats NAME [PORT]: testpmd's "show port stats PORT" (default 0) of NAME,
# once it printed it.  testpmd times the interval since the previous show
# itself ("Throughput (since last show)": Rx-pps, Tx-pps), so the rates do
# not depend on how fast this script gets its answers on a loaded machine.
show_stats() {
	local name=$1 port=${2:-0} before want=1
	[ "$port" = all ] && want=2
	before=$(grep -c 'Tx-pps' "$WORK/$name.out" || true)
	tp_cmd "$name" "show port stats $port"
	for _ in $(seq 400); do
		[ "$(grep -c 'Tx-pps' "$WORK/$name.out" || true)" -ge $((before + want)) ] && return 0
		sleep 0.05
	done
	return 1
}
# last_rate NAME KEY [NTH]: KEY's value in the NTH-last (default last) line holding it.
last_rate() {
	grep "$2" "$WORK/$1.out" | tail -n "${3:-1}" | head -n 1 |
		awk -v k="$2" '{for (i = 1; i < NF; i++) if ($i == k) print $(i + 1)}'
}
# be_count: frames the back end has put into the receiver's ring (siovd:
# vdev_stats of p1; DPDK: testpmd's own rate, see be_rate), and when.
be_count() {
	"$SIOVCTL" -s "$WORK/rpc.sock" vdev_stats --name p1 | jq -r '(if type == "array" then .[0] else . end) | .net.rx_packets'
	date +%s.%N
}
cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }
rss_kib() { awk '/^VmRSS/ {print $2}' "/proc/$1/status"; }

# wait_linked: both front ends attached and running their queues (siovd says
# so; for DPDK's back end, its log says both vhost devices are ready).
wait_linked() {
	local i
	for i in $(seq 200); do
		if [ -n "${TP_PID[be]:-}" ]; then
			[ "$(grep -c 'new device\|Port [01]: link state change event\|vhost device .* ready' "$WORK/be.out" || true)" -ge 2 ] && return 0
		elif [ "$("$SIOVCTL" -s "$WORK/rpc.sock" vdev_list | jq '[.[] | select(.connected)] | length')" = 2 ]; then
			return 0
		fi
		sleep 0.05
	done
	return 1
}

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

# run SIDE SIZE: one measurement; prints "fwd_pps rx_pps tx_pps cpu idle_cpu
# rss_kib": frames per second the back end put into the receiver's ring, the
# receiving and sending front ends' own rates (testpmd's, over RUNTIME s),
# the back end's CPU (cores) meanwhile, its CPU while both front ends stay
# attached with no traffic for IDLE s afterwards, and its resident memory.
run() {
	local side=$1 size=$2 c0 c1 t0 t1 i0 i1 ti0 ti1 rx tx rss b0 b1 fwd
	start_backend "$side" || { stop_all; return 1; }
	# Rings of $RING: a front end descheduled for a few ms (both share one
	# CPU) must not find its ring overflowed at once.
	tp_start rx "$LCPU" --vdev "net_virtio_user0,path=$WORK/p1.sock,queues=1,queue_size=$RING,mac=$MAC_RX" \
		-- -i --forward-mode=rxonly --rxd="$RING" --txd="$RING" --total-num-mbufs=16384
	tp_start tx "$LCPU" --vdev "net_virtio_user0,path=$WORK/p0.sock,queues=1,queue_size=$RING,mac=$MAC_TX" \
		-- -i --forward-mode=txonly --eth-peer="0,$MAC_RX" --txpkts="$((size - 4))" \
		--rxd="$RING" --txd="$RING" --total-num-mbufs=16384
	wait_linked || echo "net: $side: the front ends did not attach within 10 s" >&2
	tp_cmd rx start
	tp_cmd tx start
	sleep 2
	show_stats rx && show_stats tx || { stop_all; return 1; }
	if [ "$side" = siovd ]; then b0=$(be_count); else show_stats be all || { stop_all; return 1; }; fi
	c0=$(cpu_ticks "$TPID") t0=$(date +%s.%N)
	sleep "$RUNTIME"
	show_stats rx && show_stats tx || { stop_all; return 1; }
	if [ "$side" = siovd ]; then
		b1=$(be_count)
		fwd=$(python3 -c 'import sys; a, ta, b, tb = map(float, sys.argv[1].split() + sys.argv[2].split()); print((b - a) / (tb - ta))' "$b0" "$b1")
	else
		show_stats be all || { stop_all; return 1; }
		fwd=$(last_rate be Tx-pps: 1) # port 1's (the second port's block comes last)
	fi
	c1=$(cpu_ticks "$TPID") t1=$(date +%s.%N)
	rx=$(last_rate rx Rx-pps:) tx=$(last_rate tx Tx-pps:) rss=$(rss_kib "$TPID")
	tp_cmd tx stop
	tp_cmd rx stop
	sleep 1
	i0=$(cpu_ticks "$TPID") ti0=$(date +%s.%N)
	sleep "$IDLE"
	i1=$(cpu_ticks "$TPID") ti1=$(date +%s.%N)
	stop_all
	[ -n "$rx" ] && [ -n "$tx" ] && [ -n "$fwd" ] || return 1
	python3 -c 'import sys
fwd, rx, tx, c0, c1, t0, t1, i0, i1, ti0, ti1, hz, rss = map(float, sys.argv[1:])
print(fwd, rx, tx, (c1 - c0) / hz / (t1 - t0), (i1 - i0) / hz / (ti1 - ti0), rss)' \
		"$fwd" "$rx" "$tx" "$c0" "$c1" "$t0" "$t1" "$i0" "$i1" "$ti0" "$ti1" "$HZ" "$rss"
}

# port_memory N: siovd's resident memory per idle port (no front end), from
# the growth of its anonymous memory over N more ports on one network.
port_memory() {
	local n=$1 a0 a1 i
	mkdir -p "$WORK/state"
	"$SIOVD" --rpc-socket "$WORK/rpc.sock" --state-dir "$WORK/state" --engines 1 >"$WORK/target.log" 2>&1 &
	TPID=$!
	wait_sock "$WORK/rpc.sock" "$TPID" || return 1
	"$SIOVCTL" -s "$WORK/rpc.sock" network_create --name idle >/dev/null
	"$SIOVCTL" -s "$WORK/rpc.sock" vdev_create --name w --type net --network idle --socket "$WORK/w.sock" >/dev/null
	a0=$(awk '/^RssAnon/ {print $2}' "/proc/$TPID/status")
	for i in $(seq "$n"); do
		"$SIOVCTL" -s "$WORK/rpc.sock" vdev_create --name "i$i" --type net --network idle \
			--socket "$WORK/i$i.sock" >/dev/null || { stop_target; return 1; }
	done
	a1=$(awk '/^RssAnon/ {print $2}' "/proc/$TPID/status")
	stop_target
	echo $(((a1 - a0) / n))
}

IDLE=${NET_IDLE_SECONDS:-3}
RING=${NET_RING:-1024}

# ping_rtt SIDE: ping round trip from a network namespace (the kernel's ping)
# through a TAP, the back end, and a vhost-user port whose front end is a
# testpmd in icmpecho mode (it answers ARP and ICMP echo); prints "min avg"
# in microseconds.  siovd: a network with a TAP uplink and one port; DPDK:
# testpmd's net_tap and net_vhost io-forwarding on one lcore.  Both TAPs are
# moved into a namespace of this run's own.
ping_rtt() {
	local side=$1 ns=siovlat$$ tap=svl$$ out
	ip netns add "$ns" 2>/dev/null || return 1
	if [ "$side" = siovd ]; then
		mkdir -p "$WORK/state"
		taskset -c "$TCPU" "$SIOVD" --rpc-socket "$WORK/rpc.sock" --state-dir "$WORK/state" --engines 1 \
			>"$WORK/target.log" 2>&1 &
		TPID=$!
		wait_sock "$WORK/rpc.sock" "$TPID" &&
			"$SIOVCTL" -s "$WORK/rpc.sock" network_create --name lat --uplink "tap:$tap" >/dev/null &&
			"$SIOVCTL" -s "$WORK/rpc.sock" vdev_create --name p1 --type net --network lat \
				--mac "$MAC_RX" --socket "$WORK/p1.sock" >/dev/null || { ip netns del "$ns"; stop_all; return 1; }
	else
		tp_start be "$TCPU" --vdev "net_tap0,iface=$tap" --vdev "net_vhost0,iface=$WORK/p1.sock,queues=1" \
			-- -i --forward-mode=io --total-num-mbufs=16384
		TPID=${TP_PID[be]}
		tp_cmd be start
	fi
	wait_sock "$WORK/p1.sock" "$TPID" || { ip netns del "$ns"; stop_all; return 1; }
	tp_start rx "$LCPU" --vdev "net_virtio_user0,path=$WORK/p1.sock,queues=1,mac=$MAC_RX" \
		-- -i --forward-mode=icmpecho --total-num-mbufs=8192
	sleep 2
	tp_cmd rx start
	for _ in $(seq 100); do ip link show "$tap" >/dev/null 2>&1 && break; sleep 0.05; done
	if ip link set "$tap" netns "$ns" && ip netns exec "$ns" ip addr add 10.78.0.1/24 dev "$tap" &&
		ip netns exec "$ns" ip link set "$tap" up; then
		ip netns exec "$ns" ping -c 3 -W 2 10.78.0.2 >/dev/null 2>&1 || true # ARP, warm-up
		out=$(ip netns exec "$ns" ping -q -c "$PINGS" -i 0.05 -W 2 10.78.0.2 2>/dev/null | tail -n 1)
	fi
	ip netns del "$ns" 2>/dev/null || true
	stop_all
	# "rtt min/avg/max/mdev = 0.045/0.060/0.080/0.010 ms"
	[ -n "${out:-}" ] && awk -F'[ /]' '/min\/avg/ {printf "%.1f %.1f\n", $7 * 1000, $8 * 1000}' <<<"$out"
}
PINGS=${NET_PINGS:-100}
[ "$QUICK" = 1 ] && PINGS=${NET_PINGS:-20}
for round in $(seq "$ROUNDS"); do
	for size in $SIZES; do
		for side in siovd dpdk; do
			id=net.txrx.${size}b
			if ! out=$(run "$side" "$size") || [ -z "$out" ]; then
				$FIG add "$DIR" --id "$id.mpps_per_cpu_s" --side "$side" --value none
				continue
			fi
			read -r fwd pps txpps cpu idle rss <<<"$out"
			echo "net: round $round, $side, ${size} B: $(python3 -c "print('%.3f Mpps into the receive ring, %.3f Mpps received by the rxonly front end of %.3f sent, back end %.2f of a CPU, %.1f %% of a CPU idle, %d MiB' % ($fwd/1e6, $pps/1e6, $txpps/1e6, $cpu, $idle*100, $rss/1024))")" >&2
			$FIG add "$DIR" --id "$id.mpps_per_cpu_s" --side "$side" \
				--value "$(python3 -c "print($fwd / 1e6 / max($cpu, 0.01))")" \
				--label "$size B frames, port to port (into the receiver's ring): Mpps per back-end CPU-second" --unit "Mpps/CPU-s"
			$FIG add "$DIR" --id "$id.gbps_per_cpu_s" --side "$side" \
				--value "$(python3 -c "print($fwd * $size * 8 / 1e9 / max($cpu, 0.01))")" \
				--label "$size B frames, port to port: Gbit/s per back-end CPU-second" --unit "Gbit/s/CPU-s"
			$FIG add "$DIR" --id "$id.mpps" --side "$side" --value "$(python3 -c "print($fwd / 1e6)")" \
				--label "$size B frames, port to port: Mpps into the receiver's ring" --unit Mpps
			$FIG add "$DIR" --id "$id.gbps" --side "$side" --value "$(python3 -c "print($fwd * $size * 8 / 1e9)")" \
				--label "$size B frames, port to port: Gbit/s into the receiver's ring" --unit Gbit/s
			$FIG add "$DIR" --id "$id.rx_mpps" --side "$side" --value "$(python3 -c "print($pps / 1e6)")" \
				--label "$size B frames: Mpps the rxonly front end received" --unit Mpps
			$FIG add "$DIR" --id "$id.tx_mpps" --side "$side" --value "$(python3 -c "print($txpps / 1e6)")" \
				--label "$size B frames: Mpps the txonly front end sent" --unit Mpps
			$FIG add "$DIR" --id "$id.cpu" --side "$side" --value "$cpu" \
				--label "$size B frames: back-end CPU (cores busy)" --unit cores --better lower
			$FIG add "$DIR" --id "$id.idle_cpu" --side "$side" --value "$(python3 -c "print($idle * 100)")" \
				--label "back end with both front ends attached and no traffic ($IDLE s after the run)" \
				--unit "% of a CPU" --better lower
			$FIG add "$DIR" --id "$id.rss" --side "$side" --value "$(python3 -c "print($rss / 1024)")" \
				--label "back end's resident memory during the run (2 ports)" --unit MiB --better lower
		done
	done
done
for size in $SIZES; do
	id=net.txrx.${size}b
	$FIG ratio "$DIR" --id "$id.mpps_per_cpu_s" --of siovd --to dpdk --target 1
	$FIG ratio "$DIR" --id "$id.mpps" --of siovd --to dpdk
	$FIG ratio "$DIR" --id "$id.idle_cpu" --of siovd --to dpdk
done
if command -v ip >/dev/null && [ "$(id -u)" = 0 ]; then
	for round in $(seq "$ROUNDS"); do
		for side in siovd dpdk; do
			if ! rtt=$(ping_rtt "$side") || [ -z "$rtt" ]; then
				echo "net: round $round, $side: no ping round trip (namespace or TAP refused, or no answer)" >&2
				$FIG add "$DIR" --id net.ping.rtt_avg --side "$side" --value none
				continue
			fi
			read -r rmin ravg <<<"$rtt"
			echo "net: round $round, $side: ping round trip min $rmin us, avg $ravg us" >&2
			$FIG add "$DIR" --id net.ping.rtt_avg --side "$side" --value "$ravg" --unit us --better lower \
				--label "ping round trip, kernel (netns) -> TAP -> back end -> testpmd icmpecho on a vhost-user port and back: mean of $PINGS"
			$FIG add "$DIR" --id net.ping.rtt_min --side "$side" --value "$rmin" --unit us --better lower \
				--label "the same: minimum"
		done
	done
	$FIG ratio "$DIR" --id net.ping.rtt_avg --of siovd --to dpdk
else
	echo "net: ping round trip needs root and ip(8) (a namespace and a TAP): skipped" >&2
fi
NPORTS=${NET_IDLE_PORTS:-200}
if kib=$(port_memory "$NPORTS") && [ -n "$kib" ]; then
	$FIG add "$DIR" --id net.idle_port.rss --side siovd --value "$kib" \
		--label "siovd's anonymous memory per idle port (no front end; $NPORTS more ports)" --unit KiB --better lower
fi
$FIG note "$DIR" "Rates are testpmd's own (Rx-pps of the rxonly front end, Tx-pps of the txonly one, timed by testpmd between two 'show port stats'); CPU from /proc/PID/stat of the back end over the same interval. DPDK's back end polls its lcore whether or not frames flow; siovd's engine sleeps when its queues are idle (idle_cpu). Both front ends poll CPU $LCPU at 100 % and share it, so on a 2-CPU machine the front ends, not the back end, may set the rate: compare per back-end CPU-second."

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
