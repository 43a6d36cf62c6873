/*
 * Unit tests for the backends and the per-engine I/O context, run on a real
 * io_uring the way an engine drives them: submit, wait for CQEs, hand them
 * to siov_io_ctx_handle_cqe(), drain the deferred list.  File backends live
 * in a fresh temporary directory per test, removed at teardown.
 */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/vfs.h>
#include <linux/loop.h>
#include <linux/magic.h>
#include <sys/ioctl.h>
#include <unistd.h>

#include <cmocka.h>
#include <liburing.h>

#include "siov_internal/backend_module.h"

struct fx {
	struct io_uring ring;
	struct siov_io_ctx ctx;
	char dir[256];
	char path[300];
	struct siov_backend *bd;
};

/* A request the test waits for. */
struct req {
	struct siov_io io;
	bool done;
	int res;
	int calls;
};

static void req_cb(struct siov_io *io, int res)
{
	struct req *r = SIOV_CONTAINER_OF(io, struct req, io);

	r->done = true;
	r->res = res;
	r->calls++;
}

static int setup(void **state)
{
	struct fx *fx = calloc(1, sizeof(*fx));
	const char *tmp = getenv("TMPDIR");
	int ret;

	assert_non_null(fx);
	ret = io_uring_queue_init(64, &fx->ring, 0);
	if (ret < 0) {
		fprintf(stderr, "io_uring_queue_init: %s\n", strerror(-ret));
		free(fx);
		return -1;
	}
	siov_io_ctx_init(&fx->ctx, &fx->ring);
	snprintf(fx->dir, sizeof(fx->dir), "%s/siov-bk-XXXXXX", tmp && *tmp ? tmp : "/tmp");
	assert_non_null(mkdtemp(fx->dir));
	snprintf(fx->path, sizeof(fx->path), "%s/disk", fx->dir);
	*state = fx;
	return 0;
}

static int teardown(void **state)
{
	struct fx *fx = *state;

	siov_backend_close(fx->bd);
	io_uring_queue_exit(&fx->ring);
	unlink(fx->path);
	rmdir(fx->dir);
	free(fx);
	return 0;
}

static void conf_init(struct siov_backend_conf *c, enum siov_backend_type type, uint64_t size,
		      const char *path)
{
	memset(c, 0, sizeof(*c));
	snprintf(c->name, sizeof(c->name), "b0");
	c->type = type;
	c->size = size;
	if (path)
		snprintf(c->path, sizeof(c->path), "%s", path);
}

static void open_ok(struct fx *fx, enum siov_backend_type type, uint64_t size, bool ro)
{
	struct siov_backend_conf c;
	struct siov_err err = {0};
	int ret;

	conf_init(&c, type, size, type == SIOV_BACKEND_FILE ? fx->path : NULL);
	c.readonly = ro;
	ret = siov_backend_open(&c, &fx->bd, &err);
	if (ret < 0)
		fail_msg("open: %d %s", ret, err.msg);
}

/* Submits r and runs the engine loop until its callback has run. */
static int run(struct fx *fx, struct req *r)
{
	struct io_uring_cqe *cqe;
	int ret;

	r->done = false;
	r->calls = 0;
	r->io.cb = req_cb;
	ret = siov_backend_submit(fx->bd, &fx->ctx, &r->io);
	if (ret < 0)
		return ret;
	/* The async contract: never complete inside submit. */
	assert_false(r->done);
	while (!r->done) {
		siov_io_ctx_run_deferred(&fx->ctx);
		if (r->done)
			break;
		assert_true(io_uring_submit_and_wait(&fx->ring, 1) >= 0);
		fx->ctx.unsubmitted = 0; /* the engine's bookkeeping, done as an engine would */
		while (io_uring_peek_cqe(&fx->ring, &cqe) == 0) {
			siov_io_ctx_handle_cqe(&fx->ctx, cqe);
			io_uring_cqe_seen(&fx->ring, cqe);
		}
	}
	assert_int_equal(r->calls, 1);
	return r->res;
}

static int do_rw(struct fx *fx, enum siov_io_op op, uint64_t off, struct iovec *iov, int cnt)
{
	struct req r = {0};
	int i;

	r.io.op = op;
	r.io.offset = off;
	r.io.iov = iov;
	r.io.iovcnt = cnt;
	for (i = 0; i < cnt; i++)
		r.io.len += iov[i].iov_len;
	return run(fx, &r);
}

