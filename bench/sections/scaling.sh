#!/bin/bash
# Section "scaling": two engines against one, and 64 / 1,000 active VDEVs on one
# engine against qemu-storage-daemon with as many exports (bench/scaling.py).
# Usage: sections/scaling.sh BUILD DIR   env: SCALING_NS="64 1000", RUNTIME, ROUNDS,
#   SCALING_POLL_US (0), SCALING_BASE_BUILD, SCALING_IR=1 (bench/scaling.py says what they do)
set -euo pipefail
BUILD=$(cd "$1" && pwd) DIR=$2
HERE=$(cd "$(dirname "$0")/.." && pwd)
ninja -C "$BUILD" app/siovd/siovd app/siov-bench/siov-bench >/dev/null
exec python3 "$HERE/scaling.py" "$BUILD" "$DIR"
