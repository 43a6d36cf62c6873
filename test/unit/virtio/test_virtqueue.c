/*
 * Unit tests for the split virtqueue (lib/virtio/virtqueue.c), on rings
 * built in a memfd the way a driver would build them (guest.c; the memory
 * table under them has its own tests in test/unit/mem).  The chain walker's input is hostile: for
 * every malformed chain the tests check what the control plane and the driver
 * would see: the queue and its VDEV are broken with a reason that names the
 * fault, the error eventfd fires, nothing more is popped, and the used ring
 * is never written.
 */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include <cmocka.h>

#include "guest.h"

#define QNUM 16
/* Request buffers: a header, data and a status byte in R0, a table in R1. */
#define HDR_GPA	   (GPA_R0 + 0x1000)
#define DATA_GPA   (GPA_R0 + 0x2000)
#define STATUS_GPA (GPA_R0 + 0x3000)
#define TABLE_GPA  (GPA_R1 + 0x1000)
#define TABLE2_GPA (GPA_R1 + 0x3000)
#define CROSS_GPA  (GPA_R1 - 0x100) /* 0x100 bytes before R0's end */
#define USED_BYTES (4 + 8 * QNUM + 2)

struct fx {
	struct guest g;
	struct tq q;
	int dev_broken;
	int err_fd, call_fd;
	struct siov_vq_chain chain;
};

static int setup(void **state)
{
	struct fx *fx = calloc(1, sizeof(*fx));

	if (!fx || guest_init(&fx->g))
		return -1;
	if (tq_init(&fx->q, &fx->g, GPA_R2, QNUM))
		return -1;
	fx->err_fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
	fx->call_fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
	if (fx->err_fd < 0 || fx->call_fd < 0)
		return -1;
	fx->q.vq.err_fd = fx->err_fd;
	fx->q.vq.call_fd = fx->call_fd;
	fx->q.vq.dev_broken = &fx->dev_broken;
	*state = fx;
	return 0;
}

static int teardown(void **state)
{
	struct fx *fx = *state;

	siov_vq_release(&fx->q.vq);
	close(fx->err_fd);
	close(fx->call_fd);
	guest_fini(&fx->g);
	free(fx);
	return 0;
}

/* How many times the call eventfd was signalled since the last look. */
static uint64_t calls(struct fx *fx)
{
	eventfd_t v = 0;

	return eventfd_read(fx->call_fd, &v) == 0 ? v : 0;
}

/* The usual virtio-blk shape at descs head..head+2: header, data, status byte. */
static void put_blk_chain(struct tq *q, uint16_t head, uint64_t data, uint32_t len, bool data_wr)
{
	tq_desc(q, head, HDR_GPA, 16, VRING_DESC_F_NEXT, head + 1);
	tq_desc(q, head + 1, data, len, VRING_DESC_F_NEXT | (data_wr ? VRING_DESC_F_WRITE : 0),
		head + 2);
	tq_desc(q, head + 2, STATUS_GPA, 1, VRING_DESC_F_WRITE, 0);
}

static void assert_used_untouched(struct fx *fx)
{
	static const uint8_t zero[USED_BYTES];

	assert_memory_equal(fx->q.used, zero, USED_BYTES);
	assert_int_equal(fx->q.vq.used_idx, 0);
}

/*
 * What a hostile chain must leave behind: rc < 0, a sticky broken state with
 * a reason naming the fault, shared with the VDEV and signalled on the error
 * eventfd, and an untouched used ring even when a good chain follows.
 */
static void assert_broken(struct fx *fx, int rc, const char *why)
{
	eventfd_t v = 0;

	assert_true(rc < 0);
	assert_true(siov_vq_is_broken(&fx->q.vq));
	if (!strstr(fx->q.vq.broken_reason, why))
		fail_msg("broken_reason '%s' does not mention '%s'", fx->q.vq.broken_reason, why);
	assert_int_equal(fx->dev_broken, 1);
	assert_int_equal(eventfd_read(fx->err_fd, &v), 0);
	assert_int_equal(v, 1);
	put_blk_chain(&fx->q, 12, DATA_GPA, 512, true);
	tq_publish(&fx->q, 12);
	assert_true(siov_vq_pop(&fx->q.vq, &fx->chain) < 0);
	assert_used_untouched(fx);
}

/* ---- ring mapping ---- */

static void vq_map_rings_refuses_unmapped_ring(void **state)
{
	struct fx *fx = *state;
	uint64_t end = fx->g.regions[2].uva + GUEST_REG_SIZE;

	fx->q.vq.used_uva = end - 8; /* the used ring would run past R2 */
	assert_int_equal(siov_vq_map_rings(&fx->q.vq), -EFAULT);
	fx->q.vq.used_uva = 0x1000;
	assert_int_equal(siov_vq_map_rings(&fx->q.vq), -EFAULT);
}