static int do_op(struct fx *fx, enum siov_io_op op, uint64_t off, uint64_t len)
{
	struct req r = {0};

	r.io.op = op;
	r.io.offset = off;
	r.io.len = len;
	return run(fx, &r);
}

/* A page-aligned buffer, so that the file tests can reach the O_DIRECT path. */
static unsigned char *abuf(size_t len)
{
	void *p = NULL;

	assert_int_equal(posix_memalign(&p, 4096, len), 0);
	return p;
}

static void fill(unsigned char *p, size_t n, unsigned seed)
{
	size_t i;

	for (i = 0; i < n; i++)
		p[i] = (unsigned char)(seed * 131 + i * 7 + (i >> 9));
}

/*
 * Writes len bytes at off from a buffer split into three uneven segments,
 * reads them back through differently split segments, and compares.  base
 * offsets the buffers from page alignment (0 keeps the direct path).
 */
static void roundtrip(struct fx *fx, uint64_t off, size_t len, size_t base, unsigned seed)
{
	unsigned char *w = abuf(len + 8192), *rd = abuf(len + 8192);
	size_t a = len / 4 / 512 * 512, b = len / 2 / 512 * 512;
	struct iovec wv[3] = {{w + base, a}, {w + base + a, b}, {w + base + a + b, len - a - b}};
	struct iovec rv[2] = {{rd + base, b}, {rd + base + b, len - b}};

	assert_non_null(w);
	assert_non_null(rd);
	fill(w + base, len, seed);
	memset(rd, 0xee, len + 8192);
	assert_int_equal(do_rw(fx, SIOV_IO_WRITE, off, wv, 3), (int)len);
	assert_int_equal(do_rw(fx, SIOV_IO_READ, off, rv, 2), (int)len);
	assert_memory_equal(w + base, rd + base, len);
	/* Not a byte around the read buffer was touched. */
	assert_int_equal(rd[base + len], 0xee);
	free(w);
	free(rd);
}

static void expect_zeros(struct fx *fx, uint64_t off, size_t len)
{
	unsigned char *buf = malloc(len), *zero = calloc(1, len);
	struct iovec v = {buf, len};

	memset(buf, 0xaa, len);
	assert_int_equal(do_rw(fx, SIOV_IO_READ, off, &v, 1), (int)len);
	assert_memory_equal(buf, zero, len);
	free(buf);
	free(zero);
}

/* ---- io_ctx ---- */

static int chain_left;
static struct siov_io_ctx *chain_ctx;

static void chain_cb(struct siov_io *io, int res)
{
	if (chain_left-- > 0)
		siov_io_complete_later(chain_ctx, io, res);
}

static void test_deferred_requeue(void **state)
{
	struct fx *fx = *state;
	struct siov_io a = {0}, b = {0};

	/* A callback that queues another completion runs it on the next pass. */
	a.cb = chain_cb;
	b.cb = chain_cb;
	chain_ctx = &fx->ctx;
	chain_left = 3;
	siov_io_complete_later(&fx->ctx, &a, 0);
	siov_io_complete_later(&fx->ctx, &b, 0);
	assert_int_equal(siov_io_ctx_run_deferred(&fx->ctx), 2);
	assert_int_equal(siov_io_ctx_run_deferred(&fx->ctx), 2);
	assert_int_equal(siov_io_ctx_run_deferred(&fx->ctx), 1);
	assert_int_equal(siov_io_ctx_run_deferred(&fx->ctx), 0);
	assert_null(fx->ctx.done_head);
}

static void test_get_sqe_submits_when_full(void **state)
{
	struct fx *fx = *state;
	struct io_uring_cqe *cqe;
	unsigned i, seen = 0;

	/* 100 NOPs through a 64-entry SQ: get_sqe must make room itself. */
	for (i = 0; i < 100; i++) {
		struct io_uring_sqe *sqe = siov_io_ctx_get_sqe(&fx->ctx);

		assert_non_null(sqe);
		io_uring_prep_nop(sqe);
		io_uring_sqe_set_data64(sqe, 1);
		if (i == 70) { /* reap so the CQ cannot overflow */
			while (io_uring_peek_cqe(&fx->ring, &cqe) == 0) {
				io_uring_cqe_seen(&fx->ring, cqe);
				seen++;
			}
		}
	}
	assert_true(io_uring_submit(&fx->ring) >= 0);
	while (seen < 100) {
		assert_int_equal(io_uring_wait_cqe(&fx->ring, &cqe), 0);
		io_uring_cqe_seen(&fx->ring, cqe);
		seen++;
	}
}

/* ---- open errors ---- */

