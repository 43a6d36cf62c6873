/*
 * The VDCM's networks (private to lib/ctrl and the fake VDCM of the RPC unit
 * tests): the switch, the thread that reads frames from the networks' TAP
 * uplinks, and a timer on the control loop that ages learned MAC addresses.  vdcm.c owns one struct
 * vdcm_nets and hands it out through vdcm_nets_of(); the siov_vdcm_network_* calls of vdcm.h live
 * in vdcm_net.c.
 */
#ifndef SIOV_CTRL_VDCM_NET_H
#define SIOV_CTRL_VDCM_NET_H

#include "siov_internal/switch.h"
#include "siov_internal/vdcm.h"

struct siov_loop;
struct vdcm_nets;

/* loop may be NULL (unit tests): then no uplink is read and nothing ages by itself. */
int vdcm_nets_create(struct siov_loop *loop, struct vdcm_nets **out);
/* Deletes every network (their ports must be gone). */
void vdcm_nets_destroy(struct vdcm_nets *n);
struct siov_switch *vdcm_nets_switch(struct vdcm_nets *n);

/* Defined by the VDCM (vdcm.c, or the fake one). */
struct vdcm_nets *vdcm_nets_of(struct siov_vdcm *v);

#endif
