/*
 * virtio-blk over a backend window.  Runs on engine threads: process() pops
 * chains, parses the request (header, data, status byte), checks it against
 * the window and the device's read-only flag, and submits one backend I/O
 * whose iovecs point straight into the driver's buffers (no bounce copy).
 * The completion writes the status byte and hands the chain back through
 * siov_vq_complete(), the virtqueue layer's one completion path.  The device
 * model never sees who runs its queues: it reports what process() started and
 * any QoS deadline in struct siov_vq_work.
 *
 * Request slots come from a per-queue free list that only grows (up to the
 * queue size): an idle queue holds none, a busy one allocates nothing per
 * request.
 */
#include <errno.h>
#include <linux/virtio_blk.h>
#include <stdatomic.h>
#include <linux/virtio_config.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "siov_internal/backend.h"
#include "siov_internal/iov.h"
#include "siov_internal/log.h"
#include "siov_internal/qos.h"
#include "siov_internal/virtio_blk.h"
#include "siov_internal/virtqueue.h"

#define BLK_SECTOR	512u
#define BLK_SEG_MAX	126u
#define BLK_MAX_DISCARD (1u << 22) /* sectors: 2 GiB per request */
#define BLK_HDR_LEN	16u
#define BLK_BATCH	32u	      /* requests popped before any is started */
#define HOLD_RETRY_NS	1000000000ull /* held requests are retried this often by themselves */
#define HOLD_CHECK_NS	50000000ull   /* a holding queue looks at resume and timeout this often */

struct siov_blk {
	char name[SIOV_NAME_MAX];
	struct siov_backend *_Atomic bd;
	_Atomic uint64_t offset;
	uint64_t size;
	bool readonly;
	uint16_t queues;
	uint8_t wce;
	/* Error policy: written by the control thread, read by the queues. */
	_Atomic int policy;
	_Atomic uint32_t hold_timeout_ms;
	_Atomic uint64_t resume_gen;
	_Atomic uint64_t held, held_total, hold_events, timed_out, since_ns;
	_Atomic int last_error;
	/* Pausing (siov_blk_pause): queues inside process() and requests in flight. */
	atomic_bool paused;
	_Atomic unsigned in_process;
	_Atomic uint64_t inflight;
};

struct blk_req {
	struct siov_io io; /* first: the backend calls back with &req->io */
	struct siov_vq *vq;
	uint8_t *status;
	uint32_t written; /* bytes written into device-writable buffers */
	unsigned wr_num;  /* device-writable iovecs, the status byte's included */
	size_t st_len;	  /* length of the last of them before the status byte came off */
	uint32_t type;
	uint64_t start_ns;
	uint64_t seq; /* order of arrival in its queue: held requests retry in it */
	struct blk_req *next_free, *next_held;
	struct siov_vq_chain chain;
};

struct blk_queue {
	struct blk_req *free;
	/* Popped and priced, but QoS said wait: started first next time. */
	struct blk_req *throttled;
	unsigned allocated;
	uint64_t seq;
	/* Error policy HOLD: held requests by seq, and the ones sent again. */
	struct blk_req *held;
	unsigned retrying;
	uint64_t held_since, next_retry, resume_seen;
};

int siov_blk_create(const struct siov_blk_conf *conf, struct siov_blk **out)
{
	struct siov_blk *blk;

	if (!conf->backend || conf->size == 0 || conf->size % BLK_SECTOR ||
	    conf->offset % BLK_SECTOR || conf->queues == 0)
		return -EINVAL;
	blk = calloc(1, sizeof(*blk));
	if (!blk)
		return -ENOMEM;
	snprintf(blk->name, sizeof(blk->name), "%s", conf->name);
	blk->bd = conf->backend;
	blk->offset = conf->offset;
	blk->size = conf->size;
	blk->readonly = conf->readonly || siov_backend_conf(conf->backend)->readonly;
	blk->queues = conf->queues;
	blk->wce = 1;
	atomic_store(&blk->policy, conf->error_policy);
	atomic_store(&blk->hold_timeout_ms, conf->hold_timeout_ms);
	*out = blk;
	return 0;
}

