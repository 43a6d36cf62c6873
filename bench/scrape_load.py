#!/usr/bin/env python3
"""What scraping --metrics costs the engines (issue 12), the scrape part of
section "state" (bench/state_rate.py calls one_round() in each round;
SCRAPE_ONLY=1 bench/sections/state.sh runs only this part).

With N VDEVs in siovd and one of them busy (siov-bench, null backend, 4 KiB
randread, QD 32), engine IOPS and the engine thread's own CPU time
(/proc/PID/task/TID/schedstat, in ns) are measured with:
  none     no scrapes;
  1s       a scrape every second (a usual Prometheus interval);
  100ms    a scrape every 100 ms;
  b2b      scrapes back to back (the worst a scraper can do);
  b2b-pin  back to back, with siovd's control thread, its HTTP thread (where
           there is one) and the scraper pinned to the load CPU, so the engine
           has its CPU alone;
  hog      no scrapes, but a busy loop (another process, unpinned) using
           what back-to-back scraping uses: if IOPS fall as much as with b2b,
           the cost is plain CPU competition, not contention.
siovd (so its engine) runs on TCPU and siov-bench on LCPU throughout.
IOPS per engine CPU-second falls only if the engine does more work per
request: a slower engine (contention) or more empty polling rounds (a starved
client); the engine's own counters (requests per round, rounds per CPU-second)
tell the two apart.  The modes of a round run in an order that rotates from
round to round; SCRAPE_MODES picks some.
"""
import json
import os
import statistics
import subprocess
import threading
import time
import urllib.request

MODES = ("none", "1s", "100ms", "b2b", "b2b-pin", "hog")
PERIOD = {"1s": 1.0, "100ms": 0.1, "b2b": 0.0, "b2b-pin": 0.0}
TCPU = int(os.environ.get("TCPU", "0"))
LCPU = int(os.environ.get("LCPU", "1"))


def fetch(port):
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=30) as r:
        return r.read()


def task_ns(pid, tid):
    """A thread's CPU time in ns (schedstat's first field: time on a CPU)."""
    try:
        return int(open(f"/proc/{pid}/task/{tid}/schedstat").read().split()[0])
    except (OSError, ValueError, IndexError):
        f = open(f"/proc/{pid}/task/{tid}/stat").read().rsplit(")", 1)[1].split()
        return (int(f[11]) + int(f[12])) * 1000000000 // os.sysconf("SC_CLK_TCK")


def tasks(pid):
    return {int(t): task_ns(pid, t) for t in os.listdir(f"/proc/{pid}/task")}


def comm(pid, tid):
    try:
        return open(f"/proc/{pid}/task/{tid}/comm").read().strip()
    except OSError:
        return ""


def http_tids(pid):
    """libmicrohttpd's threads (siovd's HTTP thread; none in builds that serve from the loop)."""
    return [int(t) for t in os.listdir(f"/proc/{pid}/task") if comm(pid, t).startswith("MHD")]


def engine_tid(pid, before, after):
    """The engine: the thread (not the control or HTTP thread) that ran most while I/O ran."""
    others = set(http_tids(pid)) | {pid}
    return max((t for t in after if t not in others), key=lambda t: after[t] - before.get(t, 0))


def pin(tid, cpu):
    try:
        os.sched_setaffinity(tid, {cpu})
    except OSError:
        pass


def allcpus():
    return set(range(os.cpu_count() or 1))


class Scraper(threading.Thread):
    def __init__(self, port, period, cpu=None):
        super().__init__(daemon=True)
        self.port, self.period, self.cpu = port, period, cpu
        self.stop = threading.Event()
        self.ms = []

    def run(self):
        # sched_setaffinity(0) pins the calling thread only.
        os.sched_setaffinity(0, {self.cpu} if self.cpu is not None else allcpus())
        while not self.stop.is_set():
            t0 = time.monotonic()
            fetch(self.port)
            self.ms.append((time.monotonic() - t0) * 1000)
            if self.period:
                self.stop.wait(max(0.0, self.period - (time.monotonic() - t0)))


def hog(seconds):
    """A CPU-bound process, unpinned, for the whole run."""
    return subprocess.Popen(["python3", "-c", f"import time\nt=time.monotonic()+{seconds}\n"
                             "while time.monotonic()<t: pass"])


def bench_cmd(build, sock, runtime):
    return ["taskset", "-c", str(LCPU), os.path.join(build, "app/siov-bench/siov-bench"),
            "--socket", sock, "--rw", "randread", "--bs", "4k", "--iodepth", "32",
            "--runtime", str(runtime), "--json"]


def engine_counters(rpc):
    e = rpc.call("engine_stats")[0]
    return e["rounds"], e["requests"], e["sleeps"]


