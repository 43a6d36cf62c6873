/*
 * The backend layer's front door: configuration checks, open and close, and
 * siov_backend_submit(), which validates every I/O once (the request fields
 * come from a guest, through the virtio layer, and are hostile) before it
 * dispatches to the backend's struct siov_backend_ops.  The backends
 * themselves (null.c, ram.c, file.c) can then trust the request's shape.
 */
#include <errno.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>

#include "backend_impl.h"

/* The most iovecs one I/O may carry: the kernel's IOV_MAX for readv. */
#define SIOV_BACKEND_IOV_MAX 1024

static const struct siov_backend_ops *const backend_ops[] = {
    [SIOV_BACKEND_NULL] = &siov__backend_null_ops,
    [SIOV_BACKEND_RAM] = &siov__backend_ram_ops,
    [SIOV_BACKEND_FILE] = &siov__backend_file_ops,
    [SIOV_BACKEND_NBD] = &siov__backend_nbd_ops,
    [SIOV_BACKEND_RBD] = &siov__backend_rbd_ops,
    [SIOV_BACKEND_MIRROR] = &siov__backend_mirror_ops,
};

static const struct siov_backend_ops *ops_of(enum siov_backend_type type)
{
	if ((unsigned)type >= SIOV_ARRAY_SIZE(backend_ops))
		return NULL;
	return backend_ops[type];
}

int siov_backend_type_parse(const char *s, enum siov_backend_type *out)
{
	unsigned i;

	for (i = 0; s && i < SIOV_ARRAY_SIZE(backend_ops); i++) {
		if (backend_ops[i] && strcmp(s, backend_ops[i]->type_name) == 0) {
			*out = (enum siov_backend_type)i;
			return 0;
		}
	}
	return -EINVAL;
}

const char *siov_backend_type_name(enum siov_backend_type type)
{
	const struct siov_backend_ops *ops = ops_of(type);

	return ops ? ops->type_name : "unknown";
}

/* Backends whose size comes from a server. */
static bool is_remote(enum siov_backend_type type)
{
	return type == SIOV_BACKEND_NBD || type == SIOV_BACKEND_RBD;
}

/* A non-empty, NUL-terminated string field. */
static bool str_ok(const char *s, size_t size)
{
	return s[0] != '\0' && strnlen(s, size) < size;
}

/* Checks what does not depend on the backend type's own resources. */
static int conf_check(const struct siov_backend_conf *conf, struct siov_err *err)
{
	const char *name = conf->name;

	if (strnlen(conf->name, sizeof(conf->name)) == sizeof(conf->name) ||
	    !siov_name_valid(conf->name))
		return siov_err_set(err, -EINVAL,
				    "backend name is invalid: use 1 to %d of [A-Za-z0-9_.-], "
				    "not starting with a dot",
				    SIOV_NAME_MAX - 1);
	if (!ops_of(conf->type))
		return siov_err_set(
		    err, -EINVAL, "backend '%s': unknown type %d (use null, ram, file, nbd or rbd)",
		    name, (int)conf->type);
	if (conf->size % 512 != 0)
		return siov_err_set(err, -EINVAL,
				    "backend '%s': size %llu is not a multiple of 512", name,
				    (unsigned long long)conf->size);
	if (conf->size > INT64_MAX)
		return siov_err_set(err, -EINVAL, "backend '%s': size %llu is too large", name,
				    (unsigned long long)conf->size);
	if (conf->type != SIOV_BACKEND_FILE && conf->type != SIOV_BACKEND_MIRROR &&
	    conf->size == 0 && !is_remote(conf->type))
		return siov_err_set(err, -EINVAL, "backend '%s': a %s backend needs a size", name,
				    siov_backend_type_name(conf->type));
	if (conf->type == SIOV_BACKEND_NBD && !str_ok(conf->uri, sizeof(conf->uri)))
		return siov_err_set(err, -EINVAL, "backend '%s': an nbd backend needs a uri", name);
	if (conf->type == SIOV_BACKEND_RBD &&
	    (!str_ok(conf->pool, sizeof(conf->pool)) || !str_ok(conf->image, sizeof(conf->image))))
		return siov_err_set(err, -EINVAL,
				    "backend '%s': an rbd backend needs a pool and an image", name);
	if (conf->type == SIOV_BACKEND_FILE &&
	    (conf->path[0] == '\0' ||
	     strnlen(conf->path, sizeof(conf->path)) == sizeof(conf->path)))
		return siov_err_set(err, -EINVAL, "backend '%s': a file backend needs a path",
				    name);
	return 0;
}

