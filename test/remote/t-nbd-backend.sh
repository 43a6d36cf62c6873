#!/bin/bash
# The NBD backend against nbdkit (file plugin), from a libsiov client
# (siov-bench --verify) on a VDEV of it:
#  1. clear errors for an unreachable server, a bad URI, a read-only export
#     offered as writable, a size larger than the export, a parameter of
#     another backend type;
#  2. nbdkit (TCP) is SIGKILLed under verified random I/O and started again
#     0.5 s later: the client sees no error and every read verifies; siovd
#     says it reconnected and resubmitted; and no write reaches the new
#     connection before settle_ms after the loss (nbdkit's log filter);
#  3. a server that stays away: requests fail with EIO after timeout_ms (and
#     siovd says why), siovd stays up, and when the server is back the same
#     VDEV works again;
#  4. the backend (URI, timeout, settle) survives a siovd restart, even one
#     while its server is away (it starts disconnected with the saved size).
# Usage: t-nbd-backend.sh SIOVD SIOVCTL SIOV_BENCH
. "$(dirname "$0")/lib.sh"
command -v nbdkit >/dev/null || skip "nbdkit not installed"
command -v python3 >/dev/null || skip "python3 not installed (free ports)"
setup "$@"

MiB=1048576
SETTLE_MS=1500
truncate -s $((64 * MiB)) "$WORK/disk.img" "$WORK/disk2.img"
PORT=$(free_port)
URI=nbd://127.0.0.1:$PORT/
serve() { # serve NAME LOGFILTER_FILE: nbdkit on PORT over disk.img
	nbdkit_start "$1" -p "$PORT" -i 127.0.0.1 --filter=log file "$WORK/disk.img" logfile="$2"
	wait_port "$PORT" 10 "${NBDKIT_PID[$1]}"
}
serve s1 "$WORK/reqs-1.txt"
nbdkit_start ro -U "$WORK/ro.sock" -r file "$WORK/disk2.img"
wait_for_path "$WORK/ro.sock" 10 "${NBDKIT_PID[ro]}"
instance_start a

# ---- 1. errors a user can act on ---------------------------------------------
ctl_fails a "cannot connect to NBD server .*No such file" backend_create --name e1 --type nbd \
	--uri "nbd+unix:///?socket=$WORK/nothing.sock"
ctl_fails a "cannot connect to NBD server" backend_create --name e2 --type nbd --uri "http://x/"
ctl_fails a "is read-only \(add readonly\)" backend_create --name e3 --type nbd \
	--uri "nbd+unix:///?socket=$WORK/ro.sock"
ctl_fails a "larger than the NBD export" backend_create --name e4 --type nbd --uri "$URI" --size 1G
ctl_fails a "'path' is not valid for type 'nbd'" backend_create --name e5 --type nbd --uri "$URI" --path /x
ctl_fails a "missing parameter 'uri'" backend_create --name e6 --type nbd
ctl a backend_create --name ro --type nbd --uri "nbd+unix:///?socket=$WORK/ro.sock" --readonly >/dev/null
ctl a backend_delete --name ro >/dev/null

# ---- 2. the server dies under verified I/O and comes back ---------------------
ctl a backend_create --name n0 --type nbd --uri "$URI" --settle-ms $SETTLE_MS --timeout-ms 20000 >/dev/null
ctl a vdev_create --name v0 --backend n0 --size $((32 * MiB)) --socket "$WORK/v0.sock" >/dev/null
bench_start "$WORK/bench-2.out" --socket "$WORK/v0.sock" --rw randrw --bs 4k --iodepth 16 --runtime 7 --verify
# Until I/O flows (not a fixed 2.5 s: a loaded machine may start the client later).
io_flows() { [ "$(vstat a v0 .requests)" -gt 100 ]; }
wait_until 30 "no I/O flows on v0 within 30 s" io_flows
T_KILL=$(now) # before the kill: siovd cannot notice the loss earlier
nbdkit_kill9 s1
log "nbdkit SIGKILLed with $(vstat a v0 .inflight) request(s) in flight in siovd"
sleep 0.5
serve s2 "$WORK/reqs-2.txt"
bench_wait "$WORK/bench-2.out"
grep -q "backend 'n0': reconnected to $URI" "$WORK/siovd-a.log" || die "siovd did not say it reconnected"
log "siovd: $(grep -m1 "backend 'n0': lost" "$WORK/siovd-a.log" | sed 's/.*warn: //')"
log "siovd: $(grep -m1 "backend 'n0': reconnected" "$WORK/siovd-a.log" | sed 's/.*info: //')"
[ "$(vstat a v0 .errors)" = 0 ] || die "v0 counts errors: $(ctl a vdev_stats --name v0)"
# The fence: the first write the new server saw came settle_ms after the loss or later.
first=$(grep -m1 ' Write ' "$WORK/reqs-2.txt" | awk '{print $1" "$2}')
[ -n "$first" ] || die "the restarted nbdkit saw no write"
gap=$(awk -v a="$T_KILL" -v b="$(date -d "$first" +%s.%N)" 'BEGIN{printf "%.3f", b-a}')
awk -v g="$gap" -v s=$SETTLE_MS 'BEGIN{exit !(g * 1000 >= s)}' ||
	die "the first write reached the new connection ${gap} s after the loss, before settle_ms=$SETTLE_MS"
