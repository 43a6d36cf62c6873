/*
 * fuzz_chain: the split-ring chain walker and address translation
 * (lib/virtio/virtqueue.c over lib/mem/memtable.c).  Each input builds a
 * memory table (the default three regions of one memfd, or three regions
 * described by the input), a ring in that memory (descriptor table, avail
 * ring, indirect tables and buffers, all input bytes), optionally a list of
 * heads to resubmit (INFLIGHT_SHMFD), and pops until siov_vq_pop() returns
 * <= 0, pushing each chain back to the used ring.
 *
 * Beyond what ASan sees, every chain is checked: at most SIOV_VQ_MAX_IOV
 * iovecs, lengths that add up, and every iovec inside one mapped region (an
 * out-of-range pointer into siovd's address space that nobody dereferences
 * yet would escape the sanitizers), and each iovec's first and last byte is
 * touched.  With F_IN_ORDER (VIRTIO_F_IN_ORDER) every other chain completes
 * after the one popped next: the order table holds it, and once all completed
 * the used index must have moved by exactly the chains completed.
 *
 * Input: see struct hdr below, then [custom regions], [resubmit heads],
 * num descriptors (16 bytes each), num + 1 avail ring entries (the last is
 * used_event), then up to 64 KiB of guest memory at the start of the memfd
 * (region R0 of the default layout: indirect tables and buffers).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fuzz_common.h"
#include "siov_internal/virtqueue.h"

enum {
	F_EVENT_IDX = 1 << 0,
	F_CUSTOM_MEM = 1 << 1,
	F_RESUBMIT = 1 << 2,
	F_NO_PUSH = 1 << 3,
	F_AVAIL_FROM_HDR = 1 << 4, /* else the avail index is whatever the input wrote */
	F_IN_ORDER = 1 << 5,
};

struct hdr {
	uint8_t flags;
	uint8_t qlog; /* queue size 1 << (qlog % 11) */
	uint16_t last_avail_idx;
	uint16_t avail_idx;
	uint16_t ring_off; /* where the rings start in R2 (alignment not forced) */
} __attribute__((packed));

static struct fuzz_guest g_guest;
static uint8_t g_inflight_buf[sizeof(struct siov_vu_inflight_queue) +
			      SIOV_VQ_MAX_SIZE * sizeof(struct siov_vu_inflight_desc)]
    __attribute__((aligned(64)));
static struct siov_vq_chain g_chain;
static uint16_t g_resubmit[8];

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
	fuzz_guest_init(&g_guest);
	return 0;
}

static void setup_memory(struct fz *f, const struct hdr *h, uint64_t *ring_uva)
{
	struct siov_mem_desc r[3];
	unsigned i;

	if (!(h->flags & F_CUSTOM_MEM)) {
		fuzz_guest_reset(&g_guest, NULL, 0);
		*ring_uva = g_guest.regions[2].uva + h->ring_off % 0x8000;
		return;
	}
	for (i = 0; i < 3; i++) {
		r[i].gpa = fz_u64(f);
		r[i].size = fz_u32(f);
		r[i].uva = fz_u64(f);
		r[i].fd_offset = fz_u32(f);
	}
	fuzz_guest_reset(&g_guest, r, 3);
	*ring_uva = fz_u64(f);
}

