/*
 * libsiov against a real vhost-user-blk back end started by the test:
 * qemu-storage-daemon by default, siovd with --siovd PATH --siovctl PATH.
 * Each test proves something an application would notice: the device
 * describes itself, data written through any queue reads back and lands at
 * the right place in the backing file, flush/discard/write-zeroes work,
 * mistakes are refused before they reach the ring, a back end that dies
 * is reported as an error instead of a hang, and with reconnect_ms a back
 * end SIGKILLed and restarted under verified load loses no request.  Exits 77 (skip) when the back
 * end's binary is not installed.
 */
#include <errno.h>
#include <fcntl.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>
#include <cmocka.h>
#include <linux/virtio_config.h>

#include "siov/libsiov.h"
#include "backend_proc.h"

#define DEV_SIZE (64ull << 20)
#define BUF_SIZE (4ull << 20)
#define QUEUES	 2

static struct backend_kind kind;

struct fixture {
	struct backend_proc be;
	struct siov_dev *dev;
	uint8_t *buf;
	struct siov_dev_info info;
	uint32_t flags; /* what setup opened the device with */
};

/*
 * qemu-storage-daemon's socket file appears just before it listens (the
 * start-up probe can only stat it): a refused connect then means "not yet".
 */
static int open_retry(const char *path, const struct siov_dev_opts *o, struct siov_dev **dev)
{
	int i, rc = -ECONNREFUSED;

	for (i = 0; i < 200 && rc == -ECONNREFUSED; i++) {
		if (i)
			usleep(10000);
		rc = siov_dev_open(path, o, dev);
	}
	return rc;
}

static int open_dev(struct fixture *f, uint32_t flags, unsigned poll_us)
{
	struct siov_dev_opts o;
	void *p;
	int rc;

	siov_dev_opts_init(&o);
	o.flags = flags;
	o.poll_us = poll_us;
	o.timeout_ms = 3000;
	rc = open_retry(f->be.sock, &o, &f->dev);
	if (rc)
		return rc;
	rc = siov_mem_alloc(f->dev, BUF_SIZE, &p);
	if (rc)
		return rc;
	f->buf = p;
	siov_dev_info(f->dev, &f->info);
	return siov_dev_start(f->dev);
}

static int teardown(void **state);

/* cmocka skips the teardown of a failed setup: clean up here instead. */
static int setup_flags(void **state, uint32_t flags)
{
	struct fixture *f = calloc(1, sizeof(*f));
	int rc;

	assert_non_null(f);
	*state = f;
	f->flags = flags;
	rc = backend_start(&kind, &f->be, DEV_SIZE, QUEUES, false);
	if (rc)
		fprintf(stderr, "back end did not start: %s\n", strerror(-rc));
	if (!rc) {
		rc = open_dev(f, flags, 20);
		if (rc)
			fprintf(stderr, "siov_dev_open/start: %s\n", strerror(-rc));
	}
	if (rc)
		teardown(state);
	return rc ? -1 : 0;
}

static int setup(void **state)
{
	return setup_flags(state, 0);
}

static int setup_noevidx(void **state)
{
	return setup_flags(state, SIOV_DEV_F_NO_EVENT_IDX);
}

/* Packed virtqueues where the back end offers them (siovd), split ones elsewhere. */
static int setup_packed(void **state)
{
	return setup_flags(state, SIOV_DEV_F_PACKED);
}

/* IN_ORDER where the back end offers it (siovd), on either ring format. */
static int setup_in_order(void **state)
{
	return setup_flags(state, SIOV_DEV_F_IN_ORDER);
}

static int setup_packed_in_order(void **state)
{
	return setup_flags(state, SIOV_DEV_F_IN_ORDER | SIOV_DEV_F_PACKED);
}

static int teardown(void **state)
{
	struct fixture *f = *state;

	int rc;

	siov_dev_close(f->dev);
	/* siovd must also stop cleanly: exit 0 and no sanitizer report. */
	rc = backend_stop(&f->be);
	free(f);
	return rc;
}

/* Submits what is prepared and waits for exactly one completion. */
static int one(struct siov_queue *q, uint64_t cookie)
{
	struct siov_cqe c;
	int rc = siov_submit(q);

	if (rc != 1)
		return rc < 0 ? rc : -EIO;
	rc = siov_wait(q, &c, 1, 1, 5000);
	if (rc != 1)
		return rc < 0 ? rc : -ETIMEDOUT;
	assert_int_equal(c.cookie, cookie);
	return c.res;
}

static void fill(uint8_t *p, size_t len, uint32_t seed)
{
	size_t i;

	for (i = 0; i < len; i++)
		p[i] = (uint8_t)((i * 131u + seed * 7u + (i >> 9)) ^ seed);
}

