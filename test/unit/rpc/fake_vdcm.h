/*
 * A stand-in for the VDCM, kept only where a test needs an answer the real
 * one cannot give on purpose: an injected failure, statistics with known
 * non-zero values (test_rpc_fake.c), and something cheap behind the
 * transport and siovctl tests.  Backends and VDEVs live in arrays.  The RPC
 * tests that check what users get (rpc_handle, rpc_qos, rpc_state) run
 * against the real VDCM; read state back through vdcm_probe.h.
 */
#ifndef SIOV_TEST_FAKE_VDCM_H
#define SIOV_TEST_FAKE_VDCM_H

#include "siov_internal/vdcm.h"

/* Size the fake gives a file backend created with size 0. */
#define FAKE_FILE_SIZE (1ull << 30)

/* Makes the next backend_create fail with rc (0: stop failing). */
void fake_vdcm_fail_backend_create(struct siov_vdcm *vdcm, int rc);

#endif
