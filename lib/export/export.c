/*
 * The NBD export server: one thread per export, with epoll for its sockets
 * and one io_uring (wrapped in a struct siov_io_ctx, as an engine's is) for
 * the backend I/O of its VDEV window.  nbd_proto.c speaks the protocol; this
 * file moves bytes between it and the sockets (through GnuTLS once a client
 * has done STARTTLS), turns its requests into backend I/Os inside the
 * window, and hands the completions back.
 *
 * The server-side fence (docs/storage.md, "No stale write"): when a client
 * goes away with requests still running, its connection lingers until they
 * have completed, and connections accepted meanwhile are not read from until
 * then.  A client that reconnects and resubmits its writes therefore never
 * races the same writes, or older ones, from its previous connection.
 *
 * QoS: a request the VDEV's buckets do not admit yet waits, unstarted, in
 * one FIFO per export (every connection's, in arrival order, so one client
 * cannot overtake another); the loop sleeps until the buckets' deadline and
 * admits from the head.  The protocol engine bounds what a client may have
 * outstanding (64 requests, 64 MiB), so the FIFO is bounded too.  Nothing
 * is failed for QoS.  While the export closes, the waiting requests start
 * without asking: their replies have nowhere to go, but their writes land,
 * as the fence promises.
 */
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <stdatomic.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <unistd.h>

#include <liburing.h>

#include "export_impl.h"
#include "nbd_proto.h"
#include "nbd_wire.h"
#include "siov_internal/log.h"

#define EXPORT_RING_ENTRIES 128
#define EXPORT_MAX_CONNS    64
#define EXPORT_IN_BUF	    65536
#define TLS_SEND_MAX	    16384
#define EV_LISTEN	    0ull
#define EV_STOP		    1ull
#define EV_RING		    2ull

struct exp_conn {
	struct siov_export *ex;
	int fd;
	struct siov_nbd_conn *proto;
	gnutls_session_t tls;
	bool handshaking, tls_active;
	size_t tls_last; /* bytes passed to a send that said "again" */
	bool closed;	 /* socket gone; lingering for its I/O (the fence) */
	bool fenced;	 /* accepted while a closed connection had I/O running */
	uint32_t events; /* epoll interest */
	size_t in_len, in_off;
	struct exp_conn *prev, *next;
	uint8_t in[EXPORT_IN_BUF];
};

/* One backend I/O for one NBD request. */
struct exp_io {
	struct siov_io io;
	struct iovec iov;
	struct siov_nbd_req *req;
	struct exp_conn *conn;
	uint64_t t0;	     /* arrival, ns */
	struct exp_io *next; /* in the QoS FIFO */
};

struct siov_export {
	struct siov_export_conf conf;
	struct siov_export_window win;
	struct siov_nbd_export_info info;
	struct siov_export_tls *tls;
	int lfd, ep, efd;
	struct io_uring ring;
	bool ring_ok;
	struct siov_io_ctx ctx;
	pthread_t thread;
	bool started;
	atomic_bool stopping;
	struct exp_conn *conns;
	unsigned nconns;
	uint64_t zombie_ios;		      /* requests still running for closed connections */
	struct exp_io *wait_head, *wait_tail; /* waiting for the QoS buckets */
	uint64_t retry_ns;		      /* when the head is worth asking again */
	_Atomic uint64_t st_open, st_conns, st_requests, st_errors, st_read, st_written, st_proto;
	_Atomic uint64_t st_inflight, st_throttled, st_lat;
	_Atomic uint64_t st_ops[SIOV_IO_WRITE_ZEROES + 1]; /* by enum siov_io_op */
};

#define STAT_ADD(x, n) atomic_fetch_add_explicit(&(x), (n), memory_order_relaxed)

/* ---- Connections ---- */

static void conn_free(struct exp_conn *c)
{
	struct siov_export *ex = c->ex;

	if (c->prev)
		c->prev->next = c->next;
	else
		ex->conns = c->next;
	if (c->next)
		c->next->prev = c->prev;
	ex->nconns--;
	siov_nbd_conn_free(c->proto);
	free(c);
}

