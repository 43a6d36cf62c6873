/*
 * A hostile virtio-net front end against a real siovd: six ports on one
 * network, driven over their vhost-user sockets by netfe.c.  Two of them, a
 * and b, behave and exchange verified frames between the attacks; "bad"
 * sends frames that are too big, empty, headerless or with garbage in every
 * header field, and chains and receive buffers that break the rules; "flood"
 * keeps its transmit ring full against its pps limit while a keeps sending to
 * b; "pol" receives the flood over its own limit (the receive policer); and
 * "nobuf" never posts a receive buffer.  Every attack must end counted as
 * the drop it is, or with bad broken and a new session working, and with
 * siovd alive, a and b exchanging frames, and nothing reaching b that should
 * not.
 *
 * Usage: hostile-net SIOVD SIOVCTL.  Prints "N passed, N failed".
 */
#include <errno.h>
#include <arpa/inet.h>
#include <linux/if_packet.h>
#include <net/ethernet.h>
#include <net/if.h>
#include <poll.h>
#include <pthread.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "harness.h"
#include "netfe.h"

#define FLOOD_PPS   500u
#define POL_PPS	    100u
#define FLOOD_MS    1500
#define A_EVERY_MS  10
#define REASON_LEN  256
#define HDR_ETH_IP4 34 /* Ethernet + IPv4 without options */

enum { A, B, BAD, FLOOD, POL, NOBUF, NPORTS };

/* And u, on the network with the uplink (case_uplink). */
static const char *const names[NPORTS + 1] = {"a", "b", "bad", "flood", "pol", "nobuf", "u"};
static const uint8_t macs[NPORTS][6] = {{0x52, 0x54, 0, 0, 0, 0x0a}, {0x52, 0x54, 0, 0, 0, 0x0b},
					{0x52, 0x54, 0, 0, 0, 0xbd}, {0x52, 0x54, 0, 0, 0, 0xf1},
					{0x52, 0x54, 0, 0, 0, 0x0c}, {0x52, 0x54, 0, 0, 0, 0x0e}};
static const uint8_t bcast[6] = {0xff, 0xff, 0xff, 0xff, 0xff, 0xff};
/* bad may ask for checksum and TSO offloads, so that garbage in those fields is parsed. */
static const uint64_t bad_features =
    NFE_F(VIRTIO_NET_F_MRG_RXBUF) | NFE_F(VIRTIO_NET_F_CSUM) | NFE_F(VIRTIO_NET_F_HOST_TSO4);

/* One more: u, on the network with the uplink. */
static struct nfe P[NPORTS + 1];
static char socks[NPORTS + 1][128];
static uint32_t seq = 1;

