#!/usr/bin/env python3
"""Writes the seed corpora under test/fuzz/corpus/<target>/: a few valid inputs
per target, in the input formats documented at the top of each fuzz_*.c.
Run it again after changing a format:  python3 test/fuzz/gen_seeds.py"""
import json
import os
import struct

HERE = os.path.dirname(os.path.abspath(__file__))

# virtio ring and blk constants
NEXT, WRITE, INDIRECT = 1, 2, 4
T_IN, T_OUT, T_FLUSH, T_GET_ID, T_DISCARD, T_WZ = 0, 1, 4, 8, 11, 13


def save(target, name, data):
    d = os.path.join(HERE, "corpus", target)
    os.makedirs(d, exist_ok=True)
    if isinstance(data, str):
        data = data.encode()
    with open(os.path.join(d, name), "wb") as f:
        f.write(data)


def desc(addr, length, flags=0, nxt=0):
    return struct.pack("<QIHH", addr, length, flags, nxt)


def ring_input(num, descs, heads, mem, used_event=0):
    """desc table (num entries), num + 1 avail entries, then guest memory."""
    descs = descs + [desc(0, 0)] * (num - len(descs))
    heads = heads + [0] * (num - len(heads))
    return b"".join(descs) + struct.pack("<%dH" % (num + 1), *heads, used_event) + bytes(mem)


def put(mem, off, data):
    mem[off:off + len(data)] = data


# ---- fuzz_chain: default layout, R0 = GPA 0x10000 = start of the guest memory bytes ----
R0, R1 = 0x10000, 0x20000


def chain_seeds():
    num = 16
    mem = bytearray(0x900)
    # An indirect table of three descriptors at R0 + 0x800.
    put(mem, 0x800, desc(R0 + 0x100, 16, NEXT, 1) + desc(R0 + 0x200, 64, WRITE | NEXT, 2)
        + desc(R0 + 0x300, 1, WRITE))
    descs = [desc(R0, 16, NEXT, 1), desc(R0 + 0x100, 512, WRITE | NEXT, 2), desc(R0 + 0x400, 1, WRITE),
             desc(R0 + 0x800, 48, INDIRECT),
             desc(R1 - 0x800, 0x1000)]  # straddles R0 and R1
    hdr = struct.pack("<BBHHH", 0x10 | 0x1, 4, 0, 3, 0)
    save("fuzz_chain", "seed-direct-indirect-straddle", hdr + ring_input(num, descs, [0, 3, 4], mem))
    # The same with IN_ORDER: every other chain completes after the next one.
    hdr = struct.pack("<BBHHH", 0x20 | 0x10 | 0x1, 4, 0, 3, 0)
    save("fuzz_chain", "seed-in-order", hdr + ring_input(num, descs, [0, 3, 4], mem))
    hdr = struct.pack("<BBHHH", 0x10 | 0x4, 4, 0, 1, 0)
    resub = struct.pack("<B", 2) + struct.pack("<HB", 3, 2) + struct.pack("<HB", 4, 1)
    save("fuzz_chain", "seed-resubmit", hdr + resub + ring_input(num, descs, [0], mem))
    # Custom memory table: two regions of the memfd, rings in the second.
    regions = struct.pack("<QIQI", 0x0, 0x10000, 0x5000000, 0) \
        + struct.pack("<QIQI", 0x40000, 0x10000, 0x6000000, 0x10000) \
        + struct.pack("<QIQI", 0x30000, 0x10000, 0x5008000, 0x20000)  # overlaps in UVA: refused
    hdr = struct.pack("<BBHHH", 0x10 | 0x2, 2, 0xfffe, 0x0000, 0)
    descs = [desc(0x100, 32, NEXT, 1), desc(0x200, 8, WRITE)]
    save("fuzz_chain", "seed-custom-mem-wrap",
         hdr + regions + struct.pack("<Q", 0x6000000) + ring_input(4, descs, [0, 0], bytearray(16)))


# ---- fuzz_packed: descriptor ring in R2, guest memory bytes at R0 ----
AVAIL, USED = 1 << 7, 1 << 15


def pdesc(addr, length, pid, flags):
    return struct.pack("<QIHH", addr, length, pid, flags)


