/*
 * The mirror backend (see siov_internal/mirror.h for what it promises).
 *
 * Member slots.  Members live in fixed slots; three masks say which slots
 * are present, in sync (may serve reads) and writable (in sync or
 * resyncing).  An engine that uses slot i first raises active[i], then checks
 * the slot is still present; removal clears the bits, then waits for active[i]
 * to drop to zero before it frees the slot.  So the data path takes no lock.
 *
 * The bitmap.  Per chunk the engines keep a write generation (gen) and a count
 * of writes in flight (inflight); a write raises both, then sets the chunk's
 * bit in the persisted write-intent bitmap, then snapshots the writable mask.
 * The resync copies a chunk only if no write is in flight on it, and keeps the
 * copy only if the generation did not move while it copied; otherwise the
 * chunk stays wanted and is copied again on a later pass.  The sweep that
 * clears bits (only while every member is in sync) uses the same two counters,
 * so a bit is never cleared under a write that some member may have missed.
 *
 * The resync thread owns an io_uring of its own and drives the members through
 * the same siov_backend_submit() the engines use; its rate is a QoS token
 * bucket (siov_qos), the machinery the VDEVs' limits use.
 *
 * Crashes.  The bitmap file is a shared mapping: what a write set survives a
 * process crash at once (the page cache keeps it), but reaches the disk only
 * when the resync thread syncs it (MS_SYNC, once a second), so a host crash
 * can lose the last second's bits.  So that a crash never leaves members
 * silently different: the header records the boot it was opened in, and an
 * unclean stop in an earlier boot (a host crash) resyncs every other member
 * fully from one in-sync member instead of trusting the bits; the "not
 * clean" mark and every member failure are synced before siovd goes on (a
 * failed member is on disk as failed before the write it missed completes),
 * so a stale member is never taken for an in-sync one.
 */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <liburing.h>

#include "backend_impl.h"
#include "siov_internal/log.h"
#include "siov_internal/mirror.h"
#include "siov_internal/qos.h"

#define BM_MAGIC	"SIOVMBM1"
#define BM_VERSION	1
#define BM_HDR_SIZE	4096
#define CHUNK_MIN_SHIFT 16 /* 64 KiB */
#define CHUNKS_MAX	(1ull << 20)
#define REASON_MAX	128
#define BUSY_RETRIES	10000
#define REMOVE_WAIT_MS	30000

/* One member as the bitmap file records it. */
struct bm_member {
	char name[SIOV_NAME_MAX];
	uint32_t state; /* enum siov_member_state */
	uint32_t full;
	uint64_t cursor; /* resync: chunks before it were visited in this pass */
	char reason[REASON_MAX];
};

/* The first 4 KiB of the bitmap file; the bits follow. */
struct bm_hdr {
	char magic[8];
	uint32_t version;
	uint32_t clean; /* 1 after an orderly close, 0 while open */
	uint64_t size, chunk_size, nchunks;
	struct bm_member m[SIOV_MIRROR_MAX_MEMBERS];
	char boot_id[40]; /* /proc/sys/kernel/random/boot_id of the boot that opened it */
};
_Static_assert(sizeof(struct bm_hdr) <= BM_HDR_SIZE, "bitmap header fits its page");

struct member {
	struct siov_backend *bd;
	uint64_t offset;
	_Atomic int state;
	char reason[REASON_MAX];
	bool full;
	uint64_t cursor;	     /* resync thread only */
	unsigned passes;	     /* complete passes of this resync */
	bool progress;		     /* this pass copied something */
	uint64_t *want;		     /* chunks this resync still has to copy */
	_Atomic uint64_t todo, done; /* chunks */
	_Atomic uint64_t reads, writes, read_errors, write_errors, resync_bytes;
};

struct mirror {
	struct siov_backend *self;
	struct member *m[SIOV_MIRROR_MAX_MEMBERS];
	_Atomic unsigned active[SIOV_MIRROR_MAX_MEMBERS];
	_Atomic uint32_t present, in_sync, writable;
	unsigned chunk_shift;
	uint64_t nchunks, nwords;
	_Atomic uint32_t *gen, *inflight;
	_Atomic uint64_t *bits; /* in the mapping, after the header */
	struct bm_hdr *hdr;
	void *map;
	size_t map_len;
	bool file_backed;
	bool host_crash; /* not closed cleanly, and in an earlier boot: the bits may be stale */
	_Atomic unsigned rr;
	_Atomic uint64_t read_retries;
	/* Resync thread. */
	pthread_mutex_t lock; /* slots and want maps: control thread vs resync thread */
	pthread_t thread;
	bool thread_started;
	atomic_bool stop;
	int wake_fd;
	struct io_uring ring;
	bool ring_ok;
	struct siov_io_ctx ctx;
	struct siov_qos *qos;
	_Atomic uint64_t rate;
	void *buf;
};

/* A request in flight on the members. */
struct mreq {
	struct siov_io *parent;
	struct mirror *mi;
	struct siov_io_ctx *ctx;
	uint32_t ok, bad, tried;
	int pending, err;
	uint16_t busy[SIOV_MIRROR_MAX_MEMBERS];
	struct siov_io child[SIOV_MIRROR_MAX_MEMBERS];
};

const char *siov_member_state_name(enum siov_member_state s)
{
	switch (s) {
	case SIOV_MEMBER_IN_SYNC:
		return "in_sync";
	case SIOV_MEMBER_RESYNCING:
		return "resyncing";
	case SIOV_MEMBER_FAILED:
		return "failed";
	}
	return "unknown";
}

static inline uint32_t bit(unsigned i)
{
	return 1u << i;
}

/* ---- Bitmap words ---- */

static void word_set(uint64_t *w, uint64_t c)
{
	w[c / 64] |= 1ull << (c % 64);
}

static void word_clear(uint64_t *w, uint64_t c)
{
	w[c / 64] &= ~(1ull << (c % 64));
}

static void bits_set(struct mirror *mi, uint64_t c)
{
	uint64_t m = 1ull << (c % 64);

	/* Read first: a set bit stays a shared cache line. */
	if (!(atomic_load_explicit(&mi->bits[c / 64], memory_order_relaxed) & m))
		atomic_fetch_or(&mi->bits[c / 64], m);
}

static uint64_t popcount_words(const uint64_t *w, uint64_t n)
{
	uint64_t sum = 0, i;

	for (i = 0; i < n; i++)
		sum += (uint64_t)__builtin_popcountll(w[i]);
	return sum;
}

static uint64_t dirty_chunks(struct mirror *mi)
{
	uint64_t sum = 0, i;

	for (i = 0; i < mi->nwords; i++)
		sum += (uint64_t)__builtin_popcountll(atomic_load(&mi->bits[i]));
	return sum;
}

/* ---- Header (the persisted member states) ---- */

