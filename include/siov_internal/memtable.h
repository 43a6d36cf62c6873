/*
 * A VDEV's memory table: its PASID address space.  The front end (QEMU's guest
 * RAM, or a libsiov process's buffers) hands regions over as fds; siovd maps
 * them (never mlocked: memory stays over-commitable) and every address a
 * descriptor carries is translated and bounds-checked here.
 *
 * Threading: changed only on the control thread while no engine uses the
 * table (the VDEV's queues are quiesced first); engines read it lock-free.
 */
#ifndef SIOV_INTERNAL_MEMTABLE_H
#define SIOV_INTERNAL_MEMTABLE_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/uio.h>

/* Most regions one table holds (lib/vhost advertises no more memory slots). */
#define SIOV_MEMTABLE_MAX 32

/*
 * One region as the front end describes it: guest physical range, the front
 * end's own virtual address of it, and where it starts in the fd handed over.
 * Transport-neutral: vhost-user's wire struct is converted by lib/vhost.
 */
struct siov_mem_desc {
	uint64_t gpa;	    /* guest physical address of the first byte */
	uint64_t size;	    /* bytes */
	uint64_t uva;	    /* front-end virtual address of the first byte */
	uint64_t fd_offset; /* offset of the first byte in the region's fd */
};

struct siov_mem_region {
	uint64_t gpa;  /* guest physical address of the first byte */
	uint64_t size; /* bytes */
	uint64_t uva;  /* front-end virtual address of the first byte */
	uint8_t *host; /* where that first byte is mapped in siovd */
	void *map_base;
	size_t map_len;
};

struct siov_memtable {
	unsigned nregions;
	struct siov_mem_region regions[SIOV_MEMTABLE_MAX];
};

void siov_memtable_init(struct siov_memtable *mt);
/* Maps one region from fd (the fd is not kept).  -EINVAL for a bad or overlapping region. */
int siov_memtable_add(struct siov_memtable *mt, const struct siov_mem_desc *r, int fd);
/* Removes the region matching r's gpa and size; -ENOENT if none. */
int siov_memtable_remove(struct siov_memtable *mt, const struct siov_mem_desc *r);
void siov_memtable_clear(struct siov_memtable *mt);

/*
 * Translates [gpa, gpa+len) into host iovecs, split where regions end.
 * Returns the number of iovecs used, -EFAULT if any byte is unmapped (or the
 * range wraps), -ENOBUFS if more than max_iov are needed.
 */
int siov_mem_gpa_to_iov(const struct siov_memtable *mt, uint64_t gpa, uint64_t len,
			struct iovec *iov, int max_iov);
/* A pointer to [gpa, gpa+len) if it lies within one region, else NULL. */
void *siov_mem_gpa_to_ptr(const struct siov_memtable *mt, uint64_t gpa, uint64_t len);
/* True if p lies in one of the table's mappings (siovd's side). */
bool siov_memtable_owns(const struct siov_memtable *mt, const void *p);
/* The same for front-end virtual addresses (vring addresses). */
void *siov_mem_uva_to_ptr(const struct siov_memtable *mt, uint64_t uva, uint64_t len);
/* The guest-physical address of front-end address uva ([uva, uva+len) in one region); -EFAULT. */
int siov_mem_uva_to_gpa(const struct siov_memtable *mt, uint64_t uva, uint64_t len, uint64_t *gpa);

#endif