/*
 * The split-ring layout requires desc 16-, avail 2- and used 4-byte aligned
 * (virtio 1.1, 2.6).  siovd reads avail->idx and writes used->idx with atomic
 * operations, which on a misaligned address are undefined behaviour (and a
 * bus-locking split access on x86 when they straddle a cache line), so a
 * front end giving such addresses must be refused when the rings are mapped.
 */
static void vq_map_rings_refuses_misaligned_rings(void **state)
{
	struct fx *fx = *state;
	struct siov_vq *vq = &fx->q.vq;
	uint64_t desc = vq->desc_uva, avail = vq->avail_uva, used = vq->used_uva;

	vq->used_uva = used + 2;
	assert_int_not_equal(siov_vq_map_rings(vq), 0);
	vq->used_uva = used;
	vq->avail_uva = avail + 1;
	assert_int_not_equal(siov_vq_map_rings(vq), 0);
	vq->avail_uva = avail;
	vq->desc_uva = desc + 8;
	assert_int_not_equal(siov_vq_map_rings(vq), 0);
}

/* ---- the chain walker ---- */

static void vq_pop_splits_three_descriptor_chain(void **state)
{
	struct fx *fx = *state;
	struct siov_vq_chain *c = &fx->chain;

	memcpy(guest_ptr(&fx->g, HDR_GPA), "0123456789abcdef", 16);
	put_blk_chain(&fx->q, 0, DATA_GPA, 4096, true);
	tq_publish(&fx->q, 0);
	assert_int_equal(siov_vq_pop(&fx->q.vq, c), 1);
	assert_int_equal(c->head, 0);
	assert_int_equal(c->out_num, 1);
	assert_int_equal(c->in_num, 2);
	assert_int_equal(c->out_len, 16);
	assert_int_equal(c->in_len, 4097);
	assert_memory_equal(c->iov[0].iov_base, "0123456789abcdef", 16);
	assert_int_equal(c->iov[1].iov_len, 4096);
	assert_int_equal(c->iov[2].iov_len, 1);
	/* Writing the status through the iovec reaches the driver's byte. */
	*(uint8_t *)c->iov[2].iov_base = 0x42;
	assert_int_equal(*(uint8_t *)guest_ptr(&fx->g, STATUS_GPA), 0x42);
	assert_int_equal(siov_vq_pop(&fx->q.vq, c), 0);
	assert_false(siov_vq_is_broken(&fx->q.vq));
}

static void vq_pop_splits_buffer_across_regions(void **state)
{
	struct fx *fx = *state;
	struct siov_vq_chain *c = &fx->chain;

	put_blk_chain(&fx->q, 3, CROSS_GPA, 0x200, false);
	tq_publish(&fx->q, 3);
	assert_int_equal(siov_vq_pop(&fx->q.vq, c), 1);
	assert_int_equal(c->head, 3);
	assert_int_equal(c->out_num, 3); /* header + the data buffer in two pieces */
	assert_int_equal(c->in_num, 1);
	assert_int_equal(c->out_len, 16 + 0x200);
	assert_int_equal(c->iov[1].iov_len + c->iov[2].iov_len, 0x200);
}

static void vq_pop_empty_ring_returns_zero(void **state)
{
	struct fx *fx = *state;

	assert_int_equal(siov_vq_pop(&fx->q.vq, &fx->chain), 0);
	assert_false(siov_vq_has_work(&fx->q.vq));
	assert_false(siov_vq_is_broken(&fx->q.vq));
}

static void vq_pop_follows_indirect_table(void **state)
{
	struct fx *fx = *state;
	struct vring_desc *t = guest_ptr(&fx->g, TABLE_GPA);
	struct siov_vq_chain *c = &fx->chain;

	t[0] = (struct vring_desc){HDR_GPA, 16, VRING_DESC_F_NEXT, 1};
	t[1] = (struct vring_desc){DATA_GPA, 1024, VRING_DESC_F_NEXT | VRING_DESC_F_WRITE, 2};
	t[2] = (struct vring_desc){STATUS_GPA, 1, VRING_DESC_F_WRITE, 0};
	tq_desc(&fx->q, 5, TABLE_GPA, 3 * 16, VRING_DESC_F_INDIRECT, 0);
	tq_publish(&fx->q, 5);
	assert_int_equal(siov_vq_pop(&fx->q.vq, c), 1);
	assert_int_equal(c->head, 5);
	assert_int_equal(c->out_num, 1);
	assert_int_equal(c->in_num, 2);
	assert_int_equal(c->out_len, 16);
	assert_int_equal(c->in_len, 1025);
}

/* A table of n one-byte readable descriptors at gpa, chained in order. */
static void put_long_table(struct fx *fx, uint64_t gpa, unsigned n)
{
	struct vring_desc *t = guest_ptr(&fx->g, gpa);
	unsigned i;

	for (i = 0; i < n; i++)
		t[i] = (struct vring_desc){DATA_GPA + i, 1, i + 1 < n ? VRING_DESC_F_NEXT : 0,
					   (uint16_t)(i + 1)};
}

