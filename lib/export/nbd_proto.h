/*
 * The NBD server's protocol engine: bytes from a client in, bytes to the
 * client and I/O requests out.  It owns no socket, no thread and no TLS
 * session (export.c does), so the parser can be fuzzed alone
 * (test/fuzz/fuzz_nbd.c).  Everything that arrives is hostile: every length
 * is capped before anything is allocated, every request is checked against
 * the export before it is started, and what the protocol says must end the
 * connection (a bad magic, an option or payload too large to skip, a client
 * that ignores the rules of TLS) makes siov_nbd_conn_input() return an error.
 *
 * Single-threaded: one connection is used by one thread at a time.
 */
#ifndef SIOV_NBD_PROTO_H
#define SIOV_NBD_PROTO_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#define SIOV_NBD_MAX_PAYLOAD  (32u << 20) /* bytes per read or write (advertised) */
#define SIOV_NBD_MAX_OPTION   4096u	  /* bytes of option data */
#define SIOV_NBD_MAX_INFLIGHT 64u	  /* requests per connection before it stops reading */

/* What the connection serves. */
struct siov_nbd_export_info {
	const char *name;
	uint64_t size;
	uint32_t block_pref; /* preferred block size (advertised) */
	bool readonly, can_trim, can_zero;
	bool tls; /* the connection must STARTTLS before anything else */
};

struct siov_nbd_conn;

/* One request handed to the I/O side. */
struct siov_nbd_req {
	struct siov_nbd_conn *conn;
	uint64_t cookie, offset;
	uint32_t len;
	uint16_t type, flags; /* NBD_CMD_*, NBD_CMD_FLAG_* */
	void *buf;	      /* READ: len bytes to fill; WRITE: the payload; else NULL */
	void *priv;	      /* the I/O side's */
};

struct siov_nbd_conn_ops {
	/*
	 * Starts req (offset and length already checked against the export).
	 * 0: siov_nbd_req_done() follows, later or from inside this call;
	 * -errno: failed now, the client gets the error.
	 */
	int (*start)(void *arg, struct siov_nbd_req *req);
};

struct siov_nbd_conn *siov_nbd_conn_new(const struct siov_nbd_export_info *exp,
					const struct siov_nbd_conn_ops *ops, void *arg);
/* Frees c; only when siov_nbd_conn_inflight(c) is 0. */
void siov_nbd_conn_free(struct siov_nbd_conn *c);

/*
 * Feeds bytes from the client.  Returns how many were consumed (fewer than
 * len when the connection must stop reading: STARTTLS, too many requests in
 * flight, or the client said goodbye), or -errno when the connection must be
 * closed (after the output already queued is sent, if possible).
 */
ssize_t siov_nbd_conn_input(struct siov_nbd_conn *c, const void *data, size_t len);
/* Whether the connection takes more input now. */
bool siov_nbd_conn_wants_input(const struct siov_nbd_conn *c);
/* After STARTTLS was acknowledged: flush the output, handshake, then call tls_done. */
bool siov_nbd_conn_tls_pending(const struct siov_nbd_conn *c);
void siov_nbd_conn_tls_done(struct siov_nbd_conn *c);
/* The client is gone for good (ABORT, DISC, a protocol error): close once flushed. */
bool siov_nbd_conn_finished(const struct siov_nbd_conn *c);
/* Whether the negotiation has ended and requests flow. */
bool siov_nbd_conn_transmitting(const struct siov_nbd_conn *c);
unsigned siov_nbd_conn_inflight(const struct siov_nbd_conn *c);

/* Output queued for the client; consume what was sent. */
const void *siov_nbd_conn_output(const struct siov_nbd_conn *c, size_t *len);
void siov_nbd_conn_sent(struct siov_nbd_conn *c, size_t n);

/* Ends req with 0 or -errno; queues the reply; frees req. */
void siov_nbd_req_done(struct siov_nbd_req *req, int err);

#endif
