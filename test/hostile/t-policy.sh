#!/bin/bash
# Socket policy of a real siovd: VDEV sockets only inside --socket-dir, socket
# files created with the modes the docs promise, and a refused request leaves
# the configuration as it was.
set -euo pipefail
SIOVD=$1 SIOVCTL=$2
. "$(dirname "$0")/../lib/siovd.sh"
WORK=$(mktemp -d /tmp/siov-policy.XXXXXX)
cleanup() { local rc=$?; siovd_kill; [ $rc = 0 ] && rm -rf "$WORK" || siovd_dump_log; }
trap cleanup EXIT
pass=0 fail=0
check() { # description, then a command that must succeed
	local what=$1; shift
	if "$@" >/dev/null 2>&1; then pass=$((pass + 1)); echo "ok   - $what"; else fail=$((fail + 1)); echo "FAIL - $what"; fi
}
mkdir -p "$WORK/vms" "$WORK/elsewhere"
# test/lib/siovd.sh: started in $WORK, ready once it answers daemon_info.
SIOVD_DIR=$WORK
siovd_start policy --engines 1 --socket-dir "$WORK/vms" --socket-mode 0660 || exit 1
ctl() { "$SIOVCTL" -s "$WORK/rpc.sock" "$@"; }
check "siovd answers" ctl daemon_info
check "the RPC socket is 0600" test "$(stat -c %a "$WORK/rpc.sock")" = 600
check "backend created" ctl backend_create --name b0 --type ram --size 16M
check "a VDEV socket outside --socket-dir is refused" \
	bash -c "! $SIOVCTL -s $WORK/rpc.sock vdev_create --name bad --backend b0 --socket $WORK/elsewhere/v.sock"
check "the refusal says why" bash -c "$SIOVCTL -s $WORK/rpc.sock vdev_create --name bad --backend b0 --socket $WORK/elsewhere/v.sock 2>&1 | grep -q 'outside the directories'"
check "a '..' escape is refused" \
	bash -c "! $SIOVCTL -s $WORK/rpc.sock vdev_create --name bad --backend b0 --socket $WORK/vms/../elsewhere/v.sock"
check "no socket file was left outside" test ! -e "$WORK/elsewhere/v.sock"
check "nothing was created" bash -c "[ \"\$($SIOVCTL -s $WORK/rpc.sock vdev_list | tr -d ' \\n')\" = '[]' ]"
check "a VDEV inside --socket-dir is created" ctl vdev_create --name good --backend b0 --socket "$WORK/vms/good.sock"
check "its socket has --socket-mode 0660" test "$(stat -c %a "$WORK/vms/good.sock")" = 660
check "the state file is 0600" test "$(stat -c %a "$WORK/state/siovd.json")" = 600
check "siovd stops cleanly on SIGTERM (exit 0, no sanitizer report)" siovd_stop
check "and removes its sockets" test ! -e "$WORK/vms/good.sock" -a ! -e "$WORK/rpc.sock"
echo "$pass passed, $fail failed"
[ "$fail" = 0 ]
