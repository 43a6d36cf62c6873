/*
 * What the management plane's files share among themselves (never installed,
 * not used outside lib/ctrl and its unit tests): the server object the methods
 * see, the method table, and the one JSON <-> configuration conversion that
 * both the RPC methods and the state file use, so that what siovctl accepts and
 * what siovd reloads after a restart can never drift apart.
 */
#ifndef SIOV_CTRL_RPC_INTERNAL_H
#define SIOV_CTRL_RPC_INTERNAL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <json-c/json.h>

#include "siov_internal/export.h"
#include "siov_internal/rpc.h"
#include "siov_internal/state.h"
#include "siov_internal/util.h"
#include "siov_internal/vdcm.h"

/* A request larger than this is refused and its connection closed. */
#define SIOV_RPC_MAX_REQUEST (1u << 20)
/* Stop reading a connection's requests while this much output is unsent... */
#define SIOV_RPC_OUT_SOFT_CAP (1u << 20)
/* ...and drop the connection if its unsent output grows beyond this. */
#define SIOV_RPC_OUT_HARD_CAP (64u << 20)
/* Connections beyond this many are closed as soon as they are accepted. */
#define SIOV_RPC_MAX_CONNS 1024

struct siov_rpc_conn;
struct siov_watch;

struct siov_rpc_server {
	struct siov_loop *loop;
	struct siov_vdcm *vdcm;
	char *socket_path;	  /* NULL: no socket, siov_rpc_handle() only */
	struct siov_state *state; /* NULL: nothing is persisted */
	int listen_fd;
	int socket_gid; /* > 0: the socket is 0660 for this group */
	struct siov_watch *listen_watch;
	struct siov_rpc_conn *conns; /* doubly linked */
	unsigned nconns;
	/*
	 * Every change is a journal record (siov_rpc_record_*); an answer
	 * leaves only once the journal is durable up to the last record
	 * appended when the answer was made, so that no one ever sees a change
	 * that a crash could still take back.  The answers of the calls that
	 * changed something are kept here until their answer is queued, to be
	 * amended if the journal fails before they are durable.
	 */
	bool changed;		      /* the last call changed the configuration */
	struct json_object **changes; /* responses of those calls */
	size_t nchanges, changes_cap;
	/* Limits, tunable by unit tests to reach them with little data. */
	size_t max_request;
	size_t out_soft_cap;
	size_t out_hard_cap;
};

/*
 * A method handler.  On success it returns 0 and sets *result (a new
 * reference).  On failure it returns non-zero with err->code either a JSON-RPC
 * code (SIOV_RPC_INVALID_PARAMS...) or -errno from the VDCM, and err->msg.
 * params is always an object (the dispatcher turns an absent one into {}).
 */
typedef int (*siov_rpc_method_fn)(struct siov_rpc_server *srv, struct json_object *params,
				  struct json_object **result, struct siov_err *err);

/*
 * One row of the method table (rpc_methods.c): a new method is a row, with
 * its parameter table, which both parses its params and documents them
 * (rpc_get_methods, and siovctl -h from it), so help and server cannot drift.
 */
struct siov_rpc_method {
	const char *name;
	siov_rpc_method_fn fn;
	const char *summary;
	const struct siov_param_table *params; /* NULL: takes none */
};

/* NULL if there is no such method. */
const struct siov_rpc_method *siov_rpc_method_find(const char *name);

/*
 * Journals a change a method has just made: kind/name now has configuration
 * conf (a new reference, taken over; NULL means out of memory), or is gone.
 * Methods call one of these after every change, with the kind's row in
 * state.c's table; on failure (the journal failed earlier) they take the
 * change back if they can.  The answer is held until the record is durable.
 */
int siov_rpc_record_put(struct siov_rpc_server *srv, const char *kind, const char *name,
			struct json_object *conf, struct siov_err *err);
int siov_rpc_record_del(struct siov_rpc_server *srv, const char *kind, const char *name,
			struct siov_err *err);
/* Journals VDEV name's whole configuration as the VDCM now has it. */
int siov_rpc_record_vdev(struct siov_rpc_server *srv, const char *name, struct siov_err *err);

/* ---- Parameters: strict, table-driven conversion of a JSON object ---- */

struct siov_param;
typedef int (*siov_param_parse_fn)(const struct siov_param *p, struct json_object *v, void *field,
				   struct siov_err *err);

struct siov_param {
	const char *name;
	bool required;
	siov_param_parse_fn parse;
	size_t offset;	   /* of the field in the destination struct */
	size_t size;	   /* strings: buffer size; integers: sizeof the field */
	uint64_t min, max; /* integers */
	const char *help;  /* one line for rpc_get_methods and siovctl -h */
};

