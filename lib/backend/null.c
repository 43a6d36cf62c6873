/*
 * The null backend: a device of the configured size that accepts every
 * request and moves no data, like SPDK's null bdev or QEMU's null-co without
 * read-zeroes.  It measures the cost of everything in siov except the
 * storage.  Reads leave the caller's buffers as they were.
 */
#include "backend_impl.h"

static int null_open(struct siov_backend *bd, struct siov_err *err)
{
	(void)err;
	bd->can_discard = true;
	bd->can_write_zeroes = true;
	return 0;
}

static void null_close(struct siov_backend *bd)
{
	(void)bd;
}

static int null_submit(struct siov_backend *bd, struct siov_io_ctx *ctx, struct siov_io *io)
{
	bool rw = io->op == SIOV_IO_READ || io->op == SIOV_IO_WRITE;

	(void)bd;
	/* Deferred even though it is already done: never complete inside submit. */
	siov_io_complete_later(ctx, io, rw ? (int)io->len : 0);
	return 0;
}

const struct siov_backend_ops siov__backend_null_ops = {
    .type_name = "null",
    .open = null_open,
    .close = null_close,
    .submit = null_submit,
};
