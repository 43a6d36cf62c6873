/*
 * QoS arithmetic: token buckets (IOPS and bytes, VDEV and group), their
 * bursts and debt, reservations and parameter checks, driven on a simulated
 * clock so that every figure is exact and the test is immune to machine noise.
 */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdbool.h>
#include <stdint.h>
#include <cmocka.h>

#include "siov_internal/qos.h"

#define SEC  1000000000ull
#define MSEC 1000000ull

/* Admits as many requests of @bytes as the buckets allow over [t0, t0+span). */
static uint64_t run(struct siov_qos *q, uint64_t t0, uint64_t span, uint64_t bytes)
{
	uint64_t t = t0, n = 0, retry;

	while (t < t0 + span) {
		if (siov_qos_admit(q, t, bytes, &retry)) {
			n++;
		} else {
			assert_true(retry > t);
			t = retry;
		}
	}
	return n;
}

static void iops_limit_holds_over_ten_seconds(void **state)
{
	struct siov_qos_params p = {.iops_limit = 5000};
	struct siov_qos *q;
	uint64_t n;

	assert_int_equal(siov_qos_create(&p, NULL, &q), 0);
	n = run(q, SEC, 10 * SEC, 4096);
	/* 10 s at 5000/s plus the initial burst of 500 (100 ms). */
	assert_in_range(n, 50000, 50000 + 501);
	siov_qos_destroy(q);
}

static void bps_limit_counts_bytes_not_requests(void **state)
{
	struct siov_qos_params p = {.bps_limit = 100u << 20};
	struct siov_qos *q;
	uint64_t big, small;

	assert_int_equal(siov_qos_create(&p, NULL, &q), 0);
	/* Merged 1 MiB requests cannot escape the cap... */
	big = run(q, SEC, 10 * SEC, 1u << 20);
	assert_in_range(big, 1000, 1000 + 12);
	siov_qos_destroy(q);
	assert_int_equal(siov_qos_create(&p, NULL, &q), 0);
	/* ...and neither can 4 KiB ones: same bytes per second. */
	small = run(q, SEC, 10 * SEC, 4096);
	assert_in_range(small * 4096, 1000ull << 20, (1000ull + 12) << 20);
	siov_qos_destroy(q);
}

static void iops_limit_catches_tiny_requests(void **state)
{
	struct siov_qos_params p = {.iops_limit = 1000, .bps_limit = 1ull << 30};
	struct siov_qos *q;

	assert_int_equal(siov_qos_create(&p, NULL, &q), 0);
	assert_in_range(run(q, SEC, 10 * SEC, 512), 10000, 10101);
	siov_qos_destroy(q);
}

static void group_limit_is_shared(void **state)
{
	struct siov_qos_params gp = {.iops_limit = 3000}, vp = {0};
	struct siov_qos *g, *a, *b;
	uint64_t t, na = 0, nb = 0, retry;

	assert_int_equal(siov_qos_create(&gp, NULL, &g), 0);
	assert_int_equal(siov_qos_create(&vp, g, &a), 0);
	assert_int_equal(siov_qos_create(&vp, g, &b), 0);
	/*
	 * Two unlimited VDEVs of one group, asked in varying order (the engine
	 * rotates which queue it polls first, and its rounds are not in step with
	 * the refill): together they get the group's 3000/s, shared about evenly.
	 */
	for (t = SEC; t < 11 * SEC; t += 10000) {
		uint32_t r = (uint32_t)(t / 10000) * 2654435761u;
		struct siov_qos *first = (r >> 16) & 1 ? a : b, *second = first == a ? b : a;
		bool f = siov_qos_admit(first, t, 4096, &retry);
		bool s2 = siov_qos_admit(second, t, 4096, &retry);
		na += first == a ? f : s2;
		nb += first == a ? s2 : f;
	}
	assert_in_range(na + nb, 30000, 30000 + 301);
	assert_in_range(na, 13500, 16500);
	siov_qos_destroy(a);
	siov_qos_destroy(b);
	siov_qos_destroy(g);
}

/*
 * Three equal members of a group limited to 6000/s, one of them asking four
 * times as often as the others (alone on a quiet engine, the others sharing a
 * busy one): each still gets about a third.  Then the frequent one alone: it
 * may have the whole budget.
 */
