/*
 * libsiov against a real vhost-user-blk back end started by the test:
 * qemu-storage-daemon by default, siovd with --siovd PATH --siovctl PATH.
 * Each test proves something an application would notice: the device
 * describes itself, data written through any queue reads back and lands at
 * the right place in the backing file, flush/discard/write-zeroes work,
 * mistakes are refused before they reach the ring, and a back end that dies
 * is reported as an error instead of a hang.  Exits 77 (skip) when the back
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
};

static int open_dev(struct fixture *f, uint32_t flags, unsigned poll_us)
{
	struct siov_dev_opts o;
	void *p;
	int rc;

	siov_dev_opts_init(&o);
	o.flags = flags;
	o.poll_us = poll_us;
	o.timeout_ms = 3000;
	rc = siov_dev_open(f->be.sock, &o, &f->dev);
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

static int teardown(void **state)
{
	struct fixture *f = *state;

	siov_dev_close(f->dev);
	backend_stop(&f->be);
	free(f);
	return 0;
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
	assert_int_equal(open_dev(f, 0, 0), 0);
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
	    cmocka_unit_test_setup_teardown(test_flush, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_write_zeroes_discard, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_errors_before_ring, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_read_only, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_irq_mode, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_backend_gone_poll, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_backend_gone_irq, setup, teardown),
	};
	int rc = parse_args(argc, argv);

	if (rc)
		return rc;
	return cmocka_run_group_tests_name(kind.siovd ? "libsiov-siovd" : "libsiov-qsd", tests,
					   NULL, NULL);
}