void siov_blk_destroy(struct siov_blk *blk)
{
	free(blk);
}

void siov_blk_set_error_policy(struct siov_blk *blk, enum siov_error_policy p, uint32_t timeout_ms)
{
	atomic_store(&blk->hold_timeout_ms, timeout_ms);
	atomic_store(&blk->policy, p);
	/* A queue that holds looks again at once. */
	atomic_fetch_add(&blk->resume_gen, 1);
}

int siov_blk_pause(struct siov_blk *blk, unsigned timeout_ms)
{
	unsigned waited = 0;

	atomic_store(&blk->paused, true);
	/* Dekker with blk_process(): it raises in_process, then reads paused. */
	while (atomic_load(&blk->in_process) || atomic_load(&blk->inflight)) {
		if (waited++ >= timeout_ms) {
			atomic_store(&blk->paused, false);
			return -EBUSY;
		}
		usleep(1000);
	}
	return 0;
}

void siov_blk_switch(struct siov_blk *blk, struct siov_backend *bd, uint64_t offset)
{
	atomic_store(&blk->offset, offset);
	atomic_store(&blk->bd, bd);
}

void siov_blk_unpause(struct siov_blk *blk)
{
	atomic_store(&blk->paused, false);
}

void siov_blk_resume(struct siov_blk *blk)
{
	atomic_fetch_add(&blk->resume_gen, 1);
}

void siov_blk_hold_stats(const struct siov_blk *blk, struct siov_blk_hold_stats *out)
{
	out->held = atomic_load(&blk->held);
	out->held_total = atomic_load(&blk->held_total);
	out->hold_events = atomic_load(&blk->hold_events);
	out->timed_out = atomic_load(&blk->timed_out);
	out->last_error = atomic_load(&blk->last_error);
	out->since_ns = out->held ? atomic_load(&blk->since_ns) : 0;
}

static uint64_t blk_features(void *dev)
{
	struct siov_blk *blk = dev;
	uint64_t f = (1ull << VIRTIO_BLK_F_SEG_MAX) | (1ull << VIRTIO_BLK_F_BLK_SIZE) |
		     (1ull << VIRTIO_BLK_F_FLUSH) | (1ull << VIRTIO_BLK_F_TOPOLOGY) |
		     (1ull << VIRTIO_BLK_F_MQ) | (1ull << VIRTIO_BLK_F_CONFIG_WCE) |
		     /* The virtqueue layer does both ring formats; tested with blk (packed=on). */
		     (1ull << VIRTIO_F_RING_PACKED_BIT) |
		     /* ... and uses buffers in order when asked (libsiov SIOV_DEV_F_IN_ORDER). */
		     (1ull << VIRTIO_F_IN_ORDER_BIT);

	if (blk->readonly)
		f |= 1ull << VIRTIO_BLK_F_RO;
	else if (siov_backend_can_discard(blk->bd))
		f |= 1ull << VIRTIO_BLK_F_DISCARD;
	if (!blk->readonly && siov_backend_can_write_zeroes(blk->bd))
		f |= 1ull << VIRTIO_BLK_F_WRITE_ZEROES;
	return f;
}

static void blk_fill_config(const struct siov_blk *blk, struct virtio_blk_config *c)
{
	uint32_t bs = siov_backend_block_size(blk->bd);

	memset(c, 0, sizeof(*c));
	c->capacity = blk->size / BLK_SECTOR;
	c->seg_max = BLK_SEG_MAX;
	c->blk_size = bs;
	c->physical_block_exp = 0;
	c->min_io_size = 1;
	c->opt_io_size = 0;
	c->wce = blk->wce;
	c->num_queues = blk->queues;
	c->max_discard_sectors = BLK_MAX_DISCARD;
	c->max_discard_seg = 1;
	c->discard_sector_alignment = bs / BLK_SECTOR;
	c->max_write_zeroes_sectors = BLK_MAX_DISCARD;
	c->max_write_zeroes_seg = 1;
	c->write_zeroes_may_unmap = 1;
}