static void test_config(void **state)
{
	struct fixture *f = *state;

	assert_int_equal(f->info.capacity, DEV_SIZE);
	assert_true(f->info.blk_size >= 512);
	assert_int_equal(f->info.num_queues, QUEUES);
	assert_true(f->info.max_queues >= QUEUES);
	assert_false(f->info.read_only);
	assert_true(f->info.event_idx);
	assert_non_null(siov_dev_queue(f->dev, QUEUES - 1));
	assert_null(siov_dev_queue(f->dev, QUEUES));
	assert_int_equal(siov_dev_alive(f->dev), 0);
}

/* Data written through queue A reads back through queue B, and sits in the file. */
static void rw_at(struct fixture *f, unsigned qa, unsigned qb, uint64_t off, uint32_t len,
		  uint32_t seed)
{
	struct siov_queue *a = siov_dev_queue(f->dev, qa), *b = siov_dev_queue(f->dev, qb);
	uint8_t *wbuf = f->buf, *rbuf = f->buf + BUF_SIZE / 2, *fbuf = malloc(len);
	int fd = open(f->be.file, O_RDONLY);

	fill(wbuf, len, seed);
	memset(rbuf, 0xee, len);
	assert_int_equal(siov_prep_write(a, wbuf, len, off, 1), 0);
	assert_int_equal(one(a, 1), (int)len);
	assert_int_equal(siov_prep_read(b, rbuf, len, off, 2), 0);
	assert_int_equal(one(b, 2), (int)len);
	assert_memory_equal(wbuf, rbuf, len);
	assert_true(fd >= 0 && fbuf);
	assert_int_equal(pread(fd, fbuf, len, (off_t)off), (ssize_t)len);
	assert_memory_equal(wbuf, fbuf, len);
	close(fd);
	free(fbuf);
}

static void test_rw_verify(void **state)
{
	struct fixture *f = *state;

	rw_at(f, 0, 1, 0, 4096, 1);
	rw_at(f, 1, 0, 4096, 512, 2);
	rw_at(f, 0, 0, (1 << 20) + 512, 65536, 3);
	rw_at(f, 1, 1, DEV_SIZE - 8192, 8192, 4);
	rw_at(f, 0, 1, 7ull << 20, 1 << 20, 5);
}

/* Many requests in one batch, one kick, completions in any order. */
static void test_batch_depth(void **state)
{
	struct fixture *f = *state;
	struct siov_queue *q = siov_dev_queue(f->dev, 0);
	struct siov_cqe c[64];
	unsigned i, n = 32, got = 0;
	uint64_t seen = 0;

	for (i = 0; i < n; i++) {
		fill(f->buf + i * 4096, 4096, 100 + i);
		assert_int_equal(siov_prep_write(q, f->buf + i * 4096, 4096, i * 8192, i), 0);
	}
	assert_int_equal(siov_submit(q), (int)n);
	while (got < n) {
		int rc = siov_wait(q, c, 64, n - got, 5000);

		assert_true(rc > 0);
		for (i = 0; i < (unsigned)rc; i++) {
			assert_int_equal(c[i].res, 4096);
			seen |= 1ull << c[i].cookie;
		}
		got += (unsigned)rc;
	}
	assert_int_equal(seen, (1ull << n) - 1);
	for (i = 0; i < n; i++)
		assert_int_equal(siov_prep_read(q, f->buf + (64 + i) * 4096, 4096, i * 8192, i), 0);
	assert_int_equal(siov_submit(q), (int)n);
	for (got = 0; got < n;) {
		int rc = siov_reap(q, c, 64);

		assert_true(rc >= 0);
		got += (unsigned)rc;
	}
	assert_memory_equal(f->buf, f->buf + 64 * 4096, n * 4096);
}

/* siovd offers packed rings; libsiov takes them when asked and says so. */
static void test_packed_negotiated(void **state)
{
	struct fixture *f = *state;
	struct siov_dev_opts o;
	struct siov_dev *d = NULL;

	if (kind.siovd)
		assert_true(f->info.features & (1ull << VIRTIO_F_RING_PACKED));
	/* A packed ring cannot be rebuilt after a reconnect: refused up front. */
	siov_dev_opts_init(&o);
	o.flags = SIOV_DEV_F_PACKED;
	o.reconnect_ms = 1000;
	assert_int_equal(siov_dev_open(f->be.sock, &o, &d), -EINVAL);
	assert_null(d);
}

/* ---- VIRTIO_F_IN_ORDER ---- */

#define IO_QD	  32u
#define IO_BLOCK  65536u
#define IO_BLOCKS 256u

