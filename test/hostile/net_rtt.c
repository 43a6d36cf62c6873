/*
 * net-rtt: round-trip latency between two vhost-user-net ports, for the
 * "net" bench section (bench/sections/net.sh).  It is the hostile test's own
 * front end (netfe.c, no libsiov, no DPDK) used well: port A sends a frame to
 * B's MAC, B answers to A's, each side spinning on its receive ring, so the
 * figure is the back end's (siovd's switch, or DPDK's net_vhost forwarding
 * between the two sockets) plus two ring round trips, without interrupts.
 *
 * Usage: net-rtt SOCK_A SOCK_B [COUNT [SIZE]]; prints one JSON object.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "harness.h"
#include "netfe.h"

static const uint8_t mac_a[6] = {0x52, 0x54, 0, 0xbe, 0, 0x01};
static const uint8_t mac_b[6] = {0x52, 0x54, 0, 0xbe, 0, 0x02};
/* With MRG_RXBUF every back end writes num_buffers (DPDK leaves it 0 without). */
#define RTT_FEATURES NFE_F(VIRTIO_NET_F_MRG_RXBUF)

static uint64_t ns_now(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

/* Sends one frame without waiting for the chain (spins only for a free slot). */
static void send_frame(struct nfe *n, const uint8_t *dst, uint32_t seq, uint32_t len)
{
	struct fe_buf b = {0, NFE_HDR + len, 0};
	uint8_t *p;

	while (nfe_tx_inflight(n) >= NFE_TXSLOTS - 1)
		;
	p = nfe_tx_slot(n, &b.addr);
	nfe_frame(p, dst, n->mac, seq, len);
	nfe_tx_chain(n, &b, 1);
}

/* Spins until the frame numbered seq arrives from src; false after 2 s. */
static bool recv_frame(struct nfe *n, const uint8_t *src, uint32_t seq, uint32_t len)
{
	uint64_t deadline = ns_now() + 2000000000ull;
	struct nfe_rx rx;

	while (ns_now() < deadline) {
		uint32_t got;
		bool ok;

		if (nfe_rx_next(n, &rx, 0) != 1)
			continue;
		ok = nfe_frame_check(&rx, src, len, &got) && got == seq;
		nfe_rx_done(n, &rx);
		if (ok)
			return true;
	}
	return false;
}

static int cmp_u64(const void *a, const void *b)
{
	uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;

	return (x > y) - (x < y);
}

static bool ping(struct nfe *a, struct nfe *b, uint32_t seq, uint32_t len)
{
	send_frame(a, mac_b, seq, len);
	if (!recv_frame(b, mac_a, seq, len))
		return false;
	send_frame(b, mac_a, seq, len);
	return recv_frame(a, mac_b, seq, len);
}

int main(int argc, char **argv)
{
	unsigned count = argc > 3 ? (unsigned)atoi(argv[3]) : 10000, i, lost = 0;
	uint32_t len = argc > 4 ? (uint32_t)atoi(argv[4]) : 64;
	struct nfe a, b;
	uint64_t *rtt, sum = 0;
	int rc;

	if (argc < 3 || !count || len < 60 || len > 1514) {
		fprintf(stderr, "usage: %s SOCK_A SOCK_B [COUNT [SIZE 60..1514]]\n", argv[0]);
		return 2;
	}
	if ((rc = nfe_open(&a, argv[1], mac_a, RTT_FEATURES, true, 5000)) ||
	    (rc = nfe_open(&b, argv[2], mac_b, RTT_FEATURES, true, 5000))) {
		fprintf(stderr, "net-rtt: cannot attach: %s\n", strerror(-rc));
		return 1;
	}
	/* Both sides spin on their rings: no interrupt (call eventfd write) wanted, as a poll-mode
	 * driver. */
	a.q[0].avail->flags = b.q[0].avail->flags = VRING_AVAIL_F_NO_INTERRUPT;
	a.q[1].avail->flags = b.q[1].avail->flags = VRING_AVAIL_F_NO_INTERRUPT;
	rtt = calloc(count, sizeof(*rtt));
	/* Warm-up: a back end may still be bringing the second port up. */
	for (i = 0; i < 100; i++)
		ping(&a, &b, i, len);
	for (i = 0; rtt && i < count; i++) {
		uint64_t t0 = ns_now();

		lost += !ping(&a, &b, 1000 + i, len);
		rtt[i] = ns_now() - t0;
		sum += rtt[i];
	}
	if (!rtt)
		return 1;
	qsort(rtt, count, sizeof(*rtt), cmp_u64);
	printf("{\"count\": %u, \"size\": %u, \"lost\": %u, \"mean_us\": %.2f, \"min_us\": %.2f, "
	       "\"p50_us\": %.2f, \"p99_us\": %.2f, \"max_us\": %.2f}\n",
	       count, len, lost, sum / 1e3 / count, rtt[0] / 1e3, rtt[count / 2] / 1e3,
	       rtt[count * 99 / 100] / 1e3, rtt[count - 1] / 1e3);
	free(rtt);
	nfe_close(&a);
	nfe_close(&b);
	return lost ? 1 : 0;
}
