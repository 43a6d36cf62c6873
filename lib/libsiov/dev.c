/*
 * The slow path of a libsiov device: opening the vhost-user connection and
 * negotiating features, reading the virtio-blk configuration, building the
 * memory table (the VDEV's PASID space: memfd regions identity mapped, so a
 * descriptor address is simply a pointer of this process) and starting the
 * queues.  Everything here runs on the application's control thread; once
 * siov_dev_start() returns, the queues need no more messages.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "libsiov_int.h"

/* Virtio features the library can drive; the rest it leaves unnegotiated. */
#define WANTED_FEATURES                                                                            \
	((1ull << VIRTIO_F_VERSION_1_BIT) | (1ull << VHOST_USER_F_PROTOCOL_FEATURES_BIT) |         \
	 (1ull << VIRTIO_RING_F_EVENT_IDX_BIT) | (1ull << VIRTIO_BLK_F_SIZE_MAX) |                 \
	 (1ull << VIRTIO_BLK_F_SEG_MAX) | (1ull << VIRTIO_BLK_F_RO) |                              \
	 (1ull << VIRTIO_BLK_F_BLK_SIZE) | (1ull << VIRTIO_BLK_F_FLUSH) |                          \
	 (1ull << VIRTIO_BLK_F_MQ) | (1ull << VIRTIO_BLK_F_DISCARD) |                              \
	 (1ull << VIRTIO_BLK_F_WRITE_ZEROES))

#define WANTED_PROTOCOL_FEATURES                                                                   \
	((1ull << VHOST_USER_PROTOCOL_F_MQ) | (1ull << VHOST_USER_PROTOCOL_F_REPLY_ACK) |          \
	 (1ull << VHOST_USER_PROTOCOL_F_CONFIG) | (1ull << VHOST_USER_PROTOCOL_F_LOG_SHMFD))

#define PAGE 4096u

void siov_dev_opts_init(struct siov_dev_opts *opts)
{
	memset(opts, 0, sizeof(*opts));
	opts->size = sizeof(*opts);
	opts->queue_size = 256;
	opts->timeout_ms = 5000;
	opts->poll_us = 20;
}

static bool has(uint64_t features, unsigned bit)
{
	return features & (1ull << bit);
}

/* Fields added after flags count only if the caller's struct has them. */
static unsigned opt_reconnect_ms(const struct siov_dev_opts *o)
{
	if (o->size < offsetof(struct siov_dev_opts, reconnect_ms) + sizeof(o->reconnect_ms))
		return 0;
	return o->reconnect_ms;
}

static int check_opts(const struct siov_dev_opts *o)
{
	if (o->size < offsetof(struct siov_dev_opts, flags) + sizeof(o->flags))
		return -EINVAL;
	if (o->queue_size < 2 || o->queue_size > SIOV__QUEUE_SIZE_MAX ||
	    (o->queue_size & (o->queue_size - 1)))
		return -EINVAL;
	/* A packed ring keeps no private copy of its chains, so it cannot rebuild one. */
	if ((o->flags & SIOV_DEV_F_PACKED) && opt_reconnect_ms(o))
		return -EINVAL;
	return 0;
}

static struct siov_dev *dev_new(const char *path, const struct siov_dev_opts *o)
{
	struct siov_dev *dev = calloc(1, sizeof(*dev));

	if (!dev)
		return NULL;
	dev->path = strdup(path);
	if (!dev->path) {
		free(dev);
		return NULL;
	}
	dev->sock = -1;
	dev->timeout_ms = o->timeout_ms ? o->timeout_ms : 5000;
	dev->poll_us = o->poll_us;
	dev->flags = o->flags;
	dev->log_fd = -1;
	dev->want_queues = o->num_queues;
	dev->reconnect_ms = opt_reconnect_ms(o);
	pthread_mutex_init(&dev->lock, NULL);
	return dev;
}

static void dev_free(struct siov_dev *dev)
{
	pthread_mutex_destroy(&dev->lock);
	free(dev->path);
	free(dev);
}

