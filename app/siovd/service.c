/*
 * siovd under systemd (Type=notify): READY=1 once the state is restored and
 * every socket listens, STOPPING=1 when a stop begins, and WATCHDOG=1 from a
 * timer on the control loop at half of WatchdogSec, so that a control thread
 * stuck anywhere (a hung disk, a loop) gets siovd restarted.  Outside systemd
 * (no $NOTIFY_SOCKET) sd_notify does nothing and no timer is armed.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/timerfd.h>
#include <unistd.h>

#include <systemd/sd-daemon.h>

#include "siov_internal/log.h"
#include "siov_internal/loop.h"
#include "service.h"

struct siovd_service {
	int timer_fd;
	struct siov_watch *w;
};

static void on_watchdog(struct siov_watch *w, uint32_t events, void *arg)
{
	struct siovd_service *s = arg;
	uint64_t n;

	(void)!read(s->timer_fd, &n, sizeof(n));
	sd_notify(0, "WATCHDOG=1");
}

static int arm_watchdog(struct siovd_service *s, struct siov_loop *loop, uint64_t usec)
{
	uint64_t half = usec / 2 ? usec / 2 : 1;
	struct itimerspec its = {
	    .it_interval = {(time_t)(half / 1000000), (long)(half % 1000000) * 1000},
	    .it_value = {(time_t)(half / 1000000), (long)(half % 1000000) * 1000},
	};

	s->timer_fd = timerfd_create(CLOCK_MONOTONIC, TFD_NONBLOCK | TFD_CLOEXEC);
	if (s->timer_fd < 0 || timerfd_settime(s->timer_fd, 0, &its, NULL) < 0)
		return -errno;
	SIOV_INFO("systemd watchdog: pinging every %.1f s", (double)half / 1e6);
	return siov_loop_add(loop, s->timer_fd, EPOLLIN, on_watchdog, s, &s->w);
}

int siovd_service_start(struct siov_loop *loop, struct siovd_service **out)
{
	struct siovd_service *s = calloc(1, sizeof(*s));
	uint64_t usec = 0;
	int rc;

	if (!s)
		return -ENOMEM;
	s->timer_fd = -1;
	/* > 0 only when systemd asked for pings from this very process. */
	if (sd_watchdog_enabled(0, &usec) > 0 && (rc = arm_watchdog(s, loop, usec)) < 0) {
		siovd_service_stop(s);
		return rc;
	}
	*out = s;
	return 0;
}

void siovd_service_ready(struct siovd_service *s, unsigned vdevs, unsigned backends)
{
	sd_notifyf(0, "READY=1\nSTATUS=serving %u VDEVs on %u backends\nMAINPID=%lu", vdevs,
		   backends, (unsigned long)getpid());
}

void siovd_service_stopping(struct siovd_service *s)
{
	sd_notify(0, "STOPPING=1\nSTATUS=draining in-flight I/O");
}

void siovd_service_stop(struct siovd_service *s)
{
	if (!s)
		return;
	siov_loop_del(s->w);
	if (s->timer_fd >= 0)
		close(s->timer_fd);
	free(s);
}
