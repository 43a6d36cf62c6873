/*
 * siov-rpc-rate: management calls one at a time, as an orchestrator in C or
 * Go makes them, so that siovd's rate is measured without a slow client in
 * the figure (bench/state_rate.py's Python client spends about as much CPU
 * per call as siovd does).  N client threads, one JSON-RPC connection each,
 * first create their share of VDEVs one `vdev_create` at a time (each sent
 * only once the previous one was answered), then, after all of them are done,
 * delete them one `vdev_delete` at a time.  Prints one JSON object: per
 * phase the calls, the wall time from the start of the phase (all clients
 * released together) to the last answer, calls/s, latency percentiles of a
 * call (send to answer) and the clients' own CPU per call.
 *
 * Requests are built and answers parsed with json-c, as a real client would;
 * an error answer stops the run (exit 1) with siovd's message.
 */
#include <errno.h>
#include <getopt.h>
#include <json-c/json.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

enum { PHASE_CREATE, PHASE_DELETE, NPHASES };

struct opts {
	const char *rpc;      /* siovd's RPC socket */
	const char *sock_dir; /* where the VDEV sockets go */
	const char *prefix;   /* VDEV names: PREFIX%07u */
	const char *backend;
	unsigned clients, count;
	uint64_t first;	 /* index of the first VDEV: its window and name */
	uint64_t window; /* bytes per VDEV; VDEV i is at i * window */
};

struct client {
	const struct opts *o;
	pthread_barrier_t *bar;
	unsigned id, from, n; /* VDEV indexes from..from+n-1 (plus o->first) */
	int fd;
	char buf[65536];
	size_t have;
	uint64_t *lat_ns[NPHASES]; /* one per call */
	uint64_t end_ns[NPHASES];  /* when this client's last answer of the phase came */
	uint64_t cpu_ns[NPHASES];  /* this thread's CPU time in the phase */
	uint64_t sys_ns[NPHASES];  /* of which in the kernel (sockets, wake-ups, switches) */
	char err[512];
};

static uint64_t now_ns(void)
{
	struct timespec t;

	clock_gettime(CLOCK_MONOTONIC, &t);
	return (uint64_t)t.tv_sec * 1000000000u + (uint64_t)t.tv_nsec;
}

static uint64_t thread_cpu_ns(void)
{
	struct timespec t;

	clock_gettime(CLOCK_THREAD_CPUTIME_ID, &t);
	return (uint64_t)t.tv_sec * 1000000000u + (uint64_t)t.tv_nsec;
}

/* The thread's system time (tick-sampled by the kernel: good over thousands of calls). */
static uint64_t thread_sys_ns(void)
{
	struct rusage u;

	getrusage(RUSAGE_THREAD, &u);
	return (uint64_t)u.ru_stime.tv_sec * 1000000000u + (uint64_t)u.ru_stime.tv_usec * 1000u;
}

static int connect_rpc(const char *path)
{
	struct sockaddr_un a = {.sun_family = AF_UNIX};
	int fd;

	if (strlen(path) >= sizeof(a.sun_path))
		return -ENAMETOOLONG;
	strcpy(a.sun_path, path);
	fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return -errno;
	if (connect(fd, (struct sockaddr *)&a, sizeof(a)) < 0) {
		int rc = -errno;

		close(fd);
		return rc;
	}
	return fd;
}

static int send_all(int fd, const char *p, size_t len)
{
	while (len) {
		ssize_t n = send(fd, p, len, MSG_NOSIGNAL);

		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			return n < 0 ? -errno : -EPIPE;
		p += n;
		len -= (size_t)n;
	}
	return 0;
}

/* One answer line, NUL-terminated in c->buf (what follows it is kept). */
static int read_line(struct client *c, size_t *len)
{
	char *nl;

	while (!(nl = memchr(c->buf, '\n', c->have))) {
		ssize_t n;

		if (c->have == sizeof(c->buf) - 1)
			return -EMSGSIZE;
		n = recv(c->fd, c->buf + c->have, sizeof(c->buf) - 1 - c->have, 0);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			return n < 0 ? -errno : -ECONNRESET;
		c->have += (size_t)n;
	}
	*nl = '\0';
	*len = (size_t)(nl - c->buf) + 1;
	return 0;
}

