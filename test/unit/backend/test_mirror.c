/*
 * Unit tests for the mirror backend, on a real io_uring driven the way an
 * engine drives it, over real ram and file members.  A "faulty" member (a
 * provider of this file's own, failing reads or writes on demand) stands in
 * for a disk that breaks; the integration tests use nbdkit's error filter for
 * the same thing against a real server.
 *
 * What a user would notice is asserted: data reads back after a member fails,
 * members end up byte-identical after a resync, a bitmap resync copies only
 * the chunks written meanwhile, the last copy is never dropped, and the state
 * (failed member, resync to finish, unclean stop) survives closing, reopening
 * and a process that dies without closing; after a host crash (the bitmap
 * from an earlier boot) the members are resynced fully, not from the bits.
 */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmocka.h>
#include <liburing.h>

#include "siov_internal/backend.h"
#include "siov_internal/backend_module.h" /* the faulty member is a provider */
#include "siov_internal/mirror.h"

#define MB	   (1024 * 1024)
#define SIZE	   (8 * MB)
#define CHUNK	   (64 * 1024)
#define WAIT_LOOPS 20000 /* x 1 ms */

struct fx {
	struct io_uring ring;
	struct siov_io_ctx ctx;
	char dir[256];
	char bitmap[300];
	struct siov_backend *mem[3]; /* members */
	struct siov_backend *m;	     /* the mirror */
};

struct req {
	struct siov_io io;
	struct iovec iov;
	bool done;
	int res;
};

static void req_cb(struct siov_io *io, int res)
{
	struct req *r = SIOV_CONTAINER_OF(io, struct req, io);

	r->done = true;
	r->res = res;
}

/* ---- A member that fails on demand ---- */

struct faulty {
	struct siov_backend *inner;
	bool fail_reads, fail_writes;
};

static int faulty_open(struct siov_backend *bd, struct siov_err *err)
{
	return 0;
}

static void faulty_close(struct siov_backend *bd)
{
	struct faulty *f = bd->priv;

	siov_backend_close(f->inner);
	free(f);
}

static int faulty_submit(struct siov_backend *bd, struct siov_io_ctx *ctx, struct siov_io *io)
{
	struct faulty *f = bd->priv;

	if ((io->op == SIOV_IO_READ && f->fail_reads) ||
	    (io->op != SIOV_IO_READ && f->fail_writes)) {
		siov_io_complete_later(ctx, io, -EIO);
		return 0;
	}
	/* The inner (ram) backend completes through ctx with our io's callback. */
	return siov_backend_submit(f->inner, ctx, io);
}

static const struct siov_backend_ops faulty_ops = {
    .type_name = "faulty",
    .open = faulty_open,
    .close = faulty_close,
    .submit = faulty_submit,
};

static struct siov_backend *ram(const char *name, uint64_t size)
{
	struct siov_backend_conf c = {.type = SIOV_BACKEND_RAM, .size = size};
	struct siov_err err = {0};
	struct siov_backend *bd = NULL;

	snprintf(c.name, sizeof(c.name), "%s", name);
	if (siov_backend_open(&c, &bd, &err))
		fail_msg("ram: %s", err.msg);
	return bd;
}

static struct siov_backend *file(struct fx *fx, const char *name, uint64_t size)
{
	struct siov_backend_conf c = {.type = SIOV_BACKEND_FILE, .size = size};
	struct siov_err err = {0};
	struct siov_backend *bd = NULL;

	snprintf(c.name, sizeof(c.name), "%s", name);
	snprintf(c.path, sizeof(c.path), "%s/%s", fx->dir, name);
	if (siov_backend_open(&c, &bd, &err))
		fail_msg("file: %s", err.msg);
	return bd;
}

static struct siov_backend *faulty(const char *name, uint64_t size, struct faulty **out)
{
	struct siov_backend *bd = calloc(1, sizeof(*bd));
	struct faulty *f = calloc(1, sizeof(*f));

