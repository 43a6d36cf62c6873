/*
 * The VDCM: composes VDEVs from backend windows.  It keeps the registry of
 * backends, QoS groups and VDEVs (in creation order), checks every request
 * against it (names, windows, overlaps, socket paths, QoS parameters), and
 * wires each VDEV's device model (virtio-blk) and QoS to its vhost-user server
 * and, through it, to the engines.
 *
 * Built for tens of thousands of VDEVs: names and socket paths are found
 * through hash tables, and each backend keeps its exclusive windows in a
 * balanced tree (glibc's tsearch), so that creating or deleting a VDEV costs
 * O(log n), not a walk over every other VDEV.
 */
#include <errno.h>
#include <search.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/timerfd.h>
#include <unistd.h>

#include "siov_internal/engine.h"
#include "siov_internal/export.h"
#include "siov_internal/hash.h"
#include "siov_internal/log.h"
#include "siov_internal/loop.h"
#include "siov_internal/mirror.h"
#include "siov_internal/vdcm.h"
#include "siov_internal/vhost_user.h"
#include "siov_internal/virtio_blk.h"
#include "siov_internal/virtio_net.h"
#include "siov_internal/virtqueue.h"
#include "vdcm_net.h"

#ifndef SIOV_VERSION
#define SIOV_VERSION "0.1.0"
#endif

/* ---- Objects ---- */

struct vdcm_backend {
	struct siov_backend *bd;
	struct siov_qos_domain qos_dom; /* shared by its VDEVs' QoS */
	unsigned nvdevs;
	struct vdcm_backend *mirror; /* the mirror this backend is a member of, or NULL */
	struct siov_hlink by_name;
	void *windows;		  /* tsearch tree of exclusive windows: pairwise disjoint */
	struct vdcm_vdev *shared; /* VDEVs created with allow_overlap (few, walked) */
	struct vdcm_backend *next;
};

struct vdcm_group {
	struct siov_group_conf conf;
	struct siov_qos *qos;
	unsigned nvdevs;
	struct siov_hlink by_name;
	struct vdcm_group *prev, *next;
};

/* [start, end) of a backend. */
struct window {
	uint64_t start, end;
};

struct vdcm_vdev {
	struct siov_vdev_conf conf;
	uint64_t size;
	struct window win;
	struct vdcm_backend *be;
	struct vdcm_group *group;
	struct siov_blk *blk;
	struct siov_net *net; /* a net VDEV: its port on the switch */
	struct siov_network *network;
	struct siov_qos *qos;
	struct siov_vu_server *srv;
	struct siov_hlink by_name, by_socket;
	struct vdcm_vdev *prev, *next; /* creation order */
	struct vdcm_vdev *shared_next; /* be->shared */
	/* vdev_move: the temporary mirror, the target and the window held on it. */
	struct siov_backend *move_bd;
	struct vdcm_backend *move_be;
	struct window move_win;
	unsigned exports;	    /* NBD exports serving it: it cannot be deleted */
	struct siov_export *export; /* the one export (its I/O counts in vdev_stats) */
};

/* A VDEV served over NBD (lib/export). */
struct vdcm_export {
	struct siov_export *ex;
	struct vdcm_vdev *d;
	struct vdcm_export *next;
};

struct siov_vdcm {
	struct siov_loop *loop;
	struct siov_engines *engines;
	struct vdcm_backend *backends, **backends_tail;
	struct vdcm_group *groups, *groups_tail;
	struct vdcm_vdev *vdevs, *vdevs_tail;
	struct vdcm_export *exports;
	struct siov_htab backend_names, group_names, vdev_names, vdev_sockets;
	unsigned nbackends, ngroups, nvdevs;
	uint64_t start_ns;
	char *state_dir; /* mirrors keep their bitmaps here; NULL = in memory */
	int move_timer;	 /* timerfd ticking while VDEVs move, or -1 */
	struct siov_watch *move_watch;
	unsigned nmoves;
	siov_vdcm_changed_cb changed_cb;
	void *changed_arg;
	char **socket_dirs; /* resolved at start; NULL = anywhere */
	unsigned nsocket_dirs;
	unsigned socket_mode;
	int socket_uid, socket_gid;
	struct vdcm_nets *nets; /* the switch and its uplinks: vdcm_net.c */
};

/* Resolves the allowed socket directories once, so that a symlink swapped later cannot widen them.
 */
static int socket_dirs_init(struct siov_vdcm *v, const char *const *dirs)
{
	unsigned n = 0;

	while (dirs && dirs[n])
		n++;
	if (!n)
		return 0;
	v->socket_dirs = calloc(n, sizeof(char *));
	if (!v->socket_dirs)
		return -ENOMEM;
	for (v->nsocket_dirs = 0; v->nsocket_dirs < n; v->nsocket_dirs++) {
		v->socket_dirs[v->nsocket_dirs] = realpath(dirs[v->nsocket_dirs], NULL);
		if (!v->socket_dirs[v->nsocket_dirs]) {
			int rc = -errno;
			SIOV_ERR("socket dir %s: %s", dirs[v->nsocket_dirs], strerror(-rc));
			return rc;
		}
	}
	return 0;
}

static void socket_dirs_fini(struct siov_vdcm *v)
{
	unsigned i;

	for (i = 0; i < v->nsocket_dirs; i++)
		free(v->socket_dirs[i]);
	free(v->socket_dirs);
}

/* True if path's directory (resolved) is one of the allowed ones or below one. */
static bool socket_dir_allowed(const struct siov_vdcm *v, const char *path)
{
	char dir[SIOV_SOCKET_PATH_MAX], *real, *slash;
	bool ok = false;
	unsigned i;

	if (!v->nsocket_dirs)
		return true;
	snprintf(dir, sizeof(dir), "%s", path);
	slash = strrchr(dir, '/');
	if (!slash)
		return false;
	*(slash == dir ? slash + 1 : slash) = '\0';
	real = realpath(dir, NULL);
	if (!real)
		return false;
	for (i = 0; i < v->nsocket_dirs && !ok; i++) {
		size_t l = strlen(v->socket_dirs[i]);
		ok = !strncmp(real, v->socket_dirs[i], l) &&
		     (real[l] == '\0' || real[l] == '/' || v->socket_dirs[i][l - 1] == '/');
	}
	free(real);
	return ok;
}

static void backends_close_all(struct siov_vdcm *v);

int siov_vdcm_create(const struct siov_vdcm_opts *opts, struct siov_vdcm **out)
{
	struct siov_engines_opts eo = {.count = opts->engines,
				       .poll_us = opts->poll_us,
				       .hold_ns = opts->hold_ns,
				       .loop = opts->loop,
				       .balance_ms = 1000};
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
	v->start_ns = siov_now_ns();
	v->socket_mode = opts->socket_mode;
	v->socket_uid = opts->socket_uid;
	v->socket_gid = opts->socket_gid;
	v->state_dir = opts->state_dir ? strdup(opts->state_dir) : NULL;
	v->move_timer = -1;
	rc = socket_dirs_init(v, opts->socket_dirs);
	if (!rc)
		rc = vdcm_nets_create(opts->loop, &v->nets);
	if (rc) {
		siov_vdcm_destroy(v);
		return rc;
	}
	*out = v;
	return 0;
}

#define FIND(tab, type, member, name)                                                              \
	({                                                                                         \
		struct siov_hlink *l_ = siov_htab_find(tab, name);                                 \
		l_ ? SIOV_CONTAINER_OF(l_, type, member) : NULL;                                   \
	})

static struct vdcm_backend *backend_find(struct siov_vdcm *v, const char *name)
{
	return FIND(&v->backend_names, struct vdcm_backend, by_name, name);
}