/* The loop guard must not refuse the longest honest chain: all num descriptors. */
static void vq_pop_accepts_chain_of_ring_size(void **state)
{
	struct fx *fx = *state;
	uint16_t i;

	for (i = 0; i < QNUM; i++)
		tq_desc(&fx->q, i, DATA_GPA + i, 1, i + 1 < QNUM ? VRING_DESC_F_NEXT : 0, i + 1);
	tq_publish(&fx->q, 0);
	assert_int_equal(siov_vq_pop(&fx->q.vq, &fx->chain), 1);
	assert_int_equal(fx->chain.out_num, QNUM);
	assert_false(siov_vq_is_broken(&fx->q.vq));
}

static void vq_pop_accepts_max_iov_segments(void **state)
{
	struct fx *fx = *state;

	put_long_table(fx, TABLE_GPA, SIOV_VQ_MAX_IOV);
	tq_desc(&fx->q, 0, TABLE_GPA, SIOV_VQ_MAX_IOV * 16, VRING_DESC_F_INDIRECT, 0);
	tq_publish(&fx->q, 0);
	assert_int_equal(siov_vq_pop(&fx->q.vq, &fx->chain), 1);
	assert_int_equal(fx->chain.out_num, SIOV_VQ_MAX_IOV);
}

/* ---- hostile chains ---- */

static void vq_descriptor_loop_breaks_queue(void **state)
{
	struct fx *fx = *state;

	tq_desc(&fx->q, 0, HDR_GPA, 16, VRING_DESC_F_NEXT, 1);
	tq_desc(&fx->q, 1, DATA_GPA, 16, VRING_DESC_F_NEXT, 0);
	tq_publish(&fx->q, 0);
	assert_broken(fx, siov_vq_pop(&fx->q.vq, &fx->chain), "loop");
}

static void vq_indirect_loop_breaks_queue(void **state)
{
	struct fx *fx = *state;
	struct vring_desc *t = guest_ptr(&fx->g, TABLE_GPA);

	t[0] = (struct vring_desc){HDR_GPA, 16, VRING_DESC_F_NEXT, 1};
	t[1] = (struct vring_desc){DATA_GPA, 16, VRING_DESC_F_NEXT, 1}; /* points at itself */
	tq_desc(&fx->q, 0, TABLE_GPA, 2 * 16, VRING_DESC_F_INDIRECT, 0);
	tq_publish(&fx->q, 0);
	assert_broken(fx, siov_vq_pop(&fx->q.vq, &fx->chain), "loop");
}

static void vq_head_out_of_range_breaks_queue(void **state)
{
	struct fx *fx = *state;

	tq_publish(&fx->q, QNUM);
	assert_broken(fx, siov_vq_pop(&fx->q.vq, &fx->chain), "out of range");
}

static void vq_next_out_of_range_breaks_queue(void **state)
{
	struct fx *fx = *state;

	tq_desc(&fx->q, 0, HDR_GPA, 16, VRING_DESC_F_NEXT, QNUM);
	tq_publish(&fx->q, 0);
	assert_broken(fx, siov_vq_pop(&fx->q.vq, &fx->chain), "next index");
}

static void vq_avail_idx_jump_breaks_queue(void **state)
{
	struct fx *fx = *state;

	put_blk_chain(&fx->q, 0, DATA_GPA, 512, true);
	/* More entries claimed than the ring can hold. */
	__atomic_store_n(&fx->q.avail->idx, QNUM + 1, __ATOMIC_RELEASE);
	fx->q.avail_idx = QNUM + 1;
	assert_broken(fx, siov_vq_pop(&fx->q.vq, &fx->chain), "ahead");
}

static void vq_buffer_outside_memtable_breaks_queue(void **state)
{
	struct fx *fx = *state;

	put_blk_chain(&fx->q, 0, GPA_GAP, 512, true);
	tq_publish(&fx->q, 0);
	assert_broken(fx, siov_vq_pop(&fx->q.vq, &fx->chain), "outside the memory table");
}

static void vq_buffer_running_out_of_region_breaks_queue(void **state)
{
	struct fx *fx = *state;

	/* Starts in R1 and runs into the gap behind it. */
	put_blk_chain(&fx->q, 0, GPA_R1 + GUEST_REG_SIZE - 256, 512, true);
	tq_publish(&fx->q, 0);
	assert_broken(fx, siov_vq_pop(&fx->q.vq, &fx->chain), "outside the memory table");
}