static void expect_open_err(struct siov_backend_conf *c, const char *needle)
{
	struct siov_backend *bd = NULL;
	struct siov_err err = {0};
	int ret = siov_backend_open(c, &bd, &err);

	assert_true(ret < 0);
	assert_null(bd);
	assert_int_equal(err.code, ret);
	if (!strstr(err.msg, needle))
		fail_msg("error '%s' does not mention '%s'", err.msg, needle);
}

static void test_open_errors(void **state)
{
	struct fx *fx = *state;
	struct siov_backend_conf c;
	enum siov_backend_type t;

	conf_init(&c, SIOV_BACKEND_RAM, 1000, NULL);
	expect_open_err(&c, "backend 'b0': size 1000 is not a multiple of 512");
	conf_init(&c, SIOV_BACKEND_NULL, 0, NULL);
	expect_open_err(&c, "needs a size");
	conf_init(&c, SIOV_BACKEND_FILE, 4096, NULL);
	expect_open_err(&c, "needs a path");
	conf_init(&c, (enum siov_backend_type)7, 4096, NULL);
	expect_open_err(&c, "unknown type");
	conf_init(&c, SIOV_BACKEND_RAM, 4096, NULL);
	snprintf(c.name, sizeof(c.name), ".hidden");
	expect_open_err(&c, "name is invalid");
	conf_init(&c, SIOV_BACKEND_FILE, 0, fx->path);
	expect_open_err(&c, "does not exist");
	conf_init(&c, SIOV_BACKEND_FILE, 0, fx->dir);
	expect_open_err(&c, "Is a directory");
	conf_init(&c, SIOV_BACKEND_FILE, 0, "/dev/null");
	expect_open_err(&c, "neither a regular file nor a block device");
	/* A FIFO must be refused, not block the control thread in open(). */
	assert_int_equal(mkfifo(fx->path, 0600), 0);
	conf_init(&c, SIOV_BACKEND_FILE, 0, fx->path);
	c.readonly = true;
	expect_open_err(&c, "neither a regular file nor a block device");
	unlink(fx->path);
	conf_init(&c, SIOV_BACKEND_RAM, 1ull << 62, NULL);
	expect_open_err(&c, "cannot map");

	assert_int_equal(siov_backend_type_parse("file", &t), 0);
	assert_int_equal(t, SIOV_BACKEND_FILE);
	assert_int_equal(siov_backend_type_parse("nvme", &t), -EINVAL);
	assert_string_equal(siov_backend_type_name(SIOV_BACKEND_RAM), "ram");
}

/* ---- null and ram ---- */

static void test_null(void **state)
{
	struct fx *fx = *state;
	unsigned char buf[4096];
	struct iovec v[2] = {{buf, 1024}, {buf + 1024, 3072}};

	open_ok(fx, SIOV_BACKEND_NULL, 1 << 20, false);
	memset(buf, 0x5a, sizeof(buf));
	assert_int_equal(do_rw(fx, SIOV_IO_WRITE, 8192, v, 2), 4096);
	assert_int_equal(do_rw(fx, SIOV_IO_READ, 8192, v, 2), 4096);
	/* Reads move no data. */
	assert_int_equal(buf[0], 0x5a);
	assert_int_equal(buf[4095], 0x5a);
	assert_int_equal(do_op(fx, SIOV_IO_FLUSH, 0, 0), 0);
	assert_int_equal(do_op(fx, SIOV_IO_DISCARD, 0, 4096), 0);
	assert_int_equal(siov_backend_size(fx->bd), 1 << 20);
}

static void test_ram(void **state)
{
	struct fx *fx = *state;

	struct siov_backend_conf c;
	struct siov_err err = {0};
	uint64_t size = 1ull << 40;

	/*
	 * A terabyte costs nothing until written, except where the kernel
	 * refuses to overcommit (vm.overcommit_memory=2): then use less.
	 */
	conf_init(&c, SIOV_BACKEND_RAM, size, NULL);
	if (siov_backend_open(&c, &fx->bd, &err) < 0) {
		size = 256 << 20;
		open_ok(fx, SIOV_BACKEND_RAM, size, false);
	}
	roundtrip(fx, 0, 65536, 0, 1);
	roundtrip(fx, 512, 12800, 3, 2);
	roundtrip(fx, size - 65536, 65536, 0, 3);
	roundtrip(fx, 123 * 4096 + 1536, 3 * 4096, 0, 4);
	expect_zeros(fx, size / 2, 8192);
	/* Discard: whole pages in the middle, ragged edges on both sides. */
	assert_int_equal(do_op(fx, SIOV_IO_DISCARD, 1536, 40960), 0);
	expect_zeros(fx, 1536, 40960);
	roundtrip(fx, 0, 4096, 0, 5);
	assert_int_equal(do_op(fx, SIOV_IO_WRITE_ZEROES, 512, 1024), 0);
	expect_zeros(fx, 512, 1024);
	assert_int_equal(do_op(fx, SIOV_IO_FLUSH, 0, 0), 0);
}

