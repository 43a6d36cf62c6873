/*
 * QoS: limits, reservations and weights for VDEVs and groups of VDEVs.
 *
 * A struct siov_qos belongs to one VDEV (or one group).  Limits are token
 * buckets counted in requests and in bytes (so neither merging I/O into large
 * requests nor splitting it into tiny ones escapes a cap); a request that finds
 * a bucket empty waits in its ring until the bucket refills, it is never
 * failed.  A VDEV's bucket and its group's bucket must both admit a request.
 * Among VDEVs that want more than the engines can give, reservations
 * (iops_min) are served first, then spare capacity goes by weight.
 *
 * Threading: create, set and destroy on the control thread; engines admit
 * requests concurrently (a tiny lock per bucket).  Destroy only once no queue
 * refers to it.
 */
#ifndef SIOV_INTERNAL_QOS_H
#define SIOV_INTERNAL_QOS_H

#include <stdbool.h>
#include <stdint.h>

struct siov_qos;

/*
 * What the VDEVs of one backend share: while a reserved VDEV there falls
 * short of its reservation, the unreserved ones keep only a few requests in
 * flight at the backend, so the reserved one's requests do not queue behind
 * theirs in the device.  Embedded in the owner of the backend; zero it first.
 */
struct siov_qos_domain {
	uint64_t short_until; /* ns: a reserved VDEV was short until about then */
};

/* Requests an unreserved VDEV may keep in flight while a reserved one is short. */
#define SIOV_QOS_SHORT_INFLIGHT 4

#define SIOV_QOS_WEIGHT_DEFAULT 100
#define SIOV_QOS_WEIGHT_MAX	10000

struct siov_qos_params {
	uint64_t iops_limit; /* requests/s; 0 = no limit */
	uint64_t bps_limit;  /* bytes/s; 0 = no limit */
	uint64_t iops_burst; /* bucket depth in requests; 0 = iops_limit / 10 (100 ms), min 1 */
	uint64_t bps_burst;  /* bucket depth in bytes; 0 = bps_limit / 10, min 1 MiB */
	uint64_t iops_min;   /* reservation, requests/s; 0 = none */
	uint32_t weight;     /* 1..SIOV_QOS_WEIGHT_MAX; 0 = SIOV_QOS_WEIGHT_DEFAULT */
};

struct siov_qos_stats {
	uint64_t admitted; /* requests admitted */
	uint64_t admitted_bytes;
	uint64_t throttled;    /* times a request had to wait for a bucket */
	uint64_t throttled_ns; /* total time queues spent waiting for buckets */
	uint64_t reserved;     /* requests served from the reservation */
};

/* -EINVAL with a reason in *why for nonsense (weight out of range, min > limit). */
int siov_qos_params_check(const struct siov_qos_params *p, const char **why);

/* group may be NULL; a group itself has no parent. */
int siov_qos_create(const struct siov_qos_params *p, struct siov_qos *group, struct siov_qos **out);
void siov_qos_destroy(struct siov_qos *qos);
/* Takes effect for the next request; buckets keep their current level, clamped. */
int siov_qos_set(struct siov_qos *qos, const struct siov_qos_params *p);
void siov_qos_get(const struct siov_qos *qos, struct siov_qos_params *p, struct siov_qos_stats *s);

/* ---- engine side ---- */

/*
 * Asks to start a request of @bytes at time @now.  Returns true and charges the
 * buckets (VDEV, then group) if admitted; else false and sets *retry_ns to when
 * it is worth asking again (absolute, ns).
 */
bool siov_qos_admit(struct siov_qos *qos, uint64_t now, uint64_t bytes, uint64_t *retry_ns);
/* True if q or its group has an IOPS or bandwidth limit (admission needed). */
bool siov_qos_limited(const struct siov_qos *qos);
/* Requests the reservation covers right now (0 if none). */
unsigned siov_qos_reserved_credit(struct siov_qos *qos, uint64_t now);
/*
 * A reserved VDEV with @credit unused and @inflight requests at its backend,
 * which recently took @lat_ns each (0: not known yet): short?  Only if, at
 * that latency, what it keeps in flight cannot deliver its reservation
 * (Little's law); a VDEV whose front end sends too few requests is short
 * through no fault of the backend, and bounding its neighbours would only
 * waste capacity.
 */
void siov_qos_note_backlog(struct siov_qos *qos, uint64_t now, unsigned credit, uint64_t inflight,
			   uint64_t lat_ns);
void siov_qos_reserved_take(struct siov_qos *qos, unsigned n);
uint32_t siov_qos_weight(const struct siov_qos *qos);
/* Control thread, before the VDEV starts: the backend's domain (NULL: none). */
void siov_qos_set_domain(struct siov_qos *qos, struct siov_qos_domain *dom);
/* How many requests qos's VDEV may have in flight at its backend now (UINT32_MAX: no bound). */
uint32_t siov_qos_inflight_cap(const struct siov_qos *qos, uint64_t now);
void siov_qos_note_wait(struct siov_qos *qos, uint64_t ns);

#endif
