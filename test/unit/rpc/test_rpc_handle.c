/*
 * The JSON-RPC layer without a transport: envelope validation, error codes and
 * messages, strict parameters, every method's happy path against the fake
 * VDCM, undo when the state cannot be saved, and a short random-input run to
 * show that no request text can crash siov_rpc_handle().
 */
#include <errno.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include "rpc_test.h"
#include "siov_internal/state.h"
#include "fake_vdcm.h"
#include "../../../lib/ctrl/rpc_internal.h"

static struct siov_vdcm *g_vdcm;
static struct siov_rpc_server *g_srv;
static char g_buf[8192];

#define REQ(method, params)		rpc_req(g_buf, sizeof(g_buf), method, params)
#define OK(method, params)		rpc_expect_true(g_srv, REQ(method, params))
#define ERR(method, params, code, msg)	rpc_expect_error(g_srv, REQ(method, params), code, msg)
#define BAD_PARAMS(method, params, msg) ERR(method, params, SIOV_RPC_INVALID_PARAMS, msg)

static int setup(void **state)
{
	struct siov_rpc_server_opts opts = {0};

	if (siov_vdcm_create(NULL, &g_vdcm) < 0)
		return -1;
	opts.vdcm = g_vdcm;
	return siov_rpc_server_create(&opts, &g_srv);
}

static int teardown(void **state)
{
	siov_rpc_server_destroy(g_srv);
	siov_vdcm_destroy(g_vdcm);
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
	assert_non_null(fake_vdcm_backend(g_vdcm, "n0"));

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
		   "\"type\":\"net\"}",
		   "parameter 'type' must be \"blk\"");
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
	assert_int_equal(fake_vdcm_backends(g_vdcm), 0);
	assert_int_equal(fake_vdcm_vdevs(g_vdcm), 0);
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
	const struct siov_backend_conf *c = fake_vdcm_backend(g_vdcm, name);

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
	OK("vdev_create", "{\"name\":\"v\",\"backend\":\"a\",\"offset\":\"512M\",\"size\":\"256M\","
			  "\"socket\":\"/tmp/v.sock\"}");
	assert_int_equal(fake_vdcm_vdev(g_vdcm, "v")->offset, 512ull << 20);
	assert_int_equal(fake_vdcm_vdev(g_vdcm, "v")->size, 256ull << 20);
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
	assert_int_equal(fake_vdcm_backends(g_vdcm), 2);
}

static void test_socket_path(void **state)
{
	char params[512], path[200];

	OK("backend_create", "{\"name\":\"b\",\"type\":\"ram\",\"size\":\"1M\"}");
	BAD_PARAMS("vdev_create", "{\"name\":\"v\",\"backend\":\"b\",\"socket\":\"v.sock\"}",
		   "parameter 'socket' must be an absolute path");
	/* 108 bytes: one more than sun_path can hold with its NUL. */
	memset(path, 'a', sizeof(path));
	path[0] = '/';
	path[108] = '\0';
	snprintf(params, sizeof(params), "{\"name\":\"v\",\"backend\":\"b\",\"socket\":\"%s\"}",
		 path);
	BAD_PARAMS("vdev_create", params, "limited to 107 bytes");
	path[107] = '\0';
	snprintf(params, sizeof(params), "{\"name\":\"v\",\"backend\":\"b\",\"socket\":\"%s\"}",
		 path);
	OK("vdev_create", params);
}

static void test_backend_methods(void **state)
{
	struct json_object *res, *b;

	OK("backend_create", "{\"name\":\"n\",\"type\":\"null\",\"size\":\"1G\"}");
	OK("backend_create",
	   "{\"name\":\"r\",\"type\":\"ram\",\"size\":\"64M\",\"readonly\":true}");
	OK("backend_create", "{\"name\":\"f\",\"type\":\"file\",\"path\":\"/tmp/siov-f.img\"}");
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
	assert_string_equal(json_object_get_string(member(b, "path")), "/tmp/siov-f.img");
	assert_int_equal(json_object_get_int64(member(b, "size")), FAKE_FILE_SIZE);
	json_object_put(res);

	OK("backend_delete", "{\"name\":\"r\"}");
	ERR("backend_delete", "{\"name\":\"r\"}", -ENOENT, "no backend named 'r'");
	assert_int_equal(fake_vdcm_backends(g_vdcm), 2);
}

