/*
 * fuzz_packed: the packed-ring parser (lib/virtio/virtqueue_packed.c behind
 * siov_vq_pop/complete/notify) and its in-flight records.  Each input builds
 * a packed ring in the default three-region guest memory: the descriptor
 * ring, the driver's event suppression area, the device's start position and
 * wrap counter (SET_VRING_BASE), optionally a region of INFLIGHT records left
 * by a "previous back end" (all input bytes: recovered, then resubmitted),
 * and guest memory (indirect tables, buffers).  It then pops and completes
 * chains in an order the input chooses (out of order, several per
 * complete_many), going round the ring.
 *
 * Beyond ASan: every chain passes fuzz_check_chain(); no buffer id is popped
 * twice while in flight; no more ring slots are in flight than the ring
 * holds; and without records, once everything completed, the used position
 * and wrap counter equal the avail ones (every slot popped was given back).
 * With F_IN_ORDER (VIRTIO_F_IN_ORDER) the out-of-order completions are held
 * and published in batches; once all completed, every chain popped must have
 * been used through the order table.
 *
 * Input: struct hdr, the ring (num descriptors of 16 bytes), the driver event
 * area (4 bytes), [the records region if F_INFLIGHT: header + num * 24 + num
 * * 16 bytes], the schedule (one byte per step), then up to 64 KiB of guest
 * memory at R0 (GPA 0x10000).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fuzz_common.h"
#include "siov_internal/virtqueue.h"

enum {
	F_EVENT_IDX = 1 << 0,
	F_INFLIGHT = 1 << 1,
	F_WRAP = 1 << 2, /* the device starts with avail wrap counter 1 (a fresh ring) */
	F_IN_ORDER = 1 << 3,
};

struct hdr {
	uint8_t flags;
	uint8_t qsize; /* 1 + qsize % 64: packed rings need not be powers of two */
	uint16_t base; /* start position (taken modulo nothing: map_rings must refuse bad ones) */
	uint8_t steps;
} __attribute__((packed));

#define MAX_NUM 64
#define IFL_BYTES                                                                                  \
	(sizeof(struct siov_vu_inflight_packed) +                                                  \
	 MAX_NUM * (sizeof(struct siov_vu_inflight_pbuf) + sizeof(struct siov_vu_inflight_pdesc)))

static struct fuzz_guest g_guest;
static uint8_t g_ifl[IFL_BYTES] __attribute__((aligned(64)));
static struct siov_vq_chain g_chain;

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
	fuzz_guest_init(&g_guest);
	return 0;
}

struct run {
	struct siov_vq vq;
	uint16_t pending[MAX_NUM];
	unsigned npending;
	bool in_flight[MAX_NUM];
	uint64_t npopped;
};

static void popped(struct run *r)
{
	uint16_t id = g_chain.head;

	fuzz_check_chain(&r->vq, &g_chain, "fuzz_packed");
	if (r->in_flight[id] || r->npending >= r->vq.num) {
		fprintf(stderr, "fuzz_packed: buffer id %u popped twice, or %u in flight\n", id,
			r->npending);
		abort();
	}
	r->in_flight[id] = true;
	r->pending[r->npending++] = id;
	r->npopped++;
}

/* Completes up to n pending chains starting at index k, in one used update. */
static void complete(struct run *r, unsigned k, unsigned n)
{
	struct siov_vq_used_elem e[4];
	unsigned i;

	if (!r->npending)
		return;
	k %= r->npending;
	n = n % 4 + 1;
	if (n > r->npending - k)
		n = r->npending - k;
	for (i = 0; i < n; i++) {
		e[i] = (struct siov_vq_used_elem){r->pending[k + i], (uint32_t)i};
		r->in_flight[e[i].head] = false;
	}
	memmove(&r->pending[k], &r->pending[k + n], (r->npending - k - n) * sizeof(r->pending[0]));
	r->npending -= n;
	siov_vq_complete_many(&r->vq, e, n, NULL, 0);
	siov_vq_notify(&r->vq);
}

/* One step of the schedule: pop, complete some, or give one back. */
static void step(struct run *r, uint8_t op)
{
	int rc;

	switch (op & 3) {
	case 0:
	case 1:
		rc = siov_vq_pop(&r->vq, &g_chain);
		if (rc == 1)
			popped(r);
		break;
	case 2:
		complete(r, op >> 2, op >> 5);
		break;
	case 3:
		/* Back to the ring: what a device model does with a request it must hold. */
		if (siov_vq_pop(&r->vq, &g_chain) == 1) {
			fuzz_check_chain(&r->vq, &g_chain, "fuzz_packed");
			siov_vq_unpop(&r->vq);
		}
		break;
	}
}

