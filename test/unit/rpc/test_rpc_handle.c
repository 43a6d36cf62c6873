/*
 * The JSON-RPC layer without a transport, against the real VDCM (lib/ctrl/
 * vdcm.c with real backends, engines and vhost-user sockets in a temporary
 * directory): envelope validation, error codes and messages, strict
 * parameters, every method's happy path and the VDCM's own refusals (the
 * real codes, e.g. -EEXIST for an overlapping window, reach the client), undo
 * when the state cannot be saved, and 30,000 mutated requests whose every
 * answer must be well-formed and must leave the configuration as it was.
 * What only a fake can do (injected failures, made-up statistics) is in
 * test_rpc_fake.c.
 */
#include <errno.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <ftw.h>

#include "rpc_test.h"
#include "vdcm_probe.h"
#include "siov_internal/state.h"
#include "siov_internal/log.h"
#include "siov_internal/loop.h"
#include "../../../lib/ctrl/rpc_internal.h"

static struct siov_loop *g_loop;
static struct siov_vdcm *g_vdcm;
static struct siov_rpc_server *g_srv;
static char g_buf[8192];
static char g_dir[64]; /* sockets and files of this test */
static char g_params[4][1024];
static unsigned g_pnext;

/* printf into one of a few rotating buffers: parameters that name g_dir. */
static const char *P(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static const char *P(const char *fmt, ...)
{
	char *p = g_params[g_pnext++ % SIOV_ARRAY_SIZE(g_params)];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(p, sizeof(g_params[0]), fmt, ap);
	va_end(ap);
	return p;
}

static int setup(void **state)
{
	struct siov_rpc_server_opts opts = {0};
	struct siov_vdcm_opts vo = {.engines = 1, .poll_us = 10};

	siov_log_set_level(SIOV_LOG_ERR);
	strcpy(g_dir, "/tmp/siov-rpc-XXXXXX");
	if (!mkdtemp(g_dir) || siov_loop_create(&g_loop) < 0)
		return -1;
	vo.loop = g_loop;
	if (siov_vdcm_create(&vo, &g_vdcm) < 0)
		return -1;
	opts.vdcm = g_vdcm;
	return siov_rpc_server_create(&opts, &g_srv);
}

#define FILE_SIZE (64ull << 20)

/* A sparse file of size bytes in g_dir. */
static void make_file(const char *name, uint64_t size)
{
	int fd = open(P("%s/%s", g_dir, name), O_CREAT | O_WRONLY | O_CLOEXEC, 0600);

	assert_true(fd >= 0);
	assert_int_equal(ftruncate(fd, (off_t)size), 0);
	close(fd);
}

static int rm_one(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
	return remove(path);
}

static int teardown(void **state)
{
	siov_rpc_server_destroy(g_srv);
	siov_vdcm_destroy(g_vdcm);
	siov_loop_destroy(g_loop);
	nftw(g_dir, rm_one, 8, FTW_DEPTH | FTW_PHYS);
	return 0;
}

static void test_parse_errors(void **state)
{
	static const char *const bad[] = {
	    "{",	"not json", "{\"jsonrpc\":\"2.0\"} trailing",
	    "{\"a\":}", "   ",	    "{\"method\":'x'}",
	    "[1,2,]",	"\x01\x02",
	};
	char deep[4096];

	for (size_t i = 0; i < SIOV_ARRAY_SIZE(bad); i++)
		rpc_expect_error(g_srv, bad[i], SIOV_RPC_PARSE_ERROR, "parse error");
	/* Nesting deeper than the tokener's limit is refused, not recursed into. */
	memset(deep, '[', sizeof(deep) - 1);
	deep[sizeof(deep) - 1] = '\0';
	rpc_expect_error(g_srv, deep, SIOV_RPC_PARSE_ERROR, "parse error");
	/* An embedded NUL ends nothing early: it is an error too. */
	{
		static const char nul[] =
		    "{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"daemon_info\"}\0x";
		char *text = siov_rpc_handle(g_srv, nul, sizeof(nul) - 1);
		assert_non_null(text);
		assert_non_null(strstr(text, "-32700"));
		free(text);
	}
	{
		char *text = siov_rpc_handle(g_srv, "", 0);
		assert_non_null(text);
		assert_non_null(strstr(text, "-32700"));
		free(text);
	}
}

static void test_invalid_requests(void **state)
{
	rpc_expect_error(g_srv, "42", SIOV_RPC_INVALID_REQUEST, "must be a JSON object");
	rpc_expect_error(g_srv, "null", SIOV_RPC_INVALID_REQUEST, NULL);
	rpc_expect_error(g_srv, "\"daemon_info\"", SIOV_RPC_INVALID_REQUEST, NULL);
	rpc_expect_error(g_srv, "[]", SIOV_RPC_INVALID_REQUEST, "empty batch");
	rpc_expect_error(g_srv, "{\"id\":1,\"method\":\"daemon_info\"}", SIOV_RPC_INVALID_REQUEST,
			 "'jsonrpc' must be \"2.0\"");
	rpc_expect_error(g_srv, "{\"jsonrpc\":\"1.0\",\"id\":1,\"method\":\"daemon_info\"}",
			 SIOV_RPC_INVALID_REQUEST, "'jsonrpc'");
	rpc_expect_error(g_srv, "{\"jsonrpc\":\"2.0\",\"id\":1}", SIOV_RPC_INVALID_REQUEST,
			 "'method' must be a string");
	rpc_expect_error(g_srv, "{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":5}",
			 SIOV_RPC_INVALID_REQUEST, "'method'");
	rpc_expect_error(g_srv, "{\"jsonrpc\":\"2.0\",\"id\":{},\"method\":\"daemon_info\"}",
			 SIOV_RPC_INVALID_REQUEST, "'id'");
	rpc_expect_error(g_srv, "{\"jsonrpc\":\"2.0\",\"id\":1.5,\"method\":\"daemon_info\"}",
			 SIOV_RPC_INVALID_REQUEST, "'id'");
	rpc_expect_error(g_srv,
			 "{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"daemon_info\",\"params\":3}",
			 SIOV_RPC_INVALID_REQUEST, "'params' must be an object");
	rpc_expect_error(
	    g_srv, "{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"vdev_list\",\"params\":[\"x\"]}",
	    SIOV_RPC_INVALID_PARAMS, "by name");
}

