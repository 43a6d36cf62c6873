/*
 * The dirty-page log of live migration (vhost-user LOG_SHMFD): a bitmap in
 * shared memory the front end (QEMU) hands over with SET_LOG_BASE, one bit per
 * 4 KiB page of guest-physical memory (bit page % 8 of byte page / 8).  While
 * the front end migrates, every byte siovd puts into front-end memory marks its
 * page here, so the pages are sent again.
 *
 * Device-neutral: it knows guest-physical addresses and a memory table, not
 * virtio-blk or rings.  The virtqueue layer calls it on the one path that
 * writes front-end memory (data, status bytes, used ring).
 *
 * Hostile input: the size, offset and fd come from the front end.  Mapping
 * checks them against the fd; marking checks every page against the log's end
 * and reports -ERANGE (the caller breaks the device), never writes past it.
 * A log fd shrunk later raises SIGBUS on the engine, which breaks the queues
 * whose log holds the address (siov_dirty_log_owns()).
 *
 * Threading: created and destroyed on the control thread while no engine
 * uses it; marked from any number of engine threads at once (atomic OR).
 */
#ifndef SIOV_INTERNAL_DIRTY_LOG_H
#define SIOV_INTERNAL_DIRTY_LOG_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/uio.h>

#include "siov_internal/memtable.h"

#define SIOV_DIRTY_PAGE_SHIFT 12
#define SIOV_DIRTY_PAGE_SIZE  (1ull << SIOV_DIRTY_PAGE_SHIFT)
/* Largest log we map: covers 4 PiB of guest memory. */
#define SIOV_DIRTY_LOG_MAX (1ull << 37)

struct siov_dirty_log;

/*
 * Maps mmap_size bytes of fd from mmap_offset (the fd is not kept).
 * -EINVAL: zero, too large, wrapping, or past the end of the fd; -errno of mmap.
 */
int siov_dirty_log_create(int fd, uint64_t mmap_size, uint64_t mmap_offset,
			  struct siov_dirty_log **out);
/* Unmaps and frees; accepts NULL. */
void siov_dirty_log_destroy(struct siov_dirty_log *log);

/* Guest-physical bytes the log covers (8 pages per byte of bitmap). */
uint64_t siov_dirty_log_span(const struct siov_dirty_log *log);
/* True if every page of [gpa, gpa+len) has a bit in the log. */
bool siov_dirty_log_covers(const struct siov_dirty_log *log, uint64_t gpa, uint64_t len);
/* True if the log covers every region of mt. */
bool siov_dirty_log_covers_table(const struct siov_dirty_log *log, const struct siov_memtable *mt);
/* True if p lies in the log's mapping (siovd's side): for the SIGBUS handler. */
bool siov_dirty_log_owns(const struct siov_dirty_log *log, const void *p);

/* Marks the pages of [gpa, gpa+len); -ERANGE (nothing marked) if one is past the log. */
int siov_dirty_log_mark(struct siov_dirty_log *log, uint64_t gpa, uint64_t len);
/*
 * Marks the pages under len bytes at p, a pointer into one of mt's mappings
 * (what a translated descriptor gives): -EFAULT if p is not in the table.
 */
int siov_dirty_log_mark_host(struct siov_dirty_log *log, const struct siov_memtable *mt,
			     const void *p, uint64_t len);
/* The same for the first len bytes of iov[0..n). */
int siov_dirty_log_mark_iov(struct siov_dirty_log *log, const struct siov_memtable *mt,
			    const struct iovec *iov, unsigned n, uint64_t len);

/* Test helper: true if the bit of the page holding gpa is set. */
bool siov_dirty_log_test(const struct siov_dirty_log *log, uint64_t gpa);

#endif
