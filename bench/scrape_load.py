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
    """CPU time per live thread; a thread that exits meanwhile (the journal's
    compactor ends after each compaction) is left out, not an error."""
    out = {}
    for t in os.listdir(f"/proc/{pid}/task"):
        try:
            out[int(t)] = task_ns(pid, t)
        except OSError:
            pass
    return out


def comm(pid, tid):
    try:
        return open(f"/proc/{pid}/task/{tid}/comm").read().strip()
    except OSError:
        return ""


def http_tids(pid):
    """siovd's HTTP thread: libmicrohttpd's, named siov-metrics after its first request
    (MHD-* before that, and in builds before the threads had names)."""
    return [int(t) for t in os.listdir(f"/proc/{pid}/task")
            if comm(pid, t) == "siov-metrics" or comm(pid, t).startswith("MHD")]


def niced(pid, tid):
    try:
        return int(open(f"/proc/{pid}/task/{tid}/stat").read().rsplit(")", 1)[1].split()[16]) > 0
    except (OSError, ValueError, IndexError):
        return True  # gone


def engine_tid(pid, before, after):
    """The engine: its thread is named siov-eng0.  A build from before the threads had
    names: the thread that ran most while I/O ran, leaving out the control thread, the
    HTTP thread and the niced ones (the state's compaction thread, busy for a while
    after the VDEVs were created)."""
    named = [t for t in after if comm(pid, t) == "siov-eng0"]
    if named:
        return named[0]
    others = set(http_tids(pid)) | {pid}
    return max((t for t in after if t not in others and not niced(pid, t)),
               key=lambda t: after[t] - before.get(t, 0))


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


class Toggled(threading.Thread):
    """Scrapes back to back while `on` is set."""

    def __init__(self, port, nice):
        super().__init__(daemon=True)
        self.port, self.nice, self.on, self.stop = port, nice, threading.Event(), threading.Event()
        self.cpu_s = 0.0

    def run(self):
        os.sched_setaffinity(0, allcpus())
        if self.nice:  # this thread only: Linux takes a thread id
            os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), self.nice)
        t0 = time.thread_time()
        while not self.stop.is_set():
            if self.on.wait(0.02):
                fetch(self.port)
        self.cpu_s = time.thread_time() - t0


