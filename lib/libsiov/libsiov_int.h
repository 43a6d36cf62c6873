/*
 * libsiov's private structures, shared by its source files and nothing else:
 * the device (connection, memory table, negotiated state) and the queue (a
 * split virtqueue in shared memory plus the driver's private shadow of it).
 * The shadow matters: the back end can write anything into shared memory, so
 * the library never follows a link it reads back from the ring.
 */
#ifndef SIOV_LIBSIOV_INT_H
#define SIOV_LIBSIOV_INT_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <linux/virtio_blk.h>
#include <linux/virtio_ring.h>

#include "siov/libsiov.h"
#include "siov/vhost_user.h"

#define SIOV__REGIONS_MAX    VHOST_USER_MEM_REGIONS_MAX
#define SIOV__QUEUE_SIZE_MAX 32768u
#define SIOV__SEGS_MAX	     256u

/* One region of the memory table: the VDEV's PASID space, identity mapped. */
struct siov__region {
	uint8_t *addr;
	size_t len;
	int fd;		 /* owned by the library (a memfd or a dup) */
	uint64_t offset; /* of @addr in @fd */
	bool mapped;	 /* the library mmapped it and unmaps it on close */
};

/* A head is busy from siov_prep_*() until its completion is reaped. */
enum siov__slot_state {
	SIOV__SLOT_FREE = 0,
	SIOV__SLOT_BUSY,
};

/* Per head descriptor: what the application asked for. */
struct siov__slot {
	uint64_t cookie;
	uint32_t bytes; /* reported in res on success */
	uint16_t ndesc;
	uint16_t tail; /* last descriptor of the chain */
	uint8_t state;
	uint32_t seq; /* order of preparation: resubmission keeps it */
};

struct siov_queue {
	/* Data path, private to the owning thread. */
	struct siov_dev *dev;
	uint16_t num;
	uint16_t mask;
	struct vring_desc *desc;
	struct vring_avail *avail;
	struct vring_used *used;
	uint16_t *used_event;			     /* avail->ring[num] */
	uint16_t *avail_event;			     /* used->ring[num] */
	struct virtio_blk_outhdr *hdr;		     /* [num], by head */
	struct virtio_blk_discard_write_zeroes *seg; /* [num], by head */
	uint8_t *status;			     /* [num], by head */
	uint16_t *next;				     /* private chain links */
	struct siov__slot *slot;		     /* [num], by head */
	uint16_t free_head;
	unsigned nfree;
	uint16_t avail_idx; /* next avail entry, including prepared ones */
	uint16_t avail_pub; /* what the device has seen */
	uint16_t last_used;
	unsigned submitted; /* in the device's hands */
	unsigned prepared;  /* in the ring, not yet published */
	int err;	    /* sticky: -EPROTO (broken) or -ENOTCONN */
	unsigned idle_polls;
	uint64_t last_check_ns;
	bool event_idx;
	bool ro;
	bool armed;
	uint32_t seg_max;
	uint32_t size_max;
	uint64_t capacity;
	int kick_fd;
	int call_fd;
	unsigned index;
	uint8_t *ring_mem; /* start of this queue's part of the ring region */
	size_t ring_len;
	uint32_t seq;	 /* next siov__slot.seq */
	unsigned conn;	 /* dev->conn the ring was set up under */
	uint64_t *order; /* [num] scratch for resubmission, sorted by age */
	/*
	 * Packed ring (SIOV_DEV_F_PACKED negotiated): desc is the descriptor ring,
	 * avail and used point at the driver's and the device's event areas, and
	 * heads are buffer ids (next[]/free_head is the free list of ids).
	 */
	bool packed;
	struct vring_packed_desc *pdesc;
	struct vring_packed_desc_event *drv_event, *dev_event;
	uint16_t pk_next, pk_used; /* next slot to make available / to find a used entry at */
	bool pk_wrap, pk_used_wrap;
	uint16_t cur; /* the chain being prepared: its next slot, and that slot's lap */
	bool cur_wrap;
	uint16_t *pk_hpos, *pk_hflags; /* [num] by id: a prepared chain's head slot and flags */
	uint16_t *pk_prep;	       /* ids prepared and not yet submitted, in order */
	/*
	 * VIRTIO_F_IN_ORDER negotiated: descriptors (split) and buffer ids
	 * (packed) are taken in ring order and come back oldest first, so the
	 * free list is one contiguous stretch from free_head and io_next is the
	 * oldest request in the device's hands.  batch is the id of the used
	 * entry being consumed (the last buffer of its batch), or SIOV__NO_BATCH.
	 */
	bool in_order;
	uint16_t io_next;
	uint32_t batch;
};

