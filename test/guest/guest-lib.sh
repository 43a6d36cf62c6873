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
