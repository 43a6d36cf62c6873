/*
 * One siov-bench job: a thread that keeps iodepth requests in flight on its
 * own queue until told to stop.  Each in-flight slot owns one bs-sized buffer
 * and is refilled as soon as it completes, in batches: one clock read, one
 * reap and one submit per batch, so the bench spends its time in libsiov and
 * the back end rather than in itself.
 *
 * With --verify a write carries a header (offset, generation) and a checksum
 * of its payload; a read of a block this job wrote checks all three.  A job
 * owns its range of blocks alone and never has two requests on one block in
 * flight, so the expected generation is always known.
 */
#include <errno.h>
#include <sched.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "bench.h"

#define BATCH 64
/* A step's completions are success; only a negative result stops the loop. */
#define SIOV_BENCH_MIN0(x) ((x) < 0 ? (x) : 0)
#define VERIFY_MAGIC	   0x73696f7662656e63ull /* "siovbenc" */

atomic_bool bench_stop;
atomic_bool bench_go;

struct slot {
	uint64_t offset;
	uint64_t start_ns;
	uint32_t gen; /* generation written, or expected by a read (0: unknown) */
	bool write;
};

struct vhdr {
	uint64_t magic;
	uint64_t offset;
	uint64_t sum;
	uint32_t gen;
	uint32_t pad;
};

/* Per job run state, on the job thread's stack. */
struct run {
	struct job *j;
	struct slot *slot;
	uint32_t *gen; /* per block, --verify only */
	uint8_t *busy; /* per block, --verify only */
	uint64_t nblocks, seq;
	unsigned inflight;
};

static uint64_t now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static uint64_t rnd(uint64_t *s)
{
	uint64_t x = *s;

	x ^= x >> 12;
	x ^= x << 25;
	x ^= x >> 27;
	*s = x;
	return x * 0x2545F4914F6CDD1Dull;
}

static uint64_t payload_sum(const uint8_t *p, size_t len)
{
	uint64_t h = 0xcbf29ce484222325ull, w;
	size_t i;

	for (i = 0; i + 8 <= len; i += 8) {
		memcpy(&w, p + i, 8);
		h = (h ^ w) * 0x100000001b3ull;
		h ^= h >> 29;
	}
	return h;
}

static void fill_block(uint8_t *buf, uint32_t bs, uint64_t offset, uint32_t gen)
{
	struct vhdr h = {.magic = VERIFY_MAGIC, .offset = offset, .gen = gen};
	uint64_t s = offset * 31 + gen + 1, w;
	uint32_t i;

	for (i = sizeof(h); i + 8 <= bs; i += 8) {
		w = rnd(&s);
		memcpy(buf + i, &w, 8);
	}
	h.sum = payload_sum(buf + sizeof(h), bs - sizeof(h));
	memcpy(buf, &h, sizeof(h));
}

static bool check_block(const uint8_t *buf, uint32_t bs, uint64_t offset, uint32_t gen)
{
	struct vhdr h;

	memcpy(&h, buf, sizeof(h));
	return h.magic == VERIFY_MAGIC && h.offset == offset && h.gen == gen &&
	       h.sum == payload_sum(buf + sizeof(h), bs - sizeof(h));
}

static bool is_write(struct run *r)
{
	switch (r->j->o->rw) {
	case RW_WRITE:
	case RW_RANDWRITE:
		return true;
	case RW_RANDRW:
		return rnd(&r->j->rng) % 100 >= r->j->o->rwmixread;
	default:
		return false;
	}
}

/* The next block to address; with --verify, one with no request in flight. */
static uint64_t pick_block(struct run *r)
{
	enum bench_rw rw = r->j->o->rw;
	uint64_t b;

	if (rw == RW_READ || rw == RW_WRITE)
		b = r->seq++ % r->nblocks;
	else
		b = rnd(&r->j->rng) % r->nblocks;
	while (r->busy && r->busy[b])
		b = (b + 1) % r->nblocks;
	return b;
}