/* Writes every slot's state into the mapped header; stores to a shared mapping persist. */
static void hdr_sync(struct mirror *mi)
{
	unsigned i;

	for (i = 0; i < SIOV_MIRROR_MAX_MEMBERS; i++) {
		struct bm_member *h = &mi->hdr->m[i];
		struct member *m = mi->m[i];

		if (!m) {
			memset(h, 0, sizeof(*h));
			continue;
		}
		snprintf(h->name, sizeof(h->name), "%s", m->bd->conf.name);
		h->state = (uint32_t)atomic_load(&m->state);
		h->full = m->full;
		h->cursor = m->passes ? mi->nchunks : m->cursor;
		snprintf(h->reason, sizeof(h->reason), "%s", m->reason);
	}
}

/*
 * Writes the header page through to the disk.  Called on the control thread at
 * open and, rarely, on the thread that fails a member (before the request
 * that failed it completes): a failed member must be on disk as failed, or a
 * host crash could bring it back as in sync.
 */
static void hdr_persist(struct mirror *mi)
{
	if (mi->file_backed && msync(mi->map, BM_HDR_SIZE, MS_SYNC) < 0)
		SIOV_WARN("mirror %s: cannot sync its bitmap header: %s", mi->self->conf.name,
			  strerror(errno));
}

/* This boot's id (36 characters and a NUL), or "" if the kernel does not say. */
static void boot_id(char out[40])
{
	FILE *f = fopen("/proc/sys/kernel/random/boot_id", "re");

	memset(out, 0, 40);
	if (!f)
		return;
	if (!fgets(out, 40, f))
		out[0] = '\0';
	out[strcspn(out, "\n")] = '\0';
	fclose(f);
}

/* The conf lists the members in slot order: what the state file saves. */
static void conf_sync(struct mirror *mi)
{
	struct siov_backend_conf *c = &mi->self->conf;
	unsigned i;

	c->nmembers = 0;
	memset(c->members, 0, sizeof(c->members));
	for (i = 0; i < SIOV_MIRROR_MAX_MEMBERS; i++)
		if (mi->m[i])
			snprintf(c->members[c->nmembers++], SIOV_NAME_MAX, "%s",
				 mi->m[i]->bd->conf.name);
}

static void wake(struct mirror *mi)
{
	uint64_t one = 1;

	if (mi->wake_fd >= 0 && write(mi->wake_fd, &one, sizeof(one)) < 0)
		SIOV_DEBUG("mirror %s: wake: %s", mi->self->conf.name, strerror(errno));
}

/* ---- Member state changes ---- */

/*
 * Drops the members in bad, provided an in-sync member that is not in bad and
 * is in keep (the members that did take the request; all for an operator's
 * request) remains.  Returns false, changing nothing, if none would.
 */
static bool members_fail(struct mirror *mi, uint32_t bad, uint32_t keep, const char *reason)
{
	uint32_t cur = atomic_load(&mi->in_sync), next;
	bool changed = false;
	unsigned i;

	do {
		next = cur & ~bad;
		if ((cur & bad) && !(next & keep))
			return false;
	} while (!atomic_compare_exchange_weak(&mi->in_sync, &cur, next));
	atomic_fetch_and(&mi->writable, ~bad);
	for (i = 0; i < SIOV_MIRROR_MAX_MEMBERS; i++) {
		struct member *m = mi->m[i];
		int old;

		if (!(bad & bit(i)) || !m)
			continue;
		old = atomic_exchange(&m->state, SIOV_MEMBER_FAILED);
		if (old == SIOV_MEMBER_FAILED)
			continue;
		/* Only the one thread that made the change writes the reason. */
		snprintf(m->reason, sizeof(m->reason), "%s", reason);
		mi->hdr->m[i].state = SIOV_MEMBER_FAILED;
		snprintf(mi->hdr->m[i].reason, sizeof(mi->hdr->m[i].reason), "%s", reason);
		changed = true;
		SIOV_WARN("mirror %s: member %s failed (%s); %s", mi->self->conf.name,
			  m->bd->conf.name, reason,
			  old == SIOV_MEMBER_IN_SYNC ? "dropped from the mirror"
						     : "its resync stopped");
	}
	if (changed)
		hdr_persist(mi);
	wake(mi);
	return true;
}

static void io_reason(char *buf, size_t n, const char *what, int res)
{
	snprintf(buf, n, "%s error: %s", what, strerror(-res));
}

/* ---- Slots: the engines' lock-free claim ---- */

static struct member *slot_get(struct mirror *mi, unsigned i, uint32_t mask)
{
	atomic_fetch_add(&mi->active[i], 1);
	if (!(mask & bit(i)) || !(atomic_load(&mi->present) & bit(i)) || !mi->m[i]) {
		atomic_fetch_sub(&mi->active[i], 1);
		return NULL;
	}
	return mi->m[i];
}

static void slot_put(struct mirror *mi, unsigned i)
{
	atomic_fetch_sub(&mi->active[i], 1);
}

/* ---- Chunks under write ---- */

static void chunk_range(const struct mirror *mi, const struct siov_io *io, uint64_t *c0,
			uint64_t *c1)
{
	uint64_t len = io->len ? io->len : 1;

	*c0 = io->offset >> mi->chunk_shift;
	*c1 = (io->offset + len - 1) >> mi->chunk_shift;
	if (*c1 >= mi->nchunks)
		*c1 = mi->nchunks - 1;
}

static void chunks_enter(struct mirror *mi, const struct siov_io *io)
{
	uint64_t c, c0, c1;

	chunk_range(mi, io, &c0, &c1);
	for (c = c0; c <= c1; c++) {
		atomic_fetch_add(&mi->gen[c], 1);
		atomic_fetch_add(&mi->inflight[c], 1);
		bits_set(mi, c);
	}
}

static void chunks_leave(struct mirror *mi, const struct siov_io *io)
{
	uint64_t c, c0, c1;

	chunk_range(mi, io, &c0, &c1);
	for (c = c0; c <= c1; c++)
		atomic_fetch_sub(&mi->inflight[c], 1);
}

/* ---- The data path ---- */

static void child_cb(struct siov_io *c, int res);

static int child_submit(struct mreq *r, unsigned i, struct member *m)
{
	struct siov_io *p = r->parent, *c = &r->child[i];

	*c = (struct siov_io){.op = p->op,
			      .offset = p->offset + m->offset,
			      .len = p->len,
			      .iov = p->iov,
			      .iovcnt = p->iovcnt,
			      .cb = child_cb,
			      .cb_arg = r};
	return siov_backend_submit(m->bd, r->ctx, c);
}

/* child_submit, but a full SQ is retried on the engine's next pass, not failed. */
static int child_send(struct mreq *r, unsigned i, struct member *m)
{
	int rc = child_submit(r, i, m);

	if (rc == -EBUSY && r->busy[i]++ < BUSY_RETRIES) {
		siov_io_complete_later(r->ctx, &r->child[i], -EBUSY);
		rc = 0;
	}
	return rc;
}

/* Sends a read to the next in-sync member not yet tried; -EIO if none is left. */
static int read_next(struct mreq *r)
{
	struct mirror *mi = r->mi;
	unsigned start = atomic_fetch_add_explicit(&mi->rr, 1, memory_order_relaxed), k;
	int rc = r->err ? r->err : -EIO;

	for (k = 0; k < SIOV_MIRROR_MAX_MEMBERS; k++) {
		unsigned i = (start + k) % SIOV_MIRROR_MAX_MEMBERS;
		struct member *m;

		if (r->tried & bit(i))
			continue;
		m = slot_get(mi, i, atomic_load(&mi->in_sync));
		if (!m)
			continue;
		r->tried |= bit(i);
		rc = child_send(r, i, m);
		if (rc == 0) {
			r->pending = 1;
			return 0;
		}
		slot_put(mi, i);
	}
	return rc;
}

