/*
 * siovctl top: the busiest VDEVs, like iostat -x or spdk_top.  Every DELAY
 * seconds it takes vdev_stats, subtracts the previous sample per VDEV and
 * shows, sorted, the COUNT busiest: IOPS, read and write bandwidth, mean
 * latency over the interval, QoS throttling, in-flight requests, state.  On a
 * terminal it redraws in place and reads single keys (q quits; i, b, l, t, n
 * sort by IOPS, bandwidth, latency, throttling, name); with -b (or when stdout
 * is not a terminal) it prints one plain frame per interval, for scripts.
 *
 *   siovctl [-s SOCKET] top [-d SECONDS] [-n COUNT] [-o iops|bw|lat|thr|name] [-b] [-i FRAMES]
 */
#include <errno.h>
#include <getopt.h>
#include <poll.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <termios.h>
#include <time.h>
#include <unistd.h>

#include <json-c/json.h>

#include "siovctl.h"

enum sort_key { SORT_IOPS, SORT_BW, SORT_LAT, SORT_THR, SORT_NAME };

struct sample {
	uint64_t requests, bytes_read, bytes_written, throttled, throttled_ns, inflight;
	double lat_total_us; /* mean * requests: the sum, to subtract */
};

struct row {
	const char *name, *state;
	double iops, rd_bps, wr_bps, lat_us, thr_pct;
	uint64_t inflight;
};

struct top {
	int fd;
	double delay;
	unsigned count;
	enum sort_key sort;
	bool batch;
	long frames;
	struct json_object *prev; /* name -> [requests, bytes_read, ...] of the last sample */
	double prev_t;
};

