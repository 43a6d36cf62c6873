/*
 * The NBD server's protocol engine (see nbd_proto.h): fixed newstyle
 * negotiation with NBD_OPT_GO/INFO (export and block-size information),
 * STARTTLS, LIST, structured replies, and the transmission phase (read,
 * write, flush, trim, write-zeroes, disconnect).  Input arrives in arbitrary
 * pieces; a small state machine collects each fixed-size header and then
 * its payload, whose size was checked first.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "nbd_proto.h"
#include "nbd_wire.h"

#define MAX_SKIP_OPTION (1u << 20)  /* larger unknown options end the connection */
#define MAX_BUFFERED	(64u << 20) /* bytes in flight + queued output before reading stops */

enum state {
	ST_CFLAGS,   /* 4 bytes of client flags */
	ST_OPT_HDR,  /* IHAVEOPT, option, length */
	ST_OPT_DATA, /* option data into opt */
	ST_OPT_SKIP, /* an option too large to read: skipped, then refused */
	ST_TLS_WAIT, /* STARTTLS acknowledged: no input until the handshake is done */
	ST_REQ_HDR,  /* 28-byte request */
	ST_REQ_DATA, /* write payload into req->buf */
	ST_REQ_SKIP, /* payload of a refused write: skipped, then the error */
	ST_DONE,     /* no more input */
};

struct siov_nbd_conn {
	const struct siov_nbd_export_info *exp;
	const struct siov_nbd_conn_ops *ops;
	void *arg;
	enum state st;
	uint8_t hdr[28];
	size_t have, need; /* bytes of the current header or payload */
	uint32_t opt, optlen;
	uint8_t opt_data[SIOV_NBD_MAX_OPTION];
	struct siov_nbd_req *req; /* the request whose payload is being read */
	uint32_t skip_err;	  /* the error to send after a skipped payload */
	uint64_t skip_cookie;
	bool no_zeroes, structured, tls_done, transmitting;
	unsigned inflight;
	uint64_t inflight_bytes;
	uint8_t *out;
	size_t out_len, out_off, out_cap;
	bool out_failed; /* the output could not grow: close */
};

/* ---- Output ---- */

static void out_reserve(struct siov_nbd_conn *c, size_t n)
{
	size_t cap;
	uint8_t *p;

	if (c->out_off && c->out_off == c->out_len)
		c->out_off = c->out_len = 0;
	if (c->out_len + n <= c->out_cap)
		return;
	if (c->out_off) {
		memmove(c->out, c->out + c->out_off, c->out_len - c->out_off);
		c->out_len -= c->out_off;
		c->out_off = 0;
		if (c->out_len + n <= c->out_cap)
			return;
	}
	cap = c->out_cap ? c->out_cap : 4096;
	while (cap < c->out_len + n)
		cap *= 2;
	p = realloc(c->out, cap);
	if (!p) {
		c->out_failed = true;
		return;
	}
	c->out = p;
	c->out_cap = cap;
}

static void put(struct siov_nbd_conn *c, const void *p, size_t n)
{
	out_reserve(c, n);
	if (c->out_failed)
		return;
	memcpy(c->out + c->out_len, p, n);
	c->out_len += n;
}

static void put16(struct siov_nbd_conn *c, uint16_t v)
{
	uint8_t b[2] = {(uint8_t)(v >> 8), (uint8_t)v};

	put(c, b, 2);
}

static void put32(struct siov_nbd_conn *c, uint32_t v)
{
	put16(c, (uint16_t)(v >> 16));
	put16(c, (uint16_t)v);
}

static void put64(struct siov_nbd_conn *c, uint64_t v)
{
	put32(c, (uint32_t)(v >> 32));
	put32(c, (uint32_t)v);
}

static uint16_t get16(const uint8_t *p)
{
	return (uint16_t)(p[0] << 8 | p[1]);
}