static void blk_get_config(void *dev, uint8_t *buf, uint32_t off, uint32_t len)
{
	struct virtio_blk_config c;

	blk_fill_config(dev, &c);
	memset(buf, 0, len);
	/* Lenient on size: SPDK asks for 256 bytes, QEMU for its own struct's size. */
	if (off < sizeof(c))
		memcpy(buf, (uint8_t *)&c + off, SIOV_MIN(len, (uint32_t)sizeof(c) - off));
}

static int blk_set_config(void *dev, const uint8_t *buf, uint32_t off, uint32_t len)
{
	struct siov_blk *blk = dev;
	uint32_t wce_off = offsetof(struct virtio_blk_config, wce);

	/* Only the writeback byte is writable; every write is a flush-through anyway. */
	if (off <= wce_off && off + len > wce_off) {
		blk->wce = buf[wce_off - off] ? 1 : 0;
		return 0;
	}
	return -EINVAL;
}

static void blk_set_features(void *dev, uint64_t features)
{
}

/* ---- data path ---- */

static struct blk_req *req_get(struct siov_vq *vq)
{
	struct blk_queue *q = vq->dev_queue;
	struct blk_req *r;

	if (!q) {
		q = calloc(1, sizeof(*q));
		if (!q)
			return NULL;
		vq->dev_queue = q;
	}
	r = q->free;
	if (r) {
		q->free = r->next_free;
		return r;
	}
	if (q->allocated >= vq->num)
		return NULL;
	r = aligned_alloc(64, (sizeof(*r) + 63) & ~(size_t)63);
	if (r)
		q->allocated++;
	return r;
}

static void req_put(struct siov_vq *vq, struct blk_req *r)
{
	struct blk_queue *q = vq->dev_queue;

	r->next_free = q->free;
	q->free = r;
}

static void blk_release(struct siov_vq *vq)
{
	struct blk_queue *q = vq->dev_queue;

	if (!q)
		return;
	/* A throttled request was never started: give it back to the ring for the next owner. */
	if (q->throttled) {
		siov_vq_unpop(vq);
		req_put(vq, q->throttled);
		q->throttled = NULL;
	}
	/* Held requests kept through a move: the next runner's hold_pass() retries them. */
	if (q->held)
		return;
	while (q->free) {
		struct blk_req *r = q->free;
		q->free = r->next_free;
		free(r);
	}
	free(q);
	vq->dev_queue = NULL;
}

static void count_op(struct siov_vq_stats *s, uint32_t type, uint64_t len)
{
	switch (type) {
	case VIRTIO_BLK_T_IN:
		SIOV_STAT_ADD(s->reads, 1);
		SIOV_STAT_ADD(s->bytes_read, len);
		break;
	case VIRTIO_BLK_T_OUT:
		SIOV_STAT_ADD(s->writes, 1);
		SIOV_STAT_ADD(s->bytes_written, len);
		break;
	case VIRTIO_BLK_T_FLUSH:
		SIOV_STAT_ADD(s->flushes, 1);
		break;
	case VIRTIO_BLK_T_DISCARD:
		SIOV_STAT_ADD(s->discards, 1);
		break;
	case VIRTIO_BLK_T_WRITE_ZEROES:
		SIOV_STAT_ADD(s->write_zeroes, 1);
		break;
	case VIRTIO_BLK_T_GET_ID:
		SIOV_STAT_ADD(s->get_ids, 1);
		break;
	}
}

/* The chain's device-writable iovecs as the driver gave them, status byte included. */
static const struct iovec *req_writable(struct blk_req *r)
{
	struct iovec *iov = &r->chain.iov[r->chain.out_num];

	iov[r->wr_num - 1].iov_len = r->st_len;
	return iov;
}

