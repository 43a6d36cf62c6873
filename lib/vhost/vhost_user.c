/*
 * vhost-user back end (server mode), one instance per VDEV: the slow path of a
 * software SIOV device.  Messages are read without blocking into a per-
 * connection buffer (a front end that stalls mid-message stalls only itself),
 * checked for size and version, and dispatched; fds that a message carries and
 * its handler does not keep are closed.  Queues start when they have a size,
 * addresses, a kick and are enabled; they are handed to an engine then and
 * taken back (in-flight I/O drained) before anything they depend on changes.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include "siov/vhost_user.h"
#include "siov_internal/device.h"
#include "siov_internal/dirty_log.h"
#include "siov_internal/engine.h"
#include "siov_internal/log.h"
#include "siov_internal/loop.h"
#include "siov_internal/memtable.h"
#include "siov_internal/vhost_user.h"
#include "siov_internal/virtqueue.h"

#define VU_RING_FEATURES                                                                           \
	((1ull << VIRTIO_F_VERSION_1_BIT) | (1ull << VIRTIO_RING_F_INDIRECT_DESC_BIT) |            \
	 (1ull << VIRTIO_RING_F_EVENT_IDX_BIT) | (1ull << VHOST_USER_F_PROTOCOL_FEATURES_BIT) |    \
	 (1ull << VHOST_F_LOG_ALL_BIT))

#define VU_PROTOCOL_FEATURES                                                                       \
	((1ull << VHOST_USER_PROTOCOL_F_MQ) | (1ull << VHOST_USER_PROTOCOL_F_REPLY_ACK) |          \
	 (1ull << VHOST_USER_PROTOCOL_F_CONFIG) | (1ull << VHOST_USER_PROTOCOL_F_INFLIGHT_SHMFD) | \
	 (1ull << VHOST_USER_PROTOCOL_F_RESET_DEVICE) |                                            \
	 (1ull << VHOST_USER_PROTOCOL_F_CONFIGURE_MEM_SLOTS) |                                     \
	 (1ull << VHOST_USER_PROTOCOL_F_LOG_SHMFD))

struct vu_queue {
	struct siov_vq vq;
	bool kicked;	   /* SET_VRING_KICK seen since the last stop */
	bool paused;	   /* taken off its engine for a moment by the slow path */
	bool self_running; /* handed to the device model itself (dev_ops self_run) */
	struct siov_vu_server *srv;
};

struct vu_msg_in {
	struct siov_vu_msg m;
	int fds[VHOST_USER_MAX_FDS];
	unsigned nfds;
};

struct siov_vu_server {
	/* Messages a front end causes are rate-limited per VDEV (a hostile one could flood). */
	struct siov_ratelimit log_rl;
	struct siov_loop *loop;
	struct siov_engines *engines;
	char name[SIOV_NAME_MAX];
	char path[108];
	const struct siov_dev_ops *ops;
	void *dev;
	struct siov_qos *qos;
	int listen_fd;
	struct siov_watch *listen_w;
	int conn_fd;
	struct siov_watch *conn_w;
	uint64_t connections;

	/* Session state, reset on every connection. */
	uint64_t features;
	uint64_t protocol_features;
	bool features_set;
	struct siov_memtable mem;
	void *inflight_base;
	size_t inflight_size;
	uint16_t inflight_nqueues, inflight_qsize;
	int dev_broken;
	/* Live migration: the front end's dirty log (SET_LOG_BASE) and its eventfd. */
	struct siov_dirty_log *log;
	int log_fd;

	/* Receive state of the message being assembled. */
	struct vu_msg_in rx;
	size_t rx_len;

	/* Queues are allocated when the front end first names one: a VDEV may
	 * offer many (QEMU's default is one per vCPU) and costs only what is used. */
	unsigned nqueues;
	struct vu_queue **queues;
	/* 1 + the highest index allocated (queues live until the server does): scans stop there. */
	unsigned queues_used;
};

/* ---- small helpers ---- */

static void close_fd(int *fd)
{
	if (*fd >= 0)
		close(*fd);
	*fd = -1;
}

static size_t inflight_queue_bytes(uint16_t qsize)
{
	size_t n = sizeof(struct siov_vu_inflight_queue) +
		   (size_t)qsize * sizeof(struct siov_vu_inflight_desc);
	return (n + 63) & ~(size_t)63;
}

/*
 * A packed ring's records (siov's own layout, vhost_user.h) live in a second
 * part of the region, after every queue's split-ring area: the split layout
 * stays where a region made by an older siovd has it.
 */
static size_t inflight_packed_bytes(uint16_t qsize)
{
	size_t n = sizeof(struct siov_vu_inflight_packed) +
		   (size_t)qsize * (sizeof(struct siov_vu_inflight_pbuf) +
				    sizeof(struct siov_vu_inflight_pdesc));
	return (n + 63) & ~(size_t)63;
}

static bool packed(const struct siov_vu_server *srv)
{
	return srv->features & (1ull << VIRTIO_F_RING_PACKED_BIT);
}

static bool vq_running(const struct vu_queue *q)
{
	return q->self_running || siov_engine_of(&q->vq) >= 0;
}

/* The protocol features this device can use. */
static uint64_t protocol_features(const struct siov_vu_server *srv)
{
	uint64_t dev = srv->ops->protocol_features;
	/* Requests only a device knows (SEND_RARP, NET_SET_MTU) go to its message handler. */
	uint64_t all =
	    VU_PROTOCOL_FEATURES | (srv->ops->message ? (1ull << VHOST_USER_PROTOCOL_F_RARP) |
							    (1ull << VHOST_USER_PROTOCOL_F_NET_MTU)
						      : 0);

	return dev ? all & dev : VU_PROTOCOL_FEATURES;
}

static bool vq_enabled(const struct siov_vu_server *srv, const struct vu_queue *q)
{
	/* Without PROTOCOL_FEATURES rings start enabled (vhost-user spec). */
	return q->vq.enabled || !(srv->features & (1ull << VHOST_USER_F_PROTOCOL_FEATURES_BIT));
}

static bool any_running(const struct siov_vu_server *srv)
{
	unsigned i;

	for (i = 0; i < srv->queues_used; i++)
		if (srv->queues[i] && vq_running(srv->queues[i]))
			return true;
	return false;
}

static bool logging(const struct siov_vu_server *srv)
{
	return srv->features & (1ull << VHOST_F_LOG_ALL_BIT);
}

/* ---- queue lifecycle ---- */

static void vq_stop(struct vu_queue *q)
{
	if (q->self_running) {
		q->srv->ops->queue_stop(q->srv->dev, &q->vq);
		q->self_running = false;
		return;
	}
	siov_engine_detach(&q->vq);
}

/* Hands the queue to the device model itself (net receive queues) or to an engine. */
static int vq_run(struct siov_vu_server *srv, struct vu_queue *q)
{
	int rc;

	if (srv->ops->self_run && srv->ops->self_run(srv->dev, q->vq.index)) {
		rc = srv->ops->queue_start(srv->dev, &q->vq);
		q->self_running = rc == 0;
		return rc;
	}
	return siov_engine_attach(siov_engines_pick(srv->engines), &q->vq);
}