static struct vdcm_group *group_find(struct siov_vdcm *v, const char *name)
{
	return FIND(&v->group_names, struct vdcm_group, by_name, name);
}

static struct vdcm_vdev *vdev_find(struct siov_vdcm *v, const char *name)
{
	return FIND(&v->vdev_names, struct vdcm_vdev, by_name, name);
}

/* ---- Backends ---- */

/* Enters b in the list and the name index. */
static int backend_link(struct siov_vdcm *v, struct vdcm_backend *b, struct siov_err *err)
{
	if (siov_htab_add(&v->backend_names, &b->by_name, siov_backend_conf(b->bd)->name))
		return siov_err_set(err, -ENOMEM, "out of memory");
	*v->backends_tail = b;
	v->backends_tail = &b->next;
	v->nbackends++;
	return 0;
}

static void backend_unlink(struct siov_vdcm *v, struct vdcm_backend *b)
{
	struct vdcm_backend **pp;

	/* Backends are few: the list is walked only to unlink one. */
	for (pp = &v->backends; *pp != b; pp = &(*pp)->next)
		;
	*pp = b->next;
	if (v->backends_tail == &b->next)
		v->backends_tail = pp;
	siov_htab_del(&v->backend_names, &b->by_name);
	v->nbackends--;
}

/* STATE_DIR/mirror-NAME.bitmap, or NULL (and 0) without a state dir. */
static int bitmap_path(const struct siov_vdcm *v, const char *name, char *buf, size_t n)
{
	if (!v->state_dir)
		return 0;
	if ((size_t)snprintf(buf, n, "%s/mirror-%s.bitmap", v->state_dir, name) >= n)
		return -ENAMETOOLONG;
	return 1;
}

/* A backend that may become a member of a mirror: not used by anything else. */
static int member_usable(struct siov_vdcm *v, const char *mirror, const char *name,
			 struct vdcm_backend **out, struct siov_err *err)
{
	struct vdcm_backend *b = backend_find(v, name);

	if (!b)
		return siov_err_set(err, -ENOENT, "mirror '%s': no backend named '%s'", mirror,
				    name);
	if (siov_backend_is_mirror(b->bd))
		return siov_err_set(err, -EINVAL, "mirror '%s': '%s' is a mirror itself", mirror,
				    name);
	if (b->mirror)
		return siov_err_set(err, -EBUSY, "mirror '%s': '%s' is already a member of '%s'",
				    mirror, name, siov_backend_conf(b->mirror->bd)->name);
	if (b->nvdevs)
		return siov_err_set(err, -EBUSY, "mirror '%s': '%s' is used by %u VDEV(s) directly",
				    mirror, name, b->nvdevs);
	*out = b;
	return 0;
}

static int mirror_open_members(struct siov_vdcm *v, const struct siov_backend_conf *conf,
			       struct vdcm_backend *b, struct vdcm_backend **mb,
			       struct siov_err *err)
{
	struct siov_mirror_member mm[SIOV_MIRROR_MAX_MEMBERS];
	struct siov_mirror_opts mo = {.resync_rate = conf->resync_rate};
	char path[4200];
	unsigned i, j;
	int rc;

	if (conf->nmembers < 1 || conf->nmembers > SIOV_MIRROR_MAX_MEMBERS)
		return siov_err_set(err, -EINVAL, "mirror '%s': give 1 to %d members", conf->name,
				    SIOV_MIRROR_MAX_MEMBERS);
	for (i = 0; i < conf->nmembers; i++) {
		rc = member_usable(v, conf->name, conf->members[i], &mb[i], err);
		for (j = 0; rc == 0 && j < i; j++)
			if (mb[j] == mb[i])
				rc = siov_err_set(err, -EINVAL, "mirror '%s': '%s' is listed twice",
						  conf->name, conf->members[i]);
		if (rc)
			return rc;
		mm[i] = (struct siov_mirror_member){.bd = mb[i]->bd};
	}
	rc = bitmap_path(v, conf->name, path, sizeof(path));
	if (rc < 0)
		return siov_err_set(err, rc, "mirror '%s': state dir path too long", conf->name);
	mo.bitmap_path = rc ? path : NULL;
	return siov_mirror_open(conf, mm, conf->nmembers, &mo, &b->bd, err);
}

int siov_vdcm_backend_create(struct siov_vdcm *v, const struct siov_backend_conf *conf,
			     struct siov_err *err)
{
	struct vdcm_backend *b, *mb[SIOV_MIRROR_MAX_MEMBERS];
	unsigned i;
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
	if (conf->type == SIOV_BACKEND_MIRROR)
		rc = mirror_open_members(v, conf, b, mb, err);
	else
		rc = siov_backend_open(conf, &b->bd, err);
	if (rc)
		goto err_free;
	rc = backend_link(v, b, err);
	if (rc)
		goto err_close;
	for (i = 0; conf->type == SIOV_BACKEND_MIRROR && i < conf->nmembers; i++)
		mb[i]->mirror = b;
	SIOV_INFO("backend %s: %s, %llu bytes%s", conf->name, siov_backend_type_name(conf->type),
		  (unsigned long long)siov_backend_size(b->bd),
		  siov_backend_is_direct(b->bd) ? ", O_DIRECT" : "");
	return 0;

err_close:
	siov_backend_close(b->bd);
err_free:
	free(b);
	return rc;
}

/* Closes b; a mirror first lets go of its members. */
static void backend_close(struct siov_vdcm *v, struct vdcm_backend *b)
{
	struct vdcm_backend *o;

	for (o = v->backends; o; o = o->next)
		if (o->mirror == b)
			o->mirror = NULL;
	siov_backend_close(b->bd);
	free(b);
}

int siov_vdcm_backend_delete(struct siov_vdcm *v, const char *name, struct siov_err *err)
{
	struct vdcm_backend *b = backend_find(v, name);
	char path[4200];
	bool mirror;

	if (!b)
		return siov_err_set(err, -ENOENT, "no backend named '%s'", name);
	if (b->nvdevs)
		return siov_err_set(err, -EBUSY, "backend '%s' is used by %u VDEV(s)", name,
				    b->nvdevs);
	if (b->mirror)
		return siov_err_set(err, -EBUSY, "backend '%s' is a member of mirror '%s'", name,
				    siov_backend_conf(b->mirror->bd)->name);
	mirror = siov_backend_is_mirror(b->bd);
	/* A deleted mirror's bitmap must not be taken for a new one's of that name. */
	if (mirror && bitmap_path(v, name, path, sizeof(path)) > 0 && unlink(path) < 0 &&
	    errno != ENOENT)
		SIOV_WARN("backend %s: cannot remove %s: %s", name, path, strerror(errno));
	backend_unlink(v, b);
	/* name may point into b: log before it is freed. */
	SIOV_INFO("backend %s deleted", name);
	backend_close(v, b);
	return 0;
}

/* At shutdown: mirrors first (members cannot go while in one), bitmaps kept. */
static void backends_close_all(struct siov_vdcm *v)
{
	struct vdcm_backend *b;
	int pass;

	for (pass = 0; pass < 2; pass++) {
		b = v->backends;
		while (b) {
			struct vdcm_backend *next = b->next;

			if (pass == 1 || siov_backend_is_mirror(b->bd)) {
				backend_unlink(v, b);
				backend_close(v, b);
			}
			b = next;
		}
	}
}

static void backend_info(const struct vdcm_backend *b, struct siov_backend_info *info)
{
	*info = (struct siov_backend_info){
	    .conf = siov_backend_conf(b->bd),
	    .size = siov_backend_size(b->bd),
	    .block_size = siov_backend_block_size(b->bd),
	    .direct = siov_backend_is_direct(b->bd),
	    .vdevs = b->nvdevs,
	    .mirror = b->mirror ? siov_backend_conf(b->mirror->bd)->name : NULL,
	};
}