static void req_finish(struct blk_req *r, uint8_t status)
{
	struct siov_vq *vq = r->vq;
	struct siov_vq_stats *s = &vq->stats;
	uint64_t lat;

	*r->status = status;
	siov_vq_complete(vq, r->chain.head, req_writable(r), r->wr_num, r->written + 1);
	SIOV_STAT_ADD(s->requests, 1);
	lat = siov_vq_now(vq) - r->start_ns;
	SIOV_STAT_ADD(s->latency_ns_total, lat);
	SIOV_STAT_ADD(s->lat_hist[siov_lat_bucket(lat)], 1);
	if (status == VIRTIO_BLK_S_OK)
		count_op(s, r->type, r->io.len);
	else
		SIOV_STAT_ADD(s->errors, 1);
	SIOV_STAT_ADD(s->inflight, -1);
	atomic_fetch_sub_explicit(&((struct siov_blk *)vq->dev)->inflight, 1, memory_order_release);
	req_put(vq, r);
}

/* Errors a backend recovers from: room made, a server back, a path restored. */
static bool holdable(int res)
{
	switch (res) {
	case -ENOSPC:
	case -EDQUOT:
	case -EIO:
	case -ENOTCONN:
	case -ECONNRESET:
	case -ECONNREFUSED:
	case -ESHUTDOWN:
	case -EPIPE:
	case -ETIMEDOUT:
	case -EHOSTUNREACH:
		return true;
	}
	return false;
}

/* Keeps r, in arrival order, to be sent again later (error policy HOLD). */
static void hold(struct blk_req *r, int res)
{
	struct siov_vq *vq = r->vq;
	struct blk_queue *q = vq->dev_queue;
	struct siov_blk *blk = vq->dev;
	struct blk_req **pp = &q->held;
	uint64_t now = siov_vq_now(vq);

	while (*pp && (*pp)->seq < r->seq)
		pp = &(*pp)->next_held;
	r->next_held = *pp;
	*pp = r;
	atomic_store(&blk->last_error, res);
	atomic_fetch_add(&blk->held_total, 1);
	atomic_fetch_add(&blk->held, 1);
	if (!q->held_since) {
		/* An episode starts (retries that fail again are part of it). */
		uint64_t zero = 0;

		q->held_since = now; /* the timeout runs from here */
		atomic_compare_exchange_strong(&blk->since_ns, &zero, now);
		atomic_fetch_add(&blk->hold_events, 1);
		SIOV_WARN("vdev %s: queue %u: backend error (%s): holding requests (error policy "
			  "hold); vdev_resume retries them",
			  blk->name, vq->index, strerror(-res));
	}
	q->next_retry = now + HOLD_RETRY_NS;
	/* Completions come outside process(): ask the runner for a pass. */
	vq->dev_wants_run = true;
}

static void req_io_done(struct siov_io *io, int res)
{
	struct blk_req *r = (struct blk_req *)io;
	struct blk_queue *q = r->vq->dev_queue;
	struct siov_blk *blk = r->vq->dev;
	bool ok = res >= 0 && (io->op > SIOV_IO_WRITE || (uint64_t)res == io->len);

	if (r->next_held == r) {
		/* This was a retry of a held request. */
		r->next_held = NULL;
		q->retrying--;
	}
	if (!ok && res >= 0)
		res = -EIO; /* short transfer */
	if (!ok && atomic_load(&blk->policy) == SIOV_ERROR_HOLD && holdable(res)) {
		hold(r, res);
		return;
	}
	if (ok && io->op == SIOV_IO_READ)
		r->written = (uint32_t)io->len;
	req_finish(r, ok ? VIRTIO_BLK_S_OK : VIRTIO_BLK_S_IOERR);
}

static void held_take(struct siov_blk *blk, struct blk_queue *q, struct blk_req *r)
{
	q->held = r->next_held;
	r->next_held = NULL;
	atomic_fetch_sub(&blk->held, 1);
}

