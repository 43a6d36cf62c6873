/*
 * Packed virtqueues (VIRTIO_F_RING_PACKED, virtio 1.1+ section 2.8): one ring
 * of descriptors that the driver makes available and the device overwrites
 * with used entries, each side keeping a wrap counter that flips when its
 * position passes the end of the ring.  A descriptor is available when its
 * AVAIL flag equals the device's avail wrap counter and its USED flag does
 * not; a used entry has both flags equal to the used wrap counter.
 *
 * Everything in the ring is hostile.  Per buffer id this file remembers how
 * many ring slots the chain took (what its used entry gives back) and where it
 * was popped, so that a duplicate id, a chain longer than the ring, a
 * descriptor of a chain that is not available (a driver lying about the wrap
 * counter), or more descriptors in flight than the ring holds break the queue
 * with a reason instead of corrupting the ring.  With INFLIGHT_SHMFD each
 * popped chain is also copied into the front end's in-flight region
 * (struct siov_vu_inflight_packed), because the ring slots it came from are
 * overwritten by other requests' used entries while it is in flight.
 */
#include <errno.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>

#include "siov_internal/log.h"
#include "siov_internal/virtqueue.h"
#include "vq_impl.h"

#define F_AVAIL	      ((uint16_t)(1u << VRING_PACKED_DESC_F_AVAIL))
#define F_USED	      ((uint16_t)(1u << VRING_PACKED_DESC_F_USED))
#define NOT_IN_FLIGHT 0

struct siov_vq_packed {
	unsigned outstanding; /* ring slots popped and not yet used */
	unsigned npops;	      /* chains popped from the ring and still in hist */
	uint16_t hist_next;   /* where hist takes the next id */
	unsigned nfree;	      /* free entries of the in-flight pool */
	/*
	 * Used entries written but not yet visible: the first one's flags wait for
	 * vq_packed_publish() (the runner's notify), so the driver sees a round's
	 * completions at once instead of one cache-line handover per request.
	 */
	bool pend;
	uint16_t pend_pos, pend_flags; /* the first unpublished entry and its flags */
	unsigned npend;		       /* in-flight records to clear when published */
	uint16_t *slots;    /* per buffer id: ring slots of its chain; 0: not in flight */
	uint16_t *pos;	    /* per buffer id: position | wrap << 15 where it was popped */
	uint16_t *hist;	    /* buffer ids in pop order, circular (for give_back) */
	uint16_t *free;	    /* free in-flight pool entries, a stack */
	uint16_t *pend_ids; /* buffer ids of the unpublished entries (INFLIGHT only) */
	uint16_t data[];
};

/* AVAIL equal to the wrap counter and USED not: one compare. */
static bool desc_avail(uint16_t flags, bool wrap)
{
	return (flags & (F_AVAIL | F_USED)) == (wrap ? F_AVAIL : F_USED);
}

static void advance(const struct siov_vq *vq, uint16_t *pos, bool *wrap, unsigned n)
{
	unsigned p = *pos + n;

	if (p >= vq->num) {
		p -= vq->num;
		*wrap = !*wrap;
	}
	*pos = (uint16_t)p;
}

static struct siov_vu_inflight_pbuf *ip_buf(const struct siov_vq *vq, uint16_t id)
{
	return (struct siov_vu_inflight_pbuf *)vq->inflight_packed->data + id;
}

static struct siov_vu_inflight_pdesc *ip_pool(const struct siov_vq *vq, uint16_t k)
{
	uint8_t *p =
	    vq->inflight_packed->data + (size_t)vq->num * sizeof(struct siov_vu_inflight_pbuf);

	return (struct siov_vu_inflight_pdesc *)p + k;
}

int vq_packed_map(struct siov_vq *vq)
{
	uint64_t n = vq->num;
	struct siov_vq_packed *pk;

	if (vq->desc_uva % 16 || vq->avail_uva % 4 || vq->used_uva % 4)
		return -EINVAL;
	/* The base came from SET_VRING_BASE: a position past the ring is the front end's error. */
	if (vq->last_avail_idx >= n)
		return -ERANGE;
	vq->pdesc = siov_mem_uva_to_ptr(vq->mem, vq->desc_uva, 16 * n);
	vq->driver_event = siov_mem_uva_to_ptr(vq->mem, vq->avail_uva, 4);
	vq->device_event = siov_mem_uva_to_ptr(vq->mem, vq->used_uva, 4);
	if (!vq->pdesc || !vq->driver_event || !vq->device_event)
		return -EFAULT;
	if ((uintptr_t)vq->pdesc % 16 || (uintptr_t)vq->driver_event % 4 ||
	    (uintptr_t)vq->device_event % 4)
		return -EINVAL;
	if (siov_mem_uva_to_gpa(vq->mem, vq->desc_uva, 16 * n, &vq->log_desc_gpa))
		vq->log_desc_gpa = 0;
	pk = calloc(1, sizeof(*pk) + 5 * n * sizeof(uint16_t));
	if (!pk)
		return -ENOMEM;
	pk->slots = pk->data;
	pk->pos = pk->slots + n;
	pk->hist = pk->pos + n;
	pk->free = pk->hist + n;
	pk->pend_ids = pk->free + n;
	free(vq->pk);
	vq->pk = pk;
	/* A ring handed over is drained (GET_VRING_BASE waits for that): used = avail. */
	vq->used_idx = vq->last_avail_idx;
	vq->used_wrap = vq->avail_wrap;
	return 0;
}