	assert_non_null(bd);
	assert_non_null(f);
	f->inner = ram(name, size);
	snprintf(bd->conf.name, sizeof(bd->conf.name), "%s", name);
	bd->ops = &faulty_ops;
	bd->size = size;
	bd->block_size = 512;
	bd->can_discard = bd->can_write_zeroes = true;
	bd->priv = f;
	*out = f;
	return bd;
}

/* ---- Fixture ---- */

static int setup(void **state)
{
	struct fx *fx = calloc(1, sizeof(*fx));
	const char *tmp = getenv("TMPDIR");

	assert_non_null(fx);
	assert_int_equal(io_uring_queue_init(64, &fx->ring, 0), 0);
	siov_io_ctx_init(&fx->ctx, &fx->ring);
	snprintf(fx->dir, sizeof(fx->dir), "%s/siov-mirror-XXXXXX", tmp && *tmp ? tmp : "/tmp");
	assert_non_null(mkdtemp(fx->dir));
	snprintf(fx->bitmap, sizeof(fx->bitmap), "%s/m.bitmap", fx->dir);
	*state = fx;
	return 0;
}

static int teardown(void **state)
{
	struct fx *fx = *state;
	char cmd[400];
	unsigned i;

	siov_backend_close(fx->m);
	for (i = 0; i < 3; i++)
		siov_backend_close(fx->mem[i]);
	io_uring_queue_exit(&fx->ring);
	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", fx->dir);
	if (system(cmd) != 0)
		fprintf(stderr, "cannot remove %s\n", fx->dir);
	free(fx);
	return 0;
}

/*
 * Opens a mirror whose resync copies at @rate bytes/s from the start.  A test
 * that needs a resync still running must open it slow, not lower the rate
 * afterwards: the resync thread starts inside siov_mirror_open() with a full
 * bucket (a tenth of a second at the opening rate), and on a loaded machine
 * the test thread can be off the CPU long enough after the open for a fast
 * resync of SIZE bytes to finish (it did, on CI, with the test 20 ms late).
 */
static int mirror_open_rate(struct fx *fx, unsigned n, const char *bitmap, uint64_t rate,
			    struct siov_backend **out)
{
	struct siov_backend_conf c = {.type = SIOV_BACKEND_MIRROR};
	struct siov_mirror_opts o = {.bitmap_path = bitmap, .resync_rate = rate};
	struct siov_mirror_member mm[3];
	struct siov_err err = {0};
	unsigned i;
	int rc;

	snprintf(c.name, sizeof(c.name), "m");
	for (i = 0; i < n; i++)
		mm[i] = (struct siov_mirror_member){.bd = fx->mem[i]};
	rc = siov_mirror_open(&c, mm, n, &o, out, &err);
	if (rc)
		fprintf(stderr, "mirror open: %s\n", err.msg);
	return rc;
}

/* A mirror that resyncs as fast as the members go. */
static int mirror_open(struct fx *fx, unsigned n, const char *bitmap, struct siov_backend **out)
{
	return mirror_open_rate(fx, n, bitmap, 4000ull * MB, out);
}

/* Runs the ring until r is done (an engine's loop, in small). */
static int run(struct fx *fx, struct siov_backend *bd, struct req *r)
{
	struct io_uring_cqe *cqe;
	int rc;

	r->done = false;
	r->io.cb = req_cb;
	rc = siov_backend_submit(bd, &fx->ctx, &r->io);
	if (rc)
		return rc;
	assert_false(r->done);
	while (!r->done) {
		if (siov_io_ctx_run_deferred(&fx->ctx))
			continue;
		assert_true(io_uring_submit_and_wait(&fx->ring, 1) >= 0);
		fx->ctx.unsubmitted = 0;
		while (io_uring_peek_cqe(&fx->ring, &cqe) == 0) {
			siov_io_ctx_handle_cqe(&fx->ctx, cqe);
			io_uring_cqe_seen(&fx->ring, cqe);
		}
	}
	return r->res;
}

