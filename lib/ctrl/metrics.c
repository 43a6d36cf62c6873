/*
 * siovd's Prometheus endpoint.  A render takes one pass over the VDCM into a
 * compact array (one row per VDEV, its queues' counters summed, and per
 * queue what the queue families need), then writes the families one after
 * the other from it, as the exposition format wants each family's samples
 * together.  Label values are object names, which the VDCM restricts to
 * [A-Za-z0-9_.-], so they never need escaping.
 *
 * libmicrohttpd serves HTTP on a thread of its own at nice 19.  The VDCM is
 * the control thread's, so a render asks the control thread (an eventfd on
 * its loop) for the pass over the VDCM, about half of a render's CPU, and
 * writes the text, the other half, and sends it on the HTTP thread, where it
 * yields to the engines and the control thread.  A render answers every
 * scrape for nine times as long as it took, so that scrapes, however often
 * and however many, cost the control thread at most a tenth of its time.
 * Engines are never stopped or locked for a scrape: their counters are
 * single-writer fields read with relaxed loads.  docs/operations.md has the
 * measurements behind these choices.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <pthread.h>
#include <sys/eventfd.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <microhttpd.h>

#include "siov_internal/log.h"
#include "siov_internal/loop.h"
#include "siov_internal/metrics.h"
#include "siov_internal/state.h"
#include "siov_internal/vdcm.h"
#include "rpc_internal.h"

#define METRICS_MAX_CONNS 8
#define METRICS_NICE	  19

/*
 * A rendered exposition, shared: every response being sent holds a reference,
 * and so does struct siov_metrics while it is the latest.  A render reuses the
 * buffer of one that nobody holds any more (faulting in 8 MB afresh each time
 * was a cost of its own).
 */
struct shot {
	struct siov_metrics *m;
	char *p;
	size_t len, cap;
	unsigned refs;
	uint64_t at_ns; /* when it was rendered */
};

/* ---- A growing text buffer ---- */

struct text {
	char *p;
	size_t len, cap;
	bool failed;
};

/* ---- One pass over the VDCM ---- */

struct qrow {
	unsigned index;
	const char *state; /* static strings from the VDCM */
	int engine;
	uint64_t requests, kicks;
	bool rx; /* a net receive queue: the counters below are its own */
	uint64_t rx_packets, rx_bytes, rx_drops;
};

struct vrow {
	/* The label set's start, {vdev="NAME", built once: every sample of the VDEV begins so. */
	char lbl[SIOV_NAME_MAX + 8];
	size_t lbl_len;
	char backend[SIOV_NAME_MAX];
	uint64_t connected, broken;
	uint64_t ops[6], bytes_read, bytes_written, errors, inflight, lat_ns, requests;
	uint64_t hist[SIOV_LAT_BUCKETS];
	uint64_t qos_admitted, qos_throttled, qos_throttled_ns;
	unsigned nqueues;
	size_t q0; /* its queues: rows.q[q0 .. q0 + nqueues) */
};

/* Kept from scrape to scrape, so that a scrape allocates nothing once warm. */
struct rows {
	struct vrow *v;
	size_t n, cap;
	struct qrow *q;
	size_t nq, capq;
	bool failed;
};

/*
 * Two threads share this: the control thread (the VDCM's, which collects a
 * snapshot when asked) and libmicrohttpd's (every HTTP callback, the render,
 * the shots).  lock guards the handshake between them and the snapshot.
 */
struct siov_metrics {
	struct siov_loop *loop;
	struct siov_vdcm *vdcm;
	struct siov_rpc_server *rpc;
	struct MHD_Daemon *mhd;
	int ask_fd; /* eventfd: the HTTP thread wants a snapshot */
	struct siov_watch *ask_w;
	pthread_mutex_t lock;
	pthread_cond_t cond;
	bool asked, ready, stopping;
	/* The snapshot, written by the control thread while asked, read by the HTTP thread. */
	struct rows rows;
	struct text head; /* the daemon, engine, backend and group families, rendered */
	bool snap_ok;
	/* The HTTP thread's own. */
	bool niced;
	uint64_t scrapes, renders;
	uint64_t last_render_ns;
	struct shot *cur;   /* the latest render, NULL before the first */
	struct shot *spare; /* a render nobody holds: its buffer is reused */
};

/* Room for n more bytes; false (and the text failed) if there is no memory. */
static bool reserve(struct text *t, size_t n)
{
	size_t cap;
	char *p;

	if (t->failed)
		return false;
	if (t->len + n < t->cap)
		return true;
	cap = t->cap * 2 + n + 4096;
	p = realloc(t->p, cap);
	if (!p) {
		t->failed = true;
		return false;
	}
	t->p = p;
	t->cap = cap;
	return true;
}

__attribute__((format(printf, 2, 3))) static void put(struct text *t, const char *fmt, ...)
{
	va_list ap;
	int n;

	for (;;) {
		if (t->failed)
			return;
		va_start(ap, fmt);
		n = vsnprintf(t->p + t->len, t->cap - t->len, fmt, ap);
		va_end(ap);
		if (n >= 0 && (size_t)n < t->cap - t->len) {
			t->len += (size_t)n;
			return;
		}
		if (!reserve(t, n > 0 ? (size_t)n + 1 : 4096))
			return;
	}
}