/* One request in flight: slot cookie % IO_QD owns buffer, block and generation. */
struct io_slot {
	unsigned block;
	uint32_t gen;
	bool write;
};

/* Every fourth block is 64 KiB, the rest 4 KiB: big ones finish late, small ones overtake. */
static uint32_t io_len(unsigned block)
{
	return block % 4 ? 4096 : IO_BLOCK;
}

/* A block no request in flight touches (one request per block at a time: reads know the data). */
static unsigned io_pick(const bool *busy, unsigned *rng)
{
	unsigned b;

	do {
		*rng = *rng * 1103515245u + 12345u;
		b = (*rng >> 8) % IO_BLOCKS;
	} while (busy[b]);
	return b;
}

/* siovd's counter @key for queue 0 of v0 (vdev_stats), or 0. */
static uint64_t queue_counter(struct fixture *f, const char *key)
{
	static char resp[1 << 17];
	char *p;

	if (siovd_proc_rpc(&f->be.sd,
			   "{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"vdev_stats\","
			   "\"params\":{\"name\":\"v0\"}}",
			   resp, sizeof(resp), 5000))
		return 0;
	p = strstr(resp, key);
	if (!p)
		return 0;
	p += strlen(key);
	while (*p == ':' || *p == ' ')
		p++;
	return strtoull(p, NULL, 10);
}

static void io_check(struct fixture *f, const struct siov_cqe *c, struct io_slot *s, uint32_t *gen,
		     bool *busy)
{
	uint8_t *buf = f->buf + (c->cookie % IO_QD) * IO_BLOCK, *want = malloc(IO_BLOCK);
	uint32_t len = io_len(s->block);

	assert_int_equal(c->res, (int)len);
	if (s->write) {
		gen[s->block] = s->gen;
	} else {
		fill(want, len, s->block * 100000u + gen[s->block]);
		if (gen[s->block])
			assert_memory_equal(buf, want, len);
	}
	busy[s->block] = false;
	free(want);
}

/*
 * With IN_ORDER the file backend still finishes requests out of order (64 KiB
 * ones behind 4 KiB ones, writes behind reads); siovd holds the early ones,
 * so completions come out in exactly the order they were submitted, batched
 * into fewer used entries, and every read returns the last write's bytes.
 */
/* The state of an in-order run: what each block holds and whether a request has it. */
struct io_run {
	uint32_t gen[IO_BLOCKS];
	bool busy[IO_BLOCKS];
	struct io_slot slot[IO_QD];
	unsigned rng;
	uint64_t issued, done;
};

static void io_issue(struct fixture *f, struct siov_queue *q, struct io_run *r)
{
	struct io_slot *s = &r->slot[r->issued % IO_QD];
	uint8_t *buf = f->buf + (r->issued % IO_QD) * IO_BLOCK;
	uint64_t off;

	s->block = io_pick(r->busy, &r->rng);
	s->write = (r->rng >> 4) & 1;
	s->gen = (uint32_t)r->issued + 1;
	r->busy[s->block] = true;
	off = (uint64_t)s->block * IO_BLOCK;
	if (s->write)
		fill(buf, io_len(s->block), s->block * 100000u + s->gen);
	assert_int_equal(s->write ? siov_prep_write(q, buf, io_len(s->block), off, r->issued)
				  : siov_prep_read(q, buf, io_len(s->block), off, r->issued),
			 0);
	r->issued++;
}

/* @n more requests at QD 32; each must complete in submission order, reads verified. */
static void io_run(struct fixture *f, struct io_run *r, uint64_t n)
{
	struct siov_queue *q = siov_dev_queue(f->dev, 0);
	uint64_t total = r->done + n;

	while (r->done < total) {
		struct siov_cqe c[IO_QD];
		int got;
		while (r->issued < total && r->issued - r->done < IO_QD)
			io_issue(f, q, r);
		assert_true(siov_submit(q) >= 0);
		got = siov_wait(q, c, IO_QD, 1, 5000);
		assert_true(got > 0);
		for (int i = 0; i < got; i++, r->done++) {
			assert_int_equal(c[i].cookie, r->done); /* submission order */
			io_check(f, &c[i], &r->slot[r->done % IO_QD], r->gen, r->busy);
		}
	}
}

/* An IOPS limit with a burst of one request: every request past the rate waits. */
static void set_iops_limit(struct fixture *f, unsigned limit)
{
	char req[256], resp[4096];

	snprintf(req, sizeof(req),
		 "{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"vdev_set_qos\","
		 "\"params\":{\"name\":\"v0\",\"iops_limit\":%u,\"iops_burst\":%u}}",
		 limit, limit ? 1 : 0);
	assert_int_equal(siovd_proc_rpc(&f->be.sd, req, resp, sizeof(resp), 5000), 0);
	assert_null(strstr(resp, "\"error\""));
}

