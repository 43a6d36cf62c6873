/*
 * The switch: networks of ports, a learning forwarding table per network, and
 * the forwarding decision for every frame a port sends.
 *
 * Locking: each network has one reader-writer lock.  Senders hold it shared
 * while they decide and deliver, so frames from many engines flow at once;
 * what changes the network (attach, detach, learning a new address or moving
 * one, ageing) takes it exclusively, which is rare next to frames (a known
 * address is refreshed with a relaxed store under the shared lock, at most
 * once a second).  The lock prefers writers, so a detach is not starved by a
 * flood.  Since delivery happens under the shared lock, a detach that got the
 * exclusive lock knows nobody is delivering to the port any more.
 */
#include <endian.h>
#include <errno.h>
#include <stddef.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/uio.h>
#include <unistd.h>

#include "siov_internal/hash.h"
#include "siov_internal/log.h"
#include "siov_internal/switch.h"
#include "net_impl.h"

#define REFRESH_NS 1000000000ull

struct fdb_entry {
	struct siov_hlink link; /* in net->fdb, under mac_hash(mac) */
	uint64_t mac;
	struct siov_port *port;
	uint64_t seen;	/* ns; relaxed atomics: refreshed under the shared lock */
	bool is_static; /* a port's own MAC: never ages, never moves */
};

struct siov_port {
	struct siov_port_conf conf;
	struct siov_network *net;
	const struct siov_port_ops *ops;
	void *arg;
	unsigned index; /* in net->ports */
	bool uplink;
	struct siov_port_stats stats; /* relaxed atomic adds: many senders deliver to one port */
};

struct siov_network {
	struct siov_network_conf conf;
	struct siov_network *next; /* creation order */
	pthread_rwlock_t lock;
	struct siov_port **ports; /* flooding list */
	unsigned nports, cap;
	struct siov_htab fdb; /* struct fdb_entry by MAC */
	struct siov_port *uplink;
	int tap_fd;
	uint8_t *tap_buf; /* one frame read from the TAP (the one thread that calls
			     siov_network_uplink_rx) */
};

struct siov_switch {
	struct siov_network *head;
	unsigned n;
};

static const char *const drop_names[SIOV_DROP_NREASONS] = {
    [SIOV_DROP_NO_BUFFER] = "no_buffer", [SIOV_DROP_QOS] = "qos",
    [SIOV_DROP_SPOOFED] = "spoofed",	 [SIOV_DROP_TOO_BIG] = "too_big",
    [SIOV_DROP_MALFORMED] = "malformed",
};

const char *siov_port_drop_name(enum siov_port_drop reason)
{
	return (unsigned)reason < SIOV_DROP_NREASONS ? drop_names[reason] : "?";
}

#define STAT_INC(field, v) ((void)__atomic_fetch_add(&(field), (v), __ATOMIC_RELAXED))

/* ---- The forwarding table ---- */

static uint64_t mac_key(const uint8_t *mac)
{
	uint64_t k = 0;

	memcpy(&k, mac, SIOV_ETH_ALEN);
	return k;
}

static size_t mac_hash(uint64_t k)
{
	k *= 0x9e3779b97f4a7c15ull;
	return (size_t)(k >> 32);
}

static struct fdb_entry *fdb_entry_of(struct siov_hlink *l)
{
	return (struct fdb_entry *)((char *)l - offsetof(struct fdb_entry, link));
}

static struct fdb_entry *fdb_find(const struct siov_network *net, uint64_t k)
{
	size_t h = mac_hash(k);
	struct siov_hlink *l;

	for (l = siov_htab_first(&net->fdb, h); l; l = l->next)
		if (l->hash == h && fdb_entry_of(l)->mac == k)
			return fdb_entry_of(l);
	return NULL;
}

/* Exclusive lock held.  -ENOSPC when the table is full, -ENOMEM. */
static int fdb_insert(struct siov_network *net, uint64_t k, struct siov_port *p, uint64_t now,
		      bool is_static)
{
	struct fdb_entry *e;

	if (!is_static && net->fdb.n >= SIOV_NET_FDB_MAX)
		return -ENOSPC;
	if (!(e = calloc(1, sizeof(*e))))
		return -ENOMEM;
	*e = (struct fdb_entry){.mac = k, .port = p, .seen = now, .is_static = is_static};
	if (siov_htab_insert(&net->fdb, &e->link, mac_hash(k)) < 0) {
		free(e);
		return -ENOMEM;
	}
	return 0;
}

struct fdb_filter_arg {
	bool (*drop)(const struct fdb_entry *, void *);
	void *arg;
};

