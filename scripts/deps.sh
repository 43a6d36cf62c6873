#!/bin/sh
# Installs the Debian packages siov needs to build and test, only those missing.
# Usage: scripts/deps.sh [build|test|demo]
set -eu
# Libraries siovd links: io_uring, JSON, unit tests, NBD (libnbd), Ceph RBD (librbd),
# TLS for NBD exports (GnuTLS), Prometheus metrics over HTTP (libmicrohttpd), sd_notify (libsystemd).
need="meson ninja-build pkg-config gcc clang liburing-dev libjson-c-dev libcmocka-dev
	libnbd-dev librbd-dev libgnutls28-dev libmicrohttpd-dev libsystemd-dev"
case "${1:-build}" in
test|demo)
	need="$need qemu-system-x86 qemu-utils qemu-system-common linux-image-amd64 busybox-static cpio fio jq file xz-utils util-linux"
	# Peers and servers the tests start themselves: nbdkit, a one-node Ceph cluster,
	# qemu-storage-daemon's rbd driver, promtool, libvirtd, DPDK testpmd, debhelper for make deb.
	need="$need nbdkit ceph-mon ceph-osd ceph-common qemu-block-extra prometheus
		libvirt-daemon-system libvirt-clients dpdk-dev librte-net-vhost23 librte-mempool-ring23
		debhelper gnutls-bin iproute2 python3"
	;;
esac
missing=""
for p in $need; do
	dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing="$missing $p"
done
[ -z "$missing" ] && exit 0
echo "deps: installing$missing" >&2
SUDO=""
[ "$(id -u)" = 0 ] || SUDO=sudo
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -q >/dev/null
$SUDO apt-get install -y -q --no-install-recommends $missing >/dev/null
