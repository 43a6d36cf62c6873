/*
 * Frames and offloads: parsing and validation of virtio-net headers and
 * Ethernet frames split over odd buffers, the software checksum, and TSO4/TSO6
 * segmentation, each checked against a plain byte-by-byte reference (checksums
 * verified the way a receiving stack verifies them, payload reassembled and
 * compared, sequence numbers, IP ids, lengths and flags).
 *
 * The flow hash that picks a receive queue: one 5-tuple hashes alike whatever
 * its payload, buffer split or VLAN tag, other ports hash apart, fragments of
 * a datagram alike, and frames cut anywhere or with lying IP headers are read
 * only within their bytes (exact-size copies, so ASan sees any overread of
 * the frame; the hash's own copy is primed with other bytes first, so reading
 * past what it copied changes the hash).
 */
#include <endian.h>
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "siov_internal/net_frame.h"

#define MTU 1500

/* ---- Reference helpers (deliberately naive) ---- */

static uint32_t ref_sum(const uint8_t *p, size_t n, uint32_t s)
{
	size_t i;

	for (i = 0; i + 1 < n; i += 2)
		s += (uint32_t)(p[i] << 8 | p[i + 1]);
	if (n & 1)
		s += (uint32_t)(p[n - 1] << 8);
	return s;
}

static uint16_t ref_fold(uint32_t s)
{
	while (s >> 16)
		s = (s & 0xffff) + (s >> 16);
	return (uint16_t)s;
}

/* True if the TCP/UDP checksum of the L4 segment at l4 (length n) verifies. */
static bool l4_ok(const uint8_t *pkt, size_t l3, size_t l4, size_t n, bool v6, uint8_t proto)
{
	uint32_t s = 0;

	if (v6) {
		s = ref_sum(pkt + l3 + 8, 32, 0);
	} else {
		s = ref_sum(pkt + l3 + 12, 8, 0);
	}
	s += proto;
	s += (uint32_t)n;
	s = ref_sum(pkt + l4, n, s);
	return ref_fold(s) == 0xffff;
}

static size_t gather(const struct siov_net_pkt *p, uint8_t *out, size_t cap)
{
	size_t n = 0;
	unsigned i;

	for (i = 0; i < p->iovcnt; i++) {
		assert_true(n + p->iov[i].iov_len <= cap);
		memcpy(out + n, p->iov[i].iov_base, p->iov[i].iov_len);
		n += p->iov[i].iov_len;
	}
	assert_int_equal(n, p->len);
	return n;
}

/* ---- Building frames ---- */

struct built {
	uint8_t buf[70000];
	size_t len; /* virtio-net header + frame */
	struct iovec iov[64];
	unsigned iovcnt;
};

static void put16(uint8_t *p, uint16_t v)
{
	p[0] = (uint8_t)(v >> 8);
	p[1] = (uint8_t)v;
}

static void put32(uint8_t *p, uint32_t v)
{
	put16(p, (uint16_t)(v >> 16));
	put16(p + 2, (uint16_t)v);
}

static const uint8_t MAC_A[6] = {0x52, 0x54, 0, 0, 0, 0xa};
static const uint8_t MAC_B[6] = {0x52, 0x54, 0, 0, 0, 0xb};

/*
 * A TCP frame after a 12-byte virtio-net header: IPv4 or IPv6, payload bytes
 * i*7+3, the TCP checksum field holding the pseudo-header sum as Linux leaves
 * it for NEEDS_CSUM.  Returns the offset of the TCP header in the frame.
 */
