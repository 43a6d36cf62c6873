/*
 * Unit tests for migration's dirty-page log (lib/mem/dirty_log.c) and for the
 * virtqueue completion path that marks it (lib/virtio/virtqueue.c).
 *
 * The log itself: its bitmap layout (what QEMU reads back), hostile sizes and
 * offsets from the front end, marks past its end.  The data path: requests run
 * end to end through the virtio-blk model on a real engine thread and a ram
 * backend (as in test_blk.c), with the log on, and the test compares every bit
 * of the log with the pages the device really wrote: read data (chains that
 * straddle pages and regions, indirect tables), status bytes, the used element
 * and index; nothing the device only read.  With the log off nothing is marked.
 */
#include <errno.h>
#include <linux/virtio_blk.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include "guest.h"
#include "siov_internal/backend.h"
#include "siov_internal/dirty_log.h"
#include "siov_internal/engine.h"
#include "siov_internal/virtio_blk.h"

#define QNUM	     16
#define PAGE	     4096ull
#define RING_GPA     (GPA_R2 + 0x3000)
#define HDR_GPA	     (GPA_R0 + 0x1000)
#define STATUS_GPA   (GPA_R0 + 0x7fff)	/* alone in its page */
#define DATA_GPA     (GPA_R0 + 0x10800) /* not page-aligned: 8 KiB here touch 3 pages */
#define CROSS_GPA    (GPA_R1 - 0x800)	/* 4 KiB here straddle R0 and R1 */
#define INDIRECT_GPA (GPA_R0 + 0x20000)
#define LOG_SPAN     (GPA_R2 + GUEST_REG_SIZE) /* the guest's memory ends here */
#define LOG_BYTES    (LOG_SPAN / PAGE / 8)
#define TIMEOUT_NS   (5ull * 1000 * 1000 * 1000)

/* ---- the log alone ---- */

static int memfd_of(size_t size)
{
	int fd = memfd_create("siov-test-log", MFD_CLOEXEC);

	assert_true(fd >= 0);
	assert_int_equal(ftruncate(fd, (off_t)size), 0);
	return fd;
}

static void log_refuses_hostile_sizes(void **state)
{
	struct siov_dirty_log *log = NULL;
	int fd = memfd_of(8192);

	assert_int_equal(siov_dirty_log_create(fd, 0, 0, &log), -EINVAL);
	assert_int_equal(siov_dirty_log_create(fd, 8193, 0, &log), -EINVAL); /* past the fd */
	assert_int_equal(siov_dirty_log_create(fd, 4096, 4097, &log), -EINVAL);
	assert_int_equal(siov_dirty_log_create(fd, 16, UINT64_MAX - 8, &log), -EINVAL); /* wraps */
	assert_int_equal(siov_dirty_log_create(fd, UINT64_MAX, 0, &log), -EINVAL);
	assert_int_equal(siov_dirty_log_create(fd, SIOV_DIRTY_LOG_MAX + 1, 0, &log), -EINVAL);
	assert_int_equal(siov_dirty_log_create(-1, 4096, 0, &log), -EBADF);
	assert_null(log);
	close(fd);
}

/* Bit page % 8 of byte page / 8, at the offset the front end gave (not page-aligned). */
static void log_layout_is_qemus(void **state)
{
	struct siov_dirty_log *log;
	int fd = memfd_of(8192);
	uint8_t *view = mmap(NULL, 8192, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);

	assert_true(view != MAP_FAILED);
	assert_int_equal(siov_dirty_log_create(fd, 64, 100, &log), 0);
	assert_int_equal(siov_dirty_log_span(log), 64 * 8 * PAGE);
	assert_int_equal(siov_dirty_log_mark(log, 5 * PAGE + 17, 1), 0);
	assert_int_equal(view[100], 1u << 5);
	assert_int_equal(siov_dirty_log_mark(log, 9 * PAGE - 1, 2), 0); /* pages 8 and 9 */
	assert_int_equal(view[100], 1u << 5);
	assert_int_equal(view[101], 1u << 0 | 1u << 1);
	assert_int_equal(view[99], 0);
	/* The last page is in, the next one out: nothing is marked then. */
	assert_int_equal(siov_dirty_log_mark(log, 64 * 8 * PAGE - 1, 1), 0);
	assert_int_equal(view[163], 0x80);
	assert_int_equal(siov_dirty_log_mark(log, 64 * 8 * PAGE - 1, 2), -ERANGE);
	assert_int_equal(siov_dirty_log_mark(log, UINT64_MAX - 10, 100), -ERANGE);
	assert_int_equal(siov_dirty_log_mark(log, 0, 0), 0);
	assert_int_equal(view[164], 0);
	assert_true(siov_dirty_log_owns(log, &view[0]) == false); /* our own view is not its map */
	siov_dirty_log_destroy(log);
	munmap(view, 8192);
	close(fd);
}

