#!/usr/bin/env python3
"""Issue 12's benchmark, section "state" (bench/sections/state.sh): management
calls one at a time at scale.

With N VDEVs already in siovd (created by batch), measures:
  - vdev_create and vdev_delete one call at a time on one connection,
  - the same from C concurrent clients (one connection each, one call at a time),
  every call answered only once its journal record is durable (fdatasync);
  - the time a front end (libsiov through ctypes: connect, negotiate, share
    memory, start the rings) takes to attach, with no management load and
    during a create storm from C clients;
  - a scrape of --metrics with N VDEVs, when siovd has it.
The state dir is on STATE_DIR's file system (default /var/tmp: a real disk,
not tmpfs, so fdatasync costs what it costs).

Writes OUT/state.json, OUT/state.md and OUT/section.json (bench/README.md).
Usage: state_rate.py BUILD OUT     env: N=10000 M=2000 CLIENTS=8 ATTACHES=200
"""
import ctypes
import json
import multiprocessing as mp
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import siov_scale  # noqa: E402
from figures import Section  # noqa: E402

N = int(os.environ.get("N", "10000"))
M = int(os.environ.get("M", "2000"))
CLIENTS = int(os.environ.get("CLIENTS", "8"))
ATTACHES = int(os.environ.get("ATTACHES", "200"))
STATE_DIR = os.environ.get("STATE_DIR", "/var/tmp")
# The RPC and VDEV sockets: tmpfs, as under systemd (/run).  See docs/operations.md
# for why a disk file system (ext4 without a journal) costs more per socket.
SOCKET_FS = os.environ.get("SOCKET_FS", "/dev/shm")
WINDOW = 1 << 20


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


class Conn:
    """One JSON-RPC connection to siovd, one call at a time."""

    def __init__(self, path):
        self.s = socket.socket(socket.AF_UNIX)
        for _ in range(500):
            try:
                self.s.connect(path)
                break
            except OSError:
                time.sleep(0.01)
        self.f = self.s.makefile("rb")

    def _send(self, obj):
        self.s.sendall(json.dumps(obj, separators=(",", ":")).encode() + b"\n")
        return json.loads(self.f.readline())

    # One call, or a batch of a thousand at a time: the scale benchmark's own.
    call = siov_scale.Siovd.call
    batch = siov_scale.Siovd.batch


class Siovd:
    def __init__(self, build, metrics_port):
        self.tmp = tempfile.mkdtemp(prefix="siov-st-", dir=SOCKET_FS)
        self.state = tempfile.mkdtemp(prefix="siov-state-", dir=STATE_DIR)
        self.rpc = os.path.join(self.tmp, "rpc.sock")
        args = [os.path.join(build, "app/siovd/siovd"), "--rpc-socket", self.rpc,
                "--state-dir", self.state, "--engines", "1", "--log-level", "warn"]
        if metrics_port:
            args += ["--metrics", f"127.0.0.1:{metrics_port}"]
        self.log = open(os.path.join(self.tmp, "siovd.log"), "w")
        self.p = subprocess.Popen(args, stdout=self.log, stderr=self.log)
        self.c = Conn(self.rpc)

    def sock(self, name):
        return os.path.join(self.tmp, name + ".sock")

    def stop(self):
        self.p.send_signal(signal.SIGTERM)
        try:
            self.p.wait(120)
        except subprocess.TimeoutExpired:
            self.p.kill()
        shutil.rmtree(self.tmp, ignore_errors=True)
        shutil.rmtree(self.state, ignore_errors=True)


def vconf(d, name, i):
    return dict(name=name, backend="b0", offset=i * WINDOW, size=WINDOW, socket=d.sock(name))


def one_by_one(rpc, confs, barrier=None):
    c = Conn(rpc)
    if barrier:
        barrier.wait()
    t0 = time.monotonic()
    for p in confs:
        c.call("vdev_create", **p)
    t1 = time.monotonic()
    for p in confs:
        c.call("vdev_delete", name=p["name"])
    t2 = time.monotonic()
    return t0, t1, t2


def worker(rpc, confs, barrier, q):
    q.put(one_by_one(rpc, confs, barrier))


