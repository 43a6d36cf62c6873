#!/usr/bin/env python3
"""A small QMP client for the guest tests: one command, or wait for a migration.

  qmp.py SOCK CMD [JSON-ARGS]        run CMD, print its "return" as JSON
  qmp.py SOCK wait-migrate SECONDS   poll query-migrate until completed, failed
                                     or cancelled; print the last answer; exit 0
                                     only for "completed"
  qmp.py SOCK wait-status STATUS SECONDS   poll query-status until STATUS
Errors (QMP "error", a socket that never answers) exit 1 with the reason.
"""
import json
import socket
import sys
import time


class Qmp:
    def __init__(self, path, timeout=30):
        self.s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.s.settimeout(timeout)
        self.s.connect(path)
        self.buf = b""
        self.read()  # the greeting
        self.cmd("qmp_capabilities")

    def read(self):
        while True:
            while b"\n" in self.buf:
                line, self.buf = self.buf.split(b"\n", 1)
                if line.strip():
                    msg = json.loads(line)
                    if "event" not in msg:
                        return msg
            data = self.s.recv(65536)
            if not data:
                raise SystemExit("qmp: connection closed")
            self.buf += data

    def cmd(self, name, args=None):
        req = {"execute": name}
        if args:
            req["arguments"] = args
        self.s.sendall(json.dumps(req).encode() + b"\n")
        msg = self.read()
        if "error" in msg:
            raise SystemExit("qmp: %s: %s" % (name, msg["error"].get("desc", msg["error"])))
        return msg.get("return")


def main():
    if len(sys.argv) < 3:
        raise SystemExit(__doc__)
    q = Qmp(sys.argv[1])
    what = sys.argv[2]
    if what == "wait-migrate":
        end = time.time() + float(sys.argv[3])
        while True:
            r = q.cmd("query-migrate")
            if r.get("status") in ("completed", "failed", "cancelled"):
                print(json.dumps(r))
                sys.exit(0 if r["status"] == "completed" else 1)
            if time.time() > end:
                print(json.dumps(r))
                raise SystemExit("qmp: migration still %s" % r.get("status"))
            time.sleep(0.1)
    if what == "wait-status":
        end = time.time() + float(sys.argv[4])
        while True:
            r = q.cmd("query-status")
            if r.get("status") == sys.argv[3]:
                print(json.dumps(r))
                return
            if time.time() > end:
                raise SystemExit("qmp: status still %s" % r.get("status"))
            time.sleep(0.1)
    args = json.loads(sys.argv[3]) if len(sys.argv) > 3 else None
    print(json.dumps(q.cmd(what, args)))


if __name__ == "__main__":
    main()