/* ---- in-flight records (INFLIGHT_SHMFD) ---- */

/* Copies one descriptor into the pool, linked after *prev; -ENOSPC if the pool is empty. */
static int ip_copy(struct siov_vq *vq, const struct vring_packed_desc *d, uint16_t *first,
		   uint16_t *prev, uint16_t *ndesc)
{
	struct siov_vq_packed *pk = vq->pk;
	struct siov_vu_inflight_pdesc *e;
	uint16_t k;

	if (!pk->nfree)
		return -ENOSPC;
	k = pk->free[--pk->nfree];
	e = ip_pool(vq, k);
	e->addr = d->addr;
	e->len = d->len;
	e->flags = d->flags;
	e->next = SIOV_VU_PDESC_END;
	if (*ndesc)
		ip_pool(vq, *prev)->next = k;
	else
		*first = k;
	*prev = k;
	++*ndesc;
	return 0;
}

/* Gives a record's pool entries back (they are our own links: bounded by ndesc). */
static void ip_release(struct siov_vq *vq, uint16_t first, uint16_t ndesc)
{
	struct siov_vq_packed *pk = vq->pk;
	uint16_t k = first, i;

	for (i = 0; i < ndesc && k < vq->num && pk->nfree < vq->num; i++) {
		pk->free[pk->nfree++] = k;
		k = ip_pool(vq, k)->next;
	}
}

/* Publishes a popped chain's record, then the ring position after it (a crash in between is
 * recognised by siov_vq_packed_recover). */
static void ip_start(struct siov_vq *vq, uint16_t id, uint16_t first, uint16_t ndesc,
		     unsigned slots, uint16_t pos)
{
	struct siov_vu_inflight_pbuf *b = ip_buf(vq, id);

	b->first = first;
	b->ndesc = ndesc;
	b->slots = (uint16_t)slots;
	b->pos = pos;
	b->counter = ++vq->inflight_counter;
	__atomic_store_n(&b->inflight, 1, __ATOMIC_RELEASE);
	__atomic_store_n(&vq->inflight_packed->avail,
			 siov_vq_packed_base(vq->last_avail_idx, vq->avail_wrap), __ATOMIC_RELEASE);
}

static void ip_end(struct siov_vq *vq, uint16_t id)
{
	struct siov_vu_inflight_pbuf *b = ip_buf(vq, id);
	uint16_t first = b->first, ndesc = b->ndesc;

	__atomic_store_n(&b->inflight, 0, __ATOMIC_RELEASE);
	ip_release(vq, first, ndesc);
}

/* ---- popping ---- */

struct walk {
	uint16_t first, prev, ndesc; /* in-flight copies */
	unsigned slots;
};

/* Walks an indirect table: packed descriptors back to back, only WRITE meaningful. */
static int walk_indirect(struct siov_vq *vq, struct siov_vq_chain *c,
			 const struct vring_packed_desc *d)
{
	const struct vring_packed_desc *t;
	unsigned i, n;
	int rc;

	if (d->flags & VRING_DESC_F_NEXT) {
		siov_vq_break(vq, "buffer at %u: indirect descriptor with NEXT set",
			      vq->last_avail_idx);
		return -EINVAL;
	}
	if (d->len == 0 || d->len % sizeof(*t) || d->len / sizeof(*t) > SIOV_VQ_MAX_INDIRECT) {
		siov_vq_break(vq, "buffer at %u: bad indirect table length %u", vq->last_avail_idx,
			      d->len);
		return -EINVAL;
	}
	t = siov_mem_gpa_to_ptr(vq->mem, d->addr, d->len);
	if (!t) {
		siov_vq_break(vq, "buffer at %u: indirect table 0x%llx+%u outside the memory table",
			      vq->last_avail_idx, (unsigned long long)d->addr, d->len);
		return -EFAULT;
	}
	n = d->len / sizeof(*t);
	for (i = 0; i < n; i++) {
		struct vring_packed_desc e;
		/* Copy once: the driver may rewrite the table under us. */
		memcpy(&e, (const void *)&t[i], sizeof(e));
		if (c->in_num && !(e.flags & VRING_DESC_F_WRITE)) {
			siov_vq_break(vq,
				      "buffer at %u: device-readable descriptor after a "
				      "device-writable one",
				      vq->last_avail_idx);
			return -EINVAL;
		}
		rc = vq_chain_add(vq, c, e.addr, e.len, e.flags & VRING_DESC_F_WRITE);
		if (rc)
			return rc;
	}
	return 0;
}

