/*
 * Prometheus metrics over HTTP (siovd --metrics ADDR:PORT): GET /metrics
 * answers the text exposition format with per-VDEV, per-queue, per-backend
 * and per-group counters, latency histograms, engine busy time and daemon
 * gauges.  libmicrohttpd does the HTTP on a low-priority thread of its own;
 * the VDCM is read on the control thread only (asked through its loop);
 * engines are never stopped or locked for a scrape, their counters are read
 * with relaxed atomic loads.
 */
#ifndef SIOV_INTERNAL_METRICS_H
#define SIOV_INTERNAL_METRICS_H

#include <stddef.h>

#include "siov_internal/util.h"

struct siov_loop;
struct siov_vdcm;
struct siov_rpc_server;
struct siov_metrics;

struct siov_metrics_opts {
	struct siov_loop *loop;
	struct siov_vdcm *vdcm;
	struct siov_rpc_server *rpc; /* for connection and journal counters; may be NULL */
	const char *listen;	     /* "ADDR:PORT", ADDR an IPv4 address or [IPv6] */
};

int siov_metrics_create(const struct siov_metrics_opts *opts, struct siov_metrics **out,
			struct siov_err *err);
void siov_metrics_destroy(struct siov_metrics *m);

#endif
