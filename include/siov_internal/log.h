/*
 * Logging for siovd: one line per event on stderr, as text or JSON lines.
 * Thread-safe (a single write(2) per line).
 *
 * Messages a front end can cause (a malformed vhost-user message, a broken
 * ring) go through a per-VDEV rate limiter, SIOV_VDEV_LOG(): at most
 * SIOV_RATELIMIT_BURST per SIOV_RATELIMIT_WINDOW_NS, then one line saying how
 * many were dropped, so a hostile guest cannot flood the log or the disk.
 */
#ifndef SIOV_INTERNAL_LOG_H
#define SIOV_INTERNAL_LOG_H

#include <stdbool.h>
#include <stdint.h>

enum siov_log_level { SIOV_LOG_ERR, SIOV_LOG_WARN, SIOV_LOG_INFO, SIOV_LOG_DEBUG };
enum siov_log_format { SIOV_LOG_TEXT, SIOV_LOG_JSON };

void siov_log_set_level(enum siov_log_level level);
void siov_log_set_format(enum siov_log_format format);
void siov_log(enum siov_log_level level, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

#define SIOV_ERR(...)	siov_log(SIOV_LOG_ERR, __VA_ARGS__)
#define SIOV_WARN(...)	siov_log(SIOV_LOG_WARN, __VA_ARGS__)
#define SIOV_INFO(...)	siov_log(SIOV_LOG_INFO, __VA_ARGS__)
#define SIOV_DEBUG(...) siov_log(SIOV_LOG_DEBUG, __VA_ARGS__)

#define SIOV_RATELIMIT_BURST	 10
#define SIOV_RATELIMIT_WINDOW_NS (10ull * 1000000000ull)

/* One per VDEV (or queue); zero-initialised.  Used by one thread at a time. */
struct siov_ratelimit {
	uint64_t window_start;
	unsigned count, suppressed;
};

/* Whether one more message may go out now; who names the VDEV in the "suppressed" line. */
bool siov_ratelimit_pass(struct siov_ratelimit *rl, const char *who);

/* A message a front end caused, for VDEV who, limited by rl. */
#define SIOV_VDEV_LOG(rl, who, level, ...)                                                         \
	do {                                                                                       \
		if (siov_ratelimit_pass((rl), (who)))                                              \
			siov_log((level), __VA_ARGS__);                                            \
	} while (0)

#endif
