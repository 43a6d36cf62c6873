/*
 * Many VDEVs in one siovd (issue 4, scaled down to fit CI): a few thousand
 * VDEVs created by batch RPC over one connection, each with its own libsiov
 * client attached and a verified write+read; then siovd's memory per VDEV and
 * its idle CPU with all of them attached are measured and checked against
 * generous bounds, listing and paging are timed, everything is deleted by
 * batch, and every socket must be gone.
 *
 *   test_scale SIOVD [N]        (N defaults to $SIOV_SCALE_N, else 2000)
 *
 * Exits 77 (skip) when the fd limit cannot hold N clients.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "harness.h"

#if defined(__SANITIZE_ADDRESS__)
#define SANITIZED 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define SANITIZED 1
#endif
#endif
#ifndef SANITIZED
#define SANITIZED 0
#endif

#define WINDOW	    (64u << 10)
#define BATCH	    500
#define FDS_PER_DEV 6 /* socket, kick, call, err, two memfds: the client side */

static struct sd S;
static unsigned N;
static struct client *C;

static void sock_path(char *buf, size_t size, unsigned i)
{
	snprintf(buf, size, "%s/v%05u.sock", S.p.dir, i);
}

static struct json_object *create_params(unsigned i)
{
	struct json_object *p = json_object_new_object();
	char name[32], sock[128];

	snprintf(name, sizeof(name), "v%05u", i);
	sock_path(sock, sizeof(sock), i);
	json_object_object_add(p, "name", json_object_new_string(name));
	json_object_object_add(p, "backend", json_object_new_string("disk"));
	json_object_object_add(p, "offset", json_object_new_uint64((uint64_t)i * WINDOW));
	json_object_object_add(p, "size", json_object_new_uint64(WINDOW));
	json_object_object_add(p, "socket", json_object_new_string(sock));
	return p;
}

static struct json_object *delete_params(unsigned i)
{
	struct json_object *p = json_object_new_object();
	char name[32];

	snprintf(name, sizeof(name), "v%05u", i);
	json_object_object_add(p, "name", json_object_new_string(name));
	return p;
}

/* Sends method for VDEVs [0, N) in batches; returns the seconds it took. */
static double batch_all(const char *method, struct json_object *(*params)(unsigned))
{
	double t0 = now_s();
	unsigned errors = 0;

	for (unsigned first = 0; first < N; first += BATCH) {
		struct json_object *reqs = json_object_new_array(), *ans;
		for (unsigned i = first; i < first + BATCH && i < N; i++)
			json_object_array_add(reqs, sd_req(method, params(i), (int)i));
		ans = sd_batch(&S, reqs);
		errors += sd_batch_errors(ans);
		json_object_put(ans);
		json_object_put(reqs);
	}
	check(&S, errors == 0, "%s x %u by batches of %u: %u errors", method, N, BATCH, errors);
	return now_s() - t0;
}

static int create_backend(void)
{
	struct json_object *p = json_object_new_object(), *res;
	char path[160];

	snprintf(path, sizeof(path), "%s/disk.img", S.p.dir);
	json_object_object_add(p, "name", json_object_new_string("disk"));
	json_object_object_add(p, "type", json_object_new_string("file"));
	json_object_object_add(p, "path", json_object_new_string(path));
	json_object_object_add(p, "size", json_object_new_uint64((uint64_t)N * WINDOW));
	res = sd_call(&S, "backend_create", p);
	json_object_put(res);
	return res ? 0 : -EIO;
}

static void attach_and_verify(void)
{
	unsigned open_fail = 0, io_fail = 0;
	double t0 = now_s(), t1;
	char sock[128];
	int rc;

	for (unsigned i = 0; i < N; i++) {
		sock_path(sock, sizeof(sock), i);
		rc = client_open(&C[i], sock, 16);
		if (rc && open_fail++ == 0)
			printf("client %u: open: %s\n", i, strerror(-rc));
	}
	t1 = now_s();
	for (unsigned i = 0; i < N; i++) {
		if (!C[i].dev)
			continue;
		rc = client_verify(&C[i], 4096, 8192, i);
		if (rc && io_fail++ == 0)
			printf("client %u: verify: %s\n", i, strerror(-rc));
	}
	check(&S, open_fail == 0, "%u clients attached in %.2f s (%u failed)", N, t1 - t0,
	      open_fail);
	check(&S, io_fail == 0, "verified write+read on every VDEV in %.2f s (%u failed)",
	      now_s() - t1, io_fail);
}

