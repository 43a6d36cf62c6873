/*
 * What the backends under lib/backend/ share and nobody else needs: their
 * ops tables (and the iovec helpers of lib/util they copy data with).
 */
#ifndef SIOV_BACKEND_IMPL_H
#define SIOV_BACKEND_IMPL_H

#include <stddef.h>
#include <stdint.h>
#include <sys/uio.h>

#include "siov_internal/backend_module.h"
#include "siov_internal/iov.h"

extern const struct siov_backend_ops siov__backend_null_ops;
extern const struct siov_backend_ops siov__backend_ram_ops;
extern const struct siov_backend_ops siov__backend_file_ops;
extern const struct siov_backend_ops siov__backend_nbd_ops;
extern const struct siov_backend_ops siov__backend_rbd_ops;
extern const struct siov_backend_ops siov__backend_mirror_ops;

#endif
