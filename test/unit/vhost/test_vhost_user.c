/*
 * The vhost-user slow path (lib/vhost/vhost_user.c), message by message,
 * against the real code: a real control loop, one real engine thread, a ram
 * backend and the virtio-blk device model behind a vhost-user server whose
 * connection is one end of a socketpair (siov_vu_server_adopt).  The test is
 * the front end on the other end: it sends each message as QEMU would, runs
 * the server's loop until the message is consumed, and checks the answer, the
 * REPLY_ACK status, what the server reports (features, state, broken reason)
 * and, for the data path, what a virtio-blk request through the rings does.
 * A protocol violation must drop the connection (state back to "listening");
 * a refused but well-formed request must leave it up.  After every test the
 * process holds the fds it held before.
 */
#include <errno.h>
#include <fcntl.h>
#include <linux/sockios.h>
#include <linux/virtio_blk.h>
#include <linux/virtio_config.h>
#include <linux/virtio_ring.h>
#include <poll.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <dirent.h>
#include <sys/eventfd.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include "siov/vhost_user.h"
#include "siov_internal/backend.h"
#include "siov_internal/engine.h"
#include "siov_internal/log.h"
#include "siov_internal/loop.h"
#include "siov_internal/vhost_user.h"
#include "siov_internal/virtio_blk.h"
#include "siov_internal/virtqueue.h"

#define NQUEUES	 2
#define QSIZE	 8
#define DISK	 (1u << 20)
#define MEM_SIZE (1u << 20)
#define MEM_GPA	 0x100000ull
/* Offsets inside guest memory. */
#define DESC_OFF   0x0000u
#define AVAIL_OFF  0x1000u
#define USED_OFF   0x2000u
#define HDR_OFF	   0x10000u
#define DATA_OFF   0x11000u
#define STATUS_OFF 0x12000u
#define NO_REPLY   (-1000) /* call(): the server sent nothing */

struct fx {
	char dir[64], sock[96];
	int fds_before;
	struct siov_loop *loop;
	struct siov_engines *engines;
	struct siov_backend *bd;
	struct siov_blk *blk;
	struct siov_vu_server *srv;
	int fe;	   /* our end of the socketpair */
	int memfd; /* guest memory */
	uint8_t *mem;
	int kick, call;
	uint16_t avail_idx;
};

static int count_fds(void)
{
	DIR *d = opendir("/proc/self/fd");
	struct dirent *e;
	int n = 0;

	while (d && (e = readdir(d)))
		n += e->d_name[0] != '.';
	if (d)
		closedir(d);
	return n - 1; /* the directory's own fd */
}

/* ---- the front end's side of the socket ---- */

static void send_fds(struct fx *f, const void *buf, size_t len, const int *fds, unsigned nfds)
{
	char cbuf[CMSG_SPACE(sizeof(int) * 16)] = {0};
	struct iovec iov = {.iov_base = (void *)buf, .iov_len = len};
	struct msghdr mh = {.msg_iov = &iov, .msg_iovlen = 1};

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
	assert_int_equal(sendmsg(f->fe, &mh, MSG_NOSIGNAL), (ssize_t)len);
}

/* Runs the server's loop until it has read everything we sent (or dropped us). */
static void pump(struct fx *f)
{
	int i, unread = 0;

	for (i = 0; i < 200; i++) {
		siov_loop_run_once(f->loop, i < 2 ? 0 : 5);
		if (!siov_vu_server_connected(f->srv) || ioctl(f->fe, SIOCOUTQ, &unread) < 0 ||
		    unread == 0)
			break;
	}
	siov_loop_run_once(f->loop, 0);
}

static void msg_send(struct fx *f, uint32_t req, uint32_t flags, const void *payload, uint32_t size,
		     const int *fds, unsigned nfds)
{
	struct siov_vu_msg m;

	memset(&m, 0, sizeof(m));
	m.hdr.request = req;
	m.hdr.flags = flags;
	m.hdr.size = size;
	if (size)
		memcpy(&m.payload, payload, size);
	send_fds(f, &m, sizeof(m.hdr) + size, fds, nfds);
	pump(f);
}

/* One reply, if the server sent one; its fd (if any) in *fd.  Size or -errno. */
static int msg_recv(struct fx *f, struct siov_vu_msg *m, int *fd)
{
	char cbuf[CMSG_SPACE(sizeof(int) * 8)];
	struct iovec iov = {.iov_base = m, .iov_len = sizeof(*m)};
	struct msghdr mh = {
	    .msg_iov = &iov, .msg_iovlen = 1, .msg_control = cbuf, .msg_controllen = sizeof(cbuf)};
	struct cmsghdr *c;
	ssize_t n;

	if (fd)
		*fd = -1;
	n = recvmsg(f->fe, &mh, MSG_DONTWAIT | MSG_CMSG_CLOEXEC);
	if (n < 0)
		return -errno;
	for (c = CMSG_FIRSTHDR(&mh); c; c = CMSG_NXTHDR(&mh, c)) {
		int got;

		if (c->cmsg_type != SCM_RIGHTS)
			continue;
		memcpy(&got, CMSG_DATA(c), sizeof(got));
		if (fd && *fd < 0)
			*fd = got;
		else
			close(got);
	}
	return (int)n;
}

/*
 * Sends with NEED_REPLY and returns the REPLY_ACK value (0 = done, 1 =
 * refused), NO_REPLY if nothing came back.
 */
static int64_t call_ack(struct fx *f, uint32_t req, const void *payload, uint32_t size,
			const int *fds, unsigned nfds)
{
	struct siov_vu_msg r;
	int n;

	msg_send(f, req, VHOST_USER_VERSION | VHOST_USER_NEED_REPLY, payload, size, fds, nfds);
	n = msg_recv(f, &r, NULL);
	if (n < 0)
		return NO_REPLY;
	assert_int_equal(n, sizeof(r.hdr) + 8);
	assert_int_equal(r.hdr.request, req);
	assert_int_equal(r.hdr.flags, VHOST_USER_VERSION | VHOST_USER_REPLY_MASK);
	assert_int_equal(r.hdr.size, 8);
	return (int64_t)r.payload.u64;
}

/* A request that is answered (GET_*): returns the reply's u64. */
static uint64_t get_u64(struct fx *f, uint32_t req)
{
	struct siov_vu_msg r;

	msg_send(f, req, VHOST_USER_VERSION, NULL, 0, NULL, 0);
	assert_int_equal(msg_recv(f, &r, NULL), sizeof(r.hdr) + 8);
	assert_int_equal(r.hdr.request, req);
	assert_int_equal(r.hdr.flags, VHOST_USER_VERSION | VHOST_USER_REPLY_MASK);
	return r.payload.u64;
}

static bool connected(const struct fx *f)
{
	return siov_vu_server_connected(f->srv);
}

/* The server must have dropped us: the socket reads EOF, the VDEV listens again. */
static void assert_dropped(struct fx *f)
{
	struct siov_vu_msg r;

	assert_false(connected(f));
	assert_string_equal(siov_vu_server_state(f->srv), "listening");
	while (msg_recv(f, &r, NULL) > 0)
		;
	assert_int_equal(msg_recv(f, &r, NULL), 0);
}

/* ---- fixture ---- */