int siov_backend_open(const struct siov_backend_conf *conf, struct siov_backend **out,
		      struct siov_err *err)
{
	struct siov_backend *bd;
	int ret;

	if (!conf || !out)
		return siov_err_set(err, -EINVAL, "backend: no configuration");
	ret = conf_check(conf, err);
	if (ret < 0)
		return ret;
	bd = calloc(1, sizeof(*bd));
	if (!bd)
		return siov_err_set(err, -ENOMEM, "backend '%s': out of memory", conf->name);
	bd->conf = *conf;
	bd->ops = ops_of(conf->type);
	bd->size = conf->size;
	bd->block_size = 512;
	ret = bd->ops->open(bd, err);
	if (ret < 0)
		goto err_open;
	*out = bd;
	return 0;

err_open:
	free(bd);
	return ret;
}

void siov_backend_close(struct siov_backend *bd)
{
	if (!bd)
		return;
	bd->ops->close(bd);
	free(bd);
}

const struct siov_backend_conf *siov_backend_conf(const struct siov_backend *bd)
{
	return &bd->conf;
}

uint64_t siov_backend_size(const struct siov_backend *bd)
{
	return bd->size;
}

uint32_t siov_backend_block_size(const struct siov_backend *bd)
{
	return bd->block_size;
}

bool siov_backend_can_discard(const struct siov_backend *bd)
{
	return bd->can_discard;
}

bool siov_backend_can_write_zeroes(const struct siov_backend *bd)
{
	return bd->can_write_zeroes;
}

bool siov_backend_is_direct(const struct siov_backend *bd)
{
	return bd->direct;
}

/*
 * A READ or WRITE must describe its buffer exactly: a sane count, no NULL
 * base under a non-empty segment, and lengths that add up to len without
 * wrapping.  len must also fit the int the callback reports it in.
 */
static int iov_check(const struct siov_io *io)
{
	uint64_t sum = 0;
	int i;

	if (io->iovcnt <= 0 || io->iovcnt > SIOV_BACKEND_IOV_MAX || !io->iov)
		return -EINVAL;
	if (io->len > INT_MAX)
		return -EINVAL;
	for (i = 0; i < io->iovcnt; i++) {
		if (io->iov[i].iov_len > INT_MAX || (!io->iov[i].iov_base && io->iov[i].iov_len))
			return -EINVAL;
		sum += io->iov[i].iov_len; /* at most 1024 * INT_MAX: cannot wrap */
	}
	return sum == io->len ? 0 : -EINVAL;
}

static int range_check(const struct siov_backend *bd, const struct siov_io *io)
{
	/* Written so that offset + len is never computed: it could wrap. */
	if (io->offset > bd->size || io->len > bd->size - io->offset)
		return -EINVAL;
	return 0;
}

static int rw_check(const struct siov_backend *bd, const struct siov_io *io)
{
	int ret = iov_check(io);

	return ret < 0 ? ret : range_check(bd, io);
}

static int io_check(const struct siov_backend *bd, const struct siov_io *io)
{
	switch (io->op) {
	case SIOV_IO_READ:
		return rw_check(bd, io);
	case SIOV_IO_WRITE:
		if (bd->conf.readonly)
			return -EROFS;
		return rw_check(bd, io);
	case SIOV_IO_FLUSH:
		return 0;
	case SIOV_IO_DISCARD:
	case SIOV_IO_WRITE_ZEROES:
		if (bd->conf.readonly)
			return -EROFS;
		if (io->op == SIOV_IO_DISCARD ? !bd->can_discard : !bd->can_write_zeroes)
			return -EOPNOTSUPP;
		return range_check(bd, io);
	}
	return -EINVAL;
}

int siov_backend_submit(struct siov_backend *bd, struct siov_io_ctx *ctx, struct siov_io *io)
{
	int ret;

	if (!bd || !ctx || !io || !io->cb)
		return -EINVAL;
	ret = io_check(bd, io);
	if (ret < 0)
		return ret;
	io->bd = bd;
	io->bk_pending = 0;
	io->bk_res = 0;
	io->next = NULL;
	return bd->ops->submit(bd, ctx, io);
}