/* Closes the socket; the connection lingers while its I/O runs (the fence). */
static void conn_close(struct exp_conn *c)
{
	unsigned inflight = siov_nbd_conn_inflight(c->proto);

	if (c->closed)
		return;
	c->closed = true;
	if (c->tls) {
		if (c->tls_active)
			gnutls_bye(c->tls, GNUTLS_SHUT_WR);
		gnutls_deinit(c->tls);
		c->tls = NULL;
	}
	close(c->fd); /* also leaves the epoll set */
	c->fd = -1;
	atomic_fetch_sub(&c->ex->st_open, 1);
	/* Freed by sweep() once its I/O is done: callers may still hold it. */
	c->ex->zombie_ios += inflight;
}

static void sweep(struct siov_export *ex)
{
	struct exp_conn *c, *next;

	for (c = ex->conns; c; c = next) {
		next = c->next;
		if (c->closed && !siov_nbd_conn_inflight(c->proto))
			conn_free(c);
	}
}

static void conn_fail(struct exp_conn *c, int rc, const char *what)
{
	if (rc == -EPROTO || rc == -EMSGSIZE || rc == -EACCES || rc == -ENOENT) {
		STAT_ADD(c->ex->st_proto, 1);
		SIOV_WARN("export '%s': closing a connection: %s (%s)", c->ex->conf.vdev, what,
			  strerror(-rc));
	}
	conn_close(c);
}

/* Sends queued output until the socket would block. */
static void conn_flush(struct exp_conn *c)
{
	size_t len;
	const uint8_t *p;
	ssize_t n;

	while (!c->closed && !c->handshaking && (p = siov_nbd_conn_output(c->proto, &len), len)) {
		if (c->tls_active) {
			size_t l = c->tls_last ? 0 : SIOV_MIN(len, (size_t)TLS_SEND_MAX);

			n = gnutls_record_send(c->tls, c->tls_last ? NULL : p, l);
			if (n == GNUTLS_E_AGAIN || n == GNUTLS_E_INTERRUPTED) {
				c->tls_last = c->tls_last ? c->tls_last : l;
				return;
			}
			c->tls_last = 0;
		} else {
			n = send(c->fd, p, len, MSG_NOSIGNAL | MSG_DONTWAIT);
			if (n < 0 && (errno == EAGAIN || errno == EINTR))
				return;
		}
		if (n <= 0) {
			conn_close(c);
			return;
		}
		siov_nbd_conn_sent(c->proto, (size_t)n);
	}
}

/* Feeds buffered input to the protocol engine as far as it takes it. */
static void conn_feed(struct exp_conn *c)
{
	while (!c->closed && c->in_off < c->in_len && siov_nbd_conn_wants_input(c->proto)) {
		ssize_t n = siov_nbd_conn_input(c->proto, c->in + c->in_off, c->in_len - c->in_off);

		if (n < 0) {
			conn_flush(c);
			conn_fail(c, (int)n, "protocol violation");
			return;
		}
		if (n == 0)
			break;
		c->in_off += (size_t)n;
	}
	if (c->in_off == c->in_len)
		c->in_off = c->in_len = 0;
}

static void conn_handshake(struct exp_conn *c)
{
	int rc = gnutls_handshake(c->tls);

	if (rc == GNUTLS_E_AGAIN || rc == GNUTLS_E_INTERRUPTED)
		return;
	c->handshaking = false;
	if (rc < 0) {
		STAT_ADD(c->ex->st_proto, 1);
		SIOV_WARN("export '%s': TLS handshake failed: %s", c->ex->conf.vdev,
			  gnutls_strerror(rc));
		conn_close(c);
		return;
	}
	c->tls_active = true;
	siov_nbd_conn_tls_done(c->proto);
}

static void conn_start_tls(struct exp_conn *c)
{
	if (siov__export_tls_session(c->ex->tls, c->fd, &c->tls) < 0) {
		conn_close(c);
		return;
	}
	c->handshaking = true;
	conn_handshake(c);
}

