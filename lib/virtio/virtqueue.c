/*
 * Virtqueue data path, and the split ring's half of it: pop validated
 * descriptor chains from the avail ring, push completions to the used ring,
 * and suppress or send notifications (EVENT_IDX).  A packed ring
 * (virtqueue_packed.c) sits behind the same calls, which dispatch on
 * vq->packed.  Everything read from the rings is hostile: indices are checked
 * against the ring size, chains are counted to catch loops, and every buffer
 * is translated through the VDEV's memory table.  A violation breaks the
 * queue and its VDEV; it never crashes siovd.
 */
#include <errno.h>
#include <stddef.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>

#include "siov_internal/log.h"
#include "siov_internal/util.h"
#include "siov_internal/virtqueue.h"
#include "vq_impl.h"

void siov_vq_init(struct siov_vq *vq, unsigned index)
{
	memset(vq, 0, sizeof(*vq));
	vq->index = index;
	vq->kick_fd = -1;
	vq->call_fd = -1;
	vq->err_fd = -1;
	vq->log_fd = -1;
}

void siov_vq_release(struct siov_vq *vq)
{
	free(vq->pk);
	vq->pk = NULL;
	vq_order_free(vq);
}

static int map_split(struct siov_vq *vq);

int siov_vq_map_rings(struct siov_vq *vq)
{
	int rc;

	if (!vq->addr_set || !vq->mem || vq->num == 0)
		return -EINVAL;
	rc = vq->packed ? vq_packed_map(vq) : map_split(vq);
	if (rc)
		return rc;
	if (vq->in_order)
		return vq_order_alloc(vq);
	vq_order_free(vq);
	return 0;
}

static int map_split(struct siov_vq *vq)
{
	uint64_t n = vq->num;

	vq->avail_cached = 0;
	/* Split rings index modulo the size, so it must divide 65536. */
	if (n & (n - 1))
		return -EINVAL;
	/* Virtio's ring alignment: our atomics on these fields must not straddle lines. */
	if (vq->desc_uva % 16 || vq->avail_uva % 2 || vq->used_uva % 4)
		return -EINVAL;
	vq->desc = siov_mem_uva_to_ptr(vq->mem, vq->desc_uva, 16 * n);
	vq->avail = siov_mem_uva_to_ptr(vq->mem, vq->avail_uva, 4 + 2 * n + 2);
	vq->used = siov_mem_uva_to_ptr(vq->mem, vq->used_uva, 4 + 8 * n + 2);
	if (!vq->desc || !vq->avail || !vq->used)
		return -EFAULT;
	/* A region whose mmap_offset is not aligned like its address moves them here too. */
	if ((uintptr_t)vq->desc % 16 || (uintptr_t)vq->avail % 2 || (uintptr_t)vq->used % 4)
		return -EINVAL;
	return 0;
}

void siov_vq_break(struct siov_vq *vq, const char *fmt, ...)
{
	va_list ap;

	if (__atomic_load_n(&vq->broken, __ATOMIC_RELAXED))
		return;
	va_start(ap, fmt);
	vsnprintf(vq->broken_reason, sizeof(vq->broken_reason), fmt, ap);
	va_end(ap);
	SIOV_VDEV_LOG(&vq->log_rl, vq->dev_name ? vq->dev_name : "?", SIOV_LOG_ERR,
		      "vdev %s queue %u broken: %s", vq->dev_name ? vq->dev_name : "?", vq->index,
		      vq->broken_reason);
	/*
	 * The front end learns through the error eventfd (QEMU logs it); signal it
	 * before the state says "broken", so whoever sees the state sees the signal.
	 */
	if (vq->err_fd >= 0)
		eventfd_write(vq->err_fd, 1);
	__atomic_store_n(&vq->broken, 1, __ATOMIC_RELEASE);
	if (vq->dev_broken)
		__atomic_store_n(vq->dev_broken, 1, __ATOMIC_RELEASE);
}

/* Inlined into pop(): an exported function in a PIC library is called, not inlined. */
static inline bool vq_broken(const struct siov_vq *vq)
{
	return __atomic_load_n(&vq->broken, __ATOMIC_ACQUIRE) ||
	       (vq->dev_broken && __atomic_load_n(vq->dev_broken, __ATOMIC_ACQUIRE));
}

bool siov_vq_is_broken(const struct siov_vq *vq)
{
	return vq_broken(vq);
}