/* A method's parameters: what it parses with, and what rpc_get_methods shows. */
struct siov_param_table {
	const struct siov_param *p;
	size_t n;
};
extern const struct siov_param_table siov_backend_param_table; /* backend_create */
extern const struct siov_param_table siov_vdev_param_table;    /* vdev_create */
extern const struct siov_param_table siov_group_param_table;   /* group_create, *_set_qos */
extern const struct siov_param_table siov_network_param_table; /* network_create */
extern const struct siov_param_table siov_export_param_table;  /* export_create */
/* "string", "path", "bool", "integer" or "bytes" (an integer or "4K", "1G"...). */
const char *siov_param_type(const struct siov_param *p);

/* Field parsers for struct siov_param.parse. */
int siov_param_name(const struct siov_param *p, struct json_object *v, void *field,
		    struct siov_err *err);
int siov_param_abs_path(const struct siov_param *p, struct json_object *v, void *field,
			struct siov_err *err);
int siov_param_bool(const struct siov_param *p, struct json_object *v, void *field,
		    struct siov_err *err);
/* A JSON integer (unsigned field of p->size bytes, within p->min..p->max). */
int siov_param_uint(const struct siov_param *p, struct json_object *v, void *field,
		    struct siov_err *err);
/* A byte count (uint64_t): a JSON integer or a string like "4K", "512M", "1G". */
int siov_param_bytes(const struct siov_param *p, struct json_object *v, void *field,
		     struct siov_err *err);

/* vdev error policies: "report", "hold", "hold:30s" (-EINVAL / -ERANGE otherwise). */
int siov_error_policy_parse(const char *s, enum siov_error_policy *p, uint32_t *timeout_ms);
void siov_error_policy_format(enum siov_error_policy p, uint32_t timeout_ms, char *buf, size_t n);
/* Field parser: field is a struct siov_vdev_conf's error_policy (hold_timeout_ms is set too). */
int siov_param_error_policy(const struct siov_param *p, struct json_object *v, void *field,
			    struct siov_err *err);

/*
 * Fills out from the members of params (an object, or NULL for none) as
 * described by the table.  Unknown members, missing required ones and values
 * of the wrong type or range fail with -EINVAL and a message naming the
 * parameter.  *seen (optional) gets bit i set for each params[i] present.
 */
int siov_params_parse(struct json_object *params, const struct siov_param *table, size_t n,
		      void *out, uint32_t *seen, struct siov_err *err);

/* "1G" -> 1073741824.  -EINVAL for garbage or negatives, -ERANGE past 2^63-1. */
int siov_parse_bytes(const char *s, uint64_t *out);

/* The configuration conversions shared by the methods and the state file. */
int siov_backend_conf_from_json(struct json_object *params, struct siov_backend_conf *conf,
				struct siov_err *err);
int siov_vdev_conf_from_json(struct json_object *params, struct siov_vdev_conf *conf,
			     struct siov_err *err);
/* The inverse: objects that siov_*_conf_from_json() read back unchanged.  NULL: no memory. */
struct json_object *siov_backend_conf_to_json(const struct siov_backend_conf *conf);
int siov_export_conf_from_json(struct json_object *params, struct siov_export_conf *conf,
			       struct siov_err *err);
struct json_object *siov_export_conf_to_json(const struct siov_export_conf *conf);
/* Adds an nbd or rbd backend's own parameters (uri, pool, ...) to o; nothing for others. */
void siov_backend_remote_conf_to_json(struct json_object *o, const struct siov_backend_conf *conf);
struct json_object *siov_vdev_conf_to_json(const struct siov_vdev_conf *conf);

const char *siov_vdev_type_name(enum siov_vdev_type type);
/* "52:54:00:12:34:56" into buf (18 bytes). */
void siov_mac_format(const uint8_t *mac, char *buf, size_t size);

/* network_create's params: name, mtu, uplink ("tap:IFNAME"). */
int siov_network_conf_from_json(struct json_object *params, struct siov_network_conf *conf,
				struct siov_err *err);
struct json_object *siov_network_conf_to_json(const struct siov_network_conf *conf);

/*
 * group_create's params (a name and QoS parameters); *seen (optional) gets the
 * bits siov_qos_params_merge() wants.  vdev_set_qos and group_set_qos take the
 * same params.
 */
int siov_group_conf_from_json(struct json_object *params, struct siov_group_conf *conf,
			      uint32_t *seen, struct siov_err *err);
struct json_object *siov_group_conf_to_json(const struct siov_group_conf *conf);
/* Copies into *cur the QoS parameters of req that seen says were given. */
void siov_qos_params_merge(struct siov_qos_params *cur, const struct siov_group_conf *req,
			   uint32_t seen);
/* The QoS parameters of conf that differ from the defaults, as an object. */
struct json_object *siov_vdev_conf_qos_to_json(const struct siov_vdev_conf *conf);

#endif