static uint32_t get32(const uint8_t *p)
{
	return (uint32_t)get16(p) << 16 | get16(p + 2);
}

static uint64_t get64(const uint8_t *p)
{
	return (uint64_t)get32(p) << 32 | get32(p + 4);
}

/* ---- Negotiation ---- */

static void opt_reply(struct siov_nbd_conn *c, uint32_t type, const void *data, uint32_t len)
{
	put64(c, NBD_REP_MAGIC);
	put32(c, c->opt);
	put32(c, type);
	put32(c, len);
	if (len)
		put(c, data, len);
}

static uint16_t transmission_flags(const struct siov_nbd_export_info *e)
{
	uint16_t f = NBD_FLAG_HAS_FLAGS | NBD_FLAG_SEND_FLUSH;

	if (e->readonly)
		f |= NBD_FLAG_READ_ONLY;
	if (e->can_trim && !e->readonly)
		f |= NBD_FLAG_SEND_TRIM;
	if (e->can_zero && !e->readonly)
		f |= NBD_FLAG_SEND_WRITE_ZEROES;
	return f;
}

/* "" names the default export, which is the only one. */
static bool name_is_ours(const struct siov_nbd_conn *c, const uint8_t *name, uint32_t len)
{
	return len == 0 || (len == strlen(c->exp->name) && memcmp(name, c->exp->name, len) == 0);
}

static void start_transmission(struct siov_nbd_conn *c)
{
	c->transmitting = true;
	c->st = ST_REQ_HDR;
	c->need = 28;
}

static int opt_export_name(struct siov_nbd_conn *c)
{
	static const uint8_t zeroes[124];

	/* The protocol has no error reply for this option: an unknown name closes. */
	if (!name_is_ours(c, c->opt_data, c->optlen))
		return -ENOENT;
	put64(c, c->exp->size);
	put16(c, transmission_flags(c->exp));
	if (!c->no_zeroes)
		put(c, zeroes, sizeof(zeroes));
	start_transmission(c);
	return 0;
}

static void info_export(struct siov_nbd_conn *c)
{
	uint8_t b[12];
	uint16_t f = transmission_flags(c->exp);
	uint64_t sz = c->exp->size;
	int i;

	b[0] = 0;
	b[1] = NBD_INFO_EXPORT;
	for (i = 0; i < 8; i++)
		b[2 + i] = (uint8_t)(sz >> (56 - 8 * i));
	b[10] = (uint8_t)(f >> 8);
	b[11] = (uint8_t)f;
	opt_reply(c, NBD_REP_INFO, b, sizeof(b));
}

static void info_block_size(struct siov_nbd_conn *c)
{
	uint32_t v[3] = {1, c->exp->block_pref ? c->exp->block_pref : 4096, SIOV_NBD_MAX_PAYLOAD};
	uint8_t b[14];
	int i, j;

	b[0] = 0;
	b[1] = NBD_INFO_BLOCK_SIZE;
	for (i = 0; i < 3; i++)
		for (j = 0; j < 4; j++)
			b[2 + 4 * i + j] = (uint8_t)(v[i] >> (24 - 8 * j));
	opt_reply(c, NBD_REP_INFO, b, sizeof(b));
}

/* NBD_OPT_INFO and NBD_OPT_GO: u32 name length, name, u16 count, count u16 info types. */
static int opt_info_go(struct siov_nbd_conn *c)
{
	const uint8_t *d = c->opt_data;
	uint32_t namelen;
	uint16_t n;

	if (c->optlen < 6)
		goto invalid;
	namelen = get32(d);
	if (namelen > c->optlen - 6)
		goto invalid;
	n = get16(d + 4 + namelen);
	if ((uint32_t)n * 2 != c->optlen - 6 - namelen)
		goto invalid;
	if (!name_is_ours(c, d + 4, namelen)) {
		opt_reply(c, NBD_REP_ERR_UNKNOWN, NULL, 0);
		return 0;
	}
	/* Export and block-size information whatever was asked: both are allowed. */
	info_export(c);
	info_block_size(c);
	opt_reply(c, NBD_REP_ACK, NULL, 0);
	if (c->opt == NBD_OPT_GO)
		start_transmission(c);
	return 0;

invalid:
	opt_reply(c, NBD_REP_ERR_INVALID, NULL, 0);
	return 0;
}

