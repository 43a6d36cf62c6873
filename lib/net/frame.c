/*
 * Parsing and validating a sent frame: the virtio-net header, the Ethernet
 * addresses, and for segmentation offload the IP and TCP headers.  The bytes
 * are in the sender's memory, which the sender may change while we read, so
 * everything a decision rests on is copied out first and read only from the
 * copy; a sender that races us can only damage its own frame.
 */
#include <endian.h>
#include <errno.h>
#include <string.h>

#include "siov_internal/net_frame.h"
#include "siov_internal/util.h"

#define ETHT_IPV4    0x0800
#define ETHT_IPV6    0x86dd
#define ETHT_VLAN    0x8100
#define IPPROTO_TCP_ 6

size_t siov_net_iov_read(const struct iovec *iov, unsigned iovcnt, size_t off, void *buf,
			 size_t len)
{
	uint8_t *dst = buf;
	size_t done = 0;
	unsigned i;

	for (i = 0; i < iovcnt && done < len; i++) {
		size_t n;

		if (off >= iov[i].iov_len) {
			off -= iov[i].iov_len;
			continue;
		}
		n = SIOV_MIN(iov[i].iov_len - off, len - done);
		memcpy(dst + done, (const uint8_t *)iov[i].iov_base + off, n);
		done += n;
		off = 0;
	}
	return done;
}

static size_t iov_total(const struct iovec *iov, unsigned iovcnt)
{
	size_t total = 0;
	unsigned i;

	for (i = 0; i < iovcnt; i++) {
		if (iov[i].iov_len > SIOV_NET_MAX_FRAME * 2u)
			return SIOV_NET_MAX_FRAME * 2u;
		total += iov[i].iov_len;
		if (total > SIOV_NET_MAX_FRAME * 2u)
			return SIOV_NET_MAX_FRAME * 2u;
	}
	return total;
}

static int parse_hdr(struct siov_net_frame *f, size_t hdr_len, unsigned offloads)
{
	struct virtio_net_hdr h;

	memset(&h, 0, sizeof(h));
	if (hdr_len && siov_net_iov_read(f->iov, f->iovcnt, 0, &h, sizeof(h)) != sizeof(h))
		return -EINVAL;
	f->flags = h.flags;
	f->gso_type = h.gso_type & (uint8_t)~VIRTIO_NET_HDR_GSO_ECN;
	f->gso_ecn = h.gso_type & VIRTIO_NET_HDR_GSO_ECN;
	f->gso_size = le16toh(h.gso_size);
	f->csum_start = le16toh(h.csum_start);
	f->csum_offset = le16toh(h.csum_offset);
	/* DATA_VALID and RSC_INFO mean nothing on transmit; other bits are undefined. */
	if (f->flags & ~(VIRTIO_NET_HDR_F_NEEDS_CSUM | VIRTIO_NET_HDR_F_DATA_VALID))
		return -EINVAL;
	if ((f->flags & VIRTIO_NET_HDR_F_NEEDS_CSUM) && !(offloads & SIOV_NET_OFF_CSUM))
		return -EINVAL;
	switch (f->gso_type) {
	case VIRTIO_NET_HDR_GSO_NONE:
		return f->gso_ecn ? -EINVAL : 0;
	case VIRTIO_NET_HDR_GSO_TCPV4:
		if (!(offloads & SIOV_NET_OFF_TSO4))
			return -EINVAL;
		break;
	case VIRTIO_NET_HDR_GSO_TCPV6:
		if (!(offloads & SIOV_NET_OFF_TSO6))
			return -EINVAL;
		break;
	default: /* UFO and USO are never offered */
		return -EINVAL;
	}
	/* Segments need their TCP checksum done, so a GSO frame always asks for it (Linux does). */
	if (!(f->flags & VIRTIO_NET_HDR_F_NEEDS_CSUM) ||
	    (f->gso_ecn && !(offloads & SIOV_NET_OFF_ECN)))
		return -EINVAL;
	return f->gso_size >= SIOV_NET_MIN_MSS ? 0 : -EINVAL;
}