static int rw(struct fx *fx, struct siov_backend *bd, enum siov_io_op op, uint64_t off, void *buf,
	      size_t len)
{
	struct req r = {.iov = {.iov_base = buf, .iov_len = len}};

	r.io = (struct siov_io){.op = op, .offset = off, .len = len, .iov = &r.iov, .iovcnt = 1};
	return run(fx, bd, &r);
}

static void *abuf(size_t len, int seed)
{
	unsigned char *p = NULL;
	size_t i;

	assert_int_equal(posix_memalign((void **)&p, 4096, len), 0);
	for (i = 0; i < len; i++)
		p[i] = (unsigned char)(seed * 37 + i * 13 + (i >> 12));
	return p;
}

static void write_pattern(struct fx *fx, struct siov_backend *bd, uint64_t off, size_t len,
			  int seed)
{
	void *b = abuf(len, seed);

	assert_int_equal(rw(fx, bd, SIOV_IO_WRITE, off, b, len), (int)len);
	free(b);
}

/* Compares two backends byte for byte, as the host does with cmp. */
static void assert_same(struct fx *fx, struct siov_backend *a, struct siov_backend *b)
{
	void *x = abuf(MB, 0), *y = abuf(MB, 1);
	uint64_t off;

	for (off = 0; off < SIZE; off += MB) {
		assert_int_equal(rw(fx, a, SIOV_IO_READ, off, x, MB), MB);
		assert_int_equal(rw(fx, b, SIOV_IO_READ, off, y, MB), MB);
		if (memcmp(x, y, MB))
			fail_msg("members differ in [%llu, +1 MiB)", (unsigned long long)off);
	}
	free(x);
	free(y);
}

static const struct siov_member_info *member(struct siov_mirror_info *info, const char *name)
{
	unsigned i;

	for (i = 0; i < info->nmembers; i++)
		if (!strcmp(info->members[i].name, name))
			return &info->members[i];
	fail_msg("no member %s", name);
	return NULL;
}

static void wait_in_sync(struct siov_backend *m)
{
	int i;

	for (i = 0; i < WAIT_LOOPS && !siov_mirror_all_in_sync(m); i++)
		usleep(1000);
	assert_true(siov_mirror_all_in_sync(m));
}

/* Until the sweep (once a second) has cleared every bit: no chunk is dirty. */
static void wait_clean(struct siov_backend *m)
{
	struct siov_mirror_info info;
	int i;

	for (i = 0; i < WAIT_LOOPS; i++, usleep(1000)) {
		siov_mirror_get_info(m, &info);
		if (info.dirty_chunks == 0)
			return;
	}
	fail_msg("%llu chunk(s) still dirty after %d ms", (unsigned long long)info.dirty_chunks,
		 WAIT_LOOPS);
}

/* ---- Tests ---- */

/* A new mirror copies the first member onto the second; then both take every write. */
static void test_initial_resync_and_writes(void **state)
{
	struct fx *fx = *state;
	struct siov_mirror_info info;

	fx->mem[0] = ram("a", SIZE);
	fx->mem[1] = ram("b", SIZE);
	write_pattern(fx, fx->mem[0], 0, SIZE, 1);
	write_pattern(fx, fx->mem[1], 0, SIZE, 2);
	assert_int_equal(mirror_open(fx, 2, fx->bitmap, &fx->m), 0);
	assert_int_equal(siov_backend_size(fx->m), SIZE);
	wait_in_sync(fx->m);
	siov_mirror_get_info(fx->m, &info);
	assert_int_equal(member(&info, "b")->resync_bytes, SIZE);
	assert_same(fx, fx->mem[0], fx->mem[1]);
	write_pattern(fx, fx->m, 3 * CHUNK + 512, 5 * CHUNK, 3);
	assert_same(fx, fx->mem[0], fx->mem[1]);
}

