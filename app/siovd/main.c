/*
 * siovd: the VDCM daemon.  Parses the command line, starts the engines and the
 * VDCM, replays the persisted configuration from the state dir, serves the
 * JSON-RPC socket and the VDEVs' vhost-user sockets on the control thread, and
 * on SIGTERM/SIGINT stops cleanly: every queue drains its in-flight I/O before
 * its VDEV goes away, and every socket file is removed.
 */
#include <errno.h>
#include <pthread.h>
#include <getopt.h>
#include <grp.h>
#include <pwd.h>
#include <stdbool.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/signalfd.h>
#include <sys/stat.h>
#include <unistd.h>

#include "siov_internal/log.h"
#include "siov_internal/loop.h"
#include "siov_internal/metrics.h"
#include "siov_internal/rpc.h"
#include "siov_internal/state.h"
#include "siov_internal/vdcm.h"
#include "service.h"

#define SIOVD_MAX_SOCKET_DIRS 16

struct siovd_opts {
	const char *rpc_socket;
	const char *state_dir;
	unsigned engines;
	unsigned poll_us;
	unsigned hold_ns;
	enum siov_log_level log_level;
	const char *socket_dirs[SIOVD_MAX_SOCKET_DIRS + 1]; /* NULL-terminated */
	unsigned nsocket_dirs;
	unsigned socket_mode;
	int socket_uid, socket_gid, rpc_gid;
	unsigned compact_records;
	const char *metrics;
	enum siov_log_format log_format;
};

static void usage(FILE *f)
{
	fputs("usage: siovd --rpc-socket PATH [OPTION...]\n"
	      "\n"
	      "  --rpc-socket PATH        JSON-RPC management socket (siovctl -s PATH)\n"
	      "  --state-dir DIR          where the configuration is journaled and recovered\n"
	      "                           from (siovd.json + siovd.journal.N); none: not kept\n"
	      "  --state-compact-records N  fold the journal into the snapshot after N\n"
	      "                           records (default 8192, and never before the\n"
	      "                           journal outgrows the snapshot)\n"
	      "  --engines N              data-plane threads (default: one per CPU)\n"
	      "  --poll-us US             how long a queue is polled after its last request\n"
	      "                           (default 200)\n"
	      "  --poll-hold-ns NS        while a driver sends its requests one by one, wait\n"
	      "                           this long after a round with work, if that batches\n"
	      "                           them without losing rate (default 0: never; try\n"
	      "                           1000, see docs/performance.md)\n"
	      "  --socket-dir DIR         VDEV sockets may only be created in DIR (repeatable;\n"
	      "                           default: anywhere)\n"
	      "  --socket-mode MODE       mode of VDEV socket files, octal (default 0600)\n"
	      "  --socket-owner USER      owner of VDEV socket files (name or uid)\n"
	      "  --socket-group GROUP     group of VDEV socket files (name or gid), e.g. kvm\n"
	      "                           for libvirt's QEMU (libvirt-qemu)\n"
	      "  --rpc-group GROUP        members of GROUP may manage siovd too (RPC socket\n"
	      "                           0660 in that group)\n"
	      "  --metrics ADDR:PORT      serve Prometheus metrics at http://ADDR:PORT/metrics\n"
	      "                           (127.0.0.1:9100, [::1]:9100)\n"
	      "  --log-level LEVEL        error, warn, info (default) or debug\n"
	      "  --log-format FORMAT      text (default) or json: one JSON object per line\n"
	      "  -h, --help               this help\n"
	      "\n"
	      "Under systemd (Type=notify) siovd reports READY=1 once its state is restored\n"
	      "and its sockets listen, STOPPING=1 on SIGTERM, and WATCHDOG=1 at half of\n"
	      "WatchdogSec.  SIGTERM and SIGINT drain in-flight I/O and stop.\n",
	      f);
}

static int parse_uint(const char *s, unsigned max, unsigned *out)
{
	char *end;
	unsigned long v;

	errno = 0;
	v = strtoul(s, &end, 10);
	if (errno || *s == '\0' || *end != '\0' || v > max)
		return -EINVAL;
	*out = (unsigned)v;
	return 0;
}

static int parse_level(const char *s, enum siov_log_level *out)
{
	static const char *const names[] = {"error", "warn", "info", "debug"};
	unsigned i;

	for (i = 0; i < 4; i++) {
		if (!strcmp(s, names[i])) {
			*out = (enum siov_log_level)i;
			return 0;
		}
	}
	return -EINVAL;
}

