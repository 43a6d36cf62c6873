/*
 * The NBD backend: a remote disk reached through libnbd (nbd://, nbds://
 * with TLS, nbd+unix://), for siov's "IOV gateway over Ethernet".
 *
 * One connection per backend, driven by a thread of its own (the "worker"),
 * not by the engines: engines queue requests under a short lock and kick an
 * eventfd; the worker issues them with libnbd's aio calls straight from and
 * into the caller's buffers (no copy), and hands each completion back to the
 * engine that submitted it as a CQE on that engine's own io_uring
 * (IORING_OP_MSG_RING), so the engine completes it exactly as it completes a
 * file I/O.  Why a thread rather than libnbd on each engine's loop is in
 * docs/storage.md: in short, one handshake, one reconnect state machine and
 * one TLS session per server instead of one per engine, and no engine ever
 * blocks in a (re)connect.
 *
 * When the connection is lost the worker keeps every request that had not
 * completed, reconnects with exponential backoff (100 ms doubling to 2 s),
 * checks that the server still offers the same disk, and resubmits them in
 * their original order.  A request that has waited timeout_ms without an
 * answer fails with EIO and a log line naming the server; a server that
 * answers nothing for that long is treated as lost.  NBD cannot fence a
 * dead connection, so after a loss (and after open, in case a previous
 * siovd died with writes in flight) writes, flushes, trims and zeroes wait
 * until settle_ms have passed before they reach the server: the time a
 * server has to finish or drop the old connection's requests (see
 * docs/storage.md, "No stale write").
 */
#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include <libnbd.h>
#include <liburing.h>

#include "backend_impl.h"
#include "siov_internal/log.h"

#define NBD_BACKOFF_MIN_NS  (100ull * 1000000)
#define NBD_BACKOFF_MAX_NS  (2000ull * 1000000)
#define NBD_CONNECT_MAX_MS  5000	 /* one connection attempt, handshake included */
#define NBD_PIECE_MAX	    (32u << 20)	 /* bytes per read/write command */
#define NBD_RANGE_PIECE_MAX (1ull << 30) /* bytes per trim/zero command */
#define NBD_REQS_PER_CHUNK  256
#define NBD_POLL_MAX_MS	    100
#define NBD_RING_ENTRIES    256
#define MS		    1000000ull

/* One backend I/O while the NBD backend holds it. */
struct nbd_req {
	struct siov_io *io;
	int ring_fd;	   /* the submitting engine's io_uring: where the completion goes */
	uint64_t deadline; /* fails with EIO if not answered by then */
	int left;	   /* commands in flight for it on the current connection */
	int res;	   /* the first error, or 0 */
	bool lost;	   /* a command died with the connection: resubmit it all */
	struct nbd_req *prev, *next;
};

struct nbd_list {
	struct nbd_req *head, *tail;
	unsigned n;
};

struct nbd_chunk {
	struct nbd_chunk *next;
	struct nbd_req reqs[NBD_REQS_PER_CHUNK];
};

/* What a connection must offer to be this backend's disk. */
struct nbd_info {
	uint64_t size;
	uint32_t block_min;
	uint32_t piece_max;
	bool ro, can_flush, can_trim, can_zero;
};

struct nbd_be {
	struct siov_backend *bd;
	struct nbd_info info;
	uint64_t timeout_ns, settle_ns;

	/* Shared between the engines and the worker, under lock. */
	pthread_mutex_t lock;
	struct nbd_list incoming;
	struct nbd_req *free;
	struct nbd_chunk *chunks;
	int efd; /* engines -> worker: incoming is not empty, or stop */
	atomic_bool stopping;

	/* The worker's own. */
	pthread_t thread;
	bool thread_started;
	struct nbd_handle *h; /* NULL while disconnected */
	struct nbd_list pending, inflight, done;
	struct io_uring ring; /* posts completions to the engines' rings */
	bool ring_ok;
	unsigned posting; /* MSG_RING SQEs whose CQE has not come back */
	uint64_t retry_at, backoff, hold_until, lost_at;
	unsigned long reconnects;
	char why[192]; /* the last libnbd error on this connection */
	bool kicked;   /* the eventfd said the engines queued requests */
};

