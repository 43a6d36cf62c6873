/*
 * The test-only door of libsiov (libsiov_raw.h, in the uninstalled static
 * library libsiov_test) against a real siovd started by test/lib: a bare
 * connection that negotiates nothing, one well-formed request answered as the
 * protocol says, then a message of another protocol version, which must make
 * siovd drop that connection alone (the VDEV listens again and takes the next front
 * end).  Proves the library the hostile tests are meant to use still links
 * and works now that libsiov.so no longer carries it.
 */
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "libsiov_raw.h"
#include "siovd_proc.h"

static int g_failed;

static void check(bool ok, const char *what)
{
	printf("%s - %s\n", ok ? "ok  " : "FAIL", what);
	g_failed += !ok;
}

static int rpc(struct siovd_proc *p, const char *req, const char *want)
{
	char resp[8192];

	if (siovd_proc_rpc(p, req, resp, sizeof(resp), 5000))
		return -EIO;
	return strstr(resp, want) ? 0 : -EPROTO;
}

/* The VDEV's state as vdev_list reports it contains @state. */
static bool vdev_state_is(struct siovd_proc *p, const char *state)
{
	char want[64];
	int i;

	snprintf(want, sizeof(want), "\"state\":\"%s\"", state);
	for (i = 0; i < 100; i++) {
		if (rpc(p, "{\"jsonrpc\":\"2.0\",\"id\":3,\"method\":\"vdev_list\"}", want) == 0)
			return true;
		usleep(20000);
	}
	return false;
}

static void session(struct siovd_proc *p, const char *sock)
{
	struct siov_vu_msg m;
	struct siov_dev *dev;
	int rc;

	if (siov_raw_connect(sock, 5000, &dev)) {
		check(false, "raw connect to the VDEV");
		return;
	}
	check(vdev_state_is(p, "connected"), "siovd sees the front end");
	check(siov_raw_send(dev, VHOST_USER_GET_FEATURES, VHOST_USER_VERSION, NULL, 0, NULL, 0) ==
		  0,
	      "GET_FEATURES sent");
	check(siov_raw_recv(dev, &m, NULL, NULL, 5000) == 0 &&
		  m.hdr.request == VHOST_USER_GET_FEATURES &&
		  m.hdr.flags == (VHOST_USER_VERSION | VHOST_USER_REPLY_MASK) && m.hdr.size == 8 &&
		  (m.payload.u64 & (1ull << 32)),
	      "answered with a reply carrying VIRTIO_F_VERSION_1");
	/* A header of another protocol version: siovd must drop the connection. */
	check(siov_raw_send(dev, VHOST_USER_GET_FEATURES, 2, NULL, 0, NULL, 0) == 0,
	      "a message of protocol version 2 sent");
	rc = siov_raw_recv(dev, &m, NULL, NULL, 5000);
	check(rc != 0 && rc != -ETIMEDOUT, "siovd hung up on it at once");
	siov_dev_close(dev);
	check(vdev_state_is(p, "listening"), "the VDEV listens again");
}

int main(int argc, char **argv)
{
	struct siovd_proc p;
	char req[512], sock[160];

	if (argc != 2 || access(argv[1], X_OK)) {
		printf("SKIP: usage: %s SIOVD\n", argv[0]);
		return 77;
	}
	if (siovd_proc_start(&p, argv[1], "raw", NULL))
		return 1;
	snprintf(sock, sizeof(sock), "%s/v.sock", p.dir);
	snprintf(req, sizeof(req),
		 "{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"backend_create\",\"params\":{\"name\":"
		 "\"b\",\"type\":\"ram\",\"size\":\"1M\"}}");
	check(rpc(&p, req, "\"result\"") == 0, "backend created");
	snprintf(req, sizeof(req),
		 "{\"jsonrpc\":\"2.0\",\"id\":2,\"method\":\"vdev_create\",\"params\":{\"name\":"
		 "\"v\",\"backend\":\"b\",\"socket\":\"%s\"}}",
		 sock);
	check(rpc(&p, req, "\"result\"") == 0, "VDEV created");
	session(&p, sock);
	session(&p, sock);
	check(siovd_proc_stop(&p, SIOVD_PROC_STOP_MS) == 0, "siovd stops cleanly");
	p.failed = g_failed > 0;
	siovd_proc_cleanup(&p);
	printf("%s: %d failed\n", g_failed ? "FAIL" : "PASS", g_failed);
	return g_failed ? 1 : 0;
}
