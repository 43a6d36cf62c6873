/*
 * The VDCM: composes VDEVs from backend windows.  It keeps the registry of
 * backends and VDEVs (in creation order), checks every request against it
 * (names, windows, overlaps, socket paths), and wires each VDEV's device model
 * (virtio-blk) to its vhost-user server and, through it, to the engines.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "siov_internal/engine.h"
#include "siov_internal/log.h"
#include "siov_internal/vdcm.h"
#include "siov_internal/vhost_user.h"
#include "siov_internal/virtio_blk.h"
#include "siov_internal/virtqueue.h"

#ifndef SIOV_VERSION
#define SIOV_VERSION "0.1.0"
#endif

struct vdcm_backend {
	struct siov_backend *bd;
	unsigned nvdevs;
	struct vdcm_backend *next;
};

struct vdcm_vdev {
	struct siov_vdev_conf conf;
	uint64_t size;
	struct vdcm_backend *be;
	struct siov_blk *blk;
	struct siov_vu_server *srv;
	struct vdcm_vdev *next;
};

struct siov_vdcm {
	struct siov_loop *loop;
	struct siov_engines *engines;
	struct vdcm_backend *backends, **backends_tail;
	struct vdcm_vdev *vdevs, **vdevs_tail;
	unsigned nbackends, nvdevs;
	uint64_t start_ns;
};

int siov_vdcm_create(const struct siov_vdcm_opts *opts, struct siov_vdcm **out)
{
	struct siov_engines_opts eo = {.count = opts->engines, .poll_us = opts->poll_us};
	struct siov_vdcm *v = calloc(1, sizeof(*v));
	int rc;

	if (!v)
		return -ENOMEM;
	rc = siov_engines_create(&eo, &v->engines);
	if (rc) {
		free(v);
		return rc;
	}
	v->loop = opts->loop;
	v->backends_tail = &v->backends;
	v->vdevs_tail = &v->vdevs;
	v->start_ns = siov_now_ns();
	*out = v;
	return 0;
}

static struct vdcm_backend *backend_find(struct siov_vdcm *v, const char *name)
{
	struct vdcm_backend *b;

	for (b = v->backends; b; b = b->next)
		if (!strcmp(siov_backend_conf(b->bd)->name, name))
			return b;
	return NULL;
}

static struct vdcm_vdev *vdev_find(struct siov_vdcm *v, const char *name)
{
	struct vdcm_vdev *d;

	for (d = v->vdevs; d; d = d->next)
		if (!strcmp(d->conf.name, name))
			return d;
	return NULL;
}

int siov_vdcm_backend_create(struct siov_vdcm *v, const struct siov_backend_conf *conf,
			     struct siov_err *err)
{
	struct vdcm_backend *b;
	int rc;

	if (!siov_name_valid(conf->name))
		return siov_err_set(err, -EINVAL,
				    "invalid backend name '%s' (use 1-63 of A-Z a-z 0-9 _ . -)",
				    conf->name);
	if (backend_find(v, conf->name))
		return siov_err_set(err, -EEXIST, "backend '%s' already exists", conf->name);
	b = calloc(1, sizeof(*b));
	if (!b)
		return siov_err_set(err, -ENOMEM, "out of memory");
	rc = siov_backend_open(conf, &b->bd, err);
	if (rc) {
		free(b);
		return rc;
	}
	*v->backends_tail = b;
	v->backends_tail = &b->next;
	v->nbackends++;
	SIOV_INFO("backend %s: %s, %llu bytes%s", conf->name, siov_backend_type_name(conf->type),
		  (unsigned long long)siov_backend_size(b->bd),
		  siov_backend_is_direct(b->bd) ? ", O_DIRECT" : "");
	return 0;
}

int siov_vdcm_backend_delete(struct siov_vdcm *v, const char *name, struct siov_err *err)
{
	struct vdcm_backend **pp, *b;

	for (pp = &v->backends; *pp; pp = &(*pp)->next)
		if (!strcmp(siov_backend_conf((*pp)->bd)->name, name))
			break;
	b = *pp;
	if (!b)
		return siov_err_set(err, -ENOENT, "no backend named '%s'", name);
	if (b->nvdevs)
		return siov_err_set(err, -EBUSY, "backend '%s' is used by %u VDEV(s)", name,
				    b->nvdevs);
	*pp = b->next;
	if (v->backends_tail == &b->next)
		v->backends_tail = pp;
	v->nbackends--;
	/* name may point into b: log before it is freed. */
	SIOV_INFO("backend %s deleted", name);
	siov_backend_close(b->bd);
	free(b);
	return 0;
}

/* Checks the window against the backend and, unless allowed, other VDEVs' windows. */
static int vdev_check_window(struct siov_vdcm *v, const struct siov_vdev_conf *c,
			     struct vdcm_backend *be, uint64_t *size, struct siov_err *err)
{
	uint64_t bsize = siov_backend_size(be->bd);
	struct vdcm_vdev *d;