/* ---- Mirror members ---- */

static int mirror_find(struct siov_vdcm *v, const char *name, struct vdcm_backend **out,
		       struct siov_err *err)
{
	struct vdcm_backend *b = backend_find(v, name);

	if (!b)
		return siov_err_set(err, -ENOENT, "no backend named '%s'", name);
	if (!siov_backend_is_mirror(b->bd))
		return siov_err_set(err, -EINVAL, "backend '%s' is not a mirror", name);
	*out = b;
	return 0;
}

int siov_vdcm_mirror_add_member(struct siov_vdcm *v, const char *name, const char *member,
				bool full, struct siov_err *err)
{
	struct vdcm_backend *m, *b;
	struct siov_mirror_member mm;
	int rc = mirror_find(v, name, &m, err);

	if (rc)
		return rc;
	b = backend_find(v, member);
	if (b && b->mirror == m) {
		/* A failed member coming back: the mirror knows it. */
		mm = (struct siov_mirror_member){.bd = b->bd};
		return siov_mirror_add_member(m->bd, &mm, full, err);
	}
	rc = member_usable(v, name, member, &b, err);
	if (rc)
		return rc;
	mm = (struct siov_mirror_member){.bd = b->bd};
	rc = siov_mirror_add_member(m->bd, &mm, full, err);
	if (rc)
		return rc;
	b->mirror = m;
	return 0;
}

int siov_vdcm_mirror_remove_member(struct siov_vdcm *v, const char *name, const char *member,
				   struct siov_err *err)
{
	struct vdcm_backend *m, *b;
	struct siov_backend *out = NULL;
	int rc = mirror_find(v, name, &m, err);

	if (rc)
		return rc;
	b = backend_find(v, member);
	if (!b || b->mirror != m)
		return siov_err_set(err, -ENOENT, "mirror '%s' has no member '%s'", name, member);
	rc = siov_mirror_remove_member(m->bd, member, &out, err);
	if (rc)
		return rc;
	b->mirror = NULL;
	return 0;
}

int siov_vdcm_mirror_fail_member(struct siov_vdcm *v, const char *name, const char *member,
				 struct siov_err *err)
{
	struct vdcm_backend *m;
	int rc = mirror_find(v, name, &m, err);

	if (rc)
		return rc;
	return siov_mirror_fail_member(m->bd, member, "failed by the operator", err);
}

int siov_vdcm_mirror_set_resync_rate(struct siov_vdcm *v, const char *name, uint64_t rate,
				     struct siov_err *err)
{
	struct vdcm_backend *m;
	int rc = mirror_find(v, name, &m, err);

	if (rc)
		return rc;
	rc = siov_mirror_set_resync_rate(m->bd, rate);
	return rc ? siov_err_set(err, rc, "mirror '%s': cannot set the rate", name) : 0;
}

int siov_vdcm_backend_stats(struct siov_vdcm *v, const char *name, siov_backend_stats_cb cb,
			    void *arg, struct siov_err *err)
{
	struct vdcm_backend *b = backend_find(v, name);
	struct siov_backend_info info = {0};
	struct siov_mirror_info mi;

	if (!b)
		return siov_err_set(err, -ENOENT, "no backend named '%s'", name);
	backend_info(b, &info);
	if (siov_backend_is_mirror(b->bd)) {
		siov_mirror_get_info(b->bd, &mi);
		cb(&info, &mi, arg);
	} else {
		cb(&info, NULL, arg);
	}
	return 0;
}

/* ---- Windows ---- */

/* Two windows compare equal when they overlap: a lookup finds any overlapping one. */
static int window_cmp(const void *a, const void *b)
{
	const struct window *x = a, *y = b;

	if (x->end <= y->start)
		return -1;
	if (y->end <= x->start)
		return 1;
	return 0;
}

static bool windows_overlap(const struct window *x, const struct window *y)
{
	return x->start < y->end && y->start < x->end;
}

/* A VDEV of be whose window overlaps w, or NULL. */
static struct vdcm_vdev *window_conflict(struct vdcm_backend *be, const struct window *w)
{
	void **hit = tfind(w, &be->windows, window_cmp);
	struct vdcm_vdev *d;

	if (hit)
		return SIOV_CONTAINER_OF(*hit, struct vdcm_vdev, win);
	for (d = be->shared; d; d = d->shared_next)
		if (windows_overlap(&d->win, w))
			return d;
	return NULL;
}

/* Checks the window against the backend and, unless allowed, other VDEVs' windows. */
static int vdev_check_window(const struct siov_vdev_conf *c, struct vdcm_backend *be,
			     uint64_t *size, struct siov_err *err)
{
	uint64_t bsize = siov_backend_size(be->bd);
	struct window w;
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
	w = (struct window){c->offset, c->offset + *size};
	d = window_conflict(be, &w);
	if (d)
		return siov_err_set(err, -EEXIST,
				    "window overlaps VDEV '%s' [%llu, +%llu); pass "
				    "allow_overlap to share bytes",
				    d->conf.name, (unsigned long long)d->conf.offset,
				    (unsigned long long)d->size);
	return 0;
}

/*
 * Exclusive windows go into the tree, which stays pairwise disjoint because
 * each was checked against every window before it; shared ones are listed.
 */
static int window_insert(struct vdcm_vdev *d)
{
	if (d->conf.allow_overlap) {
		d->shared_next = d->be->shared;
		d->be->shared = d;
		return 0;
	}
	return tsearch(&d->win, &d->be->windows, window_cmp) ? 0 : -ENOMEM;
}

static void window_remove(struct vdcm_vdev *d)
{
	struct vdcm_vdev **pp;

	if (!d->conf.allow_overlap) {
		tdelete(&d->win, &d->be->windows, window_cmp);
		return;
	}
	for (pp = &d->be->shared; *pp; pp = &(*pp)->shared_next) {
		if (*pp == d) {
			*pp = d->shared_next;
			return;
		}
	}
}

/* ---- QoS groups ---- */

static int qos_check(const struct siov_qos_params *p, const char *what, const char *name,
		     struct siov_err *err)
{
	const char *why = NULL;
	int rc = siov_qos_params_check(p, &why);

	if (rc)
		return siov_err_set(err, rc, "%s '%s': invalid QoS parameters: %s", what, name,
				    why ? why : strerror(-rc));
	return 0;
}

int siov_vdcm_group_create(struct siov_vdcm *v, const struct siov_group_conf *conf,
			   struct siov_err *err)
{
	struct vdcm_group *g;
	int rc;

	if (!siov_name_valid(conf->name))
		return siov_err_set(err, -EINVAL,
				    "invalid group name '%s' (use 1-63 of A-Z a-z 0-9 _ . -)",
				    conf->name);
	if (group_find(v, conf->name))
		return siov_err_set(err, -EEXIST, "group '%s' already exists", conf->name);
	rc = qos_check(&conf->qos, "group", conf->name, err);
	if (rc)
		return rc;
	g = calloc(1, sizeof(*g));
	if (!g)
		return siov_err_set(err, -ENOMEM, "out of memory");
	g->conf = *conf;
	rc = siov_qos_create(&g->conf.qos, NULL, &g->qos);
	if (rc) {
		siov_err_set(err, rc, "group '%s': cannot create its QoS: %s", conf->name,
			     strerror(-rc));
		goto err_free;
	}
	rc = siov_htab_add(&v->group_names, &g->by_name, g->conf.name);
	if (rc) {
		siov_err_set(err, rc, "out of memory");
		goto err_qos;
	}
	g->prev = v->groups_tail;
	*(g->prev ? &g->prev->next : &v->groups) = g;
	v->groups_tail = g;
	v->ngroups++;
	SIOV_INFO("group %s created", conf->name);
	return 0;

err_qos:
	siov_qos_destroy(g->qos);
err_free:
	free(g);
	return rc;
}