static void conn_read(struct exp_conn *c)
{
	ssize_t n;

	if (c->handshaking) {
		conn_handshake(c);
		return;
	}
	if (c->in_len || c->fenced || !siov_nbd_conn_wants_input(c->proto))
		return;
	if (c->tls_active) {
		n = gnutls_record_recv(c->tls, c->in, sizeof(c->in));
		if (n == GNUTLS_E_AGAIN || n == GNUTLS_E_INTERRUPTED)
			return;
	} else {
		n = recv(c->fd, c->in, sizeof(c->in), MSG_DONTWAIT);
		if (n < 0 && (errno == EAGAIN || errno == EINTR))
			return;
	}
	if (n <= 0) {
		conn_close(c); /* the client hung up (or the link broke) */
		return;
	}
	c->in_len = (size_t)n;
	conn_feed(c);
}

static void conn_set_events(struct exp_conn *c)
{
	struct epoll_event ev = {.data.ptr = c};
	uint32_t want = 0;
	size_t out;

	if (c->handshaking) {
		want = gnutls_record_get_direction(c->tls) ? EPOLLOUT : EPOLLIN;
	} else {
		siov_nbd_conn_output(c->proto, &out);
		if (out)
			want |= EPOLLOUT;
		if (!c->fenced && !c->in_len && siov_nbd_conn_wants_input(c->proto))
			want |= EPOLLIN;
	}
	if (want == c->events)
		return;
	ev.events = want;
	if (epoll_ctl(c->ex->ep, EPOLL_CTL_MOD, c->fd, &ev) == 0)
		c->events = want;
}

/* After any event: flush, go on with buffered input, start TLS, close when done. */
static void conn_service(struct exp_conn *c)
{
	size_t out;
	int guard;

	if (c->fenced && c->ex->zombie_ios == 0)
		c->fenced = false;
	for (guard = 0; guard < 8 && !c->closed; guard++) {
		conn_flush(c);
		conn_feed(c);
		/* GnuTLS may hold decrypted bytes that epoll cannot announce. */
		if (c->closed || !c->tls_active || c->in_len || c->fenced ||
		    !gnutls_record_check_pending(c->tls) || !siov_nbd_conn_wants_input(c->proto))
			break;
		conn_read(c);
	}
	if (c->closed)
		return;
	siov_nbd_conn_output(c->proto, &out);
	if (siov_nbd_conn_tls_pending(c->proto) && !out && !c->handshaking && !c->tls_active)
		conn_start_tls(c);
	if (c->closed)
		return;
	if (siov_nbd_conn_finished(c->proto) && !siov_nbd_conn_inflight(c->proto) && !out) {
		conn_close(c);
		return;
	}
	conn_set_events(c);
}

/* ---- Backend I/O ---- */

static void exp_io_done(struct siov_io *io, int res)
{
	struct exp_io *x = SIOV_CONTAINER_OF(io, struct exp_io, io);
	struct exp_conn *c = x->conn;
	struct siov_export *ex = c->ex;
	int err = res < 0 ? res : 0;

	if (res >= 0 && (io->op == SIOV_IO_READ || io->op == SIOV_IO_WRITE) &&
	    (uint64_t)res != io->len)
		err = -EIO;
	STAT_ADD(ex->st_requests, 1);
	if ((unsigned)io->op < SIOV_ARRAY_SIZE(ex->st_ops))
		STAT_ADD(ex->st_ops[io->op], 1);
	STAT_ADD(ex->st_lat, siov_now_ns() - x->t0);
	atomic_fetch_sub_explicit(&ex->st_inflight, 1, memory_order_relaxed);
	if (err)
		STAT_ADD(ex->st_errors, 1);
	else if (io->op == SIOV_IO_READ)
		STAT_ADD(ex->st_read, io->len);
	else if (io->op == SIOV_IO_WRITE)
		STAT_ADD(ex->st_written, io->len);
	siov_nbd_req_done(x->req, err);
	free(x);
	if (c->closed)
		ex->zombie_ios--;
}

static enum siov_io_op io_op(uint16_t type)
{
	switch (type) {
	case NBD_CMD_READ:
		return SIOV_IO_READ;
	case NBD_CMD_WRITE:
		return SIOV_IO_WRITE;
	case NBD_CMD_TRIM:
		return SIOV_IO_DISCARD;
	case NBD_CMD_WRITE_ZEROES:
		return SIOV_IO_WRITE_ZEROES;
	default:
		return SIOV_IO_FLUSH;
	}
}