static int parse_l3(struct siov_net_frame *f, const uint8_t *h, size_t avail, uint16_t l3)
{
	size_t ip_len;

	if (f->gso_type == VIRTIO_NET_HDR_GSO_TCPV4) {
		uint16_t frag;

		if (avail < l3 + 20u || (h[l3] >> 4) != 4)
			return -EINVAL;
		ip_len = (h[l3] & 0xf) * 4u;
		memcpy(&frag, h + l3 + 6, 2);
		/* A fragment (MF set or an offset) cannot be segmented. */
		if (ip_len < 20 || h[l3 + 9] != IPPROTO_TCP_ || (be16toh(frag) & 0x3fff))
			return -EINVAL;
	} else {
		/* Extension headers are refused: Linux never puts them in a TSO frame it offloads.
		 */
		if (avail < l3 + 40u || (h[l3] >> 4) != 6 || h[l3 + 6] != IPPROTO_TCP_)
			return -EINVAL;
		ip_len = 40;
	}
	f->l3_off = l3;
	f->l4_off = (uint16_t)(l3 + ip_len);
	return 0;
}

/* GSO frames: find the headers that every segment repeats. */
static int parse_gso(struct siov_net_frame *f, uint32_t mtu)
{
	uint8_t h[SIOV_NET_MAX_HDRS];
	size_t avail = siov_net_iov_read(f->iov, f->iovcnt, f->off, h, SIOV_MIN(f->len, sizeof(h)));
	uint16_t type, l3 = SIOV_ETH_HLEN;
	size_t tcp_len;
	int rc;

	memcpy(&type, h + 12, 2);
	if (be16toh(type) == ETHT_VLAN) {
		if (avail < SIOV_ETH_HLEN + SIOV_ETH_VLAN_LEN)
			return -EINVAL;
		memcpy(&type, h + 16, 2);
		l3 += SIOV_ETH_VLAN_LEN;
	}
	if (be16toh(type) != (f->gso_type == VIRTIO_NET_HDR_GSO_TCPV4 ? ETHT_IPV4 : ETHT_IPV6))
		return -EINVAL;
	if ((rc = parse_l3(f, h, avail, l3)) < 0)
		return rc;
	if (avail < f->l4_off + 20u)
		return -EINVAL;
	tcp_len = (h[f->l4_off + 12] >> 4) * 4u;
	if (tcp_len < 20 || avail < f->l4_off + tcp_len)
		return -EINVAL;
	f->hdrs_len = (uint16_t)(f->l4_off + tcp_len);
	/* Every segment must fit the MTU: its IP datagram is headers plus one MSS. */
	if ((size_t)(f->hdrs_len - f->l3_off) + f->gso_size > mtu)
		return -EMSGSIZE;
	return 0;
}

int siov_net_frame_parse(struct siov_net_frame *f, const struct iovec *iov, unsigned iovcnt,
			 size_t hdr_len, unsigned offloads, uint32_t mtu)
{
	size_t total = iov_total(iov, iovcnt);
	uint8_t eth[SIOV_ETH_HLEN + SIOV_ETH_VLAN_LEN];
	uint16_t type;
	int rc;

	memset(f, 0, sizeof(*f));
	f->iov = iov;
	f->iovcnt = iovcnt;
	f->off = hdr_len;
	if (total < hdr_len + SIOV_ETH_HLEN)
		return -EINVAL;
	f->len = total - hdr_len;
	if ((rc = parse_hdr(f, hdr_len, offloads)) < 0)
		return rc;
	siov_net_iov_read(iov, iovcnt, hdr_len, eth, SIOV_MIN(f->len, sizeof(eth)));
	memcpy(f->dst, eth, SIOV_ETH_ALEN);
	memcpy(f->src, eth + SIOV_ETH_ALEN, SIOV_ETH_ALEN);
	if ((f->flags & VIRTIO_NET_HDR_F_NEEDS_CSUM) &&
	    (size_t)f->csum_start + f->csum_offset + 2u > f->len)
		return -EINVAL;
	if (f->gso_type != VIRTIO_NET_HDR_GSO_NONE) {
		/* The checksum offload a GSO frame needs is TCP's, which we redo ourselves. */
		if (f->len > SIOV_NET_MAX_FRAME)
			return -EMSGSIZE;
		return parse_gso(f, mtu);
	}
	memcpy(&type, eth + 12, 2);
	if (f->len >
	    SIOV_ETH_HLEN + (size_t)mtu +
		(be16toh(type) == ETHT_VLAN && f->len >= sizeof(eth) ? SIOV_ETH_VLAN_LEN : 0))
		return -EMSGSIZE;
	return 0;
}