/* ---- Lists ---- */

static void list_push(struct nbd_list *l, struct nbd_req *r)
{
	r->next = NULL;
	r->prev = l->tail;
	if (l->tail)
		l->tail->next = r;
	else
		l->head = r;
	l->tail = r;
	l->n++;
}

static void list_del(struct nbd_list *l, struct nbd_req *r)
{
	if (r->prev)
		r->prev->next = r->next;
	else
		l->head = r->next;
	if (r->next)
		r->next->prev = r->prev;
	else
		l->tail = r->prev;
	r->prev = r->next = NULL;
	l->n--;
}

/* Moves all of src in front of dst, keeping both orders. */
static void list_prepend_all(struct nbd_list *dst, struct nbd_list *src)
{
	if (!src->head)
		return;
	src->tail->next = dst->head;
	if (dst->head)
		dst->head->prev = src->tail;
	else
		dst->tail = src->tail;
	dst->head = src->head;
	dst->n += src->n;
	*src = (struct nbd_list){0};
}

static void list_append_all(struct nbd_list *dst, struct nbd_list *src)
{
	if (!src->head)
		return;
	src->head->prev = dst->tail;
	if (dst->tail)
		dst->tail->next = src->head;
	else
		dst->head = src->head;
	dst->tail = src->tail;
	dst->n += src->n;
	*src = (struct nbd_list){0};
}

/* ---- Connecting ---- */

static bool is_rw(enum siov_io_op op)
{
	return op == SIOV_IO_READ || op == SIOV_IO_WRITE;
}

static const char *nbd_msg(void)
{
	const char *m = nbd_get_error();

	return m ? m : "unknown libnbd error";
}

static int nbd_code(void)
{
	int e = nbd_get_errno();

	return e > 0 ? -e : -EIO;
}

/* Waits for h's connection attempt (already started) to finish, up to ms. */
static int connect_wait(struct nbd_be *be, struct nbd_handle *h, int ms)
{
	uint64_t end = siov_now_ns() + (uint64_t)ms * MS;

	while (nbd_aio_is_connecting(h)) {
		unsigned dir = nbd_aio_get_direction(h);
		struct pollfd p = {.fd = nbd_aio_get_fd(h)};
		int rc;

		if (siov_now_ns() > end || atomic_load(&be->stopping))
			return -ETIMEDOUT;
		p.events = (dir & LIBNBD_AIO_DIRECTION_READ ? POLLIN : 0) |
			   (dir & LIBNBD_AIO_DIRECTION_WRITE ? POLLOUT : 0);
		rc = poll(&p, 1, NBD_POLL_MAX_MS);
		if (rc < 0 && errno != EINTR)
			return -errno;
		if (p.revents & (POLLIN | POLLHUP | POLLERR))
			nbd_aio_notify_read(h);
		else if (p.revents & POLLOUT)
			nbd_aio_notify_write(h);
	}
	return nbd_aio_is_ready(h) ? 0 : nbd_code();
}

static int info_read(struct nbd_handle *h, struct nbd_info *out)
{
	int64_t size = nbd_get_size(h), bmin = nbd_get_block_size(h, LIBNBD_SIZE_MINIMUM),
		bmax = nbd_get_block_size(h, LIBNBD_SIZE_MAXIMUM);

	if (size < 0)
		return nbd_code();
	out->size = (uint64_t)size;
	out->block_min = bmin > 0 ? (uint32_t)bmin : 1;
	out->piece_max = NBD_PIECE_MAX;
	if (bmax > 0 && (uint64_t)bmax < NBD_PIECE_MAX)
		out->piece_max = (uint32_t)bmax;
	out->ro = nbd_is_read_only(h) == 1;
	out->can_flush = nbd_can_flush(h) == 1;
	out->can_trim = nbd_can_trim(h) == 1;
	out->can_zero = nbd_can_zero(h) == 1;
	return 0;
}