static void vq_nested_indirect_breaks_queue(void **state)
{
	struct fx *fx = *state;
	struct vring_desc *t = guest_ptr(&fx->g, TABLE_GPA);

	t[0] = (struct vring_desc){TABLE2_GPA, 16, VRING_DESC_F_INDIRECT, 0};
	put_long_table(fx, TABLE2_GPA, 1);
	tq_desc(&fx->q, 0, TABLE_GPA, 16, VRING_DESC_F_INDIRECT, 0);
	tq_publish(&fx->q, 0);
	assert_broken(fx, siov_vq_pop(&fx->q.vq, &fx->chain), "nested indirect");
}

static void vq_indirect_with_next_breaks_queue(void **state)
{
	struct fx *fx = *state;

	put_long_table(fx, TABLE_GPA, 2);
	tq_desc(&fx->q, 0, TABLE_GPA, 2 * 16, VRING_DESC_F_INDIRECT | VRING_DESC_F_NEXT, 1);
	tq_desc(&fx->q, 1, STATUS_GPA, 1, VRING_DESC_F_WRITE, 0);
	tq_publish(&fx->q, 0);
	assert_broken(fx, siov_vq_pop(&fx->q.vq, &fx->chain), "NEXT");
}

static void vq_indirect_odd_length_breaks_queue(void **state)
{
	struct fx *fx = *state;

	put_long_table(fx, TABLE_GPA, 2);
	tq_desc(&fx->q, 0, TABLE_GPA, 24, VRING_DESC_F_INDIRECT, 0);
	tq_publish(&fx->q, 0);
	assert_broken(fx, siov_vq_pop(&fx->q.vq, &fx->chain), "indirect table length");
}

static void vq_indirect_zero_length_breaks_queue(void **state)
{
	struct fx *fx = *state;

	tq_desc(&fx->q, 0, TABLE_GPA, 0, VRING_DESC_F_INDIRECT, 0);
	tq_publish(&fx->q, 0);
	assert_broken(fx, siov_vq_pop(&fx->q.vq, &fx->chain), "indirect table length");
}

static void vq_indirect_table_outside_memtable_breaks_queue(void **state)
{
	struct fx *fx = *state;

	tq_desc(&fx->q, 0, GPA_GAP, 3 * 16, VRING_DESC_F_INDIRECT, 0);
	tq_publish(&fx->q, 0);
	assert_broken(fx, siov_vq_pop(&fx->q.vq, &fx->chain), "outside the memory table");
}

static void vq_readable_after_writable_breaks_queue(void **state)
{
	struct fx *fx = *state;

	tq_desc(&fx->q, 0, DATA_GPA, 512, VRING_DESC_F_WRITE | VRING_DESC_F_NEXT, 1);
	tq_desc(&fx->q, 1, HDR_GPA, 16, 0, 0);
	tq_publish(&fx->q, 0);
	assert_broken(fx, siov_vq_pop(&fx->q.vq, &fx->chain), "device-readable descriptor after");
}

static void vq_too_many_segments_breaks_queue(void **state)
{
	struct fx *fx = *state;

	put_long_table(fx, TABLE_GPA, SIOV_VQ_MAX_IOV + 1);
	tq_desc(&fx->q, 0, TABLE_GPA, (SIOV_VQ_MAX_IOV + 1) * 16, VRING_DESC_F_INDIRECT, 0);
	tq_publish(&fx->q, 0);
	assert_broken(fx, siov_vq_pop(&fx->q.vq, &fx->chain), "segments");
}

/* ---- used ring and notifications ---- */

static void vq_push_writes_used_element_and_idx(void **state)
{
	struct fx *fx = *state;

	put_blk_chain(&fx->q, 4, DATA_GPA, 512, true);
	tq_publish(&fx->q, 4);
	assert_int_equal(siov_vq_pop(&fx->q.vq, &fx->chain), 1);
	siov_vq_complete(&fx->q.vq, fx->chain.head, NULL, 0, 513);
	assert_int_equal(tq_used_idx(&fx->q), 1);
	assert_int_equal(fx->q.used->ring[0].id, 4);
	assert_int_equal(fx->q.used->ring[0].len, 513);
}

/* Completions reach the runner through its used list, each queue once per round. */
static void vq_complete_puts_queue_on_runner_list_once(void **state)
{
	struct fx *fx = *state;
	struct siov_vq *vq = &fx->q.vq;
	struct siov_vq_used_list used = {0};
	uint64_t clock = 1234;
	struct siov_vq_runner run = {.clock = &clock, .used = &used};

	siov_vq_bind(vq, &run);
	assert_int_equal(siov_vq_now(vq), 1234);
	assert_null(siov_vq_used_list_pop(&used));
	siov_vq_complete(vq, 0, NULL, 0, 1);
	siov_vq_complete(vq, 1, NULL, 0, 1);
	assert_ptr_equal(siov_vq_used_list_pop(&used), vq);
	assert_null(siov_vq_used_list_pop(&used));
	/* Taken off: the next completion puts it back. */
	siov_vq_complete(vq, 2, NULL, 0, 1);
	assert_ptr_equal(siov_vq_used_list_pop(&used), vq);
	siov_vq_unbind(vq);
	/* No runner: the completion still reaches the ring, and nobody is told. */
	siov_vq_complete(vq, 3, NULL, 0, 1);
	assert_null(siov_vq_used_list_pop(&used));
	assert_int_equal(tq_used_idx(&fx->q), 4);
	assert_int_not_equal(siov_vq_now(vq), 1234);
}

