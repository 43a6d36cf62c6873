/*
 * Where an export listens: "unix:/abs/path" (a socket file created 0600, a
 * stale one from a crash replaced) or "tcp:ADDR:PORT" (numeric addresses
 * only, IPv6 in brackets).  Without TLS a TCP export is refused on anything
 * but a loopback address unless the operator says --insecure: NBD carries
 * the disk's data in clear and has no authentication of its own.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <netdb.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include "export_impl.h"

static bool is_loopback(const struct sockaddr *sa)
{
	if (sa->sa_family == AF_INET)
		return (ntohl(((const struct sockaddr_in *)sa)->sin_addr.s_addr) >> 24) == 127;
	if (sa->sa_family == AF_INET6)
		return IN6_IS_ADDR_LOOPBACK(&((const struct sockaddr_in6 *)sa)->sin6_addr);
	return false;
}

/* Splits "ADDR:PORT" or "[V6]:PORT" into host and port strings. */
static int split_host_port(const char *s, char *host, size_t hlen, const char **port)
{
	const char *colon;
	size_t n;

	if (s[0] == '[') {
		const char *end = strchr(s, ']');

		if (!end || end[1] != ':')
			return -EINVAL;
		n = (size_t)(end - s - 1);
		colon = end + 1;
		s++;
	} else {
		colon = strrchr(s, ':');
		if (!colon)
			return -EINVAL;
		n = (size_t)(colon - s);
	}
	if (n == 0 || n >= hlen || colon[1] == '\0')
		return -EINVAL;
	memcpy(host, s, n);
	host[n] = '\0';
	*port = colon + 1;
	return 0;
}

static int tcp_listen(const char *spec, bool tls, bool insecure, struct siov_err *err)
{
	struct addrinfo hints = {.ai_socktype = SOCK_STREAM,
				 .ai_flags = AI_NUMERICHOST | AI_NUMERICSERV | AI_PASSIVE};
	struct addrinfo *ai;
	char host[64];
	const char *port;
	int fd, rc, one = 1;

	if (split_host_port(spec, host, sizeof(host), &port) < 0)
		return siov_err_set(err, -EINVAL, "listen 'tcp:%s': use tcp:ADDR:PORT", spec);
	rc = getaddrinfo(host, port, &hints, &ai);
	if (rc)
		return siov_err_set(err, -EINVAL, "listen 'tcp:%s': %s (numeric addresses only)",
				    spec, gai_strerror(rc));
	if (!tls && !insecure && !is_loopback(ai->ai_addr)) {
		freeaddrinfo(ai);
		return siov_err_set(err, -EPERM,
				    "listen 'tcp:%s': without TLS an NBD export listens on "
				    "loopback only (give tls_creds, or insecure to override)",
				    spec);
	}
	fd = socket(ai->ai_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (fd < 0) {
		rc = siov_err_set(err, -errno, "socket: %s", strerror(errno));
		goto out;
	}
	setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
	if (bind(fd, ai->ai_addr, ai->ai_addrlen) < 0 || listen(fd, 16) < 0) {
		rc = siov_err_set(err, -errno, "listen 'tcp:%s': %s", spec, strerror(errno));
		close(fd);
		goto out;
	}
	rc = fd;
out:
	freeaddrinfo(ai);
	return rc;
}

/* A stale socket file (nobody answers on it) is replaced; anything else is refused. */
static int unix_prepare(const char *path, struct siov_err *err)
{
	struct sockaddr_un sa = {.sun_family = AF_UNIX};
	struct stat st;
	int fd, rc;

	if (lstat(path, &st) < 0)
		return 0;
	if (!S_ISSOCK(st.st_mode))
		return siov_err_set(err, -EEXIST, "listen 'unix:%s': exists and is not a socket",
				    path);
	fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return siov_err_set(err, -errno, "socket: %s", strerror(errno));
	memcpy(sa.sun_path, path, strlen(path) + 1);
	rc = connect(fd, (struct sockaddr *)&sa, sizeof(sa));
	close(fd);
	if (rc == 0)
		return siov_err_set(err, -EADDRINUSE,
				    "listen 'unix:%s': in use by a running server", path);
	unlink(path);
	return 0;
}

static int unix_listen(const char *path, struct siov_err *err)
{
	struct sockaddr_un sa = {.sun_family = AF_UNIX};
	mode_t old;
	int fd, rc;

	if (path[0] != '/')
		return siov_err_set(err, -EINVAL, "listen 'unix:%s': the path must be absolute",
				    path);
	if (strlen(path) >= sizeof(sa.sun_path))
		return siov_err_set(err, -ENAMETOOLONG,
				    "listen 'unix:%s': Unix socket paths are limited to %zu bytes",
				    path, sizeof(sa.sun_path) - 1);
	if ((rc = unix_prepare(path, err)) < 0)
		return rc;
	memcpy(sa.sun_path, path, strlen(path) + 1);
	fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return siov_err_set(err, -errno, "socket: %s", strerror(errno));
	/* 0600 from the start: whoever connects reads and writes the disk. */
	old = umask(0177);
	rc = bind(fd, (struct sockaddr *)&sa, sizeof(sa));
	umask(old);
	if (rc < 0 || listen(fd, 16) < 0) {
		rc = siov_err_set(err, -errno, "listen 'unix:%s': %s", path, strerror(errno));
		close(fd);
		return rc;
	}
	return fd;
}

int siov__export_listen(const struct siov_export_conf *c, struct siov_err *err)
{
	if (strncmp(c->listen, "unix:", 5) == 0)
		return unix_listen(c->listen + 5, err);
	if (strncmp(c->listen, "tcp:", 4) == 0)
		return tcp_listen(c->listen + 4, c->tls_creds[0] != '\0', c->insecure, err);
	return siov_err_set(err, -EINVAL, "listen '%s': use unix:PATH or tcp:ADDR:PORT", c->listen);
}

void siov__export_unlisten(const struct siov_export_conf *c, int fd)
{
	if (fd >= 0)
		close(fd);
	if (strncmp(c->listen, "unix:", 5) == 0)
		unlink(c->listen + 5);
}