static void test_unknown_method_and_ids(void **state)
{
	struct json_object *resp;

	rpc_expect_error(g_srv, "{\"jsonrpc\":\"2.0\",\"id\":7,\"method\":\"nope\"}",
			 SIOV_RPC_METHOD_NOT_FOUND, "unknown method 'nope'");
	/* The id comes back as it was sent, string or number. */
	resp = rpc_call(g_srv, "{\"jsonrpc\":\"2.0\",\"id\":\"abc\",\"method\":\"nope\"}");
	assert_string_equal(json_object_get_string(member(resp, "id")), "abc");
	assert_string_equal(json_object_get_string(member(resp, "jsonrpc")), "2.0");
	json_object_put(resp);
	resp = rpc_call(g_srv, "{\"jsonrpc\":\"2.0\",\"id\":99,\"method\":\"daemon_info\"}");
	assert_int_equal(json_object_get_int(member(resp, "id")), 99);
	json_object_put(resp);
}

/* engine_stats: one entry per engine, in order; an engine that did nothing shows zeros. */
static void test_engine_stats(void **state)
{
	struct json_object *resp, *res, *e0;
	size_t i, n;

	resp = rpc_call(g_srv, "{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"engine_stats\"}");
	res = member(resp, "result");
	assert_true(json_object_is_type(res, json_type_array));
	n = json_object_array_length(res);
	assert_true(n >= 1);
	for (i = 0; i < n; i++)
		assert_int_equal(
		    json_object_get_int(member(json_object_array_get_idx(res, i), "engine")), i);
	e0 = json_object_array_get_idx(res, 0);
	assert_int_equal(json_object_get_int64(member(e0, "requests")), 0);
	assert_true(json_object_get_double(member(e0, "ring_to_submit_us")) == 0.0);
	assert_true(json_object_get_double(member(e0, "submit_to_cqe_us")) == 0.0);
	assert_true(json_object_get_double(member(e0, "cqe_to_used_us")) == 0.0);
	assert_int_equal(json_object_get_int64(member(e0, "untimed_cqes")), 0);
	/* The engine thread's own clock: an idle engine has run a little, never negative. */
	assert_true(json_object_get_double(member(e0, "cpu_s")) >= 0.0);
	assert_true(json_object_get_double(member(e0, "cpu_s")) < 60.0);
	json_object_put(resp);
	rpc_expect_error(
	    g_srv,
	    "{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"engine_stats\",\"params\":{\"x\":1}}",
	    SIOV_RPC_INVALID_PARAMS, NULL);
}

static void test_notification_and_batch(void **state)
{
	static const char note[] = "{\"jsonrpc\":\"2.0\",\"method\":\"backend_create\","
				   "\"params\":{\"name\":\"n0\",\"type\":\"null\",\"size\":4096}}";
	static const char batch[] = "[{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"daemon_info\"},"
				    "{\"jsonrpc\":\"2.0\",\"method\":\"daemon_info\"},"
				    "{\"jsonrpc\":\"2.0\",\"id\":3,\"method\":\"nope\"}, 5]";
	struct json_object *resp;

	/* A notification is carried out but not answered. */
	assert_null(siov_rpc_handle(g_srv, note, strlen(note)));
	assert_non_null(probe_backend(g_vdcm, "n0"));

	resp = rpc_call(g_srv, batch);
	assert_true(json_object_is_type(resp, json_type_array));
	assert_int_equal(json_object_array_length(resp), 3);
	assert_int_equal(json_object_get_int(member(json_object_array_get_idx(resp, 0), "id")), 1);
	rpc_check_error(json_object_get(json_object_array_get_idx(resp, 1)),
			SIOV_RPC_METHOD_NOT_FOUND, NULL);
	rpc_check_error(json_object_get(json_object_array_get_idx(resp, 2)),
			SIOV_RPC_INVALID_REQUEST, NULL);
	json_object_put(resp);
}

