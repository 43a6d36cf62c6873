/*
 * Shared by siov's libFuzzer targets: a reader that turns fuzzer bytes into
 * typed values (running out of input yields zeros, never an error), a fake
 * guest (one memfd handed to a struct siov_memtable as three regions), an fd
 * census to catch leaks across iterations, and a quiet siov_log() so that a
 * million rejected inputs do not print a million lines (SIOV_FUZZ_LOG=1 to
 * see them).
 */
#ifndef SIOV_FUZZ_COMMON_H
#define SIOV_FUZZ_COMMON_H

#include <stddef.h>
#include <stdint.h>

#include "siov_internal/memtable.h"
#include "siov_internal/virtqueue.h"

struct fz {
	const uint8_t *p;
	size_t left;
};

static inline void fz_init(struct fz *f, const uint8_t *data, size_t size)
{
	f->p = data;
	f->left = size;
}

/* Copies up to n bytes into out, zero-filling what the input lacks. */
void fz_bytes(struct fz *f, void *out, size_t n);
uint8_t fz_u8(struct fz *f);
uint16_t fz_u16(struct fz *f);
uint32_t fz_u32(struct fz *f);
uint64_t fz_u64(struct fz *f);

/*
 * Guest memory: FG_FD_SIZE bytes of memfd as three regions.  R0 and R1 touch in
 * guest-physical space but not in the memfd; R2 lies after a gap.  The fuzzer's
 * own mapping of the whole memfd is base.
 */
#define FG_REG_SIZE 0x10000ull
#define FG_FD_SIZE  (3 * FG_REG_SIZE)
#define FG_GPA_R0   0x10000ull
#define FG_GPA_R1   (FG_GPA_R0 + FG_REG_SIZE)
#define FG_GPA_R2   0x100000ull

struct fuzz_guest {
	int fd;
	uint8_t *base;
	struct siov_memtable mt;
	struct siov_mem_desc regions[3];
	unsigned nregions;
};

/* Creates the memfd and the default three-region table; aborts on failure. */
void fuzz_guest_init(struct fuzz_guest *g);
/* Zeroes the memfd and rebuilds the table (the default layout, or the given regions). */
void fuzz_guest_reset(struct fuzz_guest *g, const struct siov_mem_desc *custom, unsigned ncustom);
/* The fuzzer's view of a guest-physical address, or NULL if no region has it. */
uint8_t *fuzz_guest_ptr(const struct fuzz_guest *g, uint64_t gpa, uint64_t len);

/*
 * Checks a popped chain beyond what ASan sees: head (or buffer id) below the
 * ring size, at most SIOV_VQ_MAX_IOV iovecs, lengths that add up, every iovec
 * inside one mapped region (an out-of-range pointer nobody dereferences yet
 * would escape the sanitizers), and both ends of each touched.  Aborts.
 */
void fuzz_check_chain(const struct siov_vq *vq, const struct siov_vq_chain *c, const char *target);

/* Number of open fds of this process (from /proc/self/fd), pipes not counted. */
int fuzz_count_fds(void);
/* Aborts with a message if more fds are open than at the first call. */
void fuzz_check_fds(const char *target);

/* A fresh directory under $TMPDIR (or /tmp) for sockets and files; aborts on failure. */
const char *fuzz_tmpdir(const char *tag);
/* Removes the directory and everything directly in it (at exit). */
void fuzz_tmpdir_cleanup(void);

#endif