/*
 * The per-VDEV lines (hundreds of thousands at 10,000 VDEVs) are assembled
 * from pieces without printf, which was most of a scrape's time; a line
 * reserves its room once (LINE_MAX_BYTES bounds it: names are short) and its
 * pieces are then copied unchecked, their lengths known beforehand.
 */
#define LINE_MAX_BYTES (3 * SIOV_NAME_MAX + 128)

static inline void cat(struct text *t, const char *s, size_t n)
{
	memcpy(t->p + t->len, s, n);
	t->len += n;
}

static inline void cat_u64(struct text *t, uint64_t v)
{
	char buf[24];
	size_t i = sizeof(buf);

	do
		buf[--i] = (char)('0' + v % 10);
	while (v /= 10);
	cat(t, buf + i, sizeof(buf) - i);
}

/* Nanoseconds as seconds with 9 decimals, exactly. */
static void cat_ns_as_s(struct text *t, uint64_t ns)
{
	char frac[10];
	uint64_t f = ns % 1000000000ull;

	cat_u64(t, ns / 1000000000ull);
	frac[0] = '.';
	for (int i = 9; i >= 1; i--, f /= 10)
		frac[i] = (char)('0' + f % 10);
	cat(t, frac, sizeof(frac));
}

/* A string and its length, computed once for the many lines that use it. */
struct str {
	const char *s;
	size_t n;
};

static struct str str_of(const char *s)
{
	return (struct str){s, strlen(s)};
}

/* NAME{vdev="VDEV"EXTRA} VALUE\n, EXTRA being more labels (",op=\"read\"") or "". */
static void sample(struct text *t, struct str name, const struct vrow *r, struct str extra,
		   uint64_t v)
{
	if (!reserve(t, LINE_MAX_BYTES))
		return;
	cat(t, name.s, name.n);
	cat(t, r->lbl, r->lbl_len);
	cat(t, extra.s, extra.n);
	cat(t, "} ", 2);
	cat_u64(t, v);
	cat(t, "\n", 1);
}

/* The same with a value in nanoseconds, shown as seconds. */
static void sample_ns(struct text *t, struct str name, const struct vrow *r, uint64_t ns)
{
	if (!reserve(t, LINE_MAX_BYTES))
		return;
	cat(t, name.s, name.n);
	cat(t, r->lbl, r->lbl_len);
	cat(t, "} ", 2);
	cat_ns_as_s(t, ns);
	cat(t, "\n", 1);
}

static void family(struct text *t, const char *name, const char *type, const char *help)
{
	put(t, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, type);
}

static void add_queue(struct vrow *r, const struct siov_queue_stats *q)
{
	uint64_t ops[6] = {q->reads,	q->writes,	 q->flushes,
			   q->discards, q->write_zeroes, q->get_ids};

	for (int k = 0; k < 6; k++)
		r->ops[k] += ops[k];
	for (int k = 0; k < SIOV_LAT_BUCKETS; k++)
		r->hist[k] += q->lat_hist[k];
	r->bytes_read += q->bytes_read;
	r->bytes_written += q->bytes_written;
	r->errors += q->errors;
	r->inflight += q->inflight;
	r->lat_ns += q->latency_ns_total;
	r->requests += q->requests;
}

/* Room for one more VDEV and its n queues. */
static bool rows_grow(struct rows *rs, unsigned n)
{
	if (rs->n == rs->cap) {
		size_t cap = rs->cap ? rs->cap * 2 : 1024;
		struct vrow *p = realloc(rs->v, cap * sizeof(*p));
		if (!p)
			return false;
		rs->v = p;
		rs->cap = cap;
	}
	if (rs->nq + n > rs->capq) {
		size_t cap = rs->capq * 2 + n + 1024;
		struct qrow *p = realloc(rs->q, cap * sizeof(*p));
		if (!p)
			return false;
		rs->q = p;
		rs->capq = cap;
	}
	return true;
}

static void collect_queue(struct rows *rs, struct vrow *r, const struct siov_vdev_info *info,
			  unsigned i)
{
	const struct siov_queue_stats *q = &info->queues[i];
	struct qrow *qr = &rs->q[r->q0 + i];

	add_queue(r, q);
	*qr = (struct qrow){.index = q->index,
			    .state = q->state ? q->state : "",
			    .engine = q->engine,
			    .requests = q->requests,
			    .kicks = q->kicks};
	if (info->is_net && q->index % 2 == 0 && q->index / 2 < info->nrxq) {
		const struct siov_net_rxq_stats *x = &info->rxq[q->index / 2];

		qr->rx = true;
		qr->rx_packets = x->packets;
		qr->rx_bytes = x->bytes;
		qr->rx_drops = x->drops;
	}
}