static size_t build_tcp(struct built *b, bool v6, size_t payload, uint16_t gso_size)
{
	uint8_t *h = b->buf, *f = h + SIOV_NET_HDR_LEN, *ip = f + 14, *tcp;
	size_t iplen = v6 ? 40 : 20, l4 = 14 + iplen, tcp_len = 20 + 12 /* options */, i;
	struct virtio_net_hdr_mrg_rxbuf vh;
	uint32_t s;

	memset(b->buf, 0, sizeof(b->buf));
	memcpy(f, MAC_B, 6);
	memcpy(f + 6, MAC_A, 6);
	put16(f + 12, v6 ? 0x86dd : 0x0800);
	if (v6) {
		ip[0] = 0x60;
		put16(ip + 4, (uint16_t)(tcp_len + payload));
		ip[6] = 6;
		ip[7] = 64;
		for (i = 0; i < 16; i++)
			ip[8 + i] = (uint8_t)(0x20 + i), ip[24 + i] = (uint8_t)(0x40 + i);
	} else {
		ip[0] = 0x45;
		put16(ip + 2, (uint16_t)(iplen + tcp_len + payload));
		put16(ip + 4, 0x1234);
		ip[6] = 0x40; /* DF */
		ip[8] = 64;
		ip[9] = 6;
		put32(ip + 12, 0x0a000001);
		put32(ip + 16, 0x0a000002);
	}
	tcp = f + l4;
	put16(tcp, 40000);
	put16(tcp + 2, 5001);
	put32(tcp + 4, 0xfffff000); /* wraps during segmentation */
	put32(tcp + 8, 77);
	tcp[12] = (uint8_t)((tcp_len / 4) << 4);
	tcp[13] = 0x18 | 0x01 | 0x80; /* PSH ACK FIN CWR */
	put16(tcp + 14, 65535);
	memset(tcp + 20, 1, 12); /* NOPs */
	for (i = 0; i < payload; i++)
		tcp[tcp_len + i] = (uint8_t)(i * 7 + 3);
	s = v6 ? ref_sum(ip + 8, 32, 0) : ref_sum(ip + 12, 8, 0);
	s += 6 + (uint32_t)(tcp_len + payload);
	put16(tcp + 16, ref_fold(s));
	memset(&vh, 0, sizeof(vh));
	vh.hdr.flags = VIRTIO_NET_HDR_F_NEEDS_CSUM;
	vh.hdr.csum_start = htole16((uint16_t)l4);
	vh.hdr.csum_offset = htole16(16);
	if (gso_size) {
		vh.hdr.gso_type = v6 ? VIRTIO_NET_HDR_GSO_TCPV6 : VIRTIO_NET_HDR_GSO_TCPV4;
		vh.hdr.gso_size = htole16(gso_size);
		vh.hdr.hdr_len = htole16((uint16_t)(l4 + tcp_len));
	}
	memcpy(h, &vh, sizeof(vh));
	b->len = SIOV_NET_HDR_LEN + l4 + tcp_len + payload;
	return l4;
}

/* Splits the bytes over buffers of awkward sizes (odd ones, one across the header). */
static void split(struct built *b, const size_t *sizes, unsigned n)
{
	size_t off = 0;
	unsigned i;

	b->iovcnt = 0;
	for (i = 0; off < b->len; i++) {
		size_t sz = i < n ? sizes[i] : 997;

		if (sz > b->len - off)
			sz = b->len - off;
		b->iov[b->iovcnt++] = (struct iovec){b->buf + off, sz};
		off += sz;
	}
}

static const size_t AWKWARD[] = {5, 4, 3, 1, 17, 33, 1, 1001, 2, 511};
#define NAWK (sizeof(AWKWARD) / sizeof(AWKWARD[0]))

/* ---- Parsing ---- */