/* An indirect descriptor: only as the first and only one of its chain. */
static int add_indirect(struct siov_vq *vq, struct siov_vq_chain *c,
			const struct vring_packed_desc *d, bool first)
{
	if (!first) {
		siov_vq_break(vq, "buffer at %u: indirect descriptor inside a chain",
			      vq->last_avail_idx);
		return -EINVAL;
	}
	return walk_indirect(vq, c, d);
}

/* One descriptor of a chain: a buffer (small enough to inline), or an indirect table. */
static inline int add_desc(struct siov_vq *vq, struct siov_vq_chain *c,
			   const struct vring_packed_desc *d, bool first)
{
	if (__builtin_expect(d->flags & VRING_DESC_F_INDIRECT, 0))
		return add_indirect(vq, c, d, first);
	/* vq_chain_add() refuses a readable descriptor after a writable one. */
	return vq_chain_add(vq, c, d->addr, d->len, d->flags & VRING_DESC_F_WRITE);
}

/*
 * Walks the chain starting at the avail position; on success *d is its last
 * descriptor (which carries the buffer id) and w->slots its length in slots.
 */
static int walk_ring(struct siov_vq *vq, struct siov_vq_chain *c, uint16_t head_flags,
		     struct vring_packed_desc *d, struct walk *w)
{
	uint16_t pos = vq->last_avail_idx;
	bool wrap = vq->avail_wrap;

	for (;;) {
		/* Copy once: the driver may rewrite the descriptor under us. */
		memcpy(d, (const void *)&vq->pdesc[pos], sizeof(*d));
		if (w->slots == 0) {
			d->flags = head_flags; /* the one read with acquire */
		} else if (!desc_avail(d->flags, wrap)) {
			siov_vq_break(vq,
				      "buffer at %u: descriptor %u of the chain is not available "
				      "(flags 0x%x, wrap counter %d)",
				      vq->last_avail_idx, pos, d->flags, wrap);
			return -EINVAL;
		}
		if (++w->slots > vq->num) {
			siov_vq_break(vq, "buffer at %u: chain longer than the ring (%u)",
				      vq->last_avail_idx, vq->num);
			return -ELOOP;
		}
		if (add_desc(vq, c, d, w->slots == 1))
			return -EINVAL;
		if (vq->inflight_packed && ip_copy(vq, d, &w->first, &w->prev, &w->ndesc)) {
			siov_vq_break(vq, "more descriptors in flight than the ring holds (%u)",
				      vq->num);
			return -ENOSPC;
		}
		if (!(d->flags & VRING_DESC_F_NEXT))
			return 0;
		advance(vq, &pos, &wrap, 1);
	}
}

/* The chain's buffer id may be taken: in range, not in flight, and the ring not overfull. */
static inline __attribute__((always_inline)) int check_id(struct siov_vq *vq, uint16_t id,
							  unsigned slots)
{
	struct siov_vq_packed *pk = vq->pk;

	if (id >= vq->num) {
		siov_vq_break(vq, "buffer at %u: buffer id %u out of range (%u)",
			      vq->last_avail_idx, id, vq->num);
		return -EINVAL;
	}
	if (pk->slots[id] != NOT_IN_FLIGHT) {
		siov_vq_break(vq, "buffer at %u: buffer id %u is already in flight",
			      vq->last_avail_idx, id);
		return -EINVAL;
	}
	if (pk->outstanding + slots > vq->num) {
		siov_vq_break(vq,
			      "buffer at %u: more descriptors in flight than the ring holds (%u)",
			      vq->last_avail_idx, vq->num);
		return -EINVAL;
	}
	return 0;
}

static void take(struct siov_vq *vq, uint16_t id, unsigned slots, uint16_t pos)
{
	struct siov_vq_packed *pk = vq->pk;

	pk->slots[id] = (uint16_t)slots;
	pk->pos[id] = pos;
	pk->outstanding += slots;
}

/* The chain popped whole: its id checked and taken, the avail position past it. */
static inline __attribute__((always_inline)) int
pop_done(struct siov_vq *vq, struct siov_vq_chain *c, uint16_t id, unsigned slots, uint16_t start)
{
	struct siov_vq_packed *pk = vq->pk;

	if (check_id(vq, id, slots))
		return -EINVAL;
	c->head = id;
	take(vq, id, slots, start);
	/* No division on the hot path: the ring size need not be a power of two. */
	pk->hist[pk->hist_next] = id;
	pk->hist_next = pk->hist_next + 1u == vq->num ? 0 : (uint16_t)(pk->hist_next + 1);
	pk->npops += pk->npops < vq->num;
	vq->last_pop = SIOV_VQ_POP_RING;
	return 1;
}