static int64_t ms_now(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* ---- counters from vdev_stats ---- */

/* The number after "key": at or after p, or UINT64_MAX. */
static uint64_t json_u64(const char *p, const char *key)
{
	char k[64];

	snprintf(k, sizeof(k), "\"%s\"", key);
	if (!p || !(p = strstr(p, k)))
		return UINT64_MAX;
	p += strlen(k);
	while (*p == ' ' || *p == ':')
		p++;
	return strtoull(p, NULL, 10);
}

/* A port counter: "rx_packets", or "tx_drops.too_big" for a drop by reason. */
static uint64_t stat_of(int port, const char *what)
{
	char out[16384], dir[16];
	const char *dot = strchr(what, '.'), *p;

	if (ctl(out, sizeof(out), "vdev_stats", "--name", names[port], NULL))
		return UINT64_MAX;
	p = strstr(out, "\"net\"");
	if (!dot)
		return json_u64(p, what);
	snprintf(dir, sizeof(dir), "%.*s", (int)(dot - what), what);
	return json_u64(p ? strstr(p, dir) : NULL, dot + 1);
}

/* A counter of the port's first receive queue ("packets", "drops"), from net.rx_queues. */
static uint64_t rxq_stat_of(int port, const char *what)
{
	char out[16384];

	if (ctl(out, sizeof(out), "vdev_stats", "--name", names[port], NULL))
		return UINT64_MAX;
	return json_u64(strstr(out, "\"rx_queues\""), what);
}

static bool bad_state_is(const char *want, char *reason, size_t rsz)
{
	char state[64] = "";

	vdev_state("bad", state, sizeof(state), reason, rsz);
	return !strcmp(state, want);
}

/* ---- what must keep working ---- */

/* The next frame on port `to` from MAC `from`, skipping others (floods from the attacks). */
static bool expect_from(int to, const uint8_t *from, uint32_t want_seq, uint32_t len)
{
	int64_t deadline = ms_now() + 3000;
	struct nfe_rx rx;

	while (ms_now() < deadline && nfe_rx_next(&P[to], &rx, 100) == 1) {
		uint32_t got = 0;
		bool ok = nfe_frame_check(&rx, from, len, &got) && got == want_seq;

		nfe_rx_done(&P[to], &rx);
		if (ok)
			return true;
	}
	return false;
}

/* a -> b and b -> a, each frame checked byte for byte. */
static bool exchange(void)
{
	uint32_t s1 = seq++, s2 = seq++;

	nfe_rx_drain(&P[A]);
	nfe_rx_drain(&P[B]);
	if (nfe_send(&P[A], macs[B], s1, 300) || !expect_from(B, macs[A], s1, 300))
		return false;
	return nfe_send(&P[B], macs[A], s2, 1514) == 0 && expect_from(A, macs[B], s2, 1514);
}

static void survived(const char *name)
{
	check(daemon_alive(), "%s: siovd alive", name);
	check(exchange(), "%s: a and b still exchange verified frames", name);
}

static int open_port(int i, bool post_rx)
{
	return nfe_open(&P[i], socks[i], macs[i], i == BAD ? bad_features : 0, post_rx, 5000);
}

/* bad broken with a reason mentioning why; a new session on it delivers again. */
static void broken_then_recovers(const char *name, const char *why)
{
	char reason[REASON_LEN] = "";
	int64_t deadline = ms_now() + 3000;
	uint32_t s = seq++;
	bool broken;

	while (!(broken = bad_state_is("broken", reason, sizeof(reason))) && ms_now() < deadline)
		usleep(20000);
	check(broken, "%s: bad is broken", name);
	check(strstr(reason, why) != NULL, "%s: broken_reason says \"%s\" (\"%s\")", name, why,
	      reason);
	nfe_close(&P[BAD]);
	check(open_port(BAD, true) == 0, "%s: new session on bad", name);
	nfe_rx_drain(&P[B]);
	check(nfe_send(&P[BAD], macs[B], s, 200) == 0 && expect_from(B, macs[BAD], s, 200),
	      "%s: bad's new session delivers a frame to b", name);
	survived(name);
}

/* ---- frames from bad that must be dropped and counted ---- */

/* Sends the chain from bad; it must come back, counted as `counter`, with nothing at b. */
static void dropped(const char *name, const struct fe_buf *bufs, unsigned n, const char *counter)
{
	uint64_t before = stat_of(BAD, counter), b_rx = stat_of(B, "rx_packets");
	char reason[REASON_LEN];

	nfe_rx_drain(&P[B]);
	nfe_tx_chain(&P[BAD], bufs, n);
	check(nfe_tx_wait(&P[BAD], 3000) == 0, "%s: the chain came back", name);
	check(stat_of(BAD, counter) == before + 1, "%s: counted as %s", name, counter);
	check(stat_of(B, "rx_packets") == b_rx && nfe_rx_drain(&P[B]) == 0, "%s: nothing reached b",
	      name);
	check(bad_state_is("running", reason, sizeof(reason)), "%s: bad still running", name);
	survived(name);
}

/* A frame of len bytes (Ethernet) with header h, from bad, at NFE_BIG_AT. */
static struct fe_buf big_frame(const uint8_t *dst, uint32_t len, const struct virtio_net_hdr *h)
{
	uint8_t *p = P[BAD].fe.mem + NFE_BIG_AT;

	nfe_frame(p, dst, macs[BAD], seq++, len);
	if (h)
		memcpy(p, h, sizeof(*h));
	return (struct fe_buf){fe_addr(&P[BAD].fe, NFE_BIG_AT), NFE_HDR + len, 0};
}

static void case_sizes(void)
{
	struct fe_buf b[3];

	b[0] = big_frame(macs[B], 1515, NULL);
	dropped("frame one byte past the MTU", b, 1, "tx_drops.too_big");
	b[0] = big_frame(macs[B], 70000, NULL);
	dropped("70,000-byte frame", b, 1, "tx_drops.too_big");
	/* The same over two descriptors, the header apart. */
	b[1] = (struct fe_buf){b[0].addr + NFE_HDR, 70000, 0};
	b[0].len = NFE_HDR;
	dropped("70,000-byte frame behind a separate header", b, 2, "tx_drops.too_big");
	b[0] = (struct fe_buf){fe_addr(&P[BAD].fe, NFE_BIG_AT), 0, 0};
	dropped("zero-length descriptor as the whole chain", b, 1, "tx_drops.malformed");
	b[0].len = NFE_HDR;
	dropped("header and no frame", b, 1, "tx_drops.malformed");
	b[0].len = 7;
	dropped("7 bytes: not even a header", b, 1, "tx_drops.malformed");
	b[0] = big_frame(macs[B], 13, NULL);
	dropped("header and 13 bytes of Ethernet", b, 1, "tx_drops.malformed");
	b[0] = big_frame(macs[B], 100, NULL);
	b[1] = b[0];
	b[1].len = 0;
	b[2] = (struct fe_buf){0, 0, 0};
	b[0].len = 5;
	dropped("5-byte header then a zero-length descriptor", b, 2, "tx_drops.malformed");
}

/* A TCPv4 frame of len bytes at NFE_BIG_AT with a hand-made header; broadcast. */
static struct fe_buf tso_frame(uint32_t len, const struct virtio_net_hdr *h, uint8_t ihl)
{
	struct fe_buf b = big_frame(bcast, len, h);
	uint8_t *ip = P[BAD].fe.mem + NFE_BIG_AT + NFE_HDR + 14;

	ip[-2] = 0x08;
	ip[-1] = 0x00;
	memset(ip, 0, 40);
	ip[0] = (uint8_t)(0x40 | ihl);
	ip[2] = (uint8_t)((len - 14) >> 8);
	ip[3] = (uint8_t)(len - 14);
	ip[8] = 64;
	ip[9] = 6; /* TCP */
	ip[20 + 12] = 5 << 4;
	return b;
}

static void case_headers(void)
{
	struct virtio_net_hdr h = {0};
	struct fe_buf b;

	h.flags = 0x80;
	b = big_frame(macs[B], 100, &h);
	dropped("unknown header flags", &b, 1, "tx_drops.malformed");
	h = (struct virtio_net_hdr){.gso_type = 0x55};
	b = big_frame(macs[B], 100, &h);
	dropped("gso_type 0x55", &b, 1, "tx_drops.malformed");
	h = (struct virtio_net_hdr){
	    .flags = VIRTIO_NET_HDR_F_NEEDS_CSUM, .csum_start = 0xfff0, .csum_offset = 6};
	b = big_frame(macs[B], 100, &h);
	dropped("csum_start past the frame", &b, 1, "tx_drops.malformed");
	h.csum_start = 20;
	h.csum_offset = 0xffff;
	b = big_frame(macs[B], 100, &h);
	dropped("csum_offset past the frame", &b, 1, "tx_drops.malformed");
	h = (struct virtio_net_hdr){.flags = VIRTIO_NET_HDR_F_NEEDS_CSUM,
				    .gso_type = VIRTIO_NET_HDR_GSO_TCPV4,
				    .gso_size = 1400,
				    .hdr_len = 0xffff,
				    .csum_start = HDR_ETH_IP4,
				    .csum_offset = 16};
	b = tso_frame(60, &h, 15);
	dropped("TSO frame whose IPv4 header runs past the frame", &b, 1, "tx_drops.malformed");
	b = tso_frame(4000, &h, 5);
	P[BAD].fe.mem[NFE_BIG_AT + NFE_HDR + 14 + 9] = 17;
	dropped("TSO frame whose IPv4 carries UDP", &b, 1, "tx_drops.malformed");
	h.gso_size = 1;
	b = tso_frame(4000, &h, 5);
	dropped("TSO frame with gso_size 1", &b, 1, "tx_drops.malformed");
	h.gso_size = 1400;
	h.flags = 0;
	b = tso_frame(4000, &h, 5);
	dropped("TSO frame without NEEDS_CSUM", &b, 1, "tx_drops.malformed");
	h.flags = VIRTIO_NET_HDR_F_NEEDS_CSUM;
	h.gso_size = 60000;
	b = tso_frame(4000, &h, 5);
	dropped("TSO frame whose segments exceed the MTU", &b, 1, "tx_drops.too_big");
}

/*
 * Lies that must not matter: hdr_len, and num_buffers on transmit, are
 * ignored.  A TSO frame with a lying hdr_len reaches b cut into MSS-sized
 * segments; a frame claiming 1000 buffers reaches b as one.
 */
static void case_lies(void)
{
	const char *name = "TSO frame with hdr_len 0xffff";
	struct virtio_net_hdr_mrg_rxbuf m = {0};
	struct virtio_net_hdr h = {.flags = VIRTIO_NET_HDR_F_NEEDS_CSUM,
				   .gso_type = VIRTIO_NET_HDR_GSO_TCPV4,
				   .gso_size = 1400,
				   .hdr_len = 0xffff,
				   .csum_start = HDR_ETH_IP4,
				   .csum_offset = 16};
	struct fe_buf b = tso_frame(4054, &h, 5);
	uint64_t before = stat_of(B, "rx_packets");
	struct nfe_rx rx;
	unsigned segs = 0;
	uint32_t s;

	nfe_rx_drain(&P[B]);
	nfe_tx_chain(&P[BAD], &b, 1);
	check(nfe_tx_wait(&P[BAD], 3000) == 0, "%s: the chain came back", name);
	while (nfe_rx_next(&P[B], &rx, 500) == 1) {
		segs += rx.len <= NFE_HDR + 1514u;
		nfe_rx_done(&P[B], &rx);
	}
	/* 4000 bytes of TCP payload in 1400-byte segments: 3 of them, each within the MTU. */
	check(segs == 3 && stat_of(B, "rx_packets") == before + 3,
	      "%s: b got 3 segments within the MTU (%u)", name, segs);
	survived(name);

	name = "num_buffers 1000 on transmit";
	s = seq++;
	b = big_frame(macs[B], 600, NULL);
	memcpy(P[BAD].fe.mem + NFE_BIG_AT + NFE_HDR + 14, &s, 4);
	pattern_fill(P[BAD].fe.mem + NFE_BIG_AT + NFE_HDR + 18, 600 - 18, s);
	m.num_buffers = 1000;
	memcpy(P[BAD].fe.mem + NFE_BIG_AT, &m, sizeof(m));
	nfe_rx_drain(&P[B]);
	nfe_tx_chain(&P[BAD], &b, 1);
	check(nfe_tx_wait(&P[BAD], 3000) == 0 && expect_from(B, macs[BAD], s, 600),
	      "%s: b got the frame whole, in one buffer", name);

	name = "header split over three descriptors";
	s = seq++;
	{
		struct fe_buf v[4];
		uint64_t at = fe_addr(&P[BAD].fe, NFE_BIG_AT);

		nfe_frame(P[BAD].fe.mem + NFE_BIG_AT, macs[B], macs[BAD], s, 400);
		v[0] = (struct fe_buf){at, 4, 0};
		v[1] = (struct fe_buf){at + 4, 4, 0};
		v[2] = (struct fe_buf){at + 8, 10, 0};
		v[3] = (struct fe_buf){at + 18, NFE_HDR + 400 - 18, 0};
		nfe_tx_chain(&P[BAD], v, 4);
	}
	check(nfe_tx_wait(&P[BAD], 3000) == 0 && expect_from(B, macs[BAD], s, 400),
	      "%s: b got the frame whole", name);
}

/* ---- chains and buffers that break bad's queues ---- */

static void case_tx_violations(void)
{
	struct nring *t = &P[BAD].q[1];
	struct fe_buf b = {0x1000, 100, 0};

	nfe_tx_chain(&P[BAD], &b, 1);
	broken_then_recovers("transmit descriptor outside the memory table", "outside");
	t = &P[BAD].q[1];
	t->desc[0] = (struct vring_desc){fe_addr(&P[BAD].fe, NFE_TX_AT), 12, VRING_DESC_F_NEXT, 1};
	t->desc[1] = (struct vring_desc){fe_addr(&P[BAD].fe, NFE_TX_AT), 60, VRING_DESC_F_NEXT, 0};
	nfe_push(&P[BAD], 1, 0);
	broken_then_recovers("transmit descriptor loop", "loop");
	b = big_frame(macs[B], 100, NULL);
	b.flags = VRING_DESC_F_WRITE;
	nfe_tx_chain(&P[BAD], &b, 1);
	broken_then_recovers("device-writable descriptor on transmit", "device-writable");
}

/*
 * Indirect tables on transmit: a frame in 40 pieces arrives whole; a table of
 * 300 entries (more segments than siovd takes) breaks bad only.
 */
#define IND_AT (NFE_BIG_AT + 0x40000u)

/* A receive buffer that is an indirect table of 8 scattered 256-byte pieces. */
static void rx_indirect(void)
{
	const char *name = "receive buffer in an 8-entry indirect table";
	struct vring_desc *t = (void *)(P[BAD].fe.mem + IND_AT + 0x8000);
	struct nring *r = &P[BAD].q[0];
	uint64_t piece0 = IND_AT + 0x10000;
	uint8_t got[8 * 256];
	uint32_t s = seq++, gs = 0, i;
	int64_t deadline;
	struct nfe_rx rx = {got, 0, 0};
	bool ok;

	nfe_close(&P[BAD]);
	open_port(BAD, false);
	for (i = 0; i < 8; i++)
		t[i] = (struct vring_desc){
		    fe_addr(&P[BAD].fe, piece0 + i * 512u), 256,
		    (uint16_t)(VRING_DESC_F_WRITE | (i < 7 ? VRING_DESC_F_NEXT : 0)),
		    (uint16_t)(i + 1)};
	nfe_rx_post(&P[BAD], 0, fe_addr(&P[BAD].fe, IND_AT + 0x8000), 8 * 16,
		    VRING_DESC_F_INDIRECT);
	ok = nfe_send(&P[A], bcast, s, 1514) == 0;
	for (deadline = ms_now() + 2000; ok && r->used->idx == 0 && ms_now() < deadline;)
		usleep(1000);
	if (ok && r->used->idx == 1 && r->used->ring[0].id == 0) {
		rx.len = r->used->ring[0].len;
		for (i = 0; i < 8; i++)
			memcpy(got + i * 256, P[BAD].fe.mem + piece0 + i * 512u, 256);
		ok = rx.len <= sizeof(got) && nfe_frame_check(&rx, macs[A], 1514, &gs) && gs == s;
	} else {
		ok = false;
	}
	check(ok, "%s: a's 1514-byte broadcast arrives whole (%u bytes used)", name, rx.len);
	nfe_close(&P[BAD]);
	check(open_port(BAD, true) == 0, "%s: new session on bad", name);
}

static void case_indirect(void)
{
	const char *name = "transmit frame in a 40-entry indirect table";
	struct vring_desc *t = (void *)(P[BAD].fe.mem + IND_AT);
	uint64_t at = fe_addr(&P[BAD].fe, NFE_BIG_AT);
	uint32_t s = seq++, i, piece = (NFE_HDR + 400) / 40;
	struct fe_buf b = {fe_addr(&P[BAD].fe, IND_AT), 40 * 16, VRING_DESC_F_INDIRECT};

	nfe_frame(P[BAD].fe.mem + NFE_BIG_AT, macs[B], macs[BAD], s, 400);
	for (i = 0; i < 40; i++)
		t[i] = (struct vring_desc){
		    at + i * piece, i == 39 ? NFE_HDR + 400 - 39 * piece : piece,
		    (uint16_t)(i < 39 ? VRING_DESC_F_NEXT : 0), (uint16_t)(i + 1)};
	nfe_rx_drain(&P[B]);
	nfe_tx_chain(&P[BAD], &b, 1);
	check(nfe_tx_wait(&P[BAD], 3000) == 0 && expect_from(B, macs[BAD], s, 400),
	      "%s: b got the frame whole", name);
	rx_indirect();
	name = "transmit indirect table of 300 one-byte entries";
	for (i = 0; i < 300; i++)
		t[i] = (struct vring_desc){at + i, 1, (uint16_t)(i < 299 ? VRING_DESC_F_NEXT : 0),
					   (uint16_t)(i + 1)};
	b.len = 300 * 16;
	nfe_tx_chain(&P[BAD], &b, 1);
	broken_then_recovers(name, "segments");
}

/* a broadcasts: b must get it whatever bad's receive ring holds. */
static void a_broadcasts(const char *name)
{
	uint32_t s = seq++;

	nfe_rx_drain(&P[B]);
	check(nfe_send(&P[A], bcast, s, 100) == 0 && expect_from(B, macs[A], s, 100),
	      "%s: a's broadcast reached b", name);
}

static void case_rx_violations(void)
{
	struct nring *r;

	/* A fresh session whose receive ring holds only the bad buffer. */
	nfe_close(&P[BAD]);
	open_port(BAD, false);
	nfe_rx_post(&P[BAD], 0, fe_addr(&P[BAD].fe, NFE_RXBUF_AT), NFE_RXBUF, 0);
	a_broadcasts("device-readable receive buffer");
	broken_then_recovers("device-readable receive buffer", "device-writable");
	nfe_close(&P[BAD]);
	open_port(BAD, false);
	nfe_rx_post(&P[BAD], 0, 0x1000, NFE_RXBUF, VRING_DESC_F_WRITE);
	a_broadcasts("receive buffer outside the memory table");
	broken_then_recovers("receive buffer outside the memory table", "outside");
	nfe_close(&P[BAD]);
	open_port(BAD, false);
	r = &P[BAD].q[0];
	r->desc[0] = (struct vring_desc){fe_addr(&P[BAD].fe, NFE_RXBUF_AT), 64,
					 VRING_DESC_F_WRITE | VRING_DESC_F_NEXT, 1};
	r->desc[1] = (struct vring_desc){fe_addr(&P[BAD].fe, NFE_RXBUF_AT + 64), 64,
					 VRING_DESC_F_WRITE | VRING_DESC_F_NEXT, 0};
	nfe_push(&P[BAD], 0, 0);
	a_broadcasts("receive descriptor loop");
	broken_then_recovers("receive descriptor loop", "loop");
}

/*
 * bad's receive ring with MRG_RXBUF and tiny buffers: a frame needing more
 * than are posted is dropped as no_buffer and leaves them all there; then a
 * small frame and a full-size one arrive spread over them, num_buffers right,
 * the bytes whole when put back together.
 */
#define TINY	32u
#define TINY_AT (NFE_BIG_AT + 0x80000u)

static bool tiny_frame(uint32_t len, uint16_t first, unsigned *used_out)
{
	struct nring *r = &P[BAD].q[0];
	uint8_t got[NFE_HDR + 1514];
	struct virtio_net_hdr_mrg_rxbuf h;
	size_t have = 0;
	unsigned k = 0;
	uint32_t s = seq++, gs;
	struct nfe_rx rx;

	if (nfe_send(&P[A], bcast, s, len))
		return false;
	while (have < NFE_HDR + len && k < NFE_QSIZE) {
		int64_t deadline = ms_now() + 2000;
		struct vring_used_elem e;

		while (__atomic_load_n(&r->used->idx, __ATOMIC_ACQUIRE) == r->used_seen)
			if (ms_now() > deadline)
				return false;
		e = r->used->ring[r->used_seen++ % NFE_QSIZE];
		if (e.id != (uint16_t)(first + k) || e.len > TINY || have + e.len > sizeof(got))
			return false;
		memcpy(got + have, P[BAD].fe.mem + TINY_AT + (size_t)e.id * TINY, e.len);
		have += e.len;
		k++;
	}
	memcpy(&h, got, sizeof(h));
	rx = (struct nfe_rx){got, (uint32_t)have, 0};
	*used_out = k;
	/* nfe_frame_check wants num_buffers 1: it is checked here instead. */
	((struct virtio_net_hdr_mrg_rxbuf *)got)->num_buffers = 1;
	return h.num_buffers == k && nfe_frame_check(&rx, macs[A], len, &gs) && gs == s;
}

static void case_mrg(void)
{
	const char *name = "MRG_RXBUF receive ring of 32-byte buffers";
	uint64_t nb = stat_of(BAD, "rx_drops.no_buffer");
	unsigned used = 0, first = 0;
	uint16_t i;
	bool ok;

	nfe_close(&P[BAD]);
	open_port(BAD, false);
	for (i = 0; i < 10; i++)
		nfe_rx_post(&P[BAD], i, fe_addr(&P[BAD].fe, TINY_AT + (size_t)i * TINY), TINY,
			    VRING_DESC_F_WRITE);
	nfe_rx_drain(&P[B]);
	i = (uint16_t)seq++;
	check(nfe_send(&P[A], bcast, i, 1514) == 0 && expect_from(B, macs[A], i, 1514),
	      "%s: a's 1514-byte broadcast reached b", name);
	check(stat_of(BAD, "rx_drops.no_buffer") == nb + 1 && P[BAD].q[0].used->idx == 0,
	      "%s: a frame larger than 10 of them is dropped, the buffers stay", name);
	ok = tiny_frame(100, 0, &used);
	check(ok && used == 4, "%s: a 100-byte frame arrives whole over 4 buffers (%u)", name,
	      used);
	first = used;
	for (i = 10; i < NFE_QSIZE; i++)
		nfe_rx_post(&P[BAD], i, fe_addr(&P[BAD].fe, TINY_AT + (size_t)i * TINY), TINY,
			    VRING_DESC_F_WRITE);
	ok = tiny_frame(1514, (uint16_t)first, &used);
	check(ok && used == 48, "%s: a 1514-byte frame arrives whole over 48 buffers (%u)", name,
	      used);
	nfe_close(&P[BAD]);
	check(open_port(BAD, true) == 0, "%s: new session on bad", name);
	survived(name);
}

/* ---- a flood beside a rate-limited neighbour, a policed receiver, a port without buffers ---- */

struct flood_tally {
	unsigned a_sent, a_at_b, flood_at_b;
};

static void flood_step(struct flood_tally *t, int64_t *next_a, bool flooding)
{
	struct nfe_rx rx;
	uint32_t s;

	/* flood keeps its ring full: QoS holds what is over the limit in it. */
	while (flooding && nfe_tx_inflight(&P[FLOOD]) < NFE_TXSLOTS - 1) {
		uint64_t addr;
		uint8_t *p = nfe_tx_slot(&P[FLOOD], &addr);

		nfe_frame(p, bcast, macs[FLOOD], 0, 100);
		nfe_tx_chain(&P[FLOOD], &(struct fe_buf){addr, NFE_HDR + 100, 0}, 1);
	}
	if (ms_now() >= *next_a && nfe_tx_inflight(&P[A]) < NFE_TXSLOTS - 1) {
		uint64_t addr;
		uint8_t *p = nfe_tx_slot(&P[A], &addr);

		nfe_frame(p, macs[B], macs[A], seq + t->a_sent, 200);
		nfe_tx_chain(&P[A], &(struct fe_buf){addr, NFE_HDR + 200, 0}, 1);
		t->a_sent++;
		*next_a += A_EVERY_MS;
	}
	while (nfe_rx_next(&P[B], &rx, 0) == 1) {
		if (nfe_frame_check(&rx, macs[A], 200, &s))
			t->a_at_b++;
		else
			t->flood_at_b += !memcmp(rx.buf + NFE_HDR + 6, macs[FLOOD], 6);
		nfe_rx_done(&P[B], &rx);
	}
	nfe_rx_drain(&P[POL]);
	nfe_rx_drain(&P[A]);
}

/* Meanwhile bad comes and goes: its queues stop and start under the flood's deliveries. */
struct churn {
	bool stop;
	unsigned sessions;
};

static void *churn_main(void *arg)
{
	struct churn *c = arg;

	while (!__atomic_load_n(&c->stop, __ATOMIC_RELAXED)) {
		nfe_close(&P[BAD]);
		c->sessions += open_port(BAD, true) == 0;
		usleep(50000);
	}
	return NULL;
}

static void case_flood(void)
{
	const char *name = "flood beside a rate-limited neighbour";
	uint64_t f0 = stat_of(FLOOD, "tx_packets"), nb0 = stat_of(NOBUF, "rx_drops.no_buffer");
	uint64_t pol0 = stat_of(POL, "rx_packets"), polq0 = stat_of(POL, "rx_drops.qos");
	struct flood_tally t = {0};
	int64_t start = ms_now(), next_a = start, end = start + FLOOD_MS;
	uint64_t sent, pol, polq, nb;
	double secs;

	struct churn churn = {0};
	pthread_t ct;
	bool churning = pthread_create(&ct, NULL, churn_main, &churn) == 0;

	while (ms_now() < end) {
		flood_step(&t, &next_a, true);
		usleep(200);
	}
	secs = (double)(ms_now() - start) / 1000.0;
	if (churning) {
		__atomic_store_n(&churn.stop, true, __ATOMIC_RELAXED);
		pthread_join(ct, NULL);
	}
	check(churn.sessions > 0, "%s: bad reconnected %u times meanwhile", name, churn.sessions);
	/* What is still in the rings (held by QoS) drains within a few tens of ms. */
	for (int64_t quiet = ms_now() + 300; ms_now() < quiet;)
		flood_step(&t, &(int64_t){INT64_MAX}, false);
	seq += t.a_sent;
	sent = stat_of(FLOOD, "tx_packets") - f0;
	pol = stat_of(POL, "rx_packets") - pol0;
	polq = stat_of(POL, "rx_drops.qos") - polq0;
	nb = stat_of(NOBUF, "rx_drops.no_buffer") - nb0;
	note("%s: %.2f s: flood sent %llu (limit %u/s), b got %u of them; a sent %u, b got %u; "
	     "pol got %llu and dropped %llu for qos (limit %u/s); nobuf lost %llu",
	     name, secs, (unsigned long long)sent, FLOOD_PPS, t.flood_at_b, t.a_sent, t.a_at_b,
	     (unsigned long long)pol, (unsigned long long)polq, POL_PPS, (unsigned long long)nb);
	/* The bucket starts full (a burst of a tenth of the limit); the extra 0.3 s of draining
	 * too. */
	check(sent >= FLOOD_PPS / 10 &&
		  sent <= (uint64_t)(FLOOD_PPS * (secs + 0.3) * 1.1) + FLOOD_PPS / 10,
	      "%s: flood's pps limit holds (%llu frames in %.2f s)", name, (unsigned long long)sent,
	      secs);
	check(t.a_sent > 0 && t.a_at_b == t.a_sent, "%s: every frame of a reached b (%u of %u)",
	      name, t.a_at_b, t.a_sent);
	check(t.flood_at_b == sent, "%s: b got every frame flood sent (%u of %llu)", name,
	      t.flood_at_b, (unsigned long long)sent);
	check(pol <= (uint64_t)(POL_PPS * (secs + 0.3) * 1.1) + POL_PPS / 10 + t.a_sent && polq > 0,
	      "%s: pol's receive policer drops what is over its limit (%llu in, %llu dropped)",
	      name, (unsigned long long)pol, (unsigned long long)polq);
	check(nb >= sent, "%s: nobuf lost every frame as no_buffer (%llu >= %llu)", name,
	      (unsigned long long)nb, (unsigned long long)sent);
	survived(name);
}

/* ---- the TAP uplink, read off the control thread ---- */

static const uint8_t host_mac[6] = {0x02, 0, 0, 0, 0, 0x99};
static const uint8_t u_mac[6] = {0x52, 0x54, 0, 0, 1, 0x01};

static int packet_socket(const char *ifname)
{
	struct sockaddr_ll sll = {.sll_family = AF_PACKET, .sll_protocol = htons(ETH_P_ALL)};
	int s = socket(AF_PACKET, SOCK_RAW | SOCK_CLOEXEC, htons(ETH_P_ALL));

	sll.sll_ifindex = (int)if_nametoindex(ifname);
	if (s >= 0 && (sll.sll_ifindex <= 0 || bind(s, (struct sockaddr *)&sll, sizeof(sll)))) {
		close(s);
		return -1;
	}
	return s;
}

/* One daemon_info over a connection of our own; its round trip in microseconds, or -1. */
static int64_t rpc_us(int fd)
{
	static const char req[] = "{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"daemon_info\"}\n";
	struct timespec a, b;
	char buf[4096];
	ssize_t n = 0;

	clock_gettime(CLOCK_MONOTONIC, &a);
	if (send(fd, req, sizeof(req) - 1, MSG_NOSIGNAL) != (ssize_t)sizeof(req) - 1)
		return -1;
	do {
		struct pollfd p = {fd, POLLIN, 0};
		ssize_t k;

		if (poll(&p, 1, 5000) != 1 || (k = recv(fd, buf, sizeof(buf), 0)) <= 0)
			return -1;
		n = k;
	} while (buf[n - 1] != '\n');
	clock_gettime(CLOCK_MONOTONIC, &b);
	return (b.tv_sec - a.tv_sec) * 1000000 + (b.tv_nsec - a.tv_nsec) / 1000;
}

static int rpc_connect(void)
{
	struct sockaddr_un sa = {.sun_family = AF_UNIX};
	int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);

	snprintf(sa.sun_path, sizeof(sa.sun_path), "%s", H.sd.rpc);
	if (fd >= 0 && connect(fd, (struct sockaddr *)&sa, sizeof(sa))) {
		close(fd);
		return -1;
	}
	return fd;
}

