/*
 * The fast path of libsiov: one virtqueue per struct siov_queue (split, or
 * packed with SIOV_DEV_F_PACKED), driven by the one thread that owns it.  Preparing a request
 * writes its descriptor chain (header, data segments, status byte) and an avail entry; submitting
 * publishes the avail index and kicks only if the device asked for it;
 * reaping reads the used ring.  No allocation, lock or system call per request.
 *
 * The library keeps a private shadow of everything it must believe (chain
 * links, which heads are in flight): the back end shares the ring memory and
 * could write anything into it, so a used entry is checked against the shadow
 * before it is reported, and a lying back end breaks the queue (-EPROTO)
 * instead of corrupting the application.
 */
#include <errno.h>
#include <limits.h>
#include <poll.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include "libsiov_int.h"

#define SECTOR 512u
/* While requests are out and none completes, look at the socket this often. */
#define LIVENESS_NS 10000000ull

static size_t align_up(size_t v, size_t a)
{
	return (v + a - 1) & ~(a - 1);
}

/* Offsets of each part of a queue's ring memory. */
struct layout {
	size_t avail, used, hdr, seg, status, total;
};

static void layout_of(unsigned num, struct layout *l)
{
	l->avail = sizeof(struct vring_desc) * num;
	/* The used ring is written by the device: keep it off the driver's lines. */
	l->used = align_up(l->avail + 6 + 2 * num, 4096);
	l->hdr = align_up(l->used + 6 + 8 * num, 64);
	l->seg = l->hdr + sizeof(struct virtio_blk_outhdr) * num;
	l->status = align_up(l->seg + sizeof(struct virtio_blk_discard_write_zeroes) * num, 64);
	l->total = align_up(l->status + num, 4096);
}

size_t siov__queue_ring_bytes(unsigned num)
{
	struct layout l;

	layout_of(num, &l);
	return l.total;
}

static void init_free_list(struct siov_queue *q)
{
	unsigned i;

	for (i = 0; i < q->num; i++)
		q->next[i] = (uint16_t)(i + 1);
	/* In order the table is a ring: the spec has the last descriptor chain to the first. */
	if (q->in_order)
		q->next[q->num - 1] = 0;
	q->free_head = 0;
	q->nfree = q->num;
	q->io_next = 0;
	q->batch = SIOV__NO_BATCH;
}

/* Packed: the descriptor ring where split's table is, the event areas where its rings are. */
static void init_packed(struct siov_queue *q, uint8_t *mem, const struct layout *l)
{
	q->pdesc = (struct vring_packed_desc *)mem;
	q->drv_event = (struct vring_packed_desc_event *)(mem + l->avail);
	q->dev_event = (struct vring_packed_desc_event *)(mem + l->used);
	q->pk_next = q->pk_used = 0;
	q->pk_wrap = q->pk_used_wrap = true; /* both wrap counters start at 1 */
	memset(mem, 0, sizeof(*q->pdesc) * q->num);
	/* Polling mode until siov_wait() arms a call. */
	q->drv_event->flags = VRING_PACKED_EVENT_FLAG_DISABLE;
}

static void init_rings(struct siov_queue *q, uint8_t *mem)
{
	struct layout l;

	layout_of(q->num, &l);
	q->ring_mem = mem;
	q->ring_len = l.total;
	q->desc = (struct vring_desc *)mem;
	q->avail = (struct vring_avail *)(mem + l.avail);
	q->used = (struct vring_used *)(mem + l.used);
	q->used_event = &q->avail->ring[q->num];
	q->avail_event = (uint16_t *)&q->used->ring[q->num];
	q->hdr = (struct virtio_blk_outhdr *)(mem + l.hdr);
	q->seg = (struct virtio_blk_discard_write_zeroes *)(mem + l.seg);
	q->status = mem + l.status;
	if (q->packed) {
		init_packed(q, mem, &l);
		return;
	}
	/* Start in polling mode: ask for no interrupt until siov_wait() arms one. */
	if (q->event_idx)
		*q->used_event = (uint16_t)(q->last_used - 1);
	else
		q->avail->flags = VRING_AVAIL_F_NO_INTERRUPT;
}

