/*
 * Ethernet frames as a virtio-net front end or a TAP device hands them to
 * siovd: a virtio-net header followed by the frame, scattered over buffers
 * that belong to the sender (guest memory).  This layer parses and validates
 * them (hostile input: every field is checked, the buffers are only read) and
 * turns one sent frame into what a given receiver can take: the frame as it
 * is, with its checksum filled in, or cut into TCP segments (TSO4/TSO6 done in
 * software) when the receiver did not negotiate those offloads.
 *
 * Nothing here copies payload: a packet handed to a receiver is a list of
 * iovecs into the sender's buffers plus a few rewritten header bytes, so that
 * the receiver's single copy is the only one.  Depends on util only.
 */
#ifndef SIOV_INTERNAL_NET_FRAME_H
#define SIOV_INTERNAL_NET_FRAME_H

#include <linux/virtio_net.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/uio.h>

#define SIOV_ETH_ALEN	  6
#define SIOV_ETH_HLEN	  14
#define SIOV_ETH_VLAN_LEN 4
/* The virtio-net header with num_buffers (VERSION_1 or MRG_RXBUF) and without. */
#define SIOV_NET_HDR_LEN	12
#define SIOV_NET_HDR_LEN_LEGACY 10
/* Largest frame we carry: an IP datagram of 64 KiB behind a tagged Ethernet header. */
#define SIOV_NET_MAX_FRAME (65535 + SIOV_ETH_HLEN + SIOV_ETH_VLAN_LEN)
/* Headers (Ethernet to TCP) we rewrite when segmenting; longer ones are refused. */
#define SIOV_NET_MAX_HDRS 256
/* Smallest TCP segment size we cut to (a tiny gso_size would multiply work). */
#define SIOV_NET_MIN_MSS 64
/* iovecs of one packet: the sender's (at most 256 per chain) plus rewritten pieces. */
#define SIOV_NET_PKT_IOV 264

/* What a receiver (or sender) handles itself: virtio GUEST_* / HOST_* features, TAP offloads. */
enum {
	SIOV_NET_OFF_CSUM = 1u << 0,
	SIOV_NET_OFF_TSO4 = 1u << 1,
	SIOV_NET_OFF_TSO6 = 1u << 2,
	SIOV_NET_OFF_ECN = 1u << 3,
	SIOV_NET_OFF_ALL = 0xf,
};

/* A sent frame, parsed.  iov points at the sender's buffers (not owned). */
struct siov_net_frame {
	const struct iovec *iov;
	unsigned iovcnt;
	size_t off; /* where the Ethernet frame starts in iov (after the virtio-net header) */
	size_t len; /* bytes of Ethernet frame */
	/* The sender's header, validated, in host byte order; num_buffers is ignored. */
	uint8_t flags;
	uint8_t gso_type; /* VIRTIO_NET_HDR_GSO_NONE/TCPV4/TCPV6, ECN bit apart */
	bool gso_ecn;
	uint16_t gso_size, csum_start, csum_offset;
	/* Copied out of the frame, so that a sender rewriting its buffer cannot change our mind. */
	uint8_t dst[SIOV_ETH_ALEN], src[SIOV_ETH_ALEN];
	/* Set for GSO frames: where the IP and TCP headers start, and where the payload does. */
	uint16_t l3_off, l4_off, hdrs_len;
};

/*
 * Parses a frame that starts with a virtio-net header of hdr_len bytes (0: no
 * header, as from a raw socket).  offloads: what the sender negotiated
 * (HOST_CSUM, HOST_TSO4...); a frame using more is malformed.  mtu: the
 * network's, in bytes of IP datagram.  Returns 0, -EINVAL for a malformed
 * frame or header, -EMSGSIZE for one larger than the MTU allows.
 */
int siov_net_frame_parse(struct siov_net_frame *f, const struct iovec *iov, unsigned iovcnt,
			 size_t hdr_len, unsigned offloads, uint32_t mtu);

static inline bool siov_net_mac_is_multicast(const uint8_t *mac)
{
	return mac[0] & 1;
}

/* One packet for a receiver: the virtio-net header to write, then iov. */
struct siov_net_pkt {
	struct virtio_net_hdr hdr; /* host byte order; num_buffers is the receiver's business */
	size_t len;
	unsigned iovcnt;
	struct iovec iov[SIOV_NET_PKT_IOV];
	uint8_t scratch[SIOV_NET_MAX_HDRS]; /* rewritten header bytes iov may point into */
};

/* Takes one packet; a negative return stops the frame's remaining packets. */
typedef int (*siov_net_emit_fn)(const struct siov_net_pkt *pkt, void *arg);

/*
 * Hands f to a receiver that handles rx_offloads itself: one packet (the frame
 * as is, or with its checksum computed) or, for a GSO frame the receiver cannot
 * take, one packet per TCP segment with IP and TCP headers rewritten and
 * checksums computed.  pkt is the caller's scratch (it is large).  Returns
 * the number of packets emitted, or the first negative value emit returned.
 */
int siov_net_frame_emit(const struct siov_net_frame *f, unsigned rx_offloads,
			struct siov_net_pkt *pkt, siov_net_emit_fn emit, void *arg);

/*
 * A hash of f's flow, to pick a receive queue by: the IPv4 or IPv6 addresses,
 * protocol and TCP/UDP ports when the frame holds them (one VLAN tag skipped;
 * fragments and IPv6 extension headers by addresses only), otherwise the MAC
 * addresses and EtherType.  One flow always hashes alike; seed keeps guests
 * from aiming flows at one queue.  Reads the frame's bytes once, bounded by
 * f->len and the iovecs: any frame is safe.
 */
uint32_t siov_net_frame_flow_hash(const struct siov_net_frame *f, uint32_t seed);
/* Copies len bytes at off of an iovec list into buf; returns how many there were. */
size_t siov_net_iov_read(const struct iovec *iov, unsigned iovcnt, size_t off, void *buf,
			 size_t len);
/* The Internet checksum (RFC 1071) of the bytes, folded, not complemented, network order. */
uint16_t siov_net_csum_fold_buf(const void *buf, size_t len);

#endif
