/*
 * iovec helpers shared by the layers that move bytes in scatter lists: the
 * backends (ram, file end-of-file handling) and the device models (request
 * headers, discard segments, GET_ID).  Every helper stops at the end of the
 * list: a list shorter than skip + len copies less, never more.
 */
#ifndef SIOV_INTERNAL_IOV_H
#define SIOV_INTERNAL_IOV_H

#include <stddef.h>
#include <sys/uio.h>

/*
 * Finds the iovec that holds byte *skip of the list: returns its index (iovcnt
 * if the list is shorter) and leaves in *skip the offset inside it.
 */
int siov_iov_seek(const struct iovec *iov, int iovcnt, size_t *skip);
/* Copies up to len bytes from buf into the iovecs, skip bytes in; returns bytes copied. */
size_t siov_iov_from_buf(const struct iovec *iov, int iovcnt, size_t skip, const void *buf,
			 size_t len);
/* Copies up to len bytes out of the iovecs, skip bytes in, into buf; returns bytes copied. */
size_t siov_iov_to_buf(const struct iovec *iov, int iovcnt, size_t skip, void *buf, size_t len);
/* Zeroes the iovecs from skip bytes in to their end. */
void siov_iov_zero_from(const struct iovec *iov, int iovcnt, size_t skip);
/*
 * Drops the first skip bytes of the list in place: *first becomes the first
 * iovec left (trimmed); returns how many are left.
 */
int siov_iov_skip_front(struct iovec *iov, int iovcnt, size_t skip, struct iovec **first);

#endif