static void test_params_strict(void **state)
{
	BAD_PARAMS("backend_create", "{\"type\":\"null\",\"size\":4096}",
		   "missing parameter 'name'");
	BAD_PARAMS("backend_create", "{\"name\":\"b\",\"type\":\"ram\",\"sise\":4096}",
		   "unknown parameter 'sise'");
	BAD_PARAMS("backend_create", "{\"name\":\"b\",\"type\":\"ram\",\"size\":true}",
		   "parameter 'size' must be an integer");
	BAD_PARAMS("backend_create", "{\"name\":\"b\",\"type\":\"ram\",\"size\":4096.5}",
		   "parameter 'size' must be an integer");
	BAD_PARAMS("backend_create",
		   "{\"name\":\"b\",\"type\":\"ram\",\"size\":4096,"
		   "\"readonly\":\"yes\"}",
		   "parameter 'readonly' must be a boolean");
	BAD_PARAMS("backend_create", "{\"name\":5,\"type\":\"ram\",\"size\":4096}",
		   "parameter 'name' must be a string");
	BAD_PARAMS("backend_create", "{\"name\":\"b\",\"type\":\"disk\",\"size\":4096}",
		   "parameter 'type' must be one of");
	BAD_PARAMS("backend_create", "{\"name\":\"b\",\"type\":\"ram\"}", "'size' is required");
	BAD_PARAMS("backend_create", "{\"name\":\"b\",\"type\":\"ram\",\"size\":0}",
		   "greater than 0");
	BAD_PARAMS("backend_create", "{\"name\":\"b\",\"type\":\"file\"}",
		   "missing parameter 'path'");
	BAD_PARAMS("backend_create",
		   "{\"name\":\"b\",\"type\":\"ram\",\"size\":4096,"
		   "\"path\":\"/tmp/x\"}",
		   "'path' is not valid for type 'ram'");
	BAD_PARAMS("backend_create", "{\"name\":\"b\",\"type\":\"file\",\"path\":\"rel/x\"}",
		   "must be an absolute path");
	BAD_PARAMS("backend_create", "{\"name\":\"b\",\"type\":\"file\",\"path\":\"/a\\u0000b\"}",
		   "NUL");
	BAD_PARAMS("daemon_info", "{\"verbose\":true}", "unknown parameter 'verbose'");
	BAD_PARAMS("backend_list", "{\"name\":\"x\"}", "unknown parameter 'name'");
	BAD_PARAMS("backend_delete", "{}", "missing parameter 'name'");
	BAD_PARAMS("vdev_delete", NULL, "missing parameter 'name'");
	BAD_PARAMS("vdev_create", "{\"name\":\"v\",\"backend\":\"b\"}",
		   "missing parameter 'socket'");
	BAD_PARAMS("vdev_create",
		   "{\"name\":\"v\",\"backend\":\"b\",\"socket\":\"/s\","
		   "\"type\":\"tape\"}",
		   "parameter 'type' must be \"blk\" or \"net\"");
	/* A net VDEV joins a network; the window parameters are blk's. */
	BAD_PARAMS("vdev_create",
		   "{\"name\":\"v\",\"backend\":\"b\",\"socket\":\"/s\","
		   "\"type\":\"net\"}",
		   "parameter 'backend' is for blk VDEVs");
	BAD_PARAMS("vdev_create", "{\"name\":\"v\",\"socket\":\"/s\",\"type\":\"net\"}",
		   "missing required parameter 'network'");
	BAD_PARAMS("vdev_create", "{\"name\":\"v\",\"socket\":\"/s\",\"network\":\"n\"}",
		   "parameter 'network' is for net VDEVs");
	BAD_PARAMS("vdev_create",
		   "{\"name\":\"v\",\"socket\":\"/s\",\"type\":\"net\",\"network\":\"n\","
		   "\"mac\":\"01:00:00:00:00:01\"}",
		   "unicast");
	BAD_PARAMS("vdev_create",
		   "{\"name\":\"v\",\"socket\":\"/s\",\"type\":\"net\",\"network\":\"n\","
		   "\"mac\":\" 2:00:00:00:00:01\"}",
		   "MAC address like");
	BAD_PARAMS("vdev_create",
		   "{\"name\":\"v\",\"backend\":\"b\",\"socket\":\"/s\","
		   "\"queues\":0}",
		   "parameter 'queues' must be between 1 and 64");
	BAD_PARAMS("vdev_create",
		   "{\"name\":\"v\",\"backend\":\"b\",\"socket\":\"/s\","
		   "\"queues\":65}",
		   "between 1 and 64");
	BAD_PARAMS("vdev_create",
		   "{\"name\":\"v\",\"backend\":\"b\",\"socket\":\"/s\","
		   "\"queues\":\"4\"}",
		   "parameter 'queues' must be an integer");
	BAD_PARAMS("vdev_create",
		   "{\"name\":\"v\",\"backend\":\"b\",\"socket\":\"/s\","
		   "\"offset\":100}",
		   "'offset' must be a multiple of 512");
	/* Nothing was created by any of these. */
	assert_int_equal(probe_backends(g_vdcm), 0);
	assert_int_equal(probe_vdevs(g_vdcm), 0);
}

