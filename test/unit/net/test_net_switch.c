/*
 * The switch: learning, unicast and flooding, isolation between networks,
 * source-MAC enforcement and allow_spoof, ageing and moves, MTU drops, a port
 * with no receive buffers beside one that has them, attach/detach rules,
 * senders on several threads while ports come and go, and the TAP uplink
 * against the real kernel (a packet socket on the TAP's other side).
 */
#include <arpa/inet.h>
#include <errno.h>
#include <linux/if_packet.h>
#include <net/ethernet.h>
#include <net/if.h>
#include <poll.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>
#include <cmocka.h>

#include "siov_internal/switch.h"

#define SEC 1000000000ull

struct fake {
	struct siov_port *port;
	unsigned got;
	uint8_t last[2048];
	size_t last_len;
	int fail; /* returned by deliver when non-zero */
};

static int fake_emit(const struct siov_net_pkt *p, void *arg)
{
	struct fake *fk = arg;
	size_t n = 0;
	unsigned i;

	for (i = 0; i < p->iovcnt && n + p->iov[i].iov_len <= sizeof(fk->last); i++) {
		memcpy(fk->last + n, p->iov[i].iov_base, p->iov[i].iov_len);
		n += p->iov[i].iov_len;
	}
	fk->last_len = n;
	return 0;
}

static int fake_deliver(struct siov_port *port, const struct siov_net_frame *f, void *arg)
{
	struct fake *fk = arg;
	struct siov_net_pkt *pkt;
	int rc;

	if (fk->fail)
		return fk->fail;
	pkt = malloc(sizeof(*pkt));
	assert_non_null(pkt);
	rc = siov_net_frame_emit(f, 0, pkt, fake_emit, fk);
	free(pkt);
	__atomic_fetch_add(&fk->got, 1, __ATOMIC_RELAXED);
	return rc;
}

static const struct siov_port_ops fake_ops = {.deliver = fake_deliver};

static void mac(uint8_t *m, unsigned n)
{
	const uint8_t base[6] = {0x52, 0x54, 0, 0, (uint8_t)(n >> 8), (uint8_t)n};

	memcpy(m, base, 6);
}

static void attach(struct siov_network *net, struct fake *fk, unsigned n, bool spoof)
{
	struct siov_port_conf c = {.allow_spoof = spoof};
	struct siov_err err;

	memset(fk, 0, sizeof(*fk));
	snprintf(c.name, sizeof(c.name), "p%u", n);
	mac(c.mac, n);
	assert_int_equal(siov_port_attach(net, &c, &fake_ops, fk, &fk->port, &err), 0);
}

/* Sends a 60-byte frame dst <- src from port p; returns how many ports it reached. */
static unsigned send_frame(struct siov_port *p, const uint8_t *dst, const uint8_t *src,
			   uint64_t now)
{
	uint8_t buf[SIOV_NET_HDR_LEN + 60] = {0};
	struct iovec iov = {buf, sizeof(buf)};
	struct siov_net_frame f;

	memcpy(buf + SIOV_NET_HDR_LEN, dst, 6);
	memcpy(buf + SIOV_NET_HDR_LEN + 6, src, 6);
	buf[SIOV_NET_HDR_LEN + 12] = 0x08;
	buf[SIOV_NET_HDR_LEN + 59] = 0x5a;
	if (siov_port_parse(p, &f, &iov, 1, SIOV_NET_HDR_LEN) < 0)
		return 0;
	return siov_port_send(p, &f, now);
}

static uint64_t drops(struct siov_port *p, bool rx, enum siov_port_drop r)
{
	struct siov_port_stats s;

	siov_port_get_stats(p, &s);
	return rx ? s.rx_drops[r] : s.tx_drops[r];
}

static struct siov_switch *sw;
static const uint8_t BCAST[6] = {0xff, 0xff, 0xff, 0xff, 0xff, 0xff};

static struct siov_network *mknet(const char *name)
{
	struct siov_network_conf c = {.mtu = 0};
	struct siov_network *net;
	struct siov_err err;

	snprintf(c.name, sizeof(c.name), "%s", name);
	assert_int_equal(siov_network_create(sw, &c, &net, &err), 0);
	assert_int_equal(siov_network_conf(net)->mtu, SIOV_NET_MTU_DEFAULT);
	return net;
}

static int setup(void **state)
{
	return siov_switch_create(&sw);
}

static int teardown(void **state)
{
	siov_switch_destroy(sw);
	sw = NULL;
	return 0;
}

