/*
 * The management plane of issue 4 against the real VDCM (real backends,
 * engines and sockets in a temporary directory): QoS parameters in
 * vdev_create, vdev_set_qos (only the given parameters change), the group
 * methods, QoS in vdev_list/vdev_stats, paging and filters of vdev_list and
 * vdev_stats, one deferred save per batch (and honest answers when it fails),
 * and groups and QoS surviving the state file.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <ftw.h>

#include "rpc_test.h"
#include "vdcm_probe.h"
#include "siov_internal/log.h"
#include "siov_internal/loop.h"
#include "siov_internal/state.h"
#include "../../../lib/ctrl/rpc_internal.h"

static struct siov_loop *g_loop;
static struct siov_vdcm *g_vdcm;
static struct siov_rpc_server *g_srv;
static char g_buf[8192];
static char g_dir[64];	 /* the VDEVs' sockets */
static char g_state[80]; /* the state directory, inside g_dir */

static int new_vdcm(struct siov_vdcm **out)
{
	struct siov_vdcm_opts vo = {.loop = g_loop, .engines = 1, .poll_us = 10};

	return siov_vdcm_create(&vo, out);
}

static int setup(void **state)
{
	struct siov_rpc_server_opts opts = {0};

	siov_log_set_level(SIOV_LOG_ERR);
	strcpy(g_dir, "/tmp/siov-qos-XXXXXX");
	if (!mkdtemp(g_dir) || siov_loop_create(&g_loop) < 0 || new_vdcm(&g_vdcm) < 0)
		return -1;
	snprintf(g_state, sizeof(g_state), "%s/state", g_dir);
	opts.vdcm = g_vdcm;
	if (siov_rpc_server_create(&opts, &g_srv) < 0)
		return -1;
	rpc_expect_true(
	    g_srv, REQ("backend_create", "{\"name\":\"b\",\"type\":\"null\",\"size\":\"1G\"}"));
	return 0;
}

static int rm_one(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
	return remove(path);
}

/* Stops the server and the VDCM (a test may have done so already). */
static void stop_vdcm(void)
{
	siov_rpc_server_destroy(g_srv);
	siov_vdcm_destroy(g_vdcm);
	g_srv = NULL;
	g_vdcm = NULL;
}

static int teardown(void **state)
{
	stop_vdcm();
	siov_loop_destroy(g_loop);
	nftw(g_dir, rm_one, 8, FTW_DEPTH | FTW_PHYS);
	return 0;
}

/* A VDEV named name on backend b at slot i (1 MiB windows). */
static void create_vdev(const char *name, unsigned i, const char *extra)
{
	char params[512];

	snprintf(params, sizeof(params),
		 "{\"name\":\"%s\",\"backend\":\"b\",\"offset\":%u,\"size\":\"1M\","
		 "\"socket\":\"%s/%s.sock\"%s}",
		 name, i << 20, g_dir, name, extra ? extra : "");
	OK("vdev_create", params);
}

static const struct siov_qos_params *vdev_qos(const char *name)
{
	const struct siov_vdev_conf *c = probe_vdev(g_vdcm, name);

	assert_non_null(c);
	return &c->qos;
}

static void test_vdev_create_qos(void **state)
{
	const struct siov_qos_params *q;

	create_vdev("v0", 0,
		    ",\"iops_limit\":2000,\"bps_limit\":\"100M\",\"iops_burst\":50,"
		    "\"bps_burst\":\"4M\",\"iops_min\":500,\"weight\":300");
	q = vdev_qos("v0");
	assert_int_equal(q->iops_limit, 2000);
	assert_int_equal(q->bps_limit, 100ull << 20);
	assert_int_equal(q->iops_burst, 50);
	assert_int_equal(q->bps_burst, 4ull << 20);
	assert_int_equal(q->iops_min, 500);
	assert_int_equal(q->weight, 300);
	/* Strict types and ranges, with the parameter named. */
	BAD_PARAMS("vdev_create",
		   "{\"name\":\"v1\",\"backend\":\"b\",\"socket\":\"/tmp/x\",\"iops_limit\":-1}",
		   "'iops_limit' must not be negative");
	BAD_PARAMS("vdev_create",
		   "{\"name\":\"v1\",\"backend\":\"b\",\"socket\":\"/tmp/x\",\"weight\":10001}",
		   "'weight' must be between 0 and 10000");
	BAD_PARAMS(
	    "vdev_create",
	    "{\"name\":\"v1\",\"backend\":\"b\",\"socket\":\"/tmp/x\",\"bps_limit\":\"fast\"}",
	    "'bps_limit' must be a number of bytes");
	BAD_PARAMS("vdev_create",
		   "{\"name\":\"v1\",\"backend\":\"b\",\"socket\":\"/tmp/x\",\"group\":\"../g\"}",
		   "'group'");
	/* What the VDCM refuses comes back with its reason. */
	ERR("vdev_create",
	    "{\"name\":\"v1\",\"backend\":\"b\",\"offset\":\"1M\",\"size\":\"1M\","
	    "\"socket\":\"/tmp/x\",\"iops_limit\":10,\"iops_min\":20}",
	    -EINVAL, "iops_min is larger than iops_limit");
	ERR("vdev_create",
	    "{\"name\":\"v1\",\"backend\":\"b\",\"offset\":\"1M\",\"size\":\"1M\","
	    "\"socket\":\"/tmp/x\",\"group\":\"nope\"}",
	    -ENOENT, "no group named 'nope'");
}