static int negotiate_protocol(struct siov_dev *dev)
{
	uint64_t pf;
	int rc;

	if (!has(dev->features, VHOST_USER_F_PROTOCOL_FEATURES_BIT))
		return 0;
	rc = siov__vu_get_u64(dev, VHOST_USER_GET_PROTOCOL_FEATURES, &pf);
	if (rc)
		return rc;
	pf &= WANTED_PROTOCOL_FEATURES;
	/* REPLY_ACK applies only once the back end has accepted it. */
	rc = siov__vu_set_u64(dev, VHOST_USER_SET_PROTOCOL_FEATURES, pf);
	if (rc)
		return rc;
	dev->protocol_features = pf;
	return 0;
}

static int read_queue_num(struct siov_dev *dev, unsigned want)
{
	uint64_t n = 1;
	int rc;

	if (has(dev->protocol_features, VHOST_USER_PROTOCOL_F_MQ)) {
		rc = siov__vu_get_u64(dev, VHOST_USER_GET_QUEUE_NUM, &n);
		if (rc)
			return rc;
	}
	if (n == 0 || n > 1024)
		return -EPROTO;
	dev->info.max_queues = (unsigned)n;
	if (want > n)
		return -EINVAL;
	dev->nqueues = want ? want : (unsigned)n;
	return 0;
}

static void apply_config(struct siov_dev *dev, const struct virtio_blk_config *c)
{
	struct siov_dev_info *in = &dev->info;
	uint64_t f = dev->features;

	in->capacity = c->capacity * 512;
	in->blk_size = has(f, VIRTIO_BLK_F_BLK_SIZE) && c->blk_size ? c->blk_size : 512;
	in->seg_max = has(f, VIRTIO_BLK_F_SEG_MAX) && c->seg_max ? c->seg_max : 1;
	in->size_max = has(f, VIRTIO_BLK_F_SIZE_MAX) ? c->size_max : 0;
	in->read_only = has(f, VIRTIO_BLK_F_RO) || (dev->flags & SIOV_DEV_F_READ_ONLY);
	in->flush = has(f, VIRTIO_BLK_F_FLUSH);
	in->discard = has(f, VIRTIO_BLK_F_DISCARD);
	in->write_zeroes = has(f, VIRTIO_BLK_F_WRITE_ZEROES);
	in->max_discard_sectors = in->discard ? c->max_discard_sectors : 0;
	in->max_write_zeroes_sectors = in->write_zeroes ? c->max_write_zeroes_sectors : 0;
	dev->cfg_queues = has(f, VIRTIO_BLK_F_MQ) ? c->num_queues : 0;
	if (in->seg_max > SIOV__SEGS_MAX)
		in->seg_max = SIOV__SEGS_MAX;
}

/*
 * The config bytes we ask for: up to the write-zeroes fields, the last we use.
 * QEMU 7.2's back end refuses a request larger than its own struct, which
 * ends there, while newer kernel headers add secure-erase fields after it.
 */
#define CONFIG_LEN offsetof(struct virtio_blk_config, max_secure_erase_sectors)

static int read_config(struct siov_dev *dev)
{
	struct siov_vu_config req = {.offset = 0, .size = CONFIG_LEN};
	struct virtio_blk_config cfg = {0};
	struct siov_vu_msg reply;
	int rc;

	/* Without config space we cannot learn the capacity: no safe I/O. */
	if (!has(dev->protocol_features, VHOST_USER_PROTOCOL_F_CONFIG))
		return -EOPNOTSUPP;
	rc = siov__vu_call(dev, VHOST_USER_GET_CONFIG, &req, SIOV_VU_CONFIG_HDR + req.size, NULL, 0,
			   &reply);
	if (rc)
		return rc;
	/* A back end that refuses answers with a zero-sized payload. */
	if (reply.hdr.size != SIOV_VU_CONFIG_HDR + CONFIG_LEN ||
	    reply.payload.config.size != CONFIG_LEN)
		return -EPROTO;
	memcpy(&cfg, reply.payload.config.region, CONFIG_LEN);
	apply_config(dev, &cfg);
	return 0;
}

