/*
 * The VDCM (Virtual Device Composition Module): siovd's control plane.  It owns
 * the backends, composes VDEVs (virtio-blk devices served over vhost-user) from
 * windows of them, hands their queues (ADIs) to the engines and reports stats.
 *
 * Threading: every function here runs on the control thread, the one that runs
 * the struct siov_loop given at creation.  Errors are -errno with a message a
 * person can read in *err.
 */
#ifndef SIOV_INTERNAL_VDCM_H
#define SIOV_INTERNAL_VDCM_H

#include <stdbool.h>
#include <stdint.h>

#include "siov_internal/backend.h"
#include "siov_internal/engine.h"
#include "siov_internal/export.h"
#include "siov_internal/virtqueue.h"
#include "siov_internal/qos.h"
#include "siov_internal/switch.h"
#include "siov_internal/util.h"
#include "siov_internal/virtio_blk.h"
#include "siov_internal/virtio_net.h"

struct siov_loop;
struct siov_vdcm;

/* sun_path is 108 bytes including the NUL: Linux's limit, said in the error. */
#define SIOV_SOCKET_PATH_MAX 108

struct siov_vdcm_opts {
	struct siov_loop *loop;
	unsigned engines; /* 0: one per online CPU */
	unsigned poll_us; /* how long an engine polls a queue after its last request */
	unsigned hold_ns; /* an engine's poll hold while it batches requests (0: never) */
	/* Directories VDEV sockets must be created in (NULL-terminated; NULL = anywhere). */
	const char *const *socket_dirs;
	/* VDEV socket files: mode (0 = 0600), owner and group (0 = siovd's). */
	unsigned socket_mode;
	int socket_uid, socket_gid;
	const char *state_dir; /* mirrors' bitmaps go here; NULL = kept in memory */
};

enum siov_vdev_type { SIOV_VDEV_BLK, SIOV_VDEV_NET };

struct siov_vdev_conf {
	char name[SIOV_NAME_MAX];
	enum siov_vdev_type type;
	char backend[SIOV_NAME_MAX]; /* blk */
	char network[SIOV_NAME_MAX]; /* net: the network the port is on */
	uint8_t mac[6]; /* net: the port's own MAC (chosen from the name if not given) */
	bool mac_set;
	bool allow_spoof; /* net: may send from other MACs than its own */
	uint64_t offset;  /* bytes into the backend; multiple of 512 */
	uint64_t size;	  /* bytes; 0 = up to the end of the backend */
	uint16_t queues;  /* 1..SIOV_VDEV_MAX_QUEUES; 0 = offer SIOV_VU_MAX_QUEUES (QEMU's default);
			     net: queue pairs, 1..32 (0 = 1) */
	bool readonly;
	bool allow_overlap; /* let this window overlap other VDEVs' windows */
	char socket[SIOV_SOCKET_PATH_MAX];
	char group[SIOV_NAME_MAX];  /* QoS group sharing limits; "" = none; fixed at creation */
	struct siov_qos_params qos; /* the VDEV's own limits, reservation and weight */
	enum siov_error_policy error_policy; /* what a backend error does (virtio_blk.h) */
	uint32_t hold_timeout_ms;	     /* hold: 0 = until vdev_resume */
	/* A vdev_move under way: its data goes to this backend at this offset. */
	char move_backend[SIOV_NAME_MAX];
	uint64_t move_offset;
};
#define SIOV_VDEV_MAX_QUEUES 64

/* A QoS group: limits the VDEVs in it share (a tenant's disks together). */
struct siov_group_conf {
	char name[SIOV_NAME_MAX];
	struct siov_qos_params qos;
};

int siov_vdcm_create(const struct siov_vdcm_opts *opts, struct siov_vdcm **out);
/* Stops every VDEV (in-flight I/O completes first), removes sockets, closes backends. */
void siov_vdcm_destroy(struct siov_vdcm *vdcm);

int siov_vdcm_backend_create(struct siov_vdcm *vdcm, const struct siov_backend_conf *conf,
			     struct siov_err *err);
/* -EBUSY while a VDEV uses it. */
int siov_vdcm_backend_delete(struct siov_vdcm *vdcm, const char *name, struct siov_err *err);
/*
 * Mirror members (see siov_internal/mirror.h).  add: a backend that nothing
 * else uses, or a failed member coming back (bitmap resync unless full).
 * remove: -EBUSY for the last in-sync member.  The mirror's conf (members)
 * changes with them, so the caller saves the state.
 */
int siov_vdcm_mirror_add_member(struct siov_vdcm *vdcm, const char *name, const char *member,
				bool full, struct siov_err *err);
int siov_vdcm_mirror_remove_member(struct siov_vdcm *vdcm, const char *name, const char *member,
				   struct siov_err *err);
