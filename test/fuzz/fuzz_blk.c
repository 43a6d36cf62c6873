/*
 * fuzz_blk: virtio-blk request parsing and execution (lib/virtio/blk.c) end to
 * end, over a real ram backend.  Each input builds a ring in guest memory
 * (descriptors, avail ring, request headers, data and status bytes: all input
 * bytes) in front of one of three VDEVs over the same 128 KiB ram backend:
 *
 *   dev 0: window [32K, 64K), read-write
 *   dev 1: the same window, read-only
 *   dev 2: window [96K, 128K), read-write (ends where the backend ends)
 *
 * and runs the device model's process() with a struct siov_io_ctx on a real
 * io_uring, then the deferred completions, until nothing moves.  The engine
 * is left out (the device model never calls it: the queue simply has no
 * runner), so a run is deterministic.
 *
 * Invariants checked after every input, beyond what ASan and UBSan see:
 *   - no byte of the backend outside the VDEV's window changed (none at all
 *     for the read-only VDEV);
 *   - every request popped was completed: nothing in flight, and the used
 *     index advanced by exactly the number of completed requests.
 *
 * Input: struct hdr, num descriptors (16 bytes each), num + 1 avail entries,
 * then up to 64 KiB of guest memory at GPA 0x10000 (region R0).
 */
#include <liburing.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fuzz_common.h"
#include "siov_internal/backend.h"
#include "siov_internal/virtio_blk.h"
#include "siov_internal/virtqueue.h"

#define BK_SIZE (128u << 10)
#define NDEVS	3

enum {
	F_EVENT_IDX = 1 << 0,
	F_AVAIL_FROM_HDR = 1 << 1,
};

struct hdr {
	uint8_t flags;
	uint8_t dev;  /* % NDEVS */
	uint8_t qlog; /* queue size 1 << (qlog % 8) */
	uint16_t last_avail_idx;
	uint16_t avail_idx;
} __attribute__((packed));

static const struct {
	uint64_t off, size;
	bool readonly;
} g_windows[NDEVS] = {
    {32u << 10, 32u << 10, false},
    {32u << 10, 32u << 10, true},
    {96u << 10, 32u << 10, false},
};

static struct fuzz_guest g_guest;
static struct io_uring g_ring;
static struct siov_io_ctx g_ctx;
static struct siov_backend *g_bd;
static struct siov_blk *g_blk[NDEVS];
static uint8_t g_pattern[BK_SIZE], g_now[BK_SIZE];

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void io_done(struct siov_io *io, int res)
{
	*(int *)io->cb_arg = res;
}

/* Synchronous backend I/O through the same path the device model uses. */
static void backend_rw(enum siov_io_op op, void *buf, uint64_t off, uint64_t len)
{
	struct iovec iov = {.iov_base = buf, .iov_len = len};
	struct siov_io io = {.op = op, .offset = off, .len = len, .iov = &iov, .iovcnt = 1};
	int res = -1;

	io.cb = io_done;
	io.cb_arg = &res;
	if (siov_backend_submit(g_bd, &g_ctx, &io) || !siov_io_ctx_run_deferred(&g_ctx) ||
	    res != (int)len) {
		fprintf(stderr, "fuzz_blk: backend I/O failed\n");
		abort();
	}
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
	struct siov_backend_conf bc = {.name = "ram0", .type = SIOV_BACKEND_RAM, .size = BK_SIZE};
	struct siov_err err;
	unsigned i;

	fuzz_guest_init(&g_guest);
	if (io_uring_queue_init(8, &g_ring, 0) < 0 || siov_backend_open(&bc, &g_bd, &err))
		abort();
	siov_io_ctx_init(&g_ctx, &g_ring);
	for (i = 0; i < BK_SIZE; i++)
		g_pattern[i] = (uint8_t)(i * 7 + (i >> 9) + 0x5a);
	backend_rw(SIOV_IO_WRITE, g_pattern, 0, BK_SIZE);
	for (i = 0; i < NDEVS; i++) {
		struct siov_blk_conf c = {.name = "fuzz-blk",
					  .backend = g_bd,
					  .offset = g_windows[i].off,
					  .size = g_windows[i].size,
					  .readonly = g_windows[i].readonly,
					  .queues = 1};
		if (siov_blk_create(&c, &g_blk[i]))
			abort();
	}
	return 0;
}