static void drop_line(struct client *c, size_t len)
{
	memmove(c->buf, c->buf + len, c->have - len);
	c->have -= len;
}

/* The answer must be a result for id; an error answer is reported with siovd's message. */
static int check_answer(struct client *c, const char *method, unsigned id)
{
	size_t len = 0;
	int rc = read_line(c, &len);
	struct json_object *a, *v;

	if (rc < 0)
		return snprintf(c->err, sizeof(c->err), "%s: reading the answer: %s", method,
				strerror(-rc)),
		       rc;
	a = json_tokener_parse(c->buf);
	rc = -EPROTO;
	if (!a)
		snprintf(c->err, sizeof(c->err), "%s: not JSON: %.200s", method, c->buf);
	else if (json_object_object_get_ex(a, "error", &v))
		snprintf(c->err, sizeof(c->err), "%s: %s", method, json_object_to_json_string(v));
	else if (!json_object_object_get_ex(a, "result", NULL) ||
		 !json_object_object_get_ex(a, "id", &v) || json_object_get_uint64(v) != id)
		snprintf(c->err, sizeof(c->err), "%s: not its answer: %.200s", method, c->buf);
	else
		rc = 0;
	json_object_put(a);
	drop_line(c, len);
	return rc;
}

static struct json_object *params_for(const struct client *c, uint64_t i, int phase)
{
	const struct opts *o = c->o;
	struct json_object *p = json_object_new_object();
	char name[64], sock[4096];

	snprintf(name, sizeof(name), "%s%07llu", o->prefix, (unsigned long long)i);
	json_object_object_add(p, "name", json_object_new_string(name));
	if (phase == PHASE_DELETE)
		return p;
	snprintf(sock, sizeof(sock), "%s/%s.sock", o->sock_dir, name);
	json_object_object_add(p, "backend", json_object_new_string(o->backend));
	json_object_object_add(p, "offset", json_object_new_uint64(i * o->window));
	json_object_object_add(p, "size", json_object_new_uint64(o->window));
	json_object_object_add(p, "socket", json_object_new_string(sock));
	return p;
}

/* One call: built, sent, answered; its latency from the send to the whole answer. */
static int call(struct client *c, const char *method, struct json_object *params, unsigned id,
		uint64_t *lat)
{
	struct json_object *req = json_object_new_object();
	const char *text;
	uint64_t t0;
	char *line;
	int rc;

	json_object_object_add(req, "jsonrpc", json_object_new_string("2.0"));
	json_object_object_add(req, "id", json_object_new_uint64(id));
	json_object_object_add(req, "method", json_object_new_string(method));
	json_object_object_add(req, "params", params);
	text = json_object_to_json_string_ext(req, JSON_C_TO_STRING_PLAIN);
	line = malloc(strlen(text) + 2);
	if (!line) {
		json_object_put(req);
		return -ENOMEM;
	}
	sprintf(line, "%s\n", text);
	json_object_put(req);
	t0 = now_ns();
	rc = send_all(c->fd, line, strlen(line));
	free(line);
	if (rc < 0)
		return snprintf(c->err, sizeof(c->err), "%s: send: %s", method, strerror(-rc)), rc;
	rc = check_answer(c, method, id);
	*lat = now_ns() - t0;
	return rc;
}

