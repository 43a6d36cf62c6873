/*
 * The Ceph RBD backend: an image in a Ceph pool through librbd, siov's way
 * onto an existing distributed store rather than a home-made one.
 *
 * I/O is rbd_aio_readv/writev/discard/write_zeroes/flush straight from and
 * into the caller's buffers.  librbd calls the completion on one of its own
 * threads; the completion is handed to the engine that submitted the
 * request as a CQE on that engine's io_uring (IORING_OP_MSG_RING through a
 * small ring of this backend's, under a lock: librbd runs callbacks on more
 * than one thread), so the engine finishes it on its own thread, exactly as
 * it finishes a file I/O.
 *
 * Fencing: a writable image is opened with its exclusive lock taken
 * (rbd_lock_acquire in exclusive mode, so that it is not handed to another
 * client on request, as krbd's "exclusive" option does).  If a previous
 * owner (a siovd that was SIGKILLed) still holds the lock, librbd breaks it
 * once that owner's watch on the image has expired and blocklists it first
 * (rbd_blocklist_on_break_lock, on by default): its writes still in flight
 * can no longer reach the OSDs, so none lands after ours.  A live owner keeps
 * the lock and the open fails with EBUSY after timeout_ms.
 */
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <liburing.h>
#include <rados/librados.h>
#include <rbd/librbd.h>

#include "backend_impl.h"
#include "siov_internal/log.h"

#define RBD_RING_ENTRIES 64
#define RBD_POST_TRIES	 1000

struct rbd_be {
	rados_t cluster;
	rados_ioctx_t ioctx;
	rbd_image_t image;
	bool connected;
	pthread_mutex_t post_lock; /* librbd completes on several threads */
	struct io_uring ring;	   /* posts completions to the engines' rings */
	bool ring_ok;
};

/* ---- Completions (librbd's threads) ---- */

/* Puts (io, res) on the CQ of the engine ring whose fd the io carries. */
static void post(struct rbd_be *be, struct siov_io *io, int res)
{
	struct io_uring_sqe *sqe;
	struct io_uring_cqe *cqe;
	int tries, rc = -EAGAIN;

	pthread_mutex_lock(&be->post_lock);
	for (tries = 0; rc < 0 && tries < RBD_POST_TRIES; tries++) {
		sqe = io_uring_get_sqe(&be->ring);
		if (!sqe)
			break;
		io_uring_prep_msg_ring(sqe, io->bk_pending, (unsigned)res,
				       (uint64_t)(uintptr_t)io | SIOV_UD_IO, 0);
		if (io_uring_submit_and_wait(&be->ring, 1) < 0 ||
		    io_uring_wait_cqe(&be->ring, &cqe) < 0)
			break;
		rc = cqe->res;
		io_uring_cqe_seen(&be->ring, cqe);
		/* The engine's CQ is full: it is reaping; give it a moment. */
		if (rc < 0)
			nanosleep(&(struct timespec){0, 100000}, NULL);
	}
	pthread_mutex_unlock(&be->post_lock);
	if (rc < 0)
		SIOV_ERR("backend '%s': cannot hand a completion to its engine: %s",
			 io->bd->conf.name, strerror(-rc));
}

static void rbd_done(rbd_completion_t c, void *arg)
{
	struct siov_io *io = arg;
	ssize_t r = rbd_aio_get_return_value(c);
	int res;

	rbd_aio_release(c);
	if (r < 0)
		res = (int)r;
	else if (io->op == SIOV_IO_READ || io->op == SIOV_IO_WRITE)
		res = (int)io->len; /* librbd fills the whole range (holes read as zeros) */
	else
		res = 0;
	post(io->bd->priv, io, res);
}

/* ---- Submission (engines) ---- */

static int rbd_submit(struct siov_backend *bd, struct siov_io_ctx *ctx, struct siov_io *io)
{
	struct rbd_be *be = bd->priv;
	rbd_completion_t c;
	int rc;

	io->bk_pending = ctx->ring->ring_fd; /* where the completion goes */
	rc = rbd_aio_create_completion(io, rbd_done, &c);
	if (rc < 0)
		return rc;
	switch (io->op) {
	case SIOV_IO_READ:
		rc = rbd_aio_readv(be->image, io->iov, io->iovcnt, io->offset, c);
		break;
	case SIOV_IO_WRITE:
		rc = rbd_aio_writev(be->image, io->iov, io->iovcnt, io->offset, c);
		break;
	case SIOV_IO_FLUSH:
		rc = rbd_aio_flush(be->image, c);
		break;
	case SIOV_IO_DISCARD:
		rc = rbd_aio_discard(be->image, io->offset, io->len, c);
		break;
	case SIOV_IO_WRITE_ZEROES:
		rc = rbd_aio_write_zeroes(be->image, io->offset, io->len, c, 0, 0);
		break;
	default:
		rc = -EINVAL;
	}
	if (rc < 0)
		rbd_aio_release(c);
	return rc;
}