/* A new handle, connected to the backend's URI: 0, or -errno with why in *why. */
static int nbd_dial(struct nbd_be *be, struct nbd_handle **out, char *why, size_t whylen)
{
	const struct siov_backend_conf *c = &be->bd->conf;
	struct nbd_handle *h = nbd_create();
	int rc;

	if (!h) {
		snprintf(why, whylen, "%s", nbd_msg());
		return -ENOMEM;
	}
	/* Reads land in guest memory and are overwritten whole: skip libnbd's memset. */
	nbd_set_pread_initialize(h, false);
	nbd_set_handle_name(h, c->name);
	if (c->tls_creds[0] && nbd_set_tls_certificates(h, c->tls_creds) < 0)
		goto err;
	if (nbd_aio_connect_uri(h, c->uri) < 0)
		goto err;
	rc = connect_wait(be, h, NBD_CONNECT_MAX_MS);
	if (rc == -ETIMEDOUT) {
		snprintf(why, whylen, "no answer within %d ms", NBD_CONNECT_MAX_MS);
		nbd_close(h);
		return rc;
	}
	if (rc < 0)
		goto err;
	*out = h;
	return 0;

err:
	rc = nbd_code();
	snprintf(why, whylen, "%s", nbd_msg());
	nbd_close(h);
	return rc;
}

/* ---- Issuing commands (worker) ---- */

/* Keeps libnbd's message (it is per thread and soon overwritten) for the log. */
static void note_error(struct nbd_be *be)
{
	snprintf(be->why, sizeof(be->why), "%s", nbd_msg());
}

static int piece_cb(void *user_data, int *error);
static bool link_error(int e);
static int64_t issue_cmd(struct nbd_be *be, struct nbd_req *r, void *buf, uint64_t len,
			 uint64_t off);

static struct nbd_be *req_be(struct nbd_req *r)
{
	return r->io->bd->priv;
}

/*
 * One command for r.  r->left counts it before the call: libnbd may run the
 * callback before the call returns (when the connection dies inside it).
 */
static int64_t issue_one(struct nbd_be *be, struct nbd_req *r, void *buf, uint64_t len,
			 uint64_t off)
{
	int64_t rc;

	r->left++;
	rc = issue_cmd(be, r, buf, len, off);
	if (rc < 0)
		r->left--;
	return rc;
}

static int64_t issue_cmd(struct nbd_be *be, struct nbd_req *r, void *buf, uint64_t len,
			 uint64_t off)
{
	nbd_completion_callback cb = {.callback = piece_cb, .user_data = r};

	switch (r->io->op) {
	case SIOV_IO_READ:
		return nbd_aio_pread(be->h, buf, len, off, cb, 0);
	case SIOV_IO_WRITE:
		return nbd_aio_pwrite(be->h, buf, len, off, cb, 0);
	case SIOV_IO_FLUSH:
		return nbd_aio_flush(be->h, cb, 0);
	case SIOV_IO_DISCARD:
		return nbd_aio_trim(be->h, len, off, cb, 0);
	case SIOV_IO_WRITE_ZEROES:
		return nbd_aio_zero(be->h, len, off, cb, 0);
	}
	errno = EINVAL;
	return -1;
}

/* Issues the data commands of a read or write: each segment, in pieces. */
static int issue_rw(struct nbd_be *be, struct nbd_req *r)
{
	uint64_t off = r->io->offset;
	int i;

	for (i = 0; i < r->io->iovcnt; i++) {
		char *base = r->io->iov[i].iov_base;
		size_t done = 0, len = r->io->iov[i].iov_len;

		while (done < len) {
			size_t n = SIOV_MIN(len - done, (size_t)be->info.piece_max);

			if (issue_one(be, r, base + done, n, off) < 0)
				return nbd_code();
			done += n;
			off += n;
		}
	}
	return 0;
}