static bool fdb_filter_one(struct siov_hlink *l, void *arg)
{
	const struct fdb_filter_arg *fa = arg;
	struct fdb_entry *e = fdb_entry_of(l);

	if (!fa->drop(e, fa->arg))
		return false;
	free(e);
	return true;
}

/* Exclusive lock held: drops (and frees) the entries drop() picks. */
static void fdb_filter(struct siov_network *net, bool (*drop)(const struct fdb_entry *, void *),
		       void *arg)
{
	struct fdb_filter_arg fa = {drop, arg};

	siov_htab_filter(&net->fdb, fdb_filter_one, &fa);
}

static bool expired(const struct fdb_entry *e, uint64_t now)
{
	return !e->is_static &&
	       now - __atomic_load_n(&e->seen, __ATOMIC_RELAXED) > SIOV_NET_AGEING_NS &&
	       now > __atomic_load_n(&e->seen, __ATOMIC_RELAXED);
}

static bool drop_expired(const struct fdb_entry *e, void *arg)
{
	return expired(e, *(const uint64_t *)arg);
}

static bool drop_port(const struct fdb_entry *e, void *arg)
{
	return e->port == arg;
}

static bool drop_all(const struct fdb_entry *e, void *arg)
{
	return true;
}

void siov_network_age(struct siov_network *net, uint64_t now)
{
	pthread_rwlock_wrlock(&net->lock);
	fdb_filter(net, drop_expired, &now);
	pthread_rwlock_unlock(&net->lock);
}

/* ---- Forwarding ---- */

static void deliver(struct siov_port *to, const struct siov_net_frame *f)
{
	int rc = to->ops->deliver(to, f, to->arg);

	if (rc > 0) {
		STAT_INC(to->stats.rx_packets, (uint64_t)rc);
		STAT_INC(to->stats.rx_bytes, f->len);
	} else if (rc == -ENOBUFS) {
		STAT_INC(to->stats.rx_drops[SIOV_DROP_NO_BUFFER], 1);
	} else if (rc == -EDQUOT) {
		STAT_INC(to->stats.rx_drops[SIOV_DROP_QOS], 1);
	} else if (rc < 0) {
		STAT_INC(to->stats.rx_drops[SIOV_DROP_TOO_BIG], 1);
	}
}

static unsigned flood(struct siov_network *net, struct siov_port *from,
		      const struct siov_net_frame *f)
{
	unsigned i, n = 0;

	for (i = 0; i < net->nports; i++) {
		if (net->ports[i] != from) {
			deliver(net->ports[i], f);
			n++;
		}
	}
	return n;
}

/*
 * Shared lock held.  Learns (or refreshes) where the source lives; returns
 * false if the frame must be dropped as spoofed (another port's own MAC).
 * May drop and retake the lock to change the table.
 */
static bool learn(struct siov_network *net, struct siov_port *p, uint64_t k, uint64_t now)
{
	struct fdb_entry *e = fdb_find(net, k);

	if (e && e->port == p) {
		if (now - __atomic_load_n(&e->seen, __ATOMIC_RELAXED) > REFRESH_NS)
			__atomic_store_n(&e->seen, now, __ATOMIC_RELAXED);
		return true;
	}
	if (e && e->is_static)
		return false;
	pthread_rwlock_unlock(&net->lock);
	pthread_rwlock_wrlock(&net->lock);
	e = fdb_find(net, k);
	if (e && e->is_static && e->port != p) {
		pthread_rwlock_unlock(&net->lock);
		pthread_rwlock_rdlock(&net->lock);
		return false;
	}
	if (e) {
		e->port = p; /* the address moved (a VM migrated, a cable changed) */
		e->seen = now;
	} else {
		fdb_insert(net, k, p, now, false); /* a full table only means flooding */
	}
	pthread_rwlock_unlock(&net->lock);
	pthread_rwlock_rdlock(&net->lock);
	return true;
}

unsigned siov_port_send(struct siov_port *p, const struct siov_net_frame *f, uint64_t now)
{
	struct siov_network *net = p->net;
	struct fdb_entry *e;
	unsigned n = 0;

	if (siov_net_mac_is_multicast(f->src)) {
		siov_port_count_drop(p, false, SIOV_DROP_MALFORMED);
		return 0;
	}
	if (!p->conf.allow_spoof && memcmp(f->src, p->conf.mac, SIOV_ETH_ALEN)) {
		siov_port_count_drop(p, false, SIOV_DROP_SPOOFED);
		return 0;
	}
	pthread_rwlock_rdlock(&net->lock);
	if (!learn(net, p, mac_key(f->src), now)) {
		pthread_rwlock_unlock(&net->lock);
		siov_port_count_drop(p, false, SIOV_DROP_SPOOFED);
		return 0;
	}
	STAT_INC(p->stats.tx_packets, 1);
	STAT_INC(p->stats.tx_bytes, f->len);
	if (siov_net_mac_is_multicast(f->dst)) {
		n = flood(net, p, f);
	} else if ((e = fdb_find(net, mac_key(f->dst))) && !expired(e, now)) {
		/* A frame for the sender itself goes nowhere (no hairpin). */
		if (e->port != p) {
			deliver(e->port, f);
			n = 1;
		}
	} else {
		n = flood(net, p, f);
	}
	pthread_rwlock_unlock(&net->lock);
	return n;
}