	if (c->offset % 512 || c->size % 512)
		return siov_err_set(err, -EINVAL, "offset and size must be multiples of 512");
	if (c->offset >= bsize)
		return siov_err_set(
		    err, -ERANGE, "offset %llu is past the end of backend '%s' (%llu bytes)",
		    (unsigned long long)c->offset, c->backend, (unsigned long long)bsize);
	*size = c->size ? c->size : bsize - c->offset;
	if (*size > bsize - c->offset)
		return siov_err_set(
		    err, -ERANGE,
		    "window [%llu, +%llu) is out of range of backend '%s' (%llu bytes)",
		    (unsigned long long)c->offset, (unsigned long long)*size, c->backend,
		    (unsigned long long)bsize);
	if (c->allow_overlap)
		return 0;
	for (d = v->vdevs; d; d = d->next) {
		if (d->be != be)
			continue;
		if (c->offset < d->conf.offset + d->size && d->conf.offset < c->offset + *size)
			return siov_err_set(err, -EEXIST,
					    "window overlaps VDEV '%s' [%llu, +%llu); pass "
					    "allow_overlap to share bytes",
					    d->conf.name, (unsigned long long)d->conf.offset,
					    (unsigned long long)d->size);
	}
	return 0;
}

static int vdev_check(struct siov_vdcm *v, const struct siov_vdev_conf *c, struct siov_err *err)
{
	struct vdcm_vdev *d;

	if (!siov_name_valid(c->name))
		return siov_err_set(err, -EINVAL,
				    "invalid VDEV name '%s' (use 1-63 of A-Z a-z 0-9 _ . -)",
				    c->name);
	if (vdev_find(v, c->name))
		return siov_err_set(err, -EEXIST, "VDEV '%s' already exists", c->name);
	if (c->type != SIOV_VDEV_BLK)
		return siov_err_set(err, -EINVAL, "unsupported VDEV type");
	if (c->queues > SIOV_VDEV_MAX_QUEUES)
		return siov_err_set(err, -EINVAL, "queues must be 1..%d", SIOV_VDEV_MAX_QUEUES);
	if (c->socket[0] != '/')
		return siov_err_set(err, -EINVAL, "socket must be an absolute path");
	for (d = v->vdevs; d; d = d->next)
		if (!strcmp(d->conf.socket, c->socket))
			return siov_err_set(err, -EADDRINUSE, "socket %s is in use by VDEV '%s'",
					    c->socket, d->conf.name);
	return 0;
}

static void vdev_free(struct vdcm_vdev *d)
{
	siov_vu_server_destroy(d->srv);
	siov_blk_destroy(d->blk);
	free(d);
}

int siov_vdcm_vdev_create(struct siov_vdcm *v, const struct siov_vdev_conf *conf,
			  struct siov_err *err)
{
	struct siov_vu_server_opts so = {
	    .loop = v->loop, .engines = v->engines, .dev_ops = &siov_blk_dev_ops};
	struct siov_blk_conf bc;
	struct vdcm_backend *be;
	struct vdcm_vdev *d;
	int rc;

	rc = vdev_check(v, conf, err);
	if (rc)
		return rc;
	be = backend_find(v, conf->backend);
	if (!be)
		return siov_err_set(err, -ENOENT, "no backend named '%s'", conf->backend);
	d = calloc(1, sizeof(*d));
	if (!d)
		return siov_err_set(err, -ENOMEM, "out of memory");
	d->conf = *conf;
	if (!d->conf.queues)
		d->conf.queues = 1;
	rc = vdev_check_window(v, &d->conf, be, &d->size, err);
	if (rc)
		goto err_free;
	d->be = be;
	bc = (struct siov_blk_conf){.name = d->conf.name,
				    .backend = be->bd,
				    .offset = d->conf.offset,
				    .size = d->size,
				    .readonly = d->conf.readonly,
				    .queues = d->conf.queues};
	rc = siov_blk_create(&bc, &d->blk);
	if (rc) {
		siov_err_set(err, rc, "cannot create the virtio-blk device: %s", strerror(-rc));
		goto err_free;
	}
	so.name = d->conf.name;
	so.socket_path = d->conf.socket;
	so.queues = d->conf.queues;
	so.dev = d->blk;
	rc = siov_vu_server_create(&so, &d->srv, err);
	if (rc)
		goto err_blk;
	be->nvdevs++;
	*v->vdevs_tail = d;
	v->vdevs_tail = &d->next;
	v->nvdevs++;
	SIOV_INFO("vdev %s: blk on %s [%llu, +%llu), %u queue(s)%s, socket %s", d->conf.name,
		  d->conf.backend, (unsigned long long)d->conf.offset, (unsigned long long)d->size,
		  d->conf.queues, d->conf.readonly ? ", read-only" : "", d->conf.socket);
	return 0;

err_blk:
	siov_blk_destroy(d->blk);
err_free:
	free(d);
	return rc;
}