static void req_finish(struct mreq *r, int res)
{
	struct siov_io *p = r->parent;

	free(r);
	p->cb(p, res);
}

static void read_done(struct mreq *r, unsigned i, int res)
{
	struct mirror *mi = r->mi;
	struct member *m = mi->m[i];
	char why[REASON_MAX];

	if (res >= 0) {
		atomic_fetch_add_explicit(&m->reads, 1, memory_order_relaxed);
		slot_put(mi, i);
		req_finish(r, res);
		return;
	}
	atomic_fetch_add_explicit(&m->read_errors, 1, memory_order_relaxed);
	io_reason(why, sizeof(why), "read", res);
	members_fail(mi, bit(i), ~bit(i), why);
	slot_put(mi, i);
	if (!r->err)
		r->err = res;
	atomic_fetch_add_explicit(&mi->read_retries, 1, memory_order_relaxed);
	if (read_next(r) < 0)
		req_finish(r, r->err);
}

static void write_done(struct mreq *r)
{
	struct mirror *mi = r->mi;
	struct siov_io *p = r->parent;
	uint32_t authoritative;
	char why[REASON_MAX];
	int res;

	if (r->bad) {
		io_reason(why, sizeof(why),
			  p->op == SIOV_IO_FLUSH   ? "flush"
			  : p->op == SIOV_IO_WRITE ? "write"
						   : "discard",
			  r->err);
		/* The last copy is never dropped; resyncing members always may be. */
		if (!members_fail(mi, r->bad, r->ok, why))
			members_fail(mi, r->bad & ~atomic_load(&mi->in_sync), ~0u, why);
	}
	authoritative = r->ok & atomic_load(&mi->in_sync);
	/* Members are failed before the chunks are left: the sweep must see it. */
	if (p->op != SIOV_IO_FLUSH)
		chunks_leave(mi, p);
	if (!authoritative)
		res = r->err ? r->err : -EIO;
	else
		res = p->op == SIOV_IO_WRITE ? (int)p->len : 0;
	req_finish(r, res);
}

static void child_cb(struct siov_io *c, int res)
{
	struct mreq *r = c->cb_arg;
	struct mirror *mi = r->mi;
	unsigned i = (unsigned)(c - r->child);
	struct member *m = mi->m[i];

	if (res == -EBUSY && r->busy[i] && r->busy[i] < BUSY_RETRIES) {
		/* The SQ was full when this was sent: send it again. */
		if (child_send(r, i, m) == 0)
			return;
	}
	if (r->parent->op == SIOV_IO_READ) {
		read_done(r, i, res);
		return;
	}
	if (res >= 0) {
		atomic_fetch_add_explicit(&m->writes, 1, memory_order_relaxed);
		r->ok |= bit(i);
	} else {
		atomic_fetch_add_explicit(&m->write_errors, 1, memory_order_relaxed);
		r->bad |= bit(i);
		if (!r->err)
			r->err = res;
	}
	slot_put(mi, i);
	if (--r->pending == 0)
		write_done(r);
}

/* A write, discard, write-zeroes or flush: to every writable member. */
static int write_submit(struct mreq *r)
{
	struct mirror *mi = r->mi;
	struct siov_io *p = r->parent;
	uint32_t targets;
	unsigned i;
	int rc;

	if (p->op != SIOV_IO_FLUSH)
		chunks_enter(mi, p);
	targets = atomic_load(&mi->writable);
	for (i = 0; i < SIOV_MIRROR_MAX_MEMBERS; i++) {
		struct member *m = (targets & bit(i)) ? slot_get(mi, i, targets) : NULL;

		if (!m)
			continue;
		rc = child_send(r, i, m);
		if (rc == 0) {
			r->pending++;
			continue;
		}
		slot_put(mi, i);
		r->bad |= bit(i);
		if (!r->err)
			r->err = rc;
	}
	if (r->pending)
		return 0;
	/* Nothing was sent: no callback will run. */
	if (p->op != SIOV_IO_FLUSH)
		chunks_leave(mi, p);
	return r->err ? r->err : -EIO;
}

static int mirror_submit(struct siov_backend *bd, struct siov_io_ctx *ctx, struct siov_io *io)
{
	struct mirror *mi = bd->priv;
	struct mreq *r = calloc(1, sizeof(*r));
	int rc;

	if (!r)
		return -ENOMEM;
	r->parent = io;
	r->mi = mi;
	r->ctx = ctx;
	rc = io->op == SIOV_IO_READ ? read_next(r) : write_submit(r);
	if (rc < 0)
		free(r);
	return rc;
}

/* ---- Resync: synchronous I/O on the resync thread's own ring ---- */

struct sync_io {
	struct siov_io io;
	struct iovec iov;
	bool done;
	int res;
};

static void sync_cb(struct siov_io *io, int res)
{
	struct sync_io *s = SIOV_CONTAINER_OF(io, struct sync_io, io);

	s->res = res;
	s->done = true;
}

/* Runs the ring until s completes (the buffer is in use until then). */
static void sync_wait(struct mirror *mi, struct sync_io *s)
{
	struct __kernel_timespec ts = {.tv_nsec = 1000000};
	struct io_uring_cqe *cqe;

	while (!s->done) {
		unsigned head, n = 0;

		if (mi->ctx.unsubmitted) {
			io_uring_submit(&mi->ring);
			mi->ctx.unsubmitted = 0;
		}
		if (siov_io_ctx_run_deferred(&mi->ctx) || s->done)
			continue;
		io_uring_wait_cqe_timeout(&mi->ring, &cqe, &ts);
		io_uring_for_each_cqe(&mi->ring, head, cqe)
		{
			siov_io_ctx_handle_cqe(&mi->ctx, cqe);
			n++;
		}
		io_uring_cq_advance(&mi->ring, n);
	}
}

static int sync_rw(struct mirror *mi, struct member *m, enum siov_io_op op, uint64_t off,
		   size_t len)
{
	struct sync_io s = {.iov = {.iov_base = mi->buf, .iov_len = len}};
	int rc;

	s.io = (struct siov_io){.op = op,
				.offset = off + m->offset,
				.len = len,
				.iov = &s.iov,
				.iovcnt = 1,
				.cb = sync_cb};
	rc = siov_backend_submit(m->bd, &mi->ctx, &s.io);
	if (rc < 0)
		return rc;
	sync_wait(mi, &s);
	return s.res < 0 ? s.res : 0;
}

