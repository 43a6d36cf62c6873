#!/usr/bin/env python3
"""Issue 12's benchmark, section "state" (bench/sections/state.sh): management
calls one at a time at scale.

With N VDEVs already in siovd (created by batch), measures:
  - vdev_create and vdev_delete one call at a time on one connection,
  - the same from C concurrent clients (one connection each, one call at a time),
  every call answered only once its journal record is durable (fdatasync), by
  siov-rpc-rate (app/siov-bench/rpc_rate.c: a client in C with json-c, as an
  orchestrator in C or Go would be), and again by this script's own Python
  client, which spends about as much CPU per call as siovd and is in the figure;
  - the time a front end (libsiov through ctypes: connect, negotiate, share
    memory, start the rings) takes to attach, with no management load and
    during a create storm from C clients;
  - a scrape of --metrics with N VDEVs, when siovd has it.
The state dir is on STATE_DIR's file system (default /var/tmp: a real disk,
not tmpfs, so fdatasync costs what it costs).

  - engine IOPS on one VDEV (siov-bench, null backend, QD 32) while --metrics
    is scraped back to back with N VDEVs, against the same without scrapes.
With BEFORE=DIR (a build of an older commit, named BEFORE_LABEL), each round
runs both builds back to back (the order alternates: A B, B A, ...), so the
two can be compared on a shared, noisy machine.

Writes OUT/state.json, OUT/state.md and OUT/section.json (bench/README.md).
Usage: state_rate.py BUILD OUT
  env: N=10000 M=2000 CLIENTS=8 ATTACHES=200 ROUNDS=2 IO_S=3 BEFORE= BEFORE_LABEL=
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
import scrape_load  # noqa: E402
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
BEFORE = os.environ.get("BEFORE", "")
BEFORE_LABEL = os.environ.get("BEFORE_LABEL", "") or "before"
ROUNDS = int(os.environ.get("ROUNDS", "2" if BEFORE else "1"))
IO_S = int(os.environ.get("IO_S", "3"))
# RATES_ONLY=1: the call rates and their journal figures only (no attach, scrape, I/O),
# e.g. with STATE_DIR on tmpfs to see siovd's own ceiling without the disk's flush.
RATES_ONLY = os.environ.get("RATES_ONLY", "0") == "1"
# SCRAPE_ONLY=1: the scrape part only (the scrape alone, engine I/O under scrapes).
SCRAPE_ONLY = os.environ.get("SCRAPE_ONLY", "0") == "1"
# PY_CLIENT=0: without the second row of rates from the Python client.
PY_CLIENT = os.environ.get("PY_CLIENT", "1") == "1"
RPC_RATE = os.environ.get("RPC_RATE", "")


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


def populate(d):
    """N VDEVs by batch, then "att" (attach tests) and "io" (one queue, for I/O)."""
    d.c.call("backend_create", name="b0", type="null", size=(N + 10 * M + 1000000) * WINDOW)
    t0 = time.monotonic()
    d.c.batch("vdev_create", [vconf(d, f"v{i:06d}", i) for i in range(N)])
    took = round(time.monotonic() - t0, 2)
    d.c.call("vdev_create", **vconf(d, "att", N + 1))
    d.c.call("vdev_create", **dict(vconf(d, "io", N + 2), queues=1))
    return took


def one_by_one(rpc, confs, barrier=None):
    c = Conn(rpc)
    if barrier:
        barrier.wait()
    t0, u0 = time.monotonic(), time.thread_time()
    for p in confs:
        c.call("vdev_create", **p)
    t1 = time.monotonic()
    for p in confs:
        c.call("vdev_delete", name=p["name"])
    t2 = time.monotonic()
    if barrier is None:  # one connection: its CPU per call, beside siov-rpc-rate's
        one_by_one.cpu_us = (time.thread_time() - u0) / (2 * len(confs)) * 1e6
    return t0, t1, t2


def worker(rpc, confs, barrier, q):
    q.put(one_by_one(rpc, confs, barrier))


def rpc_rate(d, prefix, first, count, clients):
    """siov-rpc-rate (from the build under test, also for BEFORE: the client is the
    same for both sides): creates then deletes, one call at a time per client."""
    out = subprocess.run([RPC_RATE, "--rpc", d.rpc, "--sock-dir", d.tmp, "--backend", "b0",
                          "--clients", str(clients), "--count", str(count), "--first",
                          str(first), "--window", str(WINDOW), "--prefix", prefix],
                         stdout=subprocess.PIPE, check=True, text=True, timeout=600).stdout
    return json.loads(out)


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
        r = rpc_rate(d, "a", 500000, M * 2, CLIENTS)
        rates = r["create"]["per_s"], r["delete"]["per_s"]
        open(flag, "w").close()
    else:
        rates = None
    out = json.loads(p.communicate()[0])
    if isinstance(out, dict):
        raise RuntimeError(f"attach failed: {out}")
    return dict(n=len(out), p50_us=round(pct(out, 0.5), 1), p99_us=round(pct(out, 0.99), 1),
                mean_us=round(statistics.mean(out), 1)), rates


def cpu_s(pid):
    """CPU time (schedstat, ns resolution) of siovd's control thread, its main thread
    (tid = pid), and of all its threads."""
    t = scrape_load.tasks(pid)
    return t.get(pid, 0) / 1e9, sum(t.values()) / 1e9


def fetch(port):
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=30) as r:
        return r.read()


def scrape(port, pid):
    """Wall time of a scrape, and the CPU time of siovd's threads that serve it
    (control and HTTP; schedstat, in ns): the wall time on a shared machine is
    mostly waiting for a CPU."""
    times, cpus = [], []
    size = 0

    def serving_ns():
        return sum(scrape_load.task_ns(pid, t) for t in [pid] + scrape_load.http_tids(pid))
    for _ in range(5):
        time.sleep(2.1)  # beyond the longest siovd keeps a render for (2 s)
        t0, c0 = time.monotonic(), serving_ns()
        size = len(fetch(port))
        times.append((time.monotonic() - t0) * 1000)
        cpus.append((serving_ns() - c0) / 1e6)
    return dict(ms_median=round(statistics.median(times), 1), ms_max=round(max(times), 1),
                cpu_ms_median=round(statistics.median(cpus), 1), bytes=size)


def journal(port):
    """The journal's counters from --metrics: records, syncs, seconds syncing."""
    out = {}
    for line in fetch(port).decode().splitlines():
        if line.startswith("siov_state_journal_") and " " in line:
            k, v = line.split()[:2]
            out[k] = float(v)
    return out


