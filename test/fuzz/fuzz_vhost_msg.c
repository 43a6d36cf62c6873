/*
 * fuzz_vhost_msg: vhost-user message handling (lib/vhost/vhost_user.c and the
 * memory table) in a real siovd stack.  LLVMFuzzerInitialize() builds what
 * siovd runs: a control loop, a real VDCM with one engine thread, a 1 MiB ram
 * backend and one two-queue virtio-blk VDEV listening on a socket in a fresh
 * temporary directory.  Each input is one front-end session: connect, send a
 * sequence of chunks, let the server's loop consume them (reading and
 * discarding its replies, closing any fd a reply carries), close, and let the
 * loop tear the session down.  Afterwards the process must hold exactly the
 * fds it held after the first input.
 *
 * Input: a sequence of chunks, each starting with a byte c:
 *   c & 3 == 0  RAW:  u16 len, then len bytes written to the socket as they are
 *   c & 3 == 1  MSG:  u8 request, u8 flags, u16 size, then size & 0x1ff payload
 *                     bytes, sent behind a well-formed header (version 1, the
 *                     NEED_REPLY bit from flags; flags & 0x80 sends flags raw)
 *   c & 3 == 2  FILL: u16 offset (x4), u16 len, then len bytes written into the
 *                     session's guest memory (a 256 KiB memfd)
 *   c & 3 == 3  ACT:  u8 a: 0/1 kick eventfd 0/1, 2 give the engine 200 us,
 *                     3 shut down our sending side
 * RAW and MSG carry (c >> 2) & 15 fds (more than 8 is a protocol violation),
 * each chosen by one byte: the guest memfd, eventfd 0, eventfd 1, a 4 KiB
 * memfd, /dev/null.
 */
#include <errno.h>
#include <fcntl.h>
#include <linux/sockios.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "fuzz_common.h"
#include "siov/vhost_user.h"
#include "siov_internal/loop.h"
#include "siov_internal/vdcm.h"

#define MEM_SIZE   (256u << 10)
#define MAX_CHUNKS 64
#define MAX_FDS	   15

enum { OP_RAW, OP_MSG, OP_FILL, OP_ACT };
enum { FD_MEM, FD_EV0, FD_EV1, FD_SMALL, FD_NULL, FD_KINDS };

static struct siov_loop *g_loop;
static struct siov_vdcm *g_vdcm;
static char g_sock[256];

struct session {
	int sock;
	int fds[FD_KINDS];
	bool closed; /* the server dropped us */
};

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
	struct siov_vdcm_opts vo = {.engines = 1, .poll_us = 20};
	struct siov_backend_conf bc = {.name = "ram0", .type = SIOV_BACKEND_RAM, .size = 1u << 20};
	struct siov_vdev_conf dc = {
	    .name = "vd0", .type = SIOV_VDEV_BLK, .backend = "ram0", .queues = 2};
	struct siov_err err = {0};

	snprintf(g_sock, sizeof(g_sock), "%s/vd0.sock", fuzz_tmpdir("fuzz-vhost"));
	snprintf(dc.socket, sizeof(dc.socket), "%s", g_sock);
	if (siov_loop_create(&g_loop))
		abort();
	vo.loop = g_loop;
	if (siov_vdcm_create(&vo, &g_vdcm) || siov_vdcm_backend_create(g_vdcm, &bc, &err) ||
	    siov_vdcm_vdev_create(g_vdcm, &dc, &err)) {
		fprintf(stderr, "fuzz_vhost_msg: setup failed: %s\n", err.msg);
		abort();
	}
	return 0;
}

static void connected_cb(const struct siov_vdev_info *info, void *arg)
{
	*(bool *)arg = info->connected;
}

static void requests_cb(const struct siov_vdev_info *info, void *arg)
{
	unsigned i;

	for (i = 0; i < info->nqueues; i++)
		*(uint64_t *)arg += info->queues[i].requests;
}

static bool server_connected(void)
{
	bool c = false;

	siov_vdcm_vdev_get(g_vdcm, "vd0", connected_cb, &c);
	return c;
}