int siov_vdcm_mirror_fail_member(struct siov_vdcm *vdcm, const char *name, const char *member,
				 struct siov_err *err);
int siov_vdcm_mirror_set_resync_rate(struct siov_vdcm *vdcm, const char *name, uint64_t rate,
				     struct siov_err *err);
int siov_vdcm_vdev_create(struct siov_vdcm *vdcm, const struct siov_vdev_conf *conf,
			  struct siov_err *err);
int siov_vdcm_vdev_delete(struct siov_vdcm *vdcm, const char *name, struct siov_err *err);
/* Takes effect for the VDEV's next request; running queues are not stopped. */
int siov_vdcm_vdev_set_qos(struct siov_vdcm *vdcm, const char *name,
			   const struct siov_qos_params *qos, struct siov_err *err);

/* Takes effect at the queues' next pass; report fails what is held now. */
int siov_vdcm_vdev_set_error_policy(struct siov_vdcm *vdcm, const char *name,
				    enum siov_error_policy p, uint32_t timeout_ms,
				    struct siov_err *err);
/*
 * Moves a VDEV's data to [offset, offset+size) of another backend while its
 * driver keeps running (QEMU's blockdev-mirror): the VDEV is switched onto a
 * mirror of its window and the new one, the new one is resynced, and then the
 * VDEV is switched onto it alone.  The move is in the VDEV's conf (saved), so
 * siovd finishes it after a restart.  -EBUSY while requests are held.  rate:
 * the copy's limit in bytes/s (0 = the mirror default; after a restart the
 * copy goes on at the default).
 */
int siov_vdcm_vdev_move(struct siov_vdcm *vdcm, const char *name, const char *backend,
			uint64_t offset, uint64_t rate, struct siov_err *err);
/*
 * Called (control thread) when the VDCM changed the configuration by itself
 * (a move of VDEV vdev finished): the caller saves the state durably before it
 * returns.  Returns -errno if it failed.
 */
typedef int (*siov_vdcm_changed_cb)(void *arg, const char *vdev);
void siov_vdcm_set_changed_cb(struct siov_vdcm *vdcm, siov_vdcm_changed_cb cb, void *arg);

/* Retries the requests the VDEV holds (error policy hold). */
int siov_vdcm_vdev_resume(struct siov_vdcm *vdcm, const char *name, struct siov_err *err);

int siov_vdcm_group_create(struct siov_vdcm *vdcm, const struct siov_group_conf *conf,
			   struct siov_err *err);
int siov_vdcm_group_set_qos(struct siov_vdcm *vdcm, const char *name,
			    const struct siov_qos_params *qos, struct siov_err *err);
/* -EBUSY while a VDEV is in the group. */
int siov_vdcm_group_delete(struct siov_vdcm *vdcm, const char *name, struct siov_err *err);

/* Networks (L2 segments of the switch; see switch.h).  Delete: -EBUSY while ports are on it. */
int siov_vdcm_network_create(struct siov_vdcm *vdcm, const struct siov_network_conf *conf,
			     struct siov_err *err);
int siov_vdcm_network_delete(struct siov_vdcm *vdcm, const char *name, struct siov_err *err);
/* In creation order. */
void siov_vdcm_network_foreach(struct siov_vdcm *vdcm, siov_network_info_cb cb, void *arg);

struct siov_backend_info {
	const struct siov_backend_conf *conf;
	uint64_t size;
	uint32_t block_size;
	bool direct;
	unsigned vdevs;	    /* how many VDEVs use it */
	const char *mirror; /* the mirror it is a member of, or NULL */
};

struct siov_queue_stats {
	unsigned index;
	const char *state; /* "stopped", "running", "broken" */
	const char *ring;  /* the ring format the front end chose last: "split", "packed" */
	int engine;	   /* -1 when not on an engine */
	uint64_t requests; /* completed */
	uint64_t reads, writes, flushes, discards, write_zeroes, get_ids;
	uint64_t bytes_read, bytes_written;
	uint64_t errors; /* requests completed with a status other than OK */
	uint64_t inflight;
	uint64_t latency_ns_total; /* sum over completed requests */
	uint64_t kicks;
	uint64_t avail_reads, used_writes, calls; /* see struct siov_vq_stats */
	uint64_t lat_hist[SIOV_LAT_BUCKETS];	  /* see siov_lat_bucket() */
	/* VIRTIO_F_IN_ORDER: completions held for an older one, used entries, buffers used. */
	bool in_order;
	uint64_t order_held, order_entries, order_used;
};

