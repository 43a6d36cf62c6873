#!/usr/bin/env python3
"""Summarises bench/disk-depth.bt's output: per process (the three with the
most block requests), the mean number of requests in flight at the block
layer and in io_uring, the mean block-layer latency, io-wq punts, merges and
how many requests the process dispatched to the device itself."""
import re
import sys


def per_pid(txt, name):
    return {int(k): int(v) for k, v in re.findall(r"@%s\[(\d+)\]: (\d+)" % name, txt)}


def main():
    txt = open(sys.argv[1]).read()
    m = {k: per_pid(txt, k) for k in
         ("n", "blk_ns", "uring_ns", "first", "last", "issue", "punt", "merge")}
    for p in sorted(m["n"], key=lambda p: -m["n"][p])[:3]:
        span = max(m["last"].get(p, 0) - m["first"].get(p, 0), 1)
        print("pid %d: %d block requests in %.2f s; in flight: %.1f at the block layer, "
              "%.1f in io_uring; mean block latency %.0f us; io-wq punts %d; merges %d; "
              "dispatched by itself %d" %
              (p, m["n"][p], span / 1e9, m["blk_ns"].get(p, 0) / span,
               m["uring_ns"].get(p, 0) / span, m["blk_ns"].get(p, 0) / m["n"][p] / 1e3,
               m["punt"].get(p, 0), m["merge"].get(p, 0), m["issue"].get(p, 0)))


if __name__ == "__main__":
    main()