/* Builds the list of requests a previous back end left in flight (INFLIGHT_SHMFD). */
static void vq_recover_inflight(struct siov_vu_server *srv, struct vu_queue *q)
{
	struct siov_vq *vq = &q->vq;
	struct siov_vu_inflight_queue *iq = vq->inflight;
	uint16_t used = __atomic_load_n(&vq->used->idx, __ATOMIC_ACQUIRE);
	unsigned i, n = 0;

	if (!iq)
		return;
	if (iq->used_idx != used) {
		siov_vq_inflight_catch_up(vq);
		iq->used_idx = used;
	}
	for (i = 0; i < vq->num; i++)
		if (iq->desc[i].inflight == 1) {
			n++;
			/* New pops stay younger than resubmissions: order and catch-up need it. */
			vq->inflight_counter = SIOV_MAX(vq->inflight_counter, iq->desc[i].counter);
		}
	/*
	 * Entries [used, used + n) of the avail ring are exactly the requests in
	 * flight, and everything before them completed.  Trust that over the
	 * front end's SET_VRING_BASE: after a back end goes away QEMU sends a
	 * stale index (its cached used index), and resuming there would replay
	 * requests the driver already has back.
	 */
	if (vq->last_avail_idx != (uint16_t)(used + n))
		SIOV_VDEV_LOG(
		    &srv->log_rl, srv->name, SIOV_LOG_INFO,
		    "vdev %s queue %u: resuming at avail index %u (used %u + %u in flight), "
		    "not %u as the front end said",
		    srv->name, vq->index, (uint16_t)(used + n), used, n, vq->last_avail_idx);
	vq->last_avail_idx = (uint16_t)(used + n);
	if (!n)
		return;
	vq->resubmit = calloc(n, sizeof(*vq->resubmit));
	if (!vq->resubmit)
		return;
	/* The records are shared memory: never take more than were counted. */
	for (i = 0; i < vq->num && vq->resubmit_num < n; i++)
		if (iq->desc[i].inflight == 1)
			vq->resubmit[vq->resubmit_num++] = (uint16_t)i;
	siov_vq_sort_resubmit(vq);
	SIOV_VDEV_LOG(&srv->log_rl, srv->name, SIOV_LOG_INFO,
		      "vdev %s queue %u: resubmitting %u request(s) left in flight", srv->name,
		      vq->index, n);
}

/* The packed ring's records: resume where they say, resubmit what they hold. */
static void vq_attach_inflight_packed(struct siov_vu_server *srv, struct vu_queue *q, size_t qb)
{
	struct siov_vq *vq = &q->vq;
	size_t qp = inflight_packed_bytes(srv->inflight_qsize);
	size_t off = qb * srv->inflight_nqueues + qp * vq->index;
	uint16_t base = siov_vq_packed_base(vq->last_avail_idx, vq->avail_wrap);
	int n;

	if (srv->inflight_size < off + qp) {
		SIOV_VDEV_LOG(&srv->log_rl, srv->name, SIOV_LOG_WARN,
			      "vdev %s queue %u: the in-flight region has no room for a packed "
			      "ring's records; requests in flight are not kept across a restart",
			      srv->name, vq->index);
		return;
	}
	vq->inflight_packed = (void *)((uint8_t *)srv->inflight_base + off);
	n = siov_vq_packed_recover(vq);
	if (siov_vq_packed_base(vq->last_avail_idx, vq->avail_wrap) != base)
		SIOV_VDEV_LOG(&srv->log_rl, srv->name, SIOV_LOG_INFO,
			      "vdev %s queue %u: resuming at ring position 0x%x (in-flight "
			      "records), not 0x%x as the front end said",
			      srv->name, vq->index,
			      siov_vq_packed_base(vq->last_avail_idx, vq->avail_wrap), base);
	if (n > 0)
		SIOV_VDEV_LOG(&srv->log_rl, srv->name, SIOV_LOG_INFO,
			      "vdev %s queue %u: resubmitting %d request(s) left in flight",
			      srv->name, vq->index, n);
}

static void vq_attach_inflight(struct siov_vu_server *srv, struct vu_queue *q)
{
	size_t qb;

	q->vq.inflight = NULL;
	q->vq.inflight_packed = NULL;
	if (!srv->inflight_base || q->vq.index >= srv->inflight_nqueues ||
	    srv->inflight_qsize != q->vq.num)
		return;
	qb = inflight_queue_bytes(srv->inflight_qsize);
	if (q->vq.packed) {
		vq_attach_inflight_packed(srv, q, qb);
		return;
	}
	q->vq.inflight = (void *)((uint8_t *)srv->inflight_base + qb * q->vq.index);
	q->vq.inflight->desc_num = q->vq.num;
	vq_recover_inflight(srv, q);
}

/* While the front end logs, the queue logs too; a log that cannot cover it breaks it. */
static int vq_attach_log(struct siov_vu_server *srv, struct vu_queue *q)
{
	struct siov_vq *vq = &q->vq;

	vq->log = logging(srv) ? srv->log : NULL;
	vq->log_fd = srv->log_fd;
	if (logging(srv) && !srv->log) {
		siov_vq_break(vq, "dirty logging is on but there is no log (SET_LOG_BASE)");
		return -EINVAL;
	}
	if (!siov_vq_log_ok(vq)) {
		siov_vq_break(vq,
			      "the dirty log (%llu bytes of guest memory) does not cover the "
			      "memory table and the used ring",
			      (unsigned long long)siov_dirty_log_span(srv->log));
		return -ERANGE;
	}
	return 0;
}

static void vq_try_start(struct siov_vu_server *srv, struct vu_queue *q)
{
	struct siov_vq *vq = &q->vq;
	int rc;

	if (vq_running(q) || q->paused || !q->kicked || !vq->num || !vq->addr_set ||
	    !vq_enabled(srv, q) || srv->mem.nregions == 0)
		return;
	/* A fresh start of the whole device is the driver's reset: forget old faults. */
	if (!any_running(srv))
		srv->dev_broken = 0;
	vq->mem = &srv->mem;
	vq->ops = srv->ops->vq_ops;
	vq->dev = srv->dev;
	vq->dev_broken = &srv->dev_broken;
	vq->dev_name = srv->name;
	vq->qos = srv->qos;
	vq->event_idx = srv->features & (1ull << VIRTIO_RING_F_EVENT_IDX_BIT);
	vq->packed = packed(srv);
	vq->in_order = srv->features & (1ull << VIRTIO_F_IN_ORDER_BIT);
	vq->broken = 0;
	vq->broken_reason[0] = '\0';
	vq->signalled_used_valid = false;
	rc = siov_vq_map_rings(vq);
	if (rc) {
		siov_vq_break(
		    vq, rc == -ERANGE ? "ring base (SET_VRING_BASE) is past the ring"
			: rc == -ENOMEM
			    ? "out of memory"
			    : "ring addresses or size are misaligned or outside the memory table");
		return;
	}
	if (vq_attach_log(srv, q))
		return;
	if (!vq->packed)
		vq->used_idx = __atomic_load_n(&vq->used->idx, __ATOMIC_ACQUIRE);
	free(vq->resubmit);
	vq->resubmit = NULL;
	vq->resubmit_num = vq->resubmit_pos = 0;
	vq_attach_inflight(srv, q);
	SIOV_DEBUG("vdev %s queue %u starts at avail %u, used %u%s", srv->name, vq->index,
		   vq->last_avail_idx, vq->used_idx, vq->log ? ", logging" : "");
	rc = vq_run(srv, q);
	if (rc)
		SIOV_VDEV_LOG(&srv->log_rl, srv->name, SIOV_LOG_ERR,
			      "vdev %s queue %u: cannot start: %s", srv->name, vq->index,
			      strerror(-rc));
}