/* ---- hostile requests ---- */

static void test_hostile(void **state)
{
	struct fx *fx = *state;
	static struct iovec many[1025];
	unsigned char buf[1024];
	struct iovec v[2] = {{buf, 512}, {buf + 512, 512}};
	struct req r = {0};
	int i;

	open_ok(fx, SIOV_BACKEND_RAM, 1 << 20, false);
	r.io.op = SIOV_IO_READ;
	r.io.offset = 0;
	r.io.iov = v;
	r.io.len = 1024;
	r.io.iovcnt = 0;
	assert_int_equal(run(fx, &r), -EINVAL);
	r.io.iovcnt = -1;
	assert_int_equal(run(fx, &r), -EINVAL);
	r.io.iovcnt = 2;
	r.io.len = 1000; /* not the iov sum */
	assert_int_equal(run(fx, &r), -EINVAL);
	r.io.len = 1024;
	r.io.iov = NULL;
	assert_int_equal(run(fx, &r), -EINVAL);
	v[1].iov_base = NULL;
	r.io.iov = v;
	assert_int_equal(run(fx, &r), -EINVAL);
	v[1].iov_base = buf + 512;
	v[1].iov_len = SIZE_MAX - 511; /* sums to 0 modulo 2^64 with v[0] */
	r.io.len = 0;
	assert_int_equal(run(fx, &r), -EINVAL);
	v[1].iov_len = 512;
	r.io.len = 1024;
	/* Out of range, including offset + len wrapping around. */
	r.io.offset = (1 << 20) - 512;
	assert_int_equal(run(fx, &r), -EINVAL);
	r.io.offset = UINT64_MAX - 511;
	assert_int_equal(run(fx, &r), -EINVAL);
	r.io.offset = 0;
	r.io.op = (enum siov_io_op)99;
	assert_int_equal(run(fx, &r), -EINVAL);
	assert_int_equal(do_op(fx, SIOV_IO_DISCARD, 1 << 20, 512), -EINVAL);
	for (i = 0; i < 1025; i++)
		many[i] = (struct iovec){buf, 0};
	many[0].iov_len = 512;
	r.io.op = SIOV_IO_READ;
	r.io.iov = many;
	r.io.iovcnt = 1025;
	r.io.len = 512;
	assert_int_equal(run(fx, &r), -EINVAL);
	r.io.iovcnt = 1024;
	assert_int_equal(run(fx, &r), 512);
	/* The callback was never called for any of the refused requests. */
	assert_int_equal(r.calls, 1);
}

static void test_readonly(void **state)
{
	struct fx *fx = *state;
	unsigned char buf[512] = {0};
	struct iovec v = {buf, sizeof(buf)};
	struct req r = {0};

	open_ok(fx, SIOV_BACKEND_RAM, 1 << 20, true);
	r.io.op = SIOV_IO_WRITE;
	r.io.iov = &v;
	r.io.iovcnt = 1;
	r.io.len = 512;
	r.io.cb = req_cb;
	assert_int_equal(siov_backend_submit(fx->bd, &fx->ctx, &r.io), -EROFS);
	assert_int_equal(siov_io_ctx_run_deferred(&fx->ctx), 0);
	assert_int_equal(r.calls, 0);
	assert_int_equal(do_op(fx, SIOV_IO_DISCARD, 0, 512), -EROFS);
	assert_int_equal(do_op(fx, SIOV_IO_WRITE_ZEROES, 0, 512), -EROFS);
	assert_int_equal(do_rw(fx, SIOV_IO_READ, 0, &v, 1), 512);
	assert_int_equal(do_op(fx, SIOV_IO_FLUSH, 0, 0), 0);
}

/* ---- file ---- */

static void pread_all(const char *path, uint64_t off, void *buf, size_t len)
{
	int fd = open(path, O_RDONLY);

	assert_true(fd >= 0);
	assert_int_equal(pread(fd, buf, len, (off_t)off), (ssize_t)len);
	close(fd);
}

