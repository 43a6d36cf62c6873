#!/bin/bash
# Section "state" (issue 12): vdev_create/vdev_delete one call at a time with
# 10,000 VDEVs (1 connection, 8 clients), every call durable when answered;
# front-end attach time with no load and during a create storm; a --metrics
# scrape.  See bench/state_rate.py.  Usage: sections/state.sh BUILD DIR
#   env: N=10000 M=2000 CLIENTS=8 STATE_DIR=/var/tmp (QUICK=1: N=1000 M=300)
set -euo pipefail
BUILD=$(cd "$1" && pwd) DIR=$2
HERE=$(cd "$(dirname "$0")/.." && pwd)
if [ "${QUICK:-0}" = 1 ]; then export N=${N:-1000} M=${M:-300} ATTACHES=${ATTACHES:-50}; fi
ninja -C "$BUILD" app/siovd/siovd lib/libsiov/libsiov.so.0.1.0 >/dev/null
exec python3 "$HERE/state_rate.py" "$BUILD" "$DIR"
