/*
 * The fake guest behind the virtio unit tests (see guest.h): a memfd split
 * into three memory-table regions, and split rings laid out inside it.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/mman.h>
#include <unistd.h>

#include "guest.h"

#define GUEST_FD_SIZE (GUEST_NREGIONS * GUEST_REG_SIZE)

/*
 * Front-end addresses and file offsets deliberately unrelated to the
 * guest-physical ones: R0 and R1 touch in guest-physical space but not in the
 * memfd, so a translation that assumed host contiguity would read wrong bytes.
 */
static const struct siov_mem_desc layout[GUEST_NREGIONS] = {
    {.gpa = GPA_R0, .size = GUEST_REG_SIZE, .uva = 0x7f0000000000ull, .fd_offset = 0},
    {.gpa = GPA_R1,
     .size = GUEST_REG_SIZE,
     .uva = 0x7f0000100000ull,
     .fd_offset = 2 * GUEST_REG_SIZE},
    {.gpa = GPA_R2, .size = GUEST_REG_SIZE, .uva = 0x7f0000300000ull, .fd_offset = GUEST_REG_SIZE},
};

int guest_init(struct guest *g)
{
	int i, rc;

	memset(g, 0, sizeof(*g));
	memcpy(g->regions, layout, sizeof(layout));
	g->fd = memfd_create("siov-test-guest", MFD_CLOEXEC);
	if (g->fd < 0)
		return -errno;
	if (ftruncate(g->fd, GUEST_FD_SIZE) < 0)
		goto err_errno;
	g->base = mmap(NULL, GUEST_FD_SIZE, PROT_READ | PROT_WRITE, MAP_SHARED, g->fd, 0);
	if (g->base == MAP_FAILED)
		goto err_errno;
	siov_memtable_init(&g->mt);
	for (i = 0; i < GUEST_NREGIONS; i++) {
		rc = siov_memtable_add(&g->mt, &g->regions[i], g->fd);
		if (rc)
			goto err_add;
	}
	return 0;

err_add:
	siov_memtable_clear(&g->mt);
	munmap(g->base, GUEST_FD_SIZE);
	close(g->fd);
	return rc;
err_errno:
	rc = -errno;
	close(g->fd);
	return rc;
}

void guest_fini(struct guest *g)
{
	siov_memtable_clear(&g->mt);
	munmap(g->base, GUEST_FD_SIZE);
	close(g->fd);
}

static const struct siov_mem_desc *region_of(const struct guest *g, uint64_t gpa)
{
	int i;

	for (i = 0; i < GUEST_NREGIONS; i++) {
		const struct siov_mem_desc *r = &g->regions[i];
		if (gpa >= r->gpa && gpa - r->gpa < r->size)
			return r;
	}
	return NULL;
}

void *guest_ptr(const struct guest *g, uint64_t gpa)
{
	const struct siov_mem_desc *r = region_of(g, gpa);

	/* A test asking for an unmapped address is a bug in the test. */
	if (!r)
		abort();
	return g->base + r->fd_offset + (gpa - r->gpa);
}

uint64_t guest_uva(const struct guest *g, uint64_t gpa)
{
	const struct siov_mem_desc *r = region_of(g, gpa);

	if (!r)
		abort();
	return r->uva + (gpa - r->gpa);
}

int tq_init(struct tq *q, struct guest *g, uint64_t ring_gpa, uint16_t num)
{
	/* The split-ring layout: desc (16-aligned), avail, then used 4-aligned. */
	uint64_t desc = ring_gpa, avail = desc + 16ull * num;
	uint64_t used = (avail + 6 + 2ull * num + 3) & ~3ull;

	memset(q, 0, sizeof(*q));
	q->g = g;
	q->desc = guest_ptr(g, desc);
	q->avail = guest_ptr(g, avail);
	q->used = guest_ptr(g, used);
	memset(q->desc, 0, used + 6 + 8ull * num - desc);
	siov_vq_init(&q->vq, 0);
	q->vq.num = num;
	q->vq.desc_uva = guest_uva(g, desc);
	q->vq.avail_uva = guest_uva(g, avail);
	q->vq.used_uva = guest_uva(g, used);
	q->vq.addr_set = true;
	q->vq.mem = &g->mt;
	q->vq.dev_name = "test";
	return siov_vq_map_rings(&q->vq);
}

int tq_wire(struct tq *q, const struct siov_vq_ops *ops, void *dev)
{
	q->kick_fd = eventfd(0, EFD_CLOEXEC);
	q->call_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	q->err_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	q->vq.kick_fd = q->kick_fd;
	q->vq.call_fd = q->call_fd;
	q->vq.err_fd = q->err_fd;
	q->vq.ops = ops;
	q->vq.dev = dev;
	q->vq.enabled = true;
	return q->kick_fd < 0 || q->call_fd < 0 || q->err_fd < 0 ? -1 : 0;
}

void tq_unwire(struct tq *q)
{
	close(q->kick_fd);
	close(q->call_fd);
	close(q->err_fd);
}

void tq_desc(struct tq *q, uint16_t i, uint64_t addr, uint32_t len, uint16_t flags, uint16_t next)
{
	q->desc[i].addr = addr;
	q->desc[i].len = len;
	q->desc[i].flags = flags;
	q->desc[i].next = next;
}

void tq_publish(struct tq *q, uint16_t head)
{
	q->avail->ring[q->avail_idx % q->vq.num] = head;
	q->avail_idx++;
	/* The device must see the ring entry before the index that covers it. */
	__atomic_store_n(&q->avail->idx, q->avail_idx, __ATOMIC_RELEASE);
}

uint16_t tq_used_idx(const struct tq *q)
{
	return __atomic_load_n(&q->used->idx, __ATOMIC_ACQUIRE);
}