static int cmp_i64(const void *a, const void *b)
{
	int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;

	return (x > y) - (x < y);
}

struct host_flood {
	int pkt;
	bool stop;
	uint64_t sent;
};

/* The host sends 64-byte frames to u as fast as the TAP takes them, until told to stop. */
static void *host_flood_main(void *arg)
{
	struct host_flood *h = arg;
	uint8_t f[NFE_HDR + 64];

	nfe_frame(f, u_mac, host_mac, 0, 64);
	while (!__atomic_load_n(&h->stop, __ATOMIC_RELAXED))
		h->sent += send(h->pkt, f + NFE_HDR, 64, 0) == 64;
	return NULL;
}

/* Median and worst of n RPC round trips, 5 ms apart; while the host floods the TAP if h. */
static void rpc_latency(int rpc, struct host_flood *h, unsigned n, int64_t *p50, int64_t *max)
{
	int64_t lat[64];
	pthread_t t;
	unsigned i;
	bool flooding = h && pthread_create(&t, NULL, host_flood_main, h) == 0;

	for (i = 0; i < n && i < 64; i++) {
		usleep(5000);
		lat[i] = rpc_us(rpc);
	}
	if (flooding) {
		__atomic_store_n(&h->stop, true, __ATOMIC_RELAXED);
		pthread_join(t, NULL);
	}
	qsort(lat, i, sizeof(lat[0]), cmp_i64);
	*p50 = lat[i / 2];
	*max = lat[i - 1];
}

