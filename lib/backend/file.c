/*
 * The file backend: a regular file or a block device, read and written
 * through the engine's io_uring straight from and into the caller's buffers
 * (guest memory), with no bounce copy.
 *
 * Two descriptors are kept open.  One has O_DIRECT, where the file system
 * allows it, and carries every request whose offset, buffer addresses and
 * lengths meet the direct-I/O alignment; the other is buffered and carries
 * the rest, so a guest's odd request is slow rather than refused.  Mixing the
 * two is coherent on Linux: a direct write flushes and invalidates the page
 * cache over its range, and a direct read flushes dirty cached pages first.
 *
 * A request that the kernel completes short (a read crossing the end of a
 * regular file, a transfer split by the kernel's size cap) is resubmitted for
 * the remainder from the completion hook; a read that meets end-of-file
 * inside the backend's size is filled with zeros, as if the file were sparse.
 * The state of a request in flight lives in the io itself (bk_res counts the
 * bytes done, bk_pending holds FILE_F_* flags), so submit is lock-free and
 * any number of engines may use one backend at once.
 */
#include <errno.h>
#include <fcntl.h>
#include <linux/fs.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <liburing.h>

#include "backend_impl.h"
#include "siov_internal/log.h"

/* Flags in io->bk_pending while a request is in flight. */
#define FILE_F_DIRECT	1 /* the last SQE went to the O_DIRECT descriptor */
#define FILE_F_BUFFERED 2 /* O_DIRECT refused this request: stay buffered */
#define FILE_F_PUNCH	4 /* write-zeroes fell back to punching a hole */

struct file {
	int fd;	 /* buffered */
	int dfd; /* O_DIRECT, or -1 */
	bool is_bdev;
	bool created;	   /* made by this open: removed again if the open fails */
	uint32_t mem_mask; /* direct I/O alignment of buffer addresses, minus one */
	uint32_t off_mask; /* direct I/O alignment of offsets and lengths, minus one */
};

/* ---- Opening ---- */

/*
 * open(2) without blocking on a FIFO named in a hostile configuration; the
 * caller refuses anything but a file or a device, and the descriptor is made
 * blocking again because io_uring answers -EAGAIN on an O_NONBLOCK file
 * instead of waiting for the I/O.
 */
static int open_nb(const char *path, int flags)
{
	int fd = open(path, flags | O_NONBLOCK | O_CLOEXEC);

	if (fd >= 0 && fcntl(fd, F_SETFL, flags & ~O_NONBLOCK) < 0) {
		close(fd);
		return -1;
	}
	return fd;
}

