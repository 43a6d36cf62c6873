#!/bin/sh
# The installed libsiov.so exports exactly the functions that
# include/siov/libsiov.h declares: no siov_raw_* test door, no internal
# siov__* helper, and no public function missing from lib/libsiov/libsiov.map.
# The library is installed with `meson install --destdir` into a temporary
# directory, so what is checked is what a user gets.
# usage: t-exports.sh SOURCE_ROOT BUILD_ROOT
set -u
SRC=$1
BUILD=$2
DIR=$(mktemp -d /tmp/siov-exports.XXXXXX)
trap 'rm -rf "$DIR"' EXIT

for tool in nm meson "${CC:-cc}"; do
	command -v "$tool" >/dev/null 2>&1 || { echo "SKIP: $tool not found"; exit 77; }
done

if ! meson install -C "$BUILD" --no-rebuild --destdir "$DIR/root" >"$DIR/install.log" 2>&1; then
	cat "$DIR/install.log"
	echo "FAIL: meson install --destdir failed"
	exit 1
fi
so=$(find "$DIR/root" -name 'libsiov.so.*' -type f | head -n 1)
[ -n "$so" ] || { echo "FAIL: no libsiov.so.* installed"; exit 1; }
if find "$DIR/root" -name 'libsiov_test*' | grep -q .; then
	echo "FAIL: the test-only library was installed"
	exit 1
fi

# The header's functions: preprocess (drops comments), then every siov_x( .
"${CC:-cc}" -E -P -I"$SRC/include" "$SRC/include/siov/libsiov.h" |
	grep -oE '\bsiov_[a-z0-9_]+[[:space:]]*\(' | tr -d '( \t' | sort -u >"$DIR/header"
# What the library exports: defined dynamic symbols, version suffix dropped.
nm -D --defined-only "$so" | awk '$2 ~ /^[TtWwDdBbRrVvi]$/ { print $3 }' |
	sed 's/@.*//' | grep -v '^LIBSIOV_' | sort -u >"$DIR/exports"

n=$(wc -l <"$DIR/header")
[ "$n" -ge 10 ] || { echo "FAIL: only $n functions found in libsiov.h"; exit 1; }
if ! diff -u "$DIR/header" "$DIR/exports" >"$DIR/diff"; then
	echo "FAIL: exports of $so differ from libsiov.h (- header only, + library only):"
	cat "$DIR/diff"
	exit 1
fi
echo "ok: $so exports exactly the $n functions of libsiov.h"
