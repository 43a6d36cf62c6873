#!/bin/bash
# Virtual NICs (issue 11): three Linux guests with stock virtio-net drivers on
# siovd's switch.  a and b share network n1; c is alone on n2 with an address
# of the same subnet.  Checked, from inside the guests and from vdev_stats:
#   - a and b ping each other both ways;
#   - a sends b 4 MiB over TCP (busybox nc); both sides' sha256 must agree;
#   - c can reach neither: its pings and ARP requests get no answer, and n1's
#     ports never receive a frame from c's MAC (their rx counts stay put);
#   - a guest that changes its MAC and sends is dropped and counted (spoofed);
#   - a reaches a listener in a network namespace through n1's TAP uplink
#     (skipped with a message where namespaces or TAPs cannot be made);
#   - TSO: b's NIC does not take TSO (guest_tso4/6=off) while a's sends it, so
#     siovd cuts a's large TCP frames into segments for b in software: b
#     receives several times the frames a sent, and the data is intact;
#   - restarts (the same guests go on): a streams 2 MiB to b and siovd is
#     SIGKILLed in the middle and started again on its state dir; both
#     guests see their carrier go and come back (QEMU, reconnect=1), the
#     ports come back with their MAC, network, queues and QoS, the stream
#     completes intact, and a second 2 MiB started afterwards does too; then
#     siovd is stopped with SIGTERM and started again (an upgrade) and the
#     guests ping each other once their links are back;
#   - MQ: a's port has two queue pairs (QEMU queues=2, mq=on); the guest
#     driver uses both: pings sent from a's second CPU leave through
#     transmit queue 1, the TCP transfer mostly through queue 0 (vdev_stats
#     per queue), and sixteen TCP flows from b spread over a's two receive
#     queues (net.rx_queues).
source "$(dirname "$0")/lib.sh"
source "$(dirname "$0")/net-lib.sh"
setup "$@"
[ "$BACKEND" = siovd ] || skip "virtual NICs are siovd's"

NS=siovns$$
TAP=sv$$
uplink=()
if command -v ip >/dev/null && ip netns add "$NS" 2>/dev/null; then
	uplink=(--uplink "tap:$TAP")
