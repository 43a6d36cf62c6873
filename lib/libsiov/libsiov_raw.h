/*
 * libsiov's low-level door for hostile-input tests, in the test-only static
 * library libsiov_test (never installed, not in libsiov.so): a
 * vhost-user front end that misbehaves on purpose.  It sends any message with
 * any fds, and writes any descriptor or avail entry into a queue's ring, so a
 * test can hand a back end descriptor loops, out-of-range indices, addresses
 * outside its memory table, a malformed memory table or a truncated message.
 *
 * These calls bypass every check the public API makes, and the library's
 * accounting: once a test has written to a queue through here, use that queue
 * only through here (siov_reap() on it will call the queue broken, -EPROTO,
 * when a used entry names a head the library did not submit).  The same
 * threading rules apply as for the public API.
 */
#ifndef SIOV_LIBSIOV_RAW_H
#define SIOV_LIBSIOV_RAW_H

#include <stdint.h>
#include <linux/virtio_ring.h>

#include "siov/libsiov.h"
#include "siov/vhost_user.h"

/*
 * A bare connection: connects to @path and negotiates nothing, so the test
 * drives the whole conversation with siov_raw_send()/siov_raw_recv().
 * Close it with siov_dev_close().
 */
int siov_raw_connect(const char *path, unsigned timeout_ms, struct siov_dev **out);

/*
 * Sends one message exactly as given: header fields, @size payload bytes
 * (which may disagree with what @request expects) and @nfds fds (at most 8).
 * The fds stay the caller's.  Returns 0 or -errno (-ENOTCONN: peer gone).
 */
int siov_raw_send(struct siov_dev *dev, uint32_t request, uint32_t flags, const void *payload,
		  uint32_t size, const int *fds, unsigned nfds);

/*
 * Receives one message within @timeout_ms (-ETIMEDOUT otherwise).  Up to 8 fds
 * that came with it are stored in @fds (the caller closes them), their count
 * in *@nfds; @fds and @nfds may be NULL to close them at once.
 */
int siov_raw_recv(struct siov_dev *dev, struct siov_vu_msg *msg, int *fds, unsigned *nfds,
		  int timeout_ms);

/* Where a started queue's ring lives, for tests that read or write it directly. */
struct siov_raw_ring {
	unsigned num;
	struct vring_desc *desc;
	struct vring_avail *avail;
	struct vring_used *used;
	void *mem; /* the queue's part of the ring region */
	size_t mem_len;
	int kick_fd;
	int call_fd;
};
int siov_raw_ring(struct siov_queue *q, struct siov_raw_ring *ring);

/* Writes descriptor @index (< num) with any fields, next and flags included. */
int siov_raw_desc(struct siov_queue *q, unsigned index, uint64_t addr, uint32_t len, uint16_t flags,
		  uint16_t next);

/*
 * Appends @head (any value, even >= num) to the avail ring and publishes the
 * new avail index; no kick.  Returns the published index.
 */
int siov_raw_avail_push(struct siov_queue *q, uint16_t head);

/* Publishes any avail index, e.g. one that runs far ahead of the entries. */
void siov_raw_avail_set_idx(struct siov_queue *q, uint16_t idx);

/* Writes the kick eventfd, whatever the device asked for. */
int siov_raw_kick(struct siov_queue *q);

/* The used index the device has published. */
uint16_t siov_raw_used_idx(const struct siov_queue *q);

#endif
