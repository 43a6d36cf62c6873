# Helpers for the guest side of the siov guest tests, sourced by /init before
# the test script. Busybox sh; every helper fails loudly with a reason.

# fail REASON: report and end the test.
fail() {
	echo "SIOV-TEST-FAIL $*"
	exit 1
}

say() {
	echo "guest: $*"
}

# wait_disks N: waits until N virtio disks (vda, vdb, ...) exist.
wait_disks() {
	local i=0
	while [ "$(ls -d /sys/block/vd* 2>/dev/null | wc -l)" -lt "$1" ]; do
		i=$((i + 1))
		[ $i -gt 200 ] && fail "only $(ls -d /sys/block/vd* 2>/dev/null | wc -l) of $1 virtio disks appeared"
		sleep 0.05
	done
	for d in /sys/block/vd*; do
		i=0
		while [ ! -b /dev/${d##*/} ]; do
			i=$((i + 1))
			[ $i -gt 200 ] && fail "no /dev/${d##*/}"
			sleep 0.05
		done
	done
}

# expect_size DEV BYTES: the disk is exactly that big (sysfs and ioctl).
expect_size() {
	local sectors bytes
	sectors=$(cat /sys/block/$1/size)
	[ "$sectors" = $(($2 / 512)) ] || fail "$1: /sys/block/$1/size is $sectors sectors, want $(($2 / 512))"
	bytes=$(blkop size /dev/$1) || fail "$1: BLKGETSIZE64 failed"
	[ "$bytes" = "$2" ] || fail "$1: BLKGETSIZE64 is $bytes, want $2"
}

# fill DEV OFF LEN SEED / check DEV OFF LEN SEED: pattern I/O, O_DIRECT.
fill() {
	blkop fill /dev/$1 $2 $3 $4 || fail "$1: writing $3 bytes at $2 failed"
}
check() {
	blkop check /dev/$1 $2 $3 $4 || fail "$1: data at $2 (+$3) does not read back (seed $4)"
}
zeros() {
	blkop zeros /dev/$1 $2 $3 || fail "$1: [$2, +$3) does not read back as zeros"
}

# check_layout DEV OFF:LEN:SEED...: each range holds its pattern (SEED z: zeros).
check_layout() {
	local dev=$1 r off len seed
	shift
	for r in "$@"; do
		off=${r%%:*}
		r=${r#*:}
		len=${r%%:*}
		seed=${r#*:}
		if [ "$seed" = z ]; then
			zeros $dev $off $len
		else
			check $dev $off $len $seed
		fi
	done
}

# expect_refused CMD...: the command must exit 3 (blkop: write refused).
expect_refused() {
	local rc=0 out
	out=$("$@" 2>&1) || rc=$?
	[ $rc = 3 ] || fail "'$*' was not refused (status $rc: $out)"
	say "refused as expected: $* -> $out"
}

# fio_verify NAME OFF SIZE SECONDS WHAT: SECONDS of crc32c-verified random
# writes (4/16/64 KiB, QD 8) on /dev/vda over [OFF, OFF+SIZE); fails with
# "fio WHAT failed" on an I/O or verify error.
fio_verify() {
	fio --name=$1 --filename=/dev/vda --ioengine=libaio --iodepth=8 --direct=1 --rw=randwrite \
		--bssplit=4k/60:16k/30:64k/10 --offset=$2 --size=$3 --time_based --runtime=$4 \
		--verify=crc32c --verify_fatal=1 --verify_backlog=64 --eta=never --output=/tmp/fio.out ||
		{ cat /tmp/fio.out; fail "fio $5 failed"; }
	grep -E 'err=' /tmp/fio.out
	grep -q 'err= 0' /tmp/fio.out || fail "fio reports errors"
}

# fio_rounds SIZE OFF STOPDEV STOPOFF DEV...: rounds of crc32c-verified random
# writes (4/16/64 KiB, QD 8, an fsync every 16 writes, verified at the end of
# each round) over [OFF, OFF+SIZE) of every DEV, one fio job each, until the
# host writes pattern 77 at STOPOFF of STOPDEV (at most 30 rounds).  Prints
# SIOV-FIO-ROUND N before and SIOV-FIO-OK N after each round; fails on an I/O
# or verify error, or on an I/O error in the guest kernel's log.  Sets ROUNDS.
fio_rounds() {
	local size=$1 off=$2 stopdev=$3 stopoff=$4 d
	shift 4
	printf '[global]\nioengine=libaio\niodepth=8\ndirect=1\nrw=randwrite\nbssplit=4k/40:16k/30:64k/30\n' >/tmp/job.fio
	printf 'offset=%s\nsize=%s\nverify=crc32c\nverify_fatal=1\ndo_verify=1\nfsync=16\nrandrepeat=0\n' \
		$off $size >>/tmp/job.fio
	for d in "$@"; do
		printf '[%s]\nfilename=/dev/%s\n' $d $d >>/tmp/job.fio
	done
	ROUNDS=0
	while :; do
		ROUNDS=$((ROUNDS + 1))
		echo "SIOV-FIO-ROUND $ROUNDS"
		fio --eta=never --output=/tmp/fio.out /tmp/job.fio ||
			{ cat /tmp/fio.out; fail "fio round $ROUNDS failed (verify or I/O error)"; }
		grep -q 'err= 0' /tmp/fio.out || { cat /tmp/fio.out; fail "fio round $ROUNDS reports errors"; }
		echo "SIOV-FIO-OK $ROUNDS"
		blkop check /dev/$stopdev $stopoff 4096 77 >/dev/null 2>&1 && break
		[ $ROUNDS -lt 30 ] || fail "the host never said stop"
	done
	if dmesg | grep -Ei 'I/O error|blk_update_request|critical target error|Buffer I/O'; then
		fail "the guest kernel logged I/O errors"
	fi
}