/* The queue's episode is over; the VDEV's too once no queue holds anything. */
static void episode_end(struct siov_blk *blk, struct blk_queue *q)
{
	q->held_since = 0;
	if (!atomic_load(&blk->held))
		atomic_store(&blk->since_ns, 0);
}

/* Fails every held request (the policy became REPORT, or they waited too long). */
static void held_fail(struct siov_blk *blk, struct blk_queue *q, bool timeout)
{
	while (q->held) {
		struct blk_req *r = q->held;

		held_take(blk, q, r);
		if (timeout)
			atomic_fetch_add(&blk->timed_out, 1);
		req_finish(r, VIRTIO_BLK_S_IOERR);
	}
	episode_end(blk, q);
	SIOV_WARN("vdev %s: held requests failed (%s)", blk->name,
		  timeout ? "held longer than the timeout" : "error policy report");
}

/* Sends the held requests again, oldest first; one refused at submit stays held. */
static void held_retry(struct siov_blk *blk, struct blk_queue *q, struct siov_io_ctx *ctx)
{
	struct blk_req *keep = NULL, **tail = &keep;

	while (q->held) {
		struct blk_req *r = q->held;

		held_take(blk, q, r);
		/* Marks it a retry (req_io_done sees it); no list uses the link now. */
		r->next_held = r;
		if (siov_backend_submit(blk->bd, ctx, &r->io) == 0) {
			q->retrying++;
			continue;
		}
		r->next_held = NULL;
		atomic_fetch_add(&blk->held, 1);
		*tail = r;
		tail = &r->next_held;
	}
	q->held = keep;
}

/*
 * A queue with held requests takes no new ones: it retries them when resumed
 * or every HOLD_RETRY_NS, fails them after the timeout, and otherwise asks to
 * be looked at again soon.  Returns true while the queue must not pop.
 */
static bool hold_pass(struct siov_vq *vq, struct siov_io_ctx *ctx, struct siov_vq_work *work)
{
	struct blk_queue *q = vq->dev_queue;
	struct siov_blk *blk = vq->dev;
	uint64_t now, gen, tmo;

	vq->dev_wants_run = false;
	if (!q)
		return false;
	if (!q->held && !q->retrying) {
		if (q->held_since) {
			episode_end(blk, q); /* every held request went through */
			SIOV_INFO("vdev %s: queue %u: the held requests went through", blk->name,
				  vq->index);
		}
		return false;
	}
	now = siov_vq_now(vq);
	gen = atomic_load(&blk->resume_gen);
	tmo = (uint64_t)atomic_load(&blk->hold_timeout_ms) * 1000000ull;
	if (q->held &&
	    (atomic_load(&blk->policy) == SIOV_ERROR_REPORT || (tmo && now - q->held_since > tmo)))
		held_fail(blk, q, atomic_load(&blk->policy) == SIOV_ERROR_HOLD);
	else if (q->held && (gen != q->resume_seen || now >= q->next_retry))
		held_retry(blk, q, ctx);
	q->resume_seen = gen;
	q->next_retry = SIOV_MAX(q->next_retry, now + HOLD_CHECK_NS);
	if (!q->held && !q->retrying)
		return false;
	work->wake_at = now + HOLD_CHECK_NS;
	return true;
}

static unsigned blk_park_held(struct siov_vq *vq, bool keep)
{
	struct blk_queue *q = vq->dev_queue;
	struct siov_blk *blk = vq->dev;
	unsigned n = 0;

	if (keep) {
		for (struct blk_req *r = q ? q->held : NULL; r; r = r->next_held)
			n++;
		/* The next runner must look at once: it has no retry deadline of ours. */
		if (n)
			vq->dev_wants_run = true;
		return n;
	}
	while (q && q->held) {
		struct blk_req *r = q->held;

		held_take(blk, q, r);
		SIOV_STAT_ADD(vq->stats.inflight, -1);
		atomic_fetch_sub(&blk->inflight, 1);
		req_put(vq, r);
	}
	return 0;
}

/*
 * Drops the last byte (the status byte) of the writable iovecs; returns a
 * pointer to it.  Remembers what it cut, so that the completion can report
 * every writable buffer (req_writable).
 */