def per_sync(before, after):
    d = {k: after.get(k, 0) - before.get(k, 0) for k in after}
    syncs = d.get("siov_state_journal_syncs_total", 0)
    if not syncs:
        return None, None
    return (round(d["siov_state_journal_records_total"] / syncs, 2),
            round(d["siov_state_journal_sync_seconds_total"] / syncs * 1e6))


def measure(build, k=0):
    """Round k of every figure on one build."""
    port = free_port()
    d = Siovd(build, port)
    r = {}
    try:
        r["batch_create_s"] = populate(d)
        if SCRAPE_ONLY:
            return scrape_part(build, d, port, k, r)

        j0, c0 = journal(port), cpu_s(d.p.pid)
        one = rpc_rate(d, "o", N + 10, M, 1)
        j1, c1 = journal(port), cpu_s(d.p.pid)
        many = rpc_rate(d, "s", 200000, M * 2, CLIENTS)
        j2, c2 = journal(port), cpu_s(d.p.pid)
        for key, res in (("one_conn", one), ("clients", many)):
            for ph in ("create", "delete"):
                r[f"{key}_{ph}_per_s"] = round(res[ph]["per_s"])
                r[f"{key}_{ph}_p50_us"] = res[ph]["lat_us"]["p50"]
                r[f"{key}_{ph}_p99_us"] = res[ph]["lat_us"]["p99"]
            for fig in ("cpu", "sys"):
                r[f"{key}_client_{fig}_us"] = round(
                    (res["create"][f"client_{fig}_us_per_call"] +
                     res["delete"][f"client_{fig}_us_per_call"]) / 2, 1)
        # siovd's CPU per call (create and delete alike), of the control thread and of
        # all threads: what siovd's own work costs, much less sensitive to a shared
        # machine than the rates.
        r["one_conn_ctrl_cpu_us"] = round((c1[0] - c0[0]) / (2 * M) * 1e6, 1)
        r["clients_ctrl_cpu_us"] = round((c2[0] - c1[0]) / (4 * M) * 1e6, 1)
        r["one_conn_siovd_cpu_us"] = round((c1[1] - c0[1]) / (2 * M) * 1e6, 1)
        r["clients_siovd_cpu_us"] = round((c2[1] - c1[1]) / (4 * M) * 1e6, 1)
        if PY_CLIENT:
            # The same calls from the Python client, after: how much of the figure a
            # slow client is.
            t0, t1, t2 = one_by_one(d.rpc, [vconf(d, f"p{i:06d}", N + 10 + i)
                                            for i in range(M)])
            r["py_one_conn_create_per_s"] = round(M / (t1 - t0))
            r["py_one_conn_delete_per_s"] = round(M / (t2 - t1))
            r["py_one_conn_client_cpu_us"] = round(one_by_one.cpu_us, 1)
            c, dl = storm(d, 300000, M * 2, CLIENTS)
            r["py_clients_create_per_s"], r["py_clients_delete_per_s"] = round(c), round(dl)
        # One connection: a call's wall time beyond its fdatasync (siovd, client, scheduling).
        r["one_conn_records_per_sync"], r["one_conn_us_per_sync"] = per_sync(j0, j1)
        r["clients_records_per_sync"], r["clients_us_per_sync"] = per_sync(j1, j2)
        if r["one_conn_us_per_sync"]:
            per_call = 2 * M / (M / r["one_conn_create_per_s"] + M / r["one_conn_delete_per_s"])
            r["one_conn_us_beyond_sync"] = round(1e6 / per_call - r["one_conn_us_per_sync"])
        if RATES_ONLY:
            return r
        r["attach_idle"], _ = attach_stats(build, d, ATTACHES, False)
        r["attach_storm"], (c, dl) = attach_stats(build, d, ATTACHES, True)
        r["storm_create_per_s_with_attaches"] = round(c)
        scrape_part(build, d, port, k, r)
    finally:
        d.stop()
    return r


