#!/bin/bash
# make bench / make bench-quick: runs the bench sections and merges their
# figures into ONE results file set, OUT/results.json and OUT/results.md,
# with the machine, the versions and each figure's spread over its rounds.
# A section is bench/sections/NAME.sh (the convention is in bench/README.md);
# each runs in a directory of its own under a temporary dir and leaves
# section.json there; bench/merge.py folds them in (a section already in
# OUT/results.json and not run again is kept).
# Usage: bench/run.sh [BUILD]
#   env: BENCH_SECTIONS="null file ..." (default: every section, by name;
#        bench-quick: null file)  QUICK=1 (about a minute)  OUT=dir
#        RUNTIME, ROUNDS and per-section variables pass through;
#        SIOV_GIT names the commit measured (for a tree outside git).
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
BUILD=$(cd "${1:-build}" && pwd)
QUICK=${QUICK:-0}
all=$(cd "$HERE/sections" && ls -- *.sh | sed 's/\.sh$//' | tr '\n' ' ')
if [ "$QUICK" = 1 ]; then
	SECTIONS=${BENCH_SECTIONS:-"null file"}
	OUT=${OUT:-$HERE/results/quick-$(date -u +%Y%m%d-%H%M%S)}
else
	SECTIONS=${BENCH_SECTIONS:-$all}
	OUT=${OUT:-$HERE/results/$(date -u +%Y%m%d-%H%M%S)}
fi
export QUICK TCPU=${TCPU:-0} LCPU=${LCPU:-1}
TMP=$(mktemp -d /tmp/siov-bench-run.XXXXXX)
trap 'rm -rf "$TMP"' EXIT
mkdir -p "$OUT"

describe_machine() { # OUT_JSON
	python3 - "$1" "$HERE/.." <<'PY'
import json, os, platform, shutil, subprocess, sys
def sh(c):
    try: return subprocess.run(c, shell=True, capture_output=True, text=True).stdout.strip()
    except Exception: return ""
qsd = shutil.which("qemu-storage-daemon")
json.dump({"cpu": sh("grep -m1 'model name' /proc/cpuinfo | cut -d: -f2").strip(),
           "cpus": os.cpu_count(), "kernel": platform.release(),
           "mem_gib": round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30, 1),
           "loadavg_at_start": sh("cut -d' ' -f1-3 /proc/loadavg"),
           "virtualized": sh("systemd-detect-virt 2>/dev/null"),
           "qemu_storage_daemon": sh(qsd + " --version | head -1") if qsd else "",
           "fio": sh("fio --version"), "compiler": sh("cc --version | head -1"),
           "liburing": sh("dpkg-query -W -f='${Version}' liburing-dev 2>/dev/null"),
           "siov_git": os.environ.get("SIOV_GIT") or
                       sh("git -C %s describe --always --dirty" % sys.argv[2])},
          open(sys.argv[1], "w"), indent=1)
PY
}

describe_machine "$TMP/machine.json"
dirs=()
for s in $SECTIONS; do
	script=$HERE/sections/$s.sh
	if [ ! -x "$script" ]; then
		echo "bench: no section '$s' (have: $all)" >&2
		exit 2
	fi
	echo "bench: section $s" >&2
	mkdir -p "$TMP/$s"
	rc=0
	"$script" "$BUILD" "$TMP/$s" || rc=$?
	case $rc in
	0) dirs+=("$TMP/$s") ;;
	77) echo "bench: section $s skipped (it said why above)" >&2 ;;
	*) echo "bench: section $s failed (exit $rc); its figures so far are kept" >&2
	   [ -f "$TMP/$s/section.json" ] && python3 "$HERE/figures.py" note "$TMP/$s" \
		"This section exited with status $rc: some figures may be missing." && dirs+=("$TMP/$s") ;;
	esac
done
[ "${#dirs[@]}" -gt 0 ] || { echo "bench: no section produced figures" >&2; exit 1; }
python3 "$HERE/merge.py" "$OUT" "$TMP/machine.json" "${dirs[@]}"
echo "bench: results in $OUT/results.json and results.md" >&2
