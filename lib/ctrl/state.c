/*
 * The persisted configuration, DIR/siovd.json:
 *
 *   {"version": 1, "backends": [...], "groups": [...], "networks": [...], "vdevs": [...]}
 *
 * where each entry has exactly the params of backend_create / group_create /
 * network_create / vdev_create (with the QoS parameters in force, as vdev_set_qos and
 * group_set_qos left them), and
 * is read back by the same conversion the RPC methods use.  Saving writes a
 * temporary file, fsyncs it, renames it over the old one and fsyncs the
 * directory, so that a crash at any moment leaves either the old or the new
 * configuration, never a mix.  Loading treats the file as hostile: anything
 * malformed refuses the whole file (siovd must not come up quietly missing
 * half its devices); entries the VDCM cannot recreate (a backing file gone)
 * are logged and skipped.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "siov_internal/log.h"
#include "siov_internal/state.h"
#include "rpc_internal.h"

#define STATE_FILE    "siovd.json"
#define STATE_TMP     ".siovd.json.tmp"
#define STATE_VERSION 1
/* Far more than thousands of entries need; a bigger file is not ours. */
#define STATE_MAX_SIZE (64u << 20)

/* ---- Save ---- */

struct gather {
	struct json_object *arr;
	bool failed;
};

static void gather_add(struct gather *g, struct json_object *o)
{
	if (!o || json_object_array_add(g->arr, o) < 0) {
		json_object_put(o);
		g->failed = true;
	}
}

static void gather_backend(const struct siov_backend_info *info, void *arg)
{
	gather_add(arg, siov_backend_conf_to_json(info->conf));
}

static void gather_vdev(const struct siov_vdev_info *info, void *arg)
{
	gather_add(arg, siov_vdev_conf_to_json(info->conf));
}

static void gather_group(const struct siov_group_info *info, void *arg)
{
	gather_add(arg, siov_group_conf_to_json(info->conf));
}

static void gather_export(const struct siov_export_conf *conf, const struct siov_export_stats *st,
			  void *arg)
{
	(void)st;
	gather_add(arg, siov_export_conf_to_json(conf));
}

static void gather_network(const struct siov_network_info *info, void *arg)
{
	gather_add(arg, siov_network_conf_to_json(info->conf));
}

/* Optional arrays are left out when empty, so that a file without them reads as before. */
static void add_optional(struct json_object *root, const char *key, struct json_object *arr)
{
	if (json_object_array_length(arr))
		json_object_object_add(root, key, arr);
	else
		json_object_put(arr);
}

static struct json_object *state_to_json(struct siov_vdcm *vdcm)
{
	struct gather x = {json_object_new_array(), false};
	struct gather b = {json_object_new_array(), false};
	struct gather g = {json_object_new_array(), false};
	struct gather v = {json_object_new_array(), false};
	struct gather n = {json_object_new_array(), false};
	struct json_object *root = json_object_new_object();

	if (!b.arr || !g.arr || !v.arr || !n.arr || !x.arr || !root)
		goto err;
	siov_vdcm_backend_foreach(vdcm, gather_backend, &b);
	siov_vdcm_group_foreach(vdcm, gather_group, &g);
	siov_vdcm_network_foreach(vdcm, gather_network, &n);
	siov_vdcm_vdev_foreach(vdcm, gather_vdev, &v);
	siov_vdcm_export_foreach(vdcm, gather_export, &x);
	if (b.failed || g.failed || v.failed || n.failed || x.failed)
		goto err;
	json_object_object_add(root, "version", json_object_new_int(STATE_VERSION));
	json_object_object_add(root, "backends", b.arr);
	add_optional(root, "groups", g.arr);
	add_optional(root, "networks", n.arr);
	json_object_object_add(root, "vdevs", v.arr);
	add_optional(root, "exports", x.arr);
	return root;

err:
	json_object_put(b.arr);
	json_object_put(g.arr);
	json_object_put(n.arr);
	json_object_put(v.arr);
	json_object_put(x.arr);
	json_object_put(root);
	return NULL;
}

static int write_all(int fd, const char *buf, size_t len)
{
	while (len) {
		ssize_t n = write(fd, buf, len);
		if (n < 0) {
			if (errno == EINTR)
				continue;
			return -errno;
		}
		buf += n;
		len -= (size_t)n;
	}
	return 0;
}

static int write_tmp(const char *path, const char *text, struct siov_err *err)
{
	int fd, rc;

	fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOFOLLOW, 0600);
	if (fd < 0)
		return siov_err_set(err, -errno, "cannot create %s: %s", path, strerror(errno));
	rc = write_all(fd, text, strlen(text));
	if (rc == 0)
		rc = write_all(fd, "\n", 1);
	if (rc == 0 && fsync(fd) < 0)
		rc = -errno;
	if (close(fd) < 0 && rc == 0)
		rc = -errno;
	if (rc < 0)
		return siov_err_set(err, rc, "cannot write %s: %s", path, strerror(-rc));
	return 0;
}

