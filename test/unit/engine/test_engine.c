/*
 * Unit tests for the engine's control handshake (lib/engine/engine.c): attach,
 * detach and rebalancing moves, and what happens when the wake-up eventfd or
 * the io_uring's SQEs fail.  Real engine threads run real virtio-blk queues
 * (lib/virtio/blk.c) over a null backend; a fake guest (../virtio/guest.c)
 * builds requests on split rings in a memfd and waits for the used ring like
 * a driver.
 *
 * Failures are injected with the linker's --wrap: eventfd_write() to any fd
 * that is not one of the test's own kick/call/err fds (that is, to an
 * engine's command eventfd) and siov_io_ctx_get_sqe() (every SQE the engine
 * takes) can be told to fail.
 */
#include <errno.h>
#include <linux/virtio_blk.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include "../virtio/guest.h"
#include "siov_internal/backend.h"
#include "siov_internal/engine.h"
#include "siov_internal/qos.h"
#include "siov_internal/virtio_blk.h"

#define NQ	   2
#define QNUM	   16
#define DISK_SIZE  (1u << 20)
#define HDR_GPA	   (GPA_R0 + 0x1000)
#define STATUS_GPA (GPA_R0 + 0x1100)
#define DATA_GPA   (GPA_R0 + 0x2000)
#define TIMEOUT_NS (5ull * 1000 * 1000 * 1000)
#define MS	   1000000ull

/* ---- failure injection ---- */

int __real_eventfd_write(int fd, eventfd_t value);
int __wrap_eventfd_write(int fd, eventfd_t value);
struct io_uring_sqe *__real_siov_io_ctx_get_sqe(struct siov_io_ctx *ctx);
struct io_uring_sqe *__wrap_siov_io_ctx_get_sqe(struct siov_io_ctx *ctx);

static int g_own_fds[3 * NQ], g_nown;
static int g_wake_skip, g_wake_fail; /* pass the next skip wake-ups, then fail fail of them */
static int g_sqe_fail;		     /* nonzero: every SQE request fails */

static bool own_fd(int fd)
{
	int i;

	for (i = 0; i < g_nown; i++)
		if (g_own_fds[i] == fd)
			return true;
	return false;
}

int __wrap_eventfd_write(int fd, eventfd_t value)
{
	if (!own_fd(fd)) {
		if (__atomic_load_n(&g_wake_skip, __ATOMIC_ACQUIRE) > 0) {
			__atomic_sub_fetch(&g_wake_skip, 1, __ATOMIC_ACQ_REL);
		} else if (__atomic_load_n(&g_wake_fail, __ATOMIC_ACQUIRE) > 0) {
			__atomic_sub_fetch(&g_wake_fail, 1, __ATOMIC_ACQ_REL);
			errno = EIO;
			return -1;
		}
	}
	return __real_eventfd_write(fd, value);
}

struct io_uring_sqe *__wrap_siov_io_ctx_get_sqe(struct siov_io_ctx *ctx)
{
	if (__atomic_load_n(&g_sqe_fail, __ATOMIC_ACQUIRE))
		return NULL;
	return __real_siov_io_ctx_get_sqe(ctx);
}

static void inject_wake(int skip, int fail)
{
	__atomic_store_n(&g_wake_skip, skip, __ATOMIC_RELEASE);
	__atomic_store_n(&g_wake_fail, fail, __ATOMIC_RELEASE);
}

static void inject_sqe(bool fail)
{
	__atomic_store_n(&g_sqe_fail, fail, __ATOMIC_RELEASE);
}

/* ---- fixture: two engines, two blk queues over one null backend ---- */

struct fx {
	struct guest g;
	struct siov_engines *engines;
	struct siov_backend *bd;
	struct siov_blk *blk[NQ];
	struct tq q[NQ];
	int dev_broken[NQ];
};

static uint64_t now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

static int queue_init(struct fx *fx, unsigned i)
{
	struct siov_blk_conf conf = {
	    .name = "eng", .backend = fx->bd, .offset = 0, .size = DISK_SIZE, .queues = 1};
	struct siov_vq *vq = &fx->q[i].vq;

	if (siov_blk_create(&conf, &fx->blk[i]) ||
	    tq_init(&fx->q[i], &fx->g, GPA_R2 + i * 0x1000, QNUM) ||
	    tq_wire(&fx->q[i], siov_blk_dev_ops.vq_ops, fx->blk[i]))
		return -1;
	g_own_fds[g_nown++] = fx->q[i].kick_fd;
	g_own_fds[g_nown++] = fx->q[i].call_fd;
	g_own_fds[g_nown++] = fx->q[i].err_fd;
	vq->dev_broken = &fx->dev_broken[i];
	return 0;
}

