/*
 * The persisted configuration: backends and VDEVs in DIR/siovd.json, written
 * atomically (temporary file, fsync, rename, fsync of the directory) after
 * every change, and replayed through the VDCM when siovd starts.
 */
#ifndef SIOV_INTERNAL_STATE_H
#define SIOV_INTERNAL_STATE_H

#include "siov_internal/util.h"

struct siov_vdcm;

int siov_state_save(struct siov_vdcm *vdcm, const char *dir, struct siov_err *err);
/*
 * Recreates what DIR/siovd.json describes.  A missing file is no error.  An
 * entry that fails is logged and skipped (the rest still comes up); returns
 * the number of entries that failed, or -errno if the file cannot be read.
 */
int siov_state_load(struct siov_vdcm *vdcm, const char *dir, struct siov_err *err);

#endif
