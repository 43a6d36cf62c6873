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

common='
up() { # ADDR: the NIC up with ADDR/24, waiting for the link
	local i=0
	while ! ip link show eth0 >/dev/null 2>&1; do
		i=$((i + 1)); [ $i -gt 200 ] && fail "no eth0"; sleep 0.05
	done
	ip addr add $1/24 dev eth0
	ip link set eth0 up
	ip link set lo up
}
'
guest_script b UPLINK="${#uplink[@]}" <<EOF
$common
up 10.9.0.2
# A background job reads /dev/null, and busybox nc ends at EOF on stdin: give it none.
sleep 600 | nc -l -p 5001 > /tmp/got &
i=0
until ping -c 1 -W 2 10.9.0.1 >/dev/null; do
	i=\$((i + 1)); [ \$i -gt 40 ] && fail "b cannot ping a"
done
say "b pinged a"
# busybox nc's end-of-stream rules differ by mode: count the bytes instead.
i=0
while [ "\$(wc -c < /tmp/got)" -lt 4194304 ]; do
	i=\$((i + 1)); [ \$i -gt 600 ] && fail "b got only \$(wc -c < /tmp/got) bytes"
	sleep 0.2
done
echo "SUM-B \$(sha256sum /tmp/got | cut -d' ' -f1) \$(wc -c < /tmp/got)"
# Tell a it may go on (its data is all here); a polls for the word.
echo done | nc -w 3 10.9.0.1 5002 &
sleep 3
EOF
guest_script a UPLINK="${#uplink[@]}" <<EOF
$common
up 10.9.0.1
i=0
until ping -c 1 -W 2 10.9.0.2 >/dev/null; do
	i=\$((i + 1)); [ \$i -gt 40 ] && fail "a cannot ping b"
done
say "a pinged b"
dd if=/dev/urandom of=/tmp/data bs=64k count=64 2>/dev/null
sleep 600 | nc -l -p 5002 > /tmp/ack &
echo "SUM-A \$(sha256sum /tmp/data | cut -d' ' -f1) \$(wc -c < /tmp/data)"
nc 10.9.0.2 5001 < /tmp/data &
i=0
until grep -q done /tmp/ack; do
	i=\$((i + 1)); [ \$i -gt 900 ] && fail "b never said it had the data"
	sleep 0.2
done
say "a sent its data and b has it"
if [ "\$UPLINK" != 0 ]; then
	echo "hello from a through the uplink" | nc -w 5 10.9.0.254 7000 || fail "a cannot reach the namespace"
	say "a reached the namespace"
fi
# Now as another MAC: the switch must drop everything.
ip link set eth0 down
ip link set eth0 address 52:54:00:5a:00:99
ip link set eth0 up
ping -c 3 -W 1 10.9.0.2 >/dev/null && fail "a got through with a spoofed MAC"
say "a spoofed and was dropped"
EOF
guest_script c <<EOF
$common
up 10.9.0.1
arping -c 3 -w 4 -I eth0 10.9.0.2 >/dev/null 2>&1 && fail "c got an ARP answer from n1"
ping -c 3 -W 2 10.9.0.2 >/dev/null 2>&1 && fail "c reached b on another network"
ping -c 2 -W 2 10.9.0.254 >/dev/null 2>&1 && fail "c reached n1's uplink"
say "c reached nobody"
EOF

guest_start b 420 b
pid_b=$GUEST_PID
guest_start a 420 a
pid_a=$GUEST_PID
guest_start c 420 c
pid_c=$GUEST_PID

GUEST_PID=$pid_c guest_wait c
GUEST_PID=$pid_a guest_wait a
GUEST_PID=$pid_b guest_wait b

sum_a=$(sed -n 's/^SUM-A //p' "$WORK/a.console" | tr -d '\r')
sum_b=$(sed -n 's/^SUM-B //p' "$WORK/b.console" | tr -d '\r')
[ -n "$sum_a" ] && [ "$sum_a" = "$sum_b" ] || die "transfer damaged: a sent '$sum_a', b got '$sum_b'"
[ "${sum_a##* }" = 4194304 ] || die "a sent ${sum_a##* } bytes, not 4 MiB"
log "4 MiB from a to b, sha256 ${sum_a%% *}"

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