int siov__queue_init(struct siov_queue *q, struct siov_dev *dev, unsigned index, uint8_t *mem)
{
	const struct siov_dev_info *in = &dev->info;

	q->dev = dev;
	q->index = index;
	q->kick_fd = -1;
	q->call_fd = -1;
	q->num = (uint16_t)in->queue_size;
	q->mask = (uint16_t)(in->queue_size - 1);
	q->event_idx = in->event_idx;
	q->ro = in->read_only;
	q->seg_max = in->seg_max;
	q->size_max = in->size_max;
	q->capacity = in->capacity;
	q->packed = in->features & (1ull << VIRTIO_F_RING_PACKED_BIT);
	q->in_order = in->features & (1ull << VIRTIO_F_IN_ORDER_BIT);
	q->next = calloc(q->num, sizeof(*q->next));
	q->slot = calloc(q->num, sizeof(*q->slot));
	q->order = calloc(q->num, sizeof(*q->order));
	q->pk_hpos = calloc(3 * (size_t)q->num, sizeof(*q->pk_hpos));
	if (!q->next || !q->slot || !q->order || !q->pk_hpos)
		return -ENOMEM;
	q->pk_hflags = q->pk_hpos + q->num;
	q->pk_prep = q->pk_hflags + q->num;
	q->conn = atomic_load(&dev->conn);
	q->kick_fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
	q->call_fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
	if (q->kick_fd < 0 || q->call_fd < 0)
		return -errno;
	init_free_list(q);
	init_rings(q, mem);
	return 0;
}

void siov__queue_fini(struct siov_queue *q)
{
	if (!q->dev)
		return;
	if (q->call_fd >= 0)
		close(q->call_fd);
	if (q->kick_fd >= 0)
		close(q->kick_fd);
	free(q->pk_hpos);
	free(q->order);
	free(q->slot);
	free(q->next);
}

static int cmp_u64(const void *a, const void *b)
{
	uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;

	return x < y ? -1 : x > y;
}

/*
 * After a reconnect: a fresh ring in the same memory, holding every request
 * not yet completed, oldest first.  The private slots say which those are;
 * nothing is read back from the ring the old back end shared.  Submitted
 * ones are published at once, prepared ones wait for siov_submit().  The
 * caller has reaped whatever the old back end completed.
 */
void siov__queue_rebuild(struct siov_queue *q)
{
	struct layout l;
	unsigned i, n = 0;

	for (i = 0; i < q->num; i++) {
		if (q->slot[i].state != SIOV__SLOT_BUSY)
			continue;
		/* Key: age (oldest smallest, modulo 2^32) above the head index. */
		q->order[n++] = ((uint64_t)(uint32_t)(q->slot[i].seq - q->seq) << 16) | i;
		q->status[i] = 0xff;
	}
	qsort(q->order, n, sizeof(*q->order), cmp_u64);
	layout_of(q->num, &l);
	memset(q->used, 0, l.hdr - l.used);
	for (i = 0; i < n; i++)
		q->avail->ring[i & q->mask] = (uint16_t)(q->order[i] & 0xffff);
	if (q->prepared > n)
		q->prepared = n;
	q->last_used = 0;
	q->avail_idx = (uint16_t)n;
	q->submitted = n - q->prepared;
	q->avail_pub = (uint16_t)q->submitted;
	q->idle_polls = 0;
	q->armed = false;
	q->batch = SIOV__NO_BATCH;
	/* Polling mode, as a new queue starts. */
	if (q->event_idx)
		*q->used_event = (uint16_t)(q->last_used - 1);
	q->avail->flags = q->event_idx ? 0 : VRING_AVAIL_F_NO_INTERRUPT;
	__atomic_store_n(&q->avail->idx, q->avail_pub, __ATOMIC_RELEASE);
}

/* --- Preparing requests --- */

static int queue_err(const struct siov_queue *q)
{
	if (q->err)
		return q->err;
	return atomic_load_explicit(&q->dev->dead, memory_order_relaxed);
}

/* True if [p, p+len) lies wholly inside one region of the memory table. */
static bool in_memory(const struct siov_dev *dev, const void *p, size_t len)
{
	uintptr_t a = (uintptr_t)p;
	unsigned i;

	if (a + len < a)
		return false;
	for (i = 0; i < dev->nregions; i++) {
		uintptr_t b = (uintptr_t)dev->region[i].addr;

		if (a >= b && a + len <= b + dev->region[i].len)
			return true;
	}
	return false;
}

