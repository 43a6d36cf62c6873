/*
 * Starting and stopping the back end a libsiov test talks to (see
 * backend_proc.h).  A child's stderr goes to a log file in the test's
 * temporary directory, printed when the back end fails to start (and at stop
 * with SIOV_TEST_VERBOSE=1), so a start-up failure explains itself.
 */
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "backend_proc.h"

static pid_t spawn(char *const argv[], const char *log)
{
	pid_t pid = fork();

	if (pid == 0) {
		int fd = open(log, O_WRONLY | O_CREAT | O_APPEND, 0600);

		if (fd >= 0) {
			dup2(fd, 1);
			dup2(fd, 2);
		}
		execvp(argv[0], argv);
		_exit(127);
	}
	return pid;
}

static int run_wait(char *const argv[], const char *log)
{
	int st;
	pid_t pid = spawn(argv, log);

	if (pid < 0 || waitpid(pid, &st, 0) < 0)
		return -errno;
	return WIFEXITED(st) && WEXITSTATUS(st) == 0 ? 0 : -EIO;
}

static bool can_connect(const char *path)
{
	struct sockaddr_un sa = {.sun_family = AF_UNIX};
	int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	bool ok;

	snprintf(sa.sun_path, sizeof(sa.sun_path), "%s", path);
	ok = fd >= 0 && connect(fd, (struct sockaddr *)&sa, sizeof(sa)) == 0;
	if (fd >= 0)
		close(fd);
	return ok;
}

/* qemu-storage-daemon serves one connection at a time: probe with stat only. */
static int wait_socket(struct backend_proc *b, bool probe)
{
	struct timespec ts = {0, 10 * 1000 * 1000};
	struct stat st;
	int i, status;

	for (i = 0; i < 1000; i++) {
		if (waitpid(b->pid, &status, WNOHANG) == b->pid) {
			b->pid = -1;
			return -ECHILD;
		}
		if (stat(b->sock, &st) == 0 && S_ISSOCK(st.st_mode) &&
		    (!probe || can_connect(b->sock)))
			return 0;
		nanosleep(&ts, NULL);
	}
	return -ETIMEDOUT;
}

static int start_qsd(const struct backend_kind *k, struct backend_proc *b, unsigned queues, bool ro)
{
	char file[256], exp[512], log[128];
	char *argv[] = {
	    (char *)k->qsd, "--blockdev", file, "--blockdev", "driver=raw,node-name=d0,file=f0",
	    "--export",	    exp,	  NULL};

	snprintf(file, sizeof(file), "driver=file,node-name=f0,filename=%s", b->file);
	snprintf(exp, sizeof(exp),
		 "type=vhost-user-blk,id=e0,node-name=d0,addr.type=unix,addr.path=%s,"
		 "writable=%s,num-queues=%u",
		 b->sock, ro ? "off" : "on", queues);
	snprintf(log, sizeof(log), "%s/backend.log", b->dir);
	b->pid = spawn(argv, log);
	if (b->pid < 0)
		return -errno;
	return wait_socket(b, false);
}

/* siovctl -s RPC ARGS... with its output in the back end's log. */
static int siovctl(const struct backend_proc *b, char **args)
{
	char log[128];
	char *argv[24] = {(char *)b->kind->siovctl, "-s", (char *)b->sd.rpc};
	unsigned n = 3;

	for (; *args && n + 1 < sizeof(argv) / sizeof(argv[0]); args++)
		argv[n++] = *args;
	argv[n] = NULL;
	snprintf(log, sizeof(log), "%s/backend.log", b->dir);
	return run_wait(argv, log);
}

