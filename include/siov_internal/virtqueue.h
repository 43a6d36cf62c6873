/*
 * Virtqueues: siov's ADIs, split or packed (VIRTIO_F_RING_PACKED).  A queue
 * lives in front-end memory; siovd only reads what the driver made available
 * (hostile input, validated here) and writes used entries.  The ring format is
 * this layer's business alone: device models and runners see the same calls
 * (pop, complete, notify) whatever the front end negotiated.
 *
 * Ownership: the control thread configures a queue while it is stopped; once
 * started it belongs to exactly one runner thread (an engine, engine.h) until
 * it is stopped again through the runner's handshake.  The runner keeps its
 * scheduling state in a struct of its own (struct siov_vq_runner.sched); this
 * layer and the device models never see it.  Stats are written by the runner's
 * thread with relaxed atomics and may be read from any thread.
 */
#ifndef SIOV_INTERNAL_VIRTQUEUE_H
#define SIOV_INTERNAL_VIRTQUEUE_H

#include <linux/virtio_ring.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/uio.h>

#include "siov/vhost_user.h"
#include "siov_internal/log.h"
#include "siov_internal/dirty_log.h"
#include "siov_internal/memtable.h"
#include "siov_internal/util.h"

struct siov_vq;
struct siov_qos;

/* Most iovecs one chain may produce; more breaks the queue. */
#define SIOV_VQ_MAX_IOV 256
/* Largest queue we accept (split and packed rings allow 32768). */
#define SIOV_VQ_MAX_SIZE 1024

struct siov_vq_ops;    /* the device model's data path: device.h */
struct siov_vq_packed; /* packed rings: per-buffer-id state (virtqueue_packed.c) */
struct siov_vq_order;  /* VIRTIO_F_IN_ORDER: buffers in flight in pop order (virtqueue_inorder.c) */

/*
 * Completed requests by latency: bucket k counts those under 1024 << k ns
 * (about 1 us, 2 us, 4 us ... 1 s); the last holds the slower ones.
 */
#define SIOV_LAT_BUCKETS 22

static inline unsigned siov_lat_bucket(uint64_t ns)
{
	uint64_t b = ns >> 10;
	unsigned k = b ? 64u - (unsigned)__builtin_clzll(b) : 0;

	return k < SIOV_LAT_BUCKETS - 1 ? k : SIOV_LAT_BUCKETS - 1;
}

enum { SIOV_VQ_POP_NONE, SIOV_VQ_POP_RING, SIOV_VQ_POP_RESUBMIT };

struct siov_vq_stats {
	uint64_t requests, reads, writes, flushes, discards, write_zeroes, get_ids;
	uint64_t bytes_read, bytes_written, errors, latency_ns_total, kicks;
	uint64_t inflight;
	/*
	 * What a driver's pattern costs in shared-memory traffic: split-ring
	 * avail->idx loads and used index publications, and call
	 * eventfd writes.  Per request they say how well the queue batches.
	 */
	uint64_t avail_reads, used_writes, calls;
	uint64_t lat_hist[SIOV_LAT_BUCKETS];
	/* IN_ORDER: completions held for an older buffer, used entries written, buffers used. */
	uint64_t order_held, order_entries, order_used;
};

struct siov_vq_chain {
	uint16_t head;	  /* split: head descriptor index; packed: buffer id */
	unsigned out_num; /* device-readable iovecs, first */
	unsigned in_num;  /* device-writable iovecs, after them */
	uint64_t out_len, in_len;
	struct iovec iov[SIOV_VQ_MAX_IOV];
};

/*
 * Queues whose used ring advanced since the runner last looked.  This is the
 * one way a completion reaches whoever runs the queue: siov_vq_complete() puts
 * the queue here (once), the runner takes it off with siov_vq_used_list_pop()
 * and calls siov_vq_notify().  Only the runner's thread touches a list.
 */
struct siov_vq_used_list {
	struct siov_vq *head;
};

/*
 * What a runner (an engine) lends a queue while it runs it.  Set with
 * siov_vq_bind() before the runner first touches the queue and cleared with
 * siov_vq_unbind() after it last did; this layer never interprets sched.
 */
struct siov_vq_runner {
	const uint64_t *clock; /* the runner's time of this round (ns); NULL: read the clock */
	struct siov_vq_used_list *used; /* where completions report; NULL: nobody to tell */
	void *sched;			/* the runner's own per-queue state */
};