int vq_chain_add(struct siov_vq *vq, struct siov_vq_chain *c, uint64_t addr, uint32_t len,
		 bool writable)
{
	unsigned used = c->out_num + c->in_num;
	int n;

	if (!writable && c->in_num) {
		siov_vq_break(vq, "head %u: device-readable descriptor after a device-writable one",
			      c->head);
		return -EINVAL;
	}
	n = siov_mem_gpa_to_iov(vq->mem, addr, len, &c->iov[used], SIOV_VQ_MAX_IOV - used);
	if (n == -ENOBUFS) {
		siov_vq_break(vq, "head %u: chain needs more than %d segments", c->head,
			      SIOV_VQ_MAX_IOV);
		return n;
	}
	if (n < 0) {
		siov_vq_break(vq, "head %u: buffer 0x%llx+%u is outside the memory table", c->head,
			      (unsigned long long)addr, len);
		return n;
	}
	if (writable) {
		c->in_num += n;
		c->in_len += len;
	} else {
		c->out_num += n;
		c->out_len += len;
	}
	return 0;
}

/* Switches the walk to an indirect table; returns its size or -errno. */
static int enter_indirect(struct siov_vq *vq, struct siov_vq_chain *c, const struct vring_desc *d,
			  const struct vring_desc **table)
{
	if (d->flags & VRING_DESC_F_NEXT) {
		siov_vq_break(vq, "head %u: indirect descriptor with NEXT set", c->head);
		return -EINVAL;
	}
	if (d->len == 0 || d->len % sizeof(struct vring_desc) ||
	    d->len / sizeof(struct vring_desc) > SIOV_VQ_MAX_INDIRECT) {
		siov_vq_break(vq, "head %u: bad indirect table length %u", c->head, d->len);
		return -EINVAL;
	}
	*table = siov_mem_gpa_to_ptr(vq->mem, d->addr, d->len);
	if (!*table) {
		siov_vq_break(vq, "head %u: indirect table 0x%llx+%u outside the memory table",
			      c->head, (unsigned long long)d->addr, d->len);
		return -EFAULT;
	}
	return (int)(d->len / sizeof(struct vring_desc));
}

static int walk_chain(struct siov_vq *vq, struct siov_vq_chain *c)
{
	const struct vring_desc *table = vq->desc;
	unsigned size = vq->num, idx = c->head, count = 0;
	bool indirect = false;
	struct vring_desc d;
	int rc;

	for (;;) {
		/* Copy once: the driver may rewrite the descriptor under us. */
		memcpy(&d, (const void *)&table[idx], sizeof(d));
		if (++count > size) {
			siov_vq_break(vq, "head %u: descriptor loop (more than %u in a chain)",
				      c->head, size);
			return -ELOOP;
		}
		if (d.flags & VRING_DESC_F_INDIRECT) {
			if (indirect) {
				siov_vq_break(vq, "head %u: nested indirect table", c->head);
				return -EINVAL;
			}
			rc = enter_indirect(vq, c, &d, &table);
			if (rc < 0)
				return rc;
			size = (unsigned)rc;
			idx = 0;
			count = 0;
			indirect = true;
			continue;
		}
		rc = vq_chain_add(vq, c, d.addr, d.len, d.flags & VRING_DESC_F_WRITE);
		if (rc)
			return rc;
		if (!(d.flags & VRING_DESC_F_NEXT))
			return 0;
		idx = d.next;
		if (idx >= size) {
			siov_vq_break(vq, "head %u: next index %u out of range (%u)", c->head, idx,
				      size);
			return -EINVAL;
		}
	}
}

static void inflight_start(struct siov_vq *vq, uint16_t head)
{
	struct siov_vu_inflight_queue *q = vq->inflight;

	/* Bound by our own ring size: desc_num lives in memory the front end can change. */
	if (!q || head >= vq->num)
		return;
	q->desc[head].counter = ++vq->inflight_counter;
	q->desc[head].inflight = 1;
}

/*
 * A crash between publishing used->idx and clearing the records.  Without
 * IN_ORDER one element was published per index update, the last batch's
 * head; in order the index covered that buffer and every older one, which
 * are the records with a smaller counter (buffers are used in pop order).
 */
