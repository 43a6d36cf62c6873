# The three guests of the network test and the demo (sourced after lib.sh):
# a and b share a network, c is on another with an address of the same
# subnet.  net_scripts UPLINK [RESTART] writes their scripts: ping both ways,
# 4 MiB from a to b over TCP with sha256 on both sides, c reaching nobody (ARP
# and IP), a sending as another MAC; with UPLINK=1 a also talks to
# 10.9.0.254:7000.  With RESTART=1 a and b go on through two restarts of
# siovd that the host makes (t-net.sh): a takes its own MAC back and streams
# 2 MiB to b (the host SIGKILLs siovd in the middle), and once its link is
# back sends 2 MiB more and pings b from CPU 1; after the second restart
# (SIGTERM, an upgrade) they ping each other.  Both watch their carrier and
# print each change ("carrier 0", "carrier 1").
# net_check_transfer [N [BYTES]] compares the two sums of transfer N (default
# the first, 4 MiB).
net_scripts() {
local UPLINK=$1 RESTART=${2:-0}
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
# carrier_watch: notes every change of the carrier of eth0 in /tmp/carrier and on the console.
carrier_watch() {
	: > /tmp/carrier
	( last=$(cat /sys/class/net/eth0/carrier 2>/dev/null || echo x)
	  while :; do
		c=$(cat /sys/class/net/eth0/carrier 2>/dev/null || echo x)
		if [ "$c" != "$last" ]; then
			echo $c >> /tmp/carrier; say "carrier $c"; last=$c
		fi
		sleep 0.05
	  done ) &
}
# carrier_wait N SECONDS WHAT: until the link came back up for the Nth time.
carrier_wait() {
	local i=0
	until [ "$(grep -c "^1" /tmp/carrier)" -ge $1 ]; do
		i=$((i + 1)); [ $i -gt $(($2 * 10)) ] && fail "no carrier again within $2 s of $3"
		sleep 0.1
	done
	return 0
}
# ping_until ADDR TRIES WHAT
ping_until() {
	local i=0
	until ping -c 1 -W 2 $1 >/dev/null; do
		i=$((i + 1)); [ $i -gt $2 ] && fail "cannot ping $1 $3"
	done
	return 0
}
# wait_done FILE SECONDS WHAT: until the peer wrote "done" into FILE (an nc listener).
wait_done() {
	local i=0
	until grep -q done $1; do
		i=$((i + 1)); [ $i -gt $(($2 * 5)) ] && fail "no word from the peer within $2 s: $3"
		sleep 0.2
	done
	return 0
}
# wait_bytes FILE BYTES SECONDS
wait_bytes() {
	local i=0
	while [ "$(wc -c < $1)" -lt $2 ]; do
		i=$((i + 1)); [ $i -gt $(($3 * 5)) ] && fail "$1: only $(wc -c < $1) of $2 bytes within $3 s"
		sleep 0.2
	done
	return 0
}
'
guest_script b UPLINK="$UPLINK" RESTART="$RESTART" <<EOF
$common
up 10.9.0.2
# A background job reads /dev/null, and busybox nc ends at EOF on stdin: give it none.
sleep 600 | nc -l -p 5001 > /tmp/got &
if [ "\$RESTART" = 1 ]; then
	sleep 600 | nc -l -p 5003 > /tmp/got2 &
	sleep 600 | nc -l -p 5004 > /tmp/got3 &
fi
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
[ "\$RESTART" = 1 ] || exit 0
carrier_watch
# The host kills siovd while this stream runs; TCP carries it over the gap.
wait_bytes /tmp/got2 2097152 240
echo "SUM-B2 \$(sha256sum /tmp/got2 | cut -d' ' -f1) \$(wc -c < /tmp/got2)"
carrier_wait 1 30 "the kill"
wait_bytes /tmp/got3 2097152 240
# Sixteen TCP flows to a (SYNs to closed ports, answered by RST): a's receive queues share them.
for p in 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16; do
	nc -w 1 10.9.0.1 \$((6100 + p)) </dev/null >/dev/null 2>&1 || true # refused: expected
done
echo "SUM-B3 \$(sha256sum /tmp/got3 | cut -d' ' -f1) \$(wc -c < /tmp/got3)"
echo done | nc -w 3 10.9.0.1 5005 &
sleep 1
# The host now stops siovd with SIGTERM and starts it again (an upgrade).
carrier_wait 2 120 "the upgrade"
ping_until 10.9.0.1 30 "after the upgrade"
say "b pinged a after the upgrade"
echo done | nc -w 3 10.9.0.1 5006 &
sleep 3
EOF
guest_script a UPLINK="$UPLINK" RESTART="$RESTART" MAC="${VDEV_MAC[a]}" <<EOF
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
wait_done /tmp/ack 180 "b never said it had the data"
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
[ "\$RESTART" = 1 ] || exit 0
ip link set eth0 down
ip link set eth0 address \$MAC
ip link set eth0 up
i=0
until [ "\$(cat /sys/class/net/eth0/carrier 2>/dev/null)" = 1 ]; do
	i=\$((i + 1)); [ \$i -gt 100 ] && fail "a has no carrier on its own MAC"
	sleep 0.05
done
ping_until 10.9.0.2 20 "on a's own MAC again"
say "a is back on its own MAC; queues: \$(ls /sys/class/net/eth0/queues | tr '\\n' ' ')"
carrier_watch
dd if=/dev/urandom of=/tmp/data2 bs=64k count=32 2>/dev/null
dd if=/dev/urandom of=/tmp/data3 bs=64k count=32 2>/dev/null
echo "SUM-A2 \$(sha256sum /tmp/data2 | cut -d' ' -f1) \$(wc -c < /tmp/data2)"
echo "SUM-A3 \$(sha256sum /tmp/data3 | cut -d' ' -f1) \$(wc -c < /tmp/data3)"
sleep 600 | nc -l -p 5005 > /tmp/ack3 &
sleep 600 | nc -l -p 5006 > /tmp/ack4 &
# Paced (32 KiB every 0.1 s: 6.4 s at least), so that the host's kill lands
# in the middle of it whatever the speed of the machine.
for k in \$(seq 0 63); do
	dd if=/tmp/data2 bs=32k skip=\$k count=1 2>/dev/null; sleep 0.1
done | nc 10.9.0.2 5003 &
say "a streams to b"
carrier_wait 1 120 "the kill"
ping_until 10.9.0.2 30 "after the kill"
say "a pinged b after the kill"
# Started after the restart.
nc 10.9.0.2 5004 < /tmp/data3 &
# From CPU 1, so through transmit queue 1 (the driver maps CPU i to queue pair
# i; TCP mostly follows the CPU that takes the interrupts, CPU 0).
taskset 2 ping -q -c 100 -i 0.02 -s 1400 10.9.0.2 >/dev/null || fail "a lost pings sent from CPU 1"
say "a pinged b 100 times from CPU 1"
wait_done /tmp/ack3 240 "b never said it had the second transfer"
carrier_wait 2 120 "the upgrade"
ping_until 10.9.0.2 30 "after the upgrade"
echo "PING-RTT \$(ping -c 10 -i 0.2 10.9.0.2 | tail -n 1)"
wait_done /tmp/ack4 60 "b never pinged a after the upgrade"
say "a pinged b after the upgrade"
EOF
guest_script c <<EOF
$common
up 10.9.0.1
arping -c 3 -w 4 -I eth0 10.9.0.2 >/dev/null 2>&1 && fail "c got an ARP answer from n1"
ping -c 3 -W 2 10.9.0.2 >/dev/null 2>&1 && fail "c reached b on another network"
ping -c 2 -W 2 10.9.0.254 >/dev/null 2>&1 && fail "c reached n1's uplink"
say "c reached nobody"
EOF

}

net_check_transfer() {
local n=${1:-} want=${2:-4194304}
sum_a=$(sed -n "s/^SUM-A$n //p" "$WORK/a.console" | tr -d '\r')
sum_b=$(sed -n "s/^SUM-B$n //p" "$WORK/b.console" | tr -d '\r')
[ -n "$sum_a" ] && [ "$sum_a" = "$sum_b" ] || die "transfer ${n:-1} damaged: a sent '$sum_a', b got '$sum_b'"
[ "${sum_a##* }" = "$want" ] || die "a sent ${sum_a##* } bytes, not $want"
log "$want bytes from a to b (transfer ${n:-1}), sha256 ${sum_a%% *}"
}
