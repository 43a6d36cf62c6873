#!/usr/bin/env python3
"""siovd --metrics against a real siovd (issue 12): the exposition passes
`promtool check metrics`; a scrape with curl and one with Python's urllib
agree with vdev_stats after real I/O (siov-bench on a VDEV); the histogram's
count is the requests completed; wrong paths and methods get 404 and 405;
scrapes close together (8 at once) share one render and all get it whole;
the HTTP thread runs at nice 19, so a scrape yields to the engines; siovd
stops promptly with scrapes in flight; `siovd --help` lists every option;
siov-rpc-rate (the state bench's client) creates and deletes through siovd,
each call journalled, and stops with siovd's message on an error answer.

Usage: t-metrics.py SIOVD SIOVCTL SIOV_BENCH SIOVD_MAIN_C SIOV_RPC_RATE
"""
import json
import os
import threading
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from siovd_proc import fail, stop  # noqa: E402
import urllib.error
import urllib.request

SIOVD, SIOVCTL, BENCH, MAIN_C, RPC_RATE = sys.argv[1:6]


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    p = s.getsockname()[1]
    s.close()
    return p


def parse(text):
    out = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            key, val = line.rsplit(" ", 1)
            out[key] = float(val)
    return out


def check_help():
    helptext = subprocess.run([SIOVD, "--help"], capture_output=True, text=True).stdout
    opts = re.findall(r'\{"([a-z-]+)", (?:required|no)_argument', open(MAIN_C).read())
    if len(opts) < 10:
        fail(f"found only {opts} in {MAIN_C}")
    for o in opts:
        if f"--{o}" not in helptext:
            fail(f"siovd --help does not list --{o}")


def fetch(url):
    with urllib.request.urlopen(url, timeout=10) as resp:
        return resp.read()


def check_shared(url):
    """8 scrapes at once: every one complete and valid, and they share renders
    (one render answers scrapes for 100 ms at least)."""
    time.sleep(0.25)  # beyond the last render's hold
    before = parse(fetch(url).decode())
    time.sleep(0.25)
    bodies = [None] * 8
    go = threading.Barrier(8)

    def one(i):
        go.wait()
        bodies[i] = fetch(url)
    ts = [threading.Thread(target=one, args=(i,)) for i in range(8)]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    after = [parse(b.decode()) for b in bodies]
    if any("siov_vdevs" not in a or not b.endswith(b"\n") for a, b in zip(after, bodies)):
        fail("a concurrent scrape came back cut short")
    renders = max(a["siov_metrics_renders_total"] for a in after) - \
        before["siov_metrics_renders_total"]
    if not 1 <= renders < 8:
        fail(f"8 scrapes at once took {renders:g} renders: none was shared")


def check_nice(pid):
    """The HTTP thread (libmicrohttpd's, renamed siov-metrics by its first request) at
    nice 19, the rest of siovd not; the engine and the journal writer found by name, as
    top -H and the benches find them."""
    nices = {}
    for t in os.listdir(f"/proc/{pid}/task"):
        name = open(f"/proc/{pid}/task/{t}/comm").read().strip()
        nices[t] = (name, int(open(f"/proc/{pid}/task/{t}/stat").read().rsplit(")", 1)[1]
                                .split()[16]))
    http = [n for name, n in nices.values() if name == "siov-metrics"]
    if http != [19]:
        fail(f"the HTTP thread (siov-metrics) is not one thread at nice 19: {nices}")
    names = sorted(name for name, _ in nices.values())
    for want in ("siov-eng0", "siov-journal"):
        if names.count(want) != 1:
            fail(f"no single thread named {want}: {names}")
    if nices[str(pid)][1] != 0:
        fail(f"the control thread was niced: {nices}")


def check_rpc_rate(rpc, tmp, url, ctl):
    """siov-rpc-rate: 2 clients create and delete 40 VDEVs (64 KiB windows past v2's),
    every call a journal record; a wrong backend stops it with siovd's message."""
    def records():
        with urllib.request.urlopen(url, timeout=10) as resp:
            return parse(resp.read().decode())["siov_state_journal_records_total"]
    args = [RPC_RATE, "--rpc", rpc, "--sock-dir", tmp, "--clients", "2", "--count", "40",
            "--first", "512", "--window", "65536", "--prefix", "rr"]
    time.sleep(0.25)  # past the render hold (100 ms here): the counter below is fresh
    r0 = records()
    r = subprocess.run(args + ["--backend", "b0"], capture_output=True, text=True, timeout=60)
    if r.returncode:
        fail(f"siov-rpc-rate: {r.stdout}{r.stderr}")
    out = json.loads(r.stdout)
    for ph in ("create", "delete"):
        if out[ph]["calls"] != 40 or not out[ph]["per_s"] > 0 or \
                not 0 < out[ph]["lat_us"]["p50"] <= out[ph]["lat_us"]["max"]:
            fail(f"siov-rpc-rate {ph}: {out[ph]}")
    if ctl("daemon_info")["vdevs"] != 2:
        fail("siov-rpc-rate left VDEVs behind")
    time.sleep(0.25)
    if records() - r0 != 80:
        fail(f"80 calls made {records() - r0:g} journal records")
    r = subprocess.run(args + ["--backend", "nope"], capture_output=True, text=True, timeout=60)
    if r.returncode != 1 or "nope" not in r.stderr:
        fail(f"siov-rpc-rate on a missing backend: exit {r.returncode}, {r.stderr}")