/* The engines' options: setup() and setup_hold() differ only here. */
static struct siov_engines_opts g_eo = {.count = 2, .poll_us = 50};

static int setup(void **state)
{
	struct siov_engines_opts eo = g_eo;
	struct siov_backend_conf bc = {
	    .name = "null0", .type = SIOV_BACKEND_NULL, .size = DISK_SIZE};
	struct siov_err err;
	struct fx *fx = calloc(1, sizeof(*fx));
	unsigned i;

	*state = fx;
	inject_wake(0, 0);
	inject_sqe(false);
	g_nown = 0;
	if (!fx || guest_init(&fx->g) || siov_engines_create(&eo, &fx->engines) ||
	    siov_backend_open(&bc, &fx->bd, &err))
		return -1;
	for (i = 0; i < NQ; i++)
		if (queue_init(fx, i))
			return -1;
	return 0;
}

/* Engines that hold polls (siovd's default) and poll a queue for 200 ms after its last request. */
static int setup_hold(void **state)
{
	int rc;

	g_eo = (struct siov_engines_opts){.count = 2, .poll_us = 200000, .hold_ns = 1000};
	rc = setup(state);
	g_eo = (struct siov_engines_opts){.count = 2, .poll_us = 50};
	return rc;
}

static int teardown(void **state)
{
	struct fx *fx = *state;
	unsigned i;

	inject_wake(0, 0);
	inject_sqe(false);
	for (i = 0; i < NQ; i++) {
		siov_engine_detach(&fx->q[i].vq);
		siov_blk_destroy(fx->blk[i]);
		tq_unwire(&fx->q[i]);
	}
	siov_engines_destroy(fx->engines);
	siov_backend_close(fx->bd);
	guest_fini(&fx->g);
	free(fx);
	return 0;
}

/* ---- the driver side ---- */

static struct siov_engine *engine_n(struct fx *fx, unsigned n)
{
	struct siov_engine *e = siov_engines_pick(fx->engines);

	/* Both engines are empty: the first pick is engine 0; a queue on it makes 1 the pick. */
	if (siov_engine_id(e) == n)
		return e;
	return NULL;
}

/* Starts one 4 KiB read on queue qi (head 0), kicking the engine unless told not to. */
static uint16_t start_read(struct fx *fx, unsigned qi, bool kick)
{
	struct tq *q = &fx->q[qi];
	struct virtio_blk_outhdr *h = guest_ptr(&fx->g, HDR_GPA + qi * 0x400);
	uint16_t idx = tq_used_idx(q);

	*h = (struct virtio_blk_outhdr){.type = VIRTIO_BLK_T_IN, .sector = 8};
	tq_desc(q, 0, HDR_GPA + qi * 0x400, sizeof(*h), VRING_DESC_F_NEXT, 1);
	tq_desc(q, 1, DATA_GPA + qi * 0x1000, 4096, VRING_DESC_F_NEXT | VRING_DESC_F_WRITE, 2);
	tq_desc(q, 2, STATUS_GPA + qi * 0x10, 1, VRING_DESC_F_WRITE, 0);
	tq_publish(q, 0);
	if (kick)
		assert_int_equal(__real_eventfd_write(fx->q[qi].kick_fd, 1), 0);
	return idx;
}

static bool wait_used(struct tq *q, uint16_t idx, uint64_t timeout_ns)
{
	uint64_t deadline = now_ns() + timeout_ns;

	while (tq_used_idx(q) != idx) {
		if (now_ns() > deadline)
			return false;
		usleep(50);
	}
	return true;
}

/* Runs n reads on queue qi one after the other; fails the test if one never completes. */
static void run_reads(struct fx *fx, unsigned qi, unsigned n, bool kick)
{
	unsigned i;

	for (i = 0; i < n; i++) {
		uint16_t idx = start_read(fx, qi, kick);
		if (!wait_used(&fx->q[qi], (uint16_t)(idx + 1), TIMEOUT_NS))
			fail_msg("queue %u: read %u never completed", qi, i);
	}
}

/* ---- attach and detach ---- */