void siov_vq_inflight_catch_up(struct siov_vq *vq)
{
	struct siov_vu_inflight_queue *iq = vq->inflight;
	uint16_t head = iq->last_batch_head; /* read once: shared memory */
	uint64_t last;
	unsigned i;

	if (head >= vq->num)
		return;
	last = iq->desc[head].counter;
	iq->desc[head].inflight = 0;
	for (i = 0; vq->in_order && i < vq->num; i++)
		if (iq->desc[i].inflight == 1 && iq->desc[i].counter <= last)
			iq->desc[i].inflight = 0;
}

struct resubmit_key {
	uint64_t counter;
	uint16_t head;
};

static int cmp_counter(const void *a, const void *b)
{
	uint64_t x = ((const struct resubmit_key *)a)->counter;
	uint64_t y = ((const struct resubmit_key *)b)->counter;

	return x < y ? -1 : x > y;
}

void siov_vq_sort_resubmit(struct siov_vq *vq)
{
	struct resubmit_key *k = calloc(vq->resubmit_num, sizeof(*k));
	unsigned i;

	if (!k)
		return; /* unsorted still resubmits everything, just not oldest first */
	/* Copy the counters once: the front end may rewrite them while we sort. */
	for (i = 0; i < vq->resubmit_num; i++) {
		k[i].head = vq->resubmit[i];
		k[i].counter = vq->inflight->desc[k[i].head].counter;
	}
	qsort(k, vq->resubmit_num, sizeof(*k), cmp_counter);
	for (i = 0; i < vq->resubmit_num; i++)
		vq->resubmit[i] = k[i].head;
	free(k);
}

static int pop_resubmit(struct siov_vq *vq, struct siov_vq_chain *c)
{
	if (vq->packed)
		return vq_packed_pop_resubmit(vq, c);
	vq->last_pop = SIOV_VQ_POP_RESUBMIT;
	vq_chain_reset(c, vq->resubmit[vq->resubmit_pos++]);
	if (walk_chain(vq, c))
		return -EINVAL;
	inflight_start(vq, c->head);
	return 1;
}

void siov_vq_unpop(struct siov_vq *vq)
{
	if (vq->ord && vq->last_pop != SIOV_VQ_POP_NONE)
		vq_order_unpush(vq, 1);
	if (vq->packed) {
		vq_packed_unpop(vq);
		return;
	}
	/* The in-flight record stays set; the next pop sets it again. */
	if (vq->last_pop == SIOV_VQ_POP_RESUBMIT)
		vq->resubmit_pos--;
	else if (vq->last_pop == SIOV_VQ_POP_RING) {
		vq->last_avail_idx--;
		vq->avail_cached++;
	}
	vq->last_pop = SIOV_VQ_POP_NONE;
}

/*
 * Split: how many entries past last_avail_idx the driver has published,
 * reading avail->idx only when the last read's entries are used up.  -EINVAL
 * (queue broken) if the index runs more than a ring ahead.
 */
static int split_avail(struct siov_vq *vq)
{
	uint16_t avail_idx, n;

	if (vq->avail_cached)
		return vq->avail_cached;
	avail_idx = __atomic_load_n(&vq->avail->idx, __ATOMIC_ACQUIRE);
	SIOV_STAT_ADD(vq->stats.avail_reads, 1);
	n = (uint16_t)(avail_idx - vq->last_avail_idx);
	if (n > vq->num) {
		siov_vq_break(vq, "avail index %u is more than %u ahead of %u", avail_idx, vq->num,
			      vq->last_avail_idx);
		return -EINVAL;
	}
	vq->avail_cached = n;
	return n;
}

static int pop(struct siov_vq *vq, struct siov_vq_chain *c)
{
	uint16_t head;
	int n;

	vq->last_pop = SIOV_VQ_POP_NONE;
	if (vq_broken(vq))
		return -EIO;
	if (vq->resubmit_pos < vq->resubmit_num)
		return pop_resubmit(vq, c);
	if (vq->packed)
		return vq_packed_pop(vq, c);
	n = split_avail(vq);
	if (n <= 0)
		return n;
	/* The size is a power of two (siov_vq_map_rings): a mask, not a division. */
	head =
	    __atomic_load_n(&vq->avail->ring[vq->last_avail_idx & (vq->num - 1)], __ATOMIC_RELAXED);
	if (head >= vq->num) {
		siov_vq_break(vq, "avail entry %u: head %u out of range (%u)", vq->last_avail_idx,
			      head, vq->num);
		return -EINVAL;
	}
	vq->last_avail_idx++;
	vq->avail_cached--;
	vq->last_pop = SIOV_VQ_POP_RING;
	vq_chain_reset(c, head);
	if (walk_chain(vq, c))
		return -EINVAL;
	inflight_start(vq, head);
	return 1;
}