static int check_range(const struct siov_queue *q, uint64_t offset, uint64_t len)
{
	if (!len || offset % SECTOR || len % SECTOR)
		return -EINVAL;
	if (offset > q->capacity || len > q->capacity - offset)
		return -ERANGE;
	return 0;
}

static int check_iov(const struct siov_queue *q, const struct iovec *iov, unsigned iovcnt,
		     uint64_t *total)
{
	unsigned i;

	if (!iovcnt || iovcnt > q->seg_max)
		return -EINVAL;
	*total = 0;
	for (i = 0; i < iovcnt; i++) {
		if (!iov[i].iov_len || (q->size_max && iov[i].iov_len > q->size_max))
			return -EINVAL;
		if (!in_memory(q->dev, iov[i].iov_base, iov[i].iov_len))
			return -EFAULT;
		*total += iov[i].iov_len;
	}
	/* The used ring reports bytes in 32 bits; a bigger request cannot be told. */
	if (*total > UINT32_MAX)
		return -EINVAL;
	return 0;
}

static void set_desc(struct siov_queue *q, uint16_t d, const void *addr, uint32_t len,
		     uint16_t flags)
{
	struct vring_desc *v = &q->desc[d];

	v->addr = (uintptr_t)addr;
	v->len = len;
	v->flags = flags;
	v->next = q->next[d];
}

/* Packed: a descriptor made available in lap @wrap carries AVAIL = wrap, USED = !wrap. */
static uint16_t pk_avail(bool wrap)
{
	return (uint16_t)(1u << (wrap ? VRING_PACKED_DESC_F_AVAIL : VRING_PACKED_DESC_F_USED));
}

static void pk_advance(const struct siov_queue *q, uint16_t *pos, bool *wrap, unsigned n)
{
	unsigned p = *pos + n;

	if (p >= q->num) {
		p -= q->num;
		*wrap = !*wrap;
	}
	*pos = (uint16_t)p;
}

/* Packed: writes the descriptor at the cursor (never the head: its flags publish). */
static void pk_put(struct siov_queue *q, uint16_t id, const void *addr, uint32_t len,
		   uint16_t flags)
{
	struct vring_packed_desc *d = &q->pdesc[q->cur];

	d->addr = (uintptr_t)addr;
	d->len = len;
	d->id = id;
	d->flags = (uint16_t)(flags | pk_avail(q->cur_wrap));
	pk_advance(q, &q->cur, &q->cur_wrap, 1);
}

/* The next middle descriptor of the chain being prepared (data or a discard range). */
static void put_mid(struct siov_queue *q, uint16_t head, uint16_t *d, const void *addr,
		    uint32_t len, uint16_t flags)
{
	if (q->packed) {
		pk_put(q, head, addr, len, flags);
		return;
	}
	set_desc(q, *d, addr, len, flags);
	*d = q->next[*d];
}

/*
 * Takes @n descriptors off the free list.  The free list is linked through
 * the private next[] array in the very order a chain needs, so the first @n
 * entries already form one: only the tail has to be found.
 */
static uint16_t chain_take(struct siov_queue *q, unsigned n, uint16_t *tail)
{
	uint16_t head = q->free_head, d = head;
	unsigned i;

	/* Packed: one buffer id, and n ring slots from the next one on. */
	if (q->packed) {
		q->free_head = q->next[head];
		q->nfree -= n;
		*tail = head;
		return head;
	}
	/* In order the free stretch is contiguous: the chain is the next n descriptors. */
	if (q->in_order)
		d = (uint16_t)((head + n - 1) & q->mask);
	for (i = 1; !q->in_order && i < n; i++)
		d = q->next[d];
	*tail = d;
	q->free_head = q->next[d];
	q->nfree -= n;
	return head;
}

static void chain_put(struct siov_queue *q, uint16_t head)
{
	struct siov__slot *s = &q->slot[head];

	/*
	 * In order the oldest chain comes back: its descriptors (ids) join the
	 * free stretch at its end, where they already are.  Else packed: the
	 * id's own link (tail is the id itself).
	 */
	if (!q->in_order) {
		q->next[s->tail] = q->free_head;
		q->free_head = head;
	}
	q->nfree += s->ndesc;
	s->state = SIOV__SLOT_FREE;
}