static void attach_serves_detach_stops(void **state)
{
	struct fx *fx = *state;
	struct siov_vq *vq = &fx->q[0].vq;
	uint16_t idx;

	assert_int_equal(siov_engine_of(vq), -1);
	assert_int_equal(siov_engine_attach(engine_n(fx, 0), vq), 0);
	assert_int_equal(siov_engine_of(vq), 0);
	assert_int_equal(siov_engine_attach(engine_n(fx, 1), vq), -EBUSY);
	run_reads(fx, 0, 3, true);
	siov_engine_detach(vq);
	assert_int_equal(siov_engine_of(vq), -1);
	/* Detached: a kicked request is nobody's business any more. */
	idx = start_read(fx, 0, true);
	assert_false(wait_used(&fx->q[0], (uint16_t)(idx + 1), 50 * MS));
	/* Attached again, the queue finds the waiting request by itself. */
	assert_int_equal(siov_engine_attach(engine_n(fx, 0), vq), 0);
	assert_true(wait_used(&fx->q[0], (uint16_t)(idx + 1), TIMEOUT_NS));
}

/* A failed wake-up fails the attach: nothing stays on the engine's list, nothing is counted. */
static void attach_fails_cleanly_when_wakeup_fails(void **state)
{
	struct fx *fx = *state;
	struct siov_vq *vq = &fx->q[0].vq;

	inject_wake(0, 1);
	assert_int_equal(siov_engine_attach(engine_n(fx, 0), vq), -EIO);
	assert_int_equal(siov_engine_of(vq), -1);
	/* Had nqueues kept the failed queue, engine 1 would be the pick now. */
	assert_non_null(engine_n(fx, 0));
	/* The engine still works (and under ASan, never touched the dead stack command). */
	assert_int_equal(siov_engine_attach(engine_n(fx, 0), vq), 0);
	run_reads(fx, 0, 2, true);
}

/* A detach whose wake-ups fail is retried until the engine hears it. */
static void detach_survives_failed_wakeups(void **state)
{
	struct fx *fx = *state;
	struct siov_vq *vq = &fx->q[0].vq;
	uint64_t t0;

	assert_int_equal(siov_engine_attach(engine_n(fx, 0), vq), 0);
	run_reads(fx, 0, 1, true);
	usleep(10000); /* let the engine fall asleep */
	inject_wake(0, 3);
	t0 = now_ns();
	siov_engine_detach(vq);
	assert_int_equal(siov_engine_of(vq), -1);
	assert_true(now_ns() - t0 < 2000 * MS);
	assert_int_equal(__atomic_load_n(&g_wake_fail, __ATOMIC_ACQUIRE), 0);
}

struct detacher {
	struct siov_vq *vq;
	bool done;
};

static void *detach_thread(void *arg)
{
	struct detacher *d = arg;

	siov_engine_detach(d->vq);
	__atomic_store_n(&d->done, true, __ATOMIC_RELEASE);
	return NULL;
}

/*
 * No SQE for the kick read's cancel: the detach must neither finish while the
 * read is still outstanding nor wait for ever; it completes once SQEs return.
 */
static void detach_waits_for_sqe_then_finishes(void **state)
{
	struct fx *fx = *state;
	struct detacher d = {.vq = &fx->q[0].vq};
	pthread_t t;
	uint64_t t0;

	assert_int_equal(siov_engine_attach(engine_n(fx, 0), d.vq), 0);
	run_reads(fx, 0, 1, true);
	usleep(10000); /* idle: the queue waits for its next kick, the read is armed */
	inject_sqe(true);
	assert_int_equal(pthread_create(&t, NULL, detach_thread, &d), 0);
	usleep(30000);
	assert_false(__atomic_load_n(&d.done, __ATOMIC_ACQUIRE));
	inject_sqe(false);
	t0 = now_ns();
	while (!__atomic_load_n(&d.done, __ATOMIC_ACQUIRE) && now_ns() - t0 < TIMEOUT_NS)
		usleep(100);
	assert_true(__atomic_load_n(&d.done, __ATOMIC_ACQUIRE));
	pthread_join(t, NULL);
	assert_int_equal(siov_engine_of(d.vq), -1);
}

/*
 * With no SQE at all, the engine still hears commands (it cannot re-arm the
 * command read) and still serves a queue whose kick read it cannot arm.
 */