/*
 * With IN_ORDER the file backend still finishes requests out of order (64 KiB
 * ones behind 4 KiB ones, writes behind reads); siovd holds the early ones,
 * so completions come out in exactly the order they were submitted, batched
 * into fewer used entries, and every read returns the last write's bytes.
 * Then the same under an IOPS limit: requests QoS makes wait are put back and
 * popped again, and order still holds.
 */
static void test_in_order_verify(void **state)
{
	struct fixture *f = *state;
	static struct io_run r;
	uint64_t used0;

	if (!kind.siovd) {
		/* qemu-storage-daemon does not offer it: the flag falls back to ordinary rings. */
		assert_false(f->info.features & (1ull << VIRTIO_F_IN_ORDER));
		return;
	}
	assert_true(f->info.features & (1ull << VIRTIO_F_IN_ORDER));
	memset(&r, 0, sizeof(r));
	r.rng = 7;
	used0 = queue_counter(f, "\"in_order_used\"");
	io_run(f, &r, 3000);
	/* Every request went through the in-order path; batches took fewer used entries. */
	assert_int_equal(queue_counter(f, "\"in_order_used\"") - used0, 3000);
	assert_true(queue_counter(f, "\"in_order_entries\"") <= 3000);
	if (!queue_counter(f, "\"in_order_held\""))
		printf("note: the file system completed every request in order (nothing held)\n");
	set_iops_limit(f, 400);
	io_run(f, &r, 100);
	assert_true(queue_counter(f, "\"throttled\"") > 0);
	set_iops_limit(f, 0);
}

static void test_flush(void **state)
{
	struct fixture *f = *state;
	struct siov_queue *q = siov_dev_queue(f->dev, 1);

	if (!f->info.flush) {
		assert_int_equal(siov_prep_flush(q, 9), -EOPNOTSUPP);
		return;
	}
	assert_int_equal(siov_prep_flush(q, 9), 0);
	assert_int_equal(one(q, 9), 0);
}

static void test_write_zeroes_discard(void **state)
{
	struct fixture *f = *state;
	struct siov_queue *q = siov_dev_queue(f->dev, 0);
	uint8_t *zero = calloc(1, 65536);

	fill(f->buf, 65536, 7);
	assert_int_equal(siov_prep_write(q, f->buf, 65536, 1 << 20, 1), 0);
	assert_int_equal(one(q, 1), 65536);
	if (f->info.write_zeroes) {
		assert_int_equal(siov_prep_write_zeroes(q, 1 << 20, 65536, false, 2), 0);
		assert_int_equal(one(q, 2), 0);
		assert_int_equal(siov_prep_read(q, f->buf, 65536, 1 << 20, 3), 0);
		assert_int_equal(one(q, 3), 65536);
		assert_memory_equal(f->buf, zero, 65536);
	} else {
		assert_int_equal(siov_prep_write_zeroes(q, 0, 4096, false, 2), -EOPNOTSUPP);
	}
	if (f->info.discard) {
		assert_int_equal(siov_prep_discard(q, 2 << 20, 1 << 20, 4), 0);
		assert_int_equal(one(q, 4), 0);
	} else {
		assert_int_equal(siov_prep_discard(q, 0, 4096, 4), -EOPNOTSUPP);
	}
	free(zero);
}

/* Every mistake is refused by prep: nothing reaches the ring. */
static void test_errors_before_ring(void **state)
{
	struct fixture *f = *state;
	struct siov_queue *q = siov_dev_queue(f->dev, 0);
	static uint8_t outside[8192] __attribute__((aligned(4096)));
	struct siov_cqe c;
	unsigned n = 0;

	assert_int_equal(siov_prep_read(q, outside, 4096, 0, 1), -EFAULT);
	assert_int_equal(siov_prep_write(q, f->buf + BUF_SIZE - 512, 4096, 0, 1), -EFAULT);
	assert_int_equal(siov_prep_read(q, f->buf, 4096, DEV_SIZE, 1), -ERANGE);
	assert_int_equal(siov_prep_read(q, f->buf, 8192, DEV_SIZE - 4096, 1), -ERANGE);
	assert_int_equal(siov_prep_read(q, f->buf, 4096, UINT64_MAX - 511, 1), -ERANGE);
	assert_int_equal(siov_prep_read(q, f->buf, 4096, 100, 1), -EINVAL);
	assert_int_equal(siov_prep_read(q, f->buf, 100, 0, 1), -EINVAL);
	assert_int_equal(siov_prep_read(q, f->buf, 0, 0, 1), -EINVAL);
	assert_int_equal(siov_prep_discard(q, DEV_SIZE - 512, 1024, 1), -ERANGE);
	assert_int_equal(siov_submit(q), 0);
	assert_int_equal(siov_queue_inflight(q), 0);
	/* Fill the queue: the request after the last slot is -EAGAIN, not a hang. */
	while (siov_prep_read(q, f->buf + (n % 512) * 4096, 4096, 0, n) == 0)
		n++;
	assert_int_equal(n, f->info.max_inflight);
	assert_int_equal(siov_prep_read(q, f->buf, 4096, 0, n), -EAGAIN);
	assert_int_equal(siov_submit(q), (int)n);
	while (n) {
		int rc = siov_wait(q, &c, 1, 1, 5000);

		assert_int_equal(rc, 1);
		assert_int_equal(c.res, 4096);
		n--;
	}
	assert_int_equal(siov_queue_inflight(q), 0);
}