static void test_parse_short(void **state)
{
	struct siov_net_frame f;
	uint8_t buf[64] = {0};
	struct iovec iov = {buf, 0};

	assert_int_equal(siov_net_frame_parse(&f, &iov, 0, SIOV_NET_HDR_LEN, 0, MTU), -EINVAL);
	assert_int_equal(siov_net_frame_parse(&f, &iov, 1, SIOV_NET_HDR_LEN, 0, MTU), -EINVAL);
	iov.iov_len = SIOV_NET_HDR_LEN; /* a header and no frame */
	assert_int_equal(siov_net_frame_parse(&f, &iov, 1, SIOV_NET_HDR_LEN, 0, MTU), -EINVAL);
	iov.iov_len = SIOV_NET_HDR_LEN + 13;
	assert_int_equal(siov_net_frame_parse(&f, &iov, 1, SIOV_NET_HDR_LEN, 0, MTU), -EINVAL);
	iov.iov_len = SIOV_NET_HDR_LEN + 14;
	assert_int_equal(siov_net_frame_parse(&f, &iov, 1, SIOV_NET_HDR_LEN, 0, MTU), 0);
	assert_int_equal(f.len, 14);
	iov.iov_len = 5; /* a chain shorter than the header itself */
	assert_int_equal(siov_net_frame_parse(&f, &iov, 1, SIOV_NET_HDR_LEN, 0, MTU), -EINVAL);
}

static void test_parse_split(void **state)
{
	static struct built b;
	struct siov_net_frame f;

	build_tcp(&b, false, 100, 0);
	split(&b, AWKWARD, NAWK);
	assert_int_equal(
	    siov_net_frame_parse(&f, b.iov, b.iovcnt, SIOV_NET_HDR_LEN, SIOV_NET_OFF_CSUM, MTU), 0);
	assert_memory_equal(f.dst, MAC_B, 6);
	assert_memory_equal(f.src, MAC_A, 6);
	assert_int_equal(f.len, b.len - SIOV_NET_HDR_LEN);
	assert_int_equal(f.flags, VIRTIO_NET_HDR_F_NEEDS_CSUM);
	assert_int_equal(f.csum_start, 34);
	/* The same frame from a sender that did not negotiate checksum offload. */
	assert_int_equal(siov_net_frame_parse(&f, b.iov, b.iovcnt, SIOV_NET_HDR_LEN, 0, MTU),
			 -EINVAL);
}

static void test_parse_bad_headers(void **state)
{
	static struct built b;
	struct siov_net_frame f;
	struct iovec iov;
	struct virtio_net_hdr *h = (struct virtio_net_hdr *)b.buf;

	build_tcp(&b, false, 3000, 1448);
	iov = (struct iovec){b.buf, b.len};
	assert_int_equal(siov_net_frame_parse(&f, &iov, 1, SIOV_NET_HDR_LEN, SIOV_NET_OFF_ALL, MTU),
			 0);
	assert_int_equal(f.hdrs_len, 14 + 20 + 32);
	/* TSO4 not negotiated */
	assert_int_equal(siov_net_frame_parse(&f, &iov, 1, SIOV_NET_HDR_LEN,
					      SIOV_NET_OFF_CSUM | SIOV_NET_OFF_TSO6, MTU),
			 -EINVAL);
	/* unknown flag bits */
	h->flags |= 0x40;
	assert_int_equal(siov_net_frame_parse(&f, &iov, 1, SIOV_NET_HDR_LEN, SIOV_NET_OFF_ALL, MTU),
			 -EINVAL);
	h->flags = VIRTIO_NET_HDR_F_NEEDS_CSUM;
	/* UFO */
	h->gso_type = VIRTIO_NET_HDR_GSO_UDP;
	assert_int_equal(siov_net_frame_parse(&f, &iov, 1, SIOV_NET_HDR_LEN, SIOV_NET_OFF_ALL, MTU),
			 -EINVAL);
	/* TCPV6 on an IPv4 frame */
	h->gso_type = VIRTIO_NET_HDR_GSO_TCPV6;
	assert_int_equal(siov_net_frame_parse(&f, &iov, 1, SIOV_NET_HDR_LEN, SIOV_NET_OFF_ALL, MTU),
			 -EINVAL);
	h->gso_type = VIRTIO_NET_HDR_GSO_TCPV4;
	/* a tiny MSS */
	h->gso_size = htole16(8);
	assert_int_equal(siov_net_frame_parse(&f, &iov, 1, SIOV_NET_HDR_LEN, SIOV_NET_OFF_ALL, MTU),
			 -EINVAL);
	/* segments larger than the MTU */
	h->gso_size = htole16(1460);
	assert_int_equal(
	    siov_net_frame_parse(&f, &iov, 1, SIOV_NET_HDR_LEN, SIOV_NET_OFF_ALL, 1400), -EMSGSIZE);
	/* GSO without NEEDS_CSUM */
	h->flags = 0;
	assert_int_equal(siov_net_frame_parse(&f, &iov, 1, SIOV_NET_HDR_LEN, SIOV_NET_OFF_ALL, MTU),
			 -EINVAL);
	/* a checksum field past the end */
	h->flags = VIRTIO_NET_HDR_F_NEEDS_CSUM;
	h->gso_type = 0;
	h->csum_start = htole16((uint16_t)(b.len - SIOV_NET_HDR_LEN - 1));
	h->csum_offset = 0;
	assert_int_equal(
	    siov_net_frame_parse(&f, &iov, 1, SIOV_NET_HDR_LEN, SIOV_NET_OFF_ALL, 9000), -EINVAL);
}