/* Reads and drops whatever the server answered, closing fds it sent. */
static void drain(struct session *s)
{
	char buf[4096], cbuf[CMSG_SPACE(sizeof(int) * 8)];

	for (;;) {
		struct iovec iov = {.iov_base = buf, .iov_len = sizeof(buf)};
		struct msghdr mh = {.msg_iov = &iov,
				    .msg_iovlen = 1,
				    .msg_control = cbuf,
				    .msg_controllen = sizeof(cbuf)};
		struct cmsghdr *c;
		ssize_t n = recvmsg(s->sock, &mh, MSG_DONTWAIT | MSG_CMSG_CLOEXEC);

		if (n <= 0) {
			if (n == 0 || (errno != EAGAIN && errno != EINTR))
				s->closed = true;
			return;
		}
		for (c = CMSG_FIRSTHDR(&mh); c; c = CMSG_NXTHDR(&mh, c)) {
			if (c->cmsg_level != SOL_SOCKET || c->cmsg_type != SCM_RIGHTS)
				continue;
			for (size_t i = 0; i < (c->cmsg_len - CMSG_LEN(0)) / sizeof(int); i++) {
				int fd;
				memcpy(&fd, CMSG_DATA(c) + i * sizeof(int), sizeof(int));
				close(fd);
			}
		}
	}
}

/* Runs the server's loop until it has read everything we sent, or dropped us. */
static void pump(struct session *s)
{
	int i, unread = 0;

	for (i = 0; i < 100; i++) {
		siov_loop_run_once(g_loop, i < 2 ? 0 : 1);
		drain(s);
		if (s->closed || ioctl(s->sock, SIOCOUTQ, &unread) < 0 || unread == 0)
			return;
	}
}

static void send_bytes(struct session *s, const void *buf, size_t len, const int *fds,
		       unsigned nfds)
{
	char cbuf[CMSG_SPACE(sizeof(int) * MAX_FDS)] = {0};
	size_t off = 0;
	int tries;

	for (tries = 0; tries < 50 && !s->closed && (off < len || nfds); tries++) {
		struct iovec iov = {.iov_base = (uint8_t *)buf + off, .iov_len = len - off};
		struct msghdr mh = {.msg_iov = &iov, .msg_iovlen = 1};
		ssize_t n;

		/* A zero-byte stream message cannot carry fds; send one byte at least. */
		if (len == 0)
			break;
		if (nfds) {
			struct cmsghdr *c;
			mh.msg_control = cbuf;
			mh.msg_controllen = CMSG_SPACE(sizeof(int) * nfds);
			c = CMSG_FIRSTHDR(&mh);
			c->cmsg_level = SOL_SOCKET;
			c->cmsg_type = SCM_RIGHTS;
			c->cmsg_len = CMSG_LEN(sizeof(int) * nfds);
			memcpy(CMSG_DATA(c), fds, sizeof(int) * nfds);
		}
		n = sendmsg(s->sock, &mh, MSG_NOSIGNAL | MSG_DONTWAIT);
		if (n < 0 && errno != EAGAIN && errno != EINTR) {
			s->closed = true;
			return;
		}
		if (n > 0) {
			off += (size_t)n;
			nfds = 0;
		}
		pump(s);
	}
}

static unsigned pick_fds(struct fz *f, struct session *s, unsigned n, int *out)
{
	unsigned i;

	for (i = 0; i < n; i++)
		out[i] = s->fds[fz_u8(f) % FD_KINDS];
	return n;
}

