/*
 * The virtio-net device model (see virtio_net.h): features and config space,
 * the transmit path (engine-run queues: pop, validate, price, hand to the
 * switch) and the receive path (device-run queues, filled under a lock by
 * whichever thread delivers a frame).
 *
 * A frame is copied once: on the sender's thread, from the sender's transmit
 * buffers into the receiver's receive buffers, header rewritten on the way
 * when the receiver lacks an offload (lib/net/offload.c).  The transmit chain
 * is completed as soon as the switch returns, so a slow or absent receiver
 * never holds a sender's buffers.
 */
#include <endian.h>
#include <errno.h>
#include <linux/virtio_config.h>
#include <linux/virtio_net.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>

#include "siov/vhost_user.h"
#include "siov_internal/qos.h"
#include "siov_internal/virtio_net.h"
#include "siov_internal/virtqueue.h"

/* Receive buffers one packet may take with MRG_RXBUF (a 64 KiB GSO frame in 1.5 KiB buffers: 44).
 */
#define RX_MAX_BUFS    128
#define RX_MAX_WRITTEN 256
#define TX_BATCH       64

#define F(bit) (1ull << (bit))
#define NET_FEATURES                                                                               \
	(F(VIRTIO_NET_F_CSUM) | F(VIRTIO_NET_F_GUEST_CSUM) | F(VIRTIO_NET_F_MTU) |                 \
	 F(VIRTIO_NET_F_MAC) | F(VIRTIO_NET_F_GUEST_TSO4) | F(VIRTIO_NET_F_GUEST_TSO6) |           \
	 F(VIRTIO_NET_F_GUEST_ECN) | F(VIRTIO_NET_F_HOST_TSO4) | F(VIRTIO_NET_F_HOST_TSO6) |       \
	 F(VIRTIO_NET_F_HOST_ECN) | F(VIRTIO_NET_F_MRG_RXBUF) | F(VIRTIO_NET_F_STATUS) |           \
	 F(VIRTIO_NET_F_GUEST_ANNOUNCE))

/* What filling one receive queue needs; allocated while a front end runs it (idle ports stay
 * small). */
struct net_rx_scratch {
	struct siov_vq_chain chain;
	struct siov_net_pkt pkt;
	struct siov_vq_used_elem used[RX_MAX_BUFS];
	struct iovec written[RX_MAX_WRITTEN];
};

struct net_rxq {
	pthread_mutex_t lock;
	struct siov_vq *vq; /* NULL while stopped: frames for it are dropped */
	struct net_rx_scratch *s;
	/* Written under lock, read by the control thread without it (relaxed). */
	uint64_t packets, bytes, drops;
};

struct net_txq {
	struct siov_vq_chain chain;
	bool held; /* chain was popped but QoS made it wait: it goes first next time */
};

struct siov_net {
	char name[SIOV_NAME_MAX];
	uint8_t mac[SIOV_ETH_ALEN];
	uint16_t pairs;
	uint32_t mtu;
	struct siov_port *port;
	/* Negotiated (set_features, queues stopped); read by senders under a queue's lock. */
	uint64_t features;
	size_t hdr_len;
	unsigned rx_offloads;
	bool mrg;
	struct net_rxq *rxq;	 /* pairs of them */
	uint32_t rx_running;	 /* bit i: receive queue of pair i runs (atomic) */
	uint32_t seed;		 /* of the flow hash: guests cannot aim flows at a queue */
	struct siov_qos *rx_qos; /* the receive policer: the port's own limits, no group */
};

/* ---- Control side ---- */

static uint64_t net_features(void *dev)
{
	struct siov_net *n = dev;

	return NET_FEATURES | (n->pairs > 1 ? F(VIRTIO_NET_F_MQ) : 0);
}

static void net_get_config(void *dev, uint8_t *buf, uint32_t off, uint32_t len)
{
	struct siov_net *n = dev;
	struct virtio_net_config c;

	memset(&c, 0, sizeof(c));
	memcpy(c.mac, n->mac, SIOV_ETH_ALEN);
	c.status = htole16(VIRTIO_NET_S_LINK_UP);
	c.max_virtqueue_pairs = htole16(n->pairs);
	c.mtu = htole16((uint16_t)SIOV_MIN(n->mtu, 65535u));
	memset(buf, 0, len);
	if (off < sizeof(c))
		memcpy(buf, (uint8_t *)&c + off, SIOV_MIN(len, sizeof(c) - off));
}

