/*
 * Engine threads.  One loop per thread:
 *   1. poll the active queues (those kicked recently): the device model pops
 *      and submits requests;
 *   2. run deferred completions, submit the batch of SQEs, reap CQEs (backend
 *      I/O, kicks, commands from the control thread);
 *   3. notify drivers whose used rings advanced, once per queue per round;
 *   4. if nothing happened and no queue is within its grace period, sleep in
 *      io_uring until a kick, a completion or a command arrives.
 * Kicks are eventfd reads kept outstanding on the ring, so a busy queue costs
 * no syscall per request and an idle one costs nothing at all.
 */
#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/mman.h>
#include <sys/timerfd.h>
#include <unistd.h>
#include <liburing.h>

#include "siov_internal/backend.h"
#include "siov_internal/engine.h"
#include "siov_internal/log.h"
#include "siov_internal/loop.h"
#include "siov_internal/qos.h"
#include "siov_internal/virtqueue.h"

#define ENGINE_RING_ENTRIES 256
#define ENGINE_CQ_ENTRIES   4096
#define ENGINE_BUDGET	    32 /* requests popped per queue per round */
/*
 * A queue stays polled for the grace period *and* this many empty rounds: with
 * a thousand busy queues a round outlasts the grace period, and a queue that
 * left the active list between two of its requests would cost a kick each.
 */
#define ENGINE_IDLE_ROUNDS 4

/* io_uring user_data tags (low 3 bits); 0 is a backend struct siov_io. */
#define UD_KICK	  1ull
#define UD_CMD	  2ull
#define UD_IGNORE 3ull

enum cmd_op { CMD_ATTACH, CMD_DETACH, CMD_STOP };

struct engine_cmd {
	enum cmd_op op;
	struct siov_vq *vq;
	bool done;
	struct engine_cmd *next;
};

struct siov_engine {
	unsigned id;
	pthread_t thread;
	struct io_uring ring;
	struct siov_io_ctx ioctx;
	uint64_t poll_ns;
	int cmd_efd;
	uint64_t cmd_buf;
	pthread_mutex_t lock;
	pthread_cond_t cond;
	struct engine_cmd *cmds;
	unsigned nqueues; /* read by the control thread under lock */
	struct siov_vq *queues;
	struct siov_vq *active;
	struct siov_vq *notify;
	bool stopping;
	bool busy;		  /* a queue is polling (in work or in its grace period) */
	uint64_t next_wake;	  /* earliest QoS wake-up among throttled queues, 0 = none */
	uint32_t wmax, wmax_next; /* heaviest QoS weight among last round's / this round's queues */
	/* The control thread's own list of this engine's queues, for the balancer. */
	struct siov_vq **ctl_vqs;
	unsigned ctl_n, ctl_cap;
	uint64_t now; /* refreshed each round; queues read it through vq->clock */
};

struct siov_engines {
	unsigned count;
	struct siov_engine *engines;
	struct siov_loop *loop;
	int timer_fd;
	struct siov_watch *timer_w;
	uint64_t moves;
	unsigned cooldown; /* balancing periods to skip after a move */
};

/*
 * Front-end memory is a shared file mapping the front end can shrink under us
 * (ftruncate of its memfd); touching a vanished page raises SIGBUS.  siovd has
 * no other shared file mappings, so a SIGBUS is always a front end's doing: the
 * handler maps a private zero page over the hole so the access completes, and
 * the engine breaks every queue whose memory table holds that address.
 */
static __thread void *volatile t_fault_addr;
static __thread volatile sig_atomic_t t_faulted;

static void on_sigbus(int sig, siginfo_t *si, void *uc)
{
	long page = sysconf(_SC_PAGESIZE);
	void *p = (void *)((uintptr_t)si->si_addr & ~((uintptr_t)page - 1));

	if (si->si_code != BUS_ADRERR ||
	    mmap(p, (size_t)page, PROT_READ | PROT_WRITE, MAP_FIXED | MAP_PRIVATE | MAP_ANONYMOUS,
		 -1, 0) == MAP_FAILED) {
		signal(SIGBUS, SIG_DFL);
		return;
	}
	t_fault_addr = si->si_addr;
	t_faulted = 1;
}

static void install_sigbus(void)
{
	struct sigaction sa = {.sa_sigaction = on_sigbus, .sa_flags = SA_SIGINFO | SA_NODEFER};

	sigemptyset(&sa.sa_mask);
	sigaction(SIGBUS, &sa, NULL);
}

