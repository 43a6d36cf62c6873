#!/bin/bash
# Fails when a lower layer includes a higher layer's header (docs/architecture.md,
# "Layers and who may call whom").  Every internal header belongs to exactly one
# layer (the table below); a file in lib/<layer>/ or include/siov_internal/ may
# include headers of its own layer and of layers ranked strictly below it, the
# wire protocol (siov/vhost_user.h), and the private headers of its own folder.
# lib/libsiov is the front end: it sees only include/siov/.  A header missing
# from the table fails the check too, so a new header must say where it lives.
#   check-layers.sh [SOURCE_ROOT]
set -euo pipefail
root=${1:-$(cd "$(dirname "$0")/.." && pwd)}
cd "$root"

# Layers, bottom-up.  Equal ranks are siblings: neither may include the other.
declare -A rank=([util]=0 [mem]=1 [qos]=1 [net]=1 [backend]=2 [virtio]=3 [engine]=4 [vhost]=5 [export]=5 [ctrl]=6)

# Header -> owning layer.
declare -A owner=(
	[util.h]=util [log.h]=util [loop.h]=util [hash.h]=util [iov.h]=util
	[memtable.h]=mem [dirty_log.h]=mem
	[qos.h]=qos
	[net_frame.h]=net [switch.h]=net
	[backend.h]=backend [backend_module.h]=backend [mirror.h]=backend
	[virtqueue.h]=virtio [device.h]=virtio [virtio_blk.h]=virtio [virtio_net.h]=virtio
	[engine.h]=engine
	[vhost_user.h]=vhost
	[export.h]=export
	[vdcm.h]=ctrl [rpc.h]=ctrl [state.h]=ctrl [metrics.h]=ctrl
)

bad=0
complain() { echo "check-layers: $*" >&2; bad=1; }

# Every internal header must have an owner.
for h in include/siov_internal/*.h; do
	[ -n "${owner[$(basename "$h")]:-}" ] || complain "$h has no layer: add it to the table in $0"
done

# check FILE LAYER: every include of FILE must be allowed for LAYER.
check() {
	local file=$1 layer=$2 inc h o
	while read -r inc; do
		case $inc in
		siov/vhost_user.h) continue ;;
		siov/*)
			[ "$layer" = libsiov ] || complain "$file ($layer) includes $inc (public consumer header)"
			continue ;;
		siov_internal/*)
			h=${inc#siov_internal/}
			if [ "$layer" = libsiov ]; then
				complain "$file (libsiov) includes $inc: libsiov sees only include/siov/"
				continue
			fi
			o=${owner[$h]:-}
			if [ -z "$o" ]; then
				complain "$file includes $inc, which has no layer"
			elif [ "$o" != "$layer" ] && [ "${rank[$o]}" -ge "${rank[$layer]}" ]; then
				complain "$file ($layer) includes $inc ($o): a layer includes only layers below it"
			fi ;;
		*/*) complain "$file includes \"$inc\": reach another folder through include/, not a path" ;;
		esac
	done < <(sed -n 's/^[[:space:]]*#[[:space:]]*include[[:space:]]*"\([^"]*\)".*/\1/p' "$file")
}

for d in lib/*/; do
	layer=$(basename "$d")
	[ "$layer" = libsiov ] || [ -n "${rank[$layer]:-}" ] || { complain "$d is no known layer: add it to $0"; continue; }
	for f in "$d"*.[ch]; do
		[ -e "$f" ] && check "$f" "$layer"
	done
done
for h in include/siov_internal/*.h; do
	o=${owner[$(basename "$h")]:-}
	[ -n "$o" ] && check "$h" "$o"
done

# Provider headers: the implementation half of an interface is for its own
# folder only (consumers see backend.h, backends fill in backend_module.h).
declare -A provider_of=([backend_module.h]=backend)
for f in lib/*/*.[ch] include/siov_internal/*.h; do
	while read -r inc; do
		h=${inc#siov_internal/}
		p=${provider_of[$h]:-}
		[ -n "$p" ] || continue
		case $f in
		lib/"$p"/*|include/siov_internal/"$h") ;;
		*) complain "$f includes $inc: only lib/$p/ implements that interface (use ${h%_module.h}.h)" ;;
		esac
	done < <(sed -n 's/^[[:space:]]*#[[:space:]]*include[[:space:]]*"\(siov_internal\/[^"]*\)".*/\1/p' "$f")
done

if [ "$bad" = 0 ]; then
	echo "check-layers: ok ($(ls lib/*/*.[ch] include/siov_internal/*.h | wc -l) files)"
fi
exit "$bad"
