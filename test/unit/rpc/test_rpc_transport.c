/*
 * The JSON-RPC server over a real Unix socket, driven by siov_loop_run_once()
 * in this thread: framing (two requests in one write, one request in several
 * writes), the socket's mode and life cycle (live server refused, stale file
 * replaced, too-long path), oversized requests, parse errors, peers that hang
 * up, many connections at once, and peers that do not read their answers.
 */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include "rpc_test.h"
#include "fake_vdcm.h"
#include "siov_internal/loop.h"
#include "siov_internal/util.h"
#include "../../../lib/ctrl/rpc_internal.h"

#define INFO_REQ(id) "{\"jsonrpc\":\"2.0\",\"id\":" #id ",\"method\":\"daemon_info\"}"

static struct siov_loop *g_loop;
static struct siov_vdcm *g_vdcm;
static struct siov_rpc_server *g_srv;
static char g_dir[64];
static char g_path[128];

static int start_server(struct siov_rpc_server **srv)
{
	struct siov_rpc_server_opts opts = {.loop = g_loop, .vdcm = g_vdcm, .socket_path = g_path};

	return siov_rpc_server_create(&opts, srv);
}

static int setup(void **state)
{
	strcpy(g_dir, "/tmp/siov-rpcsock-XXXXXX");
	if (!mkdtemp(g_dir))
		return -1;
	snprintf(g_path, sizeof(g_path), "%s/rpc.sock", g_dir);
	if (siov_loop_create(&g_loop) < 0 || siov_vdcm_create(NULL, &g_vdcm) < 0)
		return -1;
	return start_server(&g_srv);
}

static int teardown(void **state)
{
	siov_rpc_server_destroy(g_srv);
	siov_vdcm_destroy(g_vdcm);
	siov_loop_destroy(g_loop);
	unlink(g_path);
	rmdir(g_dir);
	return 0;
}

static int client_connect(void)
{
	struct sockaddr_un addr = {.sun_family = AF_UNIX};
	int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);

	assert_true(fd >= 0);
	strcpy(addr.sun_path, g_path);
	assert_int_equal(connect(fd, (struct sockaddr *)&addr, sizeof(addr)), 0);
	/* Let the server accept it. */
	siov_loop_run_once(g_loop, 100);
	return fd;
}

static void client_send(int fd, const char *s)
{
	assert_int_equal(send(fd, s, strlen(s), MSG_NOSIGNAL), (ssize_t)strlen(s));
}

/*
 * Runs the server until fd has nlines complete lines (or EOF, or 5 s), and
 * returns what arrived (malloc'd).  *eof says whether the server closed.
 */
static char *client_collect(int fd, int nlines, bool *eof)
{
	size_t cap = 1 << 16, len = 0;
	char *buf = malloc(cap);
	uint64_t deadline = siov_now_ns() + 5000000000ull;
	int lines = 0;

	*eof = false;
	while (lines < nlines && !*eof && siov_now_ns() < deadline) {
		ssize_t n;
		siov_loop_run_once(g_loop, 10);
		if (cap - len < 4096)
			buf = realloc(buf, cap *= 2);
		n = recv(fd, buf + len, cap - len - 1, MSG_DONTWAIT);
		if (n == 0 || (n < 0 && errno == ECONNRESET))
			*eof = true;
		for (ssize_t i = 0; i < n; i++)
			lines += buf[len + (size_t)i] == '\n';
		if (n > 0)
			len += (size_t)n;
	}
	buf[len] = '\0';
	return buf;
}

/* The id of response line i (0-based) in text. */
static int line_id(const char *text, int i)
{
	const char *p = text;
	struct json_object *o;
	int id;

	while (i-- > 0)
		p = strchr(p, '\n') + 1;
	o = json_tokener_parse(p);
	assert_non_null(o);
	id = json_object_get_int(member(o, "id"));
	json_object_put(o);
	return id;
}