/* ---- Open and close (control thread) ---- */

static int set_conf(struct rbd_be *be, const char *key, const char *val)
{
	return rados_conf_set(be->cluster, key, val);
}

/*
 * How long rados_connect may wait for a monitor, in seconds: the backend's
 * timeout, but at most RBD_CONNECT_MAX_S.  backend_create runs on siovd's
 * control thread, so every RPC and vhost-user session waits while it
 * connects; and the answer must come before siovctl's own 30 s default, or
 * the user sees "no answer" instead of the reason.
 */
#define RBD_CONNECT_MAX_S 10

static unsigned int timeout_s(const struct siov_backend_conf *c)
{
	return ((c->timeout_ms ? c->timeout_ms : SIOV_BACKEND_TIMEOUT_MS_DEFAULT) + 999) / 1000;
}

/* What to check when rados_connect failed with rc (other than a timeout). */
static const char *connect_hint(int rc)
{
	if (rc == -EACCES || rc == -EPERM || rc == -ENOENT)
		return " - check the key(ring) of that client";
	return "";
}

static int cluster_connect(struct siov_backend *bd, struct rbd_be *be, struct siov_err *err)
{
	const struct siov_backend_conf *c = &bd->conf;
	const char *conf = c->ceph_conf[0] ? c->ceph_conf : NULL;
	unsigned int op_s = timeout_s(c),
		     mount_s = op_s < RBD_CONNECT_MAX_S ? op_s : RBD_CONNECT_MAX_S;
	char tmo[32];
	int rc;

	rc = rados_create(&be->cluster, c->ceph_id[0] ? c->ceph_id : NULL);
	if (rc < 0)
		return siov_err_set(err, rc, "backend '%s': rados_create: %s", c->name,
				    strerror(-rc));
	rc = rados_conf_read_file(be->cluster, conf);
	if (rc < 0)
		return siov_err_set(err, rc, "backend '%s': cannot read Ceph configuration %s: %s",
				    c->name, conf ? conf : "(default search path)", strerror(-rc));
	/* A lost cluster must not hang siovd: connection and each operation time out. */
	snprintf(tmo, sizeof(tmo), "%u", mount_s);
	set_conf(be, "client_mount_timeout", tmo);
	snprintf(tmo, sizeof(tmo), "%u", op_s);
	set_conf(be, "rados_osd_op_timeout", tmo);
	set_conf(be, "rados_mon_op_timeout", tmo);
	rc = rados_connect(be->cluster);
	if (rc == -ETIMEDOUT)
		return siov_err_set(err, rc,
				    "backend '%s': cannot connect to the Ceph cluster as client.%s "
				    "(%s): no monitor answered within %u s - check mon host, that "
				    "the monitors are up, and this client's auth and key: %s",
				    c->name, c->ceph_id[0] ? c->ceph_id : "admin",
				    conf ? conf : "default ceph.conf", mount_s, strerror(-rc));
	if (rc < 0)
		return siov_err_set(err, rc,
				    "backend '%s': cannot connect to the Ceph cluster as client.%s "
				    "(%s)%s: %s",
				    c->name, c->ceph_id[0] ? c->ceph_id : "admin",
				    conf ? conf : "default ceph.conf", connect_hint(rc),
				    strerror(-rc));
	be->connected = true;
	return 0;
}

static int image_open(struct siov_backend *bd, struct rbd_be *be, struct siov_err *err)
{
	const struct siov_backend_conf *c = &bd->conf;
	int rc;

	rc = rados_ioctx_create(be->cluster, c->pool, &be->ioctx);
	if (rc < 0)
		return siov_err_set(err, rc, "backend '%s': pool '%s'%s: %s", c->name, c->pool,
				    rc == -ENOENT ? " does not exist" : "", strerror(-rc));
	rc = c->readonly ? rbd_open_read_only(be->ioctx, c->image, &be->image, NULL)
			 : rbd_open(be->ioctx, c->image, &be->image, NULL);
	if (rc < 0) {
		be->image = NULL;
		return siov_err_set(err, rc, "backend '%s': image '%s' in pool '%s'%s: %s", c->name,
				    c->image, c->pool, rc == -ENOENT ? " does not exist" : "",
				    strerror(-rc));
	}
	return 0;
}

/* Says who held the lock before us: librbd blocklists that client when it breaks the lock. */
static void previous_owner(struct siov_backend *bd, struct rbd_be *be)
{
	char *owners[4];
	size_t n = 4, i;
	rbd_lock_mode_t mode;

	if (rbd_lock_get_owners(be->image, &mode, owners, &n) < 0 || n == 0)
		return;
	for (i = 0; i < n; i++)
		SIOV_WARN("backend '%s': image %s/%s is locked by %s; taking the lock over "
			  "(a dead owner is blocklisted first, a live one keeps it)",
			  bd->conf.name, bd->conf.pool, bd->conf.image, owners[i]);
	rbd_lock_get_owners_cleanup(owners, n);
}