/* The rename is only durable once the directory itself is on disk. */
static int sync_dir(const char *dir, struct siov_err *err)
{
	int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	int rc = 0;

	if (fd < 0)
		return siov_err_set(err, -errno, "cannot open %s: %s", dir, strerror(errno));
	if (fsync(fd) < 0)
		rc = siov_err_set(err, -errno, "cannot sync %s: %s", dir, strerror(errno));
	close(fd);
	return rc;
}

static int state_path(char *buf, size_t size, const char *dir, const char *file,
		      struct siov_err *err)
{
	int n = snprintf(buf, size, "%s/%s", dir, file);

	if (n < 0 || (size_t)n >= size)
		return siov_err_set(err, -ENAMETOOLONG, "state dir path too long: %s", dir);
	return 0;
}

int siov_state_save(struct siov_vdcm *vdcm, const char *dir, struct siov_err *err)
{
	char tmp[4096], path[4096];
	struct json_object *root;
	const char *text;
	int rc;

	if ((rc = state_path(tmp, sizeof(tmp), dir, STATE_TMP, err)) < 0 ||
	    (rc = state_path(path, sizeof(path), dir, STATE_FILE, err)) < 0)
		return rc;
	root = state_to_json(vdcm);
	if (!root)
		return siov_err_set(err, -ENOMEM, "out of memory while saving the state");
	text =
	    json_object_to_json_string_ext(root, JSON_C_TO_STRING_PRETTY | JSON_C_TO_STRING_SPACED |
						     JSON_C_TO_STRING_NOSLASHESCAPE);
	rc = text ? write_tmp(tmp, text, err)
		  : siov_err_set(err, -ENOMEM, "out of memory while saving the state");
	json_object_put(root);
	if (rc < 0)
		goto err_tmp;
	if (rename(tmp, path) < 0) {
		rc = siov_err_set(err, -errno, "cannot rename %s to %s: %s", tmp, path,
				  strerror(errno));
		goto err_tmp;
	}
	return sync_dir(dir, err);

err_tmp:
	unlink(tmp);
	return rc;
}

/* ---- Load ---- */

/* Reads path whole; *text is NULL (and 0 returned) if the file does not exist. */
static int read_file(const char *path, char **text, size_t *len, struct siov_err *err)
{
	struct stat st;
	ssize_t n;
	int fd, rc = 0;

	*text = NULL;
	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return errno == ENOENT
			   ? 0
			   : siov_err_set(err, -errno, "cannot open %s: %s", path, strerror(errno));
	if (fstat(fd, &st) < 0 || !S_ISREG(st.st_mode) || st.st_size > (off_t)STATE_MAX_SIZE) {
		rc = siov_err_set(err, -EINVAL, "%s: not a regular file of at most %u bytes", path,
				  STATE_MAX_SIZE);
		goto out;
	}
	*text = malloc((size_t)st.st_size + 1);
	if (!*text) {
		rc = siov_err_set(err, -ENOMEM, "out of memory reading %s", path);
		goto out;
	}
	n = pread(fd, *text, (size_t)st.st_size, 0);
	if (n != st.st_size) {
		rc = siov_err_set(err, n < 0 ? -errno : -EIO, "cannot read %s", path);
		free(*text);
		*text = NULL;
		goto out;
	}
	(*text)[n] = '\0';
	*len = (size_t)n;
out:
	close(fd);
	return rc;
}

/* Parses text as exactly one JSON object. */
static int parse_root(const char *path, const char *text, size_t len, struct json_object **out,
		      struct siov_err *err)
{
	struct json_tokener *tok = json_tokener_new();
	enum json_tokener_error jerr;
	struct json_object *root;

	if (!tok)
		return siov_err_set(err, -ENOMEM, "out of memory");
	json_tokener_set_flags(tok, JSON_TOKENER_STRICT);
	root = json_tokener_parse_ex(tok, text, (int)len);
	jerr = json_tokener_get_error(tok);
	json_tokener_free(tok);
	if (jerr == json_tokener_continue)
		jerr = json_tokener_error_parse_eof;
	if (jerr != json_tokener_success || !json_object_is_type(root, json_type_object)) {
		json_object_put(root);
		return siov_err_set(err, -EINVAL, "%s is not a JSON object: %s", path,
				    jerr != json_tokener_success ? json_tokener_error_desc(jerr)
								 : "wrong type");
	}
	*out = root;
	return 0;
}