/* The bytes written through the backend are in the file at that offset. */
static void expect_in_file(struct fx *fx, uint64_t off, size_t len, unsigned seed)
{
	unsigned char *want = malloc(len), *got = malloc(len);

	fill(want, len, seed);
	pread_all(fx->path, off, got, len);
	assert_memory_equal(want, got, len);
	free(want);
	free(got);
}

static void test_file_sparse_roundtrip(void **state)
{
	struct fx *fx = *state;
	const uint64_t size = 1ull << 30;
	struct stat st;

	open_ok(fx, SIOV_BACKEND_FILE, size, false);
	assert_int_equal(stat(fx->path, &st), 0);
	assert_int_equal((uint64_t)st.st_size, size);
	assert_true(st.st_blocks < 64); /* sparse: 1 GiB with almost nothing allocated */
	assert_int_equal(st.st_mode & 0777, 0600);
	assert_int_equal(siov_backend_size(fx->bd), size);
	fprintf(stderr, "file backend: direct=%d block_size=%u\n", siov_backend_is_direct(fx->bd),
		siov_backend_block_size(fx->bd));

	/* Aligned buffers and offsets: the O_DIRECT path where there is one. */
	roundtrip(fx, 0, 65536, 0, 11);
	expect_in_file(fx, 0, 65536, 11);
	roundtrip(fx, 1 << 20, 3 * 4096, 0, 12);
	expect_in_file(fx, 1 << 20, 3 * 4096, 12);
	roundtrip(fx, size - 8192, 8192, 0, 13);
	expect_in_file(fx, size - 8192, 8192, 13);
	/* Misaligned buffers and 512-byte offsets: the buffered path. */
	roundtrip(fx, 512, 12800, 3, 14);
	expect_in_file(fx, 512, 12800, 14);
	roundtrip(fx, 7 * 4096 + 1536, 5120, 1, 15);
	expect_in_file(fx, 7 * 4096 + 1536, 5120, 15);
	/* Direct over what was just written buffered: the two stay coherent. */
	roundtrip(fx, 8 * 4096, 4096, 0, 16);
	expect_in_file(fx, 8 * 4096, 4096, 16);
	expect_in_file(fx, 7 * 4096 + 1536, 5120 - 2560, 15);
	expect_zeros(fx, 256 << 20, 8192);
	assert_int_equal(do_op(fx, SIOV_IO_FLUSH, 0, 0), 0);
}

static void test_file_existing(void **state)
{
	struct fx *fx = *state;
	struct siov_backend_conf c;
	unsigned char buf[4096];
	int fd;

	fill(buf, sizeof(buf), 21);
	fd = open(fx->path, O_CREAT | O_WRONLY, 0644);
	assert_true(fd >= 0);
	assert_int_equal(pwrite(fd, buf, sizeof(buf), 0), 4096);
	assert_int_equal(ftruncate(fd, 1 << 20), 0);
	close(fd);

	/* A size larger than the existing file is refused, and the file left alone. */
	conf_init(&c, SIOV_BACKEND_FILE, 2 << 20, fx->path);
	expect_open_err(&c, "smaller than the size");
	{
		struct stat st;

		assert_int_equal(stat(fx->path, &st), 0);
		assert_int_equal(st.st_size, 1 << 20);
	}
	/* Size 0 takes the file's size; the contents are what was there. */
	open_ok(fx, SIOV_BACKEND_FILE, 0, false);
	assert_int_equal(siov_backend_size(fx->bd), 1 << 20);
	{
		unsigned char got[4096];
		struct iovec v = {got, sizeof(got)};

		assert_int_equal(do_rw(fx, SIOV_IO_READ, 0, &v, 1), 4096);
		assert_memory_equal(got, buf, sizeof(buf));
	}
}

static void test_file_read_past_eof(void **state)
{
	struct fx *fx = *state;
	unsigned char *buf = abuf(16384), want[16384];
	struct iovec v[3] = {{buf, 4096}, {buf + 4096, 8192}, {buf + 12288, 4096}};
	int fd;

	open_ok(fx, SIOV_BACKEND_FILE, 1 << 20, false);
	roundtrip(fx, 65536, 16384, 0, 31);
	/* Someone shrinks the file under us, mid-segment: the tail reads as zeros. */
	fd = open(fx->path, O_WRONLY);
	assert_true(fd >= 0);
	assert_int_equal(ftruncate(fd, 65536 + 6000), 0);
	close(fd);
	fill(want, sizeof(want), 31);
	memset(want + 6000, 0, sizeof(want) - 6000);
	memset(buf, 0xcc, 16384);
	assert_int_equal(do_rw(fx, SIOV_IO_READ, 65536, v, 3), 16384);
	assert_memory_equal(buf, want, sizeof(want));
	/* Entirely past the end of the file, inside the size. */
	expect_zeros(fx, 512 << 10, 4096);
	/* Writing past EOF inside the size works and extends the file. */
	roundtrip(fx, (1 << 20) - 4096, 4096, 0, 32);
	expect_in_file(fx, (1 << 20) - 4096, 4096, 32);
	free(buf);
}

