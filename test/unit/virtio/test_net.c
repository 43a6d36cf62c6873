/*
 * The virtio-net device model on rings in shared memory: two ports a and b on
 * one network; a's transmit queue is processed directly (no engine: the
 * model's process() is called as an engine would), b's receive queue is run
 * by the device itself.  Checked: a frame reaches b's buffer behind a correct
 * header, a frame spread over MRG_RXBUF buffers is published whole with
 * num_buffers, a port without receive buffers loses the frame (counted) while
 * the sender's chain completes, hostile transmit chains (no header, too big,
 * device-writable) and receive buffers (device-readable) are refused and
 * counted or break only their own queue, and b's limits police what it
 * receives (drops counted as qos).
 *
 * Multiqueue (b with four pairs, the driver running three receive queues):
 * one TCP flow lands on one queue however its payload changes, many flows
 * reach every running queue, a queue the driver never enabled or stopped
 * (VQ_PAIRS_SET lowered) gets nothing though it has buffers posted, and the
 * per-queue counters add up to what each ring received.
 */
#include <endian.h>
#include <errno.h>
#include <linux/virtio_net.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <cmocka.h>

#include "guest.h"
#include "siov_internal/virtio_net.h"

#define RING_A (GPA_R2)
#define RING_B (GPA_R2 + 0x8000)
#define BUF_A  (GPA_R0)
#define BUF_B  (GPA_R1)
#define QNUM   16

static const uint8_t MAC_A[6] = {0x52, 0x54, 0, 0, 0, 0xa};
static const uint8_t MAC_B[6] = {0x52, 0x54, 0, 0, 0, 0xb};

struct rig {
	struct guest g;
	struct siov_switch *sw;
	struct siov_network *net;
	struct siov_net *a, *b;
	struct tq tx; /* a's transmit queue (index 1) */
	struct tq rx; /* b's receive queue (index 0) */
	int broken_a, broken_b;
};

static struct rig R;

static int setup(void **state)
{
	struct siov_network_conf nc = {.name = "n", .mtu = 9000};
	struct siov_net_conf c = {.network = NULL, .queue_pairs = 1};
	uint64_t f = (1ull << VIRTIO_F_VERSION_1) | (1ull << VIRTIO_NET_F_MRG_RXBUF);
	struct siov_err err;

	memset(&R, 0, sizeof(R));
	assert_int_equal(guest_init(&R.g), 0);
	assert_int_equal(siov_switch_create(&R.sw), 0);
	assert_int_equal(siov_network_create(R.sw, &nc, &R.net, &err), 0);
	c.network = R.net;
	c.name = "a";
	memcpy(c.mac, MAC_A, 6);
	assert_int_equal(siov_net_create(&c, &R.a, &err), 0);
	c.name = "b";
	memcpy(c.mac, MAC_B, 6);
	assert_int_equal(siov_net_create(&c, &R.b, &err), 0);
	siov_net_dev_ops.set_features(R.a, f);
	siov_net_dev_ops.set_features(R.b, f);
	assert_int_equal(tq_init(&R.tx, &R.g, RING_A, QNUM), 0);
	R.tx.vq.index = 1;
	R.tx.vq.dev = R.a;
	R.tx.vq.ops = siov_net_dev_ops.vq_ops;
	R.tx.vq.dev_broken = &R.broken_a;
	assert_int_equal(tq_init(&R.rx, &R.g, RING_B, QNUM), 0);
	R.rx.vq.index = 0;
	R.rx.vq.dev = R.b;
	R.rx.vq.dev_broken = &R.broken_b;
	assert_true(siov_net_dev_ops.self_run(R.b, 0));
	assert_false(siov_net_dev_ops.self_run(R.b, 1));
	assert_int_equal(siov_net_dev_ops.queue_start(R.b, &R.rx.vq), 0);
	return 0;
}

static int teardown(void **state)
{
	siov_net_dev_ops.queue_stop(R.b, &R.rx.vq);
	siov_net_dev_ops.vq_ops->release(&R.tx.vq);
	siov_net_destroy(R.a);
	siov_net_destroy(R.b);
	siov_switch_destroy(R.sw);
	guest_fini(&R.g);
	return 0;
}

