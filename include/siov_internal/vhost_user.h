/*
 * The vhost-user back end: the VDCM's slow path for one VDEV.  It listens on
 * the VDEV's Unix socket (server mode, one front end at a time), negotiates
 * features, maps the memory table, sets up the queues and hands them to the
 * engines; everything it reads from the socket is validated, and a protocol
 * violation closes that connection alone.
 *
 * Runs on the control thread's loop.  Not thread-safe.
 */
#ifndef SIOV_INTERNAL_VHOST_USER_H
#define SIOV_INTERNAL_VHOST_USER_H

#include <stdbool.h>
#include <stdint.h>

#include "siov_internal/util.h"

struct siov_loop;
struct siov_engines;
struct siov_dev_ops;
struct siov_vq;
struct siov_qos;
struct siov_vu_server;

/* Most queues one VDEV offers: vring messages carry the index in 8 bits. */
#define SIOV_VU_MAX_QUEUES 256

struct siov_vu_server_opts {
	struct siov_loop *loop;
	struct siov_engines *engines;
	const char *name; /* the VDEV's name, for logs */
	const char *socket_path;
	unsigned queues; /* what GET_QUEUE_NUM reports: 1..SIOV_VU_MAX_QUEUES */
	const struct siov_dev_ops *dev_ops;
	void *dev;
	struct siov_qos *qos; /* the VDEV's QoS (limits, reservation, weight); may be NULL */
	/* Who may connect: the socket file's mode (0 = 0600), owner and group (0 = ours). */
	unsigned socket_mode;
	int socket_uid, socket_gid;
};

int siov_vu_server_create(const struct siov_vu_server_opts *opts, struct siov_vu_server **out,
			  struct siov_err *err);
/*
 * Takes @fd, a connected non-blocking stream socket, as the front end's
 * connection, as if it had been accepted on the VDEV's socket (what the unit
 * tests do with a socketpair; a manager could hand over a connection the same
 * way).  The server owns fd from here on, also on error: -EBUSY when a front
 * end is already connected, or the loop's -errno.
 */
int siov_vu_server_adopt(struct siov_vu_server *srv, int fd);
/* Stops the queues (in-flight I/O completes), closes the connection, removes the socket. */
void siov_vu_server_destroy(struct siov_vu_server *srv);

/* "listening", "connected", "running" or "broken". */
const char *siov_vu_server_state(const struct siov_vu_server *srv);
const char *siov_vu_server_broken_reason(const struct siov_vu_server *srv);
bool siov_vu_server_connected(const struct siov_vu_server *srv);
uint64_t siov_vu_server_features(const struct siov_vu_server *srv);
uint64_t siov_vu_server_connections(const struct siov_vu_server *srv);
/* Queues offered; queues the front end has used (1 + the highest index named, 0 if none). */
unsigned siov_vu_server_nqueues(const struct siov_vu_server *srv);
unsigned siov_vu_server_queues_used(const struct siov_vu_server *srv);
/* A queue the front end has used, else NULL. */
const struct siov_vq *siov_vu_server_queue(const struct siov_vu_server *srv, unsigned i);
/* True while queue i runs in its device model (a net receive queue), on no engine. */
bool siov_vu_server_queue_self_running(const struct siov_vu_server *srv, unsigned i);
/* True while the front end has dirty logging on (it is migrating the VM). */
bool siov_vu_server_logging(const struct siov_vu_server *srv);

#endif