static unsigned offloads_of(uint64_t f, unsigned csum, unsigned tso4, unsigned tso6, unsigned ecn)
{
	return ((f & F(csum)) ? SIOV_NET_OFF_CSUM : 0) | ((f & F(tso4)) ? SIOV_NET_OFF_TSO4 : 0) |
	       ((f & F(tso6)) ? SIOV_NET_OFF_TSO6 : 0) | ((f & F(ecn)) ? SIOV_NET_OFF_ECN : 0);
}

static void net_set_features(void *dev, uint64_t f)
{
	struct siov_net *n = dev;

	n->features = f;
	n->mrg = f & F(VIRTIO_NET_F_MRG_RXBUF);
	n->hdr_len =
	    (n->mrg || (f & F(VIRTIO_F_VERSION_1))) ? SIOV_NET_HDR_LEN : SIOV_NET_HDR_LEN_LEGACY;
	n->rx_offloads = offloads_of(f, VIRTIO_NET_F_GUEST_CSUM, VIRTIO_NET_F_GUEST_TSO4,
				     VIRTIO_NET_F_GUEST_TSO6, VIRTIO_NET_F_GUEST_ECN);
	siov_port_set_tx_offloads(n->port,
				  offloads_of(f, VIRTIO_NET_F_CSUM, VIRTIO_NET_F_HOST_TSO4,
					      VIRTIO_NET_F_HOST_TSO6, VIRTIO_NET_F_HOST_ECN));
}

static bool net_self_run(void *dev, unsigned index)
{
	return index % 2 == 0;
}

static int net_queue_start(void *dev, struct siov_vq *vq)
{
	struct siov_net *n = dev;
	struct net_rxq *rq;

	if (vq->index / 2 >= n->pairs)
		return -EINVAL;
	rq = &n->rxq[vq->index / 2];
	if (!rq->s && !(rq->s = malloc(sizeof(*rq->s))))
		return -ENOMEM;
	/* Nobody reads a receive queue's kicks: frames that find no buffer are dropped, not held.
	 */
	siov_vq_disable_notify(vq);
	pthread_mutex_lock(&rq->lock);
	rq->vq = vq;
	pthread_mutex_unlock(&rq->lock);
	__atomic_or_fetch(&n->rx_running, 1u << (vq->index / 2), __ATOMIC_RELEASE);
	return 0;
}

static void net_queue_stop(void *dev, struct siov_vq *vq)
{
	struct siov_net *n = dev;
	struct net_rxq *rq;

	if (vq->index / 2 >= n->pairs)
		return;
	rq = &n->rxq[vq->index / 2];
	__atomic_and_fetch(&n->rx_running, ~(1u << (vq->index / 2)), __ATOMIC_RELEASE);
	pthread_mutex_lock(&rq->lock);
	if (rq->vq == vq)
		rq->vq = NULL;
	pthread_mutex_unlock(&rq->lock);
	free(rq->s);
	rq->s = NULL;
}

static uint64_t net_queue_num(void *dev)
{
	return ((struct siov_net *)dev)->pairs;
}

/* RARP, as QEMU sends it for a migrated guest without GUEST_ANNOUNCE: switches learn the MAC. */
static void send_rarp(struct siov_net *n, const uint8_t *mac)
{
	uint8_t buf[SIOV_NET_HDR_LEN + 60] = {0}, *f = buf + SIOV_NET_HDR_LEN;
	struct iovec iov = {buf, sizeof(buf)};
	struct siov_net_frame fr;
	static const uint8_t rarp[] = {0x80, 0x35, 0, 1, 0x08, 0, 6, 4, 0, 3};

	memset(f, 0xff, SIOV_ETH_ALEN);
	memcpy(f + 6, mac, SIOV_ETH_ALEN);
	memcpy(f + 12, rarp, sizeof(rarp));
	memcpy(f + 22, mac, SIOV_ETH_ALEN);
	memcpy(f + 32, mac, SIOV_ETH_ALEN);
	if (siov_port_parse(n->port, &fr, &iov, 1, SIOV_NET_HDR_LEN) == 0)
		siov_port_send(n->port, &fr, siov_now_ns());
}