static int run_phase(struct client *c, int phase)
{
	const char *method = phase == PHASE_CREATE ? "vdev_create" : "vdev_delete";
	uint64_t cpu0 = thread_cpu_ns(), sys0 = thread_sys_ns();
	int rc = 0;

	for (unsigned k = 0; k < c->n && rc == 0; k++) {
		uint64_t i = c->o->first + c->from + k;

		rc = call(c, method, params_for(c, i, phase), k + 1, &c->lat_ns[phase][k]);
	}
	c->end_ns[phase] = now_ns();
	c->cpu_ns[phase] = thread_cpu_ns() - cpu0;
	c->sys_ns[phase] = thread_sys_ns() - sys0;
	return rc;
}

/* Both phases; a client that failed still waits at each barrier, so nobody hangs. */
static void *client_main(void *arg)
{
	struct client *c = arg;
	int rc = 0;

	for (int ph = 0; ph < NPHASES; ph++) {
		pthread_barrier_wait(c->bar);
		if (rc == 0 && c->fd >= 0)
			rc = run_phase(c, ph);
		pthread_barrier_wait(c->bar);
	}
	return NULL;
}

static int cmp_u64(const void *a, const void *b)
{
	uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;

	return x < y ? -1 : x > y;
}

static double pct_us(const uint64_t *v, size_t n, double p)
{
	size_t i = (size_t)((double)n * p);

	return n ? (double)v[i < n ? i : n - 1] / 1000.0 : 0;
}

static void print_phase(struct client *cl, const struct opts *o, int ph, uint64_t t0,
			const char *name, const char *sep)
{
	size_t n = 0, total = (size_t)o->count;
	uint64_t *all = malloc(total * sizeof(*all) + 1), end = t0, cpu = 0, sys = 0;
	double s;

	for (unsigned k = 0; all && k < o->clients; k++) {
		memcpy(all + n, cl[k].lat_ns[ph], cl[k].n * sizeof(*all));
		n += cl[k].n;
		end = cl[k].end_ns[ph] > end ? cl[k].end_ns[ph] : end;
		cpu += cl[k].cpu_ns[ph];
		sys += cl[k].sys_ns[ph];
	}
	qsort(all, n, sizeof(*all), cmp_u64);
	s = (double)(end - t0) / 1e9;
	printf("\"%s\":{\"calls\":%zu,\"seconds\":%.4f,\"per_s\":%.1f,\"lat_us\":{\"p50\":%.1f,"
	       "\"p90\":%.1f,\"p99\":%.1f,\"max\":%.1f},\"client_cpu_us_per_call\":%.2f,"
	       "\"client_sys_us_per_call\":%.2f}%s",
	       name, n, s, s > 0 ? (double)n / s : 0, pct_us(all, n, 0.5), pct_us(all, n, 0.9),
	       pct_us(all, n, 0.99), n ? (double)all[n - 1] / 1000.0 : 0,
	       n ? (double)cpu / 1000.0 / (double)n : 0, n ? (double)sys / 1000.0 / (double)n : 0,
	       sep);
	free(all);
}

static void usage(FILE *f)
{
	fprintf(f, "usage: siov-rpc-rate --rpc PATH --sock-dir DIR --backend NAME [--clients N]\n"
		   "  [--count M (in all)] [--first I] [--window BYTES] [--prefix NAME]\n"
		   "vdev_create then vdev_delete of M VDEVs, one call at a time per client;\n"
		   "VDEV I is PREFIX%%07u at offset I*BYTES of the backend.  Prints JSON.\n");
}

