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
. "$(dirname "$0")/../remote-lib.sh"
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
start_siovd() { remote_start_siovd --type nbd --uri "nbd+unix:///?socket=$NBD_SOCK" --settle-ms 0; }
start_qsd() { remote_start_qsd "driver=nbd,node-name=d0,server.type=unix,server.path=$NBD_SOCK"; }
remote_rounds nbd NBD
