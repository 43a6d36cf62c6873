/*
 * libsiov: the consumer API of siov (the seeds' cAPI).  A process attaches to a
 * virtio-blk VDEV through its vhost-user socket, with no VM in between: the
 * library is a vhost-user front end that shares memory (memfd regions) with the
 * back end, sets up split virtqueues in it and drives them from user space.
 * It works with any vhost-user-blk back end (siovd, qemu-storage-daemon, SPDK).
 *
 * The data path is in the spirit of liburing: prepare requests on a queue,
 * submit them as a batch (at most one kick, none while the device says it is
 * polling), reap completions by polling the used ring or by waiting on an
 * eventfd.  Data moves straight between the back end and buffers the
 * application got from siov_mem_alloc() or registered with
 * siov_mem_register(): there is no bounce copy.
 *
 * Conventions, for every function below:
 * - Errors are returned as -errno; nothing sets errno for the caller.
 * - A request that siov_prep_*() refused never completes.  A request that
 *   siov_submit() accepted completes exactly once, through siov_reap() or
 *   siov_wait(), even if the back end goes away (then with -ENOTCONN, or,
 *   with siov_dev_opts.reconnect_ms, normally once a back end is back).
 * - Life cycle: siov_dev_open() -> siov_mem_alloc()/siov_mem_register() ->
 *   siov_dev_start() -> siov_dev_queue() and I/O -> siov_dev_close().
 * - Threads: a struct siov_dev is used by one thread at a time for the
 *   control calls (open, memory, start, close).  Each struct siov_queue is
 *   used by one thread at a time; different queues of one device may run on
 *   different threads at once with no lock between them.  siov_dev_alive()
 *   and siov_dev_fd() may be called from any thread after siov_dev_start().
 */
#ifndef SIOV_LIBSIOV_H
#define SIOV_LIBSIOV_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/uio.h>

