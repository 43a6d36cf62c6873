/*
 * Engine threads.  One loop per thread:
 *   1. poll the active queues (those kicked recently): the device model pops
 *      and submits requests;
 *   2. run deferred completions, submit the batch of SQEs in one call, fetch
 *      the completions the kernel holds for us (DEFER_TASKRUN), reap CQEs
 *      (backend I/O, kicks, commands from the control thread);
 *   3. notify drivers whose used rings advanced, once per queue per round;
 *   4. if nothing happened and no queue is within its grace period (queues
 *      waiting for the backend count as busy through it), turn kicks on for
 *      the queues still polled and sleep in io_uring until a kick, a
 *      completion or a command arrives.  docs/performance.md says why.
 * Kicks are eventfd reads kept outstanding on the ring, so a busy queue costs
 * no syscall per request and an idle one costs nothing at all.
 */
#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <sys/timerfd.h>
#include <time.h>
#include <unistd.h>
#include <liburing.h>

#include "siov_internal/backend.h"
#include "siov_internal/device.h"
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
/*
 * Submits remembered for timing submit -> CQE (a power of two): a CQE whose
 * submit is older than this many submits is not timed (engine_stats says how
 * many were).
 */
#define ENGINE_SUB_HISTORY 256
/* Longest sleep while an SQE the engine needs was refused (command read, cancel, kick). */
#define ENGINE_RETRY_NS 1000000ull
/*
 * Holding the next poll back (docs/performance.md, "Holding a poll back"):
 * a driver that publishes its requests one by one (SPDK's virtio-user does)
 * makes a polling engine take them one per round, each round with its own
 * used-index store and so one cache miss for the driver per request.  When
 * rounds keep finding fewer than HOLD_SMALL requests, the engine tries
 * waiting hold_ns (siovd --poll-hold-ns, off by default) after a round with
 * work before it polls again; it keeps doing so only while that grows the
 * rounds' batches by HOLD_GAIN without taking more than HOLD_LOSS off the
 * rate requests arrive at (a driver at QD 1 gains nothing and never keeps a
 * hold).  A trial, or a check of a hold kept, lasts HOLD_EPOCH rounds with
 * work; failed trials back off up to HOLD_BACKOFF_MAX epochs.  The wait
 * spins: a sleep and its wake-up cost a few tens of microseconds of CPU on
 * the machines measured, a hundred requests' worth.
 */
#define HOLD_SMALL	 4
#define HOLD_GAIN	 1.5
#define HOLD_LOSS	 0.03
#define HOLD_EPOCH	 2048
#define HOLD_KEEP_EPOCHS 16
#define HOLD_BACKOFF_MAX 256

/* io_uring user_data tags (low 3 bits); 0 is a backend struct siov_io. */
#define UD_KICK	  1ull
#define UD_CMD	  2ull
#define UD_IGNORE 3ull

/*
 * The ring's setup (docs/performance.md says why): one thread submits and
 * reaps (SINGLE_ISSUER), and the kernel runs completion work only when that
 * thread asks for it (DEFER_TASKRUN), so a polling engine is never
 * interrupted per completion and a sleeping one is woken once per wait.
 * R_DISABLED: the ring's single issuer is the engine thread, which enables it.
 */
#define ENGINE_RING_FLAGS                                                                          \
	(IORING_SETUP_CQSIZE | IORING_SETUP_SINGLE_ISSUER | IORING_SETUP_DEFER_TASKRUN |           \
	 IORING_SETUP_TASKRUN_FLAG | IORING_SETUP_R_DISABLED)

/* What two CPUs hand over between them (x86-64, most arm64). */
#define SIOV_CACHE_LINE 64

enum cmd_op { CMD_ATTACH, CMD_DETACH, CMD_STOP };

struct siov_engine_queue;

struct engine_cmd {
	enum cmd_op op;
	struct siov_engine_queue *q;
	bool keep_held; /* CMD_DETACH of a move: the device model keeps what it holds */
	bool done;
	struct engine_cmd *next;
};

/*
 * The engine's own state of one queue it runs: list links and scheduling.
 * Allocated by siov_engine_attach(), freed by siov_engine_detach(); reached
 * from the queue through vq->run.sched.  Only the engine thread writes it,
 * except bal_requests (the control thread's balancer).
 */
struct siov_engine_queue {
	struct siov_vq *vq;
	struct siov_engine *engine;
	struct siov_engine_queue *next;	       /* engine's list of attached queues */
	struct siov_engine_queue *next_active; /* engine's list of queues being polled */
	bool active;
	bool kick_armed;
	bool detaching;
	bool retry;	      /* QoS held the queue back: process it when the wait ends */
	bool cancel_owed;     /* detaching, and the kick read's cancel found no SQE yet */
	unsigned idle_rounds; /* engine rounds since the last request */
	uint64_t last_work_ns;
	uint64_t kick_buf;
	uint64_t throttle_until; /* QoS: do not pop before this time (ns) */
	bool qos_wait;		 /* throttle_until is a QoS wait (not a device model's own) */
	double deficit;		 /* QoS: deficit round robin credit, in requests */
	/* QoS: the queue's recent request latency, from its stats at the last look. */
	uint64_t lat_req, lat_total;
	double lat_ewma_ns;
	uint64_t bal_requests; /* control thread: requests at the balancer's last look */
};

/* The hold's state: measuring without it, trying it, or keeping it. */
enum hold_state { HOLD_OFF, HOLD_TRIAL, HOLD_ON };

struct engine_hold {
	enum hold_state state;
	uint64_t until;		      /* poll no earlier than this (ns); 0 = poll now */
	unsigned rounds;	      /* rounds with work this epoch */
	uint64_t reqs, start;	      /* requests this epoch; when it began (0: not yet) */
	double base_batch, base_rate; /* the last epoch without a hold */
	unsigned wait;		      /* epochs to go before the next trial or check */
	unsigned backoff;	      /* what the next failed trial waits */
};