static void check_faults(struct siov_engine *e)
{
	struct siov_vq *vq;

	if (!t_faulted)
		return;
	t_faulted = 0;
	for (vq = e->queues; vq; vq = vq->next)
		if (vq->mem && siov_memtable_owns(vq->mem, t_fault_addr))
			siov_vq_break(vq, "front-end memory vanished (region shrunk or unmapped)");
}

static struct io_uring_sqe *engine_sqe(struct siov_engine *e)
{
	return siov_io_ctx_get_sqe(&e->ioctx);
}

static void arm_cmd(struct siov_engine *e)
{
	struct io_uring_sqe *sqe = engine_sqe(e);

	if (!sqe) {
		SIOV_ERR("engine %u: no SQE for the command eventfd", e->id);
		return;
	}
	io_uring_prep_read(sqe, e->cmd_efd, &e->cmd_buf, sizeof(e->cmd_buf), 0);
	io_uring_sqe_set_data64(sqe, (uint64_t)(uintptr_t)e | UD_CMD);
}

static void arm_kick(struct siov_engine *e, struct siov_vq *vq)
{
	struct io_uring_sqe *sqe;

	if (vq->kick_fd < 0 || vq->kick_armed || vq->detaching)
		return;
	sqe = engine_sqe(e);
	if (!sqe) {
		SIOV_ERR("engine %u: no SQE to arm queue %u's kick", e->id, vq->index);
		return;
	}
	io_uring_prep_read(sqe, vq->kick_fd, &vq->kick_buf, sizeof(vq->kick_buf), 0);
	io_uring_sqe_set_data64(sqe, (uint64_t)(uintptr_t)vq | UD_KICK);
	vq->kick_armed = true;
}

static void activate(struct siov_engine *e, struct siov_vq *vq, uint64_t now)
{
	vq->last_work_ns = now;
	vq->idle_rounds = 0;
	if (vq->active || vq->detaching)
		return;
	vq->active = true;
	siov_vq_disable_notify(vq);
	vq->next_active = e->active;
	e->active = vq;
}

void siov_engine_note_used(struct siov_vq *vq)
{
	struct siov_engine *e = vq->engine;

	if (vq->on_notify)
		return;
	vq->on_notify = true;
	vq->next_notify = e->notify;
	e->notify = vq;
}

static void flush_notify(struct siov_engine *e)
{
	while (e->notify) {
		struct siov_vq *vq = e->notify;
		e->notify = vq->next_notify;
		vq->on_notify = false;
		siov_vq_notify(vq);
	}
}

/*
 * How many requests vq may start this round.  Without QoS, a fixed batch.
 * With QoS, deficit round robin: each round a queue earns credit in
 * proportion to its weight, so among queues that all want more, the engine's
 * time is shared by weight; the reservation's credit comes on top, so
 * reservations are served whatever the weights say.
 */
static unsigned queue_budget(struct siov_engine *e, struct siov_vq *vq, uint64_t now,
			     unsigned *reserved)
{
	uint32_t w;
	double quantum;

	*reserved = 0;
	if (!vq->qos)
		return ENGINE_BUDGET;
	/* The heaviest active queue gets a full batch a round, the others their share of it. */
	w = siov_qos_weight(vq->qos);
	if (w > e->wmax_next)
		e->wmax_next = w;
	quantum = (double)ENGINE_BUDGET * w / (e->wmax ? e->wmax : w);
	vq->deficit += quantum;
	if (vq->deficit > ENGINE_BUDGET * 2)
		vq->deficit = ENGINE_BUDGET * 2;
	*reserved = SIOV_MIN(siov_qos_reserved_credit(vq->qos, now), ENGINE_BUDGET);
	return SIOV_MIN((unsigned)vq->deficit + *reserved, ENGINE_BUDGET * 2);
}

static void queue_charge(struct siov_vq *vq, unsigned budget, unsigned reserved, unsigned n)
{
	unsigned from_resv = SIOV_MIN(n, reserved);

	if (!vq->qos)
		return;
	siov_qos_reserved_take(vq->qos, from_resv);
	vq->deficit -= n - from_resv;
	/* A queue that ran dry does not bank credit (classic DRR). */
	if (n < budget && vq->throttle_until <= vq->last_work_ns)
		vq->deficit = 0;
}