/* Reads survive a member that fails; the failed one is dropped with its reason. */
static void test_read_failover(void **state)
{
	struct fx *fx = *state;
	struct siov_mirror_info info;
	struct faulty *f;
	void *b = abuf(CHUNK, 9), *w = abuf(CHUNK, 5);
	int i;

	fx->mem[0] = faulty("a", SIZE, &f);
	fx->mem[1] = ram("b", SIZE);
	assert_int_equal(mirror_open(fx, 2, NULL, &fx->m), 0);
	wait_in_sync(fx->m);
	assert_int_equal(rw(fx, fx->m, SIOV_IO_WRITE, 0, w, CHUNK), CHUNK);
	f->fail_reads = true;
	/* Round robin sends some of these to the faulty member first. */
	for (i = 0; i < 4; i++) {
		memset(b, 0, CHUNK);
		assert_int_equal(rw(fx, fx->m, SIOV_IO_READ, 0, b, CHUNK), CHUNK);
		assert_memory_equal(b, w, CHUNK);
	}
	siov_mirror_get_info(fx->m, &info);
	assert_int_equal(member(&info, "a")->state, SIOV_MEMBER_FAILED);
	assert_non_null(strstr(member(&info, "a")->reason, "read error"));
	assert_int_equal(member(&info, "b")->state, SIOV_MEMBER_IN_SYNC);
	assert_int_equal(info.read_retries, 1);
	free(b);
	free(w);
}

/* A write failing on one member succeeds; failing on the last copy is an error. */
static void test_write_failure_and_last_copy(void **state)
{
	struct fx *fx = *state;
	struct siov_mirror_info info;
	struct siov_backend *out = NULL;
	struct siov_err err = {0};
	struct faulty *fa, *fb;
	void *w = abuf(CHUNK, 4);

	fx->mem[0] = faulty("a", SIZE, &fa);
	fx->mem[1] = faulty("b", SIZE, &fb);
	assert_int_equal(mirror_open(fx, 2, NULL, &fx->m), 0);
	wait_in_sync(fx->m);
	fb->fail_writes = true;
	assert_int_equal(rw(fx, fx->m, SIOV_IO_WRITE, CHUNK, w, CHUNK), CHUNK);
	siov_mirror_get_info(fx->m, &info);
	assert_int_equal(member(&info, "b")->state, SIOV_MEMBER_FAILED);
	assert_int_equal(member(&info, "b")->write_errors, 1);
	/* The last copy: the write fails, the member stays. */
	fa->fail_writes = true;
	assert_int_equal(rw(fx, fx->m, SIOV_IO_WRITE, CHUNK, w, CHUNK), -EIO);
	siov_mirror_get_info(fx->m, &info);
	assert_int_equal(member(&info, "a")->state, SIOV_MEMBER_IN_SYNC);
	assert_int_equal(siov_mirror_remove_member(fx->m, "a", &out, &err), -EBUSY);
	assert_int_equal(siov_mirror_fail_member(fx->m, "a", "operator", &err), -EBUSY);
	free(w);
}