/*
 * Engines sit side by side in one array, each run by its own thread: each
 * starts on a cache line of its own (and the array is allocated so), or one
 * engine's per-round stats would share a line with the next one's ring
 * (liburing writes sq.sqe_tail there per SQE), and two engines on two CPUs
 * would bounce it between them every round.
 */
struct siov_engine {
	_Alignas(SIOV_CACHE_LINE) unsigned id;
	pthread_t thread;
	struct io_uring ring;
	struct siov_io_ctx ioctx;
	uint64_t poll_ns;
	uint64_t hold_ns; /* 0: never hold */
	int cmd_efd;
	uint64_t cmd_buf;
	pthread_mutex_t lock;
	pthread_cond_t cond;
	struct engine_cmd *cmds;    /* posted, not yet taken: written under lock, peeked without */
	struct engine_cmd *waiting; /* detaches taken, waiting for their queue to drain */
	bool cmd_armed;		    /* a read of cmd_efd is outstanding on the ring */
	bool owed;		    /* an SQE was refused: retry soon, never sleep unbounded */
	unsigned nqueues;	    /* read by the control thread under lock */
	struct siov_engine_queue *queues;
	struct siov_engine_queue *active;
	struct siov_vq_used_list used; /* queues whose used rings advanced this round */
	bool stopping;
	bool busy;		  /* a queue is polling (in work or in its grace period) */
	uint64_t next_wake;	  /* earliest QoS wake-up among throttled queues, 0 = none */
	uint32_t wmax, wmax_next; /* heaviest QoS weight among last round's / this round's queues */
	/* The control thread's own list of this engine's queues, for the balancer. */
	struct siov_engine_queue **ctl_qs;
	unsigned ctl_n, ctl_cap;
	uint64_t now;  /* refreshed each round; queues read it through siov_vq_now() */
	bool deferred; /* the ring has DEFER_TASKRUN (older kernels: plain) */
	/* When each of the last submits reached the kernel, by ioctx.sub_seq. */
	uint64_t sub_at[ENGINE_SUB_HISTORY];
	unsigned round_cqes; /* backend CQEs reaped this round, at round_reap_ns */
	uint64_t round_reap_ns;
	struct engine_hold hold;
	struct siov_engine_stats stats;
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
	struct siov_engine_queue *q;

	if (!t_faulted)
		return;
	t_faulted = 0;
	for (q = e->queues; q; q = q->next)
		if (q->vq->mem && siov_memtable_owns(q->vq->mem, t_fault_addr))
			siov_vq_break(q->vq,
				      "front-end memory vanished (region shrunk or unmapped)");
		else if (q->vq->log && siov_dirty_log_owns(q->vq->log, t_fault_addr))
			siov_vq_break(q->vq,
				      "the dirty log vanished (its memory shrunk or unmapped)");
}

static struct io_uring_sqe *engine_sqe(struct siov_engine *e)
{
	return siov_io_ctx_get_sqe(&e->ioctx);
}

/*
 * Keeps a read of the command eventfd outstanding.  Without an SQE the engine
 * still hears commands: it peeks at its command list every round, and it
 * never sleeps longer than ENGINE_RETRY_NS while the read is missing.
 */
static void arm_cmd(struct siov_engine *e)
{
	struct io_uring_sqe *sqe;

	if (e->cmd_armed)
		return;
	sqe = engine_sqe(e);
	if (!sqe) {
		e->owed = true;
		return;
	}
	io_uring_prep_read(sqe, e->cmd_efd, &e->cmd_buf, sizeof(e->cmd_buf), 0);
	io_uring_sqe_set_data64(sqe, (uint64_t)(uintptr_t)e | UD_CMD);
	e->cmd_armed = true;
}

static struct siov_engine_queue *queue_of(const struct siov_vq *vq)
{
	return vq->run.sched;
}

static void arm_kick(struct siov_engine *e, struct siov_engine_queue *q)
{
	struct io_uring_sqe *sqe;

	if (q->vq->kick_fd < 0 || q->kick_armed || q->detaching)
		return;
	sqe = engine_sqe(e);
	if (!sqe) {
		/* The queue stays polled until its kick is armed (poll_one). */
		e->owed = true;
		return;
	}
	io_uring_prep_read(sqe, q->vq->kick_fd, &q->kick_buf, sizeof(q->kick_buf), 0);
	io_uring_sqe_set_data64(sqe, (uint64_t)(uintptr_t)q | UD_KICK);
	q->kick_armed = true;
}

static void activate(struct siov_engine *e, struct siov_engine_queue *q, uint64_t now)
{
	q->last_work_ns = now;
	q->idle_rounds = 0;
	if (q->active || q->detaching)
		return;
	q->active = true;
	siov_vq_disable_notify(q->vq);
	q->next_active = e->active;
	e->active = q;
}

/*
 * Notifies the drivers whose used rings advanced this round (the queues that
 * siov_vq_complete() put on e->used).  A completion is work: the driver is
 * likely to refill now, so the queue's grace period restarts.
 */