/* What the QoS buckets charge for a request: its data, as for virtio-blk. */
static uint64_t exp_bytes(const struct exp_io *x)
{
	return x->io.op == SIOV_IO_READ || x->io.op == SIOV_IO_WRITE ? x->io.len : 0;
}

static bool exp_admit(struct siov_export *ex, struct exp_io *x, uint64_t now)
{
	struct siov_qos *q = ex->win.qos;

	if (!q || !siov_qos_limited(q) || atomic_load(&ex->stopping))
		return true;
	return siov_qos_admit(q, now, exp_bytes(x), &ex->retry_ns);
}

/* Starts the admitted heads of the QoS FIFO, in order; a failed start completes with its error. */
static void admit_waiting(struct siov_export *ex)
{
	struct exp_io *x;
	uint64_t now = siov_now_ns();
	int rc;

	while ((x = ex->wait_head) && exp_admit(ex, x, now)) {
		ex->wait_head = x->next;
		if (!ex->wait_head)
			ex->wait_tail = NULL;
		if (ex->win.qos)
			siov_qos_note_wait(ex->win.qos, now - x->t0);
		rc = siov_backend_submit(ex->win.bd, &ex->ctx, &x->io);
		if (rc < 0)
			exp_io_done(&x->io, rc);
	}
}

/* epoll_wait's timeout: until the QoS FIFO's head may be admitted, or forever. */
static int wait_ms(const struct siov_export *ex)
{
	uint64_t now;

	if (!ex->wait_head)
		return -1;
	now = siov_now_ns();
	return ex->retry_ns <= now ? 0
				   : (int)SIOV_MIN((ex->retry_ns - now + 999999) / 1000000, 1000);
}

/* The protocol engine has checked the request against the window's size and flags. */
static int exp_start(void *arg, struct siov_nbd_req *req)
{
	struct exp_conn *c = arg;
	struct siov_export *ex = c->ex;
	struct exp_io *x = calloc(1, sizeof(*x));
	int rc;

	if (!x)
		return -ENOMEM;
	x->t0 = siov_now_ns();
	x->req = req;
	x->conn = c;
	x->io.op = io_op(req->type);
	if (x->io.op != SIOV_IO_FLUSH) {
		x->io.offset = c->ex->win.offset + req->offset;
		x->io.len = req->len;
	}
	if (req->buf) {
		x->iov.iov_base = req->buf;
		x->iov.iov_len = req->len;
		x->io.iov = &x->iov;
		x->io.iovcnt = 1;
	}
	x->io.cb = exp_io_done;
	STAT_ADD(ex->st_inflight, 1);
	if (ex->wait_head || !exp_admit(ex, x, x->t0)) {
		/* Behind the others, or the buckets say later: wait, never fail. */
		if (ex->wait_tail)
			ex->wait_tail->next = x;
		else
			ex->wait_head = x;
		ex->wait_tail = x;
		STAT_ADD(ex->st_throttled, 1);
		return 0;
	}
	rc = siov_backend_submit(ex->win.bd, &ex->ctx, &x->io);
	if (rc < 0) {
		atomic_fetch_sub_explicit(&ex->st_inflight, 1, memory_order_relaxed);
		free(x);
	}
	return rc;
}

static const struct siov_nbd_conn_ops proto_ops = {.start = exp_start};

static void reap_ring(struct siov_export *ex)
{
	struct io_uring_cqe *cqe;
	unsigned head, n = 0;

	io_uring_for_each_cqe(&ex->ring, head, cqe)
	{
		siov_io_ctx_handle_cqe(&ex->ctx, cqe);
		n++;
	}
	io_uring_cq_advance(&ex->ring, n);
}

/* ---- The loop ---- */

