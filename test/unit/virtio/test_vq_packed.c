/*
 * Unit tests for packed virtqueues (lib/virtio/virtqueue_packed.c) behind the
 * ring-neutral calls (siov_vq_pop, siov_vq_complete, siov_vq_notify ...), on a
 * packed ring built in a memfd the way a driver builds it: descriptors made
 * available with the driver's wrap counter, head flags written last.  Every
 * hostile ring must leave the queue and its VDEV broken with a reason naming
 * the fault, the error eventfd signalled, and no used entry written; the
 * in-flight records must let a new back end resume and resubmit exactly what
 * was in flight.
 */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/mman.h>
#include <unistd.h>

#include <cmocka.h>

#include "guest.h"

#define QNUM	   8
#define HDR_GPA	   (GPA_R0 + 0x1000)
#define DATA_GPA   (GPA_R0 + 0x2000)
#define STATUS_GPA (GPA_R0 + 0x3000)
#define TABLE_GPA  (GPA_R1 + 0x1000)
#define RING_GPA   GPA_R2
#define DRV_EV_GPA (GPA_R2 + 0x1000)
#define DEV_EV_GPA (GPA_R2 + 0x1010)
#define IFL_GPA	   (GPA_R2 + 0x2000)
#define F_AVAIL	   (1u << VRING_PACKED_DESC_F_AVAIL)
#define F_USED	   (1u << VRING_PACKED_DESC_F_USED)

/* The driver's side of a packed ring. */
struct drv {
	struct vring_packed_desc *ring;
	struct vring_packed_desc_event *drv_ev, *dev_ev;
	uint16_t next; /* next slot to make available */
	bool wrap;     /* driver's wrap counter */
	uint16_t used_pos;
	bool used_wrap;
};

struct fx {
	struct guest g;
	struct siov_vq vq;
	struct drv d;
	int dev_broken;
	int err_fd, call_fd;
	struct siov_vq_chain chain;
	bool in_order; /* VIRTIO_F_IN_ORDER negotiated (vq_setup) */
};

static void vq_setup(struct fx *fx, uint16_t num)
{
	siov_vq_init(&fx->vq, 0);
	fx->vq.num = num;
	fx->vq.packed = true;
	fx->vq.desc_uva = guest_uva(&fx->g, RING_GPA);
	fx->vq.avail_uva = guest_uva(&fx->g, DRV_EV_GPA);
	fx->vq.used_uva = guest_uva(&fx->g, DEV_EV_GPA);
	fx->vq.addr_set = true;
	fx->vq.mem = &fx->g.mt;
	fx->vq.dev_name = "test";
	fx->vq.avail_wrap = true; /* a fresh ring: both wrap counters start at 1 */
	fx->vq.err_fd = fx->err_fd;
	fx->vq.call_fd = fx->call_fd;
	fx->vq.dev_broken = &fx->dev_broken;
	fx->vq.in_order = fx->in_order;
}

static int setup(void **state)
{
	struct fx *fx = calloc(1, sizeof(*fx));

	if (!fx || guest_init(&fx->g))
		return -1;
	fx->err_fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
	fx->call_fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
	if (fx->err_fd < 0 || fx->call_fd < 0)
		return -1;
	fx->d.ring = guest_ptr(&fx->g, RING_GPA);
	fx->d.drv_ev = guest_ptr(&fx->g, DRV_EV_GPA);
	fx->d.dev_ev = guest_ptr(&fx->g, DEV_EV_GPA);
	fx->d.wrap = fx->d.used_wrap = true;
	vq_setup(fx, QNUM);
	if (siov_vq_map_rings(&fx->vq))
		return -1;
	*state = fx;
	return 0;
}

static int teardown(void **state)
{
	struct fx *fx = *state;

	siov_vq_release(&fx->vq);
	free(fx->vq.resubmit);
	close(fx->err_fd);
	close(fx->call_fd);
	guest_fini(&fx->g);
	free(fx);
	return 0;
}

static uint16_t avail_flags(bool wrap)
{
	return wrap ? F_AVAIL : F_USED;
}

struct buf {
	uint64_t addr;
	uint32_t len;
	uint16_t flags; /* WRITE, NEXT (added between), INDIRECT */
};

/* Makes a chain available at the driver's next slot, head flags last; returns its head slot. */
static uint16_t drv_add(struct fx *fx, const struct buf *b, unsigned n, uint16_t id)
{
	struct drv *d = &fx->d;
	uint16_t head = d->next, head_flags = 0;
	unsigned i;

	for (i = 0; i < n; i++) {
		struct vring_packed_desc *e = &d->ring[d->next];
		uint16_t f =
		    b[i].flags | (i + 1 < n ? VRING_DESC_F_NEXT : 0) | avail_flags(d->wrap);
		e->addr = b[i].addr;
		e->len = b[i].len;
		e->id = id;
		if (i)
			e->flags = f;
		else
			head_flags = f;
		if (++d->next == fx->vq.num) {
			d->next = 0;
			d->wrap = !d->wrap;
		}
	}
	__atomic_store_n(&d->ring[head].flags, head_flags, __ATOMIC_RELEASE);
	return head;
}