/* With in-flight records: every descriptor is copied into the record as it is walked. */
static int pop_recorded(struct siov_vq *vq, struct siov_vq_chain *c, uint16_t flags)
{
	uint16_t start = siov_vq_packed_base(vq->last_avail_idx, vq->avail_wrap);
	struct vring_packed_desc d;
	struct walk w = {0};

	vq_chain_reset(c, vq->last_avail_idx);
	if (walk_ring(vq, c, flags, &d, &w) || pop_done(vq, c, d.id, w.slots, start) != 1) {
		ip_release(vq, w.first, w.ndesc);
		return -EINVAL;
	}
	advance(vq, &vq->last_avail_idx, &vq->avail_wrap, w.slots);
	ip_start(vq, d.id, w.first, w.ndesc, w.slots, start);
	return 1;
}

/* One descriptor of the ring, copied once (the driver may rewrite it under us). */
static inline void read_desc(const struct vring_packed_desc *ring, uint16_t pos,
			     struct vring_packed_desc *d)
{
	memcpy(d, (const void *)&ring[pos], sizeof(*d));
}

/*
 * The per-request path (no in-flight records): the checks of walk_ring() in
 * the same order, the head descriptor peeled off the loop, the position,
 * wrap counter and slot count in registers, and the avail position moved
 * from where the walk ended.
 */
int vq_packed_pop(struct siov_vq *vq, struct siov_vq_chain *c)
{
	const struct vring_packed_desc *ring = vq->pdesc;
	uint16_t pos = vq->last_avail_idx, flags, avail, start;
	bool wrap = vq->avail_wrap;
	struct vring_packed_desc d;
	unsigned slots = 1;

	/* The driver writes a chain's head flags last: acquire them, then read the rest. */
	flags = __atomic_load_n(&ring[pos].flags, __ATOMIC_ACQUIRE);
	if (!desc_avail(flags, wrap))
		return 0;
	if (vq->inflight_packed)
		return pop_recorded(vq, c, flags);
	start = siov_vq_packed_base(pos, wrap);
	avail = wrap ? F_AVAIL : F_USED;
	/* Until the id is known, messages name the chain by its ring position. */
	vq_chain_reset(c, pos);
	read_desc(ring, pos, &d);
	d.flags = flags; /* the one read with acquire */
	for (;;) {
		if (__builtin_expect(d.flags & VRING_DESC_F_INDIRECT, 0)) {
			/* A copy: d itself never has its address taken, so it stays in registers.
			 */
			struct vring_packed_desc t = d;
			if (add_indirect(vq, c, &t, slots == 1))
				return -EINVAL;
		} else if (vq_chain_add(vq, c, d.addr, d.len, d.flags & VRING_DESC_F_WRITE)) {
			return -EINVAL;
		}
		if (++pos == vq->num) {
			pos = 0;
			wrap = !wrap;
			avail ^= F_AVAIL | F_USED;
		}
		if (!(d.flags & VRING_DESC_F_NEXT))
			break;
		read_desc(ring, pos, &d);
		if ((d.flags & (F_AVAIL | F_USED)) != avail) {
			siov_vq_break(vq,
				      "buffer at %u: descriptor %u of the chain is not available "
				      "(flags 0x%x, wrap counter %d)",
				      vq->last_avail_idx, pos, d.flags, wrap);
			return -EINVAL;
		}
		if (++slots > vq->num) {
			siov_vq_break(vq, "buffer at %u: chain longer than the ring (%u)",
				      vq->last_avail_idx, vq->num);
			return -EINVAL;
		}
	}
	if (pop_done(vq, c, d.id, slots, start) != 1)
		return -EINVAL;
	vq->last_avail_idx = pos;
	vq->avail_wrap = wrap;
	return 1;
}

int vq_packed_pop_resubmit(struct siov_vq *vq, struct siov_vq_chain *c)
{
	uint16_t id = vq->resubmit[vq->resubmit_pos++];
	struct siov_vu_inflight_pbuf b;
	uint16_t k, i;

	vq->last_pop = SIOV_VQ_POP_RESUBMIT;
	/* The record is front-end memory: copy it once, bound every link by the ring. */
	memcpy(&b, ip_buf(vq, id), sizeof(b));
	vq_chain_reset(c, id);
	for (i = 0, k = b.first; i < b.ndesc; i++) {
		struct siov_vu_inflight_pdesc e;
		struct vring_packed_desc d;
		if (k >= vq->num) {
			siov_vq_break(vq, "in-flight record of buffer %u links outside the pool",
				      id);
			return -EINVAL;
		}
		memcpy(&e, ip_pool(vq, k), sizeof(e));
		d = (struct vring_packed_desc){.addr = e.addr, .len = e.len, .flags = e.flags};
		if (add_desc(vq, c, &d, i == 0))
			return -EINVAL;
		k = e.next;
	}
	if (vq->pk->slots[id] != NOT_IN_FLIGHT || b.slots == 0 ||
	    vq->pk->outstanding + b.slots > vq->num) {
		siov_vq_break(vq, "in-flight record of buffer %u is inconsistent", id);
		return -EINVAL;
	}
	take(vq, id, b.slots, b.pos);
	return 1;
}

