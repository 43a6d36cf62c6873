/*
 * The hostile test's own vhost-user front end (see frontend.h): plain
 * sendmsg/recvmsg on a Unix socket, a memfd for "guest" memory and a split ring
 * written by hand, so that an attack can replace any step with a bad one.
 */
#include <errno.h>
#include <fcntl.h>
#include <linux/virtio_blk.h>
#include <poll.h>
#include <stdio.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include "frontend.h"

static int64_t now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void close_fd(int *fd)
{
	if (*fd >= 0)
		close(*fd);
	*fd = -1;
}

void fe_init(struct fe *fe)
{
	memset(fe, 0, sizeof(*fe));
	fe->sock = fe->memfd = fe->kick_fd = fe->call_fd = -1;
}

void fe_close(struct fe *fe)
{
	close_fd(&fe->sock);
	close_fd(&fe->kick_fd);
	close_fd(&fe->call_fd);
	close_fd(&fe->memfd);
	if (fe->mem)
		munmap(fe->mem, fe->mem_len);
	fe_init(fe);
}

int fe_connect(struct fe *fe, const char *path)
{
	struct sockaddr_un sa = {.sun_family = AF_UNIX};

	close_fd(&fe->sock);
	fe->sock = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fe->sock < 0)
		return -errno;
	snprintf(sa.sun_path, sizeof(sa.sun_path), "%s", path);
	if (connect(fe->sock, (struct sockaddr *)&sa, sizeof(sa)) < 0) {
		int rc = -errno;
		close_fd(&fe->sock);
		return rc;
	}
	return 0;
}

int fe_send(struct fe *fe, uint32_t request, uint32_t flags, const void *payload, uint32_t size,
	    const int *fds, unsigned nfds)
{
	struct siov_vu_hdr h = {.request = request, .flags = flags, .size = size};
	struct iovec iov[2] = {{&h, sizeof(h)}, {(void *)payload, size}};
	struct msghdr mh = {.msg_iov = iov, .msg_iovlen = payload && size ? 2 : 1};
	char cbuf[CMSG_SPACE(sizeof(int) * 32)];
	ssize_t n;

	if (nfds > 32)
		return -EINVAL;
	if (nfds) {
		struct cmsghdr *c;
		memset(cbuf, 0, sizeof(cbuf));
		mh.msg_control = cbuf;
		mh.msg_controllen = CMSG_SPACE(sizeof(int) * nfds);
		c = CMSG_FIRSTHDR(&mh);
		c->cmsg_level = SOL_SOCKET;
		c->cmsg_type = SCM_RIGHTS;
		c->cmsg_len = CMSG_LEN(sizeof(int) * nfds);
		memcpy(CMSG_DATA(c), fds, sizeof(int) * nfds);
	}
	n = sendmsg(fe->sock, &mh, MSG_NOSIGNAL);
	if (n < 0)
		return -errno;
	return (size_t)n == sizeof(h) + (mh.msg_iovlen == 2 ? size : 0) ? 0 : -EIO;
}

static int wait_readable(int fd, int timeout_ms)
{
	struct pollfd p = {.fd = fd, .events = POLLIN};
	int rc = poll(&p, 1, timeout_ms);

	if (rc < 0)
		return -errno;
	return rc ? 0 : -ETIMEDOUT;
}

/* Reads exactly len bytes before the deadline; 0 at EOF, 1 when done. */
static int recv_all(int fd, void *buf, size_t len, int64_t deadline)
{
	size_t got = 0;

	while (got < len) {
		int64_t left = deadline - now_ms();
		ssize_t n;
		int rc;

		rc = wait_readable(fd, left > 0 ? (int)left : 0);
		if (rc)
			return rc;
		n = recv(fd, (uint8_t *)buf + got, len - got, MSG_DONTWAIT);
		if (n == 0)
			return 0;
		if (n < 0) {
			if (errno == EAGAIN || errno == EINTR)
				continue;
			return errno == ECONNRESET ? 0 : -errno;
		}
		got += (size_t)n;
	}
	return 1;
}

int fe_recv(struct fe *fe, struct siov_vu_msg *m, int timeout_ms)
{
	int64_t deadline = now_ms() + timeout_ms;
	int rc;

	rc = recv_all(fe->sock, &m->hdr, sizeof(m->hdr), deadline);
	if (rc <= 0)
		return rc;
	if (m->hdr.size > sizeof(m->payload))
		return -EPROTO;
	return m->hdr.size ? recv_all(fe->sock, &m->payload, m->hdr.size, deadline) : 1;
}

