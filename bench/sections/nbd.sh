#!/bin/bash
# Section "nbd": siovd's NBD backend against qemu-storage-daemon's NBD client,
# both on the same nbdkit server (memory plugin, Unix socket), each serving
# one vhost-user-blk socket to siov-bench.  4 KiB randread and randwrite at
# QD 1 and 32; IOPS, mean latency and IOPS per CPU-second of the target (the
# target's process: siovd counts its NBD thread).  nbdkit is not pinned;
# siov-bench waits in interrupt mode so that it leaves CPU to the server.
# Usage: sections/nbd.sh BUILD DIR (QUICK=1: randread at QD 32 only)
set -euo pipefail
BUILD=$1 DIR=$2
. "$(dirname "$0")/../lib.sh"
RWS=${RWS:-"randread randwrite"}
QDS=${QDS:-"1 32"}
if [ "$QUICK" = 1 ]; then RWS=randread QDS=32; fi
have_siovd || { echo "nbd: siovd or siov-bench not built" >&2; exit 77; }
command -v nbdkit >/dev/null || { echo "nbd: nbdkit not installed" >&2; exit 77; }
# Not in $WORK itself: stop_target removes the sockets there.
mkdir -p "$WORK/nbd"
NBD_SOCK=$WORK/nbd/nbdkit.sock
nbdkit -f -U "$NBD_SOCK" memory 1G >"$WORK/nbdkit.log" 2>&1 &
NBDKIT_PID=$!
trap 'bench_cleanup; kill "$NBDKIT_PID" 2>/dev/null; wait "$NBDKIT_PID" 2>/dev/null || true' EXIT
wait_sock "$NBD_SOCK" "$NBDKIT_PID" || { echo "nbd: nbdkit did not start" >&2; exit 1; }
$FIG meta "$DIR" --name nbd --title "NBD backend: siovd vs qemu-storage-daemon's NBD client on one nbdkit" \
	--setup "nbdkit $(nbdkit --version | awk '{print $2}') memory plugin (1 GiB) on a Unix socket, not pinned; the target (siovd with an nbd backend, or qemu-storage-daemon with driver=nbd) on CPU $TCPU serving vhost-user-blk; siov-bench --irq on CPU $LCPU; $RUNTIME s per run, $ROUNDS rounds alternating the sides."
[ -n "$QSD" ] || $FIG note "$DIR" "qemu-storage-daemon is not installed: siovd only."

# The targets of lib.sh's run_target, on the NBD server instead of a file.
start_siovd() {
	mkdir -p "$WORK/state"
	taskset -c "$TCPU" "$SIOVD" --rpc-socket "$WORK/rpc.sock" --state-dir "$WORK/state" \
		>"$WORK/target.log" 2>&1 &
	TPID=$!
	wait_sock "$WORK/rpc.sock" "$TPID" || return 1
	"$SIOVCTL" -s "$WORK/rpc.sock" backend_create --name b0 --type nbd \
		--uri "nbd+unix:///?socket=$NBD_SOCK" --settle-ms 0 >/dev/null || return 1
	"$SIOVCTL" -s "$WORK/rpc.sock" vdev_create --name v0 --type blk --backend b0 \
		--socket "$WORK/vu.sock" --queues 1 >/dev/null || return 1
	wait_sock "$WORK/vu.sock" "$TPID"
}
start_qsd() {
	taskset -c "$TCPU" "$QSD" --blockdev "driver=nbd,node-name=d0,server.type=unix,server.path=$NBD_SOCK" \
		--export "type=vhost-user-blk,id=e0,node-name=d0,addr.type=unix,addr.path=$WORK/vu.sock,writable=on,num-queues=1" \
		>"$WORK/target.log" 2>&1 &
	TPID=$!
	wait_sock "$WORK/vu.sock" "$TPID"
}

record() { # SIDE RW QD JSON
	local id=nbd.$2.4k.qd$3 what="NBD, 4 KiB $2, QD $3"
	if [ ! -s "$4" ]; then
		$FIG add "$DIR" --id "$id.iops" --side "$1" --value none
		return
	fi
	$FIG add "$DIR" --id "$id.iops" --side "$1" --value "$(jget "$4" 'd["iops"]')" --label "$what: IOPS" --unit IOPS
	$FIG add "$DIR" --id "$id.iops_per_cpu_s" --side "$1" --value "$(jget "$4" 'd["iops_per_target_cpu_s"]')" \
		--label "$what: IOPS per target CPU-second" --unit "IOPS/CPU-s"
	$FIG add "$DIR" --id "$id.lat_mean_us" --side "$1" --value "$(jget "$4" 'd["lat_ns"]["mean"]/1e3')" \
		--label "$what: mean latency" --unit "µs" --better lower
	echo "nbd: $1 $2 qd=$3: $(jget "$4" '"%.0f IOPS, mean %.1f us, %.2f of a CPU" % (d["iops"], d["lat_ns"]["mean"]/1e3, d["target_cpu_s"]/d["runtime_s"])')"
}

for round in $(seq "$ROUNDS"); do
	for rw in $RWS; do for qd in $QDS; do
		for side in siovd qsd; do
			[ "$side" = qsd ] && [ -z "$QSD" ] && continue
			out=$DIR/raw/$side-$rw-qd$qd-r$round.json
			run_target "$side" nbd "$out" --rw "$rw" --bs 4k --iodepth "$qd" --irq || true
			record "$side" "$rw" "$qd" "$out"
		done
	done; done
done
[ -n "$QSD" ] || exit 0
for rw in $RWS; do for qd in $QDS; do
	$FIG ratio "$DIR" --id "nbd.$rw.4k.qd$qd.iops" --of siovd --to qsd
	$FIG ratio "$DIR" --id "nbd.$rw.4k.qd$qd.iops_per_cpu_s" --of siovd --to qsd
done; done