/* Gives the last chain popped from the ring back: the position returns to where it began. */
static void give_back_one(struct siov_vq *vq)
{
	struct siov_vq_packed *pk = vq->pk;
	uint16_t id, pos;

	if (!pk->npops)
		return;
	pk->npops--;
	pk->hist_next = pk->hist_next ? (uint16_t)(pk->hist_next - 1) : (uint16_t)(vq->num - 1);
	id = pk->hist[pk->hist_next];
	pos = pk->pos[id];
	vq->last_avail_idx = pos & 0x7fff;
	vq->avail_wrap = pos >> 15;
	pk->outstanding -= pk->slots[id];
	pk->slots[id] = NOT_IN_FLIGHT;
	if (vq->inflight_packed) {
		/* Position first: a crash in between leaves a record recovery re-pops past. */
		__atomic_store_n(&vq->inflight_packed->avail, pos, __ATOMIC_RELEASE);
		ip_end(vq, id);
	}
}

void vq_packed_unpop(struct siov_vq *vq)
{
	struct siov_vq_packed *pk = vq->pk;

	if (vq->last_pop == SIOV_VQ_POP_RING) {
		give_back_one(vq);
	} else if (vq->last_pop == SIOV_VQ_POP_RESUBMIT) {
		/* The record stays: the next pop resubmits it again. */
		uint16_t id = vq->resubmit[--vq->resubmit_pos];
		pk->outstanding -= pk->slots[id];
		pk->slots[id] = NOT_IN_FLIGHT;
	}
	vq->last_pop = SIOV_VQ_POP_NONE;
}

void vq_packed_give_back(struct siov_vq *vq, unsigned n)
{
	while (n--)
		give_back_one(vq);
	vq->last_pop = SIOV_VQ_POP_NONE;
}

/* ---- completing ---- */

static bool check_done(struct siov_vq *vq, const struct siov_vq_used_elem *elems, unsigned nelems)
{
	unsigned i;

	for (i = 0; i < nelems; i++)
		if (elems[i].head >= vq->num || vq->pk->slots[elems[i].head] == NOT_IN_FLIGHT) {
			siov_vq_break(vq, "completion of buffer id %u, which is not in flight",
				      elems[i].head);
			return false;
		}
	return true;
}

/* Marks one used entry of the descriptor ring (after its flags were stored). */
static void log_desc(struct siov_vq *vq, uint16_t pos)
{
	uint64_t sz = sizeof(struct vring_packed_desc);

	if (!vq->log_desc_gpa || siov_dirty_log_mark(vq->log, vq->log_desc_gpa + pos * sz, sz))
		siov_vq_break(vq, "descriptor ring is outside the dirty log");
}

/*
 * Makes the written used entries visible: the first one's flags, stored last
 * (release: the entries after it, their data and status bytes before it), then
 * the in-flight records catch up.  The runner calls it once per round through
 * siov_vq_notify(), before deciding whether to call the driver.
 */
void vq_packed_publish(struct siov_vq *vq)
{
	struct siov_vq_packed *pk = vq->pk;
	unsigned i;

	if (!pk || !pk->pend)
		return;
	pk->pend = false;
	__atomic_store_n(&vq->pdesc[pk->pend_pos].flags, pk->pend_flags, __ATOMIC_RELEASE);
	if (unlikely_log(vq))
		log_desc(vq, pk->pend_pos);
	/*
	 * Records first, the used position last: a crash in between leaves
	 * visible entries ahead of the recorded position, which the restart
	 * walks (ip_catch_up_used).  The other order could leave a record in
	 * flight behind the position, and out of order nothing tells that it
	 * was used: the restart would do it again.
	 */
	if (vq->inflight_packed) {
		for (i = 0; i < pk->npend; i++)
			ip_end(vq, pk->pend_ids[i]);
		__atomic_store_n(&vq->inflight_packed->used,
				 siov_vq_packed_base(vq->used_idx, vq->used_wrap),
				 __ATOMIC_RELEASE);
	}
	pk->npend = 0;
}

/*
 * Writes one used entry at *pos for buffer @id, covering @slots ring slots,
 * and moves *pos past them.  Every entry's flags but the first unpublished
 * one's go in at once: the driver reads entries in ring order, so none shows
 * before that first one, whose flags vq_packed_publish() stores when the
 * runner notifies (at once without a runner).
 */
static inline __attribute__((always_inline)) void put_used(struct siov_vq *vq, uint16_t *pos,
							   uint16_t *used, uint16_t id,
							   uint32_t len, unsigned slots)
{
	struct siov_vq_packed *pk = vq->pk;
	struct vring_packed_desc *d = &vq->pdesc[*pos];

	d->id = id;
	d->len = len;
	if (!pk->pend) {
		pk->pend = true;
		pk->pend_pos = *pos;
		pk->pend_flags = *used;
	} else {
		__atomic_store_n(&d->flags, *used, __ATOMIC_RELEASE);
		if (unlikely_log(vq))
			log_desc(vq, *pos);
	}
	*pos = (uint16_t)(*pos + slots);
	if (*pos >= vq->num) {
		*pos = (uint16_t)(*pos - vq->num);
		vq->used_wrap = !vq->used_wrap;
		*used ^= F_AVAIL | F_USED;
	}
}