/* The virtio-blk shape: header, data, status byte. */
static uint16_t drv_add_blk(struct fx *fx, uint16_t id, bool data_wr)
{
	struct buf b[3] = {{HDR_GPA, 16, 0},
			   {DATA_GPA, 512, data_wr ? VRING_DESC_F_WRITE : 0},
			   {STATUS_GPA, 1, VRING_DESC_F_WRITE}};

	return drv_add(fx, b, 3, id);
}

/* The driver reads the next used entry: its id and len, and how many slots to skip. */
static bool drv_get_used(struct fx *fx, unsigned slots, uint16_t *id, uint32_t *len)
{
	struct drv *d = &fx->d;
	struct vring_packed_desc *e = &d->ring[d->used_pos];
	uint16_t f = __atomic_load_n(&e->flags, __ATOMIC_ACQUIRE);

	if (!!(f & F_AVAIL) != d->used_wrap || !!(f & F_USED) != d->used_wrap)
		return false;
	*id = e->id;
	*len = e->len;
	d->used_pos = (uint16_t)(d->used_pos + slots);
	if (d->used_pos >= fx->vq.num) {
		d->used_pos = (uint16_t)(d->used_pos - fx->vq.num);
		d->used_wrap = !d->used_wrap;
	}
	return true;
}

static uint64_t calls(struct fx *fx)
{
	eventfd_t v = 0;

	return eventfd_read(fx->call_fd, &v) == 0 ? v : 0;
}

static bool any_used(struct fx *fx)
{
	uint16_t i;

	for (i = 0; i < fx->vq.num; i++) {
		/* This ring never leaves its first lap here: used entries have both flags set. */
		if ((fx->d.ring[i].flags & (F_AVAIL | F_USED)) == (F_AVAIL | F_USED))
			return true;
	}
	return false;
}

static void assert_broken(struct fx *fx, int rc, const char *why)
{
	eventfd_t v = 0;

	assert_true(rc < 0);
	assert_true(siov_vq_is_broken(&fx->vq));
	if (!strstr(fx->vq.broken_reason, why))
		fail_msg("broken_reason '%s' does not mention '%s'", fx->vq.broken_reason, why);
	assert_int_equal(fx->dev_broken, 1);
	assert_int_equal(eventfd_read(fx->err_fd, &v), 0);
	assert_int_equal(v, 1);
	assert_false(any_used(fx));
	/* Sticky: nothing more is popped. */
	assert_true(siov_vq_pop(&fx->vq, &fx->chain) < 0);
}

/* ---- the data path ---- */

static void pk_pop_translates_chain_and_completes(void **state)
{
	struct fx *fx = *state;
	uint16_t id;
	uint32_t len;

	assert_int_equal(siov_vq_pop(&fx->vq, &fx->chain), 0);
	assert_false(siov_vq_has_work(&fx->vq));
	drv_add_blk(fx, 5, true);
	assert_true(siov_vq_has_work(&fx->vq));
	assert_int_equal(siov_vq_pop(&fx->vq, &fx->chain), 1);
	assert_int_equal(fx->chain.head, 5);
	assert_int_equal(fx->chain.out_num, 1);
	assert_int_equal(fx->chain.in_num, 2);
	assert_int_equal(fx->chain.out_len, 16);
	assert_int_equal(fx->chain.in_len, 513);
	assert_ptr_equal(fx->chain.iov[1].iov_base, siov_mem_gpa_to_ptr(&fx->g.mt, DATA_GPA, 512));
	assert_int_equal(siov_vq_pop(&fx->vq, &fx->chain), 0);
	assert_false(drv_get_used(fx, 3, &id, &len));
	siov_vq_complete(&fx->vq, 5, NULL, 0, 513);
	assert_true(drv_get_used(fx, 3, &id, &len));
	assert_int_equal(id, 5);
	assert_int_equal(len, 513);
	assert_int_equal(fx->vq.used_idx, 3);
}

/* Many laps of a small ring, completions out of order: every id comes back once. */
static void pk_wraps_around_with_out_of_order_completions(void **state)
{
	struct fx *fx = *state;
	unsigned round, got = 0;

	for (round = 0; round < 20; round++) {
		uint16_t a = (uint16_t)(round % 4), b = (uint16_t)(4 + round % 4), id[2];
		uint32_t len;
		drv_add_blk(fx, a, true); /* 3 slots */
		drv_add(fx, &(struct buf){DATA_GPA, 64, VRING_DESC_F_WRITE}, 1, b);
		assert_int_equal(siov_vq_pop(&fx->vq, &fx->chain), 1);
		assert_int_equal(fx->chain.head, a);
		assert_int_equal(siov_vq_pop(&fx->vq, &fx->chain), 1);
		assert_int_equal(fx->chain.head, b);
		assert_int_equal(fx->chain.in_len, 64);
		/* The second finishes first: its used entry takes the first slot. */
		siov_vq_complete(&fx->vq, b, NULL, 0, 64);
		siov_vq_complete(&fx->vq, a, NULL, 0, 1);
		assert_true(drv_get_used(fx, 1, &id[0], &len));
		assert_true(drv_get_used(fx, 3, &id[1], &len));
		assert_int_equal(id[0], b);
		assert_int_equal(id[1], a);
		got += 2;
	}
	assert_int_equal(got, 40);
	assert_false(siov_vq_is_broken(&fx->vq));
	/* 80 slots on a ring of 8: ten laps, back at slot 0 with the wrap counter where it began.
	 */
	assert_int_equal(fx->vq.last_avail_idx, 0);
	assert_true(fx->vq.avail_wrap);
	assert_int_equal(fx->vq.used_idx, 0);
}