/* Trim and write-zeroes: the range in pieces of at most 1 GiB (NBD lengths are 32-bit). */
static int issue_range(struct nbd_be *be, struct nbd_req *r)
{
	uint64_t off = r->io->offset, end = off + r->io->len;

	while (off < end) {
		uint64_t n = SIOV_MIN(end - off, NBD_RANGE_PIECE_MAX);

		if (issue_one(be, r, NULL, n, off) < 0)
			return nbd_code();
		off += n;
	}
	return 0;
}

static void req_finish(struct nbd_be *be, struct nbd_req *r, int res)
{
	list_del(&be->inflight, r);
	if (res >= 0)
		res = is_rw(r->io->op) ? (int)r->io->len : 0;
	r->res = res;
	list_push(&be->done, r);
}

static int issue_flush(struct nbd_be *be, struct nbd_req *r)
{
	/* A server that offers no flush has no write cache to flush: done. */
	if (!be->info.can_flush)
		return 0;
	return issue_one(be, r, NULL, 0, 0) < 0 ? nbd_code() : 0;
}

/* Sends r on the live connection; on failure r ends with the error unless the link died. */
static void req_issue(struct nbd_be *be, struct nbd_req *r)
{
	int rc;

	r->left = 0;
	r->res = 0;
	r->lost = false;
	list_push(&be->inflight, r);
	if (is_rw(r->io->op))
		rc = issue_rw(be, r);
	else if (r->io->op == SIOV_IO_FLUSH)
		rc = issue_flush(be, r);
	else
		rc = issue_range(be, r);
	if (rc < 0)
		note_error(be);
	if (rc < 0 && (link_error(-rc) || nbd_aio_is_dead(be->h) || nbd_aio_is_closed(be->h)))
		r->lost = true; /* resubmitted with the rest after the reconnect */
	else if (rc < 0 && r->res == 0)
		r->res = rc;
	if (r->left == 0 && !r->lost)
		req_finish(be, r, r->res);
}

/* Errors that mean the connection, not the disk, failed. */
static bool link_error(int e)
{
	return e == ENOTCONN || e == ESHUTDOWN || e == ECONNRESET || e == EPIPE ||
	       e == ECONNABORTED || e == ETIMEDOUT;
}

static int piece_cb(void *user_data, int *error)
{
	struct nbd_req *r = user_data;
	struct nbd_be *be = req_be(r);

	/*
	 * A command the connection took down with it is not an answer from the
	 * server: the request stays in flight and is resubmitted after the
	 * reconnect (conn_lost resets its counters).  ESHUTDOWN is the server
	 * saying it is going away: the same.
	 */
	if (!be->h)
		return 1;
	r->left--;
	if (*error && (link_error(*error) || nbd_aio_is_dead(be->h) || nbd_aio_is_closed(be->h)))
		r->lost = true;
	else if (*error && r->res == 0)
		r->res = -*error;
	if (r->left == 0 && !r->lost)
		req_finish(be, r, r->res);
	return 1;
}

/* Whether r may go to the server now: writes wait out the settle time. */
static bool may_issue(const struct nbd_be *be, const struct nbd_req *r, uint64_t now)
{
	return r->io->op == SIOV_IO_READ || now >= be->hold_until;
}

static void issue_pending(struct nbd_be *be, uint64_t now)
{
	struct nbd_req *r = be->pending.head, *next;

	for (; r && be->h; r = next) {
		next = r->next;
		if (!may_issue(be, r, now))
			continue;
		list_del(&be->pending, r);
		req_issue(be, r);
	}
}

/* ---- Losing and finding the server (worker) ---- */

static void conn_lost(struct nbd_be *be, uint64_t now, const char *why)
{
	struct nbd_req *r;
	struct nbd_handle *h = be->h;

	SIOV_WARN("backend '%s': lost the NBD server %s (%s); %u request(s) kept for resubmission",
		  be->bd->conf.name, be->bd->conf.uri, why, be->inflight.n + be->pending.n);
	/*
	 * Close the socket at once (a server that stopped answering may still
	 * hold it); callbacks run from nbd_close see be->h == NULL and are ignored.
	 */
	be->h = NULL;
	nbd_close(h);
	for (r = be->inflight.head; r; r = r->next) {
		r->left = r->res = 0;
		r->lost = false;
	}
	list_prepend_all(&be->pending, &be->inflight);
	be->lost_at = now;
	be->hold_until = now + be->settle_ns;
	be->retry_at = now;
	be->backoff = NBD_BACKOFF_MIN_NS;
}

