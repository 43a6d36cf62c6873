/*
 * The control thread's epoll loop.  Watches are freed lazily: a watch deleted
 * inside a callback is only marked, and freed after the current round, so a
 * callback may delete any watch (including its own) without use-after-free.
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
	struct siov_watch *next_dead;
	struct siov_watch *prev, *next; /* live watches, freed by siov_loop_destroy */
};

struct siov_loop {
	int epfd;
	bool stop;
	struct siov_watch *dead;
	struct siov_watch *live;
};

int siov_loop_create(struct siov_loop **out)
{
	struct siov_loop *loop = calloc(1, sizeof(*loop));

	if (!loop)
		return -ENOMEM;
	loop->epfd = epoll_create1(EPOLL_CLOEXEC);
	if (loop->epfd < 0) {
		int rc = -errno;
		free(loop);
		return rc;
	}
	*out = loop;
	return 0;
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
	close(loop->epfd);
	free(loop);
}

int siov_loop_add(struct siov_loop *loop, int fd, uint32_t events, siov_watch_cb cb, void *arg,
		  struct siov_watch **out)
{
	struct epoll_event ev = {.events = events};
	struct siov_watch *w = calloc(1, sizeof(*w));

	if (!w)
		return -ENOMEM;
	w->loop = loop;
	w->fd = fd;
	w->cb = cb;
	w->arg = arg;
	ev.data.ptr = w;
	if (epoll_ctl(loop->epfd, EPOLL_CTL_ADD, fd, &ev) < 0) {
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

int siov_loop_mod(struct siov_watch *w, uint32_t events)
{
	struct epoll_event ev = {.events = events, .data.ptr = w};

	if (epoll_ctl(w->loop->epfd, EPOLL_CTL_MOD, w->fd, &ev) < 0)
		return -errno;
	return 0;
}

void siov_loop_del(struct siov_watch *w)
{
	if (!w || w->dead)
		return;
	/* The fd may already be closed; then the kernel dropped it for us. */
	epoll_ctl(w->loop->epfd, EPOLL_CTL_DEL, w->fd, NULL);
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

int siov_loop_run_once(struct siov_loop *loop, int timeout_ms)
{
	struct epoll_event evs[64];
	int i, n;

	n = epoll_wait(loop->epfd, evs, 64, timeout_ms);
	if (n < 0)
		return errno == EINTR ? 0 : -errno;
	for (i = 0; i < n; i++) {
		struct siov_watch *w = evs[i].data.ptr;
		if (!w->dead)
			w->cb(w, evs[i].events, w->arg);
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
