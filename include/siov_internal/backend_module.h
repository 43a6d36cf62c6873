/*
 * The provider half of the backend interface: what a backend implementation
 * (lib/backend/null.c, ram.c, file.c, and every backend to come) fills in and
 * may call.  Consumers (the VDCM, device models, engines) include
 * siov_internal/backend.h only and see struct siov_backend as opaque; this
 * header gives the implementation the struct and its table of operations, as
 * SPDK's bdev_module.h does for bdev.h.
 *
 * How a backend plugs in: one file defining a const struct siov_backend_ops,
 * a value in enum siov_backend_type, and an entry in lib/backend/backend.c's
 * table.  siov_backend_submit() has already validated every I/O (shape, range,
 * read-only, discard/write-zeroes support) before ops->submit runs, so the
 * backend can trust the request's shape.  The async contract of backend.h
 * applies to ops->submit: an error return means the callback never runs; 0
 * means it runs exactly once, later, never from inside submit.
 */
#ifndef SIOV_INTERNAL_BACKEND_MODULE_H
#define SIOV_INTERNAL_BACKEND_MODULE_H

#include <stdbool.h>
#include <stdint.h>

#include "siov_internal/backend.h"

struct siov_backend_ops {
	const char *type_name;
	/* Opens the resources of bd->conf; sets size, block_size, can_* and priv. */
	int (*open)(struct siov_backend *bd, struct siov_err *err);
	void (*close)(struct siov_backend *bd);
	int (*submit)(struct siov_backend *bd, struct siov_io_ctx *ctx, struct siov_io *io);
	/* Optional: consumes a CQE of an io this backend submitted; may resubmit through ctx. */
	void (*complete)(struct siov_backend *bd, struct siov_io_ctx *ctx, struct siov_io *io,
			 int res);
};

struct siov_backend {
	struct siov_backend_conf conf;
	const struct siov_backend_ops *ops;
	uint64_t size;
	uint32_t block_size;
	bool can_discard;
	bool can_write_zeroes;
	bool direct;
	void *priv;
};

/* Marks sqe, taken from ctx, as belonging to io (user_data, tag SIOV_UD_IO). */
void siov_io_sqe_set_io(struct siov_io_ctx *ctx, struct io_uring_sqe *sqe, struct siov_io *io);
/* Queues io's completion with res for the next siov_io_ctx_run_deferred(). */
void siov_io_complete_later(struct siov_io_ctx *ctx, struct siov_io *io, int res);

#endif