/* a sends one chain made of the given buffers (lengths; the bytes are at BUF_A). */
static void tx(const uint32_t *lens, unsigned n, uint16_t flags_last)
{
	struct siov_vq_work w = {0};
	uint64_t off = 0;
	unsigned i;

	for (i = 0; i < n; i++) {
		tq_desc(
		    &R.tx, (uint16_t)i, BUF_A + off, lens[i],
		    (uint16_t)((i + 1 < n ? VRING_DESC_F_NEXT : 0) | (i + 1 == n ? flags_last : 0)),
		    (uint16_t)(i + 1));
		off += lens[i];
	}
	tq_publish(&R.tx, 0);
	R.tx.vq.ops->process(&R.tx.vq, NULL, 16, &w);
}

/* Writes a frame b <- a of len bytes (after a 12-byte zero header) at BUF_A. */
static void frame(size_t len, const uint8_t *src)
{
	uint8_t *p = guest_ptr(&R.g, BUF_A);
	size_t i;

	memset(p, 0, SIOV_NET_HDR_LEN);
	memcpy(p + 12, MAC_B, 6);
	memcpy(p + 18, src, 6);
	p[24] = 0x08;
	for (i = 14; i < len; i++)
		p[12 + i] = (uint8_t)(i * 13);
}

static void post_rx(uint16_t head, uint64_t gpa, uint32_t len, uint16_t flags)
{
	tq_desc(&R.rx, head, gpa, len, flags, 0);
	tq_publish(&R.rx, head);
}

static struct siov_port_stats port_stats(struct siov_net *n)
{
	struct siov_port_stats s;

	siov_port_get_stats(siov_net_port(n), &s);
	return s;
}

static void test_one_frame(void **state)
{
	uint32_t len = SIOV_NET_HDR_LEN + 100;
	struct virtio_net_hdr_mrg_rxbuf h;
	uint8_t *got = guest_ptr(&R.g, BUF_B);

	frame(100, MAC_A);
	post_rx(0, BUF_B, 2048, VRING_DESC_F_WRITE);
	tx(&len, 1, 0);
	assert_int_equal(tq_used_idx(&R.tx), 1);
	assert_int_equal(tq_used_idx(&R.rx), 1);
	assert_int_equal(R.rx.used->ring[0].len, len);
	memcpy(&h, got, sizeof(h));
	assert_int_equal(le16toh(h.num_buffers), 1);
	assert_memory_equal(got + 12, guest_ptr(&R.g, BUF_A + 12), 100);
	assert_int_equal(port_stats(R.b).rx_packets, 1);
	assert_int_equal(port_stats(R.a).tx_packets, 1);
}

static void test_mergeable(void **state)
{
	uint32_t len = SIOV_NET_HDR_LEN + 3000;
	struct virtio_net_hdr_mrg_rxbuf h;
	uint8_t *b0 = guest_ptr(&R.g, BUF_B), *b1 = guest_ptr(&R.g, BUF_B + 0x2000);

	frame(3000, MAC_A);
	post_rx(0, BUF_B, 1536, VRING_DESC_F_WRITE);
	post_rx(1, BUF_B + 0x2000, 1536, VRING_DESC_F_WRITE);
	post_rx(2, BUF_B + 0x4000, 1536, VRING_DESC_F_WRITE);
	/* The frame goes in two chunks (a header and a data descriptor). */
	tx((uint32_t[]){12, 3000}, 2, 0);
	assert_int_equal(tq_used_idx(&R.rx), 2);
	assert_int_equal(R.rx.used->ring[0].len, 1536);
	assert_int_equal(R.rx.used->ring[1].len, len - 1536);
	memcpy(&h, b0, sizeof(h));
	assert_int_equal(le16toh(h.num_buffers), 2);
	assert_memory_equal(b0 + 12, guest_ptr(&R.g, BUF_A + 12), 1536 - 12);
	assert_memory_equal(b1, guest_ptr(&R.g, BUF_A + 1536), len - 1536);
}