/* Waits for the resync's token bucket; false if the mirror is closing. */
static bool throttle(struct mirror *mi, uint64_t bytes)
{
	uint64_t retry;

	while (!siov_qos_admit(mi->qos, siov_now_ns(), bytes, &retry)) {
		uint64_t now = siov_now_ns(), ns = retry > now ? retry - now : 1000;
		struct timespec ts = {.tv_sec = (time_t)(ns / 1000000000ull),
				      .tv_nsec = (long)(ns % 1000000000ull)};

		if (atomic_load(&mi->stop))
			return false;
		if (ts.tv_sec > 0) {
			ts.tv_sec = 0;
			ts.tv_nsec = 100000000;
		}
		nanosleep(&ts, NULL);
	}
	return true;
}

enum copy_result { COPY_DONE, COPY_AGAIN, COPY_NO_SOURCE, COPY_FAILED };

/* An in-sync member other than j to copy from, claimed; -1 if none. */
static int source_get(struct mirror *mi, unsigned j)
{
	uint32_t sync = atomic_load(&mi->in_sync) & ~bit(j);
	unsigned i;

	for (i = 0; i < SIOV_MIRROR_MAX_MEMBERS; i++)
		if ((sync & bit(i)) && slot_get(mi, i, sync))
			return (int)i;
	return -1;
}

static enum copy_result copy_chunk(struct mirror *mi, unsigned j, uint64_t c)
{
	uint64_t off = c << mi->chunk_shift;
	size_t len = (size_t)SIOV_MIN(1ull << mi->chunk_shift, mi->self->size - off);
	struct member *dst = mi->m[j], *src;
	char why[REASON_MAX];
	enum copy_result res = COPY_DONE;
	uint32_t g0;
	int s, rc;

	g0 = atomic_load(&mi->gen[c]);
	if (atomic_load(&mi->inflight[c]) || !throttle(mi, len))
		return COPY_AGAIN;
	s = source_get(mi, j);
	if (s < 0)
		return COPY_NO_SOURCE;
	src = mi->m[s];
	rc = sync_rw(mi, src, SIOV_IO_READ, off, len);
	if (rc < 0) {
		atomic_fetch_add(&src->read_errors, 1);
		io_reason(why, sizeof(why), "resync read", rc);
		members_fail(mi, bit((unsigned)s), ~bit((unsigned)s), why);
		res = COPY_AGAIN;
		goto out;
	}
	rc = sync_rw(mi, dst, SIOV_IO_WRITE, off, len);
	if (rc < 0) {
		atomic_fetch_add(&dst->write_errors, 1);
		io_reason(why, sizeof(why), "resync write", rc);
		members_fail(mi, bit(j), ~0u, why);
		res = COPY_FAILED;
		goto out;
	}
	atomic_fetch_add(&dst->resync_bytes, len);
	/* A write raced the copy: what landed on dst may be older than src. */
	if (atomic_load(&mi->gen[c]) != g0)
		res = COPY_AGAIN;
out:
	slot_put(mi, (unsigned)s);
	return res;
}

/* Lowest slot that is resyncing, claimed; -1 if none. */
static int resync_target(struct mirror *mi)
{
	unsigned i;

	for (i = 0; i < SIOV_MIRROR_MAX_MEMBERS; i++) {
		struct member *m = mi->m[i];

		if (m && atomic_load(&m->state) == SIOV_MEMBER_RESYNCING &&
		    slot_get(mi, i, atomic_load(&mi->writable)))
			return (int)i;
	}
	return -1;
}

static void member_now_in_sync(struct mirror *mi, unsigned j)
{
	struct member *m = mi->m[j];
	int want = SIOV_MEMBER_RESYNCING;

	if (!atomic_compare_exchange_strong(&m->state, &want, SIOV_MEMBER_IN_SYNC))
		return;
	atomic_fetch_or(&mi->in_sync, bit(j));
	free(m->want);
	m->want = NULL;
	m->full = false;
	m->cursor = 0;
	m->reason[0] = '\0';
	hdr_sync(mi);
	SIOV_INFO("mirror %s: member %s is in sync (%llu bytes copied)", mi->self->conf.name,
		  m->bd->conf.name, (unsigned long long)atomic_load(&m->resync_bytes));
}

/* The next wanted chunk at or after the cursor; nchunks if none. */
static uint64_t next_wanted(struct mirror *mi, struct member *m)
{
	uint64_t c = m->cursor;

	while (c < mi->nchunks) {
		uint64_t w = m->want[c / 64] >> (c % 64);

		if (w)
			return SIOV_MIN(c + (uint64_t)__builtin_ctzll(w), mi->nchunks);
		c = (c / 64 + 1) * 64;
	}
	return mi->nchunks;
}

/*
 * One step of the resync: copies one chunk onto the lowest resyncing member.
 * Returns false when there was nothing to do (or nothing could be done).
 */
static bool resync_step(struct mirror *mi)
{
	enum copy_result res;
	struct member *m;
	uint64_t c;
	int j;

	pthread_mutex_lock(&mi->lock);
	j = resync_target(mi);
	if (j < 0) {
		pthread_mutex_unlock(&mi->lock);
		return false;
	}
	m = mi->m[j];
	c = next_wanted(mi, m);
	if (c >= mi->nchunks) {
		/* A pass is over: chunks that raced a write are still wanted. */
		bool progress = m->progress;

		m->cursor = 0;
		m->passes++;
		m->progress = false;
		mi->hdr->m[j].cursor = mi->nchunks;
		if (popcount_words(m->want, mi->nwords) == 0)
			member_now_in_sync(mi, (unsigned)j);
		pthread_mutex_unlock(&mi->lock);
		slot_put(mi, (unsigned)j);
		/* Only busy chunks were left: let their writes finish. */
		return progress;
	}
	pthread_mutex_unlock(&mi->lock);
	res = copy_chunk(mi, (unsigned)j, c);
	pthread_mutex_lock(&mi->lock);
	if (res == COPY_DONE && m->want) {
		word_clear(m->want, c);
		atomic_fetch_add(&m->done, 1);
		m->progress = true;
	}
	if (m->want && res != COPY_NO_SOURCE)
		m->cursor = c + 1;
	/* Persisted: after a restart a full resync goes on from here (plus the bitmap). */
	mi->hdr->m[j].cursor = m->passes ? mi->nchunks : m->cursor;
	pthread_mutex_unlock(&mi->lock);
	slot_put(mi, (unsigned)j);
	return res != COPY_NO_SOURCE;
}

/* Clears the bits of chunks no write is on, while every member is in sync. */
static void sweep(struct mirror *mi)
{
	uint64_t w, c;

	for (w = 0; w < mi->nwords; w++) {
		uint64_t v = atomic_load(&mi->bits[w]);

		while (v) {
			uint64_t b = 1ull << __builtin_ctzll(v);
			uint32_t g;

			v &= ~b;
			c = w * 64 + (uint64_t)__builtin_ctzll(b);
			if (c >= mi->nchunks)
				break;
			if (atomic_load(&mi->present) != atomic_load(&mi->in_sync))
				return;
			g = atomic_load(&mi->gen[c]);
			if (atomic_load(&mi->inflight[c]))
				continue;
			atomic_fetch_and(&mi->bits[w], ~b);
			/* A write began meanwhile, or a member failed: keep the bit. */
			if (atomic_load(&mi->gen[c]) != g || atomic_load(&mi->inflight[c]) ||
			    atomic_load(&mi->present) != atomic_load(&mi->in_sync))
				atomic_fetch_or(&mi->bits[w], b);
		}
	}
}

