/*
 * The VDCM probes of vdcm_probe.h, through siov_vdcm_daemon_info(),
 * siov_vdcm_backend_foreach() and siov_vdcm_vdev_get().
 */
#include <string.h>

#include "vdcm_probe.h"

struct backend_find {
	const char *name;
	struct siov_backend_conf conf;
	uint64_t size;
	bool found;
};

unsigned probe_backends(struct siov_vdcm *vdcm)
{
	struct siov_daemon_info info;

	siov_vdcm_daemon_info(vdcm, &info);
	return info.backends;
}

unsigned probe_vdevs(struct siov_vdcm *vdcm)
{
	struct siov_daemon_info info;

	siov_vdcm_daemon_info(vdcm, &info);
	return info.vdevs;
}

static void backend_cb(const struct siov_backend_info *info, void *arg)
{
	struct backend_find *f = arg;

	if (strcmp(info->conf->name, f->name) == 0) {
		f->conf = *info->conf;
		f->size = info->size;
		f->found = true;
	}
}

static struct backend_find g_backend;

const struct siov_backend_conf *probe_backend(struct siov_vdcm *vdcm, const char *name)
{
	memset(&g_backend, 0, sizeof(g_backend));
	g_backend.name = name;
	siov_vdcm_backend_foreach(vdcm, backend_cb, &g_backend);
	return g_backend.found ? &g_backend.conf : NULL;
}

uint64_t probe_backend_size(struct siov_vdcm *vdcm, const char *name)
{
	return probe_backend(vdcm, name) ? g_backend.size : 0;
}

static struct siov_vdev_conf g_vdev;

static void vdev_cb(const struct siov_vdev_info *info, void *arg)
{
	g_vdev = *info->conf;
}

const struct siov_vdev_conf *probe_vdev(struct siov_vdcm *vdcm, const char *name)
{
	memset(&g_vdev, 0, sizeof(g_vdev));
	return siov_vdcm_vdev_get(vdcm, name, vdev_cb, NULL) == 0 ? &g_vdev : NULL;
}