/* Runs one active queue; returns requests started, or sets *keep = false to drop it. */
static unsigned poll_one(struct siov_engine *e, struct siov_vq *vq, uint64_t now, bool *keep)
{
	unsigned budget, reserved, n;

	*keep = true;
	if (vq->detaching || siov_vq_is_broken(vq)) {
		*keep = false;
		return 0;
	}
	if (vq->throttle_until > now) {
		/* Waiting for a QoS bucket: not idle, but nothing to do before then. */
		if (!e->next_wake || vq->throttle_until < e->next_wake)
			e->next_wake = vq->throttle_until;
		return 0;
	}
	if (vq->throttle_until) {
		siov_qos_note_wait(vq->qos, now > vq->last_work_ns ? now - vq->last_work_ns : 0);
		vq->throttle_until = 0;
	}
	/* The common case while spinning is an empty ring: one load, nothing else. */
	if (siov_vq_has_work(vq) || vq->resubmit_pos < vq->resubmit_num) {
		if (e->now == now)
			e->now = now = siov_now_ns();
		budget = queue_budget(e, vq, now, &reserved);
		n = budget ? vq->ops->process(vq, &e->ioctx, budget) : 0;
		queue_charge(vq, budget, reserved, n);
	} else {
		n = 0;
	}
	if (n || vq->throttle_until > now) {
		vq->last_work_ns = now;
		vq->idle_rounds = 0;
		e->busy = true;
	} else if (SIOV_STAT_GET(vq->stats.inflight)) {
		/*
		 * Waiting for the backend: stay active with kicks off, but let the
		 * engine sleep; each completion wakes it, and the driver's refill is
		 * found then (completions restart the grace period).  Spinning here
		 * instead would keep io_uring's completion task_work from running.
		 */
	} else if (++vq->idle_rounds > ENGINE_IDLE_ROUNDS && now > vq->last_work_ns &&
		   now - vq->last_work_ns > e->poll_ns) {
		/* Re-arm kicks, then look once more: the driver may have raced us. */
		*keep = siov_vq_enable_notify(vq);
		if (*keep) {
			siov_vq_disable_notify(vq);
			e->busy = true;
		}
	} else {
		e->busy = true;
	}
	return n;
}

/* Polls every active queue once; drops the ones idle for longer than the grace period. */
static unsigned poll_active(struct siov_engine *e, uint64_t now)
{
	struct siov_vq **pp = &e->active;
	unsigned work = 0;

	e->next_wake = 0;
	e->busy = false;
	e->wmax = e->wmax_next;
	e->wmax_next = 0;
	/* Rotate who goes first, so queues that share a group bucket share it evenly. */
	if (e->active && e->active->next_active) {
		struct siov_vq *first = e->active, **tail = &e->active;
		e->active = first->next_active;
		while (*tail)
			tail = &(*tail)->next_active;
		*tail = first;
		first->next_active = NULL;
	}
	while (*pp) {
		struct siov_vq *vq = *pp;
		bool keep;

		work += poll_one(e, vq, now, &keep);
		if (keep) {
			pp = &vq->next_active;
		} else {
			*pp = vq->next_active;
			vq->active = false;
		}
	}
	return work;
}

static void queue_unlink(struct siov_engine *e, struct siov_vq *vq)
{
	struct siov_vq **pp;

	for (pp = &e->active; *pp; pp = &(*pp)->next_active) {
		if (*pp == vq) {
			*pp = vq->next_active;
			break;
		}
	}
	vq->active = false;
	for (pp = &e->queues; *pp; pp = &(*pp)->next) {
		if (*pp == vq) {
			*pp = vq->next;
			break;
		}
	}
}

static void cmd_done(struct siov_engine *e, struct engine_cmd *c)
{
	pthread_mutex_lock(&e->lock);
	c->done = true;
	pthread_cond_broadcast(&e->cond);
	pthread_mutex_unlock(&e->lock);
}

/* A detaching queue leaves once nothing of it is in flight on the ring. */
static bool try_finish_detach(struct siov_engine *e, struct siov_vq *vq)
{
	if (vq->kick_armed || SIOV_STAT_GET(vq->stats.inflight))
		return false;
	siov_vq_notify(vq);
	queue_unlink(e, vq);
	if (vq->ops->release)
		vq->ops->release(vq);
	vq->engine = NULL;
	pthread_mutex_lock(&e->lock);
	e->nqueues--;
	pthread_mutex_unlock(&e->lock);
	return true;
}

