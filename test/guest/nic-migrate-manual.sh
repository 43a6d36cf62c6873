#!/bin/bash
# A manual check, not part of make check (it would add a TCG guest boot and a
# migration to both of make check's passes): a guest with a siov NIC
# live-migrates from one siovd to another while it pings a peer.  Each siovd
# (A, B) stands for a host: network n with a TAP uplink into a network
# namespace of its own that holds the peer 10.9.0.254 (the same MAC on both
# sides, as one peer reached from either host would be).  The guest pings
# the peer every 0.2 s and prints PING-OK/PING-FAIL; the script migrates it
# A -> B with QMP and prints what the destination guest saw afterwards and
# both ports' counters.  Run as root from the tree after `make`: 
#   test/guest/nic-migrate-manual.sh
# Measured 2026-12-02 (TCG, quiet machine): migration 15.0 s, downtime 204
# ms, 55 pings OK through A, then 36 OK through B, none lost.

set -u
TREE=$(cd "$(dirname "$0")/../.." && pwd); B=${BUILD:-$TREE/build}; KIT=$B/test/guest/guest-kit; W=$(mktemp -d /tmp/siov-nicmig.XXXXXX); cd $W
PIDS=()
trap 'for p in "${PIDS[@]}"; do kill $p 2>/dev/null; done; sleep 1; ip netns del nmA$$ 2>/dev/null; ip netns del nmB$$ 2>/dev/null; rm -rf "$W"' EXIT
for x in A B; do
  mkdir -p $W/$x/state
  $B/app/siovd/siovd --rpc-socket $W/$x/rpc.sock --state-dir $W/$x/state > $W/$x/siovd.log 2>&1 & PIDS+=($!)
  for _ in $(seq 200); do [ -S $W/$x/rpc.sock ] && break; sleep 0.02; done
  ctl() { $B/app/siovctl/siovctl -s $W/$x/rpc.sock "$@"; }
  ctl network_create --name n --uplink tap:nm$x$$ >/dev/null || exit 1
  ctl vdev_create --type net --name p --network n --mac 52:54:00:77:00:01 --socket $W/$x/p.sock >/dev/null || exit 1
  ip netns add nm$x$$; ip link set nm$x$$ netns nm$x$$
  ip netns exec nm$x$$ ip addr add 10.9.0.254/24 dev nm$x$$; ip netns exec nm$x$$ ip link set nm$x$$ address 02:00:00:00:00:fe; ip netns exec nm$x$$ ip link set nm$x$$ up
done
cat > $W/g.sh <<'G'
ip link set eth0 up; ip addr add 10.9.0.1/24 dev eth0; ip link set lo up
i=0
while [ $i -lt 400 ]; do
  if ping -c 1 -W 1 10.9.0.254 >/dev/null 2>&1; then echo "PING-OK $i"; else echo "PING-FAIL $i"; fi
  i=$((i + 1)); sleep 0.2
done
G
q() { # name sock [incoming]
  local args=(-accel tcg,thread=single -m 1G -smp 1 -object memory-backend-memfd,id=mem,size=1G,share=on -machine memory-backend=mem
    -kernel $KIT/vmlinux -initrd $KIT/initramfs.cpio -append "console=ttyS0 quiet panic=-1 no_timer_check"
    -fw_cfg name=opt/test,file=$W/g.sh -display none -nodefaults -no-user-config -monitor none -serial file:$W/$1.console
    -qmp unix:$W/$1.qmp,server=on,wait=off -no-reboot -net none
    -chardev socket,id=c0,path=$2,reconnect=1 -netdev vhost-user,id=n0,chardev=c0
    -device virtio-net-pci,netdev=n0,mac=52:54:00:77:00:01,vectors=0)
  [ -n "${3:-}" ] && args+=(-incoming unix:$W/$1.mig)
  qemu-system-x86_64 "${args[@]}" > $W/$1.qemu.log 2>&1 & PIDS+=($!)
}
q src $W/A/p.sock
for _ in $(seq 600); do grep -q "PING-OK" $W/src.console 2>/dev/null && break; sleep 0.2; done
grep -q PING-OK $W/src.console || { echo "no ping via A"; tail $W/src.console; exit 1; }
echo "pinging through A: $(grep -c PING-OK src.console) ok"
q dst $W/B/p.sock incoming
for _ in $(seq 100); do [ -S $W/dst.mig ] && break; sleep 0.1; done
Q=$TREE/test/guest/qmp.py
python3 $Q $W/src.qmp migrate '{"uri":"unix:'$W'/dst.mig"}' >/dev/null
python3 $Q $W/src.qmp wait-migrate 120
n0=$(wc -l < dst.console)
sleep 8
echo "after migration, dst console new lines:"; tail -n +$((n0+1)) dst.console | sort | uniq -c | sort -rn | head -3
tail -n 12 dst.console | tr '\n' ' '; echo
for x in A B; do echo "$x: $($B/app/siovctl/siovctl -s $W/$x/rpc.sock vdev_stats --name p | jq -c '.[0] | {net, q: [.queues[]? | {index,state}]}')"; ip netns exec nm$x$$ ip -s link show nm$x$$ | tr '\n' ' '; echo; done
