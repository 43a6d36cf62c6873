#!/usr/bin/env python3
"""SIGKILL at any moment of a create storm loses no acknowledged change and
leaves no half-created VDEV (issue 12).

Rounds: siovd on one state dir (a small compaction threshold, so that kills
also land during compactions); CLIENTS threads each create VDEVs one call at a
time on their own connection and delete some of the ones they created; after
a random delay siovd is killed with SIGKILL.  Then a fresh siovd recovers the
dir and must show: every acknowledged create that was not deleted after, with
exactly the requested configuration and an attachable socket (siov-bench
attaches to a sample and does I/O without an error; the backend is null); no acknowledged delete; nothing that was never asked for.  A
create that was in flight at the kill may be there or not, and if it is not,
creating it again works (nothing half-made is in the way).

Usage: t-kill-storm.py SIOVD SIOV_BENCH   env: ROUNDS=6 CLIENTS=4
"""
import json
import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from siovd_proc import fail, stop  # noqa: E402

SIOVD, BENCH = sys.argv[1], sys.argv[2]
ROUNDS = int(os.environ.get("ROUNDS", "6"))
CLIENTS = int(os.environ.get("CLIENTS", "4"))
WINDOW = 65536


class Conn:
    def __init__(self, path, tries=500):
        for _ in range(tries):
            try:
                self.s = socket.socket(socket.AF_UNIX)
                self.s.connect(path)
                break
            except OSError:
                self.s.close()
                time.sleep(0.02)
        else:
            raise OSError(f"cannot connect to {path}")
        self.f = self.s.makefile("rb")

    def call(self, method, **params):
        self.s.sendall(json.dumps({"jsonrpc": "2.0", "id": 1, "method": method,
                                   "params": params}).encode() + b"\n")
        line = self.f.readline()
        if not line:
            raise ConnectionError("siovd went away")
        return json.loads(line)


def start(state, rpc, log):
    p = subprocess.Popen([SIOVD, "--rpc-socket", rpc, "--state-dir", state, "--engines", "1",
                          "--state-compact-records", "50"], stdout=log, stderr=log)
    c = Conn(rpc)
    return p, c


def client(rpc, tmp, k, rnd, acked, deleted, inflight, halt):
    try:
        c = Conn(rpc, tries=5)
    except OSError:
        return
    mine = []
    i = 0
    while not halt.is_set():
        name = f"r{rnd}c{k}n{i}"
        idx = (rnd * 16 + k) * 100000 + i
        conf = dict(name=name, backend="b0", offset=idx * WINDOW, size=WINDOW,
                    socket=os.path.join(tmp, name + ".sock"))
        i += 1
        inflight[k] = conf
        try:
            r = c.call("vdev_create", **conf)
        except (OSError, ConnectionError, ValueError):
            return
        if "result" not in r:
            fail(f"create {name}: {r}")
        acked[name] = conf
        inflight[k] = None
        mine.append(name)
        if i % 3 == 0:
            victim = mine.pop(random.randrange(len(mine)))
            inflight[k] = ("del", victim)
            try:
                r = c.call("vdev_delete", name=victim)
            except (OSError, ConnectionError, ValueError):
                return
            if "result" not in r:
                fail(f"delete {victim}: {r}")
            deleted.add(victim)
            del acked[victim]
            inflight[k] = None


def attach(path):
    """A front end attaches and does I/O without an error (a program, so that an
    ASan build's libsiov is loaded the way ASan wants)."""
    r = subprocess.run([BENCH, "--socket", path, "--rw", "randrw", "--bs", "4k", "--iodepth",
                        "1", "--runtime", "1"], capture_output=True, text=True)
    if r.returncode == 0 and " errors=0" not in r.stdout:
        return r.stdout[-300:]
    return r.returncode and (r.stdout + r.stderr)[-300:]


def check(c, acked, deleted, inflight_sets, tmp):
    listed = {v["name"]: v for v in c.call("vdev_list")["result"]}
    maybe = {x["name"] if isinstance(x, dict) else x[1] for x in inflight_sets if x}
    for name, conf in acked.items():
        if name in maybe:
            continue  # its delete was in flight
        v = listed.get(name)
        if v is None:
            fail(f"acknowledged VDEV {name} lost")
        for key in ("backend", "offset", "size", "socket"):
            if v[key] != conf[key]:
                fail(f"{name}: {key} is {v[key]}, was created as {conf[key]}")
    for name in deleted:
        if name in listed:
            fail(f"acknowledged delete of {name} undone")
    for name in listed:
        if name not in acked and name not in maybe:
            fail(f"VDEV {name} was never asked for (or its delete was acknowledged)")
    for name in random.sample(sorted(listed), min(2, len(listed))):
        rc = attach(listed[name]["socket"])
        if rc:
            fail(f"cannot attach to recovered VDEV {name}: {rc}")
    return listed, maybe


def main():
    tmp = tempfile.mkdtemp(prefix="siov-kill-")
    state = os.path.join(tmp, "state")
    rpc = os.path.join(tmp, "rpc.sock")
    log = open(os.path.join(tmp, "siovd.log"), "w")
    acked, deleted = {}, set()
    p = None
    kills = 0
    try:
        p, c = start(state, rpc, log)
        r = c.call("backend_create", name="b0", type="null", size=1 << 50)
        if "result" not in r:
            fail(f"backend_create: {r}")
        for rnd in range(ROUNDS):
            halt = threading.Event()
            inflight = [None] * CLIENTS
            ts = [threading.Thread(target=client,
                                   args=(rpc, tmp, k, rnd, acked, deleted, inflight, halt))
                  for k in range(CLIENTS)]
            for t in ts:
                t.start()
            time.sleep(random.uniform(0.3, 1.5))
            p.send_signal(signal.SIGKILL)
            p.wait()
            kills += 1
            halt.set()
            for t in ts:
                t.join()
            p, c = start(state, rpc, log)
            listed, maybe = check(c, acked, deleted, inflight, tmp)
            # What was in flight and did not survive can be made again.
            for x in inflight:
                if isinstance(x, dict) and x["name"] not in listed:
                    r = c.call("vdev_create", **x)
                    if "result" not in r:
                        fail(f"re-creating {x['name']} after the kill: {r}")
                    acked[x["name"]] = x
                elif isinstance(x, dict):
                    acked[x["name"]] = x
                elif isinstance(x, tuple) and x[1] in listed:
                    acked[x[1]] = listed[x[1]]
                elif isinstance(x, tuple):
                    deleted.add(x[1])
                    acked.pop(x[1], None)
            print(f"round {rnd}: {len(acked)} VDEVs acknowledged and present, "
                  f"{len(deleted)} deletes held", flush=True)
        if len(acked) < 20:
            fail(f"only {len(acked)} creates acknowledged: the storm did not run")
        # A clean stop leaves one snapshot and no journal to replay.
        p.send_signal(signal.SIGTERM)
        if p.wait(60) != 0:
            fail("siovd did not stop cleanly")
        p = None
        left = sorted(os.listdir(state))
        if left != ["siovd.json"]:
            fail(f"after a clean stop the state dir holds {left}")
        p, c = start(state, rpc, log)
        check(c, acked, deleted, [], tmp)
        print(f"ok: {kills} SIGKILLs, {len(acked)} VDEVs, {len(deleted)} deletes", flush=True)
    finally:
        stop(p)
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