/* A member that comes back copies only what was written while it was away. */
static void test_bitmap_resync(void **state)
{
	struct fx *fx = *state;
	struct siov_mirror_info info;
	struct siov_err err = {0};
	struct siov_mirror_member b;

	fx->mem[0] = ram("a", SIZE);
	fx->mem[1] = ram("b", SIZE);
	assert_int_equal(mirror_open(fx, 2, fx->bitmap, &fx->m), 0);
	wait_in_sync(fx->m);
	/* The sweep clears the bits of the initial resync's era. */
	wait_clean(fx->m);
	assert_int_equal(siov_mirror_fail_member(fx->m, "b", "pulled by the test", &err), 0);
	write_pattern(fx, fx->m, 10 * CHUNK, 3 * CHUNK, 7);   /* chunks 10..12 */
	write_pattern(fx, fx->m, 100 * CHUNK + 4096, 512, 8); /* chunk 100 */
	siov_mirror_get_info(fx->m, &info);
	assert_int_equal(info.dirty_chunks, 4);
	assert_string_equal(member(&info, "b")->reason, "pulled by the test");
	b = (struct siov_mirror_member){.bd = fx->mem[1]};
	assert_int_equal(siov_mirror_add_member(fx->m, &b, false, &err), 0);
	wait_in_sync(fx->m);
	siov_mirror_get_info(fx->m, &info);
	/* The initial full copy, plus exactly the 4 chunks written meanwhile. */
	assert_int_equal(member(&info, "b")->resync_bytes, SIZE + 4 * CHUNK);
	assert_same(fx, fx->mem[0], fx->mem[1]);
}

/* Writes racing a resync still leave the members identical. */
static void test_resync_under_writes(void **state)
{
	struct fx *fx = *state;
	struct siov_mirror_member c;
	struct siov_err err = {0};
	unsigned i = 0;

	fx->mem[0] = ram("a", SIZE);
	fx->mem[1] = ram("b", SIZE);
	fx->mem[2] = ram("c", SIZE);
	write_pattern(fx, fx->mem[2], 0, SIZE, 11); /* garbage the resync must replace */
	assert_int_equal(mirror_open(fx, 2, NULL, &fx->m), 0);
	wait_in_sync(fx->m);
	/* Slow before c comes: its whole resync then overlaps the writes. */
	siov_mirror_set_resync_rate(fx->m, 16 * MB);
	c = (struct siov_mirror_member){.bd = fx->mem[2]};
	assert_int_equal(siov_mirror_add_member(fx->m, &c, false, &err), 0);
	while (!siov_mirror_all_in_sync(fx->m)) {
		write_pattern(fx, fx->m, (uint64_t)(i * 7919 % (SIZE / 4096)) * 4096, 4096, (int)i);
		i++;
		if (i % 64 == 0)
			usleep(1000);
	}
	assert_true(i > 100);
	assert_same(fx, fx->mem[0], fx->mem[2]);
	assert_same(fx, fx->mem[1], fx->mem[2]);
}

/* Removing members mid-resync (the target, then a source) does not crash and keeps data. */
static void test_remove_during_resync(void **state)
{
	struct fx *fx = *state;
	struct siov_backend *out = NULL;
	struct siov_mirror_member mm;
	struct siov_mirror_info info;
	struct siov_err err = {0};
	void *w = abuf(CHUNK, 3), *r = abuf(CHUNK, 0);

	fx->mem[0] = ram("a", SIZE);
	fx->mem[1] = ram("b", SIZE);
	fx->mem[2] = ram("c", SIZE);
	/* Slow from the start: 3.5 s for b's resync, whatever the scheduler does. */
	assert_int_equal(mirror_open_rate(fx, 2, NULL, 2 * MB, &fx->m), 0);
	assert_int_equal(rw(fx, fx->m, SIOV_IO_WRITE, 0, w, CHUNK), CHUNK);
	siov_mirror_get_info(fx->m, &info);
	assert_int_equal(member(&info, "b")->state, SIOV_MEMBER_RESYNCING);
	/* b is resyncing from a: take the only source away -> refused, take b -> fine. */
	assert_int_equal(siov_mirror_remove_member(fx->m, "a", &out, &err), -EBUSY);
	assert_int_equal(siov_mirror_remove_member(fx->m, "b", &out, &err), 0);
	assert_ptr_equal(out, fx->mem[1]);
	mm = (struct siov_mirror_member){.bd = fx->mem[2]};
	assert_int_equal(siov_mirror_add_member(fx->m, &mm, false, &err), 0);
	assert_int_equal(siov_mirror_remove_member(fx->m, "c", &out, &err), 0);
	assert_int_equal(rw(fx, fx->m, SIOV_IO_READ, 0, r, CHUNK), CHUNK);
	assert_memory_equal(w, r, CHUNK);
	siov_mirror_get_info(fx->m, &info);
	assert_int_equal(info.nmembers, 1);
	free(w);
	free(r);
}

