# A one-node Ceph cluster from Debian's packages, everything under one
# directory, for the RBD tests and benchmarks: one mon on 127.0.0.1 at a free
# port and one OSD on memstore, no mgr, no auth (cephx off), pool size 1.
# Sourced; needs PIDS (an array the caller kills at exit), log and die.
#   ceph_start DIR   -> CEPH_CONF=DIR/ceph.conf, CEPH_MON_PID, CEPH_OSD_PID; pool "rbd"
#   ceph_stop        -> stops both daemons by pid
#   ceph_missing     -> prints why the cluster cannot run here (empty if it can)

ceph_missing() {
	local b
	for b in ceph-mon ceph-osd ceph monmaptool rbd; do
		command -v $b >/dev/null || { echo "$b not installed (ceph-mon ceph-osd ceph-common)"; return; }
	done
	command -v python3 >/dev/null || echo "python3 missing (free ports)"
}

ceph_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

ceph_start() {
	local d=$1 port fsid uuid i
	mkdir -p "$d/mon" "$d/osd" "$d/run"
	port=$(ceph_port)
	fsid=$(cat /proc/sys/kernel/random/uuid)
	CEPH_CONF=$d/ceph.conf
	cat >"$CEPH_CONF" <<C
[global]
fsid = $fsid
mon host = 127.0.0.1:$port
mon initial members = a
auth cluster required = none
auth service required = none
auth client required = none
osd pool default size = 1
osd pool default min size = 1
osd crush chooseleaf type = 0
mon allow pool size one = true
mon allow pool delete = true
run dir = $d/run
admin socket = $d/run/\$name.\$pid.asok
log file = $d/\$name.log
pid file = $d/run/\$name.pid
ms bind ipv4 = true
ms bind ipv6 = false
osd objectstore = memstore
memstore device bytes = 1073741824
osd data = $d/osd
mon data = $d/mon
# A SIGKILLed client's watch expires soon, so that a new one may take its lock.
osd client watch timeout = 5
[client]
rbd cache = false
C
	export CEPH_CONF
	monmaptool --create --add a "127.0.0.1:$port" --fsid "$fsid" "$d/monmap" >/dev/null ||
		die "monmaptool failed"
	ceph-mon --mkfs -i a --monmap "$d/monmap" -c "$CEPH_CONF" >"$d/mkfs-mon.out" 2>&1 ||
		die "ceph-mon --mkfs failed: $(tail -n 3 "$d/mkfs-mon.out")"
	ceph-mon -i a -f -c "$CEPH_CONF" >>"$d/mon.out" 2>&1 &
	CEPH_MON_PID=$!
	PIDS+=("$CEPH_MON_PID")
	uuid=$(cat /proc/sys/kernel/random/uuid)
	for i in $(seq 100); do
		timeout 10 ceph -c "$CEPH_CONF" osd create "$uuid" >/dev/null 2>&1 && break
		kill -0 "$CEPH_MON_PID" 2>/dev/null || die "ceph-mon died: $(tail -n 5 "$d/mon.out" "$d/mon.a.log" 2>/dev/null)"
		sleep 0.2
	done
	[ "$i" -lt 100 ] || die "ceph-mon does not answer"
	ceph-osd -i 0 --mkfs --osd-uuid "$uuid" -c "$CEPH_CONF" >"$d/mkfs-osd.out" 2>&1 ||
		die "ceph-osd --mkfs failed: $(tail -n 3 "$d/mkfs-osd.out")"
	ceph-osd -i 0 -f -c "$CEPH_CONF" >>"$d/osd.out" 2>&1 &
	CEPH_OSD_PID=$!
	PIDS+=("$CEPH_OSD_PID")
	timeout 60 ceph -c "$CEPH_CONF" osd pool create rbd 8 >/dev/null 2>&1 || die "pool create failed"
	timeout 30 ceph -c "$CEPH_CONF" osd pool application enable rbd rbd >/dev/null 2>&1 || true
	for i in $(seq 150); do
		timeout 10 ceph -c "$CEPH_CONF" osd stat 2>/dev/null | grep -q "1 up" && break
		kill -0 "$CEPH_OSD_PID" 2>/dev/null || die "ceph-osd died: $(tail -n 5 "$d/osd.out" "$d/osd.0.log" 2>/dev/null)"
		sleep 0.2
	done
	[ "$i" -lt 150 ] || die "the OSD never came up"
}

ceph_stop() {
	local p
	for p in ${CEPH_OSD_PID:-} ${CEPH_MON_PID:-}; do
		kill -TERM "$p" 2>/dev/null || continue
		timeout 15 tail --pid="$p" -f /dev/null || kill -9 "$p" 2>/dev/null || true
		wait "$p" 2>/dev/null || true
		declare -F forget_pid >/dev/null && forget_pid "$p"
	done
	CEPH_OSD_PID= CEPH_MON_PID=
}
