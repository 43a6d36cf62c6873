/*
 * What the RPC tests read back from a VDCM to check what a call did: counts
 * and the configuration of one backend or VDEV.  Written against the VDCM's
 * public interface only (siov_internal/vdcm.h), so the same checks run
 * against the real VDCM and against the fake one (fake_vdcm.h), and a test
 * never sees more than the RPC layer could.
 */
#ifndef SIOV_TEST_VDCM_PROBE_H
#define SIOV_TEST_VDCM_PROBE_H

#include "siov_internal/vdcm.h"

unsigned probe_backends(struct siov_vdcm *vdcm);
unsigned probe_vdevs(struct siov_vdcm *vdcm);
/* A copy of the conf of the backend or VDEV named (valid until the next call), NULL if none. */
const struct siov_backend_conf *probe_backend(struct siov_vdcm *vdcm, const char *name);
const struct siov_vdev_conf *probe_vdev(struct siov_vdcm *vdcm, const char *name);
/* The actual size of the backend / the VDEV's window; 0 if there is none. */
uint64_t probe_backend_size(struct siov_vdcm *vdcm, const char *name);

#endif
