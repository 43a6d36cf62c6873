#!/bin/bash
# siovd -> siovd gateway: instance A serves two VDEVs of a file over NBD on
# loopback TCP, one with TLS (x509, client certificate required) and one
# without; instance B has NBD backends on them and a Linux guest runs
# verified fio (crc32c) on both disks.  In the middle of the run A is
# SIGKILLed and started again 1 s later on its state dir (which must bring
# back the file backend, the VDEVs and both exports): B reconnects, resubmits
# what was in flight, and the guest sees no error, no fio verify failure and
# nothing in dmesg.  Also: an export on a non-loopback address without TLS
# is refused; a client without TLS is refused by the TLS export.
# Usage: t-gateway.sh --siovd PATH --siovctl PATH --cache DIR
. "$(dirname "$0")/../guest/lib.sh"
[ "${SIOV_GUEST_BACKEND:-siovd}" = siovd ] || skip "the gateway is siovd's"
command -v python3 >/dev/null || skip "python3 missing (free ports)"
command -v certtool >/dev/null || skip "certtool missing (gnutls-bin)"
setup "$@"

actl() { timeout 30 "$SIOVCTL" -s "${SIOVD_INST_RPC[a]}" "$@"; }
A_PID=
# a_start: instance A (test/lib/siovd.sh) in WORK/a, its log WORK/a.log,
# ready once it answers daemon_info; after a kill, again on its state dir.
a_start() {
	SIOVD_INST_LOG[a]=$WORK/a.log
	if [ -n "${SIOVD_INST_DIR[a]:-}" ]; then
		siovd_inst_restart a || die "instance A did not start again and answer daemon_info"
	else
		siovd_inst_start a "$WORK/a" --engines 1 || die "instance A did not start and answer daemon_info"
	fi
	A_PID=${SIOVD_INST_PID[a]}
	PIDS+=("$A_PID")
}

"$(dirname "$0")/mkcerts.sh" "$WORK/pki" || die "mkcerts failed"
disk=$WORK/a-disk.img
W=$((24 * MiB)) FIO=$((8 * MiB)) FLAG=$((20 * MiB))
G0_OFF=$((1 * MiB)) G1_OFF=$((1 * MiB + W))
P0=$(free_port) P1=$(free_port)
a_start
actl backend_create --name f0 --type file --path "$disk" --size $((2 * W + 2 * MiB)) >/dev/null
actl vdev_create --name g0 --backend f0 --offset $G0_OFF --size $W --socket "$WORK/g0.vu.sock" >/dev/null
actl vdev_create --name g1 --backend f0 --offset $G1_OFF --size $W --socket "$WORK/g1.vu.sock" >/dev/null
if out=$(actl export_create --vdev g1 --listen "tcp:0.0.0.0:$P1" 2>&1); then
	die "an export without TLS on 0.0.0.0 was accepted"
fi
echo "$out" | grep -q "loopback only" || die "unexpected refusal: $out"
actl export_create --vdev g0 --listen "tcp:127.0.0.1:$P0" --tls-creds "$WORK/pki/server" >/dev/null
actl export_create --vdev g1 --listen "tcp:127.0.0.1:$P1" >/dev/null
log "instance A exports g0 on 127.0.0.1:$P0 (TLS) and g1 on 127.0.0.1:$P1"

be_start
if out=$(ctl backend_create --name bad --type nbd --uri "nbd://127.0.0.1:$P0/g0" 2>&1); then
	die "instance B connected to the TLS export without TLS"
fi
echo "$out" | grep -qi "tls" || die "unexpected error for a client without TLS: $out"
ctl backend_create --name n0 --type nbd --uri "nbds://127.0.0.1:$P0/g0" --tls-creds "$WORK/pki/client" \
	--settle-ms 300 >/dev/null || die "backend n0 (nbds) failed"
ctl backend_create --name n1 --type nbd --uri "nbd://127.0.0.1:$P1/g1" --settle-ms 300 >/dev/null ||
	die "backend n1 failed"
be_vdev v0 n0 0 $W 1
be_vdev v1 n1 0 $W 1
be_ready

guest_script g NDISK=2 FIO=$FIO FLAG=$FLAG <<'G'
wait_disks $NDISK
fio_rounds $FIO 0 vda $FLAG vda vdb
say "$ROUNDS fio rounds verified through the gateway, no I/O error"
G
guest_start g 240 v0 v1
guest_wait_marker g SIOV-FIO-ROUND 90
# Kill A while the guest's I/O is flowing through it.
guest_wait_requests g v0 200 60
guest_wait_requests g v1 200 60
log "before the kill: v0 $(stats v0 | jq -c '{requests, inflight}'), v1 $(stats v1 | jq -c '{requests, inflight}')"
forget_pid "$A_PID"
siovd_inst_kill a
log "instance A SIGKILLed"
sleep 1
a_start
actl export_list | jq -e 'length == 2' >/dev/null || die "instance A did not restore both exports: $(actl export_list)"
log "instance A restarted from its state dir: $(grep 'state: restored' "$WORK/a.log" | tail -n1 | sed 's/.*info: //')"
# The guest must go on: another full round after the restart, then stop.
guest_wait_round g 90
# A backend reconnects when its next request comes (fio's jobs on the two
# disks end at different times): wait for both.
for n in n0 n1; do
	i=0
	until grep -q "backend '$n': reconnected" "$WORK/backend.log"; do
		i=$((i + 1))
		[ $i -le 600 ] || die "B did not reconnect $n within 60 s"
		guest_failed g
		sleep 0.1
	done
done
log "B: $(grep "backend 'n0': reconnected" "$WORK/backend.log" | tail -n1 | sed 's/.*info: //')"
log "B: $(grep "backend 'n1': reconnected" "$WORK/backend.log" | tail -n1 | sed 's/.*info: //')"
file_fill "$disk" $((G0_OFF + FLAG)) 4096 77 $FLAG
sync "$disk"
guest_wait g
for v in v0 v1; do
	[ "$(vstat $v .errors)" = 0 ] || die "$v counts errors: $(stats $v)"
done
actl export_list | jq -e 'all(.[]; .requests > 0 and .protocol_errors == 0)' >/dev/null ||
	die "A's exports after the restart: $(actl export_list)"
log "$(grep -c '^SIOV-FIO-OK' "$WORK/g.console") fio rounds verified; A after the restart: $(actl export_list | jq -c '[.[] | {vdev, requests, errors}]')"
be_alive
be_stop
rc=0
siovd_inst_stop a || rc=$?
forget_pid "$A_PID"
[ $rc = 0 ] || die "instance A did not stop cleanly (see above)"