static void test_parse_bytes(void **state)
{
	static const struct {
		const char *s;
		int rc;
		uint64_t val;
	} cases[] = {
	    {"0", 0, 0},
	    {"4096", 0, 4096},
	    {"4K", 0, 4096},
	    {"4k", 0, 4096},
	    {"4KiB", 0, 4096},
	    {"4KB", 0, 4096},
	    {"512M", 0, 512ull << 20},
	    {"1G", 0, 1ull << 30},
	    {"3T", 0, 3ull << 40},
	    {"7E", 0, 7ull << 60},
	    {"9223372036854775807", 0, INT64_MAX},
	    {"9223372036854775808", -ERANGE, 0},
	    {"99999999999999999999999", -ERANGE, 0},
	    {"8E", -ERANGE, 0},
	    {"8388608T", -ERANGE, 0},
	    {"", -EINVAL, 0},
	    {"G", -EINVAL, 0},
	    {"-1", -EINVAL, 0},
	    {"+1", -EINVAL, 0},
	    {"1.5G", -EINVAL, 0},
	    {"1G ", -EINVAL, 0},
	    {" 1G", -EINVAL, 0},
	    {"1X", -EINVAL, 0},
	    {"1GG", -EINVAL, 0},
	    {"1 ", -EINVAL, 0},
	    {"0x10", -EINVAL, 0},
	};

	for (size_t i = 0; i < SIOV_ARRAY_SIZE(cases); i++) {
		uint64_t v = 0;
		int rc = siov_parse_bytes(cases[i].s, &v);
		if (rc != cases[i].rc || (rc == 0 && v != cases[i].val))
			fail_msg("'%s': rc %d val %llu", cases[i].s, rc, (unsigned long long)v);
	}
}

static uint64_t backend_size(const char *name)
{
	const struct siov_backend_conf *c = probe_backend(g_vdcm, name);

	assert_non_null(c);
	return c->size;
}

static void test_size_params(void **state)
{
	OK("backend_create", "{\"name\":\"a\",\"type\":\"ram\",\"size\":\"1G\"}");
	OK("backend_create", "{\"name\":\"b\",\"type\":\"ram\",\"size\":\"512M\"}");
	OK("backend_create", "{\"name\":\"c\",\"type\":\"ram\",\"size\":\"4K\"}");
	OK("backend_create", "{\"name\":\"d\",\"type\":\"ram\",\"size\":8192}");
	assert_int_equal(backend_size("a"), 1ull << 30);
	assert_int_equal(backend_size("b"), 512ull << 20);
	assert_int_equal(backend_size("c"), 4096);
	assert_int_equal(backend_size("d"), 8192);
	BAD_PARAMS("backend_create", "{\"name\":\"e\",\"type\":\"ram\",\"size\":-4096}",
		   "must not be negative");
	BAD_PARAMS("backend_create", "{\"name\":\"e\",\"type\":\"ram\",\"size\":\"-4096\"}",
		   "parameter 'size' must be a number of bytes");
	BAD_PARAMS("backend_create", "{\"name\":\"e\",\"type\":\"ram\",\"size\":\"lots\"}",
		   "parameter 'size' must be a number of bytes");
	BAD_PARAMS("backend_create", "{\"name\":\"e\",\"type\":\"ram\",\"size\":\"16E\"}",
		   "too large");
	BAD_PARAMS("backend_create",
		   "{\"name\":\"e\",\"type\":\"ram\",\"size\":9223372036854775808}", "too large");
	BAD_PARAMS("backend_create",
		   "{\"name\":\"e\",\"type\":\"ram\",\"size\":18446744073709551616}", "too large");
	BAD_PARAMS("backend_create",
		   "{\"name\":\"e\",\"type\":\"ram\",\"size\":99999999999999999999999}",
		   "too large");
	BAD_PARAMS("backend_create", "{\"name\":\"e\",\"type\":\"ram\",\"size\":1e30}",
		   "must be an integer");
	BAD_PARAMS("backend_create", "{\"name\":\"e\",\"type\":\"ram\",\"size\":\"1G\\u0000\"}",
		   "must be a number of bytes");
	OK("vdev_create", P("{\"name\":\"v\",\"backend\":\"a\",\"offset\":\"512M\","
			    "\"size\":\"256M\",\"socket\":\"%s/v.sock\"}",
			    g_dir));
	assert_int_equal(probe_vdev(g_vdcm, "v")->offset, 512ull << 20);
	assert_int_equal(probe_vdev(g_vdcm, "v")->size, 256ull << 20);
}

static void test_names(void **state)
{
	static const char *const bad[] = {
	    "a/b",
	    "../etc",
	    "/abs",
	    ".hidden",
	    "",
	    "sp ace",
	    "t\\u00e9",
	    "new\\nline",
	    "0123456789012345678901234567890123456789012345678901234567890123",
	};
	char params[512];

	for (size_t i = 0; i < SIOV_ARRAY_SIZE(bad); i++) {
		snprintf(params, sizeof(params), "{\"name\":\"%s\",\"type\":\"null\",\"size\":512}",
			 bad[i]);
		BAD_PARAMS("backend_create", params, "parameter 'name' must be 1 to 63 characters");
	}
	BAD_PARAMS("vdev_create", "{\"name\":\"v\",\"backend\":\"x/y\",\"socket\":\"/s\"}",
		   "parameter 'backend' must be 1 to 63");
	BAD_PARAMS("vdev_list", "{\"name\":\"a/b\"}", "parameter 'name'");
	OK("backend_create", "{\"name\":\"ok-Name_1.x\",\"type\":\"null\",\"size\":512}");
	OK("backend_create", "{\"name\":\"012345678901234567890123456789012345678901234567890123"
			     "456789012\",\"type\":\"null\",\"size\":512}");
	assert_int_equal(probe_backends(g_vdcm), 2);
}