int fe_wait_hangup(struct fe *fe, int timeout_ms)
{
	int64_t deadline = now_ms() + timeout_ms;
	struct siov_vu_msg m;
	int rc;

	/* Anything the back end still says before it closes is ignored. */
	do {
		int64_t left = deadline - now_ms();
		rc = fe_recv(fe, &m, left > 0 ? (int)left : 0);
	} while (rc == 1);
	return rc == 0 ? 0 : -ETIMEDOUT;
}

int64_t fe_call(struct fe *fe, uint32_t request, const void *payload, uint32_t size, const int *fds,
		unsigned nfds)
{
	struct siov_vu_msg m;
	int rc;

	rc = fe_send(fe, request, VHOST_USER_VERSION | VHOST_USER_NEED_REPLY, payload, size, fds,
		     nfds);
	if (rc)
		return rc == -EPIPE ? -ECONNRESET : rc;
	rc = fe_recv(fe, &m, 5000);
	if (rc == 0)
		return -ECONNRESET;
	if (rc < 0)
		return rc;
	if (m.hdr.request != request || !(m.hdr.flags & VHOST_USER_REPLY_MASK) || m.hdr.size < 8)
		return -EPROTO;
	return (int64_t)(m.payload.u64 & INT64_MAX);
}

int fe_mem_map(struct fe *fe, size_t len, size_t file_len)
{
	fe->memfd = memfd_create("hostile-guest", MFD_CLOEXEC);
	if (fe->memfd < 0)
		return -errno;
	if (ftruncate(fe->memfd, (off_t)file_len) < 0)
		return -errno;
	fe->mem = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_SHARED, fe->memfd, 0);
	if (fe->mem == MAP_FAILED) {
		fe->mem = NULL;
		return -errno;
	}
	fe->mem_len = len;
	/* Only the part backed by the file may be touched here. */
	memset(fe->mem, 0, file_len < len ? file_len : len);
	return 0;
}

int fe_mem_create(struct fe *fe, size_t file_len)
{
	return fe_mem_map(fe, FE_MEM_LEN, file_len);
}

uint64_t fe_addr(const struct fe *fe, size_t off)
{
	return (uint64_t)(uintptr_t)fe->mem + off;
}

struct siov_vu_mem_region fe_region(const struct fe *fe)
{
	struct siov_vu_mem_region r = {
	    .guest_phys_addr = fe_addr(fe, 0),
	    .memory_size = fe->mem_len,
	    .userspace_addr = fe_addr(fe, 0),
	    .mmap_offset = 0,
	};
	return r;
}

int fe_negotiate(struct fe *fe)
{
	uint64_t f = FE_FEATURES | (fe->packed ? 1ull << VIRTIO_F_RING_PACKED_BIT : 0) |
		     (fe->in_order ? 1ull << VIRTIO_F_IN_ORDER_BIT : 0),
		 pf;
	struct siov_vu_msg m;
	int rc;

	rc = fe_send(fe, VHOST_USER_GET_FEATURES, VHOST_USER_VERSION, NULL, 0, NULL, 0);
	if (rc || (rc = fe_recv(fe, &m, 5000)) != 1)
		return rc ? rc : -ECONNRESET;
	if ((m.payload.u64 & f) != f)
		return -ENOTSUP;
	/* REPLY_ACK is not on yet, so this one is not acknowledged. */
	rc = fe_send(fe, VHOST_USER_SET_FEATURES, VHOST_USER_VERSION, &f, 8, NULL, 0);
	if (rc)
		return rc;
	rc = fe_send(fe, VHOST_USER_GET_PROTOCOL_FEATURES, VHOST_USER_VERSION, NULL, 0, NULL, 0);
	if (rc || (rc = fe_recv(fe, &m, 5000)) != 1)
		return rc ? rc : -ECONNRESET;
	if (!(m.payload.u64 & (1ull << VHOST_USER_PROTOCOL_F_REPLY_ACK)))
		return -ENOTSUP;
	pf = 1ull << VHOST_USER_PROTOCOL_F_REPLY_ACK;
	rc = fe_send(fe, VHOST_USER_SET_PROTOCOL_FEATURES, VHOST_USER_VERSION, &pf, 8, NULL, 0);
	if (rc)
		return rc;
	return fe_call(fe, VHOST_USER_SET_OWNER, NULL, 0, NULL, 0) ? -EPROTO : 0;
}

static int ring_fd(struct fe *fe, uint32_t request, int *fd)
{
	uint64_t v = 0;

	*fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	if (*fd < 0)
		return -errno;
	return fe_call(fe, request, &v, 8, fd, 1) ? -EPROTO : 0;
}