/*
 * The exclusive lock, retried until timeout_ms: a dead owner's watch has to
 * expire before librbd may break its lock (and blocklist it).
 */
static int lock_take(struct siov_backend *bd, struct rbd_be *be, struct siov_err *err)
{
	const struct siov_backend_conf *c = &bd->conf;
	uint64_t end = siov_now_ns() + (uint64_t)(c->timeout_ms ? c->timeout_ms : 30000) * 1000000;
	uint64_t features = 0;
	int rc, tries = 0;

	if (rbd_get_features(be->image, &features) == 0 &&
	    !(features & RBD_FEATURE_EXCLUSIVE_LOCK)) {
		SIOV_WARN(
		    "backend '%s': image %s/%s has no exclusive-lock feature: another client "
		    "could write it at the same time (rbd feature enable %s/%s exclusive-lock)",
		    c->name, c->pool, c->image, c->pool, c->image);
		return 0;
	}
	previous_owner(bd, be);
	while ((rc = rbd_lock_acquire(be->image, RBD_LOCK_MODE_EXCLUSIVE)) < 0 &&
	       siov_now_ns() < end) {
		if (tries++ == 0)
			SIOV_WARN("backend '%s': image %s/%s is locked by another client (%s); "
				  "waiting for it to release the lock or to be fenced",
				  c->name, c->pool, c->image, strerror(-rc));
		nanosleep(&(struct timespec){0, 500000000}, NULL);
	}
	if (rc < 0)
		return siov_err_set(err, -EBUSY,
				    "backend '%s': cannot take the exclusive lock of %s/%s: %s (a "
				    "live client holds it)",
				    c->name, c->pool, c->image, strerror(-rc));
	if (tries)
		SIOV_INFO("backend '%s': took the exclusive lock of %s/%s from its previous owner",
			  c->name, c->pool, c->image);
	return 0;
}

static void be_free(struct rbd_be *be)
{
	if (be->image)
		rbd_close(be->image); /* flushes, releases the lock */
	if (be->ioctx)
		rados_ioctx_destroy(be->ioctx);
	if (be->cluster)
		rados_shutdown(be->cluster);
	if (be->ring_ok)
		io_uring_queue_exit(&be->ring);
	pthread_mutex_destroy(&be->post_lock);
	free(be);
}

static int rbd_be_open(struct siov_backend *bd, struct siov_err *err)
{
	const struct siov_backend_conf *c = &bd->conf;
	struct rbd_be *be = calloc(1, sizeof(*be));
	uint64_t size;
	int rc;

	if (!be)
		return siov_err_set(err, -ENOMEM, "backend '%s': out of memory", c->name);
	pthread_mutex_init(&be->post_lock, NULL);
	rc = io_uring_queue_init(RBD_RING_ENTRIES, &be->ring, 0);
	if (rc < 0) {
		siov_err_set(err, rc, "backend '%s': io_uring: %s", c->name, strerror(-rc));
		goto err;
	}
	be->ring_ok = true;
	if ((rc = cluster_connect(bd, be, err)) < 0 || (rc = image_open(bd, be, err)) < 0)
		goto err;
	if (!c->readonly && (rc = lock_take(bd, be, err)) < 0)
		goto err;
	rc = rbd_get_size(be->image, &size);
	if (rc < 0) {
		siov_err_set(err, rc, "backend '%s': rbd_get_size: %s", c->name, strerror(-rc));
		goto err;
	}
	if (c->size > size || size % 512) {
		rc = siov_err_set(err, -EINVAL,
				  "backend '%s': image %s/%s has %llu bytes (size %llu asked; "
				  "need a multiple of 512)",
				  c->name, c->pool, c->image, (unsigned long long)size,
				  (unsigned long long)c->size);
		goto err;
	}
	bd->size = c->size ? c->size : size;
	bd->can_discard = true;
	bd->can_write_zeroes = true;
	bd->priv = be;
	SIOV_INFO("backend '%s': rbd %s/%s, %llu bytes%s", c->name, c->pool, c->image,
		  (unsigned long long)bd->size,
		  c->readonly ? ", read-only" : ", exclusive lock held");
	return 0;

err:
	be_free(be);
	return rc;
}

static void rbd_be_close(struct siov_backend *bd)
{
	if (bd->priv)
		be_free(bd->priv);
	bd->priv = NULL;
}

const struct siov_backend_ops siov__backend_rbd_ops = {
    .type_name = "rbd",
    .open = rbd_be_open,
    .close = rbd_be_close,
    .submit = rbd_submit,
};
