/*
 * virtio-blk device model: a VDEV's config space and request handling over a
 * window [offset, offset+size) of a backend.  Requests never reach outside the
 * window: a request past its end fails with VIRTIO_BLK_S_IOERR.
 */
#ifndef SIOV_INTERNAL_VIRTIO_BLK_H
#define SIOV_INTERNAL_VIRTIO_BLK_H

#include <stdbool.h>
#include <stdint.h>

#include "siov_internal/device.h"

struct siov_backend;
struct siov_blk;

struct siov_blk_conf {
	const char *name; /* also the serial GET_ID returns (first 20 bytes) */
	struct siov_backend *backend;
	uint64_t offset;
	uint64_t size;
	bool readonly;
	uint16_t queues;
};

int siov_blk_create(const struct siov_blk_conf *conf, struct siov_blk **out);
void siov_blk_destroy(struct siov_blk *blk);

extern const struct siov_dev_ops siov_blk_dev_ops;

#endif
