#!/bin/bash
# make deb end to end: builds the four packages with debhelper
# (scripts/make-deb.sh), checks what each holds and that its Depends are
# installable here, extracts them into a fresh root and runs siovd, siovctl
# and siov-bench from it, and builds a small program against the packaged
# headers with `pkg-config --cflags --libs libsiov` that does verified I/O
# on a VDEV of the packaged siovd.
#
# Why dpkg -x and not dpkg --root: a --root install needs a whole Debian root
# (dpkg database, libc, json-c, ... and chroot-able maintainer scripts), which
# needs debootstrap and a mirror, and there is no network here.  dpkg -x
# checks the payload exactly; the host's own libraries, which are the
# packages the Depends name (checked installed below), stand in for that root.
#   t-deb.sh SOURCE_ROOT SANITIZE   (SANITIZE: meson's b_sanitize of this build)
set -euo pipefail
SRC=$1
SANITIZE=${2:-none}
[ "$SANITIZE" = none ] || { echo "SKIP: the packages are built once, in the normal build"; exit 77; }
for t in dpkg-buildpackage dh pkg-config gcc; do
	command -v "$t" >/dev/null || { echo "SKIP: $t missing (debhelper, pkg-config)"; exit 77; }
done
WORK=$(mktemp -d /tmp/siov-deb-test.XXXXXX)
PID=""
cleanup() { [ -n "$PID" ] && kill "$PID" 2>/dev/null && wait "$PID" 2>/dev/null; rm -rf "$WORK"; }
trap cleanup EXIT
fail() { echo "FAIL: $*"; [ -f "$WORK/siovd.log" ] && tail -5 "$WORK/siovd.log"; exit 1; }

"$SRC/scripts/make-deb.sh" "$WORK/debs" >/dev/null || fail "make deb failed"
deb() { ls "$WORK"/debs/"$1"_*.deb; }
for p in siovd siovctl libsiov0 libsiov-dev; do [ -f "$(deb $p)" ] || fail "no $p package"; done
ARCH=$(dpkg-architecture -qDEB_HOST_MULTIARCH)
has() { dpkg-deb -c "$(deb "$1")" | awk '{print $6}' | grep -qx "./$2" || fail "$1 lacks /$2"; }
has siovd usr/sbin/siovd
has siovd lib/systemd/system/siovd.service
has siovctl usr/bin/siovctl
has siovctl usr/bin/siov-bench
has libsiov0 "usr/lib/$ARCH/libsiov.so.0"
has libsiov-dev usr/include/siov/libsiov.h
has libsiov-dev "usr/lib/$ARCH/pkgconfig/libsiov.pc"
dpkg-deb -e "$(deb siovd)" "$WORK/ctl"
grep -q deb-systemd-helper "$WORK/ctl/postinst" || fail "siovd's postinst does not enable the unit"
# Every dependency is a package this machine has installed: the payload runs here.
for p in siovd siovctl libsiov0 libsiov-dev; do
	for dep in $(dpkg-deb -f "$(deb $p)" Depends | tr ',' '\n' | sed 's/(.*//; s/|.*//' | tr -d ' '); do
		case $dep in libsiov0) continue ;; esac
		dpkg-query -W -f='${Status}' "$dep" 2>/dev/null | grep -q "install ok installed" ||
			fail "$p depends on $dep, which is not installed here"
	done
done

ROOT=$WORK/root
for p in siovd siovctl libsiov0 libsiov-dev; do dpkg -x "$(deb $p)" "$ROOT"; done
LIBDIR=$ROOT/usr/lib/$ARCH
export LD_LIBRARY_PATH=$LIBDIR
"$ROOT/usr/sbin/siovd" --help | grep -q -- --metrics || fail "packaged siovd --help"
"$ROOT/usr/sbin/siovd" --rpc-socket "$WORK/rpc.sock" --state-dir "$WORK/state" --engines 1 \
	2>"$WORK/siovd.log" &
PID=$!
CTL() { "$ROOT/usr/bin/siovctl" -s "$WORK/rpc.sock" "$@"; }
for _ in $(seq 100); do CTL daemon_info >/dev/null 2>&1 && break; sleep 0.1; done
CTL backend_create --name b0 --type ram --size 16M >/dev/null || fail "backend_create"
CTL vdev_create --name v0 --backend b0 --size 8M --socket "$WORK/v0.sock" >/dev/null ||
	fail "vdev_create"
"$ROOT/usr/bin/siov-bench" --socket "$WORK/v0.sock" --rw randrw --bs 4k --iodepth 4 \
	--runtime 1 --verify >"$WORK/bench.txt" 2>&1 || fail "packaged siov-bench: $(tail -3 "$WORK/bench.txt")"

# A consumer of libsiov-dev, built the way its README says: pkg-config.
cat >"$WORK/prog.c" <<'C'
#include <stdio.h>
#include <string.h>
#include <siov/libsiov.h>

int main(int argc, char **argv)
{
	struct siov_dev *dev;
	struct siov_queue *q;
	struct siov_cqe cqe;
	char *buf;
	int rc;

	if ((rc = siov_dev_open(argv[1], NULL, &dev)) ||
	    (rc = siov_mem_alloc(dev, 8192, (void **)&buf)) || (rc = siov_dev_start(dev)))
		return fprintf(stderr, "open: %d\n", rc), 1;
	q = siov_dev_queue(dev, 0);
	memset(buf, 0x5a, 4096);
	if (siov_prep_write(q, buf, 4096, 0, 1) < 0 || siov_submit(q) < 0 ||
	    siov_wait(q, &cqe, 1, 1, 5000) != 1 || cqe.res != 4096)
		return fprintf(stderr, "write failed\n"), 1;
	if (siov_prep_read(q, buf + 4096, 4096, 0, 2) < 0 || siov_submit(q) < 0 ||
	    siov_wait(q, &cqe, 1, 1, 5000) != 1 || cqe.res != 4096 || memcmp(buf, buf + 4096, 4096))
		return fprintf(stderr, "read back failed\n"), 1;
	siov_dev_close(dev);
	puts("libsiov ok");
	return 0;
}
C
FLAGS=$(PKG_CONFIG_SYSROOT_DIR=$ROOT PKG_CONFIG_LIBDIR=$LIBDIR/pkgconfig \
	pkg-config --cflags --libs libsiov) || fail "pkg-config --libs libsiov"
case $FLAGS in *"-L$LIBDIR"*-lsiov*) ;; *) fail "pkg-config gave '$FLAGS'" ;; esac
gcc -o "$WORK/prog" "$WORK/prog.c" $FLAGS || fail "cannot build against the packaged headers"
ldd "$WORK/prog" | grep -q "libsiov.so.0 => $LIBDIR/libsiov.so.0" || fail "prog does not use the packaged libsiov"
"$WORK/prog" "$WORK/v0.sock" | grep -q "libsiov ok" || fail "the program's I/O through the packaged libsiov"
kill -TERM "$PID"
wait "$PID" || fail "packaged siovd did not stop cleanly"
PID=""
echo "ok: 4 packages built, installed in $ROOT, siovd/siovctl/siov-bench and a pkg-config build ran"
