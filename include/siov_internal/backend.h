/*
 * Backends: siov's "physical functions", the devices VDEVs are carved from.
 *
 * This is the consumer half, what the VDCM, the device models and the engines
 * use: configure, open and close a backend, ask its size and abilities,
 * submit an I/O, and run the per-engine I/O context.  struct siov_backend is
 * opaque here.  The provider half, what a backend implementation fills in
 * (struct siov_backend_ops and the backend's own fields), is
 * siov_internal/backend_module.h, as SPDK splits bdev.h and bdev_module.h;
 * only files under lib/backend/ include it.
 *
 * Threading: a backend is opened and closed on the control thread.  submit()
 * is called from engine threads, concurrently from several engines, each with
 * its own struct siov_io_ctx; it must not block and must not take locks that
 * another engine holds for long.
 *
 * Async contract (as in libuv and SPDK): if submit() returns an error, the
 * io's callback is never called; if it returns 0, the callback is called
 * exactly once, later, from the same engine thread, never from inside submit().
 */
#ifndef SIOV_INTERNAL_BACKEND_H
#define SIOV_INTERNAL_BACKEND_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/uio.h>

#include "siov_internal/util.h"

struct io_uring;
struct io_uring_sqe;
struct io_uring_cqe;

enum siov_io_op {
	SIOV_IO_READ,
	SIOV_IO_WRITE,
	SIOV_IO_FLUSH,
	SIOV_IO_DISCARD,
	SIOV_IO_WRITE_ZEROES,
};

struct siov_io;
/* res: bytes transferred (READ/WRITE), 0 (others) on success, or -errno. */
typedef void (*siov_io_cb)(struct siov_io *io, int res);

/*
 * One backend I/O.  The caller owns the memory and keeps it alive until cb runs.
 * Must be at least 8-byte aligned: engines tag io_uring user_data low bits.
 */
struct siov_io {
	enum siov_io_op op;
	uint64_t offset; /* bytes from the start of the backend */
	uint64_t len;	 /* bytes; for READ/WRITE the sum of the iov lengths */
	struct iovec *iov;
	int iovcnt;
	siov_io_cb cb;
	void *cb_arg;
	/* Set by siov_backend_submit(). */
	struct siov_backend *bd;
	/* Backend-private: e.g. how many SQEs are still outstanding. */
	int bk_pending;
	int bk_res;
	/* Engine-private link for deferred completions. */
	struct siov_io *next;
	/* The context's submit number when its last SQE was prepared (engine stats). */
	uint32_t sub_seq;
} __attribute__((aligned(8)));

/*
 * Per-engine submission context.  Wraps the engine's io_uring and a list of
 * completions deferred to the next poll (for backends with no real I/O, like
 * null and ram, so that completion never happens inside submit).
 */
struct siov_io_ctx {
	struct io_uring *ring;
	struct siov_io *done_head;
	struct siov_io **done_tail;
	unsigned unsubmitted; /* SQEs prepared since the last io_uring_submit() */
	/*
	 * Bumped by the ring's owner after each submit; every I/O SQE carries the
	 * number it went out under, so the owner can tell when the kernel got it
	 * (engine_stats' submit_to_cqe_us) without a clock read per request.
	 */
	uint32_t sub_seq;
};

/* Tag in the low 3 bits of io_uring user_data.  0 is a struct siov_io. */
#define SIOV_UD_TAG_MASK 7ull
#define SIOV_UD_IO	 0ull

void siov_io_ctx_init(struct siov_io_ctx *ctx, struct io_uring *ring);
/* An SQE from the ring, submitting first if the SQ is full; NULL if still none. */
struct io_uring_sqe *siov_io_ctx_get_sqe(struct siov_io_ctx *ctx);
/* Runs deferred completions; returns how many ran. */
unsigned siov_io_ctx_run_deferred(struct siov_io_ctx *ctx);
/*
 * Handles a CQE tagged SIOV_UD_IO: calls the backend's complete() hook if it
 * has one (for I/Os split into several SQEs), else io->cb(io, cqe->res).
 */
void siov_io_ctx_handle_cqe(struct siov_io_ctx *ctx, struct io_uring_cqe *cqe);

enum siov_backend_type {
	SIOV_BACKEND_NULL,
	SIOV_BACKEND_RAM,
	SIOV_BACKEND_FILE,
	SIOV_BACKEND_NBD,
	SIOV_BACKEND_RBD,
	SIOV_BACKEND_MIRROR,
};

/* The most members a mirror has (md allows more; two or three is what people run). */
#define SIOV_MIRROR_MAX_MEMBERS 8

/* Remote backends: how long a request may wait for a lost server, and the fence. */
#define SIOV_BACKEND_TIMEOUT_MS_DEFAULT 30000
#define SIOV_BACKEND_SETTLE_MS_DEFAULT	1000

struct siov_backend_conf {
	char name[SIOV_NAME_MAX];
	enum siov_backend_type type;
	char path[4096]; /* file: a regular file or a block device */
	uint64_t size;	 /* bytes; 0 = take the file's (file) or the server's (nbd, rbd) size */
	bool readonly;
	/* nbd: an NBD URI (nbd://, nbds://, nbd+unix://) and the TLS credentials directory. */
	char uri[1024];
	char tls_creds[1024];
	/*
	 * nbd: a request waiting for a lost server fails after timeout_ms; after a
	 * connection is lost (and after open) writes wait settle_ms before they go
	 * to the server (docs/storage.md, "No stale write").  timeout_ms 0 means
	 * the default; the RPC parser fills in both defaults when they are not given.
	 */
	uint32_t timeout_ms;
	uint32_t settle_ms;
	/* rbd: pool, image, ceph.conf (empty: librados' default search) and client id. */
	char pool[128];
	char image[128];
	char ceph_conf[1024];
	char ceph_id[128];
	/* mirror: the member backends' names (opened by siov_mirror_open, see mirror.h) */
	char members[SIOV_MIRROR_MAX_MEMBERS][SIOV_NAME_MAX];
	unsigned nmembers;
	uint64_t resync_rate; /* mirror: bytes/s; 0 = the default */
};

struct siov_backend;

/* Parses "null", "ram", "file", "mirror"; -EINVAL otherwise. */
int siov_backend_type_parse(const char *s, enum siov_backend_type *out);
const char *siov_backend_type_name(enum siov_backend_type type);

int siov_backend_open(const struct siov_backend_conf *conf, struct siov_backend **out,
		      struct siov_err *err);
void siov_backend_close(struct siov_backend *bd);

const struct siov_backend_conf *siov_backend_conf(const struct siov_backend *bd);
uint64_t siov_backend_size(const struct siov_backend *bd);
uint32_t siov_backend_block_size(const struct siov_backend *bd); /* 512 or 4096 */
bool siov_backend_can_discard(const struct siov_backend *bd);
bool siov_backend_can_write_zeroes(const struct siov_backend *bd);
/* True when the backend fd is opened with O_DIRECT (reported in backend_list). */
bool siov_backend_is_direct(const struct siov_backend *bd);

/*
 * Submits io (see the async contract above).  The caller has already checked
 * offset+len against the VDEV window; the backend checks it against its own size.
 */
int siov_backend_submit(struct siov_backend *bd, struct siov_io_ctx *ctx, struct siov_io *io);

#endif