/* Records the request and appends its head to the avail ring (unpublished). */
static void publish_local(struct siov_queue *q, uint16_t head, uint16_t tail, unsigned ndesc,
			  uint32_t bytes, uint64_t cookie)
{
	q->slot[head] = (struct siov__slot){.cookie = cookie,
					    .bytes = bytes,
					    .ndesc = (uint16_t)ndesc,
					    .tail = tail,
					    .state = SIOV__SLOT_BUSY,
					    .seq = q->seq++};
	/* A device that never writes the status is caught: 0xff is no status. */
	q->status[head] = 0xff;
	if (q->packed)
		q->pk_prep[q->prepared] = head;
	else
		q->avail->ring[q->avail_idx++ & q->mask] = head;
	q->prepared++;
}

/* Header descriptor, then the caller's @nmid descriptors, then the status byte. */
/*
 * Packed: the header at the next slot (its flags kept back until
 * siov_submit()), the middle descriptors after it, the status byte last.
 */
static void begin_packed(struct siov_queue *q, uint16_t id, unsigned nmid)
{
	struct vring_packed_desc *h = &q->pdesc[q->pk_next];

	h->addr = (uintptr_t)&q->hdr[id];
	h->len = sizeof(q->hdr[id]);
	h->id = id;
	q->pk_hpos[id] = q->pk_next;
	q->pk_hflags[id] = (uint16_t)(VRING_DESC_F_NEXT | pk_avail(q->pk_wrap));
	q->cur = q->pk_next;
	q->cur_wrap = q->pk_wrap;
	pk_advance(q, &q->cur, &q->cur_wrap, nmid + 1);
	pk_put(q, id, &q->status[id], 1, VRING_DESC_F_WRITE);
	q->cur = q->pk_next;
	q->cur_wrap = q->pk_wrap;
	pk_advance(q, &q->cur, &q->cur_wrap, 1);
	pk_advance(q, &q->pk_next, &q->pk_wrap, nmid + 2);
}

static uint16_t begin_chain(struct siov_queue *q, unsigned nmid, uint32_t type, uint64_t sector,
			    uint16_t *tail)
{
	uint16_t head = chain_take(q, nmid + 2, tail);

	q->hdr[head] = (struct virtio_blk_outhdr){.type = type, .ioprio = 0, .sector = sector};
	if (q->packed) {
		begin_packed(q, head, nmid);
		return head;
	}
	set_desc(q, head, &q->hdr[head], sizeof(q->hdr[head]), VRING_DESC_F_NEXT);
	set_desc(q, *tail, &q->status[head], 1, VRING_DESC_F_WRITE);
	return head;
}

static int prep_rw(struct siov_queue *q, const struct iovec *iov, unsigned iovcnt, uint64_t offset,
		   uint64_t cookie, bool write)
{
	uint16_t head, tail, d, flags = VRING_DESC_F_NEXT | (write ? 0 : VRING_DESC_F_WRITE);
	uint64_t total;
	unsigned i;
	int rc = queue_err(q);

	if (rc)
		return rc;
	if (write && q->ro)
		return -EROFS;
	rc = check_iov(q, iov, iovcnt, &total);
	if (!rc)
		rc = check_range(q, offset, total);
	if (rc)
		return rc;
	if (q->nfree < iovcnt + 2)
		return -EAGAIN;
	head = begin_chain(q, iovcnt, write ? VIRTIO_BLK_T_OUT : VIRTIO_BLK_T_IN, offset / SECTOR,
			   &tail);
	for (i = 0, d = q->next[head]; i < iovcnt; i++)
		put_mid(q, head, &d, iov[i].iov_base, (uint32_t)iov[i].iov_len, flags);
	publish_local(q, head, tail, iovcnt + 2, (uint32_t)total, cookie);
	return 0;
}

int siov_prep_read(struct siov_queue *q, void *buf, uint32_t len, uint64_t offset, uint64_t cookie)
{
	struct iovec iov = {buf, len};

	return prep_rw(q, &iov, 1, offset, cookie, false);
}

