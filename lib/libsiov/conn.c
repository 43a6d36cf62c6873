/*
 * The vhost-user connection of a libsiov device: connecting to the back end's
 * Unix socket, sending a message with its fds (SCM_RIGHTS), receiving a reply
 * under a timeout, and noticing that the back end went away.  Every wait here
 * is bounded, so a back end that stops answering costs the application a
 * timeout, never a hang.  Replies are checked before they are believed.
 */
#include <errno.h>
#include <poll.h>
#include <stddef.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include "libsiov_int.h"

uint64_t siov__now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

int siov__connect(const char *path, unsigned timeout_ms, int *sock)
{
	struct sockaddr_un sa = {.sun_family = AF_UNIX};
	struct timeval tv = {.tv_sec = timeout_ms / 1000, .tv_usec = (timeout_ms % 1000) * 1000};
	int fd;

	/* sun_path holds 108 bytes with the NUL: a longer path cannot be reached. */
	if (strlen(path) >= sizeof(sa.sun_path))
		return -ENAMETOOLONG;
	strcpy(sa.sun_path, path);
	fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return -errno;
	/* A listener with a full backlog would block connect(): bound it too. */
	setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
	if (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0) {
		int err = errno == EINPROGRESS || errno == EAGAIN ? -ETIMEDOUT : -errno;

		close(fd);
		return err;
	}
	*sock = fd;
	return 0;
}

/*
 * Marks the back end gone.  Without reconnect (or before siov_dev_start()
 * returned) that is final; with it the device goes down and a reconnect is
 * due within reconnect_ms.  Callers with reconnect on hold dev->lock.
 */
int siov__mark_dead(struct siov_dev *dev)
{
	unsigned conn;

	if (!dev->reconnect_ms || !dev->started) {
		atomic_store_explicit(&dev->dead, -ENOTCONN, memory_order_relaxed);
		return -ENOTCONN;
	}
	conn = atomic_load_explicit(&dev->conn, memory_order_relaxed);
	if (!(conn & SIOV__CONN_DOWN)) {
		dev->deadline_ns = siov__now_ns() + (uint64_t)dev->reconnect_ms * 1000000u;
		dev->next_try_ns = 0;
		atomic_store_explicit(&dev->conn, conn | SIOV__CONN_DOWN, memory_order_release);
	}
	return -ENOTCONN;
}

static int mark_dead(struct siov_dev *dev)
{
	return siov__mark_dead(dev);
}

static bool hung_up(int sock)
{
	struct pollfd pfd = {.fd = sock, .events = POLLRDHUP};

	if (poll(&pfd, 1, 0) <= 0)
		return false;
	return pfd.revents & (POLLRDHUP | POLLHUP | POLLERR | POLLNVAL);
}

/*
 * With reconnect, the socket changes under other threads: whoever holds the
 * lock looks (and reconnects if it is due); the others carry on, since the
 * holder is doing exactly that.
 */
static int sock_check_reconnect(struct siov_dev *dev)
{
	int rc = 0;

	if (pthread_mutex_trylock(&dev->lock))
		return 0;
	if (!(atomic_load(&dev->conn) & SIOV__CONN_DOWN) && hung_up(dev->sock))
		mark_dead(dev);
	pthread_mutex_unlock(&dev->lock);
	if (atomic_load(&dev->conn) & SIOV__CONN_DOWN)
		rc = siov__dev_reconnect(dev);
	return rc;
}

int siov__sock_check(struct siov_dev *dev)
{
	int dead = atomic_load_explicit(&dev->dead, memory_order_relaxed);

	if (dead)
		return dead;
	if (dev->reconnect_ms && dev->started)
		return sock_check_reconnect(dev);
	return hung_up(dev->sock) ? mark_dead(dev) : 0;
}