static int net_message(void *dev, uint32_t request, const void *payload, uint32_t size)
{
	struct siov_net *n = dev;

	switch (request) {
	case 19: /* VHOST_USER_SEND_RARP: the MAC in the first 6 bytes of a u64 */
		if (size < SIOV_ETH_ALEN)
			return -EINVAL;
		send_rarp(n, payload);
		return 0;
	case 20: /* VHOST_USER_NET_SET_MTU: the network's MTU is what counts; accept a smaller one
		  */
		if (size < 8)
			return -EINVAL;
		return 0;
	default:
		return -ENOTSUP;
	}
}

/* ---- Receive: filling a receiver's buffers, on the sender's thread ---- */

struct iov_cursor {
	const struct iovec *iov;
	unsigned n, i;
	size_t off;
};

/* Copies up to len bytes from the cursor into dst[0..ndst); returns bytes copied. */
static size_t copy_from_cursor(struct iov_cursor *c, const struct iovec *dst, unsigned ndst,
			       size_t skip, size_t len)
{
	size_t done = 0;
	unsigned d;

	for (d = 0; d < ndst && done < len; d++) {
		size_t doff = 0;

		if (skip >= dst[d].iov_len) {
			skip -= dst[d].iov_len;
			continue;
		}
		doff = skip;
		skip = 0;
		while (doff < dst[d].iov_len && done < len && c->i < c->n) {
			size_t k = SIOV_MIN(dst[d].iov_len - doff, c->iov[c->i].iov_len - c->off);

			k = SIOV_MIN(k, len - done);
			memcpy((uint8_t *)dst[d].iov_base + doff,
			       (const uint8_t *)c->iov[c->i].iov_base + c->off, k);
			doff += k;
			done += k;
			c->off += k;
			if (c->off == c->iov[c->i].iov_len) {
				c->i++;
				c->off = 0;
			}
		}
	}
	return done;
}

/* Records [0, bytes) of the chain's writable buffers as written (for the dirty log); -1: too many.
 */
static int note_written(struct iovec *w, int nw, const struct siov_vq_chain *c, size_t bytes)
{
	unsigned i;

	for (i = 0; i < c->in_num && bytes; i++) {
		const struct iovec *v = &c->iov[c->out_num + i];
		size_t k = SIOV_MIN(v->iov_len, bytes);

		if (nw < 0 || nw == RX_MAX_WRITTEN)
			return -1;
		w[nw++] = (struct iovec){v->iov_base, k};
		bytes -= k;
	}
	return nw;
}

static void vnet_hdr(const struct siov_net_pkt *p, struct virtio_net_hdr_mrg_rxbuf *h)
{
	memset(h, 0, sizeof(*h));
	h->hdr.flags = p->hdr.flags;
	h->hdr.gso_type = p->hdr.gso_type;
	h->hdr.hdr_len = htole16(p->hdr.hdr_len);
	h->hdr.gso_size = htole16(p->hdr.gso_size);
	h->hdr.csum_start = htole16(p->hdr.csum_start);
	h->hdr.csum_offset = htole16(p->hdr.csum_offset);
	h->num_buffers = htole16(1);
}

/* num_buffers sits at bytes 10..11 of the first buffer, which written[] starts with. */
static void put_num_buffers(const struct iovec *w, unsigned nw, uint16_t v)
{
	uint8_t b[2] = {(uint8_t)v, (uint8_t)(v >> 8)};
	struct iov_cursor c = {&(struct iovec){b, 2}, 1, 0, 0};

	copy_from_cursor(&c, w, nw, 10, 2);
}

struct rx_ctx {
	struct siov_net *n;
	struct net_rxq *rq;
};

/* Pops one receive chain; -ENOBUFS if there is none (or the queue broke). */
static int rx_pop(struct siov_vq *vq, struct siov_vq_chain *c)
{
	int rc = siov_vq_pop(vq, c);

	if (rc <= 0)
		return -ENOBUFS;
	if (c->out_num || !c->in_len) {
		siov_vq_break(vq, "head %u: receive buffer without device-writable descriptors",
			      c->head);
		return -ENOBUFS;
	}
	return 0;
}

