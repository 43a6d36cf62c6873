/*
 * Parameters of management calls: a strict, table-driven conversion from a
 * JSON object to a C struct.  Every input here is hostile (it comes from a
 * socket or from a state file someone may have edited), so each member is
 * checked for name, type and range, and every failure names the parameter and
 * says why.  The backend and VDEV configurations are converted here once, for
 * both the RPC methods and the state file.
 */
#include <ctype.h>
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "rpc_internal.h"

static int param_fail(const struct siov_param *p, const char *why, struct siov_err *err)
{
	return siov_err_set(err, -EINVAL, "parameter '%s' %s", p->name, why);
}

/* The value as a C string, refusing non-strings and embedded NULs. */
static int param_string(const struct siov_param *p, struct json_object *v, const char **out,
			size_t *len, struct siov_err *err)
{
	if (!json_object_is_type(v, json_type_string))
		return param_fail(p, "must be a string", err);
	*out = json_object_get_string(v);
	*len = (size_t)json_object_get_string_len(v);
	if (strlen(*out) != *len)
		return param_fail(p, "must not contain NUL characters", err);
	return 0;
}

int siov_param_name(const struct siov_param *p, struct json_object *v, void *field,
		    struct siov_err *err)
{
	const char *s;
	size_t len;
	int rc = param_string(p, v, &s, &len, err);

	if (rc)
		return rc;
	if (!siov_name_valid(s))
		return param_fail(p,
				  "must be 1 to 63 characters from [A-Za-z0-9_.-] and not start "
				  "with '.'",
				  err);
	memcpy(field, s, len + 1);
	return 0;
}

int siov_param_abs_path(const struct siov_param *p, struct json_object *v, void *field,
			struct siov_err *err)
{
	const char *s;
	size_t len;
	int rc = param_string(p, v, &s, &len, err);

	if (rc)
		return rc;
	if (s[0] != '/')
		return param_fail(p, "must be an absolute path", err);
	if (len >= p->size) {
		/* Say which limit: for sockets it is the kernel's, not ours. */
		if (p->size == SIOV_SOCKET_PATH_MAX)
			return siov_err_set(err, -EINVAL,
					    "parameter '%s' is %zu bytes long; Unix socket paths "
					    "are limited to %d bytes on Linux",
					    p->name, len, SIOV_SOCKET_PATH_MAX - 1);
		return siov_err_set(err, -EINVAL, "parameter '%s' is longer than %zu bytes",
				    p->name, p->size - 1);
	}
	memcpy(field, s, len + 1);
	return 0;
}

int siov_param_bool(const struct siov_param *p, struct json_object *v, void *field,
		    struct siov_err *err)
{
	if (!json_object_is_type(v, json_type_boolean))
		return param_fail(p, "must be a boolean (true or false)", err);
	*(bool *)field = json_object_get_boolean(v);
	return 0;
}

/* A JSON integer in 0..INT64_MAX. */
static int json_uint(const struct siov_param *p, struct json_object *v, uint64_t *out,
		     struct siov_err *err)
{
	int64_t i;

	if (!json_object_is_type(v, json_type_int))
		return param_fail(p, "must be an integer", err);
	i = json_object_get_int64(v);
	if (i < 0)
		return param_fail(p, "must not be negative", err);
	/* json-c saturates at INT64_MAX and keeps larger values as unsigned. */
	if (i == INT64_MAX && json_object_get_uint64(v) > (uint64_t)INT64_MAX)
		return param_fail(p, "is too large (the limit is 2^63-1)", err);
	*out = (uint64_t)i;
	return 0;
}

static void store_uint(void *field, size_t size, uint64_t val)
{
	switch (size) {
	case sizeof(uint8_t):
		*(uint8_t *)field = (uint8_t)val;
		break;
	case sizeof(uint16_t):
		*(uint16_t *)field = (uint16_t)val;
		break;
	case sizeof(uint32_t):
		*(uint32_t *)field = (uint32_t)val;
		break;
	default:
		*(uint64_t *)field = val;
		break;
	}
}

int siov_param_uint(const struct siov_param *p, struct json_object *v, void *field,
		    struct siov_err *err)
{
	uint64_t val;
	int rc = json_uint(p, v, &val, err);

	if (rc)
		return rc;
	if (val < p->min || val > p->max)
		return siov_err_set(err, -EINVAL,
				    "parameter '%s' must be between %" PRIu64 " and %" PRIu64,
				    p->name, p->min, p->max);
	store_uint(field, p->size, val);
	return 0;
}

int siov_parse_bytes(const char *s, uint64_t *out)
{
	static const char units[] = "KMGTPE";
	const char *u;
	uint64_t val = 0;
	unsigned shift = 0;

	if (*s < '0' || *s > '9')
		return -EINVAL;
	for (; *s >= '0' && *s <= '9'; s++) {
		if (val > ((uint64_t)INT64_MAX - (uint64_t)(*s - '0')) / 10)
			return -ERANGE;
		val = val * 10 + (uint64_t)(*s - '0');
	}
	/* The NUL check matters: strchr() would find the terminator. */
	if (*s && (u = strchr(units, toupper((unsigned char)*s))) != NULL) {
		shift = 10 * (unsigned)(u - units + 1);
		s++;
		if (*s == 'i')
			s++;
	}
	if (*s == 'B')
		s++;
	if (*s)
		return -EINVAL;
	if (shift && val > ((uint64_t)INT64_MAX >> shift))
		return -ERANGE;
	*out = val << shift;
	return 0;
}