static int issue(struct run *r, unsigned s, uint64_t now)
{
	struct job *j = r->j;
	uint32_t bs = j->o->bs;
	uint8_t *buf = j->buf + (size_t)s * bs;
	uint64_t b = pick_block(r);
	struct slot *sl = &r->slot[s];

	sl->offset = j->base + b * bs;
	sl->write = is_write(r);
	sl->start_ns = now;
	if (r->gen) {
		r->busy[b] = 1;
		sl->gen = sl->write ? ++r->gen[b] : r->gen[b];
		if (sl->write)
			fill_block(buf, bs, sl->offset, sl->gen);
	}
	r->inflight++;
	if (sl->write)
		return siov_prep_write(j->q, buf, bs, sl->offset, s);
	return siov_prep_read(j->q, buf, bs, sl->offset, s);
}

static void account(struct run *r, const struct siov_cqe *c, uint64_t now, bool count)
{
	struct job *j = r->j;
	struct slot *sl = &r->slot[c->cookie];
	uint32_t bs = j->o->bs;

	r->inflight--;
	if (r->busy)
		r->busy[(sl->offset - j->base) / bs] = 0;
	if (c->res < 0) {
		j->errors++;
		return;
	}
	if (r->gen && !sl->write && sl->gen) {
		j->verified++;
		if (!check_block(j->buf + c->cookie * bs, bs, sl->offset, sl->gen))
			j->verify_errors++;
	}
	if (!count)
		return;
	j->ios++;
	j->bytes += bs;
	hist_add(&j->hist, now - sl->start_ns);
}

static int reap_some(struct run *r, struct siov_cqe *c)
{
	if (r->j->o->irq)
		return siov_wait(r->j->q, c, BATCH, 1, 1000);
	return siov_reap(r->j->q, c, BATCH);
}

/* Fills every slot once. */
static int loop_start(struct run *r)
{
	uint64_t now = now_ns();
	unsigned s;
	int rc;

	for (s = 0; s < r->j->o->iodepth; s++) {
		rc = issue(r, s, now);
		if (rc)
			return rc;
	}
	return 0;
}

/* One round: submit, reap, refill what completed.  Returns completions or -errno. */
static int loop_step(struct run *r, struct siov_cqe *c)
{
	uint64_t now;
	int n, i, rc;

	rc = siov_submit(r->j->q);
	if (rc < 0)
		return rc;
	n = reap_some(r, c);
	if (n < 0)
		return n;
	r->j->loops++;
	if (!n) {
		/* Waiting on the target: the share of these shows the bench is not the limit. */
		r->j->empty_loops++;
		return 0;
	}
	now = now_ns();
	for (i = 0; i < n; i++) {
		account(r, &c[i], now, true);
		rc = issue(r, (unsigned)c[i].cookie, now);
		if (rc)
			return rc;
	}
	return n;
}

static void wait_go(void)
{
	/* Start together, when main opens the measured window. */
	while (!atomic_load(&bench_go))
		sched_yield();
}

static bool stopping(void)
{
	return atomic_load_explicit(&bench_stop, memory_order_relaxed);
}

/* The steady state: refill every slot that completes, until bench_stop. */
static int loop(struct run *r)
{
	struct siov_cqe c[BATCH];
	int rc;

	wait_go();
	rc = loop_start(r);
	while (!rc && !stopping())
		rc = SIOV_BENCH_MIN0(loop_step(r, c));
	if (rc)
		return rc;
	return siov_submit(r->j->q) < 0 ? -ENOTCONN : 0;
}

/* After the window: let what is in flight finish, uncounted. */
static void drain(struct run *r)
{
	struct siov_cqe c[BATCH];
	uint64_t end = now_ns() + 5000000000ull;
	int n, i;

	while (r->inflight && now_ns() < end) {
		n = siov_wait(r->j->q, c, BATCH, 1, 1000);
		if (n < 0)
			break;
		for (i = 0; i < n; i++)
			account(r, &c[i], 0, false);
	}
}

