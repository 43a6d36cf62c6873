/*
 * Networks in the VDCM: network_create / network_delete / network_list go
 * through here to the switch (lib/net).  Frames from the networks' uplinks
 * (TAPs) are read on a thread of their own, started with the first uplink:
 * one epoll over every TAP, 64 frames per TAP and wake-up, forwarded like any
 * port's.  Not on the control thread, so that a flood from the host delays no
 * VDEV's vhost-user messages and no RPC; not on an engine, whose io_uring
 * serves rings and backends and has no use for a TAP's readiness.  Idle, the
 * thread sleeps in epoll_wait.  A timer on the control loop forgets learned
 * addresses that aged out, so that a network whose guests came and went does
 * not keep their entries.
 */
#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/timerfd.h>
#include <unistd.h>

#include "siov_internal/log.h"
#include "siov_internal/loop.h"
#include "vdcm_net.h"

#define AGE_PERIOD_S  30
#define UPLINK_BUDGET 64
#define STOP_ID	      0 /* the epoll id of the reader's stop eventfd; uplinks count from 1 */

struct uplink {
	struct uplink *next;
	struct siov_network *net;
	uint64_t id; /* in epoll: a stale event finds no uplink with its id */
};

/* The thread that reads every uplink; lock guards the list and is held while it reads. */
struct uplink_reader {
	pthread_mutex_t lock;
	struct uplink *list;
	uint64_t next_id;
	int epfd, stop_fd;
	pthread_t thread;
	bool running;
};

struct vdcm_nets {
	struct siov_loop *loop;
	struct siov_switch *sw;
	struct uplink_reader rd;
	int timer_fd;
	struct siov_watch *timer;
};

static void age_all(const struct siov_network_info *info, void *arg)
{
	struct vdcm_nets *n = arg;

	siov_network_age(siov_network_find(n->sw, info->conf->name), siov_now_ns());
}

static void on_timer(struct siov_watch *w, uint32_t events, void *arg)
{
	struct vdcm_nets *n = arg;
	uint64_t ticks;

	if (read(n->timer_fd, &ticks, sizeof(ticks)) == sizeof(ticks))
		siov_network_foreach(n->sw, age_all, n);
}

static int timer_start(struct vdcm_nets *n)
{
	struct itimerspec its = {{AGE_PERIOD_S, 0}, {AGE_PERIOD_S, 0}};

	n->timer_fd = timerfd_create(CLOCK_MONOTONIC, TFD_NONBLOCK | TFD_CLOEXEC);
	if (n->timer_fd < 0)
		return -errno;
	if (timerfd_settime(n->timer_fd, 0, &its, NULL) < 0)
		return -errno;
	return siov_loop_add(n->loop, n->timer_fd, EPOLLIN, on_timer, n, &n->timer);
}

static void reader_stop(struct uplink_reader *rd);

int vdcm_nets_create(struct siov_loop *loop, struct vdcm_nets **out)
{
	struct vdcm_nets *n = calloc(1, sizeof(*n));
	int rc;

	if (!n)
		return -ENOMEM;
	n->loop = loop;
	n->timer_fd = -1;
	n->rd.epfd = n->rd.stop_fd = -1;
	n->rd.next_id = STOP_ID + 1;
	pthread_mutex_init(&n->rd.lock, NULL);
	if ((rc = siov_switch_create(&n->sw)) < 0 || (loop && (rc = timer_start(n)) < 0)) {
		vdcm_nets_destroy(n);
		return rc;
	}
	*out = n;
	return 0;
}

void vdcm_nets_destroy(struct vdcm_nets *n)
{
	struct uplink *u;

	if (!n)
		return;
	/* First: the reader must not read a TAP the switch is about to close. */
	reader_stop(&n->rd);
	while ((u = n->rd.list)) {
		n->rd.list = u->next;
		free(u);
	}
	pthread_mutex_destroy(&n->rd.lock);
	if (n->timer)
		siov_loop_del(n->timer);
	if (n->timer_fd >= 0)
		close(n->timer_fd);
	siov_switch_destroy(n->sw);
	free(n);
}

struct siov_switch *vdcm_nets_switch(struct vdcm_nets *n)
{
	return n->sw;
}

/* ---- The uplink reader ---- */

static struct uplink *uplink_find(struct uplink_reader *rd, uint64_t id)
{
	struct uplink *u;

	for (u = rd->list; u && u->id != id; u = u->next)
		;
	return u;
}

static void *reader_main(void *arg)
{
	struct uplink_reader *rd = arg;
	struct epoll_event ev[16];

	for (;;) {
		int k = epoll_wait(rd->epfd, ev, SIOV_ARRAY_SIZE(ev), -1), i;

		if (k < 0 && errno != EINTR) {
			SIOV_ERR("uplinks: epoll_wait: %s; no more frames from the host",
				 strerror(errno));
			return NULL;
		}
		pthread_mutex_lock(&rd->lock);
		for (i = 0; i < k; i++) {
			struct uplink *u;

			if (ev[i].data.u64 == STOP_ID) {
				pthread_mutex_unlock(&rd->lock);
				return NULL;
			}
			/* None: the uplink went after epoll_wait returned its event. */
			if ((u = uplink_find(rd, ev[i].data.u64)))
				siov_network_uplink_rx(u->net, UPLINK_BUDGET, siov_now_ns());
		}
		pthread_mutex_unlock(&rd->lock);
	}
}

