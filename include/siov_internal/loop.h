/*
 * The control thread's event loop: a thin layer over epoll.  Only siovd's
 * control thread uses it (vhost-user slow path, JSON-RPC, signals); engines have
 * their own io_uring loops.  Not thread-safe: call it from the loop's thread.
 */
#ifndef SIOV_INTERNAL_LOOP_H
#define SIOV_INTERNAL_LOOP_H

#include <stdint.h>
#include <sys/epoll.h>

struct siov_loop;
struct siov_watch;

/* events: EPOLLIN/EPOLLOUT/... as returned by epoll. */
typedef void (*siov_watch_cb)(struct siov_watch *w, uint32_t events, void *arg);

int siov_loop_create(struct siov_loop **out);
void siov_loop_destroy(struct siov_loop *loop);

/* Watches fd for events (EPOLLIN etc.).  The loop does not own fd. */
int siov_loop_add(struct siov_loop *loop, int fd, uint32_t events, siov_watch_cb cb, void *arg,
		  struct siov_watch **out);
/*
 * As siov_loop_add, but served first: after every wait and before each
 * ordinary callback.  For fds whose latency a guest notices (vhost-user).
 */
int siov_loop_add_urgent(struct siov_loop *loop, int fd, uint32_t events, siov_watch_cb cb,
			 void *arg, struct siov_watch **out);
int siov_loop_mod(struct siov_watch *w, uint32_t events);
/* Safe to call from inside any callback, including w's own. */
void siov_loop_del(struct siov_watch *w);

/* Runs until siov_loop_stop(); returns 0 or -errno. */
int siov_loop_run(struct siov_loop *loop);
/* Runs one round, waiting at most timeout_ms (-1: forever). */
int siov_loop_run_once(struct siov_loop *loop, int timeout_ms);
void siov_loop_stop(struct siov_loop *loop);

#endif
