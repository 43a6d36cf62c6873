/*
 * A stand-in for the VDCM in the management plane's unit tests: backends and
 * VDEVs in arrays, with the same error codes the real one gives for duplicates,
 * unknown backends, busy backends, windows out of range and overlaps.  It lets
 * the RPC and state tests link and run without engines, vhost-user or I/O.
 */
#ifndef SIOV_TEST_FAKE_VDCM_H
#define SIOV_TEST_FAKE_VDCM_H

#include "siov_internal/vdcm.h"

/* Size the fake gives a file backend created with size 0. */
#define FAKE_FILE_SIZE (1ull << 30)

unsigned fake_vdcm_backends(struct siov_vdcm *vdcm);
unsigned fake_vdcm_vdevs(struct siov_vdcm *vdcm);
/* The conf of the backend or VDEV named, NULL if none. */
const struct siov_backend_conf *fake_vdcm_backend(struct siov_vdcm *vdcm, const char *name);
const struct siov_vdev_conf *fake_vdcm_vdev(struct siov_vdcm *vdcm, const char *name);
/* Makes the next backend_create fail with rc (0: stop failing). */
void fake_vdcm_fail_backend_create(struct siov_vdcm *vdcm, int rc);

#endif