int siov_prep_write(struct siov_queue *q, const void *buf, uint32_t len, uint64_t offset,
		    uint64_t cookie)
{
	struct iovec iov = {(void *)buf, len};

	return prep_rw(q, &iov, 1, offset, cookie, true);
}

int siov_prep_readv(struct siov_queue *q, const struct iovec *iov, unsigned iovcnt, uint64_t offset,
		    uint64_t cookie)
{
	return prep_rw(q, iov, iovcnt, offset, cookie, false);
}

int siov_prep_writev(struct siov_queue *q, const struct iovec *iov, unsigned iovcnt,
		     uint64_t offset, uint64_t cookie)
{
	return prep_rw(q, iov, iovcnt, offset, cookie, true);
}

int siov_prep_flush(struct siov_queue *q, uint64_t cookie)
{
	uint16_t head, tail;
	int rc = queue_err(q);

	if (rc)
		return rc;
	if (!q->dev->info.flush)
		return -EOPNOTSUPP;
	if (q->nfree < 2)
		return -EAGAIN;
	head = begin_chain(q, 0, VIRTIO_BLK_T_FLUSH, 0, &tail);
	publish_local(q, head, tail, 2, 0, cookie);
	return 0;
}

static int prep_range(struct siov_queue *q, uint32_t type, uint64_t offset, uint64_t len,
		      uint32_t flags, uint64_t cookie)
{
	const struct siov_dev_info *in = &q->dev->info;
	uint32_t max =
	    type == VIRTIO_BLK_T_DISCARD ? in->max_discard_sectors : in->max_write_zeroes_sectors;
	uint16_t head, tail, d;
	int rc = queue_err(q);

	if (rc)
		return rc;
	if (q->ro)
		return -EROFS;
	if (type == VIRTIO_BLK_T_DISCARD ? !in->discard : !in->write_zeroes)
		return -EOPNOTSUPP;
	rc = check_range(q, offset, len);
	if (rc)
		return rc;
	if (len / SECTOR > UINT32_MAX || (max && len / SECTOR > max))
		return -EINVAL;
	if (q->nfree < 3)
		return -EAGAIN;
	head = begin_chain(q, 1, type, 0, &tail);
	q->seg[head] = (struct virtio_blk_discard_write_zeroes){
	    .sector = offset / SECTOR, .num_sectors = (uint32_t)(len / SECTOR), .flags = flags};
	d = q->next[head];
	put_mid(q, head, &d, &q->seg[head], sizeof(q->seg[head]), VRING_DESC_F_NEXT);
	publish_local(q, head, tail, 3, 0, cookie);
	return 0;
}

int siov_prep_discard(struct siov_queue *q, uint64_t offset, uint64_t len, uint64_t cookie)
{
	return prep_range(q, VIRTIO_BLK_T_DISCARD, offset, len, 0, cookie);
}

int siov_prep_write_zeroes(struct siov_queue *q, uint64_t offset, uint64_t len, bool unmap,
			   uint64_t cookie)
{
	return prep_range(q, VIRTIO_BLK_T_WRITE_ZEROES, offset, len,
			  unmap ? VIRTIO_BLK_WRITE_ZEROES_FLAG_UNMAP : 0, cookie);
}

/* --- Submitting --- */

static bool need_kick(const struct siov_queue *q, uint16_t old, uint16_t new)
{
	/* Packed: siovd says ENABLE or DISABLE; any other value (DESC) is a kick to be safe. */
	if (q->packed)
		return __atomic_load_n(&q->dev_event->flags, __ATOMIC_RELAXED) !=
		       VRING_PACKED_EVENT_FLAG_DISABLE;
	if (q->event_idx)
		return vring_need_event(__atomic_load_n(q->avail_event, __ATOMIC_RELAXED), new,
					old);
	return !(__atomic_load_n(&q->used->flags, __ATOMIC_RELAXED) & VRING_USED_F_NO_NOTIFY);
}

