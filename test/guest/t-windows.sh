#!/bin/bash
# Windows on one backend: data a guest writes at several offsets reads back
# and lands at VDEV offset + guest offset in the backend file; two adjacent
# VDEVs never see each other's bytes and the bytes around them stay untouched;
# each disk is exactly its window's size and a read at the end gets nothing;
# a read-only VDEV is read-only in the guest, refuses writes, and reads its
# window.
. "$(dirname "$0")/lib.sh"
setup "$@"

disk=$WORK/disk.img
V0_OFF=$((16 * MiB)) V0_SIZE=$((32 * MiB))
V1_OFF=$((48 * MiB)) V1_SIZE=$((24 * MiB))   # right after v0: no gap
V2_OFF=$((96 * MiB)) V2_SIZE=$((8 * MiB))    # read-only
# Small writes over the whole-window pattern, some not 4 KiB aligned, one on
# the very last 4 KiB.
SPOTS="512:512:12 5246464:8192:12 $((9 * MiB + 3584)):1024:12 $((V0_SIZE - 4096)):4096:12"
L0=$(layout $V0_SIZE 10 $SPOTS)

be_start
be_backend b0 "$disk" $((256 * MiB))
# Guards: known bytes right outside the windows, to catch a write that spills.
file_fill "$disk" $((V0_OFF - MiB)) $MiB 90
file_fill "$disk" $((V1_OFF + V1_SIZE)) $MiB 91
file_fill "$disk" $((V2_OFF - MiB)) $MiB 92
file_fill "$disk" $((V2_OFF + V2_SIZE)) $MiB 93
file_fill "$disk" $V2_OFF $V2_SIZE 30 0      # what the read-only disk must show
be_vdev v0 b0 $V0_OFF $V0_SIZE 2
be_vdev v1 b0 $V1_OFF $V1_SIZE 1
be_vdev v2 b0 $V2_OFF $V2_SIZE 1 ro
be_ready

# siovd answers GET_ID with the VDEV's name: the guest's disk serial, what
# /dev/disk/by-id is made of. (qemu-storage-daemon says "vhost_user_blk".)
SERIALS="v0 v1 v2"
[ "$BACKEND" = siovd ] || SERIALS=

guest_script windows V0_SIZE=$V0_SIZE V1_SIZE=$V1_SIZE V2_SIZE=$V2_SIZE "SPOTS='$SPOTS'" "L0='$L0'" \
	"SERIALS='$SERIALS'" <<'G'
wait_disks 3
expect_size vda $V0_SIZE
expect_size vdb $V1_SIZE
expect_size vdc $V2_SIZE
say "sizes match the windows"
set -- $SERIALS
for d in vda vdb vdc; do
	sn=$(cat /sys/block/$d/serial) || fail "$d: reading the serial (GET_ID) failed"
	[ -n "$sn" ] || fail "$d: empty serial"
	[ $# = 0 ] || { [ "$sn" = "$1" ] || fail "$d: serial '$sn', want the VDEV name '$1'"; shift; }
	say "$d serial: $sn"
done

fill vda 0 $V0_SIZE 10
fill vdb 0 $V1_SIZE 11
for s in $SPOTS; do
	off=${s%%:*}; r=${s#*:}; len=${r%%:*}
	fill vda $off $len 12
done
check_layout vda $L0
check vdb 0 $V1_SIZE 11
say "both windows read back"

# The end of the disk: the last sector reads, nothing past it does.
check vda $((V0_SIZE - 512)) 512 12
n=$(blkop pread /dev/vda $V0_SIZE 4096)
[ "$n" = 0 ] || fail "a read at the end of vda returned '$n', want 0 bytes"
dd if=/dev/vdb of=/tmp/past bs=4096 skip=$((V1_SIZE / 4096)) count=1 2>/dev/null || true
[ ! -s /tmp/past ] || fail "dd past the end of vdb read $(wc -c < /tmp/past) bytes"
say "nothing past the end"

[ "$(cat /sys/block/vdc/ro)" = 1 ] || fail "vdc: /sys/block/vdc/ro is $(cat /sys/block/vdc/ro), want 1"
[ "$(blkop ro /dev/vdc)" = 1 ] || fail "vdc: BLKROGET says writable"
expect_refused blkop trywrite /dev/vdc 0 4096
expect_refused blkop trywrite /dev/vdc $((V2_SIZE - 4096)) 4096
check vdc 0 $V2_SIZE 30
say "read-only disk refuses writes and shows its window"
G
run_guest windows 150 v0 v1 v2

file_layout "$disk" $V0_OFF $L0
file_check "$disk" $V1_OFF $V1_SIZE 11 0
file_check "$disk" $V2_OFF $V2_SIZE 30 0
file_check "$disk" $((V0_OFF - MiB)) $MiB 90
file_check "$disk" $((V1_OFF + V1_SIZE)) $MiB 91
file_check "$disk" $((V2_OFF - MiB)) $MiB 92
file_check "$disk" $((V2_OFF + V2_SIZE)) $MiB 93
file_zeros "$disk" 0 $((V0_OFF - MiB))
file_zeros "$disk" $((V1_OFF + V1_SIZE + MiB)) $((V2_OFF - MiB - V1_OFF - V1_SIZE - MiB))
log "backend file: every window at its offset, guards intact"

if have_stats; then
	w0=$(vstat v0 .bytes_written) w1=$(vstat v1 .bytes_written) w2=$(vstat v2 .bytes_written)
	r2=$(vstat v2 .bytes_read)
	[ "$w0" -ge $V0_SIZE ] || die "vdev_stats: v0 bytes_written $w0 < $V0_SIZE written by the guest"
	[ "$w1" -ge $V1_SIZE ] || die "vdev_stats: v1 bytes_written $w1 < $V1_SIZE written by the guest"
	[ "$w2" = 0 ] || die "vdev_stats: read-only v2 has bytes_written $w2"
	[ "$r2" -ge $V2_SIZE ] || die "vdev_stats: v2 bytes_read $r2 < $V2_SIZE read by the guest"
	for v in v0 v1 v2; do
		[ "$(vstat $v .errors)" = 0 ] || die "vdev_stats: $v has errors: $(stats $v)"
	done
	log "stats agree: v0 wrote $w0, v1 wrote $w1, v2 read $r2 and wrote 0"
fi
be_alive
be_stop