static bool info_same(const struct nbd_be *be, const struct nbd_info *i, char *why, size_t len)
{
	if (i->size < be->bd->size)
		snprintf(why, len, "it now offers %llu bytes, fewer than the backend's %llu",
			 (unsigned long long)i->size, (unsigned long long)be->bd->size);
	else if (i->ro && !be->bd->conf.readonly)
		snprintf(why, len, "it is now read-only");
	else
		return true;
	return false;
}

static void conn_retry(struct nbd_be *be)
{
	struct nbd_handle *h = NULL;
	struct nbd_info info;
	char why[256];
	int rc;

	rc = nbd_dial(be, &h, why, sizeof(why));
	if (rc == 0 && (rc = info_read(h, &info)) < 0)
		snprintf(why, sizeof(why), "%s", nbd_msg());
	else if (rc == 0 && !info_same(be, &info, why, sizeof(why)))
		rc = -EMEDIUMTYPE;
	if (rc == 0) {
		be->h = h;
		be->info = info;
		be->why[0] = '\0';
		be->reconnects++;
		SIOV_INFO("backend '%s': reconnected to %s after %llu ms; resubmitting %u "
			  "request(s)",
			  be->bd->conf.name, be->bd->conf.uri,
			  (unsigned long long)((siov_now_ns() - be->lost_at) / MS), be->pending.n);
		return;
	}
	if (h)
		nbd_close(h);
	SIOV_DEBUG("backend '%s': reconnect to %s failed: %s", be->bd->conf.name, be->bd->conf.uri,
		   why);
	be->retry_at = siov_now_ns() + be->backoff;
	/* At least a few attempts within a request's timeout. */
	be->backoff = SIOV_MIN(be->backoff * 2, SIOV_MIN(NBD_BACKOFF_MAX_NS, be->timeout_ns / 4));
}

/* Fails what waited too long; a server that answers nothing for that long is lost. */
static void expire(struct nbd_be *be, uint64_t now)
{
	struct nbd_req *r, *next;
	unsigned n = 0;

	if (be->h && be->inflight.head && be->inflight.head->deadline <= now)
		conn_lost(be, now, "no answer within the timeout");
	for (r = be->pending.head; r; r = next) {
		next = r->next;
		if (r->deadline > now)
			continue;
		list_del(&be->pending, r);
		r->res = -EIO;
		list_push(&be->done, r);
		n++;
	}
	if (n)
		SIOV_ERR("backend '%s': NBD server %s unreachable for %llu ms: failing %u "
			 "request(s) with EIO",
			 be->bd->conf.name, be->bd->conf.uri,
			 (unsigned long long)(be->timeout_ns / MS), n);
}

/* ---- Completions back to the engines (worker) ---- */

static void post_done(struct nbd_be *be)
{
	struct nbd_req *r;
	struct io_uring_sqe *sqe;

	while ((r = be->done.head) && (sqe = io_uring_get_sqe(&be->ring))) {
		list_del(&be->done, r);
		io_uring_prep_msg_ring(sqe, r->ring_fd, (unsigned)r->res,
				       (uint64_t)(uintptr_t)r->io | SIOV_UD_IO, 0);
		io_uring_sqe_set_data(sqe, r);
		be->posting++;
	}
	if (io_uring_sq_ready(&be->ring))
		io_uring_submit(&be->ring);
}

static void reqs_free(struct nbd_be *be, struct nbd_req *head)
{
	struct nbd_req *tail = head;

	while (tail->next)
		tail = tail->next;
	pthread_mutex_lock(&be->lock);
	tail->next = be->free;
	be->free = head;
	pthread_mutex_unlock(&be->lock);
}

