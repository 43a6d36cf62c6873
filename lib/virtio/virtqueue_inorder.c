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
 * the buffers in flight in pop order: a completion marks its buffer done and
 * writes out the run of done buffers at the front, if any (visible at the
 * runner's notify, like every completion); the rest wait for the older ones.
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

int vq_order_push(struct siov_vq *vq, const struct siov_vq_chain *c)
{
	struct siov_vq_order *o = vq->ord;

	/* A head in flight twice would be used twice: the driver reused it too early. */
	if (c->head >= vq->num || o->state[c->head] != VQ_ORD_FREE || o->count >= vq->num) {
		siov_vq_break(vq, "head %u made available again while it is in flight", c->head);
		return -EINVAL;
	}
	o->state[c->head] = VQ_ORD_POPPED;
	o->full[c->head] = c->in_len > UINT32_MAX ? UINT32_MAX : (uint32_t)c->in_len;
	o->ids[o->first + o->count < vq->num ? o->first + o->count
					     : o->first + o->count - vq->num] = c->head;
	o->count++;
	return 0;
}

void vq_order_unpush(struct siov_vq *vq, unsigned n)
{
	struct siov_vq_order *o = vq->ord;

	for (; n && o->count; n--)
		o->state[vq_order_id(vq, --o->count)] = VQ_ORD_FREE;
}

/* The done buffers at the front, published; they leave the table. */
static void flush(struct siov_vq *vq)
{
	struct siov_vq_order *o = vq->ord;
	unsigned k = 0, i;

	while (k < o->count && o->state[vq_order_id(vq, k)] == VQ_ORD_DONE)
		k++;
	if (!k)
		return;
	if (vq->packed)
		vq_packed_publish_order(vq, k);
	else
		vq_split_publish_order(vq, k);
	for (i = 0; i < k; i++)
		o->state[vq_order_id(vq, i)] = VQ_ORD_FREE;
	o->first = o->first + k < vq->num ? o->first + k : o->first + k - vq->num;
	o->count -= k;
	SIOV_STAT_ADD(vq->stats.order_used, k);
}

void vq_order_complete(struct siov_vq *vq, const struct siov_vq_used_elem *elems, unsigned nelems,
		       const struct iovec *written, unsigned n)
{
	struct siov_vq_order *o = vq->ord;
	unsigned i;

	/* Marked now: the index that publishes these bytes may be written by a later completion. */
	if (unlikely_log(vq) && vq_log_written(vq, written, n))
		return;
	for (i = 0; i < nelems; i++) {
		uint16_t id = elems[i].head;
		if (id >= vq->num || o->state[id] != VQ_ORD_POPPED) {
			siov_vq_break(vq, "completion of buffer %u, which is not in flight", id);
			return;
		}
		o->state[id] = VQ_ORD_DONE;
		o->len[id] = elems[i].len;
	}
	if (nelems && o->count && o->state[o->ids[o->first]] != VQ_ORD_DONE)
		SIOV_STAT_ADD(vq->stats.order_held, nelems);
	flush(vq);
}
