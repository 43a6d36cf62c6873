# What the shell test libraries share (bash; sourced by test/guest/lib.sh and
# test/remote/lib.sh): messages, pid bookkeeping, waiting for a path, a free
# TCP port.  The sourcing library sets TEST_NAME and T0 (date +%s.%N) first.
# Each test keeps the pids it started in PIDS, and its cleanup ends exactly
# those.

log() { echo "[$TEST_NAME $(elapsed)s] $*" >&2; }
elapsed() { awk -v a="$T0" -v b="$(date +%s.%N)" 'BEGIN{printf "%.1f", b-a}'; }
skip() { echo "SKIP: $TEST_NAME: $*" >&2; exit 77; }
die() {
	echo "FAIL: $TEST_NAME: $*" >&2
	exit 1
}

# forget_pid PID: PID was reaped; never signal it again.
forget_pid() {
	local p keep=()
	for p in "${PIDS[@]}"; do
		[ "$p" = "$1" ] || keep+=("$p")
	done
	PIDS=("${keep[@]}")
}

# end_pids: SIGTERM to every pid in PIDS, then SIGKILL to any still there
# after 10 s (a test's EXIT trap: what it started, by pid, never by name).
end_pids() {
	local pid
	for pid in "${PIDS[@]}"; do
		kill -TERM "$pid" 2>/dev/null || true
	done
	for pid in "${PIDS[@]}"; do
		timeout 10 tail --pid="$pid" -f /dev/null 2>/dev/null || kill -9 "$pid" 2>/dev/null || true
	done
}

# wait_for_path PATH SECONDS [PID]: polls until PATH exists; fails early if
# PID dies.
wait_for_path() {
	local i=0 n=$(($2 * 20))
	while [ ! -e "$1" ]; do
		if [ -n "${3:-}" ] && ! kill -0 "$3" 2>/dev/null; then
			die "process $3 died before $1 appeared"
		fi
		i=$((i + 1))
		[ $i -le $n ] || die "timed out after $2 s waiting for $1"
		sleep 0.05
	done
}

# wait_until SECONDS WHAT CMD...: polls CMD every 0.1 s until it succeeds;
# dies saying WHAT after SECONDS.  Synchronises on the event, not on a clock.
wait_until() {
	local i=0 n=$(($1 * 10)) what=$2
	shift 2
	until "$@"; do
		i=$((i + 1))
		[ $i -le $n ] || die "$what"
		sleep 0.1
	done
}

# free_port: a TCP port nobody listens on now (the kernel's pick).
free_port() {
	python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}
