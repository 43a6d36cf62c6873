/*
 * QoS buckets.  Each limit is a token bucket that may run into debt: a request
 * is admitted while the bucket is not in debt and then charged its full cost,
 * so a request larger than the burst still goes through, and the average rate
 * stays exact.  A VDEV and its group each have an IOPS and a bandwidth bucket;
 * the reservation is one more bucket, filled at iops_min, that the engine
 * drains first.  Buckets are shared by a VDEV's queues on several engines, so
 * each siov_qos has a small spinlock; the critical sections are a few adds.
 *
 * A group's budget is shared by weight among its active members, whichever
 * engines serve them: each member has share buckets refilled at its weight's
 * part of the group's rates.  While the group bucket is contended (below 90 %
 * full) a member past its share waits even if the group would admit it; so a
 * member alone on a quiet engine, which asks more often than members sharing
 * a busy one, cannot take the others' part.  When the group bucket fills up
 * (the others do not use their part) anyone may borrow what the others are
 * not owed (the tokens in their share buckets): nothing is wasted, and a
 * member a few ms late on a busy engine still gets its part.
 *
 * When the backend, not the engine, is the bottleneck, credit alone cannot
 * serve a reservation: the unreserved VDEVs' requests fill the device queue
 * and the reserved one's wait behind them.  So a reserved VDEV whose credit
 * piles up while it has requests at the backend, and whose requests take so
 * long there that what it keeps in flight cannot deliver its reservation
 * with 25 % to spare (latency measured as it runs, Little's law; the spare
 * is the time a request spends outside siovd), marks its domain short; for a
 * while after that the unreserved VDEVs there keep at most
 * SIOV_QOS_SHORT_INFLIGHT requests in flight.  Nobody short, no bound: no
 * capacity is held back, and a VDEV whose own front end is slow holds
 * nobody back.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "siov_internal/qos.h"

struct bucket {
	double rate;   /* tokens per ns; 0 = unlimited */
	double depth;  /* most tokens it holds */
	double tokens; /* may go negative: debt */
	uint64_t last;
};

/*
 * A member counts as active if it asked for admission this recently: long
 * enough for an engine starved of CPU for tens of ms (a loaded machine) to
 * keep its members' parts; a member that stopped only lends its part for
 * that long (the others borrow it meanwhile, see may_borrow()).
 */
#define GROUP_ACTIVE_NS 100000000ull
/*
 * A member past its part may borrow only from a group bucket this full: the
 * others left that much unused for a while.  Lower, and a member that asks
 * more often than the others (alone on its engine) borrows the others' part.
 */
#define BORROW_FILL 0.9
/* How often a group recomputes its members' active weight. */
#define GROUP_RECOUNT_NS 1000000ull

struct siov_qos {
	int lock;
	struct siov_qos_params p;
	struct bucket iops, bps, resv;
	struct siov_qos *group;
	struct siov_qos_stats stats;
	/* As a group member: its part of the group's rates, and when it last asked. */
	struct bucket share_iops, share_bps;
	uint64_t last_ask;
	struct siov_qos *next_member;
	struct siov_qos_domain *dom; /* the backend's, or NULL */
	/*
	 * As a group: its members (under the group's lock), their active
	 * weight, and what they are still owed of their parts (the tokens in
	 * their share buckets), recounted together.
	 */
	struct siov_qos *members;
	uint64_t active_weight, weight_at;
	double owed_iops, owed_bps;
};

static void lock(struct siov_qos *q)
{
	while (__atomic_exchange_n(&q->lock, 1, __ATOMIC_ACQUIRE))
		while (__atomic_load_n(&q->lock, __ATOMIC_RELAXED))
#if defined(__x86_64__) || defined(__i386__)
			__builtin_ia32_pause();
#else
			;
#endif
}

/* Writers hold the lock; readers load without it. */
static void stat_add(uint64_t *f, uint64_t v)
{
	__atomic_store_n(f, *f + v, __ATOMIC_RELAXED);
}

static void unlock(struct siov_qos *q)
{
	__atomic_store_n(&q->lock, 0, __ATOMIC_RELEASE);
}

