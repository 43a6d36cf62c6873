"""Control-thread CPU per scrape of --metrics with N VDEVs (schedstat), builds A and B alternating."""
import os, sys, time, json, subprocess, tempfile, shutil, socket, urllib.request, statistics
sys.path.insert(0, "/work/wt/ctl/bench")
import siov_scale
N = 10000
def free_port():
    s = socket.socket(); s.bind(("127.0.0.1", 0)); p = s.getsockname()[1]; s.close(); return p
def ns(pid, tid):
    return int(open(f"/proc/{pid}/task/{tid}/schedstat").read().split()[0])
def run(build):
    tmp = tempfile.mkdtemp(prefix="ctl-scr-", dir="/dev/shm")
    port = free_port()
    rpc = os.path.join(tmp, "rpc.sock")
    p = subprocess.Popen([build + "/app/siovd/siovd", "--rpc-socket", rpc, "--engines", "1",
                          "--metrics", f"127.0.0.1:{port}", "--log-level", "warn"])
    try:
        class C: pass
        for _ in range(300):
            if os.path.exists(rpc): break
            time.sleep(0.02)
        sys.path.insert(0, "/work/wt/ctl/bench")
        import state_rate
        c = state_rate.Conn(rpc)
        c.call("backend_create", name="b0", type="null", size=(N + 10) << 20)
        c.batch("vdev_create", [dict(name=f"v{i:06d}", backend="b0", offset=i << 20, size=1 << 20,
                                     socket=os.path.join(tmp, f"v{i}.sock")) for i in range(N)])
        out = []
        for k in range(12):
            time.sleep(2.1)
            c0 = ns(p.pid, p.pid)
            urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=30).read()
            out.append((ns(p.pid, p.pid) - c0) / 1e6)
        return statistics.median(out[2:]), min(out[2:]), max(out[2:])
    finally:
        p.terminate(); p.wait(60); shutil.rmtree(tmp, ignore_errors=True)
A, B = sys.argv[1], sys.argv[2]
for r in range(int(sys.argv[3])):
    for name, b in ((("A", A), ("B", B)) if r % 2 == 0 else (("B", B), ("A", A))):
        print(r, name, "ctrl ms per scrape median %.2f (%.2f-%.2f)" % run(b), "load", open("/proc/loadavg").read().split()[0], flush=True)
