/*
 * The device-model interface: what a virtio device type (blk today, net next)
 * implements, in two tables.
 *
 * struct siov_dev_ops is the control side, used by the transport (vhost-user)
 * to negotiate features, serve config space and find the data path.
 * Transport-neutral: a future transport (vfio-user, say) uses the same table.
 *
 * struct siov_vq_ops is the data side, used by whoever runs the queue (an
 * engine).  The division of labour:
 *   - the virtqueue layer (virtqueue.h) reads the ring: siov_vq_pop() hands the
 *     device model a popped, validated, translated chain; siov_vq_complete()
 *     is the one path back (used element, used index, the dirty-log hook);
 *   - the device model says what a chain means: parses it, checks it, prices it
 *     against the queue's QoS (qos.h), starts backend I/O, completes it;
 *   - the runner schedules: budgets, polling, notifications.  The device model
 *     never sees the runner's state and never calls it; it reports what it did
 *     in struct siov_vq_work, and its completions reach the runner through the
 *     queue's used list (virtqueue.h).
 * A new device class is one new file behind these two tables.
 */
#ifndef SIOV_INTERNAL_DEVICE_H
#define SIOV_INTERNAL_DEVICE_H

#include <stdint.h>

#include "siov_internal/virtqueue.h"

struct siov_io_ctx;

struct siov_dev_ops {
	/* Device feature bits (the transport adds ring and protocol bits). */
	uint64_t (*features)(void *dev);
	/* Copies [off, off+len) of the config space into buf; bytes past it read 0. */
	void (*get_config)(void *dev, uint8_t *buf, uint32_t off, uint32_t len);
	/* A driver write to config space; -errno if refused. */
	int (*set_config)(void *dev, const uint8_t *buf, uint32_t off, uint32_t len);
	/* The negotiated features, before the queues start. */
	void (*set_features)(void *dev, uint64_t features);
	const struct siov_vq_ops *vq_ops;

	/* ---- optional: what a device other than blk needs of the transport ---- */
	/*
	 * Queues the device runs itself instead of an engine (net receive queues:
	 * senders fill them, under the device's lock); NULL: every queue is an
	 * engine's.  queue_start/queue_stop hand such a queue (mapped, with its
	 * fds) to the device and take it back (control thread; after stop returns
	 * nobody touches the ring).
	 */
	bool (*self_run)(void *dev, unsigned index);
	int (*queue_start)(void *dev, struct siov_vq *vq);
	void (*queue_stop)(void *dev, struct siov_vq *vq);
	/* What GET_QUEUE_NUM reports (net: queue pairs); NULL: the number of queues. */
	uint64_t (*queue_num)(void *dev);
	/* vhost-user protocol features the device can use, of the transport's; 0: all of them. */
	uint64_t protocol_features;
	/* A device-specific request (SEND_RARP, NET_SET_MTU): 0 done, -errno refused. */
	int (*message)(void *dev, uint32_t request, const void *payload, uint32_t size);
};

/* What one process() call did, for the runner's scheduler. */
struct siov_vq_work {
	unsigned started; /* requests taken from the ring and started */
	uint64_t
	    throttle_until; /* QoS: the next request waits until then (ns); 0 = not throttled */
	/* The device model's own: run the queue again at this time (held requests); 0 = no. */
	uint64_t wake_at;
};

/*
 * The device model's data path, called on the thread that runs the queue.
 * process() takes validated, translated chains from siov_vq_pop(), prices
 * them against vq->qos, starts them, and reports in *work; requests end with
 * siov_vq_complete().  A device model never sees who runs the queue.
 */
struct siov_vq_ops {
	/* Starts up to budget requests; *work is zeroed by the caller. */
	void (*process)(struct siov_vq *vq, struct siov_io_ctx *ctx, unsigned budget,
			struct siov_vq_work *work);
	/*
	 * The queue leaves its runner: free per-queue request memory (nothing in
	 * flight).  Requests park_held() kept stay, for the next runner.
	 */
	void (*release)(struct siov_vq *vq);
	/*
	 * Optional.  The queue is leaving its runner while the device model holds
	 * requests it will not complete yet (an error policy that holds).  If the
	 * ring stops (!keep), it forgets them, uncompleted, so that their in-flight
	 * records survive and the driver's next session resubmits them; returns 0.
	 * If the queue only moves to another runner (keep: same ring, same
	 * session, and nobody else would ever send them), it keeps them for the
	 * next runner's process() and returns how many it keeps: they stay
	 * counted in vq->stats.inflight.  Called on the runner's thread.
	 */
	unsigned (*park_held)(struct siov_vq *vq, bool keep);
};

#endif
