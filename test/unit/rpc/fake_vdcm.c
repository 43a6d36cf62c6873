/*
 * The fake VDCM of fake_vdcm.h.  Also provides the two backend-type helpers the
 * parameter code calls, since the real backends are not linked into these tests.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "fake_vdcm.h"
#include "../../../lib/ctrl/vdcm_net.h"
#include "siov_internal/engine.h"
#include "siov_internal/mirror.h"

#define FAKE_MAX 64

struct fake_vdev {
	struct siov_vdev_conf conf;
	struct siov_queue_stats q[SIOV_VDEV_MAX_QUEUES];
	uint64_t size;
};

struct fake_group {
	struct siov_group_conf conf;
};

struct siov_vdcm {
	struct fake_group groups[FAKE_MAX];
	unsigned ngroups;
	struct siov_backend_conf backends[FAKE_MAX];
	uint64_t backend_size[FAKE_MAX];
	unsigned nbackends;
	struct fake_vdev vdevs[FAKE_MAX];
	unsigned nvdevs;
	int fail_backend_create;
	struct vdcm_nets *nets; /* the real switch: it needs no engines or I/O */
};

int siov_backend_type_parse(const char *s, enum siov_backend_type *out)
{
	static const char *const names[] = {"null", "ram", "file", "nbd", "rbd", "mirror"};

	for (unsigned i = 0; i < SIOV_ARRAY_SIZE(names); i++) {
		if (strcmp(s, names[i]) == 0) {
			*out = (enum siov_backend_type)i;
			return 0;
		}
	}
	return -EINVAL;
}

const char *siov_backend_type_name(enum siov_backend_type type)
{
	switch (type) {
	case SIOV_BACKEND_NULL:
		return "null";
	case SIOV_BACKEND_RAM:
		return "ram";
	case SIOV_BACKEND_FILE:
		return "file";
	case SIOV_BACKEND_NBD:
		return "nbd";
	case SIOV_BACKEND_RBD:
		return "rbd";
	case SIOV_BACKEND_MIRROR:
		return "mirror";
	}
	return "unknown";
}

int siov_vdcm_create(const struct siov_vdcm_opts *opts, struct siov_vdcm **out)
{
	int rc;

	*out = calloc(1, sizeof(**out));
	if (!*out)
		return -ENOMEM;
	if ((rc = vdcm_nets_create(NULL, &(*out)->nets)) < 0) {
		free(*out);
		return rc;
	}
	return 0;
}

void siov_vdcm_destroy(struct siov_vdcm *vdcm)
{
	if (vdcm)
		vdcm_nets_destroy(vdcm->nets);
	free(vdcm);
}

struct vdcm_nets *vdcm_nets_of(struct siov_vdcm *v)
{
	return v->nets;
}

static int backend_idx(struct siov_vdcm *v, const char *name)
{
	for (unsigned i = 0; i < v->nbackends; i++)
		if (strcmp(v->backends[i].name, name) == 0)
			return (int)i;
	return -1;
}

static int vdev_idx(struct siov_vdcm *v, const char *name)
{
	for (unsigned i = 0; i < v->nvdevs; i++)
		if (strcmp(v->vdevs[i].conf.name, name) == 0)
			return (int)i;
	return -1;
}

static unsigned backend_users(struct siov_vdcm *v, const char *name)
{
	unsigned n = 0;

	for (unsigned i = 0; i < v->nvdevs; i++)
		n += strcmp(v->vdevs[i].conf.backend, name) == 0;
	return n;
}

int siov_vdcm_backend_create(struct siov_vdcm *v, const struct siov_backend_conf *conf,
			     struct siov_err *err)
{
	if (v->fail_backend_create)
		return siov_err_set(err, v->fail_backend_create, "injected failure");
	if (backend_idx(v, conf->name) >= 0)
		return siov_err_set(err, -EEXIST, "backend '%s' already exists", conf->name);
	if (v->nbackends == FAKE_MAX)
		return siov_err_set(err, -ENOSPC, "too many backends");
	v->backends[v->nbackends] = *conf;
	v->backend_size[v->nbackends] = conf->size ? conf->size : FAKE_FILE_SIZE;
	v->nbackends++;
	return 0;
}