static void test_parse_mtu(void **state)
{
	static uint8_t buf[SIOV_NET_HDR_LEN + 1600];
	struct iovec iov = {buf, SIOV_NET_HDR_LEN + 1514};
	struct siov_net_frame f;

	memset(buf, 0, sizeof(buf));
	assert_int_equal(siov_net_frame_parse(&f, &iov, 1, SIOV_NET_HDR_LEN, 0, MTU), 0);
	iov.iov_len++;
	assert_int_equal(siov_net_frame_parse(&f, &iov, 1, SIOV_NET_HDR_LEN, 0, MTU), -EMSGSIZE);
	/* A VLAN tag adds four bytes. */
	buf[SIOV_NET_HDR_LEN + 12] = 0x81;
	iov.iov_len = SIOV_NET_HDR_LEN + 1518;
	assert_int_equal(siov_net_frame_parse(&f, &iov, 1, SIOV_NET_HDR_LEN, 0, MTU), 0);
	/* No header at all (a raw socket's frame). */
	iov.iov_len = 60;
	assert_int_equal(siov_net_frame_parse(&f, &iov, 1, 0, 0, MTU), 0);
	assert_int_equal(f.len, 60);
}

/* ---- Emitting ---- */

struct sink {
	unsigned n;
	struct {
		uint8_t data[2000];
		size_t len;
		struct virtio_net_hdr hdr;
	} pkts[64];
	uint8_t big[70000]; /* the last packet whole, if large */
	size_t big_len;
	int fail_at; /* -1: never */
};

static int sink_emit(const struct siov_net_pkt *p, void *arg)
{
	struct sink *s = arg;

	if ((int)s->n == s->fail_at)
		return -ENOBUFS;
	if (p->len > sizeof(s->pkts[0].data)) {
		s->big_len = gather(p, s->big, sizeof(s->big));
	} else {
		assert_true(s->n < 64);
		s->pkts[s->n].len = gather(p, s->pkts[s->n].data, sizeof(s->pkts[0].data));
	}
	s->pkts[s->n].hdr = p->hdr;
	s->n++;
	return 0;
}

