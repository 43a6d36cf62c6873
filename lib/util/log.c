/* Logging to stderr, one write(2) per line so that threads do not interleave. */
#include <stdarg.h>
#include <stdio.h>
#include <time.h>
#include <unistd.h>

#include "siov_internal/log.h"

static enum siov_log_level g_level = SIOV_LOG_INFO;

void siov_log_set_level(enum siov_log_level level)
{
	g_level = level;
}

void siov_log(enum siov_log_level level, const char *fmt, ...)
{
	static const char *const names[] = {"error", "warn", "info", "debug"};
	char line[1024];
	struct timespec ts;
	va_list ap;
	int n, m;

	if (level > g_level)
		return;
	clock_gettime(CLOCK_REALTIME, &ts);
	n = snprintf(line, sizeof(line), "siovd %ld.%03ld %s: ", (long)ts.tv_sec,
		     ts.tv_nsec / 1000000, names[level]);
	va_start(ap, fmt);
	m = vsnprintf(line + n, sizeof(line) - n - 1, fmt, ap);
	va_end(ap);
	if (m < 0)
		return;
	n += m;
	if (n > (int)sizeof(line) - 2)
		n = sizeof(line) - 2;
	line[n++] = '\n';
	(void)!write(STDERR_FILENO, line, n);
}