int siov_vdcm_backend_delete(struct siov_vdcm *v, const char *name, struct siov_err *err)
{
	int i = backend_idx(v, name);

	if (i < 0)
		return siov_err_set(err, -ENOENT, "no backend named '%s'", name);
	if (backend_users(v, name))
		return siov_err_set(err, -EBUSY, "backend '%s' is used by VDEVs", name);
	memmove(&v->backends[i], &v->backends[i + 1],
		(v->nbackends - (unsigned)i - 1) * sizeof(v->backends[0]));
	memmove(&v->backend_size[i], &v->backend_size[i + 1],
		(v->nbackends - (unsigned)i - 1) * sizeof(v->backend_size[0]));
	v->nbackends--;
	return 0;
}

static bool overlaps(const struct fake_vdev *d, const char *backend, uint64_t off, uint64_t size)
{
	return strcmp(d->conf.backend, backend) == 0 && off < d->conf.offset + d->size &&
	       d->conf.offset < off + size;
}

static int group_idx(struct siov_vdcm *v, const char *name)
{
	for (unsigned i = 0; i < v->ngroups; i++)
		if (strcmp(v->groups[i].conf.name, name) == 0)
			return (int)i;
	return -1;
}

/* The two rules of siov_qos_params_check() the tests lean on. */
static int qos_check(const struct siov_qos_params *p, struct siov_err *err)
{
	if (p->weight > SIOV_QOS_WEIGHT_MAX)
		return siov_err_set(err, -EINVAL, "invalid QoS parameters: weight out of range");
	if (p->iops_limit && p->iops_min > p->iops_limit)
		return siov_err_set(err, -EINVAL, "invalid QoS parameters: iops_min > iops_limit");
	return 0;
}

static int vdev_check(struct siov_vdcm *v, const struct siov_vdev_conf *conf, uint64_t *size,
		      struct siov_err *err)
{
	int b = backend_idx(v, conf->backend);
	uint64_t bsize;

	if (conf->group[0] && group_idx(v, conf->group) < 0)
		return siov_err_set(err, -ENOENT, "no group named '%s'", conf->group);
	if (qos_check(&conf->qos, err))
		return -EINVAL;

	if (vdev_idx(v, conf->name) >= 0)
		return siov_err_set(err, -EEXIST, "VDEV '%s' already exists", conf->name);
	if (b < 0)
		return siov_err_set(err, -ENOENT, "no backend named '%s'", conf->backend);
	bsize = v->backend_size[b];
	if (conf->offset >= bsize || conf->size > bsize - conf->offset)
		return siov_err_set(err, -ERANGE, "window out of range of backend '%s'",
				    conf->backend);
	*size = conf->size ? conf->size : bsize - conf->offset;
	for (unsigned i = 0; i < v->nvdevs; i++) {
		if (strcmp(v->vdevs[i].conf.socket, conf->socket) == 0)
			return siov_err_set(err, -EADDRINUSE, "socket %s in use", conf->socket);
		if (!conf->allow_overlap &&
		    overlaps(&v->vdevs[i], conf->backend, conf->offset, *size))
			return siov_err_set(err, -EEXIST, "window overlaps VDEV '%s'",
					    v->vdevs[i].conf.name);
	}
	return 0;
}

int siov_vdcm_vdev_create(struct siov_vdcm *v, const struct siov_vdev_conf *conf,
			  struct siov_err *err)
{
	struct fake_vdev *d;
	uint64_t size = 0;
	int rc = vdev_check(v, conf, &size, err);

	if (rc)
		return rc;
	if (v->nvdevs == FAKE_MAX)
		return siov_err_set(err, -ENOSPC, "too many VDEVs");
	d = &v->vdevs[v->nvdevs++];
	memset(d, 0, sizeof(*d));
	d->conf = *conf;
	d->size = size;
	for (unsigned q = 0; q < (conf->queues ? conf->queues : 1u); q++) {
		d->q[q].index = q;
		d->q[q].state = "running";
		d->q[q].engine = (int)q;
		d->q[q].requests = 10;
		d->q[q].reads = 6;
		d->q[q].writes = 4;
		d->q[q].bytes_read = 6 * 4096;
		d->q[q].bytes_written = 4 * 4096;
		d->q[q].errors = 1;
		d->q[q].inflight = 2;
		d->q[q].latency_ns_total = 10 * 3000; /* 3 us mean */
		d->q[q].kicks = 5;
	}
	return 0;
}

int siov_vdcm_vdev_delete(struct siov_vdcm *v, const char *name, struct siov_err *err)
{
	int i = vdev_idx(v, name);

	if (i < 0)
		return siov_err_set(err, -ENOENT, "no VDEV named '%s'", name);
	memmove(&v->vdevs[i], &v->vdevs[i + 1],
		(v->nvdevs - (unsigned)i - 1) * sizeof(v->vdevs[0]));
	v->nvdevs--;
	return 0;
}