static void test_file_eof_at_segment_boundary(void **state)
{
	struct fx *fx = *state;
	unsigned char *buf = abuf(12288), want[12288];
	struct iovec v[3] = {{buf, 4096}, {buf + 4096, 4096}, {buf + 8192, 4096}};
	int fd;

	open_ok(fx, SIOV_BACKEND_FILE, 1 << 20, false);
	roundtrip(fx, 0, 12288, 0, 33);
	fd = open(fx->path, O_WRONLY);
	assert_true(fd >= 0);
	assert_int_equal(ftruncate(fd, 4096), 0);
	close(fd);
	/* The first segment is data, the rest is past the end: resumed from segment 1. */
	fill(want, sizeof(want), 33);
	memset(want + 4096, 0, sizeof(want) - 4096);
	memset(buf, 0xcc, 12288);
	assert_int_equal(do_rw(fx, SIOV_IO_READ, 0, v, 3), 12288);
	assert_memory_equal(buf, want, sizeof(want));
	free(buf);
}

/* How many pages of the file's [off, off + len) are in the page cache. */
static size_t cached_pages(const char *path, uint64_t off, size_t len)
{
	int fd = open(path, O_RDONLY);
	unsigned char vec[64];
	size_t i, n = 0;
	void *p;

	assert_true(fd >= 0 && len / 4096 <= sizeof(vec));
	p = mmap(NULL, len, PROT_READ, MAP_SHARED, fd, (off_t)off);
	assert_true(p != MAP_FAILED);
	assert_int_equal(mincore(p, len, vec), 0);
	for (i = 0; i < len / 4096; i++)
		n += vec[i] & 1;
	munmap(p, len);
	close(fd);
	return n;
}

static void test_file_direct_and_buffered_paths(void **state)
{
	struct fx *fx = *state;
	unsigned char *buf = abuf(65536 + 4096);
	struct iovec v[2] = {{buf, 32768}, {buf + 32768, 32768}};

	open_ok(fx, SIOV_BACKEND_FILE, 16 << 20, false);
	if (!siov_backend_is_direct(fx->bd)) {
		free(buf);
		skip();
	}
	/* Aligned: O_DIRECT, which leaves the page cache empty. */
	fill(buf, 65536, 61);
	assert_int_equal(do_rw(fx, SIOV_IO_WRITE, 1 << 20, v, 2), 65536);
	assert_int_equal(cached_pages(fx->path, 1 << 20, 65536), 0);
	expect_in_file(fx, 1 << 20, 65536, 61);
	/* Misaligned buffer: through the page cache. */
	v[0].iov_base = buf + 1;
	v[1].iov_base = buf + 1 + 32768;
	fill(buf + 1, 65536, 62);
	assert_int_equal(do_rw(fx, SIOV_IO_WRITE, 4 << 20, v, 2), 65536);
	assert_int_equal(cached_pages(fx->path, 4 << 20, 65536), 16);
	expect_in_file(fx, 4 << 20, 65536, 62);
	free(buf);
}

/* On tmpfs there is no FALLOC_FL_ZERO_RANGE: write-zeroes falls back to a hole. */
static void test_file_tmpfs_write_zeroes(void **state)
{
	struct fx *fx = *state;
	char dir[64] = "/dev/shm/siov-bk-XXXXXX", path[128];
	struct siov_backend_conf c;
	struct siov_err err = {0};
	struct statfs sfs;

	if (statfs("/dev/shm", &sfs) < 0 || sfs.f_type != TMPFS_MAGIC || !mkdtemp(dir))
		skip();
	snprintf(path, sizeof(path), "%s/disk", dir);
	conf_init(&c, SIOV_BACKEND_FILE, 1 << 20, path);
	assert_int_equal(siov_backend_open(&c, &fx->bd, &err), 0);
	roundtrip(fx, 0, 65536, 0, 71);
	roundtrip(fx, 512, 4096, 5, 72);
	assert_int_equal(do_op(fx, SIOV_IO_WRITE_ZEROES, 4096, 8192), 0);
	expect_zeros(fx, 4096, 8192);
	assert_int_equal(do_op(fx, SIOV_IO_DISCARD, 16384, 4096), 0);
	expect_zeros(fx, 16384, 4096);
	assert_int_equal(do_op(fx, SIOV_IO_FLUSH, 0, 0), 0);
	siov_backend_close(fx->bd);
	fx->bd = NULL;
	unlink(path);
	rmdir(dir);
}