/* Checks the bytes outside the window and puts the window's pattern back. */
static void check_backend(unsigned dev)
{
	uint64_t off = g_windows[dev].off, end = off + g_windows[dev].size;
	uint64_t i;

	backend_rw(SIOV_IO_READ, g_now, 0, BK_SIZE);
	for (i = 0; i < BK_SIZE; i++) {
		if (g_now[i] == g_pattern[i])
			continue;
		if (!g_windows[dev].readonly && i >= off && i < end)
			continue;
		fprintf(stderr,
			"fuzz_blk: dev %u (window [%llu, %llu)%s) changed backend byte %llu\n", dev,
			(unsigned long long)off, (unsigned long long)end,
			g_windows[dev].readonly ? ", read-only" : "", (unsigned long long)i);
		abort();
	}
	if (memcmp(g_now + off, g_pattern + off, end - off))
		backend_rw(SIOV_IO_WRITE, g_pattern + off, off, end - off);
}

static void run_queue(struct siov_vq *vq)
{
	const struct siov_vq_ops *ops = siov_blk_dev_ops.vq_ops;
	unsigned rounds, done;

	for (rounds = 0; rounds < 4096; rounds++) {
		struct siov_vq_work work = {0};

		ops->process(vq, &g_ctx, 32, &work);
		done = siov_io_ctx_run_deferred(&g_ctx);
		if (!work.started && !done)
			break;
	}
	if (rounds == 4096) {
		fprintf(stderr, "fuzz_blk: the queue never settles\n");
		abort();
	}
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct siov_vq vq;
	struct fz f;
	struct hdr h;
	uint16_t used_start;
	unsigned i, num, dev;
	int broken = 0;

	fz_init(&f, data, size);
	fz_bytes(&f, &h, sizeof(h));
	num = 1u << (h.qlog % 8);
	dev = h.dev % NDEVS;
	fuzz_guest_reset(&g_guest, NULL, 0);

	siov_vq_init(&vq, 0);
	vq.num = (uint16_t)num;
	vq.desc_uva = g_guest.regions[2].uva;
	vq.avail_uva = vq.desc_uva + 16ull * num;
	vq.used_uva = (vq.avail_uva + 6 + 2ull * num + 3) & ~3ull;
	vq.addr_set = true;
	vq.mem = &g_guest.mt;
	vq.dev_name = "fuzz";
	vq.dev_broken = &broken;
	vq.event_idx = h.flags & F_EVENT_IDX;
	vq.enabled = true;
	vq.ops = siov_blk_dev_ops.vq_ops;
	vq.dev = g_blk[dev];
	vq.last_avail_idx = h.last_avail_idx;
	if (siov_vq_map_rings(&vq))
		abort();

	for (i = 0; i < num; i++)
		fz_bytes(&f, &vq.desc[i], sizeof(vq.desc[i]));
	for (i = 0; i <= num; i++)
		vq.avail->ring[i] = fz_u16(&f);
	if (f.left)
		memcpy(fuzz_guest_ptr(&g_guest, FG_GPA_R0, FG_REG_SIZE), f.p,
		       f.left < FG_REG_SIZE ? f.left : FG_REG_SIZE);
	vq.avail->idx =
	    h.flags & F_AVAIL_FROM_HDR ? h.avail_idx : (uint16_t)(h.last_avail_idx + num);
	used_start = vq.used_idx = vq.used->idx;

	run_queue(&vq);

	if (vq.stats.inflight != 0 ||
	    (uint16_t)(vq.used->idx - used_start) != (uint16_t)vq.stats.requests) {
		fprintf(stderr,
			"fuzz_blk: %llu request(s) still in flight; used index moved %u for %llu "
			"completed\n",
			(unsigned long long)vq.stats.inflight,
			(unsigned)(uint16_t)(vq.used->idx - used_start),
			(unsigned long long)vq.stats.requests);
		abort();
	}
	siov_blk_dev_ops.vq_ops->release(&vq);
	check_backend(dev);
	return 0;
}