static void collect_vdev(const struct siov_vdev_info *info, void *arg)
{
	struct rows *rs = arg;
	struct vrow *r;
	size_t n;

	if (rs->failed || !rows_grow(rs, info->nqueues)) {
		rs->failed = true;
		return;
	}
	r = &rs->v[rs->n];
	memset(r, 0, sizeof(*r));
	/* Copied, not printed: snprintf was a quarter of the control thread's part. */
	n = strnlen(info->conf->name, SIOV_NAME_MAX - 1);
	memcpy(r->lbl, "{vdev=\"", 7);
	memcpy(r->lbl + 7, info->conf->name, n);
	r->lbl[7 + n] = '"';
	r->lbl_len = 8 + n;
	n = strnlen(info->conf->backend, SIOV_NAME_MAX - 1);
	memcpy(r->backend, info->conf->backend, n);
	r->connected = info->connected;
	r->broken = info->broken_reason != NULL;
	r->qos_admitted = info->qos.admitted;
	r->qos_throttled = info->qos.throttled;
	r->qos_throttled_ns = info->qos.throttled_ns;
	r->q0 = rs->nq;
	for (unsigned i = 0; i < info->nqueues; i++)
		collect_queue(rs, r, info, i);
	r->nqueues = info->nqueues;
	rs->nq += info->nqueues;
	if (info->exported) /* the NBD export's I/O is the VDEV's too */
		add_queue(r, &info->export_io);
	rs->n++;
}

/* ---- Families ---- */

static const char *const op_labels[6] = {
    ",op=\"read\"",    ",op=\"write\"",	       ",op=\"flush\"",
    ",op=\"discard\"", ",op=\"write_zeroes\"", ",op=\"get_id\"",
};

static void vdev_counters(struct text *t, const struct rows *rs)
{
	struct str req = str_of("siov_vdev_requests_total"), by = str_of("siov_vdev_bytes_total");
	struct str ops[6], rd = str_of(",direction=\"read\""), wr = str_of(",direction=\"write\"");

	for (int k = 0; k < 6; k++)
		ops[k] = str_of(op_labels[k]);
	family(t, req.s, "counter", "Requests completed without error, by op.");
	for (size_t i = 0; i < rs->n; i++)
		for (int k = 0; k < 6; k++)
			sample(t, req, &rs->v[i], ops[k], rs->v[i].ops[k]);
	family(t, by.s, "counter", "Bytes read and written.");
	for (size_t i = 0; i < rs->n; i++) {
		sample(t, by, &rs->v[i], rd, rs->v[i].bytes_read);
		sample(t, by, &rs->v[i], wr, rs->v[i].bytes_written);
	}
}

/* The families that are one number per VDEV: a field of struct vrow each. */
static const struct vfam {
	const char *name, *type, *help;
	size_t off;
	bool ns; /* nanoseconds, shown as seconds */
} vdev_fams[] = {
    {"siov_vdev_errors_total", "counter", "Requests completed with an error status.",
     offsetof(struct vrow, errors), 0},
    {"siov_vdev_inflight_requests", "gauge", "Requests taken from the rings, not done.",
     offsetof(struct vrow, inflight), 0},
    {"siov_vdev_connected", "gauge", "1 if a front end is attached.",
     offsetof(struct vrow, connected), 0},
    {"siov_vdev_broken", "gauge", "1 if the front end broke the rules and the VDEV stopped.",
     offsetof(struct vrow, broken), 0},
    {"siov_vdev_qos_admitted_total", "counter", "Requests QoS let through.",
     offsetof(struct vrow, qos_admitted), 0},
    {"siov_vdev_qos_throttled_total", "counter", "Times a request had to wait for a QoS bucket.",
     offsetof(struct vrow, qos_throttled), 0},
    {"siov_vdev_qos_throttled_seconds_total", "counter",
     "Time the VDEV's queues spent waiting for QoS buckets.",
     offsetof(struct vrow, qos_throttled_ns), true},
};

static void vdev_scalars(struct text *t, const struct rows *rs)
{
	struct str none = {"", 0};

	for (size_t f = 0; f < SIOV_ARRAY_SIZE(vdev_fams); f++) {
		const struct vfam *vf = &vdev_fams[f];
		struct str name = str_of(vf->name);

		family(t, vf->name, vf->type, vf->help);
		for (size_t i = 0; i < rs->n; i++) {
			uint64_t v = *(const uint64_t *)((const char *)&rs->v[i] + vf->off);
			if (vf->ns)
				sample_ns(t, name, &rs->v[i], v);
			else
				sample(t, name, &rs->v[i], none, v);
		}
	}
}