static void pk_follows_indirect_table(void **state)
{
	struct fx *fx = *state;
	struct vring_packed_desc *t = guest_ptr(&fx->g, TABLE_GPA);

	t[0] = (struct vring_packed_desc){.addr = HDR_GPA, .len = 16};
	t[1] = (struct vring_packed_desc){.addr = DATA_GPA, .len = 4096};
	t[2] =
	    (struct vring_packed_desc){.addr = STATUS_GPA, .len = 1, .flags = VRING_DESC_F_WRITE};
	drv_add(fx, &(struct buf){TABLE_GPA, 3 * 16, VRING_DESC_F_INDIRECT}, 1, 2);
	assert_int_equal(siov_vq_pop(&fx->vq, &fx->chain), 1);
	assert_int_equal(fx->chain.head, 2);
	assert_int_equal(fx->chain.out_num, 2);
	assert_int_equal(fx->chain.out_len, 16 + 4096);
	assert_int_equal(fx->chain.in_len, 1);
	siov_vq_complete(&fx->vq, 2, NULL, 0, 1);
	/* An indirect chain takes one slot. */
	assert_int_equal(fx->vq.used_idx, 1);
}

static void pk_unpop_and_give_back_return_the_chain(void **state)
{
	struct fx *fx = *state;

	drv_add_blk(fx, 1, false);
	drv_add_blk(fx, 2, false);
	assert_int_equal(siov_vq_pop(&fx->vq, &fx->chain), 1);
	siov_vq_unpop(&fx->vq);
	assert_int_equal(siov_vq_pop(&fx->vq, &fx->chain), 1);
	assert_int_equal(fx->chain.head, 1);
	assert_int_equal(siov_vq_pop(&fx->vq, &fx->chain), 1);
	assert_int_equal(fx->chain.head, 2);
	siov_vq_give_back(&fx->vq, 2);
	assert_int_equal(fx->vq.last_avail_idx, 0);
	assert_int_equal(siov_vq_pop(&fx->vq, &fx->chain), 1);
	assert_int_equal(fx->chain.head, 1);
	assert_false(siov_vq_is_broken(&fx->vq));
}

/* complete_many: several entries appear together, the first one's flags last. */
static void pk_complete_many_publishes_all(void **state)
{
	struct fx *fx = *state;
	struct siov_vq_used_elem e[2] = {{3, 10}, {4, 20}};
	uint16_t id;
	uint32_t len;

	drv_add(fx, &(struct buf){DATA_GPA, 64, VRING_DESC_F_WRITE}, 1, 3);
	drv_add(fx, &(struct buf){DATA_GPA, 64, VRING_DESC_F_WRITE}, 1, 4);
	assert_int_equal(siov_vq_pop(&fx->vq, &fx->chain), 1);
	assert_int_equal(siov_vq_pop(&fx->vq, &fx->chain), 1);
	siov_vq_complete_many(&fx->vq, e, 2, NULL, 0);
	assert_true(drv_get_used(fx, 1, &id, &len));
	assert_int_equal(id, 3);
	assert_true(drv_get_used(fx, 1, &id, &len));
	assert_int_equal(len, 20);
}

/* ---- event suppression ---- */

static void pk_notify_follows_driver_event_flags(void **state)
{
	struct fx *fx = *state;

	fx->d.drv_ev->flags = VRING_PACKED_EVENT_FLAG_DISABLE;
	drv_add_blk(fx, 0, true);
	assert_int_equal(siov_vq_pop(&fx->vq, &fx->chain), 1);
	siov_vq_complete(&fx->vq, 0, NULL, 0, 1);
	siov_vq_notify(&fx->vq);
	assert_int_equal(calls(fx), 0);
	fx->d.drv_ev->flags = VRING_PACKED_EVENT_FLAG_ENABLE;
	drv_add_blk(fx, 0, true);
	assert_int_equal(siov_vq_pop(&fx->vq, &fx->chain), 1);
	siov_vq_complete(&fx->vq, 0, NULL, 0, 1);
	siov_vq_notify(&fx->vq);
	assert_int_equal(calls(fx), 1);
	/* Nothing new used: no call. */
	siov_vq_notify(&fx->vq);
	assert_int_equal(calls(fx), 0);
}