/* Waits until @sock is ready for @events; -ETIMEDOUT or -ENOTCONN otherwise. */
static int wait_sock(struct siov_dev *dev, short events, int timeout_ms)
{
	struct pollfd pfd = {.fd = dev->sock, .events = events};
	int rc;

	do {
		rc = poll(&pfd, 1, timeout_ms);
	} while (rc < 0 && errno == EINTR);
	if (rc < 0)
		return -errno;
	if (rc == 0)
		return -ETIMEDOUT;
	if (pfd.revents & events)
		return 0;
	return mark_dead(dev);
}

int siov__vu_send(struct siov_dev *dev, uint32_t request, uint32_t flags, const void *payload,
		  uint32_t size, const int *fds, unsigned nfds)
{
	struct siov_vu_hdr hdr = {.request = request, .flags = flags, .size = size};
	struct iovec iov[2] = {{&hdr, sizeof(hdr)}, {(void *)payload, size}};
	union {
		char buf[CMSG_SPACE(sizeof(int) * VHOST_USER_MAX_FDS)];
		struct cmsghdr align;
	} ctl;
	struct msghdr mh = {.msg_iov = iov, .msg_iovlen = size ? 2 : 1};
	ssize_t n;
	int rc;

	if (nfds > VHOST_USER_MAX_FDS)
		return -EINVAL;
	if (nfds) {
		struct cmsghdr *cm;

		memset(&ctl, 0, sizeof(ctl));
		mh.msg_control = ctl.buf;
		mh.msg_controllen = CMSG_SPACE(sizeof(int) * nfds);
		cm = CMSG_FIRSTHDR(&mh);
		cm->cmsg_level = SOL_SOCKET;
		cm->cmsg_type = SCM_RIGHTS;
		cm->cmsg_len = CMSG_LEN(sizeof(int) * nfds);
		memcpy(CMSG_DATA(cm), fds, sizeof(int) * nfds);
	}
	rc = wait_sock(dev, POLLOUT, (int)dev->timeout_ms);
	if (rc)
		return rc;
	/* Messages are small: a stream socket takes them whole or not at all. */
	n = sendmsg(dev->sock, &mh, MSG_NOSIGNAL | MSG_DONTWAIT);
	if (n < 0)
		return errno == EPIPE || errno == ECONNRESET ? mark_dead(dev) : -errno;
	if ((size_t)n != sizeof(hdr) + size)
		return -EIO;
	return 0;
}

/* Reads exactly @len bytes; the first read also collects any fds. */
static int recv_full(struct siov_dev *dev, void *buf, size_t len, int *fds, unsigned *nfds,
		     int timeout_ms)
{
	union {
		char buf[CMSG_SPACE(sizeof(int) * VHOST_USER_MAX_FDS)];
		struct cmsghdr align;
	} ctl;
	size_t got = 0;

	while (got < len) {
		struct iovec iov = {(char *)buf + got, len - got};
		struct msghdr mh = {.msg_iov = &iov, .msg_iovlen = 1};
		struct cmsghdr *cm;
		ssize_t n;
		int rc = wait_sock(dev, POLLIN, timeout_ms);

		if (rc)
			return rc;
		mh.msg_control = ctl.buf;
		mh.msg_controllen = sizeof(ctl.buf);
		n = recvmsg(dev->sock, &mh, MSG_DONTWAIT | MSG_CMSG_CLOEXEC);
		if (n < 0 && (errno == EAGAIN || errno == EINTR))
			continue;
		if (n < 0)
			return errno == ECONNRESET ? mark_dead(dev) : -errno;
		if (n == 0)
			return mark_dead(dev);
		for (cm = CMSG_FIRSTHDR(&mh); cm; cm = CMSG_NXTHDR(&mh, cm)) {
			unsigned k, cnt;

			if (cm->cmsg_level != SOL_SOCKET || cm->cmsg_type != SCM_RIGHTS)
				continue;
			cnt = (cm->cmsg_len - CMSG_LEN(0)) / sizeof(int);
			for (k = 0; k < cnt; k++) {
				int fd;

				memcpy(&fd, CMSG_DATA(cm) + k * sizeof(int), sizeof(int));
				if (fds && nfds && *nfds < VHOST_USER_MAX_FDS)
					fds[(*nfds)++] = fd;
				else
					close(fd);
			}
		}
		got += (size_t)n;
	}
	return 0;
}