/* Features, protocol features, owner, queue count and configuration. */
int siov__negotiate(struct siov_dev *dev, unsigned num_queues)
{
	uint64_t offered, wanted = WANTED_FEATURES;
	int rc;

	/* A new connection: no REPLY_ACK until the back end accepts it again. */
	dev->protocol_features = 0;
	rc = siov__vu_get_u64(dev, VHOST_USER_GET_FEATURES, &offered);
	if (rc)
		return rc;
	if (!has(offered, VIRTIO_F_VERSION_1_BIT))
		return -EOPNOTSUPP;
	if (dev->flags & SIOV_DEV_F_NO_EVENT_IDX)
		wanted &= ~(1ull << VIRTIO_RING_F_EVENT_IDX_BIT);
	if (dev->flags & SIOV_DEV_F_PACKED)
		wanted |= 1ull << VIRTIO_F_RING_PACKED_BIT;
	if (dev->flags & SIOV_DEV_F_IN_ORDER)
		wanted |= 1ull << VIRTIO_F_IN_ORDER_BIT;
	dev->features = offered & wanted;
	rc = negotiate_protocol(dev);
	if (rc)
		return rc;
	rc = read_queue_num(dev, num_queues);
	if (rc)
		return rc;
	rc = siov__vu_call(dev, VHOST_USER_SET_OWNER, NULL, 0, NULL, 0, NULL);
	if (rc)
		return rc;
	rc = read_config(dev);
	if (rc)
		return rc;
	/* A siovd VDEV left at its default offers 256 queues but says 1 here. */
	if (!num_queues && dev->cfg_queues && dev->cfg_queues < dev->nqueues)
		dev->nqueues = dev->cfg_queues;
	return siov__vu_set_u64(dev, VHOST_USER_SET_FEATURES, dev->features);
}

static void fill_info(struct siov_dev *dev, const struct siov_dev_opts *o)
{
	struct siov_dev_info *in = &dev->info;

	in->num_queues = dev->nqueues;
	in->queue_size = o->queue_size;
	/* A request takes a header, one descriptor per segment and a status byte. */
	in->max_inflight = o->queue_size / 3;
	in->event_idx = has(dev->features, VIRTIO_RING_F_EVENT_IDX_BIT);
	in->features = dev->features;
	in->protocol_features = dev->protocol_features;
}

int siov_dev_open(const char *path, const struct siov_dev_opts *opts, struct siov_dev **out)
{
	struct siov_dev_opts def;
	struct siov_dev *dev;
	int rc;

	if (!opts) {
		siov_dev_opts_init(&def);
		opts = &def;
	}
	rc = check_opts(opts);
	if (rc)
		return rc;
	dev = dev_new(path, opts);
	if (!dev)
		return -ENOMEM;
	rc = siov__connect(path, dev->timeout_ms, &dev->sock);
	if (rc)
		goto err_connect;
	rc = siov__negotiate(dev, opts->num_queues);
	if (rc)
		goto err_negotiate;
	fill_info(dev, opts);
	*out = dev;
	return 0;

err_negotiate:
	close(dev->sock);
err_connect:
	dev_free(dev);
	return rc;
}

static void region_fini(struct siov__region *r)
{
	if (r->mapped)
		munmap(r->addr, r->len);
	if (r->fd >= 0)
		close(r->fd);
}

void siov_dev_close(struct siov_dev *dev)
{
	unsigned i;

	if (!dev)
		return;
	/* Closing the socket first tells the back end to stop using the rings. */
	if (dev->sock >= 0)
		close(dev->sock);
	if (dev->queue) {
		for (i = 0; i < dev->nqueues; i++)
			siov__queue_fini(&dev->queue[i]);
		free(dev->queue);
	}
	for (i = 0; i < dev->nregions; i++)
		region_fini(&dev->region[i]);
	if (dev->log_fd >= 0)
		close(dev->log_fd);
	dev_free(dev);
}

int siov_dev_info(const struct siov_dev *dev, struct siov_dev_info *info)
{
	*info = dev->info;
	return 0;
}

int siov_dev_fd(const struct siov_dev *dev)
{
	return __atomic_load_n(&dev->sock, __ATOMIC_RELAXED);
}

unsigned siov_dev_reconnects(const struct siov_dev *dev)
{
	return __atomic_load_n(&dev->reconnects, __ATOMIC_RELAXED);
}

int siov_dev_alive(struct siov_dev *dev)
{
	return siov__sock_check(dev);
}

struct siov_queue *siov_dev_queue(struct siov_dev *dev, unsigned index)
{
	if (!dev->started || index >= dev->nqueues)
		return NULL;
	return &dev->queue[index];
}

/* --- Memory table --- */

static bool overlaps(const struct siov_dev *dev, const uint8_t *addr, size_t len)
{
	unsigned i;

	for (i = 0; i < dev->nregions; i++) {
		const struct siov__region *r = &dev->region[i];

		if (addr < r->addr + r->len && r->addr < addr + len)
			return true;
	}
	return false;
}