def packed_seeds():
    num = 8
    mem = bytearray(0x900)
    put(mem, 0x800, pdesc(R0 + 0x100, 16, 0, 0) + pdesc(R0 + 0x200, 64, 0, WRITE)
        + pdesc(R0 + 0x300, 1, 0, WRITE))
    a = AVAIL  # lap 1
    ring = [pdesc(R0, 16, 2, a | NEXT), pdesc(R0 + 0x100, 512, 2, a | WRITE | NEXT),
            pdesc(R0 + 0x400, 1, 2, a | WRITE), pdesc(R0 + 0x800, 48, 5, a | INDIRECT),
            pdesc(R1 - 0x800, 0x1000, 0, a)]
    ring += [pdesc(0, 0, 0, 0)] * (num - len(ring))
    drv_event = struct.pack("<HH", 2, 0x8000 | 3)  # DESC: call when slot 3 of lap 1 is used
    sched = bytes([0, 0, 2, 1, 3, 0, 0x22, 0, 2])
    hdr = struct.pack("<BBHB", 0x1 | 0x4, num - 1, 0, len(sched))
    save("fuzz_packed", "seed-fresh-direct-indirect", hdr + b"".join(ring) + drv_event + sched + bytes(mem))
    # The same with IN_ORDER: the out-of-order completions are held and batched.
    hdr = struct.pack("<BBHB", 0x8 | 0x1 | 0x4, num - 1, 0, len(sched))
    save("fuzz_packed", "seed-in-order", hdr + b"".join(ring) + drv_event + sched + bytes(mem))
    # Non-power-of-two ring of 6, starting at slot 4 of lap 1: a chain wraps into lap 0.
    num = 6
    ring = [pdesc(R0 + 0x400, 1, 1, USED | WRITE)] + [pdesc(0, 0, 0, 0)] * 3 + \
        [pdesc(R0, 16, 1, a | NEXT), pdesc(R0 + 0x100, 512, 1, a | WRITE | NEXT)]
    hdr = struct.pack("<BBHB", 0, num - 1, 0x8004, 2)
    save("fuzz_packed", "seed-wrap-non-pow2", hdr + b"".join(ring) + struct.pack("<HH", 0, 0)
         + bytes([0, 2]) + bytes(mem))
    # In-flight records a previous back end left: buffer 1 (3 slots from 0) in flight.
    num = 8
    ring = [pdesc(0, 0, 0, 0)] * num
    ifl = struct.pack("<IHHH6x", 0x70616b31, num, 0x8003, 0x8000)
    bufs = [bytes(24)] * num
    bufs[1] = struct.pack("<BBHHHH6xQ", 1, 0, 0, 3, 3, 0x8000, 1)
    # Pool copies: addr, len, flags, next (0xffff ends the chain).
    pool = [struct.pack("<QIHH", R0, 16, 0, 1), struct.pack("<QIHH", R0 + 0x100, 512, WRITE, 2),
            struct.pack("<QIHH", R0 + 0x400, 1, WRITE, 0xffff)] + [bytes(16)] * (num - 3)
    hdr = struct.pack("<BBHB", 0x2 | 0x4, num - 1, 0x8000, 2)
    save("fuzz_packed", "seed-inflight-records", hdr + b"".join(ring) + struct.pack("<HH", 0, 0)
         + ifl + b"".join(bufs) + b"".join(pool) + bytes([0, 2]) + bytes(mem))


# ---- fuzz_blk ----
def blk_req(descs, mem, i, rtype, sector, data_len, writable, extra=b""):
    """Request i: header, optional data, status; returns the head index."""
    hdr_gpa, status_gpa, data_gpa = R0 + 0x20 * i, R0 + 0xf00 + i, R0 + 0x1000 + 0x200 * i
    put(mem, hdr_gpa - R0, struct.pack("<IIQ", rtype, 0, sector) + extra)
    head = len(descs)
    descs.append(desc(hdr_gpa, 16 + len(extra), NEXT, head + 1))
    if data_len:
        put(mem, data_gpa - R0, bytes((i * 31 + k) & 0xff for k in range(data_len)))
        descs.append(desc(data_gpa, data_len, (WRITE if writable else 0) | NEXT, head + 2))
        descs.append(desc(status_gpa, 1, WRITE))
    else:
        descs.append(desc(status_gpa, 1, WRITE, 0))
        descs[-2] = desc(hdr_gpa, 16 + len(extra), NEXT, head + 1)
    return head


def blk_seeds():
    for dev in range(3):
        mem, descs, heads = bytearray(0x1c00), [], []
        heads.append(blk_req(descs, mem, 0, T_OUT, 1, 512, False))
        heads.append(blk_req(descs, mem, 1, T_IN, 1, 512, True))
        heads.append(blk_req(descs, mem, 2, T_GET_ID, 0, 20, True))
        heads.append(blk_req(descs, mem, 3, T_FLUSH, 0, 0, False))
        heads.append(blk_req(descs, mem, 4, T_DISCARD, 0, 0, False, struct.pack("<QII", 2, 4, 0)))
        heads.append(blk_req(descs, mem, 5, T_WZ, 60, 0, False, struct.pack("<QII", 60, 8, 1)))
        hdr = struct.pack("<BBBHH", 0x2, dev, 4, 0, len(heads))
        save("fuzz_blk", "seed-dev%d-ops" % dev, hdr + ring_input(16, descs, heads, mem))
    # A write past the end of the window (dev 2 ends where the backend ends).
    mem, descs = bytearray(0x1400), []
    blk_req(descs, mem, 0, T_OUT, 63, 1024, False)
    save("fuzz_blk", "seed-past-end", struct.pack("<BBBHH", 0x3, 2, 1, 0, 1)
         + ring_input(2, descs, [0], mem))