/* EVENT_IDX: the driver asks for the call when the entry at off (in lap wrap) is used. */
static void pk_notify_desc_event_across_the_wrap(void **state)
{
	struct fx *fx = *state;
	unsigned i;

	fx->vq.event_idx = true;
	fx->d.drv_ev->flags = VRING_PACKED_EVENT_FLAG_DESC;
	/* Ask for the event at slot 2 of the next lap (wrap 0); the ring starts at wrap 1. */
	fx->d.drv_ev->off_wrap = 2;
	for (i = 0; i < 9; i++) {
		drv_add(fx, &(struct buf){DATA_GPA, 64, VRING_DESC_F_WRITE}, 1, 0);
		assert_int_equal(siov_vq_pop(&fx->vq, &fx->chain), 1);
		siov_vq_complete(&fx->vq, 0, NULL, 0, 1);
		siov_vq_notify(&fx->vq);
		/* The first call is always sent; then none until slot 2 of lap 2 is used (i = 10).
		 */
		if (i == 0)
			assert_int_equal(calls(fx), 1);
		else
			assert_int_equal(calls(fx), 0);
	}
	drv_add(fx, &(struct buf){DATA_GPA, 64, VRING_DESC_F_WRITE}, 1, 0);
	assert_int_equal(siov_vq_pop(&fx->vq, &fx->chain), 1);
	siov_vq_complete(&fx->vq, 0, NULL, 0, 1);
	siov_vq_notify(&fx->vq);
	assert_int_equal(calls(fx), 0); /* slot 1 of lap 2 used */
	drv_add(fx, &(struct buf){DATA_GPA, 64, VRING_DESC_F_WRITE}, 1, 0);
	assert_int_equal(siov_vq_pop(&fx->vq, &fx->chain), 1);
	siov_vq_complete(&fx->vq, 0, NULL, 0, 1);
	siov_vq_notify(&fx->vq);
	assert_int_equal(calls(fx), 1); /* slot 2 of lap 2 used */
}

static void pk_kick_suppression_writes_device_event(void **state)
{
	struct fx *fx = *state;

	siov_vq_disable_notify(&fx->vq);
	assert_int_equal(fx->d.dev_ev->flags, VRING_PACKED_EVENT_FLAG_DISABLE);
	assert_false(siov_vq_enable_notify(&fx->vq));
	assert_int_equal(fx->d.dev_ev->flags, VRING_PACKED_EVENT_FLAG_ENABLE);
	drv_add_blk(fx, 0, true);
	siov_vq_disable_notify(&fx->vq);
	/* Work that raced the re-enable is reported. */
	assert_true(siov_vq_enable_notify(&fx->vq));
}

/* ---- hostile rings ---- */

static void pk_id_out_of_range_breaks_queue(void **state)
{
	struct fx *fx = *state;

	drv_add_blk(fx, QNUM, true);
	assert_broken(fx, siov_vq_pop(&fx->vq, &fx->chain), "buffer id 8 out of range");
}

static void pk_duplicate_id_breaks_queue(void **state)
{
	struct fx *fx = *state;

	drv_add_blk(fx, 3, true);
	drv_add_blk(fx, 3, true);
	assert_int_equal(siov_vq_pop(&fx->vq, &fx->chain), 1);
	assert_broken(fx, siov_vq_pop(&fx->vq, &fx->chain), "already in flight");
}

/* Every slot available with NEXT: the chain never ends. */
static void pk_endless_chain_breaks_queue(void **state)
{
	struct fx *fx = *state;
	uint16_t i;

	for (i = 0; i < QNUM; i++)
		fx->d.ring[i] = (struct vring_packed_desc){
		    .addr = DATA_GPA, .len = 8, .flags = VRING_DESC_F_NEXT | F_AVAIL};
	/* Slot 0 again after the wrap counter flipped would read as not available, so make the
	 * walk come back to it in the same lap: impossible, hence "not available" or "longer". */
	assert_true(siov_vq_pop(&fx->vq, &fx->chain) < 0);
	assert_true(strstr(fx->vq.broken_reason, "not available") ||
		    strstr(fx->vq.broken_reason, "longer than the ring"));
	assert_false(any_used(fx));
}

/* A chain whose later descriptors carry the other lap's flags: the driver lies about the wrap. */
static void pk_wrap_counter_lie_in_chain_breaks_queue(void **state)
{
	struct fx *fx = *state;

	fx->d.ring[1] = (struct vring_packed_desc){.addr = DATA_GPA, .len = 8, .flags = F_USED};
	__atomic_store_n(&fx->d.ring[0].flags, VRING_DESC_F_NEXT | F_AVAIL, __ATOMIC_RELEASE);
	fx->d.ring[0].addr = HDR_GPA;
	fx->d.ring[0].len = 16;
	assert_broken(fx, siov_vq_pop(&fx->vq, &fx->chain), "not available");
}

/* A descriptor with both flags equal to the wrap counter is a used one: never popped. */
static void pk_used_looking_descriptor_is_not_popped(void **state)
{
	struct fx *fx = *state;

	fx->d.ring[0] =
	    (struct vring_packed_desc){.addr = DATA_GPA, .len = 8, .flags = F_AVAIL | F_USED};
	assert_int_equal(siov_vq_pop(&fx->vq, &fx->chain), 0);
	assert_false(siov_vq_is_broken(&fx->vq));
}

/*
 * The driver offers slots of a chain still in flight again (a wrap counter
 * lie): a 7-slot chain is in flight, and a 3-slot one runs over its slots.
 */
static void pk_more_in_flight_than_ring_breaks_queue(void **state)
{
	struct fx *fx = *state;
	struct buf b[7];
	unsigned i;

	for (i = 0; i < 7; i++)
		b[i] = (struct buf){DATA_GPA, 8, VRING_DESC_F_WRITE};
	drv_add(fx, b, 7, 0);
	assert_int_equal(siov_vq_pop(&fx->vq, &fx->chain), 1);
	drv_add(fx, b, 3, 1);
	assert_broken(fx, siov_vq_pop(&fx->vq, &fx->chain), "more descriptors in flight");
}