static void test_socket_path(void **state)
{
	char params[512], path[200];

	OK("backend_create", "{\"name\":\"b\",\"type\":\"ram\",\"size\":\"1M\"}");
	BAD_PARAMS("vdev_create", "{\"name\":\"v\",\"backend\":\"b\",\"socket\":\"v.sock\"}",
		   "parameter 'socket' must be an absolute path");
	/* 108 bytes: one more than sun_path can hold with its NUL (inside g_dir). */
	memset(path, 'a', sizeof(path));
	memcpy(path, g_dir, strlen(g_dir));
	path[strlen(g_dir)] = '/';
	path[108] = '\0';
	snprintf(params, sizeof(params), "{\"name\":\"v\",\"backend\":\"b\",\"socket\":\"%s\"}",
		 path);
	BAD_PARAMS("vdev_create", params, "limited to 107 bytes");
	path[107] = '\0';
	snprintf(params, sizeof(params), "{\"name\":\"v\",\"backend\":\"b\",\"socket\":\"%s\"}",
		 path);
	OK("vdev_create", params);
	/* The real VDCM made that socket. */
	assert_int_equal(access(path, F_OK), 0);
}

static void test_backend_methods(void **state)
{
	struct json_object *res, *b;

	OK("backend_create", "{\"name\":\"n\",\"type\":\"null\",\"size\":\"1G\"}");
	OK("backend_create",
	   "{\"name\":\"r\",\"type\":\"ram\",\"size\":\"64M\",\"readonly\":true}");
	make_file("f.img", FILE_SIZE);
	OK("backend_create", P("{\"name\":\"f\",\"type\":\"file\",\"path\":\"%s/f.img\"}", g_dir));
	ERR("backend_create", "{\"name\":\"n\",\"type\":\"null\",\"size\":512}", -EEXIST,
	    "backend 'n' already exists");

	res = rpc_expect_result(g_srv, REQ("backend_list", NULL));
	assert_int_equal(json_object_array_length(res), 3);
	b = json_object_array_get_idx(res, 0);
	assert_string_equal(json_object_get_string(member(b, "name")), "n");
	assert_string_equal(json_object_get_string(member(b, "type")), "null");
	assert_true(json_object_is_type(member(b, "path"), json_type_null));
	assert_int_equal(json_object_get_int64(member(b, "size")), 1ll << 30);
	assert_int_equal(json_object_get_int(member(b, "block_size")), 512);
	assert_false(json_object_get_boolean(member(b, "direct")));
	assert_false(json_object_get_boolean(member(b, "readonly")));
	assert_int_equal(json_object_get_int(member(b, "vdevs")), 0);
	b = json_object_array_get_idx(res, 1);
	assert_true(json_object_get_boolean(member(b, "readonly")));
	b = json_object_array_get_idx(res, 2);
	assert_string_equal(json_object_get_string(member(b, "path")), P("%s/f.img", g_dir));
	assert_int_equal(json_object_get_int64(member(b, "size")), FILE_SIZE);
	json_object_put(res);

	OK("backend_delete", "{\"name\":\"r\"}");
	ERR("backend_delete", "{\"name\":\"r\"}", -ENOENT, "no backend named 'r'");
	assert_int_equal(probe_backends(g_vdcm), 2);
}

static void test_vdev_methods(void **state)
{
	const struct siov_vdev_conf *c;
	struct json_object *res, *v;

	OK("backend_create", "{\"name\":\"b0\",\"type\":\"ram\",\"size\":\"1G\"}");
	OK("vdev_create", P("{\"name\":\"v0\",\"backend\":\"b0\",\"size\":\"512M\","
			    "\"socket\":\"%s/v0.sock\"}",
			    g_dir));
	c = probe_vdev(g_vdcm, "v0");
	assert_non_null(c);
	assert_int_equal(c->type, SIOV_VDEV_BLK);
	assert_int_equal(c->offset, 0);
	assert_int_equal(c->queues, 0); /* unset: the VDEV offers what the front end starts */
	assert_false(c->readonly);
	assert_false(c->allow_overlap);
	/* The real VDCM's answer to an overlap, not a fake's. */
	ERR("vdev_create",
	    P("{\"name\":\"v1\",\"backend\":\"b0\",\"offset\":\"256M\","
	      "\"size\":\"512M\",\"socket\":\"%s/v1.sock\"}",
	      g_dir),
	    -EEXIST, "overlaps VDEV 'v0'");
	/* Refused by the VDCM, not by the parameter code: a socket already in use. */
	ERR("vdev_create",
	    P("{\"name\":\"v1\",\"backend\":\"b0\",\"offset\":\"512M\","
	      "\"socket\":\"%s/v0.sock\"}",
	      g_dir),
	    -EADDRINUSE, "in use by VDEV 'v0'");
	ERR("vdev_create",
	    P("{\"name\":\"v0\",\"backend\":\"b0\",\"offset\":\"512M\","
	      "\"socket\":\"%s/v9.sock\"}",
	      g_dir),
	    -EEXIST, "VDEV 'v0' already exists");
	OK("vdev_create",
	   P("{\"name\":\"v1\",\"type\":\"blk\",\"backend\":\"b0\",\"offset\":\"256M\","
	     "\"size\":\"512M\",\"queues\":4,\"readonly\":true,\"allow_overlap\":true,"
	     "\"socket\":\"%s/v1.sock\"}",
	     g_dir));
	ERR("vdev_create",
	    P("{\"name\":\"v2\",\"backend\":\"b0\",\"offset\":\"1G\","
	      "\"socket\":\"%s/v2.sock\"}",
	      g_dir),
	    -ERANGE, "past the end");
	ERR("vdev_create",
	    P("{\"name\":\"v2\",\"backend\":\"zz\",\"socket\":\"%s/v2.sock\"}", g_dir), -ENOENT,
	    "no backend named 'zz'");
	ERR("backend_delete", "{\"name\":\"b0\"}", -EBUSY, "used by");

	res = rpc_expect_result(g_srv, REQ("vdev_list", NULL));
	assert_int_equal(json_object_array_length(res), 2);
	v = json_object_array_get_idx(res, 1);
	assert_string_equal(json_object_get_string(member(v, "name")), "v1");
	assert_string_equal(json_object_get_string(member(v, "type")), "blk");
	assert_string_equal(json_object_get_string(member(v, "backend")), "b0");
	assert_int_equal(json_object_get_int64(member(v, "offset")), 256ll << 20);
	assert_int_equal(json_object_get_int64(member(v, "size")), 512ll << 20);
	assert_int_equal(json_object_get_int(member(v, "queues")), 4);
	assert_true(json_object_get_boolean(member(v, "readonly")));
	assert_string_equal(json_object_get_string(member(v, "socket")), P("%s/v1.sock", g_dir));
	assert_string_equal(json_object_get_string(member(v, "state")), "listening");
	assert_false(json_object_get_boolean(member(v, "connected")));
	json_object_put(res);

	res = rpc_expect_result(g_srv, REQ("vdev_list", "{\"name\":\"v0\"}"));
	assert_int_equal(json_object_array_length(res), 1);
	json_object_put(res);
	ERR("vdev_list", "{\"name\":\"nope\"}", -ENOENT, "no VDEV named 'nope'");

	res = rpc_expect_result(g_srv, REQ("backend_list", NULL));
	assert_int_equal(json_object_get_int(member(json_object_array_get_idx(res, 0), "vdevs")),
			 2);
	json_object_put(res);

	OK("vdev_delete", "{\"name\":\"v0\"}");
	ERR("vdev_delete", "{\"name\":\"v0\"}", -ENOENT, "no VDEV named 'v0'");
	assert_int_equal(probe_vdevs(g_vdcm), 1);
}

