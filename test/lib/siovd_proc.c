/*
 * The C half of siov's one way to run siovd in a test (siovd_proc.h; the
 * shell half is siovd.sh).  Everything here is plain POSIX, without json-c,
 * so any test can link it: the readiness check only needs to see a
 * daemon_info answer carrying "result".
 */
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "siovd_proc.h"

static const char *const sanitizer_reports[] = {
    "ERROR: AddressSanitizer",
    "ERROR: LeakSanitizer",
    "runtime error:",
};

static void msleep(int ms)
{
	struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000};

	nanosleep(&ts, NULL);
}

static void exec_siovd(const struct siovd_proc *p)
{
	const char *argv[32] = {p->siovd, "--rpc-socket", p->rpc, "--state-dir", p->state};
	unsigned n = 5, i;
	int fd = open(p->log, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0600);

	/* Dies with the test, whatever way the test goes. */
	prctl(PR_SET_PDEATHSIG, SIGKILL);
	if (fd >= 0) {
		dup2(fd, 1);
		dup2(fd, 2);
	}
	for (i = 0; p->extra[i] && n < 31; i++)
		argv[n++] = p->extra[i];
	argv[n] = NULL;
	execv(p->siovd, (char *const *)argv);
	_exit(127);
}

static int spawn(struct siovd_proc *p)
{
	p->status = -1;
	p->pid = fork();
	if (p->pid < 0) {
		p->pid = -1;
		return -errno;
	}
	if (p->pid == 0)
		exec_siovd(p);
	return 0;
}

int siovd_proc_connect(const char *path)
{
	struct sockaddr_un sa = {.sun_family = AF_UNIX};
	int fd;

	if (strlen(path) >= sizeof(sa.sun_path))
		return -ENAMETOOLONG;
	fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return -errno;
	memcpy(sa.sun_path, path, strlen(path) + 1);
	if (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0) {
		int err = -errno;

		close(fd);
		return err;
	}
	return fd;
}

static int send_line(int fd, const char *req)
{
	size_t len = strlen(req), off = 0;

	while (off <= len) {
		ssize_t n = off < len ? send(fd, req + off, len - off, MSG_NOSIGNAL)
				      : send(fd, "\n", 1, MSG_NOSIGNAL);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			return -errno;
		off += (size_t)n;
	}
	return 0;
}

static int recv_line(int fd, char *resp, size_t respsz, int timeout_ms)
{
	struct pollfd pfd = {.fd = fd, .events = POLLIN};
	size_t got = 0;

	while (got + 1 < respsz) {
		ssize_t n;

		if (poll(&pfd, 1, timeout_ms) <= 0)
			return -ETIMEDOUT;
		n = recv(fd, resp + got, respsz - 1 - got, 0);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			return n < 0 ? -errno : -ECONNRESET;
		got += (size_t)n;
		resp[got] = '\0';
		if (memchr(resp, '\n', got))
			return 0;
	}
	return -EMSGSIZE;
}

int siovd_proc_rpc(const struct siovd_proc *p, const char *req, char *resp, size_t respsz,
		   int timeout_ms)
{
	int fd = siovd_proc_connect(p->rpc), rc;

	if (fd < 0)
		return fd;
	rc = send_line(fd, req);
	if (!rc)
		rc = recv_line(fd, resp, respsz, timeout_ms);
	close(fd);
	return rc;
}

int siovd_proc_wait_ready(struct siovd_proc *p, int timeout_ms)
{
	static const char req[] = "{\"jsonrpc\":\"2.0\",\"id\":0,\"method\":\"daemon_info\"}";
	char resp[4096];
	int waited;

	for (waited = 0; waited < timeout_ms; waited += 20) {
		if (!siovd_proc_alive(p))
			return -ECHILD;
		if (siovd_proc_rpc(p, req, resp, sizeof(resp), 2000) == 0 &&
		    strstr(resp, "\"result\""))
			return 0;
		msleep(20);
	}
	return -ETIMEDOUT;
}

static int start_failed(struct siovd_proc *p, int rc)
{
	fprintf(stderr, "siovd_proc: %s did not become ready: %s\n", p->siovd, strerror(-rc));
	p->failed = true;
	siovd_proc_kill(p);
	siovd_proc_dump_log(p, 50);
	return rc;
}

int siovd_proc_start(struct siovd_proc *p, const char *siovd, const char *tag,
		     const char *const *extra)
{
	unsigned i;
	int rc;

	memset(p, 0, sizeof(*p));
	p->pid = -1;
	p->status = -1;
	p->siovd = siovd;
	for (i = 0; extra && extra[i] && i + 1 < SIOV_TEST_ARRAY(p->extra); i++)
		p->extra[i] = extra[i];
	snprintf(p->dir, sizeof(p->dir), "/tmp/siov-%.20s.XXXXXX", tag ? tag : "test");
	if (!mkdtemp(p->dir))
		return -errno;
	snprintf(p->rpc, sizeof(p->rpc), "%s/rpc.sock", p->dir);
	snprintf(p->state, sizeof(p->state), "%s/state", p->dir);
	snprintf(p->log, sizeof(p->log), "%s/siovd.log", p->dir);
	if (mkdir(p->state, 0700) < 0)
		return -errno;
	rc = spawn(p);
	if (!rc)
		rc = siovd_proc_wait_ready(p, SIOVD_PROC_START_MS);
	return rc ? start_failed(p, rc) : 0;
}

