/*
 * Unit tests for the memory table (lib/mem/memtable.c), the front end's
 * address space: translation of guest-physical and front-end addresses
 * into siovd's mapping, over real shared memory (a memfd handed over as
 * three regions, test/unit/virtio/guest.c), and the checks that refuse a
 * hostile memory table: unmapped, wrapping and overlapping ranges, regions
 * past the end of their fd (which would SIGBUS siovd), too many pieces.
 */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "guest.h"

#define CROSS_GPA (GPA_R1 - 0x100) /* 0x100 bytes before R0's end */

struct fx {
	struct guest g;
};

static int setup(void **state)
{
	struct fx *fx = calloc(1, sizeof(*fx));

	if (!fx || guest_init(&fx->g))
		return -1;
	*state = fx;
	return 0;
}

static int teardown(void **state)
{
	struct fx *fx = *state;

	guest_fini(&fx->g);
	free(fx);
	return 0;
}

static void mt_translates_inside_region(void **state)
{
	struct fx *fx = *state;
	struct iovec iov[4];
	uint8_t *view = guest_ptr(&fx->g, GPA_R1 + 0x100);

	memcpy(view, "inside R1", 10);
	assert_int_equal(siov_mem_gpa_to_iov(&fx->g.mt, GPA_R1 + 0x100, 10, iov, 4), 1);
	assert_int_equal(iov[0].iov_len, 10);
	assert_memory_equal(iov[0].iov_base, "inside R1", 10);
	/* And the other way: what siovd writes, the guest reads. */
	memcpy(iov[0].iov_base, "from siovd", 10);
	assert_memory_equal(view, "from siovd", 10);
	assert_memory_equal(siov_mem_gpa_to_ptr(&fx->g.mt, GPA_R1 + 0x100, 10), "from siovd", 10);
}

static void mt_splits_buffer_across_adjacent_regions(void **state)
{
	struct fx *fx = *state;
	struct iovec iov[4];

	/* R0 and R1 touch in guest-physical space but not in the memfd. */
	memset(guest_ptr(&fx->g, CROSS_GPA), 'a', 0x100);
	memset(guest_ptr(&fx->g, GPA_R1), 'b', 0x80);
	assert_int_equal(siov_mem_gpa_to_iov(&fx->g.mt, CROSS_GPA, 0x180, iov, 4), 2);
	assert_int_equal(iov[0].iov_len, 0x100);
	assert_int_equal(iov[1].iov_len, 0x80);
	assert_int_equal(((uint8_t *)iov[0].iov_base)[0xff], 'a');
	assert_int_equal(((uint8_t *)iov[1].iov_base)[0], 'b');
	/* A single pointer cannot describe it. */
	assert_null(siov_mem_gpa_to_ptr(&fx->g.mt, CROSS_GPA, 0x180));
}

static void mt_refuses_unmapped_bytes(void **state)
{
	struct fx *fx = *state;
	struct iovec iov[4];

	assert_int_equal(siov_mem_gpa_to_iov(&fx->g.mt, GPA_GAP, 1, iov, 4), -EFAULT);
	assert_int_equal(siov_mem_gpa_to_iov(&fx->g.mt, GPA_R0 - 1, 2, iov, 4), -EFAULT);
	/* Starts mapped, runs one byte past R1 into the gap. */
	assert_int_equal(siov_mem_gpa_to_iov(&fx->g.mt, GPA_R1, GUEST_REG_SIZE + 1, iov, 4),
			 -EFAULT);
	assert_null(siov_mem_gpa_to_ptr(&fx->g.mt, GPA_R2 + GUEST_REG_SIZE - 4, 5));
	assert_null(siov_mem_gpa_to_ptr(&fx->g.mt, GPA_GAP, 1));
}

static void mt_refuses_wrapping_range(void **state)
{
	struct fx *fx = *state;
	struct iovec iov[4];

	assert_int_equal(siov_mem_gpa_to_iov(&fx->g.mt, UINT64_MAX - 10, 100, iov, 4), -EFAULT);
	assert_int_equal(siov_mem_gpa_to_iov(&fx->g.mt, GPA_R0, UINT64_MAX, iov, 4), -EFAULT);
	assert_null(siov_mem_gpa_to_ptr(&fx->g.mt, GPA_R0, UINT64_MAX));
}

static void mt_reports_too_many_pieces(void **state)
{
	struct fx *fx = *state;
	struct iovec iov[1];

	assert_int_equal(siov_mem_gpa_to_iov(&fx->g.mt, CROSS_GPA, 0x200, iov, 1), -ENOBUFS);
}