static int fx_setup(void **state)
{
	struct siov_engines_opts eo = {.count = 1, .poll_us = 20};
	struct siov_backend_conf bc = {.name = "ram0", .type = SIOV_BACKEND_RAM, .size = DISK};
	struct siov_blk_conf kc = {.name = "vd0", .size = DISK, .queues = NQUEUES};
	struct siov_vu_server_opts so = {
	    .name = "vd0", .queues = NQUEUES, .dev_ops = &siov_blk_dev_ops};
	struct siov_err err = {0};
	struct fx *f = calloc(1, sizeof(*f));
	int sv[2];

	assert_non_null(f);
	f->fds_before = count_fds();
	snprintf(f->dir, sizeof(f->dir), "/tmp/siov-vhost-XXXXXX");
	assert_non_null(mkdtemp(f->dir));
	snprintf(f->sock, sizeof(f->sock), "%s/vd0.sock", f->dir);
	assert_int_equal(siov_loop_create(&f->loop), 0);
	assert_int_equal(siov_engines_create(&eo, &f->engines), 0);
	assert_int_equal(siov_backend_open(&bc, &f->bd, &err), 0);
	kc.backend = f->bd;
	assert_int_equal(siov_blk_create(&kc, &f->blk), 0);
	so.loop = f->loop;
	so.engines = f->engines;
	so.socket_path = f->sock;
	so.dev = f->blk;
	assert_int_equal(siov_vu_server_create(&so, &f->srv, &err), 0);
	assert_string_equal(siov_vu_server_state(f->srv), "listening");
	assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), 0);
	assert_int_equal(fcntl(sv[0], F_SETFL, O_NONBLOCK), 0);
	assert_int_equal(siov_vu_server_adopt(f->srv, sv[0]), 0);
	f->fe = sv[1];
	f->memfd = memfd_create("guest", MFD_CLOEXEC);
	assert_true(f->memfd >= 0);
	assert_int_equal(ftruncate(f->memfd, MEM_SIZE), 0);
	f->mem = mmap(NULL, MEM_SIZE, PROT_READ | PROT_WRITE, MAP_SHARED, f->memfd, 0);
	assert_true(f->mem != MAP_FAILED);
	f->kick = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	f->call = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	assert_true(f->kick >= 0 && f->call >= 0);
	*state = f;
	return 0;
}

static int fx_teardown(void **state)
{
	struct fx *f = *state;

	close(f->fe);
	pump(f);
	siov_vu_server_destroy(f->srv);
	siov_blk_destroy(f->blk);
	siov_backend_close(f->bd);
	siov_engines_destroy(f->engines);
	siov_loop_destroy(f->loop);
	munmap(f->mem, MEM_SIZE);
	close(f->memfd);
	close(f->kick);
	close(f->call);
	rmdir(f->dir);
	/* Every fd the server took (memory, kick, call, inflight) was closed. */
	assert_int_equal(count_fds(), f->fds_before);
	free(f);
	return 0;
}

/* ---- building blocks of a session ---- */

static struct siov_vu_mem_region region(const struct fx *f, uint64_t gpa, uint64_t size,
					uint64_t off)
{
	struct siov_vu_mem_region r = {.guest_phys_addr = gpa,
				       .memory_size = size,
				       .userspace_addr = (uint64_t)(uintptr_t)f->mem + off,
				       .mmap_offset = off};
	return r;
}

static uint64_t uva(const struct fx *f, uint32_t off)
{
	return (uint64_t)(uintptr_t)f->mem + off;
}

static void negotiate(struct fx *f)
{
	uint64_t feat = (1ull << VIRTIO_F_VERSION_1) | (1ull << VHOST_USER_F_PROTOCOL_FEATURES_BIT);
	uint64_t pf = 1ull << VHOST_USER_PROTOCOL_F_REPLY_ACK;

	msg_send(f, VHOST_USER_SET_FEATURES, VHOST_USER_VERSION, &feat, 8, NULL, 0);
	msg_send(f, VHOST_USER_SET_PROTOCOL_FEATURES, VHOST_USER_VERSION, &pf, 8, NULL, 0);
	assert_int_equal(call_ack(f, VHOST_USER_SET_OWNER, NULL, 0, NULL, 0), 0);
}

static void mem_table(struct fx *f)
{
	struct siov_vu_mem_table t = {.nregions = 1};

	t.regions[0] = region(f, MEM_GPA, MEM_SIZE, 0);
	assert_int_equal(
	    call_ack(f, VHOST_USER_SET_MEM_TABLE, &t, 8 + sizeof(t.regions[0]), &f->memfd, 1), 0);
}

static int64_t vring_state(struct fx *f, uint32_t req, uint32_t index, uint32_t num)
{
	struct siov_vu_vring_state s = {.index = index, .num = num};

	return call_ack(f, req, &s, sizeof(s), NULL, 0);
}

static int64_t vring_addr(struct fx *f, uint32_t index, uint64_t desc, uint64_t avail,
			  uint64_t used)
{
	struct siov_vu_vring_addr a = {.index = index,
				       .desc_user_addr = desc,
				       .avail_user_addr = avail,
				       .used_user_addr = used};

	return call_ack(f, VHOST_USER_SET_VRING_ADDR, &a, sizeof(a), NULL, 0);
}

static int64_t vring_fd(struct fx *f, uint32_t req, uint32_t index, int fd)
{
	uint64_t v = index | (fd < 0 ? VHOST_USER_VRING_NOFD : 0);

	return call_ack(f, req, &v, 8, fd < 0 ? NULL : &fd, fd < 0 ? 0 : 1);
}

/* Queue 0 fully set up and enabled: the server hands it to the engine. */
/* Memory and queue 0 at base 0, up to the kick; SET_VRING_ENABLE is left to the caller. */
static void ring_up(struct fx *f)
{
	mem_table(f);
	assert_int_equal(vring_state(f, VHOST_USER_SET_VRING_NUM, 0, QSIZE), 0);
	assert_int_equal(vring_state(f, VHOST_USER_SET_VRING_BASE, 0, 0), 0);
	assert_int_equal(vring_addr(f, 0, uva(f, DESC_OFF), uva(f, AVAIL_OFF), uva(f, USED_OFF)),
			 0);
	assert_int_equal(vring_fd(f, VHOST_USER_SET_VRING_CALL, 0, f->call), 0);
	assert_int_equal(vring_fd(f, VHOST_USER_SET_VRING_KICK, 0, f->kick), 0);
}

static void start_queue0(struct fx *f)
{
	negotiate(f);
	ring_up(f);
	/* With PROTOCOL_FEATURES a ring starts disabled. */
	assert_string_equal(siov_vu_server_state(f->srv), "connected");
	assert_int_equal(vring_state(f, VHOST_USER_SET_VRING_ENABLE, 0, 1), 0);
	assert_string_equal(siov_vu_server_state(f->srv), "running");
}

static uint64_t gpa(uint32_t off)
{
	return MEM_GPA + off;
}

/*
 * One virtio-blk request on queue 0 (header, data, status); returns its
 * status, -EPIPE if the queue broke over it, -ETIMEDOUT if nothing came back.
 */
static int blk_io(struct fx *f, uint32_t type, uint64_t sector, uint32_t len)
{
	struct vring_desc *d = (void *)(f->mem + DESC_OFF);
	struct vring_avail *av = (void *)(f->mem + AVAIL_OFF);
	struct vring_used *u = (void *)(f->mem + USED_OFF);
	struct virtio_blk_outhdr *h = (void *)(f->mem + HDR_OFF);
	uint16_t want = (uint16_t)(f->avail_idx + 1);
	int i;

	h->type = type;
	h->ioprio = 0;
	h->sector = sector;
	f->mem[STATUS_OFF] = 0xee;
	d[0] = (struct vring_desc){gpa(HDR_OFF), sizeof(*h), VRING_DESC_F_NEXT, 1};
	d[1] = (struct vring_desc){
	    gpa(DATA_OFF), len,
	    VRING_DESC_F_NEXT | (type == VIRTIO_BLK_T_IN ? VRING_DESC_F_WRITE : 0), 2};
	d[2] = (struct vring_desc){gpa(STATUS_OFF), 1, VRING_DESC_F_WRITE, 0};
	av->ring[f->avail_idx % QSIZE] = 0;
	__atomic_store_n(&av->idx, want, __ATOMIC_RELEASE);
	f->avail_idx = want;
	assert_int_equal(eventfd_write(f->kick, 1), 0);
	for (i = 0; i < 5000 && __atomic_load_n(&u->idx, __ATOMIC_ACQUIRE) != want; i++) {
		if (!strcmp(siov_vu_server_state(f->srv), "broken"))
			return -EPIPE; /* the queue refused the request */
		usleep(1000);
	}
	if (__atomic_load_n(&u->idx, __ATOMIC_ACQUIRE) != want)
		return -ETIMEDOUT;
	return f->mem[STATUS_OFF];
}

