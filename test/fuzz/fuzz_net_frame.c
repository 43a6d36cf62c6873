/*
 * fuzz_net_frame: the virtio-net frame parser, the software offloads and the
 * switch's forwarding decision (lib/net).  Each input is one frame as a
 * sender's chain would carry it, split over up to 16 buffers; it is parsed
 * with the sender's offloads and sent through a network of three ports (one
 * allow_spoof) whose receivers have different offloads, so that the same
 * frame is passed through, checksummed and segmented.  The flow hash that
 * picks a receive queue runs on every delivered frame and on every input as a
 * frame, parsed or not (it must be safe on any bytes and any split).
 *
 * Beyond what ASan sees, every packet handed to a receiver is checked: its
 * iovecs lie inside the input or the packet's scratch, lengths add up, a
 * whole frame keeps its length, a segment holds at most one MSS of payload
 * and the segments' payloads add up to the frame's; the input is never
 * written.
 *
 * Input: struct hdr below, then nsplit buffer sizes (one byte each, 0 means
 * 256), then the bytes (a virtio-net header of hdr_len, then the frame).
 */
#include <stdlib.h>
#include <string.h>

#include "fuzz_common.h"
#include "siov_internal/switch.h"

struct hdr {
	uint8_t hdr_len;     /* % 3: 12, 10 or none */
	uint8_t tx_offloads; /* SIOV_NET_OFF_* of the sender */
	uint8_t rx_offloads[3];
	uint8_t nsplit; /* % 17 */
	uint16_t mtu;
	uint8_t spoof; /* send from the allow_spoof port */
};

static struct {
	const uint8_t *in;
	size_t in_len;
	size_t segs_payload;
	uint8_t copy[70000];
} g;

struct rx {
	struct siov_port *port;
	unsigned offloads;
};

static void check_pkt(const struct siov_net_pkt *p)
{
	size_t total = 0;
	unsigned i;

	if (p->iovcnt > SIOV_NET_PKT_IOV)
		abort();
	for (i = 0; i < p->iovcnt; i++) {
		const uint8_t *b = p->iov[i].iov_base;
		size_t n = p->iov[i].iov_len;
		bool in_input = b >= g.in && b + n <= g.in + g.in_len;
		bool in_scratch = b >= p->scratch && b + n <= p->scratch + sizeof(p->scratch);

		if (!n || (!in_input && !in_scratch))
			abort();
		memcpy(g.copy, b, n); /* touch every byte */
		total += n;
	}
	if (total != p->len)
		abort();
}

static int emit(const struct siov_net_pkt *p, void *arg)
{
	const struct siov_net_frame *f = arg;

	check_pkt(p);
	if (f->gso_type && !p->hdr.gso_type) {
		if (p->len < f->hdrs_len || p->len - f->hdrs_len > f->gso_size)
			abort();
		g.segs_payload += p->len - f->hdrs_len;
	} else if (p->len != f->len) {
		abort();
	}
	return 0;
}

static int deliver(struct siov_port *port, const struct siov_net_frame *f, void *arg)
{
	struct rx *r = arg;
	static struct siov_net_pkt pkt;
	int n;

	g.segs_payload = 0;
	(void)siov_net_frame_flow_hash(f, 0x5eed);
	n = siov_net_frame_emit(f, r->offloads, &pkt, emit, (void *)f);
	if (n > 1 && g.segs_payload != f->len - f->hdrs_len)
		abort();
	return n;
}

static const struct siov_port_ops ops = {.deliver = deliver};

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static uint8_t before[SIOV_NET_HDR_LEN + SIOV_NET_MAX_FRAME + 64];
	struct siov_network_conf nc = {.name = "n"};
	struct siov_port_conf pc[3];
	struct iovec iov[17];
	struct siov_switch *sw;
	struct siov_network *net;
	struct siov_net_frame f;
	struct rx rx[3];
	struct siov_err err;
	struct hdr h;
	struct fz z;
	size_t off = 0, hl;
	unsigned i, n = 0, nsplit;

	fz_init(&z, data, size);
	fz_bytes(&z, &h, sizeof(h));
	nsplit = h.nsplit % 17u;
	hl = (size_t[]){SIOV_NET_HDR_LEN, SIOV_NET_HDR_LEN_LEGACY, 0}[h.hdr_len % 3];
	for (i = 0; i < nsplit; i++) {
		size_t sz = fz_u8(&z);

		iov[i].iov_len = sz ? sz : 256;
	}
	g.in = z.p;
	g.in_len = SIOV_MIN(z.left, sizeof(before));
	memcpy(before, g.in, g.in_len);
	for (i = 0; i < nsplit && off < g.in_len; i++, n++) {
		iov[i].iov_base = (void *)(g.in + off);
		iov[i].iov_len = SIOV_MIN(iov[i].iov_len, g.in_len - off);
		off += iov[i].iov_len;
	}
	if (off < g.in_len) {
		iov[n].iov_base = (void *)(g.in + off);
		iov[n++].iov_len = g.in_len - off;
	}

	if (siov_switch_create(&sw) < 0)
		abort();
	nc.mtu = SIOV_NET_MTU_MIN + h.mtu % (SIOV_NET_MTU_MAX - SIOV_NET_MTU_MIN + 1u);
	if (siov_network_create(sw, &nc, &net, &err) < 0)
		abort();
	memset(pc, 0, sizeof(pc));
	for (i = 0; i < 3; i++) {
		pc[i].name[0] = (char)('a' + i);
		pc[i].mac[0] = 0x52;
		pc[i].mac[5] = (uint8_t)(i + 1);
		pc[i].allow_spoof = i == 2;
		pc[i].tx_offloads = h.tx_offloads & SIOV_NET_OFF_ALL;
		rx[i].offloads = h.rx_offloads[i] & SIOV_NET_OFF_ALL;
		if (siov_port_attach(net, &pc[i], &ops, &rx[i], &rx[i].port, &err) < 0)
			abort();
	}
	/* The flow hash on the bytes as they come, before and whatever the parser says. */
	memset(&f, 0, sizeof(f));
	f.iov = iov;
	f.iovcnt = n;
	f.off = hl;
	f.len = g.in_len > hl ? g.in_len - hl : 0;
	(void)siov_net_frame_flow_hash(&f, h.mtu);
	if (siov_port_parse(rx[h.spoof & 1 ? 2 : 0].port, &f, iov, n, hl) == 0)
		siov_port_send(rx[h.spoof & 1 ? 2 : 0].port, &f, 1);
	if (memcmp(before, g.in, g.in_len))
		abort();
	for (i = 0; i < 3; i++)
		siov_port_detach(rx[i].port);
	siov_switch_destroy(sw);
	return 0;
}
