/*
 * A minimal vhost-user front end for the hostile test, written apart from
 * libsiov on purpose: an attacker must be able to send any bytes, any fds and
 * any ring contents, and the test must not depend on the library it might one
 * day be used to check.  One memfd region mapped at the same address in guest
 * physical and user space (identity map), one split or packed ring, one
 * request at a time.  Every wait has a deadline.
 */
#ifndef SIOV_TEST_HOSTILE_FRONTEND_H
#define SIOV_TEST_HOSTILE_FRONTEND_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <linux/virtio_ring.h>

#include "siov/vhost_user.h"

/* Layout of the front end's memory region. */
#define FE_MEM_LEN     (1u << 20)
#define FE_DESC_OFF    0x0000u
#define FE_AVAIL_OFF   0x1000u
#define FE_USED_OFF    0x2000u
#define FE_HDR_OFF     0x10000u
#define FE_STATUS_OFF  0x10100u
#define FE_SCRATCH_OFF 0x11000u /* free for attack payloads */
#define FE_DATA_OFF    0x20000u
#define FE_DATA_MAX    (FE_MEM_LEN - FE_DATA_OFF)
#define FE_QUEUE_SIZE  16u

/* The ring features every session negotiates (INDIRECT_DESC: to attack indirect tables). */
#define FE_FEATURES                                                                                \
	((1ull << VIRTIO_F_VERSION_1_BIT) | (1ull << VIRTIO_RING_F_EVENT_IDX_BIT) |                \
	 (1ull << VIRTIO_RING_F_INDIRECT_DESC_BIT) | (1ull << VHOST_USER_F_PROTOCOL_FEATURES_BIT))

struct fe {
	int sock;
	int memfd;
	uint8_t *mem;
	size_t mem_len;
	unsigned num;
	struct vring_desc *desc;
	struct vring_avail *avail;
	struct vring_used *used;
	int kick_fd, call_fd;
	uint16_t avail_idx;
	/* Packed ring (fe_setup_packed): descriptors at FE_DESC_OFF, driver and device event
	 * areas at FE_AVAIL_OFF and FE_USED_OFF. */
	bool packed;
	bool in_order; /* VIRTIO_F_IN_ORDER negotiated (fe_setup_in_order) */
	struct vring_packed_desc *pdesc;
	uint16_t pk_next, pk_used; /* next slot to make available / to read a used entry from */
	bool pk_wrap, pk_used_wrap;
	unsigned pk_pending;		  /* chains made available and not yet seen used */
	uint16_t pk_slots[FE_QUEUE_SIZE]; /* per buffer id: slots its chain took */
};

/* One descriptor of a chain that fe_submit() links with NEXT flags. */
struct fe_buf {
	uint64_t addr;
	uint32_t len;
	uint16_t flags;
};

void fe_init(struct fe *fe);
void fe_close(struct fe *fe);

/* Connects the socket only; the caller drives the conversation. */
int fe_connect(struct fe *fe, const char *path);

/* Sends one message exactly as given (flags are not touched). */
int fe_send(struct fe *fe, uint32_t request, uint32_t flags, const void *payload, uint32_t size,
	    const int *fds, unsigned nfds);
/* 1: a message arrived, 0: the peer hung up, -ETIMEDOUT or -errno. */
int fe_recv(struct fe *fe, struct siov_vu_msg *m, int timeout_ms);
/* Waits for the peer to close the connection; 0 if it did, -ETIMEDOUT if not. */
int fe_wait_hangup(struct fe *fe, int timeout_ms);

/*
 * Sends a request with NEED_REPLY and waits for its answer: the u64 the back
 * end replied (the ack: 0 for success), -ECONNRESET if it hung up instead.
 */
int64_t fe_call(struct fe *fe, uint32_t request, const void *payload, uint32_t size, const int *fds,
		unsigned nfds);

/* Creates the memfd region; file_len < FE_MEM_LEN leaves its tail beyond EOF. */
int fe_mem_create(struct fe *fe, size_t file_len);
/* The same with a region of len bytes. */
int fe_mem_map(struct fe *fe, size_t len, size_t file_len);
/* SET_MEM_TABLE with the one region; 0 if acknowledged. */
int fe_set_mem_table(struct fe *fe);
/* The region as SET_MEM_TABLE describes it (identity map). */
struct siov_vu_mem_region fe_region(const struct fe *fe);
uint64_t fe_addr(const struct fe *fe, size_t off);

/* Negotiates features, protocol features (REPLY_ACK) and the owner. */
int fe_negotiate(struct fe *fe);
/* Sets up queue 0 on the region; rings at the usual offsets unless told. */
int fe_ring_setup(struct fe *fe, const struct siov_vu_vring_addr *addr);

/*
 * A full well-behaved session on @path: connect (retrying while the back end
 * still holds a previous connection), negotiate, memory, one enabled ring.
 */
int fe_setup(struct fe *fe, const char *path, int timeout_ms);
/* The same with VIRTIO_F_RING_PACKED negotiated: fe_submit/fe_blk/fe_wait_used use it. */
int fe_setup_packed(struct fe *fe, const char *path, int timeout_ms);
/* The same with VIRTIO_F_IN_ORDER negotiated too, on a split or a packed ring. */
int fe_setup_in_order(struct fe *fe, const char *path, int timeout_ms, bool packed);
/*
 * Packed: makes the chain available at the next slots with buffer id @id
 * (any value: an attack may lie), head flags last, and kicks.
 */
void fe_pk_submit(struct fe *fe, const struct fe_buf *bufs, unsigned n, uint16_t id);
/* The flags a descriptor made available now carries (the driver's wrap counter). */
uint16_t fe_pk_avail_flags(const struct fe *fe, bool next_lap);

/* Writes a chain at descriptors 0.., publishes head 0 and kicks. */
void fe_submit(struct fe *fe, const struct fe_buf *bufs, unsigned n);
/* Publishes any head, or any avail index, and kicks. */
void fe_push_head(struct fe *fe, uint16_t head);
void fe_set_avail_idx(struct fe *fe, uint16_t idx);
void fe_kick(struct fe *fe);
/* Waits until the used index reaches the avail index; 0 or -ETIMEDOUT. */
int fe_wait_used(struct fe *fe, int timeout_ms);

/*
 * One virtio-blk request, header + data at FE_DATA_OFF + status byte; returns
 * the status byte, or -ETIMEDOUT.
 */
int fe_blk(struct fe *fe, uint32_t type, uint64_t sector, uint32_t len, int timeout_ms);

#endif