static void log_covers_table(void **state)
{
	struct siov_dirty_log *log;
	struct guest g;
	int fd = memfd_of(4096);

	assert_int_equal(guest_init(&g), 0);
	assert_int_equal(siov_dirty_log_create(fd, LOG_BYTES, 0, &log), 0);
	assert_true(siov_dirty_log_covers_table(log, &g.mt));
	siov_dirty_log_destroy(log);
	/* One byte short: the last 8 pages of R2 are not covered. */
	assert_int_equal(siov_dirty_log_create(fd, LOG_BYTES - 1, 0, &log), 0);
	assert_false(siov_dirty_log_covers_table(log, &g.mt));
	/* A pointer outside the table cannot be translated to a page. */
	assert_int_equal(siov_dirty_log_mark_host(log, &g.mt, &fd, 1), -EFAULT);
	siov_dirty_log_destroy(log);
	guest_fini(&g);
	close(fd);
}

/* ---- the data path ---- */

struct fx {
	struct guest g;
	struct siov_engines *engines;
	struct siov_backend *bd;
	struct siov_blk *blk;
	struct tq q;
	int kick_fd, call_fd, err_fd, log_fd;
	struct siov_dirty_log *log;
	uint8_t *bits; /* the test's view of the log */
	uint64_t used_gpa;
	bool attached;
};

static uint64_t now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

/* Starts the queue with the log on (log_size bytes of it) or off. */
static struct fx *fx_start(bool logging, uint64_t log_size, bool log_used)
{
	struct siov_engines_opts eo = {.count = 1, .poll_us = 100};
	struct siov_backend_conf bc = {.name = "ram0", .type = SIOV_BACKEND_RAM, .size = 1 << 20};
	struct siov_blk_conf conf = {.name = "v", .offset = 0, .size = 1 << 20, .queues = 1};
	struct fx *fx = calloc(1, sizeof(*fx));
	struct siov_vq *vq = &fx->q.vq;
	struct siov_err err;

	assert_non_null(fx);
	assert_int_equal(guest_init(&fx->g), 0);
	assert_int_equal(siov_engines_create(&eo, &fx->engines), 0);
	assert_int_equal(siov_backend_open(&bc, &fx->bd, &err), 0);
	conf.backend = fx->bd;
	assert_int_equal(siov_blk_create(&conf, &fx->blk), 0);
	assert_int_equal(tq_init(&fx->q, &fx->g, RING_GPA, QNUM), 0);
	fx->used_gpa = RING_GPA + ((uint64_t)((uint8_t *)fx->q.used - (uint8_t *)fx->q.desc));
	fx->log_fd = memfd_of(LOG_BYTES);
	fx->bits = mmap(NULL, LOG_BYTES, PROT_READ | PROT_WRITE, MAP_SHARED, fx->log_fd, 0);
	assert_true(fx->bits != MAP_FAILED);
	assert_int_equal(siov_dirty_log_create(fx->log_fd, log_size, 0, &fx->log), 0);
	fx->kick_fd = eventfd(0, EFD_CLOEXEC);
	fx->call_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	fx->err_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	vq->kick_fd = fx->kick_fd;
	vq->call_fd = fx->call_fd;
	vq->err_fd = fx->err_fd;
	vq->ops = siov_blk_dev_ops.vq_ops;
	vq->dev = fx->blk;
	vq->enabled = true;
	vq->log = logging ? fx->log : NULL;
	vq->log_used = log_used;
	vq->log_used_gpa = fx->used_gpa;
	assert_int_equal(siov_engine_attach(siov_engines_pick(fx->engines), vq), 0);
	fx->attached = true;
	return fx;
}

static int teardown(void **state)
{
	struct fx *fx = *state;

	if (!fx)
		return 0;
	if (fx->attached)
		siov_engine_detach(&fx->q.vq);
	siov_blk_destroy(fx->blk);
	siov_engines_destroy(fx->engines);
	siov_backend_close(fx->bd);
	siov_dirty_log_destroy(fx->log);
	munmap(fx->bits, LOG_BYTES);
	close(fx->log_fd);
	close(fx->kick_fd);
	close(fx->call_fd);
	close(fx->err_fd);
	guest_fini(&fx->g);
	free(fx);
	return 0;
}

/* Publishes head 0, kicks, waits for the used element; false if none came. */
static bool run(struct fx *fx)
{
	uint16_t idx = tq_used_idx(&fx->q);
	uint64_t deadline = now_ns() + TIMEOUT_NS;

	tq_publish(&fx->q, 0);
	assert_int_equal(eventfd_write(fx->kick_fd, 1), 0);
	while (tq_used_idx(&fx->q) == idx) {
		if (now_ns() > deadline || siov_vq_is_broken(&fx->q.vq))
			return false;
		usleep(100);
	}
	return true;
}

