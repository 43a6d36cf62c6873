#!/bin/sh
# siovctl end to end against fake_server (the RPC server on the fake VDCM):
# argument conversion, pretty output, error messages and exit statuses.
# usage: test_siovctl.sh SIOVCTL FAKE_SERVER
set -u
SIOVCTL=$1
SERVER=$2
DIR=$(mktemp -d /tmp/siovctl-test.XXXXXX)
SOCK=$DIR/rpc.sock
fails=0

cleanup() {
	[ -n "${PID:-}" ] && kill "$PID" 2>/dev/null && wait "$PID" 2>/dev/null
	rm -rf "$DIR"
}
trap cleanup EXIT

fail() {
	echo "FAIL: $*"
	fails=$((fails + 1))
}

# expect STATUS PATTERN(stdout+stderr, grep -E) -- siovctl args...
expect() {
	status=$1 pattern=$2
	shift 3
	out=$("$SIOVCTL" "$@" 2>&1)
	rc=$?
	[ "$rc" -eq "$status" ] || fail "siovctl $*: exit $rc, wanted $status: $out"
	printf '%s' "$out" | grep -Eq -- "$pattern" || fail "siovctl $*: '$pattern' not in: $out"
}

"$SERVER" "$SOCK" "$DIR" 2>"$DIR/server.log" &
PID=$!
for i in $(seq 50); do [ -S "$SOCK" ] && break; sleep 0.1; done
[ -S "$SOCK" ] || { echo "fake_server did not start"; cat "$DIR/server.log"; exit 1; }

export SIOV_RPC_SOCKET=$SOCK
expect 0 'vdev_create' -- -h
# -h lists every method of the server's own table, with its parameters.
"$SIOVCTL" -h >"$DIR/help.txt" 2>&1
"$SIOVCTL" rpc_get_methods >"$DIR/methods.json" 2>&1 || fail "rpc_get_methods failed"
for m in $(grep -o '"name": "[a-z_]*",$' "$DIR/methods.json" | sed 's/.*: "\(.*\)",/\1/' | sort -u); do
	grep -q -e "$m" -e "--$(echo "$m" | tr _ -) " "$DIR/help.txt" || fail "siovctl -h does not show '$m'"
done
for m in group_set_qos vdev_set_qos group_create rpc_get_methods; do
	grep -q "^  $m  -  " "$DIR/help.txt" || fail "siovctl -h does not list method $m"
done
grep -q -- '--iops-limit integer' "$DIR/help.txt" || fail "siovctl -h does not list QoS parameters"
grep -q -- '--socket path  *(required)' "$DIR/help.txt" || fail "siovctl -h does not mark required parameters"
expect 0 '"backends": 0' -- daemon_info
expect 0 '^true$' -- backend_create --name b0 --type ram --size 1G
expect 1 '^siovctl: error -17: backend .b0. already exists$' -- backend_create --name b0 --type ram --size 1G
expect 0 'true' -- backend_create --name 007 --type null --size=4096 --readonly
expect 0 '"readonly": true' -- backend_list
expect 0 'true' -- vdev_create --name vm1 --backend b0 --size 512M --queues 2 --socket /tmp/vm1.sock
expect 0 'true' -- vdev_create --name vm2 --backend b0 --offset 512M --allow-overlap --socket /tmp/vm2.sock
expect 0 '"queues": 2' -- vdev_list --name vm1
expect 0 '"latency_us_mean"' -- vdev_stats
expect 1 "unknown parameter 'sise'" -- backend_create --name b1 --type ram --sise 1G
expect 1 "error -32602: parameter 'queues' must be an integer" -- vdev_create --name v --backend b0 --socket /s --queues many
expect 1 "error -32601: unknown method 'nope'" -- nope
expect 1 "parameter 'readonly' must be a boolean" -- backend_create --name b2 --type ram --size 1M --readonly yes
expect 2 'given twice' -- backend_create --name a --name b
expect 2 'expected a --parameter' -- backend_create name
expect 2 'no METHOD' --
cat "$DIR"/siovd.json "$DIR"/siovd.journal.* 2>/dev/null | grep -q '"vm2"' || fail "state not saved"
# top in batch mode: two frames, the VDEVs of the server, one per row.
out=$("$SIOVCTL" top -b -i 2 -d 0.2 2>&1) || fail "siovctl top failed: $out"
[ "$(printf '%s\n' "$out" | grep -c '^siovctl top - 2 VDEVs')" -eq 2 ] || fail "siovctl top: not 2 frames: $out"
[ "$(printf '%s\n' "$out" | grep -c '^vm[12] ')" -eq 4 ] || fail "siovctl top: not vm1, vm2 in each frame: $out"
expect 2 'usage: siovctl top' -- top -o nonsense
expect 0 'start it, or give -s' -- -s /nonexistent/x.sock -h
expect 2 'cannot connect to /nonexistent/x.sock' -- -s /nonexistent/x.sock daemon_info
expect 2 'limited to 107 bytes' -- -s "/$(printf 'x%.0s' $(seq 120))" daemon_info

[ "$fails" -eq 0 ] && echo "siovctl: all checks passed"
exit "$fails"
