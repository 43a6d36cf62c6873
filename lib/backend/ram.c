/*
 * The RAM backend: a device held in anonymous memory, for tests and for
 * measuring siov without a disk.  The mapping is MAP_NORESERVE so a large
 * device costs nothing until it is written, and discarded pages go back to
 * the kernel.  Contents are lost when the backend is closed.
 *
 * Several engines may copy in and out at once without a lock: like a disk,
 * the device gives no ordering between overlapping requests in flight.
 */
#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "backend_impl.h"

struct ram {
	char *base;
	size_t page;
};

static int ram_open(struct siov_backend *bd, struct siov_err *err)
{
	struct ram *ram;
	int ret;

	if (bd->size > SIZE_MAX)
		return siov_err_set(err, -EINVAL, "backend '%s': size %llu is too large",
				    bd->conf.name, (unsigned long long)bd->size);
	ram = calloc(1, sizeof(*ram));
	if (!ram)
		return siov_err_set(err, -ENOMEM, "backend '%s': out of memory", bd->conf.name);
	ram->page = (size_t)sysconf(_SC_PAGESIZE);
	ram->base = mmap(NULL, bd->size, PROT_READ | PROT_WRITE,
			 MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
	if (ram->base == MAP_FAILED) {
		ret = -errno;
		siov_err_set(err, ret, "backend '%s': cannot map %llu bytes: %s", bd->conf.name,
			     (unsigned long long)bd->size, strerror(errno));
		goto err_mmap;
	}
	bd->priv = ram;
	bd->can_discard = true;
	bd->can_write_zeroes = true;
	return 0;

err_mmap:
	free(ram);
	return ret;
}

static void ram_close(struct siov_backend *bd)
{
	struct ram *ram = bd->priv;

	if (!ram)
		return;
	munmap(ram->base, bd->size);
	free(ram);
	bd->priv = NULL;
}

/*
 * Zeroes [off, off + len): whole pages are dropped, so they read back as
 * zeros and stop using memory; the ragged edges are cleared by hand.
 */
static void ram_zero(struct ram *ram, uint64_t off, uint64_t len)
{
	uint64_t end = off + len;
	uint64_t first = (off + ram->page - 1) / ram->page * ram->page;
	uint64_t last = end / ram->page * ram->page;

	if (first >= last) {
		memset(ram->base + off, 0, len);
		return;
	}
	memset(ram->base + off, 0, first - off);
	if (madvise(ram->base + first, last - first, MADV_DONTNEED) < 0)
		memset(ram->base + first, 0, last - first);
	memset(ram->base + last, 0, end - last);
}

static int ram_submit(struct siov_backend *bd, struct siov_io_ctx *ctx, struct siov_io *io)
{
	struct ram *ram = bd->priv;
	int res = 0;

	switch (io->op) {
	case SIOV_IO_READ:
		siov_iov_from_buf(io->iov, io->iovcnt, 0, ram->base + io->offset, io->len);
		res = (int)io->len;
		break;
	case SIOV_IO_WRITE:
		siov_iov_to_buf(io->iov, io->iovcnt, 0, ram->base + io->offset, io->len);
		res = (int)io->len;
		break;
	case SIOV_IO_FLUSH:
		break;
	case SIOV_IO_DISCARD:
	case SIOV_IO_WRITE_ZEROES:
		ram_zero(ram, io->offset, io->len);
		break;
	}
	siov_io_complete_later(ctx, io, res);
	return 0;
}

const struct siov_backend_ops siov__backend_ram_ops = {
    .type_name = "ram",
    .open = ram_open,
    .close = ram_close,
    .submit = ram_submit,
};
