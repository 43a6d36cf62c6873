/*
 * The few RPC checks that need the fake VDCM (fake_vdcm.h) because the real
 * one cannot be made to give these answers on purpose: statistics with known
 * non-zero values, a daemon_info with a fixed version and uptime, and a VDCM
 * failure (-EIO) that the RPC layer must pass through with its message.
 * Everything else runs against the real VDCM in test_rpc_handle.c.
 */
#include <errno.h>
#include <unistd.h>

#include "rpc_test.h"
#include "fake_vdcm.h"
#include "../../../lib/ctrl/rpc_internal.h"

static struct siov_vdcm *g_vdcm;
static struct siov_rpc_server *g_srv;
static char g_buf[8192];

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

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test_setup_teardown(test_vdev_stats, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_daemon_info, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_vdcm_error_passthrough, setup, teardown),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