int siov_port_parse(struct siov_port *port, struct siov_net_frame *f, const struct iovec *iov,
		    unsigned iovcnt, size_t hdr_len)
{
	int rc = siov_net_frame_parse(f, iov, iovcnt, hdr_len, port->conf.tx_offloads,
				      port->net->conf.mtu);

	if (rc == -EMSGSIZE)
		siov_port_count_drop(port, false, SIOV_DROP_TOO_BIG);
	else if (rc < 0)
		siov_port_count_drop(port, false, SIOV_DROP_MALFORMED);
	return rc;
}

void siov_port_count_drop(struct siov_port *port, bool rx, enum siov_port_drop reason)
{
	if ((unsigned)reason < SIOV_DROP_NREASONS)
		STAT_INC((rx ? port->stats.rx_drops : port->stats.tx_drops)[reason], 1);
}

void siov_port_set_tx_offloads(struct siov_port *port, unsigned offloads)
{
	port->conf.tx_offloads = offloads & SIOV_NET_OFF_ALL;
}

void siov_port_get_stats(const struct siov_port *port, struct siov_port_stats *s)
{
	const uint64_t *src = (const uint64_t *)&port->stats;
	uint64_t *dst = (uint64_t *)s;
	size_t i;

	for (i = 0; i < sizeof(*s) / sizeof(uint64_t); i++)
		dst[i] = __atomic_load_n(&src[i], __ATOMIC_RELAXED);
}

const struct siov_port_conf *siov_port_conf(const struct siov_port *port)
{
	return &port->conf;
}

struct siov_network *siov_port_network(const struct siov_port *port)
{
	return port->net;
}

/* ---- Ports ---- */

static int ports_add(struct siov_network *net, struct siov_port *p)
{
	if (net->nports == net->cap) {
		unsigned cap = net->cap ? net->cap * 2 : 8;
		struct siov_port **v = realloc(net->ports, cap * sizeof(*v));

		if (!v)
			return -ENOMEM;
		net->ports = v;
		net->cap = cap;
	}
	p->index = net->nports;
	net->ports[net->nports++] = p;
	return 0;
}

static void ports_remove(struct siov_network *net, struct siov_port *p)
{
	struct siov_port *last = net->ports[--net->nports];

	net->ports[p->index] = last;
	last->index = p->index;
}

static int port_insert(struct siov_network *net, struct siov_port *p, struct siov_err *err)
{
	uint64_t k = mac_key(p->conf.mac);
	struct fdb_entry *e;
	int rc;

	pthread_rwlock_wrlock(&net->lock);
	e = p->uplink ? NULL : fdb_find(net, k);
	if (e && e->is_static) {
		rc = siov_err_set(err, -EEXIST, "MAC address already used by port %s on network %s",
				  e->port->conf.name, net->conf.name);
		goto out;
	}
	if ((rc = ports_add(net, p)) < 0) {
		siov_err_set(err, rc, "out of memory");
		goto out;
	}
	if (!p->uplink) {
		/* The port's own MAC is static: known at once, never aged out, never taken over. */
		if (e) {
			e->port = p;
			e->is_static = true;
		} else if ((rc = fdb_insert(net, k, p, 0, true)) < 0) {
			ports_remove(net, p);
			siov_err_set(err, rc, "out of memory");
		}
	}
out:
	pthread_rwlock_unlock(&net->lock);
	return rc;
}

static int port_conf_check(const struct siov_port_conf *c, struct siov_err *err)
{
	static const uint8_t zero[SIOV_ETH_ALEN];

	if (siov_net_mac_is_multicast(c->mac) || !memcmp(c->mac, zero, SIOV_ETH_ALEN))
		return siov_err_set(err, -EINVAL,
				    "a port's MAC must be a unicast, non-zero address");
	return 0;
}