static void cmd_attach(struct siov_engine *e, struct siov_vq *vq, uint64_t now)
{
	vq->next = e->queues;
	e->queues = vq;
	vq->clock = &e->now;
	vq->kick_armed = false;
	vq->detaching = false;
	arm_kick(e, vq);
	/* Requests may be waiting already (a restart, or a kick we never saw). */
	activate(e, vq, now);
}

static void cmd_detach(struct siov_engine *e, struct siov_vq *vq)
{
	struct io_uring_sqe *sqe;

	vq->detaching = true;
	if (!vq->kick_armed)
		return;
	sqe = engine_sqe(e);
	if (!sqe)
		return;
	io_uring_prep_cancel64(sqe, (uint64_t)(uintptr_t)vq | UD_KICK, 0);
	io_uring_sqe_set_data64(sqe, UD_IGNORE);
}

static void run_cmds(struct siov_engine *e, struct engine_cmd **waiting, uint64_t now)
{
	struct engine_cmd *list, *c, *rev = NULL;

	pthread_mutex_lock(&e->lock);
	list = e->cmds;
	e->cmds = NULL;
	pthread_mutex_unlock(&e->lock);
	/* Commands were pushed LIFO; run them in arrival order.  Detaches wait
	 * on *waiting until their queue is drained. */
	while (list) {
		c = list;
		list = c->next;
		c->next = rev;
		rev = c;
	}
	while (rev) {
		c = rev;
		rev = c->next;
		switch (c->op) {
		case CMD_ATTACH:
			cmd_attach(e, c->vq, now);
			cmd_done(e, c);
			break;
		case CMD_DETACH:
			cmd_detach(e, c->vq);
			c->next = *waiting;
			*waiting = c;
			break;
		case CMD_STOP:
			e->stopping = true;
			cmd_done(e, c);
			break;
		}
	}
}

static void check_detaches(struct siov_engine *e, struct engine_cmd **waiting)
{
	struct engine_cmd **pp = waiting;

	while (*pp) {
		struct engine_cmd *c = *pp;
		if (try_finish_detach(e, c->vq)) {
			*pp = c->next;
			cmd_done(e, c);
		} else {
			pp = &c->next;
		}
	}
}

static void handle_kick(struct siov_engine *e, struct siov_vq *vq, int res, uint64_t now)
{
	vq->kick_armed = false;
	if (res < 0) {
		if (res != -ECANCELED && res != -EINTR)
			SIOV_WARN("engine %u: queue %u kick fd: %s", e->id, vq->index,
				  strerror(-res));
		if (res != -EINTR && res != -EAGAIN)
			return;
	} else {
		SIOV_STAT_ADD(vq->stats.kicks, 1);
	}
	if (vq->detaching)
		return;
	arm_kick(e, vq);
	if (!siov_vq_is_broken(vq))
		activate(e, vq, now);
}

static unsigned reap(struct siov_engine *e, struct engine_cmd **waiting, uint64_t now)
{
	struct io_uring_cqe *cqe;
	unsigned head, n = 0;

	io_uring_for_each_cqe(&e->ring, head, cqe)
	{
		uint64_t ud = cqe->user_data;
		void *p = (void *)(uintptr_t)(ud & ~SIOV_UD_TAG_MASK);

		n++;
		switch (ud & SIOV_UD_TAG_MASK) {
		case SIOV_UD_IO:
			siov_io_ctx_handle_cqe(&e->ioctx, cqe);
			break;
		case UD_KICK:
			handle_kick(e, p, cqe->res, now);
			break;
		case UD_CMD:
			arm_cmd(e);
			run_cmds(e, waiting, now);
			break;
		default:
			break;
		}
	}
	io_uring_cq_advance(&e->ring, n);
	return n;
}

static void submit(struct siov_engine *e, bool wait)
{
	int rc;

	if (wait)
		rc = io_uring_submit_and_wait(&e->ring, 1);
	else if (e->ioctx.unsubmitted)
		rc = io_uring_submit(&e->ring);
	else
		return;
	if (rc >= 0 || rc == -EINTR || rc == -EAGAIN || rc == -EBUSY)
		e->ioctx.unsubmitted = 0;
	if (rc < 0 && rc != -EINTR && rc != -EAGAIN && rc != -EBUSY)
		SIOV_ERR("engine %u: io_uring submit: %s", e->id, strerror(-rc));
}

