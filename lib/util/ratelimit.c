/*
 * The per-VDEV limiter of messages a front end can cause (log.h): a burst
 * per window goes out, the rest is counted and reported in one line when
 * the next window opens, so a hostile guest cannot flood the log.
 */
#include "siov_internal/log.h"
#include "siov_internal/util.h"

bool siov_ratelimit_pass(struct siov_ratelimit *rl, const char *who)
{
	uint64_t now = siov_now_ns();
	unsigned dropped;

	if (now - rl->window_start >= SIOV_RATELIMIT_WINDOW_NS) {
		dropped = rl->suppressed;
		rl->window_start = now;
		rl->count = 0;
		rl->suppressed = 0;
		if (dropped)
			siov_log(SIOV_LOG_WARN,
				 "%s: %u message(s) suppressed (more than %u in %u s)", who,
				 dropped, SIOV_RATELIMIT_BURST,
				 (unsigned)(SIOV_RATELIMIT_WINDOW_NS / 1000000000ull));
	}
	if (rl->count < SIOV_RATELIMIT_BURST) {
		rl->count++;
		return true;
	}
	rl->suppressed++;
	return false;
}
