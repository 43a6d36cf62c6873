#!/usr/bin/env python3
"""A hostile NBD client against siovd's export (test/remote/t-export-hostile.sh).

  nbd_hostile.py rw SOCK NAME SIZE     malformed, oversized, out-of-range input
  nbd_hostile.py ro SOCK NAME          writes and trims on a read-only export
  nbd_hostile.py fence SOCK NAME SECS  the server-side fence (slow writes)

Prints one line per check; exits 1 at the first check that fails.
"""
import socket
import struct
import sys
import time

IHAVEOPT = 0x49484156454F5054
REP_MAGIC = 0x0003E889045565A9
REQ = 0x25609513
SIMPLE = 0x67446698
OPT_GO, OPT_EXPORT_NAME = 7, 1
REP_ACK, REP_INFO = 1, 3
ERR_UNKNOWN, ERR_TOO_BIG = 0x80000006, 0x80000009
READ, WRITE, DISC, FLUSH, TRIM = 0, 1, 2, 3, 4
EPERM, EINVAL, ENOSPC, EOVERFLOW = 1, 22, 28, 75


def fail(msg):
    print("FAIL: " + msg)
    sys.exit(1)


def ok(msg):
    print("ok: " + msg)


def recvn(s, n):
    b = b""
    while len(b) < n:
        c = s.recv(n - len(b))
        if not c:
            raise EOFError("connection closed after %d of %d bytes" % (len(b), n))
        b += c
    return b


def connect(path):
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.settimeout(20)
    s.connect(path)
    magic, opt, flags = struct.unpack(">QQH", recvn(s, 18))
    if magic != 0x4E42444D41474943 or opt != IHAVEOPT:
        fail("bad greeting")
    return s


def option(s, opt, data):
    s.sendall(struct.pack(">QII", IHAVEOPT, opt, len(data)) + data)


def reply(s):
    magic, opt, rtype, ln = struct.unpack(">QIII", recvn(s, 20))
    if magic != REP_MAGIC:
        fail("bad option reply magic %x" % magic)
    return rtype, recvn(s, ln)


def go(s, name):
    n = name.encode()
    option(s, OPT_GO, struct.pack(">I", len(n)) + n + struct.pack(">H", 0))
    size = None
    while True:
        rtype, data = reply(s)
        if rtype == REP_INFO:
            if struct.unpack(">H", data[:2])[0] == 0:
                size, flags = struct.unpack(">QH", data[2:12])
        elif rtype == REP_ACK:
            return size
        else:
            return ("error", rtype)


def session(path, name):
    s = connect(path)
    s.sendall(struct.pack(">I", 3))  # fixed newstyle, no zeroes
    r = go(s, name)
    if isinstance(r, tuple):
        fail("GO %s: error reply %x" % (name, r[1]))
    return s, r


def request(s, cmd, cookie, off, ln, payload=b"", flags=0):
    s.sendall(struct.pack(">IHHQQI", REQ, flags, cmd, cookie, off, ln) + payload)


def simple_reply(s, cookie, data_len=0):
    magic, err, ck = struct.unpack(">IIQ", recvn(s, 16))
    if magic != SIMPLE or ck != cookie:
        fail("bad reply (magic %x, cookie %d, wanted %d)" % (magic, ck, cookie))
    data = recvn(s, data_len) if err == 0 and data_len else b""
    return err, data


def expect_err(s, what, cmd, off, ln, want, payload=b"", flags=0, cookie=[100]):
    cookie[0] += 1
    request(s, cmd, cookie[0], off, ln, payload, flags)
    err, _ = simple_reply(s, cookie[0], ln if cmd == READ else 0)
    if err != want:
        fail("%s: error %d, expected %d" % (what, err, want))
    ok("%s -> error %d" % (what, err))


def expect_closed(s, what):
    try:
        s.settimeout(10)
        b = s.recv(4096)
        while b:
            b = s.recv(4096)
    except (ConnectionResetError, BrokenPipeError):
        pass
    except socket.timeout:
        fail("%s: the connection was not closed" % what)
    ok("%s -> connection closed" % what)


def still_works(s, what):
    request(s, WRITE, 7, 4096, 512, b"\x5a" * 512)
    err, _ = simple_reply(s, 7)
    request(s, READ, 8, 4096, 512)
    err2, data = simple_reply(s, 8, 512)
    if err or err2 or data != b"\x5a" * 512:
        fail("after %s the connection no longer works (%d %d)" % (what, err, err2))