/* Sleeps until a CQE arrives or, if a queue is throttled, until its bucket refills. */
static void submit_and_sleep(struct siov_engine *e)
{
	struct __kernel_timespec ts;
	struct io_uring_cqe *cqe;
	uint64_t now, wait;
	int rc;

	if (!e->next_wake) {
		submit(e, true);
		return;
	}
	now = siov_now_ns();
	if (e->next_wake <= now)
		return;
	wait = e->next_wake - now;
	ts.tv_sec = (long long)(wait / 1000000000ull);
	ts.tv_nsec = (long long)(wait % 1000000000ull);
	rc = io_uring_submit_and_wait_timeout(&e->ring, &cqe, 1, &ts, NULL);
	if (rc >= 0 || rc == -ETIME || rc == -EINTR)
		e->ioctx.unsubmitted = 0;
}

static void *engine_main(void *arg)
{
	struct siov_engine *e = arg;
	struct engine_cmd *waiting = NULL;

	unsigned idle = 0, work = 1;

	arm_cmd(e);
	while (!e->stopping || waiting) {
		uint64_t now;

		/*
		 * While spinning on empty rings, read the clock only now and then:
		 * a shorter spin notices a new request sooner.  poll_one() reads it
		 * afresh the moment a ring has work, so request stamps stay exact.
		 */
		if (work || ++idle % 64 == 0)
			e->now = siov_now_ns();
		if (work)
			idle = 0;
		now = e->now;
		work = poll_active(e, now);
		work += siov_io_ctx_run_deferred(&e->ioctx);
		submit(e, false);
		if (io_uring_cq_ready(&e->ring))
			e->now = siov_now_ns();
		work += reap(e, &waiting, now);
		work += siov_io_ctx_run_deferred(&e->ioctx);
		flush_notify(e);
		check_faults(e);
		if (waiting)
			check_detaches(e, &waiting);
		if (work || e->busy)
			continue;
		submit_and_sleep(e);
	}
	return NULL;
}

static int engine_post(struct siov_engine *e, struct engine_cmd *c)
{
	pthread_mutex_lock(&e->lock);
	c->done = false;
	c->next = e->cmds;
	e->cmds = c;
	pthread_mutex_unlock(&e->lock);
	if (eventfd_write(e->cmd_efd, 1) < 0)
		return -errno;
	pthread_mutex_lock(&e->lock);
	while (!c->done)
		pthread_cond_wait(&e->cond, &e->lock);
	pthread_mutex_unlock(&e->lock);
	return 0;
}

static int ctl_add(struct siov_engine *e, struct siov_vq *vq)
{
	if (e->ctl_n == e->ctl_cap) {
		unsigned cap = e->ctl_cap ? e->ctl_cap * 2 : 16;
		struct siov_vq **a = realloc(e->ctl_vqs, cap * sizeof(*a));
		if (!a)
			return -ENOMEM;
		e->ctl_vqs = a;
		e->ctl_cap = cap;
	}
	e->ctl_vqs[e->ctl_n++] = vq;
	return 0;
}

static void ctl_remove(struct siov_engine *e, struct siov_vq *vq)
{
	unsigned i;

	for (i = 0; i < e->ctl_n; i++) {
		if (e->ctl_vqs[i] == vq) {
			e->ctl_vqs[i] = e->ctl_vqs[--e->ctl_n];
			return;
		}
	}
}

int siov_engine_attach(struct siov_engine *e, struct siov_vq *vq)
{
	struct engine_cmd c = {.op = CMD_ATTACH, .vq = vq};
	int rc;

	if (vq->engine)
		return -EBUSY;
	rc = ctl_add(e, vq);
	if (rc)
		return rc;
	vq->engine = e;
	vq->bal_requests = SIOV_STAT_GET(vq->stats.requests);
	pthread_mutex_lock(&e->lock);
	e->nqueues++;
	pthread_mutex_unlock(&e->lock);
	rc = engine_post(e, &c);
	if (rc) {
		ctl_remove(e, vq);
		vq->engine = NULL;
	}
	return rc;
}

