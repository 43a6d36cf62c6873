/*
 * siovctl: the management CLI.  Turns a command line into one JSON-RPC 2.0
 * call on siovd's Unix socket, waits for the answer and prints its result as
 * pretty JSON on stdout.
 *
 *   siovctl [-s SOCKET] [-t SECONDS] METHOD [--param value ...]
 *
 * Exit status: 0 on success; 1 when siovd answered with an error (printed on
 * stderr as "siovctl: error CODE: MESSAGE"); 2 when the call could not be
 * made at all (bad usage, no siovd on the socket, no answer in time).
 */
#include <errno.h>
#include <getopt.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <sys/un.h>
#include <unistd.h>

#include <json-c/json.h>

#include "siovctl.h"

#define DEFAULT_SOCKET	"/run/siov/siovd.sock"
#define DEFAULT_TIMEOUT 30
#define EXIT_RPC_ERROR	1
#define EXIT_NO_CALL	2

/* Values of these are names or paths: strings even when they look like numbers. */
static const char *const string_params[] = {"name", "type",	 "backend", "path",	   "socket",
					    "uri",  "tls_creds", "pool",    "image",	   "conf",
					    "id",   "members",	 "member",  "network",	   "uplink",
					    "mac",  "vdev",	 "listen",  "error_policy"};

static const char usage_text[] =
    "usage: siovctl [-s SOCKET] [-t SECONDS] METHOD [--param value ...]\n"
    "\n"
    "Calls METHOD on siovd's JSON-RPC socket and prints the result as JSON.\n"
    "\n"
    "  -s SOCKET   siovd's socket (default: $SIOV_RPC_SOCKET, else " DEFAULT_SOCKET ")\n"
    "  -t SECONDS  how long to wait for the answer (default 30; 0: forever)\n"
    "  -h          this help\n"
    "\n"
    "Parameters: '--some-name value' or '--some-name=value' sets some_name.  A flag\n"
    "with no value is true; 'true' and 'false' are booleans; a decimal integer is\n"
    "an integer (except for names, paths, uri, pool, image, id, network, uplink,\n"
    "mac); anything else is a string.  Sizes and offsets also take suffixes: 4K,\n"
    "512M, 1G, 2T.\n"
    "\n"
    "Methods and their parameters are listed below when siovd answers on SOCKET\n"
    "(they come from siovd's own method table: rpc_get_methods).\n"
    "\n"
    "  siovctl [-s SOCKET] top [-d SECONDS] [-n COUNT] [-o iops|bw|lat|thr|name]\n"
    "      the busiest VDEVs, refreshed in place (q quits; i b l t n sort)\n"
    "\n"
    "Exit status: 0 success, 1 siovd returned an error, 2 the call could not be made.\n"
    "Example:\n"
    "  siovctl vdev_create --name vm1 --backend b0 --size 1G --socket /run/vm1.sock\n";

__attribute__((format(printf, 1, 2), noreturn)) static void die_usage(const char *fmt, ...)
{
	va_list ap;

	fprintf(stderr, "siovctl: ");
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fprintf(stderr, "\nTry 'siovctl -h'.\n");
	exit(EXIT_NO_CALL);
}

static bool is_string_param(const char *key)
{
	for (size_t i = 0; i < sizeof(string_params) / sizeof(string_params[0]); i++)
		if (strcmp(key, string_params[i]) == 0)
			return true;
	return false;
}

/* A whole decimal integer that fits in int64_t. */
static bool parse_int(const char *s, long long *out)
{
	const char *p = s;
	char *end;

	if (*p == '-')
		p++;
	if (*p < '0' || *p > '9')
		return false;
	errno = 0;
	*out = strtoll(s, &end, 10);
	return *end == '\0' && errno == 0;
}

static struct json_object *param_value(const char *key, const char *val)
{
	long long i;

	if (!val)
		return json_object_new_boolean(1);
	if (is_string_param(key))
		return json_object_new_string(val);
	if (strcmp(val, "true") == 0)
		return json_object_new_boolean(1);
	if (strcmp(val, "false") == 0)
		return json_object_new_boolean(0);
	if (parse_int(val, &i))
		return json_object_new_int64(i);
	return json_object_new_string(val);
}

/* argv[i] is "--some-name[=value]"; returns how many args it used. */
static int add_param(struct json_object *params, char **argv, int i, int argc)
{
	char *key = strdup(argv[i] + 2), *eq, *p;
	const char *val = NULL;
	int used = 1;

	if (!key)
		die_usage("%s", "out of memory");
	eq = strchr(key, '=');
	if (eq) {
		*eq = '\0';
		val = argv[i] + 2 + (eq - key) + 1;
	} else if (i + 1 < argc && strncmp(argv[i + 1], "--", 2) != 0) {
		val = argv[i + 1];
		used = 2;
	}
	for (p = key; *p; p++)
		if (*p == '-')
			*p = '_';
	if (key[0] == '\0')
		die_usage("empty parameter name in '%s'", argv[i]);
	if (json_object_object_get_ex(params, key, NULL))
		die_usage("parameter '%s' given twice", key);
	json_object_object_add(params, key, param_value(key, val));
	free(key);
	return used;
}

