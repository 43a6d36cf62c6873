#!/usr/bin/env python3
"""Section "scaling" (bench/sections/scaling.sh): how siovd's efficiency holds
as engines and active VDEVs are added, null backend, 4 KiB randread.

engines: 4 busy VDEVs (QD 16 each) on one engine and on two, siovd on CPU 0
         and siov-bench (polling) on CPU 1 both times (on a 2-CPU machine the
         load needs the other CPU: a second engine there would fight the
         client for it, and the figure would measure that fight).  The
         engines run with --poll-us SCALING_POLL_US (default 0: they sleep
         as soon as their rings are empty), so that each uses the CPU its
         requests need: two engines that poll on one CPU split it by the
         scheduler's time slices whatever their work, and the ratio would
         measure the scheduler.  Figures: aggregate IOPS per target
         CPU-second (the whole process) and per engine CPU-second (the
         engine threads' own clocks, engine_stats cpu_s: no control
         thread), two engines against one (issue 13: within 10 %, ratio >=
         0.9); on a machine with more CPUs set ENGINE_CPUS="0,2".  With
         SCALING_BASE_BUILD=DIR another build's siovd runs the same sides in
         the same rounds (an A/B).
many:    64 and 1,000 active VDEVs on one siovd engine against
         qemu-storage-daemon serving as many vhost-user-blk exports (one
         null-co node each, its main loop on CPU 0); one siov-bench thread on
         CPU 1 drives them all (QD 2 each at 64, QD 1 at 1,000).  Figures:
         IOPS per target CPU-second and aggregate IOPS.

Rounds alternate the sides.  Usage: scaling.py BUILD DIR
env: RUNTIME (5; QUICK=1: 2), ROUNDS (3; QUICK=1: 1), SCALING_NS="64 1000"
     (SCALING_NS="" for the engines part only), SCALING_POLL_US (0),
     SCALING_BASE_BUILD, SCALING_IR=1 (each engines side once more under
     callgrind: instructions per request)
"""
import os
import resource
import shutil
import signal
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
from figures import Section  # noqa: E402
from siov_scale import Siovd, bench, run_bench  # noqa: E402

QUICK = os.environ.get("QUICK", "0") == "1"
RUNTIME = float(os.environ.get("RUNTIME", "2" if QUICK else "5"))
ROUNDS = int(os.environ.get("ROUNDS", "1" if QUICK else "3"))
NS = [int(x) for x in os.environ.get("SCALING_NS", "64" if QUICK else "64 1000").split()]
TCPU, LCPU = os.environ.get("TCPU", "0"), os.environ.get("LCPU", "1")
ENGINE_CPUS = os.environ.get("ENGINE_CPUS", TCPU)  # where the two-engine siovd runs
POLL_US = os.environ.get("SCALING_POLL_US", "0")
BASE = os.environ.get("SCALING_BASE_BUILD", "")


def wait_socks(paths, proc, timeout=60):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if all(os.path.exists(p) for p in paths):
            return
        if proc.poll() is not None:
            raise RuntimeError("target exited while starting")
        time.sleep(0.05)
    raise RuntimeError("target sockets did not appear")


def engine_cpu(d, r):
    """Requests per engine CPU-second, from the engines' own counters and thread clocks."""
    es = d.call("engine_stats")
    if all("cpu_s" in e for e in es):
        cpu = sum(e["cpu_s"] for e in es)
    else:  # a siovd from before cpu_s: every thread but the main (control) one
        cpu = 0.0
        for tid in os.listdir(f"/proc/{d.p.pid}/task"):
            if int(tid) != d.p.pid:
                st = open(f"/proc/{d.p.pid}/task/{tid}/stat").read()
                f = st[st.rindex(")") + 2:].split()
                cpu += (int(f[11]) + int(f[12])) / os.sysconf("SC_CLK_TCK")
    r["engine_cpu_s"] = cpu
    r["engine_requests"] = [e["requests"] for e in es]
    r["iops_per_engine_cpu_s"] = sum(r["engine_requests"]) / cpu if cpu > 0 else None
    return r


