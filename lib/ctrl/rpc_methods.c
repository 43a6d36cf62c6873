/*
 * The management methods: backend_*, vdev_*, group_* and daemon_info.  Each turns its
 * params into a VDCM call (through the conversions in rpc_params.c, shared with
 * the state file) and the VDCM's answer into JSON.  A method that changes the
 * configuration saves it to the state dir before it answers, and takes the
 * change back if the save fails, so that what siovd runs and what it would
 * restore after a restart never differ silently.  Saving is a journal record
 * (siov_rpc_record_*): the answer leaves once the record is durable.
 */
#include <errno.h>
#include <stddef.h>
#include <string.h>
#include <unistd.h>

#include "siov_internal/engine.h"
#include "siov_internal/log.h"
#include "siov_internal/mirror.h"
#include "siov_internal/state.h"
#include "rpc_internal.h"

static int invalid_params(struct siov_err *err)
{
	err->code = SIOV_RPC_INVALID_PARAMS;
	return err->code;
}

/* A VDCM failure, with a message even if the VDCM left none. */
static int vdcm_failed(int rc, struct siov_err *err)
{
	if (err->msg[0] == '\0')
		siov_err_set(err, rc, "%s", strerror(-rc));
	err->code = rc;
	return rc;
}

static int record_failed(int rc, struct siov_err *err)
{
	if (err->msg[0] == '\0')
		siov_err_set(err, rc, "%s", strerror(-rc));
	return rc;
}

int siov_rpc_record_put(struct siov_rpc_server *srv, const char *kind, const char *name,
			struct json_object *conf, struct siov_err *err)
{
	int64_t seq;

	srv->changed = true;
	if (!srv->state) {
		json_object_put(conf);
		return 0;
	}
	if (!conf)
		return siov_err_set(err, -ENOMEM, "out of memory");
	seq = siov_state_put(srv->state, kind, name, conf, err);
	return seq < 0 ? record_failed((int)seq, err) : 0;
}

int siov_rpc_record_del(struct siov_rpc_server *srv, const char *kind, const char *name,
			struct siov_err *err)
{
	int64_t seq;

	srv->changed = true;
	if (!srv->state)
		return 0;
	seq = siov_state_del(srv->state, kind, name, err);
	return seq < 0 ? record_failed((int)seq, err) : 0;
}

/* Prefixes err->msg with what happened to the change whose save failed. */
static int save_failed(int rc, struct siov_err *err, const char *what, const char *name,
		       const char *outcome)
{
	char saved[sizeof(err->msg)];

	memcpy(saved, err->msg, sizeof(saved));
	return siov_err_set(err, rc, "%s '%s' %s the state could not be saved: %.150s", what, name,
			    outcome, saved);
}

static int ok_true(struct json_object **result)
{
	*result = json_object_new_boolean(1);
	return 0;
}

typedef int (*vdcm_delete_fn)(struct siov_vdcm *vdcm, const char *name, struct siov_err *err);

/* After a create: journal conf, or take the creation back and say why. */
static int created(struct siov_rpc_server *srv, const char *kind, const char *what,
		   const char *name, struct json_object *conf, vdcm_delete_fn undo_fn,
		   struct json_object **result, struct siov_err *err)
{
	struct siov_err undo = {0};
	int rc = siov_rpc_record_put(srv, kind, name, conf, err);

	if (rc < 0) {
		if (undo_fn(srv->vdcm, name, &undo) < 0)
			SIOV_ERR("rpc: cannot undo %s '%s': %s", what, name, undo.msg);
		return save_failed(rc, err, what, name, "not created:");
	}
	SIOV_INFO("rpc: %s '%s' created", what, name);
	return ok_true(result);
}

/* Params that are only a name (the *_delete methods). */
static const struct siov_param name_params[] = {
    {"name", true, siov_param_name, 0, SIOV_NAME_MAX, 0, 0, "name of the object to delete"},
};
static const struct siov_param_table name_table = {name_params, SIOV_ARRAY_SIZE(name_params)};

static int parse_name(struct json_object *params, char *name, struct siov_err *err)
{
	name[0] = '\0';
	if (siov_params_parse(params, name_table.p, name_table.n, name, NULL, err))
		return invalid_params(err);
	return 0;
}

static int parse_nothing(struct json_object *params, struct siov_err *err)
{
	if (siov_params_parse(params, NULL, 0, NULL, NULL, err))
		return invalid_params(err);
	return 0;
}

/*
 * The *_delete methods: {name} -> delete through the VDCM -> save the state.
 * A deletion cannot be taken back, so a failed save is reported as such.
 */
static int delete_named(struct siov_rpc_server *srv, struct json_object *params,
			struct json_object **result, struct siov_err *err, const char *kind,
			const char *what, vdcm_delete_fn fn)
{
	char name[SIOV_NAME_MAX];
	int rc = parse_name(params, name, err);

	if (rc)
		return rc;
	rc = fn(srv->vdcm, name, err);
	if (rc < 0)
		return vdcm_failed(rc, err);
	SIOV_INFO("rpc: %s '%s' deleted", what, name);
	rc = siov_rpc_record_del(srv, kind, name, err);
	if (rc < 0)
		return save_failed(rc, err, what, name, "deleted, but");
	return ok_true(result);
}

/* A method that takes no params and answers a list: the empty list. */
static int list_start(struct json_object *params, struct json_object **result, struct siov_err *err)
{
	int rc = parse_nothing(params, err);

	if (rc)
		return rc;
	*result = json_object_new_array();
	if (!*result)
		return siov_err_set(err, -ENOMEM, "out of memory");
	return 0;
}

/* ---- Backends ---- */

static void learned_size(const struct siov_backend_info *info,
			 const struct siov_mirror_info *mirror, void *arg)
{
	*(uint64_t *)arg = info->size;
}

static int m_backend_create(struct siov_rpc_server *srv, struct json_object *params,
			    struct json_object **result, struct siov_err *err)
{
	struct siov_backend_conf conf;
	struct siov_err ignored = {0};
	uint64_t size = 0;
	int rc;

	if (siov_backend_conf_from_json(params, &conf, err))
		return invalid_params(err);
	rc = siov_vdcm_backend_create(srv->vdcm, &conf, err);
	if (rc < 0)
		return vdcm_failed(rc, err);
	/*
	 * An NBD backend learns its size from the server: save that size, so
	 * that a restart while the server is away starts it disconnected
	 * instead of dropping it (lib/backend/nbd.c).
	 */
	if (conf.type == SIOV_BACKEND_NBD && !conf.size &&
	    siov_vdcm_backend_stats(srv->vdcm, conf.name, learned_size, &size, &ignored) == 0)
		conf.size = size;
	return created(srv, "backend", "backend", conf.name, siov_backend_conf_to_json(&conf),
		       siov_vdcm_backend_delete, result, err);
}

static int m_backend_delete(struct siov_rpc_server *srv, struct json_object *params,
			    struct json_object **result, struct siov_err *err)
{
	return delete_named(srv, params, result, err, "backend", "backend",
			    siov_vdcm_backend_delete);
}