/* Takes every running queue off its engine, to change what they depend on. */
static void vq_pause_all(struct siov_vu_server *srv)
{
	unsigned i;

	for (i = 0; i < srv->nqueues; i++) {
		struct vu_queue *q = srv->queues[i];
		if (q && vq_running(q)) {
			vq_stop(q);
			q->paused = true;
		}
	}
}

static void vq_resume_all(struct siov_vu_server *srv)
{
	unsigned i;

	/*
	 * With no memory left (REM_MEM_REG of the last region) a paused queue
	 * stays paused, so that the ADD_MEM_REG that follows restarts it.
	 */
	if (srv->mem.nregions == 0)
		return;
	for (i = 0; i < srv->nqueues; i++) {
		struct vu_queue *q = srv->queues[i];
		if (q && q->paused) {
			q->paused = false;
			vq_try_start(srv, q);
		}
	}
}

static void vq_reset(struct vu_queue *q, unsigned index)
{
	/* Counters belong to the VDEV, not the session: they survive a reconnect. */
	struct siov_vq_stats stats;
	bool was_packed = q->vq.packed, was_in_order = q->vq.in_order;

	vq_stop(q);
	close_fd(&q->vq.kick_fd);
	close_fd(&q->vq.call_fd);
	close_fd(&q->vq.err_fd);
	free(q->vq.resubmit);
	siov_vq_release(&q->vq);
	stats = q->vq.stats;
	siov_vq_init(&q->vq, index);
	q->vq.stats = stats;
	q->vq.packed = was_packed; /* what vdev_stats reports until the next start: the last ring */
	q->vq.in_order = was_in_order;
	q->kicked = false;
	q->paused = false;
}

static void log_unmap(struct siov_vu_server *srv)
{
	siov_dirty_log_destroy(srv->log);
	srv->log = NULL;
	close_fd(&srv->log_fd);
}

/* Resets every queue the front end has used. */
static void reset_queues(struct siov_vu_server *srv)
{
	unsigned i;

	for (i = 0; i < srv->nqueues; i++)
		if (srv->queues[i])
			vq_reset(srv->queues[i], i);
}

static void inflight_unmap(struct siov_vu_server *srv)
{
	if (srv->inflight_base)
		munmap(srv->inflight_base, srv->inflight_size);
	srv->inflight_base = NULL;
	srv->inflight_size = 0;
}

/* Back to the state of a new connection: no queues, no memory, no features. */
static void session_reset(struct siov_vu_server *srv)
{
	reset_queues(srv);
	siov_memtable_clear(&srv->mem);
	inflight_unmap(srv);
	log_unmap(srv);
	srv->features = 0;
	srv->protocol_features = 0;
	srv->features_set = false;
	srv->dev_broken = 0;
}

/* ---- replies ---- */

static int send_msg(struct siov_vu_server *srv, struct siov_vu_msg *m, int fd)
{
	char cbuf[CMSG_SPACE(sizeof(int))] = {0};
	struct iovec iov = {.iov_base = m, .iov_len = sizeof(m->hdr) + m->hdr.size};
	struct msghdr mh = {.msg_iov = &iov, .msg_iovlen = 1};
	ssize_t n;

	if (fd >= 0) {
		struct cmsghdr *c;
		mh.msg_control = cbuf;
		mh.msg_controllen = sizeof(cbuf);
		c = CMSG_FIRSTHDR(&mh);
		c->cmsg_level = SOL_SOCKET;
		c->cmsg_type = SCM_RIGHTS;
		c->cmsg_len = CMSG_LEN(sizeof(int));
		memcpy(CMSG_DATA(c), &fd, sizeof(int));
	}
	/* Replies are small: a socket that cannot take one is a front end not reading. */
	n = sendmsg(srv->conn_fd, &mh, MSG_NOSIGNAL | MSG_DONTWAIT);
	if (n != (ssize_t)iov.iov_len)
		return n < 0 ? -errno : -EAGAIN;
	return 0;
}

static int reply(struct siov_vu_server *srv, const struct siov_vu_msg *req, const void *payload,
		 uint32_t size, int fd)
{
	struct siov_vu_msg m;

	m.hdr.request = req->hdr.request;
	m.hdr.flags = VHOST_USER_VERSION | VHOST_USER_REPLY_MASK;
	m.hdr.size = size;
	memcpy(&m.payload, payload, size);
	return send_msg(srv, &m, fd);
}

static int reply_u64(struct siov_vu_server *srv, const struct siov_vu_msg *req, uint64_t v)
{
	return reply(srv, req, &v, sizeof(v), -1);
}

/* ---- message handlers: return 0, a -errno the front end hears about, or
 *      -EPROTO to drop the connection ---- */

static int need_size(const struct siov_vu_msg *m, uint32_t size)
{
	return m->hdr.size < size ? -EPROTO : 0;
}

/* The queue a message names, allocated on first use; NULL if out of range (or no memory). */
static struct vu_queue *queue_of(struct siov_vu_server *srv, uint32_t index)
{
	struct vu_queue *q;

	if (index >= srv->nqueues)
		return NULL;
	if (srv->queues[index])
		return srv->queues[index];
	q = calloc(1, sizeof(*q));
	if (!q)
		return NULL;
	siov_vq_init(&q->vq, index);
	q->srv = srv;
	srv->queues[index] = q;
	if (index >= srv->queues_used)
		srv->queues_used = index + 1;
	return q;
}

static int h_set_features(struct siov_vu_server *srv, struct vu_msg_in *in)
{
	uint64_t offered = srv->ops->features(srv->dev) | VU_RING_FEATURES;
	uint64_t f = in->m.payload.u64;

	if (f & ~offered) {
		SIOV_VDEV_LOG(&srv->log_rl, srv->name, SIOV_LOG_WARN,
			      "vdev %s: front end acked features 0x%llx we never offered",
			      srv->name, (unsigned long long)(f & ~offered));
		return -EINVAL;
	}
	/* Logging switches on or off for running queues too: restart them with it. */
	vq_pause_all(srv);
	if (!(f & (1ull << VHOST_F_LOG_ALL_BIT)) && logging(srv)) {
		SIOV_INFO("vdev %s: dirty logging off", srv->name);
		log_unmap(srv); /* migration over or cancelled: QEMU frees the log */
	} else if ((f & (1ull << VHOST_F_LOG_ALL_BIT)) && !logging(srv)) {
		SIOV_INFO("vdev %s: dirty logging on", srv->name);
	}
	srv->features = f;
	srv->features_set = true;
	if (srv->ops->set_features)
		srv->ops->set_features(srv->dev, f);
	vq_resume_all(srv);
	return 0;
}

