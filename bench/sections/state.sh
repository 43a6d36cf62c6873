#!/bin/bash
# Section "state" (issue 12): vdev_create/vdev_delete one call at a time with
# 10,000 VDEVs (1 connection, 8 clients), every call durable when answered;
# front-end attach time with no load and during a create storm; a --metrics
# scrape, and engine IOPS during back-to-back scrapes.  See bench/state_rate.py.
# The calls come from siov-rpc-rate (app/siov-bench/rpc_rate.c, a client in C),
# and again from the Python client as a second row (PY_CLIENT=0: not).
# Usage: sections/state.sh BUILD DIR
#   env: N=10000 M=2000 CLIENTS=8 STATE_DIR=/var/tmp SOCKET_FS=/dev/shm ROUNDS IO_S
#        SCRAPE_ONLY=1: only the scrape part (bench/scrape_load.py: engine IOPS and
#        IOPS per engine CPU-second with no scrape, 1 s, 100 ms, back to back ...), SCRAPE_MODES
#        (QUICK=1: N=1000 M=300)
#   A baseline beside the build, round by round (A B, B A): STATE_BEFORE=BUILDDIR
#   (any build of an older siovd), or STATE_BEFORE_REV=COMMIT (built here from git).
set -euo pipefail
BUILD=$(cd "$1" && pwd) DIR=$2
HERE=$(cd "$(dirname "$0")/.." && pwd)
if [ "${QUICK:-0}" = 1 ]; then export N=${N:-1000} M=${M:-300} ATTACHES=${ATTACHES:-50} IO_S=${IO_S:-1}; fi
TARGETS="app/siovd/siovd app/siov-bench/siov-bench lib/libsiov/libsiov.so.0.1.0"
# shellcheck disable=SC2086
ninja -C "$BUILD" $TARGETS app/siov-bench/siov-rpc-rate >/dev/null
BEFORE=${STATE_BEFORE:-}
LABEL=${STATE_BEFORE_LABEL:-}
if [ -z "$BEFORE" ] && [ -n "${STATE_BEFORE_REV:-}" ]; then
	SRC=$(mktemp -d /tmp/siov-bench-before.XXXXXX)
	trap 'rm -rf "$SRC"' EXIT
	git -C "$HERE/.." archive "$STATE_BEFORE_REV" | tar -x -C "$SRC"
	meson setup "$SRC/build" "$SRC" -Dtests=false >/dev/null
	# shellcheck disable=SC2086
	ninja -C "$SRC/build" $TARGETS >/dev/null
	BEFORE=$SRC/build
	LABEL=${LABEL:-siovd@$(git -C "$HERE/.." rev-parse --short "$STATE_BEFORE_REV")}
fi
export BEFORE BEFORE_LABEL=${LABEL:-before}
python3 "$HERE/state_rate.py" "$BUILD" "$DIR"