static void backend_to_json(const struct siov_backend_info *info, void *arg)
{
	const struct siov_backend_conf *conf = info->conf;
	struct json_object *o = json_object_new_object();

	if (!o)
		return;
	json_object_object_add(o, "name", json_object_new_string(conf->name));
	json_object_object_add(o, "type",
			       json_object_new_string(siov_backend_type_name(conf->type)));
	json_object_object_add(
	    o, "path", conf->type == SIOV_BACKEND_FILE ? json_object_new_string(conf->path) : NULL);
	siov_backend_remote_conf_to_json(o, conf);
	json_object_object_add(o, "size", json_object_new_uint64(info->size));
	json_object_object_add(o, "block_size", json_object_new_int64(info->block_size));
	json_object_object_add(o, "direct", json_object_new_boolean(info->direct));
	json_object_object_add(o, "readonly", json_object_new_boolean(conf->readonly));
	json_object_object_add(o, "vdevs", json_object_new_int64(info->vdevs));
	if (conf->type == SIOV_BACKEND_MIRROR) {
		struct json_object *m = json_object_new_array();

		for (unsigned i = 0; m && i < conf->nmembers; i++)
			json_object_array_add(m, json_object_new_string(conf->members[i]));
		json_object_object_add(o, "members", m);
	}
	if (info->mirror)
		json_object_object_add(o, "member_of", json_object_new_string(info->mirror));
	json_object_array_add(arg, o);
}

static int m_backend_list(struct siov_rpc_server *srv, struct json_object *params,
			  struct json_object **result, struct siov_err *err)
{
	int rc = list_start(params, result, err);

	if (rc)
		return rc;
	siov_vdcm_backend_foreach(srv->vdcm, backend_to_json, *result);
	return 0;
}

/* ---- Mirror members and backend_stats ---- */

struct member_params {
	char name[SIOV_NAME_MAX];
	char member[SIOV_NAME_MAX];
	bool full;
	uint64_t rate;
};

#define MPARAM(f) offsetof(struct member_params, f), sizeof(((struct member_params *)0)->f)
static const struct siov_param member_params[] = {
    {"name", true, siov_param_name, MPARAM(name), 0, 0, "the mirror backend"},
    {"member", true, siov_param_name, MPARAM(member), 0, 0, "the member backend"},
    {"full", false, siov_param_bool, MPARAM(full), 0, 0,
     "copy everything, not only what the bitmap says changed"},
};
static const struct siov_param rate_params[] = {
    {"name", true, siov_param_name, MPARAM(name), 0, 0, "the mirror backend"},
    {"rate", true, siov_param_bytes, MPARAM(rate), 0, 0, "bytes per second (0: unlimited)"},
};
static const struct siov_param_table member_add_table = {member_params, 3};
static const struct siov_param_table member_table = {member_params, 2};
static const struct siov_param_table rate_table = {rate_params, 2};

static int parse_member_params(struct json_object *params, const struct siov_param_table *t,
			       struct member_params *mp, struct siov_err *err)
{
	memset(mp, 0, sizeof(*mp));
	if (siov_params_parse(params, t->p, t->n, mp, NULL, err))
		return invalid_params(err);
	return 0;
}

struct backend_lookup {
	const char *name;
	struct json_object *conf;
};

static void backend_conf_json(const struct siov_backend_info *info, void *arg)
{
	struct backend_lookup *l = arg;

	if (!l->conf && strcmp(info->conf->name, l->name) == 0)
		l->conf = siov_backend_conf_to_json(info->conf);
}

/* Journals a backend's whole configuration as it now is. */
static int record_backend(struct siov_rpc_server *srv, const char *name, struct siov_err *err)
{
	struct backend_lookup l = {name, NULL};

	siov_vdcm_backend_foreach(srv->vdcm, backend_conf_json, &l);
	return siov_rpc_record_put(srv, "backend", name, l.conf, err);
}

/* A change to a mirror's members or rate: the conf changed, so journal it. */
static int mirror_changed(struct siov_rpc_server *srv, int rc, const char *what,
			  const struct member_params *mp, struct json_object **result,
			  struct siov_err *err)
{
	if (rc < 0)
		return vdcm_failed(rc, err);
	SIOV_INFO("rpc: mirror '%s': %s %s", mp->name, what, mp->member);
	rc = record_backend(srv, mp->name, err);
	if (rc < 0)
		return save_failed(rc, err, "mirror", mp->name, "changed, but");
	return ok_true(result);
}

static int m_backend_add_member(struct siov_rpc_server *srv, struct json_object *params,
				struct json_object **result, struct siov_err *err)
{
	struct member_params mp;
	int rc = parse_member_params(params, &member_add_table, &mp, err);

	if (rc)
		return rc;
	rc = siov_vdcm_mirror_add_member(srv->vdcm, mp.name, mp.member, mp.full, err);
	return mirror_changed(srv, rc, "added", &mp, result, err);
}

static int m_backend_remove_member(struct siov_rpc_server *srv, struct json_object *params,
				   struct json_object **result, struct siov_err *err)
{
	struct member_params mp;
	int rc = parse_member_params(params, &member_table, &mp, err);

	if (rc)
		return rc;
	rc = siov_vdcm_mirror_remove_member(srv->vdcm, mp.name, mp.member, err);
	return mirror_changed(srv, rc, "removed", &mp, result, err);
}

static int m_backend_fail_member(struct siov_rpc_server *srv, struct json_object *params,
				 struct json_object **result, struct siov_err *err)
{
	struct member_params mp;
	int rc = parse_member_params(params, &member_table, &mp, err);

	if (rc)
		return rc;
	rc = siov_vdcm_mirror_fail_member(srv->vdcm, mp.name, mp.member, err);
	if (rc < 0)
		return vdcm_failed(rc, err);
	return ok_true(result);
}

static int m_backend_set_resync_rate(struct siov_rpc_server *srv, struct json_object *params,
				     struct json_object **result, struct siov_err *err)
{
	struct member_params mp;
	int rc = parse_member_params(params, &rate_table, &mp, err);

	if (rc)
		return rc;
	rc = siov_vdcm_mirror_set_resync_rate(srv->vdcm, mp.name, mp.rate, err);
	return mirror_changed(srv, rc, "resync rate set", &mp, result, err);
}

static struct json_object *member_to_json(const struct siov_member_info *m)
{
	struct json_object *o = json_object_new_object();