struct siov_vq {
	/* --- slow path: set by the control thread while the queue is stopped --- */
	unsigned index;
	struct siov_ratelimit log_rl; /* "broken" messages, which a front end causes */
	uint16_t num;
	uint64_t desc_uva, avail_uva, used_uva;
	bool addr_set;
	/*
	 * Packed (VIRTIO_F_RING_PACKED): desc_uva is the descriptor ring, avail_uva
	 * the driver's event suppression area, used_uva the device's.
	 */
	bool packed;
	/*
	 * VIRTIO_F_IN_ORDER: buffers are used in the order they were popped; a
	 * completion that comes back early waits in ord for the older ones, and a
	 * run of them is published with one used entry per batch (the spec lets
	 * the buffers before a batch's last go unwritten when fully used).
	 */
	bool in_order;
	struct siov_vq_order *ord; /* allocated by siov_vq_map_rings() when in_order */
	struct vring_desc *desc;
	struct vring_avail *avail;
	struct vring_used *used;
	struct vring_packed_desc *pdesc;
	const struct vring_packed_desc_event *driver_event;
	struct vring_packed_desc_event *device_event;
	/* Split: free-running indices.  Packed: ring positions (< num) with wrap counters. */
	uint16_t last_avail_idx;
	uint16_t used_idx;
	bool avail_wrap, used_wrap;
	bool event_idx;
	bool enabled;
	int kick_fd, call_fd, err_fd;
	const struct siov_memtable *mem;
	const struct siov_vq_ops *ops;
	void *dev;	 /* the device model's per-VDEV state */
	void *dev_queue; /* the device model's per-queue state */
	int *dev_broken; /* shared by a VDEV's queues: one fault stops them all */
	struct siov_vu_inflight_queue *inflight; /* INFLIGHT_SHMFD records (split), or NULL */
	struct siov_vu_inflight_packed *inflight_packed; /* the same for a packed ring, or NULL */
	struct siov_vq_packed *pk; /* packed rings: allocated by siov_vq_map_rings() */
	uint16_t *resubmit;	   /* heads a previous back end left in flight, oldest first */
	unsigned resubmit_num, resubmit_pos;
	const char *dev_name;
	struct siov_qos *qos; /* may be NULL: no limits, default weight */
	/* Live migration: the dirty log while the front end logs (VHOST_F_LOG_ALL), else NULL. */
	struct siov_dirty_log *log;
	bool log_used;	       /* VHOST_VRING_F_LOG: log the used ring too */
	uint64_t log_used_gpa; /* guest-physical address of the used ring (packed: device area) */
	uint64_t log_desc_gpa; /* packed: of the descriptor ring, where used entries go */
	int log_fd;	       /* SET_LOG_FD eventfd (not owned), signalled with the call, or -1 */
	struct siov_vq_runner run; /* siov_vq_bind() */

	/* --- ring state: written only by the thread that runs the queue --- */
	bool notify_enabled;
	uint8_t last_pop;      /* where the last chain popped came from, for siov_vq_unpop() */
	bool used_dirty;       /* used ring advanced since the last notify */
	bool used_unpublished; /* split: used elements written past used->idx (siov_vq_notify) */
	bool on_used_list;     /* on run.used */
	struct siov_vq *next_used;
	uint16_t signalled_used;
	bool signalled_used_valid;
	/*
	 * Split: entries the driver had published past last_avail_idx when we last
	 * read avail->idx.  That index is the line the driver writes per request:
	 * reading it once per batch, not per pop, keeps it from bouncing between
	 * the two cores.  Zeroed by siov_vq_map_rings().
	 */
	uint16_t avail_cached;
	uint64_t inflight_counter;
	/* The device model has work of its own (held requests to look at): run me. */
	bool dev_wants_run;

	struct siov_vq_stats stats;
	int broken; /* read with relaxed atomics */
	char broken_reason[160];
};

void siov_vq_init(struct siov_vq *vq, unsigned index);
/* Frees what siov_vq_map_rings() allocated (id and order tables); init()'s state after. */
void siov_vq_release(struct siov_vq *vq);
/*
 * Translates the ring addresses through mem; -EFAULT if they are not all
 * mapped, -EINVAL if misaligned or the size does not suit the format, -ENOMEM.
 * A packed ring starts at last_avail_idx/avail_wrap (SET_VRING_BASE), with
 * used = avail: the front end hands over a drained ring.  With in_order the
 * order table starts empty: what was in flight comes back as resubmissions.
 */
int siov_vq_map_rings(struct siov_vq *vq);
/* A packed ring's base as vhost-user carries it: position in bits 0-14, wrap counter in bit 15. */
static inline uint16_t siov_vq_packed_base(uint16_t pos, bool wrap)
{
	return (uint16_t)(pos | (wrap ? 0x8000u : 0));
}

/*
 * Split rings, INFLIGHT_SHMFD: the previous back end died between publishing
 * a used index and clearing the records it covered (the records' used_idx
 * differs from the ring's); clears those records.
 */