static void vdev_latency(struct text *t, const struct rows *rs)
{
	static char le[SIOV_LAT_BUCKETS][32];
	struct str les[SIOV_LAT_BUCKETS], none = {"", 0};
	struct str bucket = str_of("siov_vdev_request_latency_seconds_bucket");
	struct str sum = str_of("siov_vdev_request_latency_seconds_sum");
	struct str count = str_of("siov_vdev_request_latency_seconds_count");

	/* The bucket bounds, formatted once: 1024 << k ns (see siov_lat_bucket()). */
	if (!le[0][0])
		for (int k = 0; k < SIOV_LAT_BUCKETS; k++)
			snprintf(le[k], sizeof(le[k]),
				 k < SIOV_LAT_BUCKETS - 1 ? ",le=\"%g\"" : ",le=\"+Inf\"",
				 (double)(1024ull << k) / 1e9);
	for (int k = 0; k < SIOV_LAT_BUCKETS; k++)
		les[k] = str_of(le[k]);
	family(t, "siov_vdev_request_latency_seconds", "histogram",
	       "Time from taking a request off the ring to completing it.");
	for (size_t i = 0; i < rs->n; i++) {
		const struct vrow *r = &rs->v[i];
		uint64_t cum = 0;
		/*
		 * A VDEV's histogram appears with its first request: 24 lines of
		 * zeros for each idle VDEV would be most of a 10,000-VDEV scrape.
		 */
		if (!r->requests)
			continue;
		for (int k = 0; k < SIOV_LAT_BUCKETS; k++) {
			cum += r->hist[k];
			sample(t, bucket, r, les[k], cum);
		}
		sample_ns(t, sum, r, r->lat_ns);
		sample(t, count, r, none, cum);
	}
}

/* ,queue="N" */
static struct str queue_label(char *buf, size_t size, unsigned index)
{
	int n = snprintf(buf, size, ",queue=\"%u\"", index);

	return (struct str){buf, n > 0 && (size_t)n < size ? (size_t)n : 0};
}

/* A net VDEV's receive queues: what the flow hash steered to each. */
static void rx_queue_families(struct text *t, const struct rows *rs)
{
	static const char *const fam[3][2] = {
	    {"siov_net_rx_queue_packets_total", "Packets one receive queue of a port took."},
	    {"siov_net_rx_queue_bytes_total", "Bytes of the frames one receive queue took."},
	    {"siov_net_rx_queue_drops_total",
	     "Frames steered to one receive queue that it could not take (no or small buffers)."},
	};

	for (int f = 0; f < 3; f++) {
		struct str name = str_of(fam[f][0]);

		family(t, fam[f][0], "counter", fam[f][1]);
		for (size_t i = 0; i < rs->n; i++)
			for (unsigned q = 0; q < rs->v[i].nqueues; q++) {
				const struct qrow *qr = &rs->q[rs->v[i].q0 + q];
				uint64_t v[3] = {qr->rx_packets, qr->rx_bytes, qr->rx_drops};
				char ql[24];

				if (!qr->rx)
					continue;
				sample(t, name, &rs->v[i], queue_label(ql, sizeof(ql), qr->index),
				       v[f]);
			}
	}
}

static void queue_families(struct text *t, const struct rows *rs)
{
	static const char *const fam[2][2] = {
	    {"siov_queue_requests_total", "Requests completed by one virtqueue."},
	    {"siov_queue_kicks_total", "Kicks (doorbells) the queue received."},
	};

	for (int f = 0; f < 2; f++) {
		struct str name = str_of(fam[f][0]);

		family(t, fam[f][0], "counter", fam[f][1]);
		for (size_t i = 0; i < rs->n; i++)
			for (unsigned q = 0; q < rs->v[i].nqueues; q++) {
				const struct qrow *qr = &rs->q[rs->v[i].q0 + q];
				char ql[24];

				sample(t, name, &rs->v[i], queue_label(ql, sizeof(ql), qr->index),
				       f ? qr->kicks : qr->requests);
			}
	}
	rx_queue_families(t, rs);
	family(t, "siov_queue_state", "gauge",
	       "1 for the queue's state (stopped, running, broken) and its engine (-1: none).");
	for (size_t i = 0; i < rs->n; i++)
		for (unsigned q = 0; q < rs->v[i].nqueues; q++) {
			const struct qrow *qr = &rs->q[rs->v[i].q0 + q];

			put(t, "siov_queue_state%.*s,queue=\"%u\",state=\"%s\",engine=\"%d\"} 1\n",
			    (int)rs->v[i].lbl_len, rs->v[i].lbl, qr->index, qr->state, qr->engine);
		}
}

/* ---- Backends: their own gauges, and their VDEVs' counters summed ---- */

struct brow {
	char name[SIOV_NAME_MAX];
	uint64_t size, vdevs, requests, bytes_read, bytes_written, errors;
};

struct brows {
	struct brow *b;
	size_t n, cap;
};

static void collect_backend(const struct siov_backend_info *info, void *arg)
{
	struct brows *bs = arg;

	if (bs->n == bs->cap) {
		size_t cap = bs->cap ? bs->cap * 2 : 16;
		struct brow *p = realloc(bs->b, cap * sizeof(*p));
		if (!p)
			return;
		bs->b = p;
		bs->cap = cap;
	}
	bs->b[bs->n] = (struct brow){.size = info->size, .vdevs = info->vdevs};
	snprintf(bs->b[bs->n].name, SIOV_NAME_MAX, "%s", info->conf->name);
	bs->n++;
}