int siov_vdcm_group_set_qos(struct siov_vdcm *v, const char *name,
			    const struct siov_qos_params *qos, struct siov_err *err)
{
	struct vdcm_group *g = group_find(v, name);
	int rc;

	if (!g)
		return siov_err_set(err, -ENOENT, "no group named '%s'", name);
	rc = qos_check(qos, "group", name, err);
	if (rc)
		return rc;
	rc = siov_qos_set(g->qos, qos);
	if (rc)
		return siov_err_set(err, rc, "group '%s': cannot set QoS: %s", name, strerror(-rc));
	g->conf.qos = *qos;
	return 0;
}

int siov_vdcm_group_delete(struct siov_vdcm *v, const char *name, struct siov_err *err)
{
	struct vdcm_group *g = group_find(v, name);

	if (!g)
		return siov_err_set(err, -ENOENT, "no group named '%s'", name);
	if (g->nvdevs)
		return siov_err_set(err, -EBUSY, "group '%s' has %u VDEV(s)", name, g->nvdevs);
	*(g->prev ? &g->prev->next : &v->groups) = g->next;
	*(g->next ? &g->next->prev : &v->groups_tail) = g->prev;
	siov_htab_del(&v->group_names, &g->by_name);
	v->ngroups--;
	SIOV_INFO("group %s deleted", name);
	siov_qos_destroy(g->qos);
	free(g);
	return 0;
}

void siov_vdcm_group_foreach(struct siov_vdcm *v, siov_group_info_cb cb, void *arg)
{
	struct siov_qos_params p;
	struct vdcm_group *g;

	for (g = v->groups; g; g = g->next) {
		struct siov_group_info info = {.conf = &g->conf, .vdevs = g->nvdevs};
		siov_qos_get(g->qos, &p, &info.qos);
		cb(&info, arg);
	}
}

/* ---- VDEVs ---- */

static int vdev_check(struct siov_vdcm *v, const struct siov_vdev_conf *c, struct siov_err *err)
{
	struct siov_hlink *l;

	if (!siov_name_valid(c->name))
		return siov_err_set(err, -EINVAL,
				    "invalid VDEV name '%s' (use 1-63 of A-Z a-z 0-9 _ . -)",
				    c->name);
	/* The conf may come from anywhere: no field may run past its end unterminated. */
	if (strnlen(c->backend, sizeof(c->backend)) == sizeof(c->backend) ||
	    strnlen(c->group, sizeof(c->group)) == sizeof(c->group) ||
	    strnlen(c->network, sizeof(c->network)) == sizeof(c->network))
		return siov_err_set(err, -EINVAL,
				    "VDEV '%s': backend, network or group name too long", c->name);
	if (strnlen(c->socket, sizeof(c->socket)) == sizeof(c->socket))
		return siov_err_set(err, -ENAMETOOLONG,
				    "VDEV '%s': socket path is limited to %d bytes", c->name,
				    SIOV_SOCKET_PATH_MAX - 1);
	if (vdev_find(v, c->name))
		return siov_err_set(err, -EEXIST, "VDEV '%s' already exists", c->name);
	if (c->type != SIOV_VDEV_BLK && c->type != SIOV_VDEV_NET)
		return siov_err_set(err, -EINVAL, "unsupported VDEV type");
	if (c->queues > SIOV_VDEV_MAX_QUEUES)
		return siov_err_set(err, -EINVAL, "queues must be 1..%d", SIOV_VDEV_MAX_QUEUES);
	if (c->type == SIOV_VDEV_NET && c->queues > SIOV_NET_MAX_PAIRS)
		return siov_err_set(err, -EINVAL, "a net VDEV has 1..%d queue pairs",
				    SIOV_NET_MAX_PAIRS);
	if (c->socket[0] != '/')
		return siov_err_set(err, -EINVAL, "socket must be an absolute path");
	if (strstr(c->socket, "/../") || !socket_dir_allowed(v, c->socket))
		return siov_err_set(
		    err, -EACCES,
		    "socket %s is outside the directories siovd was allowed (--socket-dir)",
		    c->socket);
	l = siov_htab_find(&v->vdev_sockets, c->socket);
	if (l)
		return siov_err_set(err, -EADDRINUSE, "socket %s is in use by VDEV '%s'", c->socket,
				    SIOV_CONTAINER_OF(l, struct vdcm_vdev, by_socket)->conf.name);
	return qos_check(&c->qos, "VDEV", c->name, err);
}

/* Frees what vdev_build() made; accepts a half-built VDEV. */
static void vdev_free(struct vdcm_vdev *d)
{
	/* The server stops every queue first: nobody sends from or delivers to the port after. */
	siov_vu_server_destroy(d->srv);
	siov_net_destroy(d->net);
	siov_blk_destroy(d->blk);
	/* After the queues stopped: nothing is in flight on the move's mirror. */
	siov_backend_close(d->move_bd);
	if (d->qos)
		siov_qos_destroy(d->qos);
	free(d);
}

static int vdev_build_blk(struct vdcm_vdev *d, struct siov_vu_server_opts *so, struct siov_err *err)
{
	struct siov_blk_conf bc = {.name = d->conf.name,
				   .backend = d->be->bd,
				   .offset = d->conf.offset,
				   .size = d->size,
				   .readonly = d->conf.readonly,
				   .queues = d->conf.queues ? d->conf.queues : 1,
				   .error_policy = d->conf.error_policy,
				   .hold_timeout_ms = d->conf.hold_timeout_ms};
	int rc = siov_blk_create(&bc, &d->blk);

	if (rc)
		return siov_err_set(err, rc, "cannot create the virtio-blk device: %s",
				    strerror(-rc));
	so->dev_ops = &siov_blk_dev_ops;
	so->dev = d->blk;
	/* Left unset, offer what the protocol allows: QEMU starts one queue per vCPU. */
	so->queues = d->conf.queues ? d->conf.queues : SIOV_VU_MAX_QUEUES;
	return 0;
}

/* A port on the network; queue 2i receives and 2i+1 sends for pair i. */
static int vdev_build_net(struct vdcm_vdev *d, struct siov_vu_server_opts *so, struct siov_err *err)
{
	struct siov_net_conf nc = {.name = d->conf.name,
				   .network = d->network,
				   .allow_spoof = d->conf.allow_spoof,
				   .queue_pairs = d->conf.queues ? d->conf.queues : 1,
				   .rx_qos = &d->conf.qos};
	int rc;

	memcpy(nc.mac, d->conf.mac, sizeof(nc.mac));
	if ((rc = siov_net_create(&nc, &d->net, err)) < 0)
		return rc;
	so->dev_ops = &siov_net_dev_ops;
	so->dev = d->net;
	so->queues = 2u * nc.queue_pairs;
	return 0;
}

/* The device model, its QoS and its vhost-user server. */
static int vdev_build(struct siov_vdcm *v, struct vdcm_vdev *d, struct siov_err *err)
{
	struct siov_vu_server_opts so = {.loop = v->loop, .engines = v->engines};
	int rc;

	rc = d->conf.type == SIOV_VDEV_NET ? vdev_build_net(d, &so, err)
					   : vdev_build_blk(d, &so, err);
	if (rc)
		return rc;
	rc = siov_qos_create(&d->conf.qos, d->group ? d->group->qos : NULL, &d->qos);
	if (rc)
		return siov_err_set(err, rc, "cannot create the VDEV's QoS: %s", strerror(-rc));
	/* Reservations are kept per backend; a net port has none (no domain). */
	if (d->be)
		siov_qos_set_domain(d->qos, &d->be->qos_dom);
	so.name = d->conf.name;
	so.socket_path = d->conf.socket;
	so.qos = d->qos;
	so.socket_mode = v->socket_mode;
	so.socket_uid = v->socket_uid;
	so.socket_gid = v->socket_gid;
	return siov_vu_server_create(&so, &d->srv, err);
}