/* Collects the MSG_RING results: delivered requests are freed, refused ones posted again. */
static void reap_posts(struct nbd_be *be)
{
	struct io_uring_cqe *cqe;
	struct nbd_req *freed = NULL;
	unsigned head, n = 0;

	io_uring_for_each_cqe(&be->ring, head, cqe)
	{
		struct nbd_req *r = io_uring_cqe_get_data(cqe);

		n++;
		be->posting--;
		if (cqe->res < 0) {
			/* The engine's CQ was full (or it was busy): try again shortly. */
			list_push(&be->done, r);
			continue;
		}
		r->next = freed;
		freed = r;
	}
	io_uring_cq_advance(&be->ring, n);
	if (freed)
		reqs_free(be, freed);
}

/* ---- The worker ---- */

/*
 * Takes the engines' requests.  Only after a kick: an engine kicks whenever
 * it finds the list empty, and the kick is consumed before the list is
 * taken, so a request is never left behind without a kick to announce it.
 */
static void take_incoming(struct nbd_be *be)
{
	eventfd_t v;

	if (!be->kicked)
		return;
	be->kicked = false;
	(void)eventfd_read(be->efd, &v);
	pthread_mutex_lock(&be->lock);
	list_append_all(&be->pending, &be->incoming);
	pthread_mutex_unlock(&be->lock);
}

/* How long the worker may sleep: until the next retry, settle end, deadline or post. */
static int wait_ms(const struct nbd_be *be, uint64_t now)
{
	uint64_t next = now + NBD_POLL_MAX_MS * MS;

	if (be->done.head || be->posting)
		return be->done.head ? 1 : 0;
	if (!be->h && be->pending.head)
		next = SIOV_MIN(next, be->retry_at);
	if (be->h && be->pending.head)
		next = SIOV_MIN(next, be->hold_until);
	if (be->pending.head)
		next = SIOV_MIN(next, be->pending.head->deadline);
	if (be->inflight.head)
		next = SIOV_MIN(next, be->inflight.head->deadline);
	return next <= now ? 0 : (int)((next - now + MS - 1) / MS);
}

static void wait_events(struct nbd_be *be, uint64_t now)
{
	struct pollfd p[3] = {{.fd = be->efd, .events = POLLIN},
			      {.fd = be->ring.ring_fd, .events = POLLIN},
			      {.fd = -1}};
	int n = 2;

	if (be->h) {
		unsigned dir = nbd_aio_get_direction(be->h);

		p[2].fd = nbd_aio_get_fd(be->h);
		p[2].events = (dir & LIBNBD_AIO_DIRECTION_READ ? POLLIN : 0) |
			      (dir & LIBNBD_AIO_DIRECTION_WRITE ? POLLOUT : 0);
		n = 3;
	}
	if (poll(p, (nfds_t)n, wait_ms(be, now)) <= 0)
		return;
	if (p[0].revents & POLLIN)
		be->kicked = true;
	if (n < 3)
		return;
	if ((p[2].revents & (POLLIN | POLLHUP | POLLERR)) && nbd_aio_notify_read(be->h) < 0)
		note_error(be);
	if ((p[2].revents & POLLOUT) && nbd_aio_notify_write(be->h) < 0)
		note_error(be);
}

static void *worker_main(void *arg)
{
	struct nbd_be *be = arg;

	while (!atomic_load(&be->stopping)) {
		uint64_t now = siov_now_ns();

		take_incoming(be);
		if (!be->h && be->pending.head && now >= be->retry_at)
			conn_retry(be);
		if (be->h)
			issue_pending(be, now);
		expire(be, now);
		post_done(be);
		reap_posts(be);
		wait_events(be, now);
		if (be->h && (nbd_aio_is_dead(be->h) || nbd_aio_is_closed(be->h)))
			conn_lost(be, siov_now_ns(), be->why[0] ? be->why : "connection closed");
	}
	return NULL;
}

/* ---- Engine side ---- */