def siovd_run(build, n, qd, engines, cpus, win=1 << 26, extra=()):
    d = Siovd(build, engines=engines, cpus=cpus, extra=extra)
    try:
        d.call("backend_create", name="nul", type="null", size=n * win)
        plist = [dict(name=f"v{i:05d}", backend="nul", offset=i * win, size=win,
                      socket=os.path.join(d.dir, f"v{i:05d}.sock")) for i in range(n)]
        d.batch("vdev_create", plist)
        socks = [p["socket"] for p in plist]
        wait_socks(socks, d.p)
        cmd = bench(build, socks, RUNTIME, iodepth=qd, threads=1, cpus=LCPU,
                    extra=["--target-pid", str(d.p.pid)])
        return engine_cpu(d, run_bench(cmd))
    finally:
        d.stop()


IR_FNS = ["engine_main", "blk_process", "siov_vq_pop", "siov_vq_complete", "siov_vq_notify"]


def ir_run(build, engines, out):
    """One engines side under callgrind: instructions per request, which do not
    depend on the load (threads run one at a time under valgrind, so this shows
    work the engines add for each other, not cache-line traffic)."""
    so = os.path.join(out, "raw", "vgwait.so")
    os.makedirs(os.path.dirname(so), exist_ok=True)
    subprocess.run(["cc", "-O2", "-shared", "-fPIC", "-o", so, os.path.join(HERE, "vg_uring_wait.c"),
                    "-ldl", "-luring"], check=True)
    cg = os.path.join(out, "raw", f"engines{engines}.cg")
    d = Siovd(build, engines=engines, cpus=TCPU, extra=["--poll-us", POLL_US],
              wrap=["env", f"LD_PRELOAD={so}", "valgrind", "-q", "--tool=callgrind",
                    f"--callgrind-out-file={cg}"])
    try:
        win = 1 << 26
        d.call("backend_create", name="nul", type="null", size=4 * win)
        plist = [dict(name=f"v{i}", backend="nul", offset=i * win, size=win,
                      socket=os.path.join(d.dir, f"v{i}.sock")) for i in range(4)]
        d.batch("vdev_create", plist)
        wait_socks([p["socket"] for p in plist], d.p, timeout=120)
        run_bench(bench(build, [p["socket"] for p in plist], RUNTIME, iodepth=16, threads=1,
                        cpus=LCPU))
        req = sum(e["requests"] for e in d.call("engine_stats"))
    finally:
        d.stop()
    vals = subprocess.run([sys.executable, os.path.join(HERE, "callgrind_ir.py"), cg, str(req)]
                          + IR_FNS, capture_output=True, text=True, check=True).stdout.split()
    return dict(zip(IR_FNS, vals))


def qsd_run(build, n, qd):
    qsd = shutil.which("qemu-storage-daemon")
    tmp = tempfile.mkdtemp(prefix="siov-qsd-", dir="/tmp")
    args = ["taskset", "-c", TCPU, qsd]
    socks = []
    for i in range(n):
        s = os.path.join(tmp, f"e{i}.sock")
        socks.append(s)
        args += ["--blockdev", f"driver=null-co,node-name=d{i},size=67108864,read-zeroes=off",
                 "--export", f"type=vhost-user-blk,id=e{i},node-name=d{i},addr.type=unix,"
                 f"addr.path={s},writable=on,num-queues=1"]
    log = open(os.path.join(tmp, "qsd.log"), "w")
    p = subprocess.Popen(args, stdout=log, stderr=log)
    try:
        wait_socks(socks, p)
        cmd = bench(build, socks, RUNTIME, iodepth=qd, threads=1, cpus=LCPU,
                    extra=["--target-pid", str(p.pid)])
        return run_bench(cmd)
    finally:
        p.send_signal(signal.SIGTERM)
        try:
            p.wait(30)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()
        shutil.rmtree(tmp, ignore_errors=True)


def safe(what, fn, *a):
    try:
        return fn(*a)
    except Exception as ex:  # a failed run is a failed round, not a failed section
        print(f"scaling: {what}: {ex}", file=sys.stderr, flush=True)
        return None


def per_cpu(r):
    return r.get("iops_per_target_cpu_s") if r else None