/* The configurations the file describes, all checked before any is created. */
struct state_confs {
	struct siov_backend_conf *backends;
	size_t nbackends;
	struct siov_group_conf *groups;
	size_t ngroups;
	struct siov_network_conf *networks;
	size_t nnetworks;
	struct siov_vdev_conf *vdevs;
	size_t nvdevs;
	struct siov_export_conf *exports;
	size_t nexports;
};

static int get_array(const char *path, struct json_object *root, const char *key,
		     struct json_object **arr, struct siov_err *err)
{
	*arr = NULL;
	if (!json_object_object_get_ex(root, key, arr))
		return 0; /* an empty configuration may leave it out */
	if (!json_object_is_type(*arr, json_type_array))
		return siov_err_set(err, -EINVAL, "%s: '%s' must be an array", path, key);
	return 0;
}

static int check_root(const char *path, struct json_object *root, struct siov_err *err)
{
	struct json_object *ver;

	json_object_object_foreach(root, key, val)
	{
		(void)val;
		if (strcmp(key, "version") && strcmp(key, "backends") && strcmp(key, "groups") &&
		    strcmp(key, "networks") && strcmp(key, "vdevs") && strcmp(key, "exports"))
			return siov_err_set(err, -EINVAL, "%s: unknown member '%.64s'", path, key);
	}
	if (!json_object_object_get_ex(root, "version", &ver) ||
	    !json_object_is_type(ver, json_type_int) || json_object_get_int64(ver) != STATE_VERSION)
		return siov_err_set(err, -EINVAL, "%s: 'version' must be %d", path, STATE_VERSION);
	return 0;
}

static int parse_backends(const char *path, struct json_object *arr, struct state_confs *c,
			  struct siov_err *err)
{
	size_t n = arr ? json_object_array_length(arr) : 0;
	struct siov_err e = {0};

	c->backends = calloc(n ? n : 1, sizeof(*c->backends));
	if (!c->backends)
		return siov_err_set(err, -ENOMEM, "out of memory");
	for (size_t i = 0; i < n; i++) {
		if (siov_backend_conf_from_json(json_object_array_get_idx(arr, i), &c->backends[i],
						&e))
			return siov_err_set(err, -EINVAL, "%s: backends[%zu]: %s", path, i, e.msg);
	}
	c->nbackends = n;
	return 0;
}

static int parse_groups(const char *path, struct json_object *arr, struct state_confs *c,
			struct siov_err *err)
{
	size_t n = arr ? json_object_array_length(arr) : 0;
	struct siov_err e = {0};

	c->groups = calloc(n ? n : 1, sizeof(*c->groups));
	if (!c->groups)
		return siov_err_set(err, -ENOMEM, "out of memory");
	for (size_t i = 0; i < n; i++) {
		if (siov_group_conf_from_json(json_object_array_get_idx(arr, i), &c->groups[i],
					      NULL, &e))
			return siov_err_set(err, -EINVAL, "%s: groups[%zu]: %s", path, i, e.msg);
	}
	c->ngroups = n;
	return 0;
}

static int parse_networks(const char *path, struct json_object *arr, struct state_confs *c,
			  struct siov_err *err)
{
	size_t n = arr ? json_object_array_length(arr) : 0;
	struct siov_err e = {0};

	c->networks = calloc(n ? n : 1, sizeof(*c->networks));
	if (!c->networks)
		return siov_err_set(err, -ENOMEM, "out of memory");
	for (size_t i = 0; i < n; i++) {
		if (siov_network_conf_from_json(json_object_array_get_idx(arr, i), &c->networks[i],
						&e))
			return siov_err_set(err, -EINVAL, "%s: networks[%zu]: %s", path, i, e.msg);
	}
	c->nnetworks = n;
	return 0;
}

static int parse_vdevs(const char *path, struct json_object *arr, struct state_confs *c,
		       struct siov_err *err)
{
	size_t n = arr ? json_object_array_length(arr) : 0;
	struct siov_err e = {0};

	c->vdevs = calloc(n ? n : 1, sizeof(*c->vdevs));
	if (!c->vdevs)
		return siov_err_set(err, -ENOMEM, "out of memory");
	for (size_t i = 0; i < n; i++) {
		if (siov_vdev_conf_from_json(json_object_array_get_idx(arr, i), &c->vdevs[i], &e))
			return siov_err_set(err, -EINVAL, "%s: vdevs[%zu]: %s", path, i, e.msg);
	}
	c->nvdevs = n;
	return 0;
}

static int parse_exports(const char *path, struct json_object *arr, struct state_confs *c,
			 struct siov_err *err)
{
	size_t n = arr ? json_object_array_length(arr) : 0;
	struct siov_err e = {0};