static struct nbd_req *req_get(struct nbd_be *be)
{
	struct nbd_chunk *c;
	struct nbd_req *r = be->free;
	unsigned i;

	if (r) {
		be->free = r->next;
		return r;
	}
	/* Rare: more requests in flight than ever before.  Grow by a chunk. */
	c = calloc(1, sizeof(*c));
	if (!c)
		return NULL;
	c->next = be->chunks;
	be->chunks = c;
	for (i = 1; i < NBD_REQS_PER_CHUNK; i++) {
		c->reqs[i].next = be->free;
		be->free = &c->reqs[i];
	}
	return &c->reqs[0];
}

static int nbd_submit(struct siov_backend *bd, struct siov_io_ctx *ctx, struct siov_io *io)
{
	struct nbd_be *be = bd->priv;
	struct nbd_req *r;
	bool kick;

	pthread_mutex_lock(&be->lock);
	r = req_get(be);
	if (!r) {
		pthread_mutex_unlock(&be->lock);
		return -ENOMEM;
	}
	r->io = io;
	r->ring_fd = ctx->ring->ring_fd;
	r->deadline = siov_now_ns() + be->timeout_ns;
	kick = be->incoming.head == NULL;
	list_push(&be->incoming, r);
	pthread_mutex_unlock(&be->lock);
	/* One kick per batch: the worker takes the whole list when it wakes. */
	if (kick)
		(void)eventfd_write(be->efd, 1);
	return 0;
}

/* ---- Open and close (control thread) ---- */

static int check_info(struct siov_backend *bd, const struct nbd_info *i, struct siov_err *err)
{
	const struct siov_backend_conf *c = &bd->conf;

	if (i->ro && !c->readonly)
		return siov_err_set(err, -EROFS,
				    "backend '%s': the NBD export %s is read-only (add readonly)",
				    c->name, c->uri);
	if (i->block_min > 4096 || i->size % 512)
		return siov_err_set(err, -EINVAL,
				    "backend '%s': the NBD export %s has a size of %llu bytes and "
				    "a minimum block size of %u (need multiples of 512, blocks "
				    "of at most 4096)",
				    c->name, c->uri, (unsigned long long)i->size, i->block_min);
	if (c->size && c->size > i->size)
		return siov_err_set(err, -EINVAL,
				    "backend '%s': size %llu is larger than the NBD export (%llu "
				    "bytes)",
				    c->name, (unsigned long long)c->size,
				    (unsigned long long)i->size);
	return 0;
}

/* Errors that say the server is away now, not that the configuration is wrong. */
static bool unreachable(int rc)
{
	return rc == -ECONNREFUSED || rc == -ENOENT || rc == -ETIMEDOUT || rc == -EHOSTUNREACH ||
	       rc == -ENETUNREACH || rc == -ECONNRESET;
}

/*
 * The server is away at open, but the size is known (given, or saved from an
 * earlier connection): start disconnected and let the worker find it.  What
 * the server can do is unknown until then: no trim or write-zeroes are
 * offered to the VDEVs created meanwhile.
 */
static int start_disconnected(struct siov_backend *bd, struct nbd_be *be, const char *why)
{
	SIOV_WARN("backend '%s': NBD server %s is unreachable (%s); starting disconnected with "
		  "%llu bytes and reconnecting in the background",
		  bd->conf.name, bd->conf.uri, why, (unsigned long long)bd->conf.size);
	be->h = NULL;
	be->info = (struct nbd_info){
	    .size = bd->conf.size, .block_min = 512, .piece_max = NBD_PIECE_MAX, .can_flush = true};
	be->lost_at = siov_now_ns();
	return 0;
}

