# Live migration on one machine, sourced after lib.sh by the migration test,
# the demo and bench/migrate.sh.  Two back-end instances ("sides" A and B)
# stand for two hosts sharing storage: both serve a VDEV on the same file.  A
# guest runs in a QEMU on one side; a second QEMU with the same command line
# and -incoming waits on the other; QMP `migrate` moves the guest across.
#
#   side_start X          siovd instance X (test/lib/siovd.sh: siovd_inst_start X WORK/side-X),
#                         or, for qemu-storage-daemon, only its dir
#   side_stop X           SIGTERM (siovd_inst_stop); must exit 0, leave no socket,
#                         log no sanitizer report
#   side_restart X        side_stop, then siovd X again on its state dir
#   side_use X            later ctl/stats/vstat calls go to X
#   side_vdev X NAME FILE OFF SIZE   a backend on FILE and a VDEV (default queues) on it
#   vm_start VM X VDEV [incoming]    a QEMU (2 vCPUs, no num-queues) on X's socket of VDEV
#   vm_migrate FROM TO    QMP migrate FROM -> TO (TO was started with incoming);
#                         sets MIG_TOTAL_MS, MIG_DOWNTIME_MS and MIG_STATUS
#   vm_quit VM            QMP quit, wait for the process
QMP="$GUEST_SRC/qmp.py"
declare -A SIDE_PID=() SIDE_RPC=() VM_PID=() VM_SIDE=()
MIG_TOTAL_MS= MIG_DOWNTIME_MS= MIG_STATUS=

# side_start X: siovd through test/lib/siovd.sh's multi-instance half
# (instance X in WORK/side-X, log WORK/side-X/siovd.log), ready once it
# answers daemon_info; after side_stop, again on the same state dir and options.
side_start() {
	local x=$1 d=$WORK/side-$1
	case "$BACKEND" in
	siovd)
		if [ -n "${SIOVD_INST_DIR[$x]:-}" ]; then
			siovd_inst_restart "$x" || die "siovd $x did not start again and answer daemon_info"
		else
			# shellcheck disable=SC2086 # SIOV_GUEST_SIOVD_ARGS is a list of options
			siovd_inst_start "$x" "$d" ${SIOV_GUEST_SIOVD_ARGS:-} || die "siovd $x did not start and answer daemon_info"
		fi
		SIDE_PID[$x]=${SIOVD_INST_PID[$x]}
		PIDS+=("${SIDE_PID[$x]}")
		SIDE_RPC[$x]=${SIOVD_INST_RPC[$x]}
		;;
	qsd) mkdir -p "$d" ;; # started by side_vdev: qsd takes its exports on the command line
	esac
}

side_use() {
	RPC=${SIDE_RPC[$1]}
	BE_PID=${SIDE_PID[$1]}
}

side_vdev() {
	local x=$1 name=$2 file=$3 off=$4 size=$5 sock=$WORK/side-$1/$2.sock
	VDEV_SOCK["$x/$name"]=$sock
	case "$BACKEND" in
	siovd)
		side_use "$x"
		ctl backend_create --name "b_$name" --type file --path "$file" \
			--size $((off + size)) >/dev/null || die "backend_create on $x failed"
		ctl vdev_create --name "$name" --type blk --backend "b_$name" --offset "$off" \
			--size "$size" --socket "$sock" >/dev/null || die "vdev_create $name on $x failed"
		;;
	qsd)
		[ -e "$file" ] || truncate -s $((off + size)) "$file"
		# locking=off: two daemons on one file stand for two hosts on shared storage.
		qemu-storage-daemon \
			--blockdev "driver=file,node-name=f0,filename=$file,cache.direct=on,aio=io_uring,locking=off" \
			--blockdev "driver=raw,node-name=d0,file=f0,offset=$off,size=$size" \
			--export "type=vhost-user-blk,id=e0,node-name=d0,addr.type=unix,addr.path=$sock,writable=on,num-queues=2" \
			> >(sed -u "s/^/[qsd $x] /" >>"$WORK/backend.log") 2>&1 &
		SIDE_PID[$x]=$!
		PIDS+=("${SIDE_PID[$x]}")
		;;
	esac
	wait_for_path "$sock" 20 "${SIDE_PID[$x]}"
}