static bool call_signalled(struct fx *f)
{
	struct pollfd p = {.fd = f->call, .events = POLLIN};
	eventfd_t v;

	if (poll(&p, 1, 2000) != 1)
		return false;
	return eventfd_read(f->call, &v) == 0 && v > 0;
}

/* ---- features, protocol features, owner ---- */

static void t_get_features(void **state)
{
	struct fx *f = *state;
	uint64_t v = get_u64(f, VHOST_USER_GET_FEATURES);

	/* The ring and transport bits siov always offers, and blk's own. */
	assert_true(v & (1ull << VIRTIO_F_VERSION_1));
	assert_true(v & (1ull << VIRTIO_RING_F_INDIRECT_DESC));
	assert_true(v & (1ull << VIRTIO_RING_F_EVENT_IDX));
	assert_true(v & (1ull << VHOST_USER_F_PROTOCOL_FEATURES_BIT));
	assert_true(v & (1ull << VIRTIO_BLK_F_FLUSH));
	assert_true(v & (1ull << VIRTIO_BLK_F_MQ));
	assert_false(v & (1ull << VIRTIO_BLK_F_RO));
	assert_true(connected(f));
}

static void t_set_features(void **state)
{
	struct fx *f = *state;
	uint64_t offered = get_u64(f, VHOST_USER_GET_FEATURES), bad = offered | (1ull << 55);
	uint64_t pf = 1ull << VHOST_USER_PROTOCOL_F_REPLY_ACK;

	msg_send(f, VHOST_USER_SET_PROTOCOL_FEATURES, VHOST_USER_VERSION, &pf, 8, NULL, 0);
	assert_int_equal(call_ack(f, VHOST_USER_SET_FEATURES, &offered, 8, NULL, 0), 0);
	assert_int_equal(siov_vu_server_features(f->srv), offered);
	/* A bit never offered is refused, and what was negotiated stays. */
	assert_int_equal(call_ack(f, VHOST_USER_SET_FEATURES, &bad, 8, NULL, 0), 1);
	assert_int_equal(siov_vu_server_features(f->srv), offered);
	assert_true(connected(f));
	/* A SET_FEATURES without its u64 is malformed. */
	msg_send(f, VHOST_USER_SET_FEATURES, VHOST_USER_VERSION, &offered, 4, NULL, 0);
	assert_dropped(f);
}

static void t_protocol_features(void **state)
{
	struct fx *f = *state;
	uint64_t want = (1ull << VHOST_USER_PROTOCOL_F_MQ) |
			(1ull << VHOST_USER_PROTOCOL_F_REPLY_ACK) |
			(1ull << VHOST_USER_PROTOCOL_F_CONFIG) |
			(1ull << VHOST_USER_PROTOCOL_F_INFLIGHT_SHMFD) |
			(1ull << VHOST_USER_PROTOCOL_F_RESET_DEVICE) |
			(1ull << VHOST_USER_PROTOCOL_F_CONFIGURE_MEM_SLOTS) |
			(1ull << VHOST_USER_PROTOCOL_F_LOG_SHMFD);
	uint64_t all = ~0ull;

	assert_int_equal(get_u64(f, VHOST_USER_GET_PROTOCOL_FEATURES), want);
	assert_int_equal(get_u64(f, VHOST_USER_GET_QUEUE_NUM), NQUEUES);
	assert_int_equal(get_u64(f, VHOST_USER_GET_MAX_MEM_SLOTS), VHOST_USER_MAX_MEM_SLOTS);
	/* Asking for every bit keeps only what is offered, REPLY_ACK among them. */
	msg_send(f, VHOST_USER_SET_PROTOCOL_FEATURES, VHOST_USER_VERSION, &all, 8, NULL, 0);
	assert_int_equal(call_ack(f, VHOST_USER_SET_OWNER, NULL, 0, NULL, 0), 0);
}

static void t_reply_ack(void **state)
{
	struct fx *f = *state;
	uint64_t none = 0, ack = 1ull << VHOST_USER_PROTOCOL_F_REPLY_ACK;

	/*
	 * NEED_REPLY is answered even without REPLY_ACK negotiated: a QEMU waiting
	 * for an incoming migration does not renegotiate after siovd restarted
	 * and waits for the ack (libvhost-user answers too).
	 */
	assert_int_equal(call_ack(f, VHOST_USER_SET_OWNER, NULL, 0, NULL, 0), 0);
	msg_send(f, VHOST_USER_SET_PROTOCOL_FEATURES, VHOST_USER_VERSION, &none, 8, NULL, 0);
	assert_int_equal(call_ack(f, VHOST_USER_SET_OWNER, NULL, 0, NULL, 0), 0);
	msg_send(f, VHOST_USER_SET_PROTOCOL_FEATURES, VHOST_USER_VERSION, &ack, 8, NULL, 0);
	assert_int_equal(call_ack(f, VHOST_USER_SET_OWNER, NULL, 0, NULL, 0), 0);
	/* An unknown request is refused, not fatal. */
	assert_int_equal(call_ack(f, 200, NULL, 0, NULL, 0), 1);
	assert_true(connected(f));
	/* Without NEED_REPLY nothing is sent back, even with REPLY_ACK on. */
	msg_send(f, VHOST_USER_SET_OWNER, VHOST_USER_VERSION, NULL, 0, NULL, 0);
	{
		struct siov_vu_msg r;
		assert_int_equal(msg_recv(f, &r, NULL), -EAGAIN);
	}
}

/* ---- memory ---- */

static void t_mem_table(void **state)
{
	struct fx *f = *state;
	struct siov_vu_mem_table t = {.nregions = 2};
	int fds[2] = {f->memfd, f->memfd};

	negotiate(f);
	/* Two regions that overlap in guest-physical space are refused. */
	t.regions[0] = region(f, MEM_GPA, MEM_SIZE / 2, 0);
	t.regions[1] = region(f, MEM_GPA + 4096, MEM_SIZE / 2, MEM_SIZE / 2);
	assert_int_equal(
	    call_ack(f, VHOST_USER_SET_MEM_TABLE, &t, 8 + 2 * sizeof(t.regions[0]), fds, 2), 1);
	/* A region larger than its fd is refused. */
	t.nregions = 1;
	t.regions[0] = region(f, MEM_GPA, 2 * MEM_SIZE, 0);
	assert_int_equal(
	    call_ack(f, VHOST_USER_SET_MEM_TABLE, &t, 8 + sizeof(t.regions[0]), fds, 1), 1);
	/* Two halves side by side are fine. */
	t.nregions = 2;
	t.regions[0] = region(f, MEM_GPA, MEM_SIZE / 2, 0);
	t.regions[1] = region(f, MEM_GPA + MEM_SIZE / 2, MEM_SIZE / 2, MEM_SIZE / 2);
	assert_int_equal(
	    call_ack(f, VHOST_USER_SET_MEM_TABLE, &t, 8 + 2 * sizeof(t.regions[0]), fds, 2), 0);
	assert_true(connected(f));
	/* One fd for two regions is a protocol violation. */
	msg_send(f, VHOST_USER_SET_MEM_TABLE, VHOST_USER_VERSION, &t, 8 + 2 * sizeof(t.regions[0]),
		 fds, 1);
	assert_dropped(f);
}

static void t_mem_table_too_many(void **state)
{
	struct fx *f = *state;
	struct siov_vu_mem_table t = {.nregions = VHOST_USER_MEM_REGIONS_MAX + 1};

	negotiate(f);
	msg_send(f, VHOST_USER_SET_MEM_TABLE, VHOST_USER_VERSION, &t, sizeof(t), NULL, 0);
	assert_dropped(f);
}

