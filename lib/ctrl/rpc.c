/*
 * The JSON-RPC 2.0 server: siovd's management socket.
 *
 * Two halves.  The first turns one parsed request (or a batch) into one
 * response, validating the envelope and dispatching to the method table in
 * rpc_methods.c; siov_rpc_handle() exposes it without any transport, for unit
 * tests and fuzzers.  The second is the Unix stream socket on the control
 * thread's loop: every connection has its own incremental json-c tokener, so a
 * peer may send several requests back to back, or one request in many pieces,
 * and gets one '\n'-terminated response per request, in order.
 *
 * Every byte from a peer is hostile: requests are capped in size, a parse
 * error closes the connection (the stream cannot be resynchronised), and a peer
 * that does not read its responses is first no longer read from, then dropped,
 * so that it can never make siovd's memory grow without bound.
 *
 * A server created with socket_path == NULL has no socket at all and only
 * serves siov_rpc_handle().
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include "siov_internal/log.h"
#include "siov_internal/loop.h"
#include "rpc_internal.h"

/* How deep a request may nest.  Ours never need more than 3 levels. */
#define RPC_JSON_DEPTH 32
#define RPC_READ_CHUNK (64u << 10)

struct siov_rpc_conn {
	struct siov_rpc_server *srv;
	struct siov_rpc_conn *prev, *next;
	int fd;
	struct siov_watch *watch;
	uint32_t events; /* what the watch currently waits for */
	struct json_tokener *tok;
	size_t req_bytes; /* bytes of the request being parsed */
	char *out;	  /* unsent responses: out[out_off..out_len) */
	size_t out_off, out_len, out_cap;
	bool closing; /* send what is buffered, read nothing more, then close */
	bool drop;    /* close now */
	/* Answers waiting for the journal, in order: pend_head first. */
	struct rpc_pending *pend_head, **pend_tail;
	unsigned npending;
	/* Answered a change, so its next change is expected (siov_state_expect): 0 if not. */
	uint64_t expect;
};

/* An answer held until the journal is durable up to seq. */
struct rpc_pending {
	struct rpc_pending *next;
	struct json_object *resp;
	uint64_t seq;
	struct json_object **changes; /* the parts of resp that changed something */
	size_t nchanges;
	bool change;			 /* the request changed something */
	struct siov_state_reply *direct; /* the writer sends resp (siov_state_reply) */
};

/* Stop reading a connection that has this many answers waiting for the journal. */
#define RPC_MAX_PENDING 4096

/* ---- Requests to responses ---- */

static struct json_object *rpc_response(struct json_object *id)
{
	struct json_object *resp = json_object_new_object();

	if (!resp)
		return NULL;
	json_object_object_add(resp, "jsonrpc", json_object_new_string("2.0"));
	json_object_object_add(resp, "id", json_object_get(id));
	return resp;
}

static struct json_object *rpc_error(struct json_object *id, int code, const char *msg)
{
	struct json_object *resp = rpc_response(id);
	struct json_object *e = json_object_new_object();

	if (!resp || !e) {
		json_object_put(resp);
		json_object_put(e);
		return NULL;
	}
	json_object_object_add(e, "code", json_object_new_int(code));
	json_object_object_add(e, "message", json_object_new_string(msg));
	json_object_object_add(resp, "error", e);
	return resp;
}

/* JSON-RPC allows a string, a number or null as id; we refuse fractions. */
static bool rpc_id_valid(struct json_object *id)
{
	return !id || json_object_is_type(id, json_type_string) ||
	       json_object_is_type(id, json_type_int);
}

/* ---- Answers held for the journal ---- */

/* Remembers a response that changed something (to amend it if the journal fails). */
static void rpc_note_change(struct siov_rpc_server *srv, struct json_object *resp)
{
	if (srv->nchanges == srv->changes_cap) {
		size_t cap = srv->changes_cap ? srv->changes_cap * 2 : 8;
		struct json_object **p = realloc(srv->changes, cap * sizeof(*p));
		if (!p)
			return; /* the record is still written; only the amendment is lost */
		srv->changes = p;
		srv->changes_cap = cap;
	}
	srv->changes[srv->nchanges++] = json_object_get(resp);
}

