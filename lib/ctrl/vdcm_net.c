/*
 * Networks in the VDCM: network_create / network_delete / network_list go
 * through here to the switch (lib/net).  A network with an uplink gets a watch
 * on the control loop for its TAP: frames from the host are read there, in
 * batches, and forwarded like any port's (they are rare next to guest traffic,
 * and the control thread never blocks on them: the TAP is non-blocking).  A
 * timer forgets learned addresses that aged out, so that a network whose
 * guests came and went does not keep their entries.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/timerfd.h>
#include <unistd.h>

#include "siov_internal/log.h"
#include "siov_internal/loop.h"
#include "vdcm_net.h"

#define AGE_PERIOD_S  30
#define UPLINK_BUDGET 64

struct uplink_watch {
	struct uplink_watch *next;
	struct siov_network *net;
	struct siov_watch *w;
};

struct vdcm_nets {
	struct siov_loop *loop;
	struct siov_switch *sw;
	struct uplink_watch *uplinks;
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

int vdcm_nets_create(struct siov_loop *loop, struct vdcm_nets **out)
{
	struct vdcm_nets *n = calloc(1, sizeof(*n));
	int rc;

	if (!n)
		return -ENOMEM;
	n->loop = loop;
	n->timer_fd = -1;
	if ((rc = siov_switch_create(&n->sw)) < 0 || (loop && (rc = timer_start(n)) < 0)) {
		vdcm_nets_destroy(n);
		return rc;
	}
	*out = n;
	return 0;
}

void vdcm_nets_destroy(struct vdcm_nets *n)
{
	struct uplink_watch *u;

	if (!n)
		return;
	while ((u = n->uplinks)) {
		n->uplinks = u->next;
		siov_loop_del(u->w);
		free(u);
	}
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

static void on_uplink(struct siov_watch *w, uint32_t events, void *arg)
{
	struct uplink_watch *u = arg;

	siov_network_uplink_rx(u->net, UPLINK_BUDGET, siov_now_ns());
}

static int uplink_watch(struct vdcm_nets *n, struct siov_network *net, struct siov_err *err)
{
	struct uplink_watch *u;
	int rc;

	if (siov_network_uplink_fd(net) < 0 || !n->loop)
		return 0;
	if (!(u = calloc(1, sizeof(*u))))
		return siov_err_set(err, -ENOMEM, "out of memory");
	u->net = net;
	rc = siov_loop_add(n->loop, siov_network_uplink_fd(net), EPOLLIN, on_uplink, u, &u->w);
	if (rc < 0) {
		free(u);
		return siov_err_set(err, rc, "cannot watch the uplink: %s", strerror(-rc));
	}
	u->next = n->uplinks;
	n->uplinks = u;
	return 0;
}

static void uplink_unwatch(struct vdcm_nets *n, struct siov_network *net)
{
	struct uplink_watch **pp, *u;

	for (pp = &n->uplinks; (u = *pp); pp = &u->next) {
		if (u->net == net) {
			*pp = u->next;
			siov_loop_del(u->w);
			free(u);
			return;
		}
	}
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