static void test_framing(void **state)
{
	int fd = client_connect();
	bool eof;
	char *out;

	/* Two requests in one write, separated by whitespace. */
	client_send(fd, INFO_REQ(1) "\n  \n" INFO_REQ(2));
	out = client_collect(fd, 2, &eof);
	assert_false(eof);
	assert_int_equal(line_id(out, 0), 1);
	assert_int_equal(line_id(out, 1), 2);
	free(out);

	/* One request split over three writes, with the server running in between. */
	client_send(fd, "{\"jsonrpc\":\"2.0\",\"id\"");
	siov_loop_run_once(g_loop, 20);
	client_send(fd, ":3,\"method\":\"daem");
	siov_loop_run_once(g_loop, 20);
	client_send(fd, "on_info\"}\n" INFO_REQ(4) "\n{\"jsonrpc\":");
	out = client_collect(fd, 2, &eof);
	assert_int_equal(line_id(out, 0), 3);
	assert_int_equal(line_id(out, 1), 4);
	free(out);
	client_send(fd, "\"2.0\",\"id\":5,\"method\":\"nope\"}");
	out = client_collect(fd, 1, &eof);
	assert_int_equal(line_id(out, 0), 5);
	assert_non_null(strstr(out, "-32601"));
	free(out);
	close(fd);
}

static void test_socket_file(void **state)
{
	struct siov_rpc_server *other;
	struct stat st;
	char longpath[160];
	int fd;

	assert_int_equal(stat(g_path, &st), 0);
	assert_true(S_ISSOCK(st.st_mode));
	assert_int_equal(st.st_mode & 0777, 0600);
	/* A live server keeps its socket. */
	assert_int_equal(start_server(&other), -EADDRINUSE);
	assert_int_equal(stat(g_path, &st), 0);
	/* Destroy removes the file; a stale one (nobody listening) is replaced. */
	siov_rpc_server_destroy(g_srv);
	g_srv = NULL;
	assert_int_equal(stat(g_path, &st), -1);
	fd = socket(AF_UNIX, SOCK_STREAM, 0);
	{
		struct sockaddr_un addr = {.sun_family = AF_UNIX};
		strcpy(addr.sun_path, g_path);
		assert_int_equal(bind(fd, (struct sockaddr *)&addr, sizeof(addr)), 0);
	}
	close(fd);
	assert_int_equal(start_server(&g_srv), 0);
	fd = client_connect();
	close(fd);
	/* Something that is not a socket is never removed. */
	siov_rpc_server_destroy(g_srv);
	g_srv = NULL;
	fd = open(g_path, O_CREAT | O_WRONLY, 0600);
	close(fd);
	assert_int_equal(start_server(&g_srv), -EEXIST);
	assert_int_equal(stat(g_path, &st), 0);
	unlink(g_path);
	/* 108 bytes do not fit in sun_path. */
	memset(longpath, 'x', sizeof(longpath));
	memcpy(longpath, "/tmp/", 5);
	longpath[108] = '\0';
	{
		struct siov_rpc_server_opts opts = {.loop = g_loop, .socket_path = longpath};
		assert_int_equal(siov_rpc_server_create(&opts, &other), -ENAMETOOLONG);
	}
}

static void test_oversized_request(void **state)
{
	char big[3000];
	int fd = client_connect();
	bool eof;
	char *out;

	g_srv->max_request = 1000;
	memset(big, ' ', sizeof(big));
	static const char head[] =
	    "{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"daemon_info\",\"params\":{\"x\":\"";

	memcpy(big, head, sizeof(head) - 1);
	memset(big + sizeof(head) - 1, 'a', sizeof(big) - sizeof(head));
	big[sizeof(big) - 1] = '\0';
	client_send(fd, big);
	out = client_collect(fd, 2, &eof);
	assert_non_null(strstr(out, "-32600"));
	assert_non_null(strstr(out, "request larger than 1000 bytes"));
	assert_true(eof);
	free(out);
	close(fd);
	assert_int_equal(g_srv->nconns, 0);
}

static void test_parse_error_closes(void **state)
{
	int fd = client_connect();
	bool eof;
	char *out;

	client_send(fd, INFO_REQ(1) "\n}{");
	out = client_collect(fd, 3, &eof);
	assert_int_equal(line_id(out, 0), 1);
	assert_non_null(strstr(out, "-32700"));
	assert_true(eof);
	free(out);
	close(fd);
}