static void test_forwarding(void **state)
{
	struct siov_network *n1 = mknet("n1"), *n2 = mknet("n2");
	static struct fake a, b, c, d;
	uint8_t ma[6], mb[6], mx[6];
	struct siov_port_stats s;

	attach(n1, &a, 1, false);
	attach(n1, &b, 2, false);
	attach(n1, &c, 3, false);
	attach(n2, &d, 4, false);
	mac(ma, 1);
	mac(mb, 2);
	mac(mx, 99);
	/* A port's own MAC is known from the start: unicast goes to it alone. */
	assert_int_equal(send_frame(a.port, mb, ma, 1), 1);
	assert_int_equal(b.got, 1);
	assert_int_equal(c.got + a.got + d.got, 0);
	assert_int_equal(b.last_len, 60);
	assert_int_equal(b.last[59], 0x5a);
	/* Broadcast and unknown unicast flood the network, never the sender, never n2. */
	assert_int_equal(send_frame(a.port, BCAST, ma, 2), 2);
	assert_int_equal(send_frame(a.port, mx, ma, 3), 2);
	assert_int_equal(b.got, 3);
	assert_int_equal(c.got, 2);
	assert_int_equal(a.got + d.got, 0);
	/* n2 cannot reach n1's ports, even by their MAC. */
	assert_int_equal(send_frame(d.port, ma, (uint8_t[]){0x52, 0x54, 0, 0, 0, 4}, 4), 0);
	assert_int_equal(a.got, 0);
	siov_port_get_stats(b.port, &s);
	assert_int_equal(s.rx_packets, 3);
	assert_int_equal(s.rx_bytes, 180);
	siov_port_get_stats(a.port, &s);
	assert_int_equal(s.tx_packets, 3);
	assert_int_equal(s.tx_bytes, 180);
	/* A frame to the sender's own MAC goes nowhere. */
	assert_int_equal(send_frame(a.port, ma, ma, 5), 0);
	siov_port_detach(a.port);
	siov_port_detach(b.port);
	siov_port_detach(c.port);
	siov_port_detach(d.port);
}

static void test_spoofing(void **state)
{
	struct siov_network *n = mknet("n1");
	static struct fake a, b, s;
	uint8_t ma[6], mb[6], mx[6], mcast[6] = {0x01, 0, 0x5e, 0, 0, 1};

	attach(n, &a, 1, false);
	attach(n, &b, 2, false);
	attach(n, &s, 3, true);
	mac(ma, 1);
	mac(mb, 2);
	mac(mx, 77);
	/* a sends as b: dropped and counted on a; nobody receives it. */
	assert_int_equal(send_frame(a.port, BCAST, mb, 1), 0);
	assert_int_equal(drops(a.port, false, SIOV_DROP_SPOOFED), 1);
	assert_int_equal(b.got + s.got, 0);
	/* An allow_spoof port may send as another address, and it is learned there... */
	assert_int_equal(send_frame(s.port, BCAST, mx, 2), 2);
	assert_int_equal(send_frame(a.port, mx, ma, 3), 1);
	assert_int_equal(s.got, 1);
	/* ...but it may not take over another port's own MAC. */
	assert_int_equal(send_frame(s.port, BCAST, ma, 4), 0);
	assert_int_equal(drops(s.port, false, SIOV_DROP_SPOOFED), 1);
	/* A multicast source is malformed, allow_spoof or not. */
	assert_int_equal(send_frame(s.port, BCAST, mcast, 5), 0);
	assert_int_equal(drops(s.port, false, SIOV_DROP_MALFORMED), 1);
	siov_port_detach(a.port);
	siov_port_detach(b.port);
	siov_port_detach(s.port);
}

static void copy_info(const struct siov_network_info *info, void *arg)
{
	*(struct siov_network_info *)arg = *info;
}

static void test_ageing_and_moves(void **state)
{
	struct siov_network *n = mknet("n1");
	static struct fake a, s1, s2;
	struct siov_network_info info;
	uint8_t ma[6], mx[6];

	attach(n, &a, 1, false);
	attach(n, &s1, 2, true);
	attach(n, &s2, 3, true);
	mac(ma, 1);
	mac(mx, 50);
	send_frame(s1.port, BCAST, mx, SEC);
	assert_int_equal(send_frame(a.port, mx, ma, 2 * SEC), 1);
	assert_int_equal(s1.got, 1);
	/* The address moves to s2. */
	send_frame(s2.port, BCAST, mx, 3 * SEC);
	assert_int_equal(send_frame(a.port, mx, ma, 4 * SEC), 1);
	assert_int_equal(s2.got, 2); /* s1's broadcast, then the unicast */
	assert_int_equal(s1.got, 2); /* the first unicast, then s2's broadcast */
	/* Without frames from it, it ages out: flooded again, then swept away. */
	assert_int_equal(send_frame(a.port, mx, ma, 3 * SEC + SIOV_NET_AGEING_NS + 1), 2);
	siov_network_foreach(sw, copy_info, &info);
	assert_int_equal(info.learned, 4); /* 3 own + mx */
	siov_network_age(n, 3 * SEC + SIOV_NET_AGEING_NS + 1);
	siov_network_foreach(sw, copy_info, &info);
	assert_int_equal(info.learned, 3);
	assert_int_equal(info.ports, 3);
	/* A static address never ages. */
	assert_int_equal(send_frame(s1.port, ma, mx, 10 * SIOV_NET_AGEING_NS), 1);
	siov_port_detach(a.port);
	siov_port_detach(s1.port);
	siov_port_detach(s2.port);
}