static void backend_families(struct text *t, struct siov_vdcm *vdcm, const struct rows *rs)
{
	struct brows bs = {0};

	siov_vdcm_backend_foreach(vdcm, collect_backend, &bs);
	/* Backends are few: a VDEV finds its own by a walk. */
	for (size_t i = 0; i < rs->n; i++)
		for (size_t k = 0; k < bs.n; k++)
			if (strcmp(bs.b[k].name, rs->v[i].backend) == 0) {
				bs.b[k].requests += rs->v[i].requests;
				bs.b[k].bytes_read += rs->v[i].bytes_read;
				bs.b[k].bytes_written += rs->v[i].bytes_written;
				bs.b[k].errors += rs->v[i].errors;
				break;
			}
	family(t, "siov_backend_size_bytes", "gauge", "Size of the backend.");
	for (size_t k = 0; k < bs.n; k++)
		put(t, "siov_backend_size_bytes{backend=\"%s\"} %llu\n", bs.b[k].name,
		    (unsigned long long)bs.b[k].size);
	family(t, "siov_backend_vdevs", "gauge", "VDEVs that are windows of the backend.");
	for (size_t k = 0; k < bs.n; k++)
		put(t, "siov_backend_vdevs{backend=\"%s\"} %llu\n", bs.b[k].name,
		    (unsigned long long)bs.b[k].vdevs);
	family(t, "siov_backend_requests_total", "counter", "Requests its VDEVs completed.");
	for (size_t k = 0; k < bs.n; k++)
		put(t, "siov_backend_requests_total{backend=\"%s\"} %llu\n", bs.b[k].name,
		    (unsigned long long)bs.b[k].requests);
	family(t, "siov_backend_bytes_total", "counter", "Bytes its VDEVs read and wrote.");
	for (size_t k = 0; k < bs.n; k++) {
		put(t, "siov_backend_bytes_total{backend=\"%s\",direction=\"read\"} %llu\n",
		    bs.b[k].name, (unsigned long long)bs.b[k].bytes_read);
		put(t, "siov_backend_bytes_total{backend=\"%s\",direction=\"write\"} %llu\n",
		    bs.b[k].name, (unsigned long long)bs.b[k].bytes_written);
	}
	family(t, "siov_backend_errors_total", "counter", "Requests of its VDEVs that failed.");
	for (size_t k = 0; k < bs.n; k++)
		put(t, "siov_backend_errors_total{backend=\"%s\"} %llu\n", bs.b[k].name,
		    (unsigned long long)bs.b[k].errors);
	free(bs.b);
}

/* ---- Groups ---- */

struct gctx {
	struct text *t;
	int pass;
};

static void group_line(const struct siov_group_info *info, void *arg)
{
	struct gctx *g = arg;
	const char *n = info->conf->name;

	switch (g->pass) {
	case 0:
		put(g->t, "siov_group_vdevs{group=\"%s\"} %u\n", n, info->vdevs);
		break;
	case 1:
		put(g->t, "siov_group_qos_admitted_total{group=\"%s\"} %llu\n", n,
		    (unsigned long long)info->qos.admitted);
		break;
	case 2:
		put(g->t, "siov_group_qos_throttled_total{group=\"%s\"} %llu\n", n,
		    (unsigned long long)info->qos.throttled);
		break;
	default:
		put(g->t, "siov_group_qos_throttled_seconds_total{group=\"%s\"} %.9f\n", n,
		    (double)info->qos.throttled_ns / 1e9);
	}
}

static void group_families(struct text *t, struct siov_vdcm *vdcm)
{
	static const char *const fam[4][3] = {
	    {"siov_group_vdevs", "gauge", "VDEVs in the QoS group."},
	    {"siov_group_qos_admitted_total", "counter",
	     "Requests the group's buckets let through."},
	    {"siov_group_qos_throttled_total", "counter",
	     "Times a member waited for the group's buckets."},
	    {"siov_group_qos_throttled_seconds_total", "counter",
	     "Time members waited for the group's buckets."},
	};

	for (int p = 0; p < 4; p++) {
		struct gctx g = {t, p};
		family(t, fam[p][0], fam[p][1], fam[p][2]);
		siov_vdcm_group_foreach(vdcm, group_line, &g);
	}
}

/* ---- The daemon and its engines ---- */

static void engine_families(struct text *t, struct siov_vdcm *vdcm, unsigned n)
{
	struct siov_engine_stats es[256];
	unsigned k, got = 0;

	for (k = 0; k < n && k < 256; k++)
		if (siov_vdcm_engine_stats(vdcm, k, &es[k]) == 0)
			got = k + 1;
	family(t, "siov_engine_busy_seconds_total", "counter",
	       "CPU time of the engine thread: polling and I/O work, not sleep.");
	for (k = 0; k < got; k++)
		put(t, "siov_engine_busy_seconds_total{engine=\"%u\"} %.6f\n", k,
		    (double)es[k].cpu_ns / 1e9);
	family(t, "siov_engine_queues", "gauge", "Queues attached to the engine.");
	for (k = 0; k < got; k++)
		put(t, "siov_engine_queues{engine=\"%u\"} %u\n", k, es[k].queues);
}