int siov_param_bytes(const struct siov_param *p, struct json_object *v, void *field,
		     struct siov_err *err)
{
	const char *s;
	uint64_t val;
	int rc;

	if (json_object_is_type(v, json_type_int))
		return json_uint(p, v, field, err);
	if (!json_object_is_type(v, json_type_string))
		return param_fail(p, "must be an integer or a size string like \"4K\", \"1G\"",
				  err);
	s = json_object_get_string(v);
	rc = siov_parse_bytes(s, &val);
	if (rc == -ERANGE)
		return param_fail(p, "is too large (the limit is 2^63-1 bytes)", err);
	if (rc || strlen(s) != (size_t)json_object_get_string_len(v))
		return param_fail(p,
				  "must be a number of bytes, optionally with a binary suffix "
				  "(K, M, G, T, P, E), like \"512M\"",
				  err);
	*(uint64_t *)field = val;
	return 0;
}

static const struct siov_param *param_find(const struct siov_param *table, size_t n,
					   const char *name, size_t *idx)
{
	for (*idx = 0; *idx < n; (*idx)++)
		if (strcmp(table[*idx].name, name) == 0)
			return &table[*idx];
	return NULL;
}

int siov_params_parse(struct json_object *params, const struct siov_param *table, size_t n,
		      void *out, uint32_t *seen, struct siov_err *err)
{
	uint32_t mask = 0;
	size_t i;
	int rc;

	if (params && !json_object_is_type(params, json_type_object))
		return siov_err_set(err, -EINVAL, "params must be an object");
	if (params) {
		json_object_object_foreach(params, key, val)
		{
			const struct siov_param *p = param_find(table, n, key, &i);

			if (!p)
				return siov_err_set(err, -EINVAL, "unknown parameter '%.64s'", key);
			rc = p->parse(p, val, (char *)out + p->offset, err);
			if (rc)
				return rc;
			mask |= 1u << i;
		}
	}
	for (i = 0; i < n; i++)
		if (table[i].required && !(mask & (1u << i)))
			return siov_err_set(err, -EINVAL, "missing parameter '%s'", table[i].name);
	if (seen)
		*seen = mask;
	return 0;
}

/* ---- Backends ---- */

static int param_backend_type(const struct siov_param *p, struct json_object *v, void *field,
			      struct siov_err *err)
{
	const char *s;
	size_t len;
	int rc = param_string(p, v, &s, &len, err);

	if (rc)
		return rc;
	if (siov_backend_type_parse(s, field) < 0)
		return param_fail(
		    p, "must be one of \"null\", \"ram\", \"file\", \"nbd\", \"rbd\", \"mirror\"",
		    err);
	return 0;
}

/* A non-empty string that fits its field (URIs, pool and image names, client ids). */
static int param_text(const struct siov_param *p, struct json_object *v, void *field,
		      struct siov_err *err)
{
	const char *s;
	size_t len;
	int rc = param_string(p, v, &s, &len, err);

	if (rc)
		return rc;
	if (len == 0)
		return param_fail(p, "must not be empty", err);
	if (len >= p->size)
		return siov_err_set(err, -EINVAL, "parameter '%s' is longer than %zu bytes",
				    p->name, p->size - 1);
	memcpy(field, s, len + 1);
	return 0;
}

/* One member name into the next slot of the conf's members. */
static int member_add(const struct siov_param *p, struct siov_backend_conf *c, const char *s,
		      size_t len, struct siov_err *err)
{
	if (c->nmembers >= SIOV_MIRROR_MAX_MEMBERS)
		return param_fail(p, "lists more members than a mirror may have (8)", err);
	if (len == 0 || len >= SIOV_NAME_MAX)
		return param_fail(p, "holds a name that is empty or too long", err);
	memcpy(c->members[c->nmembers], s, len);
	c->members[c->nmembers][len] = '\0';
	if (!siov_name_valid(c->members[c->nmembers]))
		return param_fail(p, "holds an invalid backend name", err);
	c->nmembers++;
	return 0;
}

/* members: ["a", "b"] or "a,b" (what siovctl --members a,b sends). */
static int param_members(const struct siov_param *p, struct json_object *v, void *field,
			 struct siov_err *err)
{
	struct siov_backend_conf *c =
	    (void *)((char *)field - offsetof(struct siov_backend_conf, members));
	const char *s, *comma;
	size_t i, n;
	int rc;

	c->nmembers = 0;
	if (json_object_is_type(v, json_type_string)) {
		for (s = json_object_get_string(v);; s = comma + 1) {
			comma = strchr(s, ',');
			rc = member_add(p, c, s, comma ? (size_t)(comma - s) : strlen(s), err);
			if (rc || !comma)
				return rc;
		}
	}
	if (!json_object_is_type(v, json_type_array))
		return param_fail(p, "must be a list of backend names", err);
	n = json_object_array_length(v);
	for (i = 0; i < n; i++) {
		struct json_object *e = json_object_array_get_idx(v, i);

		if (!json_object_is_type(e, json_type_string))
			return param_fail(p, "must be a list of backend names", err);
		rc = member_add(p, c, json_object_get_string(e),
				(size_t)json_object_get_string_len(e), err);
		if (rc)
			return rc;
	}
	return 0;
}