def one_run(build, d, port, mode, runtime):
    """One siov-bench run in one mode: IOPS, engine CPU, its counters, the scrapes."""
    pid = d.p.pid
    for t in [pid] + http_tids(pid):
        pin(t, LCPU if mode == "b2b-pin" else TCPU)
    sc = Scraper(port, PERIOD[mode], LCPU if mode == "b2b-pin" else None) \
        if mode in PERIOD else None
    h = hog(runtime + 2) if mode == "hog" else None
    c0, (r0, q0, s0) = tasks(pid), engine_counters(d.c)
    t0 = time.monotonic()
    if sc:
        sc.start()
    p = subprocess.run(bench_cmd(build, d.sock("io"), runtime), capture_output=True, text=True,
                       timeout=runtime + 60)
    wall = time.monotonic() - t0
    c1 = tasks(pid)
    if sc:
        sc.stop.set()
        sc.join()
    if h:
        h.kill()
        h.wait()
    r1, q1, s1 = engine_counters(d.c)
    for t in [pid] + http_tids(pid):
        pin(t, TCPU)
    if p.returncode != 0 or not p.stdout.strip():
        raise RuntimeError(f"siov-bench: {p.stderr.strip()[-300:]}")
    out = json.loads(p.stdout.splitlines()[0])
    et = engine_tid(pid, c0, c1)
    eng_s = (c1[et] - c0[et]) / 1e9
    ctl_s = (c1[pid] - c0.get(pid, 0)) / 1e9
    http_s = sum(c1[t] - c0.get(t, 0) for t in http_tids(pid) if t in c1) / 1e9
    rounds = r1 - r0
    return dict(mode=mode, iops=round(out["iops"]), engine_cpu_s=round(eng_s, 3),
                engine_cpu_share=round(eng_s / wall, 3),
                iops_per_engine_cpu_s=round(out["iops"] * wall / eng_s) if eng_s else None,
                requests_per_round=round((q1 - q0) / rounds, 2) if rounds else None,
                rounds_per_engine_cpu_s=round(rounds / eng_s) if eng_s else None,
                sleeps=s1 - s0, control_cpu_s=round(ctl_s, 3), http_cpu_s=round(http_s, 3),
                scrape_cpu_share=round((ctl_s + http_s) / wall, 3),
                bench_cpu_s=out.get("bench_cpu_s"), scrapes=len(sc.ms) if sc else 0,
                scrape_ms_median=round(statistics.median(sc.ms), 1) if sc and sc.ms else None,
                load=open("/proc/loadavg").read().split()[0])


def one_round(build, d, port, k, runtime, modes=None):
    """Round k: one run per mode (the order rotates with k) on a running siovd `d`
    that has a VDEV "io" with one queue."""
    modes = modes or tuple(os.environ.get("SCRAPE_MODES", " ".join(MODES)).split())
    for t in os.listdir(f"/proc/{d.p.pid}/task"):
        pin(int(t), TCPU)
    res = {}
    for m in modes[k % len(modes):] + modes[:k % len(modes)]:
        res[m] = one_run(build, d, port, m, runtime)
        print(f"scrape round {k} {m}: " + ", ".join(f"{a} {b}" for a, b in res[m].items()
                                                   if a != "mode"), flush=True)
    return res


MODES_DOC = ("modes: none (no scrapes), 1s and 100ms (a scrape every 1 s, 100 ms), b2b "
             "(back to back), b2b-pin (back to back, siovd's control and HTTP threads and the "
             "scraper pinned to LCPU: the engine has TCPU alone), hog (no scrapes; a busy loop in "
             "another process instead, unpinned).")
FIGURES = (("iops", "IOPS"),
           ("iops_per_engine_cpu_s", "IOPS per engine CPU-second"),
           ("engine_cpu_share", "engine thread's CPU / wall"),
           ("requests_per_round", "requests per engine round"),
           ("control_cpu_s", "control thread CPU-s"),
           ("http_cpu_s", "HTTP thread CPU-s"),
           ("scrape_cpu_share", "siovd's control + HTTP threads' CPU / wall"),
           ("scrapes", "scrapes"),
           ("scrape_ms_median", "scrape wall ms"))


def section_figures(vd):
    """(id, keys, label, unit, better) for bench/figures.py, per mode."""
    out = []
    for m in MODES:
        what = "no scrapes" if m == "none" else f"scrapes of {vd} VDEVs: {m}"
        out.append((f"state.scrape.{m}.iops", ["scrape_modes", m, "iops"],
                    f"engine IOPS (1 VDEV, QD 32), {what}", "IOPS", "higher"))
        out.append((f"state.scrape.{m}.iops_per_cpu", ["scrape_modes", m, "iops_per_engine_cpu_s"],
                    f"engine IOPS per engine CPU-second, {what}", "IOPS/CPU-s", "higher"))
    out.append(("state.scrape.b2b.siovd_cpu", ["scrape_modes", "b2b", "scrape_cpu_share"],
                f"siovd's CPU for back-to-back scrapes of {vd} VDEVs (control + HTTP threads)",
                "CPU-s/s", "lower"))
    out.append(("state.scrape.b2b.engine_share", ["scrape_modes", "b2b", "engine_cpu_share"],
                f"engine thread's CPU share during back-to-back scrapes of {vd} VDEVs",
                "CPU-s/s", "higher"))
    out.append(("state.scrape.none.engine_share", ["scrape_modes", "none", "engine_cpu_share"],
                "engine thread's CPU share, no scrapes", "CPU-s/s", "higher"))
    out.append(("state.scrape.b2b.scrape_ms", ["scrape_modes", "b2b", "scrape_ms_median"],
                f"scrape wall ms, back to back during I/O, {vd} VDEVs", "ms", "lower"))
    return out
