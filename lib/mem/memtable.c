/*
 * The memory table (a VDEV's PASID space): mapping of front-end regions and the
 * translation every descriptor goes through.  All arithmetic is overflow-safe:
 * the addresses and lengths come from a guest or a client and are hostile.
 */
#include <errno.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "siov_internal/memtable.h"

void siov_memtable_init(struct siov_memtable *mt)
{
	memset(mt, 0, sizeof(*mt));
}

static int range_ok(uint64_t start, uint64_t len)
{
	return len > 0 && start + len - 1 >= start;
}

static int overlaps(uint64_t a, uint64_t alen, uint64_t b, uint64_t blen)
{
	return a <= b + blen - 1 && b <= a + alen - 1;
}

static int region_check(const struct siov_memtable *mt, const struct siov_mem_desc *r)
{
	unsigned i;

	if (!range_ok(r->gpa, r->size) || !range_ok(r->uva, r->size) ||
	    !range_ok(r->fd_offset, r->size) || r->size > (1ull << 48))
		return -EINVAL;
	for (i = 0; i < mt->nregions; i++) {
		const struct siov_mem_region *o = &mt->regions[i];
		if (overlaps(o->gpa, o->size, r->gpa, r->size) ||
		    overlaps(o->uva, o->size, r->uva, r->size))
			return -EINVAL;
	}
	return 0;
}

int siov_memtable_add(struct siov_memtable *mt, const struct siov_mem_desc *r, int fd)
{
	struct siov_mem_region *m;
	long page = sysconf(_SC_PAGESIZE);
	uint64_t off_aligned, delta;
	struct stat st;
	size_t len;
	void *p;
	int rc;

	if (mt->nregions >= SIOV_MEMTABLE_MAX)
		return -ENOSPC;
	rc = region_check(mt, r);
	if (rc)
		return rc;
	/* Mapping past the end of the file succeeds, but touching it raises SIGBUS. */
	if (fstat(fd, &st) < 0)
		return -errno;
	if (r->fd_offset + r->size > (uint64_t)st.st_size)
		return -EINVAL;
	/* mmap wants a page-aligned offset; map from the page below it. */
	off_aligned = r->fd_offset & ~((uint64_t)page - 1);
	delta = r->fd_offset - off_aligned;
	len = (size_t)(r->size + delta);
	/* MAP_NORESERVE and no mlock: the front end's memory stays pageable. */
	p = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_NORESERVE, fd,
		 (off_t)off_aligned);
	if (p == MAP_FAILED)
		return -errno;
	m = &mt->regions[mt->nregions++];
	m->gpa = r->gpa;
	m->size = r->size;
	m->uva = r->uva;
	m->map_base = p;
	m->map_len = len;
	m->host = (uint8_t *)p + delta;
	return 0;
}

int siov_memtable_remove(struct siov_memtable *mt, const struct siov_mem_desc *r)
{
	unsigned i;

	for (i = 0; i < mt->nregions; i++) {
		struct siov_mem_region *m = &mt->regions[i];
		if (m->gpa != r->gpa || m->size != r->size)
			continue;
		munmap(m->map_base, m->map_len);
		mt->regions[i] = mt->regions[--mt->nregions];
		return 0;
	}
	return -ENOENT;
}

void siov_memtable_clear(struct siov_memtable *mt)
{
	unsigned i;

	for (i = 0; i < mt->nregions; i++)
		munmap(mt->regions[i].map_base, mt->regions[i].map_len);
	mt->nregions = 0;
}

static const struct siov_mem_region *find_gpa(const struct siov_memtable *mt, uint64_t gpa)
{
	unsigned i;

	for (i = 0; i < mt->nregions; i++) {
		const struct siov_mem_region *m = &mt->regions[i];
		if (gpa >= m->gpa && gpa - m->gpa < m->size)
			return m;
	}
	return NULL;
}

int siov_mem_gpa_to_iov(const struct siov_memtable *mt, uint64_t gpa, uint64_t len,
			struct iovec *iov, int max_iov)
{
	int n = 0;

	if (len && gpa + len - 1 < gpa)
		return -EFAULT;
	while (len) {
		const struct siov_mem_region *m = find_gpa(mt, gpa);
		uint64_t off, chunk;

		if (!m)
			return -EFAULT;
		if (n == max_iov)
			return -ENOBUFS;
		off = gpa - m->gpa;
		chunk = m->size - off < len ? m->size - off : len;
		iov[n].iov_base = m->host + off;
		iov[n].iov_len = chunk;
		n++;
		gpa += chunk;
		len -= chunk;
	}
	return n;
}

void *siov_mem_gpa_to_ptr(const struct siov_memtable *mt, uint64_t gpa, uint64_t len)
{
	const struct siov_mem_region *m = find_gpa(mt, gpa);

	if (!m || len > m->size - (gpa - m->gpa))
		return NULL;
	return m->host + (gpa - m->gpa);
}

void *siov_mem_uva_to_ptr(const struct siov_memtable *mt, uint64_t uva, uint64_t len)
{
	unsigned i;

	for (i = 0; i < mt->nregions; i++) {
		const struct siov_mem_region *m = &mt->regions[i];
		if (uva >= m->uva && uva - m->uva < m->size) {
			if (len > m->size - (uva - m->uva))
				return NULL;
			return m->host + (uva - m->uva);
		}
	}
	return NULL;
}

int siov_mem_uva_to_gpa(const struct siov_memtable *mt, uint64_t uva, uint64_t len, uint64_t *gpa)
{
	unsigned i;

	for (i = 0; i < mt->nregions; i++) {
		const struct siov_mem_region *m = &mt->regions[i];
		if (uva >= m->uva && uva - m->uva < m->size) {
			if (len > m->size - (uva - m->uva))
				return -EFAULT;
			*gpa = m->gpa + (uva - m->uva);
			return 0;
		}
	}
	return -EFAULT;
}

bool siov_memtable_owns(const struct siov_memtable *mt, const void *p)
{
	unsigned i;

	for (i = 0; i < mt->nregions; i++) {
		const uint8_t *b = mt->regions[i].map_base;
		if ((const uint8_t *)p >= b && (const uint8_t *)p < b + mt->regions[i].map_len)
			return true;
	}
	return false;
}