static int setup(struct run *r, struct fz *f, const struct hdr *h)
{
	struct siov_vq *vq = &r->vq;
	uint64_t ring = g_guest.regions[2].uva;
	unsigned num = 1u + h->qsize % MAX_NUM, i;

	fuzz_guest_reset(&g_guest, NULL, 0);
	siov_vq_init(vq, 0);
	vq->num = (uint16_t)num;
	vq->packed = true;
	vq->desc_uva = ring;
	vq->avail_uva = ring + 16ull * MAX_NUM;
	vq->used_uva = vq->avail_uva + 4;
	vq->addr_set = true;
	vq->mem = &g_guest.mt;
	vq->dev_name = "fuzz";
	vq->event_idx = h->flags & F_EVENT_IDX;
	vq->in_order = h->flags & F_IN_ORDER;
	vq->last_avail_idx = h->base & 0x7fff;
	vq->avail_wrap = (h->base >> 15) || (h->flags & F_WRAP);
	if (siov_vq_map_rings(vq))
		return -1;
	for (i = 0; i < num; i++)
		fz_bytes(f, (uint8_t *)vq->pdesc + 16 * i, 16);
	fz_bytes(f, (void *)vq->driver_event, 4);
	if (h->flags & F_INFLIGHT) {
		size_t n = sizeof(struct siov_vu_inflight_packed) +
			   num * (sizeof(struct siov_vu_inflight_pbuf) +
				  sizeof(struct siov_vu_inflight_pdesc));
		fz_bytes(f, g_ifl, n);
		vq->inflight_packed = (void *)g_ifl;
		if (siov_vq_packed_recover(vq) < 0)
			return -1;
	}
	return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static struct run r;
	const uint8_t *sched;
	unsigned i, nsteps;
	struct fz f;
	struct hdr h;
	int broken = 0;

	memset(&r, 0, sizeof(r));
	r.vq.dev_broken = &broken;
	fz_init(&f, data, size);
	fz_bytes(&f, &h, sizeof(h));
	if (setup(&r, &f, &h))
		goto out;
	r.vq.dev_broken = &broken;
	nsteps = h.steps;
	sched = f.p;
	nsteps = nsteps < f.left ? nsteps : (unsigned)f.left;
	f.p += nsteps;
	f.left -= nsteps;
	if (f.left)
		memcpy(g_guest.base, f.p, f.left < FG_REG_SIZE ? f.left : FG_REG_SIZE);
	/* The schedule, then pop and complete until the ring is empty. */
	for (i = 0; i < nsteps && !siov_vq_is_broken(&r.vq); i++)
		step(&r, sched[i]);
	for (i = 0; i < 4u * r.vq.num + 8 && !siov_vq_is_broken(&r.vq); i++) {
		if (siov_vq_pop(&r.vq, &g_chain) != 1)
			break;
		popped(&r);
	}
	while (r.npending && !siov_vq_is_broken(&r.vq))
		complete(&r, 0, 3);
	if (!siov_vq_is_broken(&r.vq)) {
		siov_vq_disable_notify(&r.vq);
		(void)siov_vq_enable_notify(&r.vq);
		if (!r.vq.inflight_packed &&
		    (r.vq.used_idx != r.vq.last_avail_idx || r.vq.used_wrap != r.vq.avail_wrap)) {
			fprintf(stderr, "fuzz_packed: all done, yet used %u/%d != avail %u/%d\n",
				r.vq.used_idx, r.vq.used_wrap, r.vq.last_avail_idx,
				r.vq.avail_wrap);
			abort();
		}
		if (r.vq.in_order && SIOV_STAT_GET(r.vq.stats.order_used) != r.npopped) {
			fprintf(stderr, "fuzz_packed: in order, %llu popped but %llu used\n",
				(unsigned long long)r.npopped,
				(unsigned long long)SIOV_STAT_GET(r.vq.stats.order_used));
			abort();
		}
	}
out:
	free(r.vq.resubmit);
	siov_vq_release(&r.vq);
	return 0;
}