int siov__vu_recv(struct siov_dev *dev, struct siov_vu_msg *msg, int *fds, unsigned *nfds,
		  int timeout_ms)
{
	int rc;

	if (nfds)
		*nfds = 0;
	rc = recv_full(dev, &msg->hdr, sizeof(msg->hdr), fds, nfds, timeout_ms);
	if (rc)
		return rc;
	/* A size we cannot hold means we lost the framing: nothing after it parses. */
	if (msg->hdr.size > sizeof(msg->payload))
		return -EPROTO;
	if (!msg->hdr.size)
		return 0;
	return recv_full(dev, &msg->payload, msg->hdr.size, fds, nfds, timeout_ms);
}

/* Messages that carry a reply of their own, whatever REPLY_ACK says. */
static bool has_reply(uint32_t request)
{
	switch (request) {
	case VHOST_USER_GET_FEATURES:
	case VHOST_USER_GET_PROTOCOL_FEATURES:
	case VHOST_USER_GET_VRING_BASE:
	case VHOST_USER_GET_QUEUE_NUM:
	case VHOST_USER_GET_CONFIG:
	case VHOST_USER_GET_INFLIGHT_FD:
	case VHOST_USER_GET_MAX_MEM_SLOTS:
	case VHOST_USER_GET_STATUS:
	case VHOST_USER_SET_LOG_BASE: /* answered whatever REPLY_ACK says */
		return true;
	default:
		return false;
	}
}

static int check_reply(uint32_t request, const struct siov_vu_msg *reply)
{
	if (reply->hdr.request != request || !(reply->hdr.flags & VHOST_USER_REPLY_MASK) ||
	    (reply->hdr.flags & VHOST_USER_VERSION_MASK) != VHOST_USER_VERSION)
		return -EPROTO;
	return 0;
}

/*
 * Sends one message and waits for its reply: the explicit one of a GET, or
 * the ack REPLY_ACK gives (a non-zero u64 is a refusal, reported as -EIO).
 */
int siov__vu_call(struct siov_dev *dev, uint32_t request, const void *payload, uint32_t size,
		  const int *fds, unsigned nfds, struct siov_vu_msg *reply)
{
	bool ack = !has_reply(request) &&
		   (dev->protocol_features & (1ull << VHOST_USER_PROTOCOL_F_REPLY_ACK));
	uint32_t flags = VHOST_USER_VERSION | (ack ? VHOST_USER_NEED_REPLY : 0);
	struct siov_vu_msg tmp;
	int rc;

	rc = siov__vu_send(dev, request, flags, payload, size, fds, nfds);
	if (rc || (!ack && !has_reply(request)))
		return rc;
	if (!reply)
		reply = &tmp;
	rc = siov__vu_recv(dev, reply, NULL, NULL, (int)dev->timeout_ms);
	if (rc)
		return rc;
	rc = check_reply(request, reply);
	if (rc || !ack)
		return rc;
	if (reply->hdr.size != sizeof(uint64_t))
		return -EPROTO;
	return reply->payload.u64 ? -EIO : 0;
}

int siov__vu_get_u64(struct siov_dev *dev, uint32_t request, uint64_t *val)
{
	struct siov_vu_msg reply;
	int rc = siov__vu_call(dev, request, NULL, 0, NULL, 0, &reply);

	if (rc)
		return rc;
	if (reply.hdr.size != sizeof(uint64_t))
		return -EPROTO;
	*val = reply.payload.u64;
	return 0;
}

int siov__vu_set_u64(struct siov_dev *dev, uint32_t request, uint64_t val)
{
	return siov__vu_call(dev, request, &val, sizeof(val), NULL, 0, NULL);
}