static void test_read_only(void **state)
{
	struct fixture *f = *state;
	struct siov_dev *dev;
	struct siov_dev_opts o;

	/* One front end at a time on the socket: give the first one up. */
	siov_dev_close(f->dev);
	f->dev = NULL;
	siov_dev_opts_init(&o);
	o.flags = SIOV_DEV_F_READ_ONLY;
	assert_int_equal(open_dev(f, SIOV_DEV_F_READ_ONLY, 20), 0);
	dev = f->dev;
	assert_true(f->info.read_only);
	assert_int_equal(siov_prep_write(siov_dev_queue(dev, 0), f->buf, 4096, 0, 1), -EROFS);
	assert_int_equal(siov_prep_write_zeroes(siov_dev_queue(dev, 0), 0, 4096, 0, 1), -EROFS);
	assert_int_equal(siov_prep_read(siov_dev_queue(dev, 0), f->buf, 4096, 0, 1), 0);
	assert_int_equal(one(siov_dev_queue(dev, 0), 1), 4096);
}

/* Pure interrupt mode: no polling budget, every completion comes by eventfd. */
static void test_irq_mode(void **state)
{
	struct fixture *f = *state;
	struct siov_queue *q;
	struct siov_cqe c[8];
	int i;

	siov_dev_close(f->dev);
	f->dev = NULL;
	assert_int_equal(open_dev(f, f->flags, 0), 0);
	q = siov_dev_queue(f->dev, 1);
	for (i = 0; i < 200; i++) {
		assert_int_equal(siov_prep_read(q, f->buf, 4096, (uint64_t)i * 4096, i), 0);
		assert_int_equal(siov_submit(q), 1);
		assert_int_equal(siov_wait(q, c, 8, 1, 5000), 1);
		assert_int_equal(c[0].cookie, i);
	}
	/* Nothing in flight: siov_wait returns at once instead of sleeping. */
	assert_int_equal(siov_wait(q, c, 8, 1, 10000), 0);
}

static uint64_t now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

/*
 * Keeps @depth reads in flight on both queues, kills the back end, and
 * checks every accepted request completes once and then -ENOTCONN sticks.
 */
static void gone(struct fixture *f, bool irq)
{
	unsigned depth = 32, inflight[QUEUES] = {0}, qi, i, loops = 0;
	bool dead[QUEUES] = {false};
	uint64_t start, t_kill = 0;
	struct siov_cqe c[64];

	start = now_ms();
	while (!(dead[0] && dead[1])) {
		assert_true(now_ms() - start < 20000);
		if (++loops == 2000)
			t_kill = now_ms(), backend_kill(&f->be);
		for (qi = 0; qi < QUEUES; qi++) {
			struct siov_queue *q = siov_dev_queue(f->dev, qi);
			int rc;

			while (!dead[qi] && inflight[qi] < depth &&
			       siov_prep_read(q, f->buf + qi * 65536, 4096, 0, qi) == 0)
				inflight[qi]++;
			rc = siov_submit(q);
			assert_true(rc >= 0 || rc == -ENOTCONN);
			rc = irq ? siov_wait(q, c, 64, 1, 100) : siov_reap(q, c, 64);
			if (rc == -ENOTCONN) {
				assert_int_equal(inflight[qi], 0);
				dead[qi] = true;
				continue;
			}
			assert_true(rc >= 0);
			for (i = 0; i < (unsigned)rc; i++)
				assert_true(c[i].res == 4096 || c[i].res == -ENOTCONN);
			inflight[qi] -= (unsigned)rc;
		}
	}
	assert_true(t_kill != 0);
	/* The hang-up is seen within the liveness period, not after a long timeout. */
	assert_true(now_ms() - t_kill < 2000);
	assert_int_equal(siov_dev_alive(f->dev), -ENOTCONN);
	assert_int_equal(siov_prep_read(siov_dev_queue(f->dev, 0), f->buf, 4096, 0, 1), -ENOTCONN);
	assert_int_equal(siov_submit(siov_dev_queue(f->dev, 0)), -ENOTCONN);
}

