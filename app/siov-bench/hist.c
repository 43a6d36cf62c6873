/*
 * The latency histogram of siov-bench: log-linear buckets (values below 64 ns
 * exact, then 32 buckets per power of two), so recording is a few integer
 * operations and no allocation, and percentiles come out within 3%.
 */
#include "bench.h"

static unsigned bucket_of(uint64_t v)
{
	unsigned e;

	if (v < (2u << HIST_SUB_BITS))
		return (unsigned)v;
	e = 63u - (unsigned)__builtin_clzll(v);
	return (2u << HIST_SUB_BITS) + (e - HIST_SUB_BITS - 1) * (1u << HIST_SUB_BITS) +
	       (unsigned)((v >> (e - HIST_SUB_BITS)) & ((1u << HIST_SUB_BITS) - 1));
}

/* The middle of bucket @b, the value a percentile in it reports. */
static uint64_t value_of(unsigned b)
{
	unsigned e, sub;
	uint64_t lo;

	if (b < (2u << HIST_SUB_BITS))
		return b;
	b -= 2u << HIST_SUB_BITS;
	e = b / (1u << HIST_SUB_BITS) + HIST_SUB_BITS + 1;
	sub = b % (1u << HIST_SUB_BITS);
	lo = (1ull << e) + ((uint64_t)sub << (e - HIST_SUB_BITS));
	return lo + (1ull << (e - HIST_SUB_BITS)) / 2;
}

void hist_add(struct hist *h, uint64_t ns)
{
	h->count[bucket_of(ns)]++;
	h->n++;
	h->sum_ns += ns;
	if (ns > h->max_ns)
		h->max_ns = ns;
}

void hist_merge(struct hist *dst, const struct hist *src)
{
	unsigned i;

	for (i = 0; i < HIST_BUCKETS; i++)
		dst->count[i] += src->count[i];
	dst->n += src->n;
	dst->sum_ns += src->sum_ns;
	if (src->max_ns > dst->max_ns)
		dst->max_ns = src->max_ns;
}

uint64_t hist_percentile(const struct hist *h, double p)
{
	uint64_t want = (uint64_t)(p * (double)h->n), seen = 0;
	unsigned i;

	if (!h->n)
		return 0;
	if (want >= h->n)
		want = h->n - 1;
	for (i = 0; i < HIST_BUCKETS; i++) {
		seen += h->count[i];
		if (seen > want)
			return value_of(i);
	}
	return h->max_ns;
}