static void t_add_rem_mem_reg(void **state)
{
	struct fx *f = *state;
	struct siov_vu_mem_reg a = {0}, b = {0}, c = {0};

	negotiate(f);
	a.region = region(f, MEM_GPA, MEM_SIZE / 2, 0);
	b.region = region(f, MEM_GPA + MEM_SIZE / 2, MEM_SIZE / 2, MEM_SIZE / 2);
	c.region = region(f, MEM_GPA, MEM_SIZE / 4, 0);
	assert_int_equal(call_ack(f, VHOST_USER_ADD_MEM_REG, &a, sizeof(a), &f->memfd, 1), 0);
	/* The same region again: QEMU sends it once per queue pair of a net device. */
	assert_int_equal(call_ack(f, VHOST_USER_ADD_MEM_REG, &a, sizeof(a), &f->memfd, 1), 0);
	/* Another region over the same range overlaps. */
	assert_int_equal(call_ack(f, VHOST_USER_ADD_MEM_REG, &c, sizeof(c), &f->memfd, 1), 1);
	assert_int_equal(call_ack(f, VHOST_USER_ADD_MEM_REG, &b, sizeof(b), &f->memfd, 1), 0);
	assert_int_equal(call_ack(f, VHOST_USER_REM_MEM_REG, &b, sizeof(b), NULL, 0), 0);
	/* Removing what is not there (again, per queue pair) is done already. */
	assert_int_equal(call_ack(f, VHOST_USER_REM_MEM_REG, &b, sizeof(b), NULL, 0), 0);
	assert_true(connected(f));
	/* ADD_MEM_REG without its fd is a protocol violation. */
	msg_send(f, VHOST_USER_ADD_MEM_REG, VHOST_USER_VERSION, &b, sizeof(b), NULL, 0);
	assert_dropped(f);
}

/*
 * REM_MEM_REG and ADD_MEM_REG under a running queue: without memory it stops;
 * with a table that maps the rings but not the buffers it runs again, and the
 * first request naming unmapped memory breaks that queue, with the reason,
 * while the connection stays up.
 */
static void t_mem_reg_data_path(void **state)
{
	struct fx *f = *state;
	struct siov_vu_mem_reg a = {0};

	start_queue0(f);
	assert_int_equal(blk_io(f, VIRTIO_BLK_T_IN, 0, 512), VIRTIO_BLK_S_OK);
	a.region = region(f, MEM_GPA, MEM_SIZE, 0);
	assert_int_equal(call_ack(f, VHOST_USER_REM_MEM_REG, &a, sizeof(a), NULL, 0), 0);
	assert_string_equal(siov_vu_server_state(f->srv), "connected");
	/* 64 KiB at another guest-physical address: the rings, not the buffers. */
	a.region = region(f, 0x40000000ull, 0x10000, 0);
	assert_int_equal(call_ack(f, VHOST_USER_ADD_MEM_REG, &a, sizeof(a), &f->memfd, 1), 0);
	assert_string_equal(siov_vu_server_state(f->srv), "running");
	assert_int_equal(blk_io(f, VIRTIO_BLK_T_IN, 0, 512), -EPIPE);
	assert_non_null(strstr(siov_vu_server_broken_reason(f->srv), "outside the memory table"));
	assert_true(connected(f));
}

/* ---- vrings ---- */

static void t_vring_num(void **state)
{
	struct fx *f = *state;

	negotiate(f);
	assert_int_equal(vring_state(f, VHOST_USER_SET_VRING_NUM, 0, 0), 1);
	assert_int_equal(vring_state(f, VHOST_USER_SET_VRING_NUM, 0, 3), 1);
	assert_int_equal(vring_state(f, VHOST_USER_SET_VRING_NUM, 0, 65536), 1);
	assert_int_equal(vring_state(f, VHOST_USER_SET_VRING_NUM, 0, SIOV_VQ_MAX_SIZE * 2), 1);
	assert_int_equal(vring_state(f, VHOST_USER_SET_VRING_NUM, 0, SIOV_VQ_MAX_SIZE), 0);
	assert_int_equal(vring_state(f, VHOST_USER_SET_VRING_NUM, 1, 256), 0);
	assert_int_equal(vring_state(f, VHOST_USER_SET_VRING_NUM, NQUEUES, 256), 1);
	assert_int_equal(siov_vu_server_queue(f->srv, 0)->num, SIOV_VQ_MAX_SIZE);
	assert_int_equal(siov_vu_server_queue(f->srv, 1)->num, 256);
	assert_true(connected(f));
	/* Short vring state: malformed. */
	{
		uint32_t idx = 0;
		msg_send(f, VHOST_USER_SET_VRING_NUM, VHOST_USER_VERSION, &idx, 4, NULL, 0);
	}
	assert_dropped(f);
}

static void t_vring_num_running(void **state)
{
	struct fx *f = *state;

	start_queue0(f);
	/* A running ring's size cannot change under the engine. */
	assert_int_equal(vring_state(f, VHOST_USER_SET_VRING_NUM, 0, 16), 1);
	assert_int_equal(vring_state(f, VHOST_USER_SET_VRING_BASE, 0, 5), 1);
	assert_int_equal(siov_vu_server_queue(f->srv, 0)->num, QSIZE);
	assert_int_equal(blk_io(f, VIRTIO_BLK_T_IN, 0, 512), VIRTIO_BLK_S_OK);
}

static void t_vring_addr_bad(void **state)
{
	struct fx *f = *state;

	negotiate(f);
	mem_table(f);
	assert_int_equal(vring_state(f, VHOST_USER_SET_VRING_NUM, 0, QSIZE), 0);
	/* Misaligned used ring: accepted as a message, but the queue cannot start. */
	assert_int_equal(
	    vring_addr(f, 0, uva(f, DESC_OFF), uva(f, AVAIL_OFF), uva(f, USED_OFF) + 2), 0);
	assert_int_equal(vring_addr(f, NQUEUES, 0, 0, 0), 1);
	assert_int_equal(vring_fd(f, VHOST_USER_SET_VRING_KICK, 0, f->kick), 0);
	assert_int_equal(vring_state(f, VHOST_USER_SET_VRING_ENABLE, 0, 1), 0);
	assert_string_equal(siov_vu_server_state(f->srv), "broken");
	assert_non_null(strstr(siov_vu_server_broken_reason(f->srv), "misaligned"));
	/* Fixing the address and restarting the ring is the driver's reset. */
	assert_int_equal(vring_state(f, VHOST_USER_SET_VRING_ENABLE, 0, 0), 0);
	assert_int_equal(vring_addr(f, 0, uva(f, DESC_OFF), uva(f, AVAIL_OFF), uva(f, USED_OFF)),
			 0);
	assert_int_equal(vring_state(f, VHOST_USER_SET_VRING_ENABLE, 0, 1), 0);
	assert_string_equal(siov_vu_server_state(f->srv), "running");
	/* A ring outside the memory table breaks the queue too. */
	assert_int_equal(vring_addr(f, 0, 0x7000, uva(f, AVAIL_OFF), uva(f, USED_OFF)), 0);
	assert_string_equal(siov_vu_server_state(f->srv), "broken");
	assert_true(connected(f));
}