/*
 * Bound to a runner, a split ring writes used elements at once but stores
 * used->idx once, when the runner notifies (or lets go): the driver's poll of
 * the index misses once per round, not once per request.
 */
static void vq_runner_publishes_used_idx_once_per_notify(void **state)
{
	struct fx *fx = *state;
	struct siov_vq *vq = &fx->q.vq;
	struct siov_vq_used_list used = {0};
	struct siov_vq_runner run = {.used = &used};

	siov_vq_bind(vq, &run);
	siov_vq_complete(vq, 5, NULL, 0, 1);
	siov_vq_complete(vq, 6, NULL, 0, 2);
	siov_vq_complete(vq, 7, NULL, 0, 3);
	assert_int_equal(tq_used_idx(&fx->q), 0);
	assert_int_equal(fx->q.used->ring[2].id, 7);
	assert_int_equal(fx->q.used->ring[2].len, 3);
	assert_ptr_equal(siov_vq_used_list_pop(&used), vq);
	siov_vq_notify(vq);
	assert_int_equal(tq_used_idx(&fx->q), 3);
	assert_int_equal(vq->stats.used_writes, 1);
	assert_int_equal(calls(fx), 1);
	assert_int_equal(vq->stats.calls, 1);
	/* Letting go publishes what the runner left. */
	siov_vq_complete(vq, 8, NULL, 0, 1);
	siov_vq_unbind(vq);
	assert_int_equal(tq_used_idx(&fx->q), 4);
	assert_int_equal(vq->stats.used_writes, 2);
}

/* With in-flight records the index is stored at once: a record is cleared only behind it. */
static void vq_runner_with_inflight_publishes_at_once(void **state)
{
	struct fx *fx = *state;
	struct siov_vq *vq = &fx->q.vq;
	struct siov_vq_used_list used = {0};
	struct siov_vq_runner run = {.used = &used};
	struct siov_vu_inflight_queue *iq = calloc(1, sizeof(*iq) + QNUM * sizeof(iq->desc[0]));

	assert_non_null(iq);
	iq->desc_num = QNUM;
	vq->inflight = iq;
	siov_vq_bind(vq, &run);
	put_blk_chain(&fx->q, 2, DATA_GPA, 512, true);
	tq_publish(&fx->q, 2);
	assert_int_equal(siov_vq_pop(vq, &fx->chain), 1);
	siov_vq_complete(vq, 2, NULL, 0, 1);
	assert_int_equal(tq_used_idx(&fx->q), 1);
	assert_int_equal(iq->desc[2].inflight, 0);
	assert_int_equal(iq->used_idx, 1);
	siov_vq_unbind(vq);
	vq->inflight = NULL;
	free(iq);
}

/* avail->idx, the line the driver writes per request, is read once per batch. */
static void vq_pop_reads_avail_idx_once_per_batch(void **state)
{
	struct fx *fx = *state;
	struct siov_vq *vq = &fx->q.vq;
	uint16_t h;

	for (h = 0; h < 9; h += 3) {
		put_blk_chain(&fx->q, h, DATA_GPA, 512, true);
		tq_publish(&fx->q, h);
	}
	assert_true(siov_vq_has_work(vq));
	for (h = 0; h < 9; h += 3) {
		assert_int_equal(siov_vq_pop(vq, &fx->chain), 1);
		assert_int_equal(fx->chain.head, h);
	}
	assert_int_equal(vq->stats.avail_reads, 1);
	/* Used up: the next pop looks again, and finds nothing. */
	assert_int_equal(siov_vq_pop(vq, &fx->chain), 0);
	assert_int_equal(vq->stats.avail_reads, 2);
	/* Given back, they come again without a look at the index. */
	siov_vq_give_back(vq, 2);
	assert_int_equal(siov_vq_pop(vq, &fx->chain), 1);
	assert_int_equal(fx->chain.head, 3);
	assert_int_equal(vq->stats.avail_reads, 2);
	/* A new request after the count ran out is seen. */
	assert_int_equal(siov_vq_pop(vq, &fx->chain), 1);
	put_blk_chain(&fx->q, 12, DATA_GPA, 512, true);
	tq_publish(&fx->q, 12);
	assert_int_equal(siov_vq_pop(vq, &fx->chain), 1);
	assert_int_equal(fx->chain.head, 12);
}