/* Slot 0 stays free for the rings until siov_dev_start() takes it. */
static int region_room(const struct siov_dev *dev)
{
	if (dev->started)
		return -EBUSY;
	if (dev->nregions + 1 >= SIOV__REGIONS_MAX)
		return -ENOSPC;
	return 0;
}

static int map_memfd(size_t len, const char *name, struct siov__region *r)
{
	void *p;
	int fd, rc;

	fd = memfd_create(name, MFD_CLOEXEC);
	if (fd < 0)
		return -errno;
	if (ftruncate(fd, (off_t)len) < 0)
		goto err_errno;
	p = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
	if (p == MAP_FAILED)
		goto err_errno;
	*r = (struct siov__region){.addr = p, .len = len, .fd = fd, .offset = 0, .mapped = true};
	return 0;

err_errno:
	rc = -errno;
	close(fd);
	return rc;
}

int siov_mem_alloc(struct siov_dev *dev, size_t len, void **addr)
{
	int rc = region_room(dev);

	if (rc)
		return rc;
	if (!len || len > (1ull << 46))
		return -EINVAL;
	len = (len + PAGE - 1) & ~(size_t)(PAGE - 1);
	rc = map_memfd(len, "siov-buf", &dev->region[dev->nregions]);
	if (rc)
		return rc;
	*addr = dev->region[dev->nregions++].addr;
	return 0;
}

int siov_mem_register(struct siov_dev *dev, void *addr, size_t len, int fd, uint64_t offset)
{
	int rc = region_room(dev), dup_fd;

	if (rc)
		return rc;
	if (!addr || !len || ((uintptr_t)addr % PAGE) || (len % PAGE) || (offset % PAGE) ||
	    (uintptr_t)addr + len < (uintptr_t)addr)
		return -EINVAL;
	if (overlaps(dev, addr, len))
		return -EINVAL;
	dup_fd = fcntl(fd, F_DUPFD_CLOEXEC, 0);
	if (dup_fd < 0)
		return -errno;
	dev->region[dev->nregions++] = (struct siov__region){
	    .addr = addr, .len = len, .fd = dup_fd, .offset = offset, .mapped = false};
	return 0;
}

/* --- Start: memory table, then every queue --- */

int siov__send_mem_table(struct siov_dev *dev)
{
	struct siov_vu_mem_table mt = {.nregions = dev->nregions};
	int fds[SIOV__REGIONS_MAX];
	unsigned i;

	for (i = 0; i < dev->nregions; i++) {
		const struct siov__region *r = &dev->region[i];

		/* Identity map: a guest physical address is our virtual address. */
		mt.regions[i] = (struct siov_vu_mem_region){.guest_phys_addr = (uintptr_t)r->addr,
							    .memory_size = r->len,
							    .userspace_addr = (uintptr_t)r->addr,
							    .mmap_offset = r->offset};
		fds[i] = r->fd;
	}
	return siov__vu_call(dev, VHOST_USER_SET_MEM_TABLE, &mt,
			     offsetof(struct siov_vu_mem_table, regions) +
				 dev->nregions * sizeof(mt.regions[0]),
			     fds, dev->nregions, NULL);
}

static int send_state(struct siov_dev *dev, uint32_t request, unsigned index, unsigned num)
{
	struct siov_vu_vring_state s = {.index = index, .num = num};

	return siov__vu_call(dev, request, &s, sizeof(s), NULL, 0, NULL);
}

static int send_vring_fd(struct siov_dev *dev, uint32_t request, unsigned index, int fd)
{
	uint64_t v = index;

	return siov__vu_call(dev, request, &v, sizeof(v), &fd, 1, NULL);
}

/*
 * SIOV_DEV_F_DIRTY_LOG: a sparse memfd log covering every region (guest
 * addresses are ours, so it spans up to the highest one), then LOG_ALL, as
 * QEMU does when a migration starts.
 */