def storm(d, first, count, clients):
    """clients processes, each creating then deleting its share one call at a time."""
    per = count // clients
    barrier = mp.Barrier(clients + 1)
    q = mp.Queue()
    procs = []
    for k in range(clients):
        confs = [vconf(d, f"s{first + k * per + j:06d}", first + k * per + j)
                 for j in range(per)]
        procs.append(mp.Process(target=worker, args=(d.rpc, confs, barrier, q)))
    for p in procs:
        p.start()
    barrier.wait()
    res = [q.get() for _ in procs]
    for p in procs:
        p.join()
    t0 = min(r[0] for r in res)
    t1 = max(r[1] for r in res)
    t2 = max(r[2] for r in res)
    t1b = min(r[1] for r in res)
    return per * clients / (t1 - t0), per * clients / (t2 - t1b)


ATTACH = r"""
import ctypes, sys, time, json
lib = ctypes.CDLL(sys.argv[1])
path, n, until = sys.argv[2].encode(), int(sys.argv[3]), sys.argv[4]
times = []
while len(times) < n:
    t0 = time.monotonic()
    dev = ctypes.c_void_p()
    rc = lib.siov_dev_open(path, None, ctypes.byref(dev))
    if rc == 0:
        buf = ctypes.c_void_p()
        rc = lib.siov_mem_alloc(dev, 1 << 20, ctypes.byref(buf)) or lib.siov_dev_start(dev)
    t1 = time.monotonic()
    if rc:
        print(json.dumps({"error": rc}))
        sys.exit(1)
    lib.siov_dev_close(dev)
    times.append((t1 - t0) * 1e6)
    if until != "-" and len(times) >= 20:
        import os
        if os.path.exists(until):
            break
print(json.dumps(times))
"""


def pct(xs, p):
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(len(xs) * p))]


def attach_stats(build, d, n, during_storm):
    lib = os.path.join(build, "lib/libsiov/libsiov.so")
    flag = os.path.join(d.tmp, "storm-done")
    p = subprocess.Popen([sys.executable, "-c", ATTACH, lib, d.sock("att"),
                          str(n if not during_storm else 100000),
                          flag if during_storm else "-"],
                         stdout=subprocess.PIPE, text=True)
    if during_storm:
        time.sleep(0.2)
        rates = storm(d, 500000, M * 2, CLIENTS)
        open(flag, "w").close()
    else:
        rates = None
    out = json.loads(p.communicate()[0])
    if isinstance(out, dict):
        raise RuntimeError(f"attach failed: {out}")
    return dict(n=len(out), p50_us=round(pct(out, 0.5), 1), p99_us=round(pct(out, 0.99), 1),
                mean_us=round(statistics.mean(out), 1)), rates


def cpu_s(pid):
    f = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
    return (int(f[11]) + int(f[12])) / os.sysconf("SC_CLK_TCK")


def scrape(port, pid):
    """Wall time of a scrape, and siovd's CPU time for it (the wall time on a
    shared machine is mostly waiting for a CPU)."""
    if not port:
        return None
    times, cpus = [], []
    size = 0
    for _ in range(5):
        t0, c0 = time.monotonic(), cpu_s(pid)
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=30) as r:
            size = len(r.read())
        times.append((time.monotonic() - t0) * 1000)
        cpus.append((cpu_s(pid) - c0) * 1000)
    return dict(ms_median=round(statistics.median(times), 1), ms_max=round(max(times), 1),
                cpu_ms_median=round(statistics.median(cpus), 1), bytes=size)