static int port_new(struct siov_network *net, const struct siov_port_conf *conf,
		    const struct siov_port_ops *ops, void *arg, bool uplink, struct siov_port **out,
		    struct siov_err *err)
{
	struct siov_port *p;
	int rc;

	if (!uplink && (rc = port_conf_check(conf, err)) < 0)
		return rc;
	if (!(p = calloc(1, sizeof(*p))))
		return siov_err_set(err, -ENOMEM, "out of memory");
	p->conf = *conf;
	p->net = net;
	p->ops = ops;
	p->arg = arg;
	p->uplink = uplink;
	if ((rc = port_insert(net, p, err)) < 0) {
		free(p);
		return rc;
	}
	*out = p;
	return 0;
}

int siov_port_attach(struct siov_network *net, const struct siov_port_conf *conf,
		     const struct siov_port_ops *ops, void *arg, struct siov_port **out,
		     struct siov_err *err)
{
	return port_new(net, conf, ops, arg, false, out, err);
}

void siov_port_detach(struct siov_port *port)
{
	struct siov_network *net = port->net;

	pthread_rwlock_wrlock(&net->lock);
	ports_remove(net, port);
	fdb_filter(net, drop_port, port);
	pthread_rwlock_unlock(&net->lock);
	free(port);
}

/* ---- The uplink ---- */

struct tap_emit {
	int fd;
};

static int tap_write(const struct siov_net_pkt *pkt, void *arg)
{
	struct iovec iov[SIOV_NET_PKT_IOV + 1];
	struct virtio_net_hdr_mrg_rxbuf h;
	const struct tap_emit *t = arg;
	ssize_t n;

	memset(&h, 0, sizeof(h));
	h.hdr.flags = pkt->hdr.flags;
	h.hdr.gso_type = pkt->hdr.gso_type;
	h.hdr.hdr_len = htole16(pkt->hdr.hdr_len);
	h.hdr.gso_size = htole16(pkt->hdr.gso_size);
	h.hdr.csum_start = htole16(pkt->hdr.csum_start);
	h.hdr.csum_offset = htole16(pkt->hdr.csum_offset);
	iov[0] = (struct iovec){&h, sizeof(h)};
	memcpy(iov + 1, pkt->iov, pkt->iovcnt * sizeof(*iov));
	n = writev(t->fd, iov, (int)pkt->iovcnt + 1);
	if (n < 0)
		return errno == EAGAIN || errno == ENOBUFS ? -ENOBUFS : -EMSGSIZE;
	return 0;
}

static int tap_deliver(struct siov_port *port, const struct siov_net_frame *f, void *arg)
{
	struct siov_network *net = arg;
	struct tap_emit t = {net->tap_fd};
	struct siov_net_pkt pkt;

	return siov_net_frame_emit(f, SIOV_TAP_OFFLOADS, &pkt, tap_write, &t);
}

static const struct siov_port_ops tap_ops = {.deliver = tap_deliver};

int siov_network_uplink_fd(const struct siov_network *net)
{
	return net->tap_fd;
}

unsigned siov_network_uplink_rx(struct siov_network *net, unsigned budget, uint64_t now)
{
	struct siov_net_frame f;
	unsigned n;

	if (net->tap_fd < 0)
		return 0;
	for (n = 0; n < budget; n++) {
		struct iovec iov = {net->tap_buf, SIOV_NET_HDR_LEN + SIOV_NET_MAX_FRAME};
		ssize_t r = read(net->tap_fd, net->tap_buf, iov.iov_len);

		if (r <= 0)
			break;
		iov.iov_len = (size_t)r;
		if (siov_port_parse(net->uplink, &f, &iov, 1, SIOV_NET_HDR_LEN) == 0)
			siov_port_send(net->uplink, &f, now);
	}
	return n;
}

static int uplink_open(struct siov_network *net, struct siov_err *err)
{
	struct siov_port_conf pc = {.allow_spoof = true, .tx_offloads = SIOV_TAP_OFFLOADS};
	const char *u = net->conf.uplink;
	int rc;

	if (!*u)
		return 0;
	if (strncmp(u, "tap:", 4))
		return siov_err_set(err, -EINVAL, "uplink '%s': only tap:IFNAME is known", u);
	if (!(net->tap_buf = malloc(SIOV_NET_HDR_LEN + SIOV_NET_MAX_FRAME)))
		return siov_err_set(err, -ENOMEM, "out of memory");
	if ((net->tap_fd = siov_tap_open(u + 4, net->conf.mtu, err)) < 0)
		return net->tap_fd;
	if (snprintf(pc.name, sizeof(pc.name), "%s.uplink", net->conf.name) >= (int)sizeof(pc.name))
		return siov_err_set(err, -ENAMETOOLONG,
				    "network name '%s' too long for its uplink port",
				    net->conf.name);
	if ((rc = port_new(net, &pc, &tap_ops, net, true, &net->uplink, err)) < 0)
		return rc;
	return 0;
}