static int start_dirty_log(struct siov_dev *dev)
{
	uint64_t end = 0, f = dev->features | (1ull << VHOST_F_LOG_ALL_BIT);
	struct siov_vu_log l = {0};
	struct siov_vu_msg reply;
	unsigned i;
	int rc;

	if (!has(dev->protocol_features, VHOST_USER_PROTOCOL_F_LOG_SHMFD))
		return -EOPNOTSUPP;
	for (i = 0; i < dev->nregions; i++)
		if ((uint64_t)(uintptr_t)dev->region[i].addr + dev->region[i].len > end)
			end = (uint64_t)(uintptr_t)dev->region[i].addr + dev->region[i].len;
	l.mmap_size = (end / PAGE / 8 + 8) & ~7ull;
	dev->log_fd = memfd_create("siov-dirty-log", MFD_CLOEXEC);
	if (dev->log_fd < 0)
		return -errno;
	if (ftruncate(dev->log_fd, (off_t)l.mmap_size) < 0)
		return -errno;
	rc = siov__vu_call(dev, VHOST_USER_SET_LOG_BASE, &l, sizeof(l), &dev->log_fd, 1, &reply);
	if (rc)
		return rc;
	return siov__vu_set_u64(dev, VHOST_USER_SET_FEATURES, f);
}

int siov__start_queue(struct siov_dev *dev, struct siov_queue *q)
{
	bool log = dev->log_fd >= 0;
	struct siov_vu_vring_addr a = {.index = q->index,
				       .flags = log ? 1u << VHOST_VRING_F_LOG : 0,
				       .desc_user_addr = (uintptr_t)q->desc,
				       .used_user_addr = (uintptr_t)q->used,
				       .avail_user_addr = (uintptr_t)q->avail,
				       .log_guest_addr = log ? (uintptr_t)q->used : 0};
	int rc;

	rc = send_state(dev, VHOST_USER_SET_VRING_NUM, q->index, q->num);
	/* Packed: position 0 in lap 1 (the wrap counter in bit 15). */
	if (!rc)
		rc = send_state(dev, VHOST_USER_SET_VRING_BASE, q->index, q->packed ? 0x8000 : 0);
	if (!rc)
		rc = siov__vu_call(dev, VHOST_USER_SET_VRING_ADDR, &a, sizeof(a), NULL, 0, NULL);
	/*
	 * CALL before KICK: libvhost-user (qemu-storage-daemon) starts a ring on
	 * KICK and fails the connection if it completes a request before it has
	 * a call fd, which a reconnect with requests pending would provoke.
	 */
	if (!rc)
		rc = send_vring_fd(dev, VHOST_USER_SET_VRING_CALL, q->index, q->call_fd);
	if (!rc)
		rc = send_vring_fd(dev, VHOST_USER_SET_VRING_KICK, q->index, q->kick_fd);
	/* With PROTOCOL_FEATURES a ring starts disabled until it is enabled. */
	if (!rc && has(dev->features, VHOST_USER_F_PROTOCOL_FEATURES_BIT))
		rc = send_state(dev, VHOST_USER_SET_VRING_ENABLE, q->index, 1);
	return rc;
}

static int alloc_queues(struct siov_dev *dev)
{
	size_t per = siov__queue_ring_bytes(dev->info.queue_size);
	struct siov__region rings;
	unsigned i;
	int rc;

	dev->queue = calloc(dev->nqueues, sizeof(*dev->queue));
	if (!dev->queue)
		return -ENOMEM;
	rc = map_memfd(per * dev->nqueues, "siov-rings", &rings);
	if (rc)
		return rc;
	/* The rings go first in the table: move the application's regions up. */
	memmove(&dev->region[1], &dev->region[0], dev->nregions * sizeof(rings));
	dev->region[0] = rings;
	dev->nregions++;
	for (i = 0; i < dev->nqueues; i++) {
		rc = siov__queue_init(&dev->queue[i], dev, i, rings.addr + i * per);
		if (rc)
			return rc;
	}
	return 0;
}

int siov_dev_start(struct siov_dev *dev)
{
	unsigned i;
	int rc;

	if (dev->started || dev->queue)
		return -EBUSY;
	rc = alloc_queues(dev);
	if (rc)
		return rc;
	rc = siov__send_mem_table(dev);
	if (!rc && (dev->flags & SIOV_DEV_F_DIRTY_LOG))
		rc = start_dirty_log(dev);
	for (i = 0; !rc && i < dev->nqueues; i++)
		rc = siov__start_queue(dev, &dev->queue[i]);
	if (rc)
		return rc;
	dev->started = true;
	return 0;
}