/* Statistics of a real VDEV nobody has connected to yet. */
static void test_vdev_stats(void **state)
{
	struct json_object *res, *v, *qs;

	OK("backend_create", "{\"name\":\"b0\",\"type\":\"null\",\"size\":\"1G\"}");
	OK("vdev_create", P("{\"name\":\"v0\",\"backend\":\"b0\",\"queues\":3,"
			    "\"socket\":\"%s/v0.sock\"}",
			    g_dir));
	res = rpc_expect_result(g_srv, REQ("vdev_stats", "{\"name\":\"v0\"}"));
	assert_int_equal(json_object_array_length(res), 1);
	v = json_object_array_get_idx(res, 0);
	assert_string_equal(json_object_get_string(member(v, "name")), "v0");
	assert_int_equal(json_object_get_int64(member(v, "requests")), 0);
	assert_int_equal(json_object_get_int64(member(v, "inflight")), 0);
	assert_string_equal(json_object_get_string(member(v, "state")), "listening");
	assert_true(json_object_is_type(member(v, "broken_reason"), json_type_null));
	/* Queues cost memory only once a front end names them: none yet. */
	qs = member(v, "queues");
	assert_int_equal(json_object_array_length(qs), 0);
	json_object_put(res);
	ERR("vdev_stats", "{\"name\":\"zz\"}", -ENOENT, "no VDEV named 'zz'");
}

static void test_daemon_info(void **state)
{
	struct json_object *res;

	OK("backend_create", "{\"name\":\"b0\",\"type\":\"null\",\"size\":\"1G\"}");
	res = rpc_expect_result(g_srv, REQ("daemon_info", NULL));
	assert_int_equal(json_object_get_int(member(res, "pid")), getpid());
	assert_int_equal(json_object_get_int(member(res, "engines")), 1);
	assert_int_equal(json_object_get_int(member(res, "backends")), 1);
	assert_int_equal(json_object_get_int(member(res, "vdevs")), 0);
	assert_true(json_object_get_double(member(res, "uptime_s")) >= 0);
	json_object_put(res);
}

/*
 * A disk that fails: the change in flight is answered "done, but not saved",
 * later changes are refused and taken back, a deletion says it was not saved.
 */
static void test_save_failure_undoes(void **state)
{
	char dir[] = "/tmp/siov-rpc-XXXXXX";

	assert_non_null(mkdtemp(dir));
	rpc_use_state(&g_srv, g_vdcm, dir);
	siov_state_inject_write_error(g_srv->state, -EIO);
	ERR("backend_create", "{\"name\":\"b\",\"type\":\"null\",\"size\":\"1G\"}", -EIO,
	    "done, but the state could not be saved");
	assert_int_equal(probe_backends(g_vdcm), 1);
	ERR("vdev_create", P("{\"name\":\"v\",\"backend\":\"b\",\"socket\":\"%s/v.sock\"}", g_dir),
	    -EIO, "VDEV 'v' not created: the state could not be saved");
	assert_int_equal(probe_vdevs(g_vdcm), 0);
	ERR("backend_delete", "{\"name\":\"b\"}", -EIO, "backend 'b' deleted, but");
	assert_int_equal(probe_backends(g_vdcm), 0);
	rpc_use_state(&g_srv, g_vdcm, NULL);
	rpc_remove_dir(dir);
}

/* ---- hostile text: every answer well-formed, refusals change nothing ---- */