def inflight_at_stop(p, url):
    """SIGTERM while scrapes run: siovd ends cleanly (no render left waiting)."""
    stop_ev = threading.Event()

    def loop():
        while not stop_ev.is_set():
            try:
                fetch(url)
            except OSError:
                return
    ts = [threading.Thread(target=loop) for _ in range(3)]
    for t in ts:
        t.start()
    time.sleep(0.2)
    p.send_signal(signal.SIGTERM)
    try:
        rc = p.wait(10)
    except subprocess.TimeoutExpired:
        fail("siovd did not stop within 10 s while scrapes ran")
    stop_ev.set()
    for t in ts:
        t.join()
    if rc != 0:
        fail(f"siovd exited {rc} when stopped during scrapes")


def main():
    check_help()
    promtool = shutil.which("promtool")
    curl = shutil.which("curl")
    if not promtool or not curl:
        print("SKIP: promtool (Debian's prometheus) or curl missing")
        sys.exit(77)
    tmp = tempfile.mkdtemp(prefix="siov-metrics-")
    port = free_port()
    rpc = os.path.join(tmp, "rpc.sock")
    log = open(os.path.join(tmp, "siovd.log"), "w")
    p = subprocess.Popen([SIOVD, "--rpc-socket", rpc, "--state-dir", os.path.join(tmp, "st"),
                          "--engines", "1", "--metrics", f"127.0.0.1:{port}"],
                         stdout=log, stderr=log)
    try:
        for _ in range(200):
            if os.path.exists(rpc):
                break
            time.sleep(0.02)

        def ctl(*args):
            r = subprocess.run([SIOVCTL, "-s", rpc] + list(args), capture_output=True, text=True)
            if r.returncode:
                fail(f"siovctl {args}: {r.stderr}")
            return json.loads(r.stdout)

        ctl("backend_create", "--name", "b0", "--type", "ram", "--size", "64M")
        ctl("group_create", "--name", "g1", "--iops-limit", "100000")
        ctl("vdev_create", "--name", "v1", "--backend", "b0", "--size", "16M",
            "--socket", os.path.join(tmp, "v1.sock"), "--group", "g1")
        ctl("vdev_create", "--name", "v2", "--backend", "b0", "--offset", "16M", "--size", "16M",
            "--queues", "2", "--socket", os.path.join(tmp, "v2.sock"))
        b = subprocess.run([BENCH, "--socket", os.path.join(tmp, "v1.sock"), "--rw", "randrw",
                            "--bs", "4k", "--iodepth", "4", "--runtime", "1"],
                           capture_output=True, text=True)
        if b.returncode:
            fail(f"siov-bench: {b.stdout}{b.stderr}")
        url = f"http://127.0.0.1:{port}/metrics"
        text = subprocess.run([curl, "-sf", url], capture_output=True, text=True).stdout
        r = subprocess.run([promtool, "check", "metrics"], input=text, capture_output=True,
                           text=True)
        if r.returncode:
            fail(f"promtool check metrics: {r.stdout}{r.stderr}")
        with urllib.request.urlopen(url, timeout=10) as resp:
            if not resp.headers["Content-Type"].startswith("text/plain; version=0.0.4"):
                fail(f"Content-Type {resp.headers['Content-Type']}")
            m = parse(resp.read().decode())
        st = ctl("vdev_stats", "--name", "v1")[0]
        reads = m['siov_vdev_requests_total{vdev="v1",op="read"}']
        writes = m['siov_vdev_requests_total{vdev="v1",op="write"}']
        if reads + writes != st["requests"] or st["requests"] < 100:
            fail(f"metrics say {reads}+{writes} requests, vdev_stats {st['requests']}")
        if m['siov_vdev_bytes_total{vdev="v1",direction="read"}'] != st["bytes_read"]:
            fail("bytes read differ from vdev_stats")
        if m['siov_vdev_request_latency_seconds_count{vdev="v1"}'] != st["requests"]:
            fail("the latency histogram does not count every request")
        if m['siov_vdev_request_latency_seconds_bucket{vdev="v1",le="+Inf"}'] != st["requests"]:
            fail("the +Inf bucket is not the count")
        if m["siov_vdevs"] != 2 or m["siov_backends"] != 1 or m["siov_groups"] != 1:
            fail("daemon gauges are wrong")
        if m['siov_group_vdevs{group="g1"}'] != 1:
            fail("group gauge is wrong")
        if m['siov_backend_requests_total{backend="b0"}'] != st["requests"]:
            fail("backend counter is not the sum of its VDEVs'")
        if m["siov_state_journal_records_total"] < 4:
            fail("journal counters missing")
        # Queues exist once a front end named them: v1's one, none of v2's.
        qs = [k for k in m if k.startswith('siov_queue_state{vdev="v1"')]
        if len(qs) != 1 or any(k.startswith('siov_queue_state{vdev="v2"') for k in m):
            fail(f"v1 was attached with 1 queue, v2 never: metrics show {qs}")
        if not any(k.startswith("siov_engine_busy_seconds_total") for k in m):
            fail("no engine busy time")
        for path, method, code in (("/nothing", "GET", 404), ("/metrics", "POST", 405)):
            try:
                urllib.request.urlopen(urllib.request.Request(
                    f"http://127.0.0.1:{port}{path}", method=method, data=b"" if method == "POST"
                    else None), timeout=10)
                fail(f"{method} {path} answered 200")
            except urllib.error.HTTPError as e:
                if e.code != code:
                    fail(f"{method} {path}: {e.code}, wanted {code}")
        check_shared(url)
        check_nice(p.pid)
        check_rpc_rate(rpc, tmp, url, ctl)
        inflight_at_stop(p, url)
        print(f"ok: {len(m)} samples, v1 {int(st['requests'])} requests", flush=True)
    finally:
        stop(p)
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