int siov_submit(struct siov_queue *q)
{
	uint16_t old = q->avail_pub, new = q->avail_idx;
	unsigned n = q->prepared;
	int rc = queue_err(q);

	if (rc)
		return rc;
	if (!n)
		return 0;
	if (q->packed) {
		/* Heads last, the first chain's last of all: the device sees the batch at once. */
		for (unsigned i = n; i-- > 0;) {
			uint16_t id = q->pk_prep[i];
			__atomic_store_n(&q->pdesc[q->pk_hpos[id]].flags, q->pk_hflags[id],
					 __ATOMIC_RELEASE);
		}
	} else {
		/* Ensure the device sees the descriptors before the index that names them. */
		__atomic_store_n(&q->avail->idx, new, __ATOMIC_RELEASE);
	}
	q->avail_pub = new;
	q->prepared = 0;
	q->submitted += n;
	/* The index store must be visible before we read whether to kick. */
	__atomic_thread_fence(__ATOMIC_SEQ_CST);
	if (need_kick(q, old, new)) {
		uint64_t one = 1;

		/* An eventfd write fails only when the counter would overflow: harmless. */
		if (write(q->kick_fd, &one, sizeof(one)) < 0 && errno != EAGAIN)
			return -errno;
	}
	return (int)n;
}

/* --- Reaping --- */

static void fill_cqe(struct siov_cqe *c, const struct siov__slot *s, int res)
{
	c->cookie = s->cookie;
	c->res = res;
	c->flags = 0;
}

static int status_res(const struct siov_queue *q, uint16_t head)
{
	switch (q->status[head]) {
	case VIRTIO_BLK_S_OK:
		return (int)q->slot[head].bytes;
	case VIRTIO_BLK_S_UNSUPP:
		return -EOPNOTSUPP;
	default:
		return -EIO;
	}
}

/*
 * The queue is unusable (back end gone or lying): every request still held
 * completes with @err, then -@err is all there is.  Requests prepared but not
 * submitted complete the same way, so each accepted request completes once.
 */
static int drain(struct siov_queue *q, struct siov_cqe *cqes, unsigned max, int err)
{
	unsigned i, k = 0;

	for (i = 0; i < q->num && k < max; i++) {
		if (q->slot[i].state == SIOV__SLOT_FREE)
			continue;
		fill_cqe(&cqes[k++], &q->slot[i], err);
		chain_put(q, (uint16_t)i);
	}
	if (i == q->num) {
		q->submitted = 0;
		q->prepared = 0;
	}
	return k ? (int)k : err;
}

static int broken(struct siov_queue *q, struct siov_cqe *cqes, unsigned max, unsigned done)
{
	q->err = -EPROTO;
	return done ? (int)done : drain(q, cqes, max, q->err);
}

/* Nothing completed: once in a while, make sure the back end is still there. */
static int idle(struct siov_queue *q, struct siov_cqe *cqes, unsigned max)
{
	uint64_t now;
	int rc;

	/* The device reconnected or is reconnecting: this ring must follow. */
	if (atomic_load_explicit(&q->dev->conn, memory_order_relaxed) != q->conn) {
		rc = siov__queue_recover(q);
		return rc ? drain(q, cqes, max, rc) : 0;
	}
	if (!q->submitted || (++q->idle_polls & 63))
		return 0;
	now = siov__now_ns();
	if (now - q->last_check_ns < LIVENESS_NS)
		return 0;
	q->last_check_ns = now;
	rc = siov__sock_check(q->dev);
	return rc ? drain(q, cqes, max, rc) : 0;
}

/* Packed: used entries have both flags equal to the lap's wrap counter. */
static bool pk_used(const struct siov_queue *q)
{
	uint16_t both =
	    (uint16_t)((1u << VRING_PACKED_DESC_F_AVAIL) | (1u << VRING_PACKED_DESC_F_USED));
	uint16_t f = __atomic_load_n(&q->pdesc[q->pk_used].flags, __ATOMIC_ACQUIRE) & both;

	return f == (q->pk_used_wrap ? both : 0);
}

/* The buffer id of a used entry is checked against the private slots, never trusted. */
static int reap_packed(struct siov_queue *q, struct siov_cqe *cqes, unsigned max)
{
	unsigned k;

	for (k = 0; k < max && pk_used(q); k++) {
		uint16_t id = q->pdesc[q->pk_used].id;
		if (id >= q->num || q->slot[id].state != SIOV__SLOT_BUSY || !q->submitted)
			return broken(q, cqes, max, k);
		fill_cqe(&cqes[k], &q->slot[id], status_res(q, id));
		pk_advance(q, &q->pk_used, &q->pk_used_wrap, q->slot[id].ndesc);
		chain_put(q, id);
		q->submitted--;
	}
	if (!k)
		return idle(q, cqes, max);
	q->idle_polls = 0;
	return (int)k;
}

