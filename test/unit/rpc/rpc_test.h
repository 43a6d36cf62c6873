/*
 * Helpers shared by the management plane's unit tests: make a call through
 * siov_rpc_handle() and check the answer's result or error.
 */
#ifndef SIOV_TEST_RPC_TEST_H
#define SIOV_TEST_RPC_TEST_H

#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <json-c/json.h>

#include "siov_internal/rpc.h"

/* The parsed response to req (which must get one). */
static inline struct json_object *rpc_call(struct siov_rpc_server *srv, const char *req)
{
	char *text = siov_rpc_handle(srv, req, strlen(req));
	struct json_object *resp;

	if (!text)
		fail_msg("no response to %s", req);
	resp = json_tokener_parse(text);
	if (!resp)
		fail_msg("response is not JSON: %s", text);
	free(text);
	return resp;
}

/* Checks that resp is the error code whose message contains msg; drops resp. */
static inline void rpc_check_error(struct json_object *resp, int code, const char *msg)
{
	struct json_object *e, *c, *m;

	if (!json_object_object_get_ex(resp, "error", &e))
		fail_msg("expected error %d, got %s", code, json_object_to_json_string(resp));
	assert_true(json_object_object_get_ex(e, "code", &c));
	assert_true(json_object_object_get_ex(e, "message", &m));
	if (json_object_get_int(c) != code || (msg && !strstr(json_object_get_string(m), msg)))
		fail_msg("expected error %d '%s', got %s", code, msg ? msg : "",
			 json_object_to_json_string(e));
	json_object_put(resp);
}

static inline void rpc_expect_error(struct siov_rpc_server *srv, const char *req, int code,
				    const char *msg)
{
	rpc_check_error(rpc_call(srv, req), code, msg);
}

/* The result of a successful call (a new reference). */
static inline struct json_object *rpc_expect_result(struct siov_rpc_server *srv, const char *req)
{
	struct json_object *resp = rpc_call(srv, req), *res;

	if (!json_object_object_get_ex(resp, "result", &res))
		fail_msg("%s failed: %s", req, json_object_to_json_string(resp));
	json_object_get(res);
	json_object_put(resp);
	return res;
}

static inline void rpc_expect_true(struct siov_rpc_server *srv, const char *req)
{
	struct json_object *res = rpc_expect_result(srv, req);

	assert_true(json_object_is_type(res, json_type_boolean) && json_object_get_boolean(res));
	json_object_put(res);
}

/* A request text for method with params (a JSON object text, or NULL). */
static inline const char *rpc_req(char *buf, size_t size, const char *method, const char *params)
{
	snprintf(buf, size, "{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"%s\"%s%s}", method,
		 params ? ",\"params\":" : "", params ? params : "");
	return buf;
}

/* Member key of object o, or fails. */
static inline struct json_object *member(struct json_object *o, const char *key)
{
	struct json_object *v;

	if (!json_object_object_get_ex(o, key, &v))
		fail_msg("no '%s' in %s", key, json_object_to_json_string(o));
	return v;
}

/*
 * Shorthands for a test file that defines g_srv (its server) and g_buf (a
 * char array for the request text).
 */
#define REQ(method, params)		rpc_req(g_buf, sizeof(g_buf), method, params)
#define OK(method, params)		rpc_expect_true(g_srv, REQ(method, params))
#define ERR(method, params, code, msg)	rpc_expect_error(g_srv, REQ(method, params), code, msg)
#define BAD_PARAMS(method, params, msg) ERR(method, params, SIOV_RPC_INVALID_PARAMS, msg)

#endif
