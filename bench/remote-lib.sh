# Shell helpers for the bench sections of the remote backends (nbd.sh,
# rbd.sh; sourced after lib.sh, not run).  Both compare siovd's backend with
# qemu-storage-daemon's client for the same server, one vhost-user-blk socket
# each, in alternating rounds over the same RWS x QDS grid and the same
# figures; only the backend and the server differ, so that is all a section
# says: its backend_create arguments, its --blockdev, and its name and label.

# remote_start_siovd BACKEND_CREATE_ARGS...: siovd with backend b0 made from
# those arguments and VDEV v0 on $WORK/vu.sock, on CPU $TCPU.
remote_start_siovd() {
	mkdir -p "$WORK/state"
	taskset -c "$TCPU" "$SIOVD" --rpc-socket "$WORK/rpc.sock" --state-dir "$WORK/state" \
		>"$WORK/target.log" 2>&1 &
	TPID=$!
	wait_sock "$WORK/rpc.sock" "$TPID" || return 1
	"$SIOVCTL" -s "$WORK/rpc.sock" backend_create --name b0 "$@" >/dev/null || return 1
	"$SIOVCTL" -s "$WORK/rpc.sock" vdev_create --name v0 --type blk --backend b0 \
		--socket "$WORK/vu.sock" --queues 1 >/dev/null || return 1
	wait_sock "$WORK/vu.sock" "$TPID"
}

# remote_start_qsd BLOCKDEV: qemu-storage-daemon with node d0 from BLOCKDEV
# exported on $WORK/vu.sock, on CPU $TCPU.
remote_start_qsd() {
	taskset -c "$TCPU" "$QSD" --blockdev "$1" \
		--export "type=vhost-user-blk,id=e0,node-name=d0,addr.type=unix,addr.path=$WORK/vu.sock,writable=on,num-queues=1" \
		>"$WORK/target.log" 2>&1 &
	TPID=$!
	wait_sock "$WORK/vu.sock" "$TPID"
}

# remote_record NAME LABEL SIDE RW QD JSON: IOPS, IOPS per target CPU-second
# and mean latency of one run as figures NAME.RW.4k.qdQD.*
remote_record() {
	local name=$1 id=$1.$4.4k.qd$5 what="$2, 4 KiB $4, QD $5" side=$3 json=$6
	if [ ! -s "$json" ]; then
		$FIG add "$DIR" --id "$id.iops" --side "$side" --value none
		return
	fi
	$FIG add "$DIR" --id "$id.iops" --side "$side" --value "$(jget "$json" 'd["iops"]')" --label "$what: IOPS" --unit IOPS
	$FIG add "$DIR" --id "$id.iops_per_cpu_s" --side "$side" --value "$(jget "$json" 'd["iops_per_target_cpu_s"]')" \
		--label "$what: IOPS per target CPU-second" --unit "IOPS/CPU-s"
	$FIG add "$DIR" --id "$id.lat_mean_us" --side "$side" --value "$(jget "$json" 'd["lat_ns"]["mean"]/1e3')" \
		--label "$what: mean latency" --unit "µs" --better lower
	echo "$name: $side $4 qd=$5: $(jget "$json" '"%.0f IOPS, mean %.1f us, %.2f of a CPU" % (d["iops"], d["lat_ns"]["mean"]/1e3, d["target_cpu_s"]/d["runtime_s"])')"
}

# remote_rounds NAME LABEL: $ROUNDS rounds of RWS x QDS, siovd and
# qemu-storage-daemon alternating (the section's start_siovd / start_qsd),
# then the siovd/qsd ratios.
remote_rounds() {
	local name=$1 label=$2 round rw qd side out
	for round in $(seq "$ROUNDS"); do
		for rw in $RWS; do for qd in $QDS; do
			for side in siovd qsd; do
				[ "$side" = qsd ] && [ -z "$QSD" ] && continue
				out=$DIR/raw/$side-$rw-qd$qd-r$round.json
				run_target "$side" "$name" "$out" --rw "$rw" --bs 4k --iodepth "$qd" --irq || true
				remote_record "$name" "$label" "$side" "$rw" "$qd" "$out"
			done
		done; done
	done
	[ -n "$QSD" ] || return 0
	for rw in $RWS; do for qd in $QDS; do
		$FIG ratio "$DIR" --id "$name.$rw.4k.qd$qd.iops" --of siovd --to qsd
		$FIG ratio "$DIR" --id "$name.$rw.4k.qd$qd.iops_per_cpu_s" --of siovd --to qsd
	done; done
}
