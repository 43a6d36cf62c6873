#!/bin/bash
# Rebalancing: two busy queues that share one engine end up on different
# engines while verified I/O runs through the move, with no error.
set -euo pipefail
SIOVD=$1 SIOVCTL=$2 BENCH=$3
command -v jq >/dev/null || { echo "SKIP: jq not installed"; exit 77; }
[ "$(nproc)" -ge 2 ] || { echo "SKIP: needs 2 CPUs for 2 engines"; exit 77; }
. "$(dirname "$0")/../lib/siovd.sh"
WORK=$(mktemp -d /tmp/siov-balance.XXXXXX)
PIDS=()
cleanup() { for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; rm -rf "$WORK"; }
trap cleanup EXIT
fail() { echo "FAIL: $*"; grep -E "engines|error|warn" "$WORK/siovd.log" | tail -5; echo "0 passed, 1 failed"; exit 1; }

# test/lib/siovd.sh: started in $WORK, ready once it answers daemon_info.
SIOVD_DIR=$WORK
siovd_start balance --engines 2 || fail "siovd did not start"
PIDS+=("$SIOVD_PID")
ctl() { siovd_ctl "$@"; }
ctl backend_create --name b0 --type ram --size 256M >/dev/null
for i in 0 1 2 3; do
	ctl vdev_create --name v$i --backend b0 --offset $((i * 64))M --size 64M \
		--socket "$WORK/v$i.sock" >/dev/null
done
# Placement picks the engine with the fewest queues, so steer two busy queues
# onto one engine: v1 -> e0, v2 -> e1, v0 -> e0; v1 leaves; v3 -> e0 (a tie).
client() { # vdev runtime iodepth [--irq: a light client that sleeps between requests]
	"$BENCH" --socket "$WORK/$1.sock" --rw randrw --bs 4k --iodepth "$3" --runtime "$2" \
		--verify --json ${4:-} >"$WORK/$1.json" 2>"$WORK/$1.err" &
	PIDS+=($!)
}
attached() { ctl vdev_stats --name "$1" | jq -e '.[0].queues[0].engine >= 0' >/dev/null; }
wait_attached() { for _ in $(seq 100); do attached "$1" && return 0; sleep 0.05; done; fail "$1 never attached"; }
client v1 30 1 --irq; wait_attached v1
client v2 30 1 --irq; wait_attached v2
client v0 9 16; wait_attached v0
kill "${PIDS[1]}"; wait "${PIDS[1]}" 2>/dev/null || true
for _ in $(seq 100); do attached v1 || break; sleep 0.05; done
client v3 8 16; wait_attached v3
engine() { ctl vdev_stats --name "$1" | jq '.[0].queues[0].engine'; }
[ "$(engine v0)" = "$(engine v3)" ] || fail "could not put v0 and v3 on one engine"
echo "v0 and v3 share engine $(engine v0), v2 is on $(engine v2); loading v0 and v3"
spread=""
for _ in $(seq 60); do
	a=$(engine v0) b=$(engine v3)
	if [ "$a" -ge 0 ] && [ "$b" -ge 0 ] && [ "$a" != "$b" ]; then spread=yes; break; fi
	sleep 0.1
done
[ -n "$spread" ] || fail "v0 and v3 still share an engine after 6 s of load"
wait "${PIDS[3]}" "${PIDS[4]}" || true
for v in v0 v3; do
	jq -e '.errors == 0' "$WORK/$v.json" >/dev/null 2>&1 ||
		fail "$v: verified I/O across the move failed: $(tail -3 "$WORK/$v.err")"
done
grep -q "moved vdev" "$WORK/siovd.log" || fail "no queue was moved: $(cat "$WORK/siovd.log" | tail -3)"
echo "$(grep -m1 'moved vdev' "$WORK/siovd.log" | sed 's/.*info: //')"
siovd_stop || fail "siovd did not stop cleanly on SIGTERM"
PIDS=("${PIDS[@]:1}") # siovd is reaped: never signal its pid again
echo "1 passed, 0 failed"
