/*
 * vhost-user wire protocol: message codes, feature bits and the packed payload
 * structs, as in QEMU's docs/interop/vhost-user.rst.  Shared by siovd (the back
 * end) and libsiov (a front end in a process).  Nothing here allocates or does
 * I/O; it is the third tier of headers (the protocol), apart from the consumer
 * API (libsiov.h) and the internal provider interfaces.
 */
#ifndef SIOV_VHOST_USER_H
#define SIOV_VHOST_USER_H

#include <stdint.h>

enum siov_vu_request {
	VHOST_USER_NONE = 0,
	VHOST_USER_GET_FEATURES = 1,
	VHOST_USER_SET_FEATURES = 2,
	VHOST_USER_SET_OWNER = 3,
	VHOST_USER_RESET_OWNER = 4,
	VHOST_USER_SET_MEM_TABLE = 5,
	VHOST_USER_SET_LOG_BASE = 6,
	VHOST_USER_SET_LOG_FD = 7,
	VHOST_USER_SET_VRING_NUM = 8,
	VHOST_USER_SET_VRING_ADDR = 9,
	VHOST_USER_SET_VRING_BASE = 10,
	VHOST_USER_GET_VRING_BASE = 11,
	VHOST_USER_SET_VRING_KICK = 12,
	VHOST_USER_SET_VRING_CALL = 13,
	VHOST_USER_SET_VRING_ERR = 14,
	VHOST_USER_GET_PROTOCOL_FEATURES = 15,
	VHOST_USER_SET_PROTOCOL_FEATURES = 16,
	VHOST_USER_GET_QUEUE_NUM = 17,
	VHOST_USER_SET_VRING_ENABLE = 18,
	VHOST_USER_SEND_RARP = 19,
	VHOST_USER_NET_SET_MTU = 20,
	VHOST_USER_SET_BACKEND_REQ_FD = 21,
	VHOST_USER_IOTLB_MSG = 22,
	VHOST_USER_SET_VRING_ENDIAN = 23,
	VHOST_USER_GET_CONFIG = 24,
	VHOST_USER_SET_CONFIG = 25,
	VHOST_USER_CREATE_CRYPTO_SESSION = 26,
	VHOST_USER_CLOSE_CRYPTO_SESSION = 27,
	VHOST_USER_POSTCOPY_ADVISE = 28,
	VHOST_USER_POSTCOPY_LISTEN = 29,
	VHOST_USER_POSTCOPY_END = 30,
	VHOST_USER_GET_INFLIGHT_FD = 31,
	VHOST_USER_SET_INFLIGHT_FD = 32,
	VHOST_USER_GPU_SET_SOCKET = 33,
	VHOST_USER_RESET_DEVICE = 34,
	VHOST_USER_VRING_KICK = 35,
	VHOST_USER_GET_MAX_MEM_SLOTS = 36,
	VHOST_USER_ADD_MEM_REG = 37,
	VHOST_USER_REM_MEM_REG = 38,
	VHOST_USER_SET_STATUS = 39,
	VHOST_USER_GET_STATUS = 40,
	VHOST_USER_MAX_REQUEST
};

/* Header flags. */
#define VHOST_USER_VERSION_MASK 0x3u
#define VHOST_USER_VERSION	0x1u
#define VHOST_USER_REPLY_MASK	(1u << 2)
#define VHOST_USER_NEED_REPLY	(1u << 3)

/* Virtio feature bits a vhost-user device negotiates (GET/SET_FEATURES). */
#define VIRTIO_F_NOTIFY_ON_EMPTY_BIT	   24
#define VIRTIO_RING_F_INDIRECT_DESC_BIT	   28
#define VIRTIO_RING_F_EVENT_IDX_BIT	   29
#define VHOST_USER_F_PROTOCOL_FEATURES_BIT 30
#define VIRTIO_F_VERSION_1_BIT		   32
/* Packed virtqueues (virtio 1.1): GET/SET_VRING_BASE carry the wrap counter in bit 15. */
#define VIRTIO_F_RING_PACKED_BIT 34
/* Buffers are used in the order they were made available (virtio 1.1, VIRTIO_F_IN_ORDER). */
#define VIRTIO_F_IN_ORDER_BIT 35
/* The front end is migrating: log every write to its memory (SET_LOG_BASE). */
#define VHOST_F_LOG_ALL_BIT 26
/* SET_VRING_ADDR flags: log the used ring at log_guest_addr too. */
#define VHOST_VRING_F_LOG 0