static struct json_object *build_request(const char *method, int argc, char **argv)
{
	struct json_object *req = json_object_new_object(), *params = json_object_new_object();
	int i = 0;

	if (!req || !params)
		die_usage("%s", "out of memory");
	while (i < argc) {
		if (strncmp(argv[i], "--", 2) != 0)
			die_usage("expected a --parameter, got '%s'", argv[i]);
		i += add_param(params, argv, i, argc);
	}
	json_object_object_add(req, "jsonrpc", json_object_new_string("2.0"));
	json_object_object_add(req, "id", json_object_new_int(1));
	json_object_object_add(req, "method", json_object_new_string(method));
	json_object_object_add(req, "params", params);
	return req;
}

int siovctl_connect(const char *path, int timeout_s, const char **why)
{
	struct sockaddr_un addr = {.sun_family = AF_UNIX};
	struct timeval tv = {.tv_sec = timeout_s};
	int fd;

	if (strlen(path) >= sizeof(addr.sun_path)) {
		*why = "Unix socket paths are limited to 107 bytes on Linux";
		return -ENAMETOOLONG;
	}
	strcpy(addr.sun_path, path);
	fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0 || connect(fd, (struct sockaddr *)&addr, sizeof(addr)) < 0) {
		int rc = -errno;
		*why = strerror(errno);
		if (fd >= 0)
			close(fd);
		return rc;
	}
	/* A timeout of 0 leaves the socket blocking forever. */
	setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
	setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
	return fd;
}

static int connect_to(const char *path, int timeout_s)
{
	const char *why = "";
	int fd = siovctl_connect(path, timeout_s, &why);

	if (fd < 0) {
		fprintf(stderr, "siovctl: cannot connect to %s: %s (is siovd running?)\n", path,
			why);
		exit(EXIT_NO_CALL);
	}
	return fd;
}

static int send_text(int fd, const char *buf, size_t len)
{
	while (len) {
		ssize_t n = send(fd, buf, len, MSG_NOSIGNAL);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			return -errno;
		buf += n;
		len -= (size_t)n;
	}
	return 0;
}

static void send_all(int fd, const char *buf, size_t len)
{
	int rc = send_text(fd, buf, len);

	if (rc < 0) {
		fprintf(stderr, "siovctl: cannot send the request: %s\n", strerror(-rc));
		exit(EXIT_NO_CALL);
	}
}

/* Reads until one whole JSON value has arrived; NULL and *why if it does not. */
static struct json_object *recv_value(int fd, const char **why)
{
	struct json_tokener *tok = json_tokener_new();
	struct json_object *resp = NULL;
	char buf[65536];

	*why = "out of memory";
	while (tok && !resp) {
		ssize_t n = recv(fd, buf, sizeof(buf), 0);
		if (n < 0 && errno == EINTR)
			continue;
		*why = n == 0 ? "siovd closed the connection without answering"
		       : n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)
			   ? "no answer from siovd in time (see -t)"
			   : strerror(errno);
		if (n <= 0)
			break;
		resp = json_tokener_parse_ex(tok, buf, (int)n);
		*why = "siovd's answer is not valid JSON";
		if (!resp && json_tokener_get_error(tok) != json_tokener_continue)
			break;
	}
	json_tokener_free(tok);
	return resp;
}

static void die_recv(const char *why)
{
	fprintf(stderr, "siovctl: %s\n", why);
	exit(EXIT_NO_CALL);
}

static struct json_object *recv_response(int fd)
{
	const char *why;
	struct json_object *resp = recv_value(fd, &why);

	if (!resp)
		die_recv(why);
	return resp;
}

struct json_object *siovctl_call(int fd, const char *method, struct json_object *params)
{
	struct json_object *req = json_object_new_object();
	const char *text, *why;
	struct json_object *resp = NULL;

	if (!req) {
		json_object_put(params);
		return NULL;
	}
	json_object_object_add(req, "jsonrpc", json_object_new_string("2.0"));
	json_object_object_add(req, "id", json_object_new_int(1));
	json_object_object_add(req, "method", json_object_new_string(method));
	if (params)
		json_object_object_add(req, "params", params);
	text = json_object_to_json_string_ext(req, JSON_C_TO_STRING_PLAIN);
	if (text && send_text(fd, text, strlen(text)) == 0 && send_text(fd, "\n", 1) == 0)
		resp = recv_value(fd, &why);
	json_object_put(req);
	return resp;
}