_Static_assert(VHOST_USER_MAX_MEM_SLOTS <= SIOV_MEMTABLE_MAX &&
		   VHOST_USER_MEM_REGIONS_MAX <= SIOV_MEMTABLE_MAX,
	       "the memory table holds every slot we advertise");

/* The wire's region (packed, hostile) as the memory table's own description. */
static struct siov_mem_desc mem_desc(const struct siov_vu_mem_region *r)
{
	return (struct siov_mem_desc){.gpa = r->guest_phys_addr,
				      .size = r->memory_size,
				      .uva = r->userspace_addr,
				      .fd_offset = r->mmap_offset};
}

static int mem_add(struct siov_vu_server *srv, const struct siov_vu_mem_region *r, int fd)
{
	struct siov_mem_desc d = mem_desc(r);
	int rc = siov_memtable_add(&srv->mem, &d, fd);

	if (rc)
		SIOV_VDEV_LOG(&srv->log_rl, srv->name, SIOV_LOG_WARN,
			      "vdev %s: memory region gpa 0x%llx size 0x%llx refused: %s",
			      srv->name, (unsigned long long)d.gpa, (unsigned long long)d.size,
			      strerror(-rc));
	return rc;
}

static int h_set_mem_table(struct siov_vu_server *srv, struct vu_msg_in *in)
{
	const struct siov_vu_mem_table *t = &in->m.payload.mem;
	uint32_t i;
	int rc = 0;

	if (need_size(&in->m, 8) || t->nregions > VHOST_USER_MEM_REGIONS_MAX ||
	    in->m.hdr.size < 8 + t->nregions * sizeof(t->regions[0]) || in->nfds != t->nregions)
		return -EPROTO;
	vq_pause_all(srv);
	siov_memtable_clear(&srv->mem);
	for (i = 0; i < t->nregions && !rc; i++)
		rc = mem_add(srv, &t->regions[i], in->fds[i]);
	if (rc)
		siov_memtable_clear(&srv->mem);
	vq_resume_all(srv);
	return rc;
}

/*
 * QEMU sends the memory table once per vhost device, and a multiqueue net
 * device is one vhost device per queue pair on one connection: with
 * CONFIGURE_MEM_SLOTS the same ADD_MEM_REG (and later REM_MEM_REG) arrives
 * once per pair.  So a region we already hold exactly is accepted as it is,
 * and removing one we no longer hold is done.  (Refusing made QEMU fall back
 * to a userspace virtio-net that has no back end: a dead NIC.)
 */
static bool mem_held(const struct siov_memtable *mt, const struct siov_mem_desc *d)
{
	unsigned i;

	for (i = 0; i < mt->nregions; i++)
		if (mt->regions[i].gpa == d->gpa && mt->regions[i].size == d->size &&
		    mt->regions[i].uva == d->uva)
			return true;
	return false;
}

static int h_add_mem_reg(struct siov_vu_server *srv, struct vu_msg_in *in)
{
	struct siov_mem_desc d;
	int rc;

	if (need_size(&in->m, sizeof(struct siov_vu_mem_reg)) || in->nfds != 1)
		return -EPROTO;
	d = mem_desc(&in->m.payload.mem_reg.region);
	if (mem_held(&srv->mem, &d))
		return 0;
	vq_pause_all(srv);
	rc = mem_add(srv, &in->m.payload.mem_reg.region, in->fds[0]);
	vq_resume_all(srv);
	return rc;
}

static int h_rem_mem_reg(struct siov_vu_server *srv, struct vu_msg_in *in)
{
	struct siov_mem_desc d;
	int rc;

	if (need_size(&in->m, sizeof(struct siov_vu_mem_reg)))
		return -EPROTO;
	d = mem_desc(&in->m.payload.mem_reg.region);
	if (!mem_held(&srv->mem, &d))
		return 0;
	vq_pause_all(srv);
	rc = siov_memtable_remove(&srv->mem, &d);
	vq_resume_all(srv);
	return rc;
}

/* The queue a vring-state message names: -EPROTO if the message is short, -EINVAL if no such queue.
 */
static int state_queue(struct siov_vu_server *srv, struct vu_msg_in *in, struct vu_queue **q)
{
	if (need_size(&in->m, sizeof(struct siov_vu_vring_state)))
		return -EPROTO;
	*q = queue_of(srv, in->m.payload.state.index);
	return *q ? 0 : -EINVAL;
}

static int h_vring_num(struct siov_vu_server *srv, struct vu_msg_in *in)
{
	const struct siov_vu_vring_state *s = &in->m.payload.state;
	struct vu_queue *q;
	int rc = state_queue(srv, in, &q);

	if (rc)
		return rc;
	if (vq_running(q))
		return -EINVAL;
	/* Split rings index modulo the size, so it must divide 65536; packed ones need not. */
	if (s->num == 0 || s->num > SIOV_VQ_MAX_SIZE || (!packed(srv) && (s->num & (s->num - 1))))
		return -EINVAL;
	q->vq.num = (uint16_t)s->num;
	return 0;
}

static int h_vring_addr(struct siov_vu_server *srv, struct vu_msg_in *in)
{
	const struct siov_vu_vring_addr *a = &in->m.payload.addr;
	struct vu_queue *q;
	bool was_running;

	if (need_size(&in->m, sizeof(*a)))
		return -EPROTO;
	q = queue_of(srv, a->index);
	if (!q)
		return -EINVAL;
	was_running = vq_running(q);
	vq_stop(q);
	q->vq.desc_uva = a->desc_user_addr;
	q->vq.avail_uva = a->avail_user_addr;
	q->vq.used_uva = a->used_user_addr;
	q->vq.log_used = a->flags & (1u << VHOST_VRING_F_LOG);
	q->vq.log_used_gpa = a->log_guest_addr;
	q->vq.addr_set = true;
	if (was_running)
		vq_try_start(srv, q);
	return 0;
}

static int h_vring_base(struct siov_vu_server *srv, struct vu_msg_in *in)
{
	const struct siov_vu_vring_state *s = &in->m.payload.state;
	struct vu_queue *q;
	int rc = state_queue(srv, in, &q);

	if (rc)
		return rc;
	if (vq_running(q))
		return -EINVAL;
	/* Packed: the position in bits 0-14 and its wrap counter in bit 15 (checked at start). */
	q->vq.last_avail_idx = (uint16_t)(packed(srv) ? s->num & 0x7fff : s->num);
	q->vq.avail_wrap = packed(srv) && (s->num & 0x8000);
	return 0;
}

static int h_get_vring_base(struct siov_vu_server *srv, struct vu_msg_in *in)
{
	struct siov_vu_vring_state s = in->m.payload.state;
	struct vu_queue *q;

	/* This one must be answered: a request we cannot answer ends the session. */
	if (state_queue(srv, in, &q))
		return -EPROTO;
	/* Stops the ring: in-flight requests complete before we answer. */
	vq_stop(q);
	q->kicked = false;
	close_fd(&q->vq.kick_fd);
	/* Packed: avail position and wrap in bits 0-15, used ones in bits 16-31 (equal: drained).
	 */
	s.num = q->vq.packed
		    ? siov_vq_packed_base(q->vq.last_avail_idx, q->vq.avail_wrap) |
			  (uint32_t)siov_vq_packed_base(q->vq.used_idx, q->vq.used_wrap) << 16
		    : q->vq.last_avail_idx;
	SIOV_DEBUG("vdev %s queue %u stopped at avail %u, used %u", srv->name, q->vq.index,
		   q->vq.last_avail_idx, q->vq.used_idx);
	return reply(srv, &in->m, &s, sizeof(s), -1) ? -EPIPE : 1;
}