static void opt_list(struct siov_nbd_conn *c)
{
	uint32_t len = (uint32_t)strlen(c->exp->name);

	if (c->optlen) {
		opt_reply(c, NBD_REP_ERR_INVALID, NULL, 0);
		return;
	}
	put64(c, NBD_REP_MAGIC);
	put32(c, c->opt);
	put32(c, NBD_REP_SERVER);
	put32(c, 4 + len);
	put32(c, len);
	put(c, c->exp->name, len);
	opt_reply(c, NBD_REP_ACK, NULL, 0);
}

static void opt_starttls(struct siov_nbd_conn *c)
{
	if (c->optlen)
		opt_reply(c, NBD_REP_ERR_INVALID, NULL, 0);
	else if (!c->exp->tls)
		opt_reply(c, NBD_REP_ERR_POLICY, NULL, 0);
	else if (c->tls_done)
		opt_reply(c, NBD_REP_ERR_INVALID, NULL, 0);
	else {
		opt_reply(c, NBD_REP_ACK, NULL, 0);
		c->st = ST_TLS_WAIT;
	}
}

/* Runs one complete option; -errno closes the connection. */
static int opt_run(struct siov_nbd_conn *c)
{
	c->st = ST_OPT_HDR;
	c->need = 16;
	if (c->exp->tls && !c->tls_done && c->opt != NBD_OPT_STARTTLS && c->opt != NBD_OPT_ABORT) {
		/* Nothing but STARTTLS before TLS; EXPORT_NAME has no way to say so. */
		if (c->opt == NBD_OPT_EXPORT_NAME)
			return -EACCES;
		opt_reply(c, NBD_REP_ERR_TLS_REQD, NULL, 0);
		return 0;
	}
	switch (c->opt) {
	case NBD_OPT_EXPORT_NAME:
		return opt_export_name(c);
	case NBD_OPT_ABORT:
		opt_reply(c, NBD_REP_ACK, NULL, 0);
		c->st = ST_DONE;
		return 0;
	case NBD_OPT_LIST:
		opt_list(c);
		return 0;
	case NBD_OPT_STARTTLS:
		opt_starttls(c);
		return 0;
	case NBD_OPT_INFO:
	case NBD_OPT_GO:
		return opt_info_go(c);
	case NBD_OPT_STRUCTURED_REPLY:
		if (c->optlen) {
			opt_reply(c, NBD_REP_ERR_INVALID, NULL, 0);
			return 0;
		}
		c->structured = true;
		opt_reply(c, NBD_REP_ACK, NULL, 0);
		return 0;
	default:
		opt_reply(c, NBD_REP_ERR_UNSUP, NULL, 0);
		return 0;
	}
}

static int opt_header(struct siov_nbd_conn *c)
{
	if (get64(c->hdr) != NBD_IHAVEOPT)
		return -EPROTO;
	c->opt = get32(c->hdr + 8);
	c->optlen = get32(c->hdr + 12);
	if (c->optlen > MAX_SKIP_OPTION)
		return -EMSGSIZE;
	c->have = 0;
	c->need = c->optlen;
	c->st = c->optlen > SIOV_NBD_MAX_OPTION ? ST_OPT_SKIP : ST_OPT_DATA;
	return c->optlen == 0 ? opt_run(c) : 0;
}

/* ---- Transmission ---- */