/*
 * Attaches the file at img to a free loop device that detaches itself when
 * the last descriptor closes; returns the device's descriptor or -1.
 */
static int loop_attach(const char *img, char *dev, size_t devlen)
{
	struct loop_config cfg = {0};
	int ctl, n, fd = -1;

	ctl = open("/dev/loop-control", O_RDWR | O_CLOEXEC);
	if (ctl < 0)
		return -1;
	n = ioctl(ctl, LOOP_CTL_GET_FREE);
	close(ctl);
	if (n < 0)
		return -1;
	snprintf(dev, devlen, "/dev/loop%d", n);
	cfg.fd = (unsigned)open(img, O_RDWR | O_CLOEXEC);
	fd = open(dev, O_RDWR | O_CLOEXEC);
	cfg.info.lo_flags = LO_FLAGS_AUTOCLEAR;
	if ((int)cfg.fd < 0 || fd < 0 || ioctl(fd, LOOP_CONFIGURE, &cfg) < 0) {
		if (fd >= 0)
			close(fd);
		fd = -1;
	}
	if ((int)cfg.fd >= 0)
		close((int)cfg.fd);
	return fd;
}

static void test_file_blockdev(void **state)
{
	struct fx *fx = *state;
	struct siov_backend_conf c;
	struct siov_err err = {0};
	char dev[64];
	int fd, lfd;

	fd = open(fx->path, O_CREAT | O_RDWR, 0600);
	assert_true(fd >= 0);
	assert_int_equal(ftruncate(fd, 16 << 20), 0);
	close(fd);
	lfd = loop_attach(fx->path, dev, sizeof(dev));
	if (lfd < 0)
		skip(); /* not root, or no loop devices here */
	conf_init(&c, SIOV_BACKEND_FILE, 0, dev);
	if (siov_backend_open(&c, &fx->bd, &err) < 0) {
		close(lfd);
		fail_msg("open %s: %s", dev, err.msg);
	}
	assert_int_equal(siov_backend_size(fx->bd), 16 << 20);
	assert_int_equal(siov_backend_block_size(fx->bd), 512);
	roundtrip(fx, 0, 65536, 0, 81);
	roundtrip(fx, 4608, 12800, 3, 82);
	roundtrip(fx, (16 << 20) - 8192, 8192, 0, 83);
	assert_int_equal(do_op(fx, SIOV_IO_FLUSH, 0, 0), 0);
	expect_in_file(fx, 4608, 12800, 82);
	expect_in_file(fx, (16 << 20) - 8192, 8192, 83);
	/* The kernel turns a punched hole on a device into a discard/zero-out. */
	assert_int_equal(do_op(fx, SIOV_IO_DISCARD, 0, 32768), 0);
	expect_zeros(fx, 0, 32768);
	assert_int_equal(do_op(fx, SIOV_IO_WRITE_ZEROES, 32768, 4096), 0);
	expect_zeros(fx, 32768, 4096);
	/* A size the device does not have is refused. */
	siov_backend_close(fx->bd);
	fx->bd = NULL;
	conf_init(&c, SIOV_BACKEND_FILE, 32 << 20, dev);
	expect_open_err(&c, "smaller than the size");
	close(lfd);
}

