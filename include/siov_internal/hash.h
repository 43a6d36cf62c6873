/*
 * A small intrusive hash table: the object embeds a struct siov_hlink, so
 * adding costs no allocation per entry.  The link keeps its key's hash, so the
 * table grows and deletes without knowing what the key is; callers with their
 * own keys (the switch's MAC table) walk a bucket with siov_htab_first() and
 * compare.  String keys (the VDCM's names and socket paths, tens of thousands
 * of VDEVs) have ready-made find/add on top.
 *
 * Hand-written because glibc's hsearch(3) has no delete and a fixed size, and
 * GLib is no dependency of siovd; it is ~120 lines.  String keys hash with
 * FNV-1a: they are short names and paths from the management API, not chosen
 * by guests.  Callers whose keys come from guests pick a keyed hash.
 *
 * Not thread-safe: one owner at a time (the caller's lock).  A key must stay
 * alive and unchanged while its link is in a table.
 */
#ifndef SIOV_INTERNAL_HASH_H
#define SIOV_INTERNAL_HASH_H

#include <stdbool.h>
#include <stddef.h>

struct siov_hlink {
	struct siov_hlink *next;
	size_t hash;	 /* of the key, set by the table on insertion */
	const char *key; /* string tables only: points into the embedding object */
};

struct siov_htab {
	struct siov_hlink **b;
	size_t nb; /* a power of two, or 0 before the first insertion */
	size_t n;  /* links in the table */
};

/* A zeroed struct siov_htab is an empty table; siov_htab_fini frees its buckets. */
void siov_htab_fini(struct siov_htab *t);

/* Any key: the first link of hash's bucket (walk ->next, compare ->hash, then the key). */
struct siov_hlink *siov_htab_first(const struct siov_htab *t, size_t hash);
/* Any key: adds l under hash (duplicates are the caller's business); -ENOMEM without buckets. */
int siov_htab_insert(struct siov_htab *t, struct siov_hlink *l, size_t hash);
/* Removes l if it is in the table. */
void siov_htab_del(struct siov_htab *t, struct siov_hlink *l);
/* Unlinks every link drop() returns true for; drop may free the link it returns true for. */
void siov_htab_filter(struct siov_htab *t, bool (*drop)(struct siov_hlink *l, void *arg),
		      void *arg);

/* String keys: the link whose key equals key, or NULL. */
struct siov_hlink *siov_htab_find(const struct siov_htab *t, const char *key);
/* String keys: adds l under key; -ENOMEM if the table has no buckets. */
int siov_htab_add(struct siov_htab *t, struct siov_hlink *l, const char *key);

#endif
