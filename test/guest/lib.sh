# Host side of the siov guest tests, sourced by every test and by demo.sh.
#
# A test starts "the back end" (siovd by default, qemu-storage-daemon when
# SIOV_GUEST_BACKEND=qsd, as a peer to prove the harness and its assertions),
# carves VDEVs out of a backend file, boots one or more Linux guests under
# QEMU (TCG) on their vhost-user sockets with a script handed in through
# fw_cfg, and then checks the backend file and the VDEV statistics.
#
# Options every test takes (meson passes them):
#   --siovd PATH --siovctl PATH   the programs under test
#   --cache DIR                   where the guest kit is built and kept
# Environment:
#   SIOV_GUEST_BACKEND=siovd|qsd  (default siovd)
#   SIOV_GUEST_ACCEL=tcg|kvm      (default tcg; see shared notes on PVM)
#   SIOV_GUEST_KEEP=1             keep the work dir and print its path
#   SIOV_GUEST_VERBOSE=1          copy guest consoles to stderr as they end
#   SIOV_GUEST_QSD_SKEW=BYTES     (qsd only) misplace every window on purpose
set -euo pipefail

GUEST_SRC=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# How siovd is started, stopped and checked: the helper every test shares.
. "$GUEST_SRC/../lib/siovd.sh"
. "$GUEST_SRC/../lib/common.sh"
SIOVD=${SIOVD:-}
SIOVCTL=${SIOVCTL:-}
CACHE=${SIOV_GUEST_CACHE:-}
BACKEND=${SIOV_GUEST_BACKEND:-siovd}
ACCEL=${SIOV_GUEST_ACCEL:-tcg}
GUEST_MEM=${SIOV_GUEST_MEM:-512M}
STALL=${SIOV_GUEST_STALL:-90}  # seconds without console output = stuck guest
TEST_NAME=$(basename "$0" .sh)
T0=$(date +%s.%N)

WORK=
PIDS=()          # every background process this test started
CLEANUP_HOOKS=() # commands cleanup runs after the processes are gone (umount ...)
BE_PID=
KIT=
RPC=
declare -A VDEV_SOCK=() VDEV_QUEUES=() VDEV_MAC=() VDEV_DEVOPTS=()
QSD_ARGS=()


parse_args() {
	while [ $# -gt 0 ]; do
		case "$1" in
		--siovd) SIOVD=$(readlink -f "$2"); shift 2 ;;
		--siovctl) SIOVCTL=$(readlink -f "$2"); shift 2 ;;
		--cache) CACHE=$(readlink -f "$2"); shift 2 ;;
		*) die "unknown argument '$1'" ;;
		esac
	done
}

# ---- set-up and teardown --------------------------------------------------

# forget_pid PID: a process that was reaped leaves the kill list, so cleanup
# never signals a recycled PID.

# setup [ARGS...]: checks what the test needs, builds or reuses the guest kit,
# makes the work dir and arms the cleanup trap.
setup() {
	parse_args "$@"
	command -v qemu-system-x86_64 >/dev/null || skip "qemu-system-x86_64 not installed (qemu-system-x86)"
	command -v timeout >/dev/null || skip "timeout (coreutils) missing"
	case "$BACKEND" in
	siovd)
		[ -n "$SIOVD" ] && [ -x "$SIOVD" ] || skip "siovd not built (pass --siovd PATH)"
		[ -n "$SIOVCTL" ] && [ -x "$SIOVCTL" ] || skip "siovctl not built (pass --siovctl PATH)"
		command -v jq >/dev/null || skip "jq not installed (needed to read vdev_stats)"
		;;
	qsd)
		command -v qemu-storage-daemon >/dev/null || skip "qemu-storage-daemon not installed"
		;;
	*) die "SIOV_GUEST_BACKEND must be siovd or qsd, not '$BACKEND'" ;;
	esac
	if [ "$ACCEL" = kvm ] && [ ! -w /dev/kvm ]; then
		skip "SIOV_GUEST_ACCEL=kvm but /dev/kvm is not usable"
	fi
	WORK=$(mktemp -d /tmp/siov-guest.XXXXXX)
	trap cleanup EXIT
	trap 'exit 130' INT TERM
	CACHE=${CACHE:-$WORK}
	local rc=0
	"$GUEST_SRC/mkkit.sh" "$CACHE/guest-kit" || rc=$?
	[ $rc = 0 ] || { [ $rc = 77 ] && exit 77; die "building the guest kit failed"; }
	KIT=$CACHE/guest-kit
	log "backend $BACKEND, accel $ACCEL, work dir $WORK"
}