/*
 * Writes one packet into the receiver's buffers: the header, then the bytes,
 * over as many buffers as it takes with MRG_RXBUF (one otherwise), published
 * together.  A packet that does not fit gives its buffers back untouched.
 */
static int rx_emit(const struct siov_net_pkt *p, void *arg)
{
	struct rx_ctx *x = arg;
	struct siov_net *n = x->n;
	struct net_rxq *rq = x->rq;
	struct siov_vq *vq = rq->vq;
	struct siov_vq_chain *c = &rq->s->chain;
	struct iov_cursor src = {p->iov, p->iovcnt, 0, 0};
	struct virtio_net_hdr_mrg_rxbuf h;
	size_t left = p->len;
	unsigned nbufs = 0;
	int rc, nw = 0;

	vnet_hdr(p, &h);
	while (!nbufs || left) {
		struct iov_cursor hc = {&(struct iovec){&h, n->hdr_len}, 1, 0, 0};
		size_t hdr, k;

		if (nbufs == RX_MAX_BUFS || (nbufs && !n->mrg)) {
			rc = -EMSGSIZE;
			goto undo;
		}
		if ((rc = rx_pop(vq, c)) < 0)
			goto undo;
		hdr = nbufs++ ? 0 : n->hdr_len;
		if (c->in_len < hdr || (!n->mrg && c->in_len - hdr < left)) {
			rc = -EMSGSIZE; /* too small for this frame: it stays for the next one */
			goto undo;
		}
		copy_from_cursor(&hc, c->iov + c->out_num, c->in_num, 0, hdr);
		k = copy_from_cursor(&src, c->iov + c->out_num, c->in_num, hdr,
				     SIOV_MIN(left, c->in_len - hdr));
		left -= k;
		rq->s->used[nbufs - 1] = (struct siov_vq_used_elem){c->head, (uint32_t)(hdr + k)};
		if ((nw = note_written(rq->s->written, nw, c, hdr + k)) < 0) {
			rc = -EMSGSIZE;
			goto undo;
		}
	}
	if (n->mrg && nbufs > 1)
		put_num_buffers(rq->s->written, (unsigned)nw, (uint16_t)nbufs);
	siov_vq_complete_many(vq, rq->s->used, nbufs, rq->s->written, (unsigned)nw);
	return 0;

undo:
	siov_vq_give_back(vq, nbufs);
	return rc;
}

/*
 * Spreads flows over the receive queues the driver runs (enabled rings: QEMU
 * turns VIRTIO_NET_CTRL_MQ_VQ_PAIRS_SET into SET_VRING_ENABLE): the flow hash
 * scaled onto the running ones, so a flow stays on one queue while their set
 * stays the same.  NULL when none runs.
 */
static struct net_rxq *rx_pick(struct siov_net *n, const struct siov_net_frame *f)
{
	uint32_t run = __atomic_load_n(&n->rx_running, __ATOMIC_ACQUIRE);
	unsigned k;

	if (!run)
		return NULL;
	if (run & (run - 1)) {
		uint64_t h = siov_net_frame_flow_hash(f, n->seed);

		k = (unsigned)((h * (unsigned)__builtin_popcount(run)) >> 32);
		while (k--)
			run &= run - 1; /* drop the k lowest running queues */
	}
	return &n->rxq[__builtin_ctz(run)];
}

/*
 * The receive policer: a frame over the port's limits is dropped, since a
 * receiver cannot make its senders wait (they serve other ports too).  Priced
 * as the sender's frame, one packet and its bytes, however many segments it
 * becomes here.  Many senders' threads ask at once; the buckets have locks.
 */
static bool rx_policed(struct siov_net *n, const struct siov_net_frame *f)
{
	uint64_t retry;

	return siov_qos_limited(n->rx_qos) &&
	       !siov_qos_admit(n->rx_qos, siov_now_ns(), f->len, &retry);
}

