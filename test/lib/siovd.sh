# The shell half of siov's one way to run siovd in a test (bash; sourced).
# test/lib/siovd_proc.{c,h} is the C half; both keep the same conventions
# (test/README.md):
#
# - a fresh directory, mktemp -d /tmp/siov-TAG.XXXXXX (or $SIOVD_DIR if the
#   caller set it), holding rpc.sock, state/ and siovd.log ($SIOVD_LOG if set);
# - siovd is started as $SIOVD --rpc-socket DIR/rpc.sock --state-dir DIR/state
#   ARGS..., in the background, its pid in $SIOVD_PID;
# - ready means it answered a daemon_info RPC (siovctl), not that a socket
#   file appeared;
# - stop is SIGTERM, then SIGKILL after a timeout, by pid, never by name;
# - the leak check: a clean stop is exit status 0 and a log free of
#   AddressSanitizer, LeakSanitizer and UBSan reports;
# - on failure (or SIOV_TEST_KEEP=1) the directory is kept and the end of the
#   log printed; otherwise it is removed.
#
# Needs SIOVD and SIOVCTL (paths of the programs).  Functions return non-zero
# with a message on stderr instead of exiting, so that the test decides.
#
# siovd_start/_stop/... run one siovd per shell.  siovd_inst_start NAME DIR
# and its siblings (below) run several at once, with the same conventions,
# their state in associative arrays keyed by NAME (SIOVD_INST_PID[NAME],
# SIOVD_INST_RPC[NAME], SIOVD_INST_LOG[NAME], ...).

SIOVD_DIR=${SIOVD_DIR:-}
SIOVD_LOG=${SIOVD_LOG:-}
SIOVD_RPC=
SIOVD_STATE=
SIOVD_PID=
SIOVD_STATUS=
SIOVD_OWN_DIR=0
SIOVD_ARGS=()
SIOVD_START_TIMEOUT=${SIOVD_START_TIMEOUT:-15} # seconds; a sanitized siovd starts slowly
SIOVD_STOP_TIMEOUT=${SIOVD_STOP_TIMEOUT:-20}   # seconds; SIGTERM drains in-flight I/O
SIOVD_SANITIZER_RE='ERROR: (AddressSanitizer|LeakSanitizer)|runtime error:'

siovd__err() { echo "siovd.sh: $*" >&2; }

# siovd_start TAG [ARGS...]: makes the directory (first time only), starts
# siovd with ARGS and waits until it answers daemon_info.
siovd_start() {
	local tag=$1
	shift
	SIOVD_ARGS=("$@")
	if [ -z "$SIOVD_DIR" ]; then
		SIOVD_DIR=$(mktemp -d "/tmp/siov-$tag.XXXXXX") || return 1
		SIOVD_OWN_DIR=1
	fi
	SIOVD_RPC=$SIOVD_DIR/rpc.sock
	SIOVD_STATE=$SIOVD_DIR/state
	SIOVD_LOG=${SIOVD_LOG:-$SIOVD_DIR/siovd.log}
	mkdir -p "$SIOVD_STATE"
	siovd_restart
}

# siovd_restart: starts siovd again on the same directory, state and ARGS.
siovd_restart() {
	[ -n "$SIOVD_RPC" ] || { siovd__err "siovd_restart before siovd_start"; return 1; }
	[ -z "$SIOVD_PID" ] || { siovd__err "siovd (pid $SIOVD_PID) still runs"; return 1; }
	"$SIOVD" --rpc-socket "$SIOVD_RPC" --state-dir "$SIOVD_STATE" "${SIOVD_ARGS[@]}" \
		>>"$SIOVD_LOG" 2>&1 &
	SIOVD_PID=$!
	SIOVD_STATUS=
	siovd_wait_ready "$SIOVD_START_TIMEOUT"
}

# siovd_ctl ARGS...: siovctl on siovd's RPC socket.
siovd_ctl() { "$SIOVCTL" -s "$SIOVD_RPC" "$@"; }

# siovd_alive: siovd runs (a reaped child is not alive).
siovd_alive() { [ -n "$SIOVD_PID" ] && kill -0 "$SIOVD_PID" 2>/dev/null; }

# siovd_wait_ready [SECONDS]: polls daemon_info until siovd answers; fails
# early if it dies.
siovd_wait_ready() {
	local i=0 n=$((${1:-$SIOVD_START_TIMEOUT} * 20))
	while ! siovd_ctl -t 2 daemon_info >/dev/null 2>&1; do
		if ! siovd_alive; then
			siovd__err "siovd (pid $SIOVD_PID) died before answering daemon_info"
			siovd_reap
			return 1
		fi
		i=$((i + 1))
		[ $i -le $n ] || { siovd__err "siovd did not answer daemon_info within ${1:-$SIOVD_START_TIMEOUT} s"; return 1; }
		sleep 0.05
	done
}

