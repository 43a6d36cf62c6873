/*
 * Checksum and segmentation offload in software, for receivers that did not
 * negotiate them: a guest that sends a 64 KiB TSO frame to a neighbour without
 * GUEST_TSO4 gets it there as MSS-sized TCP segments, each with correct IP and
 * TCP headers and checksums, as a NIC would have put them on the wire.
 *
 * Packets are described, not built: a packet is the few rewritten header
 * bytes (in pkt->scratch) plus iovecs into the sender's buffers, so the
 * receiver's copy out of the sender's memory is the only copy.  The Internet
 * checksum is summed over the same iovecs.  Hand-written because no Debian
 * library segments TCP over caller-owned scatter lists (DPDK's GSO library
 * wants its mbufs).
 */
#include <endian.h>
#include <errno.h>
#include <string.h>

#include "siov_internal/net_frame.h"
#include "siov_internal/util.h"

/* ---- The Internet checksum over scattered bytes ---- */

struct csum {
	uint64_t sum; /* of 16-bit words in host (little-endian) order */
	size_t pos;   /* bytes summed so far: odd means the next byte is a low byte */
};

static uint64_t sum_le(const uint8_t *p, size_t n)
{
	uint64_t s = 0;
	uint32_t w;

	for (; n >= 4; p += 4, n -= 4) {
		memcpy(&w, p, 4);
		s += w;
	}
	if (n >= 2) {
		uint16_t h;

		memcpy(&h, p, 2);
		s += h;
		p += 2;
		n -= 2;
	}
	if (n)
		s += *p;
	return s;
}

static uint16_t fold(uint64_t s)
{
	while (s >> 16)
		s = (s & 0xffff) + (s >> 16);
	return (uint16_t)s;
}

static void csum_add(struct csum *c, const void *p, size_t n)
{
	uint16_t part = fold(sum_le(p, n));

	/* A run that starts at an odd position has its bytes in swapped halves. */
	if (c->pos & 1)
		part = (uint16_t)((part >> 8) | (part << 8));
	c->sum += part;
	c->pos += n;
}

/*
 * The folded sum as it is stored in a header: summing little-endian words
 * gives the byte-swapped sum of the big-endian words (RFC 1071, 2(B)), whose
 * bytes in memory are exactly the network-order checksum.
 */
static uint16_t csum_get(const struct csum *c)
{
	return fold(c->sum);
}

uint16_t siov_net_csum_fold_buf(const void *buf, size_t len)
{
	struct csum c = {0, 0};

	csum_add(&c, buf, len);
	return csum_get(&c);
}

static void csum_add_iov(struct csum *c, const struct iovec *iov, unsigned iovcnt)
{
	unsigned i;

	for (i = 0; i < iovcnt; i++)
		csum_add(c, iov[i].iov_base, iov[i].iov_len);
}

/* ---- Describing a packet ---- */

static void pkt_reset(struct siov_net_pkt *pkt)
{
	memset(&pkt->hdr, 0, sizeof(pkt->hdr));
	pkt->len = 0;
	pkt->iovcnt = 0;
}

static int pkt_add(struct siov_net_pkt *pkt, const void *base, size_t len)
{
	if (!len)
		return 0;
	if (pkt->iovcnt == SIOV_NET_PKT_IOV)
		return -E2BIG;
	pkt->iov[pkt->iovcnt].iov_base = (void *)base;
	pkt->iov[pkt->iovcnt].iov_len = len;
	pkt->iovcnt++;
	pkt->len += len;
	return 0;
}

/* Appends [off, off+len) of the frame (offsets from the Ethernet header). */
static int pkt_add_frame(struct siov_net_pkt *pkt, const struct siov_net_frame *f, size_t off,
			 size_t len)
{
	unsigned i;
	int rc;

	off += f->off;
	for (i = 0; i < f->iovcnt && len; i++) {
		size_t n;

		if (off >= f->iov[i].iov_len) {
			off -= f->iov[i].iov_len;
			continue;
		}
		n = SIOV_MIN(f->iov[i].iov_len - off, len);
		if ((rc = pkt_add(pkt, (const uint8_t *)f->iov[i].iov_base + off, n)) < 0)
			return rc;
		len -= n;
		off = 0;
	}
	return len ? -EINVAL : 0;
}

/* ---- Whole frames: as they are, or with the checksum the sender left to us ---- */