/* SET_VRING_KICK/CALL/ERR: takes the message's fd (or none) for one queue. */
static int h_vring_fd(struct siov_vu_server *srv, struct vu_msg_in *in)
{
	uint64_t v = in->m.payload.u64;
	bool nofd = v & VHOST_USER_VRING_NOFD;
	struct vu_queue *q;
	bool was_running;
	int *slot, fd = -1;

	if (need_size(&in->m, 8) || (nofd ? in->nfds != 0 : in->nfds != 1))
		return -EPROTO;
	q = queue_of(srv, (uint32_t)(v & VHOST_USER_VRING_IDX_MASK));
	if (!q || (v & ~(uint64_t)(VHOST_USER_VRING_IDX_MASK | VHOST_USER_VRING_NOFD)))
		return -EINVAL;
	if (!nofd) {
		fd = in->fds[0];
		in->fds[0] = -1;
	}
	slot = in->m.hdr.request == VHOST_USER_SET_VRING_KICK	? &q->vq.kick_fd
	       : in->m.hdr.request == VHOST_USER_SET_VRING_CALL ? &q->vq.call_fd
								: &q->vq.err_fd;
	/* The engine may be using the old fd: take the queue back first. */
	was_running = vq_running(q);
	vq_stop(q);
	close_fd(slot);
	*slot = fd;
	if (in->m.hdr.request == VHOST_USER_SET_VRING_KICK)
		q->kicked = true;
	if (was_running || in->m.hdr.request == VHOST_USER_SET_VRING_KICK)
		vq_try_start(srv, q);
	return 0;
}

static int h_vring_enable(struct siov_vu_server *srv, struct vu_msg_in *in)
{
	const struct siov_vu_vring_state *s = &in->m.payload.state;
	struct vu_queue *q;
	int rc = state_queue(srv, in, &q);

	if (rc)
		return rc;
	if (s->num > 1)
		return -EINVAL;
	q->vq.enabled = s->num;
	if (s->num)
		vq_try_start(srv, q);
	else
		vq_stop(q);
	return 0;
}

static int h_get_config(struct siov_vu_server *srv, struct vu_msg_in *in)
{
	struct siov_vu_config c;
	const struct siov_vu_config *rq = &in->m.payload.config;

	if (need_size(&in->m, SIOV_VU_CONFIG_HDR) || rq->size > SIOV_VU_CONFIG_MAX ||
	    rq->offset > SIOV_VU_CONFIG_MAX || rq->offset + rq->size > SIOV_VU_CONFIG_MAX)
		return -EPROTO;
	c.offset = rq->offset;
	c.size = rq->size;
	c.flags = 0;
	srv->ops->get_config(srv->dev, c.region, rq->offset, rq->size);
	return reply(srv, &in->m, &c, SIOV_VU_CONFIG_HDR + c.size, -1) ? -EPIPE : 1;
}

static int h_set_config(struct siov_vu_server *srv, struct vu_msg_in *in)
{
	const struct siov_vu_config *c = &in->m.payload.config;

	if (need_size(&in->m, SIOV_VU_CONFIG_HDR) || c->size > SIOV_VU_CONFIG_MAX ||
	    c->offset + c->size > SIOV_VU_CONFIG_MAX ||
	    in->m.hdr.size < SIOV_VU_CONFIG_HDR + c->size)
		return -EPROTO;
	if (!srv->ops->set_config)
		return -ENOTSUP;
	return srv->ops->set_config(srv->dev, c->region, c->offset, c->size);
}