/* One malformed chain per case, each on a fresh queue and ring. */
struct bad_chain {
	struct buf b[2];
	unsigned n;
	const char *why;
};

static const struct bad_chain bad_chains[] = {
    {{{DATA_GPA, 0xffffffffu, VRING_DESC_F_WRITE}}, 1, "outside the memory table"},
    {{{TABLE_GPA, 32, VRING_DESC_F_INDIRECT}, {DATA_GPA, 8, 0}},
     2,
     "indirect descriptor with NEXT set"},
    {{{HDR_GPA, 16, 0}, {TABLE_GPA, 32, VRING_DESC_F_INDIRECT}}, 2, "indirect descriptor inside"},
    {{{TABLE_GPA, 24, VRING_DESC_F_INDIRECT}}, 1, "bad indirect table length"},
    {{{GPA_GAP, 32, VRING_DESC_F_INDIRECT}}, 1, "indirect table 0x"},
    {{{STATUS_GPA, 1, VRING_DESC_F_WRITE}, {HDR_GPA, 16, 0}},
     2,
     "device-readable descriptor after"},
};

static void pk_malformed_chains_break_queue(void **state)
{
	struct fx *fx = *state;
	unsigned i;

	for (i = 0; i < SIOV_ARRAY_SIZE(bad_chains); i++) {
		siov_vq_release(&fx->vq);
		memset(fx->d.ring, 0, QNUM * sizeof(*fx->d.ring));
		fx->d.next = 0;
		fx->d.wrap = true;
		fx->dev_broken = 0;
		vq_setup(fx, QNUM);
		assert_int_equal(siov_vq_map_rings(&fx->vq), 0);
		drv_add(fx, bad_chains[i].b, bad_chains[i].n, 0);
		assert_broken(fx, siov_vq_pop(&fx->vq, &fx->chain), bad_chains[i].why);
	}
}

static void pk_base_past_ring_is_refused(void **state)
{
	struct fx *fx = *state;

	siov_vq_release(&fx->vq);
	vq_setup(fx, QNUM);
	fx->vq.last_avail_idx = QNUM;
	assert_int_equal(siov_vq_map_rings(&fx->vq), -ERANGE);
	fx->vq.last_avail_idx = 0;
	fx->vq.num = 6; /* packed rings need not be powers of two */
	assert_int_equal(siov_vq_map_rings(&fx->vq), 0);
}

/* ---- live migration: the one completion path marks what it wrote ---- */

static void pk_completion_marks_dirty_log(void **state)
{
	struct fx *fx = *state;
	int fd = memfd_create("siov-test-log", MFD_CLOEXEC);
	struct siov_dirty_log *log = NULL;

	assert_true(fd >= 0);
	assert_int_equal(ftruncate(fd, 4096), 0);
	assert_int_equal(siov_dirty_log_create(fd, 4096, 0, &log), 0);
	fx->vq.log = log;
	fx->vq.log_used = true;
	fx->vq.log_used_gpa = DEV_EV_GPA;
	assert_true(fx->vq.log_desc_gpa == RING_GPA); /* derived from the memory table */
	assert_true(siov_vq_log_ok(&fx->vq));
	drv_add_blk(fx, 4, true);
	assert_int_equal(siov_vq_pop(&fx->vq, &fx->chain), 1);
	assert_false(siov_dirty_log_test(log, RING_GPA));
	siov_vq_complete(&fx->vq, 4, &fx->chain.iov[fx->chain.out_num], fx->chain.in_num, 513);
	/* Data and status byte, and the used entry in the descriptor ring; not the header. */
	assert_true(siov_dirty_log_test(log, DATA_GPA));
	assert_true(siov_dirty_log_test(log, STATUS_GPA));
	assert_true(siov_dirty_log_test(log, RING_GPA));
	assert_false(siov_dirty_log_test(log, HDR_GPA));
	/* The device's event area is front-end memory too. */
	assert_false(siov_dirty_log_test(log, DEV_EV_GPA));
	siov_vq_disable_notify(&fx->vq);
	assert_true(siov_dirty_log_test(log, DEV_EV_GPA));
	assert_false(siov_vq_is_broken(&fx->vq));
	fx->vq.log = NULL;
	siov_dirty_log_destroy(log);
	close(fd);
}

/* ---- INFLIGHT_SHMFD records ---- */

static struct siov_vu_inflight_packed *attach_records(struct fx *fx)
{
	struct siov_vu_inflight_packed *h = guest_ptr(&fx->g, IFL_GPA);

	fx->vq.inflight_packed = h;
	assert_int_equal(siov_vq_packed_recover(&fx->vq), 0);
	assert_int_equal(h->magic, SIOV_VU_INFLIGHT_PACKED_MAGIC);
	return h;
}

/* A new back end on the same ring and records, as after a SIGKILL. */
static int restart(struct fx *fx, uint16_t stale_base)
{
	struct siov_vu_inflight_packed *h = fx->vq.inflight_packed;

	siov_vq_release(&fx->vq);
	free(fx->vq.resubmit);
	vq_setup(fx, QNUM);
	fx->vq.last_avail_idx = stale_base & 0x7fff;
	fx->vq.avail_wrap = stale_base >> 15;
	assert_int_equal(siov_vq_map_rings(&fx->vq), 0);
	fx->vq.inflight_packed = h;
	return siov_vq_packed_recover(&fx->vq);
}