side_stop() {
	local x=$1 rc=0 pid=${SIDE_PID[$1]} s
	if [ "$BACKEND" = siovd ]; then
		siovd_inst_stop "$x" || rc=$?
		forget_pid "$pid"
		[ $rc = 0 ] || die "siovd $x did not stop cleanly (see above)"
		for s in "${!VDEV_SOCK[@]}"; do
			[ "${s%%/*}" != "$x" ] || [ ! -e "${VDEV_SOCK[$s]}" ] ||
				die "siovd $x left its socket ${VDEV_SOCK[$s]} behind"
		done
		return 0
	fi
	kill -TERM "$pid" 2>/dev/null || die "side $x ($BACKEND) was gone before SIGTERM"
	timeout 20 tail --pid="$pid" -f /dev/null || die "side $x did not exit within 20 s of SIGTERM"
	wait "$pid" || rc=$?
	forget_pid "$pid"
	! grep -Eq "$SIOVD_SANITIZER_RE" "$WORK/backend.log" || die "$BACKEND log has a sanitizer report"
	# qemu-storage-daemon ends with status 0 or by the signal it got.
	[ $rc = 0 ] || [ $rc = 143 ] || die "side $x exited with status $rc after SIGTERM"
}

# side_restart X: siovd X stops and starts again on its state dir.
side_restart() {
	local s
	side_stop "$1"
	side_start "$1"
	for s in "${!VDEV_SOCK[@]}"; do
		[ "${s%%/*}" != "$1" ] || wait_for_path "${VDEV_SOCK[$s]}" 20 "${SIDE_PID[$1]}"
	done
}

# QEMU 7.2's multi-threaded TCG now and then loses guest writes across a
# migration: the destination guest dies of kernel list corruption or a
# smashed stack, on qemu-storage-daemon as on siovd (measured: 1 of 2 runs of
# each on the loaded 2-core machine).  One TCG thread for all vCPUs avoids it.
mig_accel() {
	[ "$ACCEL" = tcg ] && echo tcg,thread=single || echo "$ACCEL"
}

# vm_start VM SIDE VDEV SCRIPT [incoming]: the guest, or its destination.
vm_start() {
	local vm=$1 x=$2 vdev=$3 script=$4 incoming=${5:-}
	local args=(-accel "$(mig_accel)" -m "$GUEST_MEM" -smp 2
		-object "memory-backend-memfd,id=mem,size=$GUEST_MEM,share=on" -machine "memory-backend=mem"
		-kernel "$KIT/vmlinux" -initrd "$KIT/initramfs.cpio"
		# no_timer_check: on a loaded host TCG fails the kernel's IO-APIC timer check.
		-append "console=ttyS0 quiet panic=-1 oops=panic no_timer_check"
		-fw_cfg "name=opt/test,file=$WORK/$script.guest.sh"
		-display none -nodefaults -no-user-config -monitor none -serial "file:$WORK/$vm.console"
		-qmp "unix:$WORK/$vm.qmp,server=on,wait=off"
		-no-reboot -net none -pidfile "$WORK/$vm.qemu.pid"
		-chardev "socket,id=c0,path=${VDEV_SOCK[$x/$vdev]},reconnect=1"
		# No num-queues: QEMU's default, one queue per vCPU.
		-device "vhost-user-blk-pci,chardev=c0,addr=0x10")
	[ -z "$incoming" ] || args+=(-incoming "unix:$WORK/$vm.mig")
	: >"$WORK/$vm.console"
	timeout -k 5 600 qemu-system-x86_64 "${args[@]}" >"$WORK/$vm.qemu.log" 2>&1 &
	VM_PID[$vm]=$!
	VM_SIDE[$vm]=$x
	PIDS+=("${VM_PID[$vm]}")
	wait_for_path "$WORK/$vm.qmp" 20 "${VM_PID[$vm]}"
	[ -z "$incoming" ] || wait_for_path "$WORK/$vm.mig" 20 "${VM_PID[$vm]}"
	log "QEMU $vm started on side $x${incoming:+ (incoming)}"
}

qmp() { timeout 60 "$QMP" "$WORK/$1.qmp" "${@:2}"; }

# vm_migrate FROM TO [HOOK...]: migrates; HOOK (a command) runs once the
# migration is under way, and the migration must still be active when it
# returns.  Sets MIG_STATUS, MIG_TOTAL_MS, MIG_DOWNTIME_MS; dies unless the
# migration completed or HOOK cancelled it.
vm_migrate() {
	local from=$1 to=$2 out rc=0 st
	shift 2
	qmp "$from" migrate "{\"uri\":\"unix:$WORK/$to.mig\"}" >/dev/null || die "QMP migrate $from -> $to refused"
	if [ $# -gt 0 ]; then
		"$@"
		st=$(qmp "$from" query-migrate | jq -r .status)
		case "$st" in
		active | cancelling | cancelled) ;;
		*) die "migration $from -> $to was $st, not active, when '$*' was done (too fast)" ;;
		esac
	fi
	out=$(timeout 300 "$QMP" "$WORK/$from.qmp" wait-migrate 280) || rc=$?
	MIG_STATUS=$(jq -r .status <<<"$out")
	MIG_TOTAL_MS=$(jq -r '."total-time" // empty' <<<"$out")
	MIG_DOWNTIME_MS=$(jq -r '.downtime // empty' <<<"$out")
	log "migration $from -> $to: $MIG_STATUS${MIG_TOTAL_MS:+, total ${MIG_TOTAL_MS} ms, downtime ${MIG_DOWNTIME_MS} ms}"
	[ "$MIG_STATUS" = completed ] || [ "$MIG_STATUS" = cancelled ] || die "migration $from -> $to: $out"
}