static void test_no_buffer(void **state)
{
	uint32_t len = SIOV_NET_HDR_LEN + 60;

	frame(60, MAC_A);
	tx(&len, 1, 0);
	/* The sender's chain completes; the receiver lost the frame, counted against it. */
	assert_int_equal(tq_used_idx(&R.tx), 1);
	assert_int_equal(port_stats(R.b).rx_drops[SIOV_DROP_NO_BUFFER], 1);
	assert_int_equal(port_stats(R.b).rx_packets, 0);
	/* A buffer too small without room to merge into stays for the next frame. */
	post_rx(0, BUF_B, 8, VRING_DESC_F_WRITE);
	tx(&len, 1, 0);
	assert_int_equal(tq_used_idx(&R.rx), 0);
	assert_false(siov_vq_is_broken(&R.rx.vq));
}

static void test_hostile_tx(void **state)
{
	uint32_t shorty = 5, big = SIOV_NET_HDR_LEN + 9100, ok = SIOV_NET_HDR_LEN + 60;

	post_rx(0, BUF_B, 2048, VRING_DESC_F_WRITE);
	/* A chain shorter than the header, then one past the MTU: counted, completed. */
	frame(60, MAC_A);
	tx(&shorty, 1, 0);
	frame(9100, MAC_A);
	tx(&big, 1, 0);
	assert_int_equal(tq_used_idx(&R.tx), 2);
	assert_int_equal(port_stats(R.a).tx_drops[SIOV_DROP_MALFORMED], 1);
	assert_int_equal(port_stats(R.a).tx_drops[SIOV_DROP_TOO_BIG], 1);
	/* Sent as b: spoofed. */
	frame(60, MAC_B);
	tx(&ok, 1, 0);
	assert_int_equal(port_stats(R.a).tx_drops[SIOV_DROP_SPOOFED], 1);
	assert_int_equal(tq_used_idx(&R.rx), 0);
	assert_false(siov_vq_is_broken(&R.tx.vq));
	/* A device-writable buffer in a transmit chain is a violation: a's queue breaks. */
	frame(60, MAC_A);
	tx(&ok, 1, VRING_DESC_F_WRITE);
	assert_true(siov_vq_is_broken(&R.tx.vq));
	assert_false(siov_vq_is_broken(&R.rx.vq));
}

static void test_hostile_rx(void **state)
{
	uint32_t ok = SIOV_NET_HDR_LEN + 60;

	/* b posts a device-readable "receive buffer": b's queue breaks, a carries on. */
	post_rx(0, BUF_B, 2048, 0);
	frame(60, MAC_A);
	tx(&ok, 1, 0);
	assert_true(siov_vq_is_broken(&R.rx.vq));
	assert_false(siov_vq_is_broken(&R.tx.vq));
	assert_int_equal(tq_used_idx(&R.tx), 1);
	tx(&ok, 1, 0);
	assert_int_equal(tq_used_idx(&R.tx), 2);
	assert_int_equal(port_stats(R.b).rx_drops[SIOV_DROP_NO_BUFFER], 2);
}

/*
 * b's limits police what it receives: frames over them are dropped and
 * counted as qos against b, a's chains still complete (nothing waits for b),
 * and clearing the limit lets frames in again.
 */