/* The change is made and cannot be taken back: the answer says it is not saved. */
static void rpc_amend(struct json_object *resp, int code, const char *why)
{
	struct json_object *e = json_object_new_object();
	char msg[sizeof(((struct siov_err *)0)->msg) + 64];

	if (!e)
		return;
	snprintf(msg, sizeof(msg), "done, but the state could not be saved: %s", why);
	json_object_object_add(e, "code", json_object_new_int(code));
	json_object_object_add(e, "message", json_object_new_string(msg));
	json_object_object_del(resp, "result");
	json_object_object_add(resp, "error", e);
}

/* Hands the noted changes over to p (the answer they belong to). */
static void rpc_take_changes(struct siov_rpc_server *srv, struct rpc_pending *p)
{
	p->changes = srv->changes;
	p->nchanges = srv->nchanges;
	srv->changes = NULL;
	srv->nchanges = srv->changes_cap = 0;
}

/*
 * 1 if p's records are decided (durable, or failed: then its changes are
 * amended and the references dropped), 0 if they are still being written.
 */
static int rpc_settle(struct siov_rpc_server *srv, struct rpc_pending *p)
{
	struct siov_err err = {0};
	int rc = srv->state && p->seq ? siov_state_decided(srv->state, p->seq, &err) : 1;

	if (rc == 0 || (p->direct && siov_state_reply_sent(p->direct) == -EAGAIN))
		return 0;
	for (size_t i = 0; i < p->nchanges; i++) {
		if (rc < 0)
			rpc_amend(p->changes[i], rc, err.msg);
		json_object_put(p->changes[i]);
	}
	free(p->changes);
	p->changes = NULL;
	p->nchanges = 0;
	return 1;
}

static struct json_object *rpc_call(struct siov_rpc_server *srv, struct json_object *id,
				    const char *name, struct json_object *params)
{
	const struct siov_rpc_method *m = siov_rpc_method_find(name);
	struct json_object *result = NULL, *resp;
	struct siov_err err = {0};
	char msg[128];

	if (!m) {
		snprintf(msg, sizeof(msg), "unknown method '%.64s'", name);
		return rpc_error(id, SIOV_RPC_METHOD_NOT_FOUND, msg);
	}
	srv->changed = false;
	if (m->fn(srv, params, &result, &err) != 0) {
		if (err.code == 0)
			err.code = SIOV_RPC_INTERNAL_ERROR;
		return rpc_error(id, err.code, err.msg[0] ? err.msg : "failed");
	}
	resp = rpc_response(id);
	if (!resp) {
		json_object_put(result);
		return NULL;
	}
	json_object_object_add(resp, "result", result);
	if (srv->changed)
		rpc_note_change(srv, resp);
	return resp;
}

/* One request object: a response, or NULL for a notification (or no memory). */
static struct json_object *rpc_handle_one(struct siov_rpc_server *srv, struct json_object *req)
{
	struct json_object *id = NULL, *ver, *method, *params = NULL, *resp;
	bool has_id;

	if (!json_object_is_type(req, json_type_object))
		return rpc_error(NULL, SIOV_RPC_INVALID_REQUEST, "a request must be a JSON object");
	has_id = json_object_object_get_ex(req, "id", &id);
	if (!rpc_id_valid(id))
		return rpc_error(NULL, SIOV_RPC_INVALID_REQUEST,
				 "'id' must be a string, an integer or null");
	if (!json_object_object_get_ex(req, "jsonrpc", &ver) ||
	    !json_object_is_type(ver, json_type_string) ||
	    strcmp(json_object_get_string(ver), "2.0") != 0)
		return rpc_error(id, SIOV_RPC_INVALID_REQUEST, "'jsonrpc' must be \"2.0\"");
	if (!json_object_object_get_ex(req, "method", &method) ||
	    !json_object_is_type(method, json_type_string))
		return rpc_error(id, SIOV_RPC_INVALID_REQUEST, "'method' must be a string");
	json_object_object_get_ex(req, "params", &params);
	if (params && json_object_is_type(params, json_type_array))
		return rpc_error(id, SIOV_RPC_INVALID_PARAMS,
				 "params must be an object (parameters are passed by name)");
	if (params && !json_object_is_type(params, json_type_object))
		return rpc_error(id, SIOV_RPC_INVALID_REQUEST, "'params' must be an object");
	resp = rpc_call(srv, id, json_object_get_string(method), params);
	if (!has_id) {
		/* A notification: the work is done, the answer is not wanted. */
		json_object_put(resp);
		return NULL;
	}
	return resp;
}