static int emit_whole(const struct siov_net_frame *f, unsigned rx, struct siov_net_pkt *pkt)
{
	size_t field = (size_t)f->csum_start + f->csum_offset;
	struct csum c = {0, 0};
	uint16_t v;
	int rc;

	pkt_reset(pkt);
	if (!(f->flags & VIRTIO_NET_HDR_F_NEEDS_CSUM) || (rx & SIOV_NET_OFF_CSUM)) {
		pkt->hdr.flags = f->flags & VIRTIO_NET_HDR_F_NEEDS_CSUM;
		pkt->hdr.csum_start = f->csum_start;
		pkt->hdr.csum_offset = f->csum_offset;
		return pkt_add_frame(pkt, f, 0, f->len);
	}
	/* Sum [csum_start, end): the field holds the pseudo-header sum the sender put there. */
	if ((rc = pkt_add_frame(pkt, f, f->csum_start, f->len - f->csum_start)) < 0)
		return rc;
	csum_add_iov(&c, pkt->iov, pkt->iovcnt);
	v = (uint16_t)~csum_get(&c);
	/* A computed 0 is sent as 0xffff (UDP reads 0 as "no checksum"); Linux does the same. */
	if (v == 0)
		v = 0xffff;
	memcpy(pkt->scratch, &v, 2);
	pkt_reset(pkt);
	if ((rc = pkt_add_frame(pkt, f, 0, field)) < 0 || (rc = pkt_add(pkt, pkt->scratch, 2)) < 0)
		return rc;
	return pkt_add_frame(pkt, f, field + 2, f->len - field - 2);
}

/* ---- TCP segmentation ---- */

struct seg {
	const struct siov_net_frame *f;
	uint8_t hdrs[SIOV_NET_MAX_HDRS]; /* the frame's headers, read once */
	size_t payload;			 /* bytes after the headers */
	uint32_t seq;
	uint16_t ip_id;
	uint8_t tcp_flags;
};

#define TCP_FIN 0x01
#define TCP_PSH 0x08
#define TCP_CWR 0x80

static void put16(uint8_t *p, uint16_t v)
{
	v = htobe16(v);
	memcpy(p, &v, 2);
}

/* The pseudo-header's sum for a TCP segment of tcp_len bytes. */
static void csum_pseudo(struct csum *c, const uint8_t *hdrs, const struct siov_net_frame *f,
			size_t tcp_len)
{
	uint8_t tail[8] = {0};

	if (f->gso_type == VIRTIO_NET_HDR_GSO_TCPV4) {
		csum_add(c, hdrs + f->l3_off + 12, 8); /* source and destination */
		tail[1] = 6;
		put16(tail + 2, (uint16_t)tcp_len);
		csum_add(c, tail, 4);
	} else {
		csum_add(c, hdrs + f->l3_off + 8, 32);
		tail[2] = (uint8_t)(tcp_len >> 8);
		tail[3] = (uint8_t)tcp_len;
		tail[7] = 6;
		csum_add(c, tail, 8);
	}
}

/* Rewrites the headers in pkt->scratch for segment i carrying n bytes at off. */
static void seg_headers(const struct seg *s, struct siov_net_pkt *pkt, unsigned i, size_t n,
			bool last)
{
	const struct siov_net_frame *f = s->f;
	uint8_t *h = pkt->scratch, *tcp = h + f->l4_off;
	uint32_t seq = htobe32(s->seq + (uint32_t)(i * f->gso_size));
	uint8_t flags = s->tcp_flags;

	memcpy(h, s->hdrs, f->hdrs_len);
	if (f->gso_type == VIRTIO_NET_HDR_GSO_TCPV4) {
		put16(h + f->l3_off + 2, (uint16_t)(f->hdrs_len - f->l3_off + n));
		put16(h + f->l3_off + 4, (uint16_t)(s->ip_id + i));
		memset(h + f->l3_off + 10, 0, 2);
		put16(h + f->l3_off + 10, (uint16_t)~be16toh(siov_net_csum_fold_buf(
					      h + f->l3_off, f->l4_off - f->l3_off)));
	} else {
		put16(h + f->l3_off + 4, (uint16_t)(f->hdrs_len - f->l4_off + n));
	}
	memcpy(tcp + 4, &seq, 4);
	if (!last)
		flags &= (uint8_t) ~(TCP_FIN | TCP_PSH);
	if (i)
		flags &= (uint8_t)~TCP_CWR;
	tcp[13] = flags;
	memset(tcp + 16, 0, 2);
}