void siov_engine_detach(struct siov_vq *vq)
{
	struct engine_cmd c = {.op = CMD_DETACH, .vq = vq};
	struct siov_engine *e = vq->engine;

	if (!e)
		return;
	engine_post(e, &c);
	ctl_remove(e, vq);
}

/* ---- balancing: queues move from a hot engine to a cool one ---- */

/* Requests each queue completed since the last look; returns the engine's total. */
static uint64_t engine_load(struct siov_engine *e, uint64_t *qload)
{
	uint64_t sum = 0;
	unsigned i;

	for (i = 0; i < e->ctl_n; i++) {
		struct siov_vq *vq = e->ctl_vqs[i];
		uint64_t now = SIOV_STAT_GET(vq->stats.requests);
		if (qload)
			qload[i] = now - vq->bal_requests;
		sum += now - vq->bal_requests;
		vq->bal_requests = now;
	}
	return sum;
}

/*
 * Moves the queue whose load best halves the gap between the busiest and the
 * idlest engine.  Moving is a detach (in-flight requests finish) and an attach:
 * the ring keeps its state, the driver sees a pause of microseconds, not an error.
 */
int siov_engines_rebalance(struct siov_engines *es)
{
	uint64_t *loads[256] = {0}, tot[256] = {0}, gap, best_d = UINT64_MAX;
	unsigned i, hot = 0, cold = 0, best = 0;
	bool found = false;
	int rc = 0;

	/* After a move, let the loads settle for a couple of periods before judging again. */
	if (es->cooldown) {
		es->cooldown--;
		for (i = 0; i < es->count; i++)
			engine_load(&es->engines[i], NULL);
		return 0;
	}

	for (i = 0; i < es->count; i++) {
		loads[i] = calloc(es->engines[i].ctl_n + 1, sizeof(uint64_t));
		if (!loads[i]) {
			rc = -ENOMEM;
			goto out;
		}
		tot[i] = engine_load(&es->engines[i], loads[i]);
		if (tot[i] > tot[hot])
			hot = i;
		if (tot[i] < tot[cold])
			cold = i;
	}
	gap = tot[hot] - tot[cold];
	/* Not worth a pause: small loads or an imbalance under a quarter. */
	if (hot == cold || gap < 1000 || gap * 4 < tot[hot])
		goto out;
	for (i = 0; i < es->engines[hot].ctl_n; i++) {
		uint64_t l = loads[hot][i], d;
		/* Only a move that at least halves the gap: small ones just ping-pong. */
		if (l < gap / 4 || l > gap - gap / 4)
			continue;
		d = l > gap / 2 ? l - gap / 2 : gap / 2 - l;
		if (d < best_d) {
			best_d = d;
			best = i;
			found = true;
		}
	}
	if (found) {
		struct siov_vq *vq = es->engines[hot].ctl_vqs[best];
		siov_engine_detach(vq);
		rc = siov_engine_attach(&es->engines[cold], vq);
		es->moves++;
		es->cooldown = 2;
		SIOV_INFO("engines: moved vdev %s queue %u from engine %u to %u (%s)",
			  vq->dev_name ? vq->dev_name : "?", vq->index, hot, cold,
			  rc ? strerror(-rc) : "ok");
	}
out:
	for (i = 0; i < es->count; i++)
		free(loads[i]);
	return rc;
}

static void on_balance_timer(struct siov_watch *w, uint32_t events, void *arg)
{
	struct siov_engines *es = arg;
	uint64_t n;

	if (read(es->timer_fd, &n, sizeof(n)) == sizeof(n))
		siov_engines_rebalance(es);
}

static int balance_timer_start(struct siov_engines *es, unsigned period_ms)
{
	struct itimerspec its = {
	    .it_interval = {.tv_sec = period_ms / 1000, .tv_nsec = (period_ms % 1000) * 1000000L},
	};
	int rc;

	its.it_value = its.it_interval;
	es->timer_fd = timerfd_create(CLOCK_MONOTONIC, TFD_NONBLOCK | TFD_CLOEXEC);
	if (es->timer_fd < 0)
		return -errno;
	if (timerfd_settime(es->timer_fd, 0, &its, NULL) < 0)
		return -errno;
	rc = siov_loop_add(es->loop, es->timer_fd, EPOLLIN, on_balance_timer, es, &es->timer_w);
	return rc;
}

uint64_t siov_engines_moves(const struct siov_engines *es)
{
	return es->moves;
}

