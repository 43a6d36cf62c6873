/*
 * Engines: siovd's data-plane threads, the "DMA engines" of a software SIOV
 * device.  Each owns one io_uring through which it waits for kicks (eventfd
 * reads) and submits backend I/O, and serves any number of queues.  A kicked
 * queue is polled (notifications off) while it has work and for a short grace
 * period after; then notifications are re-armed and, when no queue is busy,
 * the engine sleeps in io_uring_submit_and_wait(): an idle engine uses no CPU.
 *
 * Handing a queue to an engine and taking it back are synchronous handshakes
 * called from the control thread: after siov_engine_detach() returns, nothing
 * of the queue is in flight and the engine never touches it again.  The
 * engine's scheduling state of a queue is its own (lib/engine); it lends the
 * queue a clock and a used list (struct siov_vq_runner) and calls the device
 * model only through struct siov_vq_ops.
 */
#ifndef SIOV_INTERNAL_ENGINE_H
#define SIOV_INTERNAL_ENGINE_H

#include <stdint.h>

struct siov_engines;
struct siov_engine;
struct siov_vq;
struct siov_loop;

struct siov_engines_opts {
	unsigned count;		/* 0: one per online CPU */
	unsigned poll_us;	/* grace period a queue is polled after its last request */
	unsigned hold_ns;	/* poll hold while it batches a driver's requests; 0 = never */
	struct siov_loop *loop; /* the control loop, for the balancing timer; may be NULL */
	unsigned balance_ms;	/* how often to rebalance queues; 0 = never */
};

/*
 * Where an engine's time goes, per request (relaxed atomics: the engine adds,
 * anyone reads).  ring_submit_ns sums, over the requests submitted, the time
 * from the pop to the io_uring_enter() that handed them to the kernel.
 */
struct siov_engine_stats {
	uint64_t rounds;	 /* loop iterations */
	uint64_t sleeps;	 /* times it slept in io_uring */
	uint64_t popped;	 /* requests started */
	uint64_t submitted;	 /* of those, requests handed to the kernel */
	uint64_t ring_submit_ns; /* their pop -> submitted, summed */
	uint64_t cqes;		 /* CQEs reaped (I/O, kicks, commands) */
	uint64_t enters;	 /* io_uring_enter() calls to submit or wait */
	uint64_t submits;	 /* io_uring_enter() calls that only submitted */
	uint64_t submit_ns;	 /* time spent in those */
	uint64_t kernel_n;	 /* backend CQEs timed from their submit */
	uint64_t kernel_ns;	 /* their submit -> CQE reaped, summed */
	uint64_t reaped_io;	 /* backend CQEs reaped */
	uint64_t cqe_used_ns; /* their reap -> used entry published and driver notified, summed */
	uint64_t holds;	      /* polls held back after a round with work (--poll-hold-ns) */
	uint64_t hold_trials; /* epochs that tried a hold */
	uint64_t hold_kept;   /* trials that paid (bigger rounds, same rate), so kept */
	uint64_t cpu_ns;      /* CPU time of its thread: polling and work, not sleep */
	unsigned queues;      /* queues attached to it */
};

int siov_engines_create(const struct siov_engines_opts *opts, struct siov_engines **out);
/* Every queue must have been detached. */
void siov_engines_destroy(struct siov_engines *engines);
unsigned siov_engines_count(const struct siov_engines *engines);
/* The engine serving the fewest queues. */
struct siov_engine *siov_engines_pick(struct siov_engines *engines);
unsigned siov_engine_id(const struct siov_engine *engine);
/* Engine i (< siov_engines_count()), for its stats. */
struct siov_engine *siov_engines_get(struct siov_engines *engines, unsigned i);
void siov_engine_get_stats(const struct siov_engine *engine, struct siov_engine_stats *out);

/* vq must be fully set up (rings mapped, fds set).  Returns 0 or -errno. */
int siov_engine_attach(struct siov_engine *engine, struct siov_vq *vq);
/* Waits until vq's in-flight requests completed; no-op if vq is not attached. */
void siov_engine_detach(struct siov_vq *vq);
/*
 * Control thread: hands vq to engine @to (what rebalancing does).  Unlike a
 * detach, the ring and the session stay: requests the device model holds stay
 * held and are sent by the new engine.  If @to refuses it, vq goes back where
 * it was; if that fails too, the queue is broken.  0 or -errno.
 */
int siov_engine_move(struct siov_vq *vq, struct siov_engine *to);
/* Control thread: the id of the engine running vq, or -1 if none does. */
int siov_engine_of(const struct siov_vq *vq);

/*
 * Control thread: moves one queue from the busiest engine to the idlest if the
 * load (requests since the last call) is lopsided.  Called by the timer.
 */
int siov_engines_rebalance(struct siov_engines *engines);
uint64_t siov_engines_moves(const struct siov_engines *engines);

#endif
