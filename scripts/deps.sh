#!/bin/sh
# Installs the Debian packages siov needs to build and test, only those missing.
# Usage: scripts/deps.sh [build|test|demo]
set -eu
need="meson ninja-build pkg-config gcc clang liburing-dev libjson-c-dev libcmocka-dev"
case "${1:-build}" in
test|demo)
	need="$need qemu-system-x86 qemu-utils qemu-system-common linux-image-amd64 busybox-static cpio fio jq file xz-utils util-linux"
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