static void gauge(struct text *t, const char *name, const char *help, double v)
{
	family(t, name, "gauge", help);
	put(t, "%s %.17g\n", name, v);
}

static void counter(struct text *t, const char *name, const char *help, double v)
{
	family(t, name, "counter", help);
	put(t, "%s %.17g\n", name, v);
}

static void daemon_families(struct text *t, struct siov_metrics *m,
			    const struct siov_daemon_info *di)
{
	struct siov_state_stats ss = {0};
	bool has_state = m->rpc && siov_rpc_state_stats(m->rpc, &ss) == 0;

	family(t, "siov_build_info", "gauge", "Always 1; the version is a label.");
	put(t, "siov_build_info{version=\"%s\"} 1\n", di->version ? di->version : "");
	gauge(t, "siov_uptime_seconds", "Seconds since siovd started.", di->uptime_s);
	gauge(t, "siov_vdevs", "VDEVs configured.", di->vdevs);
	gauge(t, "siov_backends", "Backends configured.", di->backends);
	gauge(t, "siov_groups", "QoS groups configured.", di->groups);
	gauge(t, "siov_engines", "Engine threads.", di->engines);
	gauge(t, "siov_rpc_connections", "Open JSON-RPC connections.",
	      m->rpc ? siov_rpc_connections(m->rpc) : 0);
	if (!has_state)
		return;
	counter(t, "siov_state_journal_records_total", "Changes made durable in the journal.",
		(double)ss.records);
	counter(t, "siov_state_journal_syncs_total",
		"Journal writes (one fdatasync each, for all the records waiting).",
		(double)ss.batches);
	counter(t, "siov_state_journal_sync_seconds_total", "Time spent writing and syncing.",
		(double)ss.sync_ns_total / 1e9);
	counter(t, "siov_state_compactions_total", "Journals folded into a new snapshot.",
		(double)ss.compactions);
	gauge(t, "siov_state_journal_failed", "1 if the journal failed: changes are refused.",
	      ss.failed);
}

/* The endpoint's own figures (the HTTP thread's). */
static void metrics_families(struct text *t, const struct siov_metrics *m)
{
	counter(t, "siov_metrics_scrapes_total",
		"Scrapes served when this exposition was rendered, its own included.",
		(double)m->scrapes);
	counter(t, "siov_metrics_renders_total",
		"Expositions rendered (scrapes close together share one).", (double)m->renders);
	gauge(t, "siov_metrics_render_seconds",
	      "How long the previous render took (snapshot and text, wall time).",
	      (double)m->last_render_ns / 1e9);
}

/*
 * The control thread's part of a render: one pass over the VDCM into rows,
 * and the few families that are not per VDEV (they need the VDCM) as text.
 */
static void snapshot(struct siov_metrics *m)
{
	struct rows *rs = &m->rows;
	struct siov_daemon_info di = {0};

	rs->n = rs->nq = 0;
	rs->failed = false;
	m->head.len = 0;
	m->head.failed = false;
	siov_vdcm_daemon_info(m->vdcm, &di);
	siov_vdcm_vdev_foreach(m->vdcm, collect_vdev, rs);
	daemon_families(&m->head, m, &di);
	engine_families(&m->head, m->vdcm, di.engines);
	backend_families(&m->head, m->vdcm, rs);
	group_families(&m->head, m->vdcm);
	m->snap_ok = !rs->failed && !m->head.failed;
}

static void on_ask(struct siov_watch *w, uint32_t events, void *arg)
{
	struct siov_metrics *m = arg;
	uint64_t n;

	(void)!read(m->ask_fd, &n, sizeof(n));
	pthread_mutex_lock(&m->lock);
	if (m->asked && !m->stopping) {
		snapshot(m);
		m->asked = false;
		m->ready = true;
		pthread_cond_broadcast(&m->cond);
	}
	pthread_mutex_unlock(&m->lock);
}

/* HTTP thread: a fresh snapshot from the control thread; false if there is none. */
static bool ask_snapshot(struct siov_metrics *m)
{
	uint64_t one = 1;
	bool ok;

	pthread_mutex_lock(&m->lock);
	m->asked = true;
	m->ready = false;
	if (!m->stopping && write(m->ask_fd, &one, sizeof(one)) != sizeof(one))
		m->stopping = true; /* cannot happen with an eventfd; never wait on it */
	while (!m->ready && !m->stopping)
		pthread_cond_wait(&m->cond, &m->lock);
	ok = m->ready && m->snap_ok;
	pthread_mutex_unlock(&m->lock);
	return ok;
}

/*
 * Renders into s's buffer (kept if large enough); false if memory ran out or
 * siovd is stopping.  The per-VDEV text, nearly all of it, is written here on
 * the HTTP thread from the snapshot, which nobody touches until the next ask.
 */