static void test_file_discard_write_zeroes(void **state)
{
	struct fx *fx = *state;
	struct stat st1, st2;

	open_ok(fx, SIOV_BACKEND_FILE, 8 << 20, false);
	assert_true(siov_backend_can_discard(fx->bd));
	assert_true(siov_backend_can_write_zeroes(fx->bd));
	roundtrip(fx, 0, 1 << 20, 0, 41);
	assert_int_equal(do_op(fx, SIOV_IO_FLUSH, 0, 0), 0);
	assert_int_equal(stat(fx->path, &st1), 0);
	assert_int_equal(do_op(fx, SIOV_IO_DISCARD, 0, 512 << 10), 0);
	expect_zeros(fx, 0, 512 << 10);
	assert_int_equal(stat(fx->path, &st2), 0);
	assert_true(st2.st_blocks < st1.st_blocks); /* the hole gave the space back */
	assert_int_equal(do_op(fx, SIOV_IO_WRITE_ZEROES, (512 << 10) + 512, 4096), 0);
	expect_zeros(fx, (512 << 10) + 512, 4096);
	/* In the file: zeros exactly where asked, the data intact around them. */
	{
		size_t len = 1 << 20;
		unsigned char *want = malloc(len), *got = malloc(len);

		fill(want, len, 41);
		memset(want, 0, 512 << 10);
		memset(want + (512 << 10) + 512, 0, 4096);
		pread_all(fx->path, 0, got, len);
		assert_memory_equal(want, got, len);
		free(want);
		free(got);
	}
}

static void test_file_readonly(void **state)
{
	struct fx *fx = *state;
	struct siov_backend_conf c;
	unsigned char buf[4096];
	struct iovec v = {buf, sizeof(buf)};
	struct req r = {0};

	/* A read-only backend never creates its file. */
	conf_init(&c, SIOV_BACKEND_FILE, 1 << 20, fx->path);
	c.readonly = true;
	expect_open_err(&c, "does not exist");
	open_ok(fx, SIOV_BACKEND_FILE, 1 << 20, false);
	roundtrip(fx, 4096, 4096, 0, 51);
	siov_backend_close(fx->bd);
	fx->bd = NULL;

	open_ok(fx, SIOV_BACKEND_FILE, 0, true);
	r.io.op = SIOV_IO_WRITE;
	r.io.offset = 4096;
	r.io.iov = &v;
	r.io.iovcnt = 1;
	r.io.len = sizeof(buf);
	r.io.cb = req_cb;
	assert_int_equal(siov_backend_submit(fx->bd, &fx->ctx, &r.io), -EROFS);
	assert_int_equal(fx->ctx.unsubmitted, 0);
	assert_int_equal(siov_io_ctx_run_deferred(&fx->ctx), 0);
	assert_int_equal(r.calls, 0);
	assert_int_equal(do_op(fx, SIOV_IO_WRITE_ZEROES, 0, 4096), -EROFS);
	assert_int_equal(do_op(fx, SIOV_IO_DISCARD, 0, 4096), -EROFS);
	assert_int_equal(do_op(fx, SIOV_IO_FLUSH, 0, 0), 0);
	/* Reads still work and see the data. */
	assert_int_equal(do_rw(fx, SIOV_IO_READ, 4096, &v, 1), 4096);
	expect_in_file(fx, 4096, 4096, 51);
}

static void test_file_out_of_range(void **state)
{
	struct fx *fx = *state;
	unsigned char buf[4096];
	struct iovec v = {buf, sizeof(buf)};

	open_ok(fx, SIOV_BACKEND_FILE, 1 << 20, false);
	assert_int_equal(do_rw(fx, SIOV_IO_READ, (1 << 20) - 2048, &v, 1), -EINVAL);
	assert_int_equal(do_rw(fx, SIOV_IO_WRITE, 1 << 20, &v, 1), -EINVAL);
	assert_int_equal(do_rw(fx, SIOV_IO_WRITE, UINT64_MAX - 4095, &v, 1), -EINVAL);
	assert_int_equal(do_op(fx, SIOV_IO_WRITE_ZEROES, 4096, 1 << 20), -EINVAL);
	assert_int_equal(fx->ctx.unsubmitted, 0);
	/* The last sector is in range. */
	v.iov_len = 512;
	assert_int_equal(do_rw(fx, SIOV_IO_READ, (1 << 20) - 512, &v, 1), 512);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test_setup_teardown(test_deferred_requeue, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_get_sqe_submits_when_full, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_open_errors, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_null, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_ram, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_hostile, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_readonly, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_file_sparse_roundtrip, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_file_existing, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_file_read_past_eof, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_file_eof_at_segment_boundary, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_file_direct_and_buffered_paths, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_file_tmpfs_write_zeroes, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_file_blockdev, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_file_discard_write_zeroes, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_file_readonly, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_file_out_of_range, setup, teardown),
	};
	struct io_uring ring;

	/* No io_uring here (seccomp, old kernel): nothing to test against. */
	if (io_uring_queue_init(4, &ring, 0) < 0) {
		fprintf(stderr, "skip: io_uring is not available\n");
		return 77;
	}
	io_uring_queue_exit(&ring);
	return cmocka_run_group_tests_name("backend", tests, NULL, NULL);
}