#define BCONF(f) offsetof(struct siov_backend_conf, f), sizeof(((struct siov_backend_conf *)0)->f)
enum {
	BP_NAME,
	BP_TYPE,
	BP_PATH,
	BP_SIZE,
	BP_READONLY,
	BP_URI,
	BP_TLS_CREDS,
	BP_TIMEOUT_MS,
	BP_SETTLE_MS,
	BP_POOL,
	BP_IMAGE,
	BP_CONF,
	BP_ID,
	BP_MEMBERS,
	BP_RESYNC_RATE,
};
static const struct siov_param backend_params[] = {
    [BP_NAME] = {"name", true, siov_param_name, BCONF(name), 0, 0, "unique name of the backend"},
    [BP_TYPE] = {"type", true, param_backend_type, BCONF(type), 0, 0,
		 "null, ram, file, nbd, rbd or mirror"},
    [BP_PATH] = {"path", false, siov_param_abs_path, BCONF(path), 0, 0,
		 "type file: absolute path of a regular file or block device"},
    [BP_SIZE] = {"size", false, siov_param_bytes, BCONF(size), 0, 0,
		 "bytes (null, ram; file: created sparse at this size if missing)"},
    [BP_READONLY] = {"readonly", false, siov_param_bool, BCONF(readonly), 0, 0,
		     "refuse every write"},
    [BP_URI] = {"uri", false, param_text, BCONF(uri), 0, 0,
		"type nbd: nbd://HOST[:PORT]/EXPORT, nbds:// for TLS, nbd+unix:///EXPORT?socket=P"},
    [BP_TLS_CREDS] = {"tls_creds", false, siov_param_abs_path, BCONF(tls_creds), 0, 0,
		      "type nbd: directory of the TLS client credentials"},
    [BP_TIMEOUT_MS] = {"timeout_ms", false, siov_param_uint, BCONF(timeout_ms), 1, 3600000,
		       "type nbd, rbd: fail a request the server has not answered by then"},
    [BP_SETTLE_MS] = {"settle_ms", false, siov_param_uint, BCONF(settle_ms), 0, 600000,
		      "type nbd: how long to keep reconnecting before requests fail"},
    [BP_POOL] = {"pool", false, param_text, BCONF(pool), 0, 0, "type rbd: the Ceph pool"},
    [BP_IMAGE] = {"image", false, param_text, BCONF(image), 0, 0, "type rbd: the RBD image"},
    [BP_CONF] = {"conf", false, siov_param_abs_path, BCONF(ceph_conf), 0, 0,
		 "type rbd: ceph.conf to use"},
    [BP_ID] = {"id", false, param_text, BCONF(ceph_id), 0, 0, "type rbd: the Ceph client id"},
    [BP_MEMBERS] = {"members", false, param_members, BCONF(members), 0, 0,
		    "type mirror: its member backends, a list of names"},
    [BP_RESYNC_RATE] = {"resync_rate", false, siov_param_bytes, BCONF(resync_rate), 0, 0,
			"type mirror: bytes per second a resync may use"},
};

#define BIT(p)	  (1u << (p))
#define BP_COMMON (BIT(BP_NAME) | BIT(BP_TYPE) | BIT(BP_SIZE) | BIT(BP_READONLY))
/* Which parameters each type takes, and which of them it needs. */
static const struct {
	uint32_t allowed, required;
} backend_type_params[] = {
    [SIOV_BACKEND_NULL] = {BP_COMMON, 0},
    [SIOV_BACKEND_RAM] = {BP_COMMON, 0},
    [SIOV_BACKEND_FILE] = {BP_COMMON | BIT(BP_PATH), BIT(BP_PATH)},
    [SIOV_BACKEND_NBD] = {BP_COMMON | BIT(BP_URI) | BIT(BP_TLS_CREDS) | BIT(BP_TIMEOUT_MS) |
			      BIT(BP_SETTLE_MS),
			  BIT(BP_URI)},
    [SIOV_BACKEND_RBD] = {BP_COMMON | BIT(BP_POOL) | BIT(BP_IMAGE) | BIT(BP_CONF) | BIT(BP_ID) |
			      BIT(BP_TIMEOUT_MS),
			  BIT(BP_POOL) | BIT(BP_IMAGE)},
    /* A mirror's size is its members'. */
    [SIOV_BACKEND_MIRROR] = {BIT(BP_NAME) | BIT(BP_TYPE) | BIT(BP_READONLY) | BIT(BP_MEMBERS) |
				 BIT(BP_RESYNC_RATE),
			     BIT(BP_MEMBERS)},
};

/* Every parameter given is one the type takes, and every one it needs is given. */
static int backend_params_check(const struct siov_backend_conf *conf, uint32_t seen,
				struct siov_err *err)
{
	const char *type = siov_backend_type_name(conf->type);
	uint32_t allowed = backend_type_params[conf->type].allowed;
	uint32_t required = backend_type_params[conf->type].required;
	unsigned i;