static int parse_mode(const char *s, unsigned *out)
{
	char *end;
	unsigned long v;

	errno = 0;
	v = strtoul(s, &end, 8);
	if (errno || *s == '\0' || *end != '\0' || v == 0 || v > 0777)
		return -EINVAL;
	*out = (unsigned)v;
	return 0;
}

/* A user or group by name or number. */
static int parse_id(const char *s, bool group, int *out)
{
	unsigned v;

	if (!parse_uint(s, 0x7fffffff, &v)) {
		*out = (int)v;
		return 0;
	}
	if (group) {
		struct group *g = getgrnam(s);
		if (!g)
			return -ENOENT;
		*out = (int)g->gr_gid;
	} else {
		struct passwd *p = getpwnam(s);
		if (!p)
			return -ENOENT;
		*out = (int)p->pw_uid;
	}
	return 0;
}

static int parse_security(int c, const char *arg, struct siovd_opts *o)
{
	switch (c) {
	case 'D':
		if (o->nsocket_dirs == SIOVD_MAX_SOCKET_DIRS)
			return -E2BIG;
		o->socket_dirs[o->nsocket_dirs++] = arg;
		return 0;
	case 'M':
		return parse_mode(arg, &o->socket_mode);
	case 'U':
		return parse_id(arg, false, &o->socket_uid);
	case 'G':
		return parse_id(arg, true, &o->socket_gid);
	case 'R':
		return parse_id(arg, true, &o->rpc_gid);
	default:
		return -EINVAL;
	}
}

static int parse_args(int argc, char **argv, struct siovd_opts *o)
{
	static const struct option lopts[] = {
	    {"rpc-socket", required_argument, NULL, 's'},
	    {"state-dir", required_argument, NULL, 'd'},
	    {"engines", required_argument, NULL, 'e'},
	    {"poll-us", required_argument, NULL, 'p'},
	    {"poll-hold-ns", required_argument, NULL, 'H'},
	    {"log-level", required_argument, NULL, 'l'},
	    {"socket-dir", required_argument, NULL, 'D'},
	    {"socket-mode", required_argument, NULL, 'M'},
	    {"socket-owner", required_argument, NULL, 'U'},
	    {"socket-group", required_argument, NULL, 'G'},
	    {"rpc-group", required_argument, NULL, 'R'},
	    {"state-compact-records", required_argument, NULL, 'C'},
	    {"metrics", required_argument, NULL, 'm'},
	    {"log-format", required_argument, NULL, 'F'},
	    {"help", no_argument, NULL, 'h'},
	    {NULL, 0, NULL, 0},
	};
	int c;

	while ((c = getopt_long(argc, argv, "s:d:e:p:l:h", lopts, NULL)) != -1) {
		switch (c) {
		case 's':
			o->rpc_socket = optarg;
			break;
		case 'd':
			o->state_dir = optarg;
			break;
		case 'e':
			if (parse_uint(optarg, 256, &o->engines))
				goto bad;
			break;
		case 'p':
			if (parse_uint(optarg, 1000000, &o->poll_us))
				goto bad;
			break;
		case 'H':
			if (parse_uint(optarg, 100000, &o->hold_ns))
				goto bad;
			break;
		case 'l':
			if (parse_level(optarg, &o->log_level))
				goto bad;
			break;
		case 'D':
		case 'M':
		case 'U':
		case 'G':
		case 'R':
			if (parse_security(c, optarg, o)) {
				fprintf(stderr,
					"siovd: bad value '%s' (a directory, an octal mode, "
					"a user or a group)\n",
					optarg);
				goto bad;
			}
			break;
		case 'm':
			o->metrics = optarg;
			break;
		case 'F':
			if (strcmp(optarg, "text") && strcmp(optarg, "json"))
				goto bad;
			o->log_format = optarg[0] == 'j' ? SIOV_LOG_JSON : SIOV_LOG_TEXT;
			break;
		case 'C':
			if (parse_uint(optarg, 100000000, &o->compact_records))
				goto bad;
			break;
		case 'h':
			usage(stdout);
			exit(0);
		default:
			goto bad;
		}
	}
	if (!o->rpc_socket || optind != argc)
		goto bad;
	return 0;
bad:
	usage(stderr);
	return -EINVAL;
}

static void on_signal(struct siov_watch *w, uint32_t events, void *arg)
{
	struct siov_loop *loop = arg;

	SIOV_INFO("signal received, stopping");
	siov_loop_stop(loop);
}

static int make_state_dir(const char *dir)
{
	struct stat st;

	if (mkdir(dir, 0700) == 0)
		return 0;
	if (errno != EEXIST)
		return -errno;
	if (stat(dir, &st) < 0)
		return -errno;
	return S_ISDIR(st.st_mode) ? 0 : -ENOTDIR;
}