int siov_qos_params_check(const struct siov_qos_params *p, const char **why)
{
	const char *w = NULL;

	if (p->weight > SIOV_QOS_WEIGHT_MAX)
		w = "weight must be 1..10000";
	else if (p->iops_min && p->iops_limit && p->iops_min > p->iops_limit)
		w = "iops_min is larger than iops_limit";
	else if (p->iops_limit > 100000000ull || p->iops_min > 100000000ull)
		w = "an IOPS figure above 100M is not a limit";
	if (why)
		*why = w;
	return w ? -EINVAL : 0;
}

static void bucket_set(struct bucket *b, uint64_t rate, uint64_t burst, uint64_t min_depth)
{
	uint64_t depth = burst ? burst : rate / 10;

	if (depth < min_depth)
		depth = min_depth;
	b->rate = (double)rate / 1e9;
	b->depth = (double)depth;
	if (b->tokens > b->depth)
		b->tokens = b->depth;
}

static void apply(struct siov_qos *q, const struct siov_qos_params *p)
{
	q->p = *p;
	if (!q->p.weight)
		q->p.weight = SIOV_QOS_WEIGHT_DEFAULT;
	bucket_set(&q->iops, p->iops_limit, p->iops_burst, 1);
	bucket_set(&q->bps, p->bps_limit, p->bps_burst, 1u << 20);
	bucket_set(&q->resv, p->iops_min, 0, 1);
}

int siov_qos_create(const struct siov_qos_params *p, struct siov_qos *group, struct siov_qos **out)
{
	struct siov_qos *q;

	if (siov_qos_params_check(p, NULL))
		return -EINVAL;
	q = calloc(1, sizeof(*q));
	if (!q)
		return -ENOMEM;
	apply(q, p);
	/* Start full: a new VDEV may burst at once. */
	q->iops.tokens = q->iops.depth;
	q->bps.tokens = q->bps.depth;
	q->group = group;
	if (group) {
		lock(group);
		q->next_member = group->members;
		group->members = q;
		unlock(group);
	}
	*out = q;
	return 0;
}

void siov_qos_destroy(struct siov_qos *q)
{
	struct siov_qos **pp;

	if (!q)
		return;
	if (q->group) {
		lock(q->group);
		for (pp = &q->group->members; *pp; pp = &(*pp)->next_member) {
			if (*pp == q) {
				*pp = q->next_member;
				break;
			}
		}
		unlock(q->group);
	}
	free(q);
}

int siov_qos_set(struct siov_qos *q, const struct siov_qos_params *p)
{
	if (siov_qos_params_check(p, NULL))
		return -EINVAL;
	lock(q);
	apply(q, p);
	unlock(q);
	return 0;
}

void siov_qos_get(const struct siov_qos *q, struct siov_qos_params *p, struct siov_qos_stats *s)
{
	if (p)
		*p = q->p;
	if (s) {
		s->admitted = __atomic_load_n(&q->stats.admitted, __ATOMIC_RELAXED);
		s->admitted_bytes = __atomic_load_n(&q->stats.admitted_bytes, __ATOMIC_RELAXED);
		s->throttled = __atomic_load_n(&q->stats.throttled, __ATOMIC_RELAXED);
		s->throttled_ns = __atomic_load_n(&q->stats.throttled_ns, __ATOMIC_RELAXED);
		s->reserved = __atomic_load_n(&q->stats.reserved, __ATOMIC_RELAXED);
	}
}

static void refill(struct bucket *b, uint64_t now)
{
	if (now > b->last) {
		b->tokens += (double)(now - b->last) * b->rate;
		if (b->tokens > b->depth)
			b->tokens = b->depth;
	}
	b->last = now;
}

/* 0 if b lets a request through now, else ns until it is out of debt. */
static uint64_t bucket_wait(struct bucket *b, uint64_t now)
{
	if (b->rate == 0)
		return 0;
	refill(b, now);
	if (b->tokens >= 0)
		return 0;
	return (uint64_t)(-b->tokens / b->rate) + 1;
}

static void bucket_charge(struct bucket *b, double cost)
{
	if (b->rate != 0)
		b->tokens -= cost;
}