static void chunk(struct fz *f, struct session *s)
{
	uint8_t c = fz_u8(f), buf[4096 + sizeof(struct siov_vu_hdr)];
	int fds[MAX_FDS];
	unsigned nfds = (c >> 2) & 15;
	struct siov_vu_hdr h;
	uint16_t len, off;
	uint8_t fl;

	switch (c & 3) {
	case OP_RAW:
		len = fz_u16(f) % 4096;
		nfds = pick_fds(f, s, nfds, fds);
		if (len > f->left)
			len = (uint16_t)f->left;
		fz_bytes(f, buf, len);
		send_bytes(s, buf, len, fds, nfds);
		break;
	case OP_MSG:
		h.request = fz_u8(f);
		fl = fz_u8(f);
		h.flags = fl & 0x80 ? fl : VHOST_USER_VERSION | (fl & VHOST_USER_NEED_REPLY);
		h.size = fz_u16(f) & 0x1ff;
		nfds = pick_fds(f, s, nfds, fds);
		memcpy(buf, &h, sizeof(h));
		fz_bytes(f, buf + sizeof(h), h.size);
		send_bytes(s, buf, sizeof(h) + h.size, fds, nfds);
		break;
	case OP_FILL:
		off = fz_u16(f);
		len = fz_u16(f) % 4096;
		if (len > f->left)
			len = (uint16_t)f->left;
		fz_bytes(f, buf, len);
		(void)!pwrite(s->fds[FD_MEM], buf, len, ((off_t)off * 4) % MEM_SIZE);
		break;
	case OP_ACT:
		switch (fz_u8(f) % 4) {
		case 0:
		case 1:
			eventfd_write(s->fds[(c >> 2) & 1 ? FD_EV1 : FD_EV0], 1);
			break;
		case 2:
			usleep(200);
			break;
		case 3:
			shutdown(s->sock, SHUT_WR);
			break;
		}
		pump(s);
		break;
	}
}

static void session_open(struct session *s)
{
	struct sockaddr_un sa = {.sun_family = AF_UNIX};
	int i;

	memset(s, 0, sizeof(*s));
	snprintf(sa.sun_path, sizeof(sa.sun_path), "%s", g_sock);
	s->sock = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (s->sock < 0 || connect(s->sock, (struct sockaddr *)&sa, sizeof(sa)) < 0)
		abort();
	s->fds[FD_MEM] = memfd_create("fuzz-guest", MFD_CLOEXEC);
	s->fds[FD_SMALL] = memfd_create("fuzz-small", MFD_CLOEXEC);
	s->fds[FD_EV0] = eventfd(0, EFD_CLOEXEC);
	s->fds[FD_EV1] = eventfd(0, EFD_CLOEXEC);
	s->fds[FD_NULL] = open("/dev/null", O_RDWR | O_CLOEXEC);
	for (i = 0; i < FD_KINDS; i++)
		if (s->fds[i] < 0)
			abort();
	if (ftruncate(s->fds[FD_MEM], MEM_SIZE) < 0 || ftruncate(s->fds[FD_SMALL], 4096) < 0)
		abort();
	/* Accept. */
	for (i = 0; i < 100 && !server_connected(); i++)
		siov_loop_run_once(g_loop, i ? 10 : 0);
	if (!server_connected()) {
		fprintf(stderr, "fuzz_vhost_msg: the server never accepted us\n");
		abort();
	}
}

static void session_close(struct session *s)
{
	int i;

	close(s->sock);
	for (i = 0; i < 500 && server_connected(); i++)
		siov_loop_run_once(g_loop, 10);
	if (server_connected()) {
		fprintf(stderr, "fuzz_vhost_msg: the server kept a closed session\n");
		abort();
	}
	/* One more round: watches deleted in the last callback are reaped now. */
	siov_loop_run_once(g_loop, 0);
	if (getenv("SIOV_FUZZ_LOG")) {
		uint64_t n = 0;
		siov_vdcm_vdev_get(g_vdcm, "vd0", requests_cb, &n);
		fprintf(stderr, "fuzz_vhost_msg: %llu request(s) completed so far\n",
			(unsigned long long)n);
	}
	for (i = 0; i < FD_KINDS; i++)
		close(s->fds[i]);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct session s;
	struct fz f;
	int n;

	fz_init(&f, data, size);
	session_open(&s);
	for (n = 0; n < MAX_CHUNKS && f.left && !s.closed; n++) {
		chunk(&f, &s);
		if (!server_connected())
			s.closed = true;
	}
	session_close(&s);
	fuzz_check_fds("fuzz_vhost_msg");
	return 0;
}