/* The configuration as the RPC layer reports it, as one text. */
static char *config_snapshot(void)
{
	static const char *const reqs[] = {
	    "{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"backend_list\"}",
	    "{\"jsonrpc\":\"2.0\",\"id\":2,\"method\":\"vdev_list\"}",
	    "{\"jsonrpc\":\"2.0\",\"id\":3,\"method\":\"group_list\"}",
	};
	size_t len = 0, i;
	char *all = NULL;

	for (i = 0; i < SIOV_ARRAY_SIZE(reqs); i++) {
		char *t = siov_rpc_handle(g_srv, reqs[i], strlen(reqs[i]));
		size_t n;

		assert_non_null(t);
		assert_null(strstr(t, "\"error\""));
		n = strlen(t);
		all = realloc(all, len + n + 1);
		assert_non_null(all);
		memcpy(all + len, t, n + 1);
		len += n;
		free(t);
	}
	return all;
}

/* The request as a strict JSON-RPC server reads it, or NULL if it is not JSON. */
static struct json_object *parse_request(const char *text, size_t len)
{
	struct json_tokener *tok = json_tokener_new_ex(64);
	struct json_object *v;
	size_t end;

	assert_non_null(tok);
	json_tokener_set_flags(tok, JSON_TOKENER_STRICT | JSON_TOKENER_ALLOW_TRAILING_CHARS);
	v = json_tokener_parse_ex(tok, text, (int)len);
	end = json_tokener_get_parse_end(tok);
	if (!v && json_tokener_get_error(tok) == json_tokener_continue) {
		/* The text is whole: a NUL ends a bare number. */
		v = json_tokener_parse_ex(tok, "", 1);
		end = len;
	}
	json_tokener_free(tok);
	/* Bytes after the value other than white space make it a parse error. */
	while (v && end < len && text[end] && strchr(" \t\r\n", text[end]))
		end++;
	if (v && end < len) {
		json_object_put(v);
		v = NULL;
	}
	return v;
}

/* JSON-RPC allows a string, an integer or null as id (siov refuses fractions). */
static bool id_valid(struct json_object *id)
{
	return !id || json_object_is_type(id, json_type_string) ||
	       json_object_is_type(id, json_type_int);
}

static bool same_id(struct json_object *a, struct json_object *b)
{
	if (!a || !b)
		return !a && !b;
	return json_object_get_type(a) == json_object_get_type(b) &&
	       strcmp(json_object_get_string(a), json_object_get_string(b)) == 0;
}

/*
 * One response object is well-formed: "jsonrpc":"2.0", an id, and exactly one
 * of result / error{code, message}.  Returns its error code, 0 for a result.
 */
static int check_response(struct json_object *r, const char *req)
{
	struct json_object *v, *e, *c, *m;
	bool has_result, has_error;
	int code;

	if (!json_object_is_type(r, json_type_object))
		fail_msg("answer to '%s' is not an object", req);
	if (!json_object_object_get_ex(r, "jsonrpc", &v) ||
	    !json_object_is_type(v, json_type_string) ||
	    strcmp(json_object_get_string(v), "2.0") != 0)
		fail_msg("answer to '%s' lacks \"jsonrpc\":\"2.0\"", req);
	if (!json_object_object_get_ex(r, "id", &v) || !id_valid(v))
		fail_msg("answer to '%s' has no valid id", req);
	has_result = json_object_object_get_ex(r, "result", NULL);
	has_error = json_object_object_get_ex(r, "error", &e);
	if (has_result == has_error)
		fail_msg("answer to '%s' must have exactly one of result and error", req);
	if (has_result)
		return 0;
	if (!json_object_object_get_ex(e, "code", &c) || !json_object_is_type(c, json_type_int) ||
	    !json_object_object_get_ex(e, "message", &m) ||
	    !json_object_is_type(m, json_type_string) || !json_object_get_string_len(m))
		fail_msg("error answer to '%s' lacks a code or a message", req);
	code = json_object_get_int(c);
	/* JSON-RPC's own codes, or -errno from the VDCM. */
	if (!(code >= -32700 && code <= -32600) && !(code < 0 && code > -4096))
		fail_msg("answer to '%s': error code %d is neither JSON-RPC's nor -errno", req,
			 code);
	return code;
}

/* The id a single request must be answered with: its own if valid, else null. */
static struct json_object *expected_id(struct json_object *req)
{
	struct json_object *id = NULL;

	if (!json_object_is_type(req, json_type_object) ||
	    !json_object_object_get_ex(req, "id", &id) || !id_valid(id))
		return NULL;
	return id;
}

static unsigned g_refused_after_parse; /* refusals that were not parse errors */

/* Checks one answer against its request; true if every answer in it is an error. */
static bool check_answer(const char *text, size_t len, const char *answer)
{
	struct json_object *req = parse_request(text, len), *resp, *id = NULL;
	bool refused = true;
	size_t i;

	if (!answer) {
		/* Silence is the answer to a notification only. */
		if (!req || (json_object_is_type(req, json_type_object) &&
			     json_object_object_get_ex(req, "id", NULL)))
			fail_msg("no answer to '%.*s'", (int)len, text);
		json_object_put(req);
		return false;
	}
	resp = json_tokener_parse(answer);
	if (!resp)
		fail_msg("answer '%s' is not JSON", answer);
	if (json_object_is_type(resp, json_type_array)) {
		if (!req || !json_object_is_type(req, json_type_array) ||
		    json_object_array_length(resp) > json_object_array_length(req))
			fail_msg("batch answer '%s' to a request that is no such batch", answer);
		for (i = 0; i < json_object_array_length(resp); i++)
			refused &= check_response(json_object_array_get_idx(resp, i), answer) != 0;
	} else {
		int code = check_response(resp, answer);

		refused = code != 0;
		g_refused_after_parse += refused && code != SIOV_RPC_PARSE_ERROR;
		json_object_object_get_ex(resp, "id", &id);
		if (!req && code != SIOV_RPC_PARSE_ERROR)
			fail_msg("'%.*s' is not JSON but got %s", (int)len, text, answer);
		if (req && !json_object_is_type(req, json_type_array) &&
		    !same_id(id, expected_id(req)))
			fail_msg("answer %s to '%.*s' carries the wrong id", answer, (int)len,
				 text);
		if (json_object_is_type(req, json_type_array) && (!refused || id))
			fail_msg("a batch got the single answer %s", answer);
	}
	json_object_put(resp);
	json_object_put(req);
	return refused;
}