static void setup_resubmit(struct fz *f, struct siov_vq *vq)
{
	struct siov_vu_inflight_queue *iq = (void *)g_inflight_buf;
	unsigned i, n = fz_u8(f) % 9;

	/* What vq_attach_inflight() guarantees: desc_num is the queue size, heads < num. */
	memset(g_inflight_buf, 0, sizeof(g_inflight_buf));
	iq->desc_num = vq->num;
	vq->inflight = iq;
	for (i = 0; i < n; i++) {
		g_resubmit[i] = fz_u16(f) % vq->num;
		iq->desc[g_resubmit[i]].inflight = 1;
		iq->desc[g_resubmit[i]].counter = fz_u8(f);
	}
	vq->resubmit = g_resubmit;
	vq->resubmit_num = n;
	siov_vq_sort_resubmit(vq);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct siov_vq vq;
	struct fz f;
	struct hdr h;
	uint64_t ring_uva;
	int broken = 0, rc;
	unsigned i, num, completed = 0;
	struct siov_vq_chain held = {0};
	bool holding = false;
	uint16_t used0;

	fz_init(&f, data, size);
	fz_bytes(&f, &h, sizeof(h));
	num = 1u << (h.qlog % 11);
	setup_memory(&f, &h, &ring_uva);

	siov_vq_init(&vq, 0);
	vq.num = (uint16_t)num;
	vq.desc_uva = ring_uva;
	vq.avail_uva = ring_uva + 16ull * num;
	vq.used_uva = (vq.avail_uva + 6 + 2ull * num + 3) & ~3ull;
	vq.addr_set = true;
	vq.mem = &g_guest.mt;
	vq.dev_name = "fuzz";
	vq.dev_broken = &broken;
	vq.event_idx = h.flags & F_EVENT_IDX;
	vq.last_avail_idx = h.last_avail_idx;
	vq.in_order = h.flags & F_IN_ORDER;
	if (siov_vq_map_rings(&vq))
		return 0;
	if (h.flags & F_RESUBMIT)
		setup_resubmit(&f, &vq);

	/*
	 * The rings, written through siovd's own mapping of the shared memory.
	 * Byte copies only: the harness must not assume the alignment that
	 * siovd is supposed to check.
	 */
	for (i = 0; i < num; i++)
		fz_bytes(&f, (uint8_t *)vq.desc + 16 * i, 16);
	for (i = 0; i <= num; i++)
		fz_bytes(&f, (uint8_t *)vq.avail + 4 + 2 * i, 2);
	/*
	 * Indirect tables and buffers: the rest of the input, at the start of the
	 * memfd (R0 in the default layout; the rings are in R2, memfd [64K, 128K)).
	 */
	if (f.left)
		memcpy(g_guest.base, f.p, f.left < FG_REG_SIZE ? f.left : FG_REG_SIZE);
	if (h.flags & F_AVAIL_FROM_HDR)
		memcpy((uint8_t *)vq.avail + 2, &h.avail_idx, 2);
	memcpy(&vq.used_idx, (uint8_t *)vq.used + 2, 2);
	used0 = vq.used_idx;

	for (i = 0; i < 2 * num + 16; i++) {
		rc = siov_vq_pop(&vq, &g_chain);
		if (rc <= 0)
			break;
		fuzz_check_chain(&vq, &g_chain, "fuzz_chain");
		if (h.flags & F_NO_PUSH)
			continue;
		if (vq.in_order && !holding) {
			held = g_chain; /* completes after the next one: out of order */
			holding = true;
			continue;
		}
		siov_vq_complete(&vq, g_chain.head, &g_chain.iov[g_chain.out_num], g_chain.in_num,
				 (uint32_t)g_chain.in_len);
		completed++;
		if (holding) {
			siov_vq_complete(&vq, held.head, NULL, 0, (uint32_t)held.in_len);
			completed++;
			holding = false;
		}
	}
	if (rc > 0) {
		fprintf(stderr, "fuzz_chain: more than %u chains from a ring of %u\n", i, num);
		abort();
	}
	if (holding) {
		siov_vq_complete(&vq, held.head, NULL, 0, (uint32_t)held.in_len);
		completed++;
	}
	if (vq.in_order && !siov_vq_is_broken(&vq) &&
	    (uint16_t)(vq.used_idx - used0) != completed) {
		fprintf(stderr, "fuzz_chain: in order, %u completed but the used index moved %u\n",
			completed, (uint16_t)(vq.used_idx - used0));
		abort();
	}
	if (!siov_vq_is_broken(&vq)) {
		siov_vq_notify(&vq);
		siov_vq_disable_notify(&vq);
		(void)siov_vq_enable_notify(&vq);
		(void)siov_vq_has_work(&vq);
	}
	siov_vq_release(&vq);
	return 0;
}