static void t_vring_data_and_base(void **state)
{
	struct fx *f = *state;
	struct siov_vu_vring_state s = {.index = 0};
	struct siov_vu_msg r;

	start_queue0(f);
	/* Real I/O through the rings: a write, then a read of the same sector. */
	memset(f->mem + DATA_OFF, 0x5a, 4096);
	assert_int_equal(blk_io(f, VIRTIO_BLK_T_OUT, 8, 4096), VIRTIO_BLK_S_OK);
	assert_true(call_signalled(f));
	memset(f->mem + DATA_OFF, 0, 4096);
	assert_int_equal(blk_io(f, VIRTIO_BLK_T_IN, 8, 4096), VIRTIO_BLK_S_OK);
	assert_int_equal(f->mem[DATA_OFF], 0x5a);
	assert_int_equal(f->mem[DATA_OFF + 4095], 0x5a);
	/* A request past the end of the disk fails; the queue lives on. */
	assert_int_equal(blk_io(f, VIRTIO_BLK_T_IN, DISK / 512, 512), VIRTIO_BLK_S_IOERR);
	/* GET_VRING_BASE stops the ring and answers where it stopped. */
	msg_send(f, VHOST_USER_GET_VRING_BASE, VHOST_USER_VERSION, &s, sizeof(s), NULL, 0);
	assert_int_equal(msg_recv(f, &r, NULL), sizeof(r.hdr) + sizeof(s));
	assert_int_equal(r.hdr.flags, VHOST_USER_VERSION | VHOST_USER_REPLY_MASK);
	assert_int_equal(r.payload.state.index, 0);
	assert_int_equal(r.payload.state.num, 3);
	assert_string_equal(siov_vu_server_state(f->srv), "connected");
	/* The next kick starts it again from SET_VRING_BASE. */
	assert_int_equal(vring_state(f, VHOST_USER_SET_VRING_BASE, 0, 3), 0);
	assert_int_equal(vring_fd(f, VHOST_USER_SET_VRING_KICK, 0, f->kick), 0);
	assert_string_equal(siov_vu_server_state(f->srv), "running");
	assert_int_equal(blk_io(f, VIRTIO_BLK_T_IN, 8, 512), VIRTIO_BLK_S_OK);
	assert_int_equal(siov_vu_server_queue(f->srv, 0)->stats.requests, 4);
	/* GET_VRING_BASE of a queue that does not exist cannot be answered: dropped. */
	s.index = NQUEUES;
	msg_send(f, VHOST_USER_GET_VRING_BASE, VHOST_USER_VERSION, &s, sizeof(s), NULL, 0);
	assert_dropped(f);
}

static void t_vring_fds(void **state)
{
	struct fx *f = *state;
	uint64_t v;
	int two[2];

	negotiate(f);
	/* NOFD with an fd, or no NOFD and no fd: malformed. */
	assert_int_equal(vring_fd(f, VHOST_USER_SET_VRING_ERR, 0, f->call), 0);
	assert_int_equal(vring_fd(f, VHOST_USER_SET_VRING_ERR, 0, -1), 0);
	assert_int_equal(vring_fd(f, VHOST_USER_SET_VRING_CALL, 1, -1), 0);
	/* Unknown bits beside the index and NOFD, or a queue that does not exist: refused. */
	v = 0 | (1ull << 20);
	assert_int_equal(call_ack(f, VHOST_USER_SET_VRING_CALL, &v, 8, &f->call, 1), 1);
	assert_int_equal(vring_fd(f, VHOST_USER_SET_VRING_CALL, NQUEUES, f->call), 1);
	assert_true(connected(f));
	two[0] = two[1] = f->call;
	v = 0;
	msg_send(f, VHOST_USER_SET_VRING_CALL, VHOST_USER_VERSION, &v, 8, two, 2);
	assert_dropped(f);
}

/* QEMU swaps the call fd under a running ring (MSI-X changes): the new one is used. */
static void t_vring_call_swap(void **state)
{
	struct fx *f = *state;
	int fresh = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	eventfd_t v;

	assert_true(fresh >= 0);
	start_queue0(f);
	assert_int_equal(vring_fd(f, VHOST_USER_SET_VRING_CALL, 0, fresh), 0);
	assert_string_equal(siov_vu_server_state(f->srv), "running");
	assert_int_equal(blk_io(f, VIRTIO_BLK_T_IN, 0, 512), VIRTIO_BLK_S_OK);
	assert_int_equal(eventfd_read(f->call, &v), -1); /* the old fd: never signalled */
	{
		int keep = f->call;
		f->call = fresh;
		assert_true(call_signalled(f));
		f->call = keep;
	}
	/* NOFD: no interrupts at all, and the ring goes on. */
	assert_int_equal(vring_fd(f, VHOST_USER_SET_VRING_CALL, 0, -1), 0);
	assert_int_equal(blk_io(f, VIRTIO_BLK_T_IN, 0, 512), VIRTIO_BLK_S_OK);
	assert_int_equal(eventfd_read(fresh, &v), -1);
	close(fresh);
}

static void t_vring_nofd_with_fd(void **state)
{
	struct fx *f = *state;
	uint64_t v = VHOST_USER_VRING_NOFD;

	negotiate(f);
	msg_send(f, VHOST_USER_SET_VRING_KICK, VHOST_USER_VERSION, &v, 8, &f->kick, 1);
	assert_dropped(f);
}

static void t_vring_enable(void **state)
{
	struct fx *f = *state;

	start_queue0(f);
	assert_int_equal(vring_state(f, VHOST_USER_SET_VRING_ENABLE, 0, 2), 1);
	assert_string_equal(siov_vu_server_state(f->srv), "running");
	assert_int_equal(vring_state(f, VHOST_USER_SET_VRING_ENABLE, 0, 0), 0);
	assert_string_equal(siov_vu_server_state(f->srv), "connected");
	assert_int_equal(vring_state(f, VHOST_USER_SET_VRING_ENABLE, 0, 1), 0);
	assert_int_equal(blk_io(f, VIRTIO_BLK_T_IN, 0, 512), VIRTIO_BLK_S_OK);
}

/* ---- config, inflight, reset ---- */

static void t_config(void **state)
{
	struct fx *f = *state;
	struct siov_vu_config c = {.offset = 0, .size = sizeof(struct virtio_blk_config)};
	uint32_t wce = offsetof(struct virtio_blk_config, wce);
	struct virtio_blk_config bc;
	struct siov_vu_msg r;

	negotiate(f);
	msg_send(f, VHOST_USER_GET_CONFIG, VHOST_USER_VERSION, &c, SIOV_VU_CONFIG_HDR + c.size,
		 NULL, 0);
	assert_int_equal(msg_recv(f, &r, NULL), sizeof(r.hdr) + SIOV_VU_CONFIG_HDR + c.size);
	assert_int_equal(r.payload.config.size, c.size);
	memcpy(&bc, r.payload.config.region, sizeof(bc));
	assert_int_equal(bc.capacity, DISK / 512);
	assert_int_equal(bc.num_queues, NQUEUES);
	/* Only the writeback byte may be written. */
	c.offset = wce;
	c.size = 1;
	c.region[0] = 1;
	assert_int_equal(call_ack(f, VHOST_USER_SET_CONFIG, &c, SIOV_VU_CONFIG_HDR + 1, NULL, 0),
			 0);
	c.offset = 0;
	c.size = 8;
	assert_int_equal(call_ack(f, VHOST_USER_SET_CONFIG, &c, SIOV_VU_CONFIG_HDR + 8, NULL, 0),
			 1);
	c.offset = wce;
	c.size = 1;
	msg_send(f, VHOST_USER_GET_CONFIG, VHOST_USER_VERSION, &c, SIOV_VU_CONFIG_HDR + 1, NULL, 0);
	assert_int_equal(msg_recv(f, &r, NULL), sizeof(r.hdr) + SIOV_VU_CONFIG_HDR + 1);
	assert_int_equal(r.payload.config.region[0], 1);
	assert_true(connected(f));
	/* A window past the config space is malformed. */
	c.offset = SIOV_VU_CONFIG_MAX - 4;
	c.size = 8;
	msg_send(f, VHOST_USER_GET_CONFIG, VHOST_USER_VERSION, &c, SIOV_VU_CONFIG_HDR + 8, NULL, 0);
	assert_dropped(f);
}

