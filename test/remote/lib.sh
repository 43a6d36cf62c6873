# Host-side helpers of the remote-backend tests (NBD, the siovd gateway, Ceph
# RBD): a work dir, processes started here and killed by pid at the end, free
# TCP ports, siovd instances (test/lib/siovd.sh's multi-instance half),
# nbdkit servers, siov-bench runs.
#
# Usage: . lib.sh; setup SIOVD SIOVCTL SIOV_BENCH
set -euo pipefail
. "$(dirname "${BASH_SOURCE[0]}")/../lib/siovd.sh"
. "$(dirname "${BASH_SOURCE[0]}")/../lib/common.sh"

TEST_NAME=$(basename "$0" .sh)
T0=$(date +%s.%N)
WORK=
PIDS=()

now() { date +%s.%N; }
secs_since() { awk -v a="$1" -v b="$(date +%s.%N)" 'BEGIN{printf "%.2f", b-a}'; }

setup() {
	SIOVD=$(readlink -f "$1") SIOVCTL=$(readlink -f "$2") BENCH=$(readlink -f "$3")
	[ -x "$SIOVD" ] && [ -x "$SIOVCTL" ] && [ -x "$BENCH" ] || skip "siovd, siovctl or siov-bench not built"
	command -v jq >/dev/null || skip "jq not installed"
	WORK=$(mktemp -d /tmp/siov-remote.XXXXXX)
	trap cleanup EXIT
	trap 'exit 130' INT TERM
}


cleanup() {
	local rc=$? pid f
	trap - EXIT
	end_pids
	if [ $rc != 0 ] && [ $rc != 77 ] && [ -d "$WORK" ]; then
		for f in "$WORK"/*.log; do
			[ -f "$f" ] || continue
			echo "----- ${f##*/} (last 60 lines) -----" >&2
			tail -n 60 "$f" >&2
		done
	fi
	if [ "${SIOV_TEST_KEEP:-0}" = 1 ]; then
		echo "kept $WORK" >&2
	else
		rm -rf "$WORK"
	fi
	[ $rc = 0 ] && log PASS
	exit $rc
}


# wait_port PORT SECONDS PID: until something accepts on 127.0.0.1:PORT.
wait_port() {
	local i=0
	until python3 -c "import socket,sys; socket.create_connection(('127.0.0.1',$1),0.2)" 2>/dev/null; do
		kill -0 "$3" 2>/dev/null || die "process $3 died before listening on port $1"
		i=$((i + 1))
		[ $i -le $(($2 * 10)) ] || die "nothing listens on port $1 after $2 s"
		sleep 0.1
	done
}

# instance_start NAME: siovd instance NAME (test/lib/siovd.sh, in WORK/NAME,
# log WORK/siovd-NAME.log), ready once it answers daemon_info; its pid in
# SIOVD_INST_PID[NAME] and PIDS.  Started again after instance_stop, it
# replays its state dir.
instance_start() {
	local n=$1
	SIOVD_INST_LOG[$n]=$WORK/siovd-$n.log
	if [ -n "${SIOVD_INST_DIR[$n]:-}" ]; then
		siovd_inst_restart "$n" || die "siovd $n did not start again and answer daemon_info"
	else
		siovd_inst_start "$n" "$WORK/$n" --engines 1 || die "siovd $n did not start and answer daemon_info"
	fi
	PIDS+=("${SIOVD_INST_PID[$n]}")
}

# instance_stop NAME: SIGTERM (SIGKILL after 20 s); must exit 0 with no
# sanitizer report in its log.
instance_stop() {
	local pid=${SIOVD_INST_PID[$1]} rc=0
	siovd_inst_stop "$1" || rc=$?
	forget_pid "$pid"
	[ $rc = 0 ] || die "siovd $1 did not stop cleanly (see above)"
}

# ctl NAME METHOD ARGS...: siovctl on instance NAME; prints the result.
ctl() {
	local n=$1
	shift
	timeout 30 "$SIOVCTL" -s "${SIOVD_INST_RPC[$n]}" "$@"
}

# ctl_fails NAME PATTERN METHOD ARGS...: the call must fail with PATTERN in its message.
ctl_fails() {
	local n=$1 pat=$2 out
	shift 2
	if out=$(ctl "$n" "$@" 2>&1); then
		die "siovctl $* succeeded; expected an error matching '$pat'"
	fi
	echo "$out" | grep -Eq "$pat" || die "siovctl $*: error '$out' does not match '$pat'"
	log "refused as expected: $(echo "$out" | tail -n 1)"
}

vstat() { ctl "$1" vdev_stats --name "$2" | jq -r "if type == \"array\" then .[0] else . end | $3"; }

# nbdkit_start NAME ARGS...: nbdkit in the foreground of a background job; sets NBDKIT_PID[NAME].
declare -A NBDKIT_PID=()
nbdkit_start() {
	local n=$1
	shift
	nbdkit -f "$@" >>"$WORK/nbdkit-$n.log" 2>&1 &
	NBDKIT_PID[$n]=$!
	PIDS+=("${NBDKIT_PID[$n]}")
}

nbdkit_kill9() {
	local pid=${NBDKIT_PID[$1]}
	kill -9 "$pid"
	wait "$pid" 2>/dev/null || true
	forget_pid "$pid"
}

# bench_start OUT ARGS...: siov-bench in the background; sets BENCH_PID.
bench_start() {
	local out=$1
	shift
	timeout 120 "$BENCH" "$@" >"$out" 2>&1 &
	BENCH_PID=$!
	PIDS+=("$BENCH_PID")
}

# bench_wait OUT: the run must end with status 0, no error, and a clean verify.
bench_wait() {
	local rc=0
	wait "$BENCH_PID" || rc=$?
	forget_pid "$BENCH_PID"
	[ $rc = 0 ] || die "siov-bench failed ($rc): $(tail -n 5 "$1")"
	grep -q 'errors=0' "$1" || die "siov-bench saw I/O errors: $(grep -m1 errors= "$1")"
	grep -q ' 0 bad' "$1" || die "siov-bench verify failed: $(grep -m1 verify "$1")"
	log "siov-bench: $(grep -m1 'iops=' "$1" | sed 's/^ *//'); $(grep -m1 verify: "$1" | sed 's/^ *//')"
}
