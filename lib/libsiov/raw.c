/*
 * The hostile front end's primitives (libsiov_raw.h): thin and unchecked on
 * purpose, since their job is to put into the socket and the rings what a
 * well-behaved front end never would.  Only the test's own memory is guarded:
 * a descriptor index must fall inside our table, as writing past it would
 * corrupt the test rather than the back end under test.
 */
#include <errno.h>
#include <stdlib.h>
#include <unistd.h>

#include "libsiov_int.h"
#include "libsiov_raw.h"

int siov_raw_connect(const char *path, unsigned timeout_ms, struct siov_dev **out)
{
	struct siov_dev *dev = calloc(1, sizeof(*dev));
	int rc;

	if (!dev)
		return -ENOMEM;
	dev->timeout_ms = timeout_ms ? timeout_ms : 5000;
	dev->log_fd = -1;
	pthread_mutex_init(&dev->lock, NULL);
	rc = siov__connect(path, dev->timeout_ms, &dev->sock);
	if (rc) {
		free(dev);
		return rc;
	}
	*out = dev;
	return 0;
}

int siov_raw_send(struct siov_dev *dev, uint32_t request, uint32_t flags, const void *payload,
		  uint32_t size, const int *fds, unsigned nfds)
{
	return siov__vu_send(dev, request, flags, payload, size, fds, nfds);
}

int siov_raw_recv(struct siov_dev *dev, struct siov_vu_msg *msg, int *fds, unsigned *nfds,
		  int timeout_ms)
{
	return siov__vu_recv(dev, msg, fds, nfds, timeout_ms);
}

int siov_raw_ring(struct siov_queue *q, struct siov_raw_ring *ring)
{
	*ring = (struct siov_raw_ring){.num = q->num,
				       .desc = q->desc,
				       .avail = q->avail,
				       .used = q->used,
				       .mem = q->ring_mem,
				       .mem_len = q->ring_len,
				       .kick_fd = q->kick_fd,
				       .call_fd = q->call_fd};
	return 0;
}

int siov_raw_desc(struct siov_queue *q, unsigned index, uint64_t addr, uint32_t len, uint16_t flags,
		  uint16_t next)
{
	if (index >= q->num)
		return -EINVAL;
	q->desc[index] =
	    (struct vring_desc){.addr = addr, .len = len, .flags = flags, .next = next};
	return 0;
}

int siov_raw_avail_push(struct siov_queue *q, uint16_t head)
{
	q->avail->ring[q->avail_idx & q->mask] = head;
	q->avail_idx++;
	q->avail_pub = q->avail_idx;
	__atomic_store_n(&q->avail->idx, q->avail_idx, __ATOMIC_RELEASE);
	return q->avail_idx;
}

void siov_raw_avail_set_idx(struct siov_queue *q, uint16_t idx)
{
	q->avail_idx = idx;
	q->avail_pub = idx;
	__atomic_store_n(&q->avail->idx, idx, __ATOMIC_RELEASE);
}

int siov_raw_kick(struct siov_queue *q)
{
	uint64_t one = 1;

	return write(q->kick_fd, &one, sizeof(one)) < 0 ? -errno : 0;
}

uint16_t siov_raw_used_idx(const struct siov_queue *q)
{
	return __atomic_load_n(&q->used->idx, __ATOMIC_ACQUIRE);
}