	if (!o)
		return NULL;
	json_object_object_add(o, "name", json_object_new_string(m->name));
	json_object_object_add(o, "state",
			       json_object_new_string(siov_member_state_name(m->state)));
	if (m->state == SIOV_MEMBER_FAILED)
		json_object_object_add(o, "reason", json_object_new_string(m->reason));
	if (m->state == SIOV_MEMBER_RESYNCING) {
		struct json_object *p = json_object_new_object();

		json_object_object_add(p, "mode",
				       json_object_new_string(m->full ? "full" : "bitmap"));
		json_object_object_add(p, "done_bytes", json_object_new_uint64(m->resync_done));
		json_object_object_add(p, "total_bytes", json_object_new_uint64(m->resync_total));
		json_object_object_add(p, "percent",
				       json_object_new_double(m->resync_total
								  ? 100.0 * (double)m->resync_done /
									(double)m->resync_total
								  : 100.0));
		json_object_object_add(o, "resync", p);
	}
	json_object_object_add(o, "reads", json_object_new_uint64(m->reads));
	json_object_object_add(o, "writes", json_object_new_uint64(m->writes));
	json_object_object_add(o, "read_errors", json_object_new_uint64(m->read_errors));
	json_object_object_add(o, "write_errors", json_object_new_uint64(m->write_errors));
	json_object_object_add(o, "resync_bytes", json_object_new_uint64(m->resync_bytes));
	return o;
}

static void stats_to_json(const struct siov_backend_info *info, const struct siov_mirror_info *mi,
			  void *arg)
{
	struct json_object *arr = json_object_new_array(), *o, *m, *mems;

	if (!arr)
		return;
	backend_to_json(info, arr);
	o = json_object_get(json_object_array_get_idx(arr, 0));
	json_object_put(arr);
	if (!o)
		return;
	if (mi && (m = json_object_new_object()) != NULL) {
		json_object_object_add(m, "chunk_size", json_object_new_uint64(mi->chunk_size));
		json_object_object_add(m, "chunks", json_object_new_uint64(mi->chunks));
		json_object_object_add(m, "dirty_chunks", json_object_new_uint64(mi->dirty_chunks));
		json_object_object_add(m, "resync_rate", json_object_new_uint64(mi->resync_rate));
		json_object_object_add(m, "read_retries", json_object_new_uint64(mi->read_retries));
		mems = json_object_new_array();
		for (unsigned i = 0; mems && i < mi->nmembers; i++)
			json_object_array_add(mems, member_to_json(&mi->members[i]));
		json_object_object_add(m, "members", mems);
		json_object_object_add(o, "mirror", m);
	}
	*(struct json_object **)arg = o;
}

static int m_backend_stats(struct siov_rpc_server *srv, struct json_object *params,
			   struct json_object **result, struct siov_err *err)
{
	char name[SIOV_NAME_MAX];
	int rc = parse_name(params, name, err);

	if (rc)
		return rc;
	*result = NULL;
	rc = siov_vdcm_backend_stats(srv->vdcm, name, stats_to_json, result, err);
	if (rc < 0)
		return vdcm_failed(rc, err);
	return *result ? 0 : siov_err_set(err, -ENOMEM, "out of memory");
}

/* ---- VDEVs ---- */

static int m_vdev_create(struct siov_rpc_server *srv, struct json_object *params,
			 struct json_object **result, struct siov_err *err)
{
	struct siov_vdev_conf conf;
	int rc;

	if (siov_vdev_conf_from_json(params, &conf, err))
		return invalid_params(err);
	rc = siov_vdcm_vdev_create(srv->vdcm, &conf, err);
	if (rc < 0)
		return vdcm_failed(rc, err);
	return created(srv, "vdev", "VDEV", conf.name, siov_vdev_conf_to_json(&conf),
		       siov_vdcm_vdev_delete, result, err);
}

static int m_vdev_delete(struct siov_rpc_server *srv, struct json_object *params,
			 struct json_object **result, struct siov_err *err)
{
	return delete_named(srv, params, result, err, "vdev", "VDEV", siov_vdcm_vdev_delete);
}

static void vdev_to_json(const struct siov_vdev_info *info, void *arg)
{
	const struct siov_vdev_conf *conf = info->conf;
	struct json_object *o = json_object_new_object();

	if (!o)
		return;
	json_object_object_add(o, "name", json_object_new_string(conf->name));
	json_object_object_add(o, "type", json_object_new_string(siov_vdev_type_name(conf->type)));
	if (conf->type == SIOV_VDEV_NET) {
		char mac[18];

		siov_mac_format(conf->mac, mac, sizeof(mac));
		json_object_object_add(o, "network", json_object_new_string(conf->network));
		json_object_object_add(o, "mac", json_object_new_string(mac));
		json_object_object_add(o, "allow_spoof",
				       json_object_new_boolean(conf->allow_spoof));
	} else {
		json_object_object_add(o, "backend", json_object_new_string(conf->backend));
		json_object_object_add(o, "offset", json_object_new_uint64(conf->offset));
		json_object_object_add(o, "size", json_object_new_uint64(info->size));
		json_object_object_add(o, "queues", json_object_new_int64(info->max_queues));
		json_object_object_add(o, "readonly", json_object_new_boolean(conf->readonly));
	}
	if (conf->type == SIOV_VDEV_NET)
		json_object_object_add(o, "queues",
				       json_object_new_int64(conf->queues ? conf->queues : 1));
	json_object_object_add(o, "socket", json_object_new_string(conf->socket));
	json_object_object_add(o, "state", json_object_new_string(info->state ? info->state : ""));
	json_object_object_add(o, "connected", json_object_new_boolean(info->connected));
	json_object_object_add(o, "group",
			       conf->group[0] ? json_object_new_string(conf->group) : NULL);
	json_object_object_add(o, "qos", siov_vdev_conf_qos_to_json(conf));
	json_object_array_add(arg, o);
}

/* Every QoS parameter (0 = none/default) and what the buckets did. */
static struct json_object *qos_to_json(const char *group, const struct siov_qos_params *p,
				       const struct siov_qos_stats *st)
{
	struct json_object *o = json_object_new_object();

	if (!o)
		return NULL;
	if (group)
		json_object_object_add(o, "group", group[0] ? json_object_new_string(group) : NULL);
	json_object_object_add(o, "iops_limit", json_object_new_uint64(p->iops_limit));
	json_object_object_add(o, "bps_limit", json_object_new_uint64(p->bps_limit));
	json_object_object_add(o, "iops_burst", json_object_new_uint64(p->iops_burst));
	json_object_object_add(o, "bps_burst", json_object_new_uint64(p->bps_burst));
	json_object_object_add(o, "iops_min", json_object_new_uint64(p->iops_min));
	json_object_object_add(
	    o, "weight", json_object_new_int64(p->weight ? p->weight : SIOV_QOS_WEIGHT_DEFAULT));
	json_object_object_add(o, "admitted", json_object_new_uint64(st->admitted));
	json_object_object_add(o, "admitted_bytes", json_object_new_uint64(st->admitted_bytes));
	json_object_object_add(o, "throttled", json_object_new_uint64(st->throttled));
	json_object_object_add(o, "throttled_ns", json_object_new_uint64(st->throttled_ns));
	json_object_object_add(o, "reserved", json_object_new_uint64(st->reserved));
	return o;
}

static double latency_us(uint64_t total_ns, uint64_t requests)
{
	return requests ? (double)total_ns / (double)requests / 1000.0 : 0.0;
}

static struct json_object *queue_to_json(const struct siov_queue_stats *q)
{
	struct json_object *o = json_object_new_object();