static bool render(struct siov_metrics *m, struct shot *s)
{
	uint64_t t0 = siov_now_ns();
	struct text t = {.p = s->p, .cap = s->cap};
	const struct rows *rs = &m->rows;

	m->renders++;
	if (!ask_snapshot(m))
		return false;
	reserve(&t, m->head.len + 65536 + rs->n * 1024); /* about what a VDEV takes */
	if (reserve(&t, m->head.len))
		cat(&t, m->head.p, m->head.len);
	metrics_families(&t, m);
	vdev_counters(&t, rs);
	vdev_scalars(&t, rs);
	vdev_latency(&t, rs);
	queue_families(&t, rs);
	s->p = t.p;
	s->cap = t.cap;
	s->len = t.len;
	s->at_ns = siov_now_ns();
	m->last_render_ns = s->at_ns - t0;
	return !t.failed;
}

static void shot_free(struct shot *s)
{
	if (s) {
		free(s->p);
		free(s);
	}
}

/* Drops a reference; the last one keeps the shot as the spare (one is enough). */
static void shot_put(struct shot *s)
{
	struct siov_metrics *m = s->m;

	if (--s->refs)
		return;
	if (m->spare) {
		shot_free(s);
		return;
	}
	m->spare = s;
}

static void shot_release(void *cls)
{
	shot_put(cls); /* MHD is done sending it */
}

/*
 * How long the latest render answers scrapes: nine times what it took, so
 * that rendering costs at most a tenth of the time however often and however
 * many scrapers ask (back to back, an HA pair of Prometheus servers), but at
 * least 100 ms (scrapers that come together share one render) and at most
 * 2 s.  At a 1 s scrape interval and 10,000 VDEVs (a render of ~12-40 ms) every
 * scrape gets a fresh render.  docs/operations.md has the figures.
 */
#define METRICS_RENDER_SHARE_PCT 10
#define METRICS_HOLD_MIN_NS	 100000000ull
#define METRICS_HOLD_MAX_NS	 2000000000ull

static uint64_t hold_ns(const struct siov_metrics *m)
{
	uint64_t h = m->last_render_ns * (100 / METRICS_RENDER_SHARE_PCT - 1);

	return h < METRICS_HOLD_MIN_NS	 ? METRICS_HOLD_MIN_NS
	       : h > METRICS_HOLD_MAX_NS ? METRICS_HOLD_MAX_NS
					 : h;
}

/* The exposition to answer with, a reference taken; NULL if memory ran out. */
static struct shot *current(struct siov_metrics *m)
{
	uint64_t now = siov_now_ns();
	struct shot *s;

	m->scrapes++;
	if (m->cur && now - m->cur->at_ns < hold_ns(m)) {
		m->cur->refs++;
		return m->cur;
	}
	s = m->spare;
	m->spare = NULL;
	if (!s && !(s = calloc(1, sizeof(*s))))
		return NULL;
	s->m = m;
	s->refs = 1;
	if (!render(m, s)) {
		shot_put(s);
		return NULL;
	}
	if (m->cur)
		shot_put(m->cur);
	m->cur = s; /* the reference just taken is ours; the caller's is another */
	s->refs++;
	return s;
}

/* ---- HTTP ---- */

static enum MHD_Result reply(struct MHD_Connection *c, unsigned status, const char *text)
{
	struct MHD_Response *r =
	    MHD_create_response_from_buffer(strlen(text), (void *)text, MHD_RESPMEM_PERSISTENT);
	enum MHD_Result rc;

	if (!r)
		return MHD_NO;
	MHD_add_response_header(r, "Content-Type", "text/plain; charset=utf-8");
	rc = MHD_queue_response(c, status, r);
	MHD_destroy_response(r);
	return rc;
}

/*
 * The HTTP thread yields the CPU to everything else in siovd: an engine that
 * shares its CPU keeps ~98 % of it while a scrape renders.  libmicrohttpd made
 * the thread; this is the first of our code it runs.  Under the systemd unit
 * setpriority is allowed; where it is not, the thread runs at siovd's priority.
 */
static void lower_priority(struct siov_metrics *m)
{
	if (m->niced)
		return;
	m->niced = true;
	/* libmicrohttpd names it "MHD-single"; ours says whose it is in top -H. */
	pthread_setname_np(pthread_self(), "siov-metrics");
	if (setpriority(PRIO_PROCESS, (id_t)syscall(SYS_gettid), METRICS_NICE) < 0)
		SIOV_DEBUG("metrics: cannot lower the HTTP thread's priority: %s", strerror(errno));
}

