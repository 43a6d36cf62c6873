/*
 * The persisted configuration: a snapshot (DIR/siovd.json) plus a journal of
 * the changes made since (DIR/siovd.journal.G), each change appended and made
 * durable by a thread of the state's own before the change is acknowledged.
 *
 * A change is a record: {"seq", "op": "put"|"del", "kind", "name", "conf"},
 * where conf is the object's whole configuration as its *_create method takes
 * it.  The kinds the state knows (backend, group, vdev, ...) are one table in
 * state.c; a new kind of object is a row there and nothing else: records and
 * snapshots carry any kind the same way.  docs/operations.md says why.
 *
 * Threads: siov_state_put/del/appended/decided/expect/unexpect/hold/release
 * are called from one thread (the control thread); the writer thread does
 * every write and fdatasync, and a compaction thread folds the journal into a
 * new snapshot in the background.
 */
#ifndef SIOV_INTERNAL_STATE_H
#define SIOV_INTERNAL_STATE_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

#include "siov_internal/util.h"

struct json_object;
struct siov_loop;
struct siov_state;
struct siov_vdcm;

struct siov_state_opts {
	const char *dir;
	/* Where durable_cb runs (from the loop, after records became durable); may be NULL. */
	struct siov_loop *loop;
	void (*durable_cb)(void *arg);
	void *cb_arg;
	/* Compact once the journal holds this many records (and more than the snapshot); 0: 8192.
	 */
	uint64_t compact_records;
	/* Only read: no thread, nothing written, no torn tail cut (siov_state_load). */
	bool readonly;
};

/*
 * Reads the snapshot and the journal (recovery).  A torn last record (a crash
 * while it was written: it was never acknowledged) is cut off with a warning;
 * anything else that is malformed, foreign or out of sequence fails with
 * -EINVAL and a message naming the file and line, and nothing is changed on
 * disk.  A state dir in use by another siovd fails with -EBUSY.
 */
int siov_state_open(const struct siov_state_opts *opts, struct siov_state **out,
		    struct siov_err *err);
/* What recovery found: objects of every kind, and the last change applied. */
void siov_state_recovered(const struct siov_state *st, uint64_t *entries, uint64_t *seq);

/*
 * Recreates through the VDCM what the state describes, kinds in table order
 * (backends before the VDEVs on them).  An entry that fails is logged, kept in
 * the state (a restart once the cause is fixed brings it back) and counted:
 * returns how many failed.  Call once, right after siov_state_open().
 */
int siov_state_restore(struct siov_state *st, struct siov_vdcm *vdcm);
/* Makes every record durable, folds the journal into the snapshot, frees st. */
void siov_state_close(struct siov_state *st);

/*
 * Appends a record that kind/name now has configuration conf (a reference
 * is taken over, also on failure), or, for del, that it is gone.  Returns the
 * record's sequence number (> 0), or -errno if the journal failed earlier
 * (every later change is refused until siovd restarts: see err).
 */
int64_t siov_state_put(struct siov_state *st, const char *kind, const char *name,
		       struct json_object *conf, struct siov_err *err);
int64_t siov_state_del(struct siov_state *st, const char *kind, const char *name,
		       struct siov_err *err);
/* The last sequence number appended so far (0: none). */
uint64_t siov_state_appended(const struct siov_state *st);
/*
 * Whether the records up to seq are decided: 1 if durable, 0 if not yet,
 * -errno if they never will be (the journal failed; err says why).
 */
int siov_state_decided(struct siov_state *st, uint64_t seq, struct siov_err *err);
/* Blocks until siov_state_decided() is non-zero; returns 0 or its -errno. */
int siov_state_wait(struct siov_state *st, uint64_t seq, struct siov_err *err);

/*
 * Group commit, with a loop (control thread): a change is expected soon (a
 * client was just answered one).  When such changes usually arrive within
 * half a sync, buffered records wait for them (a timer bounds the wait)
 * instead of being synced without them.  The token goes to
 * siov_state_unexpect() once the client sent its next request (came: how long
 * it took is what decides whether waiting pays), or will send none (it left).
 * Without a loop these do nothing: records are written as they come.
 */
uint64_t siov_state_expect(struct siov_state *st);
void siov_state_unexpect(struct siov_state *st, uint64_t token, bool came);
/* Records wait while a request is being handled, so that its own share one sync. */
void siov_state_hold(struct siov_state *st);
void siov_state_release(struct siov_state *st);

/*
 * An answer the writer thread sends on (a duplicate of) fd right after the
 * sync that makes seq durable, before the loop hears of it: one thread hop
 * less between the fdatasync and the client.  NULL if it cannot (seq is
 * decided already, no memory): the caller sends it.  The caller keeps a
 * reference until siov_state_reply_sent() says the writer is done (-EAGAIN
 * before), and gets how many bytes were sent: 0 if the journal failed.
 */
struct siov_state_reply;
struct siov_state_reply *siov_state_reply(struct siov_state *st, uint64_t seq, int fd,
					  const char *text, size_t len);
ssize_t siov_state_reply_sent(const struct siov_state_reply *r);
void siov_state_reply_put(struct siov_state_reply *r);

/* Counters for metrics: records written, batches (fdatasyncs), compactions. */
struct siov_state_stats {
	uint64_t records, batches, compactions, journal_bytes;
	uint64_t sync_ns_total; /* time spent in write + fdatasync */
	bool failed;
};
void siov_state_get_stats(struct siov_state *st, struct siov_state_stats *out);

/* For tests of a failing disk: every later write fails with rc (< 0). */
void siov_state_inject_write_error(struct siov_state *st, int rc);

/* open (read only) + restore + close: what siovd would bring up from dir. */
int siov_state_load(struct siov_vdcm *vdcm, const char *dir, struct siov_err *err);

#endif