	for (i = 0; i < SIOV_ARRAY_SIZE(backend_params); i++) {
		if ((seen & BIT(i)) && !(allowed & BIT(i)))
			return siov_err_set(err, -EINVAL,
					    "parameter '%s' is not valid for type '%s'",
					    backend_params[i].name, type);
		if ((required & BIT(i)) && !(seen & BIT(i)))
			return siov_err_set(err, -EINVAL,
					    "missing parameter '%s' (required for type '%s')",
					    backend_params[i].name, type);
	}
	/* A size is what an in-memory backend is made of: it cannot be 0. */
	if ((conf->type == SIOV_BACKEND_NULL || conf->type == SIOV_BACKEND_RAM) && conf->size == 0)
		return siov_err_set(err, -EINVAL,
				    "parameter 'size' is required for type '%s' and must be "
				    "greater than 0",
				    type);
	return 0;
}

int siov_backend_conf_from_json(struct json_object *params, struct siov_backend_conf *conf,
				struct siov_err *err)
{
	uint32_t seen;
	int rc;

	memset(conf, 0, sizeof(*conf));
	rc = siov_params_parse(params, backend_params, SIOV_ARRAY_SIZE(backend_params), conf, &seen,
			       err);
	if (rc)
		return rc;
	rc = backend_params_check(conf, seen, err);
	if (rc)
		return rc;
	if (!(seen & BIT(BP_TIMEOUT_MS)))
		conf->timeout_ms = SIOV_BACKEND_TIMEOUT_MS_DEFAULT;
	if (!(seen & BIT(BP_SETTLE_MS)))
		conf->settle_ms = SIOV_BACKEND_SETTLE_MS_DEFAULT;
	return 0;
}

static void add_str(struct json_object *o, const char *key, const char *val)
{
	if (val[0])
		json_object_object_add(o, key, json_object_new_string(val));
}

void siov_backend_remote_conf_to_json(struct json_object *o, const struct siov_backend_conf *conf)
{
	if (conf->type != SIOV_BACKEND_NBD && conf->type != SIOV_BACKEND_RBD)
		return;
	if (conf->type == SIOV_BACKEND_NBD) {
		add_str(o, "uri", conf->uri);
		add_str(o, "tls_creds", conf->tls_creds);
		json_object_object_add(o, "settle_ms", json_object_new_int64(conf->settle_ms));
	} else {
		add_str(o, "pool", conf->pool);
		add_str(o, "image", conf->image);
		add_str(o, "conf", conf->ceph_conf);
		add_str(o, "id", conf->ceph_id);
	}
	json_object_object_add(o, "timeout_ms", json_object_new_int64(conf->timeout_ms));
}

struct json_object *siov_backend_conf_to_json(const struct siov_backend_conf *conf)
{
	struct json_object *o = json_object_new_object();

	if (!o)
		return NULL;
	json_object_object_add(o, "name", json_object_new_string(conf->name));
	json_object_object_add(o, "type",
			       json_object_new_string(siov_backend_type_name(conf->type)));
	if (conf->type == SIOV_BACKEND_FILE)
		json_object_object_add(o, "path", json_object_new_string(conf->path));
	siov_backend_remote_conf_to_json(o, conf);
	if (conf->type == SIOV_BACKEND_MIRROR) {
		struct json_object *m = json_object_new_array();

		for (unsigned i = 0; m && i < conf->nmembers; i++)
			json_object_array_add(m, json_object_new_string(conf->members[i]));
		json_object_object_add(o, "members", m);
		if (conf->resync_rate)
			json_object_object_add(o, "resync_rate",
					       json_object_new_uint64(conf->resync_rate));
	} else {
		json_object_object_add(o, "size", json_object_new_uint64(conf->size));
	}
	json_object_object_add(o, "readonly", json_object_new_boolean(conf->readonly));
	return o;
}

/* ---- Exports ---- */

#define ECONF(f) offsetof(struct siov_export_conf, f), sizeof(((struct siov_export_conf *)0)->f)
static const struct siov_param export_params[] = {
    {"vdev", true, siov_param_name, ECONF(vdev), 0, 0, "the VDEV to serve (one export each)"},
    {"type", false, param_text, ECONF(type), 0, 0, "nbd (the default)"},
    {"listen", true, param_text, ECONF(listen), 0, 0, "ADDR:PORT or unix:PATH to listen on"},
    {"tls_creds", false, siov_param_abs_path, ECONF(tls_creds), 0, 0,
     "directory of the TLS server credentials"},
    {"insecure", false, siov_param_bool, ECONF(insecure), 0, 0,
     "allow plain TCP beyond loopback (no TLS)"},
};
const struct siov_param_table siov_export_param_table = {export_params,
							 SIOV_ARRAY_SIZE(export_params)};

int siov_export_conf_from_json(struct json_object *params, struct siov_export_conf *conf,
			       struct siov_err *err)
{
	int rc;

	memset(conf, 0, sizeof(*conf));
	rc = siov_params_parse(params, export_params, SIOV_ARRAY_SIZE(export_params), conf, NULL,
			       err);
	if (rc)
		return rc;
	if (!conf->type[0])
		strcpy(conf->type, "nbd");
	if (strcmp(conf->type, "nbd") != 0)
		return siov_err_set(err, -EINVAL, "parameter 'type' must be \"nbd\"");
	return 0;
}

struct json_object *siov_export_conf_to_json(const struct siov_export_conf *conf)
{
	struct json_object *o = json_object_new_object();

	if (!o)
		return NULL;
	json_object_object_add(o, "vdev", json_object_new_string(conf->vdev));
	json_object_object_add(o, "type", json_object_new_string(conf->type));
	json_object_object_add(o, "listen", json_object_new_string(conf->listen));
	add_str(o, "tls_creds", conf->tls_creds);
	if (conf->insecure)
		json_object_object_add(o, "insecure", json_object_new_boolean(true));
	return o;
}