/* ---- Networks ---- */

static void network_free(struct siov_network *net);

int siov_switch_create(struct siov_switch **out)
{
	struct siov_switch *sw = calloc(1, sizeof(*sw));

	if (!sw)
		return -ENOMEM;
	*out = sw;
	return 0;
}

void siov_switch_destroy(struct siov_switch *sw)
{
	struct siov_network *net;

	if (!sw)
		return;
	while ((net = sw->head)) {
		sw->head = net->next;
		network_free(net);
	}
	free(sw);
}

struct siov_network *siov_network_find(struct siov_switch *sw, const char *name)
{
	struct siov_network *net;

	for (net = sw->head; net; net = net->next)
		if (!strcmp(net->conf.name, name))
			return net;
	return NULL;
}

const struct siov_network_conf *siov_network_conf(const struct siov_network *net)
{
	return &net->conf;
}

static void network_free(struct siov_network *net)
{
	if (net->uplink)
		siov_port_detach(net->uplink);
	if (net->tap_fd >= 0)
		close(net->tap_fd);
	fdb_filter(net, drop_all, NULL);
	siov_htab_fini(&net->fdb);
	free(net->ports);
	free(net->tap_buf);
	pthread_rwlock_destroy(&net->lock);
	free(net);
}

static int network_conf_check(struct siov_switch *sw, struct siov_network_conf *c,
			      struct siov_err *err)
{
	if (!siov_name_valid(c->name))
		return siov_err_set(err, -EINVAL, "bad network name '%s'", c->name);
	if (siov_network_find(sw, c->name))
		return siov_err_set(err, -EEXIST, "network %s exists", c->name);
	if (!c->mtu)
		c->mtu = SIOV_NET_MTU_DEFAULT;
	if (c->mtu < SIOV_NET_MTU_MIN || c->mtu > SIOV_NET_MTU_MAX)
		return siov_err_set(err, -EINVAL, "mtu %u out of range %u..%u", c->mtu,
				    SIOV_NET_MTU_MIN, SIOV_NET_MTU_MAX);
	return 0;
}

int siov_network_create(struct siov_switch *sw, const struct siov_network_conf *conf,
			struct siov_network **out, struct siov_err *err)
{
	pthread_rwlockattr_t a;
	struct siov_network *net, **pp;
	int rc;

	if (!(net = calloc(1, sizeof(*net))))
		return siov_err_set(err, -ENOMEM, "out of memory");
	net->conf = *conf;
	net->tap_fd = -1;
	pthread_rwlockattr_init(&a);
	pthread_rwlockattr_setkind_np(&a, PTHREAD_RWLOCK_PREFER_WRITER_NONRECURSIVE_NP);
	pthread_rwlock_init(&net->lock, &a);
	pthread_rwlockattr_destroy(&a);
	if ((rc = network_conf_check(sw, &net->conf, err)) < 0 ||
	    (rc = uplink_open(net, err)) < 0) {
		network_free(net);
		return rc;
	}
	for (pp = &sw->head; *pp; pp = &(*pp)->next)
		;
	*pp = net;
	sw->n++;
	if (out)
		*out = net;
	return 0;
}

int siov_network_delete(struct siov_switch *sw, const char *name, struct siov_err *err)
{
	struct siov_network **pp, *net;

	for (pp = &sw->head; *pp && strcmp((*pp)->conf.name, name); pp = &(*pp)->next)
		;
	if (!(net = *pp))
		return siov_err_set(err, -ENOENT, "no network %s", name);
	if (net->nports > (net->uplink ? 1u : 0u))
		return siov_err_set(err, -EBUSY, "network %s has %u ports", name,
				    net->nports - (net->uplink ? 1u : 0u));
	*pp = net->next;
	sw->n--;
	network_free(net);
	return 0;
}

void siov_network_foreach(struct siov_switch *sw, siov_network_info_cb cb, void *arg)
{
	struct siov_network *net;

	for (net = sw->head; net; net = net->next) {
		struct siov_network_info info = {.conf = &net->conf, .uplink = net->uplink};

		pthread_rwlock_rdlock(&net->lock);
		info.ports = net->nports;
		info.learned = (unsigned)net->fdb.n;
		pthread_rwlock_unlock(&net->lock);
		cb(&info, arg);
	}
}

unsigned siov_switch_networks(const struct siov_switch *sw)
{
	return sw->n;
}
