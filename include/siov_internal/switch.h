/*
 * The switch inside siovd: networks, each an L2 segment of its own (a
 * tenant), and the ports on them (net VDEVs and an optional TAP uplink).
 * Frames never cross networks.  Within one, the switch learns which port each
 * source MAC lives behind (entries age out), sends unicast frames to the
 * learned port and floods broadcast, multicast and unknown destinations to
 * every other port; a port sends only as its own MAC unless it was created
 * with allow_spoof; frames larger than the network's MTU are dropped.  Every
 * drop is counted on the port it concerns, by reason.
 *
 * A port is a table of functions: the switch calls deliver() on the thread of
 * the sender (any engine, or the uplink reader for the uplink), possibly for
 * the same port from several threads at once; deliver() never blocks (a port
 * with no room for a frame drops it, counted against itself, and the sender
 * carries on).  The port's owner serialises its own receive path.
 *
 * Threading: networks are created and deleted, ports attached and detached,
 * on the control thread; siov_port_send() runs on any thread.  Detach returns
 * only when no thread delivers to the port any more.
 */
#ifndef SIOV_INTERNAL_SWITCH_H
#define SIOV_INTERNAL_SWITCH_H

#include <stdbool.h>
#include <stdint.h>

#include "siov_internal/net_frame.h"
#include "siov_internal/util.h"

struct siov_switch;
struct siov_network;
struct siov_port;

#define SIOV_NET_MTU_DEFAULT 1500
#define SIOV_NET_MTU_MIN     68
#define SIOV_NET_MTU_MAX     65521
/* A learned MAC is forgotten after this long without a frame from it (as in Linux bridges). */
#define SIOV_NET_AGEING_NS (300ull * 1000000000ull)
/* Learned addresses per network: past this, unknown sources are not learned (flooded to). */
#define SIOV_NET_FDB_MAX    65536
#define SIOV_NET_UPLINK_MAX 24 /* "tap:" + IFNAMSIZ */

struct siov_network_conf {
	char name[SIOV_NAME_MAX];
	uint32_t mtu;			  /* bytes of IP datagram; 0 = SIOV_NET_MTU_DEFAULT */
	char uplink[SIOV_NET_UPLINK_MAX]; /* "" or "tap:IFNAME" */
};

/* Why a frame was dropped; counted on the port concerned. */
enum siov_port_drop {
	SIOV_DROP_NO_BUFFER, /* the receiver had no receive buffer posted (rx) */
	SIOV_DROP_QOS,	     /* the receiver's rate limit (rx) */
	SIOV_DROP_SPOOFED,   /* a source MAC not the port's own (tx) */
	SIOV_DROP_TOO_BIG,   /* larger than the MTU or than the receiver's buffers (tx or rx) */
	SIOV_DROP_MALFORMED, /* bad virtio-net header or frame (tx) */
	SIOV_DROP_NREASONS
};
const char *siov_port_drop_name(enum siov_port_drop reason);

struct siov_port_stats {
	uint64_t rx_packets, rx_bytes, tx_packets, tx_bytes;
	uint64_t rx_drops[SIOV_DROP_NREASONS], tx_drops[SIOV_DROP_NREASONS];
};

struct siov_port_ops {
	/*
	 * Takes one frame for this port; see siov_net_frame_emit() to turn it
	 * into the packets the port can take.  Returns the number of packets it
	 * delivered (they count in rx_packets/rx_bytes), or -ENOBUFS (no receive
	 * buffer), -EDQUOT (rate limit) or -EMSGSIZE (too big for its buffers),
	 * counted by the switch as the drop it names.
	 */
	int (*deliver)(struct siov_port *port, const struct siov_net_frame *f, void *arg);
};

struct siov_port_conf {
	char name[SIOV_NAME_MAX];
	uint8_t mac[SIOV_ETH_ALEN];
	bool allow_spoof;     /* may send from any unicast MAC (learned, never static) */
	unsigned tx_offloads; /* SIOV_NET_OFF_*: what the sender may ask of us (HOST_* features) */
};

int siov_switch_create(struct siov_switch **out);
/* Every network must have been deleted. */
void siov_switch_destroy(struct siov_switch *sw);

/* Opens the uplink too (a TAP device, created if missing). */
int siov_network_create(struct siov_switch *sw, const struct siov_network_conf *conf,
			struct siov_network **out, struct siov_err *err);
/* -EBUSY while ports other than the uplink are attached. */
int siov_network_delete(struct siov_switch *sw, const char *name, struct siov_err *err);
struct siov_network *siov_network_find(struct siov_switch *sw, const char *name);
const struct siov_network_conf *siov_network_conf(const struct siov_network *net);

struct siov_network_info {
	const struct siov_network_conf *conf;
	unsigned ports;			/* attached, the uplink included */
	unsigned learned;		/* MAC addresses in the table */
	const struct siov_port *uplink; /* NULL without one */
};
typedef void (*siov_network_info_cb)(const struct siov_network_info *info, void *arg);
/* In creation order. */
void siov_network_foreach(struct siov_switch *sw, siov_network_info_cb cb, void *arg);
unsigned siov_switch_networks(const struct siov_switch *sw);

/* Forgets learned addresses older than SIOV_NET_AGEING_NS (lookups ignore them anyway). */
void siov_network_age(struct siov_network *net, uint64_t now);

/* The uplink's fd to watch for frames from the host (-1 without one), and its reader. */
int siov_network_uplink_fd(const struct siov_network *net);
/*
 * Reads and forwards up to budget frames from the uplink; returns how many it
 * read.  One thread at a time (it reads into the network's one frame buffer).
 */
unsigned siov_network_uplink_rx(struct siov_network *net, unsigned budget, uint64_t now);

/* -EEXIST for a MAC another port of the network owns. */
int siov_port_attach(struct siov_network *net, const struct siov_port_conf *conf,
		     const struct siov_port_ops *ops, void *arg, struct siov_port **out,
		     struct siov_err *err);
/* Waits for senders delivering to the port, forgets its addresses, frees it. */
void siov_port_detach(struct siov_port *port);

/*
 * Forwards a frame the port sent (parsed by the caller with the port's
 * tx_offloads and the network's MTU, see siov_port_parse) at time now (ns).
 * Counts the frame as sent or dropped; returns the number of ports that took it.
 */
unsigned siov_port_send(struct siov_port *port, const struct siov_net_frame *f, uint64_t now);
/* Parses a sent frame for this port; a malformed or too big one is counted and -errno returned. */
int siov_port_parse(struct siov_port *port, struct siov_net_frame *f, const struct iovec *iov,
		    unsigned iovcnt, size_t hdr_len);
void siov_port_count_drop(struct siov_port *port, bool rx, enum siov_port_drop reason);
/* What the port's sender may ask of the switch, once negotiated (its transmit path stopped). */
void siov_port_set_tx_offloads(struct siov_port *port, unsigned offloads);
void siov_port_get_stats(const struct siov_port *port, struct siov_port_stats *s);
const struct siov_port_conf *siov_port_conf(const struct siov_port *port);
struct siov_network *siov_port_network(const struct siov_port *port);

#endif