static uint8_t *take_status(struct blk_req *r)
{
	struct siov_vq_chain *c = &r->chain;
	struct iovec *iov = &c->iov[c->out_num];
	unsigned n = c->in_num;
	uint8_t *st;

	while (n && iov[n - 1].iov_len == 0)
		n--;
	if (!n)
		return NULL;
	r->wr_num = n;
	r->st_len = iov[n - 1].iov_len;
	st = (uint8_t *)iov[n - 1].iov_base + iov[n - 1].iov_len - 1;
	iov[n - 1].iov_len--;
	if (iov[n - 1].iov_len == 0)
		n--;
	c->in_num = n;
	c->in_len--;
	return st;
}

static bool range_ok(const struct siov_blk *blk, uint64_t sector, uint64_t len)
{
	uint64_t off;

	if (sector > blk->size / BLK_SECTOR)
		return false;
	off = sector * BLK_SECTOR;
	return len <= blk->size - off;
}

static uint8_t start_rw(struct siov_blk *blk, struct blk_req *r, uint64_t sector,
			struct siov_io_ctx *ctx)
{
	struct siov_vq_chain *c = &r->chain;
	struct iovec *first;

	/* A read's data must be device-writable and a write's device-readable. */
	if (r->type == VIRTIO_BLK_T_IN ? c->out_len != BLK_HDR_LEN : c->in_len != 0)
		return VIRTIO_BLK_S_IOERR;
	if (r->type == VIRTIO_BLK_T_IN) {
		r->io.op = SIOV_IO_READ;
		r->io.len = c->in_len;
		r->io.iov = &c->iov[c->out_num];
		r->io.iovcnt = (int)c->in_num;
	} else {
		if (blk->readonly)
			return VIRTIO_BLK_S_IOERR;
		r->io.op = SIOV_IO_WRITE;
		r->io.len = c->out_len - BLK_HDR_LEN;
		r->io.iovcnt = siov_iov_skip_front(c->iov, (int)c->out_num, BLK_HDR_LEN, &first);
		r->io.iov = first;
	}
	if (r->io.len % BLK_SECTOR || !range_ok(blk, sector, r->io.len))
		return VIRTIO_BLK_S_IOERR;
	if (r->io.len == 0)
		return VIRTIO_BLK_S_OK;
	r->io.offset = blk->offset + sector * BLK_SECTOR;
	return siov_backend_submit(blk->bd, ctx, &r->io) ? VIRTIO_BLK_S_IOERR : 0xff;
}

static uint8_t start_discard(struct siov_blk *blk, struct blk_req *r, struct siov_io_ctx *ctx)
{
	struct virtio_blk_discard_write_zeroes seg;
	struct siov_vq_chain *c = &r->chain;
	bool wz = r->type == VIRTIO_BLK_T_WRITE_ZEROES;

	if (blk->readonly)
		return VIRTIO_BLK_S_IOERR;
	if (wz ? !siov_backend_can_write_zeroes(blk->bd) : !siov_backend_can_discard(blk->bd))
		return VIRTIO_BLK_S_UNSUPP;
	/* We advertise one segment per request. */
	if (c->out_len - BLK_HDR_LEN != sizeof(seg))
		return VIRTIO_BLK_S_UNSUPP;
	siov_iov_to_buf(c->iov, (int)c->out_num, BLK_HDR_LEN, &seg, sizeof(seg));
	if (!wz && (seg.flags & VIRTIO_BLK_WRITE_ZEROES_FLAG_UNMAP))
		return VIRTIO_BLK_S_UNSUPP;
	if (seg.flags & ~VIRTIO_BLK_WRITE_ZEROES_FLAG_UNMAP)
		return VIRTIO_BLK_S_UNSUPP;
	if (seg.num_sectors > BLK_MAX_DISCARD ||
	    !range_ok(blk, seg.sector, (uint64_t)seg.num_sectors * BLK_SECTOR))
		return VIRTIO_BLK_S_IOERR;
	r->io.op = wz ? SIOV_IO_WRITE_ZEROES : SIOV_IO_DISCARD;
	r->io.offset = blk->offset + seg.sector * BLK_SECTOR;
	r->io.len = (uint64_t)seg.num_sectors * BLK_SECTOR;
	r->io.iov = NULL;
	r->io.iovcnt = 0;
	if (r->io.len == 0)
		return VIRTIO_BLK_S_OK;
	return siov_backend_submit(blk->bd, ctx, &r->io) ? VIRTIO_BLK_S_IOERR : 0xff;
}

