#!/bin/bash
# siovd.sh's own conventions against a real siovd (the C helper's are checked
# by t_siovd_proc): directory layout, readiness by RPC, a clean stop that
# removes the directory, a crash seen as one, a restart that finds its state,
# a sanitizer report caught at stop, a siovd that does not start, and a
# siovd that ignores SIGTERM being killed.
# usage: t-siovd-helpers.sh SIOVD SIOVCTL
set -euo pipefail
SIOVD=$1 SIOVCTL=$2
. "$(dirname "$0")/siovd.sh"
pass=0 fail=0
check() { # description, then a command that must succeed
	local what=$1
	shift
	if "$@" >/dev/null 2>&1; then pass=$((pass + 1)); echo "ok   - $what"; else fail=$((fail + 1)); echo "FAIL - $what"; fi
}
not() { ! "$@"; }
# fresh: forget the previous run's directory so that the next start makes one.
fresh() { SIOVD_DIR= SIOVD_LOG= SIOVD_OWN_DIR=0; }
trap 'siovd_kill; siovd_inst_kill_all; for d in "${KEPT[@]}"; do rm -rf "$d"; done' EXIT
KEPT=()

siovd_start selftest --engines 1 >/dev/null 2>&1
check "starts and answers daemon_info" siovd_ctl daemon_info
check "in /tmp/siov-selftest.*" test "${SIOVD_DIR#/tmp/siov-selftest.}" != "$SIOVD_DIR"
check "rpc.sock, state/ and siovd.log inside it" test -S "$SIOVD_DIR/rpc.sock" -a -d "$SIOVD_DIR/state" -a -f "$SIOVD_DIR/siovd.log"
dir=$SIOVD_DIR
check "SIGTERM: exit 0, no report" siovd_stop
check "siovd removed its socket" test ! -e "$dir/rpc.sock"
siovd_cleanup 0
check "a clean run's directory is removed" test ! -e "$dir"

fresh
siovd_start selftest >/dev/null 2>&1
KEPT+=("$SIOVD_DIR")
check "backend created" siovd_ctl backend_create --name keep --type null --size 4096
siovd_kill
check "SIGKILL: not alive" not siovd_alive
check "stopping a dead siovd is an error" not siovd_stop
check "restart on the same directory answers" siovd_restart
check "the restarted siovd found its state again" bash -c "$SIOVCTL -s $SIOVD_RPC backend_list | grep -q keep"
kill -STOP "$SIOVD_PID"
check "a siovd that ignores SIGTERM is killed, and that is an error" not siovd_stop 1
check "and is gone" not siovd_alive
check "siovd_cleanup after a failure keeps it" siovd_cleanup 1
check "...and it is still there" test -d "$SIOVD_DIR"

fresh
siovd_start selftest >/dev/null 2>&1
KEPT+=("$SIOVD_DIR")
echo "==1==ERROR: AddressSanitizer: heap-use-after-free" >>"$SIOVD_LOG"
check "the report is counted" test "$(siovd_log_reports)" = 1
check "a report fails the stop" not siovd_stop

fresh
check "a siovd that exits at start is reported, not waited for" not siovd_start selftest --no-such-option
KEPT+=("$SIOVD_DIR")
check "its log says why" grep -q -- "no-such-option\|unrecognized\|unknown" "$SIOVD_LOG"

# Several instances at once (siovd_inst_*), in a directory of the test's own.
multi=$(mktemp -d /tmp/siov-selftest-multi.XXXXXX)
KEPT+=("$multi")
check "two instances start" siovd_inst_start A "$multi/A" --engines 1
check "...side by side" siovd_inst_start B "$multi/B"
check "each answers on its own socket" test -S "$multi/A/rpc.sock" -a -S "$multi/B/rpc.sock" -a -f "$multi/B/siovd.log"
check "a second start of a running instance is an error" not siovd_inst_start A "$multi/A"
check "backend created on A" siovd_inst_ctl A backend_create --name onA --type null --size 4096
check "B does not see it" bash -c "! $SIOVCTL -s $multi/B/rpc.sock backend_list | grep -q onA"
pidb=${SIOVD_INST_PID[B]}
siovd_inst_kill A
check "SIGKILL of A: A gone" not siovd_inst_alive A
check "...B untouched" kill -0 "$pidb"
check "stopping a dead instance is an error" not siovd_inst_stop A
check "A restarts on its directory" siovd_inst_restart A
check "...and found its state and options again" bash -c "$SIOVCTL -s $multi/A/rpc.sock backend_list | grep -q onA"
echo "==1==ERROR: LeakSanitizer: detected memory leaks" >>"${SIOVD_INST_LOG[A]}"
check "a report in A's log fails A's stop" not siovd_inst_stop A
check "B: SIGTERM, exit 0, no report" siovd_inst_stop B
check "B's status is 0" test "${SIOVD_INST_STATUS[B]}" = 0
SIOVD_INST_LOG[C]=$multi/c.log
check "an instance that exits at start is reported" not siovd_inst_start C "$multi/C" --no-such-option
check "...and its own log says why" grep -q -- "no-such-option\|unrecognized\|unknown" "$multi/c.log"

echo "$pass passed, $fail failed"
[ "$fail" = 0 ]