/* Enters d in the indexes; on failure nothing is left entered. */
static int vdev_link(struct siov_vdcm *v, struct vdcm_vdev *d)
{
	if (siov_htab_add(&v->vdev_names, &d->by_name, d->conf.name))
		return -ENOMEM;
	if (siov_htab_add(&v->vdev_sockets, &d->by_socket, d->conf.socket))
		goto err_name;
	if (d->be && window_insert(d))
		goto err_socket;
	d->prev = v->vdevs_tail;
	*(d->prev ? &d->prev->next : &v->vdevs) = d;
	v->vdevs_tail = d;
	v->nvdevs++;
	if (d->be)
		d->be->nvdevs++;
	if (d->group)
		d->group->nvdevs++;
	return 0;

err_socket:
	siov_htab_del(&v->vdev_sockets, &d->by_socket);
err_name:
	siov_htab_del(&v->vdev_names, &d->by_name);
	return -ENOMEM;
}

static void move_forget(struct siov_vdcm *v, struct vdcm_vdev *d);

static void vdev_unlink(struct siov_vdcm *v, struct vdcm_vdev *d)
{
	*(d->prev ? &d->prev->next : &v->vdevs) = d->next;
	*(d->next ? &d->next->prev : &v->vdevs_tail) = d->prev;
	if (d->be)
		window_remove(d);
	siov_htab_del(&v->vdev_sockets, &d->by_socket);
	siov_htab_del(&v->vdev_names, &d->by_name);
	v->nvdevs--;
	if (d->be)
		d->be->nvdevs--;
	if (d->group)
		d->group->nvdevs--;
	if (d->move_be)
		move_forget(v, d);
}

/* ---- vdev_move ---- */

static int move_bitmap(const struct siov_vdcm *v, const char *vdev, char *buf, size_t n)
{
	if (!v->state_dir)
		return 0;
	if ((size_t)snprintf(buf, n, "%s/move-%s.bitmap", v->state_dir, vdev) >= n)
		return -ENAMETOOLONG;
	return 1;
}

static void move_unlink_bitmap(struct siov_vdcm *v, const char *vdev)
{
	char path[4200];

	if (move_bitmap(v, vdev, path, sizeof(path)) > 0 && unlink(path) < 0 && errno != ENOENT)
		SIOV_WARN("vdev %s: cannot remove %s: %s", vdev, path, strerror(errno));
}

/* Lets go of the target's window and count; the mirror is closed with the VDEV. */
static void move_forget(struct siov_vdcm *v, struct vdcm_vdev *d)
{
	tdelete(&d->move_win, &d->move_be->windows, window_cmp);
	d->move_be->nvdevs--;
	d->move_be = NULL;
	v->nmoves--;
	/* A move abandoned with its VDEV: its bitmap means nothing any more. */
	move_unlink_bitmap(v, d->conf.name);
}

static void move_tick(struct siov_watch *w, uint32_t events, void *arg);

static int move_timer_arm(struct siov_vdcm *v)
{
	struct itimerspec its = {.it_interval = {0, 200000000}, .it_value = {0, 200000000}};
	int rc;

	if (v->move_timer < 0) {
		v->move_timer = timerfd_create(CLOCK_MONOTONIC, TFD_CLOEXEC | TFD_NONBLOCK);
		if (v->move_timer < 0)
			return -errno;
		rc = siov_loop_add(v->loop, v->move_timer, EPOLLIN, move_tick, v, &v->move_watch);
		if (rc) {
			close(v->move_timer);
			v->move_timer = -1;
			return rc;
		}
	}
	return timerfd_settime(v->move_timer, 0, &its, NULL) < 0 ? -errno : 0;
}

/* The target window: in range, and clear of the target's other VDEVs. */
static int move_check(struct siov_vdcm *v, struct vdcm_vdev *d, struct vdcm_backend *t,
		      uint64_t offset, struct siov_err *err)
{
	struct siov_vdev_conf c = d->conf;
	uint64_t size;
	int rc;

	if (d->move_be)
		return siov_err_set(err, -EBUSY, "VDEV '%s' is already moving to '%s'",
				    d->conf.name, d->conf.move_backend);
	if (d->conf.allow_overlap)
		return siov_err_set(err, -EINVAL,
				    "VDEV '%s' shares its window (allow_overlap): "
				    "it cannot move",
				    d->conf.name);
	/* An NBD export reads the window directly and would not follow the switch. */
	if (d->exports)
		return siov_err_set(err, -EBUSY,
				    "VDEV '%s' is exported over NBD: delete the export "
				    "to move it",
				    d->conf.name);
	if (t->mirror)
		return siov_err_set(err, -EBUSY, "backend '%s' is a member of a mirror",
				    siov_backend_conf(t->bd)->name);
	if (t == d->be && offset == d->conf.offset)
		return siov_err_set(err, -EINVAL, "VDEV '%s' is there already", d->conf.name);
	c.offset = offset;
	c.size = d->size;
	snprintf(c.backend, sizeof(c.backend), "%s", siov_backend_conf(t->bd)->name);
	rc = vdev_check_window(&c, t, &size, err);
	return rc;
}

/* Opens the move's mirror: the VDEV's window (in sync) and the target (to copy). */
static int move_open(struct siov_vdcm *v, struct vdcm_vdev *d, struct vdcm_backend *t,
		     uint64_t offset, bool resume, struct siov_err *err)
{
	struct siov_mirror_member mm[2] = {{.bd = d->be->bd, .offset = d->conf.offset},
					   {.bd = t->bd, .offset = offset}};
	struct siov_mirror_opts mo = {.size = d->size};
	struct siov_backend_conf mc = {.type = SIOV_BACKEND_MIRROR};
	char path[4200];
	int rc = move_bitmap(v, d->conf.name, path, sizeof(path));

	if (rc < 0)
		return siov_err_set(err, rc, "vdev '%s': state dir path too long", d->conf.name);
	mo.bitmap_path = rc ? path : NULL;
	/* A new move starts from nothing, whatever an old one left. */
	if (!resume)
		move_unlink_bitmap(v, d->conf.name);
	snprintf(mc.name, sizeof(mc.name), "move.%.50s", d->conf.name);
	return siov_mirror_open(&mc, mm, 2, &mo, &d->move_bd, err);
}

/* Switches the VDEV's queues onto bd at offset; -EBUSY if they do not drain. */
static int vdev_switch(struct vdcm_vdev *d, struct siov_backend *bd, uint64_t offset)
{
	struct siov_blk_hold_stats h;
	int rc;

	/* Held requests never drain: do not stall the control thread waiting for them. */
	siov_blk_hold_stats(d->blk, &h);
	if (h.held)
		return -EBUSY;
	rc = siov_blk_pause(d->blk, 5000);
	if (rc)
		return rc;
	siov_blk_switch(d->blk, bd, offset);
	siov_blk_unpause(d->blk);
	return 0;
}