static void t_inflight(void **state)
{
	struct fx *f = *state;
	struct siov_vu_inflight in = {.num_queues = NQUEUES, .queue_size = QSIZE}, bad = in;
	struct siov_vu_msg r;
	struct stat st;
	int fd, small;

	negotiate(f);
	msg_send(f, VHOST_USER_GET_INFLIGHT_FD, VHOST_USER_VERSION, &in, sizeof(in), NULL, 0);
	assert_int_equal(msg_recv(f, &r, &fd), sizeof(r.hdr) + sizeof(in));
	assert_true(fd >= 0);
	assert_int_equal(fstat(fd, &st), 0);
	assert_true(r.payload.inflight.mmap_size > 0);
	assert_true((uint64_t)st.st_size >= r.payload.inflight.mmap_size);
	assert_int_equal(r.payload.inflight.mmap_offset, 0);
	/* More queues than the VDEV has: refused. */
	bad.num_queues = NQUEUES + 1;
	assert_int_equal(call_ack(f, VHOST_USER_GET_INFLIGHT_FD, &bad, sizeof(bad), NULL, 0), 1);
	/* SET_INFLIGHT_FD: the region handed back must be as large as it says. */
	in = r.payload.inflight;
	in.num_queues = NQUEUES;
	in.queue_size = QSIZE;
	small = memfd_create("small", MFD_CLOEXEC);
	assert_int_equal(ftruncate(small, 64), 0);
	assert_int_equal(call_ack(f, VHOST_USER_SET_INFLIGHT_FD, &in, sizeof(in), &small, 1), 1);
	assert_int_equal(call_ack(f, VHOST_USER_SET_INFLIGHT_FD, &in, sizeof(in), &fd, 1), 0);
	close(small);
	close(fd);
	/* The queue runs with the inflight region attached. */
	mem_table(f);
	assert_int_equal(vring_state(f, VHOST_USER_SET_VRING_NUM, 0, QSIZE), 0);
	assert_int_equal(vring_addr(f, 0, uva(f, DESC_OFF), uva(f, AVAIL_OFF), uva(f, USED_OFF)),
			 0);
	assert_int_equal(vring_fd(f, VHOST_USER_SET_VRING_KICK, 0, f->kick), 0);
	assert_int_equal(vring_state(f, VHOST_USER_SET_VRING_ENABLE, 0, 1), 0);
	assert_non_null(siov_vu_server_queue(f->srv, 0)->inflight);
	assert_int_equal(blk_io(f, VIRTIO_BLK_T_IN, 0, 512), VIRTIO_BLK_S_OK);
	/* SET_INFLIGHT_FD with no fd is malformed. */
	msg_send(f, VHOST_USER_SET_INFLIGHT_FD, VHOST_USER_VERSION, &in, sizeof(in), NULL, 0);
	assert_dropped(f);
}

/*
 * IN_ORDER after a crash: the previous back end published one used element
 * for a batch (heads 0 and 2, used index 2) and died before clearing their
 * records; head 4 was still in flight.  The new back end clears the batch's
 * records by age, resubmits head 4 alone and resumes the avail ring after it,
 * whatever SET_VRING_BASE says.
 */
static void t_inflight_in_order_restart(void **state)
{
	struct fx *f = *state;
	uint64_t feat = (1ull << VIRTIO_F_VERSION_1) |
			(1ull << VHOST_USER_F_PROTOCOL_FEATURES_BIT) |
			(1ull << VIRTIO_BLK_F_FLUSH) | (1ull << VIRTIO_F_IN_ORDER_BIT);
	uint64_t pf = 1ull << VHOST_USER_PROTOCOL_F_REPLY_ACK;
	struct siov_vu_inflight in = {.num_queues = NQUEUES, .queue_size = QSIZE};
	struct vring_desc *d = (void *)(f->mem + DESC_OFF);
	struct vring_avail *av = (void *)(f->mem + AVAIL_OFF);
	struct vring_used *u = (void *)(f->mem + USED_OFF);
	struct siov_vu_inflight_queue *iq;
	struct siov_vu_msg r;
	int fd, i;

	msg_send(f, VHOST_USER_SET_FEATURES, VHOST_USER_VERSION, &feat, 8, NULL, 0);
	msg_send(f, VHOST_USER_SET_PROTOCOL_FEATURES, VHOST_USER_VERSION, &pf, 8, NULL, 0);
	assert_int_equal(call_ack(f, VHOST_USER_SET_OWNER, NULL, 0, NULL, 0), 0);
	msg_send(f, VHOST_USER_GET_INFLIGHT_FD, VHOST_USER_VERSION, &in, sizeof(in), NULL, 0);
	assert_int_equal(msg_recv(f, &r, &fd), sizeof(r.hdr) + sizeof(in));
	iq = mmap(NULL, r.payload.inflight.mmap_size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
	assert_true(iq != MAP_FAILED);
	((struct virtio_blk_outhdr *)(f->mem + HDR_OFF))->type = VIRTIO_BLK_T_FLUSH;
	for (i = 0; i < 3; i++) {
		d[2 * i] = (struct vring_desc){gpa(HDR_OFF), 16, VRING_DESC_F_NEXT, 2 * i + 1};
		d[2 * i + 1] = (struct vring_desc){gpa(STATUS_OFF + i), 1, VRING_DESC_F_WRITE, 0};
		av->ring[i] = (uint16_t)(2 * i);
		f->mem[STATUS_OFF + i] = 0xee;
		iq->desc[2 * i].inflight = 1;
		iq->desc[2 * i].counter = (uint64_t)i + 1;
	}
	av->idx = 3;
	u->ring[0] = (struct vring_used_elem){2, 1};
	u->idx = 2;
	iq->last_batch_head = 2;
	iq->used_idx = 0;
	ring_up(f); /* base 0: stale, as QEMU sends after a back end died */
	assert_int_equal(vring_state(f, VHOST_USER_SET_VRING_ENABLE, 0, 1), 0);
	for (i = 0; i < 5000 && __atomic_load_n(&u->idx, __ATOMIC_ACQUIRE) != 3; i++)
		usleep(1000);
	usleep(50000); /* anything resubmitted twice would show by now */
	assert_int_equal(u->idx, 3);
	assert_int_equal(u->ring[2].id, 4);
	assert_int_equal(f->mem[STATUS_OFF + 2], VIRTIO_BLK_S_OK);
	assert_int_equal(f->mem[STATUS_OFF], 0xee); /* the batch was done already: not redone */
	assert_int_equal(iq->desc[0].inflight + iq->desc[2].inflight + iq->desc[4].inflight, 0);
	assert_int_equal(iq->used_idx, 3);
	munmap(iq, r.payload.inflight.mmap_size);
	close(fd);
}

static void t_reset(void **state)
{
	struct fx *f = *state;

	start_queue0(f);
	assert_int_equal(blk_io(f, VIRTIO_BLK_T_IN, 0, 512), VIRTIO_BLK_S_OK);
	assert_int_equal(call_ack(f, VHOST_USER_RESET_DEVICE, NULL, 0, NULL, 0), 0);
	/* Queues stopped and forgotten, features cleared; the counters stay. */
	assert_string_equal(siov_vu_server_state(f->srv), "connected");
	assert_int_equal(siov_vu_server_features(f->srv), 0);
	assert_int_equal(siov_vu_server_queue(f->srv, 0)->num, 0);
	assert_int_equal(siov_vu_server_queue(f->srv, 0)->kick_fd, -1);
	assert_int_equal(siov_vu_server_queue(f->srv, 0)->stats.requests, 1);
	/* The same session can set everything up again. */
	f->avail_idx = 0;
	memset(f->mem + USED_OFF, 0, 4096);
	memset(f->mem + AVAIL_OFF, 0, 4096);
	start_queue0(f);
	assert_int_equal(blk_io(f, VIRTIO_BLK_T_IN, 0, 512), VIRTIO_BLK_S_OK);
}

/* ---- framing ---- */

static void t_bad_version(void **state)
{
	struct fx *f = *state;

	msg_send(f, VHOST_USER_GET_FEATURES, 2, NULL, 0, NULL, 0);
	assert_dropped(f);
}

static void t_oversized(void **state)
{
	struct fx *f = *state;
	struct siov_vu_hdr h = {.request = VHOST_USER_SET_OWNER,
				.flags = VHOST_USER_VERSION,
				.size = sizeof(union siov_vu_payload) + 1};

	send_fds(f, &h, sizeof(h), NULL, 0);
	pump(f);
	assert_dropped(f);
}

static void t_too_many_fds(void **state)
{
	struct fx *f = *state;
	int fds[VHOST_USER_MAX_FDS + 1], i;
	uint64_t v = 0;

	for (i = 0; i < VHOST_USER_MAX_FDS + 1; i++)
		fds[i] = f->call;
	msg_send(f, VHOST_USER_SET_VRING_CALL, VHOST_USER_VERSION, &v, 8, fds,
		 VHOST_USER_MAX_FDS + 1);
	assert_dropped(f);
}

/* A message that arrives a byte at a time is assembled, not misparsed. */
static void t_split_message(void **state)
{
	struct fx *f = *state;
	struct siov_vu_hdr h = {.request = VHOST_USER_GET_QUEUE_NUM, .flags = VHOST_USER_VERSION};
	struct siov_vu_msg r;
	size_t i;

	for (i = 0; i < sizeof(h); i++) {
		send_fds(f, (uint8_t *)&h + i, 1, NULL, 0);
		pump(f);
		assert_true(connected(f));
	}
	assert_int_equal(msg_recv(f, &r, NULL), sizeof(r.hdr) + 8);
	assert_int_equal(r.payload.u64, NQUEUES);
}

/* A new front end on a fresh socketpair, after the server dropped the last one. */
static void reconnect(struct fx *f)
{
	int sv[2];

	if (f->fe >= 0)
		close(f->fe);
	pump(f);
	assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), 0);
	assert_int_equal(fcntl(sv[0], F_SETFL, O_NONBLOCK), 0);
	assert_int_equal(siov_vu_server_adopt(f->srv, sv[0]), 0);
	f->fe = sv[1];
}