int siovd_proc_restart(struct siovd_proc *p, bool wait_ready)
{
	int rc;

	if (siovd_proc_alive(p))
		return -EBUSY;
	rc = spawn(p);
	if (!rc && wait_ready)
		rc = siovd_proc_wait_ready(p, SIOVD_PROC_START_MS);
	return rc && wait_ready ? start_failed(p, rc) : rc;
}

bool siovd_proc_alive(struct siovd_proc *p)
{
	int st;

	if (p->pid <= 0)
		return false;
	/* kill(pid, 0) succeeds on a zombie: reap to know. */
	if (waitpid(p->pid, &st, WNOHANG) == p->pid) {
		p->status = st;
		p->pid = -1;
		return false;
	}
	return true;
}

static int check_exit(struct siovd_proc *p)
{
	if (siovd_proc_log_reports(p) > 0) {
		fprintf(stderr, "siovd_proc: siovd's log has a sanitizer report\n");
		return -EBADMSG;
	}
	if (!WIFEXITED(p->status) || WEXITSTATUS(p->status) != 0) {
		if (WIFSIGNALED(p->status))
			fprintf(stderr, "siovd_proc: siovd was killed by signal %d\n",
				WTERMSIG(p->status));
		else
			fprintf(stderr, "siovd_proc: siovd exited with status %d\n",
				WEXITSTATUS(p->status));
		return -EIO;
	}
	return 0;
}

int siovd_proc_stop(struct siovd_proc *p, int timeout_ms)
{
	int waited, rc;

	if (!siovd_proc_alive(p)) {
		p->failed = true;
		return -ECHILD;
	}
	kill(p->pid, SIGTERM);
	for (waited = 0; waited < timeout_ms && siovd_proc_alive(p); waited += 10)
		msleep(10);
	if (p->pid > 0) {
		fprintf(stderr, "siovd_proc: siovd did not exit within %d ms of SIGTERM\n",
			timeout_ms);
		siovd_proc_kill(p);
		p->failed = true;
		return -ETIMEDOUT;
	}
	rc = check_exit(p);
	if (rc)
		p->failed = true;
	return rc;
}

void siovd_proc_kill(struct siovd_proc *p)
{
	int st;

	if (p->pid <= 0)
		return;
	kill(p->pid, SIGKILL);
	if (waitpid(p->pid, &st, 0) == p->pid)
		p->status = st;
	p->pid = -1;
}

static int rm_one(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
	(void)st, (void)flag, (void)ftw;
	return remove(path);
}

int siovd_proc_cleanup(struct siovd_proc *p)
{
	const char *keep = getenv("SIOV_TEST_KEEP");
	int rc = 0;

	if (p->pid > 0)
		rc = siovd_proc_stop(p, SIOVD_PROC_STOP_MS);
	if (!p->dir[0])
		return rc;
	if (p->failed)
		siovd_proc_dump_log(p, 50);
	if (p->failed || (keep && strcmp(keep, "0") != 0))
		fprintf(stderr, "siovd_proc: kept %s\n", p->dir);
	else
		nftw(p->dir, rm_one, 8, FTW_DEPTH | FTW_PHYS);
	p->dir[0] = '\0';
	return rc;
}

int siovd_proc_log_count(const struct siovd_proc *p, const char *needle)
{
	FILE *f = fopen(p->log, "r");
	char line[4096];
	int n = 0;

	if (!f)
		return 0;
	while (fgets(line, sizeof(line), f))
		if (strstr(line, needle))
			n++;
	fclose(f);
	return n;
}

int siovd_proc_log_reports(const struct siovd_proc *p)
{
	unsigned i;
	int n = 0;

	for (i = 0; i < SIOV_TEST_ARRAY(sanitizer_reports); i++)
		n += siovd_proc_log_count(p, sanitizer_reports[i]);
	if (p->allowed_report)
		n -= siovd_proc_log_count(p, p->allowed_report);
	return n;
}

void siovd_proc_dump_log(const struct siovd_proc *p, int lines)
{
	char buf[512];
	long total = 0, n = 0;
	FILE *f = fopen(p->log, "r");

	if (!f)
		return;
	while (fgets(buf, sizeof(buf), f))
		total++;
	rewind(f);
	fprintf(stderr, "----- %s (last %d lines) -----\n", p->log, lines);
	while (fgets(buf, sizeof(buf), f))
		if (++n > total - lines)
			fprintf(stderr, "siovd: %s", buf);
	fclose(f);
}