/* Ns until both of q's limit buckets admit a request; caller holds q's lock. */
static uint64_t limits_wait(struct siov_qos *q, uint64_t now)
{
	uint64_t a = bucket_wait(&q->iops, now), b = bucket_wait(&q->bps, now);

	return a > b ? a : b;
}

bool siov_qos_limited(const struct siov_qos *q)
{
	return q->p.iops_limit || q->p.bps_limit ||
	       (q->group && (q->group->p.iops_limit || q->group->p.bps_limit));
}

/* The tokens a share bucket would hold now, if positive (0 for an unused one). */
static double share_level(const struct bucket *s, uint64_t now)
{
	double t;

	if (s->rate == 0 || s->last == 0)
		return 0;
	t = s->tokens + (now > s->last ? (double)(now - s->last) * s->rate : 0);
	t = t > s->depth ? s->depth : t;
	return t > 0 ? t : 0;
}

/*
 * Sum of the weights of g's members that asked lately, and what those are
 * still owed of their parts; caller holds g's lock (which guards every
 * member's share buckets).
 */
static uint64_t group_active_weight(struct siov_qos *g, uint64_t now)
{
	struct siov_qos *m;
	uint64_t w = 0;

	/* Engines' clocks differ by up to a round: a stamp may lie a little ahead of now. */
	if (g->weight_at && g->weight_at + GROUP_RECOUNT_NS > now)
		return g->active_weight;
	g->owed_iops = g->owed_bps = 0;
	for (m = g->members; m; m = m->next_member) {
		if (__atomic_load_n(&m->last_ask, __ATOMIC_RELAXED) + GROUP_ACTIVE_NS <= now)
			continue;
		w += m->p.weight;
		g->owed_iops += share_level(&m->share_iops, now);
		g->owed_bps += share_level(&m->share_bps, now);
	}
	g->active_weight = w;
	g->weight_at = now;
	return w;
}

/*
 * A member past its part may borrow from the group bucket only what nobody
 * is owed: the bucket is nearly full (the others left their parts unused for
 * a while) and holds more than the others' share buckets.  Without the
 * second rule a member on a quiet engine, which asks first, takes what a
 * member on a busy engine was about to claim a few ms late.
 */
static bool may_borrow(const struct bucket *gb, double owed)
{
	return gb->tokens >= gb->depth * BORROW_FILL && gb->tokens - owed >= 1;
}

/* Refills a share bucket at part of the group bucket's rate (depth likewise, at least min). */
static void share_refill(struct bucket *s, const struct bucket *gb, double part, double min,
			 uint64_t now)
{
	s->rate = gb->rate * part;
	s->depth = gb->depth * part > min ? gb->depth * part : min;
	if (s->last == 0)
		s->tokens = s->depth;
	refill(s, now);
}

/*
 * Ns until q's part of its group's budget admits a request (0: now).  A
 * member past its part waits only while the group bucket is contended.
 * Caller holds q's and g's locks.
 */
static uint64_t share_wait(struct siov_qos *q, struct siov_qos *g, uint64_t now)
{
	uint64_t w = group_active_weight(g, now), a = 0, b = 0;
	double part = w > q->p.weight ? (double)q->p.weight / (double)w : 1.0;

	if (part >= 1.0) {
		/* Alone (or the only one asking): no part to keep, and no debt to build. */
		q->share_iops.rate = q->share_bps.rate = 0;
		return 0;
	}
	if (g->iops.rate != 0) {
		share_refill(&q->share_iops, &g->iops, part, 1, now);
		if (q->share_iops.tokens < 0 && !may_borrow(&g->iops, g->owed_iops))
			a = (uint64_t)(-q->share_iops.tokens / q->share_iops.rate) + 1;
	}
	if (g->bps.rate != 0) {
		share_refill(&q->share_bps, &g->bps, part, 1u << 20, now);
		if (q->share_bps.tokens < 0 && !may_borrow(&g->bps, g->owed_bps))
			b = (uint64_t)(-q->share_bps.tokens / q->share_bps.rate) + 1;
	}
	return a > b ? a : b;
}

