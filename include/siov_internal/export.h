/*
 * Exports: a VDEV served to the network over NBD, so that one siovd is the
 * storage gateway for others (seed 003's "IOV gateway over Ethernet").
 *
 * An export is another front end of a VDEV, beside the virtio-blk device
 * model: it is given the VDEV's window of its backend (offset, size,
 * read-only) by the VDCM and serves exactly that, as a VM would see it.  It
 * sits above the backend layer and below ctrl (which creates exports for the
 * RPC methods and the state file): lib/export/.
 *
 * It is the VDEV's I/O like a VM's: every request is admitted by the VDEV's
 * QoS buckets (and its group's) before it starts, and counts in the VDEV's
 * statistics (the VDCM adds siov_export_get_stats to vdev_stats).  Weights
 * and reservations order the engines' queues and do not apply here.
 *
 * Threading: open and close on the control thread.  Each export runs its own
 * thread with one io_uring for its backend I/O and epoll for its sockets;
 * close returns once every connection's I/O has completed.
 */
#ifndef SIOV_INTERNAL_EXPORT_H
#define SIOV_INTERNAL_EXPORT_H

#include <stdbool.h>
#include <stdint.h>

#include "siov_internal/backend.h"
#include "siov_internal/qos.h"
#include "siov_internal/util.h"

struct siov_export_conf {
	char vdev[SIOV_NAME_MAX]; /* also the NBD export name */
	char type[8];		  /* "nbd" */
	char listen[160];	  /* "unix:/abs/path" or "tcp:ADDR:PORT" ([v6] in brackets) */
	char tls_creds[1024];	  /* GnuTLS x509 directory; "" = no TLS */
	bool insecure;		  /* TCP without TLS on an address other than loopback */
};

/* What the export serves: a window of a backend, under the VDEV's QoS. */
struct siov_export_window {
	struct siov_backend *bd;
	uint64_t offset, size;
	bool readonly;
	struct siov_qos *qos; /* the VDEV's (NULL: none); must outlive the export */
};

struct siov_export;

struct siov_export_stats {
	uint64_t connections; /* accepted so far */
	uint64_t open;	      /* open now */
	uint64_t requests, errors, bytes_read, bytes_written;
	uint64_t reads, writes, flushes, discards, write_zeroes; /* completed, by kind */
	uint64_t inflight;	   /* started or waiting for QoS, not yet completed */
	uint64_t throttled;	   /* requests that waited for the QoS buckets */
	uint64_t latency_ns_total; /* from arrival (QoS wait included) to completion */
	uint64_t protocol_errors;  /* connections closed for breaking the protocol */
};

int siov_export_open(const struct siov_export_conf *conf, const struct siov_export_window *win,
		     struct siov_export **out, struct siov_err *err);
void siov_export_close(struct siov_export *ex);
const struct siov_export_conf *siov_export_conf(const struct siov_export *ex);
void siov_export_get_stats(const struct siov_export *ex, struct siov_export_stats *out);

#endif
