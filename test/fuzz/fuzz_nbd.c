/*
 * fuzz_nbd: the NBD export's protocol engine (lib/export/nbd_proto.c), the
 * parser of everything a network client sends: the handshake, options
 * (EXPORT_NAME, GO/INFO, LIST, STARTTLS, STRUCTURED_REPLY, anything else) and
 * transmission requests.  No socket, no thread: the input is fed in pieces as
 * a client would send it, requests complete either inside start() or later
 * (some with errors), and a STARTTLS is "handshaken" at once.
 *
 * Beyond what ASan sees: every request handed to the I/O side must lie inside
 * the export (offset + length <= size, never wrapping) and have a buffer of
 * its length for reads and writes; writes never reach a read-only export;
 * the output is drained so that it never grows without bound.
 *
 * Input: one byte of flags (see enum below), then the client's byte stream.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../../lib/export/nbd_proto.h"
#include "../../lib/export/nbd_wire.h"
#include "fuzz_common.h"
#include "siov_internal/util.h"

enum {
	F_TLS = 1 << 0,
	F_RO = 1 << 1,
	F_TRIM = 1 << 2,
	F_ZERO = 1 << 3,
	F_INLINE = 1 << 4, /* complete inside start() */
	F_PIECES = 1 << 5, /* feed in small pieces */
};

#define EXPORT_SIZE (1ull << 20)
#define MAX_QUEUED  256

static struct siov_nbd_req *queued[MAX_QUEUED];
static unsigned nqueued;
static struct siov_nbd_export_info info;
static unsigned flags;

static void check(const struct siov_nbd_req *r)
{
	bool data = r->type == NBD_CMD_READ || r->type == NBD_CMD_WRITE;

	if (r->type != NBD_CMD_FLUSH && (r->offset > info.size || r->len > info.size - r->offset))
		abort(); /* outside the export */
	if (data && (!r->buf || r->len == 0 || r->len > SIOV_NBD_MAX_PAYLOAD))
		abort();
	if (info.readonly && r->type != NBD_CMD_READ && r->type != NBD_CMD_FLUSH)
		abort(); /* a write on a read-only export */
}

static int fz_start(void *arg, struct siov_nbd_req *r)
{
	(void)arg;
	check(r);
	if (r->type == NBD_CMD_READ)
		memset(r->buf, 0xa5, r->len);
	if ((r->cookie & 15) == 15)
		return -ENOSPC;
	if ((flags & F_INLINE) || nqueued == MAX_QUEUED) {
		siov_nbd_req_done(r, (r->cookie & 7) == 7 ? -EIO : 0);
		return 0;
	}
	queued[nqueued++] = r;
	return 0;
}

static const struct siov_nbd_conn_ops ops = {.start = fz_start};

static void complete_all(void)
{
	unsigned i;

	for (i = 0; i < nqueued; i++)
		siov_nbd_req_done(queued[i], (queued[i]->cookie & 7) == 6 ? -EROFS : 0);
	nqueued = 0;
}

static void drain(struct siov_nbd_conn *c)
{
	size_t len;

	siov_nbd_conn_output(c, &len);
	siov_nbd_conn_sent(c, len);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct siov_nbd_conn *c;
	size_t pos = 1;
	unsigned stuck = 0;

	if (size < 1)
		return 0;
	flags = data[0];
	info = (struct siov_nbd_export_info){.name = "vd0",
					     .size = EXPORT_SIZE,
					     .block_pref = 4096,
					     .readonly = flags & F_RO,
					     .can_trim = flags & F_TRIM,
					     .can_zero = flags & F_ZERO,
					     .tls = flags & F_TLS};
	c = siov_nbd_conn_new(&info, &ops, NULL);
	if (!c)
		return 0;
	while (pos < size && stuck < 3) {
		size_t n = size - pos;
		ssize_t used;

		if (flags & F_PIECES)
			n = SIOV_MIN(n, (size_t)1 + data[pos] % 37);
		drain(c);
		if (siov_nbd_conn_tls_pending(c))
			siov_nbd_conn_tls_done(c);
		used = siov_nbd_conn_input(c, data + pos, n);
		if (used < 0)
			break;
		pos += (size_t)used;
		if (used == 0) {
			/* Back-pressure or the end: let the "I/O" finish and the client read. */
			complete_all();
			drain(c);
			if (siov_nbd_conn_finished(c))
				break;
			stuck++;
		} else {
			stuck = 0;
		}
	}
	complete_all();
	drain(c);
	siov_nbd_conn_free(c);
	return 0;
}