static int net_deliver(struct siov_port *port, const struct siov_net_frame *f, void *arg)
{
	struct siov_net *n = arg;
	struct rx_ctx x = {n, NULL};
	int rc = -ENOBUFS;

	if (rx_policed(n, f))
		return -EDQUOT;
	if (!(x.rq = rx_pick(n, f)))
		return -ENOBUFS;
	pthread_mutex_lock(&x.rq->lock);
	if (x.rq->vq && !siov_vq_is_broken(x.rq->vq)) {
		rc = siov_net_frame_emit(f, n->rx_offloads, &x.rq->s->pkt, rx_emit, &x);
		siov_vq_notify(x.rq->vq);
	}
	if (rc > 0) {
		SIOV_STAT_ADD(x.rq->packets, (uint64_t)rc);
		SIOV_STAT_ADD(x.rq->bytes, f->len);
	} else if (rc < 0) {
		SIOV_STAT_ADD(x.rq->drops, 1);
	}
	pthread_mutex_unlock(&x.rq->lock);
	return rc;
}

static const struct siov_port_ops net_port_ops = {.deliver = net_deliver};

/* ---- Transmit: engine-run queues ---- */

static struct net_txq *txq_of(struct siov_vq *vq)
{
	if (!vq->dev_queue)
		vq->dev_queue = calloc(1, sizeof(struct net_txq));
	return vq->dev_queue;
}

static void net_release(struct siov_vq *vq)
{
	struct net_txq *t = vq->dev_queue;

	/* A frame QoS held was never sent: give it back to the ring for the next owner. */
	if (t && t->held)
		siov_vq_unpop(vq);
	free(t);
	vq->dev_queue = NULL;
}

/*
 * The next frame to send into t->chain, the held one first; false if none (the
 * ring is empty or broken) or QoS says wait: then the frame is held, not lost.
 */
static bool tx_next(struct siov_vq *vq, struct net_txq *t, size_t hdr_len,
		    struct siov_vq_work *work)
{
	struct siov_vq_chain *c = &t->chain;
	uint64_t retry;

	if (!t->held && siov_vq_pop(vq, c) <= 0)
		return false;
	t->held = false;
	if (!vq->qos || !siov_qos_limited(vq->qos) ||
	    siov_qos_admit(vq->qos, siov_vq_now(vq),
			   c->out_len > hdr_len ? c->out_len - hdr_len : 0, &retry))
		return true;
	t->held = true;
	work->throttle_until = retry;
	return false;
}

static void net_tx_process(struct siov_vq *vq, struct siov_io_ctx *ctx, unsigned budget,
			   struct siov_vq_work *work)
{
	struct siov_net *n = vq->dev;
	struct net_txq *t = txq_of(vq);
	unsigned done = 0;

	if (!t)
		return; /* no memory: the frames wait in the ring */
	budget = SIOV_MIN(budget, TX_BATCH);
	siov_vq_prefetch(vq, budget);
	while (done < budget) {
		struct siov_vq_chain *c = &t->chain;
		struct siov_net_frame f;

		if (!tx_next(vq, t, n->hdr_len, work))
			break;
		if (c->in_num) {
			siov_vq_break(vq, "head %u: transmit chain with device-writable buffers",
				      c->head);
			break;
		}
		if (siov_port_parse(n->port, &f, c->iov, c->out_num, n->hdr_len) == 0)
			siov_port_send(n->port, &f, siov_vq_now(vq));
		siov_vq_complete(vq, c->head, NULL, 0, 0);
		SIOV_STAT_ADD(vq->stats.requests, 1);
		SIOV_STAT_ADD(vq->stats.bytes_written, c->out_len);
		done++;
	}
	work->started = done;
}

static const struct siov_vq_ops net_vq_ops = {
    .process = net_tx_process,
    .release = net_release,
};

