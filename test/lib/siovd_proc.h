/*
 * One way for siov's C tests to run a real siovd (test/lib/siovd.sh is the
 * same for shell tests; test/README.md describes the conventions both keep):
 *
 * - a fresh directory, mkdtemp("/tmp/siov-TAG.XXXXXX"), holding rpc.sock, the
 *   state directory state/ and the daemon's stdout+stderr in siovd.log;
 * - the daemon is our child (PR_SET_PDEATHSIG: it dies with the test) started
 *   as SIOVD --rpc-socket DIR/rpc.sock --state-dir DIR/state EXTRA...;
 * - ready means it answered a daemon_info JSON-RPC call, not that a socket
 *   file appeared;
 * - stop is SIGTERM, then SIGKILL after a timeout, by pid, never by name;
 * - the leak check: a clean stop is exit status 0 and a log free of
 *   AddressSanitizer, LeakSanitizer and UBSan reports;
 * - on failure (or SIOV_TEST_KEEP=1) the directory is kept and the last
 *   lines of the log are printed; otherwise it is removed.
 *
 * Not thread-safe; one struct per daemon.
 */
#ifndef SIOV_TEST_SIOVD_PROC_H
#define SIOV_TEST_SIOVD_PROC_H

#include <stdbool.h>
#include <stddef.h>
#include <sys/types.h>

#define SIOVD_PROC_START_MS 15000 /* a sanitized siovd is slow to start */
#define SIOVD_PROC_STOP_MS  20000 /* SIGTERM drains I/O: give it time */
#define SIOV_TEST_ARRAY(a)  (sizeof(a) / sizeof((a)[0]))

struct siovd_proc {
	const char *siovd; /* the binary */
	char dir[64];
	char rpc[108]; /* fits sun_path */
	char state[128];
	char log[128];
	const char *extra[24]; /* options after the two fixed ones, NULL-terminated */
	pid_t pid;	       /* -1 when not running */
	int status;	       /* wait status once reaped, -1 before */
	bool failed;	       /* keep the directory at cleanup */
	/* A report the test provokes on purpose (e.g. a SIGBUS), not counted. */
	const char *allowed_report;
};

/*
 * Makes the directory and starts siovd with @extra (NULL-terminated, may be
 * NULL; kept by pointer for siovd_proc_restart) and waits until it answers
 * daemon_info.  On failure the log is printed and the daemon killed.  0 or -errno.
 */
int siovd_proc_start(struct siovd_proc *p, const char *siovd, const char *tag,
		     const char *const *extra);
/* Starts siovd again on the same directory and state; waits unless !wait_ready. */
int siovd_proc_restart(struct siovd_proc *p, bool wait_ready);
/* Polls daemon_info until it answers, the daemon dies or @timeout_ms pass. */
int siovd_proc_wait_ready(struct siovd_proc *p, int timeout_ms);
/* True while the daemon runs; reaps it (and records its status) once it has exited. */
bool siovd_proc_alive(struct siovd_proc *p);
/*
 * SIGTERM, waits up to @timeout_ms, then SIGKILL.  Returns 0 when siovd exited
 * with status 0 and its log has no sanitizer report, else -ECHILD (not
 * running), -ETIMEDOUT (had to be killed), -EIO (bad status) or -EBADMSG
 * (sanitizer report); marks p->failed then.
 */
int siovd_proc_stop(struct siovd_proc *p, int timeout_ms);
/* SIGKILL at once, as a crash would. */
void siovd_proc_kill(struct siovd_proc *p);
/*
 * Stops the daemon if it still runs, then removes the directory, or keeps it
 * (and prints the log) when p->failed or the stop was not clean.  Returns
 * that stop's result (0 if siovd had already ended or stopped).
 */
int siovd_proc_cleanup(struct siovd_proc *p);

/* Lines of siovd.log containing @needle. */
int siovd_proc_log_count(const struct siovd_proc *p, const char *needle);
/* Sanitizer reports in the log, those containing p->allowed_report aside. */
int siovd_proc_log_reports(const struct siovd_proc *p);
/* Prints the last @lines lines of the log to stderr. */
void siovd_proc_dump_log(const struct siovd_proc *p, int lines);

/* A connected stream socket to @path, or -errno. */
int siovd_proc_connect(const char *path);
/*
 * Sends one JSON-RPC request (text, no newline) over a fresh connection and
 * reads the one '\n'-terminated answer into @resp.  0 or -errno.
 */
int siovd_proc_rpc(const struct siovd_proc *p, const char *req, char *resp, size_t respsz,
		   int timeout_ms);

#endif
