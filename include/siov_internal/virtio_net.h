/*
 * virtio-net device model: a VDEV that is a port of a network on siovd's
 * switch (switch.h).  Queue 2i receives and queue 2i+1 transmits for queue
 * pair i (the control queue stays in QEMU, which handles it for vhost-user).
 *
 * Transmit queues run on engines like block queues: process() pops frames,
 * validates them, prices them against the VDEV's QoS (packets and bytes; a
 * frame that must wait stays in the ring) and hands them to the switch, which
 * copies each, on the sender's thread, straight into the receivers' buffers.
 * Receive queues run on no engine: the device runs them itself (dev_ops
 * self_run), and whichever thread delivers a frame fills them under the
 * queue's lock.  A port with no receive buffer posted loses the frame
 * (counted); nobody waits for it.
 */
#ifndef SIOV_INTERNAL_VIRTIO_NET_H
#define SIOV_INTERNAL_VIRTIO_NET_H

#include <stdbool.h>
#include <stdint.h>

#include "siov_internal/device.h"
#include "siov_internal/qos.h"
#include "siov_internal/switch.h"
#include "siov_internal/util.h"

struct siov_net;

#define SIOV_NET_MAX_PAIRS 32

struct siov_net_conf {
	const char *name;
	struct siov_network *network;
	uint8_t mac[SIOV_ETH_ALEN];
	bool allow_spoof;
	uint16_t queue_pairs; /* 1..SIOV_NET_MAX_PAIRS */
	/*
	 * The port's own limits, applied to what it receives as a policer: a
	 * frame over them is dropped and counted as qos (a receiver cannot push
	 * back on its senders).  NULL or no limit set: no policing.
	 */
	const struct siov_qos_params *rx_qos;
};

/* Creates the device and attaches its port to the network. */
int siov_net_create(const struct siov_net_conf *conf, struct siov_net **out, struct siov_err *err);
/* Every queue must be stopped: detaches the port and frees the device. */
void siov_net_destroy(struct siov_net *net);
const struct siov_port *siov_net_port(const struct siov_net *net);
/* Control thread: new receive limits (see rx_qos), in force for the next frame. */
int siov_net_set_rx_qos(struct siov_net *net, const struct siov_qos_params *p);

/* What one receive queue took: frames the flow hash steered to it. */
struct siov_net_rxq_stats {
	unsigned index; /* the ring's: 2 * pair */
	bool running;	/* the driver runs it: it gets frames */
	uint64_t packets, bytes;
	uint64_t drops; /* steered to it but not taken (no or too small buffers); not QoS */
};

/* Any thread: the receive queues' counters, pair by pair; returns how many (<= max). */
unsigned siov_net_rxq_stats(const struct siov_net *net, struct siov_net_rxq_stats *s, unsigned max);

extern const struct siov_dev_ops siov_net_dev_ops;

#endif