	if (!o)
		return NULL;
	json_object_object_add(o, "index", json_object_new_int64(q->index));
	json_object_object_add(o, "state", json_object_new_string(q->state ? q->state : ""));
	json_object_object_add(o, "ring", json_object_new_string(q->ring ? q->ring : "split"));
	json_object_object_add(o, "engine", json_object_new_int(q->engine));
	json_object_object_add(o, "requests", json_object_new_uint64(q->requests));
	json_object_object_add(o, "reads", json_object_new_uint64(q->reads));
	json_object_object_add(o, "writes", json_object_new_uint64(q->writes));
	json_object_object_add(o, "flushes", json_object_new_uint64(q->flushes));
	json_object_object_add(o, "discards", json_object_new_uint64(q->discards));
	json_object_object_add(o, "write_zeroes", json_object_new_uint64(q->write_zeroes));
	json_object_object_add(o, "get_ids", json_object_new_uint64(q->get_ids));
	json_object_object_add(o, "bytes_read", json_object_new_uint64(q->bytes_read));
	json_object_object_add(o, "bytes_written", json_object_new_uint64(q->bytes_written));
	json_object_object_add(o, "errors", json_object_new_uint64(q->errors));
	json_object_object_add(o, "inflight", json_object_new_uint64(q->inflight));
	json_object_object_add(o, "kicks", json_object_new_uint64(q->kicks));
	json_object_object_add(o, "avail_reads", json_object_new_uint64(q->avail_reads));
	json_object_object_add(o, "used_writes", json_object_new_uint64(q->used_writes));
	json_object_object_add(o, "calls", json_object_new_uint64(q->calls));
	json_object_object_add(o, "in_order", json_object_new_boolean(q->in_order));
	if (q->in_order || q->order_used) {
		json_object_object_add(o, "in_order_held", json_object_new_uint64(q->order_held));
		json_object_object_add(o, "in_order_entries",
				       json_object_new_uint64(q->order_entries));
		json_object_object_add(o, "in_order_used", json_object_new_uint64(q->order_used));
	}
	json_object_object_add(
	    o, "latency_us_mean",
	    json_object_new_double(latency_us(q->latency_ns_total, q->requests)));
	return o;
}

static struct json_object *drops_to_json(const uint64_t *d)
{
	struct json_object *o = json_object_new_object();

	if (!o)
		return NULL;
	for (int r = 0; r < SIOV_DROP_NREASONS; r++)
		json_object_object_add(o, siov_port_drop_name(r), json_object_new_uint64(d[r]));
	return o;
}

/* Per receive queue: what the flow hash steered to it. */
static struct json_object *rxqs_to_json(const struct siov_vdev_info *info)
{
	struct json_object *a = json_object_new_array();

	for (unsigned i = 0; a && i < info->nrxq; i++) {
		const struct siov_net_rxq_stats *q = &info->rxq[i];
		struct json_object *o = json_object_new_object();

		if (!o)
			break;
		json_object_object_add(o, "index", json_object_new_int64(q->index));
		json_object_object_add(o, "running", json_object_new_boolean(q->running));
		json_object_object_add(o, "packets", json_object_new_uint64(q->packets));
		json_object_object_add(o, "bytes", json_object_new_uint64(q->bytes));
		json_object_object_add(o, "drops", json_object_new_uint64(q->drops));
		json_object_array_add(a, o);
	}
	return a;
}

/* A net VDEV's port, as the switch counted it, and its receive queues. */
static struct json_object *port_to_json(const struct siov_vdev_info *info)
{
	const struct siov_port_stats *s = &info->port;
	struct json_object *o = json_object_new_object();

	if (!o)
		return NULL;
	json_object_object_add(o, "rx_packets", json_object_new_uint64(s->rx_packets));
	json_object_object_add(o, "rx_bytes", json_object_new_uint64(s->rx_bytes));
	json_object_object_add(o, "tx_packets", json_object_new_uint64(s->tx_packets));
	json_object_object_add(o, "tx_bytes", json_object_new_uint64(s->tx_bytes));
	json_object_object_add(o, "rx_drops", drops_to_json(s->rx_drops));
	json_object_object_add(o, "tx_drops", drops_to_json(s->tx_drops));
	json_object_object_add(o, "rx_queues", rxqs_to_json(info));
	return o;
}

/* The error policy and what it holds: held requests with the reason, the episodes. */
static struct json_object *hold_to_json(const struct siov_vdev_info *info)
{
	const struct siov_blk_hold_stats *h = &info->hold;
	struct json_object *o = json_object_new_object();
	char pol[32];

	if (!o)
		return NULL;
	siov_error_policy_format(info->conf->error_policy, info->conf->hold_timeout_ms, pol,
				 sizeof(pol));
	json_object_object_add(o, "policy", json_object_new_string(pol));
	json_object_object_add(o, "held", json_object_new_uint64(h->held));
	json_object_object_add(o, "held_total", json_object_new_uint64(h->held_total));
	json_object_object_add(o, "hold_events", json_object_new_uint64(h->hold_events));
	json_object_object_add(o, "timed_out", json_object_new_uint64(h->timed_out));
	json_object_object_add(
	    o, "reason", h->last_error ? json_object_new_string(strerror(-h->last_error)) : NULL);
	json_object_object_add(
	    o, "held_for_s",
	    json_object_new_double(h->since_ns && info->now_ns > h->since_ns
				       ? (double)(info->now_ns - h->since_ns) / 1e9
				       : 0.0));
	return o;
}

static void sum_add(struct siov_queue_stats *sum, const struct siov_queue_stats *q)
{
	sum->requests += q->requests;
	sum->bytes_read += q->bytes_read;
	sum->bytes_written += q->bytes_written;
	sum->errors += q->errors;
	sum->inflight += q->inflight;
	sum->latency_ns_total += q->latency_ns_total;
}

/* The export's share of a VDEV's totals (export_list has its connections). */
static struct json_object *export_io_to_json(const struct siov_vdev_info *info)
{
	const struct siov_queue_stats *e = &info->export_io;
	struct json_object *o = json_object_new_object();

	json_object_object_add(o, "requests", json_object_new_uint64(e->requests));
	json_object_object_add(o, "bytes_read", json_object_new_uint64(e->bytes_read));
	json_object_object_add(o, "bytes_written", json_object_new_uint64(e->bytes_written));
	json_object_object_add(o, "errors", json_object_new_uint64(e->errors));
	json_object_object_add(o, "inflight", json_object_new_uint64(e->inflight));
	json_object_object_add(o, "throttled", json_object_new_uint64(info->export_throttled));
	return o;
}