static void mt_refuses_bad_or_overlapping_regions(void **state)
{
	struct fx *fx = *state;
	struct siov_mem_desc r = fx->g.regions[1];

	r.gpa = GPA_R1 + GUEST_REG_SIZE - 0x1000; /* overlaps R1's tail */
	r.uva = 0x7f1000000000ull;
	assert_int_equal(siov_memtable_add(&fx->g.mt, &r, fx->g.fd), -EINVAL);
	r.gpa = GPA_GAP; /* free gpa, but R0's front-end addresses */
	r.uva = fx->g.regions[0].uva + 0x1000;
	assert_int_equal(siov_memtable_add(&fx->g.mt, &r, fx->g.fd), -EINVAL);
	r.uva = 0x7f1000000000ull;
	r.size = 0;
	assert_int_equal(siov_memtable_add(&fx->g.mt, &r, fx->g.fd), -EINVAL);
	r.size = 0x1000;
	r.gpa = UINT64_MAX - 0x10; /* wraps */
	assert_int_equal(siov_memtable_add(&fx->g.mt, &r, fx->g.fd), -EINVAL);
	assert_int_equal(fx->g.mt.nregions, GUEST_NREGIONS);
}

/*
 * A region must lie within its fd: mmap() of a shared file beyond its end
 * succeeds, but the first access there raises SIGBUS, so a front end naming
 * such a region could kill siovd (every VDEV) with one descriptor.  The test
 * never touches the mapping.
 */
static void mt_refuses_region_beyond_fd_end(void **state)
{
	struct fx *fx = *state;
	struct siov_mem_desc r = {
	    .gpa = GPA_GAP, .size = 0x10000, .uva = 0x7f1000000000ull, .fd_offset = 16ull << 20};

	assert_int_equal(siov_memtable_add(&fx->g.mt, &r, fx->g.fd), -EINVAL);
	assert_int_equal(fx->g.mt.nregions, GUEST_NREGIONS);
}

static void mt_remove_unmaps_only_that_region(void **state)
{
	struct fx *fx = *state;
	struct iovec iov[4];

	assert_int_equal(siov_memtable_remove(&fx->g.mt, &fx->g.regions[1]), 0);
	assert_int_equal(siov_mem_gpa_to_iov(&fx->g.mt, GPA_R1, 1, iov, 4), -EFAULT);
	assert_int_equal(siov_mem_gpa_to_iov(&fx->g.mt, GPA_R0, 1, iov, 4), 1);
	assert_int_equal(siov_mem_gpa_to_iov(&fx->g.mt, GPA_R2, 1, iov, 4), 1);
	assert_int_equal(siov_memtable_remove(&fx->g.mt, &fx->g.regions[1]), -ENOENT);
	/* The freed slot and address range can be used again. */
	assert_int_equal(siov_memtable_add(&fx->g.mt, &fx->g.regions[1], fx->g.fd), 0);
	assert_int_equal(siov_mem_gpa_to_iov(&fx->g.mt, GPA_R1, 1, iov, 4), 1);
}

static void mt_translates_uva(void **state)
{
	struct fx *fx = *state;
	uint64_t uva = guest_uva(&fx->g, GPA_R2 + 0x40);
	uint64_t end = fx->g.regions[2].uva + GUEST_REG_SIZE;

	memcpy(guest_ptr(&fx->g, GPA_R2 + 0x40), "ring", 4);
	assert_memory_equal(siov_mem_uva_to_ptr(&fx->g.mt, uva, 4), "ring", 4);
	assert_non_null(siov_mem_uva_to_ptr(&fx->g.mt, end - 8, 8));
	assert_null(siov_mem_uva_to_ptr(&fx->g.mt, end - 8, 9));
	assert_null(siov_mem_uva_to_ptr(&fx->g.mt, end, 1));
	assert_null(siov_mem_uva_to_ptr(&fx->g.mt, GPA_R2, 1)); /* a gpa is not a uva */
}

#define T(f) cmocka_unit_test_setup_teardown(f, setup, teardown)

int main(void)
{
	const struct CMUnitTest tests[] = {
	    T(mt_translates_inside_region),
	    T(mt_splits_buffer_across_adjacent_regions),
	    T(mt_refuses_unmapped_bytes),
	    T(mt_refuses_wrapping_range),
	    T(mt_reports_too_many_pieces),
	    T(mt_refuses_bad_or_overlapping_regions),
	    T(mt_refuses_region_beyond_fd_end),
	    T(mt_remove_unmaps_only_that_region),
	    T(mt_translates_uva),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