void siov_vdcm_backend_foreach(struct siov_vdcm *v, siov_backend_info_cb cb, void *arg)
{
	for (unsigned i = 0; i < v->nbackends; i++) {
		struct siov_backend_info info = {
		    .conf = &v->backends[i],
		    .size = v->backend_size[i],
		    .block_size = 512,
		    .direct = v->backends[i].type == SIOV_BACKEND_FILE,
		    .vdevs = backend_users(v, v->backends[i].name),
		};
		cb(&info, arg);
	}
}

static void vdev_info(struct fake_vdev *d, siov_vdev_info_cb cb, void *arg)
{
	struct siov_vdev_info info = {
	    .conf = &d->conf,
	    .size = d->size,
	    .state = "listening",
	    .nqueues = d->conf.queues ? d->conf.queues : 1,
	    .max_queues = d->conf.queues ? d->conf.queues : 256,
	    .queues = d->q,
	    .qos = {.admitted = 10, .admitted_bytes = 40960, .throttled = 3},
	};
	cb(&info, arg);
}

void siov_vdcm_vdev_foreach(struct siov_vdcm *v, siov_vdev_info_cb cb, void *arg)
{
	for (unsigned i = 0; i < v->nvdevs; i++)
		vdev_info(&v->vdevs[i], cb, arg);
}

int siov_vdcm_vdev_get(struct siov_vdcm *v, const char *name, siov_vdev_info_cb cb, void *arg)
{
	int i = vdev_idx(v, name);

	if (i < 0)
		return -ENOENT;
	vdev_info(&v->vdevs[i], cb, arg);
	return 0;
}

uint64_t siov_vdcm_vdev_query(struct siov_vdcm *v, const struct siov_vdev_filter *f,
			      siov_vdev_info_cb cb, void *arg)
{
	uint64_t matched = 0, reported = 0;
	size_t plen = f->prefix ? strlen(f->prefix) : 0;

	for (unsigned i = 0; i < v->nvdevs; i++) {
		if (plen && strncmp(v->vdevs[i].conf.name, f->prefix, plen))
			continue;
		if (matched++ < f->offset || (f->limit && reported >= f->limit))
			continue;
		vdev_info(&v->vdevs[i], cb, arg);
		reported++;
	}
	return matched;
}

int siov_vdcm_vdev_set_qos(struct siov_vdcm *v, const char *name, const struct siov_qos_params *qos,
			   struct siov_err *err)
{
	int i = vdev_idx(v, name);

	if (i < 0)
		return siov_err_set(err, -ENOENT, "no VDEV named '%s'", name);
	if (qos_check(qos, err))
		return -EINVAL;
	v->vdevs[i].conf.qos = *qos;
	return 0;
}

int siov_vdcm_group_create(struct siov_vdcm *v, const struct siov_group_conf *conf,
			   struct siov_err *err)
{
	if (group_idx(v, conf->name) >= 0)
		return siov_err_set(err, -EEXIST, "group '%s' already exists", conf->name);
	if (qos_check(&conf->qos, err))
		return -EINVAL;
	if (v->ngroups == FAKE_MAX)
		return siov_err_set(err, -ENOSPC, "too many groups");
	v->groups[v->ngroups++].conf = *conf;
	return 0;
}

int siov_vdcm_group_set_qos(struct siov_vdcm *v, const char *name,
			    const struct siov_qos_params *qos, struct siov_err *err)
{
	int i = group_idx(v, name);

	if (i < 0)
		return siov_err_set(err, -ENOENT, "no group named '%s'", name);
	if (qos_check(qos, err))
		return -EINVAL;
	v->groups[i].conf.qos = *qos;
	return 0;
}

static unsigned group_users(struct siov_vdcm *v, const char *name)
{
	unsigned n = 0;

	for (unsigned i = 0; i < v->nvdevs; i++)
		n += strcmp(v->vdevs[i].conf.group, name) == 0;
	return n;
}

int siov_vdcm_group_delete(struct siov_vdcm *v, const char *name, struct siov_err *err)
{
	int i = group_idx(v, name);

	if (i < 0)
		return siov_err_set(err, -ENOENT, "no group named '%s'", name);
	if (group_users(v, name))
		return siov_err_set(err, -EBUSY, "group '%s' has %u VDEV(s)", name,
				    group_users(v, name));
	memmove(&v->groups[i], &v->groups[i + 1],
		(v->ngroups - (unsigned)i - 1) * sizeof(v->groups[0]));
	v->ngroups--;
	return 0;
}