def paired(build, d, port, runtime, nice=0, slice_s=0.5):
    """One siov-bench run in slices that alternate no scrapes / back-to-back
    scrapes; each scraped slice against the mean of its two unscraped
    neighbours, so that the others' load, which drifts over seconds, cancels.
    nice: the scraper's own (19 leaves out what the client itself costs, as
    when Prometheus runs on another machine)."""
    pid = d.p.pid
    n = max(5, int(runtime * 2 / slice_s) | 1)  # odd: starts and ends unscraped
    p = subprocess.Popen(bench_cmd(build, d.sock("io"), n * slice_s + 1.5),
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    sc = Toggled(port, nice)
    sc.start()
    try:
        time.sleep(0.3)
        a = tasks(pid)
        time.sleep(0.4)
        et = engine_tid(pid, a, tasks(pid))
        marks = []
        for i in range(n + 1):
            marks.append((time.monotonic(), engine_counters(d.c)[1], task_ns(pid, et)))
            if i < n:
                sc.on.set() if i % 2 else sc.on.clear()
                time.sleep(slice_s)
    finally:
        sc.on.clear()
        sc.stop.set()
        sc.join()
        p.communicate()
    rate = [((b[1] - a[1]) / (b[0] - a[0]), (b[2] - a[2]) / 1e9 / (b[0] - a[0]))
            for a, b in zip(marks, marks[1:])]
    iops, share = [], []
    for i in range(1, n, 2):
        quiet = [(rate[i - 1][j] + rate[i + 1][j]) / 2 for j in (0, 1)]
        if quiet[0] and quiet[1]:
            iops.append(rate[i][0] / quiet[0])
            share.append(rate[i][1] / quiet[1])
    return dict(pairs=len(iops), slice_s=slice_s,
                iops_ratio=round(statistics.median(iops), 3) if iops else None,
                iops_ratio_min=round(min(iops), 3) if iops else None,
                iops_ratio_max=round(max(iops), 3) if iops else None,
                engine_share_ratio=round(statistics.median(share), 3) if share else None,
                scraper_cpu_share=round(sc.cpu_s / (n // 2 * slice_s), 3),
                load=open("/proc/loadavg").read().split()[0])


def chosen_modes():
    """SCRAPE_MODES, in MODES' order; all of them by default."""
    want = os.environ.get("SCRAPE_MODES", " ".join(MODES)).split()
    return tuple(m for m in MODES if m in want)


def one_round(build, d, port, k, runtime, modes=None):
    """Round k: one run per mode (the order rotates with k) on a running siovd `d`
    that has a VDEV "io" with one queue."""
    modes = modes or chosen_modes()
    for t in os.listdir(f"/proc/{d.p.pid}/task"):
        pin(int(t), TCPU)
    res = {}
    for m in modes[k % len(modes):] + modes[:k % len(modes)]:
        res[m] = one_run(build, d, port, m, runtime)
        print(f"scrape round {k} {m}: " + ", ".join(f"{a} {b}" for a, b in res[m].items()
                                                   if a != "mode"), flush=True)
    for name, nice in (("paired", 0), ("paired-nice", 19)):
        res[name] = paired(build, d, port, runtime, nice)
        print(f"scrape round {k} {name}: {res[name]}", flush=True)
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


PAIRED_DOC = ("paired: one siov-bench run in 0.5 s slices alternating no scrapes and "
              "back-to-back scrapes; each scraped slice's engine IOPS and engine CPU "
              "share divided by the mean of its two unscraped neighbours (1.0: scrapes "
              "cost the engine nothing), median over the pairs of a round.  The scraper "
              "(Python's urllib, unpinned) at nice 0, and at nice 19 (paired-nice: what "
              "siovd's side costs without the client's own CPU, as when Prometheus runs "
              "on another machine).")
PAIRED_FIGURES = (("iops_ratio", "engine IOPS, scraped / unscraped slices"),
                  ("iops_ratio_min", "the same, worst pair"),
                  ("engine_share_ratio", "engine CPU share, scraped / unscraped"),
                  ("scraper_cpu_share", "the scraper's own CPU / scraped time"),
                  ("pairs", "pairs"))


def section_figures(vd):
    """(id, keys, label, unit, better) for bench/figures.py, per mode."""
    out = []
    for m, who in (("paired", "scraper at nice 0"), ("paired-nice", "scraper at nice 19")):
        out.append((f"state.scrape.{m}.iops_ratio", ["scrape_modes", m, "iops_ratio"],
                    f"engine IOPS in 0.5 s slices of back-to-back scrapes of {vd} VDEVs / in "
                    f"the unscraped slices beside them ({who})", "x", "higher"))
        out.append((f"state.scrape.{m}.share_ratio", ["scrape_modes", m, "engine_share_ratio"],
                    f"engine thread's CPU share in those slices / beside them ({who})", "x",
                    "higher"))
    for m in chosen_modes():
        what = "no scrapes" if m == "none" else f"scrapes of {vd} VDEVs: {m}"
        out.append((f"state.scrape.{m}.iops", ["scrape_modes", m, "iops"],
                    f"engine IOPS (1 VDEV, QD 32), {what}", "IOPS", "higher"))
        out.append((f"state.scrape.{m}.iops_per_cpu", ["scrape_modes", m, "iops_per_engine_cpu_s"],
                    f"engine IOPS per engine CPU-second, {what}", "IOPS/CPU-s", "higher"))
    if "b2b" not in chosen_modes() or "none" not in chosen_modes():
        return out
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