static uint32_t wire_errno(int err)
{
	switch (-err) {
	case 0:
		return 0;
	case EPERM:
	case EROFS:
	case EACCES:
		return NBD_EPERM;
	case ENOSPC:
		return NBD_ENOSPC;
	case EINVAL:
		return NBD_EINVAL;
	case ENOMEM:
		return NBD_ENOMEM;
	case EOVERFLOW:
		return NBD_EOVERFLOW;
	case EOPNOTSUPP:
		return NBD_ENOTSUP;
	case ESHUTDOWN:
		return NBD_ESHUTDOWN;
	default:
		return NBD_EIO;
	}
}

static void reply(struct siov_nbd_conn *c, uint64_t cookie, uint16_t type, uint32_t err,
		  const struct siov_nbd_req *r)
{
	bool data = r && type == NBD_CMD_READ && !err;

	if (!c->structured) {
		put32(c, NBD_SIMPLE_MAGIC);
		put32(c, err);
		put64(c, cookie);
		if (data)
			put(c, r->buf, r->len);
		return;
	}
	put32(c, NBD_STRUCT_MAGIC);
	put16(c, NBD_REPLY_FLAG_DONE);
	if (err) {
		put16(c, NBD_REPLY_TYPE_ERROR);
		put64(c, cookie);
		put32(c, 6);
		put32(c, err);
		put16(c, 0); /* no message */
	} else if (data) {
		put16(c, NBD_REPLY_TYPE_OFFSET_DATA);
		put64(c, cookie);
		put32(c, 8 + r->len);
		put64(c, r->offset);
		put(c, r->buf, r->len);
	} else {
		put16(c, NBD_REPLY_TYPE_NONE);
		put64(c, cookie);
		put32(c, 0);
	}
}

/* The error a request gets before any I/O, or 0 if it may run. */
static uint32_t req_check(const struct siov_nbd_conn *c, uint16_t type, uint16_t flags,
			  uint64_t off, uint32_t len)
{
	const struct siov_nbd_export_info *e = c->exp;
	bool writes = type == NBD_CMD_WRITE || type == NBD_CMD_TRIM || type == NBD_CMD_WRITE_ZEROES;
	uint16_t allowed = type == NBD_CMD_WRITE_ZEROES ? NBD_CMD_FLAG_NO_HOLE : 0;

	if (type != NBD_CMD_READ && type != NBD_CMD_FLUSH && !writes)
		return NBD_EINVAL;
	if (flags & ~allowed)
		return NBD_EINVAL;
	if (writes && e->readonly)
		return NBD_EPERM;
	if ((type == NBD_CMD_TRIM && !e->can_trim) ||
	    (type == NBD_CMD_WRITE_ZEROES && !e->can_zero))
		return NBD_EINVAL;
	if (type == NBD_CMD_FLUSH)
		return 0;
	if (len == 0)
		return NBD_EINVAL;
	if (type == NBD_CMD_READ && len > SIOV_NBD_MAX_PAYLOAD)
		return NBD_EOVERFLOW;
	/* Written so that off + len is never computed: it could wrap. */
	if (off > e->size || len > e->size - off)
		return type == NBD_CMD_READ ? NBD_EINVAL : NBD_ENOSPC;
	return 0;
}

static void req_start(struct siov_nbd_conn *c, struct siov_nbd_req *r)
{
	int rc;

	c->inflight++;
	c->inflight_bytes += r->len;
	rc = c->ops->start(c->arg, r);
	if (rc < 0)
		siov_nbd_req_done(r, rc);
}

static struct siov_nbd_req *req_new(struct siov_nbd_conn *c, uint16_t type, uint16_t flags,
				    uint64_t cookie, uint64_t off, uint32_t len)
{
	struct siov_nbd_req *r = calloc(1, sizeof(*r));

	if (!r)
		return NULL;
	r->conn = c;
	r->type = type;
	r->flags = flags;
	r->cookie = cookie;
	r->offset = off;
	r->len = len;
	if (type == NBD_CMD_READ || type == NBD_CMD_WRITE) {
		r->buf = malloc(len);
		if (!r->buf) {
			free(r);
			return NULL;
		}
	}
	return r;
}