def main():
    build, out = sys.argv[1], sys.argv[2]
    os.makedirs(out, exist_ok=True)
    has_metrics = b"--metrics" in subprocess.run(
        [os.path.join(build, "app/siovd/siovd"), "--help"], capture_output=True).stdout
    port = free_port() if has_metrics else 0
    d = Siovd(build, port)
    r = dict(n_existing=N, m=M, clients=CLIENTS, state_fs=STATE_DIR)
    try:
        d.c.call("backend_create", name="b0", type="null", size=(N + 10 * M + 1000000) * WINDOW)
        t0 = time.monotonic()
        d.c.batch("vdev_create", [vconf(d, f"v{i:06d}", i) for i in range(N)])
        r["batch_create_s"] = round(time.monotonic() - t0, 2)
        d.c.call("vdev_create", **vconf(d, "att", N + 1))

        t0, t1, t2 = one_by_one(d.rpc, [vconf(d, f"o{i:06d}", N + 10 + i) for i in range(M)])
        r["one_conn_create_per_s"] = round(M / (t1 - t0))
        r["one_conn_delete_per_s"] = round(M / (t2 - t1))
        c, dl = storm(d, 200000, M * 2, CLIENTS)
        r["clients_create_per_s"] = round(c)
        r["clients_delete_per_s"] = round(dl)
        r["attach_idle"], _ = attach_stats(build, d, ATTACHES, False)
        r["attach_storm"], (c, dl) = attach_stats(build, d, ATTACHES, True)
        r["storm_create_per_s_with_attaches"] = round(c)
        r["metrics_scrape"] = scrape(port, d.p.pid)
        r["daemon_vdevs"] = d.c.call("daemon_info")["vdevs"]
    finally:
        d.stop()
    json.dump(r, open(os.path.join(out, "state.json"), "w"), indent=2)
    md = f"""# Management calls at scale (issue 12)

{N} VDEVs exist (created by batch in {r['batch_create_s']} s); each call below is
one JSON-RPC call answered only once its journal record is durable (fdatasync on
{STATE_DIR}).  Measured while other builds shared the machine.

| | per second |
|---|---|
| vdev_create, one connection, one call at a time ({M}) | {r['one_conn_create_per_s']} |
| vdev_delete, one connection, one call at a time ({M}) | {r['one_conn_delete_per_s']} |
| vdev_create, {CLIENTS} clients, one call at a time each ({2 * M} in all) | {r['clients_create_per_s']} |
| vdev_delete, {CLIENTS} clients ({2 * M} in all) | {r['clients_delete_per_s']} |

Front-end attach (libsiov: connect, negotiate, share memory, start the rings):

| | p50 us | p99 us | mean us | attaches |
|---|---|---|---|---|
| no management load | {r['attach_idle']['p50_us']} | {r['attach_idle']['p99_us']} | {r['attach_idle']['mean_us']} | {r['attach_idle']['n']} |
| during a create storm from {CLIENTS} clients ({r['storm_create_per_s_with_attaches']} creates/s) | {r['attach_storm']['p50_us']} | {r['attach_storm']['p99_us']} | {r['attach_storm']['mean_us']} | {r['attach_storm']['n']} |
"""
    if r["metrics_scrape"]:
        s = r["metrics_scrape"]
        md += f"""
Scrape of `--metrics` with {r['daemon_vdevs']} VDEVs: median {s['ms_median']} ms wall, {s['cpu_ms_median']} ms of siovd CPU time, max {s['ms_max']} ms, {s['bytes']} bytes.
"""
    open(os.path.join(out, "state.md"), "w").write(md)
    section(out, r)
    print(md)


def section(out, r):
    """The figures for bench/run.sh's results file."""
    sec = Section(out, name="state", title="Management calls at scale: durable state (issue 12)",
                  setup=f"bench/state_rate.py: {r['n_existing']} VDEVs exist; each call is "
                  f"answered once its journal record is fdatasync'd on {r['state_fs']}.")
    one = f"{r['n_existing']} VDEVs, one call at a time"
    for key, label in (("one_conn_create_per_s", f"vdev_create, 1 connection, {one}"),
                       ("one_conn_delete_per_s", f"vdev_delete, 1 connection, {one}"),
                       ("clients_create_per_s", f"vdev_create, {r['clients']} clients, {one}"),
                       ("clients_delete_per_s", f"vdev_delete, {r['clients']} clients, {one}")):
        sec.add("state." + key, "siovd", r[key], label=label, unit="calls/s", better="higher")
    for key, label in (("attach_idle", "front-end attach, no management load"),
                       ("attach_storm", "front-end attach during a create storm")):
        for q in ("p50_us", "p99_us"):
            sec.add(f"state.{key}.{q}", "siovd", r[key][q], label=f"{label}: {q[:3]}",
                    unit="us", better="lower")
    if r.get("metrics_scrape"):
        sec.add("state.metrics_scrape_ms", "siovd", r["metrics_scrape"]["ms_median"],
                label=f"scrape of --metrics with {r['daemon_vdevs']} VDEVs (wall)", unit="ms",
                better="lower")
        sec.add("state.metrics_scrape_cpu_ms", "siovd", r["metrics_scrape"]["cpu_ms_median"],
                label=f"scrape of --metrics with {r['daemon_vdevs']} VDEVs (siovd CPU)",
                unit="ms", better="lower")
    sec.note("Goals (issue 12): >= 2000 creates/s on one connection and >= 5000/s from 8 "
             "clients at 10,000 VDEVs; attach time unchanged during a storm; scrape < 100 ms.")
    sec.write()


if __name__ == "__main__":
    main()