static void accept_all(struct siov_export *ex)
{
	for (;;) {
		struct epoll_event ev = {.events = EPOLLOUT};
		struct exp_conn *c;
		int fd = accept4(ex->lfd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC), one = 1;

		if (fd < 0)
			return;
		if (ex->nconns >= EXPORT_MAX_CONNS || !(c = calloc(1, sizeof(*c)))) {
			close(fd);
			continue;
		}
		setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
		c->ex = ex;
		c->fd = fd;
		c->fenced = ex->zombie_ios > 0;
		c->proto = siov_nbd_conn_new(&ex->info, &proto_ops, c);
		ev.data.ptr = c;
		if (!c->proto || epoll_ctl(ex->ep, EPOLL_CTL_ADD, fd, &ev) < 0) {
			siov_nbd_conn_free(c->proto);
			free(c);
			close(fd);
			continue;
		}
		c->events = EPOLLOUT;
		c->next = ex->conns;
		if (ex->conns)
			ex->conns->prev = c;
		ex->conns = c;
		ex->nconns++;
		STAT_ADD(ex->st_conns, 1);
		STAT_ADD(ex->st_open, 1);
	}
}

static void handle_event(struct siov_export *ex, struct epoll_event *e)
{
	struct exp_conn *c;
	eventfd_t v;

	if (e->data.u64 == EV_LISTEN) {
		accept_all(ex);
		return;
	}
	if (e->data.u64 == EV_STOP) {
		(void)eventfd_read(ex->efd, &v);
		return;
	}
	if (e->data.u64 == EV_RING)
		return; /* reaped after every wait */
	c = e->data.ptr;
	if (c->closed)
		return;
	if (c->handshaking) {
		conn_handshake(c);
		return;
	}
	if (e->events & EPOLLOUT)
		conn_flush(c);
	if (!c->closed && (e->events & EPOLLIN))
		conn_read(c);
	/* A hang-up with no reading interest would be reported forever: close now. */
	if (!c->closed && (e->events & (EPOLLHUP | EPOLLERR)) && !(c->events & EPOLLIN))
		conn_close(c);
}

static void stop_all(struct siov_export *ex)
{
	struct exp_conn *c, *next;

	if (ex->lfd >= 0) {
		siov__export_unlisten(&ex->conf, ex->lfd);
		ex->lfd = -1;
	}
	for (c = ex->conns; c; c = next) {
		next = c->next;
		conn_close(c);
	}
}

static void *export_main(void *arg)
{
	struct siov_export *ex = arg;
	struct epoll_event evs[32];
	struct exp_conn *c, *next;
	int i, n;

	for (;;) {
		if (atomic_load(&ex->stopping))
			stop_all(ex);
		sweep(ex);
		if (atomic_load(&ex->stopping) && !ex->conns)
			break;
		n = epoll_wait(ex->ep, evs, 32, wait_ms(ex));
		for (i = 0; i < n; i++)
			handle_event(ex, &evs[i]);
		admit_waiting(ex);
		do
			reap_ring(ex);
		while (siov_io_ctx_run_deferred(&ex->ctx));
		if (ex->ctx.unsubmitted && io_uring_submit(&ex->ring) >= 0)
			ex->ctx.unsubmitted = 0;
		for (c = ex->conns; c; c = next) {
			next = c->next;
			if (!c->closed)
				conn_service(c);
		}
		if (ex->ctx.unsubmitted && io_uring_submit(&ex->ring) >= 0)
			ex->ctx.unsubmitted = 0;
	}
	return NULL;
}

/* ---- Open and close (control thread) ---- */

static int ep_add(struct siov_export *ex, int fd, uint64_t tag)
{
	struct epoll_event ev = {.events = EPOLLIN, .data.u64 = tag};

	return epoll_ctl(ex->ep, EPOLL_CTL_ADD, fd, &ev) < 0 ? -errno : 0;
}

static int export_setup(struct siov_export *ex, struct siov_err *err)
{
	const char *name = ex->conf.vdev;
	int rc;

	ex->ep = epoll_create1(EPOLL_CLOEXEC);
	ex->efd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	if (ex->ep < 0 || ex->efd < 0)
		return siov_err_set(err, -errno, "export '%s': %s", name, strerror(errno));
	rc = io_uring_queue_init(EXPORT_RING_ENTRIES, &ex->ring, 0);
	if (rc < 0)
		return siov_err_set(err, rc, "export '%s': io_uring: %s", name, strerror(-rc));
	ex->ring_ok = true;
	siov_io_ctx_init(&ex->ctx, &ex->ring);
	if (ex->conf.tls_creds[0] &&
	    (rc = siov__export_tls_open(ex->conf.tls_creds, &ex->tls, err)) < 0)
		return rc;
	ex->lfd = siov__export_listen(&ex->conf, err);
	if (ex->lfd < 0)
		return ex->lfd;
	if ((rc = ep_add(ex, ex->lfd, EV_LISTEN)) < 0 || (rc = ep_add(ex, ex->efd, EV_STOP)) < 0 ||
	    (rc = ep_add(ex, ex->ring.ring_fd, EV_RING)) < 0)
		return siov_err_set(err, rc, "export '%s': epoll: %s", name, strerror(-rc));
	rc = pthread_create(&ex->thread, NULL, export_main, ex);
	if (rc)
		return siov_err_set(err, -rc, "export '%s': cannot start its thread: %s", name,
				    strerror(rc));
	ex->started = true;
	pthread_setname_np(ex->thread, "siov-export");
	return 0;
}