static uint8_t start_get_id(struct siov_blk *blk, struct blk_req *r)
{
	struct siov_vq_chain *c = &r->chain;
	char id[VIRTIO_BLK_ID_BYTES] = {0};

	memcpy(id, blk->name, SIOV_MIN(strlen(blk->name), sizeof(id)));
	r->written = (uint32_t)siov_iov_from_buf(&c->iov[c->out_num], (int)c->in_num, 0, id,
						 SIOV_MIN(sizeof(id), c->in_len));
	return VIRTIO_BLK_S_OK;
}

/* The request header (pop_one checked out_len): nearly always one buffer, copied inline. */
static void read_hdr(const struct siov_vq_chain *c, struct virtio_blk_outhdr *hdr)
{
	if (c->iov[0].iov_len >= sizeof(*hdr))
		memcpy(hdr, c->iov[0].iov_base, sizeof(*hdr));
	else
		siov_iov_to_buf(c->iov, (int)c->out_num, 0, hdr, sizeof(*hdr));
}

/* Returns a status to complete with now, or 0xff when the backend took the request. */
static uint8_t start_req(struct siov_blk *blk, struct blk_req *r, struct siov_io_ctx *ctx)
{
	struct virtio_blk_outhdr hdr;

	read_hdr(&r->chain, &hdr);
	r->type = hdr.type;
	r->io.len = 0;
	switch (hdr.type) {
	case VIRTIO_BLK_T_IN:
	case VIRTIO_BLK_T_OUT:
		return start_rw(blk, r, hdr.sector, ctx);
	case VIRTIO_BLK_T_FLUSH:
		r->io.op = SIOV_IO_FLUSH;
		r->io.offset = 0;
		r->io.iov = NULL;
		r->io.iovcnt = 0;
		return siov_backend_submit(blk->bd, ctx, &r->io) ? VIRTIO_BLK_S_IOERR : 0xff;
	case VIRTIO_BLK_T_GET_ID:
		return start_get_id(blk, r);
	case VIRTIO_BLK_T_DISCARD:
	case VIRTIO_BLK_T_WRITE_ZEROES:
		return start_discard(blk, r, ctx);
	default:
		return VIRTIO_BLK_S_UNSUPP;
	}
}

/* Bytes a popped request moves (status byte taken off), for bandwidth limits. */
static uint64_t req_bytes(const struct blk_req *r)
{
	const struct siov_vq_chain *c = &r->chain;
	struct virtio_blk_outhdr hdr;

	read_hdr(c, &hdr);
	if (hdr.type == VIRTIO_BLK_T_IN)
		return c->in_len;
	return hdr.type == VIRTIO_BLK_T_OUT ? c->out_len - BLK_HDR_LEN : 0;
}

/*
 * With a limit on the VDEV or its group, a request is priced once, right
 * after it is popped.  One that must wait is kept by the queue (never started,
 * never walked again) and comes first on the next call, when the runner's QoS
 * deadline has passed; if the queue leaves its runner meanwhile, blk_release()
 * gives it back to the ring.
 */
static bool qos_admit(struct siov_vq *vq, struct blk_req *r, struct siov_vq_work *work)
{
	uint64_t retry;

	if (!vq->qos || !siov_qos_limited(vq->qos))
		return true;
	if (siov_qos_admit(vq->qos, siov_vq_now(vq), req_bytes(r), &retry))
		return true;
	work->throttle_until = retry;
	return false;
}