/* A failed member stays failed across a clean close and reopen, with its bitmap. */
static void test_restart_keeps_state(void **state)
{
	struct fx *fx = *state;
	struct siov_mirror_info info;
	struct siov_mirror_member b;
	struct siov_err err = {0};

	fx->mem[0] = file(fx, "a", SIZE);
	fx->mem[1] = file(fx, "b", SIZE);
	assert_int_equal(mirror_open(fx, 2, fx->bitmap, &fx->m), 0);
	wait_in_sync(fx->m);
	wait_clean(fx->m);
	assert_int_equal(siov_mirror_fail_member(fx->m, "b", "pulled", &err), 0);
	write_pattern(fx, fx->m, 20 * CHUNK, CHUNK, 5);
	siov_backend_close(fx->m);
	fx->m = NULL;
	assert_int_equal(mirror_open(fx, 2, fx->bitmap, &fx->m), 0);
	siov_mirror_get_info(fx->m, &info);
	assert_int_equal(member(&info, "b")->state, SIOV_MEMBER_FAILED);
	assert_string_equal(member(&info, "b")->reason, "pulled");
	assert_int_equal(info.dirty_chunks, 1);
	b = (struct siov_mirror_member){.bd = fx->mem[1]};
	assert_int_equal(siov_mirror_add_member(fx->m, &b, false, &err), 0);
	wait_in_sync(fx->m);
	siov_mirror_get_info(fx->m, &info);
	assert_int_equal(member(&info, "b")->resync_bytes, CHUNK);
	assert_same(fx, fx->mem[0], fx->mem[1]);
}

/* In a forked child: a mirror of a and b on the child's own ring (exits on failure). */
static struct siov_backend *child_mirror(struct fx *fx, uint64_t rate)
{
	struct siov_backend *m = NULL;

	/* The parent's ring is not ours to share. */
	if (io_uring_queue_init(64, &fx->ring, 0))
		_exit(3);
	siov_io_ctx_init(&fx->ctx, &fx->ring);
	if (mirror_open_rate(fx, 2, fx->bitmap, rate, &m))
		_exit(2);
	return m;
}

/* In the child: until the resync has copied something (exits if it never does). */
static void child_wait_progress(struct siov_backend *m)
{
	struct siov_mirror_info info;
	int i;

	for (i = 0; i < WAIT_LOOPS; i++, usleep(1000)) {
		siov_mirror_get_info(m, &info);
		if (info.members[1].resync_done > 0)
			return;
	}
	_exit(4);
}

/* The parent: the child ended, with status 0. */
static void child_wait(pid_t pid)
{
	int st;

	assert_int_equal(waitpid(pid, &st, 0), pid);
	assert_true(WIFEXITED(st) && WEXITSTATUS(st) == 0);
}

/*
 * A process that dies with a resync half done and writes on one member only
 * (SIGKILL: nothing is closed): the next open finishes the resync and
 * reconciles what was being written.
 */
