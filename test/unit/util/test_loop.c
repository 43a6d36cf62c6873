/*
 * The control loop's urgent watches: a front end's vhost-user message must
 * not wait behind a round of management calls.  These tests drive the real
 * loop over pipes and record the order in which callbacks run.
 */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "siov_internal/loop.h"

#define NPIPE 4

struct order {
	char seen[32];
	int n;
	int pipes[NPIPE][2];
	int poke; /* index of the pipe the first ordinary callback makes ready */
	struct siov_watch *w[NPIPE];
};

struct tag {
	struct order *o;
	char name;
	int idx;
};

static void drain_cb(struct siov_watch *w, uint32_t events, void *arg)
{
	struct tag *t = arg;
	char c;

	(void)w;
	(void)events;
	if (read(t->o->pipes[t->idx][0], &c, 1) != 1)
		return;
	t->o->seen[t->o->n++] = t->name;
	/* The first ordinary callback makes the urgent fd ready mid-round. */
	if (t->o->poke >= 0 && t->name != 'U') {
		ssize_t k = write(t->o->pipes[t->o->poke][1], "x", 1);
		(void)k;
		t->o->poke = -1;
	}
}

static void setup_pipes(struct order *o)
{
	memset(o, 0, sizeof(*o));
	for (int i = 0; i < NPIPE; i++)
		assert_int_equal(pipe(o->pipes[i]), 0);
}

static void close_pipes(struct order *o)
{
	for (int i = 0; i < NPIPE; i++) {
		close(o->pipes[i][0]);
		close(o->pipes[i][1]);
	}
}

/* An urgent fd that becomes ready during a round runs before the next ordinary callback. */
static void loop_urgent_preempts_a_round(void **state)
{
	struct siov_loop *loop;
	struct order o;
	struct tag t[NPIPE];

	(void)state;
	setup_pipes(&o);
	assert_int_equal(siov_loop_create(&loop), 0);
	for (int i = 0; i < 3; i++) {
		t[i] = (struct tag){&o, (char)('A' + i), i};
		assert_int_equal(
		    siov_loop_add(loop, o.pipes[i][0], EPOLLIN, drain_cb, &t[i], &o.w[i]), 0);
		assert_int_equal(write(o.pipes[i][1], "x", 1), 1);
	}
	t[3] = (struct tag){&o, 'U', 3};
	assert_int_equal(
	    siov_loop_add_urgent(loop, o.pipes[3][0], EPOLLIN, drain_cb, &t[3], &o.w[3]), 0);
	o.poke = 3;
	assert_true(siov_loop_run_once(loop, 1000) >= 3);
	assert_int_equal(o.n, 4);
	/* One ordinary callback ran first (it made U ready), then U, then the other two. */
	assert_int_equal(o.seen[1], 'U');
	assert_int_not_equal(o.seen[0], 'U');
	siov_loop_destroy(loop);
	close_pipes(&o);
}

/* An urgent fd alone wakes the loop and is served; ready with ordinary ones, it goes first. */
static void loop_urgent_first_and_wakes(void **state)
{
	struct siov_loop *loop;
	struct order o;
	struct tag t[2];

	(void)state;
	setup_pipes(&o);
	o.poke = -1;
	assert_int_equal(siov_loop_create(&loop), 0);
	t[0] = (struct tag){&o, 'A', 0};
	t[1] = (struct tag){&o, 'U', 1};
	assert_int_equal(siov_loop_add(loop, o.pipes[0][0], EPOLLIN, drain_cb, &t[0], &o.w[0]), 0);
	assert_int_equal(
	    siov_loop_add_urgent(loop, o.pipes[1][0], EPOLLIN, drain_cb, &t[1], &o.w[1]), 0);
	assert_int_equal(write(o.pipes[1][1], "x", 1), 1);
	assert_true(siov_loop_run_once(loop, 1000) >= 1);
	assert_int_equal(o.n, 1);
	assert_int_equal(o.seen[0], 'U');

	assert_int_equal(write(o.pipes[0][1], "x", 1), 1);
	assert_int_equal(write(o.pipes[1][1], "x", 1), 1);
	assert_true(siov_loop_run_once(loop, 1000) >= 1);
	assert_int_equal(o.n, 3);
	assert_int_equal(o.seen[1], 'U');
	assert_int_equal(o.seen[2], 'A');

	/* mod and del act on the urgent set: a deleted urgent watch no longer runs. */
	assert_int_equal(siov_loop_mod(o.w[1], EPOLLIN), 0);
	siov_loop_del(o.w[1]);
	assert_int_equal(write(o.pipes[1][1], "x", 1), 1);
	assert_int_equal(siov_loop_run_once(loop, 50), 0);
	assert_int_equal(o.n, 3);
	siov_loop_destroy(loop);
	close_pipes(&o);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(loop_urgent_preempts_a_round),
	    cmocka_unit_test(loop_urgent_first_and_wakes),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