/* Protocol feature bits (GET/SET_PROTOCOL_FEATURES). */
#define VHOST_USER_PROTOCOL_F_MQ		   0
#define VHOST_USER_PROTOCOL_F_LOG_SHMFD		   1
#define VHOST_USER_PROTOCOL_F_RARP		   2
#define VHOST_USER_PROTOCOL_F_REPLY_ACK		   3
#define VHOST_USER_PROTOCOL_F_NET_MTU		   4
#define VHOST_USER_PROTOCOL_F_BACKEND_REQ	   5
#define VHOST_USER_PROTOCOL_F_CROSS_ENDIAN	   6
#define VHOST_USER_PROTOCOL_F_CRYPTO_SESSION	   7
#define VHOST_USER_PROTOCOL_F_PAGEFAULT		   8
#define VHOST_USER_PROTOCOL_F_CONFIG		   9
#define VHOST_USER_PROTOCOL_F_BACKEND_SEND_FD	   10
#define VHOST_USER_PROTOCOL_F_HOST_NOTIFIER	   11
#define VHOST_USER_PROTOCOL_F_INFLIGHT_SHMFD	   12
#define VHOST_USER_PROTOCOL_F_RESET_DEVICE	   13
#define VHOST_USER_PROTOCOL_F_INBAND_NOTIFICATIONS 14
#define VHOST_USER_PROTOCOL_F_CONFIGURE_MEM_SLOTS  15
#define VHOST_USER_PROTOCOL_F_STATUS		   16

/* At most this many fds travel with one message (SCM_RIGHTS). */
#define VHOST_USER_MAX_FDS 8
/* SET_MEM_TABLE carries at most this many regions. */
#define VHOST_USER_MEM_REGIONS_MAX 8
/* What we advertise in GET_MAX_MEM_SLOTS (ADD/REM_MEM_REG). */
#define VHOST_USER_MAX_MEM_SLOTS 32

/* SET_VRING_KICK/CALL/ERR payload: queue index in bits 0-7, no fd if bit 8. */
#define VHOST_USER_VRING_IDX_MASK 0xffu
#define VHOST_USER_VRING_NOFD	  (1u << 8)

struct siov_vu_hdr {
	uint32_t request;
	uint32_t flags;
	uint32_t size; /* payload bytes that follow */
} __attribute__((packed));

struct siov_vu_vring_state {
	uint32_t index;
	uint32_t num;
} __attribute__((packed));

struct siov_vu_vring_addr {
	uint32_t index;
	uint32_t flags; /* bit 0: VHOST_VRING_F_LOG */
	uint64_t desc_user_addr;
	uint64_t used_user_addr;
	uint64_t avail_user_addr;
	uint64_t log_guest_addr;
} __attribute__((packed));

struct siov_vu_mem_region {
	uint64_t guest_phys_addr;
	uint64_t memory_size;
	uint64_t userspace_addr;
	uint64_t mmap_offset;
} __attribute__((packed));

struct siov_vu_mem_table {
	uint32_t nregions;
	uint32_t padding;
	struct siov_vu_mem_region regions[VHOST_USER_MEM_REGIONS_MAX];
} __attribute__((packed));

/* ADD_MEM_REG / REM_MEM_REG. */
struct siov_vu_mem_reg {
	uint64_t padding;
	struct siov_vu_mem_region region;
} __attribute__((packed));