#define SIOV__NO_BATCH UINT32_MAX

/*
 * dev->conn: the connection generation times two, plus SIOV__CONN_DOWN while
 * the back end is gone and a reconnect is pending.  A queue whose conn
 * differs from its device's must set its ring up again before it is used.
 */
#define SIOV__CONN_DOWN 1u

struct siov_dev {
	int sock; /* -1 while reconnecting; atomic loads off the control thread */
	unsigned timeout_ms;
	unsigned poll_us;
	uint32_t flags;
	uint64_t features;
	uint64_t protocol_features;
	struct siov_dev_info info;
	struct siov__region region[SIOV__REGIONS_MAX];
	unsigned nregions;
	bool started;
	atomic_int dead; /* 0, or -ENOTCONN once the socket hung up */
	struct siov_queue *queue;
	unsigned nqueues;
	unsigned cfg_queues; /* num_queues of the config space (VIRTIO_BLK_F_MQ), 0 if none */
	int log_fd;	     /* SIOV_DEV_F_DIRTY_LOG: the log's memfd, else -1 */
	/* Reconnect (siov_dev_opts.reconnect_ms); the fields below @lock are its. */
	char *path;
	unsigned want_queues; /* siov_dev_opts.num_queues */
	unsigned reconnect_ms;
	atomic_uint conn;
	pthread_mutex_t lock; /* one thread talks to the socket at a time */
	uint64_t deadline_ns; /* give up reconnecting at this time */
	uint64_t next_try_ns; /* throttles connect attempts */
	unsigned reconnects;  /* successful ones */
};

/* Internal functions: hidden, so the version script's siov_* cannot leak them. */
#pragma GCC visibility push(hidden)

/* vhost-user messaging (conn.c). */
int siov__vu_send(struct siov_dev *dev, uint32_t request, uint32_t flags, const void *payload,
		  uint32_t size, const int *fds, unsigned nfds);
int siov__vu_recv(struct siov_dev *dev, struct siov_vu_msg *msg, int *fds, unsigned *nfds,
		  int timeout_ms);
int siov__vu_call(struct siov_dev *dev, uint32_t request, const void *payload, uint32_t size,
		  const int *fds, unsigned nfds, struct siov_vu_msg *reply);
int siov__vu_get_u64(struct siov_dev *dev, uint32_t request, uint64_t *val);
int siov__vu_set_u64(struct siov_dev *dev, uint32_t request, uint64_t val);
int siov__connect(const char *path, unsigned timeout_ms, int *sock);
int siov__sock_check(struct siov_dev *dev);
int siov__mark_dead(struct siov_dev *dev);
uint64_t siov__now_ns(void);

/* Device set-up steps reconnect repeats (dev.c). */
int siov__negotiate(struct siov_dev *dev, unsigned num_queues);
int siov__send_mem_table(struct siov_dev *dev);
int siov__start_queue(struct siov_dev *dev, struct siov_queue *q);

/* Reconnect (reconnect.c). */
int siov__dev_reconnect(struct siov_dev *dev);
int siov__queue_recover(struct siov_queue *q);

/* Queues (queue.c). */
size_t siov__queue_ring_bytes(unsigned num);
int siov__queue_init(struct siov_queue *q, struct siov_dev *dev, unsigned index, uint8_t *mem);
void siov__queue_fini(struct siov_queue *q);
void siov__queue_rebuild(struct siov_queue *q);

#pragma GCC visibility pop

#endif
