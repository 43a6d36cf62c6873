/*
 * What the split and packed halves of the virtqueue layer share (private to
 * lib/virtio): adding a validated, translated buffer to a chain, reporting a
 * completion to the runner, dirty-log marks, and the packed entry points
 * virtqueue.c dispatches to when the front end negotiated RING_PACKED.
 */
#ifndef SIOV_VIRTIO_VQ_IMPL_H
#define SIOV_VIRTIO_VQ_IMPL_H

#include "siov_internal/virtqueue.h"

/* Dirty logging is off except while a front end migrates. */
#define unlikely_log(vq) __builtin_expect((vq)->log != NULL, 0)

/* Longest indirect table we accept (descriptors). */
#define SIOV_VQ_MAX_INDIRECT 1024

static inline void vq_chain_reset(struct siov_vq_chain *c, uint16_t head)
{
	c->head = head;
	c->out_num = c->in_num = 0;
	c->out_len = c->in_len = 0;
}

/* Translates one buffer into c's iovecs; breaks the queue and returns -errno if it cannot. */
int vq_chain_add(struct siov_vq *vq, struct siov_vq_chain *c, uint64_t addr, uint32_t len,
		 bool writable);
/* Puts the queue on its runner's used list, once per notification (inline: per request). */
static inline void vq_list_used(struct siov_vq *vq)
{
	struct siov_vq_used_list *l = vq->run.used;

	if (!l || vq->on_used_list)
		return;
	vq->on_used_list = true;
	vq->next_used = l->head;
	l->head = vq;
}

/* The used ring advanced: vq_list_used(), and the notify looks at the driver's wishes. */
static inline void vq_mark_used(struct siov_vq *vq)
{
	vq->used_dirty = true;
	vq_list_used(vq);
}
/* Marks the pages of used-ring bytes [off, off+len) when the front end asked for it. */
int vq_log_used(struct siov_vq *vq, uint64_t off, uint64_t len);
/* Marks the buffers a completion wrote; breaks the queue and returns -ERANGE if it cannot. */
int vq_log_written(struct siov_vq *vq, const struct iovec *written, unsigned n);

/*
 * VIRTIO_F_IN_ORDER (virtqueue_inorder.c): the buffers popped and not yet
 * used, oldest first.  ids[] is circular from first; state, len and full are
 * indexed by head (split) or buffer id (packed).
 */
enum { VQ_ORD_FREE, VQ_ORD_POPPED, VQ_ORD_DONE };

struct siov_vq_order {
	unsigned first, count; /* ids[first .. first+count) mod num */
	bool pend;	       /* completions since the last flush: the runner's notify flushes */
	uint16_t *ids;
	uint8_t *state;
	uint32_t *len;	/* the used length, once done */
	uint32_t *full; /* device-writable bytes of the chain: a skipped buffer's used length */
};

/* The i-th oldest buffer in flight (i < num).  No division: this runs per completion. */
static inline uint16_t vq_order_id(const struct siov_vq *vq, unsigned i)
{
	unsigned k = vq->ord->first + i;

	return vq->ord->ids[k < vq->num ? k : k - vq->num];
}

/*
 * Of a run of buffers done, buffer id ends a batch (gets a used entry of its
 * own) if it is the run's last, or if the driver could not assume its used
 * length: a buffer left out of the ring counts as wholly written.
 */
static inline bool vq_order_batch_end(const struct siov_vq_order *o, uint16_t id, bool last)
{
	return last || o->len[id] != o->full[id];
}

int vq_order_alloc(struct siov_vq *vq);
void vq_order_free(struct siov_vq *vq);
/*
 * Records a chain just popped as the youngest in flight; breaks the queue on a
 * duplicate.  Inline: siov_vq_pop() runs it per request.
 */
static inline int vq_order_push(struct siov_vq *vq, const struct siov_vq_chain *c)
{
	struct siov_vq_order *o = vq->ord;
	unsigned t = o->first + o->count;

	/* A head in flight twice would be used twice: the driver reused it too early. */
	if (c->head >= vq->num || o->state[c->head] != VQ_ORD_FREE || o->count >= vq->num) {
		siov_vq_break(vq, "head %u made available again while it is in flight", c->head);
		return -EINVAL;
	}
	o->state[c->head] = VQ_ORD_POPPED;
	o->full[c->head] = c->in_len > UINT32_MAX ? UINT32_MAX : (uint32_t)c->in_len;
	o->ids[t < vq->num ? t : t - vq->num] = c->head;
	o->count++;
	return 0;
}
/* Forgets the n youngest (given back to the ring). */
void vq_order_unpush(struct siov_vq *vq, unsigned n);
void vq_order_complete(struct siov_vq *vq, const struct siov_vq_used_elem *elems, unsigned nelems,
		       const struct iovec *written, unsigned n);
/* One completion (siov_vq_complete): vq_order_complete() without the element array. */
void vq_order_complete_one(struct siov_vq *vq, uint16_t id, uint32_t len,
			   const struct iovec *written, unsigned n);
/* Publishes the run of done buffers at the front (the runner's notify, or at once). */
void vq_order_flush(struct siov_vq *vq);
/* Ring halves: publish the k oldest buffers (all done) as batches, then the index. */
void vq_split_publish_order(struct siov_vq *vq, unsigned k);
void vq_packed_publish_order(struct siov_vq *vq, unsigned k);

/* The packed ring (virtqueue_packed.c), behind the same public calls. */
int vq_packed_map(struct siov_vq *vq);
int vq_packed_pop(struct siov_vq *vq, struct siov_vq_chain *c);
int vq_packed_pop_resubmit(struct siov_vq *vq, struct siov_vq_chain *c);
void vq_packed_unpop(struct siov_vq *vq);
void vq_packed_give_back(struct siov_vq *vq, unsigned n);
void vq_packed_complete(struct siov_vq *vq, const struct siov_vq_used_elem *elems, unsigned nelems,
			const struct iovec *written, unsigned n);
void vq_packed_complete_one(struct siov_vq *vq, uint16_t id, uint32_t len,
			    const struct iovec *written, unsigned n);
/* Makes the used entries written since the last call visible to the driver. */
void vq_packed_publish(struct siov_vq *vq);
bool vq_packed_need_notify(struct siov_vq *vq);
bool vq_packed_has_avail(const struct siov_vq *vq);
void vq_packed_set_notify(struct siov_vq *vq, bool on);

#endif