bool siov_qos_admit(struct siov_qos *q, uint64_t now, uint64_t bytes, uint64_t *retry_ns)
{
	struct siov_qos *g = q->group;
	uint64_t wait;

	lock(q);
	wait = limits_wait(q, now);
	if (!wait && g) {
		__atomic_store_n(&q->last_ask, now, __ATOMIC_RELAXED);
		lock(g);
		wait = limits_wait(g, now);
		if (!wait)
			wait = share_wait(q, g, now);
		if (!wait) {
			bucket_charge(&g->iops, 1);
			bucket_charge(&g->bps, (double)bytes);
			bucket_charge(&q->share_iops, 1);
			bucket_charge(&q->share_bps, (double)bytes);
			stat_add(&g->stats.admitted, 1);
			stat_add(&g->stats.admitted_bytes, bytes);
		}
		unlock(g);
	}
	if (!wait) {
		bucket_charge(&q->iops, 1);
		bucket_charge(&q->bps, (double)bytes);
		stat_add(&q->stats.admitted, 1);
		stat_add(&q->stats.admitted_bytes, bytes);
	} else {
		stat_add(&q->stats.throttled, 1);
	}
	unlock(q);
	*retry_ns = now + wait;
	return wait == 0;
}

/* A reservation is short when 2 ms of it are unused: the VDEV wanted more than it got. */
#define SHORT_NS      2000000ull
#define SHORT_HOLD_NS 20000000ull
/*
 * Little's law below counts only the time a request spends in siovd; a
 * request also spends time outside (completion -> the client wakes ->
 * resubmits -> popped), 10-25 % of it for a QD 8 client on interrupts on
 * a loaded machine.  Without headroom a victim whose 8 in flight "deliver"
 * 601 IOPS against a 528 reservation got 484 (92 %), and nobody was held
 * back.
 */
#define SHORT_MARGIN 1.25

unsigned siov_qos_reserved_credit(struct siov_qos *q, uint64_t now)
{
	double t;

	if (!q->p.iops_min)
		return 0;
	lock(q);
	refill(&q->resv, now);
	t = q->resv.tokens;
	unlock(q);
	return t >= 1 ? (unsigned)t : 0;
}

void siov_qos_note_backlog(struct siov_qos *q, uint64_t now, unsigned credit, uint64_t inflight,
			   uint64_t lat_ns)
{
	/*
	 * Short: credit piled up while requests wait at the backend.  A VDEV
	 * that asks for less than its reservation piles up credit too, but
	 * with nothing of it in flight: that is no reason to hold others back.
	 * Nor is one whose requests come back fast enough: inflight / lat_ns
	 * is what it completes per ns, so if that covers iops_min the backend
	 * is not what keeps it short (its front end is).
	 */
	if (!q->dom || !inflight || credit < 2 || credit < (double)q->p.iops_min * SHORT_NS / 1e9)
		return;
	if (lat_ns &&
	    (double)inflight * 1e9 >= SHORT_MARGIN * (double)q->p.iops_min * (double)lat_ns)
		return;
	__atomic_store_n(&q->dom->short_until, now + SHORT_HOLD_NS, __ATOMIC_RELAXED);
}

void siov_qos_set_domain(struct siov_qos *q, struct siov_qos_domain *dom)
{
	q->dom = dom;
}

uint32_t siov_qos_inflight_cap(const struct siov_qos *q, uint64_t now)
{
	if (!q->dom || q->p.iops_min ||
	    now >= __atomic_load_n(&q->dom->short_until, __ATOMIC_RELAXED))
		return UINT32_MAX;
	return SIOV_QOS_SHORT_INFLIGHT;
}

void siov_qos_reserved_take(struct siov_qos *q, unsigned n)
{
	if (!n)
		return;
	lock(q);
	q->resv.tokens -= n;
	stat_add(&q->stats.reserved, n);
	unlock(q);
}

uint32_t siov_qos_weight(const struct siov_qos *q)
{
	return q ? q->p.weight : SIOV_QOS_WEIGHT_DEFAULT;
}

void siov_qos_note_wait(struct siov_qos *q, uint64_t ns)
{
	__atomic_fetch_add(&q->stats.throttled_ns, ns, __ATOMIC_RELAXED);
}