# ---- fuzz_vhost_msg ----
OP_RAW, OP_MSG, OP_FILL, OP_ACT = 0, 1, 2, 3
FD_MEM, FD_EV0, FD_EV1, FD_SMALL, FD_NULL = range(5)
NEED_REPLY = 0x8
UVA = 0x7F0000000000


def msg(req, payload=b"", fds=(), flags=0):
    return bytes([OP_MSG | (len(fds) << 2), req, flags]) + struct.pack("<H", len(payload)) \
        + bytes(fds) + payload


def fill(off, data):
    assert off % 4 == 0
    return bytes([OP_FILL]) + struct.pack("<HH", off // 4, len(data)) + data


def act(a):
    return bytes([OP_ACT, a])


def vring_setup(q, base):
    d, a, u = base, base + 0x100, base + 0x200
    return (msg(8, struct.pack("<II", q, 16)) +
            msg(9, struct.pack("<IIQQQQ", q, 0, UVA + d, UVA + u, UVA + a, 0)) +
            msg(10, struct.pack("<II", q, 0)) +
            msg(13, struct.pack("<Q", q), [FD_EV1]) +
            msg(12, struct.pack("<Q", q), [FD_EV0]) +
            msg(18, struct.pack("<II", q, 1)))


def vhost_seeds():
    feats = (1 << 32) | (1 << 30) | (1 << 29) | (1 << 28)
    proto = (1 << 0) | (1 << 3) | (1 << 9) | (1 << 12) | (1 << 13) | (1 << 15)
    hello = (msg(1) + msg(15) + msg(16, struct.pack("<Q", proto)) + msg(2, struct.pack("<Q", feats))
             + msg(17) + msg(36))
    memtab = msg(5, struct.pack("<II", 1, 0) + struct.pack("<QQQQ", 0, 256 << 10, UVA, 0), [FD_MEM])
    # One write request on queue 0: ring at 0x1000, header 0x2000, data 0x3000, status 0x2100.
    ring = fill(0x1000, desc(0x2000, 16, NEXT, 1) + desc(0x3000, 512, NEXT, 2) + desc(0x2100, 1, WRITE))
    ring += fill(0x1100, struct.pack("<HHH", 0, 1, 0))
    ring += fill(0x2000, struct.pack("<IIQ", T_OUT, 0, 0)) + fill(0x3000, bytes(range(256)) * 2)
    save("fuzz_vhost_msg", "seed-hello", hello)
    save("fuzz_vhost_msg", "seed-write-request",
         hello + memtab + ring + vring_setup(0, 0x1000) + act(0) + act(2) + act(2)
         + msg(11, struct.pack("<II", 0, 0)) + msg(24, struct.pack("<III", 0, 60, 0) + bytes(60)))
    inflight = struct.pack("<QQHHI", 0, 0, 2, 16, 0)
    save("fuzz_vhost_msg", "seed-inflight-memslots",
         hello + msg(31, inflight) + memtab + vring_setup(1, 0x4000)
         + msg(37, struct.pack("<Q", 0) + struct.pack("<QQQQ", 0x100000, 4096, UVA + 0x100000, 0),
               [FD_SMALL], NEED_REPLY)
         + msg(38, struct.pack("<Q", 0) + struct.pack("<QQQQ", 0x100000, 4096, UVA + 0x100000, 0))
         + msg(25, struct.pack("<III", 32, 1, 0) + b"\x00", flags=NEED_REPLY)
         + msg(34) + msg(11, struct.pack("<II", 1, 0)))
    # Live migration: a 4 KiB log (covers the 256 KiB guest), LOG_ALL, the used
    # ring logged, a request under logging, the ring stopped, logging off.
    log_all = feats | (1 << 26)
    save("fuzz_vhost_msg", "seed-dirty-log",
         hello + msg(16, struct.pack("<Q", proto | (1 << 1))) + memtab + ring + vring_setup(0, 0x1000)
         + msg(6, struct.pack("<QQ", 4096, 0), [FD_SMALL]) + msg(7, b"", [FD_EV1])
         + msg(2, struct.pack("<Q", log_all), flags=NEED_REPLY)
         + msg(9, struct.pack("<IIQQQQ", 0, 1, UVA + 0x1000, UVA + 0x1200, UVA + 0x1100, 0x1200),
               flags=NEED_REPLY)
         + act(0) + act(2) + act(2) + msg(11, struct.pack("<II", 0, 0))
         + msg(2, struct.pack("<Q", feats), flags=NEED_REPLY))
    # Bytes as they come: a header split over two writes, then too many fds.
    raw = struct.pack("<III", 1, 1, 0)
    save("fuzz_vhost_msg", "seed-raw-split",
         bytes([OP_RAW]) + struct.pack("<H", 5) + raw[:5] + bytes([OP_RAW]) + struct.pack("<H", 7)
         + raw[5:] + bytes([OP_RAW | (9 << 2)]) + struct.pack("<H", 12) + bytes(9) + raw)


# ---- fuzz_rpc ----
def rpc(method, params=None, rid=1):
    r = {"jsonrpc": "2.0", "id": rid, "method": method}
    if params is not None:
        r["params"] = params
    return r


def rpc_seeds():
    seeds = {
        "daemon_info": rpc("daemon_info"),
        "backend_create_ram": rpc("backend_create", {"name": "r1", "type": "ram", "size": "4M"}),
        "backend_create_file": rpc("backend_create", {"name": "f1", "type": "file", "path": "/disk",
                                                      "readonly": True}),
        "vdev_create": rpc("vdev_create", {"name": "vd1", "backend": "ram0", "offset": "512K",
                                           "size": 4096, "queues": 4, "allow_overlap": True,
                                           "socket": "/s/vd1.sock"}),
        "vdev_stats": rpc("vdev_stats", {"name": "vd0"}, "a"),
        "batch": [rpc("backend_create", {"name": "n1", "type": "null", "size": "1G"}, 1),
                  rpc("vdev_create", {"name": "v1", "type": "blk", "backend": "n1",
                                      "socket": "/s/v1.sock", "readonly": True}, 2),
                  rpc("vdev_list", None, 3), rpc("backend_list", {}, 4),
                  {"jsonrpc": "2.0", "method": "vdev_delete", "params": {"name": "v1"}},
                  rpc("backend_delete", {"name": "n1"}, 5)],
        "delete_busy": rpc("backend_delete", {"name": "ram0"}),
    }
    for name, obj in seeds.items():
        save("fuzz_rpc", "seed-" + name, json.dumps(obj))
    save("fuzz_rpc", "seed-parse-error", '{"jsonrpc":"2.0","id":1,"method":"vdev_list"')


# ---- fuzz_nbd ----
IHAVEOPT = 0x49484156454F5054
REQ_MAGIC = 0x25609513


def nbd_opt(opt, data=b""):
    return struct.pack(">QII", IHAVEOPT, opt, len(data)) + data


def nbd_go(name=b"vd0", opt=7):
    return nbd_opt(opt, struct.pack(">I", len(name)) + name + struct.pack(">HH", 1, 3))


def nbd_req(cmd, cookie, off, length, flags=0, payload=b""):
    return struct.pack(">IHHQQI", REQ_MAGIC, flags, cmd, cookie, off, length) + payload


def nbd_seeds():
    cflags = struct.pack(">I", 3)
    io = (nbd_req(1, 1, 4096, 512, payload=b"\x5a" * 512) + nbd_req(0, 2, 4096, 512) +
          nbd_req(3, 3, 0, 0) + nbd_req(4, 4, 0, 8192) + nbd_req(6, 5, 8192, 4096, flags=2) +
          nbd_req(0, 6, (1 << 20) - 512, 1024) + nbd_req(2, 7, 0, 0))
    save("fuzz_nbd", "seed-go-structured", bytes([0x0c]) + cflags + nbd_opt(8) + nbd_go() + io)
    save("fuzz_nbd", "seed-go-simple-pieces", bytes([0x2c]) + cflags + nbd_go(b"") + io)
    save("fuzz_nbd", "seed-export-name", bytes([0x10]) + cflags + nbd_opt(1, b"vd0") + io)
    save("fuzz_nbd", "seed-tls", bytes([0x0d]) + cflags + nbd_opt(7, b"") + nbd_opt(5) +
         nbd_opt(3) + nbd_go(opt=6) + nbd_go() + io)
    save("fuzz_nbd", "seed-readonly", bytes([0x02]) + cflags + nbd_go() + io)
    save("fuzz_nbd", "seed-bad-magic", bytes([0x00]) + cflags + nbd_go() +
         struct.pack(">IHHQQI", 0xdeadbeef, 0, 0, 1, 0, 512))


if __name__ == "__main__":
    nbd_seeds()
    chain_seeds()
    packed_seeds()
    blk_seeds()
    vhost_seeds()
    rpc_seeds()