/* vdev_list and vdev_stats with N entries: whole, one page, one name. */
static void time_queries(void)
{
	struct json_object *p, *res;
	double t0 = now_s(), t_all, t_page;
	size_t n;

	res = sd_call(&S, "vdev_list", NULL);
	t_all = now_s() - t0;
	n = res ? json_object_array_length(res) : 0;
	json_object_put(res);
	check(&S, n == N, "vdev_list: %zu entries in %.1f ms", n, t_all * 1e3);
	p = json_object_new_object();
	json_object_object_add(p, "offset", json_object_new_int64(N / 2));
	json_object_object_add(p, "limit", json_object_new_int64(100));
	t0 = now_s();
	res = sd_call(&S, "vdev_stats", p);
	t_page = now_s() - t0;
	n = res ? json_object_array_length(res) : 0;
	check(&S, n == (N - N / 2 < 100 ? N - N / 2 : 100),
	      "vdev_stats page of 100 at offset %u: %zu entries in %.2f ms", N / 2, n,
	      t_page * 1e3);
	if (res && n) {
		struct json_object *first = json_object_array_get_idx(res, 0), *req;
		json_object_object_get_ex(first, "requests", &req);
		check(&S, json_object_get_int64(req) == 2, "vdev_stats counts the 2 requests");
	}
	json_object_put(res);
	check(&S, t_page < t_all || t_page < 0.05, "a page costs less than the whole list");
}

/* siovd's memory per attached VDEV and its CPU while all of them idle. */
static void measure_idle(uint64_t rss0, uint64_t anon0)
{
	uint64_t rss1 = 0, anon1 = 0;
	double c0, c1, pct, rss_per, anon_per;

	usleep(500000); /* past the engines' polling grace period */
	sd_rss(&S, &rss1, &anon1);
	rss_per = (double)(rss1 - rss0) / N / 1024;
	anon_per = (double)(anon1 - anon0) / N / 1024;
	c0 = sd_cpu(&S);
	sleep(2);
	c1 = sd_cpu(&S);
	pct = (c1 - c0) / 2.0 * 100.0;
	printf("siovd with %u attached VDEVs: RSS %.1f MiB (+%.1f KiB/VDEV, anonymous +%.1f "
	       "KiB/VDEV), %u fds, idle CPU %.2f%%\n",
	       N, (double)rss1 / 1048576, rss_per, anon_per, sd_fds(&S), pct);
	check(&S, anon_per <= 256, "siovd's own memory per idle VDEV %.1f KiB <= 256 KiB",
	      anon_per);
	check(&S, pct < 5.0, "siovd's idle CPU with %u attached VDEVs %.2f%% < 5%%", N, pct);
}

static void check_sockets_gone(void)
{
	unsigned left = 0, alive = 0;
	struct stat st;
	char sock[128];

	for (unsigned i = 0; i < N; i++) {
		sock_path(sock, sizeof(sock), i);
		left += stat(sock, &st) == 0;
	}
	check(&S, left == 0, "every VDEV socket is gone (%u left)", left);
	usleep(100000);
	for (unsigned i = 0; i < N; i++)
		alive += C[i].dev && siov_dev_alive(C[i].dev) == 0;
	check(&S, alive == 0, "every client saw its VDEV go (%u still connected)", alive);
}

static int run(void)
{
	uint64_t rss0, anon0;
	double t_create, t_delete;

	if (create_backend())
		return -EIO;
	sd_rss(&S, &rss0, &anon0);
	t_create = batch_all("vdev_create", create_params);
	printf("created %u VDEVs in %.3f s (%.0f/s)\n", N, t_create, N / t_create);
	attach_and_verify();
	time_queries();
	measure_idle(rss0, anon0);
	t_delete = batch_all("vdev_delete", delete_params);
	/*
	 * The rate is a figure for bench/ (state and scale sections), not a pass
	 * criterion: on a loaded machine it says nothing about siovd.
	 */
	printf("deleted %u VDEVs (clients attached) in %.3f s (%.0f/s); create+delete %.0f/s\n", N,
	       t_delete, N / t_delete, 2.0 * N / (t_create + t_delete));
	check_sockets_gone();
	return 0;
}

int main(int argc, char **argv)
{
	const char *env = getenv("SIOV_SCALE_N");
	const char *extra[] = {"--engines", "2", NULL};
	unsigned limit = raise_nofile();
	int rc;

	if (argc < 2) {
		fprintf(stderr, "usage: test_scale SIOVD [N]\n");
		return 2;
	}
	N = argc > 2 ? (unsigned)atoi(argv[2]) : env ? (unsigned)atoi(env) : 2000;
	if (N == 0 || (uint64_t)N * FDS_PER_DEV + 64 > limit) {
		printf("skip: %u clients need %u fds, the limit is %u\n", N, N * FDS_PER_DEV + 64,
		       limit);
		return 77;
	}
	C = calloc(N, sizeof(*C));
	rc = sd_start(&S, argv[1], extra);
	if (rc) {
		printf("FAIL: siovd did not start: %s\n", strerror(-rc));
		sd_stop(&S);
		return 1;
	}
	rc = run();
	for (unsigned i = 0; i < N; i++)
		client_close(&C[i]);
	free(C);
	check(&S, rc == 0, "the run completed");
	check(&S, sd_stop(&S) == 0, "siovd stopped cleanly");
	printf("%s: %d failed check(s)\n", S.failed ? "FAIL" : "PASS", S.failed);
	return S.failed ? 1 : 0;
}
