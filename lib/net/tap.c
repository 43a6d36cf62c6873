/*
 * The TAP device behind a network's uplink: the host kernel's end of one
 * network, so that guests reach the host, a bridge, or a network namespace the
 * TAP is moved into.  Frames cross it with a virtio-net header (IFF_VNET_HDR),
 * so checksum and TSO offloads pass between guests and the kernel untouched.
 */
#include <errno.h>
#include <fcntl.h>
#include <linux/if.h>
#include <linux/if_tun.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <unistd.h>

#include "siov_internal/net_frame.h"
#include "net_impl.h"

static int tap_link_up(const char *ifname, uint32_t mtu, struct siov_err *err)
{
	struct ifreq ifr;
	int s = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
	int rc = 0;

	if (s < 0)
		return siov_err_set(err, -errno, "socket: %s", strerror(errno));
	memset(&ifr, 0, sizeof(ifr));
	strncpy(ifr.ifr_name, ifname, IFNAMSIZ - 1);
	ifr.ifr_mtu = (int)mtu;
	if (ioctl(s, SIOCSIFMTU, &ifr) < 0) {
		rc = siov_err_set(err, -errno, "cannot set the MTU of %s to %u: %s", ifname, mtu,
				  strerror(errno));
		goto out;
	}
	if (ioctl(s, SIOCGIFFLAGS, &ifr) < 0 ||
	    (ifr.ifr_flags |= IFF_UP, ioctl(s, SIOCSIFFLAGS, &ifr) < 0))
		rc = siov_err_set(err, -errno, "cannot bring %s up: %s", ifname, strerror(errno));
out:
	close(s);
	return rc;
}

int siov_tap_open(const char *ifname, uint32_t mtu, struct siov_err *err)
{
	struct ifreq ifr;
	int fd, rc, hdr_len = SIOV_NET_HDR_LEN;
	unsigned off = TUN_F_CSUM | TUN_F_TSO4 | TUN_F_TSO6 | TUN_F_TSO_ECN;

	if (!*ifname || strlen(ifname) >= IFNAMSIZ || strchr(ifname, '/'))
		return siov_err_set(err, -EINVAL, "bad TAP name '%s' (1..%d characters)", ifname,
				    IFNAMSIZ - 1);
	fd = open("/dev/net/tun", O_RDWR | O_NONBLOCK | O_CLOEXEC);
	if (fd < 0)
		return siov_err_set(err, -errno, "cannot open /dev/net/tun: %s", strerror(errno));
	memset(&ifr, 0, sizeof(ifr));
	strncpy(ifr.ifr_name, ifname, IFNAMSIZ - 1);
	ifr.ifr_flags = IFF_TAP | IFF_NO_PI | IFF_VNET_HDR;
	if (ioctl(fd, TUNSETIFF, &ifr) < 0) {
		rc = siov_err_set(err, -errno, "cannot attach to TAP %s: %s", ifname,
				  strerror(errno));
		goto err;
	}
	if (ioctl(fd, TUNSETVNETHDRSZ, &hdr_len) < 0 || ioctl(fd, TUNSETOFFLOAD, off) < 0) {
		rc = siov_err_set(err, -errno, "TAP %s refuses offloads: %s", ifname,
				  strerror(errno));
		goto err;
	}
	if ((rc = tap_link_up(ifname, mtu, err)) < 0)
		goto err;
	return fd;

err:
	close(fd);
	return rc;
}
