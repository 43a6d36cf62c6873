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

/*
 * What a request that fails on the backend does (QEMU's werror/rerror,
 * dm-multipath's queue_if_no_path): REPORT completes it with an I/O error;
 * HOLD keeps it when the error is one a backend recovers from (no space, I/O
 * error, lost connection, timeout), stops the queue from taking new requests,
 * and retries the held requests in order on siov_blk_resume(), every second
 * by itself (a backend that came back), and fails them as REPORT would once
 * they have been held longer than the timeout.
 */
enum siov_error_policy { SIOV_ERROR_REPORT, SIOV_ERROR_HOLD };

struct siov_blk_hold_stats {
	uint64_t held;	      /* requests held right now */
	uint64_t held_total;  /* requests ever held (a retry that fails again counts again) */
	uint64_t hold_events; /* times a queue started holding */
	uint64_t timed_out;   /* held requests failed after the timeout */
	int last_error;	      /* -errno of the last held failure, 0 if none */
	uint64_t since_ns;    /* when the queues started holding (monotonic), 0 = not holding */
};

struct siov_blk_conf {
	const char *name; /* also the serial GET_ID returns (first 20 bytes) */
	struct siov_backend *backend;
	uint64_t offset;
	uint64_t size;
	bool readonly;
	uint16_t queues;
	enum siov_error_policy error_policy;
	uint32_t hold_timeout_ms; /* HOLD: 0 = hold until resumed */
};

int siov_blk_create(const struct siov_blk_conf *conf, struct siov_blk **out);
void siov_blk_destroy(struct siov_blk *blk);
/* Control thread; takes effect at the queues' next pass.  REPORT fails what is held. */
void siov_blk_set_error_policy(struct siov_blk *blk, enum siov_error_policy p, uint32_t timeout_ms);
/* Control thread: retry the held requests now. */
void siov_blk_resume(struct siov_blk *blk);
void siov_blk_hold_stats(const struct siov_blk *blk, struct siov_blk_hold_stats *out);

/*
 * Changing the backend under running queues (vdev_move): pause stops the
 * queues from starting requests and waits up to timeout_ms for every request
 * in flight to end; -EBUSY if they do not (requests held by the error policy,
 * a stuck backend), with the queues running again.  While paused the driver
 * sees a stall, never an error; switch swaps the backend and the window's
 * offset, resume_queues lets the queues go on.  Control thread.
 */
int siov_blk_pause(struct siov_blk *blk, unsigned timeout_ms);
void siov_blk_switch(struct siov_blk *blk, struct siov_backend *bd, uint64_t offset);
void siov_blk_unpause(struct siov_blk *blk);

extern const struct siov_dev_ops siov_blk_dev_ops;

#endif