static void test_unclean_stop(void **state)
{
	struct fx *fx = *state;
	struct siov_mirror_info info;
	pid_t pid;

	fx->mem[0] = file(fx, "a", SIZE);
	fx->mem[1] = file(fx, "b", SIZE);
	write_pattern(fx, fx->mem[0], 0, SIZE, 21);
	pid = fork();
	assert_true(pid >= 0);
	if (pid == 0) {
		/* Slow (3.5 s for the whole copy): the child dies with it half done. */
		struct siov_backend *m = child_mirror(fx, 2 * MB);

		/* Not a fixed sleep: a starved resync thread may not have begun. */
		child_wait_progress(m);
		/*
		 * A write the process died in the middle of: it set its bit and
		 * reached a, not b (played here by writing a alone afterwards).
		 */
		write_pattern(fx, m, 8 * CHUNK, CHUNK, 23);
		write_pattern(fx, fx->mem[0], 8 * CHUNK, CHUNK, 22);
		_exit(0);
	}
	child_wait(pid);
	/* Slow until b's state is read, or a late test thread finds it done. */
	assert_int_equal(mirror_open_rate(fx, 2, fx->bitmap, 2 * MB, &fx->m), 0);
	siov_mirror_get_info(fx->m, &info);
	assert_int_equal(member(&info, "b")->state, SIOV_MEMBER_RESYNCING);
	/* It went on from where it stopped: not the whole disk again. */
	assert_true(member(&info, "b")->resync_total < SIZE);
	siov_mirror_set_resync_rate(fx->m, 4000ull * MB);
	wait_in_sync(fx->m);
	assert_same(fx, fx->mem[0], fx->mem[1]);
}

/*
 * A host crash: the bitmap on disk may miss the last writes' bits.  Played by
 * a process that dies after writing one chunk through the mirror and another
 * onto a alone with no bit set (a write whose bit never reached the disk),
 * and by making the bitmap's boot another one.  The next open must not trust
 * the bits: b is resynced fully and ends up identical to a.
 */
static void test_host_crash(void **state)
{
	struct fx *fx = *state;
	struct siov_mirror_info info;
	char boot[40] = "", hdr[4096], *at;
	FILE *f;
	pid_t pid;

	fx->mem[0] = file(fx, "a", SIZE);
	fx->mem[1] = file(fx, "b", SIZE);
	pid = fork();
	assert_true(pid >= 0);
	if (pid == 0) {
		struct siov_backend *m = child_mirror(fx, 4000ull * MB);

		wait_in_sync(m);
		write_pattern(fx, m, 4 * CHUNK, CHUNK, 31);
		write_pattern(fx, fx->mem[0], 40 * CHUNK, CHUNK, 32); /* its bit was lost */
		_exit(0);
	}
	child_wait(pid);
	/* The header names the boot that opened it: make it an earlier one. */
	f = fopen("/proc/sys/kernel/random/boot_id", "r");
	if (f) {
		assert_non_null(fgets(boot, sizeof(boot), f));
		fclose(f);
		boot[strcspn(boot, "\n")] = '\0';
		f = fopen(fx->bitmap, "r+");
		assert_non_null(f);
		assert_int_equal(fread(hdr, 1, sizeof(hdr), f), sizeof(hdr));
		at = memmem(hdr, sizeof(hdr), boot, strlen(boot));
		assert_non_null(at);
		*at = *at == '0' ? '1' : '0';
		assert_int_equal(fseek(f, 0, SEEK_SET), 0);
		assert_int_equal(fwrite(hdr, 1, sizeof(hdr), f), sizeof(hdr));
		fclose(f);
	}
	assert_int_equal(mirror_open_rate(fx, 2, fx->bitmap, 2 * MB, &fx->m), 0);
	siov_mirror_get_info(fx->m, &info);
	assert_int_equal(member(&info, "b")->state, SIOV_MEMBER_RESYNCING);
	assert_int_equal(member(&info, "b")->resync_total, SIZE);
	siov_mirror_set_resync_rate(fx->m, 4000ull * MB);
	wait_in_sync(fx->m);
	assert_same(fx, fx->mem[0], fx->mem[1]);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test_setup_teardown(test_initial_resync_and_writes, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_read_failover, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_write_failure_and_last_copy, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_bitmap_resync, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_resync_under_writes, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_remove_during_resync, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_restart_keeps_state, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_unclean_stop, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_host_crash, setup, teardown),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