static void qos_params_to_json(struct json_object *o, const struct siov_qos_params *q);

/* ---- VDEVs ---- */

const char *siov_vdev_type_name(enum siov_vdev_type type)
{
	return type == SIOV_VDEV_BLK ? "blk" : type == SIOV_VDEV_NET ? "net" : "unknown";
}

static int param_vdev_type(const struct siov_param *p, struct json_object *v, void *field,
			   struct siov_err *err)
{
	const char *s;
	size_t len;
	int rc = param_string(p, v, &s, &len, err);

	if (rc)
		return rc;
	if (strcmp(s, "blk") == 0)
		*(enum siov_vdev_type *)field = SIOV_VDEV_BLK;
	else if (strcmp(s, "net") == 0)
		*(enum siov_vdev_type *)field = SIOV_VDEV_NET;
	else
		return param_fail(p, "must be \"blk\" or \"net\"", err);
	return 0;
}

/* "52:54:00:12:34:56": a unicast, non-zero MAC (the switch refuses the rest too). */
static int param_mac(const struct siov_param *p, struct json_object *v, void *field,
		     struct siov_err *err)
{
	unsigned b[6], i;
	const char *s;
	size_t len;
	int rc = param_string(p, v, &s, &len, err);

	if (rc)
		return rc;
	for (i = 0; len == 17 && i < 17; i++)
		if (i % 3 == 2 ? s[i] != ':' : !isxdigit((unsigned char)s[i]))
			break;
	if (len != 17 || i != 17)
		return param_fail(p, "must be a MAC address like 52:54:00:12:34:56", err);
	for (i = 0; i < 6; i++)
		b[i] = (unsigned)strtoul((char[]){s[3 * i], s[3 * i + 1], 0}, NULL, 16);
	if ((b[0] & 1) || !(b[0] | b[1] | b[2] | b[3] | b[4] | b[5]))
		return param_fail(p, "must be a unicast, non-zero MAC address", err);
	for (i = 0; i < 6; i++)
		((uint8_t *)field)[i] = (uint8_t)b[i];
	return 0;
}

/*
 * "report", "hold" or "hold:T": T in seconds, or with a unit (500ms, 30s, 5m).
 * conf points at error_policy; hold_timeout_ms follows it in struct siov_vdev_conf.
 */
int siov_error_policy_parse(const char *s, enum siov_error_policy *p, uint32_t *timeout_ms)
{
	unsigned long long v;
	char *end;

	*timeout_ms = 0;
	if (!strcmp(s, "report")) {
		*p = SIOV_ERROR_REPORT;
		return 0;
	}
	if (strncmp(s, "hold", 4) || (s[4] && s[4] != ':'))
		return -EINVAL;
	*p = SIOV_ERROR_HOLD;
	if (!s[4])
		return 0;
	if (!isdigit((unsigned char)s[5]))
		return -EINVAL;
	errno = 0;
	v = strtoull(s + 5, &end, 10);
	if (errno || v > 86400ull * 1000)
		return -ERANGE;
	if (!strcmp(end, "ms"))
		;
	else if (!*end || !strcmp(end, "s"))
		v *= 1000;
	else if (!strcmp(end, "m"))
		v *= 60000;
	else
		return -EINVAL;
	if (v > 86400ull * 1000)
		return -ERANGE;
	*timeout_ms = (uint32_t)v;
	return 0;
}

void siov_error_policy_format(enum siov_error_policy p, uint32_t timeout_ms, char *buf, size_t n)
{
	if (p == SIOV_ERROR_REPORT)
		snprintf(buf, n, "report");
	else if (!timeout_ms)
		snprintf(buf, n, "hold");
	else if (timeout_ms % 1000)
		snprintf(buf, n, "hold:%ums", timeout_ms);
	else
		snprintf(buf, n, "hold:%us", timeout_ms / 1000);
}

int siov_param_error_policy(const struct siov_param *p, struct json_object *v, void *field,
			    struct siov_err *err)
{
	struct siov_vdev_conf *c =
	    (void *)((char *)field - offsetof(struct siov_vdev_conf, error_policy));
	const char *s;
	size_t len;
	int rc = param_string(p, v, &s, &len, err);

	if (rc)
		return rc;
	if (siov_error_policy_parse(s, &c->error_policy, &c->hold_timeout_ms))
		return param_fail(p,
				  "must be \"report\", \"hold\" or \"hold:TIMEOUT\" (seconds, "
				  "or with ms, s or m; at most a day)",
				  err);
	return 0;
}

#define VCONF(f) offsetof(struct siov_vdev_conf, f), sizeof(((struct siov_vdev_conf *)0)->f)
/* The request limits by their NIC names (a net port counts packets). */
#define PPS_PARAMS(CONF)                                                                           \
	{"pps_limit",                                                                              \
	 false,                                                                                    \
	 siov_param_uint,                                                                          \
	 CONF(qos.iops_limit),                                                                     \
	 0,                                                                                        \
	 INT64_MAX,                                                                                \
	 "net: packets per second (iops_limit by its NIC name)"},                                  \
	    {"pps_burst",                                                                          \
	     false,                                                                                \
	     siov_param_uint,                                                                      \
	     CONF(qos.iops_burst),                                                                 \
	     0,                                                                                    \
	     INT64_MAX,                                                                            \
	     "net: packet burst (iops_burst)"},                                                    \
	{                                                                                          \
		"pps_min", false, siov_param_uint, CONF(qos.iops_min), 0, INT64_MAX,               \
		    "net: reserved packets per second (iops_min)"                                  \
	}
