/*
 * The hostile test's virtio-net front end (see netfe.h): negotiation, memory
 * and the two rings of one queue pair written by hand over frontend.c's
 * message helpers, plus well-formed frames to check delivery with.
 */
#include <errno.h>
#include <string.h>
#include <sys/eventfd.h>
#include <time.h>
#include <unistd.h>

#include "harness.h"
#include "netfe.h"

/* Ring layout in the region: receive queue first, then transmit. */
#define RING_AT(q) ((size_t)(q)*0x3000u)

static int64_t ms_now(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

void nfe_init(struct nfe *n)
{
	memset(n, 0, sizeof(*n));
	fe_init(&n->fe);
	n->q[0].kick_fd = n->q[0].call_fd = n->q[1].kick_fd = n->q[1].call_fd = -1;
}

void nfe_close(struct nfe *n)
{
	unsigned i;

	for (i = 0; i < 2; i++) {
		if (n->q[i].kick_fd >= 0)
			close(n->q[i].kick_fd);
		if (n->q[i].call_fd >= 0)
			close(n->q[i].call_fd);
	}
	fe_close(&n->fe);
	nfe_init(n);
}

static int negotiate(struct nfe *n, uint64_t features)
{
	uint64_t f = features | FE_F_VERSION_1 | FE_F_PROTOCOL, pf;
	struct siov_vu_msg m;
	int rc;

	rc = fe_send(&n->fe, VHOST_USER_GET_FEATURES, VHOST_USER_VERSION, NULL, 0, NULL, 0);
	if (rc || (rc = fe_recv(&n->fe, &m, 5000)) != 1)
		return rc ? rc : -ECONNRESET;
	if ((m.payload.u64 & f) != f)
		return -ENOTSUP;
	rc = fe_send(&n->fe, VHOST_USER_SET_FEATURES, VHOST_USER_VERSION, &f, 8, NULL, 0);
	if (!rc)
		rc = fe_send(&n->fe, VHOST_USER_GET_PROTOCOL_FEATURES, VHOST_USER_VERSION, NULL, 0,
			     NULL, 0);
	if (rc || (rc = fe_recv(&n->fe, &m, 5000)) != 1)
		return rc ? rc : -ECONNRESET;
	pf = 1ull << VHOST_USER_PROTOCOL_F_REPLY_ACK;
	if (!(m.payload.u64 & pf))
		return -ENOTSUP;
	rc = fe_send(&n->fe, VHOST_USER_SET_PROTOCOL_FEATURES, VHOST_USER_VERSION, &pf, 8, NULL, 0);
	if (rc)
		return rc;
	return fe_call(&n->fe, VHOST_USER_SET_OWNER, NULL, 0, NULL, 0) ? -EPROTO : 0;
}

static int ring_fd(struct nfe *n, uint32_t request, unsigned index, int *fd)
{
	uint64_t v = index;

	*fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	if (*fd < 0)
		return -errno;
	return fe_call(&n->fe, request, &v, 8, fd, 1) ? -EPROTO : 0;
}

static int ring_setup(struct nfe *n, unsigned index)
{
	struct nring *r = &n->q[index];
	size_t at = RING_AT(index);
	struct siov_vu_vring_state st = {.index = index, .num = NFE_QSIZE};
	struct siov_vu_vring_addr a = {
	    .index = index,
	    .desc_user_addr = fe_addr(&n->fe, at),
	    .avail_user_addr = fe_addr(&n->fe, at + 0x1000),
	    .used_user_addr = fe_addr(&n->fe, at + 0x2000),
	};
	int rc;

	r->desc = (void *)(n->fe.mem + at);
	r->avail = (void *)(n->fe.mem + at + 0x1000);
	r->used = (void *)(n->fe.mem + at + 0x2000);
	if (fe_call(&n->fe, VHOST_USER_SET_VRING_NUM, &st, sizeof(st), NULL, 0))
		return -EPROTO;
	st.num = 0;
	if (fe_call(&n->fe, VHOST_USER_SET_VRING_BASE, &st, sizeof(st), NULL, 0) ||
	    fe_call(&n->fe, VHOST_USER_SET_VRING_ADDR, &a, sizeof(a), NULL, 0))
		return -EPROTO;
	if ((rc = ring_fd(n, VHOST_USER_SET_VRING_KICK, index, &r->kick_fd)) ||
	    (rc = ring_fd(n, VHOST_USER_SET_VRING_CALL, index, &r->call_fd)))
		return rc;
	st.num = 1;
	return fe_call(&n->fe, VHOST_USER_SET_VRING_ENABLE, &st, sizeof(st), NULL, 0) ? -EPROTO : 0;
}

static int open_once(struct nfe *n, const char *path, uint64_t features)
{
	int rc = fe_connect(&n->fe, path);

	if (!rc)
		rc = negotiate(n, features);
	return rc;
}

int nfe_open(struct nfe *n, const char *path, const uint8_t mac[6], uint64_t features, bool post_rx,
	     int timeout_ms)
{
	int64_t deadline = ms_now() + timeout_ms;
	int rc;

	nfe_init(n);
	memcpy(n->mac, mac, 6);
	/* A previous session may still be going away: the back end refuses a second one. */
	while ((rc = open_once(n, path, features)) == -ECONNRESET || rc == -EPIPE ||
	       rc == -ECONNREFUSED) {
		if (ms_now() > deadline)
			break;
		usleep(20000);
	}
	if (!rc)
		rc = fe_mem_map(&n->fe, NFE_MEM_LEN, NFE_MEM_LEN);
	if (!rc)
		rc = fe_set_mem_table(&n->fe);
	if (!rc)
		rc = ring_setup(n, 0);
	if (!rc)
		rc = ring_setup(n, 1);
	if (rc) {
		nfe_close(n);
		return rc;
	}
	if (post_rx)
		nfe_rx_post_all(n);
	return 0;
}

/* ---- receive ---- */

static void push(struct nring *r, uint16_t head)
{
	r->avail->ring[r->avail_idx % NFE_QSIZE] = head;
	r->avail_idx++;
	/* The device must see the entry before the index that covers it. */
	__atomic_store_n(&r->avail->idx, r->avail_idx, __ATOMIC_RELEASE);
	/*
	 * Kick unless the device said it polls (as a driver does): the index
	 * store must be visible before the flag is read, or both sides could
	 * miss each other.  A device that says so and then does not look is
	 * caught by the checks' timeouts.
	 */
	__atomic_thread_fence(__ATOMIC_SEQ_CST);
	if (!(__atomic_load_n(&r->used->flags, __ATOMIC_RELAXED) & VRING_USED_F_NO_NOTIFY))
		eventfd_write(r->kick_fd, 1);
}

void nfe_push(struct nfe *n, unsigned q, uint16_t head)
{
	push(&n->q[q % 2], head);
}

void nfe_rx_post(struct nfe *n, uint16_t id, uint64_t addr, uint32_t len, uint16_t flags)
{
	n->q[0].desc[id] = (struct vring_desc){addr, len, flags, 0};
	push(&n->q[0], id);
}

void nfe_rx_post_all(struct nfe *n)
{
	uint16_t i;

	for (i = 0; i < NFE_QSIZE; i++)
		nfe_rx_post(n, i, fe_addr(&n->fe, NFE_RXBUF_AT + (size_t)i * NFE_RXBUF), NFE_RXBUF,
			    VRING_DESC_F_WRITE);
}

int nfe_rx_next(struct nfe *n, struct nfe_rx *rx, int timeout_ms)
{
	struct nring *r = &n->q[0];
	int64_t deadline = ms_now() + timeout_ms;
	struct vring_used_elem e;

	while (__atomic_load_n(&r->used->idx, __ATOMIC_ACQUIRE) == r->used_seen) {
		if (ms_now() >= deadline)
			return 0;
		usleep(1000);
	}
	e = r->used->ring[r->used_seen % NFE_QSIZE];
	r->used_seen++;
	rx->id = (uint16_t)(e.id % NFE_QSIZE);
	rx->len = e.len;
	rx->buf = n->fe.mem + NFE_RXBUF_AT + (size_t)rx->id * NFE_RXBUF;
	return 1;
}

void nfe_rx_done(struct nfe *n, const struct nfe_rx *rx)
{
	nfe_rx_post(n, rx->id, fe_addr(&n->fe, NFE_RXBUF_AT + (size_t)rx->id * NFE_RXBUF),
		    NFE_RXBUF, VRING_DESC_F_WRITE);
}

unsigned nfe_rx_drain(struct nfe *n)
{
	struct nfe_rx rx;
	unsigned k = 0;

	while (nfe_rx_next(n, &rx, 0) == 1) {
		nfe_rx_done(n, &rx);
		k++;
	}
	return k;
}

/* ---- transmit ---- */

unsigned nfe_tx_inflight(const struct nfe *n)
{
	return (uint16_t)(n->q[1].avail_idx -
			  __atomic_load_n(&n->q[1].used->idx, __ATOMIC_ACQUIRE));
}

uint8_t *nfe_tx_slot(struct nfe *n, uint64_t *addr)
{
	size_t off = NFE_TX_AT + (size_t)(n->q[1].avail_idx % NFE_TXSLOTS) * NFE_TXSLOT;

	*addr = fe_addr(&n->fe, off);
	return n->fe.mem + off;
}

/* Chains complete in order on one queue, so slot k is free once k's chain came back. */
void nfe_tx_chain(struct nfe *n, const struct fe_buf *bufs, unsigned nbufs)
{
	struct nring *r = &n->q[1];
	uint16_t base = (uint16_t)((r->avail_idx % NFE_TXSLOTS) * NFE_TXDESC), i;

	for (i = 0; i < nbufs && i < NFE_TXDESC; i++)
		r->desc[base + i] = (struct vring_desc){
		    bufs[i].addr, bufs[i].len,
		    (uint16_t)(bufs[i].flags | (i + 1u < nbufs ? VRING_DESC_F_NEXT : 0)),
		    (uint16_t)(base + i + 1)};
	push(r, base);
}

int nfe_tx_wait(struct nfe *n, int timeout_ms)
{
	int64_t deadline = ms_now() + timeout_ms;

	while (nfe_tx_inflight(n)) {
		if (ms_now() >= deadline)
			return -ETIMEDOUT;
		usleep(500);
	}
	return 0;
}

/* ---- frames ---- */

void nfe_frame(uint8_t *p, const uint8_t *dst, const uint8_t *src, uint32_t seq, uint32_t len)
{
	uint8_t h[18];

	memset(p, 0, NFE_HDR);
	p += NFE_HDR;
	memcpy(h, dst, 6);
	memcpy(h + 6, src, 6);
	h[12] = NFE_ETHTYPE >> 8;
	h[13] = NFE_ETHTYPE & 0xff;
	memcpy(h + 14, &seq, 4);
	/* Shorter than that is an attack: the start of a frame, cut. */
	memcpy(p, h, len < sizeof(h) ? len : sizeof(h));
	if (len > sizeof(h))
		pattern_fill(p + 18, len - 18, seq);
}

bool nfe_frame_check(const struct nfe_rx *rx, const uint8_t *src, uint32_t len, uint32_t *seq)
{
	const uint8_t *p = rx->buf + NFE_HDR;
	struct virtio_net_hdr_mrg_rxbuf h;

	if (rx->len != NFE_HDR + len || len < 18)
		return false;
	memcpy(&h, rx->buf, sizeof(h));
	if (h.num_buffers != 1 || memcmp(p + 6, src, 6))
		return false;
	memcpy(seq, p + 14, 4);
	return pattern_check(p + 18, len - 18, *seq);
}

int nfe_send(struct nfe *n, const uint8_t *dst, uint32_t seq, uint32_t len)
{
	struct fe_buf b;
	uint8_t *p = nfe_tx_slot(n, &b.addr);

	nfe_frame(p, dst, n->mac, seq, len);
	b.len = NFE_HDR + len;
	b.flags = 0;
	nfe_tx_chain(n, &b, 1);
	return nfe_tx_wait(n, 3000);
}
