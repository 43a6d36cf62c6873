#!/bin/bash
# Sections "scale" and "qos" (qos.sh is a link to this file): issue 4's
# benchmarks in bench/siov_scale.py, named by the name this was called by,
# their figures in the results file.  Usage: sections/scale.sh BUILD DIR
#   env: N=10000 VDEVs (QUICK=1: 1000), RUNTIME (QUICK=1: 2)
set -euo pipefail
BUILD=$(cd "$1" && pwd) DIR=$2
HERE=$(cd "$(dirname "$0")/.." && pwd)
if [ "${QUICK:-0}" = 1 ]; then export N=${N:-1000} RUNTIME=${RUNTIME:-2}; fi
ninja -C "$BUILD" app/siovd/siovd app/siov-bench/siov-bench lib/libsiov/libsiov.so.0.1.0 >/dev/null
exec python3 "$HERE/siov_scale.py" "$(basename "$0" .sh)" "$BUILD" "$DIR"