static void test_vdev_set_qos(void **state)
{
	const struct siov_qos_params *q;

	create_vdev("v0", 0, ",\"iops_limit\":2000,\"weight\":300");
	/* Only what is given changes. */
	OK("vdev_set_qos", "{\"name\":\"v0\",\"bps_limit\":\"1M\"}");
	q = vdev_qos("v0");
	assert_int_equal(q->iops_limit, 2000);
	assert_int_equal(q->bps_limit, 1ull << 20);
	assert_int_equal(q->weight, 300);
	/* 0 clears a limit. */
	OK("vdev_set_qos", "{\"name\":\"v0\",\"iops_limit\":0,\"weight\":1}");
	q = vdev_qos("v0");
	assert_int_equal(q->iops_limit, 0);
	assert_int_equal(q->weight, 1);
	assert_int_equal(q->bps_limit, 1ull << 20);
	ERR("vdev_set_qos", "{\"name\":\"nope\",\"iops_limit\":1}", -ENOENT,
	    "no VDEV named 'nope'");
	BAD_PARAMS("vdev_set_qos", "{\"iops_limit\":1}", "missing parameter 'name'");
	BAD_PARAMS("vdev_set_qos", "{\"name\":\"v0\",\"size\":1}", "unknown parameter 'size'");
	/* A refused change leaves the old parameters in force. */
	ERR("vdev_set_qos", "{\"name\":\"v0\",\"iops_limit\":5,\"iops_min\":6}", -EINVAL,
	    "iops_min is larger than iops_limit");
	assert_int_equal(vdev_qos("v0")->iops_limit, 0);
}

static void test_groups(void **state)
{
	struct json_object *res, *g;

	OK("group_create", "{\"name\":\"tenant1\",\"iops_limit\":10000,\"bps_limit\":\"1G\"}");
	ERR("group_create", "{\"name\":\"tenant1\"}", -EEXIST, "already exists");
	BAD_PARAMS("group_create", "{\"iops_limit\":1}", "missing parameter 'name'");
	BAD_PARAMS("group_create", "{\"name\":\"g\",\"socket\":\"/x\"}", "unknown parameter");
	ERR("group_create", "{\"name\":\"g2\",\"weight\":1,\"iops_limit\":1,\"iops_min\":2}",
	    -EINVAL, "iops_min is larger than iops_limit");
	create_vdev("v0", 0, ",\"group\":\"tenant1\"");
	create_vdev("v1", 1, ",\"group\":\"tenant1\",\"iops_limit\":100");

	OK("group_set_qos", "{\"name\":\"tenant1\",\"weight\":50}");
	ERR("group_set_qos", "{\"name\":\"nope\",\"weight\":50}", -ENOENT, "no group");
	res = rpc_expect_result(g_srv, REQ("group_list", NULL));
	assert_int_equal(json_object_array_length(res), 1);
	g = json_object_array_get_idx(res, 0);
	assert_string_equal(json_object_get_string(member(g, "name")), "tenant1");
	assert_int_equal(json_object_get_int64(member(g, "iops_limit")), 10000);
	assert_int_equal(json_object_get_int64(member(g, "bps_limit")), 1 << 30);
	assert_int_equal(json_object_get_int64(member(g, "weight")), 50);
	assert_int_equal(json_object_get_int64(member(g, "vdevs")), 2);
	/* Nothing ran through the group yet. */
	assert_int_equal(json_object_get_int64(member(g, "admitted")), 0);
	json_object_put(res);
	BAD_PARAMS("group_list", "{\"x\":1}", "unknown parameter 'x'");

	/* Refused while VDEVs use it; allowed once they are gone. */
	ERR("group_delete", "{\"name\":\"tenant1\"}", -EBUSY, "has 2 VDEV(s)");
	OK("vdev_delete", "{\"name\":\"v0\"}");
	OK("vdev_delete", "{\"name\":\"v1\"}");
	OK("group_delete", "{\"name\":\"tenant1\"}");
	ERR("group_delete", "{\"name\":\"tenant1\"}", -ENOENT, "no group");
	res = rpc_expect_result(g_srv, REQ("group_list", NULL));
	assert_int_equal(json_object_array_length(res), 0);
	json_object_put(res);
}