int fe_ring_setup(struct fe *fe, const struct siov_vu_vring_addr *addr)
{
	struct siov_vu_vring_state st = {.index = 0, .num = FE_QUEUE_SIZE};
	struct siov_vu_vring_addr a = {
	    .desc_user_addr = fe_addr(fe, FE_DESC_OFF),
	    .used_user_addr = fe_addr(fe, FE_USED_OFF),
	    .avail_user_addr = fe_addr(fe, FE_AVAIL_OFF),
	};
	int rc;

	fe->num = FE_QUEUE_SIZE;
	fe->pdesc = (void *)(fe->mem + FE_DESC_OFF);
	fe->pk_wrap = fe->pk_used_wrap = true; /* a packed ring starts in lap 1 */
	fe->desc = (void *)(fe->mem + FE_DESC_OFF);
	fe->avail = (void *)(fe->mem + FE_AVAIL_OFF);
	fe->used = (void *)(fe->mem + FE_USED_OFF);
	if (fe_call(fe, VHOST_USER_SET_VRING_NUM, &st, sizeof(st), NULL, 0))
		return -EPROTO;
	st.num = fe->packed ? 0x8000 : 0; /* packed: position 0, wrap counter 1 */
	if (fe_call(fe, VHOST_USER_SET_VRING_BASE, &st, sizeof(st), NULL, 0))
		return -EPROTO;
	if (fe_call(fe, VHOST_USER_SET_VRING_ADDR, addr ? addr : &a, sizeof(a), NULL, 0))
		return -EPROTO;
	rc = ring_fd(fe, VHOST_USER_SET_VRING_KICK, &fe->kick_fd);
	if (!rc)
		rc = ring_fd(fe, VHOST_USER_SET_VRING_CALL, &fe->call_fd);
	if (rc)
		return rc;
	st.num = 1;
	return fe_call(fe, VHOST_USER_SET_VRING_ENABLE, &st, sizeof(st), NULL, 0) ? -EPROTO : 0;
}

int fe_set_mem_table(struct fe *fe)
{
	struct siov_vu_mem_table t = {.nregions = 1};

	t.regions[0] = fe_region(fe);
	return fe_call(fe, VHOST_USER_SET_MEM_TABLE, &t, 8 + sizeof(t.regions[0]), &fe->memfd, 1)
		   ? -EPROTO
		   : 0;
}

/* Connects and negotiates, retrying while the back end refuses a second front end. */
static int connect_negotiate(struct fe *fe, const char *path, int timeout_ms)
{
	int64_t deadline = now_ms() + timeout_ms;
	int rc;

	for (;;) {
		rc = fe_connect(fe, path);
		if (!rc)
			rc = fe_negotiate(fe);
		if (rc != -ECONNRESET && rc != -EPIPE && rc != -ECONNREFUSED)
			return rc;
		if (now_ms() > deadline)
			return rc;
		usleep(20000);
	}
}

static int setup(struct fe *fe, const char *path, int timeout_ms, bool packed, bool in_order)
{
	int rc;

	fe_init(fe);
	fe->packed = packed;
	fe->in_order = in_order;
	rc = connect_negotiate(fe, path, timeout_ms);
	if (!rc)
		rc = fe_mem_create(fe, FE_MEM_LEN);
	if (!rc)
		rc = fe_set_mem_table(fe);
	if (!rc)
		rc = fe_ring_setup(fe, NULL);
	if (rc)
		fe_close(fe);
	return rc;
}

int fe_setup(struct fe *fe, const char *path, int timeout_ms)
{
	return setup(fe, path, timeout_ms, false, false);
}

int fe_setup_packed(struct fe *fe, const char *path, int timeout_ms)
{
	return setup(fe, path, timeout_ms, true, false);
}

int fe_setup_in_order(struct fe *fe, const char *path, int timeout_ms, bool packed)
{
	return setup(fe, path, timeout_ms, packed, true);
}

uint16_t fe_pk_avail_flags(const struct fe *fe, bool next_lap)
{
	bool w = fe->pk_wrap != next_lap;

	return w ? 1u << VRING_PACKED_DESC_F_AVAIL : 1u << VRING_PACKED_DESC_F_USED;
}

void fe_pk_submit(struct fe *fe, const struct fe_buf *bufs, unsigned n, uint16_t id)
{
	uint16_t head = fe->pk_next, head_flags = 0;
	unsigned i;

	for (i = 0; i < n; i++) {
		struct vring_packed_desc *d = &fe->pdesc[fe->pk_next];
		uint16_t f = bufs[i].flags | (i + 1 < n ? VRING_DESC_F_NEXT : 0) |
			     fe_pk_avail_flags(fe, false);
		d->addr = bufs[i].addr;
		d->len = bufs[i].len;
		d->id = id;
		if (i)
			d->flags = f;
		else
			head_flags = f;
		if (++fe->pk_next == fe->num) {
			fe->pk_next = 0;
			fe->pk_wrap = !fe->pk_wrap;
		}
	}
	if (id < FE_QUEUE_SIZE)
		fe->pk_slots[id] = (uint16_t)n;
	fe->pk_pending++;
	/* The device must see the whole chain before the head's flags make it available. */
	__atomic_store_n(&fe->pdesc[head].flags, head_flags, __ATOMIC_RELEASE);
	fe_kick(fe);
}