static void test_vdev_methods(void **state)
{
	const struct siov_vdev_conf *c;
	struct json_object *res, *v;

	OK("backend_create", "{\"name\":\"b0\",\"type\":\"ram\",\"size\":\"1G\"}");
	OK("vdev_create", "{\"name\":\"v0\",\"backend\":\"b0\",\"size\":\"512M\","
			  "\"socket\":\"/tmp/v0.sock\"}");
	c = fake_vdcm_vdev(g_vdcm, "v0");
	assert_non_null(c);
	assert_int_equal(c->type, SIOV_VDEV_BLK);
	assert_int_equal(c->offset, 0);
	assert_int_equal(c->queues, 1);
	assert_false(c->readonly);
	assert_false(c->allow_overlap);
	ERR("vdev_create",
	    "{\"name\":\"v1\",\"backend\":\"b0\",\"offset\":\"256M\","
	    "\"size\":\"512M\",\"socket\":\"/tmp/v1.sock\"}",
	    -EBUSY, "overlaps VDEV 'v0'");
	OK("vdev_create",
	   "{\"name\":\"v1\",\"type\":\"blk\",\"backend\":\"b0\",\"offset\":\"256M\","
	   "\"size\":\"512M\",\"queues\":4,\"readonly\":true,\"allow_overlap\":true,"
	   "\"socket\":\"/tmp/v1.sock\"}");
	ERR("vdev_create",
	    "{\"name\":\"v2\",\"backend\":\"b0\",\"offset\":\"1G\","
	    "\"socket\":\"/tmp/v2.sock\"}",
	    -ERANGE, "out of range");
	ERR("vdev_create", "{\"name\":\"v2\",\"backend\":\"zz\",\"socket\":\"/tmp/v2.sock\"}",
	    -ENOENT, "no backend named 'zz'");
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
	assert_string_equal(json_object_get_string(member(v, "socket")), "/tmp/v1.sock");
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
	assert_int_equal(fake_vdcm_vdevs(g_vdcm), 1);
}

static void test_vdev_stats(void **state)
{
	struct json_object *res, *v, *qs, *q;

	OK("backend_create", "{\"name\":\"b0\",\"type\":\"null\",\"size\":\"1G\"}");
	OK("vdev_create", "{\"name\":\"v0\",\"backend\":\"b0\",\"queues\":3,"
			  "\"socket\":\"/tmp/v0.sock\"}");
	res = rpc_expect_result(g_srv, REQ("vdev_stats", "{\"name\":\"v0\"}"));
	assert_int_equal(json_object_array_length(res), 1);
	v = json_object_array_get_idx(res, 0);
	/* The fake gives each queue 10 requests, 1 error, 2 in flight, 3 us each. */
	assert_string_equal(json_object_get_string(member(v, "name")), "v0");
	assert_int_equal(json_object_get_int64(member(v, "requests")), 30);
	assert_int_equal(json_object_get_int64(member(v, "bytes_read")), 3 * 6 * 4096);
	assert_int_equal(json_object_get_int64(member(v, "bytes_written")), 3 * 4 * 4096);
	assert_int_equal(json_object_get_int64(member(v, "errors")), 3);
	assert_int_equal(json_object_get_int64(member(v, "inflight")), 6);
	assert_float_equal(json_object_get_double(member(v, "latency_us_mean")), 3.0, 1e-9);
	assert_string_equal(json_object_get_string(member(v, "state")), "listening");
	assert_true(json_object_is_type(member(v, "broken_reason"), json_type_null));
	qs = member(v, "queues");
	assert_int_equal(json_object_array_length(qs), 3);
	q = json_object_array_get_idx(qs, 2);
	assert_int_equal(json_object_get_int(member(q, "index")), 2);
	assert_int_equal(json_object_get_int(member(q, "engine")), 2);
	assert_string_equal(json_object_get_string(member(q, "state")), "running");
	assert_int_equal(json_object_get_int64(member(q, "reads")), 6);
	assert_int_equal(json_object_get_int64(member(q, "writes")), 4);
	assert_int_equal(json_object_get_int64(member(q, "kicks")), 5);
	assert_float_equal(json_object_get_double(member(q, "latency_us_mean")), 3.0, 1e-9);
	json_object_put(res);
	res = rpc_expect_result(g_srv, REQ("vdev_stats", NULL));
	assert_int_equal(json_object_array_length(res), 1);
	json_object_put(res);
	ERR("vdev_stats", "{\"name\":\"zz\"}", -ENOENT, "no VDEV named 'zz'");
}