/* QoS parameters, the same in vdev_create, vdev_set_qos and the group methods. */
#define QOS_PARAMS(CONF)                                                                           \
	{"iops_limit",                                                                             \
	 false,                                                                                    \
	 siov_param_uint,                                                                          \
	 CONF(qos.iops_limit),                                                                     \
	 0,                                                                                        \
	 INT64_MAX,                                                                                \
	 "requests per second at most (0: no limit)"},                                             \
	    {"bps_limit",                                                                          \
	     false,                                                                                \
	     siov_param_bytes,                                                                     \
	     CONF(qos.bps_limit),                                                                  \
	     0,                                                                                    \
	     0,                                                                                    \
	     "bytes per second at most, e.g. 100M (0: no limit)"},                                 \
	    {"iops_burst",                                                                         \
	     false,                                                                                \
	     siov_param_uint,                                                                      \
	     CONF(qos.iops_burst),                                                                 \
	     0,                                                                                    \
	     INT64_MAX,                                                                            \
	     "requests above the limit a burst may take (0: a tenth of a second's worth)"},        \
	    {"bps_burst",                                                                          \
	     false,                                                                                \
	     siov_param_bytes,                                                                     \
	     CONF(qos.bps_burst),                                                                  \
	     0,                                                                                    \
	     0,                                                                                    \
	     "bytes above the limit a burst may take"},                                            \
	    {"iops_min",                                                                           \
	     false,                                                                                \
	     siov_param_uint,                                                                      \
	     CONF(qos.iops_min),                                                                   \
	     0,                                                                                    \
	     INT64_MAX,                                                                            \
	     "requests per second reserved, served before weights"},                               \
	{                                                                                          \
		"weight", false, siov_param_uint, CONF(qos.weight), 0, SIOV_QOS_WEIGHT_MAX,        \
		    "share of an engine when it is the bottleneck, 1..10000 (default 100)"         \
	}
static const struct siov_param vdev_params[] = {
    {"name", true, siov_param_name, VCONF(name), 0, 0, "unique name of the VDEV"},
    {"type", false, param_vdev_type, VCONF(type), 0, 0, "blk (the default) or net"},
    {"backend", false, siov_param_name, VCONF(backend), 0, 0,
     "blk: the backend it is a window of (required)"},
    {"offset", false, siov_param_bytes, VCONF(offset), 0, 0,
     "start of the window in the backend, bytes, multiple of 512"},
    {"size", false, siov_param_bytes, VCONF(size), 0, 0,
     "bytes, multiple of 512 (default: to the end of the backend)"},
    {"queues", false, siov_param_uint, VCONF(queues), 1, SIOV_VDEV_MAX_QUEUES,
     "virtqueues, 1..64 (default 1)"},
    {"readonly", false, siov_param_bool, VCONF(readonly), 0, 0, "a read-only disk"},
    {"allow_overlap", false, siov_param_bool, VCONF(allow_overlap), 0, 0,
     "let the window overlap other VDEVs' windows"},
    {"socket", true, siov_param_abs_path, VCONF(socket), 0, 0,
     "absolute path of the vhost-user socket to create (at most 107 bytes)"},
    {"group", false, siov_param_name, VCONF(group), 0, 0,
     "QoS group sharing its limits (fixed at creation)"},
    {"error_policy", false, siov_param_error_policy, VCONF(error_policy), 0, 0,
     "report (default) or hold[:MS]: what a backend error does"},
    /* A vdev_move under way, as the state file records it. */
    {"move_backend", false, siov_param_name, VCONF(move_backend), 0, 0,
     "(state) the backend a move is copying to"},
    {"move_offset", false, siov_param_bytes, VCONF(move_offset), 0, 0,
     "(state) where the move's window starts there"},
    QOS_PARAMS(VCONF),
    /* net: a port on a network; its limits count packets (pps_* are iops_* by their name for NICs)
     */
    {"network", false, siov_param_name, VCONF(network), 0, 0,
     "net: the network the port is on (required)"},
    {"mac", false, param_mac, VCONF(mac), 0, 0,
     "net: the port's MAC (default: derived from the name)"},
    {"allow_spoof", false, siov_param_bool, VCONF(allow_spoof), 0, 0,
     "net: let the port send with any source MAC"},
    PPS_PARAMS(VCONF),
};

static unsigned vdev_param_index(const char *name)
{
	unsigned i;

	for (i = 0; i < SIOV_ARRAY_SIZE(vdev_params) && strcmp(vdev_params[i].name, name); i++)
		;
	return i;
}