/* A peer that sends half a request and hangs up, or sends and hangs up at once. */
static void test_peer_hangs_up(void **state)
{
	int fd = client_connect();
	bool eof;
	char *out;

	client_send(fd, "{\"jsonrpc\":\"2.0\",\"id\":1,\"meth");
	close(fd);
	for (int i = 0; i < 10 && g_srv->nconns; i++)
		siov_loop_run_once(g_loop, 10);
	assert_int_equal(g_srv->nconns, 0);

	/* Half-closed: the answer still comes, then the server closes. */
	fd = client_connect();
	client_send(fd, INFO_REQ(9));
	shutdown(fd, SHUT_WR);
	out = client_collect(fd, 2, &eof);
	assert_int_equal(line_id(out, 0), 9);
	assert_true(eof);
	free(out);
	close(fd);

	/* Gone before the answer: nothing to answer, nothing leaks. */
	fd = client_connect();
	client_send(fd, INFO_REQ(10));
	close(fd);
	for (int i = 0; i < 10 && g_srv->nconns; i++)
		siov_loop_run_once(g_loop, 10);
	assert_int_equal(g_srv->nconns, 0);
}

static void test_many_connections(void **state)
{
	enum { N = 100 };
	int fds[N];
	bool eof;
	char req[128], *out;

	for (int i = 0; i < N; i++)
		fds[i] = client_connect();
	assert_int_equal(g_srv->nconns, N);
	for (int i = N - 1; i >= 0; i--) {
		snprintf(req, sizeof(req),
			 "{\"jsonrpc\":\"2.0\",\"id\":%d,\"method\":\"vdev_list\"}", i);
		client_send(fds[i], req);
	}
	for (int i = 0; i < N; i++) {
		out = client_collect(fds[i], 1, &eof);
		assert_int_equal(line_id(out, 0), i);
		free(out);
		close(fds[i]);
	}
}

/*
 * Sends up to count requests on fd without reading any answer, running the
 * server meanwhile, until the server stops taking them (back-pressure) or drops
 * the connection.  Returns how many whole requests were sent; *partial is how
 * many bytes of the next one went out.
 */
static int flood(int fd, int count, size_t *partial)
{
	static const char req[] = INFO_REQ(1) "\n";
	size_t len = strlen(req), off = 0;
	int sent = 0, stalled = 0;

	while (sent < count && g_srv->nconns && stalled < 50) {
		ssize_t n = send(fd, req + off, len - off, MSG_DONTWAIT | MSG_NOSIGNAL);
		if (n < 0 && errno != EAGAIN)
			break;
		if (n < 0) {
			siov_loop_run_once(g_loop, 5);
			stalled++;
			continue;
		}
		stalled = 0;
		off += (size_t)n;
		if (off == len) {
			off = 0;
			sent++;
		}
	}
	for (int i = 0; i < 20; i++)
		siov_loop_run_once(g_loop, 5);
	*partial = off;
	return sent;
}

/* With back-pressure off, a peer that never reads is dropped at the cap. */
static void test_non_reader_dropped(void **state)
{
	int fd = client_connect();

	size_t partial;

	g_srv->out_soft_cap = SIZE_MAX;
	g_srv->out_hard_cap = 64 << 10;
	flood(fd, 1000000, &partial);
	assert_int_equal(g_srv->nconns, 0);
	close(fd);
}

static int count_lines(const char *s)
{
	int n = 0;

	for (; (s = strchr(s, '\n')); s++)
		n++;
	return n;
}

/*
 * With back-pressure on, a peer that does not read is no longer read from
 * (its memory stays bounded) but not dropped; once it reads, it gets every
 * answer.
 */
static void test_late_reader_served(void **state)
{
	static const char req[] = INFO_REQ(1) "\n";
	int fd = client_connect(), sent;
	size_t partial;
	bool eof;
	char *out;

	g_srv->out_soft_cap = 4096;
	g_srv->out_hard_cap = 64 << 10;
	sent = flood(fd, 1000000, &partial);
	assert_int_equal(g_srv->nconns, 1);
	assert_true(sent < 1000000);
	out = client_collect(fd, sent, &eof);
	assert_false(eof);
	assert_int_equal(count_lines(out), sent);
	free(out);
	client_send(fd, req + partial);
	out = client_collect(fd, 1, &eof);
	assert_int_equal(count_lines(out), 1);
	free(out);
	close(fd);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test_setup_teardown(test_framing, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_socket_file, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_oversized_request, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_parse_error_closes, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_peer_hangs_up, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_many_connections, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_non_reader_dropped, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_late_reader_served, setup, teardown),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
