/*
 * fuzz_rpc: JSON-RPC handling (lib/ctrl/rpc*.c) against the real VDCM
 * (lib/ctrl/vdcm.c with real engines, backends and vhost-user servers).  Each
 * input is one request text for siov_rpc_handle(); the response must be
 * NULL (a notification) or a JSON object or array.
 *
 * The VDCM starts every input in the same state: a 1 MiB ram backend "ram0",
 * a null backend "null0" and a VDEV "vd0" on ram0.  Whatever an input
 * created is deleted afterwards and whatever it deleted is recreated.
 *
 * Nothing may touch the file system outside a fresh temporary directory, so
 * two VDCM calls are wrapped at link time (-Wl,--wrap): a VDEV's socket path
 * and a file backend's path are moved into that directory, keeping the base
 * name when it is a valid siov name ("/x/y/vd1.sock" becomes "DIR/vd1.sock")
 * and using a hash of the whole path otherwise.  DIR/disk is an existing
 * 1 MiB file, so "path": "/disk" opens it.  No state dir: nothing persisted.
 */
#include <errno.h>
#include <dirent.h>
#include <fcntl.h>
#include <json-c/json.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "fuzz_common.h"
#include "siov_internal/loop.h"
#include "siov_internal/rpc.h"
#include "siov_internal/vdcm.h"

static struct siov_loop *g_loop;
static struct siov_vdcm *g_vdcm;
static struct siov_rpc_server *g_rpc;
static const char *g_dir;
static bool g_mutated; /* an input created something */

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int __real_siov_vdcm_backend_create(struct siov_vdcm *v, const struct siov_backend_conf *conf,
				    struct siov_err *err);
int __real_siov_vdcm_vdev_create(struct siov_vdcm *v, const struct siov_vdev_conf *conf,
				 struct siov_err *err);
int __wrap_siov_vdcm_backend_create(struct siov_vdcm *v, const struct siov_backend_conf *conf,
				    struct siov_err *err);
int __wrap_siov_vdcm_vdev_create(struct siov_vdcm *v, const struct siov_vdev_conf *conf,
				 struct siov_err *err);
int __real_siov_vdcm_network_create(struct siov_vdcm *v, const struct siov_network_conf *conf,
				    struct siov_err *err);
int __wrap_siov_vdcm_network_create(struct siov_vdcm *v, const struct siov_network_conf *conf,
				    struct siov_err *err);

/* Moves path into the temporary directory (see the top of the file). */
static void confine(char *path, size_t size)
{
	const char *base = strrchr(path, '/');
	char name[SIOV_NAME_MAX + 16];
	uint64_t h = 1469598103934665603ull;
	const char *p;

	base = base ? base + 1 : path;
	if (strlen(base) <= 40 && siov_name_valid(base)) {
		snprintf(name, sizeof(name), "%s", base);
	} else {
		for (p = path; *p; p++)
			h = (h ^ (uint8_t)*p) * 1099511628211ull;
		snprintf(name, sizeof(name), "h%016llx", (unsigned long long)h);
	}
	snprintf(path, size, "%s/%s", g_dir, name);
}

int __wrap_siov_vdcm_backend_create(struct siov_vdcm *v, const struct siov_backend_conf *conf,
				    struct siov_err *err)
{
	static struct siov_backend_conf c;

	c = *conf;
	/* Remote backends would dial whatever the input names: parse them, open none. */
	if (c.type == SIOV_BACKEND_NBD || c.type == SIOV_BACKEND_RBD)
		return siov_err_set(err, -ENOTSUP, "remote backends are not opened by the fuzzer");
	/* An unterminated path is the VDCM's to refuse; only a terminated one is moved. */
	if (c.type == SIOV_BACKEND_FILE && memchr(c.path, 0, sizeof(c.path)))
		confine(c.path, sizeof(c.path));
	g_mutated = true;
	return __real_siov_vdcm_backend_create(v, &c, err);
}

int __wrap_siov_vdcm_vdev_create(struct siov_vdcm *v, const struct siov_vdev_conf *conf,
				 struct siov_err *err)
{
	struct siov_vdev_conf c = *conf;

	if (memchr(c.socket, 0, sizeof(c.socket)) && strncmp(c.socket, g_dir, strlen(g_dir)) != 0)
		confine(c.socket, sizeof(c.socket));
	g_mutated = true;
	return __real_siov_vdcm_vdev_create(v, &c, err);
}

/* No TAP devices from a fuzzer: the uplink is checked by the parser, then dropped. */
int __wrap_siov_vdcm_network_create(struct siov_vdcm *v, const struct siov_network_conf *conf,
				    struct siov_err *err)
{
	struct siov_network_conf c = *conf;

	c.uplink[0] = '\0';
	g_mutated = true;
	return __real_siov_vdcm_network_create(v, &c, err);
}