static int move_begin(struct siov_vdcm *v, struct vdcm_vdev *d, const char *backend,
		      uint64_t offset, bool resume, struct siov_err *err)
{
	struct vdcm_backend *t = backend_find(v, backend);
	int rc;

	if (!t)
		return siov_err_set(err, -ENOENT, "no backend named '%s'", backend);
	rc = move_check(v, d, t, offset, err);
	if (rc)
		return rc;
	rc = move_open(v, d, t, offset, resume, err);
	if (rc)
		return rc;
	d->move_win = (struct window){offset, offset + d->size};
	if (!tsearch(&d->move_win, &t->windows, window_cmp)) {
		rc = siov_err_set(err, -ENOMEM, "out of memory");
		goto err_close;
	}
	rc = move_timer_arm(v);
	if (rc == 0)
		rc = vdev_switch(d, d->move_bd, 0);
	if (rc) {
		siov_err_set(err, rc, "VDEV '%s': cannot switch it onto the move's mirror: %s",
			     d->conf.name,
			     rc == -EBUSY ? "requests did not drain (held?)" : strerror(-rc));
		goto err_window;
	}
	d->move_be = t;
	t->nvdevs++;
	v->nmoves++;
	snprintf(d->conf.move_backend, sizeof(d->conf.move_backend), "%s", backend);
	d->conf.move_offset = offset;
	SIOV_INFO("vdev %s: %s to %s [%llu, +%llu)", d->conf.name,
		  resume ? "still moving" : "moving", backend, (unsigned long long)offset,
		  (unsigned long long)d->size);
	return 0;

err_window:
	tdelete(&d->move_win, &t->windows, window_cmp);
err_close:
	siov_backend_close(d->move_bd);
	d->move_bd = NULL;
	return rc;
}

int siov_vdcm_vdev_move(struct siov_vdcm *v, const char *name, const char *backend, uint64_t offset,
			uint64_t rate, struct siov_err *err)
{
	struct vdcm_vdev *d = vdev_find(v, name);
	int rc;

	if (!d)
		return siov_err_set(err, -ENOENT, "no VDEV named '%s'", name);
	if (!d->be)
		return siov_err_set(err, -EINVAL,
				    "VDEV '%s' is a network port: it has no data to move", name);
	rc = move_begin(v, d, backend, offset, false, err);
	if (rc == 0 && rate)
		siov_mirror_set_resync_rate(d->move_bd, rate);
	return rc;
}

void siov_vdcm_set_changed_cb(struct siov_vdcm *v, siov_vdcm_changed_cb cb, void *arg)
{
	v->changed_cb = cb;
	v->changed_arg = arg;
}

/* True once the target member of the move's mirror is in sync. */
static bool move_synced(struct vdcm_vdev *d, uint64_t *done, uint64_t *total)
{
	struct siov_mirror_info mi;
	const char *target = siov_backend_conf(d->move_be->bd)->name;
	unsigned i;

	siov_mirror_get_info(d->move_bd, &mi);
	*done = *total = 0;
	for (i = 0; i < mi.nmembers; i++) {
		if (strcmp(mi.members[i].name, target) ||
		    mi.members[i].offset != d->conf.move_offset)
			continue;
		*done = mi.members[i].resync_done;
		*total = mi.members[i].resync_total;
		return mi.members[i].state == SIOV_MEMBER_IN_SYNC;
	}
	return false;
}

/*
 * The move's last step.  The old window is failed in the mirror first (its
 * bitmap file says so), so that a restart from here on reads the target only;
 * then the VDEV goes onto the target alone, the conf follows and is saved, and
 * only then the mirror and its bitmap go.
 */
static void move_finish(struct siov_vdcm *v, struct vdcm_vdev *d)
{
	struct vdcm_backend *t = d->move_be, *src = d->be;
	struct siov_err e = {0};
	uint64_t offset = d->conf.move_offset;
	bool saved;

	if (siov_mirror_fail_member(d->move_bd, siov_backend_conf(src->bd)->name, "moved away",
				    &e) &&
	    e.code != -EBUSY)
		SIOV_WARN("vdev %s: move: %s", d->conf.name, e.msg);
	if (vdev_switch(d, t->bd, offset))
		return; /* requests held or stuck: the next tick tries again */
	tdelete(&d->win, &src->windows, window_cmp);
	tdelete(&d->move_win, &t->windows, window_cmp);
	d->win = d->move_win;
	tsearch(&d->win, &t->windows, window_cmp);
	d->be = t;
	src->nvdevs--;
	d->move_be = NULL;
	v->nmoves--;
	snprintf(d->conf.backend, sizeof(d->conf.backend), "%s", siov_backend_conf(t->bd)->name);
	d->conf.offset = offset;
	d->conf.move_backend[0] = '\0';
	d->conf.move_offset = 0;
	saved = !v->changed_cb || v->changed_cb(v->changed_arg, d->conf.name) == 0;
	siov_backend_close(d->move_bd);
	d->move_bd = NULL;
	/* Unsaved, the state still says "moving": the bitmap must stay for the restart. */
	if (saved)
		move_unlink_bitmap(v, d->conf.name);
	SIOV_INFO("vdev %s: moved to %s [%llu, +%llu)%s", d->conf.name, d->conf.backend,
		  (unsigned long long)offset, (unsigned long long)d->size,
		  saved ? "" : " (the state could not be saved)");
}

static void move_tick(struct siov_watch *w, uint32_t events, void *arg)
{
	struct siov_vdcm *v = arg;
	struct itimerspec off = {0};
	uint64_t n, done, total;
	struct vdcm_vdev *d, *next;

	if (read(v->move_timer, &n, sizeof(n)) < 0 && errno != EAGAIN)
		SIOV_DEBUG("move timer: %s", strerror(errno));
	for (d = v->vdevs; d; d = next) {
		next = d->next;
		if (d->move_be && move_synced(d, &done, &total))
			move_finish(v, d);
	}
	if (!v->nmoves)
		timerfd_settime(v->move_timer, 0, &off, NULL);
}

/* A net VDEV without a MAC gets a locally administered one derived from its name. */
static void vdev_default_mac(struct siov_vdev_conf *c)
{
	uint64_t h = 0xcbf29ce484222325ull;
	const char *s;

	if (c->mac_set)
		return;
	for (s = c->name; *s; s++)
		h = (h ^ (unsigned char)*s) * 0x100000001b3ull;
	c->mac[0] = 0x52;
	c->mac[1] = 0x54;
	c->mac[2] = 0x00;
	c->mac[3] = (uint8_t)(h >> 16);
	c->mac[4] = (uint8_t)(h >> 8);
	c->mac[5] = (uint8_t)h;
	c->mac_set = true;
}

/* Resolves the backend (or network) and group d->conf names, and checks the window. */
static int vdev_resolve(struct siov_vdcm *v, struct vdcm_vdev *d, struct siov_err *err)
{
	int rc;

	if (d->conf.group[0]) {
		d->group = group_find(v, d->conf.group);
		if (!d->group)
			return siov_err_set(err, -ENOENT, "no group named '%s'", d->conf.group);
	}
	if (d->conf.type == SIOV_VDEV_NET) {
		d->network = siov_network_find(vdcm_nets_switch(v->nets), d->conf.network);
		if (!d->network)
			return siov_err_set(err, -ENOENT, "no network named '%s'", d->conf.network);
		vdev_default_mac(&d->conf);
		return 0;
	}
	d->be = backend_find(v, d->conf.backend);
	if (!d->be)
		return siov_err_set(err, -ENOENT, "no backend named '%s'", d->conf.backend);
	if (d->be->mirror)
		return siov_err_set(err, -EBUSY,
				    "backend '%s' is a member of mirror '%s': use the mirror",
				    d->conf.backend, siov_backend_conf(d->be->mirror->bd)->name);
	rc = vdev_check_window(&d->conf, d->be, &d->size, err);
	if (rc)
		return rc;
	d->win = (struct window){d->conf.offset, d->conf.offset + d->size};
	return 0;
}

int siov_vdcm_vdev_create(struct siov_vdcm *v, const struct siov_vdev_conf *conf,
			  struct siov_err *err)
{
	struct siov_err local = {0};
	struct vdcm_vdev *d;
	int rc;