static struct json_object *call_once(const char *sock, int timeout, const char *method)
{
	const char *why;
	int fd = siovctl_connect(sock, timeout, &why);
	struct json_object *resp;

	if (fd < 0)
		return NULL;
	resp = siovctl_call(fd, method, NULL);
	close(fd);
	return resp;
}

static int print_response(struct json_object *resp)
{
	struct json_object *res, *e, *code, *msg;

	if (json_object_object_get_ex(resp, "error", &e)) {
		json_object_object_get_ex(e, "code", &code);
		json_object_object_get_ex(e, "message", &msg);
		fprintf(stderr, "siovctl: error %d: %s\n", json_object_get_int(code),
			msg ? json_object_get_string(msg) : "(no message)");
		return EXIT_RPC_ERROR;
	}
	if (!json_object_object_get_ex(resp, "result", &res))
		die_recv("siovd's answer has neither result nor error");
	printf("%s\n", json_object_to_json_string_ext(res, JSON_C_TO_STRING_PRETTY |
							       JSON_C_TO_STRING_SPACED |
							       JSON_C_TO_STRING_NOSLASHESCAPE));
	return 0;
}

/* siovctl -h: the usage, then every method siovd serves with its parameters. */
static int print_help(const char *sock, int timeout)
{
	struct json_object *resp, *res;

	fputs(usage_text, stdout);
	resp = call_once(sock, timeout, "rpc_get_methods");
	if (!resp || !json_object_object_get_ex(resp, "result", &res)) {
		printf("\n(siovd does not answer on %s: start it, or give -s, to list its "
		       "methods)\n",
		       sock);
		json_object_put(resp);
		return 0;
	}
	printf("\nMethods of siovd on %s:\n", sock);
	for (size_t i = 0; i < json_object_array_length(res); i++) {
		struct json_object *m = json_object_array_get_idx(res, i), *v, *ps;
		json_object_object_get_ex(m, "name", &v);
		printf("\n  %s", json_object_get_string(v));
		json_object_object_get_ex(m, "description", &v);
		printf("  -  %s\n", json_object_get_string(v));
		json_object_object_get_ex(m, "params", &ps);
		for (size_t k = 0; k < json_object_array_length(ps); k++) {
			struct json_object *p = json_object_array_get_idx(ps, k), *n, *t, *r, *d;
			char flag[96];
			json_object_object_get_ex(p, "name", &n);
			json_object_object_get_ex(p, "type", &t);
			json_object_object_get_ex(p, "required", &r);
			json_object_object_get_ex(p, "description", &d);
			snprintf(flag, sizeof(flag), "--%s %s", json_object_get_string(n),
				 json_object_get_string(t));
			for (char *c = flag + 2; *c && *c != ' '; c++)
				*c = *c == '_' ? '-' : *c;
			printf("      %-26s %s%s\n", flag,
			       json_object_get_boolean(r) ? "(required) " : "",
			       json_object_get_string(d));
		}
	}
	json_object_put(resp);
	return 0;
}

int main(int argc, char **argv)
{
	const char *sock = getenv("SIOV_RPC_SOCKET");
	struct json_object *req, *resp;
	long timeout = DEFAULT_TIMEOUT;
	const char *text;
	char *end;
	int opt, fd, rc;
	bool help = false;

	if (!sock || !*sock)
		sock = DEFAULT_SOCKET;
	while ((opt = getopt(argc, argv, "+hs:t:")) != -1) {
		switch (opt) {
		case 'h':
			help = true;
			break;
		case 's':
			sock = optarg;
			break;
		case 't':
			timeout = strtol(optarg, &end, 10);
			if (*optarg == '\0' || *end || timeout < 0 || timeout > 86400)
				die_usage("-t wants seconds (0 to 86400), not '%s'", optarg);
			break;
		default:
			die_usage("%s", "unknown option");
		}
	}
	if (help)
		return print_help(sock, timeout > 5 || timeout == 0 ? 5 : (int)timeout);
	if (optind >= argc)
		die_usage("%s", "no METHOD given");
	if (strcmp(argv[optind], "top") == 0)
		return siovctl_top(sock, (int)timeout, argc - optind, argv + optind);
	req = build_request(argv[optind], argc - optind - 1, argv + optind + 1);
	fd = connect_to(sock, (int)timeout);
	text = json_object_to_json_string_ext(req, JSON_C_TO_STRING_PLAIN);
	send_all(fd, text, strlen(text));
	send_all(fd, "\n", 1);
	resp = recv_response(fd);
	close(fd);
	rc = print_response(resp);
	json_object_put(resp);
	json_object_put(req);
	return rc;
}