#define SIOV_VU_CONFIG_MAX 256
struct siov_vu_config {
	uint32_t offset;
	uint32_t size;
	uint32_t flags;
	uint8_t region[SIOV_VU_CONFIG_MAX];
} __attribute__((packed));
#define SIOV_VU_CONFIG_HDR 12u

/* Not packed on the wire: QEMU sends the naturally padded 24 bytes. */
struct siov_vu_inflight {
	uint64_t mmap_size;
	uint64_t mmap_offset;
	uint16_t num_queues;
	uint16_t queue_size;
	uint32_t padding;
};

struct siov_vu_log {
	uint64_t mmap_size;
	uint64_t mmap_offset;
} __attribute__((packed));

union siov_vu_payload {
	uint64_t u64;
	struct siov_vu_vring_state state;
	struct siov_vu_vring_addr addr;
	struct siov_vu_mem_table mem;
	struct siov_vu_mem_reg mem_reg;
	struct siov_vu_config config;
	struct siov_vu_inflight inflight;
	struct siov_vu_log log;
};

struct siov_vu_msg {
	struct siov_vu_hdr hdr;
	union siov_vu_payload payload;
} __attribute__((packed));

/*
 * INFLIGHT_SHMFD shared-memory layout for split rings (one region per queue,
 * back to back).  The front end keeps the fd across a back-end restart and
 * hands it back with SET_INFLIGHT_FD, so requests in flight can be resubmitted.
 */
struct siov_vu_inflight_desc {
	uint8_t inflight;
	uint8_t padding[5];
	uint16_t next;
	uint64_t counter;
} __attribute__((packed));

struct siov_vu_inflight_queue {
	uint64_t features;
	uint16_t version;
	uint16_t desc_num;
	uint16_t last_batch_head;
	uint16_t used_idx;
	struct siov_vu_inflight_desc desc[];
} __attribute__((packed));

/*
 * INFLIGHT_SHMFD records for a packed ring.  The front end keeps the region
 * opaque (QEMU only stores the fd and hands it back), so this layout is
 * siovd's own; it follows the queue's split-ring area (see siov_vu_inflight_queue)
 * in a second part of the region.  A packed ring overwrites a descriptor with
 * used entries while other requests are still in flight, so each record keeps
 * copies of its chain's descriptors (in a pool of desc_num entries: no more
 * descriptors than the ring holds are ever in flight) and the ring positions.
 */
struct siov_vu_inflight_pdesc {
	uint64_t addr;
	uint32_t len;
	uint16_t flags;
	uint16_t next; /* pool index of the chain's next copy, SIOV_VU_PDESC_END after the last */
};
#define SIOV_VU_PDESC_END 0xffffu

struct siov_vu_inflight_pbuf { /* one per buffer id */
	uint8_t inflight;
	uint8_t padding;
	uint16_t first; /* pool index of the first copy */
	uint16_t ndesc; /* copies in the pool */
	uint16_t slots; /* ring slots the chain took (what its used entry gives back) */
	uint16_t pos;	/* ring position | wrap << 15 where it was made available */
	uint16_t padding2[3];
	uint64_t counter; /* age: larger is younger */
};

#define SIOV_VU_INFLIGHT_PACKED_MAGIC 0x70616b31u /* "pak1": the positions are valid */

struct siov_vu_inflight_packed {
	uint32_t magic;
	uint16_t desc_num;
	uint16_t avail; /* next ring position to pop | wrap << 15 */
	uint16_t used;	/* next ring position for a used entry | wrap << 15 */
	uint16_t padding[3];
	/* struct siov_vu_inflight_pbuf buf[desc_num], then struct siov_vu_inflight_pdesc
	 * pool[desc_num] */
	uint8_t data[];
};
/* Natural alignment, no packing: siovd stores the positions and flags with atomics. */
_Static_assert(sizeof(struct siov_vu_inflight_pdesc) == 16 &&
		   sizeof(struct siov_vu_inflight_pbuf) == 24 &&
		   sizeof(struct siov_vu_inflight_packed) == 16,
	       "packed in-flight records keep their layout");

#endif
