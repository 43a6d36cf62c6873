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
	struct siov_loop *loop; /* the control loop, for the balancing timer; may be NULL */
	unsigned balance_ms;	/* how often to rebalance queues; 0 = never */
};

int siov_engines_create(const struct siov_engines_opts *opts, struct siov_engines **out);
/* Every queue must have been detached. */
void siov_engines_destroy(struct siov_engines *engines);
unsigned siov_engines_count(const struct siov_engines *engines);
/* The engine serving the fewest queues. */
struct siov_engine *siov_engines_pick(struct siov_engines *engines);
unsigned siov_engine_id(const struct siov_engine *engine);

/* vq must be fully set up (rings mapped, fds set).  Returns 0 or -errno. */
int siov_engine_attach(struct siov_engine *engine, struct siov_vq *vq);
/* Waits until vq's in-flight requests completed; no-op if vq is not attached. */
void siov_engine_detach(struct siov_vq *vq);
/* Control thread: the id of the engine running vq, or -1 if none does. */
int siov_engine_of(const struct siov_vq *vq);

/*
 * Control thread: moves one queue from the busiest engine to the idlest if the
 * load (requests since the last call) is lopsided.  Called by the timer.
 */
int siov_engines_rebalance(struct siov_engines *engines);
uint64_t siov_engines_moves(const struct siov_engines *engines);

#endif