static int h_get_inflight(struct siov_vu_server *srv, struct vu_msg_in *in)
{
	struct siov_vu_inflight r = in->m.payload.inflight;
	size_t qb, total, i;
	void *base;
	int fd, rc;

	if (need_size(&in->m, sizeof(r)))
		return -EPROTO;
	if (r.num_queues == 0 || r.num_queues > srv->nqueues || r.queue_size == 0 ||
	    r.queue_size > SIOV_VQ_MAX_SIZE)
		return -EINVAL;
	qb = inflight_queue_bytes(r.queue_size);
	/* Room for either ring format: GET_INFLIGHT_FD may come before SET_FEATURES. */
	total = (qb + inflight_packed_bytes(r.queue_size)) * r.num_queues;
	fd = memfd_create("siov-inflight", MFD_CLOEXEC);
	if (fd < 0)
		return -errno;
	if (ftruncate(fd, (off_t)total) < 0)
		goto err_errno;
	base = mmap(NULL, total, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
	if (base == MAP_FAILED)
		goto err_errno;
	for (i = 0; i < r.num_queues; i++) {
		struct siov_vu_inflight_queue *q = (void *)((uint8_t *)base + qb * i);
		q->version = 1;
		q->desc_num = r.queue_size;
	}
	vq_pause_all(srv);
	inflight_unmap(srv);
	srv->inflight_base = base;
	srv->inflight_size = total;
	srv->inflight_nqueues = r.num_queues;
	srv->inflight_qsize = r.queue_size;
	vq_resume_all(srv);
	r.mmap_size = total;
	r.mmap_offset = 0;
	rc = reply(srv, &in->m, &r, sizeof(r), fd);
	close(fd);
	return rc ? -EPIPE : 1;

err_errno:
	rc = -errno;
	close(fd);
	return rc;
}

static int h_set_inflight(struct siov_vu_server *srv, struct vu_msg_in *in)
{
	struct siov_vu_inflight copy = in->m.payload.inflight, *r = &copy;
	struct stat st;
	size_t qb;
	void *base;

	if (need_size(&in->m, sizeof(*r)) || in->nfds != 1)
		return -EPROTO;
	if (r->num_queues == 0 || r->num_queues > srv->nqueues || r->queue_size == 0 ||
	    r->queue_size > SIOV_VQ_MAX_SIZE)
		return -EINVAL;
	qb = inflight_queue_bytes(r->queue_size);
	/* The region comes from the front end: it must really be as large as it says. */
	if (r->mmap_size < qb * r->num_queues || r->mmap_offset % 4096 ||
	    fstat(in->fds[0], &st) < 0 || (uint64_t)st.st_size < r->mmap_offset + r->mmap_size ||
	    r->mmap_offset + r->mmap_size < r->mmap_offset)
		return -EINVAL;
	base = mmap(NULL, r->mmap_size, PROT_READ | PROT_WRITE, MAP_SHARED, in->fds[0],
		    (off_t)r->mmap_offset);
	if (base == MAP_FAILED)
		return -errno;
	/* Running queues point into the old region: take them off their engines first. */
	vq_pause_all(srv);
	inflight_unmap(srv);
	srv->inflight_base = base;
	srv->inflight_size = r->mmap_size;
	srv->inflight_nqueues = r->num_queues;
	srv->inflight_qsize = r->queue_size;
	vq_resume_all(srv);
	return 0;
}

/*
 * SET_LOG_BASE: the front end starts (or resizes) the dirty log.  QEMU waits
 * for an answer whatever REPLY_ACK says, so one always goes back; a log we
 * cannot use is answered too, and breaks the queues when logging starts.
 */
static int h_set_log_base(struct siov_vu_server *srv, struct vu_msg_in *in)
{
	const struct siov_vu_log *l = &in->m.payload.log;
	struct siov_dirty_log *log = NULL;
	uint64_t status = 0;
	int rc;

	if (need_size(&in->m, sizeof(*l)) || in->nfds != 1)
		return -EPROTO;
	rc = siov_dirty_log_create(in->fds[0], l->mmap_size, l->mmap_offset, &log);
	if (rc) {
		SIOV_WARN("vdev %s: dirty log of %llu bytes at offset %llu refused: %s", srv->name,
			  (unsigned long long)l->mmap_size, (unsigned long long)l->mmap_offset,
			  strerror(-rc));
		status = 1;
	}
	/* Running queues write into the old log: take them off their engines first. */
	vq_pause_all(srv);
	siov_dirty_log_destroy(srv->log);
	srv->log = log;
	vq_resume_all(srv);
	return reply_u64(srv, &in->m, status) ? -EPIPE : 1;
}

/* SET_LOG_FD: an eventfd to signal after the log changed (kept, signalled per round). */
static int h_set_log_fd(struct siov_vu_server *srv, struct vu_msg_in *in)
{
	if (in->nfds != 1)
		return -EPROTO;
	vq_pause_all(srv);
	close_fd(&srv->log_fd);
	srv->log_fd = in->fds[0];
	in->fds[0] = -1;
	vq_resume_all(srv);
	return 0;
}

static int h_reset(struct siov_vu_server *srv, struct vu_msg_in *in)
{
	reset_queues(srv);
	log_unmap(srv);
	srv->features = 0;
	srv->features_set = false;
	srv->dev_broken = 0;
	return 0;
}

/* Returns 1 if the handler replied itself, 0 / -errno for an ack, -EPROTO to drop. */
/* Requests only one device type knows (net: SEND_RARP, NET_SET_MTU); its size is already checked.
 */
static int h_device_message(struct siov_vu_server *srv, struct vu_msg_in *in)
{
	const struct siov_vu_msg *m = &in->m;
	int rc = srv->ops->message
		     ? srv->ops->message(srv->dev, m->hdr.request, &m->payload, m->hdr.size)
		     : -ENOTSUP;

	if (rc == -ENOTSUP)
		SIOV_VDEV_LOG(&srv->log_rl, srv->name, SIOV_LOG_WARN,
			      "vdev %s: unsupported vhost-user request %u", srv->name,
			      m->hdr.request);
	return rc;
}

static int dispatch(struct siov_vu_server *srv, struct vu_msg_in *in)
{
	struct siov_vu_msg *m = &in->m;
	uint64_t v;

	switch (m->hdr.request) {
	case VHOST_USER_GET_FEATURES:
		v = srv->ops->features(srv->dev) | VU_RING_FEATURES;
		return reply_u64(srv, m, v) ? -EPIPE : 1;
	case VHOST_USER_SET_FEATURES:
		return need_size(m, 8) ? -EPROTO : h_set_features(srv, in);
	case VHOST_USER_GET_PROTOCOL_FEATURES:
		return reply_u64(srv, m, protocol_features(srv)) ? -EPIPE : 1;
	case VHOST_USER_SET_PROTOCOL_FEATURES:
		if (need_size(m, 8))
			return -EPROTO;
		srv->protocol_features = m->payload.u64 & protocol_features(srv);
		return 0;
	case VHOST_USER_SET_OWNER:
		return 0;
	case VHOST_USER_RESET_OWNER:
	case VHOST_USER_RESET_DEVICE:
		return h_reset(srv, in);
	case VHOST_USER_GET_QUEUE_NUM:
		return reply_u64(srv, m,
				 srv->ops->queue_num ? srv->ops->queue_num(srv->dev) : srv->nqueues)
			   ? -EPIPE
			   : 1;
	case VHOST_USER_GET_MAX_MEM_SLOTS:
		return reply_u64(srv, m, VHOST_USER_MAX_MEM_SLOTS) ? -EPIPE : 1;
	case VHOST_USER_SET_MEM_TABLE:
		return h_set_mem_table(srv, in);
	case VHOST_USER_ADD_MEM_REG:
		return h_add_mem_reg(srv, in);
	case VHOST_USER_REM_MEM_REG:
		return h_rem_mem_reg(srv, in);
	case VHOST_USER_SET_VRING_NUM:
		return h_vring_num(srv, in);
	case VHOST_USER_SET_VRING_ADDR:
		return h_vring_addr(srv, in);
	case VHOST_USER_SET_VRING_BASE:
		return h_vring_base(srv, in);
	case VHOST_USER_GET_VRING_BASE:
		return h_get_vring_base(srv, in);
	case VHOST_USER_SET_VRING_KICK:
	case VHOST_USER_SET_VRING_CALL:
	case VHOST_USER_SET_VRING_ERR:
		return h_vring_fd(srv, in);
	case VHOST_USER_SET_VRING_ENABLE:
		return h_vring_enable(srv, in);
	case VHOST_USER_GET_CONFIG:
		return h_get_config(srv, in);
	case VHOST_USER_SET_CONFIG:
		return h_set_config(srv, in);
	case VHOST_USER_GET_INFLIGHT_FD:
		return h_get_inflight(srv, in);
	case VHOST_USER_SET_INFLIGHT_FD:
		return h_set_inflight(srv, in);
	case VHOST_USER_SET_LOG_BASE:
		return h_set_log_base(srv, in);
	case VHOST_USER_SET_LOG_FD:
		return h_set_log_fd(srv, in);
	default:
		return h_device_message(srv, in);
	}
}

/* ---- connection ---- */

static void conn_close(struct siov_vu_server *srv, const char *why)
{
	unsigned i;

	if (srv->conn_fd < 0)
		return;
	SIOV_VDEV_LOG(&srv->log_rl, srv->name, SIOV_LOG_INFO,
		      "vdev %s: front end disconnected (%s)", srv->name, why);
	/*
	 * Drain first, close after: the front end reads the used index when it
	 * sees the hang-up, so every completion must be in the ring by then.
	 */
	session_reset(srv);
	siov_loop_del(srv->conn_w);
	srv->conn_w = NULL;
	close_fd(&srv->conn_fd);
	for (i = 0; i < srv->rx.nfds; i++)
		close_fd(&srv->rx.fds[i]);
	srv->rx.nfds = 0;
	srv->rx_len = 0;
}

static int handle_msg(struct siov_vu_server *srv)
{
	struct vu_msg_in *in = &srv->rx;
	/*
	 * NEED_REPLY is answered even if this connection never negotiated
	 * REPLY_ACK (libvhost-user does the same): a QEMU waiting for an incoming
	 * migration does not renegotiate after the back end restarted, and waits
	 * for the ack it was promised on the previous connection.
	 */
	bool want_ack = in->m.hdr.flags & VHOST_USER_NEED_REPLY;
	unsigned i;
	int rc;

	SIOV_DEBUG("vdev %s: vhost-user request %u, %u bytes, %u fd(s)", srv->name,
		   in->m.hdr.request, in->m.hdr.size, in->nfds);
	rc = dispatch(srv, in);
	for (i = 0; i < in->nfds; i++)
		close_fd(&in->fds[i]);
	in->nfds = 0;
	if (rc == -EPROTO) {
		SIOV_VDEV_LOG(&srv->log_rl, srv->name, SIOV_LOG_WARN,
			      "vdev %s: malformed vhost-user request %u (size %u)", srv->name,
			      in->m.hdr.request, in->m.hdr.size);
		return rc;
	}
	if (rc == -EPIPE)
		return rc;
	if (rc < 0 && rc != -ENOTSUP)
		SIOV_VDEV_LOG(&srv->log_rl, srv->name, SIOV_LOG_WARN,
			      "vdev %s: vhost-user request %u failed: %s", srv->name,
			      in->m.hdr.request, strerror(-rc));
	if (rc <= 0 && want_ack)
		return reply_u64(srv, &in->m, rc ? 1 : 0) ? -EPIPE : 0;
	return 0;
}

static void take_fds(struct siov_vu_server *srv, struct msghdr *mh, bool *overflow)
{
	struct cmsghdr *c;

	for (c = CMSG_FIRSTHDR(mh); c; c = CMSG_NXTHDR(mh, c)) {
		unsigned n, i;
		int fds[VHOST_USER_MAX_FDS * 2];

		if (c->cmsg_level != SOL_SOCKET || c->cmsg_type != SCM_RIGHTS)
			continue;
		n = (unsigned)((c->cmsg_len - CMSG_LEN(0)) / sizeof(int));
		if (n > SIOV_ARRAY_SIZE(fds))
			n = SIOV_ARRAY_SIZE(fds);
		memcpy(fds, CMSG_DATA(c), n * sizeof(int));
		for (i = 0; i < n; i++) {
			if (srv->rx.nfds < VHOST_USER_MAX_FDS) {
				srv->rx.fds[srv->rx.nfds++] = fds[i];
			} else {
				close(fds[i]);
				*overflow = true;
			}
		}
	}
}

/* Reads what is there of the current message; 1 when complete, 0 for more, <0 to drop. */
static int rx_some(struct siov_vu_server *srv)
{
	char cbuf[CMSG_SPACE(sizeof(int) * VHOST_USER_MAX_FDS * 2)];
	const size_t hdr = sizeof(struct siov_vu_hdr);
	size_t want = srv->rx_len < hdr ? hdr : hdr + srv->rx.m.hdr.size;
	struct iovec iov = {.iov_base = (uint8_t *)&srv->rx.m + srv->rx_len,
			    .iov_len = want - srv->rx_len};
	struct msghdr mh = {
	    .msg_iov = &iov, .msg_iovlen = 1, .msg_control = cbuf, .msg_controllen = sizeof(cbuf)};
	bool overflow = false;
	ssize_t n;

	n = recvmsg(srv->conn_fd, &mh, MSG_DONTWAIT | MSG_CMSG_CLOEXEC);
	if (n < 0)
		return errno == EAGAIN || errno == EINTR ? 0 : -errno;
	if (n == 0)
		return -ECONNRESET;
	take_fds(srv, &mh, &overflow);
	if (overflow || (mh.msg_flags & MSG_CTRUNC))
		return -E2BIG;
	srv->rx_len += (size_t)n;
	if (srv->rx_len == hdr) {
		if ((srv->rx.m.hdr.flags & VHOST_USER_VERSION_MASK) != VHOST_USER_VERSION ||
		    srv->rx.m.hdr.size > sizeof(union siov_vu_payload))
			return -EPROTO;
		return srv->rx.m.hdr.size == 0;
	}
	return srv->rx_len == hdr + srv->rx.m.hdr.size;
}

static void conn_readable(struct siov_watch *w, uint32_t events, void *arg)
{
	struct siov_vu_server *srv = arg;
	int rc;

	for (;;) {
		rc = rx_some(srv);
		if (rc <= 0)
			break;
		srv->rx_len = 0;
		rc = handle_msg(srv);
		if (rc < 0)
			break;
		if (srv->conn_fd < 0)
			return;
	}
	if (rc < 0) {
		conn_close(srv, rc == -ECONNRESET ? "hang-up"
				: rc == -E2BIG	  ? "too many fds in one message"
				: rc == -EPROTO	  ? "protocol violation"
				: rc == -EPIPE	  ? "front end does not read its replies"
						  : strerror(-rc));
		return;
	}
	if (events & (EPOLLHUP | EPOLLERR) && !(events & EPOLLIN))
		conn_close(srv, "hang-up");
}

int siov_vu_server_adopt(struct siov_vu_server *srv, int fd)
{
	int rc;

	if (srv->conn_fd >= 0) {
		/* One front end per VDEV: a second one is turned away. */
		SIOV_VDEV_LOG(&srv->log_rl, srv->name, SIOV_LOG_WARN,
			      "vdev %s: refusing a second front end", srv->name);
		close(fd);
		return -EBUSY;
	}
	rc = siov_loop_add_urgent(srv->loop, fd, EPOLLIN | EPOLLRDHUP, conn_readable, srv,
				  &srv->conn_w);
	if (rc) {
		close(fd);
		return rc;
	}
	srv->conn_fd = fd;
	srv->connections++;
	session_reset(srv);
	SIOV_VDEV_LOG(&srv->log_rl, srv->name, SIOV_LOG_INFO, "vdev %s: front end connected on %s",
		      srv->name, srv->path);
	return 0;
}

static void listen_readable(struct siov_watch *w, uint32_t events, void *arg)
{
	struct siov_vu_server *srv = arg;
	int fd;

	fd = accept4(srv->listen_fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
	if (fd >= 0)
		siov_vu_server_adopt(srv, fd);
}

/* ---- socket ---- */

static int socket_prepare(const char *path, struct siov_err *err)
{
	struct sockaddr_un sa = {.sun_family = AF_UNIX};
	struct stat st;
	int fd, rc;

	if (lstat(path, &st) < 0)
		return errno == ENOENT
			   ? 0
			   : siov_err_set(err, -errno, "socket path %s: %s", path, strerror(errno));
	if (!S_ISSOCK(st.st_mode))
		return siov_err_set(err, -EEXIST, "socket path %s exists and is not a socket",
				    path);
	/* A live server answers; a stale socket file from a crash is replaced. */
	fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return siov_err_set(err, -errno, "socket: %s", strerror(errno));
	snprintf(sa.sun_path, sizeof(sa.sun_path), "%s", path);
	rc = connect(fd, (struct sockaddr *)&sa, sizeof(sa));
	close(fd);
	if (rc == 0)
		return siov_err_set(err, -EADDRINUSE,
				    "socket path %s is in use by a running server", path);
	unlink(path);
	return 0;
}

/* Whoever can connect drives the device: 0600 unless the operator says otherwise. */
static int socket_protect(const char *path, const struct siov_vu_server_opts *o,
			  struct siov_err *err)
{
	mode_t mode = o->socket_mode ? (mode_t)o->socket_mode : 0600;

	if ((o->socket_uid > 0 || o->socket_gid > 0) &&
	    lchown(path, o->socket_uid > 0 ? (uid_t)o->socket_uid : (uid_t)-1,
		   o->socket_gid > 0 ? (gid_t)o->socket_gid : (gid_t)-1) < 0)
		return siov_err_set(err, -errno, "chown %s: %s", path, strerror(errno));
	if (chmod(path, mode) < 0)
		return siov_err_set(err, -errno, "chmod %s: %s", path, strerror(errno));
	return 0;
}

/*
 * Binds fd to path with the socket's final mode.  Nobody else may connect,
 * not even for an instant: with an owner or group to hand it to, it is bound
 * 0600 (umask) and chowned and chmodded after; otherwise the umask alone gives
 * the mode (one system call fewer per VDEV).  Sockets always keep owner rw.
 */
static int socket_bind(int fd, const struct sockaddr_un *sa, const struct siov_vu_server_opts *o,
		       bool *protect)
{
	mode_t mode = o->socket_mode ? (mode_t)o->socket_mode : 0600, old_mask;
	int rc;

	*protect = o->socket_uid > 0 || o->socket_gid > 0 || (mode & 0600) != 0600 || mode > 0777;
	old_mask = umask(*protect ? 0177 : ~mode & 0777);
	rc = bind(fd, (const struct sockaddr *)sa, sizeof(*sa));
	umask(old_mask);
	return rc < 0 ? -errno : 0;
}

static int socket_listen(const char *path, const struct siov_vu_server_opts *o,
			 struct siov_err *err)
{
	struct sockaddr_un sa = {.sun_family = AF_UNIX};
	bool protect;
	int fd, rc;

	if (strlen(path) >= sizeof(sa.sun_path))
		return siov_err_set(err, -ENAMETOOLONG,
				    "socket path is %zu bytes; Linux allows at most %zu",
				    strlen(path), sizeof(sa.sun_path) - 1);
	memcpy(sa.sun_path, path, strlen(path) + 1);
	fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return siov_err_set(err, -errno, "socket: %s", strerror(errno));
	rc = socket_bind(fd, &sa, o, &protect);
	if (rc == -EADDRINUSE) {
		/* Something is there: a stale socket is replaced, anything else refused. */
		rc = socket_prepare(path, err);
		if (rc < 0)
			goto err_close;
		rc = socket_bind(fd, &sa, o, &protect);
	}
	if (rc < 0) {
		siov_err_set(err, rc, "bind %s: %s", path, strerror(-rc));
		goto err_close;
	}
	rc = protect ? socket_protect(path, o, err) : 0;
	if (rc == 0 && listen(fd, 16) < 0)
		rc = siov_err_set(err, -errno, "listen %s: %s", path, strerror(errno));
	if (rc) {
		unlink(path);
		goto err_close;
	}
	return fd;

err_close:
	close(fd);
	return rc;
}

int siov_vu_server_create(const struct siov_vu_server_opts *o, struct siov_vu_server **out,
			  struct siov_err *err)
{
	struct siov_vu_server *srv;
	int rc;

	if (o->queues == 0 || o->queues > SIOV_VU_MAX_QUEUES)
		return siov_err_set(err, -EINVAL, "queues must be 1..%d", SIOV_VU_MAX_QUEUES);
	srv = calloc(1, sizeof(*srv));
	if (!srv)
		return siov_err_set(err, -ENOMEM, "out of memory");
	srv->queues = calloc(o->queues, sizeof(*srv->queues));
	if (!srv->queues) {
		rc = siov_err_set(err, -ENOMEM, "out of memory");
		goto err_free;
	}
	srv->loop = o->loop;
	srv->engines = o->engines;
	snprintf(srv->name, sizeof(srv->name), "%s", o->name);
	snprintf(srv->path, sizeof(srv->path), "%s", o->socket_path);
	srv->ops = o->dev_ops;
	srv->dev = o->dev;
	srv->qos = o->qos;
	srv->nqueues = o->queues;
	srv->conn_fd = -1;
	srv->log_fd = -1;
	siov_memtable_init(&srv->mem);
	rc = socket_listen(o->socket_path, o, err);
	if (rc < 0)
		goto err_queues;
	srv->listen_fd = rc;
	rc = siov_loop_add_urgent(srv->loop, srv->listen_fd, EPOLLIN, listen_readable, srv,
				  &srv->listen_w);
	if (rc) {
		siov_err_set(err, rc, "cannot watch %s: %s", o->socket_path, strerror(-rc));
		goto err_listen;
	}
	*out = srv;
	return 0;

err_listen:
	close(srv->listen_fd);
	unlink(srv->path);
err_queues:
	free(srv->queues);
err_free:
	free(srv);
	return rc;
}

void siov_vu_server_destroy(struct siov_vu_server *srv)
{
	unsigned i;

	if (!srv)
		return;
	if (srv->conn_fd >= 0)
		conn_close(srv, "VDEV deleted");
	session_reset(srv);
	siov_loop_del(srv->listen_w);
	close(srv->listen_fd);
	unlink(srv->path);
	for (i = 0; i < srv->nqueues; i++)
		free(srv->queues[i]);
	free(srv->queues);
	free(srv);
}

const char *siov_vu_server_state(const struct siov_vu_server *srv)
{
	if (__atomic_load_n(&srv->dev_broken, __ATOMIC_ACQUIRE))
		return "broken";
	if (srv->conn_fd < 0)
		return "listening";
	return any_running(srv) ? "running" : "connected";
}

const char *siov_vu_server_broken_reason(const struct siov_vu_server *srv)
{
	unsigned i;

	if (!__atomic_load_n(&srv->dev_broken, __ATOMIC_ACQUIRE))
		return NULL;
	for (i = 0; i < srv->nqueues; i++)
		if (srv->queues[i] && __atomic_load_n(&srv->queues[i]->vq.broken, __ATOMIC_ACQUIRE))
			return srv->queues[i]->vq.broken_reason;
	return "broken";
}

bool siov_vu_server_connected(const struct siov_vu_server *srv)
{
	return srv->conn_fd >= 0;
}

uint64_t siov_vu_server_features(const struct siov_vu_server *srv)
{
	return srv->features;
}

uint64_t siov_vu_server_connections(const struct siov_vu_server *srv)
{
	return srv->connections;
}

unsigned siov_vu_server_nqueues(const struct siov_vu_server *srv)
{
	return srv->nqueues;
}

unsigned siov_vu_server_queues_used(const struct siov_vu_server *srv)
{
	return srv->queues_used; /* a scrape asks this of every VDEV: no scan */
}

const struct siov_vq *siov_vu_server_queue(const struct siov_vu_server *srv, unsigned i)
{
	return i < srv->nqueues && srv->queues[i] ? &srv->queues[i]->vq : NULL;
}

bool siov_vu_server_queue_self_running(const struct siov_vu_server *srv, unsigned i)
{
	return i < srv->nqueues && srv->queues[i] && srv->queues[i]->self_running;
}

bool siov_vu_server_logging(const struct siov_vu_server *srv)
{
	return logging(srv) && srv->log;
}
