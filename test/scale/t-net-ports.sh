#!/bin/bash
# Many ports on one network (issue 11): N net VDEVs created on one network in
# JSON-RPC batches, listed, counted by network_list, idle (siovd's CPU over 3 s
# must stay ~0: ports cost nothing until a front end sends), deleted again in
# batches, and the network deleted once it is empty (refused before).  Also
# measures what an idle port costs in memory.
#   t-net-ports.sh SIOVD SIOVCTL [N]
set -euo pipefail
SIOVD=$1 SIOVCTL=$2 N=${3:-2000}
command -v python3 >/dev/null || { echo "SKIP: python3 missing" >&2; exit 77; }
WORK=$(mktemp -d /tmp/siov-netports.XXXXXX)
PID=
cleanup() {
	[ -z "$PID" ] || { kill "$PID" 2>/dev/null; wait "$PID" 2>/dev/null || true; }
	rm -rf "$WORK"
}
trap cleanup EXIT
die() { echo "FAIL: t-net-ports: $*" >&2; [ -f "$WORK/log" ] && tail -20 "$WORK/log" >&2; exit 1; }

"$SIOVD" --rpc-socket "$WORK/rpc.sock" --state-dir "$WORK" --engines 1 2>"$WORK/log" &
PID=$!
for _ in $(seq 200); do [ -S "$WORK/rpc.sock" ] && break; sleep 0.05; done
ctl() { "$SIOVCTL" -s "$WORK/rpc.sock" "$@"; }
ctl network_create --name many >/dev/null || die "network_create"

# batch METHOD FIRST COUNT: one JSON-RPC batch of COUNT calls; fails on any error.
batch() {
	python3 - "$WORK/rpc.sock" "$1" "$2" "$3" "$WORK" <<'PY'
import json, socket, sys
path, method, first, count, work = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), sys.argv[5]
calls = []
for i in range(first, first + count):
    p = {"name": "p%d" % i}
    if method == "vdev_create":
        p.update(type="net", network="many", socket="%s/p%d.sock" % (work, i),
                 mac="52:54:%02x:%02x:%02x:%02x" % (i >> 24 & 255, i >> 16 & 255, i >> 8 & 255, i & 255))
    calls.append({"jsonrpc": "2.0", "id": i, "method": method, "params": p})
s = socket.socket(socket.AF_UNIX)
s.connect(path)
s.sendall(json.dumps(calls).encode() + b"\n")
buf = b""
while not buf.endswith(b"\n"):
    chunk = s.recv(1 << 20)
    if not chunk:
        break
    buf += chunk
answers = json.loads(buf)
bad = [a for a in answers if "error" in a]
if len(answers) != count or bad:
    sys.exit("%s: %d answers, %d errors, first: %s" % (method, len(answers), len(bad), bad[:1]))
PY
}

t0=$(date +%s.%N)
for first in $(seq 0 500 $((N - 1))); do
	batch vdev_create "$first" $((N - first < 500 ? N - first : 500)) || die "creating ports"
done
t1=$(date +%s.%N)
ports=$(ctl network_list | python3 -c 'import json,sys; print(json.load(sys.stdin)[0]["ports"])')
[ "$ports" = "$N" ] || die "network_list says $ports ports, want $N"
ctl network_delete --name many >/dev/null 2>&1 && die "a network with ports was deleted"

rss() { awk '/^VmRSS/{print $2}' "/proc/$PID/status"; }
ticks() { awk '{print $14 + $15}' "/proc/$PID/stat"; }
c0=$(ticks)
sleep 3
c1=$(ticks)
idle=$((c1 - c0))
# A tick is 10 ms: 3 s of idle may show a tick or two of the control loop's timers.
[ "$idle" -le 3 ] || die "siovd used $idle ticks in 3 s with $N idle ports"
echo "t-net-ports: $N ports created in $(python3 -c "print('%.2f' % ($t1 - $t0))") s, idle CPU $idle ticks/3 s, RSS $(rss) KiB" >&2

for first in $(seq 0 500 $((N - 1))); do
	batch vdev_delete "$first" $((N - first < 500 ? N - first : 500)) || die "deleting ports"
done
ports=$(ctl network_list | python3 -c 'import json,sys; print(json.load(sys.stdin)[0]["ports"])')
[ "$ports" = 0 ] || die "$ports ports left after deleting them all"
ctl network_delete --name many >/dev/null || die "network_delete of the empty network"
kill "$PID"
wait "$PID" || die "siovd exited with $? after SIGTERM"
PID=
echo "t-net-ports: PASS" >&2