# siovd_reap: collects the exit status of a siovd that has ended.
siovd_reap() {
	[ -n "$SIOVD_PID" ] || return 0
	SIOVD_STATUS=0
	wait "$SIOVD_PID" 2>/dev/null || SIOVD_STATUS=$?
	SIOVD_PID=
}

# siovd_log_reports [LOG]: how many sanitizer reports siovd's log (or LOG) holds.
siovd_log_reports() {
	local f=${1:-$SIOVD_LOG}
	[ -f "$f" ] || { echo 0; return 0; }
	grep -Ec "$SIOVD_SANITIZER_RE" "$f" || true
}

# siovd_stop [SECONDS]: SIGTERM, SIGKILL after SECONDS; succeeds only when
# siovd exited 0 in time and its log has no sanitizer report.
siovd_stop() {
	local t=${1:-$SIOVD_STOP_TIMEOUT} i=0 reports
	siovd_alive || { siovd__err "siovd was already gone before SIGTERM"; siovd_reap; return 1; }
	kill -TERM "$SIOVD_PID"
	while siovd_alive && [ $i -lt $((t * 20)) ]; do
		sleep 0.05
		i=$((i + 1))
	done
	if siovd_alive; then
		siovd__err "siovd did not exit within $t s of SIGTERM; killed"
		siovd_kill
		return 1
	fi
	siovd_reap
	reports=$(siovd_log_reports)
	[ "$reports" = 0 ] || { siovd__err "siovd's log has $reports sanitizer report(s)"; return 1; }
	[ "$SIOVD_STATUS" = 0 ] || { siovd__err "siovd exited with status $SIOVD_STATUS after SIGTERM"; return 1; }
}

# siovd_kill: SIGKILL at once, as a crash would.
siovd_kill() {
	[ -n "$SIOVD_PID" ] || return 0
	kill -KILL "$SIOVD_PID" 2>/dev/null || true
	siovd_reap
}

# siovd_dump_log [LINES]: the end of siovd's log on stderr.
siovd_dump_log() {
	[ -f "$SIOVD_LOG" ] || return 0
	echo "----- $SIOVD_LOG (last ${1:-50} lines) -----" >&2
	tail -n "${1:-50}" "$SIOVD_LOG" >&2
}

# siovd_cleanup [RC]: stops siovd if it still runs; keeps the directory and
# prints the log when RC is not 0 or the stop was not clean, else removes it
# (only a directory siovd_start made).  Returns non-zero if the stop failed.
siovd_cleanup() {
	local rc=${1:-0} stop=0
	if [ -n "$SIOVD_PID" ]; then
		siovd_stop || stop=1
	fi
	[ -n "$SIOVD_DIR" ] && [ -d "$SIOVD_DIR" ] || return $stop
	if { [ "$rc" != 0 ] && [ "$rc" != 77 ]; } || [ $stop != 0 ]; then
		siovd_dump_log 50
		echo "siovd.sh: kept $SIOVD_DIR" >&2
	elif [ "${SIOV_TEST_KEEP:-0}" != 0 ]; then
		echo "siovd.sh: kept $SIOVD_DIR" >&2
	elif [ "$SIOVD_OWN_DIR" = 1 ]; then
		rm -rf "$SIOVD_DIR"
	fi
	return $stop
}

# ---- several instances at once ----------------------------------------------
#
# The same conventions, per instance NAME: DIR holds rpc.sock, state/ and
# siovd.log (or the log the caller put in SIOVD_INST_LOG[NAME] before the
# first start); the caller makes and removes DIR (a test's work dir).

declare -A SIOVD_INST_DIR=() SIOVD_INST_RPC=() SIOVD_INST_LOG=() SIOVD_INST_PID=()
declare -A SIOVD_INST_STATUS=() SIOVD_INST_ARGS=()

