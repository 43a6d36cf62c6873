/*
 * What the backends under lib/backend/ share and nobody else needs: their
 * ops tables, and the iovec helpers the in-memory backends and the file
 * backend's end-of-file handling copy data with.
 */
#ifndef SIOV_BACKEND_IMPL_H
#define SIOV_BACKEND_IMPL_H

#include <stddef.h>
#include <stdint.h>
#include <sys/uio.h>

#include "siov_internal/backend_module.h"

extern const struct siov_backend_ops siov__backend_null_ops;
extern const struct siov_backend_ops siov__backend_ram_ops;
extern const struct siov_backend_ops siov__backend_file_ops;
extern const struct siov_backend_ops siov__backend_nbd_ops;
extern const struct siov_backend_ops siov__backend_rbd_ops;
extern const struct siov_backend_ops siov__backend_mirror_ops;

/*
 * Finds the iovec that holds byte *skip of the list: returns its index (iovcnt
 * if the list is shorter) and leaves in *skip the offset inside it.
 */
int siov__iov_seek(const struct iovec *iov, int iovcnt, size_t *skip);
/* Copies len bytes from buf into the iovecs, starting skip bytes into them. */
void siov__iov_from_buf(const struct iovec *iov, int iovcnt, size_t skip, const void *buf,
			size_t len);
/* Copies len bytes out of the iovecs, starting skip bytes into them, into buf. */
void siov__iov_to_buf(const struct iovec *iov, int iovcnt, size_t skip, void *buf, size_t len);
/* Zeroes the iovecs from skip bytes in to their end. */
void siov__iov_zero_from(const struct iovec *iov, int iovcnt, size_t skip);

#endif
