/*
 * What the files of lib/net share among themselves: the TAP device behind a
 * network's uplink.  Not used outside lib/net.
 */
#ifndef SIOV_NET_IMPL_H
#define SIOV_NET_IMPL_H

#include <stdint.h>

#include "siov_internal/util.h"

/* What siovd asks of a TAP device it writes virtio-net headers to. */
#define SIOV_TAP_OFFLOADS SIOV_NET_OFF_ALL

/*
 * Opens the TAP device ifname (created if missing, non-persistent then),
 * non-blocking, with a 12-byte virtio-net header on every frame, checksum and
 * TSO offloads on, the MTU set and the link up.  Returns the fd or -errno.
 */
int siov_tap_open(const char *ifname, uint32_t mtu, struct siov_err *err);

#endif