static int parse_opts(int argc, char **argv, struct opts *o)
{
	static const struct option lo[] = {{"rpc", 1, 0, 'r'},	   {"sock-dir", 1, 0, 'd'},
					   {"backend", 1, 0, 'b'}, {"clients", 1, 0, 'c'},
					   {"count", 1, 0, 'n'},   {"first", 1, 0, 'f'},
					   {"window", 1, 0, 'w'},  {"prefix", 1, 0, 'p'},
					   {"help", 0, 0, 'h'},	   {0, 0, 0, 0}};
	int ch;

	*o = (struct opts){.prefix = "r", .clients = 1, .count = 1000, .window = 1 << 20};
	while ((ch = getopt_long(argc, argv, "h", lo, NULL)) != -1) {
		switch (ch) {
		case 'r':
			o->rpc = optarg;
			break;
		case 'd':
			o->sock_dir = optarg;
			break;
		case 'b':
			o->backend = optarg;
			break;
		case 'c':
			o->clients = (unsigned)strtoul(optarg, NULL, 0);
			break;
		case 'n':
			o->count = (unsigned)strtoul(optarg, NULL, 0);
			break;
		case 'f':
			o->first = strtoull(optarg, NULL, 0);
			break;
		case 'w':
			o->window = strtoull(optarg, NULL, 0);
			break;
		case 'p':
			o->prefix = optarg;
			break;
		case 'h':
			usage(stdout);
			exit(0);
		default:
			return -EINVAL;
		}
	}
	if (!o->rpc || !o->sock_dir || !o->backend || !o->clients || o->clients > 1024 ||
	    o->count < o->clients || !o->window || strlen(o->prefix) > 32)
		return -EINVAL;
	return 0;
}

/* Client k's share: count split as evenly as it goes. */
static int client_init(struct client *c, const struct opts *o, unsigned k, pthread_barrier_t *bar)
{
	unsigned per = o->count / o->clients, extra = o->count % o->clients;

	c->o = o;
	c->bar = bar;
	c->id = k;
	c->from = k * per + (k < extra ? k : extra);
	c->n = per + (k < extra);
	for (int ph = 0; ph < NPHASES; ph++)
		if (!(c->lat_ns[ph] = calloc(c->n, sizeof(uint64_t))))
			return -ENOMEM;
	c->fd = connect_rpc(o->rpc);
	if (c->fd < 0)
		snprintf(c->err, sizeof(c->err), "connect %s: %s", o->rpc, strerror(-c->fd));
	return c->fd < 0 ? c->fd : 0;
}

static int report(struct client *cl, const struct opts *o, const uint64_t *t0)
{
	int bad = 0;

	for (unsigned k = 0; k < o->clients; k++)
		if (cl[k].err[0]) {
			fprintf(stderr, "siov-rpc-rate: client %u: %s\n", k, cl[k].err);
			bad = 1;
		}
	if (bad)
		return 1;
	printf("{\"clients\":%u,\"count\":%u,", o->clients, o->count);
	print_phase(cl, o, PHASE_CREATE, t0[PHASE_CREATE], "create", ",");
	print_phase(cl, o, PHASE_DELETE, t0[PHASE_DELETE], "delete", "}\n");
	return 0;
}

int main(int argc, char **argv)
{
	struct opts o;
	struct client *cl;
	pthread_t *th;
	pthread_barrier_t bar;
	uint64_t t0[NPHASES];
	unsigned k;
	int rc = 1;

	if (parse_opts(argc, argv, &o) < 0) {
		usage(stderr);
		return 2;
	}
	cl = calloc(o.clients, sizeof(*cl));
	th = calloc(o.clients, sizeof(*th));
	if (!cl || !th || pthread_barrier_init(&bar, NULL, o.clients + 1))
		return 1;
	for (k = 0; k < o.clients; k++) {
		if (client_init(&cl[k], &o, k, &bar) == -ENOMEM)
			return 1;
		if (pthread_create(&th[k], NULL, client_main, &cl[k]))
			return 1; /* the process ends: the threads with it */
	}
	for (int ph = 0; ph < NPHASES; ph++) {
		t0[ph] = now_ns();
		pthread_barrier_wait(&bar); /* go */
		pthread_barrier_wait(&bar); /* everyone done */
	}
	for (k = 0; k < o.clients; k++)
		pthread_join(th[k], NULL);
	rc = report(cl, &o, t0);
	for (k = 0; k < o.clients; k++) {
		if (cl[k].fd >= 0)
			close(cl[k].fd);
		for (int ph = 0; ph < NPHASES; ph++)
			free(cl[k].lat_ns[ph]);
	}
	free(th);
	free(cl);
	return rc;
}