static void pk_restart_resubmits_what_was_in_flight(void **state)
{
	struct fx *fx = *state;
	uint16_t id;
	uint32_t len;

	attach_records(fx);
	drv_add_blk(fx, 1, true);						   /* slots 0-2 */
	drv_add(fx, &(struct buf){DATA_GPA + 512, 100, VRING_DESC_F_WRITE}, 1, 2); /* slot 3 */
	drv_add_blk(fx, 3, false);						   /* slots 4-6 */
	assert_int_equal(siov_vq_pop(&fx->vq, &fx->chain), 1);
	assert_int_equal(siov_vq_pop(&fx->vq, &fx->chain), 1);
	assert_int_equal(siov_vq_pop(&fx->vq, &fx->chain), 1);
	siov_vq_complete(&fx->vq, 2, NULL, 0, 100); /* overwrites slot 0 with a used entry */
	assert_true(drv_get_used(fx, 1, &id, &len));
	/* The front end says "start at 0" (its stale base): the records know better. */
	assert_int_equal(restart(fx, 0x8000), 2);
	assert_int_equal(fx->vq.last_avail_idx, 7);
	assert_int_equal(fx->vq.used_idx, 1);
	assert_int_equal(siov_vq_pop(&fx->vq, &fx->chain), 1);
	assert_int_equal(fx->chain.head, 1); /* oldest first, rebuilt from the copies */
	assert_int_equal(fx->chain.in_len, 513);
	assert_int_equal(siov_vq_pop(&fx->vq, &fx->chain), 1);
	assert_int_equal(fx->chain.head, 3);
	assert_int_equal(fx->chain.out_len, 16 + 512);
	assert_int_equal(siov_vq_pop(&fx->vq, &fx->chain), 0);
	siov_vq_complete(&fx->vq, 3, NULL, 0, 1);
	siov_vq_complete(&fx->vq, 1, NULL, 0, 1);
	assert_true(drv_get_used(fx, 3, &id, &len));
	assert_int_equal(id, 3);
	assert_true(drv_get_used(fx, 3, &id, &len));
	assert_int_equal(id, 1);
	/* New requests continue after the last one popped. */
	drv_add(fx, &(struct buf){DATA_GPA, 8, VRING_DESC_F_WRITE}, 1, 4);
	assert_int_equal(siov_vq_pop(&fx->vq, &fx->chain), 1);
	assert_int_equal(fx->chain.head, 4);
	assert_false(siov_vq_is_broken(&fx->vq));
}

/*
 * Buffer 6 completes and siovd dies before the used position's store, with
 * its record cleared already (the order siovd publishes in) or, as an older
 * siovd could leave it, not: either way the restart finds the visible entry
 * ahead of the recorded position, moves past it and does not redo it.
 */
static void crash_mid_completion(struct fx *fx, bool record_cleared)
{
	struct siov_vu_inflight_packed *h;
	uint16_t used_before, id;
	uint32_t len;

	h = attach_records(fx);
	drv_add_blk(fx, 6, true);
	drv_add_blk(fx, 7, true);
	assert_int_equal(siov_vq_pop(&fx->vq, &fx->chain), 1);
	assert_int_equal(siov_vq_pop(&fx->vq, &fx->chain), 1);
	used_before = h->used;
	siov_vq_complete(&fx->vq, 6, NULL, 0, 1);
	assert_int_equal(((struct siov_vu_inflight_pbuf *)h->data)[6].inflight, 0);
	/* Undo what the completion did to the records after publishing: the crash. */
	h->used = used_before;
	if (!record_cleared)
		((struct siov_vu_inflight_pbuf *)h->data)[6].inflight = 1;
	assert_int_equal(restart(fx, 0x8000), 1);
	assert_int_equal(fx->vq.used_idx, 3);
	assert_int_equal(siov_vq_pop(&fx->vq, &fx->chain), 1);
	assert_int_equal(fx->chain.head, 7);
	assert_int_equal(siov_vq_pop(&fx->vq, &fx->chain), 0);
	siov_vq_complete(&fx->vq, 7, NULL, 0, 1);
	assert_true(drv_get_used(fx, 3, &id, &len));
	assert_int_equal(id, 6);
	assert_true(drv_get_used(fx, 3, &id, &len));
	assert_int_equal(id, 7);
	assert_false(siov_vq_is_broken(&fx->vq));
}

static void pk_restart_after_crash_mid_completion(void **state)
{
	crash_mid_completion(*state, false);
}

static void pk_restart_after_crash_before_position(void **state)
{
	crash_mid_completion(*state, true);
}

/*
 * With a runner, a round's used entries become visible together when it
 * notifies: before that the driver sees none and the records stay in flight
 * (a crash then resubmits them); after it, all of them, records cleared.
 */
