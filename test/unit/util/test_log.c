/*
 * Logging: a JSON line is one valid JSON object whatever the message holds
 * (quotes, backslashes, newlines, control bytes); the per-VDEV rate limiter
 * lets a burst through, drops the rest of a flood from that VDEV only, and
 * says how many it dropped once the window is over.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>
#include <json-c/json.h>

#include "siov_internal/log.h"

static FILE *g_out;
static int g_saved;

/* stderr into a temporary file for the test. */
static int capture(void **state)
{
	g_out = tmpfile();
	if (!g_out)
		return -1;
	fflush(stderr);
	g_saved = dup(STDERR_FILENO);
	dup2(fileno(g_out), STDERR_FILENO);
	return 0;
}

static int release(void **state)
{
	dup2(g_saved, STDERR_FILENO);
	close(g_saved);
	fclose(g_out);
	siov_log_set_format(SIOV_LOG_TEXT);
	return 0;
}

/* The lines written so far (caller frees each and the array); *n of them. */
static char **lines(size_t *n)
{
	char **v = NULL, buf[4096];

	*n = 0;
	rewind(g_out);
	while (fgets(buf, sizeof(buf), g_out)) {
		v = realloc(v, (*n + 1) * sizeof(*v));
		v[(*n)++] = strdup(buf);
	}
	return v;
}

static void free_lines(char **v, size_t n)
{
	for (size_t i = 0; i < n; i++)
		free(v[i]);
	free(v);
}

static void test_json_lines(void **state)
{
	struct json_object *o, *msg;
	size_t n;
	char **v;

	siov_log_set_format(SIOV_LOG_JSON);
	SIOV_WARN("vdev %s: quote \" backslash \\ newline \n tab \t bell \a end", "v\"1");
	SIOV_INFO("plain");
	v = lines(&n);
	assert_int_equal(n, 2);
	o = json_tokener_parse(v[0]);
	assert_non_null(o);
	assert_true(json_object_object_get_ex(o, "msg", &msg));
	assert_string_equal(json_object_get_string(msg),
			    "vdev v\"1: quote \" backslash \\ newline \n tab \t bell \a end");
	assert_true(json_object_object_get_ex(o, "level", &msg));
	assert_string_equal(json_object_get_string(msg), "warn");
	assert_true(json_object_object_get_ex(o, "ts", NULL));
	json_object_put(o);
	free_lines(v, n);
}

static size_t count(char **v, size_t n, const char *what)
{
	size_t k = 0;

	for (size_t i = 0; i < n; i++)
		k += strstr(v[i], what) != NULL;
	return k;
}

static void test_rate_limit_per_vdev(void **state)
{
	struct siov_ratelimit hostile = {0}, quiet = {0};
	size_t n;
	char **v;

	for (int i = 0; i < 1000; i++)
		SIOV_VDEV_LOG(&hostile, "evil", SIOV_LOG_WARN, "vdev evil: malformed request %d",
			      i);
	for (int i = 0; i < 3; i++)
		SIOV_VDEV_LOG(&quiet, "good", SIOV_LOG_WARN, "vdev good: event %d", i);
	v = lines(&n);
	assert_int_equal(count(v, n, "vdev evil: malformed"), SIOV_RATELIMIT_BURST);
	assert_int_equal(count(v, n, "vdev good: event"), 3);
	free_lines(v, n);

	/* The window ends: the next message goes out, after a line counting the dropped. */
	hostile.window_start -= SIOV_RATELIMIT_WINDOW_NS;
	SIOV_VDEV_LOG(&hostile, "evil", SIOV_LOG_WARN, "vdev evil: later");
	v = lines(&n);
	assert_int_equal(count(v, n, "evil: 990 message(s) suppressed"), 1);
	assert_int_equal(count(v, n, "vdev evil: later"), 1);
	free_lines(v, n);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test_setup_teardown(test_json_lines, capture, release),
	    cmocka_unit_test_setup_teardown(test_rate_limit_per_vdev, capture, release),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