static void vq_event_idx_signals_only_when_used_event_passed(void **state)
{
	struct fx *fx = *state;
	struct siov_vq *vq = &fx->q.vq;
	uint16_t *used_event = &fx->q.avail->ring[QNUM];

	vq->event_idx = true;
	/* Nothing signalled yet: the first completion is always signalled. */
	siov_vq_complete(vq, 0, NULL, 0, 1);
	siov_vq_notify(vq);
	assert_int_equal(calls(fx), 1);
	/* "Interrupt me when the entry at used index 3 is written." */
	*used_event = 3;
	siov_vq_complete(vq, 0, NULL, 0, 1);
	siov_vq_notify(vq);
	siov_vq_complete(vq, 0, NULL, 0, 1);
	siov_vq_notify(vq);
	assert_int_equal(calls(fx), 0);
	siov_vq_complete(vq, 0, NULL, 0, 1);
	siov_vq_notify(vq);
	assert_int_equal(calls(fx), 1);
	/* No new used entry, no signal. */
	siov_vq_notify(vq);
	assert_int_equal(calls(fx), 0);
}

static void vq_no_interrupt_flag_suppresses_signal(void **state)
{
	struct fx *fx = *state;
	struct siov_vq *vq = &fx->q.vq;

	fx->q.avail->flags = VRING_AVAIL_F_NO_INTERRUPT;
	siov_vq_complete(vq, 0, NULL, 0, 1);
	siov_vq_notify(vq);
	assert_int_equal(calls(fx), 0);
	fx->q.avail->flags = 0;
	siov_vq_complete(vq, 0, NULL, 0, 1);
	siov_vq_notify(vq);
	assert_int_equal(calls(fx), 1);
}

static void vq_enable_notify_writes_avail_event_and_sees_race(void **state)
{
	struct fx *fx = *state;
	struct siov_vq *vq = &fx->q.vq;
	uint16_t *avail_event = (uint16_t *)&fx->q.used->ring[QNUM];

	vq->event_idx = true;
	put_blk_chain(&fx->q, 0, DATA_GPA, 512, true);
	tq_publish(&fx->q, 0);
	assert_int_equal(siov_vq_pop(vq, &fx->chain), 1);
	assert_false(siov_vq_enable_notify(vq));
	assert_int_equal(*avail_event, 1);
	/* A request published behind our back must not be slept through. */
	tq_publish(&fx->q, 0);
	assert_true(siov_vq_enable_notify(vq));
}

static void vq_no_notify_flag_follows_enable_disable(void **state)
{
	struct fx *fx = *state;
	struct siov_vq *vq = &fx->q.vq;

	siov_vq_disable_notify(vq);
	assert_true(fx->q.used->flags & VRING_USED_F_NO_NOTIFY);
	assert_false(siov_vq_enable_notify(vq));
	assert_false(fx->q.used->flags & VRING_USED_F_NO_NOTIFY);
}

/* ---- INFLIGHT_SHMFD records ---- */

static void vq_inflight_records_follow_pop_and_push(void **state)
{
	struct fx *fx = *state;
	struct siov_vu_inflight_queue *iq = guest_ptr(&fx->g, GPA_R2 + 0x10000);

	memset(iq, 0, sizeof(*iq) + QNUM * sizeof(iq->desc[0]));
	iq->desc_num = QNUM;
	fx->q.vq.inflight = iq;
	put_blk_chain(&fx->q, 2, DATA_GPA, 512, true);
	tq_publish(&fx->q, 2);
	assert_int_equal(siov_vq_pop(&fx->q.vq, &fx->chain), 1);
	assert_int_equal(iq->desc[2].inflight, 1);
	assert_true(iq->desc[2].counter > 0);
	assert_int_equal(iq->desc[0].inflight, 0);
	siov_vq_complete(&fx->q.vq, 2, NULL, 0, 1);
	assert_int_equal(iq->desc[2].inflight, 0);
	assert_int_equal(iq->used_idx, 1);
	assert_int_equal(iq->last_batch_head, 2);
}

/* ---- VIRTIO_F_IN_ORDER ---- */

static void in_order_on(struct fx *fx)
{
	fx->q.vq.in_order = true;
	assert_int_equal(siov_vq_map_rings(&fx->q.vq), 0);
}

/* Pops n blk reads at heads first, first + 3, ... (513 device-writable bytes each). */
static void pop_reads(struct fx *fx, uint16_t first, unsigned n)
{
	for (unsigned i = 0; i < n; i++) {
		uint16_t head = (uint16_t)(first + 3 * i);
		put_blk_chain(&fx->q, head, DATA_GPA, 512, true);
		tq_publish(&fx->q, head);
		assert_int_equal(siov_vq_pop(&fx->q.vq, &fx->chain), 1);
		assert_int_equal(fx->chain.head, head);
	}
}

static void assert_elem(struct fx *fx, uint16_t idx, uint32_t id, uint32_t len)
{
	struct vring_used_elem *e = &fx->q.used->ring[idx % QNUM];

	assert_int_equal(e->id, id);
	assert_int_equal(e->len, len);
}

