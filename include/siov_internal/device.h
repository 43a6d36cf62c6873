/*
 * The device-model interface: what a virtio device type (blk today) gives the
 * transport (vhost-user) so that the transport can negotiate features, serve
 * config space and hand the device's queues to engines.  Transport-neutral:
 * a future transport (vfio-user, say) would use the same table.
 */
#ifndef SIOV_INTERNAL_DEVICE_H
#define SIOV_INTERNAL_DEVICE_H

#include <stdint.h>

struct siov_vq_ops;

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
};

#endif