def main():
    build, out = sys.argv[1], sys.argv[2]
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))  # 1,000 sockets in siov-bench
    sec = Section(out, name="scaling", title="Scaling: engines and active VDEVs",
                  setup=f"Null backend, 4 KiB randread, one siov-bench thread on CPU {LCPU}, "
                  f"{RUNTIME:g} s per run, {ROUNDS} rounds alternating the sides.")
    have_qsd = shutil.which("qemu-storage-daemon") is not None
    builds = [("", build)] + ([(" (base)", BASE)] if BASE else [])
    sides = [(f"{e} engine{'s' if e > 1 else ''}{tag}", b, e, TCPU if e == 1 else ENGINE_CPUS)
             for tag, b in builds for e in (1, 2)]
    for rnd in range(ROUNDS):
        for side, b, engines, cpus in (sides if rnd % 2 == 0 else sides[::-1]):
            r = safe(side, siovd_run, b, 4, 16, engines, cpus, 1 << 26, ["--poll-us", POLL_US])
            sec.add("scaling.engines.iops_per_cpu_s", side, per_cpu(r),
                    label="4 VDEVs at QD 16: IOPS per target CPU-second", unit="IOPS/CPU-s")
            sec.add("scaling.engines.iops_per_engine_cpu_s", side,
                    r and r.get("iops_per_engine_cpu_s"),
                    label="4 VDEVs at QD 16: requests per engine CPU-second (engine threads' "
                    "own clocks)", unit="IOPS/CPU-s")
            sec.add("scaling.engines.iops", side, r and r["iops"],
                    label="4 VDEVs at QD 16: IOPS", unit="IOPS")
            print(f"scaling: round {rnd + 1} {side}: {r['iops']:.0f} IOPS, "
                  f"{r['target_cpu_s'] / r['runtime_s']:.2f} of a CPU, engines "
                  f"{r['engine_cpu_s']:.2f} CPU-s for {r['engine_requests']}" if r else
                  f"scaling: round {rnd + 1} {side}: failed", file=sys.stderr, flush=True)
        for n in NS:
            qd = 2 if n <= 64 else 1
            targets = [("siovd", lambda: siovd_run(build, n, qd, 1, TCPU))]
            if have_qsd:
                targets.append(("qsd", lambda: qsd_run(build, n, qd)))
            for side, fn in targets:
                r = safe(f"{n} VDEVs {side}", fn)
                sec.add(f"scaling.vdevs{n}.iops_per_cpu_s", side, per_cpu(r),
                        label=f"{n} active VDEVs (exports), QD {qd} each: IOPS per target "
                        "CPU-second", unit="IOPS/CPU-s")
                sec.add(f"scaling.vdevs{n}.iops", side, r and r["iops"],
                        label=f"{n} active VDEVs (exports), QD {qd} each: IOPS", unit="IOPS")
                print(f"scaling: round {rnd + 1} {n} VDEVs {side}: "
                      f"{r['iops']:.0f} IOPS" if r else f"scaling: {n} {side} failed",
                      file=sys.stderr, flush=True)
    for tag, _ in builds:
        for m in ("iops_per_cpu_s", "iops_per_engine_cpu_s", "iops"):
            sec.ratio(f"scaling.engines.{m}", f"2 engines{tag}", f"1 engine{tag}",
                      target=None if m == "iops" else 0.9)
    if BASE:
        for m in ("iops_per_cpu_s", "iops_per_engine_cpu_s"):
            sec.ratio(f"scaling.engines.{m}", "2 engines", "2 engines (base)")
        sec.note(f"Sides marked (base): siovd from {BASE}, in the same rounds.")
    sec.note(f"Engines part: siovd --poll-us {POLL_US}; siov-bench polls.")
    if os.environ.get("SCALING_IR", "0") == "1":
        for tag, b in builds:
            for e in (1, 2):
                side = f"{e} engine{'s' if e > 1 else ''}{tag}"
                ir = safe(f"{side} under callgrind", ir_run, b, e, out) or {}
                for fn in IR_FNS:
                    v = ir.get(fn)
                    sec.add(f"scaling.engines.ir.{fn}", side,
                            None if v in (None, "none") else float(v), better="lower",
                            label=f"4 VDEVs at QD 16, instructions per request (callgrind): "
                            f"{fn} and what it calls", unit="Ir")
                print(f"scaling: {side} Ir/request: {ir}", file=sys.stderr, flush=True)
        for fn in IR_FNS:
            sec.ratio(f"scaling.engines.ir.{fn}", "2 engines", "1 engine")
    for n in NS:
        if have_qsd:
            sec.ratio(f"scaling.vdevs{n}.iops_per_cpu_s", "siovd", "qsd")
            sec.ratio(f"scaling.vdevs{n}.iops", "siovd", "qsd")
    if not have_qsd:
        sec.note("qemu-storage-daemon is not installed: siovd only.")
    sec.write()


if __name__ == "__main__":
    main()