static void test_backend_gone_poll(void **state)
{
	gone(*state, false);
}

static void test_backend_gone_irq(void **state)
{
	gone(*state, true);
}

/* --- Reconnect: the back end is SIGKILLed and started again under load --- */

#define RC_DEPTH  16 /* requests in flight per queue */
#define RC_SLOTS  (RC_DEPTH * QUEUES)
#define RC_ROUNDS 64 /* blocks each slot cycles through */
#define RC_KILLS  3
#define RC_STEP	  1500 /* completions between kills */

/* One in-flight slot: writes a block, reads it back, checks it, moves on. */
struct rc_slot {
	uint64_t block;
	uint32_t tag; /* in the cookie: which request of the slot is out */
	bool busy;
	bool reading;
};

struct rc_state {
	struct fixture *f;
	struct rc_slot slot[RC_SLOTS];
	uint32_t gen[RC_SLOTS * RC_ROUNDS];
	uint64_t done, verified;
	unsigned round[RC_SLOTS];
};

static uint64_t rc_off(uint64_t block)
{
	return block * 4096;
}

static uint8_t *rc_buf(struct rc_state *st, unsigned s)
{
	return st->f->buf + (size_t)s * 4096;
}

/* The slot's next request: a write of a new generation, or the read after it. */
static void rc_issue(struct rc_state *st, unsigned s)
{
	struct rc_slot *sl = &st->slot[s];
	struct siov_queue *q = siov_dev_queue(st->f->dev, s / RC_DEPTH);
	uint64_t cookie = (uint64_t)++sl->tag << 16 | s;

	if (!sl->reading) {
		sl->block = (uint64_t)(st->round[s]++ % RC_ROUNDS) * RC_SLOTS + s;
		fill(rc_buf(st, s), 4096, (uint32_t)(sl->block * 7 + ++st->gen[sl->block]));
		assert_int_equal(siov_prep_write(q, rc_buf(st, s), 4096, rc_off(sl->block), cookie),
				 0);
	} else {
		memset(rc_buf(st, s), 0, 4096);
		assert_int_equal(siov_prep_read(q, rc_buf(st, s), 4096, rc_off(sl->block), cookie),
				 0);
	}
	sl->busy = true;
}

/* A completion must name the slot's one outstanding request, and succeed. */
static void rc_complete(struct rc_state *st, const struct siov_cqe *c, bool refill)
{
	unsigned s = c->cookie & 0xffff;
	struct rc_slot *sl;
	uint8_t want[4096];

	assert_true(s < RC_SLOTS);
	sl = &st->slot[s];
	assert_true(sl->busy);
	assert_int_equal(c->cookie >> 16, sl->tag);
	assert_int_equal(c->res, 4096);
	sl->busy = false;
	st->done++;
	if (sl->reading) {
		fill(want, 4096, (uint32_t)(sl->block * 7 + st->gen[sl->block]));
		assert_memory_equal(rc_buf(st, s), want, 4096);
		st->verified++;
	}
	sl->reading = !sl->reading;
	if (refill)
		rc_issue(st, s);
}

/* One pass over both queues; returns the requests still out. */
static unsigned rc_pass(struct rc_state *st, bool irq, bool refill)
{
	struct siov_cqe c[64];
	unsigned qi, i, out = 0;

	for (qi = 0; qi < QUEUES; qi++) {
		struct siov_queue *q = siov_dev_queue(st->f->dev, qi);
		int rc = siov_submit(q);

		assert_true(rc >= 0);
		rc = irq ? siov_wait(q, c, 64, 1, 20) : siov_reap(q, c, 64);
		assert_true(rc >= 0);
		for (i = 0; i < (unsigned)rc; i++)
			rc_complete(st, &c[i], refill);
		out += siov_queue_inflight(q);
	}
	return out;
}

/* The backing file holds each block's last generation. */
static void rc_check_file(struct rc_state *st)
{
	uint8_t got[4096], want[4096];
	int fd = open(st->f->be.file, O_RDONLY);
	uint64_t b;

	assert_true(fd >= 0);
	for (b = 0; b < RC_SLOTS * RC_ROUNDS; b++) {
		if (!st->gen[b])
			continue;
		fill(want, 4096, (uint32_t)(b * 7 + st->gen[b]));
		assert_int_equal(pread(fd, got, 4096, (off_t)rc_off(b)), 4096);
		assert_memory_equal(got, want, 4096);
	}
	close(fd);
}