struct siov_vdev_info {
	const struct siov_vdev_conf *conf;
	uint64_t size;		   /* the window's actual size */
	const char *state;	   /* "listening", "connected", "running", "broken" */
	const char *broken_reason; /* NULL unless broken */
	bool connected;
	uint64_t features;    /* negotiated virtio features */
	uint64_t connections; /* front ends accepted so far */
	bool logging;	      /* the front end is migrating the VM (dirty log on) */
	unsigned max_queues;  /* what the VDEV offers */
	unsigned nqueues;     /* queues the front end has used */
	const struct siov_queue_stats *queues;
	struct siov_qos_stats qos; /* conf->qos holds the parameters in force */
	struct siov_blk_hold_stats hold;
	uint64_t now_ns; /* the clock hold.since_ns is on */
	/* A move under way (conf->move_backend set): bytes copied of how many. */
	uint64_t move_done, move_total;
	/*
	 * Not zeroed for every VDEV (a scrape reports 10,000): port is valid only
	 * if is_net, rxq[0..nrxq), export_io only if exported.
	 */
	bool is_net;
	struct siov_port_stats port; /* net: what the switch counted for the port */
	unsigned nrxq;		     /* net: its receive queues, one per pair; 0 for blk */
	struct siov_net_rxq_stats rxq[SIOV_NET_MAX_PAIRS];
	/* Exported: the NBD export's I/O, in a queue's terms (it sums like one). */
	bool exported;
	struct siov_queue_stats export_io;
	uint64_t export_throttled; /* its requests that waited for the QoS buckets */
};

struct siov_group_info {
	const struct siov_group_conf *conf;
	unsigned vdevs; /* how many VDEVs are in it */
	struct siov_qos_stats qos;
};

/*
 * Which VDEVs a query reports, in creation order: those whose name starts with
 * prefix (NULL or "" = all), skipping the first offset of them, at most limit
 * (0 = no limit).  Skipping walks the list: cheap next to building the answer.
 */
struct siov_vdev_filter {
	const char *prefix;
	uint64_t offset;
	uint64_t limit;
};

struct siov_daemon_info {
	const char *version;
	unsigned engines;
	unsigned backends;
	unsigned vdevs;
	unsigned groups;
	unsigned networks;
	double uptime_s;
};

typedef void (*siov_backend_info_cb)(const struct siov_backend_info *info, void *arg);
struct siov_mirror_info;
/* mirror is NULL unless the backend is a mirror. */
typedef void (*siov_backend_stats_cb)(const struct siov_backend_info *info,
				      const struct siov_mirror_info *mirror, void *arg);
int siov_vdcm_backend_stats(struct siov_vdcm *vdcm, const char *name, siov_backend_stats_cb cb,
			    void *arg, struct siov_err *err);
typedef void (*siov_vdev_info_cb)(const struct siov_vdev_info *info, void *arg);
typedef void (*siov_group_info_cb)(const struct siov_group_info *info, void *arg);

/* In creation order. */
void siov_vdcm_backend_foreach(struct siov_vdcm *vdcm, siov_backend_info_cb cb, void *arg);
void siov_vdcm_vdev_foreach(struct siov_vdcm *vdcm, siov_vdev_info_cb cb, void *arg);
/* Reports the VDEVs the filter selects; returns how many match the prefix in all. */
uint64_t siov_vdcm_vdev_query(struct siov_vdcm *vdcm, const struct siov_vdev_filter *f,
			      siov_vdev_info_cb cb, void *arg);
void siov_vdcm_group_foreach(struct siov_vdcm *vdcm, siov_group_info_cb cb, void *arg);
/* -ENOENT if there is no such VDEV. */
int siov_vdcm_vdev_get(struct siov_vdcm *vdcm, const char *name, siov_vdev_info_cb cb, void *arg);
void siov_vdcm_daemon_info(struct siov_vdcm *vdcm, struct siov_daemon_info *info);
struct siov_engine_stats;
/* Engine i's counters; -ENOENT past the last engine. */
int siov_vdcm_engine_stats(struct siov_vdcm *vdcm, unsigned i, struct siov_engine_stats *out);

/*
 * NBD exports (lib/export): a VDEV's window served over NBD, at most one
 * export per VDEV, named after it.  An exported VDEV cannot be deleted.
 */
struct siov_export_conf;
struct siov_export_stats;
int siov_vdcm_export_create(struct siov_vdcm *vdcm, const struct siov_export_conf *conf,
			    struct siov_err *err);
int siov_vdcm_export_delete(struct siov_vdcm *vdcm, const char *vdev, struct siov_err *err);
typedef void (*siov_export_info_cb)(const struct siov_export_conf *conf,
				    const struct siov_export_stats *stats, void *arg);
void siov_vdcm_export_foreach(struct siov_vdcm *vdcm, siov_export_info_cb cb, void *arg);

#endif
