/*
 * The per-engine I/O context: how a backend reaches its engine's io_uring.
 *
 * Backends that do real I/O (file) take SQEs from here and tag them with
 * their struct siov_io; the engine hands every CQE tagged SIOV_UD_IO back to
 * siov_io_ctx_handle_cqe().  Backends with no real I/O (null, ram) finish in
 * memory and park the result on the deferred list, which the engine drains
 * with siov_io_ctx_run_deferred() on its next pass, so that no callback ever
 * runs inside siov_backend_submit().
 *
 * A context belongs to one engine thread; nothing here takes a lock.
 */
#include <stddef.h>
#include <stdint.h>

#include <liburing.h>

#include "siov_internal/backend_module.h"
#include "siov_internal/log.h"

void siov_io_ctx_init(struct siov_io_ctx *ctx, struct io_uring *ring)
{
	ctx->ring = ring;
	ctx->done_head = NULL;
	ctx->done_tail = &ctx->done_head;
	ctx->unsubmitted = 0;
	ctx->sub_seq = 0;
}

struct io_uring_sqe *siov_io_ctx_get_sqe(struct siov_io_ctx *ctx)
{
	struct io_uring_sqe *sqe = io_uring_get_sqe(ctx->ring);

	if (!sqe) {
		/*
		 * The SQ is full of prepared entries: hand them to the kernel
		 * to make room.  If even that fails (the CQ is overflowing),
		 * the caller gets NULL and reports -EBUSY.
		 */
		if (io_uring_submit(ctx->ring) >= 0)
			ctx->unsubmitted = 0;
		sqe = io_uring_get_sqe(ctx->ring);
		if (!sqe)
			return NULL;
	}
	ctx->unsubmitted++;
	return sqe;
}

void siov_io_sqe_set_io(struct siov_io_ctx *ctx, struct io_uring_sqe *sqe, struct siov_io *io)
{
	io->sub_seq = ctx->sub_seq;
	/* struct siov_io is 8-byte aligned, so its low 3 bits carry the tag. */
	io_uring_sqe_set_data64(sqe, (uint64_t)(uintptr_t)io | SIOV_UD_IO);
}

void siov_io_complete_later(struct siov_io_ctx *ctx, struct siov_io *io, int res)
{
	io->bk_res = res;
	io->next = NULL;
	*ctx->done_tail = io;
	ctx->done_tail = &io->next;
}

unsigned siov_io_ctx_run_deferred(struct siov_io_ctx *ctx)
{
	struct siov_io *io = ctx->done_head, *next;
	unsigned n = 0;

	/*
	 * Detach the list first: a callback may submit again and queue a new
	 * completion, which must land on a fresh list (run on the next call)
	 * rather than extend this one, or a callback that always resubmits
	 * would keep the engine here forever.
	 */
	ctx->done_head = NULL;
	ctx->done_tail = &ctx->done_head;
	for (; io; io = next) {
		/* Read the link before the callback: it may reuse io at once. */
		next = io->next;
		io->next = NULL;
		io->cb(io, io->bk_res);
		n++;
	}
	return n;
}

void siov_io_ctx_handle_cqe(struct siov_io_ctx *ctx, struct io_uring_cqe *cqe)
{
	uint64_t ud = io_uring_cqe_get_data64(cqe);
	struct siov_io *io = (struct siov_io *)(uintptr_t)(ud & ~SIOV_UD_TAG_MASK);

	if ((ud & SIOV_UD_TAG_MASK) != SIOV_UD_IO || !io) {
		SIOV_WARN("io_ctx: CQE with user_data %#llx is not a backend I/O",
			  (unsigned long long)ud);
		return;
	}
	if (io->bd && io->bd->ops->complete)
		io->bd->ops->complete(io->bd, ctx, io, cqe->res);
	else
		io->cb(io, cqe->res);
}