	if (!err)
		err = &local;
	rc = vdev_check(v, conf, err);
	if (rc)
		return rc;
	d = calloc(1, sizeof(*d));
	if (!d)
		return siov_err_set(err, -ENOMEM, "out of memory");
	d->conf = *conf;
	rc = vdev_resolve(v, d, err);
	if (rc)
		goto err_free;
	rc = vdev_build(v, d, err);
	if (rc)
		goto err_free;
	rc = vdev_link(v, d);
	if (rc) {
		siov_err_set(err, rc, "out of memory");
		goto err_free;
	}
	if (d->conf.move_backend[0]) {
		/* Restored mid-move: never serve the old window alone, it may be behind. */
		d->conf.move_backend[0] = '\0';
		rc = move_begin(v, d, conf->move_backend, conf->move_offset, true, err);
		if (rc) {
			vdev_unlink(v, d);
			goto err_free;
		}
	}
	if (d->net) {
		const uint8_t *m = d->conf.mac;

		SIOV_INFO(
		    "vdev %s: net on %s, mac %02x:%02x:%02x:%02x:%02x:%02x, %u queue pair(s)%s, "
		    "socket %s",
		    d->conf.name, d->conf.network, m[0], m[1], m[2], m[3], m[4], m[5],
		    d->conf.queues ? d->conf.queues : 1u,
		    d->conf.allow_spoof ? ", allow_spoof" : "", d->conf.socket);
	} else {
		SIOV_INFO("vdev %s: blk on %s [%llu, +%llu), %u queue(s)%s, socket %s",
			  d->conf.name, d->conf.backend, (unsigned long long)d->conf.offset,
			  (unsigned long long)d->size, d->conf.queues,
			  d->conf.readonly ? ", read-only" : "", d->conf.socket);
	}
	return 0;

err_free:
	vdev_free(d);
	return rc;
}

int siov_vdcm_vdev_delete(struct siov_vdcm *v, const char *name, struct siov_err *err)
{
	struct vdcm_vdev *d = vdev_find(v, name);

	if (!d)
		return siov_err_set(err, -ENOENT, "no VDEV named '%s'", name);
	if (d->exports)
		return siov_err_set(err, -EBUSY,
				    "VDEV '%s' is exported over NBD (export_delete first)", name);
	vdev_unlink(v, d);
	SIOV_INFO("vdev %s deleted", name);
	/* The server stops the queues before the QoS they point to goes. */
	vdev_free(d);
	return 0;
}

int siov_vdcm_vdev_set_qos(struct siov_vdcm *v, const char *name, const struct siov_qos_params *qos,
			   struct siov_err *err)
{
	struct vdcm_vdev *d = vdev_find(v, name);
	int rc;

	if (!d)
		return siov_err_set(err, -ENOENT, "no VDEV named '%s'", name);
	rc = qos_check(qos, "VDEV", name, err);
	if (rc)
		return rc;
	rc = siov_qos_set(d->qos, qos);
	if (!rc && d->net)
		rc = siov_net_set_rx_qos(d->net, qos);
	if (rc)
		return siov_err_set(err, rc, "VDEV '%s': cannot set QoS: %s", name, strerror(-rc));
	d->conf.qos = *qos;
	return 0;
}

int siov_vdcm_vdev_set_error_policy(struct siov_vdcm *v, const char *name, enum siov_error_policy p,
				    uint32_t timeout_ms, struct siov_err *err)
{
	struct vdcm_vdev *d = vdev_find(v, name);

	if (!d)
		return siov_err_set(err, -ENOENT, "no VDEV named '%s'", name);
	/* A NIC has no requests to hold: a frame it cannot deliver is dropped and counted. */
	if (!d->blk)
		return siov_err_set(err, -EINVAL,
				    "VDEV '%s' is a network port: it has no error policy", name);
	siov_blk_set_error_policy(d->blk, p, timeout_ms);
	d->conf.error_policy = p;
	d->conf.hold_timeout_ms = timeout_ms;
	return 0;
}

int siov_vdcm_vdev_resume(struct siov_vdcm *v, const char *name, struct siov_err *err)
{
	struct vdcm_vdev *d = vdev_find(v, name);
	struct siov_blk_hold_stats h;

	if (!d)
		return siov_err_set(err, -ENOENT, "no VDEV named '%s'", name);
	if (!d->blk)
		return siov_err_set(err, -EINVAL,
				    "VDEV '%s' is a network port: it holds no requests to resume",
				    name);
	siov_blk_hold_stats(d->blk, &h);
	SIOV_INFO("vdev %s: resumed (%llu request(s) held)", name, (unsigned long long)h.held);
	siov_blk_resume(d->blk);
	return 0;
}

void siov_vdcm_destroy(struct siov_vdcm *v)
{
	if (!v)
		return;
	while (v->exports)
		siov_vdcm_export_delete(v, v->exports->d->conf.name, NULL);
	while (v->vdevs)
		siov_vdcm_vdev_delete(v, v->vdevs->conf.name, NULL);
	while (v->groups)
		siov_vdcm_group_delete(v, v->groups->conf.name, NULL);
	/* Mirrors before their members; their bitmaps stay for the next start. */
	backends_close_all(v);
	vdcm_nets_destroy(v->nets);
	siov_engines_destroy(v->engines);
	socket_dirs_fini(v);
	if (v->move_watch)
		siov_loop_del(v->move_watch);
	if (v->move_timer >= 0)
		close(v->move_timer);
	free(v->state_dir);
	siov_htab_fini(&v->backend_names);
	siov_htab_fini(&v->group_names);
	siov_htab_fini(&v->vdev_names);
	siov_htab_fini(&v->vdev_sockets);
	free(v);
}

/* ---- Reports ---- */

void siov_vdcm_backend_foreach(struct siov_vdcm *v, siov_backend_info_cb cb, void *arg)
{
	struct vdcm_backend *b;

	for (b = v->backends; b; b = b->next) {
		struct siov_backend_info info;

		backend_info(b, &info);
		cb(&info, arg);
	}
}

/* self_run: the queue runs in its device model (a net receive queue), so no engine has it. */
static void queue_stats(const struct siov_vq *vq, bool self_run, struct siov_queue_stats *s)
{
	const struct siov_vq_stats *t;

	memset(s, 0, sizeof(*s));
	s->engine = -1;
	s->state = "stopped";
	s->ring = "split";
	if (!vq)
		return; /* a queue the front end never named */
	/* Taken only now: &vq->stats of a NULL vq is undefined (UBSan stops siovd). */
	t = &vq->stats;
	s->index = vq->index;
	s->ring = vq->packed ? "packed" : "split";
	s->engine = siov_engine_of(vq);
	s->state = __atomic_load_n(&vq->broken, __ATOMIC_ACQUIRE) ? "broken"
		   : s->engine >= 0 || self_run			  ? "running"
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
	s->avail_reads = SIOV_STAT_GET(t->avail_reads);
	s->used_writes = SIOV_STAT_GET(t->used_writes);
	s->calls = SIOV_STAT_GET(t->calls);
	for (unsigned k = 0; k < SIOV_LAT_BUCKETS; k++)
		s->lat_hist[k] = SIOV_STAT_GET(t->lat_hist[k]);
	s->in_order = vq->in_order;
	s->order_held = SIOV_STAT_GET(t->order_held);
	s->order_entries = SIOV_STAT_GET(t->order_entries);
	s->order_used = SIOV_STAT_GET(t->order_used);
}

/* The export's I/O in a queue's terms, so that it counts in the VDEV's totals like one. */
static void export_io(struct siov_export *ex, struct siov_vdev_info *info)
{
	struct siov_export_stats st;

	siov_export_get_stats(ex, &st);
	info->exported = true;
	info->export_throttled = st.throttled;
	info->export_io = (struct siov_queue_stats){.state = "running",
						    .engine = -1,
						    .requests = st.requests,
						    .reads = st.reads,
						    .writes = st.writes,
						    .flushes = st.flushes,
						    .discards = st.discards,
						    .write_zeroes = st.write_zeroes,
						    .bytes_read = st.bytes_read,
						    .bytes_written = st.bytes_written,
						    .errors = st.errors,
						    .inflight = st.inflight,
						    .latency_ns_total = st.latency_ns_total};
}