static void vdev_stats_to_json(const struct siov_vdev_info *info, void *arg)
{
	struct siov_queue_stats sum = {0};
	struct json_object *o = json_object_new_object(), *qs = json_object_new_array();

	if (!o || !qs) {
		json_object_put(o);
		json_object_put(qs);
		return;
	}
	for (unsigned i = 0; i < info->nqueues && info->queues; i++) {
		sum_add(&sum, &info->queues[i]);
		json_object_array_add(qs, queue_to_json(&info->queues[i]));
	}
	if (info->exported) /* the NBD export's I/O is the VDEV's too */
		sum_add(&sum, &info->export_io);
	json_object_object_add(o, "name", json_object_new_string(info->conf->name));
	json_object_object_add(o, "state", json_object_new_string(info->state ? info->state : ""));
	json_object_object_add(o, "broken_reason",
			       info->broken_reason ? json_object_new_string(info->broken_reason)
						   : NULL);
	json_object_object_add(o, "connected", json_object_new_boolean(info->connected));
	json_object_object_add(o, "connections", json_object_new_uint64(info->connections));
	json_object_object_add(o, "dirty_logging", json_object_new_boolean(info->logging));
	json_object_object_add(o, "requests", json_object_new_uint64(sum.requests));
	json_object_object_add(o, "bytes_read", json_object_new_uint64(sum.bytes_read));
	json_object_object_add(o, "bytes_written", json_object_new_uint64(sum.bytes_written));
	json_object_object_add(o, "errors", json_object_new_uint64(sum.errors));
	json_object_object_add(o, "inflight", json_object_new_uint64(sum.inflight));
	json_object_object_add(
	    o, "latency_us_mean",
	    json_object_new_double(latency_us(sum.latency_ns_total, sum.requests)));
	json_object_object_add(o, "qos",
			       qos_to_json(info->conf->group, &info->conf->qos, &info->qos));
	if (info->is_net)
		json_object_object_add(o, "net", port_to_json(info));
	json_object_object_add(o, "error_policy", hold_to_json(info));
	if (info->exported)
		json_object_object_add(o, "export", export_io_to_json(info));
	if (info->conf->move_backend[0]) {
		struct json_object *m = json_object_new_object();

		json_object_object_add(m, "to", json_object_new_string(info->conf->move_backend));
		json_object_object_add(m, "offset",
				       json_object_new_uint64(info->conf->move_offset));
		json_object_object_add(m, "done_bytes", json_object_new_uint64(info->move_done));
		json_object_object_add(m, "total_bytes", json_object_new_uint64(info->move_total));
		json_object_object_add(o, "move", m);
	}
	json_object_object_add(o, "queues", qs);
	json_object_array_add(arg, o);
}

struct vdev_query_params {
	char name[SIOV_NAME_MAX];
	char prefix[SIOV_NAME_MAX];
	uint64_t offset, limit;
};

#define QCONF(f) offsetof(struct vdev_query_params, f), sizeof(((struct vdev_query_params *)0)->f)
static const struct siov_param vdev_query_params[] = {
    {"name", false, siov_param_name, QCONF(name), 0, 0, "only this VDEV"},
    {"prefix", false, siov_param_name, QCONF(prefix), 0, 0, "only VDEVs whose name starts so"},
    {"offset", false, siov_param_uint, QCONF(offset), 0, INT64_MAX,
     "skip this many (paging, in creation order)"},
    {"limit", false, siov_param_uint, QCONF(limit), 0, INT64_MAX,
     "at most this many (0: all); a shorter page is the last"},
};
static const struct siov_param_table vdev_query_table = {vdev_query_params,
							 SIOV_ARRAY_SIZE(vdev_query_params)};

static int vdev_get_one(struct siov_rpc_server *srv, const char *name, siov_vdev_info_cb cb,
			struct json_object *arr, struct siov_err *err)
{
	int rc = siov_vdcm_vdev_get(srv->vdcm, name, cb, arr);

	if (rc == -ENOENT)
		return siov_err_set(err, rc, "no VDEV named '%s'", name);
	if (rc < 0)
		return siov_err_set(err, rc, "VDEV '%s': %s", name, strerror(-rc));
	return 0;
}

/*
 * vdev_list and vdev_stats: every VDEV, the one named, or a page of those
 * whose name starts with prefix (offset, limit), in creation order.  A page
 * shorter than limit is the last one.
 */
static int vdev_query(struct siov_rpc_server *srv, struct json_object *params, siov_vdev_info_cb cb,
		      struct json_object **result, struct siov_err *err)
{
	struct vdev_query_params q = {0};
	struct siov_vdev_filter f;
	int rc;

	if (siov_params_parse(params, vdev_query_table.p, vdev_query_table.n, &q, NULL, err))
		return invalid_params(err);
	if (q.name[0] && (q.prefix[0] || q.offset || q.limit)) {
		siov_err_set(err, -EINVAL,
			     "'name' selects one VDEV: it takes no prefix, "
			     "offset or limit");
		return invalid_params(err);
	}
	*result = json_object_new_array();
	if (!*result)
		return siov_err_set(err, -ENOMEM, "out of memory");
	if (!q.name[0]) {
		f = (struct siov_vdev_filter){
		    .prefix = q.prefix, .offset = q.offset, .limit = q.limit};
		siov_vdcm_vdev_query(srv->vdcm, &f, cb, *result);
		return 0;
	}
	rc = vdev_get_one(srv, q.name, cb, *result, err);
	if (rc < 0) {
		json_object_put(*result);
		*result = NULL;
	}
	return rc;
}

static int m_vdev_list(struct siov_rpc_server *srv, struct json_object *params,
		       struct json_object **result, struct siov_err *err)
{
	return vdev_query(srv, params, vdev_to_json, result, err);
}

static int m_vdev_stats(struct siov_rpc_server *srv, struct json_object *params,
			struct json_object **result, struct siov_err *err)
{
	return vdev_query(srv, params, vdev_stats_to_json, result, err);
}

/* ---- QoS ---- */

static void copy_vdev_qos(const struct siov_vdev_info *info, void *arg)
{
	*(struct siov_qos_params *)arg = info->conf->qos;
}

struct group_lookup {
	const char *name;
	struct siov_qos_params *qos;
	bool found;
};

static void copy_group_qos(const struct siov_group_info *info, void *arg)
{
	struct group_lookup *l = arg;

	if (!l->found && strcmp(info->conf->name, l->name) == 0) {
		*l->qos = info->conf->qos;
		l->found = true;
	}
}

/* The QoS parameters in force for a VDEV (is_group false) or a group. */
static int qos_current(struct siov_rpc_server *srv, bool is_group, const char *name,
		       struct siov_qos_params *qos, struct siov_err *err)
{
	struct group_lookup l = {name, qos, false};

	if (!is_group) {
		if (siov_vdcm_vdev_get(srv->vdcm, name, copy_vdev_qos, qos) < 0)
			return vdcm_failed(siov_err_set(err, -ENOENT, "no VDEV named '%s'", name),
					   err);
		return 0;
	}
	siov_vdcm_group_foreach(srv->vdcm, copy_group_qos, &l);
	if (!l.found)
		return vdcm_failed(siov_err_set(err, -ENOENT, "no group named '%s'", name), err);
	return 0;
}

static void vdev_conf_json(const struct siov_vdev_info *info, void *arg)
{
	*(struct json_object **)arg = siov_vdev_conf_to_json(info->conf);
}