const struct siov_dev_ops siov_net_dev_ops = {
    .features = net_features,
    .get_config = net_get_config,
    .set_features = net_set_features,
    .vq_ops = &net_vq_ops,
    .self_run = net_self_run,
    .queue_start = net_queue_start,
    .queue_stop = net_queue_stop,
    .queue_num = net_queue_num,
    /* No INFLIGHT_SHMFD or CONFIG: QEMU's net model uses neither; RARP, MTU and the log it does. */
    .protocol_features =
	(1ull << VHOST_USER_PROTOCOL_F_MQ) | (1ull << VHOST_USER_PROTOCOL_F_REPLY_ACK) |
	(1ull << VHOST_USER_PROTOCOL_F_RESET_DEVICE) |
	(1ull << VHOST_USER_PROTOCOL_F_CONFIGURE_MEM_SLOTS) |
	(1ull << VHOST_USER_PROTOCOL_F_LOG_SHMFD) | (1ull << VHOST_USER_PROTOCOL_F_RARP) |
	(1ull << VHOST_USER_PROTOCOL_F_NET_MTU),
    .message = net_message,
};

/* ---- Lifecycle ---- */

int siov_net_create(const struct siov_net_conf *conf, struct siov_net **out, struct siov_err *err)
{
	static const struct siov_qos_params no_limits;
	struct siov_port_conf pc = {.allow_spoof = conf->allow_spoof};
	struct siov_net *n;
	unsigned i;
	int rc;

	if (!conf->queue_pairs || conf->queue_pairs > SIOV_NET_MAX_PAIRS)
		return siov_err_set(err, -EINVAL, "queue pairs must be 1..%d", SIOV_NET_MAX_PAIRS);
	if (!(n = calloc(1, sizeof(*n))))
		return siov_err_set(err, -ENOMEM, "out of memory");
	snprintf(n->name, sizeof(n->name), "%s", conf->name);
	memcpy(n->mac, conf->mac, SIOV_ETH_ALEN);
	n->pairs = conf->queue_pairs;
	n->mtu = siov_network_conf(conf->network)->mtu;
	n->hdr_len = SIOV_NET_HDR_LEN;
	/* Entropy not ready yet (early boot): the clock is still unknown to guests. */
	if (getrandom(&n->seed, sizeof(n->seed), GRND_NONBLOCK) != sizeof(n->seed))
		n->seed = (uint32_t)siov_now_ns();
	if (!(n->rxq = calloc(n->pairs, sizeof(*n->rxq)))) {
		free(n);
		return siov_err_set(err, -ENOMEM, "out of memory");
	}
	for (i = 0; i < n->pairs; i++)
		pthread_mutex_init(&n->rxq[i].lock, NULL);
	rc = siov_qos_create(conf->rx_qos ? conf->rx_qos : &no_limits, NULL, &n->rx_qos);
	if (rc < 0) {
		siov_net_destroy(n);
		return siov_err_set(err, rc, "cannot create the receive policer: %s",
				    strerror(-rc));
	}
	snprintf(pc.name, sizeof(pc.name), "%s", conf->name);
	memcpy(pc.mac, conf->mac, SIOV_ETH_ALEN);
	if ((rc = siov_port_attach(conf->network, &pc, &net_port_ops, n, &n->port, err)) < 0) {
		siov_net_destroy(n);
		return rc;
	}
	*out = n;
	return 0;
}

void siov_net_destroy(struct siov_net *n)
{
	unsigned i;

	if (!n)
		return;
	if (n->port)
		siov_port_detach(n->port);
	for (i = 0; i < n->pairs; i++) {
		pthread_mutex_destroy(&n->rxq[i].lock);
		free(n->rxq[i].s);
	}
	free(n->rxq);
	if (n->rx_qos)
		siov_qos_destroy(n->rx_qos);
	free(n);
}

int siov_net_set_rx_qos(struct siov_net *n, const struct siov_qos_params *p)
{
	return siov_qos_set(n->rx_qos, p);
}

const struct siov_port *siov_net_port(const struct siov_net *n)
{
	return n->port;
}

unsigned siov_net_rxq_stats(const struct siov_net *n, struct siov_net_rxq_stats *s, unsigned max)
{
	uint32_t run = __atomic_load_n(&n->rx_running, __ATOMIC_ACQUIRE);
	unsigned i;

	for (i = 0; i < n->pairs && i < max; i++) {
		s[i].index = 2 * i;
		s[i].running = run & (1u << i);
		s[i].packets = SIOV_STAT_GET(n->rxq[i].packets);
		s[i].bytes = SIOV_STAT_GET(n->rxq[i].bytes);
		s[i].drops = SIOV_STAT_GET(n->rxq[i].drops);
	}
	return i;
}
