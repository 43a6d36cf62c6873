/*
 * Unit tests for lib/util's containers and copies: the intrusive string hash
 * table (hash.h: add, find, delete, growth across many keys, keys that share
 * a bucket) and the iovec helpers (iov.h: copies across segment boundaries,
 * lists shorter than asked, skipping a header in place).
 */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/uio.h>

#include <cmocka.h>

#include "siov_internal/hash.h"
#include "siov_internal/iov.h"
#include "siov_internal/util.h"

/* ---- hash table ---- */

struct item {
	char name[16];
	struct siov_hlink link;
};

static struct item *find(struct siov_htab *t, const char *key)
{
	struct siov_hlink *l = siov_htab_find(t, key);

	return l ? SIOV_CONTAINER_OF(l, struct item, link) : NULL;
}

static void hash_empty_table_finds_nothing(void **state)
{
	struct siov_htab t = {0};
	struct item a = {.name = "a"};

	assert_null(siov_htab_find(&t, "a"));
	siov_htab_del(&t, &a.link); /* not in it: nothing happens */
	assert_int_equal(t.n, 0);
	siov_htab_fini(&t);
}

static void hash_add_find_delete(void **state)
{
	struct siov_htab t = {0};
	struct item a = {.name = "vm1"}, b = {.name = "vm2"};

	assert_int_equal(siov_htab_add(&t, &a.link, a.name), 0);
	assert_int_equal(siov_htab_add(&t, &b.link, b.name), 0);
	assert_ptr_equal(find(&t, "vm1"), &a);
	assert_ptr_equal(find(&t, "vm2"), &b);
	assert_null(find(&t, "vm"));
	assert_null(find(&t, "vm10"));
	siov_htab_del(&t, &a.link);
	assert_null(find(&t, "vm1"));
	assert_ptr_equal(find(&t, "vm2"), &b);
	assert_int_equal(t.n, 1);
	siov_htab_fini(&t);
	assert_null(siov_htab_find(&t, "vm2"));
}

/* 5,000 keys: the table grows many times and every key stays findable. */
static void hash_grows_and_keeps_every_key(void **state)
{
	enum { N = 5000 };
	static struct item it[N];
	struct siov_htab t = {0};
	unsigned i;

	for (i = 0; i < N; i++) {
		snprintf(it[i].name, sizeof(it[i].name), "vdev-%u", i);
		assert_int_equal(siov_htab_add(&t, &it[i].link, it[i].name), 0);
	}
	assert_int_equal(t.n, N);
	assert_true(t.nb >= N);
	for (i = 0; i < N; i++)
		assert_ptr_equal(find(&t, it[i].name), &it[i]);
	/* Delete the even ones: the odd ones must stay, in whatever bucket they share. */
	for (i = 0; i < N; i += 2)
		siov_htab_del(&t, &it[i].link);
	for (i = 0; i < N; i++) {
		if (i % 2)
			assert_ptr_equal(find(&t, it[i].name), &it[i]);
		else
			assert_null(find(&t, it[i].name));
	}
	assert_int_equal(t.n, N / 2);
	siov_htab_fini(&t);
}

/*
 * Own keys, the way the switch's MAC table uses the table: every key lands in
 * one bucket (hash 7), so finding means comparing keys, and the filter drops
 * (and frees) exactly the links it is told to while the rest stay findable.
 */
struct num {
	struct siov_hlink link;
	unsigned key;
};

static struct num *num_find(struct siov_htab *t, unsigned key)
{
	struct siov_hlink *l;

	for (l = siov_htab_first(t, 7); l; l = l->next)
		if (l->hash == 7 && ((struct num *)l)->key == key)
			return (struct num *)l;
	return NULL;
}

static bool drop_odd_and_free(struct siov_hlink *l, void *arg)
{
	struct num *x = (struct num *)l;

	if (!(x->key % 2))
		return false;
	free(x);
	(*(unsigned *)arg)++;
	return true;
}

static void hash_own_keys_and_filter(void **state)
{
	struct siov_htab t = {0};
	unsigned i, dropped = 0;

	for (i = 0; i < 200; i++) {
		struct num *x = calloc(1, sizeof(*x));

		assert_non_null(x);
		x->key = i;
		assert_int_equal(siov_htab_insert(&t, &x->link, 7), 0);
	}
	assert_int_equal(num_find(&t, 123)->key, 123);
	assert_null(num_find(&t, 200));
	siov_htab_filter(&t, drop_odd_and_free, &dropped);
	assert_int_equal(dropped, 100);
	assert_int_equal(t.n, 100);
	for (i = 0; i < 200; i++) {
		if (i % 2)
			assert_null(num_find(&t, i));
		else
			assert_int_equal(num_find(&t, i)->key, i);
	}
	for (i = 0; i < 200; i += 2) {
		struct num *x = num_find(&t, i);

		siov_htab_del(&t, &x->link);
		free(x);
	}
	assert_int_equal(t.n, 0);
	siov_htab_fini(&t);
}

/* ---- iovecs ---- */

static void iov_copies_across_segments(void **state)
{
	char a[3] = "abc", b[1] = "d", c[4] = "efgh", out[8] = {0};
	struct iovec v[3] = {{a, 3}, {b, 1}, {c, 4}};

	assert_int_equal(siov_iov_to_buf(v, 3, 2, out, 4), 4);
	assert_memory_equal(out, "cdef", 4);
	/* Asking past the end copies what there is. */
	assert_int_equal(siov_iov_to_buf(v, 3, 6, out, 8), 2);
	assert_memory_equal(out, "gh", 2);
	assert_int_equal(siov_iov_from_buf(v, 3, 1, "XYZW", 4), 4);
	assert_memory_equal(a, "aXY", 3);
	assert_memory_equal(b, "Z", 1);
	assert_memory_equal(c, "Wfgh", 4);
	assert_int_equal(siov_iov_from_buf(v, 3, 7, "12", 2), 1);
	assert_memory_equal(c, "Wfg1", 4);
	assert_int_equal(siov_iov_from_buf(v, 3, 9, "12", 2), 0);
}

static void iov_zero_from_offset(void **state)
{
	char a[4] = "abcd", b[4] = "efgh";
	struct iovec v[2] = {{a, 4}, {b, 4}};

	siov_iov_zero_from(v, 2, 3);
	assert_memory_equal(a, "abc\0", 4);
	assert_memory_equal(b, "\0\0\0\0", 4);
}

/* A virtio-blk write: the 16-byte header leaves the front of the data iovecs. */
static void iov_skip_front_drops_a_header(void **state)
{
	char h[10], d[10], e[10];
	struct iovec v[3] = {{h, 10}, {d, 10}, {e, 10}}, *first;

	assert_int_equal(siov_iov_skip_front(v, 3, 16, &first), 2);
	assert_ptr_equal(first, &v[1]);
	assert_ptr_equal(first->iov_base, d + 6);
	assert_int_equal(first->iov_len, 4);
	assert_int_equal(siov_iov_skip_front(v, 3, 30, &first), 0);
	assert_ptr_equal(first, &v[3]);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(hash_empty_table_finds_nothing),
	    cmocka_unit_test(hash_add_find_delete),
	    cmocka_unit_test(hash_grows_and_keeps_every_key),
	    cmocka_unit_test(hash_own_keys_and_filter),
	    cmocka_unit_test(iov_copies_across_segments),
	    cmocka_unit_test(iov_zero_from_offset),
	    cmocka_unit_test(iov_skip_front_drops_a_header),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