static void export_free(struct siov_export *ex)
{
	if (ex->started) {
		atomic_store(&ex->stopping, true);
		(void)eventfd_write(ex->efd, 1);
		pthread_join(ex->thread, NULL);
	}
	if (ex->lfd >= 0)
		siov__export_unlisten(&ex->conf, ex->lfd);
	siov__export_tls_close(ex->tls);
	if (ex->ring_ok)
		io_uring_queue_exit(&ex->ring);
	if (ex->efd >= 0)
		close(ex->efd);
	if (ex->ep >= 0)
		close(ex->ep);
	free(ex);
}

int siov_export_open(const struct siov_export_conf *conf, const struct siov_export_window *win,
		     struct siov_export **out, struct siov_err *err)
{
	struct siov_export *ex;
	int rc;

	if (strcmp(conf->type, "nbd") != 0)
		return siov_err_set(err, -EINVAL, "export type '%s' is unknown (use nbd)",
				    conf->type);
	ex = calloc(1, sizeof(*ex));
	if (!ex)
		return siov_err_set(err, -ENOMEM, "out of memory");
	ex->conf = *conf;
	ex->win = *win;
	ex->lfd = ex->ep = ex->efd = -1;
	ex->info.name = ex->conf.vdev;
	ex->info.size = win->size;
	ex->info.block_pref = 4096;
	ex->info.readonly = win->readonly;
	ex->info.can_trim = siov_backend_can_discard(win->bd);
	ex->info.can_zero = siov_backend_can_write_zeroes(win->bd);
	ex->info.tls = conf->tls_creds[0] != '\0';
	rc = export_setup(ex, err);
	if (rc < 0) {
		export_free(ex);
		return rc;
	}
	SIOV_INFO("export '%s': NBD on %s%s, %llu bytes%s", conf->vdev, conf->listen,
		  ex->info.tls ? " (TLS required)" : "", (unsigned long long)win->size,
		  win->readonly ? ", read-only" : "");
	*out = ex;
	return 0;
}

void siov_export_close(struct siov_export *ex)
{
	if (ex)
		export_free(ex);
}

const struct siov_export_conf *siov_export_conf(const struct siov_export *ex)
{
	return &ex->conf;
}

void siov_export_get_stats(const struct siov_export *ex, struct siov_export_stats *out)
{
	struct siov_export *e = (struct siov_export *)ex;

	out->connections = atomic_load(&e->st_conns);
	out->open = atomic_load(&e->st_open);
	out->requests = atomic_load(&e->st_requests);
	out->errors = atomic_load(&e->st_errors);
	out->bytes_read = atomic_load(&e->st_read);
	out->bytes_written = atomic_load(&e->st_written);
	out->protocol_errors = atomic_load(&e->st_proto);
	out->inflight = atomic_load(&e->st_inflight);
	out->throttled = atomic_load(&e->st_throttled);
	out->latency_ns_total = atomic_load(&e->st_lat);
	out->reads = atomic_load(&e->st_ops[SIOV_IO_READ]);
	out->writes = atomic_load(&e->st_ops[SIOV_IO_WRITE]);
	out->flushes = atomic_load(&e->st_ops[SIOV_IO_FLUSH]);
	out->discards = atomic_load(&e->st_ops[SIOV_IO_DISCARD]);
	out->write_zeroes = atomic_load(&e->st_ops[SIOV_IO_WRITE_ZEROES]);
}