struct group_conf_lookup {
	const char *name;
	struct json_object *conf;
};

static void group_conf_json(const struct siov_group_info *info, void *arg)
{
	struct group_conf_lookup *l = arg;

	if (!l->conf && strcmp(info->conf->name, l->name) == 0)
		l->conf = siov_group_conf_to_json(info->conf);
}

/* Journals the whole configuration of a VDEV or group, as it now is. */
static int record_conf(struct siov_rpc_server *srv, bool is_group, const char *name,
		       struct siov_err *err)
{
	struct group_conf_lookup l = {name, NULL};

	if (is_group)
		siov_vdcm_group_foreach(srv->vdcm, group_conf_json, &l);
	else
		siov_vdcm_vdev_get(srv->vdcm, name, vdev_conf_json, &l.conf);
	return siov_rpc_record_put(srv, is_group ? "group" : "vdev", name, l.conf, err);
}

int siov_rpc_record_vdev(struct siov_rpc_server *srv, const char *name, struct siov_err *err)
{
	return record_conf(srv, false, name, err);
}

static int qos_apply(struct siov_rpc_server *srv, bool is_group, const char *name,
		     const struct siov_qos_params *qos, struct siov_err *err)
{
	return is_group ? siov_vdcm_group_set_qos(srv->vdcm, name, qos, err)
			: siov_vdcm_vdev_set_qos(srv->vdcm, name, qos, err);
}

/*
 * vdev_set_qos and group_set_qos: the parameters given change, the others
 * keep their values (0 clears a limit).  A failed save puts the old ones back.
 */
static int set_qos(struct siov_rpc_server *srv, bool is_group, struct json_object *params,
		   struct json_object **result, struct siov_err *err)
{
	const char *what = is_group ? "group" : "VDEV";
	struct siov_qos_params old, qos;
	struct siov_group_conf req;
	struct siov_err undo = {0};
	uint32_t seen;
	int rc;

	if (siov_group_conf_from_json(params, &req, &seen, err))
		return invalid_params(err);
	rc = qos_current(srv, is_group, req.name, &old, err);
	if (rc)
		return rc;
	qos = old;
	siov_qos_params_merge(&qos, &req, seen);
	rc = qos_apply(srv, is_group, req.name, &qos, err);
	if (rc < 0)
		return vdcm_failed(rc, err);
	rc = record_conf(srv, is_group, req.name, err);
	if (rc < 0) {
		if (qos_apply(srv, is_group, req.name, &old, &undo) < 0)
			SIOV_ERR("rpc: cannot undo QoS of %s '%s': %s", what, req.name, undo.msg);
		return save_failed(rc, err, what, req.name, "QoS not changed:");
	}
	SIOV_INFO("rpc: QoS of %s '%s' changed", what, req.name);
	return ok_true(result);
}

#define VC(f) offsetof(struct siov_vdev_conf, f), sizeof(((struct siov_vdev_conf *)0)->f)
static const struct siov_param error_policy_params[] = {
    {"name", true, siov_param_name, VC(name), 0, 0, "the VDEV"},
    {"error_policy", true, siov_param_error_policy, VC(error_policy), 0, 0,
     "report (the guest sees the error) or hold[:MS] (keep the request, retry on vdev_resume)"},
};
static const struct siov_param move_params[] = {
    {"name", true, siov_param_name, VC(name), 0, 0, "the VDEV"},
    {"backend", true, siov_param_name, VC(backend), 0, 0, "the backend to move onto"},
    {"offset", false, siov_param_bytes, VC(offset), 0, 0, "where its window starts there"},
    /* The copy's rate limit; borrowed field: vdev_move has no size of its own. */
    {"rate", false, siov_param_bytes, VC(size), 0, 0, "bytes per second the copy may use"},
};
static const struct siov_param_table error_policy_table = {error_policy_params, 2};
static const struct siov_param_table move_table = {move_params, 4};

static int m_vdev_set_error_policy(struct siov_rpc_server *srv, struct json_object *params,
				   struct json_object **result, struct siov_err *err)
{
	struct siov_vdev_conf c = {0};
	char pol[32];
	int rc;

	if (siov_params_parse(params, error_policy_table.p, error_policy_table.n, &c, NULL, err))
		return invalid_params(err);
	rc = siov_vdcm_vdev_set_error_policy(srv->vdcm, c.name, c.error_policy, c.hold_timeout_ms,
					     err);
	if (rc < 0)
		return vdcm_failed(rc, err);
	siov_error_policy_format(c.error_policy, c.hold_timeout_ms, pol, sizeof(pol));
	SIOV_INFO("rpc: VDEV '%s': error policy %s", c.name, pol);
	rc = record_conf(srv, false, c.name, err);
	if (rc < 0)
		return save_failed(rc, err, "VDEV", c.name, "changed, but");
	return ok_true(result);
}

static int m_vdev_move(struct siov_rpc_server *srv, struct json_object *params,
		       struct json_object **result, struct siov_err *err)
{
	struct siov_vdev_conf c = {0};
	int rc;

	if (siov_params_parse(params, move_table.p, move_table.n, &c, NULL, err))
		return invalid_params(err);
	rc = siov_vdcm_vdev_move(srv->vdcm, c.name, c.backend, c.offset, c.size, err);
	if (rc < 0)
		return vdcm_failed(rc, err);
	SIOV_INFO("rpc: VDEV '%s': moving to '%s'", c.name, c.backend);
	rc = record_conf(srv, false, c.name, err);
	if (rc < 0)
		return save_failed(rc, err, "VDEV", c.name, "is moving, but");
	return ok_true(result);
}

static int m_vdev_resume(struct siov_rpc_server *srv, struct json_object *params,
			 struct json_object **result, struct siov_err *err)
{
	char name[SIOV_NAME_MAX];
	int rc = parse_name(params, name, err);

	if (rc)
		return rc;
	rc = siov_vdcm_vdev_resume(srv->vdcm, name, err);
	if (rc < 0)
		return vdcm_failed(rc, err);
	return ok_true(result);
}

static int m_vdev_set_qos(struct siov_rpc_server *srv, struct json_object *params,
			  struct json_object **result, struct siov_err *err)
{
	return set_qos(srv, false, params, result, err);
}

static int m_group_set_qos(struct siov_rpc_server *srv, struct json_object *params,
			   struct json_object **result, struct siov_err *err)
{
	return set_qos(srv, true, params, result, err);
}

static int m_group_create(struct siov_rpc_server *srv, struct json_object *params,
			  struct json_object **result, struct siov_err *err)
{
	struct siov_group_conf conf;
	int rc;

	if (siov_group_conf_from_json(params, &conf, NULL, err))
		return invalid_params(err);
	rc = siov_vdcm_group_create(srv->vdcm, &conf, err);
	if (rc < 0)
		return vdcm_failed(rc, err);
	return created(srv, "group", "group", conf.name, siov_group_conf_to_json(&conf),
		       siov_vdcm_group_delete, result, err);
}

