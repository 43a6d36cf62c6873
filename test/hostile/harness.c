/*
 * The hostile test's harness (see harness.h).  siovd runs as our child through
 * test/lib/siovd_proc (PR_SET_PDEATHSIG), and an atexit hook and signal
 * handlers kill it, so no path out of the test leaves a daemon behind.
 */
#include <errno.h>
#include <fcntl.h>
#include <linux/virtio_blk.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "harness.h"

#define GOOD_BASE_SEED 0xba5e
#define GOOD_BASE_LEN  65536u

struct hctx H = {.sd = {.pid = -1, .status = -1}};

void check(bool ok, const char *fmt, ...)
{
	va_list ap;

	printf("%s - ", ok ? "ok  " : "FAIL");
	va_start(ap, fmt);
	vprintf(fmt, ap);
	va_end(ap);
	printf("\n");
	fflush(stdout);
	if (ok)
		H.passed++;
	else
		H.failed++;
}

void note(const char *fmt, ...)
{
	va_list ap;

	printf("       ");
	va_start(ap, fmt);
	vprintf(fmt, ap);
	va_end(ap);
	printf("\n");
	fflush(stdout);
}

static void msleep(int ms)
{
	struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000};

	nanosleep(&ts, NULL);
}

/* ---- siovd ---- */

static void cleanup(void)
{
	H.sd.failed = H.sd.failed || H.failed > 0;
	siovd_proc_kill(&H.sd);
	siovd_proc_cleanup(&H.sd);
}

static void on_fatal(int sig)
{
	if (H.sd.pid > 0)
		kill(H.sd.pid, SIGKILL);
	_exit(128 + sig);
}

int harness_begin(int argc, char **argv)
{
	if (argc != 3 || access(argv[1], X_OK) || access(argv[2], X_OK)) {
		printf("SKIP: usage: %s SIOVD SIOVCTL (both executable)\n", argv[0]);
		return 77;
	}
	H.siovd = argv[1];
	H.siovctl = argv[2];
	signal(SIGPIPE, SIG_IGN);
	signal(SIGTERM, on_fatal);
	signal(SIGINT, on_fatal);
	atexit(cleanup);
	return 0;
}

void harness_stop(void)
{
	int rc = siovd_proc_stop(&H.sd, 10000), reports;

	check(rc != -ECHILD && rc != -ETIMEDOUT && rc != -EIO,
	      "SIGTERM: siovd exits 0 within 10 s (status 0x%x)", H.sd.status);
	reports = siovd_proc_log_reports(&H.sd);
	check(reports == 0, "no sanitizer report from siovd (%d)", reports);
}

int daemon_start(void)
{
	int rc;

	/* While siovd starts, "cannot connect" is expected: keep siovctl quiet. */
	H.quiet_ctl = true;
	if (H.sd.dir[0])
		rc = siovd_proc_restart(&H.sd, true);
	else
		rc = siovd_proc_start(&H.sd, H.siovd, "hostile", NULL);
	H.quiet_ctl = false;
	return rc;
}

bool daemon_alive(void)
{
	bool was = H.sd.pid > 0;
	int st;

	if (siovd_proc_alive(&H.sd))
		return true;
	st = H.sd.status;
	if (was && WIFSIGNALED(st))
		note("siovd was killed by signal %d (%s)", WTERMSIG(st), strsignal(WTERMSIG(st)));
	else if (was)
		note("siovd exited with status %d", WEXITSTATUS(st));
	return false;
}

/* ---- siovctl ---- */

static int read_all(int fd, char *out, size_t outsz)
{
	size_t got = 0;
	ssize_t n;

	while ((n = read(fd, out + got, outsz - 1 - got)) > 0 && got + (size_t)n < outsz - 1)
		got += (size_t)n;
	if (n > 0)
		got += (size_t)n;
	out[got] = '\0';
	return 0;
}