/* The youngest finishes first: nothing shows until the oldest is done, then one entry. */
static void vq_in_order_holds_early_completions_and_batches(void **state)
{
	struct fx *fx = *state;

	in_order_on(fx);
	pop_reads(fx, 0, 4);
	siov_vq_complete(&fx->q.vq, 6, NULL, 0, 513);
	siov_vq_complete(&fx->q.vq, 3, NULL, 0, 513);
	siov_vq_notify(&fx->q.vq);
	assert_int_equal(tq_used_idx(&fx->q), 0);
	assert_int_equal(calls(fx), 0);
	assert_used_untouched(fx);
	siov_vq_complete(&fx->q.vq, 0, NULL, 0, 513);
	assert_int_equal(tq_used_idx(&fx->q), 3);
	/* One entry where the batch's first buffer's would go, with the id of its last. */
	assert_elem(fx, 0, 6, 513);
	assert_elem(fx, 1, 0, 0);
	assert_elem(fx, 2, 0, 0);
	siov_vq_notify(&fx->q.vq);
	assert_int_equal(calls(fx), 1);
	siov_vq_complete(&fx->q.vq, 9, NULL, 0, 513);
	assert_int_equal(tq_used_idx(&fx->q), 4);
	assert_elem(fx, 3, 9, 513);
	assert_int_equal(fx->q.vq.stats.order_held, 2);
	assert_int_equal(fx->q.vq.stats.order_entries, 2);
	assert_int_equal(fx->q.vq.stats.order_used, 4);
	assert_false(siov_vq_is_broken(&fx->q.vq));
}

/* A buffer the device did not fill (an error: only the status byte) gets an entry of its own. */
static void vq_in_order_short_buffer_ends_a_batch(void **state)
{
	struct fx *fx = *state;

	in_order_on(fx);
	pop_reads(fx, 0, 3);
	siov_vq_complete(&fx->q.vq, 6, NULL, 0, 513);
	siov_vq_complete(&fx->q.vq, 3, NULL, 0, 1);
	siov_vq_complete(&fx->q.vq, 0, NULL, 0, 513);
	assert_int_equal(tq_used_idx(&fx->q), 3);
	assert_elem(fx, 0, 3, 1); /* buffers 0 and 3: 0 was filled, so it is left out */
	assert_elem(fx, 1, 0, 0);
	assert_elem(fx, 2, 6, 513);
}

/*
 * Many rounds across the 16-bit used index's wrap, each completed youngest
 * first: every round is one entry, at the round's first slot, naming its last.
 */
static void vq_in_order_batches_across_index_wrap(void **state)
{
	struct fx *fx = *state;
	uint16_t base = 65530;

	fx->q.vq.last_avail_idx = fx->q.vq.used_idx = base;
	fx->q.avail_idx = base;
	fx->q.avail->idx = base;
	fx->q.used->idx = base;
	in_order_on(fx);
	for (unsigned round = 0; round < 40; round++) {
		uint16_t first = (uint16_t)(base + 4 * round);
		pop_reads(fx, 0, 4);
		for (int i = 3; i >= 0; i--)
			siov_vq_complete(&fx->q.vq, (uint16_t)(3 * i), NULL, 0, 513);
		assert_int_equal(tq_used_idx(&fx->q), (uint16_t)(first + 4));
		assert_elem(fx, first, 9, 513);
	}
	assert_int_equal(fx->q.vq.stats.order_entries, 40);
	assert_false(siov_vq_is_broken(&fx->q.vq));
}

/* A driver that negotiated IN_ORDER and makes a head available twice breaks the queue. */
static void vq_in_order_reused_head_breaks_queue(void **state)
{
	struct fx *fx = *state;

	in_order_on(fx);
	put_blk_chain(&fx->q, 0, DATA_GPA, 512, true);
	tq_publish(&fx->q, 0);
	tq_publish(&fx->q, 0);
	assert_int_equal(siov_vq_pop(&fx->q.vq, &fx->chain), 1);
	assert_broken(fx, siov_vq_pop(&fx->q.vq, &fx->chain), "in flight");
}

/* What QoS and the net model give back leaves the order, and comes back in its place. */
static void vq_in_order_unpop_and_give_back_keep_order(void **state)
{
	struct fx *fx = *state;

	in_order_on(fx);
	pop_reads(fx, 0, 3);
	siov_vq_unpop(&fx->q.vq);
	assert_int_equal(siov_vq_pop(&fx->q.vq, &fx->chain), 1);
	assert_int_equal(fx->chain.head, 6);
	siov_vq_give_back(&fx->q.vq, 2);
	assert_int_equal(siov_vq_pop(&fx->q.vq, &fx->chain), 1);
	assert_int_equal(fx->chain.head, 3);
	siov_vq_complete(&fx->q.vq, 3, NULL, 0, 513);
	assert_int_equal(tq_used_idx(&fx->q), 0);
	siov_vq_complete(&fx->q.vq, 0, NULL, 0, 513);
	assert_int_equal(tq_used_idx(&fx->q), 2);
	assert_elem(fx, 0, 3, 513);
	assert_int_equal(siov_vq_pop(&fx->q.vq, &fx->chain), 1);
	assert_int_equal(fx->chain.head, 6);
	assert_false(siov_vq_is_broken(&fx->q.vq));
}

