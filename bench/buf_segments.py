#!/usr/bin/env python3
"""Physical segments per I/O-sized block of a process's buffers, from
/proc/PID/pagemap (root only): how many scatter-gather segments an O_DIRECT
request from that memory takes at the disk.  Used by hand for
docs/performance.md (64 KiB requests); not part of make bench.
Usage: buf_segments.py PID MAPS_REGEX [BLOCK_BYTES [MIN:MAX mapping size]]
  e.g. buf_segments.py $(pgrep -n siov-bench) memfd:siov-buf 65536"""
import re
import struct
import sys


def segments(pm, start, block):
    pm.seek(start // 4096 * 8)
    ents = struct.unpack("%dQ" % (block // 4096), pm.read(block // 4096 * 8))
    if not all(e >> 63 for e in ents):
        return None  # not all present
    pfn = [e & ((1 << 55) - 1) for e in ents]
    return 1 + sum(1 for a, b in zip(pfn, pfn[1:]) if b != a + 1)


def main():
    pid, pat = sys.argv[1], sys.argv[2]
    block = int(sys.argv[3]) if len(sys.argv) > 3 else 65536
    lo, hi = (int(x) for x in sys.argv[4].split(":")) if len(sys.argv) > 4 else (block, 1 << 62)
    with open("/proc/%s/pagemap" % pid, "rb") as pm:
        for line in open("/proc/%s/maps" % pid):
            if not re.search(pat, line):
                continue
            a, b = (int(x, 16) for x in line.split()[0].split("-"))
            if not lo <= b - a <= hi:
                continue
            segs = [s for s in (segments(pm, o, block)
                                for o in range((a + block - 1) // block * block, b - block + 1, block))
                    if s is not None]
            if segs:
                print("%s: %d blocks of %d KiB, %.2f segments each (min %d, max %d)" % (
                    line.split()[0], len(segs), block // 1024, sum(segs) / len(segs), min(segs), max(segs)))


main()