static void engine_hears_commands_without_sqes(void **state)
{
	struct fx *fx = *state;
	struct siov_vq *vq = &fx->q[0].vq;

	usleep(10000);
	inject_sqe(true);
	/* This command's wake-up consumes the armed read; re-arming it fails. */
	assert_int_equal(siov_engine_attach(engine_n(fx, 0), vq), 0);
	/* The kick read is not armed: the queue keeps being polled, so no kick is needed. */
	run_reads(fx, 0, 3, false);
	/* A second command arrives with no read armed for it. */
	siov_engine_detach(vq);
	assert_int_equal(siov_engine_of(vq), -1);
	assert_int_equal(siov_engine_attach(engine_n(fx, 0), vq), 0);
	run_reads(fx, 0, 1, false);
	inject_sqe(false);
	/* Once SQEs return, the queue goes back to waiting for kicks. */
	usleep(20000);
	run_reads(fx, 0, 3, true);
}

/* ---- moves ---- */

/* Both queues on engine 0, each with more than the balancer's minimum load. */
static void attach_both_to_engine0(struct fx *fx)
{
	struct siov_engine *e0 = engine_n(fx, 0);

	assert_non_null(e0);
	assert_int_equal(siov_engine_attach(e0, &fx->q[0].vq), 0);
	assert_int_equal(siov_engine_attach(e0, &fx->q[1].vq), 0);
	siov_engines_rebalance(fx->engines); /* a first look sets the baseline */
	run_reads(fx, 0, 1100, true);
	run_reads(fx, 1, 1100, true);
	usleep(10000); /* both idle, engine 0 asleep */
}

static void rebalance_moves_one_busy_queue(void **state)
{
	struct fx *fx = *state;

	attach_both_to_engine0(fx);
	assert_int_equal(siov_engines_rebalance(fx->engines), 0);
	assert_int_equal(siov_engines_moves(fx->engines), 1);
	assert_int_not_equal(siov_engine_of(&fx->q[0].vq), siov_engine_of(&fx->q[1].vq));
	run_reads(fx, 0, 2, true);
	run_reads(fx, 1, 2, true);
}

/* The idle engine refuses the queue: it goes back where it was and keeps working. */
static void failed_move_returns_to_old_engine(void **state)
{
	struct fx *fx = *state;

	attach_both_to_engine0(fx);
	inject_wake(1, 1); /* the detach's wake-up passes, the attach's fails */
	assert_int_equal(siov_engines_rebalance(fx->engines), -EIO);
	assert_int_equal(siov_engine_of(&fx->q[0].vq), 0);
	assert_int_equal(siov_engine_of(&fx->q[1].vq), 0);
	assert_false(siov_vq_is_broken(&fx->q[0].vq) || siov_vq_is_broken(&fx->q[1].vq));
	run_reads(fx, 0, 2, true);
	run_reads(fx, 1, 2, true);
}

/* Neither engine takes the queue: it is broken with a reason, not left on no engine. */
static void failed_move_and_return_breaks_queue(void **state)
{
	struct fx *fx = *state;
	unsigned i, moved = NQ;

	attach_both_to_engine0(fx);
	inject_wake(1, 2);
	assert_int_equal(siov_engines_rebalance(fx->engines), -EIO);
	for (i = 0; i < NQ; i++)
		if (siov_engine_of(&fx->q[i].vq) < 0)
			moved = i;
	assert_int_not_equal(moved, NQ);
	assert_true(siov_vq_is_broken(&fx->q[moved].vq));
	assert_non_null(strstr(fx->q[moved].vq.broken_reason, "no engine took the queue back"));
	/* The other queue carries on. */
	run_reads(fx, 1 - moved, 2, true);
}

/* ---- QoS: a throttled request is held, not walked again ---- */

/*
 * Under an IOPS cap most requests must wait for the bucket.  Each is still
 * popped (walked and translated) exactly once: the in-flight record counter,
 * bumped by every pop, ends at the number of requests.
 */
static void qos_walks_each_request_once(void **state)
{
	struct fx *fx = *state;
	struct siov_qos_params p = {.iops_limit = 200, .iops_burst = 1};
	struct siov_vu_inflight_queue *iq =
	    calloc(1, sizeof(*iq) + QNUM * sizeof(struct siov_vu_inflight_desc));
	struct siov_qos_stats st;
	struct siov_qos *qos;
	struct siov_vq *vq = &fx->q[0].vq;

	assert_non_null(iq);
	assert_int_equal(siov_qos_create(&p, NULL, &qos), 0);
	vq->qos = qos;
	vq->inflight = iq;
	assert_int_equal(siov_engine_attach(engine_n(fx, 0), vq), 0);
	run_reads(fx, 0, 6, true);
	siov_engine_detach(vq);
	siov_qos_get(qos, &p, &st);
	assert_true(st.throttled > 0);
	assert_int_equal(st.admitted, 6);
	assert_int_equal(vq->inflight_counter, 6);
	vq->qos = NULL;
	vq->inflight = NULL;
	siov_qos_destroy(qos);
	free(iq);
}

