/*
 * The control thread's epoll loop.  Watches are freed lazily: a watch deleted
 * inside a callback is only marked, and freed after the current round, so a
 * callback may delete any watch (including its own) without use-after-free.
 *
 * Urgent watches live in a second epoll set nested in the first.  They are
 * served after every wait and again before each ordinary callback, so a
 * vhost-user message (a front end attaching, reconnecting or migrating) waits
 * for at most one ordinary callback, never for a whole round of management
 * calls.  That is the point: during a create storm a round holds up to 64
 * JSON-RPC callbacks, and an attach is a few dozen message round trips.
 */
#include <errno.h>
#include <stdbool.h>
#include <stdlib.h>
#include <sys/epoll.h>
#include <unistd.h>

#include "siov_internal/loop.h"

struct siov_watch {
	struct siov_loop *loop;
	int fd;
	siov_watch_cb cb;
	void *arg;
	bool dead;
	bool urgent;
	struct siov_watch *next_dead;
	struct siov_watch *prev, *next; /* live watches, freed by siov_loop_destroy */
};

struct siov_loop {
	int epfd;
	int uepfd; /* urgent set; itself watched by epfd */
	bool stop;
	struct siov_watch *dead;
	struct siov_watch *live;
};

int siov_loop_create(struct siov_loop **out)
{
	struct siov_loop *loop = calloc(1, sizeof(*loop));
	int rc;

	if (!loop)
		return -ENOMEM;
	loop->epfd = epoll_create1(EPOLL_CLOEXEC);
	if (loop->epfd < 0) {
		rc = -errno;
		goto err_free;
	}
	loop->uepfd = epoll_create1(EPOLL_CLOEXEC);
	if (loop->uepfd < 0) {
		rc = -errno;
		goto err_epfd;
	}
	/* data.ptr NULL marks the nested urgent set in epfd's events. */
	struct epoll_event ev = {.events = EPOLLIN, .data.ptr = NULL};
	if (epoll_ctl(loop->epfd, EPOLL_CTL_ADD, loop->uepfd, &ev) < 0) {
		rc = -errno;
		goto err_uepfd;
	}
	*out = loop;
	return 0;

err_uepfd:
	close(loop->uepfd);
err_epfd:
	close(loop->epfd);
err_free:
	free(loop);
	return rc;
}

static void loop_reap(struct siov_loop *loop)
{
	while (loop->dead) {
		struct siov_watch *w = loop->dead;
		loop->dead = w->next_dead;
		free(w);
	}
}

void siov_loop_destroy(struct siov_loop *loop)
{
	if (!loop)
		return;
	while (loop->live)
		siov_loop_del(loop->live);
	loop_reap(loop);
	close(loop->uepfd);
	close(loop->epfd);
	free(loop);
}

static int loop_add(struct siov_loop *loop, bool urgent, int fd, uint32_t events, siov_watch_cb cb,
		    void *arg, struct siov_watch **out)
{
	struct epoll_event ev = {.events = events};
	struct siov_watch *w = calloc(1, sizeof(*w));

	if (!w)
		return -ENOMEM;
	w->loop = loop;
	w->fd = fd;
	w->cb = cb;
	w->arg = arg;
	w->urgent = urgent;
	ev.data.ptr = w;
	if (epoll_ctl(urgent ? loop->uepfd : loop->epfd, EPOLL_CTL_ADD, fd, &ev) < 0) {
		int rc = -errno;
		free(w);
		return rc;
	}
	w->next = loop->live;
	if (loop->live)
		loop->live->prev = w;
	loop->live = w;
	if (out)
		*out = w;
	return 0;
}

int siov_loop_add(struct siov_loop *loop, int fd, uint32_t events, siov_watch_cb cb, void *arg,
		  struct siov_watch **out)
{
	return loop_add(loop, false, fd, events, cb, arg, out);
}

int siov_loop_add_urgent(struct siov_loop *loop, int fd, uint32_t events, siov_watch_cb cb,
			 void *arg, struct siov_watch **out)
{
	return loop_add(loop, true, fd, events, cb, arg, out);
}

static int watch_epfd(const struct siov_watch *w)
{
	return w->urgent ? w->loop->uepfd : w->loop->epfd;
}

int siov_loop_mod(struct siov_watch *w, uint32_t events)
{
	struct epoll_event ev = {.events = events, .data.ptr = w};

	if (epoll_ctl(watch_epfd(w), EPOLL_CTL_MOD, w->fd, &ev) < 0)
		return -errno;
	return 0;
}

void siov_loop_del(struct siov_watch *w)
{
	if (!w || w->dead)
		return;
	/* The fd may already be closed; then the kernel dropped it for us. */
	epoll_ctl(watch_epfd(w), EPOLL_CTL_DEL, w->fd, NULL);
	if (w->prev)
		w->prev->next = w->next;
	else
		w->loop->live = w->next;
	if (w->next)
		w->next->prev = w->prev;
	w->dead = true;
	w->next_dead = w->loop->dead;
	w->loop->dead = w;
}

static void dispatch(struct epoll_event *evs, int n)
{
	for (int i = 0; i < n; i++) {
		struct siov_watch *w = evs[i].data.ptr;
		if (w && !w->dead)
			w->cb(w, evs[i].events, w->arg);
	}
}

/*
 * Serves what is ready in the urgent set without waiting, until it is empty
 * or a bounded number of passes ran (so a flooding front end cannot starve
 * the ordinary watches: each pass serves each ready fd once).
 */
static void serve_urgent(struct siov_loop *loop)
{
	struct epoll_event evs[64];

	for (int pass = 0; pass < 4; pass++) {
		int n = epoll_wait(loop->uepfd, evs, 64, 0);
		if (n <= 0)
			return;
		dispatch(evs, n);
	}
}

int siov_loop_run_once(struct siov_loop *loop, int timeout_ms)
{
	struct epoll_event evs[64];
	int i, n;

	n = epoll_wait(loop->epfd, evs, 64, timeout_ms);
	if (n < 0)
		return errno == EINTR ? 0 : -errno;
	/* The nested set first, and only when the wait reported it ready. */
	for (i = 0; i < n; i++)
		if (!evs[i].data.ptr) {
			serve_urgent(loop);
			break;
		}
	for (i = 0; i < n; i++) {
		struct siov_watch *w = evs[i].data.ptr;
		if (!w || w->dead)
			continue;
		w->cb(w, evs[i].events, w->arg);
		if (i + 1 < n)
			serve_urgent(loop);
	}
	loop_reap(loop);
	return n;
}

int siov_loop_run(struct siov_loop *loop)
{
	int rc = 0;

	loop->stop = false;
	while (!loop->stop && rc >= 0)
		rc = siov_loop_run_once(loop, -1);
	return rc < 0 ? rc : 0;
}

void siov_loop_stop(struct siov_loop *loop)
{
	loop->stop = true;
}