static struct json_object *rpc_handle_batch(struct siov_rpc_server *srv, struct json_object *arr)
{
	size_t i, n = json_object_array_length(arr);
	struct json_object *out;

	if (n == 0)
		return rpc_error(NULL, SIOV_RPC_INVALID_REQUEST, "empty batch");
	out = json_object_new_array();
	if (!out)
		return NULL;
	/* The batch's records are written together: one fdatasync for all. */
	for (i = 0; i < n; i++) {
		struct json_object *resp = rpc_handle_one(srv, json_object_array_get_idx(arr, i));
		if (resp)
			json_object_array_add(out, resp);
	}
	if (json_object_array_length(out) == 0) {
		json_object_put(out);
		return NULL;
	}
	return out;
}

static struct json_object *rpc_handle_value(struct siov_rpc_server *srv, struct json_object *val)
{
	if (json_object_is_type(val, json_type_array))
		return rpc_handle_batch(srv, val);
	return rpc_handle_one(srv, val);
}

static struct json_tokener *rpc_tokener_new(void)
{
	struct json_tokener *tok = json_tokener_new_ex(RPC_JSON_DEPTH);

	/* Strict JSON, but stop after one value so that requests can follow. */
	if (tok)
		json_tokener_set_flags(tok,
				       JSON_TOKENER_STRICT | JSON_TOKENER_ALLOW_TRAILING_CHARS);
	return tok;
}

static struct json_object *rpc_parse_error(enum json_tokener_error jerr, size_t where)
{
	char msg[128];

	snprintf(msg, sizeof(msg), "parse error: %s at byte %zu", json_tokener_error_desc(jerr),
		 where);
	return rpc_error(NULL, SIOV_RPC_PARSE_ERROR, msg);
}

static const char *rpc_text(struct json_object *resp)
{
	return json_object_to_json_string_ext(resp, JSON_C_TO_STRING_PLAIN |
							JSON_C_TO_STRING_NOSLASHESCAPE);
}

/* The response as a malloc'd string; drops the reference to resp. */
static char *rpc_to_text_put(struct json_object *resp)
{
	const char *s = resp ? rpc_text(resp) : NULL;
	char *text = s ? strdup(s) : NULL;

	json_object_put(resp);
	return text;
}

static struct json_object *rpc_too_large(const struct siov_rpc_server *srv)
{
	char msg[96];

	snprintf(msg, sizeof(msg), "request larger than %zu bytes", srv->max_request);
	return rpc_error(NULL, SIOV_RPC_INVALID_REQUEST, msg);
}

static bool all_space(const char *s, size_t len)
{
	size_t i;

	for (i = 0; i < len; i++)
		if (s[i] != ' ' && s[i] != '\t' && s[i] != '\n' && s[i] != '\r')
			return false;
	return true;
}

/* Without a transport, the answer waits here for the journal. */
static struct json_object *rpc_wait_durable(struct siov_rpc_server *srv, struct json_object *resp)
{
	struct rpc_pending p = {.seq = srv->state ? siov_state_appended(srv->state) : 0};
	struct siov_err err = {0};

	rpc_take_changes(srv, &p);
	if (srv->state && p.seq)
		siov_state_wait(srv->state, p.seq, &err);
	rpc_settle(srv, &p);
	return resp;
}