/* Which parameters belong to which type: blk windows a backend, net joins a network. */
static int vdev_type_check(const struct siov_vdev_conf *c, uint32_t seen, struct siov_err *err)
{
	static const char *const blk_only[] = {"backend",  "offset",	    "size",
					       "readonly", "allow_overlap", "error_policy"};
	static const char *const net_only[] = {"network", "mac", "allow_spoof"};
	bool net = c->type == SIOV_VDEV_NET;
	size_t i, j;

	for (i = 0; i < SIOV_ARRAY_SIZE(vdev_params); i++) {
		if (!(seen & (1u << i)))
			continue;
		for (j = 0; j < SIOV_ARRAY_SIZE(blk_only); j++)
			if (net && !strcmp(vdev_params[i].name, blk_only[j]))
				return siov_err_set(err, -EINVAL, "parameter '%s' is for blk VDEVs",
						    blk_only[j]);
		for (j = 0; j < SIOV_ARRAY_SIZE(net_only); j++)
			if (!net && !strcmp(vdev_params[i].name, net_only[j]))
				return siov_err_set(err, -EINVAL, "parameter '%s' is for net VDEVs",
						    net_only[j]);
	}
	if (net ? !c->network[0] : !c->backend[0])
		return siov_err_set(err, -EINVAL, "missing required parameter '%s'",
				    net ? "network" : "backend");
	return 0;
}

int siov_vdev_conf_from_json(struct json_object *params, struct siov_vdev_conf *conf,
			     struct siov_err *err)
{
	uint32_t seen = 0;
	int rc;

	memset(conf, 0, sizeof(*conf));
	conf->type = SIOV_VDEV_BLK;
	rc = siov_params_parse(params, vdev_params, SIOV_ARRAY_SIZE(vdev_params), conf, &seen, err);
	if (rc)
		return rc;
	conf->mac_set = seen & (1u << vdev_param_index("mac"));
	if ((rc = vdev_type_check(conf, seen, err)))
		return rc;
	/* The guest addresses the window in 512-byte sectors. */
	if (conf->offset % 512)
		return siov_err_set(err, -EINVAL, "parameter 'offset' must be a multiple of 512");
	if (conf->size % 512)
		return siov_err_set(err, -EINVAL, "parameter 'size' must be a multiple of 512");
	return 0;
}

void siov_mac_format(const uint8_t *m, char *buf, size_t size)
{
	snprintf(buf, size, "%02x:%02x:%02x:%02x:%02x:%02x", m[0], m[1], m[2], m[3], m[4], m[5]);
}

static struct json_object *net_conf_to_json(struct json_object *o,
					    const struct siov_vdev_conf *conf)
{
	char mac[18];

	siov_mac_format(conf->mac, mac, sizeof(mac));
	json_object_object_add(o, "network", json_object_new_string(conf->network));
	if (conf->mac_set)
		json_object_object_add(o, "mac", json_object_new_string(mac));
	json_object_object_add(o, "queues", json_object_new_int(conf->queues ? conf->queues : 1));
	json_object_object_add(o, "allow_spoof", json_object_new_boolean(conf->allow_spoof));
	json_object_object_add(o, "socket", json_object_new_string(conf->socket));
	if (conf->group[0])
		json_object_object_add(o, "group", json_object_new_string(conf->group));
	qos_params_to_json(o, &conf->qos);
	return o;
}

struct json_object *siov_vdev_conf_to_json(const struct siov_vdev_conf *conf)
{
	struct json_object *o = json_object_new_object();

	if (!o)
		return NULL;
	json_object_object_add(o, "name", json_object_new_string(conf->name));
	json_object_object_add(o, "type", json_object_new_string(siov_vdev_type_name(conf->type)));
	if (conf->type == SIOV_VDEV_NET)
		return net_conf_to_json(o, conf);
	json_object_object_add(o, "backend", json_object_new_string(conf->backend));
	json_object_object_add(o, "offset", json_object_new_uint64(conf->offset));
	json_object_object_add(o, "size", json_object_new_uint64(conf->size));
	/* Left out when unset: the VDEV then offers as many queues as the front end starts. */
	if (conf->queues)
		json_object_object_add(o, "queues", json_object_new_int(conf->queues));
	json_object_object_add(o, "readonly", json_object_new_boolean(conf->readonly));
	json_object_object_add(o, "allow_overlap", json_object_new_boolean(conf->allow_overlap));
	json_object_object_add(o, "socket", json_object_new_string(conf->socket));
	if (conf->group[0])
		json_object_object_add(o, "group", json_object_new_string(conf->group));
	if (conf->error_policy != SIOV_ERROR_REPORT) {
		char pol[32];

		siov_error_policy_format(conf->error_policy, conf->hold_timeout_ms, pol,
					 sizeof(pol));
		json_object_object_add(o, "error_policy", json_object_new_string(pol));
	}
	if (conf->move_backend[0]) {
		json_object_object_add(o, "move_backend",
				       json_object_new_string(conf->move_backend));
		json_object_object_add(o, "move_offset", json_object_new_uint64(conf->move_offset));
	}
	qos_params_to_json(o, &conf->qos);
	return o;
}

static void qos_params_to_json(struct json_object *o, const struct siov_qos_params *q)
{
	/* Only what differs from the default, so that a plain VDEV's entry stays plain. */
	if (q->iops_limit)
		json_object_object_add(o, "iops_limit", json_object_new_uint64(q->iops_limit));
	if (q->bps_limit)
		json_object_object_add(o, "bps_limit", json_object_new_uint64(q->bps_limit));
	if (q->iops_burst)
		json_object_object_add(o, "iops_burst", json_object_new_uint64(q->iops_burst));
	if (q->bps_burst)
		json_object_object_add(o, "bps_burst", json_object_new_uint64(q->bps_burst));
	if (q->iops_min)
		json_object_object_add(o, "iops_min", json_object_new_uint64(q->iops_min));
	if (q->weight)
		json_object_object_add(o, "weight", json_object_new_int64(q->weight));
}