/* header -> data (len at gpa; device-writable for a read) -> status. */
static void chain(struct fx *fx, uint32_t type, uint64_t gpa, uint32_t len)
{
	struct virtio_blk_outhdr *h = guest_ptr(&fx->g, HDR_GPA);

	*h = (struct virtio_blk_outhdr){.type = type, .sector = 8};
	tq_desc(&fx->q, 0, HDR_GPA, sizeof(*h), VRING_DESC_F_NEXT, 1);
	tq_desc(&fx->q, 1, gpa, len,
		VRING_DESC_F_NEXT | (type == VIRTIO_BLK_T_IN ? VRING_DESC_F_WRITE : 0), 2);
	tq_desc(&fx->q, 2, STATUS_GPA, 1, VRING_DESC_F_WRITE, 0);
}

/* The pages the log must hold, as [gpa, gpa+len) ranges; every other bit must be clear. */
struct range {
	uint64_t gpa, len;
};

static bool in_ranges(uint64_t page, const struct range *r, unsigned n)
{
	unsigned i;

	for (i = 0; i < n; i++)
		if (r[i].len && page >= r[i].gpa / PAGE && page <= (r[i].gpa + r[i].len - 1) / PAGE)
			return true;
	return false;
}

static void assert_log_is(struct fx *fx, const struct range *r, unsigned n)
{
	uint64_t page;

	for (page = 0; page < LOG_SPAN / PAGE; page++) {
		bool set = fx->bits[page / 8] & (1u << (page % 8));
		bool want = in_ranges(page, r, n);
		if (set != want)
			fail_msg("page 0x%llx (gpa 0x%llx) is %s in the log",
				 (unsigned long long)page, (unsigned long long)(page * PAGE),
				 set ? "marked" : "not marked");
	}
}

/* What the used ring's publication of element i writes: the element and the index. */
static void used_ranges(struct fx *fx, unsigned i, struct range *r)
{
	r[0] = (struct range){fx->used_gpa + 4 + 8 * (i % QNUM), 8};
	r[1] = (struct range){fx->used_gpa + 2, 2};
}

static void read_marks_data_status_and_used(void **state)
{
	struct fx *fx = *state = fx_start(true, LOG_BYTES, true);
	struct range r[4] = {{DATA_GPA, 8192}, {STATUS_GPA, 1}};

	chain(fx, VIRTIO_BLK_T_IN, DATA_GPA, 8192);
	assert_true(run(fx));
	assert_int_equal(*(uint8_t *)guest_ptr(&fx->g, STATUS_GPA), VIRTIO_BLK_S_OK);
	used_ranges(fx, 0, &r[2]);
	/* Three data pages (the chain straddles two boundaries), the status page, the ring. */
	assert_log_is(fx, r, 4);
}

static void write_marks_only_status_and_used(void **state)
{
	struct fx *fx = *state = fx_start(true, LOG_BYTES, true);
	struct range r[3] = {{STATUS_GPA, 1}};

	chain(fx, VIRTIO_BLK_T_OUT, DATA_GPA, 8192);
	assert_true(run(fx));
	used_ranges(fx, 0, &r[1]);
	assert_log_is(fx, r, 3); /* the device only read the data: its pages stay clean */
}

static void read_across_regions_marks_both(void **state)
{
	struct fx *fx = *state = fx_start(true, LOG_BYTES, true);
	struct range r[4] = {{CROSS_GPA, 4096}, {STATUS_GPA, 1}};

	chain(fx, VIRTIO_BLK_T_IN, CROSS_GPA, 4096);
	assert_true(run(fx));
	used_ranges(fx, 0, &r[2]);
	assert_log_is(fx, r, 4);
}

/* Header, two data buffers (one per page) and the status byte in an indirect table. */
static void indirect_read_marks_its_buffers(void **state)
{
	struct fx *fx = *state = fx_start(true, LOG_BYTES, true);
	struct vring_desc *t = guest_ptr(&fx->g, INDIRECT_GPA);
	struct virtio_blk_outhdr *h = guest_ptr(&fx->g, HDR_GPA);
	const uint64_t d1 = GPA_R0 + 0x30000, d2 = GPA_R1 + 0x5000;
	struct range r[5] = {{d1, 512}, {d2, 512}, {STATUS_GPA, 1}};

	*h = (struct virtio_blk_outhdr){.type = VIRTIO_BLK_T_IN, .sector = 8};
	t[0] = (struct vring_desc){HDR_GPA, sizeof(*h), VRING_DESC_F_NEXT, 1};
	t[1] = (struct vring_desc){d1, 512, VRING_DESC_F_NEXT | VRING_DESC_F_WRITE, 2};
	t[2] = (struct vring_desc){d2, 512, VRING_DESC_F_NEXT | VRING_DESC_F_WRITE, 3};
	t[3] = (struct vring_desc){STATUS_GPA, 1, VRING_DESC_F_WRITE, 0};
	tq_desc(&fx->q, 0, INDIRECT_GPA, 4 * sizeof(*t), VRING_DESC_F_INDIRECT, 0);
	assert_true(run(fx));
	used_ranges(fx, 0, &r[3]);
	assert_log_is(fx, r, 5); /* the table itself was only read */
}

