#!/bin/sh
# Runs one libFuzzer target the way `make check-fuzz` and `make fuzz` do:
#   run.sh FUZZER SECONDS WORKDIR SEEDS REGRESS [libFuzzer options...]
# First every saved crash in REGRESS once (a regression test: it must not
# crash any more), then SECONDS of fuzzing from SEEDS and REGRESS.  New inputs
# go to WORKDIR/corpus (never into the source tree) and crashes to
# WORKDIR/artifacts/; copy a crash into REGRESS to keep it.  Options for one
# target (-max_len, -dict) come from NAME.options next to this script.
set -eu
[ $# -ge 5 ] || { echo "usage: $0 FUZZER SECONDS WORKDIR SEEDS REGRESS [options]" >&2; exit 2; }
fuzzer=$1 secs=$2 work=$3 seeds=$4 regress=$5
shift 5
here=$(cd "$(dirname "$0")" && pwd)
opts=""
if [ -f "$here/$(basename "$fuzzer").options" ]; then
	opts=$(sed -e '/^#/d' -e "s|@HERE@|$here|g" "$here/$(basename "$fuzzer").options")
fi
mkdir -p "$work/corpus" "$work/artifacts" "$regress"
export ASAN_OPTIONS="${ASAN_OPTIONS:-abort_on_error=1:detect_leaks=1}"
export UBSAN_OPTIONS="${UBSAN_OPTIONS:-halt_on_error=1:abort_on_error=1:print_stacktrace=1}"

crashes=$(find "$regress" -type f ! -name '.*' | sort)
if [ -n "$crashes" ]; then
	echo "== $(basename "$fuzzer"): $(echo "$crashes" | wc -l) saved input(s) from $regress"
	# shellcheck disable=SC2086 # our file names have no spaces
	"$fuzzer" $opts "$@" $crashes
fi
echo "== $(basename "$fuzzer"): fuzzing for ${secs}s"
# shellcheck disable=SC2086
exec "$fuzzer" $opts "$@" -max_total_time="$secs" -timeout=20 -print_final_stats=1 \
	-artifact_prefix="$work/artifacts/" "$work/corpus" "$seeds" "$regress"
