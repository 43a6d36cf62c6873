/*
 * Logging for siovd: one line per event on stderr, with level and subsystem.
 * Thread-safe (a single write(2) per line).
 */
#ifndef SIOV_INTERNAL_LOG_H
#define SIOV_INTERNAL_LOG_H

enum siov_log_level { SIOV_LOG_ERR, SIOV_LOG_WARN, SIOV_LOG_INFO, SIOV_LOG_DEBUG };

void siov_log_set_level(enum siov_log_level level);
void siov_log(enum siov_log_level level, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

#define SIOV_ERR(...)	siov_log(SIOV_LOG_ERR, __VA_ARGS__)
#define SIOV_WARN(...)	siov_log(SIOV_LOG_WARN, __VA_ARGS__)
#define SIOV_INFO(...)	siov_log(SIOV_LOG_INFO, __VA_ARGS__)
#define SIOV_DEBUG(...) siov_log(SIOV_LOG_DEBUG, __VA_ARGS__)

#endif