/* What a user does after the storm must still work, and leave no trace once undone. */
static void known_good_still_works(void)
{
	char *before = config_snapshot(), *after;

	OK("backend_create", "{\"name\":\"good-b\",\"type\":\"ram\",\"size\":\"1M\"}");
	OK("vdev_create",
	   P("{\"name\":\"good-v\",\"backend\":\"good-b\",\"socket\":\"%s/good.sock\"}", g_dir));
	assert_non_null(probe_vdev(g_vdcm, "good-v"));
	assert_int_equal(access(P("%s/good.sock", g_dir), F_OK), 0);
	OK("vdev_delete", "{\"name\":\"good-v\"}");
	OK("backend_delete", "{\"name\":\"good-b\"}");
	after = config_snapshot();
	assert_string_equal(before, after);
	free(before);
	free(after);
}

/*
 * 30,000 requests made from valid ones by random damage (bytes replaced from
 * a JSON-ish alphabet or at random, truncation), against the real VDCM.
 * Every answer must be well-formed JSON-RPC with the request's id (or a parse
 * error with a null id), silence only for a notification, and a request that
 * was refused must leave the configuration exactly as it was.  Afterwards a
 * known-good sequence of calls still works.
 */
static void test_hostile_text(void **state)
{
	char seeds[3][512];
	static const char alphabet[] = "{}[]\":,0123456789-+.eE truefalsnul\\/u\x00\xff";
	char buf[512], *snap;
	unsigned refused = 0, answered = 0;

	snprintf(seeds[0], sizeof(seeds[0]), "%s",
		 "{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"backend_create\",\"params\":{\"name\":"
		 "\"b\",\"type\":\"ram\",\"size\":\"1M\"}}");
	snprintf(
	    seeds[1], sizeof(seeds[1]),
	    "{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"vdev_create\",\"params\":{\"name\":\"v\","
	    "\"backend\":\"b\",\"offset\":0,\"size\":512,\"queues\":2,\"socket\":\"%s/s\"}}",
	    g_dir);
	snprintf(seeds[2], sizeof(seeds[2]), "%s",
		 "[{\"jsonrpc\":\"2.0\",\"id\":\"x\",\"method\":\"vdev_stats\"},{}]");
	/* Seeded with what the seeds create, so that many damaged calls hit duplicates. */
	OK("backend_create", "{\"name\":\"b\",\"type\":\"ram\",\"size\":\"1M\"}");
	snap = config_snapshot();
	srand(1234);
	for (int iter = 0; iter < 30000; iter++) {
		const char *seed = seeds[iter % SIOV_ARRAY_SIZE(seeds)];
		size_t len = strlen(seed);
		char *answer;

		memcpy(buf, seed, len);
		for (int k = rand() % 4; k >= 0; k--) {
			size_t at = (size_t)rand() % len;
			switch (rand() % 3) {
			case 0: /* replace */
				buf[at] = alphabet[rand() % (sizeof(alphabet) - 1)];
				break;
			case 1: /* truncate */
				len = at + 1;
				break;
			default: /* random byte */
				buf[at] = (char)rand();
				break;
			}
		}
		answer = siov_rpc_handle(g_srv, buf, len);
		answered += answer != NULL;
		if (check_answer(buf, len, answer)) {
			char *now = config_snapshot();

			refused++;
			if (strcmp(now, snap) != 0)
				fail_msg("refused request '%.*s' (%s) changed the configuration",
					 (int)len, buf, answer);
			free(now);
		} else {
			/* Accepted (or silent): what it did is the new reference. */
			free(snap);
			snap = config_snapshot();
		}
		free(answer);
	}
	free(snap);
	/* The damage must mostly have been refused, and not only by the parser. */
	print_message("hostile text: %u answered, %u refused (%u past the parser)\n", answered,
		      refused, g_refused_after_parse);
	assert_true(refused > 20000);
	assert_true(g_refused_after_parse > 1000);
	known_good_still_works();
	json_object_put(rpc_expect_result(g_srv, REQ("daemon_info", NULL)));
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test_setup_teardown(test_parse_errors, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_invalid_requests, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_unknown_method_and_ids, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_notification_and_batch, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_engine_stats, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_params_strict, setup, teardown),
	    cmocka_unit_test(test_parse_bytes),
	    cmocka_unit_test_setup_teardown(test_size_params, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_names, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_socket_path, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_backend_methods, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_vdev_methods, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_vdev_stats, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_daemon_info, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_save_failure_undoes, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_hostile_text, setup, teardown),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
