/*
 * The intrusive hash table (hash.h): chained buckets, doubled when the table
 * holds as many links as it has buckets.  Growing never fails the caller:
 * without memory the table keeps working with longer chains.
 */
#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "siov_internal/hash.h"

static size_t hash_str(const char *s)
{
	uint64_t h = 0xcbf29ce484222325ull;

	for (; *s; s++)
		h = (h ^ (unsigned char)*s) * 0x100000001b3ull;
	return (size_t)(h ^ (h >> 32));
}

void siov_htab_fini(struct siov_htab *t)
{
	free(t->b);
	t->b = NULL;
	t->nb = t->n = 0;
}

struct siov_hlink *siov_htab_first(const struct siov_htab *t, size_t hash)
{
	return t->nb ? t->b[hash & (t->nb - 1)] : NULL;
}

static void htab_grow(struct siov_htab *t)
{
	size_t nb = t->nb ? t->nb * 2 : 64, i;
	struct siov_hlink **b = calloc(nb, sizeof(*b)), *l, *next;

	if (!b)
		return;
	for (i = 0; i < t->nb; i++) {
		for (l = t->b[i]; l; l = next) {
			size_t h = l->hash & (nb - 1);
			next = l->next;
			l->next = b[h];
			b[h] = l;
		}
	}
	free(t->b);
	t->b = b;
	t->nb = nb;
}

int siov_htab_insert(struct siov_htab *t, struct siov_hlink *l, size_t hash)
{
	struct siov_hlink **head;

	if (t->n >= t->nb)
		htab_grow(t);
	if (!t->nb)
		return -ENOMEM;
	l->hash = hash;
	head = &t->b[hash & (t->nb - 1)];
	l->next = *head;
	*head = l;
	t->n++;
	return 0;
}

void siov_htab_del(struct siov_htab *t, struct siov_hlink *l)
{
	struct siov_hlink **pp;

	if (!t->nb)
		return;
	for (pp = &t->b[l->hash & (t->nb - 1)]; *pp; pp = &(*pp)->next) {
		if (*pp == l) {
			*pp = l->next;
			t->n--;
			return;
		}
	}
}

void siov_htab_filter(struct siov_htab *t, bool (*drop)(struct siov_hlink *l, void *arg), void *arg)
{
	size_t i;

	for (i = 0; i < t->nb; i++) {
		struct siov_hlink **pp = &t->b[i], *l;

		while ((l = *pp)) {
			struct siov_hlink *next = l->next; /* drop() may free l */

			if (drop(l, arg)) {
				*pp = next;
				t->n--;
			} else {
				pp = &l->next;
			}
		}
	}
}

struct siov_hlink *siov_htab_find(const struct siov_htab *t, const char *key)
{
	size_t h = hash_str(key);
	struct siov_hlink *l;

	for (l = siov_htab_first(t, h); l; l = l->next)
		if (l->hash == h && !strcmp(l->key, key))
			return l;
	return NULL;
}

int siov_htab_add(struct siov_htab *t, struct siov_hlink *l, const char *key)
{
	l->key = key;
	return siov_htab_insert(t, l, hash_str(key));
}
