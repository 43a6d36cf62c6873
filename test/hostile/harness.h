/*
 * What the hostile test needs around its front end: a real siovd started by
 * test/lib/siovd_proc (killed on every way out), siovctl calls with their
 * output captured, a tally of checks, and the "good" VDEV's verified I/O that
 * must keep working between attacks.
 */
#ifndef SIOV_TEST_HOSTILE_HARNESS_H
#define SIOV_TEST_HOSTILE_HARNESS_H

#include <stdbool.h>
#include <sys/types.h>

#include "frontend.h"
#include "siovd_proc.h"

#define BAD_SECTORS 32768u /* the bad VDEV's window: 16 MiB at backend offset 0 */
#define GOOD_OFFSET 16777216u

struct hctx {
	const char *siovd, *siovctl;
	struct siovd_proc sd; /* test/lib: directory, rpc.sock, siovd.log, pid */
	char good_sock[128], bad_sock[128];
	struct fe good;
	unsigned round;
	int passed, failed;
	bool quiet_ctl;
};

extern struct hctx H;

void check(bool ok, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
void note(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/*
 * Takes "SIOVD SIOVCTL" from the command line (77: skip, with a message, when
 * they are not executables), and makes sure siovd is killed however the test
 * ends (atexit, SIGTERM, SIGINT).  0 when the test can go on.
 */
int harness_begin(int argc, char **argv);
/* SIGTERM: siovd must exit 0 within 10 s and its log hold no sanitizer report. */
void harness_stop(void);

/* siovd_proc_start() the first time, siovd_proc_restart() after a crash. */
int daemon_start(void);
/* siovd_proc_alive(), with a note of how siovd ended when it did. */
bool daemon_alive(void);

/* Runs siovctl METHOD ARGS... (NULL-terminated); returns its exit status. */
int ctl(char *out, size_t outsz, const char *method, ...) __attribute__((sentinel));
/* The VDEV's top-level "state" and "broken_reason" from vdev_stats. */
int vdev_state(const char *name, char *state, size_t ssz, char *reason, size_t rsz);
/* Polls vdev_stats until the state is @want; false at the deadline. */
bool wait_state(const char *name, const char *want, int timeout_ms, char *reason, size_t rsz);

void pattern_fill(uint8_t *p, size_t len, uint32_t seed);
bool pattern_check(const uint8_t *p, size_t len, uint32_t seed);
/* Writes and reads back a pattern on @fe at @sector; false with a note on failure. */
bool fe_verify_rw(struct fe *fe, uint64_t sector, uint32_t len, uint32_t seed);

/* Connects the good front end and writes the baseline its neighbour must not touch. */
int good_start(void);
/* A fresh write+read on good, and the baseline still intact. */
bool good_verify(void);

#endif