	c->exports = calloc(n ? n : 1, sizeof(*c->exports));
	if (!c->exports)
		return siov_err_set(err, -ENOMEM, "out of memory");
	for (size_t i = 0; i < n; i++) {
		if (siov_export_conf_from_json(json_object_array_get_idx(arr, i), &c->exports[i],
					       &e))
			return siov_err_set(err, -EINVAL, "%s: exports[%zu]: %s", path, i, e.msg);
	}
	c->nexports = n;
	return 0;
}

static int parse_state(const char *path, struct json_object *root, struct state_confs *c,
		       struct siov_err *err)
{
	struct json_object *barr, *garr, *narr, *varr, *xarr;
	int rc;

	if ((rc = check_root(path, root, err)) < 0 ||
	    (rc = get_array(path, root, "backends", &barr, err)) < 0 ||
	    (rc = get_array(path, root, "groups", &garr, err)) < 0 ||
	    (rc = get_array(path, root, "networks", &narr, err)) < 0 ||
	    (rc = get_array(path, root, "vdevs", &varr, err)) < 0 ||
	    (rc = get_array(path, root, "exports", &xarr, err)) < 0 ||
	    (rc = parse_backends(path, barr, c, err)) < 0 ||
	    (rc = parse_groups(path, garr, c, err)) < 0 ||
	    (rc = parse_networks(path, narr, c, err)) < 0 || (rc = parse_vdevs(path, varr, c, err)) < 0)
		return rc;
	return parse_exports(path, xarr, c, err);
}

/* Backends, groups and networks first: VDEVs are windows on, members of, or ports on them. */
static int recreate(struct siov_vdcm *vdcm, const struct state_confs *c)
{
	struct siov_err e;
	int failed = 0;

	/* Mirrors after every other backend: a member may be younger than its mirror. */
	for (int pass = 0; pass < 2; pass++) {
		for (size_t i = 0; i < c->nbackends; i++) {
			if ((c->backends[i].type == SIOV_BACKEND_MIRROR) != (pass == 1))
				continue;
			e = (struct siov_err){0};
			if (siov_vdcm_backend_create(vdcm, &c->backends[i], &e) < 0) {
				SIOV_ERR("state: backend '%s' not restored: %s",
					 c->backends[i].name, e.msg);
				failed++;
			}
		}
	}
	for (size_t i = 0; i < c->ngroups; i++) {
		e = (struct siov_err){0};
		if (siov_vdcm_group_create(vdcm, &c->groups[i], &e) < 0) {
			SIOV_ERR("state: group '%s' not restored: %s", c->groups[i].name, e.msg);
			failed++;
		}
	}
	for (size_t i = 0; i < c->nnetworks; i++) {
		e = (struct siov_err){0};
		if (siov_vdcm_network_create(vdcm, &c->networks[i], &e) < 0) {
			SIOV_ERR("state: network '%s' not restored: %s", c->networks[i].name,
				 e.msg);
			failed++;
		}
	}
	for (size_t i = 0; i < c->nvdevs; i++) {
		e = (struct siov_err){0};
		if (siov_vdcm_vdev_create(vdcm, &c->vdevs[i], &e) < 0) {
			SIOV_ERR("state: VDEV '%s' not restored: %s", c->vdevs[i].name, e.msg);
			failed++;
		}
	}
	for (size_t i = 0; i < c->nexports; i++) {
		e = (struct siov_err){0};
		if (siov_vdcm_export_create(vdcm, &c->exports[i], &e) < 0) {
			SIOV_ERR("state: export of '%s' not restored: %s", c->exports[i].vdev,
				 e.msg);
			failed++;
		}
	}
	SIOV_INFO("state: restored %zu backends, %zu groups, %zu networks, %zu VDEVs and %zu "
		  "exports (%d failed)",
		  c->nbackends, c->ngroups, c->nnetworks, c->nvdevs, c->nexports, failed);
	return failed;
}

int siov_state_load(struct siov_vdcm *vdcm, const char *dir, struct siov_err *err)
{
	struct state_confs confs = {0};
	struct json_object *root = NULL;
	char path[4096], *text;
	size_t len = 0;
	int rc;

	rc = state_path(path, sizeof(path), dir, STATE_FILE, err);
	if (rc < 0)
		return rc;
	rc = read_file(path, &text, &len, err);
	if (rc < 0 || !text)
		return rc;
	rc = parse_root(path, text, len, &root, err);
	free(text);
	if (rc < 0)
		return rc;
	rc = parse_state(path, root, &confs, err);
	json_object_put(root);
	if (rc == 0)
		rc = recreate(vdcm, &confs);
	free(confs.backends);
	free(confs.groups);
	free(confs.networks);
	free(confs.vdevs);
	free(confs.exports);
	return rc;
}