static void test_drops(void **state)
{
	static uint8_t big[SIOV_NET_HDR_LEN + 1515];
	struct siov_network *n = mknet("n1");
	static struct fake a, b, c;
	struct iovec iov = {big, sizeof(big)};
	struct siov_net_frame f;
	uint8_t ma[6];

	attach(n, &a, 1, false);
	attach(n, &b, 2, false);
	attach(n, &c, 3, false);
	mac(ma, 1);
	/* b never posts receive buffers: it loses its own frames, c still gets them. */
	b.fail = -ENOBUFS;
	assert_int_equal(send_frame(a.port, BCAST, ma, 1), 2);
	assert_int_equal(send_frame(a.port, BCAST, ma, 2), 2);
	assert_int_equal(c.got, 2);
	assert_int_equal(drops(b.port, true, SIOV_DROP_NO_BUFFER), 2);
	b.fail = -EDQUOT;
	send_frame(a.port, BCAST, ma, 3);
	assert_int_equal(drops(b.port, true, SIOV_DROP_QOS), 1);
	assert_int_equal(c.got, 3);
	/* A frame past the MTU is counted on the sender and goes nowhere. */
	memcpy(big + SIOV_NET_HDR_LEN, BCAST, 6);
	memcpy(big + SIOV_NET_HDR_LEN + 6, ma, 6);
	assert_int_equal(siov_port_parse(a.port, &f, &iov, 1, SIOV_NET_HDR_LEN), -EMSGSIZE);
	assert_int_equal(drops(a.port, false, SIOV_DROP_TOO_BIG), 1);
	iov.iov_len = 7;
	assert_int_equal(siov_port_parse(a.port, &f, &iov, 1, SIOV_NET_HDR_LEN), -EINVAL);
	assert_int_equal(drops(a.port, false, SIOV_DROP_MALFORMED), 1);
	siov_port_detach(a.port);
	siov_port_detach(b.port);
	siov_port_detach(c.port);
}

static void test_admin(void **state)
{
	struct siov_network *n = mknet("n1");
	struct siov_network_conf bad = {.name = "n1"};
	struct siov_port_conf pc = {.name = "x"};
	static struct fake a, b;
	struct siov_port *p;
	struct siov_err err;

	assert_int_equal(siov_network_create(sw, &bad, NULL, &err), -EEXIST);
	snprintf(bad.name, sizeof(bad.name), "n2");
	bad.mtu = 67;
	assert_int_equal(siov_network_create(sw, &bad, NULL, &err), -EINVAL);
	bad.mtu = 9000;
	snprintf(bad.uplink, sizeof(bad.uplink), "vde:x");
	assert_int_equal(siov_network_create(sw, &bad, NULL, &err), -EINVAL);
	assert_null(siov_network_find(sw, "n2"));
	attach(n, &a, 1, false);
	/* Two ports of one network cannot share a MAC; zero and multicast are refused. */
	mac(pc.mac, 1);
	assert_int_equal(siov_port_attach(n, &pc, &fake_ops, &b, &p, &err), -EEXIST);
	memset(pc.mac, 0, 6);
	assert_int_equal(siov_port_attach(n, &pc, &fake_ops, &b, &p, &err), -EINVAL);
	pc.mac[0] = 1;
	assert_int_equal(siov_port_attach(n, &pc, &fake_ops, &b, &p, &err), -EINVAL);
	assert_int_equal(siov_network_delete(sw, "n1", &err), -EBUSY);
	/* After a detach its MAC is free again and the network can go. */
	siov_port_detach(a.port);
	attach(n, &b, 1, false);
	siov_port_detach(b.port);
	assert_int_equal(siov_network_delete(sw, "n1", &err), 0);
	assert_int_equal(siov_network_delete(sw, "n1", &err), -ENOENT);
	assert_int_equal(siov_switch_networks(sw), 0);
}

/* ---- Senders on two threads while the control thread attaches and detaches ---- */

struct sender {
	struct siov_port *port;
	unsigned n;
	unsigned sent;
};

