/*
 * The C test helper's own conventions (siovd_proc.h), against a real siovd:
 * the directory layout, readiness by RPC, a clean stop, a crash seen as one,
 * a sanitizer report caught at stop, a siovd that does not start, a restart
 * that finds its state again, and a siovd that ignores SIGTERM being killed.
 * t-siovd-helpers.sh checks the same of siovd.sh.
 */
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "siovd_proc.h"

static int g_failed;

#define CHECK(cond, ...)                                                                           \
	do {                                                                                       \
		bool ok_ = (cond);                                                                 \
		printf("%s - ", ok_ ? "ok  " : "FAIL");                                            \
		printf(__VA_ARGS__);                                                               \
		printf("\n");                                                                      \
		g_failed += !ok_;                                                                  \
	} while (0)

static bool is_dir(const char *p)
{
	struct stat st;

	return stat(p, &st) == 0 && S_ISDIR(st.st_mode);
}

static bool is_sock(const char *p)
{
	struct stat st;

	return stat(p, &st) == 0 && S_ISSOCK(st.st_mode);
}

static int rm_one(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
	return remove(path);
}

/* A directory the helper kept on purpose: the test removes it itself. */
static void drop_kept(struct siovd_proc *p, const char *dir)
{
	CHECK(is_dir(dir), "a failed run keeps its directory %s", dir);
	nftw(dir, rm_one, 8, FTW_DEPTH | FTW_PHYS);
	(void)p;
}

static void t_clean_run(const char *siovd)
{
	struct siovd_proc p;
	char resp[4096], dir[64];

	CHECK(siovd_proc_start(&p, siovd, "selftest", NULL) == 0, "starts and answers daemon_info");
	CHECK(!strncmp(p.dir, "/tmp/siov-selftest.", 19), "directory %s", p.dir);
	CHECK(is_sock(p.rpc) && is_dir(p.state), "rpc.sock and state/ inside it");
	CHECK(siovd_proc_rpc(&p, "{\"jsonrpc\":\"2.0\",\"id\":7,\"method\":\"daemon_info\"}", resp,
			     sizeof(resp), 5000) == 0 &&
		  strstr(resp, "\"id\":7"),
	      "siovd_proc_rpc gets the answer");
	CHECK(siovd_proc_stop(&p, SIOVD_PROC_STOP_MS) == 0, "SIGTERM: exit 0, no report");
	CHECK(!is_sock(p.rpc), "siovd removed its socket");
	snprintf(dir, sizeof(dir), "%s", p.dir);
	siovd_proc_cleanup(&p);
	CHECK(!is_dir(dir), "a clean run's directory is removed");
}

static void t_crash_and_restart(const char *siovd)
{
	static const char create[] =
	    "{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"backend_create\","
	    "\"params\":{\"name\":\"keep\",\"type\":\"null\",\"size\":4096}}";
	static const char list[] = "{\"jsonrpc\":\"2.0\",\"id\":2,\"method\":\"backend_list\"}";
	struct siovd_proc p;
	char resp[4096], dir[64];

	if (siovd_proc_start(&p, siovd, "selftest", NULL)) {
		CHECK(false, "start for the crash case");
		return;
	}
	CHECK(siovd_proc_rpc(&p, create, resp, sizeof(resp), 5000) == 0 &&
		  strstr(resp, "\"result\""),
	      "backend created");
	siovd_proc_kill(&p);
	CHECK(!siovd_proc_alive(&p), "SIGKILL: not alive");
	CHECK(siovd_proc_stop(&p, 1000) == -ECHILD, "stopping a dead siovd is an error");
	CHECK(siovd_proc_restart(&p, true) == 0, "restart on the same directory answers");
	CHECK(siovd_proc_rpc(&p, list, resp, sizeof(resp), 5000) == 0 && strstr(resp, "keep"),
	      "restarted siovd found its state again");
	/* SIGSTOP: SIGTERM goes unheard, so the stop must fall back to SIGKILL. */
	kill(p.pid, SIGSTOP);
	CHECK(siovd_proc_stop(&p, 300) == -ETIMEDOUT, "a siovd that does not stop is killed");
	CHECK(!siovd_proc_alive(&p), "and is gone");
	snprintf(dir, sizeof(dir), "%s", p.dir);
	siovd_proc_cleanup(&p);
	drop_kept(&p, dir);
}

static const char report[] = "==1==ERROR: LeakSanitizer: detected memory leaks\n";

static void t_report(const char *siovd)
{
	struct siovd_proc p;
	char dir[64];
	int fd;

	if (siovd_proc_start(&p, siovd, "selftest", NULL)) {
		CHECK(false, "start for the report case");
		return;
	}
	fd = open(p.log, O_WRONLY | O_APPEND);
	CHECK(fd >= 0 && write(fd, report, strlen(report)) == (ssize_t)strlen(report),
	      "a report appended to the log");
	close(fd);
	CHECK(siovd_proc_log_reports(&p) == 1, "the report is counted");
	CHECK(siovd_proc_stop(&p, SIOVD_PROC_STOP_MS) == -EBADMSG, "a report fails the stop");
	snprintf(dir, sizeof(dir), "%s", p.dir);
	siovd_proc_cleanup(&p);
	drop_kept(&p, dir);
}

static void t_no_start(const char *siovd)
{
	const char *bad[] = {"--no-such-option", NULL};
	struct siovd_proc p;
	char dir[64];

	CHECK(siovd_proc_start(&p, siovd, "selftest", bad) == -ECHILD,
	      "a siovd that exits at start is reported, not waited for");
	snprintf(dir, sizeof(dir), "%s", p.dir);
	siovd_proc_cleanup(&p);
	drop_kept(&p, dir);
}

int main(int argc, char **argv)
{
	if (argc != 2 || access(argv[1], X_OK)) {
		printf("SKIP: usage: %s SIOVD\n", argv[0]);
		return 77;
	}
	t_clean_run(argv[1]);
	t_crash_and_restart(argv[1]);
	t_report(argv[1]);
	t_no_start(argv[1]);
	printf("%s: %d failed\n", g_failed ? "FAIL" : "PASS", g_failed);
	return g_failed ? 1 : 0;
}
