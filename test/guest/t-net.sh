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
#     (skipped with a message where namespaces or TAPs cannot be made).
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
trap 'rc=$?; cleanup_ns; (exit $rc); cleanup' EXIT

be_start
be_network n1 "${uplink[@]}"
be_network n2
be_nic a n1 52:54:00:5a:00:01
be_nic b n1 52:54:00:5a:00:02
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

net_scripts "${#uplink[@]}"

guest_start b 420 b
pid_b=$GUEST_PID
guest_start a 420 a
pid_a=$GUEST_PID
guest_start c 420 c
pid_c=$GUEST_PID

GUEST_PID=$pid_c guest_wait c
GUEST_PID=$pid_a guest_wait a
GUEST_PID=$pid_b guest_wait b

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

if [ -n "$ns_pid" ]; then
	timeout 10 tail --pid="$ns_pid" -f /dev/null || true
	grep -q "hello from a through the uplink" "$WORK/ns.recv" || die "the namespace's listener got nothing"
	log "the namespace's listener got a's message through the TAP uplink"
fi
be_alive
be_stop