def rw(path, name, size):
    size = int(size)
    s, sz = session(path, name)
    if sz != size:
        fail("GO says %s bytes, expected %d" % (sz, size))
    ok("GO: %d bytes" % sz)
    expect_err(s, "read at the end", READ, size, 4096, EINVAL)
    expect_err(s, "read across the end", READ, size - 512, 1024, EINVAL)
    expect_err(s, "read at offset 2^64-512", READ, (1 << 64) - 512, 4096, EINVAL)
    expect_err(s, "write across the end (payload skipped)", WRITE, size - 512, 1024, ENOSPC, b"\xee" * 1024)
    expect_err(s, "zero-length read", READ, 0, 0, EINVAL)
    expect_err(s, "read of 64 MiB", READ, 0, 64 << 20, EOVERFLOW)
    expect_err(s, "unknown command 99", 99, 0, 512, EINVAL)
    expect_err(s, "write with FUA (not offered)", WRITE, 0, 512, EINVAL, b"\x01" * 512, flags=1)
    still_works(s, "the refused requests")
    ok("the connection is still in step after every refusal")
    request(s, READ, 9, 0, 512)
    simple_reply(s, 9, 512)
    s.sendall(struct.pack(">IHHQQI", 0xDEADBEEF, 0, READ, 10, 0, 512))
    expect_closed(s, "bad request magic")
    s, _ = session(path, name)
    request(s, WRITE, 11, 0, 33 << 20)
    expect_closed(s, "a 33 MiB write header")
    s = connect(path)
    s.sendall(struct.pack(">I", 0xFFFF))
    expect_closed(s, "unknown client flags")
    s = connect(path)
    s.sendall(struct.pack(">I", 3))
    option(s, OPT_GO, b"\x00" * 8192)
    rtype, _ = reply(s)
    if rtype != ERR_TOO_BIG:
        fail("an 8 KiB option: reply %x" % rtype)
    ok("an 8 KiB option -> NBD_REP_ERR_TOO_BIG, connection kept")
    r = go(s, "no-such-export")
    if r != ("error", ERR_UNKNOWN):
        fail("GO on an unknown export: %r" % (r,))
    ok("GO on an unknown export -> NBD_REP_ERR_UNKNOWN")
    if go(s, name) != size:
        fail("GO after the refusals failed")
    still_works(s, "the option refusals")
    request(s, DISC, 12, 0, 0)
    expect_closed(s, "NBD_CMD_DISC")
    s = connect(path)
    s.sendall(struct.pack(">I", 3))
    s.sendall(struct.pack(">QII", IHAVEOPT, OPT_GO, 2 << 20))
    expect_closed(s, "an option of 2 MiB")


def ro(path, name):
    s, _ = session(path, name)
    expect_err(s, "write on a read-only export", WRITE, 0, 512, EPERM, b"\x01" * 512)
    expect_err(s, "trim on a read-only export", TRIM, 0, 4096, EPERM)
    request(s, READ, 1, 0, 512)
    err, _ = simple_reply(s, 1, 512)
    if err:
        fail("read on the read-only export: %d" % err)
    ok("read on the read-only export works")


def fence(path, name, secs):
    secs = float(secs)
    pattern = bytes(range(256)) * 16
    s1, _ = session(path, name)
    request(s1, WRITE, 1, 0, len(pattern), pattern)
    time.sleep(0.2)  # the write is in the server; the reply will take secs
    s1.close()
    t0 = time.time()
    s2 = connect(path)
    s2.sendall(struct.pack(">I", 3))
    go(s2, name)
    waited = time.time() - t0
    request(s2, READ, 2, 0, len(pattern))
    err, data = simple_reply(s2, 2, len(pattern))
    if err or data != pattern:
        fail("the new connection did not read the old connection's write")
    if waited < secs * 0.5:
        fail("the new connection was served after %.2f s, while the old write took ~%.1f s" % (waited, secs))
    ok("new connection served %.2f s later, after the dead connection's write completed; it reads that write" % waited)


if __name__ == "__main__":
    {"rw": rw, "ro": ro, "fence": fence}[sys.argv[1]](*sys.argv[2:])