int siov_vdcm_vdev_delete(struct siov_vdcm *v, const char *name, struct siov_err *err)
{
	struct vdcm_vdev **pp, *d;

	for (pp = &v->vdevs; *pp; pp = &(*pp)->next)
		if (!strcmp((*pp)->conf.name, name))
			break;
	d = *pp;
	if (!d)
		return siov_err_set(err, -ENOENT, "no VDEV named '%s'", name);
	*pp = d->next;
	if (v->vdevs_tail == &d->next)
		v->vdevs_tail = pp;
	v->nvdevs--;
	d->be->nvdevs--;
	SIOV_INFO("vdev %s deleted", name);
	vdev_free(d);
	return 0;
}

void siov_vdcm_destroy(struct siov_vdcm *v)
{
	if (!v)
		return;
	while (v->vdevs)
		siov_vdcm_vdev_delete(v, v->vdevs->conf.name, NULL);
	while (v->backends)
		siov_vdcm_backend_delete(v, siov_backend_conf(v->backends->bd)->name, NULL);
	siov_engines_destroy(v->engines);
	free(v);
}

void siov_vdcm_backend_foreach(struct siov_vdcm *v, siov_backend_info_cb cb, void *arg)
{
	struct vdcm_backend *b;

	for (b = v->backends; b; b = b->next) {
		struct siov_backend_info info = {
		    .conf = siov_backend_conf(b->bd),
		    .size = siov_backend_size(b->bd),
		    .block_size = siov_backend_block_size(b->bd),
		    .direct = siov_backend_is_direct(b->bd),
		    .vdevs = b->nvdevs,
		};
		cb(&info, arg);
	}
}

static void queue_stats(const struct siov_vq *vq, struct siov_queue_stats *s)
{
	const struct siov_vq_stats *t = &vq->stats;

	memset(s, 0, sizeof(*s));
	s->index = vq->index;
	s->engine = vq->engine ? (int)siov_engine_id(vq->engine) : -1;
	s->state = __atomic_load_n(&vq->broken, __ATOMIC_ACQUIRE) ? "broken"
		   : vq->engine					  ? "running"
								  : "stopped";
	s->requests = SIOV_STAT_GET(t->requests);
	s->reads = SIOV_STAT_GET(t->reads);
	s->writes = SIOV_STAT_GET(t->writes);
	s->flushes = SIOV_STAT_GET(t->flushes);
	s->discards = SIOV_STAT_GET(t->discards);
	s->write_zeroes = SIOV_STAT_GET(t->write_zeroes);
	s->get_ids = SIOV_STAT_GET(t->get_ids);
	s->bytes_read = SIOV_STAT_GET(t->bytes_read);
	s->bytes_written = SIOV_STAT_GET(t->bytes_written);
	s->errors = SIOV_STAT_GET(t->errors);
	s->inflight = SIOV_STAT_GET(t->inflight);
	s->latency_ns_total = SIOV_STAT_GET(t->latency_ns_total);
	s->kicks = SIOV_STAT_GET(t->kicks);
}

static void vdev_report(struct vdcm_vdev *d, siov_vdev_info_cb cb, void *arg)
{
	struct siov_queue_stats qs[SIOV_VDEV_MAX_QUEUES];
	struct siov_vdev_info info = {.conf = &d->conf, .size = d->size, .queues = qs};
	unsigned i, n = siov_vu_server_nqueues(d->srv);

	for (i = 0; i < n && i < SIOV_VDEV_MAX_QUEUES; i++)
		queue_stats(siov_vu_server_queue(d->srv, i), &qs[i]);
	info.nqueues = i;
	info.state = siov_vu_server_state(d->srv);
	info.broken_reason = siov_vu_server_broken_reason(d->srv);
	info.connected = siov_vu_server_connected(d->srv);
	info.features = siov_vu_server_features(d->srv);
	info.connections = siov_vu_server_connections(d->srv);
	cb(&info, arg);
}

void siov_vdcm_vdev_foreach(struct siov_vdcm *v, siov_vdev_info_cb cb, void *arg)
{
	struct vdcm_vdev *d;

	for (d = v->vdevs; d; d = d->next)
		vdev_report(d, cb, arg);
}

int siov_vdcm_vdev_get(struct siov_vdcm *v, const char *name, siov_vdev_info_cb cb, void *arg)
{
	struct vdcm_vdev *d = vdev_find(v, name);

	if (!d)
		return -ENOENT;
	vdev_report(d, cb, arg);
	return 0;
}

void siov_vdcm_daemon_info(struct siov_vdcm *v, struct siov_daemon_info *info)
{
	info->version = SIOV_VERSION;
	info->engines = siov_engines_count(v->engines);
	info->backends = v->nbackends;
	info->vdevs = v->nvdevs;
	info->uptime_s = (double)(siov_now_ns() - v->start_ns) / 1e9;
}