static int reader_start(struct uplink_reader *rd, struct siov_err *err)
{
	struct epoll_event ev = {.events = EPOLLIN, .data.u64 = STOP_ID};
	int rc;

	if (rd->running)
		return 0;
	if ((rd->epfd = epoll_create1(EPOLL_CLOEXEC)) < 0 ||
	    (rd->stop_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK)) < 0 ||
	    epoll_ctl(rd->epfd, EPOLL_CTL_ADD, rd->stop_fd, &ev) < 0) {
		rc = -errno;
		goto err;
	}
	if ((rc = -pthread_create(&rd->thread, NULL, reader_main, rd)) < 0)
		goto err;
	pthread_setname_np(rd->thread, "siov-uplinks");
	rd->running = true;
	return 0;

err:
	reader_stop(rd);
	return siov_err_set(err, rc, "cannot start the uplink reader: %s", strerror(-rc));
}

static void reader_stop(struct uplink_reader *rd)
{
	if (rd->running) {
		eventfd_write(rd->stop_fd, 1);
		pthread_join(rd->thread, NULL);
		rd->running = false;
	}
	if (rd->stop_fd >= 0)
		close(rd->stop_fd);
	if (rd->epfd >= 0)
		close(rd->epfd);
	rd->epfd = rd->stop_fd = -1;
}

static int uplink_watch(struct vdcm_nets *n, struct siov_network *net, struct siov_err *err)
{
	struct uplink_reader *rd = &n->rd;
	struct epoll_event ev = {.events = EPOLLIN};
	struct uplink *u;
	int rc;

	if (siov_network_uplink_fd(net) < 0 || !n->loop)
		return 0;
	if ((rc = reader_start(rd, err)) < 0)
		return rc;
	if (!(u = calloc(1, sizeof(*u))))
		return siov_err_set(err, -ENOMEM, "out of memory");
	pthread_mutex_lock(&rd->lock);
	u->net = net;
	u->id = ev.data.u64 = rd->next_id++;
	if (epoll_ctl(rd->epfd, EPOLL_CTL_ADD, siov_network_uplink_fd(net), &ev) < 0) {
		rc = siov_err_set(err, -errno, "cannot watch the uplink: %s", strerror(errno));
		free(u);
	} else {
		u->next = rd->list;
		rd->list = u;
	}
	pthread_mutex_unlock(&rd->lock);
	return rc;
}

/* When this returns, the reader is not reading net's TAP and never will again. */
static void uplink_unwatch(struct vdcm_nets *n, struct siov_network *net)
{
	struct uplink_reader *rd = &n->rd;
	struct uplink **pp, *u;

	pthread_mutex_lock(&rd->lock);
	for (pp = &rd->list; (u = *pp); pp = &u->next) {
		if (u->net == net) {
			*pp = u->next;
			epoll_ctl(rd->epfd, EPOLL_CTL_DEL, siov_network_uplink_fd(net), NULL);
			free(u);
			break;
		}
	}
	pthread_mutex_unlock(&rd->lock);
}

int siov_vdcm_network_create(struct siov_vdcm *v, const struct siov_network_conf *conf,
			     struct siov_err *err)
{
	struct vdcm_nets *n = vdcm_nets_of(v);
	struct siov_network *net;
	int rc;

	if ((rc = siov_network_create(n->sw, conf, &net, err)) < 0)
		return rc;
	if ((rc = uplink_watch(n, net, err)) < 0) {
		siov_network_delete(n->sw, conf->name, NULL);
		return rc;
	}
	SIOV_INFO("network %s: mtu %u%s%s", conf->name, siov_network_conf(net)->mtu,
		  conf->uplink[0] ? ", uplink " : "", conf->uplink);
	return 0;
}

int siov_vdcm_network_delete(struct siov_vdcm *v, const char *name, struct siov_err *err)
{
	struct vdcm_nets *n = vdcm_nets_of(v);
	struct siov_network *net = siov_network_find(n->sw, name);
	int rc;

	if (!net)
		return siov_err_set(err, -ENOENT, "no network named '%s'", name);
	/* Unwatch first: the delete closes the TAP (a failed delete re-adds the watch). */
	uplink_unwatch(n, net);
	if ((rc = siov_network_delete(n->sw, name, err)) < 0)
		uplink_watch(n, net, NULL);
	return rc;
}

void siov_vdcm_network_foreach(struct siov_vdcm *v, siov_network_info_cb cb, void *arg)
{
	siov_network_foreach(vdcm_nets_of(v)->sw, cb, arg);
}