/*
 * Every member of info is written here, each by what fills it: a designated
 * initializer would zero ~1.7 KB per VDEV (the net members, the export's
 * queue), a quarter of the control thread's part of a 10,000-VDEV scrape.
 * What only some VDEVs have (rxq, port, export_io) is filled where it exists
 * and read only behind is_net, nrxq and exported (see struct siov_vdev_info).
 */
static void vdev_report(struct vdcm_vdev *d, siov_vdev_info_cb cb, void *arg)
{
	struct siov_queue_stats qs[SIOV_VDEV_MAX_QUEUES];
	struct siov_vdev_info info;
	/* The queues a front end has named: the others cost nothing and have no stats. */
	unsigned i, n = siov_vu_server_queues_used(d->srv);
	struct siov_qos_params p;

	for (i = 0; i < n && i < SIOV_VDEV_MAX_QUEUES; i++) {
		queue_stats(siov_vu_server_queue(d->srv, i),
			    siov_vu_server_queue_self_running(d->srv, i), &qs[i]);
		qs[i].index = i;
	}
	info.conf = &d->conf;
	info.size = d->size;
	info.queues = qs;
	info.nqueues = i;
	info.state = siov_vu_server_state(d->srv);
	info.broken_reason = siov_vu_server_broken_reason(d->srv);
	info.connected = siov_vu_server_connected(d->srv);
	info.features = siov_vu_server_features(d->srv);
	info.connections = siov_vu_server_connections(d->srv);
	info.logging = siov_vu_server_logging(d->srv);
	info.max_queues = siov_vu_server_nqueues(d->srv);
	info.exported = false;
	info.export_throttled = 0;
	if (d->export)
		export_io(d->export, &info);
	siov_qos_get(d->qos, &p, &info.qos);
	info.is_net = d->net != NULL;
	info.nrxq = 0;
	info.hold = (struct siov_blk_hold_stats){0};
	if (d->net) {
		siov_port_get_stats(siov_net_port(d->net), &info.port);
		info.nrxq = siov_net_rxq_stats(d->net, info.rxq, SIOV_NET_MAX_PAIRS);
	} else {
		siov_blk_hold_stats(d->blk, &info.hold);
	}
	info.now_ns = siov_now_ns();
	info.move_done = info.move_total = 0;
	if (d->move_be)
		move_synced(d, &info.move_done, &info.move_total);
	cb(&info, arg);
}

void siov_vdcm_vdev_foreach(struct siov_vdcm *v, siov_vdev_info_cb cb, void *arg)
{
	struct vdcm_vdev *d;

	for (d = v->vdevs; d; d = d->next)
		vdev_report(d, cb, arg);
}

static bool has_prefix(const char *s, const char *prefix)
{
	return !prefix || strncmp(s, prefix, strlen(prefix)) == 0;
}

uint64_t siov_vdcm_vdev_query(struct siov_vdcm *v, const struct siov_vdev_filter *f,
			      siov_vdev_info_cb cb, void *arg)
{
	const char *prefix = f->prefix && f->prefix[0] ? f->prefix : NULL;
	uint64_t matched = 0, reported = 0;
	struct vdcm_vdev *d;

	for (d = v->vdevs; d; d = d->next) {
		if (!has_prefix(d->conf.name, prefix))
			continue;
		if (matched++ < f->offset || (f->limit && reported >= f->limit))
			continue;
		vdev_report(d, cb, arg);
		reported++;
	}
	return matched;
}

int siov_vdcm_vdev_get(struct siov_vdcm *v, const char *name, siov_vdev_info_cb cb, void *arg)
{
	struct vdcm_vdev *d = vdev_find(v, name);

	if (!d)
		return -ENOENT;
	vdev_report(d, cb, arg);
	return 0;
}

int siov_vdcm_engine_stats(struct siov_vdcm *v, unsigned i, struct siov_engine_stats *out)
{
	struct siov_engine *e = siov_engines_get(v->engines, i);

	if (!e)
		return -ENOENT;
	siov_engine_get_stats(e, out);
	return 0;
}

void siov_vdcm_daemon_info(struct siov_vdcm *v, struct siov_daemon_info *info)
{
	info->version = SIOV_VERSION;
	info->engines = siov_engines_count(v->engines);
	info->backends = v->nbackends;
	info->vdevs = v->nvdevs;
	info->groups = v->ngroups;
	info->networks = siov_switch_networks(vdcm_nets_switch(v->nets));
	info->uptime_s = (double)(siov_now_ns() - v->start_ns) / 1e9;
}

struct vdcm_nets *vdcm_nets_of(struct siov_vdcm *v)
{
	return v->nets;
}

/* ---- Exports ---- */

static struct vdcm_export **export_find(struct siov_vdcm *v, const char *vdev)
{
	struct vdcm_export **pp;

	for (pp = &v->exports; *pp; pp = &(*pp)->next)
		if (strcmp((*pp)->d->conf.name, vdev) == 0)
			return pp;
	return NULL;
}

int siov_vdcm_export_create(struct siov_vdcm *v, const struct siov_export_conf *conf,
			    struct siov_err *err)
{
	struct vdcm_vdev *d = vdev_find(v, conf->vdev);
	struct siov_export_window win;
	struct vdcm_export *e;
	int rc;

	if (!d)
		return siov_err_set(err, -ENOENT, "no VDEV named '%s'", conf->vdev);
	if (!d->be)
		return siov_err_set(
		    err, -EINVAL, "VDEV '%s' is a network port, not a disk to export", conf->vdev);
	if (export_find(v, conf->vdev))
		return siov_err_set(err, -EEXIST, "VDEV '%s' is already exported", conf->vdev);
	/* The export reads the window directly: it would miss the move's switch. */
	if (d->move_be)
		return siov_err_set(err, -EBUSY, "VDEV '%s' is moving; export it once it has moved",
				    conf->vdev);
	/* Exactly the window a VM on this VDEV sees. */
	win.bd = d->be->bd;
	win.offset = d->conf.offset;
	win.size = d->size;
	win.readonly = d->conf.readonly || siov_backend_conf(d->be->bd)->readonly;
	win.qos = d->qos; /* the export obeys the VDEV's limits */
	e = calloc(1, sizeof(*e));
	if (!e)
		return siov_err_set(err, -ENOMEM, "out of memory");
	rc = siov_export_open(conf, &win, &e->ex, err);
	if (rc < 0) {
		free(e);
		return rc;
	}
	e->d = d;
	d->exports++;
	d->export = e->ex;
	e->next = v->exports;
	v->exports = e;
	return 0;
}

int siov_vdcm_export_delete(struct siov_vdcm *v, const char *vdev, struct siov_err *err)
{
	struct vdcm_export **pp = export_find(v, vdev), *e;

	if (!pp)
		return siov_err_set(err, -ENOENT, "VDEV '%s' is not exported", vdev);
	e = *pp;
	*pp = e->next;
	siov_export_close(e->ex);
	e->d->exports--;
	e->d->export = NULL;
	SIOV_INFO("export '%s' deleted", vdev);
	free(e);
	return 0;
}

void siov_vdcm_export_foreach(struct siov_vdcm *v, siov_export_info_cb cb, void *arg)
{
	struct vdcm_export *e;

	for (e = v->exports; e; e = e->next) {
		struct siov_export_stats st;

		siov_export_get_stats(e->ex, &st);
		cb(siov_export_conf(e->ex), &st, arg);
	}
}
