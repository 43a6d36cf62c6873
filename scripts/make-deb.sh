#!/bin/bash
# make deb: builds the Debian packages (siovd, siovctl, libsiov0, libsiov-dev)
# with debhelper from the committed tree plus the working tree's changes, in a
# temporary copy (dpkg-buildpackage writes its results next to the source, so
# building in place would litter the parent directory), and puts the .debs in
# OUT (default build-deb/).
#   scripts/make-deb.sh [OUT]
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
out=$(mkdir -p "${1:-$root/build-deb}" && cd "${1:-$root/build-deb}" && pwd)
version=$(sed -n '1s/.*(\(.*\)).*/\1/p' "$root/debian/changelog")
work=$(mktemp -d /tmp/siov-deb.XXXXXX)
trap 'rm -rf "$work"' EXIT
src=$work/siov-$version
mkdir -p "$src"
# The files git knows (tracked or new and not ignored), as they are now.
(cd "$root" && git ls-files -co --exclude-standard -z) |
	(cd "$root" && xargs -0 tar cf - --) | tar xf - -C "$src"
(cd "$src" && DEB_BUILD_OPTIONS="nocheck parallel=$(nproc)" \
	dpkg-buildpackage -b -us -uc --no-sign >"$work/build.log" 2>&1) || {
	tail -40 "$work/build.log" >&2
	echo "make deb: dpkg-buildpackage failed (log above)" >&2
	exit 1
}
rm -f "$out"/*.deb
mv "$work"/*.deb "$out"/
ls -1 "$out"/*.deb