/* In order: the oldest request in flight, after @h. */
static uint16_t io_after(const struct siov_queue *q, uint16_t h)
{
	return (uint16_t)((h + (q->packed ? 1 : q->slot[h].ndesc)) & q->mask);
}

/* In order: the next used entry, if the device wrote one; false if none (yet). */
static bool batch_begin(struct siov_queue *q, uint16_t used_idx)
{
	if (q->packed) {
		if (!pk_used(q))
			return false;
		q->batch = q->pdesc[q->pk_used].id;
	} else {
		if (q->last_used == used_idx)
			return false;
		q->batch = q->used->ring[q->last_used & q->mask].id;
	}
	return true;
}

/* In order: the batch's id names a request in the device's hands (ids are dealt in order). */
static bool batch_valid(const struct siov_queue *q)
{
	if (q->batch >= q->num || q->slot[q->batch].state != SIOV__SLOT_BUSY)
		return false;
	return !q->packed || ((q->batch - q->io_next) & q->mask) < q->submitted;
}

/*
 * In order: requests complete oldest first.  A used entry stands for its
 * buffer and every older one not yet reported (a batch); the split index, or
 * the packed ring position, moves past all of them.  A batch the index does
 * not cover, or an id that is not in flight, breaks the queue.
 */
static int reap_in_order(struct siov_queue *q, struct siov_cqe *cqes, unsigned max)
{
	uint16_t used_idx = q->packed ? 0 : __atomic_load_n(&q->used->idx, __ATOMIC_ACQUIRE);
	unsigned k;

	if (!q->packed && (uint16_t)(used_idx - q->last_used) > q->submitted)
		return broken(q, cqes, max, 0);
	for (k = 0; k < max; k++) {
		uint16_t h = q->io_next;
		if (q->batch == SIOV__NO_BATCH && !batch_begin(q, used_idx))
			break;
		if (!q->submitted || !batch_valid(q))
			return broken(q, cqes, max, k);
		fill_cqe(&cqes[k], &q->slot[h], status_res(q, h));
		if (q->packed)
			pk_advance(q, &q->pk_used, &q->pk_used_wrap, q->slot[h].ndesc);
		else
			q->last_used++;
		q->submitted--;
		q->io_next = io_after(q, h);
		chain_put(q, h);
		if (h == q->batch)
			q->batch = SIOV__NO_BATCH;
		else if (!q->packed && q->last_used == used_idx)
			return broken(q, cqes, max, k + 1);
	}
	if (!k)
		return idle(q, cqes, max);
	q->idle_polls = 0;
	return (int)k;
}

int siov_reap(struct siov_queue *q, struct siov_cqe *cqes, unsigned max)
{
	uint16_t used_idx, n, i;
	int err = queue_err(q);

	if (err)
		return drain(q, cqes, max, err);
	if (q->in_order)
		return reap_in_order(q, cqes, max);
	if (q->packed)
		return reap_packed(q, cqes, max);
	used_idx = __atomic_load_n(&q->used->idx, __ATOMIC_ACQUIRE);
	n = (uint16_t)(used_idx - q->last_used);
	if (!n)
		return idle(q, cqes, max);
	if (n > q->submitted)
		return broken(q, cqes, max, 0);
	if (n > max)
		n = (uint16_t)max;
	for (i = 0; i < n; i++) {
		uint32_t id = q->used->ring[q->last_used & q->mask].id;

		if (id >= q->num || q->slot[id].state != SIOV__SLOT_BUSY)
			return broken(q, cqes, max, i);
		fill_cqe(&cqes[i], &q->slot[id], status_res(q, (uint16_t)id));
		chain_put(q, (uint16_t)id);
		q->last_used++;
		q->submitted--;
	}
	q->idle_polls = 0;
	return n;
}

/* --- Waiting --- */