static void test_csum_software(void **state)
{
	static struct built b;
	static struct sink s;
	static struct siov_net_pkt pkt;
	static uint8_t before[70000];
	struct siov_net_frame f;
	size_t l4 = build_tcp(&b, false, 777, 0), flen = b.len - SIOV_NET_HDR_LEN;

	split(&b, AWKWARD, NAWK);
	memcpy(before, b.buf, b.len);
	assert_int_equal(
	    siov_net_frame_parse(&f, b.iov, b.iovcnt, SIOV_NET_HDR_LEN, SIOV_NET_OFF_CSUM, MTU), 0);
	/* The sender's half-done checksum does not verify yet. */
	assert_false(l4_ok(b.buf + SIOV_NET_HDR_LEN, 14, l4, flen - l4, false, 6));
	memset(&s, 0, sizeof(s));
	s.fail_at = -1;
	assert_int_equal(siov_net_frame_emit(&f, 0, &pkt, sink_emit, &s), 1);
	assert_int_equal(s.pkts[0].len, flen);
	assert_int_equal(s.pkts[0].hdr.flags, 0);
	assert_true(l4_ok(s.pkts[0].data, 14, l4, flen - l4, false, 6));
	/* Only the two checksum bytes differ, and the sender's buffers are untouched. */
	assert_memory_equal(s.pkts[0].data, b.buf + SIOV_NET_HDR_LEN, l4 + 16);
	assert_memory_equal(s.pkts[0].data + l4 + 18, b.buf + SIOV_NET_HDR_LEN + l4 + 18,
			    flen - l4 - 18);
	assert_memory_equal(before, b.buf, b.len);
	/* A receiver that checksums itself gets the frame as it is, with the offsets. */
	memset(&s, 0, sizeof(s));
	s.fail_at = -1;
	assert_int_equal(siov_net_frame_emit(&f, SIOV_NET_OFF_CSUM, &pkt, sink_emit, &s), 1);
	assert_memory_equal(s.pkts[0].data, b.buf + SIOV_NET_HDR_LEN, flen);
	assert_int_equal(s.pkts[0].hdr.flags, VIRTIO_NET_HDR_F_NEEDS_CSUM);
	assert_int_equal(s.pkts[0].hdr.csum_start, l4);
	assert_int_equal(s.pkts[0].hdr.csum_offset, 16);
}