/* ---- Flow hash: which receive queue a frame goes to ---- */

/* Enough for Ethernet, one VLAN tag, IPv4 with every option or IPv6, and the ports. */
#define FLOW_PEEK (SIOV_ETH_HLEN + SIOV_ETH_VLAN_LEN + 60 + 4)

static uint32_t mix(uint32_t h, uint32_t k)
{
	/* murmur3's round and finaliser: cheap, and every input bit moves every output bit. */
	k *= 0xcc9e2d51u;
	k = (k << 15) | (k >> 17);
	h ^= k * 0x1b873593u;
	h = ((h << 13) | (h >> 19)) * 5u + 0xe6546b64u;
	return h;
}

static uint32_t mix_bytes(uint32_t h, const uint8_t *p, size_t n)
{
	size_t i;

	for (i = 0; i + 4 <= n; i += 4)
		h = mix(h, (uint32_t)p[i] << 24 | (uint32_t)p[i + 1] << 16 |
			       (uint32_t)p[i + 2] << 8 | p[i + 3]);
	for (; i < n; i++)
		h = mix(h, p[i]);
	return h;
}

static uint32_t finish(uint32_t h)
{
	h ^= h >> 16;
	h *= 0x85ebca6bu;
	h ^= h >> 13;
	h *= 0xc2b2ae35u;
	return h ^ (h >> 16);
}

/*
 * The addresses and protocol of the IP header at b[l3..avail), and the ports
 * when the L4 header is there whole and this is no later fragment; false when
 * there is no whole IP header (the caller hashes L2 then).
 */
static bool flow_l3(const uint8_t *b, size_t avail, size_t l3, uint16_t type, uint32_t *h)
{
	size_t l4, alen;
	uint8_t proto;
	bool ports;

	if (type == ETHT_IPV4) {
		uint16_t frag;

		if (avail < l3 + 20u || (b[l3] >> 4) != 4 || (b[l3] & 0xf) < 5)
			return false;
		l4 = l3 + (b[l3] & 0xfu) * 4u;
		proto = b[l3 + 9];
		memcpy(&frag, b + l3 + 6, 2);
		/* Every fragment of a datagram hashes alike: only the first carries the ports. */
		ports = !(be16toh(frag) & 0x3fff);
		l3 += 12;
		alen = 8;
	} else if (type == ETHT_IPV6) {
		if (avail < l3 + 40u || (b[l3] >> 4) != 6)
			return false;
		l4 = l3 + 40; /* extension headers are not walked: such flows hash by addresses */
		proto = b[l3 + 6];
		ports = true;
		l3 += 8;
		alen = 32;
	} else {
		return false;
	}
	*h = mix(mix_bytes(*h, b + l3, alen), proto);
	if (ports && (proto == IPPROTO_TCP_ || proto == 17 /* UDP */) && avail >= l4 + 4)
		*h = mix_bytes(*h, b + l4, 4);
	return true;
}

uint32_t siov_net_frame_flow_hash(const struct siov_net_frame *f, uint32_t seed)
{
	uint8_t b[FLOW_PEEK];
	size_t avail, l3 = SIOV_ETH_HLEN;
	uint16_t type = 0;
	uint32_t h = seed;

	/* A copy: the sender may rewrite its buffer meanwhile; we read each byte once. */
	avail = siov_net_iov_read(f->iov, f->iovcnt, f->off, b, SIOV_MIN(f->len, sizeof(b)));
	if (avail >= SIOV_ETH_HLEN) {
		type = (uint16_t)(b[12] << 8 | b[13]);
		if (type == ETHT_VLAN && avail >= SIOV_ETH_HLEN + SIOV_ETH_VLAN_LEN) {
			type = (uint16_t)(b[16] << 8 | b[17]);
			l3 += SIOV_ETH_VLAN_LEN;
		}
	}
	if (!flow_l3(b, avail, l3, type, &h))
		h = mix(mix_bytes(mix_bytes(h, f->dst, SIOV_ETH_ALEN), f->src, SIOV_ETH_ALEN),
			type);
	return finish(h);
}