fi
cleanup_ns() { [ ${#uplink[@]} = 0 ] || ip netns del "$NS" 2>/dev/null || true; }
# set +e first: under set -e the "(exit $rc)" that hands cleanup the status
# would end the trap itself, and cleanup (stopping QEMU and siovd) never ran.
trap 'rc=$?; set +e; cleanup_ns; (exit $rc); cleanup' EXIT

be_start
be_network n1 "${uplink[@]}"
be_network n2
be_nic a n1 52:54:00:5a:00:01 --queues 2 --weight 300
VDEV_DEVOPTS[b]=,guest_tso4=off,guest_tso6=off
be_nic b n1 52:54:00:5a:00:02 --bps-limit 1G
be_nic c n2 52:54:00:5a:00:03
be_ready

ns_pid=
if [ ${#uplink[@]} != 0 ]; then
	ip link set "$TAP" netns "$NS" || die "cannot move $TAP into $NS"
	ip netns exec "$NS" ip addr add 10.9.0.254/24 dev "$TAP"
	ip netns exec "$NS" ip link set "$TAP" up
	ip netns exec "$NS" ip link set lo up
	ip netns exec "$NS" busybox nc -l -p 7000 >"$WORK/ns.recv" 2>/dev/null &
	ns_pid=$!
	PIDS+=("$ns_pid")
else
	log "no network namespace here: the uplink part is skipped"
fi

net_scripts "${#uplink[@]}" 1
# QEMU must reattach to the restarted siovd (-chardev ...,reconnect=1).
GUEST_RECONNECT=1

guest_start b 420 b
pid_b=$GUEST_PID
guest_start a 420 a
pid_a=$GUEST_PID
guest_start c 420 c
pid_c=$GUEST_PID

GUEST_PID=$pid_c guest_wait c
GUEST_PID=$pid_a guest_wait_marker a "a spoofed and was dropped" 300
GUEST_PID=$pid_b guest_wait_marker b "^SUM-B " 300

net_check_transfer

spoofed=$(vstat a '.net.tx_drops.spoofed')
[ "$spoofed" -ge 3 ] || die "a's spoofed frames: $spoofed dropped, want >= 3"
for v in a b; do
	rx=$(vstat $v '.net.rx_packets')
	[ "$rx" -gt 0 ] || die "$v received nothing"
done
# c's broadcasts (ARP) stayed on n2: nobody there to take them.
[ "$(vstat c '.net.rx_packets')" = 0 ] || die "c received frames though alone on n2"
[ "$(vstat c '.net.tx_packets')" -gt 0 ] || die "c sent nothing"
log "a: $(stats a | jq -c .net)"
log "b: $(stats b | jq -c .net)"
log "c: $(stats c | jq -c .net)"
# b's driver took no TSO: siovd segmented a's large frames for it.
a_tx=$(vstat a '.net.tx_packets')
b_rx=$(vstat b '.net.rx_packets')
[ "$b_rx" -ge $((4194304 / 1500)) ] || die "b received $b_rx frames for 4 MiB: not MSS-sized"
[ $((a_tx * 2)) -lt "$b_rx" ] || die "a sent $a_tx frames, b received $b_rx: a's TSO frames were not segmented (or a sent no TSO)"
log "TSO: a sent $a_tx frames, siovd delivered $b_rx segments to b (no TSO there)"

if [ -n "$ns_pid" ]; then
	timeout 10 tail --pid="$ns_pid" -f /dev/null || true
	grep -q "hello from a through the uplink" "$WORK/ns.recv" || die "the namespace's listener got nothing"
	log "the namespace's listener got a's message through the TAP uplink"
fi

# ports_conf: what a restart must keep of every port (vdev_list minus state).
ports_conf() {
	ctl vdev_list | jq -cS '[.[] | del(.state, .connected)] | sort_by(.name)'
}
# wait_connected SECONDS VDEV...: QEMU reattached to each.
wait_connected() {
	local secs=$1 i=0 v
	shift
	for v in "$@"; do
		until [ "$(ctl vdev_list | jq -r --arg v "$v" '.[] | select(.name == $v) | .connected')" = true ]; do
			i=$((i + 1))
			[ $i -le $((secs * 10)) ] || die "QEMU did not reattach $v within $secs s"
			sleep 0.1
		done
	done
}
# carrier_cycles NAME: how often the guest saw its link come back.
carrier_cycles() { grep -c '^guest: carrier 1' "$WORK/$1.console" || true; }

conf=$(ports_conf)
rx0=$(vstat b '.net.rx_bytes')
GUEST_PID=$pid_a guest_wait_marker a "a streams to b" 120
# The stream takes 6.4 s at least: kill 2 s into it, once it flows.
sleep 2
deadline=$((SECONDS + 30))
while [ $(($(vstat b '.net.rx_bytes') - rx0)) -lt $((128 * 1024)) ]; do
	[ $SECONDS -le $deadline ] || die "a's stream to b does not flow: a's queues $(stats a | jq -c '[.queues[] | {index, requests}]'), b $(stats b | jq -c .net)"
	sleep 0.1
done
got=$(($(vstat b '.net.rx_bytes') - rx0))
! grep -q '^SUM-B2' "$WORK/b.console" || die "the stream ended before the kill: nothing was in flight"
siovd_kill
forget_pid "$BE_PID"
t_kill=$(date +%s.%N)
log "siovd killed with SIGKILL while a streamed to b (b had $got bytes of 2 MiB)"
siovd_restart || die "siovd did not start again after SIGKILL"
BE_PID=$SIOVD_PID
PIDS+=("$BE_PID")
[ "$(ports_conf)" = "$conf" ] || die "the ports changed over the restart: $conf -> $(ports_conf)"
wait_connected 30 a b
log "siovd restarted on its state dir; QEMU reattached a and b $(awk -v a="$t_kill" -v b="$(date +%s.%N)" 'BEGIN{printf "%.1f", b-a}') s after the kill; ports kept MAC, network, queues, QoS"
GUEST_PID=$pid_b guest_wait_marker b "^SUM-B3 " 300
net_check_transfer 2 2097152
net_check_transfer 3 2097152
[ "$(carrier_cycles a)" -ge 1 ] && [ "$(carrier_cycles b)" -ge 1 ] ||
	die "a guest did not see its link come back after the kill"
# MQ: the guest has two queue pairs; its pings from CPU 1 (100 x 1400 bytes) left through transmit queue 1.
grep -q 'queues: rx-0 rx-1 tx-0 tx-1' "$WORK/a.console" || die "a's driver did not set up two queue pairs: $(grep -m1 'queues:' "$WORK/a.console")"
q1=$(vstat a '[.queues[] | select(.index == 1) | .bytes_written] | add // 0')
q3=$(vstat a '[.queues[] | select(.index == 3) | .bytes_written] | add // 0')
log "MQ: a sent $q1 bytes on transmit queue 0 and $q3 on transmit queue 1 since the restart"
[ "$q3" -ge 140000 ] || die "transmit queue 1 of a carried only $q3 bytes: not the pings from CPU 1"
[ "$q1" -ge 140000 ] || die "transmit queue 0 of a carried only $q1 bytes"
[ $((q1 + q3)) -ge 2097152 ] || die "a's transmit queues carried $((q1 + q3)) bytes after the restart, less than the 2 MiB transfer"
# MQ receive: b's sixteen TCP flows to a (and the streams' ACKs) spread over a's two receive queues.
r0=$(vstat a '.net.rx_queues[] | select(.index == 0) | .packets')
r2=$(vstat a '.net.rx_queues[] | select(.index == 2) | .packets')
log "MQ: a received $r0 packets on receive queue 0 and $r2 on receive queue 1 since the restart"
[ "$r0" -gt 0 ] && [ "$r2" -gt 0 ] || die "a's flows did not spread over both receive queues ($r0, $r2)"
[ "$(vstat a '[.net.rx_queues[] | .running] | all')" = true ] || die "a's receive queues are not both running"

conf=$(ports_conf)
be_restart
[ "$(ports_conf)" = "$conf" ] || die "the ports changed over the SIGTERM restart"
log "siovd stopped with SIGTERM and started again (an upgrade)"
GUEST_PID=$pid_a guest_wait a
GUEST_PID=$pid_b guest_wait b
[ "$(carrier_cycles a)" -ge 2 ] && [ "$(carrier_cycles b)" -ge 2 ] ||
	die "a guest did not see its link come back after the upgrade"
log "ping a -> b after the restarts: $(sed -n 's/^PING-RTT //p' "$WORK/a.console" | tr -d '\r')"
be_alive
be_stop