char *siov_rpc_handle(struct siov_rpc_server *srv, const char *req, size_t len)
{
	struct json_tokener *tok;
	struct json_object *val, *resp;
	enum json_tokener_error jerr;
	size_t end;

	if (!srv)
		return NULL;
	if (!req || len == 0)
		return rpc_to_text_put(rpc_parse_error(json_tokener_continue, 0));
	if (len > srv->max_request)
		return rpc_to_text_put(rpc_too_large(srv));
	tok = rpc_tokener_new();
	if (!tok)
		return NULL;
	val = json_tokener_parse_ex(tok, req, (int)len);
	jerr = json_tokener_get_error(tok);
	end = json_tokener_get_parse_end(tok);
	if (jerr == json_tokener_continue) {
		/* The text is whole: a NUL tells the tokener so (it ends a bare number). */
		val = json_tokener_parse_ex(tok, "", 1);
		jerr = json_tokener_get_error(tok);
		end = len;
	}
	json_tokener_free(tok);
	if (jerr != json_tokener_success)
		resp = rpc_parse_error(jerr, end);
	else if (!all_space(req + end, len - end))
		resp = rpc_error(NULL, SIOV_RPC_PARSE_ERROR, "parse error: data after the request");
	else
		resp = rpc_handle_value(srv, val);
	json_object_put(val);
	return rpc_to_text_put(rpc_wait_durable(srv, resp));
}

/* ---- Connections ---- */

/* c's next change is no longer expected: it sent a request (came), or will send none. */
static void conn_unexpect(struct siov_rpc_conn *c, bool came)
{
	uint64_t tok = c->expect;

	if (tok) {
		c->expect = 0;
		siov_state_unexpect(c->srv->state, tok, came);
	}
}

static void conn_close(struct siov_rpc_conn *c)
{
	struct siov_rpc_server *srv = c->srv;

	conn_unexpect(c, false);
	siov_loop_del(c->watch);
	close(c->fd);
	json_tokener_free(c->tok);
	if (c->prev)
		c->prev->next = c->next;
	else
		srv->conns = c->next;
	if (c->next)
		c->next->prev = c->prev;
	srv->nconns--;
	while (c->pend_head) {
		struct rpc_pending *p = c->pend_head;
		c->pend_head = p->next;
		for (size_t i = 0; i < p->nchanges; i++)
			json_object_put(p->changes[i]);
		free(p->changes);
		json_object_put(p->resp);
		siov_state_reply_put(p->direct);
		free(p);
	}
	free(c->out);
	free(c);
}

static size_t conn_unsent(const struct siov_rpc_conn *c)
{
	return c->out_len - c->out_off;
}

/* Queues len bytes of text and, if nl, a '\n'.  A peer past the hard cap is dropped. */
static void conn_queue_raw(struct siov_rpc_conn *c, const char *text, size_t len, bool nl)
{
	size_t need;
	char *p;

	if (conn_unsent(c) + len + 1 > c->srv->out_hard_cap) {
		SIOV_WARN("rpc: dropping a client that does not read its responses");
		c->drop = true;
		return;
	}
	if (c->out_off) {
		memmove(c->out, c->out + c->out_off, conn_unsent(c));
		c->out_len -= c->out_off;
		c->out_off = 0;
	}
	need = c->out_len + len + nl;
	if (need > c->out_cap) {
		size_t cap = SIOV_MAX(need, c->out_cap * 2);
		p = realloc(c->out, cap);
		if (!p) {
			c->drop = true;
			return;
		}
		c->out = p;
		c->out_cap = cap;
	}
	memcpy(c->out + c->out_len, text, len);
	if (nl)
		c->out[c->out_len + len] = '\n';
	c->out_len = need;
}

static void conn_queue(struct siov_rpc_conn *c, const char *text)
{
	conn_queue_raw(c, text, strlen(text), true);
}

/* Queues resp's text (may be NULL: a notification), dropping the reference. */
static void conn_send(struct siov_rpc_conn *c, struct json_object *resp)
{
	const char *text = resp ? rpc_text(resp) : NULL;

	if (text)
		conn_queue(c, text);
	json_object_put(resp);
}

