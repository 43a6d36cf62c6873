/*
 * A vhost-user-blk back end in a child process for libsiov's tests: either
 * qemu-storage-daemon (the peer) or siovd driven by siovctl, both serving a
 * sparse file so that the test can also look at the bytes that landed.
 * The same tests run against either; only how the back end starts differs.
 */
#ifndef SIOV_TEST_BACKEND_PROC_H
#define SIOV_TEST_BACKEND_PROC_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

#include "siovd_proc.h"

struct backend_proc {
	pid_t pid;	      /* qemu-storage-daemon; siovd's is sd.pid */
	struct siovd_proc sd; /* siovd through test/lib, when kind->siovd */
	char dir[64];
	char sock[100]; /* fits sun_path */
	char file[128];
	uint64_t size;
	const struct backend_kind *kind; /* what backend_restart() runs again */
	unsigned queues;
	bool ro;
};

/* Which program to run: set once by main() from the command line. */
struct backend_kind {
	const char *qsd;     /* qemu-storage-daemon, when siovd is NULL */
	const char *siovd;   /* siovd binary */
	const char *siovctl; /* siovctl binary, with siovd */
};

/*
 * Starts a back end over a fresh sparse file of @size bytes with @queues
 * queues and waits until its socket accepts connections.  0 or -errno.
 */
int backend_start(const struct backend_kind *kind, struct backend_proc *b, uint64_t size,
		  unsigned queues, bool readonly);

/* Kills the back end at once (SIGKILL), as a crash would. */
void backend_kill(struct backend_proc *b);

/*
 * Starts the same back end again after backend_kill(), without waiting for
 * its socket: siovd on the same --state-dir (it recreates the VDEV itself),
 * qemu-storage-daemon with the same export.  0 or -errno.
 */
int backend_restart(struct backend_proc *b);

/*
 * Stops the back end if it still runs and removes its files.  For siovd:
 * -errno when it did not exit cleanly (status 0, no sanitizer report).
 */
int backend_stop(struct backend_proc *b);

#endif