static void pk_runner_publishes_at_notify(void **state)
{
	struct fx *fx = *state;
	struct siov_vu_inflight_packed *h = attach_records(fx);
	struct siov_vu_inflight_pbuf *b = (struct siov_vu_inflight_pbuf *)h->data;
	struct siov_vq_used_list used = {0};
	uint16_t id;
	uint32_t len;

	siov_vq_bind(&fx->vq, &(struct siov_vq_runner){.used = &used});
	drv_add_blk(fx, 1, true);
	drv_add_blk(fx, 2, true);
	assert_int_equal(siov_vq_pop(&fx->vq, &fx->chain), 1);
	assert_int_equal(siov_vq_pop(&fx->vq, &fx->chain), 1);
	siov_vq_complete(&fx->vq, 2, NULL, 0, 7);
	siov_vq_complete(&fx->vq, 1, NULL, 0, 9);
	assert_false(drv_get_used(fx, 3, &id, &len));
	assert_int_equal(b[1].inflight, 1);
	assert_int_equal(b[2].inflight, 1);
	assert_int_equal(h->used, 0x8000);
	assert_ptr_equal(siov_vq_used_list_pop(&used), &fx->vq);
	siov_vq_notify(&fx->vq);
	assert_true(drv_get_used(fx, 3, &id, &len));
	assert_int_equal(id, 2);
	assert_int_equal(len, 7);
	assert_true(drv_get_used(fx, 3, &id, &len));
	assert_int_equal(id, 1);
	assert_int_equal(b[1].inflight, 0);
	assert_int_equal(b[2].inflight, 0);
	assert_int_equal(h->used, 0x8000 | 6);
	/* A completion left when the runner lets go is published then. */
	drv_add_blk(fx, 3, true);
	assert_int_equal(siov_vq_pop(&fx->vq, &fx->chain), 1);
	siov_vq_complete(&fx->vq, 3, NULL, 0, 1);
	assert_false(drv_get_used(fx, 3, &id, &len));
	siov_vq_unbind(&fx->vq);
	assert_true(drv_get_used(fx, 3, &id, &len));
	assert_int_equal(id, 3);
	assert_false(siov_vq_is_broken(&fx->vq));
}

/* Records the front end scribbled on are dropped, never followed outside the pool. */
static void pk_corrupt_records_are_dropped(void **state)
{
	struct fx *fx = *state;
	struct siov_vu_inflight_packed *h = attach_records(fx);
	struct siov_vu_inflight_pbuf *b = (struct siov_vu_inflight_pbuf *)h->data;

	b[0] = (struct siov_vu_inflight_pbuf){.inflight = 1, .first = 999, .ndesc = 1, .slots = 1};
	b[1] =
	    (struct siov_vu_inflight_pbuf){.inflight = 1, .first = 0, .ndesc = 60000, .slots = 1};
	assert_int_equal(restart(fx, 0x8000), 0);
	assert_int_equal(siov_vq_pop(&fx->vq, &fx->chain), 0);
	assert_false(siov_vq_is_broken(&fx->vq));
}

/* ---- VIRTIO_F_IN_ORDER ---- */

static void in_order_on(struct fx *fx)
{
	fx->in_order = true;
	siov_vq_release(&fx->vq);
	vq_setup(fx, QNUM);
	assert_int_equal(siov_vq_map_rings(&fx->vq), 0);
}

static void add_pop(struct fx *fx, const struct buf *b, unsigned n, uint16_t id)
{
	drv_add(fx, b, n, id);
	assert_int_equal(siov_vq_pop(&fx->vq, &fx->chain), 1);
	assert_int_equal(fx->chain.head, id);
}

static const struct buf one64 = {DATA_GPA, 64, VRING_DESC_F_WRITE};

/* Completions youngest first: nothing shows, then one used entry for all three, at slot 0. */
static void pk_in_order_holds_and_batches(void **state)
{
	struct fx *fx = *state;
	uint16_t id;
	uint32_t len;

	in_order_on(fx);
	drv_add_blk(fx, 5, true); /* slots 0-2 */
	assert_int_equal(siov_vq_pop(&fx->vq, &fx->chain), 1);
	add_pop(fx, &one64, 1, 6); /* slot 3 */
	add_pop(fx, &one64, 1, 7); /* slot 4 */
	siov_vq_complete(&fx->vq, 7, NULL, 0, 64);
	siov_vq_complete(&fx->vq, 6, NULL, 0, 64);
	assert_false(any_used(fx));
	siov_vq_complete(&fx->vq, 5, NULL, 0, 513);
	/* The driver skips the batch's five slots; nothing else is used. */
	assert_true(drv_get_used(fx, 5, &id, &len));
	assert_int_equal(id, 7);
	assert_int_equal(len, 64);
	assert_false(drv_get_used(fx, 1, &id, &len));
	assert_int_equal(fx->vq.used_idx, 5);
	assert_int_equal(fx->vq.stats.order_entries, 1);
	assert_int_equal(fx->vq.stats.order_held, 2);
}

/* A buffer not wholly written ends its batch with its own entry. */
static void pk_in_order_short_buffer_ends_a_batch(void **state)
{
	struct fx *fx = *state;
	uint16_t id;
	uint32_t len;

	in_order_on(fx);
	add_pop(fx, &one64, 1, 1);
	add_pop(fx, &one64, 1, 2);
	add_pop(fx, &one64, 1, 3);
	siov_vq_complete(&fx->vq, 3, NULL, 0, 64);
	siov_vq_complete(&fx->vq, 2, NULL, 0, 10);
	siov_vq_complete(&fx->vq, 1, NULL, 0, 64);
	assert_true(drv_get_used(fx, 2, &id, &len));
	assert_int_equal(id, 2);
	assert_int_equal(len, 10);
	assert_true(drv_get_used(fx, 1, &id, &len));
	assert_int_equal(id, 3);
	assert_int_equal(len, 64);
}