/* An answer the writer sent (all, part, or none: the journal failed and it was amended). */
static void conn_send_rest(struct siov_rpc_conn *c, struct rpc_pending *p)
{
	ssize_t sent = siov_state_reply_sent(p->direct);
	const char *text = sent > 0 ? rpc_text(p->resp) : NULL;
	size_t len = text ? strlen(text) : 0;

	siov_state_reply_put(p->direct);
	if (!text) {
		conn_send(c, p->resp);
		return;
	}
	if ((size_t)sent <= len) /* a full socket buffer: the rest, with its '\n' */
		conn_queue_raw(c, text + sent, len - (size_t)sent, true);
	json_object_put(p->resp);
}

/* Sends the held answers whose records are decided, in order. */
static void conn_release(struct siov_rpc_conn *c)
{
	struct rpc_pending *p;

	bool change = false;

	while ((p = c->pend_head) && rpc_settle(c->srv, p)) {
		c->pend_head = p->next;
		if (!c->pend_head)
			c->pend_tail = &c->pend_head;
		c->npending--;
		change |= p->change;
		if (p->direct)
			conn_send_rest(c, p);
		else
			conn_send(c, p->resp);
		free(p);
	}
	/* One call at a time: a client answered a change usually sends the next at once. */
	if (change && !c->pend_head && !c->closing && !c->expect)
		c->expect = siov_state_expect(c->srv->state);
}

/*
 * A change answered by itself on an idle connection (nothing unsent, nothing
 * held before it) is sent by the state's writer right after its sync.
 */
static void conn_direct(struct siov_rpc_conn *c, struct rpc_pending *p)
{
	struct siov_rpc_server *srv = c->srv;
	struct siov_err err = {0};
	const char *text;
	char *line;
	size_t len;

	if (!p->change || c->pend_head || conn_unsent(c) || !p->seq ||
	    siov_state_decided(srv->state, p->seq, &err) != 0)
		return;
	text = rpc_text(p->resp);
	len = text ? strlen(text) : 0;
	line = text ? malloc(len + 1) : NULL;
	if (!line)
		return;
	memcpy(line, text, len);
	line[len] = '\n';
	p->direct = siov_state_reply(srv->state, p->seq, c->fd, line, len + 1);
	free(line);
}

/*
 * Answers resp once the journal is durable up to every record appended so
 * far: at once when nothing is being written, otherwise when the writer says.
 */
static void conn_reply(struct siov_rpc_conn *c, struct json_object *resp)
{
	struct siov_rpc_server *srv = c->srv;
	struct rpc_pending *p = calloc(1, sizeof(*p));

	if (!p) {
		json_object_put(resp);
		c->drop = true;
		return;
	}
	p->resp = resp;
	p->seq = srv->state ? siov_state_appended(srv->state) : 0;
	rpc_take_changes(srv, p);
	p->change = p->nchanges > 0;
	conn_direct(c, p);
	*c->pend_tail = p;
	c->pend_tail = &p->next;
	c->npending++;
	conn_release(c);
}

static int conn_flush(struct siov_rpc_conn *c)
{
	while (conn_unsent(c)) {
		ssize_t n =
		    send(c->fd, c->out + c->out_off, conn_unsent(c), MSG_NOSIGNAL | MSG_DONTWAIT);
		if (n < 0)
			return errno == EAGAIN || errno == EINTR ? 0 : -errno;
		c->out_off += (size_t)n;
	}
	c->out_off = c->out_len = 0;
	return 0;
}