/* A front end that hangs up mid-message leaves a listening VDEV behind. */
static void t_truncated_then_hangup(void **state)
{
	struct fx *f = *state;
	struct siov_vu_hdr h = {
	    .request = VHOST_USER_SET_FEATURES, .flags = VHOST_USER_VERSION, .size = 8};

	start_queue0(f);
	send_fds(f, &h, sizeof(h), NULL, 0);
	pump(f);
	assert_true(connected(f));
	close(f->fe);
	f->fe = -1;
	pump(f);
	assert_false(connected(f));
	assert_string_equal(siov_vu_server_state(f->srv), "listening");
	/* And takes the next front end. */
	reconnect(f);
	assert_int_equal(siov_vu_server_connections(f->srv), 2);
	assert_int_equal(get_u64(f, VHOST_USER_GET_QUEUE_NUM), NQUEUES);
}

/*
 * Every message with a payload, one byte short of its minimum: dropped.  At
 * exactly the minimum (zeros, the fds it needs): kept, whether the request
 * itself is refused or not.  Drains any reply and fd the server sends.
 */
static void t_payload_sizes(void **state)
{
	static const struct {
		uint32_t req, min;
		bool fd;
	} m[] = {
	    {VHOST_USER_SET_FEATURES, 8, false},
	    {VHOST_USER_SET_PROTOCOL_FEATURES, 8, false},
	    {VHOST_USER_SET_MEM_TABLE, 8, false},
	    {VHOST_USER_ADD_MEM_REG, sizeof(struct siov_vu_mem_reg), true},
	    {VHOST_USER_REM_MEM_REG, sizeof(struct siov_vu_mem_reg), false},
	    {VHOST_USER_SET_VRING_NUM, sizeof(struct siov_vu_vring_state), false},
	    {VHOST_USER_SET_VRING_ADDR, sizeof(struct siov_vu_vring_addr), false},
	    {VHOST_USER_SET_VRING_BASE, sizeof(struct siov_vu_vring_state), false},
	    {VHOST_USER_GET_VRING_BASE, sizeof(struct siov_vu_vring_state), false},
	    {VHOST_USER_SET_VRING_KICK, 8, true},
	    {VHOST_USER_SET_VRING_CALL, 8, true},
	    {VHOST_USER_SET_VRING_ERR, 8, true},
	    {VHOST_USER_SET_VRING_ENABLE, sizeof(struct siov_vu_vring_state), false},
	    {VHOST_USER_GET_CONFIG, SIOV_VU_CONFIG_HDR, false},
	    {VHOST_USER_SET_CONFIG, SIOV_VU_CONFIG_HDR, false},
	    {VHOST_USER_GET_INFLIGHT_FD, sizeof(struct siov_vu_inflight), false},
	    {VHOST_USER_SET_INFLIGHT_FD, sizeof(struct siov_vu_inflight), true},
	};
	struct fx *f = *state;
	uint8_t zeros[sizeof(union siov_vu_payload)] = {0};
	struct siov_vu_msg r;
	unsigned i;
	int fd;

	for (i = 0; i < SIOV_ARRAY_SIZE(m); i++) {
		int mfd =
		    m[i].req == VHOST_USER_SET_INFLIGHT_FD || m[i].req == VHOST_USER_ADD_MEM_REG
			? f->memfd
			: f->call;

		msg_send(f, m[i].req, VHOST_USER_VERSION, zeros, m[i].min - 1, &mfd, m[i].fd);
		if (connected(f))
			fail_msg("request %u with %u bytes (minimum %u) was not refused", m[i].req,
				 m[i].min - 1, m[i].min);
		assert_dropped(f);
		reconnect(f);
		msg_send(f, m[i].req, VHOST_USER_VERSION, zeros, m[i].min, &mfd, m[i].fd);
		if (!connected(f))
			fail_msg("request %u with its minimum %u bytes dropped the connection",
				 m[i].req, m[i].min);
		while (msg_recv(f, &r, &fd) > 0)
			if (fd >= 0)
				close(fd);
	}
}

static void t_second_front_end(void **state)
{
	struct fx *f = *state;
	int sv[2];

	assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), 0);
	assert_int_equal(siov_vu_server_adopt(f->srv, sv[0]), -EBUSY);
	close(sv[1]);
	assert_int_equal(get_u64(f, VHOST_USER_GET_QUEUE_NUM), NQUEUES);
}

/* ---- live migration: the dirty log ---- */

#define LOG_BYTES ((MEM_GPA + MEM_SIZE) / 4096 / 8)

/* SET_LOG_BASE with a log of size bytes in fd; returns the u64 the server answered. */
static uint64_t log_base(struct fx *f, int fd, uint64_t size)
{
	struct siov_vu_log l = {.mmap_size = size, .mmap_offset = 0};
	struct siov_vu_msg r;

	/* No NEED_REPLY: QEMU waits for this answer whatever REPLY_ACK says. */
	msg_send(f, VHOST_USER_SET_LOG_BASE, VHOST_USER_VERSION, &l, sizeof(l), &fd, 1);
	assert_int_equal(msg_recv(f, &r, NULL), sizeof(r.hdr) + 8);
	assert_int_equal(r.hdr.request, VHOST_USER_SET_LOG_BASE);
	assert_int_equal(r.hdr.flags, VHOST_USER_VERSION | VHOST_USER_REPLY_MASK);
	return r.payload.u64;
}

static int64_t set_logging(struct fx *f, bool on)
{
	uint64_t feat = (1ull << VIRTIO_F_VERSION_1) |
			(1ull << VHOST_USER_F_PROTOCOL_FEATURES_BIT) |
			(on ? 1ull << VHOST_F_LOG_ALL_BIT : 0);

	return call_ack(f, VHOST_USER_SET_FEATURES, &feat, 8, NULL, 0);
}

