#!/bin/bash
# Issue 12's benchmark: management calls one at a time with 10,000 VDEVs, the
# front-end attach time during a create storm, a metrics scrape (see
# bench/state_rate.py).  Also run by bench/run.sh (BENCH=state runs it alone).
# Usage: bench/state.sh [BUILD] [OUT]   env: N=10000 M=2000 CLIENTS=8 STATE_DIR=/var/tmp
# Writes OUT/state.json and OUT/state.md (default OUT: bench/results/<stamp>-issue12).
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
BUILD=$(cd "${1:-build}" && pwd)
OUT=${2:-$HERE/results/$(date +%Y%m%d)-issue12}
ninja -C "$BUILD" app/siovd/siovd lib/libsiov/libsiov.so.0.1.0 >/dev/null
exec python3 "$HERE/state_rate.py" "$BUILD" "$OUT"