# cancel_after VM SECONDS: a hook for vm_migrate.
cancel_after() {
	sleep "$2"
	[ "$(qmp "$1" query-migrate | jq -r .status)" = active ] || die "migration no longer active after $2 s"
	qmp "$1" migrate_cancel >/dev/null
}

vm_quit() {
	local pid=${VM_PID[$1]}
	qmp "$1" quit >/dev/null 2>&1 || true
	timeout 20 tail --pid="$pid" -f /dev/null || kill -9 "$pid" 2>/dev/null || true
	wait "$pid" 2>/dev/null || true
	forget_pid "$pid"
	rm -f "$WORK/$1.qemu.pid"
}

# vm_wait_marker VM TEXT SECONDS
vm_wait_marker() { guest_wait_marker "$1" "$2" "$3" "${VM_PID[$1]}"; }

# vm_alive_on SIDE: some QEMU started on SIDE is still running.
vm_alive_on() {
	local vm
	for vm in "${!VM_SIDE[@]}"; do
		[ "${VM_SIDE[$vm]}" = "$1" ] && kill -0 "${VM_PID[$vm]}" 2>/dev/null && return 0
	done
	return 1
}

# vm_wait_requests SIDE VDEV N SECONDS: the VDEV on SIDE served N more
# requests, within about SECONDS, and no longer than the side's guest lives:
# a guest that died (TCG's crash after a switch-over, which
# retry-tcg-crash.sh retries) ends the wait at once.
vm_wait_requests() {
	local n0 i=0
	# qemu-storage-daemon has no statistics: give the guest time to do I/O.
	[ "$BACKEND" = siovd ] || { sleep 3; return 0; }
	side_use "$1"
	n0=$(vstat "$2" .requests)
	until [ "$(vstat "$2" .requests)" -ge $((n0 + $3)) ]; do
		vm_alive_on "$1" || die "no guest runs on side $1 any more (VDEV $2 served $(($(vstat "$2" .requests) - n0)) of $3 requests)"
		i=$((i + 1))
		[ $i -le $(($4 * 10)) ] || die "VDEV $2 on side $1 served fewer than $3 requests in $4 s: $(stats "$2")"
		sleep 0.1
	done
}

# The guest's workload: fio crc32c-verified random writes in rounds until the
# host sets the stop flag (a block of pattern 77 at STOP), then a check of the
# data written before the first migration.  Marker: SIOV-IO-RUNNING.
migrate_guest_script() {
	guest_script "$1" MiB=$MiB STOP=$((30 * MiB)) ROUND=${2:-3} <<'G'
wait_disks 1
fill vda 0 $((8 * MiB)) 50
echo SIOV-IO-RUNNING
round=0
while ! blkop check /dev/vda $STOP 4096 77 >/dev/null 2>&1; do
	round=$((round + 1))
	[ $round -le 200 ] || fail "no stop flag after 200 rounds"
	fio --name=r$round --filename=/dev/vda --ioengine=libaio --iodepth=8 --direct=1 --rw=randwrite \
		--bssplit=4k/60:16k/30:64k/10 --offset=$((8 * MiB)) --size=$((16 * MiB)) --time_based \
		--runtime=$ROUND --verify=crc32c --verify_fatal=1 --verify_backlog=64 --eta=never \
		--output=/tmp/fio.out || { cat /tmp/fio.out; fail "fio round $round failed (I/O or verify error)"; }
	grep -q 'err= 0' /tmp/fio.out || { cat /tmp/fio.out; fail "fio round $round reported an error"; }
	echo "SIOV-ROUND $round"
done
check vda 0 $((8 * MiB)) 50
say "$round rounds of verified random writes, every block verified, data written before the migrations intact"
G
}

# stop_guest_io FILE OFF: sets the stop flag in the window at OFF of FILE.
stop_guest_io() {
	"$KIT/blkop" fill "$1" $(($2 + 30 * MiB)) 4096 77 $((30 * MiB)) || die "cannot set the stop flag"
}
