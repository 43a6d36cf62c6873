/*
 * LD_PRELOAD helper for counting siovd's instructions under valgrind
 * (bench/sections/packed.sh).  Valgrind 3.19 (Debian 12) does not mark
 * io_uring_enter() as a blocking system call, so a thread waiting in it
 * keeps valgrind's big lock and every other thread of siovd stops: siovd
 * never answers its RPC socket.  This replaces liburing's two waiting calls
 * (the only ones siovd makes) by submit-then-poll with short sleeps, which
 * valgrind does let other threads through.  Counting only: never in a
 * production run.
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <errno.h>
#include <time.h>
#include <unistd.h>
#include <liburing.h>

static int (*real_submit)(struct io_uring *);
static int (*real_get_events)(struct io_uring *);

static unsigned long long now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (unsigned long long)ts.tv_sec * 1000000000ull + (unsigned long long)ts.tv_nsec;
}

/* Submits, then waits for n CQEs (or the deadline, 0: none) without blocking in the kernel. */
static int wait_cqes(struct io_uring *ring, unsigned n, unsigned long long deadline)
{
	int rc;

	if (!real_submit) {
		real_submit = (int (*)(struct io_uring *))dlsym(RTLD_NEXT, "io_uring_submit");
		real_get_events =
		    (int (*)(struct io_uring *))dlsym(RTLD_NEXT, "io_uring_get_events");
		if (!real_submit || !real_get_events)
			return -ENOSYS;
	}
	rc = real_submit(ring);
	while (io_uring_cq_ready(ring) < n) {
		if (deadline && now_ns() >= deadline)
			return rc < 0 ? rc : -ETIME;
		usleep(50);
		real_get_events(ring); /* runs DEFER_TASKRUN completions */
	}
	return rc;
}

int io_uring_submit_and_wait(struct io_uring *ring, unsigned wait_nr)
{
	return wait_cqes(ring, wait_nr, 0);
}

int io_uring_submit_and_wait_timeout(struct io_uring *ring, struct io_uring_cqe **cqe_ptr,
				     unsigned wait_nr, struct __kernel_timespec *ts,
				     sigset_t *sigmask)
{
	unsigned long long deadline = 0;
	int rc;

	(void)sigmask;
	if (ts)
		deadline = now_ns() + (unsigned long long)ts->tv_sec * 1000000000ull +
			   (unsigned long long)ts->tv_nsec;
	rc = wait_cqes(ring, wait_nr ? wait_nr : 1, deadline);
	if (rc >= 0 && io_uring_peek_cqe(ring, cqe_ptr) != 0)
		*cqe_ptr = NULL;
	return rc;
}