static enum MHD_Result on_request(void *cls, struct MHD_Connection *c, const char *url,
				  const char *method, const char *version, const char *upload,
				  size_t *upload_size, void **con_cls)
{
	struct siov_metrics *m = cls;
	struct MHD_Response *r;
	enum MHD_Result rc;
	struct shot *s;

	if (strcmp(method, "GET") && strcmp(method, "HEAD"))
		return reply(c, MHD_HTTP_METHOD_NOT_ALLOWED, "only GET\n");
	if (*upload_size)
		return MHD_NO; /* a GET with a body is not ours to serve */
	if (strcmp(url, "/metrics") && strcmp(url, "/"))
		return reply(c, MHD_HTTP_NOT_FOUND, "siovd serves /metrics\n");
	lower_priority(m);
	s = current(m);
	if (!s)
		return reply(c, MHD_HTTP_SERVICE_UNAVAILABLE,
			     "no render: out of memory, or stopping\n");
	/* MHD calls shot_release once the response is sent or dropped, on this thread. */
	r = MHD_create_response_from_buffer_with_free_callback_cls(s->len, s->p, shot_release, s);
	if (!r) {
		shot_put(s);
		return MHD_NO;
	}
	MHD_add_response_header(r, "Content-Type", "text/plain; version=0.0.4; charset=utf-8");
	rc = MHD_queue_response(c, MHD_HTTP_OK, r);
	MHD_destroy_response(r);
	return rc;
}

/* "127.0.0.1:9100", "[::1]:9100", "0.0.0.0:9100" */
static int parse_listen(const char *s, struct sockaddr_storage *ss, struct siov_err *err)
{
	char host[64];
	const char *colon = strrchr(s, ':');
	char *end;
	unsigned long port;
	size_t hl;

	if (!colon || colon == s)
		goto bad;
	port = strtoul(colon + 1, &end, 10);
	hl = (size_t)(colon - s);
	if (*end || colon[1] == '\0' || port == 0 || port > 65535 || hl >= sizeof(host))
		goto bad;
	memcpy(host, s, hl);
	host[hl] = '\0';
	memset(ss, 0, sizeof(*ss));
	if (host[0] == '[' && host[hl - 1] == ']') {
		struct sockaddr_in6 *a = (struct sockaddr_in6 *)ss;
		host[hl - 1] = '\0';
		a->sin6_family = AF_INET6;
		a->sin6_port = htons((uint16_t)port);
		if (inet_pton(AF_INET6, host + 1, &a->sin6_addr) == 1)
			return 0;
	} else {
		struct sockaddr_in *a = (struct sockaddr_in *)ss;
		a->sin_family = AF_INET;
		a->sin_port = htons((uint16_t)port);
		if (inet_pton(AF_INET, host, &a->sin_addr) == 1)
			return 0;
	}
bad:
	return siov_err_set(err, -EINVAL,
			    "--metrics wants ADDR:PORT (127.0.0.1:9100, [::1]:9100), "
			    "not '%s'",
			    s);
}

int siov_metrics_create(const struct siov_metrics_opts *opts, struct siov_metrics **out,
			struct siov_err *err)
{
	struct siov_metrics *m;
	struct sockaddr_storage ss;
	int rc = parse_listen(opts->listen, &ss, err);

	if (rc < 0)
		return rc;
	m = calloc(1, sizeof(*m));
	if (!m)
		return siov_err_set(err, -ENOMEM, "out of memory");
	m->loop = opts->loop;
	m->vdcm = opts->vdcm;
	m->rpc = opts->rpc;
	pthread_mutex_init(&m->lock, NULL);
	pthread_cond_init(&m->cond, NULL);
	m->ask_fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
	if (m->ask_fd < 0 ||
	    (rc = siov_loop_add(m->loop, m->ask_fd, EPOLLIN, on_ask, m, &m->ask_w)) < 0) {
		rc = siov_err_set(err, m->ask_fd < 0 ? -errno : rc,
				  "cannot set up the metrics server");
		goto err;
	}
	m->mhd = MHD_start_daemon(
	    MHD_USE_EPOLL_INTERNAL_THREAD | (ss.ss_family == AF_INET6 ? MHD_USE_IPv6 : 0), 0, NULL,
	    NULL, on_request, m, MHD_OPTION_SOCK_ADDR, &ss, MHD_OPTION_CONNECTION_LIMIT,
	    (unsigned)METRICS_MAX_CONNS, MHD_OPTION_CONNECTION_TIMEOUT, 10u, MHD_OPTION_END);
	if (!m->mhd) {
		rc = siov_err_set(err, -EADDRNOTAVAIL, "cannot serve metrics on %s: %s",
				  opts->listen, strerror(errno ? errno : EADDRINUSE));
		goto err;
	}
	*out = m;
	return 0;

err:
	siov_metrics_destroy(m);
	return rc;
}

void siov_metrics_destroy(struct siov_metrics *m)
{
	if (!m)
		return;
	/* A render waiting for a snapshot gives up, so that the HTTP thread can end. */
	pthread_mutex_lock(&m->lock);
	m->stopping = true;
	pthread_cond_broadcast(&m->cond);
	pthread_mutex_unlock(&m->lock);
	if (m->mhd)
		MHD_stop_daemon(m->mhd); /* ends its thread; releases the responses held */
	siov_loop_del(m->ask_w);
	if (m->ask_fd >= 0)
		close(m->ask_fd);
	if (m->cur)
		shot_put(m->cur);
	shot_free(m->spare);
	free(m->rows.v);
	free(m->rows.q);
	free(m->head.p);
	pthread_cond_destroy(&m->cond);
	pthread_mutex_destroy(&m->lock);
	free(m);
}
