/*
 * In-order use of buffers (VIRTIO_F_IN_ORDER, virtio 1.1+ "In-order use of
 * descriptors", split and packed rings).  When the front end negotiated it,
 * the driver may assume that buffers come back in the order it made them
 * available, and the device may tell it about a batch with a single used
 * entry: the id of the batch's last buffer, the used index (split) or ring
 * position (packed) advanced past all of them.  The buffers left out are
 * taken as wholly used, so a batch ends at every buffer whose used length is
 * not its full writable length.
 *
 * Backends complete out of order (io_uring on a file does), so this file keeps
 * the buffers in flight in pop order: a completion marks its buffer done, and
 * the run of done buffers at the front is written out when the runner
 * notifies the queue at the end of its round (at once without a runner): one
 * pass and one used entry per round, not one per completion, which is what
 * makes in order cheaper than out of order.  The rest wait for older ones.
 * Everything still goes through siov_vq_complete(), the one
 * completion path: the dirty log marks the data when the device model
 * completes (before any index that could publish it), and the in-flight
 * records stay set until the buffer is really used, so a restart resubmits
 * what the driver never saw and nothing twice.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "siov_internal/virtqueue.h"
#include "vq_impl.h"

int vq_order_alloc(struct siov_vq *vq)
{
	struct siov_vq_order *o;
	size_t n = vq->num;

	vq_order_free(vq);
	o = calloc(1, sizeof(*o) + n * (2 * sizeof(uint32_t) + sizeof(uint16_t) + 1));
	if (!o)
		return -ENOMEM;
	o->len = (uint32_t *)(o + 1);
	o->full = o->len + n;
	o->ids = (uint16_t *)(o->full + n);
	o->state = (uint8_t *)(o->ids + n);
	vq->ord = o;
	return 0;
}

void vq_order_free(struct siov_vq *vq)
{
	free(vq->ord);
	vq->ord = NULL;
}

void vq_order_unpush(struct siov_vq *vq, unsigned n)
{
	struct siov_vq_order *o = vq->ord;

	for (; n && o->count; n--)
		o->state[vq_order_id(vq, --o->count)] = VQ_ORD_FREE;
}

/*
 * The done buffers at the front, published; they leave the table (the ring
 * halves free their states as they write them out: one pass over them).
 */
void vq_order_flush(struct siov_vq *vq)
{
	struct siov_vq_order *o = vq->ord;
	unsigned k = 0, j = o->first;

	o->pend = false;
	while (k < o->count && o->state[o->ids[j]] == VQ_ORD_DONE) {
		k++;
		j = j + 1 == vq->num ? 0 : j + 1;
	}
	if (!k)
		return;
	if (vq->packed)
		vq_packed_publish_order(vq, k);
	else
		vq_split_publish_order(vq, k);
	o->first = j;
	o->count -= k;
	SIOV_STAT_ADD(vq->stats.order_used, k);
}

/* Marks buffer id done with its used length; false (queue broken) if it is not in flight. */
static inline bool order_done(struct siov_vq *vq, uint16_t id, uint32_t len)
{
	struct siov_vq_order *o = vq->ord;

	if (id >= vq->num || o->state[id] != VQ_ORD_POPPED) {
		siov_vq_break(vq, "completion of buffer %u, which is not in flight", id);
		return false;
	}
	o->state[id] = VQ_ORD_DONE;
	o->len[id] = len;
	return true;
}

/* After n completions: counted as held if the oldest is still out; flushed now or at notify. */
static inline void order_after(struct siov_vq *vq, unsigned n)
{
	struct siov_vq_order *o = vq->ord;

	if (o->count && o->state[o->ids[o->first]] != VQ_ORD_DONE)
		SIOV_STAT_ADD(vq->stats.order_held, n);
	/* The runner's notify (siov_vq_notify) writes the round's run out. */
	if (vq->run.used) {
		o->pend = true;
		vq_list_used(vq);
		return;
	}
	vq_order_flush(vq);
}

void vq_order_complete(struct siov_vq *vq, const struct siov_vq_used_elem *elems, unsigned nelems,
		       const struct iovec *written, unsigned n)
{
	unsigned i;

	/* Marked now: the index that publishes these bytes may be written by a later completion. */
	if (unlikely_log(vq) && vq_log_written(vq, written, n))
		return;
	for (i = 0; i < nelems; i++)
		if (!order_done(vq, elems[i].head, elems[i].len))
			return;
	if (nelems)
		order_after(vq, nelems);
}

void vq_order_complete_one(struct siov_vq *vq, uint16_t id, uint32_t len,
			   const struct iovec *written, unsigned n)
{
	if (unlikely_log(vq) && vq_log_written(vq, written, n))
		return;
	if (order_done(vq, id, len))
		order_after(vq, 1);
}
