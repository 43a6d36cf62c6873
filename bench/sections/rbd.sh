#!/bin/bash
# Section "rbd": siovd's RBD backend against qemu-storage-daemon's rbd driver
# (qemu-block-extra), both on the same image of a one-node Ceph cluster
# started here (test/remote/ceph-lib.sh: one mon, one memstore OSD, pool size
# 1), each serving one vhost-user-blk socket to siov-bench.  The image is
# written whole first, so reads hit objects.  4 KiB randwrite and randread at
# QD 1 and 32; IOPS, mean latency and IOPS per CPU-second of the target
# (librbd's threads count in both).  Ceph is not pinned; siov-bench waits in
# interrupt mode so that it leaves CPU to the cluster.
# Usage: sections/rbd.sh BUILD DIR (QUICK=1: skipped, the cluster alone takes ~15 s)
set -euo pipefail
BUILD=$1 DIR=$2
. "$(dirname "$0")/../lib.sh"
. "$(dirname "$0")/../remote-lib.sh"
RWS=${RWS:-"randwrite randread"}
QDS=${QDS:-"1 32"}
if [ "$QUICK" = 1 ]; then
	echo "rbd: a Ceph cluster takes longer to start than bench-quick allows; run make bench" >&2
	exit 77
fi
have_siovd || { echo "rbd: siovd or siov-bench not built" >&2; exit 77; }
PIDS=()
log() { echo "rbd: $*" >&2; }
die() { echo "rbd: $*" >&2; exit 1; }
. "$HERE/../test/remote/ceph-lib.sh"
why=$(ceph_missing)
[ -z "$why" ] || { echo "rbd: $why" >&2; exit 77; }
trap 'bench_cleanup; ceph_stop' EXIT
ceph_start "$WORK/ceph-cluster"
IMG_MB=256
rbd -c "$CEPH_CONF" create --size ${IMG_MB}M rbd/bench 2>/dev/null || die "rbd create failed"
rbd -c "$CEPH_CONF" bench --io-type write --io-size 4M --io-total ${IMG_MB}M --io-pattern seq rbd/bench \
	>/dev/null 2>&1 || die "could not fill the image"
$FIG meta "$DIR" --name rbd --title "RBD backend: siovd vs qemu-storage-daemon's rbd driver on one Ceph image" \
	--setup "Ceph $(ceph --version | awk '{print $3}') one-node cluster (1 mon, 1 memstore OSD, no cephx, not pinned), a ${IMG_MB} MiB image written whole first; the target (siovd with an rbd backend, or qemu-storage-daemon with driver=rbd) on CPU $TCPU serving vhost-user-blk; siov-bench --irq on CPU $LCPU; $RUNTIME s per run, $ROUNDS rounds alternating the sides."
[ -n "$QSD" ] || $FIG note "$DIR" "qemu-storage-daemon is not installed: siovd only."

# The targets of lib.sh's run_target, on the image instead of a file.
start_siovd() { remote_start_siovd --type rbd --pool rbd --image bench --conf "$CEPH_CONF"; }
start_qsd() { remote_start_qsd "driver=rbd,node-name=d0,pool=rbd,image=bench,conf=$CEPH_CONF,cache.direct=on"; }
remote_rounds rbd RBD
