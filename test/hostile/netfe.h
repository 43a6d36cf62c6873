/*
 * A virtio-net front end for the hostile test, on the same hand-written
 * vhost-user pieces as frontend.h: one queue pair (queue 0 receives, queue 1
 * transmits) in a memfd region of its own, identity-mapped, so that an attack
 * can put anything in a header, a chain or a receive buffer.  Receive buffers
 * are 2 KiB each, one descriptor per buffer, reposted as they come back.
 */
#ifndef SIOV_TEST_HOSTILE_NETFE_H
#define SIOV_TEST_HOSTILE_NETFE_H

#include <linux/virtio_net.h>
#include <stdbool.h>
#include <stdint.h>

#include "frontend.h"

#define NFE_MEM_LEN  (2u << 20)
#define NFE_QSIZE    256u /* deep enough for a test descheduled for ~0.4 s during the flood */
#define NFE_RXBUF    2048u
#define NFE_RXBUF_AT 0x10000u /* NFE_QSIZE receive buffers */
#define NFE_TX_AT    0xa0000u /* transmit slots of NFE_TXSLOT bytes */
#define NFE_TXSLOT   0x800u
#define NFE_TXSLOTS  16u /* chains in flight, NFE_TXDESC descriptors each */
#define NFE_TXDESC   4u
#define NFE_BIG_AT   0x100000u /* 1 MiB for frames larger than a slot */
#define NFE_HDR	     12u       /* VERSION_1: the header always has num_buffers */
#define NFE_ETHTYPE  0x88b5    /* IEEE local experimental */

/* Net features the test may ask for; VERSION_1 and PROTOCOL_FEATURES always. */
#define NFE_F(bit)     (1ull << (bit))
#define FE_F_VERSION_1 NFE_F(VIRTIO_F_VERSION_1_BIT)
#define FE_F_PROTOCOL  NFE_F(VHOST_USER_F_PROTOCOL_FEATURES_BIT)

struct nring {
	struct vring_desc *desc;
	struct vring_avail *avail;
	struct vring_used *used;
	int kick_fd, call_fd;
	uint16_t avail_idx, used_seen;
};

struct nfe {
	struct fe fe; /* socket, memfd and mapping */
	struct nring q[2];
	uint8_t mac[6];
};

/* One frame received: where it is in our memory and its length with the header. */
struct nfe_rx {
	const uint8_t *buf;
	uint32_t len;
	uint16_t id;
};

void nfe_init(struct nfe *n);
void nfe_close(struct nfe *n);
/*
 * Connects to @path (retrying while the back end still holds a previous
 * session), negotiates VERSION_1 plus @features, maps memory and starts both
 * rings.  With post_rx, every receive buffer is posted.
 */
int nfe_open(struct nfe *n, const char *path, const uint8_t mac[6], uint64_t features, bool post_rx,
	     int timeout_ms);

/* Receive buffers: post buffer i as given (flags, address), or all of them normally. */
void nfe_rx_post(struct nfe *n, uint16_t id, uint64_t addr, uint32_t len, uint16_t flags);
void nfe_rx_post_all(struct nfe *n);
/* The next received buffer (1), none before the deadline (0); repost it with nfe_rx_done. */
int nfe_rx_next(struct nfe *n, struct nfe_rx *rx, int timeout_ms);
void nfe_rx_done(struct nfe *n, const struct nfe_rx *rx);
/* Takes and reposts everything received so far; returns how many. */
unsigned nfe_rx_drain(struct nfe *n);

/* Publishes head on queue q (0 receive, 1 transmit) and kicks: for descriptors written by hand. */
void nfe_push(struct nfe *n, unsigned q, uint16_t head);

/* Transmit chains waiting for the device; a new one needs a free slot. */
unsigned nfe_tx_inflight(const struct nfe *n);
/* Slot memory for the next chain (NFE_TXSLOT bytes), and the chain itself. */
uint8_t *nfe_tx_slot(struct nfe *n, uint64_t *addr);
void nfe_tx_chain(struct nfe *n, const struct fe_buf *bufs, unsigned nbufs);
/* Waits for every transmit chain to come back; 0 or -ETIMEDOUT. */
int nfe_tx_wait(struct nfe *n, int timeout_ms);

/*
 * Writes header + frame (dst, our MAC as source, NFE_ETHTYPE, a 4-byte
 * sequence number, then a pattern seeded with it) of @len bytes (Ethernet
 * frame, at least 18) at p.
 */
void nfe_frame(uint8_t *p, const uint8_t *dst, const uint8_t *src, uint32_t seq, uint32_t len);
/* Checks a received buffer against nfe_frame(): source, length and payload; seq out. */
bool nfe_frame_check(const struct nfe_rx *rx, const uint8_t *src, uint32_t len, uint32_t *seq);
/* Sends one well-formed frame from a slot and waits for the chain to come back. */
int nfe_send(struct nfe *n, const uint8_t *dst, uint32_t seq, uint32_t len);

#endif