int siov_vq_pop(struct siov_vq *vq, struct siov_vq_chain *c)
{
	int rc = pop(vq, c);

	/* In order: every chain popped (ring or resubmission) queues up behind its elders. */
	if (rc == 1 && __builtin_expect(vq->ord != NULL, 0) && vq_order_push(vq, c))
		return -EINVAL;
	return rc;
}

void siov_vq_prefetch(const struct siov_vq *vq, unsigned n)
{
	uint16_t i = vq->last_avail_idx, end;

	/* A packed ring's next chains are the descriptors right after: the hardware prefetches. */
	if (vq->packed)
		return;
	/* Only what the last read of avail->idx showed: no extra trip to the driver's line. */
	end = (uint16_t)(i + SIOV_MIN(n, (unsigned)vq->avail_cached));
	for (; i != end; i++) {
		uint16_t head =
		    __atomic_load_n(&vq->avail->ring[i & (vq->num - 1)], __ATOMIC_RELAXED);
		if (head < vq->num)
			__builtin_prefetch(&vq->desc[head]);
	}
}

int vq_log_used(struct siov_vq *vq, uint64_t off, uint64_t len)
{
	if (!vq->log_used)
		return 0;
	return siov_dirty_log_mark(vq->log, vq->log_used_gpa + off, len);
}

int vq_log_written(struct siov_vq *vq, const struct iovec *written, unsigned n)
{
	/* A superset of the written bytes is safe: mark the buffers whole. */
	if (siov_dirty_log_mark_iov(vq->log, vq->mem, written, n, UINT64_MAX)) {
		siov_vq_break(vq, "a buffer the device wrote is outside the dirty log");
		return -ERANGE;
	}
	return 0;
}

/* Marks the device's writes and the used element; -errno (queue broken) if the log cannot. */
static int log_completion(struct siov_vq *vq, const struct iovec *written, unsigned n,
			  uint64_t elem_off)
{
	if (vq_log_written(vq, written, n))
		return -ERANGE;
	if (vq_log_used(vq, elem_off, sizeof(struct vring_used_elem))) {
		siov_vq_break(vq, "used ring 0x%llx is outside the dirty log",
			      (unsigned long long)vq->log_used_gpa);
		return -ERANGE;
	}
	return 0;
}

/* Publishes the used elements written so far (split): one index store however many there are. */
static void publish_used(struct siov_vq *vq)
{
	if (!vq->used_unpublished)
		return;
	vq->used_unpublished = false;
	/* The driver must see the elements before the index that covers them. */
	__atomic_store_n(&vq->used->idx, vq->used_idx, __ATOMIC_RELEASE);
	SIOV_STAT_ADD(vq->stats.used_writes, 1);
	if (unlikely_log(vq))
		vq_log_used(vq, offsetof(struct vring_used, idx), sizeof(uint16_t));
}

void siov_vq_complete_many(struct siov_vq *vq, const struct siov_vq_used_elem *elems,
			   unsigned nelems, const struct iovec *written, unsigned n)
{
	struct siov_vu_inflight_queue *q = vq->inflight;
	unsigned i;

	if (__builtin_expect(vq->ord != NULL, 0)) {
		vq_order_complete(vq, elems, nelems, written, n);
		return;
	}
	if (vq->packed) {
		vq_packed_complete(vq, elems, nelems, written, n);
		return;
	}
	for (i = 0; i < nelems; i++) {
		uint16_t slot = (uint16_t)(vq->used_idx + i) & (vq->num - 1);
		struct vring_used_elem *e = &vq->used->ring[slot];

		e->id = elems[i].head;
		e->len = elems[i].len;
		/* Off: one branch.  On: data and elements marked before the index publishes them.
		 */
		if (unlikely_log(vq) &&
		    log_completion(vq, written, i ? 0 : n,
				   offsetof(struct vring_used, ring) + (uint64_t)slot * sizeof(*e)))
			return;
	}
	vq->used_idx = (uint16_t)(vq->used_idx + nelems);
	vq->used_unpublished = true;
	/*
	 * A runner calls siov_vq_notify() for this queue before its round ends,
	 * and that publishes the index: a round's completions cost the driver one
	 * cache miss on used->idx, not one each.  Without a runner, or with
	 * in-flight records (cleared only once the index covers them, so that a
	 * successor never loses a request), publish now.
	 */
	vq_mark_used(vq);
	if (vq->run.used && !q)
		return;
	/* Lets a successor tell, after a crash right here, which record is stale. */
	if (q && nelems)
		q->last_batch_head = elems[nelems - 1].head;
	publish_used(vq);
	for (i = 0; q && i < nelems; i++) {
		if (elems[i].head < vq->num)
			q->desc[elems[i].head].inflight = 0;
		q->used_idx = vq->used_idx;
	}
}

