/*
 * The dirty-page log (see dirty_log.h): mapping a front end's log with its
 * size checked against the fd, and marking pages with atomic byte ORs, the
 * layout QEMU's vhost code and libvhost-user read back.
 *
 * Hand-written: it is one bitmap and a reverse translation; no Debian library
 * does vhost-user logging outside DPDK and QEMU themselves.
 */
#include <errno.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "siov_internal/dirty_log.h"

struct siov_dirty_log {
	uint8_t *bits;	/* the first byte of the bitmap */
	uint64_t bytes; /* of bitmap */
	void *map_base;
	size_t map_len;
};

int siov_dirty_log_create(int fd, uint64_t mmap_size, uint64_t mmap_offset,
			  struct siov_dirty_log **out)
{
	long page = sysconf(_SC_PAGESIZE);
	struct siov_dirty_log *log;
	uint64_t off_aligned;
	struct stat st;
	void *p;

	if (mmap_size == 0 || mmap_size > SIOV_DIRTY_LOG_MAX || mmap_offset > SIOV_DIRTY_LOG_MAX)
		return -EINVAL;
	/* Mapping past the end of the file succeeds, but touching it raises SIGBUS. */
	if (fstat(fd, &st) < 0)
		return -errno;
	if (mmap_offset + mmap_size > (uint64_t)st.st_size)
		return -EINVAL;
	log = calloc(1, sizeof(*log));
	if (!log)
		return -ENOMEM;
	off_aligned = mmap_offset & ~((uint64_t)page - 1);
	log->map_len = (size_t)(mmap_size + (mmap_offset - off_aligned));
	/* Never mlocked: the log pages like the guest memory it describes. */
	p = mmap(NULL, log->map_len, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_NORESERVE, fd,
		 (off_t)off_aligned);
	if (p == MAP_FAILED) {
		int rc = -errno;
		free(log);
		return rc;
	}
	log->map_base = p;
	log->bits = (uint8_t *)p + (mmap_offset - off_aligned);
	log->bytes = mmap_size;
	*out = log;
	return 0;
}

void siov_dirty_log_destroy(struct siov_dirty_log *log)
{
	if (!log)
		return;
	munmap(log->map_base, log->map_len);
	free(log);
}

uint64_t siov_dirty_log_span(const struct siov_dirty_log *log)
{
	return log->bytes * 8 * SIOV_DIRTY_PAGE_SIZE;
}

bool siov_dirty_log_covers(const struct siov_dirty_log *log, uint64_t gpa, uint64_t len)
{
	uint64_t span = siov_dirty_log_span(log);

	if (len == 0)
		return true;
	return gpa < span && len - 1 < span - gpa;
}

bool siov_dirty_log_covers_table(const struct siov_dirty_log *log, const struct siov_memtable *mt)
{
	unsigned i;

	for (i = 0; i < mt->nregions; i++)
		if (!siov_dirty_log_covers(log, mt->regions[i].gpa, mt->regions[i].size))
			return false;
	return true;
}

bool siov_dirty_log_owns(const struct siov_dirty_log *log, const void *p)
{
	const uint8_t *b = log->map_base;

	return (const uint8_t *)p >= b && (const uint8_t *)p < b + log->map_len;
}

int siov_dirty_log_mark(struct siov_dirty_log *log, uint64_t gpa, uint64_t len)
{
	uint64_t page, last;

	if (len == 0)
		return 0;
	if (!siov_dirty_log_covers(log, gpa, len))
		return -ERANGE;
	last = (gpa + len - 1) >> SIOV_DIRTY_PAGE_SHIFT;
	/*
	 * Atomic: queues of one VDEV (and QEMU itself) mark neighbouring pages of
	 * one byte from other threads.  Relaxed is enough: the release store of
	 * the used index orders these before the driver (and so QEMU's final
	 * sync after GET_VRING_BASE) can see the request as done.
	 */
	for (page = gpa >> SIOV_DIRTY_PAGE_SHIFT; page <= last; page++)
		__atomic_fetch_or(&log->bits[page / 8], (uint8_t)(1u << (page % 8)),
				  __ATOMIC_RELAXED);
	return 0;
}

/* The region of mt whose mapping holds [p, p+len), or NULL. */
static const struct siov_mem_region *host_region(const struct siov_memtable *mt, const uint8_t *p,
						 uint64_t len)
{
	unsigned i;

	for (i = 0; i < mt->nregions; i++) {
		const struct siov_mem_region *m = &mt->regions[i];
		if (p >= m->host && (uint64_t)(p - m->host) < m->size &&
		    len <= m->size - (uint64_t)(p - m->host))
			return m;
	}
	return NULL;
}

int siov_dirty_log_mark_host(struct siov_dirty_log *log, const struct siov_memtable *mt,
			     const void *p, uint64_t len)
{
	const struct siov_mem_region *m;

	if (len == 0)
		return 0;
	m = host_region(mt, p, len);
	if (!m)
		return -EFAULT;
	return siov_dirty_log_mark(log, m->gpa + (uint64_t)((const uint8_t *)p - m->host), len);
}

int siov_dirty_log_mark_iov(struct siov_dirty_log *log, const struct siov_memtable *mt,
			    const struct iovec *iov, unsigned n, uint64_t len)
{
	unsigned i;
	int rc;

	for (i = 0; i < n && len; i++) {
		uint64_t l = iov[i].iov_len < len ? iov[i].iov_len : len;
		rc = siov_dirty_log_mark_host(log, mt, iov[i].iov_base, l);
		if (rc)
			return rc;
		len -= l;
	}
	return 0;
}

bool siov_dirty_log_test(const struct siov_dirty_log *log, uint64_t gpa)
{
	uint64_t page = gpa >> SIOV_DIRTY_PAGE_SHIFT;

	if (!siov_dirty_log_covers(log, gpa, 1))
		return false;
	return __atomic_load_n(&log->bits[page / 8], __ATOMIC_RELAXED) & (1u << (page % 8));
}
