/* Small helpers shared by every layer of siovd. */
#ifndef SIOV_INTERNAL_UTIL_H
#define SIOV_INTERNAL_UTIL_H

#include <stddef.h>
#include <stdint.h>
#include <stdbool.h>

#define SIOV_ARRAY_SIZE(a)		     (sizeof(a) / sizeof((a)[0]))
#define SIOV_CONTAINER_OF(ptr, type, member) ((type *)((char *)(ptr)-offsetof(type, member)))
#define SIOV_MIN(a, b)			     ((a) < (b) ? (a) : (b))
#define SIOV_MAX(a, b)			     ((a) > (b) ? (a) : (b))

/* Names of backends, VDEVs and groups: [A-Za-z0-9_.-], 1..63 chars, no leading dot. */
#define SIOV_NAME_MAX 64
bool siov_name_valid(const char *name);

/* An error a person can read, carried from the layer that found it to the RPC reply. */
struct siov_err {
	int code; /* -errno */
	char msg[256];
};
int siov_err_set(struct siov_err *err, int code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* Monotonic clock in nanoseconds. */
uint64_t siov_now_ns(void);

#endif