static int engine_init(struct siov_engine *e, unsigned id, uint64_t poll_ns)
{
	struct io_uring_params p = {.flags = IORING_SETUP_CQSIZE, .cq_entries = ENGINE_CQ_ENTRIES};
	int rc;

	e->id = id;
	e->poll_ns = poll_ns;
	pthread_mutex_init(&e->lock, NULL);
	pthread_cond_init(&e->cond, NULL);
	e->cmd_efd = eventfd(0, EFD_CLOEXEC);
	if (e->cmd_efd < 0)
		return -errno;
	rc = io_uring_queue_init_params(ENGINE_RING_ENTRIES, &e->ring, &p);
	if (rc < 0)
		goto err_ring;
	siov_io_ctx_init(&e->ioctx, &e->ring);
	rc = -pthread_create(&e->thread, NULL, engine_main, e);
	if (rc)
		goto err_thread;
	return 0;

err_thread:
	io_uring_queue_exit(&e->ring);
err_ring:
	close(e->cmd_efd);
	return rc;
}

static void engine_fini(struct siov_engine *e)
{
	struct engine_cmd c = {.op = CMD_STOP};

	engine_post(e, &c);
	pthread_join(e->thread, NULL);
	io_uring_queue_exit(&e->ring);
	close(e->cmd_efd);
	pthread_cond_destroy(&e->cond);
	pthread_mutex_destroy(&e->lock);
}

int siov_engines_create(const struct siov_engines_opts *opts, struct siov_engines **out)
{
	struct siov_engines *es;
	long ncpu = sysconf(_SC_NPROCESSORS_ONLN);
	unsigned i, n = opts->count ? opts->count : (ncpu > 0 ? (unsigned)ncpu : 1);
	int rc;

	if (n > 256)
		return -EINVAL;
	install_sigbus();
	es = calloc(1, sizeof(*es));
	if (!es)
		return -ENOMEM;
	es->engines = calloc(n, sizeof(*es->engines));
	if (!es->engines) {
		free(es);
		return -ENOMEM;
	}
	es->timer_fd = -1;
	for (i = 0; i < n; i++) {
		rc = engine_init(&es->engines[i], i, (uint64_t)opts->poll_us * 1000);
		if (rc)
			goto err;
		es->count++;
	}
	es->loop = opts->loop;
	if (es->loop && es->count > 1 && opts->balance_ms) {
		rc = balance_timer_start(es, opts->balance_ms);
		if (rc)
			goto err;
	}
	*out = es;
	return 0;

err:
	siov_engines_destroy(es);
	return rc;
}

void siov_engines_destroy(struct siov_engines *es)
{
	unsigned i;

	if (!es)
		return;
	siov_loop_del(es->timer_w);
	if (es->timer_fd >= 0)
		close(es->timer_fd);
	for (i = 0; i < es->count; i++) {
		engine_fini(&es->engines[i]);
		free(es->engines[i].ctl_vqs);
	}
	free(es->engines);
	free(es);
}

unsigned siov_engines_count(const struct siov_engines *es)
{
	return es->count;
}

struct siov_engine *siov_engines_pick(struct siov_engines *es)
{
	struct siov_engine *best = &es->engines[0];
	unsigned i, best_n = ~0u;

	for (i = 0; i < es->count; i++) {
		struct siov_engine *e = &es->engines[i];
		unsigned n;
		pthread_mutex_lock(&e->lock);
		n = e->nqueues;
		pthread_mutex_unlock(&e->lock);
		if (n < best_n) {
			best = e;
			best_n = n;
		}
	}
	return best;
}

unsigned siov_engine_id(const struct siov_engine *e)
{
	return e->id;
}

int siov_engines_stats(struct siov_engines *es, unsigned i, struct siov_engine_stats *out)
{
	struct siov_engine *e;
	struct timespec ts;
	clockid_t cid;

	if (i >= es->count)
		return -ENOENT;
	e = &es->engines[i];
	/* The thread's CPU clock: time spent polling and working, never asleep in the ring. */
	if (pthread_getcpuclockid(e->thread, &cid) != 0 || clock_gettime(cid, &ts) < 0)
		return -EIO;
	out->cpu_ns = (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
	pthread_mutex_lock(&e->lock);
	out->queues = e->nqueues;
	pthread_mutex_unlock(&e->lock);
	return 0;
}