/* A started device whose library reconnects for up to reconnect_ms. */
static int setup_reconnecting(void **state, int timeout_ms, int reconnect_ms, uint32_t flags)
{
	struct fixture *f = calloc(1, sizeof(*f));
	struct siov_dev_opts o;
	void *p;
	int rc;

	assert_non_null(f);
	*state = f;
	rc = backend_start(&kind, &f->be, DEV_SIZE, QUEUES, false);
	siov_dev_opts_init(&o);
	if (timeout_ms)
		o.timeout_ms = timeout_ms;
	o.reconnect_ms = reconnect_ms;
	o.flags = flags;
	if (!rc)
		rc = open_retry(f->be.sock, &o, &f->dev);
	if (!rc)
		rc = siov_mem_alloc(f->dev, BUF_SIZE, &p);
	if (!rc) {
		f->buf = p;
		siov_dev_info(f->dev, &f->info);
		rc = siov_dev_start(f->dev);
	}
	if (rc) {
		fprintf(stderr, "reconnect set-up: %s\n", strerror(-rc));
		teardown(state);
	}
	return rc ? -1 : 0;
}

static int setup_reconnect(void **state)
{
	return setup_reconnecting(state, 3000, 10000, 0);
}

/* IN_ORDER across a SIGKILL: the rebuilt ring resubmits oldest first, in the same descriptors. */
static int setup_reconnect_in_order(void **state)
{
	return setup_reconnecting(state, 3000, 10000, SIOV_DEV_F_IN_ORDER);
}

/*
 * Verified writes and reads at depth 16 on each queue while the back end is
 * SIGKILLed and started again RC_KILLS times: every request completes once
 * and successfully, every read finds the last write, no -ENOTCONN.
 */
static void reconnect_under_load(struct fixture *f, bool irq)
{
	struct rc_state *st = calloc(1, sizeof(*st));
	uint64_t start = now_ms(), next_kill = RC_STEP;
	unsigned s, kills = 0, out_at_kill = 0;

	assert_non_null(st);
	st->f = f;
	for (s = 0; s < RC_SLOTS; s++)
		rc_issue(st, s);
	while (kills < RC_KILLS || st->done < next_kill) {
		assert_true(now_ms() - start < 60000);
		rc_pass(st, irq, true);
		if (kills < RC_KILLS && st->done >= next_kill) {
			/* Submitted and not completed: these must be resubmitted. */
			for (s = 0; s < QUEUES; s++) {
				assert_true(siov_submit(siov_dev_queue(f->dev, s)) >= 0);
				out_at_kill += siov_queue_inflight(siov_dev_queue(f->dev, s));
			}
			backend_kill(&f->be);
			/* Down for a while: connect attempts fail until it is back. */
			usleep(50000 + 50000 * kills);
			assert_int_equal(backend_restart(&f->be), 0);
			kills++;
			next_kill = st->done + RC_STEP;
		}
	}
	while (rc_pass(st, irq, false))
		assert_true(now_ms() - start < 60000);
	assert_int_equal(siov_dev_reconnects(f->dev), RC_KILLS);
	assert_int_equal(siov_dev_alive(f->dev), 0);
	assert_true(st->verified >= RC_KILLS * RC_STEP / 3);
	assert_true(out_at_kill > 0);
	rc_check_file(st);
	fprintf(stderr,
		"reconnect: %llu requests, %llu reads verified, %u restarts with %u requests "
		"out, %llu ms\n",
		(unsigned long long)st->done, (unsigned long long)st->verified,
		siov_dev_reconnects(f->dev), out_at_kill, (unsigned long long)(now_ms() - start));
	free(st);
}

static void test_reconnect_poll(void **state)
{
	reconnect_under_load(*state, false);
}

static void test_reconnect_irq(void **state)
{
	reconnect_under_load(*state, true);
}