/* Hands every complete request in buf to the dispatcher, keeping partial ones. */
static void conn_feed(struct siov_rpc_conn *c, const char *buf, size_t len)
{
	struct siov_rpc_server *srv = c->srv;
	size_t off = 0;

	while (off < len && !c->closing && !c->drop) {
		struct json_object *val =
		    json_tokener_parse_ex(c->tok, buf + off, (int)(len - off));
		enum json_tokener_error jerr = json_tokener_get_error(c->tok);
		size_t used = json_tokener_get_parse_end(c->tok);

		off += used;
		c->req_bytes += used;
		if (c->req_bytes > srv->max_request) {
			json_object_put(val);
			conn_reply(c, rpc_too_large(srv));
			c->closing = true;
			conn_unexpect(c, false);
		} else if (jerr == json_tokener_success) {
			/*
			 * The request's records are synced together, after it: a
			 * batch's calls share one fdatasync.  val is NULL for a bare
			 * 'null', which is an invalid request.
			 */
			siov_state_hold(srv->state);
			conn_unexpect(c, true);
			conn_reply(c, rpc_handle_value(srv, val));
			siov_state_release(srv->state);
			json_object_put(val);
			json_tokener_reset(c->tok);
			c->req_bytes = 0;
		} else if (jerr != json_tokener_continue) {
			conn_reply(c, rpc_parse_error(jerr, c->req_bytes));
			c->closing = true;
			conn_unexpect(c, false);
		} else if (used == 0) {
			break;
		}
	}
}

static void conn_read(struct siov_rpc_conn *c)
{
	char buf[RPC_READ_CHUNK];
	ssize_t n = recv(c->fd, buf, sizeof(buf), MSG_DONTWAIT);

	if (n > 0)
		conn_feed(c, buf, (size_t)n);
	else if (n == 0) {
		c->closing = true; /* the peer is done sending; answer, then close */
		conn_unexpect(c, false);
	} else if (errno != EAGAIN && errno != EINTR)
		c->drop = true;
}

static void conn_update(struct siov_rpc_conn *c)
{
	uint32_t ev = 0;

	/* Back-pressure: a peer with a large backlog is not read from. */
	if (!c->closing && conn_unsent(c) < c->srv->out_soft_cap && c->npending < RPC_MAX_PENDING)
		ev |= EPOLLIN;
	if (conn_unsent(c))
		ev |= EPOLLOUT;
	if (ev != c->events && siov_loop_mod(c->watch, ev) == 0)
		c->events = ev;
}

/* Closes c if it is done, or waits for what it needs next. */
static void conn_settle(struct siov_rpc_conn *c)
{
	if (c->drop || (c->closing && !conn_unsent(c) && !c->pend_head))
		conn_close(c);
	else
		conn_update(c);
}

/* The journal made progress: send what was waiting for it. */
static void rpc_on_durable(void *arg)
{
	struct siov_rpc_server *srv = arg;
	struct siov_rpc_conn *c, *next;

	for (c = srv->conns; c; c = next) {
		next = c->next;
		if (!c->pend_head)
			continue;
		conn_release(c);
		if (!c->drop && conn_flush(c) < 0)
			c->drop = true;
		conn_settle(c);
	}
}

static void conn_cb(struct siov_watch *w, uint32_t events, void *arg)
{
	struct siov_rpc_conn *c = arg;

	if (events & EPOLLERR)
		c->drop = true;
	else if (events & EPOLLIN)
		conn_read(c);
	else if ((events & EPOLLHUP) && !(c->events & EPOLLIN))
		c->drop = true; /* gone while we were not reading: nobody to answer */
	if (!c->drop && conn_flush(c) < 0)
		c->drop = true;
	conn_settle(c);
}

static int conn_add(struct siov_rpc_server *srv, int fd)
{
	struct siov_rpc_conn *c = calloc(1, sizeof(*c));
	int rc = -ENOMEM;

	if (!c)
		goto err_alloc;
	c->srv = srv;
	c->fd = fd;
	c->tok = rpc_tokener_new();
	if (!c->tok)
		goto err_tok;
	c->events = EPOLLIN;
	c->pend_tail = &c->pend_head;
	rc = siov_loop_add(srv->loop, fd, c->events, conn_cb, c, &c->watch);
	if (rc < 0)
		goto err_watch;
	c->next = srv->conns;
	if (c->next)
		c->next->prev = c;
	srv->conns = c;
	srv->nconns++;
	return 0;

err_watch:
	json_tokener_free(c->tok);
err_tok:
	free(c);
err_alloc:
	return rc;
}