log "first write on the new connection ${gap} s after the kill (settle_ms=$SETTLE_MS)"

# ---- 3. a server that stays away: a clear error after timeout_ms ---------------
nbdkit_start u2 -U "$WORK/u2.sock" file "$WORK/disk2.img"
wait_for_path "$WORK/u2.sock" 10 "${NBDKIT_PID[u2]}"
ctl a backend_create --name n1 --type nbd --uri "nbd+unix:///?socket=$WORK/u2.sock" --timeout-ms 1000 \
	--settle-ms 0 >/dev/null
ctl a vdev_create --name v1 --backend n1 --size $((16 * MiB)) --socket "$WORK/v1.sock" >/dev/null
nbdkit_kill9 u2
rm -f "$WORK/u2.sock"
timeout 30 "$BENCH" --socket "$WORK/v1.sock" --rw randwrite --bs 4k --iodepth 4 --runtime 3 \
	>"$WORK/bench-3.out" 2>&1 || true
errs=$(vstat a v1 .errors)
[ "$errs" -gt 0 ] || die "with the server gone for 3 s and timeout_ms=1000, v1 counts no error"
grep -q "backend 'n1': NBD server .* unreachable for 1000 ms: failing" "$WORK/siovd-a.log" ||
	die "siovd did not say why it failed the requests"
kill -0 "${SIOVD_INST_PID[a]}" || die "siovd died"
log "server gone: $errs request(s) failed after 1 s, $(grep -m1 "backend 'n1': NBD server" "$WORK/siovd-a.log" | sed 's/.*error: //')"
nbdkit_start u3 -U "$WORK/u2.sock" file "$WORK/disk2.img"
wait_for_path "$WORK/u2.sock" 10 "${NBDKIT_PID[u3]}"
# The backoff between attempts is at most timeout_ms/4: the first request
# finds the server again well within its 1 s.
bench_start "$WORK/bench-3b.out" --socket "$WORK/v1.sock" --rw randrw --bs 4k --iodepth 8 --runtime 2 --verify
bench_wait "$WORK/bench-3b.out"

# ---- 4. persisted, and a restart while one server is away ---------------------
instance_stop a
nbdkit_kill9 u3
rm -f "$WORK/u2.sock"
instance_start a
grep -q "backend 'n1': NBD server .* is unreachable .*starting disconnected" "$WORK/siovd-a.log" ||
	die "n1 was not restored disconnected while its server was away"
ctl a vdev_list | jq -e '[.[]? // . | .name] | index("v1") != null' >/dev/null || die "v1 was not restored"
nbdkit_start u4 -U "$WORK/u2.sock" file "$WORK/disk2.img"
wait_for_path "$WORK/u2.sock" 10 "${NBDKIT_PID[u4]}"
bench_start "$WORK/bench-4b.out" --socket "$WORK/v1.sock" --rw randrw --bs 4k --iodepth 8 --runtime 2 --verify
bench_wait "$WORK/bench-4b.out"
log "n1 came back disconnected after the restart and found its server when it returned"
conf=$(ctl a backend_list | jq -c '[if type == "array" then .[] else . end | select(.name == "n0")][0]')
echo "$conf" | jq -e --arg u "$URI" '.type == "nbd" and .uri == $u and .settle_ms == 1500 and .timeout_ms == 20000' >/dev/null ||
	die "backend n0 after the restart: $conf"
wait_for_path "$WORK/v0.sock" 10 "${SIOVD_INST_PID[a]}"
bench_start "$WORK/bench-4.out" --socket "$WORK/v0.sock" --rw randrw --bs 4k --iodepth 8 --runtime 2 --verify
bench_wait "$WORK/bench-4.out"
instance_stop a