static void test_rx_policer(void **state)
{
	struct siov_qos_params lim = {.iops_limit = 1, .iops_burst = 1}, none = {0};
	uint32_t ok = SIOV_NET_HDR_LEN + 60;
	struct siov_port_stats s;
	uint16_t i;

	for (i = 0; i < 8; i++)
		post_rx(i, BUF_B + i * 0x1000u, 2048, VRING_DESC_F_WRITE);
	assert_int_equal(siov_net_set_rx_qos(R.b, &lim), 0);
	frame(60, MAC_A);
	for (i = 0; i < 4; i++)
		tx(&ok, 1, 0);
	assert_int_equal(tq_used_idx(&R.tx), 4);
	s = port_stats(R.b);
	/* One token, refilled once a second: the first frame passes, (nearly) all others not. */
	assert_true(s.rx_packets >= 1 && s.rx_drops[SIOV_DROP_QOS] >= 2);
	assert_int_equal(s.rx_packets + s.rx_drops[SIOV_DROP_QOS], 4);
	assert_int_equal(tq_used_idx(&R.rx), s.rx_packets);
	assert_int_equal(port_stats(R.a).tx_drops[SIOV_DROP_QOS], 0);
	assert_int_equal(siov_net_set_rx_qos(R.b, &none), 0);
	tx(&ok, 1, 0);
	assert_int_equal(port_stats(R.b).rx_packets, s.rx_packets + 1);
	assert_int_equal(port_stats(R.b).rx_drops[SIOV_DROP_QOS], s.rx_drops[SIOV_DROP_QOS]);
}

/* ---- Multiqueue ---- */

#define MQ_PAIRS     4
#define MQ_QNUM	     128
#define MQ_BUFS	     64
#define MQ_RING(i)   (GPA_R2 + 0x10000 + (i)*0x4000ull)
#define MQ_BUF(i, k) (BUF_B + (i)*0x10000ull + (k)*0x100ull)

static struct tq MQ[MQ_PAIRS]; /* b's receive queues 0, 2, 4, 6 */
static bool mq_started[MQ_PAIRS];

/* b gets four pairs; every receive ring has MQ_BUFS buffers posted; running[i]: started. */
static void mq_start(const bool *running)
{
	struct siov_net_conf c = {.network = R.net, .name = "b", .queue_pairs = MQ_PAIRS};
	struct siov_err err;
	unsigned i;
	uint16_t k;

	siov_net_dev_ops.queue_stop(R.b, &R.rx.vq);
	siov_net_destroy(R.b);
	memcpy(c.mac, MAC_B, 6);
	assert_int_equal(siov_net_create(&c, &R.b, &err), 0);
	siov_net_dev_ops.set_features(R.b, (1ull << VIRTIO_F_VERSION_1));
	R.rx.vq.dev = R.b;
	for (i = 0; i < MQ_PAIRS; i++) {
		assert_int_equal(tq_init(&MQ[i], &R.g, MQ_RING(i), MQ_QNUM), 0);
		MQ[i].vq.index = 2 * i;
		MQ[i].vq.dev = R.b;
		MQ[i].vq.dev_broken = &R.broken_b;
		for (k = 0; k < MQ_BUFS; k++) {
			tq_desc(&MQ[i], k, MQ_BUF(i, k), 256, VRING_DESC_F_WRITE, 0);
			tq_publish(&MQ[i], k);
		}
		mq_started[i] = running[i];
		if (running[i])
			assert_int_equal(siov_net_dev_ops.queue_start(R.b, &MQ[i].vq), 0);
	}
	/* teardown() stops R.rx: the new b has it stopped already (a no-op). */
}

static void mq_stop(void)
{
	for (unsigned i = 0; i < MQ_PAIRS; i++)
		if (mq_started[i])
			siov_net_dev_ops.queue_stop(R.b, &MQ[i].vq);
	memset(mq_started, 0, sizeof(mq_started));
}

/* a sends b a TCP/IPv4 frame from port sport, its payload filled with fill. */
static void tx_tcp(uint16_t sport, uint8_t fill)
{
	static const uint8_t ip[20] = {0x45, 0, 0,  60, 0, 0, 0x40, 0, 64, 6,
				       0,    0, 10, 0,	0, 1, 10,   0, 0,  2};
	uint32_t len = SIOV_NET_HDR_LEN + 74;
	uint8_t *p;

	frame(74, MAC_A);
	p = guest_ptr(&R.g, BUF_A + SIOV_NET_HDR_LEN);
	memcpy(p + 14, ip, sizeof(ip));
	p[34] = (uint8_t)(sport >> 8);
	p[35] = (uint8_t)sport;
	p[36] = 0x1f;
	p[37] = 0x90; /* port 8080 */
	memset(p + 38, fill, 74 - 38);
	tx(&len, 1, 0);
}