/*
 * In order: the k oldest buffers are done.  Each batch's used entry goes
 * where its first buffer's would, with the id of its last; the index then
 * covers them all, and their in-flight records clear after it.  Their order
 * states are freed here, in the one pass over them (vq_order_flush).
 */
void vq_split_publish_order(struct siov_vq *vq, unsigned k)
{
	struct siov_vu_inflight_queue *q = vq->inflight;
	struct siov_vq_order *o = vq->ord;
	unsigned i, j = o->first, start = 0;
	uint16_t id = 0;

	for (i = 0; i < k; i++) {
		uint16_t slot = (uint16_t)(vq->used_idx + start) & (vq->num - 1);
		struct vring_used_elem *e = &vq->used->ring[slot];
		id = o->ids[j];
		j = j + 1 == vq->num ? 0 : j + 1;
		o->state[id] = VQ_ORD_FREE;
		if (!vq_order_batch_end(o, id, i + 1 == k))
			continue;
		e->id = id;
		e->len = o->len[id];
		start = i + 1;
		SIOV_STAT_ADD(vq->stats.order_entries, 1);
		if (unlikely_log(vq) &&
		    log_completion(vq, NULL, 0,
				   offsetof(struct vring_used, ring) + (uint64_t)slot * sizeof(*e)))
			return;
	}
	vq->used_idx = (uint16_t)(vq->used_idx + k);
	vq->used_unpublished = true;
	vq_mark_used(vq);
	/* As in siov_vq_complete_many: the runner's notify publishes, unless records wait. */
	if (vq->run.used && !q)
		return;
	if (q)
		q->last_batch_head = id;
	publish_used(vq);
	for (i = 0; q && i < k; i++)
		q->desc[vq_order_id(vq, i)].inflight = 0;
	if (q)
		q->used_idx = vq->used_idx;
}

void siov_vq_complete(struct siov_vq *vq, uint16_t head, const struct iovec *written, unsigned n,
		      uint32_t len)
{
	/* In order or packed: straight there, the per-request paths (complete_many's frame
	 * costs more); in order holds back early ones. */
	if (__builtin_expect(vq->ord != NULL, 0)) {
		vq_order_complete_one(vq, head, len, written, n);
	} else if (vq->packed) {
		vq_packed_complete_one(vq, head, len, written, n);
	} else {
		struct siov_vq_used_elem e = {head, len};
		siov_vq_complete_many(vq, &e, 1, written, n);
	}
}

void siov_vq_give_back(struct siov_vq *vq, unsigned n)
{
	if (vq->ord)
		vq_order_unpush(vq, n);
	if (vq->packed) {
		vq_packed_give_back(vq, n);
		return;
	}
	vq->last_avail_idx = (uint16_t)(vq->last_avail_idx - n);
	vq->avail_cached = (uint16_t)(vq->avail_cached + n);
	vq->last_pop = SIOV_VQ_POP_NONE;
}

bool siov_vq_log_ok(const struct siov_vq *vq)
{
	uint64_t used_len = offsetof(struct vring_used, ring) +
			    (uint64_t)vq->num * sizeof(struct vring_used_elem) + sizeof(uint16_t);

	if (!vq->log)
		return true;
	if (!siov_dirty_log_covers_table(vq->log, vq->mem))
		return false;
	/* A packed ring's used entries go into its descriptor ring, inside the table. */
	if (vq->packed)
		return !vq->log_used ||
		       siov_dirty_log_covers(vq->log, vq->log_used_gpa,
					     sizeof(struct vring_packed_desc_event));
	return !vq->log_used || siov_dirty_log_covers(vq->log, vq->log_used_gpa, used_len);
}

struct siov_vq *siov_vq_used_list_pop(struct siov_vq_used_list *l)
{
	struct siov_vq *vq = l->head;

	if (!vq)
		return NULL;
	l->head = vq->next_used;
	vq->next_used = NULL;
	vq->on_used_list = false;
	return vq;
}