static double now_s(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static uint64_t u64(struct json_object *o, const char *key)
{
	struct json_object *v;

	return json_object_object_get_ex(o, key, &v) ? (uint64_t)json_object_get_int64(v) : 0;
}

static double dbl(struct json_object *o, const char *key)
{
	struct json_object *v;

	return json_object_object_get_ex(o, key, &v) ? json_object_get_double(v) : 0.0;
}

static const char *str(struct json_object *o, const char *key)
{
	struct json_object *v;

	return json_object_object_get_ex(o, key, &v) && json_object_get_string(v)
		   ? json_object_get_string(v)
		   : "";
}

static void sample_of(struct json_object *v, struct sample *s)
{
	struct json_object *qos = NULL;

	json_object_object_get_ex(v, "qos", &qos);
	s->requests = u64(v, "requests");
	s->bytes_read = u64(v, "bytes_read");
	s->bytes_written = u64(v, "bytes_written");
	s->inflight = u64(v, "inflight");
	s->lat_total_us = dbl(v, "latency_us_mean") * (double)s->requests;
	s->throttled = qos ? u64(qos, "throttled") : 0;
	s->throttled_ns = qos ? u64(qos, "throttled_ns") : 0;
}

static struct json_object *sample_json(const struct sample *s)
{
	struct json_object *a = json_object_new_array();

	json_object_array_add(a, json_object_new_uint64(s->requests));
	json_object_array_add(a, json_object_new_uint64(s->bytes_read));
	json_object_array_add(a, json_object_new_uint64(s->bytes_written));
	json_object_array_add(a, json_object_new_uint64(s->throttled_ns));
	json_object_array_add(a, json_object_new_double(s->lat_total_us));
	return a;
}

/* Rates over dt from the previous sample (none: since the VDEV started). */
static void row_of(struct top *t, struct json_object *v, double dt, struct row *r,
		   struct json_object *next)
{
	struct sample s, p = {0};
	struct json_object *old;

	sample_of(v, &s);
	r->name = str(v, "name");
	r->state = str(v, "state");
	r->inflight = s.inflight;
	if (t->prev && json_object_object_get_ex(t->prev, r->name, &old)) {
		p.requests = (uint64_t)json_object_get_int64(json_object_array_get_idx(old, 0));
		p.bytes_read = (uint64_t)json_object_get_int64(json_object_array_get_idx(old, 1));
		p.bytes_written =
		    (uint64_t)json_object_get_int64(json_object_array_get_idx(old, 2));
		p.throttled_ns = (uint64_t)json_object_get_int64(json_object_array_get_idx(old, 3));
		p.lat_total_us = json_object_get_double(json_object_array_get_idx(old, 4));
	}
	/* Counters restart with a new siovd: a smaller value is a fresh start. */
	if (s.requests < p.requests)
		p = (struct sample){0};
	r->iops = (double)(s.requests - p.requests) / dt;
	r->rd_bps = (double)(s.bytes_read - p.bytes_read) / dt;
	r->wr_bps = (double)(s.bytes_written - p.bytes_written) / dt;
	r->lat_us = s.requests > p.requests
			? (s.lat_total_us - p.lat_total_us) / (double)(s.requests - p.requests)
			: 0.0;
	r->thr_pct = s.throttled_ns >= p.throttled_ns
			 ? (double)(s.throttled_ns - p.throttled_ns) / (dt * 1e9) * 100.0
			 : 0.0;
	json_object_object_add(next, r->name, sample_json(&s));
}

static enum sort_key g_sort;

static int cmp_rows(const void *a, const void *b)
{
	const struct row *x = a, *y = b;
	double dx = 0, dy = 0;

	switch (g_sort) {
	case SORT_NAME:
		return strcmp(x->name, y->name);
	case SORT_BW:
		dx = x->rd_bps + x->wr_bps, dy = y->rd_bps + y->wr_bps;
		break;
	case SORT_LAT:
		dx = x->lat_us, dy = y->lat_us;
		break;
	case SORT_THR:
		dx = x->thr_pct, dy = y->thr_pct;
		break;
	case SORT_IOPS:
		dx = x->iops, dy = y->iops;
		break;
	}
	return dx < dy ? 1 : dx > dy ? -1 : strcmp(x->name, y->name);
}

static const char *const sort_names[] = {"iops", "bw", "lat", "thr", "name"};

static void print_frame(const struct top *t, struct row *rows, size_t n, double dt)
{
	double tot_iops = 0, tot_rd = 0, tot_wr = 0;

	for (size_t i = 0; i < n; i++) {
		tot_iops += rows[i].iops;
		tot_rd += rows[i].rd_bps;
		tot_wr += rows[i].wr_bps;
	}
	if (!t->batch)
		fputs("\033[H\033[2J", stdout);
	printf("siovctl top - %zu VDEVs, %.0f IOPS, read %.1f MB/s, write %.1f MB/s, "
	       "interval %.1f s, sorted by %s%s\n",
	       n, tot_iops, tot_rd / 1e6, tot_wr / 1e6, dt, sort_names[t->sort],
	       t->batch ? "" : "  (q quit; i b l t n sort)");
	printf("%-24s %10s %10s %10s %10s %7s %8s %-10s\n", "VDEV", "IOPS", "rd MB/s", "wr MB/s",
	       "lat us", "thr %", "inflight", "state");
	for (size_t i = 0; i < n && i < t->count; i++)
		printf("%-24.24s %10.0f %10.2f %10.2f %10.1f %7.1f %8llu %-10s\n", rows[i].name,
		       rows[i].iops, rows[i].rd_bps / 1e6, rows[i].wr_bps / 1e6, rows[i].lat_us,
		       rows[i].thr_pct, (unsigned long long)rows[i].inflight, rows[i].state);
	fflush(stdout);
}

/* One refresh: 0, or -1 if siovd did not answer. */
static int top_frame(struct top *t)
{
	struct json_object *resp = siovctl_call(t->fd, "vdev_stats", NULL), *res, *next;
	double tnow = now_s(), dt = t->prev_t ? tnow - t->prev_t : 1.0;
	struct row *rows;
	size_t n;

	if (!resp || !json_object_object_get_ex(resp, "result", &res) ||
	    !json_object_is_type(res, json_type_array)) {
		json_object_put(resp);
		return -1;
	}
	n = json_object_array_length(res);
	rows = calloc(n ? n : 1, sizeof(*rows));
	next = json_object_new_object();
	if (!rows || !next) {
		free(rows);
		json_object_put(next);
		json_object_put(resp);
		return -1;
	}
	for (size_t i = 0; i < n; i++)
		row_of(t, json_object_array_get_idx(res, i), dt > 0 ? dt : 1.0, &rows[i], next);
	g_sort = t->sort;
	qsort(rows, n, sizeof(*rows), cmp_rows);
	/* The first frame has no previous sample: its rates are since each VDEV began. */
	print_frame(t, rows, n, dt);
	free(rows);
	json_object_put(t->prev);
	t->prev = next;
	t->prev_t = tnow;
	json_object_put(resp);
	return 0;
}

/* Waits for the next refresh; false if the user asked to quit. */
static bool top_wait(struct top *t)
{
	struct pollfd pfd = {.fd = STDIN_FILENO, .events = POLLIN};
	double until = now_s() + t->delay;
	char c;

	for (;;) {
		double left = until - now_s();
		if (left <= 0)
			return true;
		if (t->batch) {
			usleep((useconds_t)(left * 1e6));
			return true;
		}
		if (poll(&pfd, 1, (int)(left * 1000) + 1) <= 0 || read(STDIN_FILENO, &c, 1) != 1)
			continue;
		/* The keys are the sort names' first letters, in enum order. */
		for (int k = 0; k <= SORT_NAME; k++)
			if (c == sort_names[k][0])
				t->sort = (enum sort_key)k;
		if (c == 'q')
			return false;
		return true; /* redraw now with the new order */
	}
}

static int parse_top_args(struct top *t, int argc, char **argv)
{
	int opt;

	optind = 1;
	while ((opt = getopt(argc, argv, "d:n:o:bi:")) != -1) {
		switch (opt) {
		case 'd':
			t->delay = atof(optarg);
			if (t->delay < 0.1 || t->delay > 3600)
				return -EINVAL;
			break;
		case 'n':
			t->count = (unsigned)atoi(optarg);
			break;
		case 'o':
			for (t->sort = 0; t->sort <= SORT_NAME; t->sort++)
				if (strcmp(optarg, sort_names[t->sort]) == 0)
					break;
			if (t->sort > SORT_NAME)
				return -EINVAL;
			break;
		case 'b':
			t->batch = true;
			break;
		case 'i':
			t->frames = atol(optarg);
			break;
		default:
			return -EINVAL;
		}
	}
	return optind == argc ? 0 : -EINVAL;
}

int siovctl_top(const char *sock, int timeout_s, int argc, char **argv)
{
	struct top t = {.delay = 1.0, .count = 20, .sort = SORT_IOPS, .frames = -1};
	struct termios old, raw;
	bool tty;
	const char *why = "";
	int rc = 0;

	if (parse_top_args(&t, argc, argv) < 0) {
		fprintf(stderr, "usage: siovctl top [-d SECONDS] [-n COUNT] "
				"[-o iops|bw|lat|thr|name] [-b] [-i FRAMES]\n");
		return 2;
	}
	t.batch = t.batch || !isatty(STDOUT_FILENO);
	t.fd = siovctl_connect(sock, timeout_s, &why);
	if (t.fd < 0) {
		fprintf(stderr, "siovctl: cannot connect to %s: %s (is siovd running?)\n", sock,
			why);
		return 2;
	}
	tty = !t.batch && isatty(STDIN_FILENO) && tcgetattr(STDIN_FILENO, &old) == 0;
	if (tty) {
		raw = old;
		raw.c_lflag &= ~(tcflag_t)(ICANON | ECHO);
		tcsetattr(STDIN_FILENO, TCSANOW, &raw);
	}
	for (long i = 0; t.frames < 0 || i < t.frames; i++) {
		if (top_frame(&t) < 0) {
			fprintf(stderr, "siovctl: siovd did not answer vdev_stats\n");
			rc = 2;
			break;
		}
		if ((t.frames < 0 || i + 1 < t.frames) && !top_wait(&t))
			break;
	}
	if (tty)
		tcsetattr(STDIN_FILENO, TCSANOW, &old);
	json_object_put(t.prev);
	close(t.fd);
	return rc;
}