static void idle_wait(struct mirror *mi, int ms)
{
	struct pollfd pfd = {.fd = mi->wake_fd, .events = POLLIN};
	uint64_t v;

	if (poll(&pfd, 1, ms) > 0 && read(mi->wake_fd, &v, sizeof(v)) < 0)
		SIOV_DEBUG("mirror %s: wake read: %s", mi->self->conf.name, strerror(errno));
}

static void *resync_main(void *arg)
{
	struct mirror *mi = arg;
	uint64_t last_sweep = 0, idle = 0;

	while (!atomic_load(&mi->stop)) {
		uint64_t now = siov_now_ns();

		if (resync_step(mi)) {
			idle = 0;
			continue;
		}
		if (now - last_sweep > 1000000000ull) {
			sweep(mi);
			/* MS_ASYNC would leave it to the kernel's writeback (~30 s). */
			if (mi->file_backed)
				msync(mi->map, mi->map_len, MS_SYNC);
			last_sweep = now;
		}
		/* Nothing to copy (or no source yet): sleep, shorter while busy. */
		idle_wait(mi, idle++ < 10 ? 10 : 1000);
	}
	return NULL;
}

/* ---- Opening and closing ---- */

static unsigned pick_chunk_shift(uint64_t size)
{
	unsigned s = CHUNK_MIN_SHIFT;

	while ((size >> s) > CHUNKS_MAX)
		s++;
	return s;
}