int ctl(char *out, size_t outsz, const char *method, ...)
{
	const char *argv[32] = {H.siovctl, "-s", H.sd.rpc, "-t", "10", method};
	int argc = 6, p[2], st;
	va_list ap;
	pid_t pid;

	va_start(ap, method);
	while (argc < 31 && (argv[argc] = va_arg(ap, const char *)))
		argc++;
	va_end(ap);
	argv[argc] = NULL;
	if (pipe2(p, O_CLOEXEC) < 0)
		return -1;
	pid = fork();
	if (pid == 0) {
		dup2(p[1], 1);
		/* While siovd starts, "cannot connect" is expected: keep it quiet. */
		if (H.quiet_ctl)
			dup2(open("/dev/null", O_WRONLY | O_CLOEXEC), 2);
		execv(H.siovctl, (char *const *)argv);
		_exit(127);
	}
	close(p[1]);
	read_all(p[0], out, outsz);
	close(p[0]);
	if (pid < 0 || waitpid(pid, &st, 0) != pid)
		return -1;
	return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

/* Copies the string value that follows "key": in json, or "null". */
static void json_str(const char *json, const char *key, char *val, size_t vsz)
{
	const char *p = strstr(json, key), *e;

	snprintf(val, vsz, "null");
	if (!p)
		return;
	p += strlen(key);
	while (*p == ' ' || *p == ':')
		p++;
	if (*p != '"')
		return;
	e = strchr(++p, '"');
	if (e)
		snprintf(val, vsz, "%.*s", (int)(e - p), p);
}

int vdev_state(const char *name, char *state, size_t ssz, char *reason, size_t rsz)
{
	char out[8192];
	int rc = ctl(out, sizeof(out), "vdev_stats", "--name", name, NULL);

	if (rc)
		return -EIO;
	/* The VDEV's own fields come before its per-queue ones. */
	json_str(out, "\"state\"", state, ssz);
	if (reason)
		json_str(out, "\"broken_reason\"", reason, rsz);
	return 0;
}

bool wait_state(const char *name, const char *want, int timeout_ms, char *reason, size_t rsz)
{
	char state[64] = "";
	int waited;

	for (waited = 0; waited <= timeout_ms; waited += 50) {
		if (vdev_state(name, state, sizeof(state), reason, rsz) == 0 &&
		    !strcmp(state, want))
			return true;
		msleep(50);
	}
	note("vdev %s: state \"%s\", wanted \"%s\"", name, state, want);
	return false;
}

/* ---- verified I/O ---- */

void pattern_fill(uint8_t *p, size_t len, uint32_t seed)
{
	uint32_t x = seed * 2654435761u + 1;
	size_t i;

	for (i = 0; i < len; i++) {
		x ^= x << 13;
		x ^= x >> 17;
		x ^= x << 5;
		p[i] = (uint8_t)x;
	}
}

bool pattern_check(const uint8_t *p, size_t len, uint32_t seed)
{
	uint32_t x = seed * 2654435761u + 1;
	size_t i;

	for (i = 0; i < len; i++) {
		x ^= x << 13;
		x ^= x >> 17;
		x ^= x << 5;
		if (p[i] != (uint8_t)x)
			return false;
	}
	return true;
}

static bool fe_verify_read(struct fe *fe, uint64_t sector, uint32_t len, uint32_t seed)
{
	int st;

	memset(fe->mem + FE_DATA_OFF, 0, len);
	st = fe_blk(fe, VIRTIO_BLK_T_IN, sector, len, 5000);
	if (st != VIRTIO_BLK_S_OK) {
		note("read of sector %llu: status %d", (unsigned long long)sector, st);
		return false;
	}
	if (!pattern_check(fe->mem + FE_DATA_OFF, len, seed)) {
		note("read of sector %llu: data differs from what was written",
		     (unsigned long long)sector);
		return false;
	}
	return true;
}

bool fe_verify_rw(struct fe *fe, uint64_t sector, uint32_t len, uint32_t seed)
{
	int st;

	pattern_fill(fe->mem + FE_DATA_OFF, len, seed);
	st = fe_blk(fe, VIRTIO_BLK_T_OUT, sector, len, 5000);
	if (st != VIRTIO_BLK_S_OK) {
		note("write of sector %llu: status %d", (unsigned long long)sector, st);
		return false;
	}
	return fe_verify_read(fe, sector, len, seed);
}

int good_start(void)
{
	int rc = fe_setup(&H.good, H.good_sock, 5000);

	if (rc)
		return rc;
	return fe_verify_rw(&H.good, 0, GOOD_BASE_LEN, GOOD_BASE_SEED) ? 0 : -EIO;
}

bool good_verify(void)
{
	uint64_t sector = 128 + (uint64_t)(H.round % 64) * 64;

	H.round++;
	if (H.good.sock < 0)
		return false;
	return fe_verify_rw(&H.good, sector, 32768, 1000 + H.round) &&
	       fe_verify_read(&H.good, 0, GOOD_BASE_LEN, GOOD_BASE_SEED);
}