#ifdef __cplusplus
extern "C" {
#endif

/* An open VDEV: one vhost-user connection, its memory table and its queues. */
struct siov_dev;
/* One virtqueue of a started VDEV: the unit a thread owns. */
struct siov_queue;

/* Flags of struct siov_dev_opts. */
#define SIOV_DEV_F_NO_EVENT_IDX (1u << 0) /* do not negotiate VIRTIO_RING_F_EVENT_IDX */
#define SIOV_DEV_F_READ_ONLY	(1u << 1) /* refuse writes even if the device accepts them */
/*
 * Act as a migrating front end: hand the back end a dirty log (LOG_SHMFD) and
 * keep VHOST_F_LOG_ALL on from siov_dev_start(), so a benchmark can measure
 * what logging costs the back end.  The log is not renewed after a reconnect.
 */
#define SIOV_DEV_F_DIRTY_LOG (1u << 2)
/*
 * Drive packed virtqueues (VIRTIO_F_RING_PACKED) if the device offers them,
 * else split ones: siov_dev_info().features says which (bit 34).  Not with
 * reconnect_ms (siov_dev_open() says -EINVAL): a packed ring is rebuilt from
 * copies of its chains, which the library does not keep.
 */
#define SIOV_DEV_F_PACKED (1u << 3)
/*
 * Ask for VIRTIO_F_IN_ORDER (bit 35 of siov_dev_info().features when the
 * device agreed): the device uses requests in the order they were submitted
 * and may report a run of them with one used entry, and the library hands
 * out descriptors in ring order and takes them back without walking a free
 * list.  Completions then come out of siov_reap() in submission order, on
 * split and packed rings alike.  A device that does not offer it is driven as
 * without the flag.
 */
#define SIOV_DEV_F_IN_ORDER (1u << 4)

/*
 * Options of siov_dev_open().  Call siov_dev_opts_init() first and change
 * fields after: the size field lets the library grow the struct without
 * breaking callers built against an older header.
 */
struct siov_dev_opts {
	size_t size; /* sizeof(struct siov_dev_opts), set by init */
	unsigned
	    num_queues; /* queues to set up; 0 = the device's num_queues (else all it offers) */
	unsigned queue_size; /* descriptors per queue, power of two, <= 32768 */
	unsigned timeout_ms; /* connect and per-message reply timeout */
	unsigned poll_us;    /* siov_wait(): poll this long before sleeping */
	uint32_t flags;	     /* SIOV_DEV_F_* */
	/*
	 * 0 (default): a back end that goes away is final (-ENOTCONN).  Else
	 * the library reconnects to the same socket path by itself for up to
	 * this many ms after it noticed the loss: it negotiates again, shares
	 * the same memory again, sets every queue up from scratch (fresh rings
	 * in the same memory) and resubmits each request that had not
	 * completed, in the order they were prepared.  The application sees
	 * every request complete once, and no -ENOTCONN unless the time runs
	 * out or the device comes back different (features, capacity, queues).
	 * Resubmission repeats reads and writes the old back end may have done
	 * already: fine for block I/O, which is idempotent.  The reconnect runs
	 * inside the calls that already talk to the device (siov_reap(),
	 * siov_wait(), siov_dev_alive()), a connect attempt per 10 ms at most.
	 */
	unsigned reconnect_ms;
};

/* Fills @opts with defaults: all queues, 256 descriptors, 5 s, 20 us poll, no reconnect. */
void siov_dev_opts_init(struct siov_dev_opts *opts);

/*
 * Connects to the vhost-user socket @path and negotiates: features
 * (VERSION_1, EVENT_IDX, PROTOCOL_FEATURES and the virtio-blk features the
 * library understands), protocol features (MQ, REPLY_ACK, CONFIG), SET_OWNER,
 * the queue count and the device configuration.  No memory is shared yet.
 * @opts may be NULL for defaults.  On success *@out owns the connection.
 * Errors: -ENOENT/-ECONNREFUSED (no listener), -ETIMEDOUT, -EPROTO (a bad
 * reply), -EOPNOTSUPP (a device without VERSION_1 or config space), -ENOMEM.
 */
int siov_dev_open(const char *path, const struct siov_dev_opts *opts, struct siov_dev **out);

/*
 * Closes the connection, unmaps the memory the library allocated and frees
 * @dev and its queues.  Buffers from siov_mem_alloc() are invalid after it;
 * regions given to siov_mem_register() stay the caller's.  Requests still in
 * flight are abandoned.  No queue of @dev may be in use by another thread.
 * Accepts NULL and a device whose open or start failed half way.
 */
void siov_dev_close(struct siov_dev *dev);

/* What the device offered and what was negotiated. */
struct siov_dev_info {
	uint64_t capacity;     /* bytes */
	uint32_t blk_size;     /* logical block size, 512 if not offered */
	uint32_t seg_max;      /* data segments per request (iovcnt) */
	uint32_t size_max;     /* bytes per segment, 0 = no limit */
	unsigned num_queues;   /* queues set up (or to be set up) */
	unsigned max_queues;   /* queues the device offers */
	unsigned queue_size;   /* descriptors per queue */
	unsigned max_inflight; /* requests one queue holds at once */
	bool read_only;
	bool flush;	   /* VIRTIO_BLK_F_FLUSH */
	bool discard;	   /* VIRTIO_BLK_F_DISCARD */
	bool write_zeroes; /* VIRTIO_BLK_F_WRITE_ZEROES */
	bool event_idx;	   /* VIRTIO_RING_F_EVENT_IDX negotiated */
	uint32_t max_discard_sectors;
	uint32_t max_write_zeroes_sectors;
	uint64_t features;	    /* negotiated virtio features */
	uint64_t protocol_features; /* negotiated vhost-user protocol features */
};

/* Copies the device's description into @info.  Never fails on an open device. */
int siov_dev_info(const struct siov_dev *dev, struct siov_dev_info *info);

/*
 * Allocates @len bytes (rounded up to a page) of memory shared with the back
 * end (a memfd) and stores its address in *@addr.  Only such memory, or memory
 * given to siov_mem_register(), may be used as I/O buffers.  Must be called
 * before siov_dev_start(); the memory lives until siov_dev_close().
 * Errors: -EBUSY (already started), -ENOSPC (no memory slot left: a device
 * takes 8 regions, one of which holds the rings), -ENOMEM, -EINVAL.
 */
int siov_mem_alloc(struct siov_dev *dev, size_t len, void **addr);

/*
 * Registers memory the application mapped itself: @len bytes at @addr, a
 * MAP_SHARED mapping of @fd starting at @offset (a memfd, a file on tmpfs or
 * hugetlbfs).  The library dups @fd for the back end and keeps the dup until
 * siov_dev_close(); the mapping stays the caller's and must outlive @dev.
 * Must be called before siov_dev_start().  Errors: as siov_mem_alloc(), and
 * -EINVAL for an unaligned or overlapping region.
 */
int siov_mem_register(struct siov_dev *dev, void *addr, size_t len, int fd, uint64_t offset);

/*
 * Shares the memory table with the back end (SET_MEM_TABLE) and sets up and
 * enables every queue (SET_VRING_NUM/BASE/ADDR/KICK/CALL/ENABLE).  After it
 * the memory table is fixed and the queues are ready.
 */
int siov_dev_start(struct siov_dev *dev);

/* Queue @index (0-based) of a started device, or NULL if out of range. */
struct siov_queue *siov_dev_queue(struct siov_dev *dev, unsigned index);

/*
 * 0 while the back end is connected, -ENOTCONN once it went away (the socket
 * hung up).  Costs one poll() with a zero timeout; any thread may call it.
 * Once it reports -ENOTCONN every queue fails its in-flight requests with
 * -ENOTCONN and refuses new ones: the state is sticky.  With reconnect_ms it
 * stays 0 while a reconnect is pending (and drives it), and turns -ENOTCONN
 * only when reconnect_ms passed without one.
 */
int siov_dev_alive(struct siov_dev *dev);

/* How many times the device reconnected (reconnect_ms); any thread. */
unsigned siov_dev_reconnects(const struct siov_dev *dev);

/*
 * The vhost-user socket, for an application that runs its own event loop:
 * POLLRDHUP/POLLHUP on it means the back end went away (then call
 * siov_dev_alive()).  Do not read from or write to it.  With reconnect_ms
 * it is -1 while reconnecting and a new fd after each reconnect.
 */
int siov_dev_fd(const struct siov_dev *dev);

/* --- Data path: one thread per queue at a time. --- */

/* A completion. */
struct siov_cqe {
	uint64_t cookie; /* as given to siov_prep_*() */
	int32_t res;	 /* bytes moved for reads and writes, 0 for others, or -errno */
	uint32_t flags;	 /* reserved, 0 */
};

/*
 * Prepare one request on @q.  Nothing is visible to the back end until
 * siov_submit().  @offset and the lengths are in bytes and must be multiples
 * of 512; buffers must lie wholly in registered memory.  Errors, reported
 * before anything reaches the ring:
 *   -EFAULT     a buffer outside the memory of siov_mem_alloc/register
 *   -ERANGE     the request ends past the device's capacity
 *   -EINVAL     zero or unaligned length or offset, too many segments
 *   -EROFS      a write, discard or write-zeroes on a read-only device
 *   -EOPNOTSUPP flush, discard or write-zeroes the device does not offer
 *   -EAGAIN     the queue is full: reap completions first
 *   -ENOTCONN   the back end went away
 * On success the request is owned by the library until it completes; the
 * buffer must stay untouched (writes) or unread (reads) until then.
 */
int siov_prep_read(struct siov_queue *q, void *buf, uint32_t len, uint64_t offset, uint64_t cookie);
int siov_prep_write(struct siov_queue *q, const void *buf, uint32_t len, uint64_t offset,
		    uint64_t cookie);
int siov_prep_readv(struct siov_queue *q, const struct iovec *iov, unsigned iovcnt, uint64_t offset,
		    uint64_t cookie);
int siov_prep_writev(struct siov_queue *q, const struct iovec *iov, unsigned iovcnt,
		     uint64_t offset, uint64_t cookie);
int siov_prep_flush(struct siov_queue *q, uint64_t cookie);
int siov_prep_discard(struct siov_queue *q, uint64_t offset, uint64_t len, uint64_t cookie);
/* @unmap: allow the device to deallocate the range (VIRTIO_BLK_WRITE_ZEROES_FLAG_UNMAP). */
int siov_prep_write_zeroes(struct siov_queue *q, uint64_t offset, uint64_t len, bool unmap,
			   uint64_t cookie);

/*
 * Makes every prepared request visible to the back end and kicks it if it
 * asked to be kicked (at most one eventfd write per call, none while the
 * device polls).  Returns the number of requests submitted (0 if none were
 * prepared) or -ENOTCONN, in which case the prepared requests complete with
 * -ENOTCONN.
 */
int siov_submit(struct siov_queue *q);

/*
 * Copies up to @max completions into @cqes without blocking and without a
 * system call (except a rare liveness check of the socket while requests are
 * outstanding and none completes).  Returns the number copied, or
 * -ENOTCONN when the back end went away and nothing is left to report, or
 * -EPROTO when the back end wrote a used ring entry that names no request of
 * ours (the queue is then broken: in-flight requests complete with -EPROTO).
 */
int siov_reap(struct siov_queue *q, struct siov_cqe *cqes, unsigned max);

/*
 * Like siov_reap(), but waits until at least @min completions (1 if 0) are
 * available or @timeout_ms passes (-1: no limit; it still returns when the
 * back end goes away).  Polls for the device's poll_us first, then enables
 * used-ring notifications and sleeps on the queue's eventfd and the socket.
 * Returns the number copied (possibly fewer than @min on timeout), or -errno
 * as siov_reap(), or -EINTR.
 */
int siov_wait(struct siov_queue *q, struct siov_cqe *cqes, unsigned max, unsigned min,
	      int timeout_ms);

/*
 * The queue's call eventfd, for applications with their own event loop.
 * Call siov_queue_arm() before sleeping on it: it returns 1 if completions
 * are already there (do not sleep), 0 if armed.  Read the eventfd (8 bytes)
 * after it fires, then siov_reap().
 */
int siov_queue_fd(const struct siov_queue *q);
int siov_queue_arm(struct siov_queue *q);

/* Requests submitted and not yet reaped. */
unsigned siov_queue_inflight(const struct siov_queue *q);
/* Requests that can still be prepared before -EAGAIN (single-segment ones). */
unsigned siov_queue_space(const struct siov_queue *q);
/* The index of @q in its device. */
unsigned siov_queue_index(const struct siov_queue *q);

#ifdef __cplusplus
}
#endif

#endif
