/*
 * A fake guest for the virtio unit tests: guest RAM is one memfd, handed to a
 * struct siov_memtable as three regions the way a vhost-user front end would
 * hand them over, and mapped a second time for the test itself (the "driver's
 * view").  Whatever the test writes through its view, siovd's mapping sees,
 * and the other way round, so the tests check the data path on real shared
 * memory rather than on pointers the code under test handed back.
 *
 * Guest-physical layout (R0 and R1 touch; gaps below R0 and between R1 and R2):
 *
 *   0x000000 ........ 0x010000 [R0 256 KiB][R1 256 KiB] 0x090000 ... 0x200000 [R2 256 KiB]
 *
 * Split rings are built in R2; request buffers live in R0 and R1.
 */
#ifndef TEST_VIRTIO_GUEST_H
#define TEST_VIRTIO_GUEST_H

#include <stdbool.h>
#include <stdint.h>

#include "siov_internal/memtable.h"
#include "siov_internal/virtqueue.h"

#define GUEST_REG_SIZE 0x40000ull
#define GPA_R0	       0x10000ull
#define GPA_R1	       (GPA_R0 + GUEST_REG_SIZE) /* adjacent to R0 */
#define GPA_R2	       0x200000ull		 /* after a gap */
#define GPA_GAP	       0x100000ull		 /* mapped by no region */
#define GUEST_NREGIONS 3

struct guest {
	int fd;
	uint8_t *base; /* the test's own mapping of the whole memfd */
	struct siov_memtable mt;
	struct siov_mem_desc regions[GUEST_NREGIONS];
};

int guest_init(struct guest *g);
void guest_fini(struct guest *g);
/* The test's view of guest-physical address gpa (asserts it is mapped). */
void *guest_ptr(const struct guest *g, uint64_t gpa);
/* The front-end virtual address of gpa, as ring addresses are given. */
uint64_t guest_uva(const struct guest *g, uint64_t gpa);

/* A split ring laid out in guest memory, plus the driver-side bookkeeping. */
struct tq {
	struct siov_vq vq;
	struct guest *g;
	struct vring_desc *desc; /* the driver's view of the rings */
	struct vring_avail *avail;
	struct vring_used *used;
	uint16_t avail_idx;	      /* next avail index the driver will publish */
	int kick_fd, call_fd, err_fd; /* tq_wire() */
};

/* Lays out desc/avail/used at ring_gpa (in R2) and maps them into tq->vq. */
int tq_init(struct tq *q, struct guest *g, uint64_t ring_gpa, uint16_t num);
/*
 * What the vhost-user slow path would give the queue before an engine runs
 * it: kick (blocking: engines read it through io_uring), call and error
 * eventfds, and a device model.  tq_unwire() closes the fds.
 */
int tq_wire(struct tq *q, const struct siov_vq_ops *ops, void *dev);
void tq_unwire(struct tq *q);
void tq_desc(struct tq *q, uint16_t i, uint64_t addr, uint32_t len, uint16_t flags, uint16_t next);
/* Puts head on the avail ring and publishes it with a release store. */
void tq_publish(struct tq *q, uint16_t head);
uint16_t tq_used_idx(const struct tq *q);

#endif