static int m_group_delete(struct siov_rpc_server *srv, struct json_object *params,
			  struct json_object **result, struct siov_err *err)
{
	return delete_named(srv, params, result, err, "group", "group", siov_vdcm_group_delete);
}

static void group_to_json(const struct siov_group_info *info, void *arg)
{
	struct json_object *o = qos_to_json(NULL, &info->conf->qos, &info->qos);

	if (!o)
		return;
	json_object_object_add(o, "name", json_object_new_string(info->conf->name));
	json_object_object_add(o, "vdevs", json_object_new_int64(info->vdevs));
	json_object_array_add(arg, o);
}

static int m_group_list(struct siov_rpc_server *srv, struct json_object *params,
			struct json_object **result, struct siov_err *err)
{
	int rc = list_start(params, result, err);

	if (rc)
		return rc;
	siov_vdcm_group_foreach(srv->vdcm, group_to_json, *result);
	return 0;
}

/* ---- Networks ---- */

static int m_network_create(struct siov_rpc_server *srv, struct json_object *params,
			    struct json_object **result, struct siov_err *err)
{
	struct siov_network_conf conf;
	int rc;

	if (siov_network_conf_from_json(params, &conf, err))
		return invalid_params(err);
	rc = siov_vdcm_network_create(srv->vdcm, &conf, err);
	if (rc < 0)
		return vdcm_failed(rc, err);
	return created(srv, "network", "network", conf.name, siov_network_conf_to_json(&conf),
		       siov_vdcm_network_delete, result, err);
}

static int m_network_delete(struct siov_rpc_server *srv, struct json_object *params,
			    struct json_object **result, struct siov_err *err)
{
	return delete_named(srv, params, result, err, "network", "network",
			    siov_vdcm_network_delete);
}

static void network_to_json(const struct siov_network_info *info, void *arg)
{
	struct json_object *o = siov_network_conf_to_json(info->conf);

	if (!o)
		return;
	json_object_object_add(o, "ports", json_object_new_int64(info->ports));
	json_object_object_add(o, "learned", json_object_new_int64(info->learned));
	if (json_object_array_add(arg, o) < 0)
		json_object_put(o);
}

static int m_network_list(struct siov_rpc_server *srv, struct json_object *params,
			  struct json_object **result, struct siov_err *err)
{
	int rc = list_start(params, result, err);

	if (rc)
		return rc;
	siov_vdcm_network_foreach(srv->vdcm, network_to_json, *result);
	return 0;
}

/* ---- The daemon ---- */

/* Where each engine's time goes: the per-request means a profile would start from. */
static struct json_object *engine_stats_json(struct siov_vdcm *vdcm)
{
	struct json_object *a = json_object_new_array();
	struct siov_engine_stats st;
	unsigned i;

	for (i = 0; a && siov_vdcm_engine_stats(vdcm, i, &st) == 0; i++) {
		struct json_object *o = json_object_new_object();
		if (!o)
			break;
		json_object_object_add(o, "engine", json_object_new_int64(i));
		json_object_object_add(o, "rounds", json_object_new_uint64(st.rounds));
		json_object_object_add(o, "sleeps", json_object_new_uint64(st.sleeps));
		json_object_object_add(o, "requests", json_object_new_uint64(st.popped));
		json_object_object_add(o, "cqes", json_object_new_uint64(st.cqes));
		json_object_object_add(o, "enters", json_object_new_uint64(st.enters));
		json_object_object_add(
		    o, "submit_call_us",
		    json_object_new_double(latency_us(st.submit_ns, st.submits)));
		json_object_object_add(
		    o, "ring_to_submit_us",
		    json_object_new_double(latency_us(st.ring_submit_ns, st.submitted)));
		json_object_object_add(
		    o, "submit_to_cqe_us",
		    json_object_new_double(latency_us(st.kernel_ns, st.kernel_n)));
		json_object_object_add(
		    o, "cqe_to_used_us",
		    json_object_new_double(latency_us(st.cqe_used_ns, st.reaped_io)));
		json_object_object_add(o, "backend_cqes", json_object_new_uint64(st.reaped_io));
		/* The thread's own clock: what this engine cost, apart from the other threads. */
		json_object_object_add(o, "cpu_s", json_object_new_double((double)st.cpu_ns / 1e9));
		json_object_object_add(o, "untimed_cqes",
				       json_object_new_uint64(st.reaped_io > st.kernel_n
								  ? st.reaped_io - st.kernel_n
								  : 0));
		json_object_object_add(o, "holds", json_object_new_uint64(st.holds));
		json_object_object_add(o, "hold_trials", json_object_new_uint64(st.hold_trials));
		json_object_object_add(o, "hold_kept", json_object_new_uint64(st.hold_kept));
		json_object_array_add(a, o);
	}
	return a;
}

static int m_engine_stats(struct siov_rpc_server *srv, struct json_object *params,
			  struct json_object **result, struct siov_err *err)
{
	int rc = parse_nothing(params, err);

	if (rc)
		return rc;
	*result = engine_stats_json(srv->vdcm);
	return *result ? 0 : siov_err_set(err, -ENOMEM, "out of memory");
}

static int m_daemon_info(struct siov_rpc_server *srv, struct json_object *params,
			 struct json_object **result, struct siov_err *err)
{
	struct siov_daemon_info info = {0};
	struct json_object *o;
	int rc = parse_nothing(params, err);

	if (rc)
		return rc;
	siov_vdcm_daemon_info(srv->vdcm, &info);
	o = json_object_new_object();
	if (!o)
		return siov_err_set(err, -ENOMEM, "out of memory");
	json_object_object_add(o, "version",
			       json_object_new_string(info.version ? info.version : ""));
	json_object_object_add(o, "pid", json_object_new_int64(getpid()));
	json_object_object_add(o, "engines", json_object_new_int64(info.engines));
	json_object_object_add(o, "backends", json_object_new_int64(info.backends));
	json_object_object_add(o, "vdevs", json_object_new_int64(info.vdevs));
	json_object_object_add(o, "groups", json_object_new_int64(info.groups));
	json_object_object_add(o, "networks", json_object_new_int64(info.networks));
	json_object_object_add(o, "uptime_s", json_object_new_double(info.uptime_s));
	*result = o;
	return 0;
}

/* ---- NBD exports ---- */

static const struct siov_param export_vdev_params[] = {
    {"vdev", true, siov_param_name, 0, SIOV_NAME_MAX, 0, 0, "the exported VDEV"},
};
static const struct siov_param_table export_vdev_table = {export_vdev_params, 1};

static int export_undo(struct siov_vdcm *vdcm, const char *vdev, struct siov_err *err)
{
	return siov_vdcm_export_delete(vdcm, vdev, err);
}

static int m_export_create(struct siov_rpc_server *srv, struct json_object *params,
			   struct json_object **result, struct siov_err *err)
{
	struct siov_export_conf conf;
	int rc;

	if (siov_export_conf_from_json(params, &conf, err))
		return invalid_params(err);
	rc = siov_vdcm_export_create(srv->vdcm, &conf, err);
	if (rc < 0)
		return vdcm_failed(rc, err);
	return created(srv, "export", "export", conf.vdev, siov_export_conf_to_json(&conf),
		       export_undo, result, err);
}