def scrape_part(build, d, port, k, r):
    """A scrape alone, then engine I/O under each scrape mode (bench/scrape_load.py)."""
    r["daemon_vdevs"] = d.c.call("daemon_info")["vdevs"]
    r["metrics_scrape"] = scrape(port, d.p.pid)
    r["scrape_modes"] = scrape_load.one_round(build, d, port, k, IO_S)
    return r


RATES = (("one_conn_create_per_s", "vdev_create, 1 connection"),
         ("one_conn_delete_per_s", "vdev_delete, 1 connection"),
         ("clients_create_per_s", f"vdev_create, {CLIENTS} clients"),
         ("clients_delete_per_s", f"vdev_delete, {CLIENTS} clients"))
PY_RATES = tuple(("py_" + k, label + " (Python client)") for k, label in RATES)
LATENCIES = tuple((f"{k}_{ph}_{q}_us", f"vdev_{ph}, {who}: latency {q}")
                  for k, who in (("one_conn", "1 connection"), ("clients", f"{CLIENTS} clients"))
                  for ph in ("create", "delete") for q in ("p50", "p99"))
CPU = (("one_conn_ctrl_cpu_us", "control thread CPU per call, 1 connection"),
       ("clients_ctrl_cpu_us", f"control thread CPU per call, {CLIENTS} clients"),
       ("one_conn_siovd_cpu_us", "siovd CPU per call (all threads), 1 connection"),
       ("clients_siovd_cpu_us", f"siovd CPU per call (all threads), {CLIENTS} clients"),
       ("one_conn_client_cpu_us", "siov-rpc-rate's own CPU per call, 1 connection"),
       ("one_conn_client_sys_us", "of which in the kernel"),
       ("clients_client_cpu_us", f"siov-rpc-rate's own CPU per call, {CLIENTS} clients"),
       ("py_one_conn_client_cpu_us", "the Python client's own CPU per call, 1 connection"))


def loadavg():
    return open("/proc/loadavg").read().split()[0]