static void be_free(struct nbd_be *be)
{
	struct nbd_chunk *c;

	if (be->thread_started) {
		atomic_store(&be->stopping, true);
		(void)eventfd_write(be->efd, 1);
		pthread_join(be->thread, NULL);
	}
	if (be->h) {
		/* A clean NBD_CMD_DISC when the server is there to hear it. */
		if (nbd_aio_is_ready(be->h))
			nbd_shutdown(be->h, 0);
		nbd_close(be->h);
	}
	if (be->ring_ok)
		io_uring_queue_exit(&be->ring);
	if (be->efd >= 0)
		close(be->efd);
	while ((c = be->chunks)) {
		be->chunks = c->next;
		free(c);
	}
	pthread_mutex_destroy(&be->lock);
	free(be);
}

static int be_start(struct nbd_be *be, struct siov_err *err)
{
	const char *name = be->bd->conf.name;
	int rc;

	be->efd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	if (be->efd < 0)
		return siov_err_set(err, -errno, "backend '%s': eventfd: %s", name,
				    strerror(errno));
	rc = io_uring_queue_init(NBD_RING_ENTRIES, &be->ring, 0);
	if (rc < 0)
		return siov_err_set(err, rc, "backend '%s': io_uring: %s", name, strerror(-rc));
	be->ring_ok = true;
	rc = pthread_create(&be->thread, NULL, worker_main, be);
	if (rc)
		return siov_err_set(err, -rc, "backend '%s': cannot start its thread: %s", name,
				    strerror(rc));
	be->thread_started = true;
	pthread_setname_np(be->thread, "siov-nbd");
	return 0;
}

static int nbd_be_open(struct siov_backend *bd, struct siov_err *err)
{
	const struct siov_backend_conf *c = &bd->conf;
	struct nbd_be *be = calloc(1, sizeof(*be));
	char why[256] = "";
	int rc;

	if (!be)
		return siov_err_set(err, -ENOMEM, "backend '%s': out of memory", c->name);
	be->bd = bd;
	be->efd = -1;
	be->kicked = true;
	pthread_mutex_init(&be->lock, NULL);
	be->timeout_ns = (c->timeout_ms ? c->timeout_ms : SIOV_BACKEND_TIMEOUT_MS_DEFAULT) * MS;
	be->settle_ns = (uint64_t)c->settle_ms * MS;
	rc = nbd_dial(be, &be->h, why, sizeof(why));
	if (rc < 0 && c->size && unreachable(rc)) {
		rc = start_disconnected(bd, be, why);
	} else if (rc < 0) {
		siov_err_set(err, rc, "backend '%s': cannot connect to NBD server %s: %s", c->name,
			     c->uri, why);
		goto err;
	} else if ((rc = info_read(be->h, &be->info)) < 0) {
		siov_err_set(err, rc, "backend '%s': NBD server %s: %s", c->name, c->uri,
			     nbd_msg());
		goto err;
	} else if ((rc = check_info(bd, &be->info, err)) < 0) {
		goto err;
	}
	bd->size = c->size ? c->size : be->info.size;
	/* Saved in the state: a restart while the server is away can still start. */
	bd->conf.size = bd->size;
	bd->block_size = be->info.block_min > 512 ? 4096 : 512;
	bd->can_discard = be->info.can_trim;
	bd->can_write_zeroes = be->info.can_zero;
	/* A previous siovd may have died with writes in flight on this server. */
	be->hold_until = siov_now_ns() + be->settle_ns;
	be->backoff = NBD_BACKOFF_MIN_NS;
	bd->priv = be;
	if ((rc = be_start(be, err)) < 0)
		goto err;
	SIOV_INFO("backend '%s': NBD %s, %llu bytes%s%s%s", c->name, c->uri,
		  (unsigned long long)bd->size, be->info.can_flush ? ", flush" : "",
		  be->info.can_trim ? ", trim" : "", be->info.can_zero ? ", zeroes" : "");
	return 0;

err:
	bd->priv = NULL;
	be_free(be);
	return rc;
}

static void nbd_be_close(struct siov_backend *bd)
{
	if (bd->priv)
		be_free(bd->priv);
	bd->priv = NULL;
}

const struct siov_backend_ops siov__backend_nbd_ops = {
    .type_name = "nbd",
    .open = nbd_be_open,
    .close = nbd_be_close,
    .submit = nbd_submit,
};