static unsigned mq_got(unsigned i)
{
	return tq_used_idx(&MQ[i]);
}

static void mq_check_stats(void)
{
	struct siov_net_rxq_stats st[MQ_PAIRS];
	unsigned i;

	assert_int_equal(siov_net_rxq_stats(R.b, st, MQ_PAIRS), MQ_PAIRS);
	for (i = 0; i < MQ_PAIRS; i++) {
		assert_int_equal(st[i].index, 2 * i);
		assert_int_equal(st[i].running, mq_started[i]);
		assert_int_equal(st[i].packets, mq_got(i));
		assert_int_equal(st[i].bytes, 74ull * mq_got(i));
		assert_int_equal(st[i].drops, 0);
	}
}

static void test_mq_one_flow(void **state)
{
	const bool run[MQ_PAIRS] = {true, true, false, true};
	unsigned i, busy = 0;

	mq_start(run);
	for (i = 0; i < 20; i++)
		tx_tcp(40000, (uint8_t)i);
	for (i = 0; i < MQ_PAIRS; i++) {
		assert_true(mq_got(i) == 0 || mq_got(i) == 20);
		busy += mq_got(i) == 20;
	}
	assert_int_equal(busy, 1);
	assert_int_equal(mq_got(2), 0);
	mq_check_stats();
	mq_stop();
}

static void test_mq_many_flows(void **state)
{
	const bool run[MQ_PAIRS] = {true, true, false, true};
	unsigned i;

	mq_start(run);
	for (i = 0; i < 60; i++)
		tx_tcp((uint16_t)(1000 + i), 0);
	/* Keyed by a random seed; one queue missing 60 flows of three is a 1-in-10^10 event. */
	assert_true(mq_got(0) > 0 && mq_got(1) > 0 && mq_got(3) > 0);
	assert_int_equal(mq_got(2), 0); /* never enabled: nothing, though it has buffers */
	assert_int_equal(mq_got(0) + mq_got(1) + mq_got(3), 60);
	assert_int_equal(port_stats(R.b).rx_packets, 60);
	mq_check_stats();
	mq_stop();
}

/* The driver lowers its pairs (QEMU disables the rings): the queue left gets every flow. */
static void test_mq_pairs_lowered(void **state)
{
	const bool run[MQ_PAIRS] = {true, true, true, true};
	unsigned i, before[MQ_PAIRS];

	mq_start(run);
	for (i = 1; i < MQ_PAIRS; i++) {
		siov_net_dev_ops.queue_stop(R.b, &MQ[i].vq);
		mq_started[i] = false;
	}
	for (i = 0; i < MQ_PAIRS; i++)
		before[i] = mq_got(i);
	for (i = 0; i < 40; i++)
		tx_tcp((uint16_t)(2000 + i), 0);
	assert_int_equal(mq_got(0), before[0] + 40);
	for (i = 1; i < MQ_PAIRS; i++)
		assert_int_equal(mq_got(i), before[i]);
	assert_int_equal(port_stats(R.b).rx_drops[SIOV_DROP_NO_BUFFER], 0);
	/* Raised again: the flows spread once more. */
	for (i = 1; i < MQ_PAIRS; i++) {
		assert_int_equal(siov_net_dev_ops.queue_start(R.b, &MQ[i].vq), 0);
		mq_started[i] = true;
	}
	for (i = 0; i < 40; i++)
		tx_tcp((uint16_t)(3000 + i), 0);
	for (i = 1; i < MQ_PAIRS; i++)
		assert_true(mq_got(i) > 0);
	assert_int_equal(mq_got(0) + mq_got(1) + mq_got(2) + mq_got(3), 80);
	mq_stop();
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test_setup_teardown(test_one_frame, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_mergeable, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_no_buffer, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_hostile_tx, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_hostile_rx, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_rx_policer, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_mq_one_flow, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_mq_many_flows, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_mq_pairs_lowered, setup, teardown),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