/* Pops and validates one request into r; false if the ring is empty or the queue broke. */
static bool pop_one(struct siov_vq *vq, struct blk_req *r)
{
	if (siov_vq_pop(vq, &r->chain) <= 0)
		return false;
	if (r->chain.out_len < BLK_HDR_LEN || !(r->status = take_status(r))) {
		siov_vq_break(vq, "head %u: request without header or status byte", r->chain.head);
		return false;
	}
	/* The header and status byte are cache misses: start them now, use them later. */
	__builtin_prefetch(r->chain.iov[0].iov_base);
	__builtin_prefetch(r->status, 1);
	return true;
}

/* The next request to start, the throttled one first; NULL if none (empty, broken, QoS waits). */
static struct blk_req *next_req(struct siov_vq *vq, struct siov_vq_work *work)
{
	struct blk_queue *q = vq->dev_queue;
	struct blk_req *r = q ? q->throttled : NULL;

	if (r) {
		q->throttled = NULL;
	} else {
		r = req_get(vq);
		if (!r)
			return NULL;
		q = vq->dev_queue;
		if (!pop_one(vq, r)) {
			req_put(vq, r);
			return NULL;
		}
	}
	if (qos_admit(vq, r, work))
		return r;
	q->throttled = r;
	return NULL;
}

/*
 * Two passes over a batch: pop and validate every chain first, then start the
 * requests.  The cache misses on the driver's descriptors, headers and status
 * bytes of a batch then overlap instead of queueing one behind the other.
 */
static void blk_run(struct siov_vq *vq, struct siov_io_ctx *ctx, unsigned budget,
		    struct siov_vq_work *work);

static void blk_process(struct siov_vq *vq, struct siov_io_ctx *ctx, unsigned budget,
			struct siov_vq_work *work)
{
	struct siov_blk *blk = vq->dev;

	atomic_fetch_add(&blk->in_process, 1);
	if (atomic_load(&blk->paused)) {
		/* A backend switch is under way: come back in a millisecond. */
		work->wake_at = siov_vq_now(vq) + 1000000;
		atomic_fetch_sub(&blk->in_process, 1);
		return;
	}
	blk_run(vq, ctx, budget, work);
	atomic_fetch_sub(&blk->in_process, 1);
}

static void blk_run(struct siov_vq *vq, struct siov_io_ctx *ctx, unsigned budget,
		    struct siov_vq_work *work)
{
	struct blk_req *batch[BLK_BATCH];
	struct siov_blk *blk = vq->dev;
	unsigned n = 0, i;

	if (hold_pass(vq, ctx, work))
		return;
	budget = SIOV_MIN(budget, BLK_BATCH);
	siov_vq_prefetch(vq, budget);
	while (n < budget) {
		struct blk_req *r = next_req(vq, work);
		if (!r)
			break;
		batch[n++] = r;
	}
	if (n)
		atomic_fetch_add_explicit(&blk->inflight, n, memory_order_relaxed);
	for (i = 0; i < n; i++) {
		struct blk_req *r = batch[i];
		uint8_t st;

		r->vq = vq;
		r->written = 0;
		r->start_ns = siov_vq_now(vq);
		r->seq = ((struct blk_queue *)vq->dev_queue)->seq++;
		r->next_held = NULL;
		r->io.cb = req_io_done;
		SIOV_STAT_ADD(vq->stats.inflight, 1);
		st = start_req(blk, r, ctx);
		if (st != 0xff)
			req_finish(r, st);
	}
	work->started = n;
}

static const struct siov_vq_ops blk_vq_ops = {
    .process = blk_process,
    .release = blk_release,
    .park_held = blk_park_held,
};

const struct siov_dev_ops siov_blk_dev_ops = {
    .features = blk_features,
    .get_config = blk_get_config,
    .set_config = blk_set_config,
    .set_features = blk_set_features,
    .vq_ops = &blk_vq_ops,
};