static uint32_t get32(const uint8_t *p)
{
	return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

static uint16_t get16(const uint8_t *p)
{
	return (uint16_t)(p[0] << 8 | p[1]);
}

/* Segments a TSO frame for a receiver without TSO and checks every segment. */
static void check_tso(bool v6, unsigned rx)
{
	static struct built b;
	static struct sink s;
	static struct siov_net_pkt pkt;
	static uint8_t payload[70000];
	const size_t mss = v6 ? 1428 : 1448, total = 10000, tcp_len = 32;
	size_t l4 = build_tcp(&b, v6, total, (uint16_t)mss), hdrs = l4 + tcp_len, got = 0;
	struct siov_net_frame f;
	unsigned i, nseg = (unsigned)((total + mss - 1) / mss);

	split(&b, AWKWARD, NAWK);
	assert_int_equal(
	    siov_net_frame_parse(&f, b.iov, b.iovcnt, SIOV_NET_HDR_LEN, SIOV_NET_OFF_ALL, MTU), 0);
	memset(&s, 0, sizeof(s));
	s.fail_at = -1;
	assert_int_equal(siov_net_frame_emit(&f, rx, &pkt, sink_emit, &s), (int)nseg);
	assert_int_equal(s.n, nseg);
	for (i = 0; i < nseg; i++) {
		const uint8_t *d = s.pkts[i].data, *tcp = d + l4;
		size_t n = i + 1 < nseg ? mss : total - mss * (nseg - 1);
		uint8_t want_flags = 0x10 | (i == 0 ? 0x80 : 0) | (i + 1 == nseg ? 0x09 : 0);

		assert_int_equal(s.pkts[i].len, hdrs + n);
		assert_int_equal(s.pkts[i].hdr.gso_type, 0);
		if (v6) {
			assert_int_equal(get16(d + 14 + 4), tcp_len + n);
		} else {
			assert_int_equal(get16(d + 14 + 2), 20 + tcp_len + n);
			assert_int_equal(get16(d + 14 + 4), 0x1234 + i);
			assert_int_equal(ref_fold(ref_sum(d + 14, 20, 0)), 0xffff);
		}
		assert_int_equal(get32(tcp + 4), (uint32_t)(0xfffff000u + i * mss));
		assert_int_equal(tcp[13], want_flags);
		if (rx & SIOV_NET_OFF_CSUM) {
			/* Left for the receiver: finishing it as Linux would must verify. */
			uint8_t tmp[2000];
			uint16_t c;

			assert_int_equal(s.pkts[i].hdr.flags, VIRTIO_NET_HDR_F_NEEDS_CSUM);
			assert_int_equal(s.pkts[i].hdr.csum_start, l4);
			memcpy(tmp, d, s.pkts[i].len);
			c = (uint16_t)~ref_fold(ref_sum(tmp + l4, tcp_len + n, 0));
			put16(tmp + l4 + 16, c);
			assert_true(l4_ok(tmp, 14, l4, tcp_len + n, v6, 6));
		} else {
			assert_int_equal(s.pkts[i].hdr.flags, 0);
			assert_true(l4_ok(d, 14, l4, tcp_len + n, v6, 6));
		}
		assert_memory_equal(d + 14 + (v6 ? 8 : 12),
				    b.buf + SIOV_NET_HDR_LEN + 14 + (v6 ? 8 : 12), v6 ? 32 : 8);
		memcpy(payload + got, d + hdrs, n);
		got += n;
	}
	assert_int_equal(got, total);
	assert_memory_equal(payload, b.buf + SIOV_NET_HDR_LEN + hdrs, total);
}

static void test_tso4(void **state)
{
	check_tso(false, 0);
	check_tso(false, SIOV_NET_OFF_CSUM);
	check_tso(false, SIOV_NET_OFF_CSUM | SIOV_NET_OFF_TSO6); /* the wrong TSO */
}

static void test_tso6(void **state)
{
	check_tso(true, 0);
	check_tso(true, SIOV_NET_OFF_CSUM);
	check_tso(true, SIOV_NET_OFF_TSO6); /* TSO without CSUM is not TSO */
}

static void test_tso_passthrough(void **state)
{
	static struct built b;
	static struct sink s;
	static struct siov_net_pkt pkt;
	struct siov_net_frame f;
	size_t l4 = build_tcp(&b, false, 20000, 1448);

	split(&b, AWKWARD, NAWK);
	assert_int_equal(
	    siov_net_frame_parse(&f, b.iov, b.iovcnt, SIOV_NET_HDR_LEN, SIOV_NET_OFF_ALL, MTU), 0);
	memset(&s, 0, sizeof(s));
	s.fail_at = -1;
	assert_int_equal(
	    siov_net_frame_emit(&f, SIOV_NET_OFF_CSUM | SIOV_NET_OFF_TSO4, &pkt, sink_emit, &s), 1);
	assert_int_equal(s.big_len, b.len - SIOV_NET_HDR_LEN);
	assert_memory_equal(s.big, b.buf + SIOV_NET_HDR_LEN, s.big_len);
	assert_int_equal(s.pkts[0].hdr.gso_type, VIRTIO_NET_HDR_GSO_TCPV4);
	assert_int_equal(s.pkts[0].hdr.gso_size, 1448);
	assert_int_equal(s.pkts[0].hdr.hdr_len, l4 + 32);
	assert_int_equal(s.pkts[0].hdr.flags, VIRTIO_NET_HDR_F_NEEDS_CSUM);
	/* A receiver that fails stops the segments after the first failure. */
	memset(&s, 0, sizeof(s));
	s.fail_at = 3;
	assert_int_equal(siov_net_frame_emit(&f, 0, &pkt, sink_emit, &s), -ENOBUFS);
	assert_int_equal(s.n, 3);
}

static void test_csum_odd_runs(void **state)
{
	uint8_t buf[301];
	unsigned i;

	for (i = 0; i < sizeof(buf); i++)
		buf[i] = (uint8_t)(i * 31 + 7);
	for (i = 0; i < sizeof(buf); i++) {
		uint16_t got = siov_net_csum_fold_buf(buf, i),
			 want = htobe16(ref_fold(ref_sum(buf, i, 0)));

		assert_int_equal(got, want);
	}
}

/* ---- Flow hash ---- */

#define SEED 0x5eed

/* The hash of the frame in b (after its header), cut to len bytes, from an exact-size copy. */
static uint32_t hash_cut(const struct built *b, size_t len)
{
	uint8_t *copy = malloc(len ? len : 1);
	struct siov_net_frame f;
	struct iovec iov = {copy, len};
	uint32_t h;

	assert_non_null(copy);
	memcpy(copy, b->buf + SIOV_NET_HDR_LEN, len);
	memset(&f, 0, sizeof(f));
	f.iov = &iov;
	f.iovcnt = 1;
	f.len = len;
	memcpy(f.dst, MAC_B, 6);
	memcpy(f.src, MAC_A, 6);
	h = siov_net_frame_flow_hash(&f, SEED);
	free(copy);
	return h;
}

static uint32_t hash_of(const struct built *b)
{
	return hash_cut(b, b->len - SIOV_NET_HDR_LEN);
}

/* Inserts an 802.1Q tag after the MAC addresses. */
static void add_vlan(struct built *b)
{
	uint8_t *f = b->buf + SIOV_NET_HDR_LEN;

	memmove(f + 16, f + 12, b->len - SIOV_NET_HDR_LEN - 12);
	put16(f + 12, 0x8100);
	put16(f + 14, 42);
	b->len += 4;
}

static void test_flow_hash_tuple(void **state)
{
	static struct built b;
	uint32_t h[64], h0;
	size_t l4;
	unsigned v6, i, j, distinct;

	for (v6 = 0; v6 < 2; v6++) {
		l4 = SIOV_NET_HDR_LEN + build_tcp(&b, v6, 100, 0);
		h0 = hash_of(&b);
		/* Another payload, another length, another split: the same flow. */
		build_tcp(&b, v6, 700, 0);
		assert_int_equal(hash_of(&b), h0);
		split(&b, AWKWARD, NAWK);
		{
			struct siov_net_frame f;

			assert_int_equal(siov_net_frame_parse(&f, b.iov, b.iovcnt, SIOV_NET_HDR_LEN,
							      SIOV_NET_OFF_CSUM, MTU),
					 0);
			assert_int_equal(siov_net_frame_flow_hash(&f, SEED), h0);
		}
		/* Other source ports: other flows, spread (a good hash collides rarely). */
		for (i = 0; i < 64; i++) {
			build_tcp(&b, v6, 10, 0);
			put16(b.buf + l4, (uint16_t)(1024 + i));
			h[i] = hash_of(&b);
		}
		for (i = 0, distinct = 0; i < 64; i++) {
			for (j = 0; j < i && h[j] != h[i]; j++)
				;
			distinct += j == i;
		}
		assert_true(distinct >= 63);
		/* The destination port counts too, and a VLAN tag is looked through. */
		build_tcp(&b, v6, 10, 0);
		put16(b.buf + l4 + 2, 5002);
		assert_int_not_equal(hash_of(&b), h0);
		build_tcp(&b, v6, 10, 0);
		add_vlan(&b);
		h[0] = hash_of(&b);
		put16(b.buf + l4 + 4, 1);
		assert_int_not_equal(hash_of(&b), h[0]);
	}
}

/* Fragments of one datagram hash alike (only the first has the ports); whole ones do not. */
static void test_flow_hash_fragments(void **state)
{
	static struct built b;
	uint8_t *ip = b.buf + SIOV_NET_HDR_LEN + 14;
	uint32_t first;

	build_tcp(&b, false, 100, 0);
	put16(ip + 6, 0x2000); /* MF, offset 0 */
	first = hash_of(&b);
	put16(ip + 6, 0x0010); /* the last fragment, offset 128: "ports" are payload */
	put16(ip + 20, 7);
	assert_int_equal(hash_of(&b), first);
	put16(ip + 6, 0x4000); /* DF: a whole datagram, with its ports */
	assert_int_not_equal(hash_of(&b), first);
}

/*
 * Every cut of a TCP frame (IPv4, IPv6, tagged) is hashed from an exact-size
 * copy; a frame cut inside its ports hashes like one with other ports (the
 * bytes it lacks are not read), and one cut inside its IP header falls back
 * to its MAC addresses.
 */
static void test_flow_hash_truncated(void **state)
{
	static struct built b;
	unsigned v6, vlan;
	size_t cut, full, l3, l4;

	for (v6 = 0; v6 < 2; v6++) {
		for (vlan = 0; vlan < 2; vlan++) {
			l4 = build_tcp(&b, v6, 30, 0) + 4 * vlan;
			if (vlan)
				add_vlan(&b);
			l3 = 14 + 4 * vlan;
			full = b.len - SIOV_NET_HDR_LEN;
			for (cut = 0; cut <= full; cut++) {
				uint16_t sport = (uint16_t)(b.buf[SIOV_NET_HDR_LEN + l4] << 8 |
							    b.buf[SIOV_NET_HDR_LEN + l4 + 1]);
				uint32_t h;

				(void)hash_of(
				    &b); /* leaves the whole frame in the hash's stack copy */
				h = hash_cut(&b, cut);
				put16(b.buf + SIOV_NET_HDR_LEN + l4, (uint16_t)(sport + 1));
				/* ... and now the other port: a hash reading past its bytes would
				 * see it */
				(void)hash_of(&b);
				if (cut < l4 + 4)
					assert_int_equal(hash_cut(&b, cut), h);
				else
					assert_int_not_equal(hash_cut(&b, cut), h);
				put16(b.buf + SIOV_NET_HDR_LEN + l4, sport);
			}
			/* Cut inside the IP header: the addresses are not read either. */
			cut = l3 + (v6 ? 39 : 19);
			{
				uint32_t h = hash_cut(&b, cut);

				b.buf[SIOV_NET_HDR_LEN + l3 + (v6 ? 8 : 12)] ^= 0xff;
				assert_int_equal(hash_cut(&b, cut), h);
			}
		}
	}
}

/* IP headers that lie about themselves are read within the frame, or not at all. */
static void test_flow_hash_lying_headers(void **state)
{
	static struct built b;
	uint8_t *ip = b.buf + SIOV_NET_HDR_LEN + 14;
	uint32_t h;

	/* IHL 15 (60 bytes) in a frame with 20 bytes of IP and 4 of "TCP": no ports read. */
	build_tcp(&b, false, 0, 0);
	ip[0] = 0x4f;
	h = hash_cut(&b, 14 + 24);
	put16(ip + 20, 1);
	assert_int_equal(hash_cut(&b, 14 + 24), h);
	/* IHL below 5, or a version that is not the EtherType's: hashed as L2 (MACs). */
	ip[0] = 0x43;
	h = hash_cut(&b, 14 + 40);
	put32(ip + 12, 0x0b000001);
	assert_int_equal(hash_cut(&b, 14 + 40), h);
	ip[0] = 0x65;
	assert_int_equal(hash_cut(&b, 14 + 40), h);
	/* Not IP at all (ARP): the MAC addresses and the EtherType. */
	put16(b.buf + SIOV_NET_HDR_LEN + 12, 0x0806);
	h = hash_cut(&b, 42);
	memset(ip, 0x5a, 28);
	assert_int_equal(hash_cut(&b, 42), h);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_parse_short),
	    cmocka_unit_test(test_parse_split),
	    cmocka_unit_test(test_parse_bad_headers),
	    cmocka_unit_test(test_parse_mtu),
	    cmocka_unit_test(test_csum_odd_runs),
	    cmocka_unit_test(test_csum_software),
	    cmocka_unit_test(test_tso4),
	    cmocka_unit_test(test_tso6),
	    cmocka_unit_test(test_tso_passthrough),
	    cmocka_unit_test(test_flow_hash_tuple),
	    cmocka_unit_test(test_flow_hash_fragments),
	    cmocka_unit_test(test_flow_hash_truncated),
	    cmocka_unit_test(test_flow_hash_lying_headers),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