cleanup() {
	local rc=$? pid
	trap - EXIT
	for f in "$WORK"/*.qemu.pid; do
		[ -f "$f" ] && pid=$(cat "$f" 2>/dev/null) && kill -9 "$pid" 2>/dev/null || true
	done
	end_pids
	if [ $rc != 0 ] && [ $rc != 77 ] && [ -n "$WORK" ] && [ -d "$WORK" ]; then
		dump_logs
	fi
	for pid in "${CLEANUP_HOOKS[@]}"; do
		eval "$pid" || true
	done
	if [ -n "$WORK" ] && [ -d "$WORK" ]; then
		if [ "${SIOV_GUEST_KEEP:-0}" = 1 ]; then
			echo "kept work dir $WORK" >&2
		else
			rm -rf "$WORK"
		fi
	fi
	[ $rc = 0 ] && log "PASS"
	exit $rc
}

dump_logs() {
	local f
	for f in "$WORK"/*.console; do
		[ -f "$f" ] || continue
		echo "----- guest console ${f##*/} (last 200 lines) -----" >&2
		tail -n 200 "$f" >&2
		f=${f%.console}.qemu.log
		if [ -s "$f" ]; then
			echo "----- QEMU stderr ${f##*/} -----" >&2
			tail -n 20 "$f" >&2
		fi
	done
	if [ -f "$WORK/backend.log" ]; then
		echo "----- $BACKEND log (last 100 lines) -----" >&2
		tail -n 100 "$WORK/backend.log" >&2
	fi
	# siovd instances of test/lib/siovd.sh's multi-instance half (migrate-lib.sh's sides)
	for f in "$WORK"/*/siovd.log; do
		[ -f "$f" ] || continue
		echo "----- siovd log ${f#"$WORK"/} (last 100 lines) -----" >&2
		tail -n 100 "$f" >&2
	done
}


# ---- the back end -----------------------------------------------------------

ctl() {
	local out rc=0
	out=$(timeout 30 "$SIOVCTL" -s "$RPC" "$@" 2>"$WORK/ctl.err") || rc=$?
	if [ $rc != 0 ]; then
		echo "siovctl $* failed ($rc): $(cat "$WORK/ctl.err")" >&2
		return $rc
	fi
	printf '%s\n' "$out"
}

# be_start: starts the back end daemon (siovd now; qsd when be_ready runs,
# because it takes every export on its command line).
be_start() {
	case "$BACKEND" in
	siovd)
		# test/lib/siovd.sh, in this test's work dir; the log keeps its
		# name here because dump_logs and restart-kill.sh read it.
		SIOVD_DIR=$WORK SIOVD_LOG=$WORK/backend.log
		siovd_start guest ${SIOV_GUEST_ENGINES:+--engines $SIOV_GUEST_ENGINES} ||
			die "siovd did not start and answer daemon_info"
		BE_PID=$SIOVD_PID
		PIDS+=("$BE_PID")
		RPC=$SIOVD_RPC
		;;
	qsd) ;;
	esac
}

# be_restart: stops siovd and starts it again on the same state dir, where it
# must find every backend and VDEV again without a single RPC.
be_restart() {
	local s
	[ "$BACKEND" = siovd ] || die "be_restart needs siovd"
	be_stop
	be_start
	for s in "${VDEV_SOCK[@]}"; do
		wait_for_path "$s" 20 "$BE_PID"
	done
}

# be_backend NAME PATH SIZE: a file backend of SIZE bytes (sparse).
be_backend() {
	case "$BACKEND" in
	siovd) ctl backend_create --name "$1" --type file --path "$2" --size "$3" >/dev/null ||
		die "backend_create $1 failed" ;;
	qsd)
		truncate -s "$3" "$2"
		QSD_ARGS+=(--blockdev "driver=file,node-name=$1,filename=$2,cache.direct=on,aio=io_uring,discard=unmap")
		;;
	esac
}

# be_vdev NAME BACKEND OFFSET SIZE QUEUES [ro]: a virtio-blk VDEV, a window of
# BACKEND, on its own vhost-user socket ($WORK/NAME.sock).
be_vdev() {
	local name=$1 be=$2 off=$3 size=$4 q=$5 ro=${6:-}
	local sock=$WORK/$name.sock
	VDEV_SOCK[$name]=$sock
	VDEV_QUEUES[$name]=$q
	case "$BACKEND" in
	siovd)
		ctl vdev_create --name "$name" --type blk --backend "$be" --offset "$off" --size "$size" \
			--queues "$q" --socket "$sock" ${ro:+--readonly} >/dev/null || die "vdev_create $name failed"
		;;
	qsd)
		# SIOV_GUEST_QSD_SKEW=BYTES shifts every window: a deliberate bug
		# that proves the host-side checks catch misplaced data.
		off=$((off + ${SIOV_GUEST_QSD_SKEW:-0}))
		QSD_ARGS+=(--blockdev "driver=raw,node-name=$name,file=$be,offset=$off,size=$size,discard=unmap"
			--export "type=vhost-user-blk,id=e_$name,node-name=$name,addr.type=unix,addr.path=$sock,writable=$([ -n "$ro" ] && echo off || echo on),num-queues=$q")
		;;
	esac
}

# be_network NAME [ARGS...]: a network of siovd's switch (network_create).
be_network() {
	local name=$1
	shift
	ctl network_create --name "$name" "$@" >/dev/null || die "network_create $name failed"
}

# be_nic NAME NETWORK MAC [ARGS...]: a virtio-net VDEV (a port on NETWORK) on
# $WORK/NAME.sock; guest_start gives it to the guest as a virtio-net NIC, with
# as many queue pairs as ARGS' --queues (QEMU queues=N, mq=on) and the QEMU
# device properties in VDEV_DEVOPTS[NAME] (e.g. ",guest_tso4=off"), if any.
be_nic() {
	local name=$1 net=$2 mac=$3 q=1 k
	shift 3
	local sock=$WORK/$name.sock rest=("$@")
	for k in "${!rest[@]}"; do
		[ "${rest[$k]}" != --queues ] || q=${rest[$((k + 1))]}
	done
	VDEV_SOCK[$name]=$sock
	VDEV_QUEUES[$name]=$q
	VDEV_MAC[$name]=$mac
	ctl vdev_create --name "$name" --type net --network "$net" --mac "$mac" --socket "$sock" "$@" \
		>/dev/null || die "vdev_create $name (net) failed"
}

# be_ready: every VDEV is listening.
be_ready() {
	local s
	if [ "$BACKEND" = qsd ]; then
		qemu-storage-daemon "${QSD_ARGS[@]}" >>"$WORK/backend.log" 2>&1 &
		BE_PID=$!
		PIDS+=("$BE_PID")
	fi
	for s in "${VDEV_SOCK[@]}"; do
		wait_for_path "$s" 20 "$BE_PID"
	done
}

be_alive() {
	kill -0 "$BE_PID" 2>/dev/null || die "$BACKEND (pid $BE_PID) is gone"
	if [ "$BACKEND" = siovd ]; then
		ctl daemon_info >/dev/null || die "siovd is running but does not answer daemon_info"
	fi
}

have_stats() { [ "$BACKEND" = siovd ]; }

# stats NAME: the vdev_stats object of one VDEV, on one line.
stats() {
	have_stats || return 1
	ctl vdev_stats --name "$1" |
		jq -ce --arg n "$1" '(if type == "array" then .[] else . end) | select(.name == $n)' ||
		die "vdev_stats has no entry for $1"
}

# vstat NAME JQ-EXPR: one number from a VDEV's statistics, e.g. '.requests' or
# '[.queues[].flushes] | add'.
vstat() {
	stats "$1" | jq -er "$2" || die "vdev_stats of $1 has no $2"
}

# be_stop: SIGTERM, then the daemon must exit 0 within 20 s; siovd's log must
# also be free of sanitizer reports (siovd_stop).
be_stop() {
	local rc=0
	[ -n "$BE_PID" ] || return 0
	if [ "$BACKEND" = siovd ]; then
		siovd_stop || rc=$?
		forget_pid "$BE_PID"
		BE_PID=
		[ $rc = 0 ] || die "siovd did not stop cleanly (see above)"
		local s
		for s in "${VDEV_SOCK[@]}"; do
			[ ! -e "$s" ] || die "siovd left its socket $s behind"
		done
		return 0
	fi
	kill -TERM "$BE_PID" 2>/dev/null || die "$BACKEND was already gone before SIGTERM"
	timeout 20 tail --pid="$BE_PID" -f /dev/null || die "$BACKEND did not exit within 20 s of SIGTERM"
	wait "$BE_PID" || rc=$?
	forget_pid "$BE_PID"
	BE_PID=
	[ $rc = 0 ] || die "$BACKEND exited with status $rc after SIGTERM"
}

# ---- guests -----------------------------------------------------------------

# guest_script NAME [VAR=VALUE...] < BODY: the script the guest runs, with the
# variables set first.
guest_script() {
	local name=$1 f=$WORK/$1.guest.sh
	shift
	: >"$f"
	local kv
	for kv in "$@"; do
		printf '%s\n' "$kv" >>"$f"
	done
	cat >>"$f"
}

# guest_start NAME SECONDS VDEV...: boots a guest in the background on the
# sockets of the VDEVs (vda, vdb, ... in that order) with $WORK/NAME.guest.sh.
# GUEST_RECONNECT=1 makes QEMU reconnect to a back end that went away;
# GUEST_QMP=1 adds a QMP socket ($WORK/NAME.qmp), GUEST_INCOMING=1 makes it
# the destination of a live migration (-incoming unix:$WORK/NAME.mig).
# VDEV_DEVOPTS[V]=",packed=on" appends options to V's -device.
guest_start() {
	local name=$1 secs=$2 i=0 v
	shift 2
	local args=(-accel "$ACCEL" -m "$GUEST_MEM" -smp 2
		-object "memory-backend-memfd,id=mem,size=$GUEST_MEM,share=on" -machine "memory-backend=mem"
		-kernel "$KIT/vmlinux" -initrd "$KIT/initramfs.cpio"
		-append "console=ttyS0 quiet panic=-1 oops=panic no_timer_check"
		-fw_cfg "name=opt/test,file=$WORK/$name.guest.sh"
		-display none -nodefaults -no-user-config -monitor none -serial "file:$WORK/$name.console"
		-no-reboot -net none -pidfile "$WORK/$name.qemu.pid")
	[ -z "${GUEST_QMP:-}" ] || args+=(-qmp "unix:$WORK/$name.qmp,server=on,wait=off")
	[ -z "${GUEST_INCOMING:-}" ] || args+=(-incoming "unix:$WORK/$name.mig")
	# qemu-storage-daemon 7.2 offers CONFIG_WCE with wce=0 in its config, so
	# the guest would run write-through and never flush; without CONFIG_WCE
	# the guest goes by VIRTIO_BLK_F_FLUSH. siovd gets QEMU's defaults.
	local extra=
	[ "$BACKEND" = qsd ] && extra=,config-wce=off
	for v in "$@"; do
		args+=(-chardev "socket,id=c$i,path=${VDEV_SOCK[$v]}${GUEST_RECONNECT:+,reconnect=1}")
		if [ -n "${VDEV_MAC[$v]:-}" ]; then
			# vectors=0: QEMU 7.2 under TCG crashes starting vhost-user net with MSI-X.
			local q=${VDEV_QUEUES[$v]} mq=
			[ "$q" = 1 ] || mq=",queues=$q"
			args+=(-netdev "vhost-user,id=n$i,chardev=c$i$mq"
				-device "virtio-net-pci,netdev=n$i,mac=${VDEV_MAC[$v]},vectors=0,romfile=,addr=$(printf '0x%x' $((16 + i)))${mq:+,mq=on}${VDEV_DEVOPTS[$v]:-}")
		else
			args+=(-device "vhost-user-blk-pci,chardev=c$i,num-queues=${VDEV_QUEUES[$v]},addr=$(printf '0x%x' $((16 + i)))$extra${VDEV_DEVOPTS[$v]:-}")
		fi
		i=$((i + 1))
	done
	: >"$WORK/$name.console"
	timeout -k 5 "$secs" qemu-system-x86_64 "${args[@]}" >"$WORK/$name.qemu.log" 2>&1 &
	GUEST_PID=$!
	PIDS+=("$GUEST_PID")
	log "guest $name started on $*"
}

# guest_wait NAME: waits for the guest started last and judges it by its
# console markers.
guest_wait() {
	local name=$1 rc=0 size last=-1 quiet=0
	# A guest that prints nothing for $STALL s is stuck (a request that never
	# completes): end it now rather than at QEMU's timeout.
	while kill -0 "$GUEST_PID" 2>/dev/null; do
		size=$(stat -c %s "$WORK/$name.console" 2>/dev/null || echo 0)
		if [ "$size" = "$last" ]; then
			quiet=$((quiet + 1))
		else
			quiet=0 last=$size
		fi
		if [ $quiet -ge $((STALL * 5)) ]; then
			kill -9 "$(cat "$WORK/$name.qemu.pid" 2>/dev/null)" 2>/dev/null || true
			wait "$GUEST_PID" 2>/dev/null || true
			die "guest $name stalled: no console output for $STALL s (last line: $(tail -n1 "$WORK/$name.console" | tr -d '\r'))"
		fi
		sleep 0.2
	done
	wait "$GUEST_PID" || rc=$?
	forget_pid "$GUEST_PID"
	rm -f "$WORK/$name.qemu.pid"
	[ "${SIOV_GUEST_VERBOSE:-0}" = 1 ] && sed "s/^/  $name| /" "$WORK/$name.console" >&2
	if grep -q '^SIOV-TEST-PASS' "$WORK/$name.console"; then
		log "guest $name passed (booted in $(sed -n 's/^SIOV-GUEST-UP //p' "$WORK/$name.console" | tr -d '\r'))"
		return 0
	fi
	local why
	why=$(grep -m1 '^SIOV-TEST-FAIL' "$WORK/$name.console" | tr -d '\r' || true)
	[ $rc = 124 ] || [ $rc = 137 ] && why="${why:-QEMU timed out}"
	[ -n "$why" ] || why="no result marker (QEMU exit status $rc): $(tail -n 3 "$WORK/$name.qemu.log" | tr '\n' ' ')"
	die "guest $name: $why"
}

# run_guest NAME SECONDS VDEV...: boot, run, judge.
run_guest() {
	guest_start "$@"
	guest_wait "$1"
}

# guest_wait_marker NAME TEXT SECONDS [PID]: waits for a line on the console
# of guest NAME, whose QEMU is PID (default: the last guest_start's).
guest_wait_marker() {
	local i=0 n=$(($3 * 10)) pid=${4:-$GUEST_PID}
	until grep -q "$2" "$WORK/$1.console"; do
		guest_failed "$1"
		kill -0 "$pid" 2>/dev/null || die "guest $1 ended before printing '$2'"
		i=$((i + 1))
		[ $i -le $n ] || die "guest $1: no '$2' within $3 s"
		sleep 0.1
	done
}

# guest_failed NAME: dies if guest NAME reported a failure on its console.
guest_failed() {
	if grep -q '^SIOV-TEST-FAIL' "$WORK/$1.console"; then
		die "guest $1: $(grep -m1 '^SIOV-TEST-FAIL' "$WORK/$1.console" | tr -d '\r')"
	fi
}

# guest_wait_requests NAME VDEV N SECONDS: waits until VDEV has served more
# than N requests (guest NAME's I/O reaches siovd); dies early if the guest
# reports a failure.
guest_wait_requests() {
	local i=0
	until [ "$(vstat "$2" .requests)" -gt "$3" ]; do
		guest_failed "$1"
		i=$((i + 1))
		[ $i -le $(($4 * 10)) ] || die "guest $1's I/O did not reach siovd: $2 served $(vstat "$2" .requests) requests in $4 s, want more than $3"
		sleep 0.1
	done
}

# guest_wait_round NAME SECONDS: waits until guest NAME (running fio_rounds)
# has finished one more round than it had when called.
guest_wait_round() {
	local i=0 r0
	r0=$(grep -c '^SIOV-FIO-OK' "$WORK/$1.console" || true)
	until [ "$(grep -c '^SIOV-FIO-OK' "$WORK/$1.console" || true)" -gt "$r0" ]; do
		i=$((i + 1))
		[ $i -le $(($2 * 10)) ] || die "guest $1: no fio round completed within $2 s"
		guest_failed "$1"
		kill -0 "$GUEST_PID" 2>/dev/null || die "guest $1 ended early"
		sleep 0.1
	done
}

# guest_kill9 NAME: the guest dies at once, as in a host crash of QEMU.
guest_kill9() {
	local pid
	pid=$(cat "$WORK/$1.qemu.pid") || die "no pid file for guest $1"
	kill -9 "$pid"
	wait "$GUEST_PID" 2>/dev/null || true
	forget_pid "$GUEST_PID"
	rm -f "$WORK/$1.qemu.pid"
	log "guest $1 killed with SIGKILL"
}

# ---- host-side checks of the backend file -----------------------------------

# file_fill FILE OFF LEN SEED [LOGICAL] / file_check ... / file_zeros FILE OFF LEN
file_fill() { "$KIT/blkop" fill "$@" || die "could not write $1"; }
file_check() {
	"$KIT/blkop" check "$@" || die "backend file: bytes at $2 (+$3) are not pattern $4 ${5:+(written by the guest at $5)}"
}
file_zeros() { "$KIT/blkop" zeros "$@" || die "backend file: [$2, +$3) is not zeros"; }

MiB=$((1024 * 1024))

# layout SIZE BASESEED OFF:LEN:SEED...: the ranges of a window of SIZE bytes,
# sorted, with the gaps between the given ranges holding BASESEED. Prints
# OFF:LEN:SEED words covering [0, SIZE).
layout() {
	local size=$1 base=$2 pos=0 r off len
	shift 2
	for r in $(printf '%s\n' "$@" | sort -t: -k1,1n); do
		off=${r%%:*}
		len=${r#*:}
		len=${len%%:*}
		[ "$off" -gt $pos ] && printf '%s ' "$pos:$((off - pos)):$base"
		printf '%s ' "$r"
		pos=$((off + len))
	done
	[ $pos -lt "$size" ] && printf '%s ' "$pos:$((size - pos)):$base"
	echo
}

# file_layout FILE BASE OFF:LEN:SEED...: the window at BASE in FILE holds
# the layout (SEED z: zeros), with patterns keyed to guest offsets.
file_layout() {
	local f=$1 base=$2 r off len seed
	shift 2
	for r in "$@"; do
		off=${r%%:*}
		r=${r#*:}
		len=${r%%:*}
		seed=${r#*:}
		if [ "$seed" = z ]; then
			file_zeros "$f" $((base + off)) "$len"
		else
			file_check "$f" $((base + off)) "$len" "$seed" "$off"
		fi
	done
}