/* A buffer used: its slots leave the books, its record ends when the entries are published. */
static inline __attribute__((always_inline)) unsigned retire(struct siov_vq *vq, uint16_t id)
{
	struct siov_vq_packed *pk = vq->pk;
	unsigned slots = pk->slots[id];

	if (vq->inflight_packed && pk->npend < vq->num)
		pk->pend_ids[pk->npend++] = id;
	pk->outstanding -= slots;
	pk->slots[id] = NOT_IN_FLIGHT;
	return slots;
}

/* Writes the used entries at the used position (put_used). */
void vq_packed_complete(struct siov_vq *vq, const struct siov_vq_used_elem *elems, unsigned nelems,
			const struct iovec *written, unsigned n)
{
	struct siov_vq_packed *pk = vq->pk;
	uint16_t pos = vq->used_idx, used = vq->used_wrap ? (F_AVAIL | F_USED) : 0;
	unsigned i;

	if (!nelems || !check_done(vq, elems, nelems))
		return;
	if (unlikely_log(vq) && vq_log_written(vq, written, n))
		return;
	/* A driver reusing ids it has not seen completed could fill the list: publish first. */
	if (pk->npend + nelems > vq->num)
		vq_packed_publish(vq);
	for (i = 0; i < nelems; i++)
		put_used(vq, &pos, &used, elems[i].head, elems[i].len, retire(vq, elems[i].head));
	vq->used_idx = pos;
	if (!vq->run.used)
		vq_packed_publish(vq);
	vq_mark_used(vq);
}

/*
 * One completion (siov_vq_complete, not in order): vq_packed_complete() for
 * one element, with its loop and the element array gone.
 */
void vq_packed_complete_one(struct siov_vq *vq, uint16_t id, uint32_t len,
			    const struct iovec *written, unsigned n)
{
	struct siov_vq_packed *pk = vq->pk;
	uint16_t pos = vq->used_idx, used = vq->used_wrap ? (F_AVAIL | F_USED) : 0;

	if (id >= vq->num || pk->slots[id] == NOT_IN_FLIGHT) {
		siov_vq_break(vq, "completion of buffer id %u, which is not in flight", id);
		return;
	}
	if (unlikely_log(vq) && vq_log_written(vq, written, n))
		return;
	/* Only in-flight records fill pend_ids (retire). */
	if (vq->inflight_packed && pk->npend + 1 > vq->num)
		vq_packed_publish(vq);
	put_used(vq, &pos, &used, id, len, retire(vq, id));
	vq->used_idx = pos;
	if (!vq->run.used)
		vq_packed_publish(vq);
	vq_mark_used(vq);
}

/*
 * In order: the k oldest buffers are done.  Each batch gets one used entry,
 * over its first buffer's first slot, with the id of its last buffer, and the
 * used position skips every slot of the batch; published as above.
 */
void vq_packed_publish_order(struct siov_vq *vq, unsigned k)
{
	struct siov_vq_packed *pk = vq->pk;
	struct siov_vq_order *o = vq->ord;
	uint16_t pos = vq->used_idx, used = vq->used_wrap ? (F_AVAIL | F_USED) : 0;
	unsigned i, j = o->first, slots = 0;

	if (pk->npend + k > vq->num)
		vq_packed_publish(vq);
	for (i = 0; i < k; i++) {
		uint16_t id = o->ids[j];
		j = j + 1 == vq->num ? 0 : j + 1;
		o->state[id] = VQ_ORD_FREE; /* the one pass over them (vq_order_flush) */
		slots += retire(vq, id);
		if (!vq_order_batch_end(o, id, i + 1 == k))
			continue;
		put_used(vq, &pos, &used, id, o->len[id], slots);
		slots = 0;
		SIOV_STAT_ADD(vq->stats.order_entries, 1);
	}
	vq->used_idx = pos;
	if (!vq->run.used)
		vq_packed_publish(vq);
	vq_mark_used(vq);
}

/* ---- notifications (event suppression) ---- */

bool vq_packed_need_notify(struct siov_vq *vq)
{
	uint16_t flags = __atomic_load_n(&vq->driver_event->flags, __ATOMIC_RELAXED);
	int now = vq->used_idx, old = vq->signalled_used, off;
	bool valid = vq->signalled_used_valid;
	uint16_t off_wrap;

	vq->signalled_used = vq->used_idx;
	vq->signalled_used_valid = true;
	if (flags != VRING_PACKED_EVENT_FLAG_DESC || !vq->event_idx)
		return flags != VRING_PACKED_EVENT_FLAG_DISABLE;
	if (!valid)
		return true;
	/*
	 * The driver asks to hear when the entry at off (in the lap its wrap bit
	 * names) is used.  Positions restart every lap: put old, and an event in
	 * the previous lap, below zero so that vring_need_event's arithmetic holds.
	 */
	off_wrap = __atomic_load_n(&vq->driver_event->off_wrap, __ATOMIC_RELAXED);
	off = off_wrap & 0x7fff;
	if (now <= old)
		old -= vq->num;
	if (!!(off_wrap >> VRING_PACKED_EVENT_F_WRAP_CTR) != vq->used_wrap)
		off -= vq->num;
	return vring_need_event((uint16_t)off, (uint16_t)now, (uint16_t)old);
}