static int map_bitmap(struct mirror *mi, const char *path, bool *fresh, struct siov_err *err)
{
	const char *name = mi->self->conf.name;
	size_t bytes = (mi->nwords * 8 + 4095) / 4096 * 4096;
	struct stat st;
	int fd;

	mi->map_len = BM_HDR_SIZE + bytes;
	*fresh = true;
	if (!path) {
		mi->map = mmap(NULL, mi->map_len, PROT_READ | PROT_WRITE,
			       MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
		if (mi->map == MAP_FAILED)
			return siov_err_set(err, -errno, "mirror '%s': cannot map its bitmap: %s",
					    name, strerror(errno));
		return 0;
	}
	fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0600);
	if (fd < 0)
		return siov_err_set(err, -errno, "mirror '%s': cannot open bitmap '%s': %s", name,
				    path, strerror(errno));
	if (fstat(fd, &st) == 0 && S_ISREG(st.st_mode) && (size_t)st.st_size == mi->map_len)
		*fresh = false;
	if (!S_ISREG(st.st_mode) || ftruncate(fd, (off_t)mi->map_len) < 0) {
		int rc = S_ISREG(st.st_mode) ? -errno : -EINVAL;
		close(fd);
		return siov_err_set(err, rc, "mirror '%s': cannot size bitmap '%s'", name, path);
	}
	mi->map = mmap(NULL, mi->map_len, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
	close(fd);
	if (mi->map == MAP_FAILED)
		return siov_err_set(err, -errno, "mirror '%s': cannot map bitmap '%s': %s", name,
				    path, strerror(errno));
	mi->file_backed = true;
	return 0;
}

/* The bitmap file is hostile too (a state dir edited by hand): check it all. */
static bool hdr_valid(const struct mirror *mi)
{
	const struct bm_hdr *h = mi->hdr;
	unsigned i;

	if (memcmp(h->magic, BM_MAGIC, 8) || h->version != BM_VERSION ||
	    h->size != mi->self->size || h->chunk_size != (1ull << mi->chunk_shift) ||
	    h->nchunks != mi->nchunks)
		return false;
	for (i = 0; i < SIOV_MIRROR_MAX_MEMBERS; i++) {
		const struct bm_member *m = &h->m[i];

		if (m->name[0] && (strnlen(m->name, sizeof(m->name)) == sizeof(m->name) ||
				   m->state > SIOV_MEMBER_FAILED || m->cursor > h->nchunks ||
				   strnlen(m->reason, sizeof(m->reason)) == sizeof(m->reason)))
			return false;
	}
	return true;
}

static const struct bm_member *hdr_find(const struct mirror *mi, const char *name)
{
	unsigned i;

	for (i = 0; i < SIOV_MIRROR_MAX_MEMBERS; i++)
		if (mi->hdr->m[i].name[0] && !strcmp(mi->hdr->m[i].name, name))
			return &mi->hdr->m[i];
	return NULL;
}

/* Starts member j's resync over the chunks its want map is built from. */
static int resync_begin(struct mirror *mi, unsigned j, bool full, uint64_t cursor)
{
	struct member *m = mi->m[j];
	uint64_t c, *want = calloc(mi->nwords ? mi->nwords : 1, 8);

	if (!want)
		return -ENOMEM;
	/* Bits first, then the chunks past the cursor of a full resync. */
	for (c = 0; c < mi->nwords; c++)
		want[c] = atomic_load(&mi->bits[c]);
	for (c = full ? cursor : mi->nchunks; c < mi->nchunks; c++)
		word_set(want, c);
	free(m->want);
	m->want = want;
	m->full = full;
	m->cursor = 0;
	m->passes = 0;
	m->progress = false;
	atomic_store(&m->todo, popcount_words(want, mi->nwords));
	atomic_store(&m->done, 0);
	atomic_store(&m->state, SIOV_MEMBER_RESYNCING);
	m->reason[0] = '\0';
	return 0;
}

/* Restores one member's state from the header, or starts it afresh. */
static int member_restore(struct mirror *mi, unsigned j, bool fresh, bool unclean, bool *primary)
{
	struct member *m = mi->m[j];
	const struct bm_member *h = fresh ? NULL : hdr_find(mi, m->bd->conf.name);
	int state = h ? (int)h->state : (*primary ? SIOV_MEMBER_RESYNCING : SIOV_MEMBER_IN_SYNC);

	if (state == SIOV_MEMBER_FAILED) {
		atomic_store(&m->state, SIOV_MEMBER_FAILED);
		snprintf(m->reason, sizeof(m->reason), "%s", h->reason);
		return 0;
	}
	atomic_fetch_or(&mi->writable, bit(j));
	if (state == SIOV_MEMBER_IN_SYNC && !*primary) {
		*primary = true;
		atomic_store(&m->state, SIOV_MEMBER_IN_SYNC);
		atomic_fetch_or(&mi->in_sync, bit(j));
		return 0;
	}
	if (state == SIOV_MEMBER_IN_SYNC && !unclean) {
		atomic_store(&m->state, SIOV_MEMBER_IN_SYNC);
		atomic_fetch_or(&mi->in_sync, bit(j));
		return 0;
	}
	/*
	 * Resyncing, or in sync but possibly behind after an unclean stop.  After
	 * a host crash the bits may miss the last writes: copy everything.
	 */
	if (h && state == SIOV_MEMBER_RESYNCING && !(mi->host_crash && !h->full))
		return resync_begin(mi, j, h->full, h->full ? h->cursor : 0);
	return resync_begin(mi, j, !h || mi->host_crash, 0);
}

static int members_restore(struct mirror *mi, bool fresh, struct siov_err *err)
{
	bool unclean = !fresh && !mi->hdr->clean, primary = false;
	unsigned j;
	int rc;

	if (!fresh) {
		/* Take the in-sync members first so the primary is one of them. */
		for (j = 0; j < SIOV_MIRROR_MAX_MEMBERS; j++) {
			const struct bm_member *h =
			    mi->m[j] ? hdr_find(mi, mi->m[j]->bd->conf.name) : NULL;
			if (h && h->state == SIOV_MEMBER_IN_SYNC && !primary) {
				rc = member_restore(mi, j, false, unclean, &primary);
				if (rc)
					return siov_err_set(err, rc, "mirror: out of memory");
			}
		}
	}
	for (j = 0; j < SIOV_MIRROR_MAX_MEMBERS; j++) {
		if (!mi->m[j] || (atomic_load(&mi->in_sync) & bit(j)))
			continue;
		rc = member_restore(mi, j, fresh, unclean, &primary);
		if (rc)
			return siov_err_set(err, rc, "mirror: out of memory");
	}
	if (!atomic_load(&mi->in_sync))
		return siov_err_set(err, -EIO,
				    "mirror '%s': no member is in sync (the bitmap file says every "
				    "one failed or was resyncing); remove %s to start over",
				    mi->self->conf.name, "the bitmap file");
	if (unclean && mi->host_crash)
		SIOV_WARN("mirror %s: not closed cleanly, in an earlier boot (a host crash?): "
			  "the bitmap may have missed the last writes, so the other members are "
			  "resynced fully from one",
			  mi->self->conf.name);
	else if (unclean)
		SIOV_WARN("mirror %s: not closed cleanly: %llu chunk(s) written just before are "
			  "reconciled from one member",
			  mi->self->conf.name, (unsigned long long)dirty_chunks(mi));
	return 0;
}

/* Bits past the last chunk mean nothing (a hostile file may set them): clear them. */
static void bits_clear_tail(struct mirror *mi)
{
	unsigned used = (unsigned)(mi->nchunks % 64);

	if (used)
		atomic_fetch_and(&mi->bits[mi->nwords - 1], (1ull << used) - 1);
}

static void hdr_init(struct mirror *mi)
{
	memset(mi->map, 0, mi->map_len);
	memcpy(mi->hdr->magic, BM_MAGIC, 8);
	mi->hdr->version = BM_VERSION;
	mi->hdr->size = mi->self->size;
	mi->hdr->chunk_size = 1ull << mi->chunk_shift;
	mi->hdr->nchunks = mi->nchunks;
}

static int member_new(struct mirror *mi, unsigned j, const struct siov_mirror_member *src)
{
	struct member *m = calloc(1, sizeof(*m));

	if (!m)
		return -ENOMEM;
	m->bd = src->bd;
	m->offset = src->offset;
	mi->m[j] = m;
	atomic_fetch_or(&mi->present, bit(j));
	return 0;
}

static void member_free(struct mirror *mi, unsigned j)
{
	struct member *m = mi->m[j];

	mi->m[j] = NULL;
	if (!m)
		return;
	free(m->want);
	free(m);
}

static int member_check(const struct mirror *mi, const struct siov_mirror_member *m,
			struct siov_err *err)
{
	const char *name = mi->self->conf.name;
	const struct siov_backend *b = m->bd;

	if (!b)
		return siov_err_set(err, -EINVAL, "mirror '%s': no member backend", name);
	if (b->size < m->offset || b->size - m->offset < mi->self->size)
		return siov_err_set(err, -EINVAL,
				    "mirror '%s': member '%s' holds %llu bytes from offset %llu, "
				    "less than the mirror's %llu",
				    name, b->conf.name, (unsigned long long)b->size,
				    (unsigned long long)m->offset,
				    (unsigned long long)mi->self->size);
	if (b->conf.readonly && !mi->self->conf.readonly)
		return siov_err_set(err, -EROFS, "mirror '%s': member '%s' is read-only", name,
				    b->conf.name);
	if (m->offset % 512)
		return siov_err_set(err, -EINVAL,
				    "mirror '%s': member offset must be a multiple of 512", name);
	return 0;
}

static void mirror_close(struct siov_backend *bd)
{
	struct mirror *mi = bd->priv;
	unsigned i;

	if (!mi)
		return;
	if (mi->thread_started) {
		atomic_store(&mi->stop, true);
		wake(mi);
		pthread_join(mi->thread, NULL);
	}
	if (mi->map && mi->map != MAP_FAILED) {
		if (mi->hdr && mi->thread_started) {
			hdr_sync(mi);
			mi->hdr->clean = 1;
		}
		if (mi->file_backed)
			msync(mi->map, mi->map_len, MS_SYNC);
		munmap(mi->map, mi->map_len);
	}
	for (i = 0; i < SIOV_MIRROR_MAX_MEMBERS; i++)
		member_free(mi, i);
	if (mi->ring_ok)
		io_uring_queue_exit(&mi->ring);
	siov_qos_destroy(mi->qos);
	free(mi->buf);
	free((void *)mi->gen);
	free((void *)mi->inflight);
	if (mi->wake_fd >= 0)
		close(mi->wake_fd);
	pthread_mutex_destroy(&mi->lock);
	free(mi);
	bd->priv = NULL;
}

static int mirror_open_refused(struct siov_backend *bd, struct siov_err *err)
{
	return siov_err_set(err, -EINVAL,
			    "backend '%s': a mirror is built over its members (siov_mirror_open)",
			    bd->conf.name);
}

const struct siov_backend_ops siov__backend_mirror_ops = {
    .type_name = "mirror",
    .open = mirror_open_refused,
    .close = mirror_close,
    .submit = mirror_submit,
};

bool siov_backend_is_mirror(const struct siov_backend *bd)
{
	return bd && bd->ops == &siov__backend_mirror_ops;
}

/* Sizes and capabilities from the members: the mirror can do what all of them can. */
static void mirror_settle(struct siov_backend *bd, const struct siov_mirror_member *m, unsigned n,
			  uint64_t size)
{
	unsigned i;

	bd->size = size;
	bd->can_discard = bd->can_write_zeroes = bd->direct = true;
	bd->block_size = 512;
	for (i = 0; i < n; i++) {
		if (!size && (bd->size == 0 || m[i].bd->size - m[i].offset < bd->size))
			bd->size = m[i].bd->size - m[i].offset;
		bd->block_size = SIOV_MAX(bd->block_size, m[i].bd->block_size);
		bd->can_discard &= m[i].bd->can_discard;
		bd->can_write_zeroes &= m[i].bd->can_write_zeroes;
		bd->direct &= m[i].bd->direct;
	}
	bd->size = bd->size / 512 * 512;
}

static int mirror_alloc(struct mirror *mi, struct siov_err *err)
{
	struct siov_qos_params qp = {.bps_limit = atomic_load(&mi->rate)};
	const char *name = mi->self->conf.name;
	int rc;

	mi->chunk_shift = pick_chunk_shift(mi->self->size);
	mi->nchunks = (mi->self->size + (1ull << mi->chunk_shift) - 1) >> mi->chunk_shift;
	mi->nwords = (mi->nchunks + 63) / 64;
	mi->gen = calloc(mi->nchunks, sizeof(*mi->gen));
	mi->inflight = calloc(mi->nchunks, sizeof(*mi->inflight));
	if (!mi->gen || !mi->inflight ||
	    posix_memalign(&mi->buf, 4096, (size_t)1 << mi->chunk_shift))
		return siov_err_set(err, -ENOMEM, "mirror '%s': out of memory", name);
	rc = siov_qos_create(&qp, NULL, &mi->qos);
	if (rc)
		return siov_err_set(err, rc, "mirror '%s': cannot create its resync rate limit",
				    name);
	mi->wake_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	if (mi->wake_fd < 0)
		return siov_err_set(err, -errno, "mirror '%s': eventfd: %s", name, strerror(errno));
	rc = io_uring_queue_init(16, &mi->ring, 0);
	if (rc < 0)
		return siov_err_set(err, rc, "mirror '%s': io_uring: %s", name, strerror(-rc));
	mi->ring_ok = true;
	siov_io_ctx_init(&mi->ctx, &mi->ring);
	return 0;
}

static int mirror_start(struct mirror *mi, const struct siov_mirror_member *members, unsigned n,
			const struct siov_mirror_opts *opts, struct siov_err *err)
{
	char boot[40];
	bool fresh;
	unsigned i;
	int rc;

	rc = mirror_alloc(mi, err);
	if (rc)
		return rc;
	for (i = 0; i < n; i++) {
		rc = member_check(mi, &members[i], err);
		if (rc)
			return rc;
		if (member_new(mi, i, &members[i]))
			return siov_err_set(err, -ENOMEM, "mirror: out of memory");
	}
	rc = map_bitmap(mi, opts->bitmap_path, &fresh, err);
	if (rc)
		return rc;
	mi->hdr = mi->map;
	mi->bits = (_Atomic uint64_t *)((char *)mi->map + BM_HDR_SIZE);
	if (!fresh && !hdr_valid(mi)) {
		SIOV_WARN("mirror %s: bitmap file is not this mirror's: starting over with a full "
			  "resync",
			  mi->self->conf.name);
		fresh = true;
	}
	if (fresh)
		hdr_init(mi);
	bits_clear_tail(mi);
	boot_id(boot);
	/* Unknown boots count as different ones: a full resync is never wrong. */
	mi->host_crash = !fresh && !mi->hdr->clean &&
			 (!boot[0] || strncmp(mi->hdr->boot_id, boot, sizeof(boot)) != 0);
	rc = members_restore(mi, fresh, err);
	if (rc)
		return rc;
	hdr_sync(mi);
	conf_sync(mi);
	memcpy(mi->hdr->boot_id, boot, sizeof(boot));
	mi->hdr->clean = 0;
	hdr_persist(mi); /* a host crash from now on is seen as one */
	rc = pthread_create(&mi->thread, NULL, resync_main, mi);
	if (rc)
		return siov_err_set(err, -rc, "mirror '%s': cannot start its resync thread",
				    mi->self->conf.name);
	mi->thread_started = true;
	pthread_setname_np(mi->thread, "siov-resync");
	return 0;
}

int siov_mirror_open(const struct siov_backend_conf *conf, const struct siov_mirror_member *members,
		     unsigned n, const struct siov_mirror_opts *opts, struct siov_backend **out,
		     struct siov_err *err)
{
	struct siov_backend *bd;
	struct mirror *mi;
	int rc;

	if (n < 1 || n > SIOV_MIRROR_MAX_MEMBERS)
		return siov_err_set(err, -EINVAL, "mirror '%s': give 1 to %d members", conf->name,
				    SIOV_MIRROR_MAX_MEMBERS);
	bd = calloc(1, sizeof(*bd));
	mi = calloc(1, sizeof(*mi));
	if (!bd || !mi) {
		free(bd);
		free(mi);
		return siov_err_set(err, -ENOMEM, "mirror '%s': out of memory", conf->name);
	}
	bd->conf = *conf;
	bd->conf.type = SIOV_BACKEND_MIRROR;
	bd->ops = &siov__backend_mirror_ops;
	bd->priv = mi;
	mi->self = bd;
	mi->wake_fd = -1;
	pthread_mutex_init(&mi->lock, NULL);
	atomic_store(&mi->rate,
		     opts->resync_rate ? opts->resync_rate : SIOV_MIRROR_RESYNC_RATE_DEFAULT);
	mirror_settle(bd, members, n, opts->size);
	if (bd->size == 0) {
		rc =
		    siov_err_set(err, -EINVAL, "mirror '%s': its members hold no data", conf->name);
		goto err_start;
	}
	rc = mirror_start(mi, members, n, opts, err);
	if (rc)
		goto err_start;
	*out = bd;
	return 0;

err_start:
	mirror_close(bd);
	free(bd);
	return rc;
}

/* ---- Member management (control thread) ---- */

static int slot_of(struct mirror *mi, const char *name)
{
	unsigned i;

	for (i = 0; i < SIOV_MIRROR_MAX_MEMBERS; i++)
		if (mi->m[i] && !strcmp(mi->m[i]->bd->conf.name, name))
			return (int)i;
	return -1;
}

bool siov_mirror_has_member(struct siov_backend *bd, const char *name)
{
	return siov_backend_is_mirror(bd) && slot_of(bd->priv, name) >= 0;
}

static int readd(struct mirror *mi, unsigned j, bool full, struct siov_err *err)
{
	struct member *m = mi->m[j];
	int rc;

	if (atomic_load(&m->state) != SIOV_MEMBER_FAILED)
		return siov_err_set(err, -EEXIST, "mirror '%s': '%s' is already a member (%s)",
				    mi->self->conf.name, m->bd->conf.name,
				    siov_member_state_name(atomic_load(&m->state)));
	/* Writable first, then the bits: a write that missed it has set its bit by then. */
	atomic_fetch_or(&mi->writable, bit(j));
	rc = resync_begin(mi, j, full, 0);
	if (rc) {
		atomic_fetch_and(&mi->writable, ~bit(j));
		return siov_err_set(err, rc, "mirror: out of memory");
	}
	SIOV_INFO("mirror %s: member %s re-added: %s resync of %llu chunk(s)", mi->self->conf.name,
		  m->bd->conf.name, full ? "full" : "bitmap",
		  (unsigned long long)atomic_load(&m->todo));
	return 0;
}

static int add_new(struct mirror *mi, const struct siov_mirror_member *sm, struct siov_err *err)
{
	int j = -1, rc;
	unsigned i;

	for (i = 0; i < SIOV_MIRROR_MAX_MEMBERS && j < 0; i++)
		if (!mi->m[i] && !atomic_load(&mi->active[i]))
			j = (int)i;
	if (j < 0)
		return siov_err_set(err, -ENOSPC, "mirror '%s': already %d members",
				    mi->self->conf.name, SIOV_MIRROR_MAX_MEMBERS);
	if ((sm->bd->block_size > mi->self->block_size) ||
	    (mi->self->can_discard && !sm->bd->can_discard) ||
	    (mi->self->can_write_zeroes && !sm->bd->can_write_zeroes))
		return siov_err_set(err, -EINVAL,
				    "mirror '%s': '%s' cannot do what the mirror already offers "
				    "(block size, discard, write-zeroes)",
				    mi->self->conf.name, sm->bd->conf.name);
	if (member_new(mi, (unsigned)j, sm))
		return siov_err_set(err, -ENOMEM, "mirror: out of memory");
	atomic_fetch_or(&mi->writable, bit((unsigned)j));
	rc = resync_begin(mi, (unsigned)j, true, 0);
	if (rc) {
		atomic_fetch_and(&mi->writable, ~bit((unsigned)j));
		atomic_fetch_and(&mi->present, ~bit((unsigned)j));
		member_free(mi, (unsigned)j);
		return siov_err_set(err, rc, "mirror: out of memory");
	}
	SIOV_INFO("mirror %s: member %s added: full resync of %llu bytes", mi->self->conf.name,
		  sm->bd->conf.name, (unsigned long long)mi->self->size);
	return 0;
}

int siov_mirror_add_member(struct siov_backend *bd, const struct siov_mirror_member *m, bool full,
			   struct siov_err *err)
{
	struct mirror *mi;
	int j, rc;

	if (!siov_backend_is_mirror(bd))
		return siov_err_set(err, -EINVAL, "backend '%s' is not a mirror", bd->conf.name);
	mi = bd->priv;
	rc = member_check(mi, m, err);
	if (rc)
		return rc;
	pthread_mutex_lock(&mi->lock);
	j = slot_of(mi, m->bd->conf.name);
	if (j >= 0 && mi->m[j]->bd != m->bd)
		rc = siov_err_set(err, -EINVAL, "mirror '%s': member slot mismatch", bd->conf.name);
	else
		rc = j >= 0 ? readd(mi, (unsigned)j, full, err) : add_new(mi, m, err);
	if (rc == 0) {
		hdr_sync(mi);
		conf_sync(mi);
	}
	pthread_mutex_unlock(&mi->lock);
	if (rc == 0)
		wake(mi);
	return rc;
}

/* Takes slot j out of the masks; -EBUSY if it is the last in-sync member. */
static int detach(struct mirror *mi, unsigned j, struct siov_err *err)
{
	uint32_t cur = atomic_load(&mi->in_sync);

	do {
		if (cur == bit(j))
			return siov_err_set(err, -EBUSY,
					    "mirror '%s': '%s' is its last in-sync member",
					    mi->self->conf.name, mi->m[j]->bd->conf.name);
	} while (!atomic_compare_exchange_weak(&mi->in_sync, &cur, cur & ~bit(j)));
	atomic_fetch_and(&mi->writable, ~bit(j));
	atomic_fetch_and(&mi->present, ~bit(j));
	return 0;
}

int siov_mirror_remove_member(struct siov_backend *bd, const char *name, struct siov_backend **out,
			      struct siov_err *err)
{
	struct mirror *mi;
	unsigned waited = 0;
	int j, rc;

	if (!siov_backend_is_mirror(bd))
		return siov_err_set(err, -EINVAL, "backend '%s' is not a mirror", bd->conf.name);
	mi = bd->priv;
	pthread_mutex_lock(&mi->lock);
	j = slot_of(mi, name);
	rc = j < 0
		 ? siov_err_set(err, -ENOENT, "mirror '%s' has no member '%s'", bd->conf.name, name)
		 : detach(mi, (unsigned)j, err);
	pthread_mutex_unlock(&mi->lock);
	if (rc)
		return rc;
	/* Requests already on it finish first (the resync thread's too). */
	while (atomic_load(&mi->active[j]) && waited++ < REMOVE_WAIT_MS)
		usleep(1000);
	if (atomic_load(&mi->active[j]))
		SIOV_WARN("mirror %s: member %s still has I/O in flight after %d s", bd->conf.name,
			  name, REMOVE_WAIT_MS / 1000);
	pthread_mutex_lock(&mi->lock);
	*out = mi->m[j]->bd;
	member_free(mi, (unsigned)j);
	hdr_sync(mi);
	conf_sync(mi);
	pthread_mutex_unlock(&mi->lock);
	SIOV_INFO("mirror %s: member %s removed", bd->conf.name, name);
	return 0;
}

int siov_mirror_fail_member(struct siov_backend *bd, const char *name, const char *reason,
			    struct siov_err *err)
{
	struct mirror *mi;
	int j;

	if (!siov_backend_is_mirror(bd))
		return siov_err_set(err, -EINVAL, "backend '%s' is not a mirror", bd->conf.name);
	mi = bd->priv;
	j = slot_of(mi, name);
	if (j < 0)
		return siov_err_set(err, -ENOENT, "mirror '%s' has no member '%s'", bd->conf.name,
				    name);
	if (!members_fail(mi, bit((unsigned)j), ~0u, reason))
		return siov_err_set(err, -EBUSY, "mirror '%s': '%s' is its last in-sync member",
				    bd->conf.name, name);
	return 0;
}

int siov_mirror_set_resync_rate(struct siov_backend *bd, uint64_t rate)
{
	struct mirror *mi;
	struct siov_qos_params qp;

	if (!siov_backend_is_mirror(bd))
		return -EINVAL;
	mi = bd->priv;
	if (!rate)
		rate = SIOV_MIRROR_RESYNC_RATE_DEFAULT;
	qp = (struct siov_qos_params){.bps_limit = rate};
	atomic_store(&mi->rate, rate);
	bd->conf.resync_rate = rate;
	return siov_qos_set(mi->qos, &qp);
}

void siov_mirror_get_info(struct siov_backend *bd, struct siov_mirror_info *info)
{
	struct mirror *mi = bd->priv;
	uint64_t chunk = 1ull << mi->chunk_shift;
	unsigned i;

	memset(info, 0, sizeof(*info));
	info->chunk_size = chunk;
	info->chunks = mi->nchunks;
	info->dirty_chunks = dirty_chunks(mi);
	info->resync_rate = atomic_load(&mi->rate);
	info->read_retries = atomic_load(&mi->read_retries);
	pthread_mutex_lock(&mi->lock);
	for (i = 0; i < SIOV_MIRROR_MAX_MEMBERS; i++) {
		struct siov_member_info *o = &info->members[info->nmembers];
		struct member *m = mi->m[i];

		if (!m)
			continue;
		info->nmembers++;
		o->name = m->bd->conf.name;
		o->offset = m->offset;
		o->state = atomic_load(&m->state);
		o->reason = m->reason;
		o->full = m->full;
		o->resync_done = atomic_load(&m->done) * chunk;
		o->resync_total = atomic_load(&m->todo) * chunk;
		o->reads = atomic_load(&m->reads);
		o->writes = atomic_load(&m->writes);
		o->read_errors = atomic_load(&m->read_errors);
		o->write_errors = atomic_load(&m->write_errors);
		o->resync_bytes = atomic_load(&m->resync_bytes);
	}
	pthread_mutex_unlock(&mi->lock);
}

bool siov_mirror_all_in_sync(struct siov_backend *bd)
{
	struct mirror *mi = bd->priv;

	return atomic_load(&mi->in_sync) == atomic_load(&mi->present);
}