/* The TCP checksum: full, or (for a receiver with CSUM) the pseudo-header sum it completes. */
static void seg_csum(const struct seg *s, struct siov_net_pkt *pkt, size_t n, unsigned rx)
{
	const struct siov_net_frame *f = s->f;
	struct csum c = {0, 0};
	uint16_t v;

	csum_pseudo(&c, pkt->scratch, f, (size_t)(f->hdrs_len - f->l4_off) + n);
	if (rx & SIOV_NET_OFF_CSUM) {
		v = csum_get(&c);
		pkt->hdr.flags = VIRTIO_NET_HDR_F_NEEDS_CSUM;
		pkt->hdr.csum_start = f->l4_off;
		pkt->hdr.csum_offset = 16;
	} else {
		/* iov[0] is the rewritten headers; TCP's part of it, then the payload. */
		csum_add(&c, pkt->scratch + f->l4_off, f->hdrs_len - f->l4_off);
		csum_add_iov(&c, pkt->iov + 1, pkt->iovcnt - 1);
		v = (uint16_t)~csum_get(&c);
	}
	memcpy(pkt->scratch + f->l4_off + 16, &v, 2);
}

static int emit_segments(const struct siov_net_frame *f, unsigned rx, struct siov_net_pkt *pkt,
			 siov_net_emit_fn emit, void *arg)
{
	struct seg s;
	unsigned i, nseg;
	uint32_t seq;
	uint16_t id;
	int rc;

	s.f = f;
	if (siov_net_iov_read(f->iov, f->iovcnt, f->off, s.hdrs, f->hdrs_len) != f->hdrs_len)
		return -EINVAL;
	s.payload = f->len - f->hdrs_len;
	memcpy(&seq, s.hdrs + f->l4_off + 4, 4);
	s.seq = be32toh(seq);
	memcpy(&id, s.hdrs + f->l3_off + 4, 2);
	s.ip_id = f->gso_type == VIRTIO_NET_HDR_GSO_TCPV4 ? be16toh(id) : 0;
	s.tcp_flags = s.hdrs[f->l4_off + 13];
	nseg = s.payload ? (unsigned)((s.payload + f->gso_size - 1) / f->gso_size) : 1;
	for (i = 0; i < nseg; i++) {
		size_t off = (size_t)i * f->gso_size, n = SIOV_MIN(f->gso_size, s.payload - off);

		pkt_reset(pkt);
		seg_headers(&s, pkt, i, n, i + 1 == nseg);
		if ((rc = pkt_add(pkt, pkt->scratch, f->hdrs_len)) < 0 ||
		    (rc = pkt_add_frame(pkt, f, f->hdrs_len + off, n)) < 0)
			return rc;
		seg_csum(&s, pkt, n, rx);
		if ((rc = emit(pkt, arg)) < 0)
			return rc;
	}
	return (int)nseg;
}

static bool rx_takes_gso(const struct siov_net_frame *f, unsigned rx)
{
	unsigned need =
	    f->gso_type == VIRTIO_NET_HDR_GSO_TCPV4 ? SIOV_NET_OFF_TSO4 : SIOV_NET_OFF_TSO6;

	need |= SIOV_NET_OFF_CSUM;
	if (f->gso_ecn)
		need |= SIOV_NET_OFF_ECN;
	return (rx & need) == need;
}

int siov_net_frame_emit(const struct siov_net_frame *f, unsigned rx_offloads,
			struct siov_net_pkt *pkt, siov_net_emit_fn emit, void *arg)
{
	int rc;

	if (f->gso_type == VIRTIO_NET_HDR_GSO_NONE || rx_takes_gso(f, rx_offloads)) {
		if ((rc = emit_whole(f, rx_offloads, pkt)) < 0)
			return rc;
		if (f->gso_type != VIRTIO_NET_HDR_GSO_NONE) {
			/* The receiver segments (or takes the large frame whole): pass the GSO
			 * fields. */
			pkt->hdr.flags = VIRTIO_NET_HDR_F_NEEDS_CSUM;
			pkt->hdr.gso_type =
			    (uint8_t)(f->gso_type | (f->gso_ecn ? VIRTIO_NET_HDR_GSO_ECN : 0));
			pkt->hdr.gso_size = f->gso_size;
			pkt->hdr.hdr_len = f->hdrs_len;
			pkt->hdr.csum_start = f->l4_off;
			pkt->hdr.csum_offset = 16;
		}
		rc = emit(pkt, arg);
		return rc < 0 ? rc : 1;
	}
	return emit_segments(f, rx_offloads, pkt, emit, arg);
}
