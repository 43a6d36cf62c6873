#!/bin/bash
# Issue 4's scale benchmark: see bench/siov_scale.py for what it measures.
# Usage: bench/scale.sh [BUILD] [OUT]   env: N=10000 (scale), RUNTIME (5 scale, 10 qos)
# Writes OUT/scale.json and OUT/scale.md (default OUT: bench/results/<stamp>-issue4).
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
BUILD=$(cd "${1:-build}" && pwd)
OUT=${2:-$HERE/results/$(date +%Y%m%d)-issue4}
ninja -C "$BUILD" app/siovd/siovd app/siov-bench/siov-bench lib/libsiov/libsiov.so.0.1.0 >/dev/null
exec python3 "$HERE/siov_scale.py" scale "$BUILD" "$OUT"
