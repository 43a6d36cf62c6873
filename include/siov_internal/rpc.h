/*
 * The management API (the seeds' mAPI): JSON-RPC 2.0 over a Unix stream socket,
 * one JSON object per request, one per response (each followed by '\n').
 * Runs on the control thread's loop.  Mutating methods journal the new
 * configuration to the state dir before they answer.
 */
#ifndef SIOV_INTERNAL_RPC_H
#define SIOV_INTERNAL_RPC_H

#include <stddef.h>
#include <stdint.h>

struct siov_loop;
struct siov_vdcm;
struct siov_rpc_server;

/* JSON-RPC 2.0 error codes. */
#define SIOV_RPC_PARSE_ERROR	  -32700
#define SIOV_RPC_INVALID_REQUEST  -32600
#define SIOV_RPC_METHOD_NOT_FOUND -32601
#define SIOV_RPC_INVALID_PARAMS	  -32602
#define SIOV_RPC_INTERNAL_ERROR	  -32603

struct siov_rpc_server_opts {
	struct siov_loop *loop;
	struct siov_vdcm *vdcm;
	const char *socket_path;
	/* Recovered and restored into vdcm at create, journaled after: NULL: nothing is persisted.
	 */
	const char *state_dir;
	uint64_t compact_records; /* 0: the default (see siov_state_opts) */
	/* > 0: members of this group may manage siovd too (socket 0660, this group). */
	int socket_gid;
};

int siov_rpc_server_create(const struct siov_rpc_server_opts *opts, struct siov_rpc_server **out);
/* Closes connections and removes the socket file. */
void siov_rpc_server_destroy(struct siov_rpc_server *srv);

struct siov_state_stats;
/* Open connections, and the journal's counters (-ENOENT: nothing is persisted). */
unsigned siov_rpc_connections(const struct siov_rpc_server *srv);
int siov_rpc_state_stats(struct siov_rpc_server *srv, struct siov_state_stats *out);

/*
 * Handles one request text and returns the response text (malloc'd, caller
 * frees; NULL for a notification).  The transport and the fuzzers use this.
 */
char *siov_rpc_handle(struct siov_rpc_server *srv, const char *req, size_t len);

#endif