/* A request held for QoS when its queue leaves the engine goes back to the ring. */
static void qos_held_request_survives_detach(void **state)
{
	struct fx *fx = *state;
	struct siov_qos_params p = {.iops_limit = 1, .iops_burst = 1};
	struct siov_qos *qos;
	struct siov_vq *vq = &fx->q[0].vq;
	uint16_t idx, avail;

	assert_int_equal(siov_qos_create(&p, NULL, &qos), 0);
	vq->qos = qos;
	assert_int_equal(siov_engine_attach(engine_n(fx, 0), vq), 0);
	run_reads(fx, 0, 2, true); /* empties the bucket, then runs it into debt */
	idx = start_read(fx, 0, true);
	usleep(20000); /* popped, priced, held: the next token is a second away */
	assert_int_equal(tq_used_idx(&fx->q[0]), idx);
	siov_engine_detach(vq);
	avail = vq->last_avail_idx;
	assert_int_equal(avail, fx->q[0].avail_idx - 1); /* given back */
	/* Without the cap, the next owner finds it in the ring. */
	vq->qos = NULL;
	siov_qos_destroy(qos);
	assert_int_equal(siov_engine_attach(engine_n(fx, 0), vq), 0);
	assert_true(wait_used(&fx->q[0], (uint16_t)(idx + 1), TIMEOUT_NS));
}

/*
 * A driver at QD 1 (one request, then wait for it) gains nothing from a held
 * poll, only latency: the engine may try a hold, but must never keep one,
 * and every request still completes.  The driver spins, as a polling one
 * does, so the engine sees rounds with work back to back.  Afterwards, idle,
 * the engine uses no CPU.
 */
static void qd1_driver_never_keeps_a_hold(void **state)
{
	struct fx *fx = *state;
	struct siov_engine *e = engine_n(fx, 0);
	struct siov_engine_stats st;
	uint64_t cpu0;
	unsigned i;

	assert_int_equal(siov_engine_attach(e, &fx->q[0].vq), 0);
	for (i = 0; i < 20000; i++) {
		uint16_t idx = start_read(fx, 0, i == 0);
		uint64_t deadline = now_ns() + TIMEOUT_NS;

		/*
		 * Kick when the device asks for it, as a real driver does: a
		 * test thread descheduled past the grace period finds the
		 * engine asleep with kicks on, and without one it never wakes.
		 */
		__atomic_thread_fence(__ATOMIC_SEQ_CST);
		if (i && !(__atomic_load_n(&fx->q[0].used->flags, __ATOMIC_RELAXED) &
			   VRING_USED_F_NO_NOTIFY))
			assert_int_equal(__real_eventfd_write(fx->q[0].kick_fd, 1), 0);
		while (tq_used_idx(&fx->q[0]) != (uint16_t)(idx + 1))
			if (now_ns() > deadline)
				fail_msg("read %u never completed", i);
	}
	siov_engine_get_stats(e, &st);
	assert_true(st.popped >= 20000);
	assert_int_equal(st.hold_kept, 0);
	print_message("engine 0: %llu trials of a hold, %llu polls held, none kept\n",
		      (unsigned long long)st.hold_trials, (unsigned long long)st.holds);
	/* Idle after the grace period (200 ms here), it sleeps: no CPU, holds or not. */
	usleep(400000);
	siov_engine_get_stats(e, &st);
	cpu0 = st.cpu_ns;
	usleep(200000);
	siov_engine_get_stats(e, &st);
	assert_true(st.cpu_ns - cpu0 < 10 * MS);
}

int main(void)
{
#define T(f) cmocka_unit_test_setup_teardown(f, setup, teardown)
	const struct CMUnitTest tests[] = {
	    T(attach_serves_detach_stops),
	    T(attach_fails_cleanly_when_wakeup_fails),
	    T(detach_survives_failed_wakeups),
	    T(detach_waits_for_sqe_then_finishes),
	    T(engine_hears_commands_without_sqes),
	    T(rebalance_moves_one_busy_queue),
	    T(failed_move_returns_to_old_engine),
	    T(failed_move_and_return_breaks_queue),
	    T(qos_walks_each_request_once),
	    T(qos_held_request_survives_detach),
	    cmocka_unit_test_setup_teardown(qd1_driver_never_keeps_a_hold, setup_hold, teardown),
	};

#undef T
	return cmocka_run_group_tests(tests, NULL, NULL);
}