# siovd_inst_start NAME DIR [ARGS...]: siovd instance NAME on DIR with ARGS,
# ready once it answers daemon_info; its pid in SIOVD_INST_PID[NAME].
siovd_inst_start() {
	local n=$1 d=$2
	shift 2
	[ -z "${SIOVD_INST_PID[$n]:-}" ] || { siovd__err "instance $n (pid ${SIOVD_INST_PID[$n]}) still runs"; return 1; }
	mkdir -p "$d/state" || return 1
	SIOVD_INST_DIR[$n]=$d
	SIOVD_INST_RPC[$n]=$d/rpc.sock
	SIOVD_INST_LOG[$n]=${SIOVD_INST_LOG[$n]:-$d/siovd.log}
	SIOVD_INST_ARGS[$n]=
	[ $# = 0 ] || SIOVD_INST_ARGS[$n]=$(printf '%q ' "$@") # printf alone would make one empty argument
	siovd_inst_restart "$n"
}

# siovd_inst_restart NAME: starts instance NAME again on the same directory,
# state and ARGS (after a stop or a kill).
siovd_inst_restart() {
	local n=$1 args
	[ -n "${SIOVD_INST_DIR[$n]:-}" ] || { siovd__err "siovd_inst_restart $n before siovd_inst_start"; return 1; }
	[ -z "${SIOVD_INST_PID[$n]:-}" ] || { siovd__err "instance $n (pid ${SIOVD_INST_PID[$n]}) still runs"; return 1; }
	eval "args=(${SIOVD_INST_ARGS[$n]})"
	"$SIOVD" --rpc-socket "${SIOVD_INST_RPC[$n]}" --state-dir "${SIOVD_INST_DIR[$n]}/state" "${args[@]}" \
		>>"${SIOVD_INST_LOG[$n]}" 2>&1 &
	SIOVD_INST_PID[$n]=$!
	SIOVD_INST_STATUS[$n]=
	siovd_inst_wait_ready "$n" "$SIOVD_START_TIMEOUT"
}

# siovd_inst_ctl NAME ARGS...: siovctl on instance NAME's RPC socket.
siovd_inst_ctl() {
	local n=$1
	shift
	"$SIOVCTL" -s "${SIOVD_INST_RPC[$n]}" "$@"
}

# siovd_inst_alive NAME: instance NAME runs.
siovd_inst_alive() { [ -n "${SIOVD_INST_PID[$1]:-}" ] && kill -0 "${SIOVD_INST_PID[$1]}" 2>/dev/null; }

# siovd_inst_wait_ready NAME [SECONDS]: polls daemon_info; fails early if it dies.
siovd_inst_wait_ready() {
	local n=$1 t=${2:-$SIOVD_START_TIMEOUT} i=0
	while ! siovd_inst_ctl "$n" -t 2 daemon_info >/dev/null 2>&1; do
		if ! siovd_inst_alive "$n"; then
			siovd__err "instance $n (pid ${SIOVD_INST_PID[$n]}) died before answering daemon_info"
			siovd_inst_reap "$n"
			return 1
		fi
		i=$((i + 1))
		[ $i -le $((t * 20)) ] || { siovd__err "instance $n did not answer daemon_info within $t s"; return 1; }
		sleep 0.05
	done
}

# siovd_inst_reap NAME: collects the exit status of an instance that has ended.
siovd_inst_reap() {
	local n=$1 st=0
	[ -n "${SIOVD_INST_PID[$n]:-}" ] || return 0
	wait "${SIOVD_INST_PID[$n]}" 2>/dev/null || st=$?
	SIOVD_INST_STATUS[$n]=$st
	SIOVD_INST_PID[$n]=
}

# siovd_inst_stop NAME [SECONDS]: SIGTERM, SIGKILL after SECONDS; succeeds
# only when it exited 0 in time and its log has no sanitizer report.
siovd_inst_stop() {
	local n=$1 t=${2:-$SIOVD_STOP_TIMEOUT} i=0 reports
	siovd_inst_alive "$n" || { siovd__err "instance $n was already gone before SIGTERM"; siovd_inst_reap "$n"; return 1; }
	kill -TERM "${SIOVD_INST_PID[$n]}"
	while siovd_inst_alive "$n" && [ $i -lt $((t * 20)) ]; do
		sleep 0.05
		i=$((i + 1))
	done
	if siovd_inst_alive "$n"; then
		siovd__err "instance $n did not exit within $t s of SIGTERM; killed"
		siovd_inst_kill "$n"
		return 1
	fi
	siovd_inst_reap "$n"
	reports=$(siovd_log_reports "${SIOVD_INST_LOG[$n]}")
	[ "$reports" = 0 ] || { siovd__err "instance $n's log has $reports sanitizer report(s)"; return 1; }
	[ "${SIOVD_INST_STATUS[$n]}" = 0 ] ||
		{ siovd__err "instance $n exited with status ${SIOVD_INST_STATUS[$n]} after SIGTERM"; return 1; }
}

# siovd_inst_kill NAME: SIGKILL at once, as a crash would.
siovd_inst_kill() {
	[ -n "${SIOVD_INST_PID[$1]:-}" ] || return 0
	kill -KILL "${SIOVD_INST_PID[$1]}" 2>/dev/null || true
	siovd_inst_reap "$1"
}

# siovd_inst_kill_all: SIGKILL to every instance still running (an EXIT trap).
siovd_inst_kill_all() {
	local n
	for n in "${!SIOVD_INST_PID[@]}"; do
		siovd_inst_kill "$n"
	done
}
