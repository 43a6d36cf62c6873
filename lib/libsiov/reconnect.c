/*
 * Reconnect (siov_dev_opts.reconnect_ms): when the back end goes away, the
 * device goes down and the calls that already talk to it (siov_reap(),
 * siov_wait(), siov_dev_alive()) bring it back, in two steps.
 *
 * 1. The device, by whichever thread gets the lock: connect to the same path,
 *    negotiate again (the device must come back the same), share the same
 *    memory again.  The generation in dev->conn then moves on.
 * 2. Each queue, by the one thread that owns it: once the old back end's
 *    completions are reaped, a fresh ring in the same memory with every
 *    request not yet completed, then SET_VRING_* as at start, then a kick.
 *
 * The library owns the descriptors and knows which requests are out, so no
 * state of the old ring or the old back end is trusted or needed (no
 * INFLIGHT_SHMFD): each request completes exactly once, from the old back end
 * if it finished it before dying, else from the new one.
 */
#include <errno.h>
#include <unistd.h>

#include "libsiov_int.h"

/* Between connect attempts: a restarting back end needs some ms anyway. */
#define RETRY_NS 10000000ull

/* Renegotiates on the new connection; the device must be the one we had. */
static int renegotiate(struct siov_dev *dev)
{
	struct siov_dev_info old = dev->info;
	uint64_t features = dev->features, pf = dev->protocol_features;
	unsigned nq = dev->nqueues;
	int rc = siov__negotiate(dev, nq);

	if (!rc && (dev->features != features || dev->protocol_features != pf ||
		    dev->info.capacity != old.capacity || dev->info.read_only != old.read_only ||
		    dev->info.seg_max < old.seg_max || dev->nqueues != nq))
		rc = -ENODEV;
	/* Queues and callers keep what they were told at open. */
	dev->info = old;
	dev->features = features;
	dev->nqueues = nq;
	if (rc)
		dev->protocol_features = pf;
	return rc;
}

/* One attempt, under dev->lock: a new socket, negotiation, the memory table. */
static int attempt(struct siov_dev *dev)
{
	int fd, rc;

	if (dev->sock >= 0) {
		close(dev->sock);
		__atomic_store_n(&dev->sock, -1, __ATOMIC_RELAXED);
	}
	rc = siov__connect(dev->path, dev->timeout_ms, &fd);
	if (rc)
		return rc;
	__atomic_store_n(&dev->sock, fd, __ATOMIC_RELAXED);
	rc = renegotiate(dev);
	if (!rc)
		rc = siov__send_mem_table(dev);
	return rc;
}

/* A device that came back different, or no back end in time: final. */
static int give_up(struct siov_dev *dev)
{
	atomic_store_explicit(&dev->dead, -ENOTCONN, memory_order_relaxed);
	return -ENOTCONN;
}

static bool permanent(int rc)
{
	return rc == -ENODEV || rc == -EOPNOTSUPP || rc == -EINVAL;
}

static int reconnect_locked(struct siov_dev *dev)
{
	unsigned conn = atomic_load(&dev->conn);
	uint64_t now = siov__now_ns();
	int rc = atomic_load_explicit(&dev->dead, memory_order_relaxed);

	if (rc || !(conn & SIOV__CONN_DOWN) || now < dev->next_try_ns)
		return rc;
	if (now >= dev->deadline_ns)
		return give_up(dev);
	dev->next_try_ns = now + RETRY_NS;
	rc = attempt(dev);
	if (rc)
		return permanent(rc) ? give_up(dev) : 0;
	__atomic_store_n(&dev->reconnects, dev->reconnects + 1, __ATOMIC_RELAXED);
	atomic_store(&dev->conn, (conn & ~SIOV__CONN_DOWN) + 2);
	return 0;
}

/*
 * Step 1, from any thread.  Returns 0 (connected, or still trying: a thread
 * holding the lock is doing just that) or -ENOTCONN once given up.
 */
int siov__dev_reconnect(struct siov_dev *dev)
{
	int rc;

	if (pthread_mutex_trylock(&dev->lock))
		return atomic_load_explicit(&dev->dead, memory_order_relaxed);
	rc = reconnect_locked(dev);
	pthread_mutex_unlock(&dev->lock);
	return rc;
}

/* SET_VRING_* for @q under the lock, if the connection is still @conn. */
static int setup_ring(struct siov_queue *q, unsigned conn)
{
	struct siov_dev *dev = q->dev;
	int rc = -ENOTCONN;

	pthread_mutex_lock(&dev->lock);
	if (atomic_load(&dev->conn) == conn) {
		rc = siov__start_queue(dev, q);
		/* A live back end that refuses the ring: start over from connect. */
		if (rc && !(atomic_load(&dev->conn) & SIOV__CONN_DOWN))
			siov__mark_dead(dev);
	}
	pthread_mutex_unlock(&dev->lock);
	return rc;
}

/*
 * Step 2, on the queue's own thread, with the old used ring fully reaped.
 * Returns 0 (done, or to be retried on a later call) or -ENOTCONN.
 */
int siov__queue_recover(struct siov_queue *q)
{
	struct siov_dev *dev = q->dev;
	unsigned conn = atomic_load(&dev->conn);
	uint64_t one = 1;
	int rc;

	if (conn & SIOV__CONN_DOWN) {
		rc = siov__dev_reconnect(dev);
		if (rc)
			return rc;
		conn = atomic_load(&dev->conn);
		if ((conn & SIOV__CONN_DOWN) || conn == q->conn)
			return 0;
	}
	siov__queue_rebuild(q);
	/* Old kicks are void: the new back end hears of the ring from our kick below. */
	(void)!read(q->kick_fd, &one, sizeof(one));
	one = 1;
	if (setup_ring(q, conn))
		return atomic_load_explicit(&dev->dead, memory_order_relaxed);
	q->conn = conn;
	/* The new back end learns of the resubmitted requests from a kick. */
	if (q->submitted && write(q->kick_fd, &one, sizeof(one)) < 0 && errno != EAGAIN)
		return -errno;
	return 0;
}
