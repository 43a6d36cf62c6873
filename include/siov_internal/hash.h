/*
 * A small intrusive hash table of strings: the object embeds a struct
 * siov_hlink whose key points into the object itself, so adding costs no
 * allocation per entry and finding costs one string hash.  The VDCM indexes
 * names and socket paths with it (tens of thousands of VDEVs).
 *
 * Hand-written because glibc's hsearch(3) has no delete and a fixed size, and
 * GLib is no dependency of siovd; this is ~80 lines.  FNV-1a: keys are short
 * names and paths from the management API, not chosen by guests.
 *
 * Not thread-safe: one owner (the control thread).  A key must stay alive and
 * unchanged while its link is in a table.
 */
#ifndef SIOV_INTERNAL_HASH_H
#define SIOV_INTERNAL_HASH_H

#include <stddef.h>

struct siov_hlink {
	struct siov_hlink *next;
	const char *key; /* points into the object that embeds the link */
};

struct siov_htab {
	struct siov_hlink **b;
	size_t nb; /* a power of two, or 0 before the first insertion */
	size_t n;  /* links in the table */
};

/* A zeroed struct siov_htab is an empty table; siov_htab_fini frees its buckets. */
void siov_htab_fini(struct siov_htab *t);
/* The link whose key equals key, or NULL. */
struct siov_hlink *siov_htab_find(const struct siov_htab *t, const char *key);
/* Adds l under key (duplicates are the caller's business); -ENOMEM if the table has no buckets. */
int siov_htab_add(struct siov_htab *t, struct siov_hlink *l, const char *key);
/* Removes l if it is in the table. */
void siov_htab_del(struct siov_htab *t, struct siov_hlink *l);

#endif