/* Many laps of a ring of 8 in batches of three: each round one entry, wrap counters right. */
static void pk_in_order_wraps_around_in_batches(void **state)
{
	struct fx *fx = *state;
	uint16_t id;
	uint32_t len;

	in_order_on(fx);
	for (unsigned round = 0; round < 40; round++) {
		for (uint16_t k = 0; k < 3; k++)
			add_pop(fx, &one64, 1, k);
		for (int k = 2; k >= 0; k--)
			siov_vq_complete(&fx->vq, (uint16_t)k, NULL, 0, 64);
		assert_true(drv_get_used(fx, 3, &id, &len));
		assert_int_equal(id, 2);
		assert_false(drv_get_used(fx, 1, &id, &len));
	}
	/* 120 slots: fifteen laps, at slot 0 in the lap whose wrap counter is 0. */
	assert_int_equal(fx->vq.used_idx, 0);
	assert_false(fx->vq.used_wrap);
	assert_false(siov_vq_is_broken(&fx->vq));
}

/*
 * Buffers 1 and 2 (3 slots each) complete as one batch while 3 (slot 6) stays
 * in flight, then siovd dies before the batch's records were cleared: with
 * the used position rolled back too (the crash came before it moved), or
 * not.  Either way the restart resubmits 3 alone and resumes after the batch.
 */
static void crash_after_batch(struct fx *fx, bool position_rolled_back)
{
	struct siov_vu_inflight_packed *h;
	struct siov_vu_inflight_pbuf *b;
	uint16_t used_before;

	in_order_on(fx);
	h = attach_records(fx);
	b = (struct siov_vu_inflight_pbuf *)h->data;
	drv_add_blk(fx, 1, true); /* slots 0-2 */
	drv_add_blk(fx, 2, true); /* slots 3-5 */
	assert_int_equal(siov_vq_pop(&fx->vq, &fx->chain), 1);
	assert_int_equal(siov_vq_pop(&fx->vq, &fx->chain), 1);
	add_pop(fx, &one64, 1, 3); /* slot 6 */
	used_before = h->used;
	siov_vq_complete(&fx->vq, 2, NULL, 0, 513);
	assert_int_equal(b[2].inflight, 1); /* done, but 1 is older */
	siov_vq_complete(&fx->vq, 1, NULL, 0, 513);
	assert_int_equal(b[1].inflight + b[2].inflight, 0);
	/* Undo what the completion did to the records after publishing: the crash. */
	if (position_rolled_back)
		h->used = used_before;
	b[1].inflight = b[2].inflight = 1;
	assert_int_equal(restart(fx, 0x8000), 1);
	assert_int_equal(fx->vq.used_idx, 6);
	assert_int_equal(siov_vq_pop(&fx->vq, &fx->chain), 1);
	assert_int_equal(fx->chain.head, 3);
	assert_int_equal(siov_vq_pop(&fx->vq, &fx->chain), 0);
	assert_false(siov_vq_is_broken(&fx->vq));
}

/* The batch's used entry is in the ring, the records and the position were not updated. */
static void pk_in_order_restart_after_crash_mid_batch(void **state)
{
	crash_after_batch(*state, true);
}

/* The position moved past the batch, its records were not cleared: none is redone. */
static void pk_in_order_restart_after_crash_past_batch(void **state)
{
	crash_after_batch(*state, false);
}

#define T(f) cmocka_unit_test_setup_teardown(f, setup, teardown)

int main(void)
{
	const struct CMUnitTest tests[] = {
	    T(pk_pop_translates_chain_and_completes),
	    T(pk_wraps_around_with_out_of_order_completions),
	    T(pk_follows_indirect_table),
	    T(pk_unpop_and_give_back_return_the_chain),
	    T(pk_complete_many_publishes_all),
	    T(pk_notify_follows_driver_event_flags),
	    T(pk_notify_desc_event_across_the_wrap),
	    T(pk_kick_suppression_writes_device_event),
	    T(pk_id_out_of_range_breaks_queue),
	    T(pk_duplicate_id_breaks_queue),
	    T(pk_endless_chain_breaks_queue),
	    T(pk_wrap_counter_lie_in_chain_breaks_queue),
	    T(pk_used_looking_descriptor_is_not_popped),
	    T(pk_more_in_flight_than_ring_breaks_queue),
	    T(pk_malformed_chains_break_queue),
	    T(pk_base_past_ring_is_refused),
	    T(pk_completion_marks_dirty_log),
	    T(pk_restart_resubmits_what_was_in_flight),
	    T(pk_restart_after_crash_mid_completion),
	    T(pk_restart_after_crash_before_position),
	    T(pk_corrupt_records_are_dropped),
	    T(pk_runner_publishes_at_notify),
	    T(pk_in_order_holds_and_batches),
	    T(pk_in_order_short_buffer_ends_a_batch),
	    T(pk_in_order_wraps_around_in_batches),
	    T(pk_in_order_restart_after_crash_mid_batch),
	    T(pk_in_order_restart_after_crash_past_batch),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
