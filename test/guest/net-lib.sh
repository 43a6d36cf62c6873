# The three guests of the network test and the demo (sourced after lib.sh):
# a and b share a network, c is on another with an address of the same
# subnet.  net_scripts UPLINK writes their scripts: ping both ways, 4 MiB from
# a to b over TCP with sha256 on both sides, c reaching nobody (ARP and IP), a
# sending as another MAC; with UPLINK=1 a also talks to 10.9.0.254:7000.
# net_check_transfer compares the two sums.

# (The bodies are not indented: they are here-documents.)
net_scripts() {
local UPLINK=$1
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
guest_script b UPLINK="$UPLINK" <<EOF
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
guest_script a UPLINK="$UPLINK" <<EOF
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

}

net_check_transfer() {
sum_a=$(sed -n 's/^SUM-A //p' "$WORK/a.console" | tr -d '\r')
sum_b=$(sed -n 's/^SUM-B //p' "$WORK/b.console" | tr -d '\r')
[ -n "$sum_a" ] && [ "$sum_a" = "$sum_b" ] || die "transfer damaged: a sent '$sum_a', b got '$sum_b'"
[ "${sum_a##* }" = 4194304 ] || die "a sent ${sum_a##* } bytes, not 4 MiB"
log "4 MiB from a to b, sha256 ${sum_a%% *}"
}