static void listen_cb(struct siov_watch *w, uint32_t events, void *arg)
{
	struct siov_rpc_server *srv = arg;
	int fd, rc;

	/* A bounded number per round, so that a flood cannot starve the loop. */
	for (int i = 0; i < 64; i++) {
		fd = accept4(srv->listen_fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
		if (fd < 0) {
			if (errno != EAGAIN && errno != EINTR && errno != ECONNABORTED)
				SIOV_WARN("rpc: accept: %s", strerror(errno));
			return;
		}
		if (srv->nconns >= SIOV_RPC_MAX_CONNS) {
			SIOV_WARN("rpc: refusing a connection: %u already open", srv->nconns);
			close(fd);
			continue;
		}
		rc = conn_add(srv, fd);
		if (rc < 0) {
			SIOV_WARN("rpc: cannot serve a connection: %s", strerror(-rc));
			close(fd);
		}
	}
}

/* ---- The listening socket ---- */

/*
 * A socket file left by a siovd that died is removed; one a live server
 * answers on is not ours to take, and neither is anything that is not a socket.
 */
static int clear_stale_socket(const char *path, const struct sockaddr_un *addr)
{
	struct stat st;
	int fd, rc;

	if (lstat(path, &st) < 0)
		return errno == ENOENT ? 0 : -errno;
	if (!S_ISSOCK(st.st_mode)) {
		SIOV_ERR("rpc: %s exists and is not a socket; not touching it", path);
		return -EEXIST;
	}
	fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return -errno;
	rc = connect(fd, (const struct sockaddr *)addr, sizeof(*addr));
	if (rc == 0) {
		close(fd);
		SIOV_ERR("rpc: %s is in use by a running server", path);
		return -EADDRINUSE;
	}
	rc = errno;
	close(fd);
	if (rc != ECONNREFUSED) {
		SIOV_ERR("rpc: cannot probe %s: %s", path, strerror(rc));
		return -rc;
	}
	SIOV_INFO("rpc: removing stale socket %s", path);
	if (unlink(path) < 0 && errno != ENOENT)
		return -errno;
	return 0;
}

static int rpc_bind(int fd, const char *path, const struct sockaddr_un *addr, int gid)
{
	mode_t old;
	int rc;

	/*
	 * The socket must never be reachable by others, not even for the
	 * instant between bind() and chmod(): hence the umask.
	 */
	old = umask(0177);
	rc = bind(fd, (const struct sockaddr *)addr, sizeof(*addr));
	umask(old);
	if (rc < 0)
		return -errno;
	/* Whoever can connect manages every device: the owner, or an operators' group. */
	if ((gid > 0 && lchown(path, (uid_t)-1, (gid_t)gid) < 0) ||
	    chmod(path, gid > 0 ? 0660 : 0600) < 0 || listen(fd, SOMAXCONN) < 0) {
		rc = -errno;
		unlink(path);
		return rc;
	}
	return 0;
}

static int rpc_listen(struct siov_rpc_server *srv, const char *path)
{
	struct sockaddr_un addr = {.sun_family = AF_UNIX};
	size_t len = strlen(path);
	int rc;

	if (len >= sizeof(addr.sun_path)) {
		SIOV_ERR("rpc: socket path is %zu bytes; Unix socket paths are limited to %zu "
			 "bytes on Linux: %s",
			 len, sizeof(addr.sun_path) - 1, path);
		return -ENAMETOOLONG;
	}
	if (len == 0)
		return -EINVAL;
	memcpy(addr.sun_path, path, len + 1);
	rc = clear_stale_socket(path, &addr);
	if (rc < 0)
		return rc;
	srv->listen_fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (srv->listen_fd < 0)
		return -errno;
	rc = rpc_bind(srv->listen_fd, path, &addr, srv->socket_gid);
	if (rc < 0) {
		SIOV_ERR("rpc: cannot listen on %s: %s", path, strerror(-rc));
		return rc;
	}
	srv->socket_path = strdup(path);
	if (!srv->socket_path) {
		unlink(path);
		return -ENOMEM;
	}
	return siov_loop_add(srv->loop, srv->listen_fd, EPOLLIN, listen_cb, srv,
			     &srv->listen_watch);
}

/* Recovers the state dir and recreates what it holds, before anyone can connect. */
static int rpc_open_state(struct siov_rpc_server *srv, const struct siov_rpc_server_opts *opts)
{
	struct siov_state_opts so = {.dir = opts->state_dir,
				     .loop = opts->loop,
				     .durable_cb = rpc_on_durable,
				     .cb_arg = srv,
				     .compact_records = opts->compact_records};
	struct siov_err err = {0};
	int rc = siov_state_open(&so, &srv->state, &err);

	if (rc < 0) {
		SIOV_ERR("state dir %s: %s", opts->state_dir, err.msg);
		return rc;
	}
	if (srv->vdcm) {
		rc = siov_state_restore(srv->state, srv->vdcm);
		if (rc > 0)
			SIOV_WARN("%d entr%s of the saved configuration could not be restored", rc,
				  rc == 1 ? "y" : "ies");
	}
	return 0;
}

/*
 * The VDCM changed a VDEV's configuration by itself (a move finished): journal
 * it, and wait until it is durable, since the VDCM removes the move's bitmap
 * only once the state no longer says "moving" (rare: once per move).
 */
static int vdcm_changed(void *arg, const char *vdev)
{
	struct siov_rpc_server *srv = arg;
	struct siov_err err = {0};
	int rc = siov_rpc_record_vdev(srv, vdev, &err);

	if (rc == 0 && srv->state)
		rc = siov_state_wait(srv->state, siov_state_appended(srv->state), &err);
	if (rc < 0)
		SIOV_ERR("rpc: cannot save the state: %s", err.msg);
	return rc;
}

int siov_rpc_server_create(const struct siov_rpc_server_opts *opts, struct siov_rpc_server **out)
{
	struct siov_rpc_server *srv;
	int rc;

	if (!opts || (opts->socket_path && !opts->loop))
		return -EINVAL;
	srv = calloc(1, sizeof(*srv));
	if (!srv)
		return -ENOMEM;
	srv->loop = opts->loop;
	srv->vdcm = opts->vdcm;
	srv->listen_fd = -1;
	srv->max_request = SIOV_RPC_MAX_REQUEST;
	srv->out_soft_cap = SIOV_RPC_OUT_SOFT_CAP;
	srv->out_hard_cap = SIOV_RPC_OUT_HARD_CAP;
	if (opts->state_dir && (rc = rpc_open_state(srv, opts)) < 0)
		goto err;
	if (opts->socket_path) {
		srv->socket_gid = opts->socket_gid;
		rc = rpc_listen(srv, opts->socket_path);
		if (rc < 0)
			goto err;
	}
	if (srv->vdcm)
		siov_vdcm_set_changed_cb(srv->vdcm, vdcm_changed, srv);
	*out = srv;
	return 0;

err:
	siov_rpc_server_destroy(srv);
	return rc;
}

void siov_rpc_server_destroy(struct siov_rpc_server *srv)
{
	if (!srv)
		return;
	if (srv->vdcm)
		siov_vdcm_set_changed_cb(srv->vdcm, NULL, NULL);
	while (srv->conns)
		conn_close(srv->conns);
	siov_loop_del(srv->listen_watch);
	if (srv->listen_fd >= 0)
		close(srv->listen_fd);
	/* Only a socket we bound ourselves: socket_path is set after bind(). */
	if (srv->socket_path)
		unlink(srv->socket_path);
	free(srv->socket_path);
	/* Every acknowledged change is durable already; this folds the journal away. */
	siov_state_close(srv->state);
	for (size_t i = 0; i < srv->nchanges; i++)
		json_object_put(srv->changes[i]);
	free(srv->changes);
	free(srv);
}

unsigned siov_rpc_connections(const struct siov_rpc_server *srv)
{
	return srv->nconns;
}

int siov_rpc_state_stats(struct siov_rpc_server *srv, struct siov_state_stats *out)
{
	if (!srv->state)
		return -ENOENT;
	siov_state_get_stats(srv->state, out);
	return 0;
}