static void flush_notify(struct siov_engine *e)
{
	struct siov_vq *vq;

	while ((vq = siov_vq_used_list_pop(&e->used))) {
		struct siov_engine_queue *q = queue_of(vq);

		q->last_work_ns = e->now;
		q->idle_rounds = 0;
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
/* A reserved VDEV on the same backend is short: keep within the in-flight bound. */
static unsigned inflight_room(struct siov_engine_queue *q, uint64_t now, unsigned budget)
{
	uint32_t cap = siov_qos_inflight_cap(q->vq->qos, now);
	uint64_t inflight;

	if (cap == UINT32_MAX)
		return budget;
	inflight = SIOV_STAT_GET(q->vq->stats.inflight);
	return inflight >= cap ? 0 : SIOV_MIN(budget, (unsigned)(cap - inflight));
}

/* Mean latency of the requests q completed lately (0: none yet), smoothed over looks. */
static uint64_t queue_recent_latency(struct siov_engine_queue *q)
{
	uint64_t n = SIOV_STAT_GET(q->vq->stats.requests);
	uint64_t ns = SIOV_STAT_GET(q->vq->stats.latency_ns_total);
	double m;

	if (n <= q->lat_req)
		return (uint64_t)q->lat_ewma_ns;
	m = (double)(ns - q->lat_total) / (double)(n - q->lat_req);
	q->lat_ewma_ns = q->lat_ewma_ns ? q->lat_ewma_ns + (m - q->lat_ewma_ns) / 4 : m;
	q->lat_req = n;
	q->lat_total = ns;
	return (uint64_t)q->lat_ewma_ns;
}

static unsigned queue_budget(struct siov_engine *e, struct siov_engine_queue *q, uint64_t now,
			     unsigned *reserved)
{
	struct siov_qos *qos = q->vq->qos;
	unsigned credit;
	uint32_t w;
	double quantum;

	*reserved = 0;
	if (!qos)
		return ENGINE_BUDGET;
	/* The heaviest active queue gets a full batch a round, the others their share of it. */
	w = siov_qos_weight(qos);
	if (w > e->wmax_next)
		e->wmax_next = w;
	quantum = (double)ENGINE_BUDGET * w / (e->wmax ? e->wmax : w);
	q->deficit += quantum;
	if (q->deficit > ENGINE_BUDGET * 2)
		q->deficit = ENGINE_BUDGET * 2;
	credit = siov_qos_reserved_credit(qos, now);
	if (credit)
		siov_qos_note_backlog(qos, now, credit, SIOV_STAT_GET(q->vq->stats.inflight),
				      queue_recent_latency(q));
	*reserved = SIOV_MIN(credit, ENGINE_BUDGET);
	return inflight_room(q, now, SIOV_MIN((unsigned)q->deficit + *reserved, ENGINE_BUDGET * 2));
}

static void queue_charge(struct siov_engine_queue *q, unsigned budget, unsigned reserved,
			 unsigned n)
{
	unsigned from_resv = SIOV_MIN(n, reserved);

	if (!q->vq->qos)
		return;
	siov_qos_reserved_take(q->vq->qos, from_resv);
	q->deficit -= n - from_resv;
	/* A queue that ran dry does not bank credit (classic DRR). */
	if (n < budget && q->throttle_until <= q->last_work_ns)
		q->deficit = 0;
}

/* Lets the device model start what the queue's budget allows; returns requests started. */
static unsigned queue_run(struct siov_engine *e, struct siov_engine_queue *q, uint64_t now)
{
	struct siov_vq_work work = {0};
	unsigned budget, reserved;

	budget = queue_budget(e, q, now, &reserved);
	if (budget) {
		q->vq->ops->process(q->vq, &e->ioctx, budget, &work);
		/*
		 * A throttled device model holds a request: run it when the wait ends.
		 * A device model's own deadline (held requests) waits like QoS, uncounted.
		 */
		q->qos_wait = work.throttle_until != 0;
		q->throttle_until = work.throttle_until ? work.throttle_until : work.wake_at;
		q->retry = q->throttle_until != 0;
	}
	queue_charge(q, budget, reserved, work.started);
	return work.started;
}

/* True while a QoS wait holds the queue; ends the wait (and counts it) when it is over. */
static bool queue_throttled(struct siov_engine *e, struct siov_engine_queue *q, uint64_t now)
{
	if (q->throttle_until > now) {
		/* Waiting for a QoS bucket: not idle, but nothing to do before then. */
		if (!e->next_wake || q->throttle_until < e->next_wake)
			e->next_wake = q->throttle_until;
		return true;
	}
	if (q->throttle_until) {
		if (q->qos_wait && q->vq->qos)
			siov_qos_note_wait(q->vq->qos,
					   now > q->last_work_ns ? now - q->last_work_ns : 0);
		q->throttle_until = 0;
	}
	return false;
}

/* A queue may stop polling only with its kick read outstanding: else it would never wake. */
static bool kick_ready(struct siov_engine *e, struct siov_engine_queue *q)
{
	arm_kick(e, q);
	return q->kick_armed || q->vq->kick_fd < 0;
}

/* Runs one active queue; returns requests started, or sets *keep = false to drop it. */
static unsigned poll_one(struct siov_engine *e, struct siov_engine_queue *q, uint64_t now,
			 bool *keep)
{
	struct siov_vq *vq = q->vq;
	unsigned n = 0;

	*keep = true;
	if (q->detaching || siov_vq_is_broken(vq)) {
		*keep = false;
		return 0;
	}
	if (queue_throttled(e, q, now))
		return 0;
	/* The common case while spinning is an empty ring: one load, nothing else. */
	if (q->retry || siov_vq_has_work(vq)) {
		if (e->now == now)
			e->now = now = siov_now_ns();
		n = queue_run(e, q, now);
	}
	if (n || q->throttle_until > now) {
		q->last_work_ns = now;
		q->idle_rounds = 0;
		e->busy = true;
	} else if (SIOV_STAT_GET(vq->stats.inflight)) {
		/*
		 * Waiting for the backend: keep polling through the grace period
		 * (each completion restarts it), so the driver's refill and the
		 * next completion are seen at once, not after a wake-up.  After
		 * it the engine may sleep; arm_active_kicks() then lets the
		 * driver's next request wake it.
		 */
		if (now - q->last_work_ns <= e->poll_ns)
			e->busy = true;
	} else if (++q->idle_rounds > ENGINE_IDLE_ROUNDS && now > q->last_work_ns &&
		   now - q->last_work_ns > e->poll_ns && kick_ready(e, q)) {
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
	struct siov_engine_queue **pp = &e->active;
	unsigned work = 0;

	e->next_wake = 0;
	e->busy = false;
	e->wmax = e->wmax_next;
	e->wmax_next = 0;
	/* Rotate who goes first, so queues that share a group bucket share it evenly. */
	if (e->active && e->active->next_active) {
		struct siov_engine_queue *first = e->active, **tail = &e->active;
		e->active = first->next_active;
		while (*tail)
			tail = &(*tail)->next_active;
		*tail = first;
		first->next_active = NULL;
	}
	while (*pp) {
		struct siov_engine_queue *q = *pp;
		bool keep;

		work += poll_one(e, q, now, &keep);
		if (keep) {
			pp = &q->next_active;
		} else {
			*pp = q->next_active;
			q->active = false;
		}
	}
	return work;
}

static void queue_unlink(struct siov_engine *e, struct siov_engine_queue *q)
{
	struct siov_engine_queue **pp;

	for (pp = &e->active; *pp; pp = &(*pp)->next_active) {
		if (*pp == q) {
			*pp = q->next_active;
			break;
		}
	}
	q->active = false;
	for (pp = &e->queues; *pp; pp = &(*pp)->next) {
		if (*pp == q) {
			*pp = q->next;
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

/*
 * A detaching queue leaves once nothing of it is in flight on the ring.
 * Requests the device model holds would never drain: a stopping ring lets
 * them go (their records stay for the next session), a moving one keeps
 * them (dropped, nobody would ever send them again: the driver would wait
 * for them forever, and in order every later completion with them).
 */
static bool try_finish_detach(struct siov_engine *e, struct siov_engine_queue *q, bool keep)
{
	struct siov_vq *vq = q->vq;
	unsigned parked = 0;

	if (!q->kick_armed && vq->ops->park_held)
		parked = vq->ops->park_held(vq, keep);
	if (q->kick_armed || SIOV_STAT_GET(vq->stats.inflight) > parked)
		return false;
	/* Our last completions may still be on the used list: notify and take them off. */
	flush_notify(e);
	siov_vq_notify(vq);
	queue_unlink(e, q);
	if (vq->ops->release)
		vq->ops->release(vq);
	pthread_mutex_lock(&e->lock);
	e->nqueues--;
	pthread_mutex_unlock(&e->lock);
	return true;
}

static void cmd_attach(struct siov_engine *e, struct siov_engine_queue *q, uint64_t now)
{
	q->next = e->queues;
	e->queues = q;
	arm_kick(e, q);
	/* Requests may be waiting already (a restart, or a kick we never saw). */
	activate(e, q, now);
}

/* Cancels q's kick read; without an SQE, owes it and tries again next round. */
static void cancel_kick(struct siov_engine *e, struct siov_engine_queue *q)
{
	struct io_uring_sqe *sqe;

	q->cancel_owed = false;
	if (!q->kick_armed)
		return;
	sqe = engine_sqe(e);
	if (!sqe) {
		q->cancel_owed = true;
		e->owed = true;
		return;
	}
	io_uring_prep_cancel64(sqe, (uint64_t)(uintptr_t)q | UD_KICK, 0);
	io_uring_sqe_set_data64(sqe, UD_IGNORE);
}

static void cmd_detach(struct siov_engine *e, struct siov_engine_queue *q)
{
	q->detaching = true;
	cancel_kick(e, q);
}

static void run_cmds(struct siov_engine *e, uint64_t now)
{
	struct engine_cmd *list, *c, *rev = NULL;

	pthread_mutex_lock(&e->lock);
	list = e->cmds;
	__atomic_store_n(&e->cmds, NULL, __ATOMIC_RELAXED);
	pthread_mutex_unlock(&e->lock);
	/* Commands were pushed LIFO; run them in arrival order.  Detaches wait
	 * on e->waiting until their queue is drained. */
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
			cmd_attach(e, c->q, now);
			cmd_done(e, c);
			break;
		case CMD_DETACH:
			cmd_detach(e, c->q);
			c->next = e->waiting;
			e->waiting = c;
			break;
		case CMD_STOP:
			e->stopping = true;
			cmd_done(e, c);
			break;
		}
	}
}

static void check_detaches(struct siov_engine *e)
{
	struct engine_cmd **pp = &e->waiting;

	while (*pp) {
		struct engine_cmd *c = *pp;
		if (c->q->cancel_owed)
			cancel_kick(e, c->q);
		if (try_finish_detach(e, c->q, c->keep_held)) {
			*pp = c->next;
			cmd_done(e, c);
		} else {
			pp = &c->next;
		}
	}
}

static void handle_kick(struct siov_engine *e, struct siov_engine_queue *q, int res, uint64_t now)
{
	q->kick_armed = false;
	if (res < 0) {
		if (res != -ECANCELED && res != -EINTR)
			SIOV_WARN("engine %u: queue %u kick fd: %s", e->id, q->vq->index,
				  strerror(-res));
		if (res != -EINTR && res != -EAGAIN)
			return;
	} else {
		SIOV_STAT_ADD(q->vq->stats.kicks, 1);
	}
	if (q->detaching)
		return;
	arm_kick(e, q);
	if (!siov_vq_is_broken(q->vq))
		activate(e, q, now);
}

/*
 * A submit reached the kernel at t: stamp it for the I/Os it carried (their
 * sub_seq is the current number), then start the next number.
 */
static void note_submit(struct siov_engine *e, uint64_t t)
{
	e->sub_at[e->ioctx.sub_seq % ENGINE_SUB_HISTORY] = t;
	e->ioctx.sub_seq++;
}

/* A backend CQE reaped at e->now: its time in the kernel, if its submit is remembered. */
static void time_cqe(struct siov_engine *e, const struct siov_io *io)
{
	uint32_t age = e->ioctx.sub_seq - io->sub_seq;
	uint64_t at = e->sub_at[io->sub_seq % ENGINE_SUB_HISTORY];

	e->round_cqes++;
	if (age == 0 || age > ENGINE_SUB_HISTORY || at > e->now)
		return;
	SIOV_STAT_ADD(e->stats.kernel_ns, e->now - at);
	SIOV_STAT_ADD(e->stats.kernel_n, 1);
}

/* After the round's notifications: how long its backend completions took to reach the driver. */
static void time_notify(struct siov_engine *e)
{
	if (!e->round_cqes)
		return;
	SIOV_STAT_ADD(e->stats.cqe_used_ns,
		      (uint64_t)e->round_cqes * (siov_now_ns() - e->round_reap_ns));
	SIOV_STAT_ADD(e->stats.reaped_io, e->round_cqes);
	e->round_cqes = 0;
}

static unsigned reap(struct siov_engine *e, uint64_t now)
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
			time_cqe(e, p);
			siov_io_ctx_handle_cqe(&e->ioctx, cqe);
			break;
		case UD_KICK:
			handle_kick(e, p, cqe->res, now);
			break;
		case UD_CMD:
			e->cmd_armed = false;
			arm_cmd(e);
			run_cmds(e, now);
			break;
		default:
			break;
		}
	}
	io_uring_cq_advance(&e->ring, n);
	SIOV_STAT_ADD(e->stats.cqes, n);
	return n;
}

static void submit(struct siov_engine *e, bool wait)
{
	int rc;

	if (wait) {
		if (e->ioctx.unsubmitted)
			note_submit(e, siov_now_ns());
		rc = io_uring_submit_and_wait(&e->ring, 1);
	} else if (e->ioctx.unsubmitted) {
		uint64_t t0 = siov_now_ns(), t1;
		rc = io_uring_submit(&e->ring);
		t1 = siov_now_ns();
		note_submit(e, t1);
		SIOV_STAT_ADD(e->stats.submit_ns, t1 - t0);
		SIOV_STAT_ADD(e->stats.submits, 1);
	} else {
		return;
	}
	SIOV_STAT_ADD(e->stats.enters, 1);
	if (rc >= 0 || rc == -EINTR || rc == -EAGAIN || rc == -EBUSY)
		e->ioctx.unsubmitted = 0;
	if (rc < 0 && rc != -EINTR && rc != -EAGAIN && rc != -EBUSY)
		SIOV_ERR("engine %u: io_uring submit: %s", e->id, strerror(-rc));
}

/*
 * Sleeps until a CQE arrives or, if a queue is throttled, until its bucket
 * refills; no longer than ENGINE_RETRY_NS while the engine owes an SQE.
 */
static void submit_and_sleep(struct siov_engine *e)
{
	struct __kernel_timespec ts;
	struct io_uring_cqe *cqe;
	uint64_t now, wake = e->next_wake, wait;
	int rc;

	SIOV_STAT_ADD(e->stats.sleeps, 1);
	if (!wake && !e->owed) {
		submit(e, true);
		return;
	}
	now = siov_now_ns();
	if (e->owed && (!wake || wake > now + ENGINE_RETRY_NS))
		wake = now + ENGINE_RETRY_NS;
	e->owed = false;
	if (wake <= now)
		return;
	wait = wake - now;
	if (e->ioctx.unsubmitted)
		note_submit(e, now);
	ts.tv_sec = (long long)(wait / 1000000000ull);
	ts.tv_nsec = (long long)(wait % 1000000000ull);
	rc = io_uring_submit_and_wait_timeout(&e->ring, &cqe, 1, &ts, NULL);
	if (rc >= 0 || rc == -ETIME || rc == -EINTR)
		e->ioctx.unsubmitted = 0;
}

/*
 * Without a command read on the ring (no SQE for it), the engine looks at its
 * command list itself every round.  With one, a command runs only when its
 * wake-up arrives, so a caller whose wake-up failed can take it back.
 */
static void take_cmds(struct siov_engine *e, uint64_t now)
{
	if (e->cmd_armed)
		return;
	arm_cmd(e);
	if (__atomic_load_n(&e->cmds, __ATOMIC_RELAXED))
		run_cmds(e, now);
}

/*
 * Before sleeping: queues still on the active list (waiting for the backend)
 * have kicks off; turn them on so a new request wakes the engine instead of
 * waiting for an unrelated completion.  True if a request came meanwhile.
 */
static bool arm_active_kicks(struct siov_engine *e)
{
	struct siov_engine_queue *q;
	bool work = false;

	for (q = e->active; q; q = q->next_active)
		if (!q->vq->notify_enabled)
			work |= siov_vq_enable_notify(q->vq);
	return work;
}

static void disarm_active_kicks(struct siov_engine *e)
{
	struct siov_engine_queue *q;

	for (q = e->active; q; q = q->next_active)
		if (q->vq->notify_enabled)
			siov_vq_disable_notify(q->vq);
}

/*
 * On the engine thread, before its first submit: become the ring's single
 * issuer, and register the ring fd (each io_uring_enter() then skips the fd
 * table lookup; a registered ring fd belongs to the thread that registers it).
 */
static void engine_setup_ring(struct siov_engine *e)
{
	int rc;

	/* liburing 2.3 declares io_uring_enable_rings() but does not export it. */
	if (e->deferred && syscall(__NR_io_uring_register, e->ring.ring_fd,
				   IORING_REGISTER_ENABLE_RINGS, NULL, 0) < 0)
		SIOV_ERR("engine %u: cannot enable its io_uring: %s", e->id, strerror(errno));
	rc = io_uring_register_ring_fd(&e->ring);
	if (rc < 0)
		SIOV_DEBUG("engine %u: no registered ring fd: %s", e->id, strerror(-rc));
}

/* DEFER_TASKRUN: completions are posted when we ask; the kernel flags that there are some. */
static void get_events(struct siov_engine *e)
{
	if (e->deferred && (IO_URING_READ_ONCE(*e->ring.sq.kflags) & IORING_SQ_TASKRUN)) {
		io_uring_get_events(&e->ring);
		SIOV_STAT_ADD(e->stats.enters, 1);
	}
}

/* ---- holding a round back (hold_ns: see HOLD_SMALL) ---- */

static inline void cpu_relax(void)
{
#if defined(__x86_64__) || defined(__i386__)
	__builtin_ia32_pause();
#elif defined(__aarch64__)
	__asm__ __volatile__("yield");
#endif
}

static void hold_epoch_start(struct engine_hold *h, uint64_t now)
{
	h->rounds = 0;
	h->reqs = 0;
	h->start = now;
}

/* An epoch without a hold ended: remember it, and try a hold if its rounds were small. */
static void hold_after_off(struct siov_engine *e, double batch, double rate)
{
	struct engine_hold *h = &e->hold;

	h->base_batch = batch;
	h->base_rate = rate;
	if (h->wait) {
		h->wait--;
	} else if (batch < HOLD_SMALL) {
		h->state = HOLD_TRIAL;
		SIOV_STAT_ADD(e->stats.hold_trials, 1);
	}
}

/* An epoch with a hold ended: keep it only if it paid against the last epoch without. */
static void hold_after_on(struct siov_engine *e, double batch, double rate)
{
	struct engine_hold *h = &e->hold;
	bool paid = batch >= h->base_batch * HOLD_GAIN && rate >= h->base_rate * (1 - HOLD_LOSS);

	if (!paid) {
		h->state = HOLD_OFF;
		h->wait = h->backoff;
		h->backoff = SIOV_MIN(h->backoff * 2 + 1, HOLD_BACKOFF_MAX);
		return;
	}
	if (h->state == HOLD_TRIAL) {
		SIOV_STAT_ADD(e->stats.hold_kept, 1);
		h->state = HOLD_ON;
		h->wait = HOLD_KEEP_EPOCHS;
		h->backoff = 0;
	} else if (h->wait) {
		h->wait--;
	} else {
		/* Measure once more without it: the driver may have changed. */
		h->state = HOLD_OFF;
	}
}

/* After a round that started requests: count them, and hold the next poll if holding. */
static void hold_note(struct siov_engine *e, unsigned popped)
{
	struct engine_hold *h = &e->hold;
	uint64_t now;
	double batch, rate;

	if (!popped || !e->hold_ns)
		return;
	if (!h->start)
		hold_epoch_start(h, e->now);
	h->rounds++;
	h->reqs += popped;
	if (h->state != HOLD_OFF)
		h->until = e->now + e->hold_ns;
	if (h->rounds < HOLD_EPOCH)
		return;
	now = siov_now_ns();
	batch = (double)h->reqs / h->rounds;
	rate = now > h->start ? (double)h->reqs / (double)(now - h->start) : 0;
	if (h->state == HOLD_OFF)
		hold_after_off(e, batch, rate);
	else
		hold_after_on(e, batch, rate);
	hold_epoch_start(h, now);
}

/* Spins until the hold ends: the driver's requests gather meanwhile. */
static void hold_wait(struct siov_engine *e)
{
	uint64_t until = e->hold.until, t;

	e->hold.until = 0;
	while ((t = siov_now_ns()) < until)
		cpu_relax();
	e->now = t;
	SIOV_STAT_ADD(e->stats.holds, 1);
}

/* A sleep is no part of the rate requests arrive at: the epoch starts again. */
static void hold_pause(struct engine_hold *h)
{
	h->until = 0;
	hold_epoch_start(h, 0);
}

static void *engine_main(void *arg)
{
	struct siov_engine *e = arg;
	unsigned idle = 0, work = 1;

	engine_setup_ring(e);
	arm_cmd(e);
	while (!e->stopping || e->waiting) {
		uint64_t now;

		/*
		 * While spinning on empty rings, read the clock only now and then:
		 * a shorter spin notices a new request sooner.  poll_one() reads it
		 * afresh the moment a ring has work, so request stamps stay exact;
		 * after a round with work e->now is at most a round old, which the
		 * grace period and QoS waits (microseconds and up) do not notice.
		 * One clock read per round with work, not two: a driver that
		 * publishes one request at a time makes nearly every round one.
		 */
		if (work)
			idle = 0;
		else if (++idle % 64 == 0)
			e->now = siov_now_ns();
		if (e->hold.until)
			hold_wait(e);
		now = e->now;
		SIOV_STAT_ADD(e->stats.rounds, 1);
		work = poll_active(e, now);
		SIOV_STAT_ADD(e->stats.popped, work);
		hold_note(e, work);
		if (work && e->ioctx.unsubmitted) {
			/* Only backends with real I/O submit: time from the pop to the kernel. */
			uint64_t t0 = e->now;

			submit(e, false);
			SIOV_STAT_ADD(e->stats.ring_submit_ns, work * (siov_now_ns() - t0));
			SIOV_STAT_ADD(e->stats.submitted, work);
		}
		work += siov_io_ctx_run_deferred(&e->ioctx);
		submit(e, false);
		get_events(e);
		if (io_uring_cq_ready(&e->ring))
			e->now = siov_now_ns();
		e->round_reap_ns = e->now;
		work += reap(e, now);
		take_cmds(e, now);
		work += siov_io_ctx_run_deferred(&e->ioctx);
		flush_notify(e);
		time_notify(e);
		check_faults(e);
		if (e->waiting)
			check_detaches(e);
		if (work || e->busy)
			continue;
		hold_pause(&e->hold);
		if (!arm_active_kicks(e))
			submit_and_sleep(e);
		disarm_active_kicks(e);
	}
	return NULL;
}

/* Takes c back off the engine's list if the engine has not taken it yet. */
static bool cmd_withdraw(struct siov_engine *e, struct engine_cmd *c)
{
	struct engine_cmd **pp;

	for (pp = &e->cmds; *pp; pp = &(*pp)->next) {
		if (*pp == c) {
			__atomic_store_n(pp, c->next, __ATOMIC_RELAXED);
			return true;
		}
	}
	return false;
}

static void cmd_push(struct siov_engine *e, struct engine_cmd *c)
{
	pthread_mutex_lock(&e->lock);
	c->done = false;
	c->next = e->cmds;
	__atomic_store_n(&e->cmds, c, __ATOMIC_RELAXED);
	pthread_mutex_unlock(&e->lock);
}

static int engine_wake(struct siov_engine *e)
{
	while (eventfd_write(e->cmd_efd, 1) < 0) {
		if (errno != EINTR)
			return -errno;
	}
	return 0;
}

/*
 * Hands c (on the caller's stack) to the engine and waits until it ran.  If
 * the wake-up cannot be sent and the engine has not taken c meanwhile, c is
 * taken back and the error returned: nothing of the caller's stack stays on
 * the engine's list.
 */
static int engine_post(struct siov_engine *e, struct engine_cmd *c)
{
	int rc = 0;

	cmd_push(e, c);
	rc = engine_wake(e);
	pthread_mutex_lock(&e->lock);
	if (rc && cmd_withdraw(e, c)) {
		pthread_mutex_unlock(&e->lock);
		return rc;
	}
	while (!c->done)
		pthread_cond_wait(&e->cond, &e->lock);
	pthread_mutex_unlock(&e->lock);
	return 0;
}

static bool cmd_is_done(struct siov_engine *e, struct engine_cmd *c)
{
	bool done;

	pthread_mutex_lock(&e->lock);
	done = c->done;
	pthread_mutex_unlock(&e->lock);
	return done;
}

/*
 * The same for a command that must not fail (detach, stop): while its wake-up
 * fails, try again every millisecond; once one is sent, the engine hears it
 * (its command read is armed, or it looks at its list every round).
 */
static void engine_post_sure(struct siov_engine *e, struct engine_cmd *c)
{
	const struct timespec ms = {.tv_nsec = 1000000};

	cmd_push(e, c);
	while (engine_wake(e) && !cmd_is_done(e, c))
		nanosleep(&ms, NULL);
	pthread_mutex_lock(&e->lock);
	while (!c->done)
		pthread_cond_wait(&e->cond, &e->lock);
	pthread_mutex_unlock(&e->lock);
}

static int ctl_add(struct siov_engine *e, struct siov_engine_queue *q)
{
	if (e->ctl_n == e->ctl_cap) {
		unsigned cap = e->ctl_cap ? e->ctl_cap * 2 : 16;
		struct siov_engine_queue **a = realloc(e->ctl_qs, cap * sizeof(*a));
		if (!a)
			return -ENOMEM;
		e->ctl_qs = a;
		e->ctl_cap = cap;
	}
	e->ctl_qs[e->ctl_n++] = q;
	return 0;
}

static void ctl_remove(struct siov_engine *e, struct siov_engine_queue *q)
{
	unsigned i;

	for (i = 0; i < e->ctl_n; i++) {
		if (e->ctl_qs[i] == q) {
			e->ctl_qs[i] = e->ctl_qs[--e->ctl_n];
			return;
		}
	}
}

static void nqueues_add(struct siov_engine *e, int d)
{
	pthread_mutex_lock(&e->lock);
	e->nqueues += d;
	pthread_mutex_unlock(&e->lock);
}

/* The engine's state of a queue it is about to run, lent to the queue. */
static struct siov_engine_queue *queue_new(struct siov_engine *e, struct siov_vq *vq)
{
	struct siov_engine_queue *q = calloc(1, sizeof(*q));
	struct siov_vq_runner run = {.clock = &e->now, .used = &e->used};

	if (!q)
		return NULL;
	q->vq = vq;
	q->engine = e;
	q->bal_requests = SIOV_STAT_GET(vq->stats.requests);
	run.sched = q;
	siov_vq_bind(vq, &run);
	return q;
}

static void queue_free(struct siov_engine_queue *q)
{
	siov_vq_unbind(q->vq);
	free(q);
}

int siov_engine_attach(struct siov_engine *e, struct siov_vq *vq)
{
	struct engine_cmd c = {.op = CMD_ATTACH};
	struct siov_engine_queue *q;
	int rc;

	if (queue_of(vq))
		return -EBUSY;
	q = queue_new(e, vq);
	if (!q)
		return -ENOMEM;
	rc = ctl_add(e, q);
	if (rc)
		goto err_ctl;
	nqueues_add(e, 1);
	c.q = q;
	rc = engine_post(e, &c);
	if (rc)
		goto err_post;
	return 0;

err_post:
	nqueues_add(e, -1);
	ctl_remove(e, q);
err_ctl:
	queue_free(q);
	return rc;
}

static void engine_detach(struct siov_vq *vq, bool keep_held)
{
	struct siov_engine_queue *q = queue_of(vq);
	struct engine_cmd c = {.op = CMD_DETACH, .q = q, .keep_held = keep_held};
	struct siov_engine *e;

	if (!q)
		return;
	e = q->engine;
	engine_post_sure(e, &c);
	ctl_remove(e, q);
	queue_free(q);
}

void siov_engine_detach(struct siov_vq *vq)
{
	engine_detach(vq, false);
}

int siov_engine_of(const struct siov_vq *vq)
{
	const struct siov_engine_queue *q = queue_of(vq);

	return q ? (int)q->engine->id : -1;
}

/* ---- balancing: queues move from a hot engine to a cool one ---- */

/* Requests each queue completed since the last look; returns the engine's total. */
static uint64_t engine_load(struct siov_engine *e, uint64_t *qload)
{
	uint64_t sum = 0;
	unsigned i;

	for (i = 0; i < e->ctl_n; i++) {
		struct siov_engine_queue *q = e->ctl_qs[i];
		uint64_t now = SIOV_STAT_GET(q->vq->stats.requests);
		if (qload)
			qload[i] = now - q->bal_requests;
		sum += now - q->bal_requests;
		q->bal_requests = now;
	}
	return sum;
}

/*
 * Moves vq from engine 'from' to 'to'.  If 'to' refuses it, vq goes back to
 * 'from'; if that fails too, the queue is broken with the reason (vdev_stats
 * shows it, the front end's error fd hears it) rather than left on no engine.
 */
static int queue_move(struct siov_vq *vq, struct siov_engine *from, struct siov_engine *to)
{
	const char *name = vq->dev_name ? vq->dev_name : "?";
	int rc, back;

	engine_detach(vq, true);
	rc = siov_engine_attach(to, vq);
	if (!rc) {
		SIOV_INFO("engines: moved vdev %s queue %u from engine %u to %u", name, vq->index,
			  from->id, to->id);
		return 0;
	}
	back = siov_engine_attach(from, vq);
	if (!back) {
		SIOV_WARN("engines: vdev %s queue %u stays on engine %u: engine %u refused it: %s",
			  name, vq->index, from->id, to->id, strerror(-rc));
		return rc;
	}
	siov_vq_break(vq, "no engine took the queue back after a move (%s, then %s)", strerror(-rc),
		      strerror(-back));
	/* Nobody runs it now: what the move kept is let go as a stopping ring's is. */
	if (vq->ops->park_held)
		vq->ops->park_held(vq, false);
	if (vq->ops->release)
		vq->ops->release(vq);
	return back;
}

int siov_engine_move(struct siov_vq *vq, struct siov_engine *to)
{
	struct siov_engine_queue *q = queue_of(vq);

	if (!q)
		return -EINVAL;
	return queue_move(vq, q->engine, to);
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
		rc = queue_move(es->engines[hot].ctl_qs[best]->vq, &es->engines[hot],
				&es->engines[cold]);
		es->moves++;
		es->cooldown = 2;
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

static int engine_init(struct siov_engine *e, unsigned id, uint64_t poll_ns, uint64_t hold_ns)
{
	struct io_uring_params p = {.flags = ENGINE_RING_FLAGS, .cq_entries = ENGINE_CQ_ENTRIES};
	int rc;

	e->id = id;
	e->poll_ns = poll_ns;
	e->hold_ns = hold_ns;
	pthread_mutex_init(&e->lock, NULL);
	pthread_cond_init(&e->cond, NULL);
	e->cmd_efd = eventfd(0, EFD_CLOEXEC);
	if (e->cmd_efd < 0)
		return -errno;
	rc = io_uring_queue_init_params(ENGINE_RING_ENTRIES, &e->ring, &p);
	if (rc == -EINVAL) {
		/* A kernel before 6.1 has no DEFER_TASKRUN: a plain ring works, a little slower. */
		SIOV_INFO("engine %u: io_uring without DEFER_TASKRUN (kernel too old)", id);
		p = (struct io_uring_params){.flags = IORING_SETUP_CQSIZE,
					     .cq_entries = ENGINE_CQ_ENTRIES};
		rc = io_uring_queue_init_params(ENGINE_RING_ENTRIES, &e->ring, &p);
	}
	if (rc < 0)
		goto err_ring;
	e->deferred = p.flags & IORING_SETUP_DEFER_TASKRUN;
	siov_io_ctx_init(&e->ioctx, &e->ring);
	rc = -pthread_create(&e->thread, NULL, engine_main, e);
	if (rc)
		goto err_thread;
	/* "siov-eng0": top -H, perf and the benches find an engine by its name. */
	char tname[16];
	snprintf(tname, sizeof(tname), "siov-eng%u", id % 10000000u);
	pthread_setname_np(e->thread, tname);
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

	engine_post_sure(e, &c);
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
	/* sizeof is a multiple of the line (the struct's alignment): every engine starts on one. */
	es->engines = aligned_alloc(SIOV_CACHE_LINE, n * sizeof(*es->engines));
	if (es->engines)
		memset(es->engines, 0, n * sizeof(*es->engines));
	if (!es->engines) {
		free(es);
		return -ENOMEM;
	}
	es->timer_fd = -1;
	for (i = 0; i < n; i++) {
		rc = engine_init(&es->engines[i], i, (uint64_t)opts->poll_us * 1000, opts->hold_ns);
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
		free(es->engines[i].ctl_qs);
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

struct siov_engine *siov_engines_get(struct siov_engines *es, unsigned i)
{
	return i < es->count ? &es->engines[i] : NULL;
}

/* The thread's CPU clock: time spent polling and working, never asleep in the ring. */
static uint64_t thread_cpu_ns(const struct siov_engine *e)
{
	struct timespec ts;
	clockid_t cid;

	if (pthread_getcpuclockid(e->thread, &cid) != 0 || clock_gettime(cid, &ts) < 0)
		return 0;
	return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

void siov_engine_get_stats(const struct siov_engine *e, struct siov_engine_stats *out)
{
	out->rounds = SIOV_STAT_GET(e->stats.rounds);
	out->sleeps = SIOV_STAT_GET(e->stats.sleeps);
	out->popped = SIOV_STAT_GET(e->stats.popped);
	out->ring_submit_ns = SIOV_STAT_GET(e->stats.ring_submit_ns);
	out->submitted = SIOV_STAT_GET(e->stats.submitted);
	out->cqes = SIOV_STAT_GET(e->stats.cqes);
	out->enters = SIOV_STAT_GET(e->stats.enters);
	out->submits = SIOV_STAT_GET(e->stats.submits);
	out->submit_ns = SIOV_STAT_GET(e->stats.submit_ns);
	out->kernel_n = SIOV_STAT_GET(e->stats.kernel_n);
	out->kernel_ns = SIOV_STAT_GET(e->stats.kernel_ns);
	out->reaped_io = SIOV_STAT_GET(e->stats.reaped_io);
	out->cqe_used_ns = SIOV_STAT_GET(e->stats.cqe_used_ns);
	out->holds = SIOV_STAT_GET(e->stats.holds);
	out->hold_trials = SIOV_STAT_GET(e->stats.hold_trials);
	out->hold_kept = SIOV_STAT_GET(e->stats.hold_kept);
	out->cpu_ns = thread_cpu_ns(e);
	pthread_mutex_lock((pthread_mutex_t *)&e->lock);
	out->queues = e->nqueues;
	pthread_mutex_unlock((pthread_mutex_t *)&e->lock);
}