void siov_vdcm_group_foreach(struct siov_vdcm *v, siov_group_info_cb cb, void *arg)
{
	for (unsigned i = 0; i < v->ngroups; i++) {
		struct siov_group_info info = {.conf = &v->groups[i].conf,
					       .vdevs = group_users(v, v->groups[i].conf.name)};
		info.qos.admitted = 7;
		cb(&info, arg);
	}
}

void siov_vdcm_daemon_info(struct siov_vdcm *v, struct siov_daemon_info *info)
{
	info->version = "0.1.0-test";
	info->engines = 2;
	info->backends = v->nbackends;
	info->vdevs = v->nvdevs;
	info->groups = v->ngroups;
	info->networks = siov_switch_networks(vdcm_nets_switch(v->nets));
	info->uptime_s = 1.5;
}

void fake_vdcm_fail_backend_create(struct siov_vdcm *v, int rc)
{
	v->fail_backend_create = rc;
}

int siov_vdcm_engine_stats(struct siov_vdcm *v, unsigned i, struct siov_engine_stats *out)
{
	(void)v;
	if (i >= 2)
		return -ENOENT;
	*out = (struct siov_engine_stats){
	    .rounds = 10, .popped = 4, .submitted = 4, .ring_submit_ns = 8000};
	return 0;
}

/* Mirrors are tested against the real VDCM (test/unit/backend, test/guest). */
int siov_vdcm_mirror_add_member(struct siov_vdcm *v, const char *name, const char *member,
				bool full, struct siov_err *err)
{
	return siov_err_set(err, -ENOTSUP, "the fake VDCM has no mirrors");
}

int siov_vdcm_mirror_remove_member(struct siov_vdcm *v, const char *name, const char *member,
				   struct siov_err *err)
{
	return siov_err_set(err, -ENOTSUP, "the fake VDCM has no mirrors");
}

int siov_vdcm_mirror_fail_member(struct siov_vdcm *v, const char *name, const char *member,
				 struct siov_err *err)
{
	return siov_err_set(err, -ENOTSUP, "the fake VDCM has no mirrors");
}

int siov_vdcm_mirror_set_resync_rate(struct siov_vdcm *v, const char *name, uint64_t rate,
				     struct siov_err *err)
{
	return siov_err_set(err, -ENOTSUP, "the fake VDCM has no mirrors");
}

int siov_vdcm_backend_stats(struct siov_vdcm *v, const char *name, siov_backend_stats_cb cb,
			    void *arg, struct siov_err *err)
{
	return siov_err_set(err, -ENOTSUP, "the fake VDCM has no backend stats");
}

const char *siov_member_state_name(enum siov_member_state s)
{
	return "unknown";
}

/* Exports are served by lib/export, not faked: the methods' parameters are what is tested here. */
int siov_vdcm_export_create(struct siov_vdcm *v, const struct siov_export_conf *conf,
			    struct siov_err *err)
{
	return siov_err_set(err, -ENOTSUP, "exports are not faked");
}

int siov_vdcm_export_delete(struct siov_vdcm *v, const char *vdev, struct siov_err *err)
{
	return siov_err_set(err, -ENOENT, "VDEV '%s' is not exported", vdev);
}

void siov_vdcm_export_foreach(struct siov_vdcm *v, siov_export_info_cb cb, void *arg)
{
}

int siov_vdcm_vdev_set_error_policy(struct siov_vdcm *v, const char *name, enum siov_error_policy p,
				    uint32_t timeout_ms, struct siov_err *err)
{
	int i = vdev_idx(v, name);

	if (i < 0)
		return siov_err_set(err, -ENOENT, "no VDEV named '%s'", name);
	v->vdevs[i].conf.error_policy = p;
	v->vdevs[i].conf.hold_timeout_ms = timeout_ms;
	return 0;
}

int siov_vdcm_vdev_resume(struct siov_vdcm *v, const char *name, struct siov_err *err)
{
	return vdev_idx(v, name) < 0 ? siov_err_set(err, -ENOENT, "no VDEV named '%s'", name) : 0;
}

int siov_vdcm_vdev_move(struct siov_vdcm *v, const char *name, const char *backend, uint64_t offset,
			uint64_t rate, struct siov_err *err)
{
	return siov_err_set(err, -ENOTSUP, "the fake VDCM moves nothing");
}

void siov_vdcm_set_changed_cb(struct siov_vdcm *v, siov_vdcm_changed_cb cb, void *arg)
{
}