/* Host -> port through the TAP: the frame must reach u, byte for byte. */
static bool host_to_u(int pkt, uint32_t s)
{
	uint8_t f[NFE_HDR + 300];

	nfe_frame(f, u_mac, host_mac, s, 300);
	nfe_rx_drain(&P[NPORTS]);
	return send(pkt, f + NFE_HDR, 300, 0) == 300 && expect_from(NPORTS, host_mac, s, 300);
}

static bool u_to_host(int pkt, uint32_t s)
{
	int64_t deadline = ms_now() + 3000;
	uint8_t buf[2048];

	if (nfe_send(&P[NPORTS], host_mac, s, 300))
		return false;
	while (ms_now() < deadline) {
		struct pollfd p = {pkt, POLLIN, 0};
		uint32_t got;

		if (poll(&p, 1, 100) != 1 || recv(pkt, buf, sizeof(buf), 0) != 300)
			continue;
		memcpy(&got, buf + 14, 4);
		if (!memcmp(buf + 6, u_mac, 6) && got == s && pattern_check(buf + 18, 300 - 18, s))
			return true;
	}
	return false;
}

static void case_uplink(void)
{
	const char *name = "TAP uplink";
	char out[4096], tap[32], up[40], mac[32];
	int64_t p50_idle, max_idle, p50_flood, max_flood;
	uint64_t flooded = 0, got0, got;
	struct host_flood hf = {0};
	int pkt, rpc;

	snprintf(tap, sizeof(tap), "hnu%d", (int)getpid() % 100000);
	snprintf(up, sizeof(up), "tap:%s", tap);
	if (ctl(out, sizeof(out), "network_create", "--name", "up", "--uplink", up, NULL)) {
		note("%s: skipped: no TAP can be made here", name);
		return;
	}
	snprintf(socks[NPORTS], sizeof(socks[NPORTS]), "%s/u.sock", H.sd.dir);
	snprintf(mac, sizeof(mac), "52:54:00:00:01:01");
	check(ctl(out, sizeof(out), "vdev_create", "--type", "net", "--name", "u", "--network",
		  "up", "--socket", socks[NPORTS], "--mac", mac, NULL) == 0 &&
		  nfe_open(&P[NPORTS], socks[NPORTS], u_mac, 0, true, 5000) == 0,
	      "%s: port u on a network with an uplink", name);
	pkt = packet_socket(tap);
	rpc = rpc_connect();
	check(pkt >= 0 && rpc >= 0, "%s: packet socket on %s and an RPC connection", name, tap);
	if (pkt < 0 || rpc < 0)
		return;
	hf.pkt = pkt;
	check(host_to_u(pkt, seq++), "%s: a frame from the host reaches u whole", name);
	check(u_to_host(pkt, seq++), "%s: a frame from u reaches the host whole", name);
	/* Figures, not pass/fail: a flood from the host beside RPCs. */
	rpc_latency(rpc, NULL, 32, &p50_idle, &max_idle);
	got0 = stat_of(NPORTS, "rx_packets") + stat_of(NPORTS, "rx_drops.no_buffer");
	rpc_latency(rpc, &hf, 64, &p50_flood, &max_flood);
	flooded = hf.sent;
	usleep(100000);
	got = stat_of(NPORTS, "rx_packets") + stat_of(NPORTS, "rx_drops.no_buffer") - got0;
	note("%s: daemon_info round trip idle p50 %lld us, max %lld us; while the host floods "
	     "the TAP (%llu frames sent, %llu reached u or were dropped for its buffers) "
	     "p50 %lld us, max %lld us",
	     name, (long long)p50_idle, (long long)max_idle, (unsigned long long)flooded,
	     (unsigned long long)got, (long long)p50_flood, (long long)max_flood);
	check(p50_flood > 0 && got > 0, "%s: RPCs answered while siovd read the flood", name);
	check(host_to_u(pkt, seq++), "%s: after the flood, a frame from the host reaches u", name);
	close(rpc);
	close(pkt);
	nfe_close(&P[NPORTS]);
	check(ctl(out, sizeof(out), "vdev_delete", "--name", "u", NULL) == 0 &&
		  ctl(out, sizeof(out), "network_delete", "--name", "up", NULL) == 0 &&
		  if_nametoindex(tap) == 0,
	      "%s: network deleted, its TAP gone", name);
	survived(name);
}