static void test_daemon_info(void **state)
{
	struct json_object *res;

	OK("backend_create", "{\"name\":\"b0\",\"type\":\"null\",\"size\":\"1G\"}");
	res = rpc_expect_result(g_srv, REQ("daemon_info", NULL));
	assert_string_equal(json_object_get_string(member(res, "version")), "0.1.0-test");
	assert_int_equal(json_object_get_int(member(res, "pid")), getpid());
	assert_int_equal(json_object_get_int(member(res, "engines")), 2);
	assert_int_equal(json_object_get_int(member(res, "backends")), 1);
	assert_int_equal(json_object_get_int(member(res, "vdevs")), 0);
	assert_float_equal(json_object_get_double(member(res, "uptime_s")), 1.5, 1e-9);
	json_object_put(res);
}

static void test_vdcm_error_passthrough(void **state)
{
	fake_vdcm_fail_backend_create(g_vdcm, -EIO);
	ERR("backend_create", "{\"name\":\"b\",\"type\":\"null\",\"size\":512}", -EIO,
	    "injected failure");
	fake_vdcm_fail_backend_create(g_vdcm, 0);
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
	assert_int_equal(fake_vdcm_backends(g_vdcm), 1);
	ERR("vdev_create", "{\"name\":\"v\",\"backend\":\"b\",\"socket\":\"/tmp/v.sock\"}",
	    -EIO, "VDEV 'v' not created: the state could not be saved");
	assert_int_equal(fake_vdcm_vdevs(g_vdcm), 0);
	ERR("backend_delete", "{\"name\":\"b\"}", -EIO, "backend 'b' deleted, but");
	assert_int_equal(fake_vdcm_backends(g_vdcm), 0);
	rpc_use_state(&g_srv, g_vdcm, NULL);
	rpc_remove_dir(dir);
}

/* Random bytes and random damage to valid requests: answers or silence, no crash. */
static void test_hostile_text(void **state)
{
	static const char *const seeds[] = {
	    "{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"backend_create\",\"params\":{\"name\":"
	    "\"b\",\"type\":\"ram\",\"size\":\"1M\"}}",
	    "{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"vdev_create\",\"params\":{\"name\":\"v\","
	    "\"backend\":\"b\",\"offset\":0,\"size\":512,\"queues\":2,\"socket\":\"/tmp/s\"}}",
	    "[{\"jsonrpc\":\"2.0\",\"id\":\"x\",\"method\":\"vdev_stats\"},{}]",
	};
	static const char alphabet[] = "{}[]\":,0123456789-+.eE truefalsnul\\/u\x00\xff";
	char buf[512];

	srand(1234);
	for (int iter = 0; iter < 30000; iter++) {
		const char *seed = seeds[iter % SIOV_ARRAY_SIZE(seeds)];
		size_t len = strlen(seed);
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
		free(siov_rpc_handle(g_srv, buf, len));
	}
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test_setup_teardown(test_parse_errors, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_invalid_requests, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_unknown_method_and_ids, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_notification_and_batch, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_params_strict, setup, teardown),
	    cmocka_unit_test(test_parse_bytes),
	    cmocka_unit_test_setup_teardown(test_size_params, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_names, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_socket_path, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_backend_methods, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_vdev_methods, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_vdev_stats, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_daemon_info, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_vdcm_error_passthrough, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_save_failure_undoes, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_hostile_text, setup, teardown),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