/* No back end within reconnect_ms: what was out completes with -ENOTCONN. */
static void test_reconnect_gives_up(void **state)
{
	struct fixture *f = *state;
	struct siov_queue *q = siov_dev_queue(f->dev, 0);
	uint64_t t_kill;
	struct siov_cqe c[64];
	unsigned i, out = 0;
	int rc;

	for (i = 0; i < 8; i++)
		assert_int_equal(siov_prep_read(q, f->buf + i * 4096, 4096, i * 4096, i), 0);
	assert_int_equal(siov_submit(q), 8);
	out = 8;
	backend_kill(&f->be);
	t_kill = now_ms();
	while (out) {
		rc = siov_wait(q, c, 64, 1, 100);
		if (rc == -ENOTCONN)
			break;
		assert_true(rc >= 0);
		for (i = 0; i < (unsigned)rc; i++)
			assert_true(c[i].res == 4096 || c[i].res == -ENOTCONN);
		out -= (unsigned)rc;
		assert_true(now_ms() - t_kill < 20000);
	}
	assert_int_equal(out, 0);
	/* The reads may all have completed before the kill: wait for the verdict. */
	while (siov_dev_alive(f->dev) == 0) {
		assert_true(now_ms() - t_kill < 5000);
		usleep(5000);
	}
	assert_true(now_ms() - t_kill >= 250);
	assert_int_equal(siov_dev_alive(f->dev), -ENOTCONN);
	assert_int_equal(siov_prep_read(q, f->buf, 4096, 0, 1), -ENOTCONN);
}

static int setup_reconnect_short(void **state)
{
	return setup_reconnecting(state, 0, 300, 0);
}

static void test_no_listener(void **state)
{
	struct siov_dev *dev = NULL;

	assert_int_equal(siov_dev_open("/nonexistent/siov.sock", NULL, &dev), -ENOENT);
	assert_null(dev);
}

static bool in_path(const char *prog)
{
	char cmd[256];

	snprintf(cmd, sizeof(cmd), "command -v %s >/dev/null 2>&1", prog);
	return system(cmd) == 0;
}

static int parse_args(int argc, char **argv)
{
	int i;

	kind.qsd = "qemu-storage-daemon";
	for (i = 1; i + 1 < argc; i += 2) {
		if (!strcmp(argv[i], "--siovd"))
			kind.siovd = argv[i + 1];
		else if (!strcmp(argv[i], "--siovctl"))
			kind.siovctl = argv[i + 1];
		else if (!strcmp(argv[i], "--qsd"))
			kind.qsd = argv[i + 1];
	}
	if (kind.siovd) {
		if (!kind.siovctl || access(kind.siovd, X_OK) || access(kind.siovctl, X_OK)) {
			printf("SKIP: siovd or siovctl not built\n");
			return 77;
		}
		return 0;
	}
	if (!in_path(kind.qsd)) {
		printf("SKIP: %s not installed (Debian package qemu-system-common)\n", kind.qsd);
		return 77;
	}
	return 0;
}

int main(int argc, char **argv)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_no_listener),
	    cmocka_unit_test_setup_teardown(test_config, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_rw_verify, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_batch_depth, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_batch_depth, setup_noevidx, teardown),
	    cmocka_unit_test_setup_teardown(test_packed_negotiated, setup_packed, teardown),
	    /* Packed rings: round the ring many times, batches, out-of-order completions. */
	    cmocka_unit_test_setup_teardown(test_rw_verify, setup_packed, teardown),
	    cmocka_unit_test_setup_teardown(test_batch_depth, setup_packed, teardown),
	    cmocka_unit_test_setup_teardown(test_write_zeroes_discard, setup_packed, teardown),
	    cmocka_unit_test_setup_teardown(test_backend_gone_poll, setup_packed, teardown),
	    cmocka_unit_test_setup_teardown(test_irq_mode, setup_packed, teardown),
	    /* IN_ORDER: the file backend's out-of-order completions, verified, both rings. */
	    cmocka_unit_test_setup_teardown(test_in_order_verify, setup_in_order, teardown),
	    cmocka_unit_test_setup_teardown(test_in_order_verify, setup_packed_in_order, teardown),
	    cmocka_unit_test_setup_teardown(test_batch_depth, setup_in_order, teardown),
	    cmocka_unit_test_setup_teardown(test_irq_mode, setup_in_order, teardown),
	    cmocka_unit_test_setup_teardown(test_flush, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_write_zeroes_discard, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_errors_before_ring, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_read_only, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_irq_mode, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_backend_gone_poll, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_backend_gone_irq, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_reconnect_poll, setup_reconnect, teardown),
	    cmocka_unit_test_setup_teardown(test_reconnect_irq, setup_reconnect, teardown),
	    cmocka_unit_test_setup_teardown(test_reconnect_poll, setup_reconnect_in_order,
					    teardown),
	    cmocka_unit_test_setup_teardown(test_reconnect_gives_up, setup_reconnect_short,
					    teardown),
	};
	int rc = parse_args(argc, argv);

	if (rc)
		return rc;
	return cmocka_run_group_tests_name(kind.siovd ? "libsiov-siovd" : "libsiov-qsd", tests,
					   NULL, NULL);
}
