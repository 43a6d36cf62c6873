/*
 * The mirror backend: a backend whose members are other backends (file, ram,
 * nbd, ...), kept identical the way md raid1 keeps its disks.
 *
 * Writes go to every member that is in sync or resyncing and complete once
 * every member has answered; they succeed while at least one in-sync member
 * took them.  Reads go to one in-sync member and are retried on the next on
 * error.  A member that fails is marked failed with its reason and dropped,
 * unless it is the last in-sync member: that one stays, and the request fails
 * (the VDEV's error policy then decides).
 *
 * A write-intent bitmap (one bit per chunk, "the members may differ here")
 * lives in a file in the state dir together with each member's state and its
 * resync progress.  It is a shared file mapping, so it outlives the process at
 * once (SIGKILL, crash); it is synced to disk every second.  A member that
 * comes back resyncs only the chunks written meanwhile; a new member, or one
 * added with full, copies everything.  After an unclean stop the chunks
 * written just before are reconciled from one in-sync member.  The resync runs
 * on a thread of the mirror's own, rate-limited by a QoS token bucket, and a
 * resyncing member serves no read until it is in sync.
 *
 * Threading: open, close, add, remove and stats run on the control thread;
 * submit runs on engine threads (siov_backend_submit), concurrently.
 */
#ifndef SIOV_INTERNAL_MIRROR_H
#define SIOV_INTERNAL_MIRROR_H

#include <stdbool.h>
#include <stdint.h>

#include "siov_internal/backend.h"

/* Default resync rate (bytes/s), like md's speed_limit_max. */
#define SIOV_MIRROR_RESYNC_RATE_DEFAULT (200ull << 20)

enum siov_member_state {
	SIOV_MEMBER_IN_SYNC,
	SIOV_MEMBER_RESYNCING,
	SIOV_MEMBER_FAILED,
};

struct siov_mirror_member {
	struct siov_backend *bd;
	uint64_t offset; /* where the mirror's byte 0 is on this member */
};

struct siov_mirror_opts {
	/* NULL: the bitmap is kept in memory only (nothing survives a restart). */
	const char *bitmap_path;
	uint64_t resync_rate; /* bytes/s; 0 = SIOV_MIRROR_RESYNC_RATE_DEFAULT */
	/* The whole mirror's size: 0 = the smallest member's size minus its offset. */
	uint64_t size;
};

struct siov_member_info {
	const char *name;
	uint64_t offset;
	enum siov_member_state state;
	const char *reason;	/* why it failed ("" unless failed) */
	bool full;		/* resyncing everything, not just the bitmap */
	uint64_t resync_done;	/* bytes copied in this resync */
	uint64_t resync_total;	/* bytes this resync has to copy (grows with redirtied chunks) */
	uint64_t reads, writes; /* requests this member served */
	uint64_t read_errors, write_errors;
	uint64_t resync_bytes; /* bytes ever copied onto this member */
};

struct siov_mirror_info {
	uint64_t chunk_size;
	uint64_t chunks;
	uint64_t dirty_chunks; /* bits set in the write-intent bitmap */
	uint64_t resync_rate;
	uint64_t read_retries; /* reads served by another member after an error */
	unsigned nmembers;
	struct siov_member_info members[SIOV_MIRROR_MAX_MEMBERS];
};

const char *siov_member_state_name(enum siov_member_state s);

/*
 * Opens a mirror over members[0..n).  The first member that the bitmap file
 * (if any) does not say otherwise about is the one in sync; without a bitmap
 * file every other member starts a full resync from it.  A member may belong
 * to one mirror at a time; the caller keeps it open until the mirror is closed
 * or the member is removed.
 */
int siov_mirror_open(const struct siov_backend_conf *conf, const struct siov_mirror_member *members,
		     unsigned n, const struct siov_mirror_opts *opts, struct siov_backend **out,
		     struct siov_err *err);
bool siov_backend_is_mirror(const struct siov_backend *bd);

/*
 * Adds a member and starts its resync.  A member the mirror still lists as
 * failed comes back with a bitmap resync (only what was written meanwhile)
 * unless full is true.
 */
int siov_mirror_add_member(struct siov_backend *bd, const struct siov_mirror_member *m, bool full,
			   struct siov_err *err);
/*
 * Removes a member: -EBUSY for the last in-sync member.  Waits (at most a few
 * seconds) for I/O in flight on it; returns its backend in *out for the caller
 * to release.
 */
int siov_mirror_remove_member(struct siov_backend *bd, const char *name, struct siov_backend **out,
			      struct siov_err *err);
/* Marks a member failed (for tests and operators: "mdadm --fail"). */
int siov_mirror_fail_member(struct siov_backend *bd, const char *name, const char *reason,
			    struct siov_err *err);
int siov_mirror_set_resync_rate(struct siov_backend *bd, uint64_t bytes_per_s);
void siov_mirror_get_info(struct siov_backend *bd, struct siov_mirror_info *info);
/* True once every member is in sync (no resync pending). */
bool siov_mirror_all_in_sync(struct siov_backend *bd);
/* True if name is a member of bd. */
bool siov_mirror_has_member(struct siov_backend *bd, const char *name);

#endif