def main():
    global RPC_RATE
    build, out = sys.argv[1], sys.argv[2]
    RPC_RATE = RPC_RATE or os.path.join(build, "app/siov-bench/siov-rpc-rate")
    os.makedirs(out, exist_ok=True)
    sides = [("siovd", build)] + ([(BEFORE_LABEL, BEFORE)] if BEFORE else [])
    rounds = []
    for k in range(ROUNDS):
        rnd = {}
        for name, b in (sides if k % 2 == 0 else sides[::-1]):
            la = loadavg()
            rnd[name] = measure(b, k)
            rnd[name]["load_before"] = la
            print(f"round {k} {name} (load {la}): " + ", ".join(
                f"{key} {rnd[name].get(key)}" for key, _ in RATES), flush=True)
        rounds.append(rnd)
    r = dict(n_existing=N, m=M, clients=CLIENTS, state_fs=STATE_DIR, socket_fs=SOCKET_FS,
             sides=[s for s, _ in sides], rounds=rounds)
    json.dump(r, open(os.path.join(out, "state.json"), "w"), indent=2)
    md = markdown(r)
    open(os.path.join(out, "state.md"), "w").write(md)
    section(out, r)
    print(md)


def med(r, side, *keys):
    vals = []
    for rnd in r["rounds"]:
        v = rnd[side]
        for k in keys:
            v = v.get(k) if isinstance(v, dict) else None
        if v is not None:
            vals.append(v)
    if not vals:
        return "-"
    m = statistics.median(vals)
    return fmt(m) if len(vals) == 1 else f"{fmt(m)} ({fmt(min(vals))}-{fmt(max(vals))})"


def fmt(v):
    """3.01M, 421.5k, 0.674: IOPS and bytes are large, shares small."""
    if abs(v) >= 1e6:
        return f"{v / 1e6:.2f}M"
    if abs(v) >= 1e4:
        return f"{v / 1e3:.1f}k"
    return f"{v:g}"


def markdown(r):
    sides = r["sides"]
    loads = ", ".join(rnd[s]["load_before"] for rnd in r["rounds"] for s in sides)
    hdr = "| | " + " | ".join(sides) + " |\n|---|" + "---|" * len(sides) + "\n"

    def row(label, *keys):
        return f"| {label} | " + " | ".join(med(r, s, *keys) for s in sides) + " |\n"
    md = f"""# Management calls at scale (issue 12)

{r['n_existing']} VDEVs exist; each call below is one JSON-RPC call answered only
once its journal record is durable (fdatasync on {r['state_fs']}); sockets on
{r['socket_fs']}.  Medians (min-max) over {len(r['rounds'])} round(s); the sides of
a round ran back to back.  Load average (1 min) at the start of each run: {loads}.

""" + hdr
    if SCRAPE_ONLY:
        return md + scrape_md(r, row, hdr)
    for key, label in RATES:
        md += row(f"{label}, one call at a time (C client): calls/s", key)
    for key, label in PY_RATES if PY_CLIENT else ():
        md += row(f"{label}, one call at a time: calls/s", key)
    for key, label in LATENCIES:
        md += row(f"{label} (C client), us", key)
    md += row("records per fdatasync, 1 connection", "one_conn_records_per_sync")
    md += row(f"records per fdatasync, {r['clients']} clients", "clients_records_per_sync")
    md += row("write + fdatasync, 1 connection: us", "one_conn_us_per_sync")
    md += row(f"write + fdatasync, {r['clients']} clients: us", "clients_us_per_sync")
    md += row("1 connection: a call's wall time beyond its fdatasync, us",
              "one_conn_us_beyond_sync")
    for key, label in CPU:
        if PY_CLIENT or not key.startswith("py_"):
            md += row(f"{label}: us", key)
    if RATES_ONLY:
        return md
    md += f"\nFront-end attach (libsiov: connect, negotiate, share memory, start the rings), us:\n\n" + hdr
    for k, label in (("attach_idle", "no management load"),
                     ("attach_storm", f"during a create storm from {r['clients']} clients")):
        md += row(f"{label}: p50", k, "p50_us") + row(f"{label}: p99", k, "p99_us")
    md += row("creates/s of that storm", "storm_create_per_s_with_attaches")
    return md + scrape_md(r, row, hdr)