/* Each VDEV holds a listening socket, a connection, eventfds and memory fds. */
static void raise_fd_limit(void)
{
	struct rlimit rl;

	if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
		rl.rlim_cur = rl.rlim_max;
		setrlimit(RLIMIT_NOFILE, &rl);
	}
}

static int run(const struct siovd_opts *o, struct siov_loop *loop)
{
	struct siov_vdcm_opts vo = {.loop = loop,
				    .engines = o->engines,
				    .poll_us = o->poll_us,
				    .hold_ns = o->hold_ns,
				    .socket_dirs = o->nsocket_dirs ? o->socket_dirs : NULL,
				    .socket_mode = o->socket_mode,
				    .socket_uid = o->socket_uid,
				    .socket_gid = o->socket_gid,
				    .state_dir = o->state_dir};
	struct siov_rpc_server_opts ro = {.loop = loop,
					  .socket_path = o->rpc_socket,
					  .state_dir = o->state_dir,
					  .socket_gid = o->rpc_gid,
					  .compact_records = o->compact_records};
	struct siov_rpc_server *rpc = NULL;
	struct siov_metrics *metrics = NULL;
	struct siovd_service *svc = NULL;
	struct siov_vdcm *vdcm = NULL;
	struct siov_daemon_info di;
	struct siov_err err = {0};
	int rc;

	rc = siov_vdcm_create(&vo, &vdcm);
	if (rc) {
		SIOV_ERR("cannot start the engines: %s", strerror(-rc));
		return rc;
	}
	/* The state dir is recovered and replayed before the socket accepts anyone. */
	ro.vdcm = vdcm;
	rc = siov_rpc_server_create(&ro, &rpc);
	if (rc) {
		SIOV_ERR("cannot start the management plane on %s: %s", o->rpc_socket,
			 strerror(-rc));
		goto out;
	}
	if (o->metrics) {
		struct siov_metrics_opts mo = {
		    .loop = loop, .vdcm = vdcm, .rpc = rpc, .listen = o->metrics};
		rc = siov_metrics_create(&mo, &metrics, &err);
		if (rc) {
			SIOV_ERR("%s", err.msg);
			goto out;
		}
	}
	rc = siovd_service_start(loop, &svc);
	if (rc) {
		SIOV_ERR("cannot arm the systemd watchdog: %s", strerror(-rc));
		goto out;
	}
	siov_vdcm_daemon_info(vdcm, &di);
	SIOV_INFO("ready: rpc %s, %u engine(s)%s%s", o->rpc_socket, di.engines,
		  o->metrics ? ", metrics on " : "", o->metrics ? o->metrics : "");
	siovd_service_ready(svc, di.vdevs, di.backends);
	rc = siov_loop_run(loop);
	siovd_service_stopping(svc);
out:
	siovd_service_stop(svc);
	siov_metrics_destroy(metrics);
	siov_rpc_server_destroy(rpc);
	siov_vdcm_destroy(vdcm);
	SIOV_INFO("stopped");
	return rc;
}

int main(int argc, char **argv)
{
	struct siovd_opts o = {.poll_us = 200, .log_level = SIOV_LOG_INFO};
	struct siov_loop *loop;
	sigset_t mask;
	int sfd, rc;

	if (parse_args(argc, argv, &o))
		return 2;
	siov_log_set_level(o.log_level);
	siov_log_set_format(o.log_format);
	raise_fd_limit();
	signal(SIGPIPE, SIG_IGN);
	/* Block before any thread starts, so that only the signalfd sees these. */
	sigemptyset(&mask);
	sigaddset(&mask, SIGTERM);
	sigaddset(&mask, SIGINT);
	sigaddset(&mask, SIGHUP);
	pthread_sigmask(SIG_BLOCK, &mask, NULL);
	sfd = signalfd(-1, &mask, SFD_CLOEXEC | SFD_NONBLOCK);
	if (sfd < 0 || siov_loop_create(&loop)) {
		SIOV_ERR("cannot set up the control loop");
		return 1;
	}
	if (o.state_dir && (rc = make_state_dir(o.state_dir))) {
		SIOV_ERR("state dir %s: %s", o.state_dir, strerror(-rc));
		return 1;
	}
	if (siov_loop_add(loop, sfd, EPOLLIN, on_signal, loop, NULL))
		return 1;
	rc = run(&o, loop);
	siov_loop_destroy(loop);
	close(sfd);
	return rc ? 1 : 0;
}
