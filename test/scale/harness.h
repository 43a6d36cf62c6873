/*
 * What the scale and QoS tests share: a real siovd started by
 * test/lib/siovd_proc (killed on every way out), a JSON-RPC client that sends batches over one
 * connection, libsiov clients with a verified write+read, and siovd's
 * resource use read from /proc.
 */
#ifndef SIOV_TEST_SCALE_HARNESS_H
#define SIOV_TEST_SCALE_HARNESS_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

#include <json-c/json.h>

#include "siov/libsiov.h"
#include "siovd_proc.h"

struct sd {
	struct siovd_proc p; /* test/lib: directory, rpc.sock, siovd.log, pid */
	int rpc_fd;
	int failed;
};

/* Prints and counts a failed check. */
void check(struct sd *s, bool ok, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

/*
 * Starts siovd with --log-level warn and @extra (NULL-terminated, kept by
 * pointer) through siovd_proc and connects to its RPC socket.
 */
int sd_start(struct sd *s, const char *siovd, const char *const *extra);
/*
 * siovd_proc_stop() (SIGTERM, SIGKILL after 30 s, exit status and sanitizer
 * reports checked), then removes the directory, or keeps it on failure.
 * 0 when siovd stopped cleanly, else -errno.
 */
int sd_stop(struct sd *s);

/* One call; returns the result (a new reference) or NULL with the error printed. */
struct json_object *sd_call(struct sd *s, const char *method, struct json_object *params);
/* Sends reqs (an array of requests) as one batch; returns the array of answers. */
struct json_object *sd_batch(struct sd *s, struct json_object *reqs);
/* A request object for a batch. */
struct json_object *sd_req(const char *method, struct json_object *params, int id);
/* How many answers of a batch carry an error (the first one printed). */
unsigned sd_batch_errors(struct json_object *answers);

/* siovd's resident memory in bytes (VmRSS, and its anonymous part RssAnon). */
int sd_rss(struct sd *s, uint64_t *rss, uint64_t *anon);
/* siovd's user+system CPU time so far, in seconds. */
double sd_cpu(struct sd *s);
unsigned sd_fds(struct sd *s);

/* The soft fd limit raised to the hard one; returns the new soft limit. */
unsigned raise_nofile(void);
double now_s(void);

/* A libsiov client of one VDEV with one queue and a 64 KiB buffer. */
struct client {
	struct siov_dev *dev;
	struct siov_queue *q;
	uint8_t *buf;
};
#define CLIENT_BUF (64u << 10)

int client_open(struct client *c, const char *sock, unsigned queue_size);
void client_close(struct client *c);
/* Writes len bytes of a pattern at offset, reads them back and compares. 0 or -errno. */
int client_verify(struct client *c, uint64_t offset, uint32_t len, uint32_t seed);

#endif