struct json_object *siov_vdev_conf_qos_to_json(const struct siov_vdev_conf *conf)
{
	struct json_object *o = json_object_new_object();

	if (!o)
		return NULL;
	qos_params_to_json(o, &conf->qos);
	return o;
}

/* ---- QoS groups and run-time QoS changes ---- */

#define GCONF(f) offsetof(struct siov_group_conf, f), sizeof(((struct siov_group_conf *)0)->f)
static const struct siov_param group_params[] = {
    {"name", true, siov_param_name, GCONF(name), 0, 0, "name of the group (or VDEV)"},
    QOS_PARAMS(GCONF),
    /* vdev_set_qos takes a net port's limits by the names vdev_create took them. */
    PPS_PARAMS(GCONF),
};

const struct siov_param_table siov_backend_param_table = {backend_params,
							  SIOV_ARRAY_SIZE(backend_params)};
const struct siov_param_table siov_vdev_param_table = {vdev_params, SIOV_ARRAY_SIZE(vdev_params)};
const struct siov_param_table siov_group_param_table = {group_params,
							SIOV_ARRAY_SIZE(group_params)};

const char *siov_param_type(const struct siov_param *p)
{
	if (p->parse == siov_param_bool)
		return "bool";
	if (p->parse == siov_param_uint)
		return "integer";
	if (p->parse == siov_param_bytes)
		return "bytes";
	if (p->parse == siov_param_abs_path)
		return "path";
	return "string";
}

int siov_group_conf_from_json(struct json_object *params, struct siov_group_conf *conf,
			      uint32_t *seen, struct siov_err *err)
{
	memset(conf, 0, sizeof(*conf));
	return siov_params_parse(params, group_params, SIOV_ARRAY_SIZE(group_params), conf, seen,
				 err);
}

void siov_qos_params_merge(struct siov_qos_params *cur, const struct siov_group_conf *req,
			   uint32_t seen)
{
	struct siov_group_conf out = {.qos = *cur};

	/* Entry 0 is the name; the others are the QoS fields, copied if given. */
	for (size_t i = 1; i < SIOV_ARRAY_SIZE(group_params); i++)
		if (seen & (1u << i))
			memcpy((char *)&out + group_params[i].offset,
			       (const char *)req + group_params[i].offset, group_params[i].size);
	*cur = out.qos;
}

struct json_object *siov_group_conf_to_json(const struct siov_group_conf *conf)
{
	struct json_object *o = json_object_new_object();

	if (!o)
		return NULL;
	json_object_object_add(o, "name", json_object_new_string(conf->name));
	qos_params_to_json(o, &conf->qos);
	return o;
}

/* ---- Networks ---- */

/* "tap:IFNAME" with a name the kernel would take (1..15 characters, no '/', ':' or space). */
static int param_uplink(const struct siov_param *p, struct json_object *v, void *field,
			struct siov_err *err)
{
	const char *s;
	size_t len, i;
	int rc = param_string(p, v, &s, &len, err);

	if (rc)
		return rc;
	if (len == 0) {
		*(char *)field = '\0';
		return 0;
	}
	if (strncmp(s, "tap:", 4) || len < 5 || len > 4 + 15)
		return param_fail(p, "must be \"tap:IFNAME\" (IFNAME 1 to 15 characters)", err);
	for (i = 4; i < len; i++)
		if (s[i] == '/' || s[i] == ':' || s[i] <= ' ' || s[i] > '~')
			return param_fail(p, "has a character an interface name cannot have", err);
	memcpy(field, s, len + 1);
	return 0;
}

#define NCONF(f) offsetof(struct siov_network_conf, f), sizeof(((struct siov_network_conf *)0)->f)
static const struct siov_param network_params[] = {
    {"name", true, siov_param_name, NCONF(name), 0, 0, "unique name of the network (an L2 domain)"},
    {"mtu", false, siov_param_uint, NCONF(mtu), SIOV_NET_MTU_MIN, SIOV_NET_MTU_MAX,
     "largest frame payload on the network"},
    {"uplink", false, param_uplink, NCONF(uplink), 0, 0,
     "tap:IFNAME: a TAP device as one more port"},
};
const struct siov_param_table siov_network_param_table = {network_params,
							  SIOV_ARRAY_SIZE(network_params)};

int siov_network_conf_from_json(struct json_object *params, struct siov_network_conf *conf,
				struct siov_err *err)
{
	memset(conf, 0, sizeof(*conf));
	conf->mtu = SIOV_NET_MTU_DEFAULT;
	return siov_params_parse(params, network_params, SIOV_ARRAY_SIZE(network_params), conf,
				 NULL, err);
}

struct json_object *siov_network_conf_to_json(const struct siov_network_conf *conf)
{
	struct json_object *o = json_object_new_object();

	if (!o)
		return NULL;
	json_object_object_add(o, "name", json_object_new_string(conf->name));
	json_object_object_add(o, "mtu", json_object_new_int64(conf->mtu));
	if (conf->uplink[0])
		json_object_object_add(o, "uplink", json_object_new_string(conf->uplink));
	return o;
}