static void test_stats_show_qos(void **state)
{
	struct json_object *res, *q;

	OK("group_create", "{\"name\":\"g\"}");
	create_vdev("v0", 0, ",\"group\":\"g\",\"iops_limit\":2000,\"iops_min\":100");
	res = rpc_expect_result(g_srv, REQ("vdev_stats", "{\"name\":\"v0\"}"));
	q = member(json_object_array_get_idx(res, 0), "qos");
	assert_string_equal(json_object_get_string(member(q, "group")), "g");
	assert_int_equal(json_object_get_int64(member(q, "iops_limit")), 2000);
	assert_int_equal(json_object_get_int64(member(q, "iops_min")), 100);
	assert_int_equal(json_object_get_int64(member(q, "bps_limit")), 0);
	assert_int_equal(json_object_get_int64(member(q, "weight")), SIOV_QOS_WEIGHT_DEFAULT);
	/* Nobody is connected: the buckets admitted and throttled nothing yet. */
	assert_int_equal(json_object_get_int64(member(q, "admitted")), 0);
	assert_int_equal(json_object_get_int64(member(q, "admitted_bytes")), 0);
	assert_int_equal(json_object_get_int64(member(q, "throttled")), 0);
	member(q, "throttled_ns");
	member(q, "reserved");
	json_object_put(res);
	/* vdev_list shows the group and the non-default parameters only. */
	res = rpc_expect_result(g_srv, REQ("vdev_list", "{\"name\":\"v0\"}"));
	q = member(json_object_array_get_idx(res, 0), "qos");
	assert_int_equal(json_object_get_int64(member(q, "iops_limit")), 2000);
	assert_false(json_object_object_get_ex(q, "bps_limit", NULL));
	assert_string_equal(
	    json_object_get_string(member(json_object_array_get_idx(res, 0), "group")), "g");
	json_object_put(res);
}

/* The names in a vdev_list answer, joined by ','. */
static void list_names(const char *params, char *out, size_t size)
{
	struct json_object *res = rpc_expect_result(g_srv, REQ("vdev_list", params));

	out[0] = '\0';
	for (size_t i = 0; i < json_object_array_length(res); i++) {
		const char *n =
		    json_object_get_string(member(json_object_array_get_idx(res, i), "name"));
		strncat(out, n, size - strlen(out) - 2);
		strcat(out, ",");
	}
	json_object_put(res);
}

static void test_paging(void **state)
{
	char names[512];
	struct json_object *res;

	create_vdev("a0", 0, NULL);
	create_vdev("a1", 1, NULL);
	create_vdev("b0", 2, NULL);
	create_vdev("a2", 3, NULL);
	create_vdev("a3", 4, NULL);
	list_names(NULL, names, sizeof(names));
	assert_string_equal(names, "a0,a1,b0,a2,a3,");
	list_names("{\"limit\":2}", names, sizeof(names));
	assert_string_equal(names, "a0,a1,");
	list_names("{\"offset\":2,\"limit\":2}", names, sizeof(names));
	assert_string_equal(names, "b0,a2,");
	list_names("{\"offset\":4,\"limit\":2}", names, sizeof(names));
	assert_string_equal(names, "a3,");
	list_names("{\"offset\":9}", names, sizeof(names));
	assert_string_equal(names, "");
	list_names("{\"prefix\":\"a\"}", names, sizeof(names));
	assert_string_equal(names, "a0,a1,a2,a3,");
	list_names("{\"prefix\":\"a\",\"offset\":1,\"limit\":2}", names, sizeof(names));
	assert_string_equal(names, "a1,a2,");
	list_names("{\"prefix\":\"zz\"}", names, sizeof(names));
	assert_string_equal(names, "");
	list_names("{\"name\":\"a2\"}", names, sizeof(names));
	assert_string_equal(names, "a2,");
	/* vdev_stats pages the same way. */
	res = rpc_expect_result(g_srv, REQ("vdev_stats", "{\"prefix\":\"a\",\"limit\":3}"));
	assert_int_equal(json_object_array_length(res), 3);
	json_object_put(res);
	BAD_PARAMS("vdev_list", "{\"name\":\"a2\",\"limit\":1}", "'name' selects one VDEV");
	BAD_PARAMS("vdev_stats", "{\"offset\":-1}", "'offset' must not be negative");
	BAD_PARAMS("vdev_list", "{\"limit\":\"5\"}", "'limit' must be an integer");
	ERR("vdev_stats", "{\"name\":\"zz\"}", -ENOENT, "no VDEV named 'zz'");
}