bool vq_packed_has_avail(const struct siov_vq *vq)
{
	return desc_avail(__atomic_load_n(&vq->pdesc[vq->last_avail_idx].flags, __ATOMIC_ACQUIRE),
			  vq->avail_wrap);
}

void vq_packed_set_notify(struct siov_vq *vq, bool on)
{
	/* ENABLE/DISABLE rather than DESC: kicks are wanted as soon as the engine stops polling. */
	__atomic_store_n(&vq->device_event->flags,
			 on ? VRING_PACKED_EVENT_FLAG_ENABLE : VRING_PACKED_EVENT_FLAG_DISABLE,
			 __ATOMIC_RELAXED);
	if (unlikely_log(vq) && vq_log_used(vq, 0, sizeof(struct vring_packed_desc_event)))
		siov_vq_break(vq, "device event area 0x%llx is outside the dirty log",
			      (unsigned long long)vq->log_used_gpa);
}

/* ---- recovery after a back-end restart (INFLIGHT_SHMFD) ---- */

/* A record in flight, checked: links and counts inside the pool and the ring. */
static bool ip_valid(const struct siov_vq *vq, const struct siov_vu_inflight_pbuf *b, uint8_t *seen)
{
	uint16_t k = b->first, i;

	if (b->ndesc == 0 || b->ndesc > vq->num || b->slots == 0 || b->slots > vq->num ||
	    (b->pos & 0x7fff) >= vq->num)
		return false;
	for (i = 0; i < b->ndesc; i++) {
		if (k >= vq->num || seen[k])
			return false;
		seen[k] = 1;
		k = ip_pool(vq, k)->next;
	}
	return true;
}

/*
 * In order, a used entry stands for its buffer and every older one: ends the
 * records up to @counter and returns the ring slots they took.
 */
static unsigned ip_end_older(struct siov_vq *vq, uint64_t counter)
{
	unsigned slots = 0;
	uint16_t id;

	for (id = 0; id < vq->num; id++) {
		struct siov_vu_inflight_pbuf *b = ip_buf(vq, id);
		if (b->inflight != 1 || b->counter > counter || b->slots > vq->num)
			continue;
		b->inflight = 0;
		slots += b->slots;
	}
	/* Records a front end rewrote could add up past the ring: one lap at most. */
	return slots > vq->num ? vq->num : slots;
}

/*
 * A crash after used entries were published and before the recorded used
 * position moved past them (their records may be cleared already, or not):
 * entries at the recorded position that are used in this lap end their
 * records, and the position moves past them.  A record keeps its slot count
 * and age when it ends, and nothing is popped before the position moves, so
 * the records still describe those entries.
 */
static void ip_catch_up_used(struct siov_vq *vq)
{
	struct siov_vu_inflight_packed *h = vq->inflight_packed;
	uint16_t pos = h->used & 0x7fff, guard;
	bool wrap = h->used >> 15;

	for (guard = 0; pos < vq->num && guard < vq->num; guard++) {
		uint16_t want = wrap ? (F_AVAIL | F_USED) : 0;
		uint16_t f = __atomic_load_n(&vq->pdesc[pos].flags, __ATOMIC_ACQUIRE);
		uint16_t id = vq->pdesc[pos].id;
		struct siov_vu_inflight_pbuf *b;
		if ((f & (F_AVAIL | F_USED)) != want || id >= vq->num)
			break;
		b = ip_buf(vq, id);
		if (b->slots == 0 || b->slots > vq->num)
			break;
		advance(vq, &pos, &wrap, vq->in_order ? ip_end_older(vq, b->counter) : b->slots);
		b->inflight = 0;
		h->used = siov_vq_packed_base(pos, wrap);
	}
}

/* A crash between a record and the avail position after it: the youngest record says so. */
static void ip_catch_up_avail(struct siov_vq *vq)
{
	struct siov_vu_inflight_packed *h = vq->inflight_packed;
	const struct siov_vu_inflight_pbuf *young = NULL;
	uint16_t id, pos;
	bool wrap;

	for (id = 0; id < vq->num; id++) {
		const struct siov_vu_inflight_pbuf *b = ip_buf(vq, id);
		if (b->inflight == 1 && (!young || b->counter > young->counter))
			young = b;
	}
	if (!young || young->pos != h->avail || young->slots > vq->num)
		return;
	pos = young->pos & 0x7fff;
	wrap = young->pos >> 15;
	advance(vq, &pos, &wrap, young->slots);
	h->avail = siov_vq_packed_base(pos, wrap);
}