void siov_vq_bind(struct siov_vq *vq, const struct siov_vq_runner *r)
{
	vq->run = *r;
	vq->on_used_list = false;
	vq->next_used = NULL;
}

void siov_vq_unbind(struct siov_vq *vq)
{
	/* The runner notifies before it lets go; publish anything it left, to be sure. */
	if (vq->ord && vq->ord->pend)
		vq_order_flush(vq);
	if (vq->packed)
		vq_packed_publish(vq);
	else
		publish_used(vq);
	memset(&vq->run, 0, sizeof(vq->run));
	vq->on_used_list = false;
	vq->next_used = NULL;
}

void siov_vq_notify(struct siov_vq *vq)
{
	uint16_t old, now;
	bool need;

	/* A round's used entries become visible together, here (both ring formats). */
	if (__builtin_expect(vq->ord != NULL, 0) && vq->ord->pend)
		vq_order_flush(vq);
	if (vq->packed)
		vq_packed_publish(vq);
	else
		publish_used(vq);
	if (!vq->used_dirty)
		return;
	vq->used_dirty = false;
	/* Order our used->idx store before reading the driver's suppression state. */
	__atomic_thread_fence(__ATOMIC_SEQ_CST);
	now = vq->used_idx;
	if (vq->packed) {
		need = vq_packed_need_notify(vq);
	} else if (vq->event_idx) {
		old = vq->signalled_used;
		need = !vq->signalled_used_valid ||
		       vring_need_event(__atomic_load_n(&vring_used_event(vq), __ATOMIC_RELAXED),
					now, old);
		vq->signalled_used = now;
		vq->signalled_used_valid = true;
	} else {
		need = !(__atomic_load_n(&vq->avail->flags, __ATOMIC_RELAXED) &
			 VRING_AVAIL_F_NO_INTERRUPT);
	}
	if (need && vq->call_fd >= 0) {
		eventfd_write(vq->call_fd, 1);
		SIOV_STAT_ADD(vq->stats.calls, 1);
	}
	if (unlikely_log(vq) && vq->log_fd >= 0)
		eventfd_write(vq->log_fd, 1);
}

bool siov_vq_has_work(struct siov_vq *vq)
{
	if (vq->packed)
		return vq_packed_has_avail(vq) || vq->resubmit_pos < vq->resubmit_num ||
		       vq->dev_wants_run;
	/* A ring that broke here has work: the pop that follows reports it. */
	return split_avail(vq) != 0 || vq->resubmit_pos < vq->resubmit_num || vq->dev_wants_run;
}

/* The flags and avail_event words are front-end memory as well. */
static void log_suppression(struct siov_vq *vq, uint64_t off)
{
	if (unlikely_log(vq) && vq_log_used(vq, off, sizeof(uint16_t)))
		siov_vq_break(vq, "used ring 0x%llx is outside the dirty log",
			      (unsigned long long)vq->log_used_gpa);
}

bool siov_vq_enable_notify(struct siov_vq *vq)
{
	if (vq->packed) {
		vq_packed_set_notify(vq, true);
	} else if (vq->event_idx) {
		__atomic_store_n(&vring_avail_event(vq), vq->last_avail_idx, __ATOMIC_RELAXED);
		log_suppression(vq, offsetof(struct vring_used, ring) +
					(uint64_t)vq->num * sizeof(struct vring_used_elem));
	} else {
		__atomic_and_fetch(&vq->used->flags, (uint16_t)~VRING_USED_F_NO_NOTIFY,
				   __ATOMIC_RELAXED);
		log_suppression(vq, offsetof(struct vring_used, flags));
	}
	vq->notify_enabled = true;
	/* Publish the request for kicks before looking at the ring once more. */
	__atomic_thread_fence(__ATOMIC_SEQ_CST);
	return siov_vq_has_work(vq);
}

void siov_vq_disable_notify(struct siov_vq *vq)
{
	vq->notify_enabled = false;
	if (vq->packed) {
		vq_packed_set_notify(vq, false);
		return;
	}
	/* With EVENT_IDX a stale avail_event already keeps the driver quiet. */
	if (!vq->event_idx) {
		__atomic_or_fetch(&vq->used->flags, (uint16_t)VRING_USED_F_NO_NOTIFY,
				  __ATOMIC_RELAXED);
		log_suppression(vq, offsetof(struct vring_used, flags));
	}
}
