/*
 * Logging to stderr, one write(2) per line so that threads do not interleave.
 * Text lines are "siovd SECONDS.MS LEVEL: message"; JSON lines (for journald,
 * Loki, Elasticsearch) are {"ts": seconds, "level": "...", "msg": "..."} with
 * the message escaped as JSON wants.  The rate limiter is in ratelimit.c (the
 * fuzzers replace this file with a quiet logger and keep the limiter).
 */
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "siov_internal/log.h"
#include "siov_internal/util.h"

static enum siov_log_level g_level = SIOV_LOG_INFO;
static enum siov_log_format g_format = SIOV_LOG_TEXT;
static const char *const level_names[] = {"error", "warn", "info", "debug"};

void siov_log_set_level(enum siov_log_level level)
{
	g_level = level;
}

void siov_log_set_format(enum siov_log_format format)
{
	g_format = format;
}

/* Appends msg to out as the inside of a JSON string; returns the new length. */
static size_t json_escape(char *out, size_t n, size_t cap, const char *msg)
{
	for (const unsigned char *p = (const unsigned char *)msg; *p && n + 7 < cap; p++) {
		if (*p == '"' || *p == '\\') {
			out[n++] = '\\';
			out[n++] = (char)*p;
		} else if (*p < 0x20) {
			n += (size_t)snprintf(out + n, cap - n, "\\u%04x", *p);
		} else {
			out[n++] = (char)*p;
		}
	}
	return n;
}

static void emit(enum siov_log_level level, const char *msg)
{
	char line[2048];
	struct timespec ts;
	int n;

	clock_gettime(CLOCK_REALTIME, &ts);
	if (g_format == SIOV_LOG_JSON) {
		n = snprintf(line, sizeof(line), "{\"ts\":%ld.%06ld,\"level\":\"%s\",\"msg\":\"",
			     (long)ts.tv_sec, ts.tv_nsec / 1000, level_names[level]);
		n = (int)json_escape(line, (size_t)n, sizeof(line) - 4, msg);
		memcpy(line + n, "\"}\n", 3);
		n += 3;
	} else {
		n = snprintf(line, sizeof(line) - 1, "siovd %ld.%03ld %s: %s", (long)ts.tv_sec,
			     ts.tv_nsec / 1000000, level_names[level], msg);
		if (n > (int)sizeof(line) - 2)
			n = sizeof(line) - 2;
		line[n++] = '\n';
	}
	(void)!write(STDERR_FILENO, line, (size_t)n);
}

void siov_log(enum siov_log_level level, const char *fmt, ...)
{
	char msg[1024];
	va_list ap;

	if (level > g_level)
		return;
	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	emit(level, msg);
}