static int64_t vring_addr_log(struct fx *f, uint32_t flags)
{
	struct siov_vu_vring_addr a = {.index = 0,
				       .flags = flags,
				       .desc_user_addr = uva(f, DESC_OFF),
				       .avail_user_addr = uva(f, AVAIL_OFF),
				       .used_user_addr = uva(f, USED_OFF),
				       .log_guest_addr = gpa(USED_OFF)};

	return call_ack(f, VHOST_USER_SET_VRING_ADDR, &a, sizeof(a), NULL, 0);
}

static bool page_marked(const uint8_t *log, uint64_t addr)
{
	return log[addr / 4096 / 8] & (1u << (addr / 4096 % 8));
}

static void t_dirty_log(void **state)
{
	struct fx *f = *state;
	int lfd = memfd_create("log", MFD_CLOEXEC);
	struct siov_vu_vring_state st = {.index = 0};
	struct siov_vu_msg r;
	uint8_t *log;

	assert_true(lfd >= 0 && ftruncate(lfd, LOG_BYTES) == 0);
	log = mmap(NULL, LOG_BYTES, PROT_READ | PROT_WRITE, MAP_SHARED, lfd, 0);
	assert_true(log != MAP_FAILED);
	assert_true(get_u64(f, VHOST_USER_GET_FEATURES) & (1ull << VHOST_F_LOG_ALL_BIT));
	start_queue0(f);
	/* QEMU's order: the log, then LOG_ALL, then the rings with VHOST_VRING_F_LOG. */
	assert_int_equal(log_base(f, lfd, LOG_BYTES), 0);
	assert_int_equal(set_logging(f, true), 0);
	assert_int_equal(vring_addr_log(f, 1u << VHOST_VRING_F_LOG), 0);
	assert_true(siov_vu_server_logging(f->srv));
	assert_int_equal(blk_io(f, VIRTIO_BLK_T_IN, 8, 4096), VIRTIO_BLK_S_OK);
	assert_true(page_marked(log, gpa(DATA_OFF)));
	assert_true(page_marked(log, gpa(STATUS_OFF)));
	assert_true(page_marked(log, gpa(USED_OFF)));
	assert_false(page_marked(log, gpa(HDR_OFF))); /* only read */
	assert_false(page_marked(log, gpa(DESC_OFF)));
	/* Stopping the ring answers once every popped request is done and logged. */
	memset(log, 0, LOG_BYTES);
	assert_int_equal(blk_io(f, VIRTIO_BLK_T_IN, 8, 512), VIRTIO_BLK_S_OK);
	msg_send(f, VHOST_USER_GET_VRING_BASE, VHOST_USER_VERSION, &st, sizeof(st), NULL, 0);
	assert_int_equal(msg_recv(f, &r, NULL), sizeof(r.hdr) + sizeof(st));
	assert_int_equal(r.payload.state.num, 2);
	assert_true(page_marked(log, gpa(DATA_OFF)));
	assert_true(page_marked(log, gpa(USED_OFF)));
	/* Migration over or cancelled: LOG_ALL off, the log let go. */
	assert_int_equal(set_logging(f, false), 0);
	assert_false(siov_vu_server_logging(f->srv));
	munmap(log, LOG_BYTES);
	close(lfd);
}

/* A log the server cannot use is answered, and breaks the VDEV when logging starts. */
static void t_dirty_log_hostile(void **state)
{
	struct fx *f = *state;
	int lfd = memfd_create("log", MFD_CLOEXEC);
	struct siov_vu_log l = {.mmap_size = 64};

	assert_true(lfd >= 0 && ftruncate(lfd, LOG_BYTES) == 0);
	start_queue0(f);
	assert_int_equal(log_base(f, lfd, LOG_BYTES * 2), 1); /* larger than its fd */
	assert_int_equal(log_base(f, lfd, 0), 1);
	assert_int_equal(set_logging(f, true), 0);
	assert_string_equal(siov_vu_server_state(f->srv), "broken");
	assert_non_null(strstr(siov_vu_server_broken_reason(f->srv), "no log"));
	/* Too small for the memory table: broken again on the next start. */
	assert_int_equal(set_logging(f, false), 0);
	assert_int_equal(log_base(f, lfd, LOG_BYTES / 2), 0);
	assert_int_equal(set_logging(f, true), 0);
	assert_int_equal(vring_state(f, VHOST_USER_SET_VRING_ENABLE, 0, 1), 0);
	assert_string_equal(siov_vu_server_state(f->srv), "broken");
	assert_non_null(strstr(siov_vu_server_broken_reason(f->srv), "does not cover"));
	/* Without its fd the message is malformed: the session ends, siovd lives on. */
	msg_send(f, VHOST_USER_SET_LOG_BASE, VHOST_USER_VERSION, &l, sizeof(l), NULL, 0);
	assert_dropped(f);
	close(lfd);
}

/* A log whose memory the front end takes away under a running ring breaks that VDEV only. */
static void t_dirty_log_shrunk(void **state)
{
	struct fx *f = *state;
	int lfd = memfd_create("log", MFD_CLOEXEC);
	int rc;

	assert_true(lfd >= 0 && ftruncate(lfd, LOG_BYTES) == 0);
	start_queue0(f);
	assert_int_equal(log_base(f, lfd, LOG_BYTES), 0);
	assert_int_equal(set_logging(f, true), 0);
	assert_int_equal(vring_addr_log(f, 1u << VHOST_VRING_F_LOG), 0);
	assert_int_equal(blk_io(f, VIRTIO_BLK_T_IN, 8, 512), VIRTIO_BLK_S_OK);
	/* cmocka puts its own SIGBUS handler around each test: creating engines puts siovd's back.
	 */
	{
		struct siov_engines_opts eo = {.count = 1};
		struct siov_engines *e;
		assert_int_equal(siov_engines_create(&eo, &e), 0);
		siov_engines_destroy(e);
	}
	assert_int_equal(ftruncate(lfd, 0), 0); /* the log's pages are gone: SIGBUS on touch */
	rc = blk_io(f, VIRTIO_BLK_T_IN, 8, 512);
	/* The request that faulted may still complete; the next one finds the queue broken. */
	if (rc != -EPIPE)
		rc = blk_io(f, VIRTIO_BLK_T_IN, 8, 512);
	assert_int_equal(rc, -EPIPE);
	assert_non_null(strstr(siov_vu_server_broken_reason(f->srv), "dirty log vanished"));
	assert_true(connected(f));
	close(lfd);
}

#define T(fn) cmocka_unit_test_setup_teardown(fn, fx_setup, fx_teardown)

int main(void)
{
	const struct CMUnitTest tests[] = {
	    T(t_get_features),
	    T(t_set_features),
	    T(t_protocol_features),
	    T(t_reply_ack),
	    T(t_mem_table),
	    T(t_mem_table_too_many),
	    T(t_add_rem_mem_reg),
	    T(t_mem_reg_data_path),
	    T(t_vring_num),
	    T(t_vring_num_running),
	    T(t_vring_addr_bad),
	    T(t_vring_data_and_base),
	    T(t_vring_fds),
	    T(t_vring_call_swap),
	    T(t_vring_nofd_with_fd),
	    T(t_vring_enable),
	    T(t_config),
	    T(t_inflight),
	    T(t_inflight_in_order_restart),
	    T(t_reset),
	    T(t_bad_version),
	    T(t_oversized),
	    T(t_too_many_fds),
	    T(t_payload_sizes),
	    T(t_split_message),
	    T(t_truncated_then_hangup),
	    T(t_second_front_end),
	    T(t_dirty_log),
	    T(t_dirty_log_hostile),
	    T(t_dirty_log_shrunk),
	};

	siov_log_set_level(getenv("SIOV_TEST_VERBOSE") ? SIOV_LOG_DEBUG : SIOV_LOG_ERR);
	return cmocka_run_group_tests(tests, NULL, NULL);
}