struct pk_key {
	uint64_t counter;
	uint16_t id;
};

static int cmp_key(const void *a, const void *b)
{
	uint64_t x = ((const struct pk_key *)a)->counter, y = ((const struct pk_key *)b)->counter;

	return x < y ? -1 : x > y;
}

/* Slots from ring position a forward to b (positions with wrap bits); 2 * num if b is behind. */
static unsigned ring_ahead(const struct siov_vq *vq, uint16_t a, uint16_t b)
{
	unsigned pa = a & 0x7fff, pb = b & 0x7fff, n = vq->num;

	if ((a >> 15) == (b >> 15))
		return pb >= pa ? pb - pa : 2 * n;
	return pb < pa ? pb + n - pa : pb == pa ? n : 2 * n;
}

/*
 * In order, the buffers in flight are the slots from the used position to the
 * avail one.  A record behind the used position was used already: the crash
 * came after the position moved and before the record was cleared.
 */
static bool ip_stale_in_order(const struct siov_vq *vq, const struct siov_vu_inflight_pbuf *b)
{
	const struct siov_vu_inflight_packed *h = vq->inflight_packed;
	unsigned window = ring_ahead(vq, h->used, h->avail);

	return vq->in_order && window <= vq->num && ring_ahead(vq, h->used, b->pos) >= window;
}

/* Lists the valid records in flight, oldest first, and rebuilds the free pool around them. */
static int ip_collect(struct siov_vq *vq)
{
	struct siov_vq_packed *pk = vq->pk;
	struct pk_key *keys = calloc(vq->num, sizeof(*keys));
	uint8_t *seen = calloc(vq->num, 1);
	unsigned i, n = 0;
	uint16_t id;

	free(vq->resubmit);
	vq->resubmit_num = vq->resubmit_pos = 0;
	vq->resubmit = calloc(vq->num, sizeof(*vq->resubmit));
	if (!keys || !seen || !vq->resubmit) {
		free(keys);
		free(seen);
		return -ENOMEM;
	}
	for (id = 0; id < vq->num; id++) {
		struct siov_vu_inflight_pbuf *b = ip_buf(vq, id);
		if (b->inflight != 1)
			continue;
		if (ip_stale_in_order(vq, b)) {
			b->inflight = 0;
			continue;
		}
		if (!ip_valid(vq, b, seen)) {
			SIOV_WARN(
			    "vdev %s queue %u: dropping a corrupt in-flight record (buffer %u)",
			    vq->dev_name ? vq->dev_name : "?", vq->index, id);
			b->inflight = 0;
			continue;
		}
		keys[n++] = (struct pk_key){b->counter, id};
		vq->inflight_counter = SIOV_MAX(vq->inflight_counter, b->counter);
	}
	qsort(keys, n, sizeof(*keys), cmp_key);
	for (i = 0; i < n; i++)
		vq->resubmit[i] = keys[i].id;
	vq->resubmit_num = n;
	pk->nfree = 0;
	for (i = vq->num; i-- > 0;)
		if (!seen[i])
			pk->free[pk->nfree++] = (uint16_t)i;
	free(keys);
	free(seen);
	return (int)n;
}

int siov_vq_packed_recover(struct siov_vq *vq)
{
	struct siov_vu_inflight_packed *h = vq->inflight_packed;
	uint16_t i;

	if (h->magic != SIOV_VU_INFLIGHT_PACKED_MAGIC || h->desc_num != vq->num) {
		/* A fresh region (or one for another ring size): nothing in flight. */
		memset(h->data, 0,
		       (size_t)vq->num * (sizeof(struct siov_vu_inflight_pbuf) +
					  sizeof(struct siov_vu_inflight_pdesc)));
		h->desc_num = vq->num;
		h->avail = h->used = siov_vq_packed_base(vq->last_avail_idx, vq->avail_wrap);
		vq->pk->nfree = 0;
		for (i = vq->num; i-- > 0;)
			vq->pk->free[vq->pk->nfree++] = i;
		__atomic_store_n(&h->magic, SIOV_VU_INFLIGHT_PACKED_MAGIC, __ATOMIC_RELEASE);
		return 0;
	}
	ip_catch_up_used(vq);
	ip_catch_up_avail(vq);
	if ((h->avail & 0x7fff) >= vq->num || (h->used & 0x7fff) >= vq->num) {
		siov_vq_break(vq, "in-flight region has ring positions past the ring (%u)",
			      vq->num);
		return -EINVAL;
	}
	/* The records are where the ring really is: trust them over SET_VRING_BASE. */
	vq->last_avail_idx = h->avail & 0x7fff;
	vq->avail_wrap = h->avail >> 15;
	vq->used_idx = h->used & 0x7fff;
	vq->used_wrap = h->used >> 15;
	return ip_collect(vq);
}