/* Takes the used entries that arrived; true when none is pending. */
static bool pk_reap(struct fe *fe)
{
	uint16_t both = (1u << VRING_PACKED_DESC_F_AVAIL) | (1u << VRING_PACKED_DESC_F_USED);

	while (fe->pk_pending) {
		struct vring_packed_desc *d = &fe->pdesc[fe->pk_used];
		uint16_t f = __atomic_load_n(&d->flags, __ATOMIC_ACQUIRE) & both;
		if (f != (fe->pk_used_wrap ? both : 0))
			return false;
		fe->pk_used = (uint16_t)(fe->pk_used + (d->id < FE_QUEUE_SIZE && fe->pk_slots[d->id]
							    ? fe->pk_slots[d->id]
							    : 1));
		if (fe->pk_used >= fe->num) {
			fe->pk_used = (uint16_t)(fe->pk_used - fe->num);
			fe->pk_used_wrap = !fe->pk_used_wrap;
		}
		fe->pk_pending--;
	}
	return true;
}

void fe_kick(struct fe *fe)
{
	eventfd_write(fe->kick_fd, 1);
}

void fe_set_avail_idx(struct fe *fe, uint16_t idx)
{
	fe->avail_idx = idx;
	/* Ask for an interrupt on every completion (EVENT_IDX used_event). */
	fe->avail->ring[fe->num] = fe->used->idx;
	/* The device must see the ring entry before the index that covers it. */
	__atomic_store_n(&fe->avail->idx, idx, __ATOMIC_RELEASE);
	fe_kick(fe);
}

void fe_push_head(struct fe *fe, uint16_t head)
{
	fe->avail->ring[fe->avail_idx % fe->num] = head;
	fe_set_avail_idx(fe, (uint16_t)(fe->avail_idx + 1));
}

void fe_submit(struct fe *fe, const struct fe_buf *bufs, unsigned n)
{
	unsigned i;

	if (fe->packed) {
		fe_pk_submit(fe, bufs, n, 0);
		return;
	}
	for (i = 0; i < n; i++) {
		fe->desc[i].addr = bufs[i].addr;
		fe->desc[i].len = bufs[i].len;
		fe->desc[i].flags = bufs[i].flags | (i + 1 < n ? VRING_DESC_F_NEXT : 0);
		fe->desc[i].next = (uint16_t)(i + 1);
	}
	fe_push_head(fe, 0);
}

int fe_wait_used(struct fe *fe, int timeout_ms)
{
	int64_t deadline = now_ms() + timeout_ms;
	eventfd_t v;

	while (fe->packed ? !pk_reap(fe)
			  : __atomic_load_n(&fe->used->idx, __ATOMIC_ACQUIRE) != fe->avail_idx) {
		if (now_ms() > deadline)
			return -ETIMEDOUT;
		/* The call eventfd wakes us; the short poll covers a missed one. */
		wait_readable(fe->call_fd, 10);
		eventfd_read(fe->call_fd, &v);
	}
	return 0;
}

int fe_blk(struct fe *fe, uint32_t type, uint64_t sector, uint32_t len, int timeout_ms)
{
	struct virtio_blk_outhdr *h = (void *)(fe->mem + FE_HDR_OFF);
	uint16_t data_flags = type == VIRTIO_BLK_T_IN ? VRING_DESC_F_WRITE : 0;
	struct fe_buf b[3] = {
	    {fe_addr(fe, FE_HDR_OFF), sizeof(*h), 0},
	    {fe_addr(fe, FE_DATA_OFF), len, data_flags},
	    {fe_addr(fe, FE_STATUS_OFF), 1, VRING_DESC_F_WRITE},
	};

	h->type = type;
	h->ioprio = 0;
	h->sector = sector;
	fe->mem[FE_STATUS_OFF] = 0xee;
	if (len) {
		fe_submit(fe, b, 3);
	} else {
		b[1] = b[2];
		fe_submit(fe, b, 2);
	}
	if (fe_wait_used(fe, timeout_ms))
		return -ETIMEDOUT;
	return fe->mem[FE_STATUS_OFF];
}