/* A refused request: a write's payload is skipped first, then the error goes out. */
static void req_refuse(struct siov_nbd_conn *c, uint16_t type, uint64_t cookie, uint32_t len,
		       uint32_t err)
{
	c->have = 0;
	if (type == NBD_CMD_WRITE && len) {
		c->st = ST_REQ_SKIP;
		c->need = len;
		c->skip_err = err;
		c->skip_cookie = cookie;
		return;
	}
	reply(c, cookie, type, err, NULL);
	c->need = 28;
}

static int req_header(struct siov_nbd_conn *c)
{
	uint16_t flags = get16(c->hdr + 4), type = get16(c->hdr + 6);
	uint64_t cookie = get64(c->hdr + 8), off = get64(c->hdr + 16);
	uint32_t len = get32(c->hdr + 24), err;
	struct siov_nbd_req *r;

	if (get32(c->hdr) != NBD_REQUEST_MAGIC)
		return -EPROTO;
	if (type == NBD_CMD_DISC) {
		c->st = ST_DONE;
		return 0;
	}
	/* A payload this large cannot be skipped in reasonable time: the protocol lets us close. */
	if (type == NBD_CMD_WRITE && len > SIOV_NBD_MAX_PAYLOAD)
		return -EMSGSIZE;
	err = req_check(c, type, flags, off, len);
	r = err ? NULL : req_new(c, type, flags, cookie, off, len);
	if (!err && !r)
		err = NBD_ENOMEM;
	if (err) {
		req_refuse(c, type, cookie, len, err);
		return 0;
	}
	c->have = 0;
	if (type == NBD_CMD_WRITE) {
		c->req = r;
		c->st = ST_REQ_DATA;
		c->need = len;
		return 0;
	}
	c->need = 28;
	req_start(c, r);
	return 0;
}

/* ---- Input ---- */

/* Where the bytes of the current state go: NULL means they are skipped. */
static uint8_t *input_dest(struct siov_nbd_conn *c)
{
	switch (c->st) {
	case ST_OPT_DATA:
		return c->opt_data;
	case ST_REQ_DATA:
		return c->req->buf;
	case ST_OPT_SKIP:
	case ST_REQ_SKIP:
		return NULL;
	default:
		return c->hdr;
	}
}

/* The current unit is complete: act on it. */
static int input_unit(struct siov_nbd_conn *c)
{
	struct siov_nbd_req *r;

	c->have = 0;
	switch (c->st) {
	case ST_CFLAGS: {
		uint32_t f = get32(c->hdr);

		/* Unknown client flags: the protocol says to close. */
		if (f & ~(uint32_t)(NBD_FLAG_C_FIXED_NEWSTYLE | NBD_FLAG_C_NO_ZEROES))
			return -EPROTO;
		c->no_zeroes = f & NBD_FLAG_C_NO_ZEROES;
		c->st = ST_OPT_HDR;
		c->need = 16;
		return 0;
	}
	case ST_OPT_HDR:
		return opt_header(c);
	case ST_OPT_DATA:
		return opt_run(c);
	case ST_OPT_SKIP:
		c->st = ST_OPT_HDR;
		c->need = 16;
		opt_reply(c, NBD_REP_ERR_TOO_BIG, NULL, 0);
		return 0;
	case ST_REQ_HDR:
		return req_header(c);
	case ST_REQ_DATA:
		r = c->req;
		c->req = NULL;
		c->st = ST_REQ_HDR;
		c->need = 28;
		req_start(c, r);
		return 0;
	case ST_REQ_SKIP:
		reply(c, c->skip_cookie, NBD_CMD_WRITE, c->skip_err, NULL);
		c->st = ST_REQ_HDR;
		c->need = 28;
		return 0;
	default:
		return -EPROTO;
	}
}