static int m_export_delete(struct siov_rpc_server *srv, struct json_object *params,
			   struct json_object **result, struct siov_err *err)
{
	char vdev[SIOV_NAME_MAX];
	int rc;

	if (siov_params_parse(params, export_vdev_table.p, export_vdev_table.n, vdev, NULL, err))
		return invalid_params(err);
	rc = siov_vdcm_export_delete(srv->vdcm, vdev, err);
	if (rc < 0)
		return vdcm_failed(rc, err);
	rc = siov_rpc_record_del(srv, "export", vdev, err);
	if (rc < 0)
		return save_failed(rc, err, "export", vdev, "deleted, but");
	return ok_true(result);
}

static void export_to_json(const struct siov_export_conf *conf, const struct siov_export_stats *st,
			   void *arg)
{
	struct json_object *o = siov_export_conf_to_json(conf);

	if (!o)
		return;
	json_object_object_add(o, "connections", json_object_new_uint64(st->connections));
	json_object_object_add(o, "open", json_object_new_uint64(st->open));
	json_object_object_add(o, "requests", json_object_new_uint64(st->requests));
	json_object_object_add(o, "errors", json_object_new_uint64(st->errors));
	json_object_object_add(o, "bytes_read", json_object_new_uint64(st->bytes_read));
	json_object_object_add(o, "bytes_written", json_object_new_uint64(st->bytes_written));
	json_object_object_add(o, "protocol_errors", json_object_new_uint64(st->protocol_errors));
	json_object_array_add(arg, o);
}

static int m_export_list(struct siov_rpc_server *srv, struct json_object *params,
			 struct json_object **result, struct siov_err *err)
{
	int rc = list_start(params, result, err);

	if (rc)
		return rc;
	siov_vdcm_export_foreach(srv->vdcm, export_to_json, *result);
	return 0;
}

static int m_rpc_get_methods(struct siov_rpc_server *srv, struct json_object *params,
			     struct json_object **result, struct siov_err *err);

/* Every method siovd serves, with its parameter table: siovctl -h is made from this. */
static const struct siov_rpc_method methods[] = {
    {"backend_create", m_backend_create, "add a backend (the storage VDEVs are windows of)",
     &siov_backend_param_table},
    {"backend_delete", m_backend_delete, "remove a backend no VDEV uses", &name_table},
    {"backend_list", m_backend_list, "list the backends", NULL},
    {"backend_stats", m_backend_stats, "a backend with its mirror members' states and resync",
     &name_table},
    {"backend_add_member", m_backend_add_member,
     "add a member to a mirror (resynced from the others)", &member_add_table},
    {"backend_remove_member", m_backend_remove_member, "take a member out of a mirror",
     &member_table},
    {"backend_fail_member", m_backend_fail_member,
     "mark a mirror member failed (I/O stops going to it)", &member_table},
    {"backend_set_resync_rate", m_backend_set_resync_rate,
     "bytes per second a mirror resync may use", &rate_table},
    {"vdev_create", m_vdev_create, "add a VDEV: a window of a backend served on a socket",
     &siov_vdev_param_table},
    {"vdev_delete", m_vdev_delete, "remove a VDEV (its in-flight I/O drains first)", &name_table},
    {"vdev_list", m_vdev_list, "list VDEVs and their configuration", &vdev_query_table},
    {"vdev_stats", m_vdev_stats, "counters of VDEVs and their queues", &vdev_query_table},
    {"vdev_set_error_policy", m_vdev_set_error_policy,
     "what a backend error does to the VDEV: report it, or hold the request", &error_policy_table},
    {"vdev_resume", m_vdev_resume, "retry the requests a held VDEV keeps", &name_table},
    {"vdev_move", m_vdev_move, "move a VDEV's window to another backend while it runs",
     &move_table},
    {"vdev_set_qos", m_vdev_set_qos, "change a VDEV's QoS (parameters left out keep their values)",
     &siov_group_param_table},
    {"group_create", m_group_create, "add a QoS group whose VDEVs share its limits",
     &siov_group_param_table},
    {"group_set_qos", m_group_set_qos, "change a group's QoS", &siov_group_param_table},
    {"group_delete", m_group_delete, "remove a group no VDEV is in", &name_table},
    {"group_list", m_group_list, "list the groups and what their buckets did", NULL},
    {"network_create", m_network_create, "add a network: an L2 switch net VDEVs are ports of",
     &siov_network_param_table},
    {"network_delete", m_network_delete, "remove a network no VDEV is a port of", &name_table},
    {"network_list", m_network_list, "list the networks, their ports and learned MACs", NULL},
    {"daemon_info", m_daemon_info, "version, engines, counts, uptime", NULL},
    {"engine_stats", m_engine_stats, "each engine's rounds, sleeps, submits and timings", NULL},
    {"export_create", m_export_create, "serve a VDEV's window over NBD", &siov_export_param_table},
    {"export_delete", m_export_delete, "stop serving a VDEV over NBD", &export_vdev_table},
    {"export_list", m_export_list, "the NBD exports and their counters", NULL},
    {"rpc_get_methods", m_rpc_get_methods, "every method with its parameters (siovctl -h)", NULL},
};

static struct json_object *param_to_json(const struct siov_param *p)
{
	struct json_object *o = json_object_new_object();

	if (!o)
		return NULL;
	json_object_object_add(o, "name", json_object_new_string(p->name));
	json_object_object_add(o, "type", json_object_new_string(siov_param_type(p)));
	json_object_object_add(o, "required", json_object_new_boolean(p->required));
	json_object_object_add(o, "description", json_object_new_string(p->help ? p->help : ""));
	return o;
}

static struct json_object *method_to_json(const struct siov_rpc_method *m)
{
	struct json_object *o = json_object_new_object(), *ps = json_object_new_array();

	if (!o || !ps) {
		json_object_put(o);
		json_object_put(ps);
		return NULL;
	}
	for (size_t i = 0; m->params && i < m->params->n; i++)
		json_object_array_add(ps, param_to_json(&m->params->p[i]));
	json_object_object_add(o, "name", json_object_new_string(m->name));
	json_object_object_add(o, "description", json_object_new_string(m->summary));
	json_object_object_add(o, "params", ps);
	return o;
}

static int m_rpc_get_methods(struct siov_rpc_server *srv, struct json_object *params,
			     struct json_object **result, struct siov_err *err)
{
	int rc = list_start(params, result, err);

	if (rc)
		return rc;
	for (size_t i = 0; i < SIOV_ARRAY_SIZE(methods); i++)
		json_object_array_add(*result, method_to_json(&methods[i]));
	return 0;
}

const struct siov_rpc_method *siov_rpc_method_find(const char *name)
{
	for (size_t i = 0; i < SIOV_ARRAY_SIZE(methods); i++)
		if (strcmp(methods[i].name, name) == 0)
			return &methods[i];
	return NULL;
}