static void baseline(void)
{
	struct siov_backend_conf ram = {.name = "ram0", .type = SIOV_BACKEND_RAM, .size = 1u << 20};
	struct siov_backend_conf null = {
	    .name = "null0", .type = SIOV_BACKEND_NULL, .size = 1u << 30};
	struct siov_vdev_conf vd = {
	    .name = "vd0", .type = SIOV_VDEV_BLK, .backend = "ram0", .queues = 1};
	struct siov_err err = {0};

	snprintf(vd.socket, sizeof(vd.socket), "%s/vd0.sock", g_dir);
	if (__real_siov_vdcm_backend_create(g_vdcm, &ram, &err) ||
	    __real_siov_vdcm_backend_create(g_vdcm, &null, &err) ||
	    __real_siov_vdcm_vdev_create(g_vdcm, &vd, &err)) {
		fprintf(stderr, "fuzz_rpc: baseline: %s\n", err.msg);
		abort();
	}
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
	struct siov_vdcm_opts vo = {.engines = 1, .poll_us = 20};
	struct siov_rpc_server_opts ro = {0};
	char path[256];
	int fd;

	g_dir = fuzz_tmpdir("fuzz-rpc");
	snprintf(path, sizeof(path), "%s/disk", g_dir);
	fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
	if (fd < 0 || ftruncate(fd, 1u << 20) < 0)
		abort();
	close(fd);
	if (siov_loop_create(&g_loop))
		abort();
	vo.loop = g_loop;
	if (siov_vdcm_create(&vo, &g_vdcm))
		abort();
	ro.loop = g_loop;
	ro.vdcm = g_vdcm;
	if (siov_rpc_server_create(&ro, &g_rpc))
		abort();
	baseline();
	return 0;
}

/* ---- back to the baseline after each input ---- */

struct names {
	char n[64][SIOV_NAME_MAX];
	unsigned count;
	bool overflow;
};

static void name_of_vdev(const struct siov_vdev_info *info, void *arg)
{
	struct names *ns = arg;

	if (ns->count == SIOV_ARRAY_SIZE(ns->n)) {
		ns->overflow = true;
		return;
	}
	snprintf(ns->n[ns->count++], SIOV_NAME_MAX, "%s", info->conf->name);
}

static void name_of_network(const struct siov_network_info *info, void *arg)
{
	struct names *ns = arg;

	if (ns->count == SIOV_ARRAY_SIZE(ns->n)) {
		ns->overflow = true;
		return;
	}
	snprintf(ns->n[ns->count++], SIOV_NAME_MAX, "%s", info->conf->name);
}

static void name_of_backend(const struct siov_backend_info *info, void *arg)
{
	struct names *ns = arg;

	if (ns->count == SIOV_ARRAY_SIZE(ns->n)) {
		ns->overflow = true;
		return;
	}
	snprintf(ns->n[ns->count++], SIOV_NAME_MAX, "%s", info->conf->name);
}

/* Removes files an input made in the directory (file backends it created). */
static void clean_dir(void)
{
	char path[512];
	struct dirent *e;
	DIR *d = opendir(g_dir);

	if (!d)
		return;
	while ((e = readdir(d))) {
		if (e->d_name[0] == '.' || !strcmp(e->d_name, "disk") ||
		    !strcmp(e->d_name, "vd0.sock"))
			continue;
		snprintf(path, sizeof(path), "%s/%s", g_dir, e->d_name);
		unlink(path);
	}
	closedir(d);
}

static void reset_vdcm(void)
{
	struct siov_daemon_info info;
	struct names ns;
	unsigned i;

	siov_vdcm_daemon_info(g_vdcm, &info);
	ns.count = 0;
	if (!g_mutated && info.backends == 2 && info.vdevs == 1 && !info.networks &&
	    siov_vdcm_vdev_get(g_vdcm, "vd0", name_of_vdev, &ns) == 0)
		return;
	do {
		ns.count = 0;
		ns.overflow = false;
		siov_vdcm_vdev_foreach(g_vdcm, name_of_vdev, &ns);
		for (i = 0; i < ns.count; i++)
			siov_vdcm_vdev_delete(g_vdcm, ns.n[i], NULL);
	} while (ns.overflow);
	do {
		ns.count = 0;
		ns.overflow = false;
		siov_vdcm_network_foreach(g_vdcm, name_of_network, &ns);
		for (i = 0; i < ns.count; i++)
			siov_vdcm_network_delete(g_vdcm, ns.n[i], NULL);
	} while (ns.overflow);
	do {
		ns.count = 0;
		ns.overflow = false;
		siov_vdcm_backend_foreach(g_vdcm, name_of_backend, &ns);
		for (i = 0; i < ns.count; i++)
			siov_vdcm_backend_delete(g_vdcm, ns.n[i], NULL);
	} while (ns.overflow);
	clean_dir();
	baseline();
	g_mutated = false;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char *resp = siov_rpc_handle(g_rpc, (const char *)data, size);

	if (resp) {
		struct json_object *o = json_tokener_parse(resp);
		if (!o || !(json_object_is_type(o, json_type_object) ||
			    json_object_is_type(o, json_type_array))) {
			fprintf(stderr, "fuzz_rpc: response is not a JSON object: %s\n", resp);
			abort();
		}
		json_object_put(o);
		free(resp);
	}
	reset_vdcm();
	/* Let the servers of VDEVs made and deleted reap their watches. */
	siov_loop_run_once(g_loop, 0);
	fuzz_check_fds("fuzz_rpc");
	return 0;
}