static int start_siovd(const struct backend_kind *k, struct backend_proc *b, unsigned queues,
		       bool ro)
{
	char size[32], nq[16];
	char *be[] = {"backend_create", "--name", "b0",	    "--type", "file",
		      "--path",		b->file,  "--size", size,     NULL};
	char *vd[] = {"vdev_create",
		      "--name",
		      "v0",
		      "--type",
		      "blk",
		      "--backend",
		      "b0",
		      "--socket",
		      b->sock,
		      "--queues",
		      nq,
		      ro ? "--readonly" : NULL,
		      ro ? "true" : NULL,
		      NULL};
	int rc;

	snprintf(size, sizeof(size), "%llu", (unsigned long long)b->size);
	snprintf(nq, sizeof(nq), "%u", queues);
	rc = siovctl(b, be);
	if (!rc)
		rc = siovctl(b, vd);
	return rc ? rc : wait_socket(b, false);
}

static void dump_log(const struct backend_proc *b)
{
	char path[160], line[512];
	FILE *f;

	snprintf(path, sizeof(path), "%s/backend.log", b->dir);
	f = fopen(path, "r");
	if (!f)
		return;
	while (fgets(line, sizeof(line), f))
		fprintf(stderr, "backend: %s", line);
	fclose(f);
}

int backend_start(const struct backend_kind *kind, struct backend_proc *b, uint64_t size,
		  unsigned queues, bool readonly)
{
	int fd, rc;

	memset(b, 0, sizeof(*b));
	b->pid = -1;
	b->size = size;
	b->kind = kind;
	b->queues = queues;
	b->ro = readonly;
	if (kind->siovd) {
		/* siovd_proc makes the directory, starts siovd and waits for its RPC. */
		rc = siovd_proc_start(&b->sd, kind->siovd, "libsiov", NULL);
		if (rc)
			return rc;
		snprintf(b->dir, sizeof(b->dir), "%s", b->sd.dir);
	} else {
		snprintf(b->dir, sizeof(b->dir), "/tmp/siov-libsiov-XXXXXX");
		if (!mkdtemp(b->dir))
			return -errno;
	}
	snprintf(b->sock, sizeof(b->sock), "%s/vu.sock", b->dir);
	snprintf(b->file, sizeof(b->file), "%s/disk.img", b->dir);
	fd = open(b->file, O_RDWR | O_CREAT | O_TRUNC, 0600);
	if (fd < 0 || ftruncate(fd, (off_t)size) < 0)
		rc = -errno;
	else
		rc = kind->siovd ? start_siovd(kind, b, queues, readonly)
				 : start_qsd(kind, b, queues, readonly);
	if (fd >= 0)
		close(fd);
	if (rc) {
		dump_log(b);
		b->sd.failed = true;
	}
	return rc;
}

int backend_restart(struct backend_proc *b)
{
	if (b->pid > 0 || b->sd.pid > 0)
		return -EBUSY;
	if (!b->kind->siovd)
		return start_qsd(b->kind, b, b->queues, b->ro);
	/* Same directory and --state-dir: siovd recreates the VDEV itself. */
	return siovd_proc_restart(&b->sd, false);
}

void backend_kill(struct backend_proc *b)
{
	siovd_proc_kill(&b->sd);
	if (b->pid > 0) {
		kill(b->pid, SIGKILL);
		waitpid(b->pid, NULL, 0);
		b->pid = -1;
	}
}

static int rm_one(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
	return remove(path);
}

int backend_stop(struct backend_proc *b)
{
	int i;

	if (getenv("SIOV_TEST_VERBOSE"))
		dump_log(b);
	if (b->kind && b->kind->siovd) {
		/* SIGTERM, SIGKILL after a timeout, exit status and sanitizer reports. */
		return siovd_proc_cleanup(&b->sd);
	}
	if (b->pid > 0) {
		kill(b->pid, SIGTERM);
		for (i = 0; i < 300 && waitpid(b->pid, NULL, WNOHANG) == 0; i++)
			usleep(10000);
		backend_kill(b);
	}
	if (b->dir[0])
		nftw(b->dir, rm_one, 8, FTW_DEPTH | FTW_PHYS);
	return 0;
}