static void used_ring_unlogged_without_vring_flag(void **state)
{
	struct fx *fx = *state = fx_start(true, LOG_BYTES, false);
	struct range r[2] = {{DATA_GPA, 4096}, {STATUS_GPA, 1}};

	chain(fx, VIRTIO_BLK_T_IN, DATA_GPA, 4096);
	assert_true(run(fx));
	assert_log_is(fx, r, 2);
}

static void nothing_marked_when_off(void **state)
{
	struct fx *fx = *state = fx_start(false, LOG_BYTES, true);
	unsigned i;

	for (i = 0; i < 3; i++) {
		chain(fx, VIRTIO_BLK_T_IN, DATA_GPA, 8192);
		assert_true(run(fx));
	}
	assert_log_is(fx, NULL, 0);
}

/* A log that ends before the data: the queue breaks, no used element, siovd lives on. */
static void too_small_log_breaks_the_queue(void **state)
{
	struct fx *fx = *state = fx_start(true, (GPA_R0 + 0x8000) / PAGE / 8, true);

	assert_false(siov_vq_log_ok(&fx->q.vq));
	chain(fx, VIRTIO_BLK_T_IN, DATA_GPA, 4096);
	assert_false(run(fx));
	assert_true(siov_vq_is_broken(&fx->q.vq));
	assert_int_equal(tq_used_idx(&fx->q), 0);
	assert_non_null(strstr(fx->q.vq.broken_reason, "dirty log"));
}

/*
 * IN_ORDER, driven by hand (no engine): the younger of two reads completes
 * first.  Its data is marked at once, before any index could publish it; the
 * used ring only when the older one completes and the batch's one element
 * and the index are written.
 */
static void in_order_marks_data_at_once_and_used_ring_when_published(void **state)
{
	struct fx *fx = *state = fx_start(true, LOG_BYTES, true);
	struct siov_vq *vq = &fx->q.vq;
	struct siov_vq_chain a, b;
	struct range r[5] = {{DATA_GPA + 0x4000, 4096}, {STATUS_GPA, 1}};

	siov_engine_detach(vq);
	fx->attached = false;
	/* The engine's kick suppression wrote the used ring's flags: start from a clean log. */
	memset(fx->bits, 0, LOG_BYTES);
	vq->in_order = true;
	assert_int_equal(siov_vq_map_rings(vq), 0);
	for (uint16_t i = 0; i < 2; i++) {
		tq_desc(&fx->q, 3 * i, HDR_GPA, 16, VRING_DESC_F_NEXT, 3 * i + 1);
		tq_desc(&fx->q, 3 * i + 1, DATA_GPA + 0x4000 * i, 4096,
			VRING_DESC_F_NEXT | VRING_DESC_F_WRITE, 3 * i + 2);
		tq_desc(&fx->q, 3 * i + 2, STATUS_GPA, 1, VRING_DESC_F_WRITE, 0);
		tq_publish(&fx->q, 3 * i);
	}
	assert_int_equal(siov_vq_pop(vq, &a), 1);
	assert_int_equal(siov_vq_pop(vq, &b), 1);
	siov_vq_complete(vq, b.head, &b.iov[b.out_num], b.in_num, 4097);
	assert_int_equal(tq_used_idx(&fx->q), 0);
	assert_log_is(fx, r, 2);
	siov_vq_complete(vq, a.head, &a.iov[a.out_num], a.in_num, 4097);
	assert_int_equal(tq_used_idx(&fx->q), 2);
	r[2] = (struct range){DATA_GPA, 4096};
	used_ranges(fx, 0, &r[3]); /* one element, at the batch's first slot */
	assert_log_is(fx, r, 5);
	siov_vq_release(vq);
}

#define T(f) cmocka_unit_test_teardown(f, teardown)

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(log_refuses_hostile_sizes),
	    cmocka_unit_test(log_layout_is_qemus),
	    cmocka_unit_test(log_covers_table),
	    T(read_marks_data_status_and_used),
	    T(write_marks_only_status_and_used),
	    T(read_across_regions_marks_both),
	    T(indirect_read_marks_its_buffers),
	    T(used_ring_unlogged_without_vring_flag),
	    T(nothing_marked_when_off),
	    T(too_small_log_breaks_the_queue),
	    T(in_order_marks_data_at_once_and_used_ring_when_published),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