int siov_queue_arm(struct siov_queue *q)
{
	if (q->packed) {
		__atomic_store_n(&q->drv_event->flags, VRING_PACKED_EVENT_FLAG_ENABLE,
				 __ATOMIC_RELAXED);
		q->armed = true;
		/* The request for a call must be visible before we look at the ring. */
		__atomic_thread_fence(__ATOMIC_SEQ_CST);
		/* In order, the rest of a batch half reaped is there already. */
		return q->batch != SIOV__NO_BATCH || pk_used(q);
	}
	if (q->event_idx)
		__atomic_store_n(q->used_event, q->last_used, __ATOMIC_RELAXED);
	else
		__atomic_store_n(&q->avail->flags, 0, __ATOMIC_RELAXED);
	q->armed = true;
	/* The request for a call must be visible before we look at the used index. */
	__atomic_thread_fence(__ATOMIC_SEQ_CST);
	return __atomic_load_n(&q->used->idx, __ATOMIC_ACQUIRE) != q->last_used;
}

/* Back to polling: without EVENT_IDX the flag would keep calls coming. */
static void disarm(struct siov_queue *q)
{
	if (q->packed)
		__atomic_store_n(&q->drv_event->flags, VRING_PACKED_EVENT_FLAG_DISABLE,
				 __ATOMIC_RELAXED);
	else if (!q->event_idx)
		__atomic_store_n(&q->avail->flags, VRING_AVAIL_F_NO_INTERRUPT, __ATOMIC_RELAXED);
	q->armed = false;
}

static int ms_until(uint64_t deadline, uint64_t now)
{
	uint64_t ms;

	if (deadline == UINT64_MAX)
		return -1;
	ms = (deadline - now + 999999) / 1000000;
	return ms > INT_MAX ? INT_MAX : (int)ms;
}

/* Sleeps on the call eventfd and the socket until either fires or time runs out. */
static int sleep_once(struct siov_queue *q, uint64_t deadline, uint64_t now)
{
	struct pollfd pfd[2] = {{.fd = q->call_fd, .events = POLLIN},
				{.fd = siov_dev_fd(q->dev), .events = POLLRDHUP}};
	uint64_t cnt;
	int rc;

	/* Reconnecting: no call or hang-up can wake us, so look again soon. */
	if (atomic_load_explicit(&q->dev->conn, memory_order_relaxed) != q->conn) {
		rc = ms_until(deadline, now);
		poll(NULL, 0, rc < 0 || rc > 10 ? 10 : rc);
		return 0;
	}
	if (siov_queue_arm(q))
		goto out;
	rc = poll(pfd, 2, ms_until(deadline, now));
	if (rc < 0 && errno != EINTR) {
		disarm(q);
		return -errno;
	}
	if (rc < 0) {
		disarm(q);
		return -EINTR;
	}
	if (pfd[0].revents & POLLIN)
		(void)!read(q->call_fd, &cnt, sizeof(cnt));
	if (pfd[1].revents)
		siov__sock_check(q->dev);
out:
	disarm(q);
	return 0;
}

int siov_wait(struct siov_queue *q, struct siov_cqe *cqes, unsigned max, unsigned min,
	      int timeout_ms)
{
	uint64_t now = siov__now_ns(), spin_end = now + (uint64_t)q->dev->poll_us * 1000;
	uint64_t deadline = timeout_ms < 0 ? UINT64_MAX : now + (uint64_t)timeout_ms * 1000000;
	unsigned got = 0;
	int rc;

	min = min ? min : 1;
	min = min < max ? min : max;
	for (;;) {
		rc = siov_reap(q, cqes + got, max - got);
		if (rc < 0)
			return got ? (int)got : rc;
		got += (unsigned)rc;
		/* Nothing in the device's hands: waiting could only time out. */
		if (got >= min || (!q->submitted && !queue_err(q)))
			return (int)got;
		now = siov__now_ns();
		if (now >= deadline)
			return (int)got;
		if (now < spin_end)
			continue;
		rc = sleep_once(q, deadline, now);
		if (rc < 0)
			return got ? (int)got : rc;
	}
}

int siov_queue_fd(const struct siov_queue *q)
{
	return q->call_fd;
}

unsigned siov_queue_inflight(const struct siov_queue *q)
{
	return q->submitted;
}

unsigned siov_queue_space(const struct siov_queue *q)
{
	return q->nfree / 3;
}

unsigned siov_queue_index(const struct siov_queue *q)
{
	return q->index;
}
