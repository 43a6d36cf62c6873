/*
 * The scale and QoS tests' harness (harness.h): siovd through siovd_proc,
 * JSON-RPC over one connection, libsiov clients and /proc readings.
 */
#include <errno.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <dirent.h>
#include <fcntl.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "harness.h"

void check(struct sd *s, bool ok, const char *fmt, ...)
{
	va_list ap;

	printf("%s: ", ok ? "ok" : "FAIL");
	va_start(ap, fmt);
	vprintf(fmt, ap);
	va_end(ap);
	printf("\n");
	fflush(stdout);
	if (!ok)
		s->failed++;
}

double now_s(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

unsigned raise_nofile(void)
{
	struct rlimit rl;

	if (getrlimit(RLIMIT_NOFILE, &rl) < 0)
		return 0;
	rl.rlim_cur = rl.rlim_max;
	setrlimit(RLIMIT_NOFILE, &rl);
	getrlimit(RLIMIT_NOFILE, &rl);
	return (unsigned)rl.rlim_cur;
}

int sd_start(struct sd *s, const char *siovd, const char *const *extra)
{
	const char *argv[24] = {"--log-level", "warn"};
	unsigned n = 2;
	int rc, fd;

	memset(s, 0, sizeof(*s));
	s->rpc_fd = -1;
	for (; extra && *extra && n + 1 < SIOV_TEST_ARRAY(argv); extra++)
		argv[n++] = *extra;
	rc = siovd_proc_start(&s->p, siovd, "scale", argv);
	if (rc)
		return rc;
	fd = siovd_proc_connect(s->p.rpc);
	if (fd < 0)
		return fd;
	s->rpc_fd = fd;
	return 0;
}

int sd_stop(struct sd *s)
{
	int rc;

	if (s->rpc_fd >= 0)
		close(s->rpc_fd);
	s->rpc_fd = -1;
	rc = s->p.pid > 0 ? siovd_proc_stop(&s->p, 30000) : -ECHILD;
	if (s->failed)
		s->p.failed = true;
	siovd_proc_cleanup(&s->p);
	return rc;
}

static int send_all(int fd, const char *p, size_t len)
{
	while (len) {
		ssize_t n = send(fd, p, len, MSG_NOSIGNAL);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			return -errno;
		p += n;
		len -= (size_t)n;
	}
	return 0;
}

static struct json_object *recv_value(int fd)
{
	struct json_tokener *tok = json_tokener_new_ex(64);
	struct json_object *v = NULL;
	static char buf[1 << 16];

	while (tok && !v) {
		ssize_t n = recv(fd, buf, sizeof(buf), 0);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			break;
		/* One value per call: answers come one at a time. */
		v = json_tokener_parse_ex(tok, buf, (int)n);
		if (!v && json_tokener_get_error(tok) != json_tokener_continue)
			break;
	}
	json_tokener_free(tok);
	return v;
}

static struct json_object *roundtrip(struct sd *s, struct json_object *req)
{
	const char *text = json_object_to_json_string_ext(req, JSON_C_TO_STRING_PLAIN);

	if (send_all(s->rpc_fd, text, strlen(text)) < 0 || send_all(s->rpc_fd, "\n", 1) < 0)
		return NULL;
	return recv_value(s->rpc_fd);
}

struct json_object *sd_req(const char *method, struct json_object *params, int id)
{
	struct json_object *r = json_object_new_object();

	json_object_object_add(r, "jsonrpc", json_object_new_string("2.0"));
	json_object_object_add(r, "id", json_object_new_int(id));
	json_object_object_add(r, "method", json_object_new_string(method));
	json_object_object_add(r, "params", params ? params : json_object_new_object());
	return r;
}

struct json_object *sd_call(struct sd *s, const char *method, struct json_object *params)
{
	struct json_object *req = sd_req(method, params, 1), *resp = roundtrip(s, req), *res;

	json_object_put(req);
	if (!resp || !json_object_object_get_ex(resp, "result", &res)) {
		printf("%s: %s\n", method, resp ? json_object_to_json_string(resp) : "no answer");
		json_object_put(resp);
		return NULL;
	}
	json_object_get(res);
	json_object_put(resp);
	return res;
}

struct json_object *sd_batch(struct sd *s, struct json_object *reqs)
{
	return roundtrip(s, reqs);
}

unsigned sd_batch_errors(struct json_object *answers)
{
	unsigned n = 0;

	if (!json_object_is_type(answers, json_type_array))
		return 1;
	for (size_t i = 0; i < json_object_array_length(answers); i++) {
		struct json_object *a = json_object_array_get_idx(answers, i);
		if (json_object_object_get_ex(a, "error", NULL) && n++ == 0)
			printf("batch: %s\n", json_object_to_json_string(a));
	}
	return n;
}

/* A "Key:   123 kB" line of /proc/PID/status, in bytes. */
static uint64_t status_kb(const char *text, const char *key)
{
	const char *p = strstr(text, key);

	return p ? strtoull(p + strlen(key), NULL, 10) * 1024 : 0;
}

int sd_rss(struct sd *s, uint64_t *rss, uint64_t *anon)
{
	char path[64], text[4096];
	ssize_t n;
	int fd;

	snprintf(path, sizeof(path), "/proc/%d/status", s->p.pid);
	fd = open(path, O_RDONLY);
	if (fd < 0)
		return -errno;
	n = read(fd, text, sizeof(text) - 1);
	close(fd);
	if (n <= 0)
		return -EIO;
	text[n] = '\0';
	*rss = status_kb(text, "VmRSS:");
	*anon = status_kb(text, "RssAnon:");
	return 0;
}

double sd_cpu(struct sd *s)
{
	char path[64], text[1024], *p;
	unsigned long long ut = 0, st = 0;
	ssize_t n;
	int fd;

	snprintf(path, sizeof(path), "/proc/%d/stat", s->p.pid);
	fd = open(path, O_RDONLY);
	if (fd < 0)
		return -1;
	n = read(fd, text, sizeof(text) - 1);
	close(fd);
	if (n <= 0)
		return -1;
	text[n] = '\0';
	/* Fields 14 and 15, counted after the ")" that ends the command name. */
	p = strrchr(text, ')');
	if (!p ||
	    sscanf(p + 2, "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %llu %llu", &ut, &st) != 2)
		return -1;
	return (double)(ut + st) / (double)sysconf(_SC_CLK_TCK);
}

unsigned sd_fds(struct sd *s)
{
	char path[64];
	DIR *d;
	unsigned n = 0;

	snprintf(path, sizeof(path), "/proc/%d/fd", s->p.pid);
	d = opendir(path);
	while (d && readdir(d))
		n++;
	if (d)
		closedir(d);
	return n > 2 ? n - 2 : 0;
}

int client_open(struct client *c, const char *sock, unsigned queue_size)
{
	struct siov_dev_opts o;
	int rc;

	memset(c, 0, sizeof(*c));
	siov_dev_opts_init(&o);
	o.num_queues = 1;
	o.queue_size = queue_size;
	o.poll_us = 0;
	rc = siov_dev_open(sock, &o, &c->dev);
	if (rc)
		return rc;
	rc = siov_mem_alloc(c->dev, CLIENT_BUF, (void **)&c->buf);
	if (!rc)
		rc = siov_dev_start(c->dev);
	if (!rc)
		c->q = siov_dev_queue(c->dev, 0);
	if (!rc && !c->q)
		rc = -ENODEV;
	if (rc) {
		siov_dev_close(c->dev);
		c->dev = NULL;
	}
	return rc;
}

void client_close(struct client *c)
{
	siov_dev_close(c->dev);
	c->dev = NULL;
}

static int one_io(struct client *c, bool write, void *buf, uint32_t len, uint64_t off)
{
	struct siov_cqe cqe;
	int rc = write ? siov_prep_write(c->q, buf, len, off, 1)
		       : siov_prep_read(c->q, buf, len, off, 2);

	if (rc)
		return rc;
	rc = siov_submit(c->q);
	if (rc < 0)
		return rc;
	rc = siov_wait(c->q, &cqe, 1, 1, 10000);
	if (rc != 1)
		return rc < 0 ? rc : -ETIMEDOUT;
	return cqe.res == (int32_t)len ? 0 : (cqe.res < 0 ? cqe.res : -EIO);
}

int client_verify(struct client *c, uint64_t offset, uint32_t len, uint32_t seed)
{
	uint8_t *w = c->buf, *r = c->buf + CLIENT_BUF / 2;
	int rc;

	if (len > CLIENT_BUF / 2)
		return -EINVAL;
	for (uint32_t i = 0; i < len; i++)
		w[i] = (uint8_t)(seed * 131 + i * 7 + (i >> 9));
	memset(r, 0, len);
	rc = one_io(c, true, w, len, offset);
	if (!rc)
		rc = one_io(c, false, r, len, offset);
	if (!rc && memcmp(w, r, len))
		rc = -EILSEQ;
	return rc;
}