static void *sender_main(void *arg)
{
	struct sender *s = arg;
	uint8_t me[6];
	unsigned i;

	memcpy(me, siov_port_conf(s->port)->mac, 6);
	for (i = 0; i < s->n; i++) {
		uint8_t dst[6];

		mac(dst, 100 + i % 8); /* churned ports: sometimes there, sometimes not */
		send_frame(s->port, i % 5 ? dst : BCAST, me, (uint64_t)i);
		s->sent++;
	}
	return NULL;
}

static void test_concurrent(void **state)
{
	struct siov_network *n = mknet("n1");
	static struct fake a, b, churn[8];
	struct sender sa = {.n = 20000}, sb = {.n = 20000};
	struct siov_port_stats st;
	pthread_t ta, tb;
	unsigned i, round;

	attach(n, &a, 1, false);
	attach(n, &b, 2, false);
	sa.port = a.port;
	sb.port = b.port;
	assert_int_equal(pthread_create(&ta, NULL, sender_main, &sa), 0);
	assert_int_equal(pthread_create(&tb, NULL, sender_main, &sb), 0);
	for (round = 0; round < 200; round++) {
		for (i = 0; i < 8; i++)
			attach(n, &churn[i], 100 + i, false);
		for (i = 0; i < 8; i++)
			siov_port_detach(churn[i].port);
	}
	pthread_join(ta, NULL);
	pthread_join(tb, NULL);
	siov_port_get_stats(a.port, &st);
	assert_int_equal(st.tx_packets, 20000);
	/* b got every broadcast of a's at least (and possibly its unknown unicasts). */
	assert_true(st.rx_packets >= 4000);
	siov_port_detach(a.port);
	siov_port_detach(b.port);
}

/* ---- The TAP uplink, against the kernel ---- */

static int packet_socket(const char *ifname)
{
	struct sockaddr_ll sll = {.sll_family = AF_PACKET, .sll_protocol = htons(ETH_P_ALL)};
	int s = socket(AF_PACKET, SOCK_RAW | SOCK_CLOEXEC, htons(ETH_P_ALL));

	assert_true(s >= 0);
	sll.sll_ifindex = (int)if_nametoindex(ifname);
	assert_true(sll.sll_ifindex > 0);
	assert_int_equal(bind(s, (struct sockaddr *)&sll, sizeof(sll)), 0);
	return s;
}

static void test_tap_uplink(void **state)
{
	struct siov_network_conf c = {.name = "up", .mtu = 1500};
	uint8_t buf[2048], ma[6], frame[60] = {0};
	struct siov_network *n;
	static struct fake a;
	struct siov_err err;
	struct pollfd pfd;
	int s, rc, i, seen = 0;

	snprintf(c.uplink, sizeof(c.uplink), "tap:siovt%d", (int)getpid() % 100000);
	rc = siov_network_create(sw, &c, &n, &err);
	if (rc == -EPERM || rc == -EACCES || rc == -ENOENT || rc == -ENODEV) {
		print_message("skipped: cannot create a TAP here: %s\n", err.msg);
		skip();
	}
	assert_int_equal(rc, 0);
	assert_true(siov_network_uplink_fd(n) >= 0);
	attach(n, &a, 1, false);
	mac(ma, 1);
	s = packet_socket(c.uplink + 4);
	/* Guest -> host: a broadcast from port a appears on the TAP interface. */
	assert_int_equal(send_frame(a.port, BCAST, ma, 1), 1);
	for (i = 0; i < 50 && !seen; i++) {
		pfd = (struct pollfd){s, POLLIN, 0};
		if (poll(&pfd, 1, 100) <= 0)
			continue;
		rc = (int)recv(s, buf, sizeof(buf), 0);
		seen = rc == 60 && !memcmp(buf + 6, ma, 6) && buf[59] == 0x5a;
	}
	assert_true(seen);
	/* Host -> guest: a frame sent on the interface reaches a by its MAC. */
	memcpy(frame, ma, 6);
	memcpy(frame + 6, (uint8_t[]){0x02, 0, 0, 0, 0, 0x42}, 6);
	frame[12] = 0x08;
	assert_int_equal(send(s, frame, sizeof(frame), 0), 60);
	for (i = 0; i < 50 && !a.got; i++) {
		pfd = (struct pollfd){siov_network_uplink_fd(n), POLLIN, 0};
		if (poll(&pfd, 1, 100) > 0)
			siov_network_uplink_rx(n, 64, 2);
	}
	assert_true(a.got >= 1);
	assert_memory_equal(a.last + 6, frame + 6, 6);
	close(s);
	siov_port_detach(a.port);
	assert_int_equal(siov_network_delete(sw, "up", &err), 0);
	/* The TAP siovd created goes with the network. */
	assert_int_equal(if_nametoindex(c.uplink + 4), 0);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test_setup_teardown(test_forwarding, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_spoofing, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_ageing_and_moves, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_drops, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_admin, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_concurrent, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_tap_uplink, setup, teardown),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