def scrape_md(r, row, hdr):
    md = f"\n`--metrics` with {r['rounds'][0][r['sides'][0]]['daemon_vdevs']} VDEVs (a " \
         f"scrape alone, 2.1 s apart; CPU of its control and HTTP threads):\n\n" + hdr
    md += row("scrape wall ms", "metrics_scrape", "ms_median")
    md += row("scrape siovd CPU ms", "metrics_scrape", "cpu_ms_median")
    md += row("scrape bytes", "metrics_scrape", "bytes")
    md += "\nEngine I/O (one VDEV, null backend, 4 KiB randread QD 32, siov-bench on LCPU, " \
          "siovd on TCPU) while scraped; " + scrape_load.MODES_DOC + "\n\n" + hdr
    for m in scrape_load.chosen_modes():
        for key, label in scrape_load.FIGURES:
            md += row(f"{m}: {label}", "scrape_modes", m, key)
    md += "\n" + scrape_load.PAIRED_DOC + "\n\n" + hdr
    for m in ("paired", "paired-nice"):
        for key, label in scrape_load.PAIRED_FIGURES:
            md += row(f"{m}: {label}", "scrape_modes", m, key)
    return md


def section(out, r):
    """The figures for bench/run.sh's results file: one value per round per side."""
    sec = Section(out, name="state", title="Management calls at scale: durable state (issue 12)",
                  setup=f"bench/state_rate.py: {r['n_existing']} VDEVs exist; each call is "
                  f"answered once its journal record is fdatasync'd on {r['state_fs']}; "
                  f"sockets on {r['socket_fs']}.")
    one = f"{r['n_existing']} VDEVs, one call at a time"

    def add(fid, keys, label, unit, better):
        for rnd in r["rounds"]:
            for side in r["sides"]:
                v = rnd[side]
                for k in keys:
                    v = v.get(k) if isinstance(v, dict) else None
                sec.add(fid, side, v, label=label, unit=unit, better=better)
        if len(r["sides"]) > 1:
            sec.ratio(fid, of=r["sides"][0], to=r["sides"][1])
    for key, label in () if SCRAPE_ONLY else RATES + (PY_RATES if PY_CLIENT else ()):
        add("state." + key, [key], f"{label}, {one}", "calls/s", "higher")
    for key, label in () if SCRAPE_ONLY else LATENCIES:
        add("state." + key, [key], label, "us", "lower")
    for key, label in () if SCRAPE_ONLY else (
            ("clients_records_per_sync", f"records per fdatasync, {r['clients']} clients"),):
        add("state." + key, [key], label, "records", "higher")
    for key, label in () if SCRAPE_ONLY else (
            ("one_conn_us_per_sync", "1 connection: write + fdatasync"),
                       ("one_conn_us_beyond_sync", "1 connection: a call's time beyond its sync"),
                       *(c for c in CPU if PY_CLIENT or not c[0].startswith("py_"))):
        add("state." + key, [key], label, "us", "lower")
    for key, label in (("attach_idle", "front-end attach, no management load"),
                       ("attach_storm", "front-end attach during a create storm")):
        for q in ("p50_us", "p99_us") if not (RATES_ONLY or SCRAPE_ONLY) else ():
            add(f"state.{key}.{q}", [key, q], f"{label}: {q[:3]}", "us", "lower")
    vd = r["rounds"][0][r["sides"][0]].get("daemon_vdevs")
    for fid, keys, label, unit, better in () if RATES_ONLY else (
            ("state.metrics_scrape_ms", ["metrics_scrape", "ms_median"],
             f"scrape of --metrics with {vd} VDEVs (wall)", "ms", "lower"),
            ("state.metrics_scrape_cpu_ms", ["metrics_scrape", "cpu_ms_median"],
             f"scrape of --metrics with {vd} VDEVs (CPU of siovd's control and HTTP threads)",
             "ms", "lower"),
            *scrape_load.section_figures(vd)):
        add(fid, keys, label, unit, better)
    loads = ", ".join(rnd[s]["load_before"] for rnd in r["rounds"] for s in r["sides"])
    sec.note(f"Load average (1 min) at the start of each run: {loads}.")
    sec.note("Goals (issue 12): >= 2000 creates/s on one connection and >= 5000/s from 8 "
             "clients at 10,000 VDEVs; attach time unchanged during a storm; scrape < 100 ms "
             "without stalling the engines.")
    sec.write()


if __name__ == "__main__":
    main()