static int file_create(struct siov_backend *bd, struct file *f, struct siov_err *err)
{
	const char *name = bd->conf.name, *path = bd->conf.path;
	int ret;

	f->fd = open(path, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
	if (f->fd < 0)
		return siov_err_set(err, -errno, "backend '%s': cannot create '%s': %s", name, path,
				    strerror(errno));
	f->created = true;
	/* ftruncate allocates nothing: the file starts sparse. */
	if (ftruncate(f->fd, (off_t)bd->size) < 0) {
		ret = siov_err_set(err, -errno, "backend '%s': cannot size '%s' to %llu bytes: %s",
				   name, path, (unsigned long long)bd->size, strerror(errno));
		goto err_truncate;
	}
	return 0;

err_truncate:
	close(f->fd);
	f->fd = -1;
	unlink(path);
	f->created = false;
	return ret;
}

/* Opens the buffered descriptor, creating a missing file when a size is given. */
static int file_open_buffered(struct siov_backend *bd, struct file *f, struct siov_err *err)
{
	const char *name = bd->conf.name, *path = bd->conf.path;

	f->fd = open_nb(path, bd->conf.readonly ? O_RDONLY : O_RDWR);
	if (f->fd >= 0)
		return 0;
	if (errno != ENOENT)
		return siov_err_set(err, -errno, "backend '%s': cannot open '%s': %s", name, path,
				    strerror(errno));
	if (bd->conf.readonly || bd->size == 0)
		return siov_err_set(err, -ENOENT,
				    "backend '%s': '%s' does not exist (give a size, and no "
				    "readonly, to create it)",
				    name, path);
	return file_create(bd, f, err);
}

/* The size of the file or device behind f->fd, in bytes. */
static int file_dev_size(struct siov_backend *bd, struct file *f, const struct stat *st,
			 uint64_t *out, struct siov_err *err)
{
	if (S_ISREG(st->st_mode)) {
		*out = (uint64_t)st->st_size;
		return 0;
	}
	if (ioctl(f->fd, BLKGETSIZE64, out) < 0)
		return siov_err_set(err, -errno, "backend '%s': cannot read the size of '%s': %s",
				    bd->conf.name, bd->conf.path, strerror(errno));
	return 0;
}

/*
 * Settles bd->size: the configured size, which the file must already hold
 * (growing a user's existing file behind their back is not ours to do), or
 * else the whole file, rounded down to whole 512-byte sectors.
 */
static int file_settle_size(struct siov_backend *bd, uint64_t dev_size, struct siov_err *err)
{
	const char *name = bd->conf.name, *path = bd->conf.path;

	if (bd->size == 0) {
		bd->size = dev_size / 512 * 512;
		if (bd->size == 0)
			return siov_err_set(err, -EINVAL,
					    "backend '%s': '%s' is empty (%llu bytes); give a size",
					    name, path, (unsigned long long)dev_size);
		return 0;
	}
	if (dev_size < bd->size)
		return siov_err_set(err, -EINVAL,
				    "backend '%s': '%s' is %llu bytes, smaller than the size %llu "
				    "asked for (siov does not grow an existing file)",
				    name, path, (unsigned long long)dev_size,
				    (unsigned long long)bd->size);
	return 0;
}

static bool pow2(uint32_t v)
{
	return v != 0 && (v & (v - 1)) == 0;
}

/*
 * Learns what alignment O_DIRECT needs here: statx(STATX_DIOALIGN) says it
 * exactly (Linux 6.1+); without it assume the logical block size for a
 * device and 4096 for a file, which every common file system accepts.
 * Returns false when the file cannot do direct I/O at all.
 */
static bool file_dio_align(struct file *f, uint32_t lbs, uint32_t *mem, uint32_t *off)
{
	*mem = *off = f->is_bdev ? lbs : 4096;
#ifdef STATX_DIOALIGN
	struct statx stx;

	if (statx(f->fd, "", AT_EMPTY_PATH, STATX_DIOALIGN, &stx) == 0 &&
	    (stx.stx_mask & STATX_DIOALIGN)) {
		if (stx.stx_dio_offset_align == 0)
			return false;
		*mem = stx.stx_dio_mem_align;
		*off = stx.stx_dio_offset_align;
	}
#endif
	/* Stricter than 4096 (or nonsense) is not worth the trouble. */
	return pow2(*mem) && pow2(*off) && *mem <= 4096 && *off <= 4096;
}

/*
 * Opens the O_DIRECT descriptor if the file system allows it.  It is opened
 * by path a second time, so check that it is still the same file.
 */
static void file_open_direct(struct siov_backend *bd, struct file *f, const struct stat *st,
			     uint32_t lbs)
{
	uint32_t mem, off;
	struct stat dst;

	f->dfd = -1;
	if (!file_dio_align(f, lbs, &mem, &off))
		return;
	f->dfd = open_nb(bd->conf.path, (bd->conf.readonly ? O_RDONLY : O_RDWR) | O_DIRECT);
	if (f->dfd < 0) {
		SIOV_INFO("backend '%s': no O_DIRECT on '%s' (%s): buffered I/O only",
			  bd->conf.name, bd->conf.path, strerror(errno));
		return;
	}
	if (fstat(f->dfd, &dst) < 0 || dst.st_dev != st->st_dev || dst.st_ino != st->st_ino) {
		close(f->dfd);
		f->dfd = -1;
		return;
	}
	f->mem_mask = mem - 1;
	f->off_mask = off - 1;
}

/* The logical block size: the device's, or 512 for a file. */
static int file_lbs(struct siov_backend *bd, struct file *f, uint32_t *lbs, struct siov_err *err)
{
	int v;

	*lbs = 512;
	if (!f->is_bdev)
		return 0;
	if (ioctl(f->fd, BLKSSZGET, &v) < 0)
		return siov_err_set(err, -errno,
				    "backend '%s': cannot read the block size of '%s': %s",
				    bd->conf.name, bd->conf.path, strerror(errno));
	*lbs = v > 512 ? (uint32_t)v : 512;
	return 0;
}

/* Everything after the buffered descriptor is open: type, size, O_DIRECT. */
static int file_probe(struct siov_backend *bd, struct file *f, struct siov_err *err)
{
	uint64_t dev_size;
	struct stat st;
	uint32_t lbs;
	int ret;

	if (fstat(f->fd, &st) < 0)
		return siov_err_set(err, -errno, "backend '%s': cannot stat '%s': %s",
				    bd->conf.name, bd->conf.path, strerror(errno));
	if (!S_ISREG(st.st_mode) && !S_ISBLK(st.st_mode))
		return siov_err_set(
		    err, -EINVAL, "backend '%s': '%s' is neither a regular file nor a block device",
		    bd->conf.name, bd->conf.path);
	f->is_bdev = S_ISBLK(st.st_mode);
	ret = file_dev_size(bd, f, &st, &dev_size, err);
	if (ret == 0)
		ret = file_settle_size(bd, dev_size, err);
	if (ret == 0)
		ret = file_lbs(bd, f, &lbs, err);
	if (ret < 0)
		return ret;
	file_open_direct(bd, f, &st, lbs);
	/* The guest sees 4096-byte blocks only where 512 would be slow or refused. */
	bd->block_size = (lbs > 512 || (f->dfd >= 0 && f->off_mask >= 512)) ? 4096 : 512;
	bd->direct = f->dfd >= 0;
	return 0;
}

static void file_close(struct siov_backend *bd)
{
	struct file *f = bd->priv;

	if (!f)
		return;
	if (f->dfd >= 0)
		close(f->dfd);
	if (f->fd >= 0)
		close(f->fd);
	free(f);
	bd->priv = NULL;
}

static int file_open(struct siov_backend *bd, struct siov_err *err)
{
	struct file *f;
	int ret;

	f = calloc(1, sizeof(*f));
	if (!f)
		return siov_err_set(err, -ENOMEM, "backend '%s': out of memory", bd->conf.name);
	f->dfd = -1;
	bd->priv = f;
	ret = file_open_buffered(bd, f, err);
	if (ret < 0)
		goto err_open;
	ret = file_probe(bd, f, err);
	if (ret < 0)
		goto err_probe;
	bd->can_discard = true;
	bd->can_write_zeroes = true;
	return 0;

err_probe:
	if (f->created)
		unlink(bd->conf.path);
err_open:
	file_close(bd);
	return ret;
}

/* ---- Requests ---- */

/* True when O_DIRECT can take this transfer as it stands. */
static bool dio_fits(const struct file *f, const struct iovec *iov, int iovcnt, uint64_t off)
{
	int i;

	if (f->dfd < 0 || (off & f->off_mask))
		return false;
	for (i = 0; i < iovcnt; i++) {
		if (((uintptr_t)iov[i].iov_base & f->mem_mask) || (iov[i].iov_len & f->off_mask))
			return false;
	}
	return true;
}

/*
 * Prepares sqe for the rest of io: segments i.. in place, or just part of
 * segment i.  A single segment goes as IORING_OP_READ/WRITE, as fio does by
 * default: the kernel then takes the buffer straight from the SQE instead of
 * copying and checking an iovec array (import_iovec) for every request.
 */
static void rw_prep(struct io_uring_sqe *sqe, int fd, const struct siov_io *io, int i,
		    const struct iovec *part)
{
	uint64_t off = io->offset + (uint64_t)io->bk_res;
	unsigned n = (unsigned)(io->iovcnt - i);

	if (!part && n == 1)
		part = &io->iov[i];
	if (part && io->op == SIOV_IO_READ)
		io_uring_prep_read(sqe, fd, part->iov_base, (unsigned)part->iov_len, off);
	else if (part)
		io_uring_prep_write(sqe, fd, part->iov_base, (unsigned)part->iov_len, off);
	else if (io->op == SIOV_IO_READ)
		io_uring_prep_readv(sqe, fd, io->iov + i, n, off);
	else
		io_uring_prep_writev(sqe, fd, io->iov + i, n, off);
}

/*
 * Issues the part of a READ or WRITE not yet done (io->bk_res bytes are).
 * From a segment boundary the caller's iovecs are used in place; from the
 * middle of a segment only the rest of that segment is sent, so that the
 * caller's iovec array is never modified.  Each piece picks its descriptor
 * by its own alignment.
 */
static int rw_issue(struct file *f, struct siov_io_ctx *ctx, struct siov_io *io)
{
	size_t skip = (size_t)io->bk_res;
	int i = siov_iov_seek(io->iov, io->iovcnt, &skip);
	uint64_t off = io->offset + (uint64_t)io->bk_res;
	struct io_uring_sqe *sqe;
	struct iovec part;
	bool direct;

	if (i >= io->iovcnt)
		return -EIO; /* cannot happen: bk_res < len, and len is the iov sum */
	part.iov_base = (char *)io->iov[i].iov_base + skip;
	part.iov_len = io->iov[i].iov_len - skip;
	direct =
	    !(io->bk_pending & FILE_F_BUFFERED) &&
	    (skip ? dio_fits(f, &part, 1, off) : dio_fits(f, io->iov + i, io->iovcnt - i, off));
	sqe = siov_io_ctx_get_sqe(ctx);
	if (!sqe)
		return -EBUSY;
	rw_prep(sqe, direct ? f->dfd : f->fd, io, i, skip ? &part : NULL);
	io->bk_pending = direct ? io->bk_pending | FILE_F_DIRECT : io->bk_pending & ~FILE_F_DIRECT;
	siov_io_sqe_set_io(ctx, sqe, io);
	return 0;
}

static int falloc_issue(struct file *f, struct siov_io_ctx *ctx, struct siov_io *io, int mode)
{
	struct io_uring_sqe *sqe = siov_io_ctx_get_sqe(ctx);

	if (!sqe)
		return -EBUSY;
	io_uring_prep_fallocate(sqe, f->fd, mode | FALLOC_FL_KEEP_SIZE, (off_t)io->offset,
				(off_t)io->len);
	siov_io_sqe_set_io(ctx, sqe, io);
	return 0;
}

static int flush_issue(struct file *f, struct siov_io_ctx *ctx, struct siov_io *io)
{
	struct io_uring_sqe *sqe = siov_io_ctx_get_sqe(ctx);

	if (!sqe)
		return -EBUSY;
	io_uring_prep_fsync(sqe, f->fd, IORING_FSYNC_DATASYNC);
	siov_io_sqe_set_io(ctx, sqe, io);
	return 0;
}

static int file_submit(struct siov_backend *bd, struct siov_io_ctx *ctx, struct siov_io *io)
{
	struct file *f = bd->priv;

	/* Nothing to move: still complete later, never inside submit. */
	if (io->len == 0 && io->op != SIOV_IO_FLUSH) {
		siov_io_complete_later(ctx, io, 0);
		return 0;
	}
	switch (io->op) {
	case SIOV_IO_READ:
	case SIOV_IO_WRITE:
		return rw_issue(f, ctx, io);
	case SIOV_IO_FLUSH:
		return flush_issue(f, ctx, io);
	case SIOV_IO_DISCARD:
		/* On a block device the kernel turns a punched hole into a discard. */
		return falloc_issue(f, ctx, io, FALLOC_FL_PUNCH_HOLE);
	case SIOV_IO_WRITE_ZEROES:
		return falloc_issue(f, ctx, io, FALLOC_FL_ZERO_RANGE);
	}
	return -EINVAL;
}

/* A READ or WRITE CQE: finish, or issue the rest. */
static void rw_complete(struct siov_backend *bd, struct siov_io_ctx *ctx, struct siov_io *io,
			int res)
{
	struct file *f = bd->priv;
	uint64_t left = io->len - (uint64_t)io->bk_res;

	if (res == -EINVAL && (io->bk_pending & FILE_F_DIRECT)) {
		/* The file system wants more alignment than it told us: go buffered. */
		io->bk_pending |= FILE_F_BUFFERED;
		res = rw_issue(f, ctx, io);
		if (res == 0)
			return;
	}
	if (res < 0) {
		io->cb(io, res);
		return;
	}
	if (res == 0 && io->op == SIOV_IO_READ && !f->is_bdev) {
		/* End of file inside the backend's size: the rest reads as zeros. */
		siov_iov_zero_from(io->iov, io->iovcnt, (size_t)io->bk_res);
		io->cb(io, (int)io->len);
		return;
	}
	if (res == 0) {
		/* A device that moves nothing would have us loop forever. */
		io->cb(io, -EIO);
		return;
	}
	io->bk_res += (int)SIOV_MIN((uint64_t)res, left);
	if ((uint64_t)io->bk_res >= io->len) {
		io->cb(io, (int)io->len);
		return;
	}
	res = rw_issue(f, ctx, io);
	if (res < 0)
		io->cb(io, res);
}

static void file_complete(struct siov_backend *bd, struct siov_io_ctx *ctx, struct siov_io *io,
			  int res)
{
	if (io->op == SIOV_IO_READ || io->op == SIOV_IO_WRITE) {
		rw_complete(bd, ctx, io, res);
		return;
	}
	if (io->op == SIOV_IO_WRITE_ZEROES && res == -EOPNOTSUPP &&
	    !(io->bk_pending & FILE_F_PUNCH)) {
		/* No ZERO_RANGE here (or on this device); a punched hole reads back zeros. */
		io->bk_pending |= FILE_F_PUNCH;
		res = falloc_issue(bd->priv, ctx, io, FALLOC_FL_PUNCH_HOLE);
		if (res == 0)
			return;
	}
	io->cb(io, res > 0 ? 0 : res);
}

const struct siov_backend_ops siov__backend_file_ops = {
    .type_name = "file",
    .open = file_open,
    .close = file_close,
    .submit = file_submit,
    .complete = file_complete,
};