static int run_init(struct run *r, struct job *j)
{
	memset(r, 0, sizeof(*r));
	r->j = j;
	r->nblocks = j->span / j->o->bs;
	r->slot = calloc(j->o->iodepth, sizeof(*r->slot));
	if (!r->slot)
		return -ENOMEM;
	if (!j->o->verify)
		return 0;
	r->gen = calloc(r->nblocks, sizeof(*r->gen));
	r->busy = calloc(r->nblocks, 1);
	return r->gen && r->busy ? 0 : -ENOMEM;
}

static void run_fini(struct run *r)
{
	free(r->busy);
	free(r->gen);
	free(r->slot);
}

void *job_run(void *arg)
{
	struct job *j = arg;
	struct run r;
	int rc = run_init(&r, j);

	if (!rc && j->pregen)
		memcpy(r.gen, j->pregen, r.nblocks * sizeof(*r.gen));
	free(j->pregen);
	j->pregen = NULL;
	if (!rc)
		rc = loop(&r);
	drain(&r);
	j->fatal = rc;
	run_fini(&r);
	return NULL;
}

/*
 * Many jobs on one thread (--threads): each round visits every job once, so a
 * few threads can keep hundreds of VDEVs busy without a thread per VDEV.
 * Polls only; a job that fails stops alone.
 */
void *job_run_many(void *arg)
{
	struct job_set *set = arg;
	struct siov_cqe c[BATCH];
	struct run *runs = calloc(set->n, sizeof(*runs));
	unsigned i, live = 0;

	for (i = 0; runs && i < set->n; i++) {
		struct job *j = set->jobs[i];
		j->fatal = run_init(&runs[i], j);
		if (!j->fatal && j->pregen)
			memcpy(runs[i].gen, j->pregen, runs[i].nblocks * sizeof(*runs[i].gen));
		free(j->pregen);
		j->pregen = NULL;
	}
	wait_go();
	for (i = 0; runs && i < set->n; i++)
		if (!set->jobs[i]->fatal && !(set->jobs[i]->fatal = loop_start(&runs[i])))
			live++;
	while (runs && live && !stopping()) {
		for (i = 0; i < set->n; i++) {
			int rc;
			if (set->jobs[i]->fatal)
				continue;
			rc = loop_step(&runs[i], c);
			if (rc < 0) {
				set->jobs[i]->fatal = rc;
				live--;
			}
		}
	}
	/* Requests prepared in the last round are not on the ring yet: submit them,
	 * or drain() would wait for completions that can never come. */
	for (i = 0; runs && i < set->n; i++)
		if (!set->jobs[i]->fatal)
			siov_submit(set->jobs[i]->q);
	for (i = 0; runs && i < set->n; i++) {
		drain(&runs[i]);
		run_fini(&runs[i]);
	}
	free(runs);
	return NULL;
}

/* Sequential writes over the whole range, at depth, before the clock starts. */
int job_prefill(struct job *j)
{
	const struct bench_opts *saved = j->o;
	struct bench_opts o = *j->o;
	struct siov_cqe c[BATCH];
	struct run run, *r = &run;
	uint64_t issued = 0;
	int n, i, rc;

	o.rw = RW_WRITE;
	j->o = &o;
	rc = run_init(r, j);
	for (unsigned s = 0; !rc && s < o.iodepth && issued < r->nblocks; s++, issued++)
		rc = issue(r, s, 0);
	while (!rc && r->inflight) {
		rc = siov_submit(j->q);
		if (rc < 0)
			break;
		n = siov_wait(j->q, c, BATCH, 1, 5000);
		rc = n < 0 ? n : 0;
		for (i = 0; i < n && !rc; i++) {
			account(r, &c[i], 0, false);
			if (c[i].res < 0)
				rc = c[i].res;
			else if (issued++ < r->nblocks)
				rc = issue(r, (unsigned)c[i].cookie, 0);
		}
	}
	j->o = saved;
	j->errors = 0;
	/* The generations written are what the timed run's reads must find. */
	j->pregen = r->gen;
	r->gen = NULL;
	run_fini(r);
	return rc;
}