/* ---- set-up and tear-down ---- */

static int create_ports(void)
{
	char out[4096], mac[32];
	int i;

	if (ctl(out, sizeof(out), "network_create", "--name", "hn", "--mtu", "1500", NULL))
		return -EIO;
	for (i = 0; i < NPORTS; i++) {
		const char *lim = i == FLOOD ? "500" : i == POL ? "100" : "0";

		snprintf(socks[i], sizeof(socks[i]), "%s/%s.sock", H.sd.dir, names[i]);
		snprintf(mac, sizeof(mac), "%02x:%02x:%02x:%02x:%02x:%02x", macs[i][0], macs[i][1],
			 macs[i][2], macs[i][3], macs[i][4], macs[i][5]);
		if (ctl(out, sizeof(out), "vdev_create", "--type", "net", "--name", names[i],
			"--network", "hn", "--socket", socks[i], "--mac", mac, "--pps-limit", lim,
			NULL))
			return -EIO;
	}
	for (i = 0; i < NPORTS; i++)
		if (open_port(i, i != NOBUF))
			return -EIO;
	return 0;
}

/* A running port's receive queue runs in its device model: vdev_stats says "running". */
static void check_queue_states(void)
{
	char out[16384];
	const char *q;
	int running = 0;

	ctl(out, sizeof(out), "vdev_stats", "--name", "a", NULL);
	for (q = strstr(out, "\"queues\""); q && (q = strstr(q, "\"running\"")); q++)
		running++;
	check(running == 2, "vdev_stats shows a's receive and transmit queues running (%d)",
	      running);
}

int main(int argc, char **argv)
{
	int rc;

	if ((rc = harness_begin(argc, argv)))
		return rc;
	if ((rc = daemon_start()) || (rc = create_ports())) {
		printf("FAIL: cannot start siovd with %d net ports: %s\n", NPORTS, strerror(-rc));
		return 1;
	}
	check_queue_states();
	check(exchange(), "a and b exchange verified frames before the attacks");
	case_sizes();
	case_headers();
	case_lies();
	case_tx_violations();
	case_indirect();
	case_rx_violations();
	case_mrg();
	case_flood();
	case_uplink();
	check(exchange(), "a and b exchange verified frames after the attacks");
	check(stat_of(B, "rx_drops.no_buffer") == 0 && stat_of(B, "rx_drops.too_big") == 0,
	      "b lost nothing");
	check(rxq_stat_of(B, "packets") == stat_of(B, "rx_packets") &&
		  rxq_stat_of(B, "bytes") == stat_of(B, "rx_bytes") && rxq_stat_of(B, "drops") == 0,
	      "b's receive queue counted every frame b received (net.rx_queues)");
	harness_stop();
	printf("%d passed, %d failed\n", H.passed, H.failed);
	fflush(stdout);
	return H.failed ? 1 : 0;
}