/* A batch request of n vdev_create calls, as text. */
static char *create_batch(unsigned first, unsigned n)
{
	size_t size = 320 * (size_t)n + 16, len = 0;
	char *text = malloc(size);

	assert_non_null(text);
	text[len++] = '[';
	for (unsigned i = first; i < first + n; i++)
		len +=
		    (size_t)snprintf(text + len, size - len,
				     "%s{\"jsonrpc\":\"2.0\",\"id\":%u,\"method\":\"vdev_create\","
				     "\"params\":{\"name\":\"v%u\",\"backend\":\"b\",\"offset\":%u,"
				     "\"size\":4096,\"socket\":\"%s/v%u.sock\"}}",
				     i > first ? "," : "", i, i, i * 4096, g_dir, i);
	text[len++] = ']';
	text[len] = '\0';
	return text;
}

/* The state directory, fresh for the test that needs one. */
static void make_dir(void)
{
	assert_int_equal(mkdir(g_state, 0700), 0);
}

/* A batch's changes are saved once, at its end, and all come back after a restart. */
static void test_batch_saves_once(void **state)
{
	struct siov_vdcm *b;
	struct siov_err err = {0};
	struct json_object *res;
	char *text;

	make_dir();
	g_srv->state_dir = strdup(g_state);
	text = create_batch(0, 50);
	res = rpc_call(g_srv, text);
	free(text);
	assert_int_equal(json_object_array_length(res), 50);
	for (size_t i = 0; i < 50; i++)
		assert_true(
		    json_object_get_boolean(member(json_object_array_get_idx(res, i), "result")));
	json_object_put(res);
	assert_int_equal(probe_vdevs(g_vdcm), 50);
	/* A new VDCM on the same sockets: the old one must be gone first. */
	stop_vdcm();
	assert_int_equal(new_vdcm(&b), 0);
	assert_int_equal(siov_state_load(b, g_state, &err), 0);
	assert_int_equal(probe_vdevs(b), 50);
	siov_vdcm_destroy(b);
}

/*
 * When the one save at the end of a batch fails, the changes stay made (they
 * cannot all be taken back) and every answer that reported one says so.
 */
static void test_batch_save_failure_said(void **state)
{
	struct json_object *res, *e;
	char *text;

	make_dir();
	g_srv->state_dir = malloc(128);
	snprintf(g_srv->state_dir, 128, "%s/missing", g_dir);
	text = create_batch(0, 3);
	/* One call in the middle fails by itself and keeps its own error. */
	memcpy(strstr(text, "\"v1\",\"backend\":\"b\"") + 16, "x", 1);
	res = rpc_call(g_srv, text);
	free(text);
	assert_int_equal(json_object_array_length(res), 3);
	for (size_t i = 0; i < 3; i++) {
		e = member(json_object_array_get_idx(res, i), "error");
		if (i == 1) {
			assert_non_null(strstr(json_object_get_string(member(e, "message")),
					       "no backend named 'x'"));
			continue;
		}
		assert_int_equal(json_object_get_int(member(e, "code")), -ENOENT);
		assert_non_null(strstr(json_object_get_string(member(e, "message")),
				       "done, but the state could not be saved"));
	}
	json_object_put(res);
	assert_int_equal(probe_vdevs(g_vdcm), 2);
}

static void test_state_keeps_groups_and_qos(void **state)
{
	struct siov_vdev_conf v0, v1;
	struct siov_vdcm *b;
	struct siov_err err = {0};

	make_dir();
	g_srv->state_dir = strdup(g_state);
	OK("group_create", "{\"name\":\"t1\",\"iops_limit\":5000,\"bps_burst\":\"8M\"}");
	OK("group_set_qos", "{\"name\":\"t1\",\"weight\":7}");
	create_vdev("v0", 0, ",\"group\":\"t1\",\"iops_min\":100");
	OK("vdev_set_qos", "{\"name\":\"v0\",\"bps_limit\":\"10M\"}");
	create_vdev("v1", 1, NULL);
	v0 = *probe_vdev(g_vdcm, "v0");
	v1 = *probe_vdev(g_vdcm, "v1");
	stop_vdcm();
	assert_int_equal(new_vdcm(&b), 0);
	assert_int_equal(siov_state_load(b, g_state, &err), 0);
	assert_memory_equal(&v0, probe_vdev(b, "v0"), sizeof(v0));
	assert_memory_equal(&v1, probe_vdev(b, "v1"), sizeof(v1));
	assert_int_equal(probe_vdev(b, "v0")->qos.bps_limit, 10 << 20);
	assert_int_equal(probe_vdev(b, "v0")->qos.iops_min, 100);
	siov_vdcm_destroy(b);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test_setup_teardown(test_vdev_create_qos, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_vdev_set_qos, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_groups, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_stats_show_qos, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_paging, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_batch_saves_once, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_batch_save_failure_said, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_state_keeps_groups_and_qos, setup, teardown),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