static void group_share_holds_across_engines(void **state)
{
	struct siov_qos_params gp = {.iops_limit = 6000}, vp = {0};
	struct siov_qos *g, *m[3];
	uint64_t t, n[3] = {0}, solo = 0, retry;
	unsigned i;

	assert_int_equal(siov_qos_create(&gp, NULL, &g), 0);
	for (i = 0; i < 3; i++)
		assert_int_equal(siov_qos_create(&vp, g, &m[i]), 0);
	for (t = SEC; t < 11 * SEC; t += 20000) {
		/* Time only moves forward, as on a real clock. */
		n[0] += siov_qos_admit(m[0], t, 4096, &retry);
		n[1] += siov_qos_admit(m[1], t + 1000, 4096, &retry);
		n[2] += siov_qos_admit(m[2], t + 2000, 4096, &retry);
		for (i = 1; i < 4; i++)
			n[0] += siov_qos_admit(m[0], t + i * 5000, 4096, &retry);
	}
	assert_in_range(n[0] + n[1] + n[2], 60000, 60000 + 601);
	for (i = 0; i < 3; i++)
		assert_in_range(n[i], 18000, 22000);
	for (t = 12 * SEC; t < 22 * SEC; t += 5000)
		solo += siov_qos_admit(m[0], t, 4096, &retry);
	assert_in_range(solo, 59000, 60000 + 601);
	for (i = 0; i < 3; i++)
		siov_qos_destroy(m[i]);
	siov_qos_destroy(g);
}

/*
 * Two members on a starved engine come back only every 40 ms and then take
 * what they are owed at once; the third, alone on a quiet engine, asks every
 * 20 us.  The late ones still count as active and get their thirds: the
 * early one may borrow from the group only what the others are not owed.
 */
static void late_members_keep_their_part(void **state)
{
	struct siov_qos_params gp = {.iops_limit = 6000}, vp = {0};
	struct siov_qos *g, *m[3];
	uint64_t t, n[3] = {0}, retry;
	unsigned i, k;

	assert_int_equal(siov_qos_create(&gp, NULL, &g), 0);
	for (i = 0; i < 3; i++)
		assert_int_equal(siov_qos_create(&vp, g, &m[i]), 0);
	for (t = SEC; t < 11 * SEC; t += 20000) {
		n[0] += siov_qos_admit(m[0], t, 4096, &retry);
		if ((t / 20000) % 2000)
			continue;
		for (i = 1; i < 3; i++)
			for (k = 0; k < 1000 && siov_qos_admit(m[i], t + i * 1000, 4096, &retry);
			     k++)
				n[i]++;
	}
	assert_in_range(n[0] + n[1] + n[2], 59000, 60000 + 601);
	for (i = 0; i < 3; i++)
		assert_in_range(n[i], 18000, 22000);
	for (i = 0; i < 3; i++)
		siov_qos_destroy(m[i]);
	siov_qos_destroy(g);
}

/*
 * A reserved VDEV whose credit piles up (it cannot start requests as fast as
 * it is owed them) because its requests are slow at the backend bounds what
 * the unreserved VDEVs of its backend keep in flight, for a while; a reserved
 * VDEV that keeps up, or whose requests come back fast enough, bounds nobody.
 */
static void short_reservation_bounds_unreserved(void **state)
{
	struct siov_qos_params rp = {.iops_min = 3000}, up = {0};
	struct siov_qos_domain dom = {0};
	struct siov_qos *r, *u;
	uint64_t t;

	assert_int_equal(siov_qos_create(&rp, NULL, &r), 0);
	assert_int_equal(siov_qos_create(&up, NULL, &u), 0);
	siov_qos_set_domain(r, &dom);
	siov_qos_set_domain(u, &dom);
	/* Keeping up: every ms it takes the 3 requests it is owed. */
	for (t = SEC; t < SEC + 50 * MSEC; t += MSEC)
		siov_qos_reserved_take(r, siov_qos_reserved_credit(r, t));
	assert_int_equal(siov_qos_inflight_cap(u, t), UINT32_MAX);
	/* Asking for less than its reservation, nothing in flight: not short. */
	t += 10 * MSEC;
	siov_qos_note_backlog(r, t, siov_qos_reserved_credit(r, t), 0, 0);
	assert_int_equal(siov_qos_inflight_cap(u, t), UINT32_MAX);
	/*
	 * Behind, but 8 requests in flight at 1 ms each deliver 8,000/s: the
	 * backend keeps up, its front end does not send enough.  Not short.
	 */
	assert_true(siov_qos_reserved_credit(r, t) >= 6);
	siov_qos_note_backlog(r, t, siov_qos_reserved_credit(r, t), 8, 1 * MSEC);
	assert_int_equal(siov_qos_inflight_cap(u, t), UINT32_MAX);
	/* Falling behind: 10 ms owed, 8 requests at the backend taking 5 ms each (1,600/s). */
	siov_qos_note_backlog(r, t, siov_qos_reserved_credit(r, t), 8, 5 * MSEC);
	assert_int_equal(siov_qos_inflight_cap(u, t), SIOV_QOS_SHORT_INFLIGHT);
	assert_int_equal(siov_qos_inflight_cap(r, t), UINT32_MAX);
	/* The bound lapses once nobody is short any more. */
	assert_int_equal(siov_qos_inflight_cap(u, t + 100 * MSEC), UINT32_MAX);
	/*
	 * 8 at 2.5 ms "deliver" 3,200/s, but the time outside siovd (the client
	 * resubmitting) is not in that: less than 25 % to spare is short.
	 */
	t += 100 * MSEC;
	siov_qos_note_backlog(r, t, siov_qos_reserved_credit(r, t), 8, 2500 * 1000);
	assert_int_equal(siov_qos_inflight_cap(u, t), SIOV_QOS_SHORT_INFLIGHT);
	siov_qos_destroy(r);
	siov_qos_destroy(u);
}