void siov_vq_inflight_catch_up(struct siov_vq *vq);
/* Orders vq->resubmit by the age of the in-flight records. */
void siov_vq_sort_resubmit(struct siov_vq *vq);
/*
 * Packed rings, INFLIGHT_SHMFD: takes over the queue's records (vq->inflight_packed,
 * mapped for vq->num descriptors).  Fresh records (a new region) start at the
 * queue's base; records a previous back end left are trusted over the base:
 * the ring positions resume where they say, and the buffers still in flight
 * are resubmitted first, oldest first.  Returns how many; <0: -ENOMEM.
 */
int siov_vq_packed_recover(struct siov_vq *vq);
/* 1: a chain was popped (requests to resubmit come first) into *chain; 0: the ring is empty; <0:
 * the queue broke. */
int siov_vq_pop(struct siov_vq *vq, struct siov_vq_chain *chain);
/*
 * Gives back the chain the last siov_vq_pop() returned, which was not started
 * (a device model that held it for QoS, leaving its runner): the next pop
 * returns it again.  Only right after that pop; a no-op otherwise.
 */
void siov_vq_unpop(struct siov_vq *vq);
/* Prefetches the descriptors of the next n avail entries (a hint, never faults). */
void siov_vq_prefetch(const struct siov_vq *vq, unsigned n);
/*
 * Completes a chain: the one path by which a request's completion reaches
 * front-end memory.  The device model has written its data and status byte
 * into written[0..n) (device-writable buffers of the chain; a superset is
 * safe), len is the used length the driver sees.  Publishes the used element
 * and then the used index (release), clears the in-flight record, and puts
 * the queue on its runner's used list.  Rings bound to a runner write the
 * used entry now and make it visible in siov_vq_notify() (or
 * siov_vq_unbind()), so that a round's completions reach the driver together
 * (split rings with in-flight records publish at once: a record is cleared
 * only once the index covers it); a runner must notify every queue on its
 * used list each round.
 *
 * Dirty log: while vq->log is set (live migration, LOG_SHMFD) every page of
 * written[] and of the used element is marked before the used index is
 * published, and the index's page right after it is stored (a mark made before
 * the store could be consumed by the front end's sync before the write lands).
 * A write the log cannot record breaks the queue instead.  Nothing else in
 * siovd writes front-end memory on completion, so every device model (blk,
 * net) is logged by construction.
 */
void siov_vq_complete(struct siov_vq *vq, uint16_t head, const struct iovec *written, unsigned n,
		      uint32_t len);
/* One used element of siov_vq_complete_many(). */
struct siov_vq_used_elem {
	uint16_t head;
	uint32_t len;
};
/*
 * siov_vq_complete for several chains published by one used-index update (the
 * same path; siov_vq_complete is this with one element): a packet spread over
 * several receive buffers (MRG_RXBUF) must reach the driver whole.
 */
void siov_vq_complete_many(struct siov_vq *vq, const struct siov_vq_used_elem *elems,
			   unsigned nelems, const struct iovec *written, unsigned n);
/* Gives the last n chains popped from the ring back (nothing written to them, no INFLIGHT). */
void siov_vq_give_back(struct siov_vq *vq, unsigned n);
/* True if the dirty log (if any) covers the memory table and the used ring (checked at start). */
bool siov_vq_log_ok(const struct siov_vq *vq);
/* Lends the queue to a runner (control thread, queue stopped). */
void siov_vq_bind(struct siov_vq *vq, const struct siov_vq_runner *r);
void siov_vq_unbind(struct siov_vq *vq);
/* The next queue on l, taken off it; NULL if l is empty. */
struct siov_vq *siov_vq_used_list_pop(struct siov_vq_used_list *l);
/* Signals the call fd if the driver wants to hear about the new used entries. */
void siov_vq_notify(struct siov_vq *vq);
/* True if the avail ring has entries we have not consumed, or chains wait to be resubmitted. */
bool siov_vq_has_work(struct siov_vq *vq);
/* Ask the driver for kicks again; returns true if work arrived meanwhile. */
bool siov_vq_enable_notify(struct siov_vq *vq);
/* Tell the driver not to kick: we are polling. */
void siov_vq_disable_notify(struct siov_vq *vq);

/* Marks the queue (and its VDEV) broken: a violation by the driver.  Logs once. */
void siov_vq_break(struct siov_vq *vq, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
bool siov_vq_is_broken(const struct siov_vq *vq);

/* Relaxed-atomic stat helpers: the engine adds, anyone reads. */
#define SIOV_STAT_ADD(field, v) __atomic_store_n(&(field), (field) + (v), __ATOMIC_RELAXED)
#define SIOV_STAT_GET(field)	__atomic_load_n(&(field), __ATOMIC_RELAXED)

/* The time of the runner's round (ns), or the clock if no runner lends one.  Inline: per request.
 */
static inline uint64_t siov_vq_now(const struct siov_vq *vq)
{
	return vq->run.clock ? *vq->run.clock : siov_now_ns();
}

#endif