/*
 * Records stay set until the buffer is used (a restart resubmits what the
 * driver never saw); after a crash between a batch's index and its records,
 * the catch-up clears the whole batch and nothing younger.
 */
static void vq_in_order_records_follow_batches(void **state)
{
	struct fx *fx = *state;
	struct siov_vu_inflight_queue *iq = guest_ptr(&fx->g, GPA_R2 + 0x10000);

	memset(iq, 0, sizeof(*iq) + QNUM * sizeof(iq->desc[0]));
	iq->desc_num = QNUM;
	fx->q.vq.inflight = iq;
	in_order_on(fx);
	pop_reads(fx, 0, 5);
	siov_vq_complete(&fx->q.vq, 6, NULL, 0, 513);
	siov_vq_complete(&fx->q.vq, 0, NULL, 0, 513);
	assert_int_equal(iq->desc[0].inflight, 0);
	assert_int_equal(iq->desc[6].inflight, 1); /* done, but waiting for 3 */
	siov_vq_complete(&fx->q.vq, 3, NULL, 0, 513);
	assert_int_equal(iq->desc[3].inflight + iq->desc[6].inflight, 0);
	assert_int_equal(iq->used_idx, 3);
	assert_int_equal(iq->last_batch_head, 6);
	pop_reads(fx, 0, 1); /* head 0 again: younger than 9 and 12 */
	siov_vq_complete(&fx->q.vq, 12, NULL, 0, 513);
	siov_vq_complete(&fx->q.vq, 9, NULL, 0, 513);
	assert_int_equal(tq_used_idx(&fx->q), 5);
	/* The crash: the index covered 9 and 12, their records were not cleared yet. */
	iq->desc[9].inflight = iq->desc[12].inflight = 1;
	iq->used_idx = 3;
	siov_vq_inflight_catch_up(&fx->q.vq);
	assert_int_equal(iq->desc[9].inflight + iq->desc[12].inflight, 0);
	assert_int_equal(iq->desc[0].inflight, 1);
}

#define T(f) cmocka_unit_test_setup_teardown(f, setup, teardown)

int main(void)
{
	const struct CMUnitTest tests[] = {
	    T(vq_map_rings_refuses_unmapped_ring),
	    T(vq_map_rings_refuses_misaligned_rings),
	    T(vq_pop_splits_three_descriptor_chain),
	    T(vq_pop_splits_buffer_across_regions),
	    T(vq_pop_empty_ring_returns_zero),
	    T(vq_pop_follows_indirect_table),
	    T(vq_pop_accepts_chain_of_ring_size),
	    T(vq_pop_accepts_max_iov_segments),
	    T(vq_descriptor_loop_breaks_queue),
	    T(vq_indirect_loop_breaks_queue),
	    T(vq_head_out_of_range_breaks_queue),
	    T(vq_next_out_of_range_breaks_queue),
	    T(vq_avail_idx_jump_breaks_queue),
	    T(vq_buffer_outside_memtable_breaks_queue),
	    T(vq_buffer_running_out_of_region_breaks_queue),
	    T(vq_nested_indirect_breaks_queue),
	    T(vq_indirect_with_next_breaks_queue),
	    T(vq_indirect_odd_length_breaks_queue),
	    T(vq_indirect_zero_length_breaks_queue),
	    T(vq_indirect_table_outside_memtable_breaks_queue),
	    T(vq_readable_after_writable_breaks_queue),
	    T(vq_too_many_segments_breaks_queue),
	    T(vq_push_writes_used_element_and_idx),
	    T(vq_complete_puts_queue_on_runner_list_once),
	    T(vq_runner_publishes_used_idx_once_per_notify),
	    T(vq_runner_with_inflight_publishes_at_once),
	    T(vq_pop_reads_avail_idx_once_per_batch),
	    T(vq_event_idx_signals_only_when_used_event_passed),
	    T(vq_no_interrupt_flag_suppresses_signal),
	    T(vq_enable_notify_writes_avail_event_and_sees_race),
	    T(vq_no_notify_flag_follows_enable_disable),
	    T(vq_inflight_records_follow_pop_and_push),
	    T(vq_in_order_holds_early_completions_and_batches),
	    T(vq_in_order_short_buffer_ends_a_batch),
	    T(vq_in_order_batches_across_index_wrap),
	    T(vq_in_order_reused_head_breaks_queue),
	    T(vq_in_order_unpop_and_give_back_keep_order),
	    T(vq_in_order_records_follow_batches),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