static void set_changes_rate_at_run_time(void **state)
{
	struct siov_qos_params p = {.iops_limit = 1000};
	struct siov_qos *q;
	uint64_t n1, n2;

	assert_int_equal(siov_qos_create(&p, NULL, &q), 0);
	n1 = run(q, SEC, 5 * SEC, 4096);
	p.iops_limit = 4000;
	assert_int_equal(siov_qos_set(q, &p), 0);
	n2 = run(q, 6 * SEC, 5 * SEC, 4096);
	assert_in_range(n1, 5000, 5101);
	assert_in_range(n2, 20000, 20000 + 401);
	siov_qos_destroy(q);
}

static void reservation_credit_accrues_at_iops_min(void **state)
{
	struct siov_qos_params p = {.iops_min = 200};
	struct siov_qos_stats s;
	struct siov_qos *q;
	unsigned c;

	assert_int_equal(siov_qos_create(&p, NULL, &q), 0);
	/* It starts full (100 ms' worth), like the limit buckets. */
	assert_int_equal(siov_qos_reserved_credit(q, SEC), 20);
	siov_qos_reserved_take(q, 20);
	/* 50 ms at 200/s is 10 requests. */
	c = siov_qos_reserved_credit(q, SEC + 50000000);
	assert_in_range(c, 9, 10);
	siov_qos_reserved_take(q, c);
	assert_int_equal(siov_qos_reserved_credit(q, SEC + 50000000), 0);
	assert_in_range(siov_qos_reserved_credit(q, 10 * SEC), 19, 20);
	siov_qos_get(q, NULL, &s);
	assert_int_equal(s.reserved, 20 + c);
	siov_qos_destroy(q);
}

static void params_are_checked(void **state)
{
	struct siov_qos_params p = {.weight = 20000};
	const char *why = NULL;
	struct siov_qos *q;

	assert_int_equal(siov_qos_params_check(&p, &why), -EINVAL);
	assert_non_null(why);
	p = (struct siov_qos_params){.iops_limit = 100, .iops_min = 200};
	assert_int_equal(siov_qos_params_check(&p, &why), -EINVAL);
	assert_int_equal(siov_qos_create(&p, NULL, &q), -EINVAL);
	p = (struct siov_qos_params){0};
	assert_int_equal(siov_qos_create(&p, NULL, &q), 0);
	assert_int_equal(siov_qos_weight(q), SIOV_QOS_WEIGHT_DEFAULT);
	assert_false(siov_qos_limited(q));
	siov_qos_destroy(q);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(iops_limit_holds_over_ten_seconds),
	    cmocka_unit_test(bps_limit_counts_bytes_not_requests),
	    cmocka_unit_test(iops_limit_catches_tiny_requests),
	    cmocka_unit_test(group_limit_is_shared),
	    cmocka_unit_test(group_share_holds_across_engines),
	    cmocka_unit_test(late_members_keep_their_part),
	    cmocka_unit_test(short_reservation_bounds_unreserved),
	    cmocka_unit_test(set_changes_rate_at_run_time),
	    cmocka_unit_test(reservation_credit_accrues_at_iops_min),
	    cmocka_unit_test(params_are_checked),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