bool siov_nbd_conn_wants_input(const struct siov_nbd_conn *c)
{
	if (c->st == ST_DONE || c->st == ST_TLS_WAIT || c->out_failed)
		return false;
	/* Back-pressure: a client that sends requests and reads no replies stops being read. */
	if (c->st == ST_REQ_HDR && c->have == 0 &&
	    (c->inflight >= SIOV_NBD_MAX_INFLIGHT ||
	     c->inflight_bytes + (c->out_len - c->out_off) > MAX_BUFFERED))
		return false;
	return true;
}

ssize_t siov_nbd_conn_input(struct siov_nbd_conn *c, const void *data, size_t len)
{
	const uint8_t *p = data;
	size_t used = 0;
	int rc;

	if (c->st == ST_TLS_WAIT && len)
		return -EPROTO; /* the client must wait for the TLS handshake */
	while (used < len && siov_nbd_conn_wants_input(c)) {
		size_t n = len - used < c->need - c->have ? len - used : c->need - c->have;
		uint8_t *dst = input_dest(c);

		if (dst)
			memcpy(dst + c->have, p + used, n);
		c->have += n;
		used += n;
		if (c->have < c->need)
			break;
		rc = input_unit(c);
		if (rc < 0) {
			c->st = ST_DONE;
			return rc;
		}
		if (c->st == ST_TLS_WAIT && used < len)
			return -EPROTO; /* bytes after STARTTLS, before the handshake */
	}
	if (c->out_failed)
		return -ENOMEM;
	return (ssize_t)used;
}

/* ---- The rest of the interface ---- */

struct siov_nbd_conn *siov_nbd_conn_new(const struct siov_nbd_export_info *exp,
					const struct siov_nbd_conn_ops *ops, void *arg)
{
	struct siov_nbd_conn *c = calloc(1, sizeof(*c));

	if (!c)
		return NULL;
	c->exp = exp;
	c->ops = ops;
	c->arg = arg;
	c->st = ST_CFLAGS;
	c->need = 4;
	put64(c, NBD_MAGIC);
	put64(c, NBD_IHAVEOPT);
	put16(c, NBD_FLAG_FIXED_NEWSTYLE | NBD_FLAG_NO_ZEROES);
	if (c->out_failed) {
		siov_nbd_conn_free(c);
		return NULL;
	}
	return c;
}

void siov_nbd_conn_free(struct siov_nbd_conn *c)
{
	if (!c)
		return;
	if (c->req) {
		free(c->req->buf);
		free(c->req);
	}
	free(c->out);
	free(c);
}

void siov_nbd_req_done(struct siov_nbd_req *r, int err)
{
	struct siov_nbd_conn *c = r->conn;

	reply(c, r->cookie, r->type, wire_errno(err), r);
	c->inflight--;
	c->inflight_bytes -= r->len;
	free(r->buf);
	free(r);
}

bool siov_nbd_conn_tls_pending(const struct siov_nbd_conn *c)
{
	return c->st == ST_TLS_WAIT;
}

void siov_nbd_conn_tls_done(struct siov_nbd_conn *c)
{
	c->tls_done = true;
	c->st = ST_OPT_HDR;
	c->need = 16;
	c->have = 0;
}

bool siov_nbd_conn_finished(const struct siov_nbd_conn *c)
{
	return c->st == ST_DONE;
}

bool siov_nbd_conn_transmitting(const struct siov_nbd_conn *c)
{
	return c->transmitting;
}

unsigned siov_nbd_conn_inflight(const struct siov_nbd_conn *c)
{
	return c->inflight;
}

const void *siov_nbd_conn_output(const struct siov_nbd_conn *c, size_t *len)
{
	*len = c->out_len - c->out_off;
	return c->out + c->out_off;
}

void siov_nbd_conn_sent(struct siov_nbd_conn *c, size_t n)
{
	c->out_off += n;
	if (c->out_off >= c->out_len)
		c->out_off = c->out_len = 0;
}
