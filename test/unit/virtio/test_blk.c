/*
 * Unit tests for the virtio-blk device model (lib/virtio/blk.c), end to end
 * without siovd: a fake guest (guest.c) builds requests on a split ring, a
 * real engine thread (lib/engine) pops them after a kick on an eventfd and
 * submits them to a real backend through its io_uring, and the test waits for
 * the used ring like a driver would.  Most tests use a file backend in a fresh
 * temporary directory, so what landed where can be checked with pread(); the
 * file is pre-filled with a pattern so that a stray byte outside the VDEV's
 * window shows.  One test uses the ram backend with two windows over it.
 */
#include <errno.h>
#include <fcntl.h>
#include <linux/virtio_blk.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include "guest.h"
#include "siov_internal/backend.h"
#include "siov_internal/backend_module.h" /* the full disk below is a provider */
#include "siov_internal/engine.h"
#include "siov_internal/virtio_blk.h"

#define QNUM	    16
#define DISK_SIZE   (1u << 20)
#define WIN_OFF	    (128u << 10)
#define WIN_SIZE    (256u << 10)
#define WIN_SECTORS (WIN_SIZE / 512)
#define FILL	    0x5a /* what the backing file holds before any test writes */
#define DEVNAME	    "vdisk-7"

/* Request buffers in guest memory; data may be up to 64 KiB. */
#define HDR_GPA	    (GPA_R0 + 0x1000)
#define STATUS_GPA  (GPA_R0 + 0x1100)
#define SEG_GPA	    (GPA_R0 + 0x1200)
#define DATA_GPA    (GPA_R0 + 0x10000)
#define ANY_GPA	    (GPA_R0 + 0x4000) /* header and data in one descriptor */
#define CROSS_GPA   (GPA_R1 - 0x800)  /* 4 KiB here straddle R0 and R1 */
#define STATUS_NONE 0xee	      /* never a status the device writes */

#define TIMEOUT_NS (5ull * 1000 * 1000 * 1000)

struct fx {
	struct guest g;
	struct siov_engines *engines;
	struct siov_backend *bd;
	unsigned nq;
	struct siov_blk *blk[2];
	struct tq q[2];
	uint32_t used_len; /* of the last request run_req() completed */
	char dir[256], path[300];
	enum siov_error_policy policy; /* for add_queue */
	uint32_t hold_timeout_ms;
	bool in_order; /* add_queue: VIRTIO_F_IN_ORDER negotiated */
};

static uint64_t now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

/* ---- fixtures ---- */

/* Creates a blk over [off, off+size) and hands its queue to an engine. */
static int add_queue(struct fx *fx, uint64_t off, uint64_t size, bool readonly)
{
	struct siov_blk_conf conf = {.name = DEVNAME,
				     .backend = fx->bd,
				     .offset = off,
				     .size = size,
				     .readonly = readonly,
				     .queues = 1,
				     .error_policy = fx->policy,
				     .hold_timeout_ms = fx->hold_timeout_ms};
	unsigned i = fx->nq;
	struct siov_vq *vq = &fx->q[i].vq;

	if (siov_blk_create(&conf, &fx->blk[i]))
		return -1;
	if (tq_init(&fx->q[i], &fx->g, GPA_R2 + i * 0x1000, QNUM) ||
	    tq_wire(&fx->q[i], siov_blk_dev_ops.vq_ops, fx->blk[i]))
		return -1;
	vq->in_order = fx->in_order;
	if (fx->in_order && siov_vq_map_rings(vq))
		return -1;
	fx->nq++;
	return siov_engine_attach(siov_engines_pick(fx->engines), vq);
}

static struct fx *fx_new(void)
{
	struct siov_engines_opts eo = {.count = 1, .poll_us = 100};
	struct fx *fx = calloc(1, sizeof(*fx));

	if (!fx)
		return NULL;
	if (guest_init(&fx->g) || siov_engines_create(&eo, &fx->engines)) {
		free(fx);
		return NULL;
	}
	return fx;
}

/* A DISK_SIZE file full of FILL, opened as a file backend (size from the file). */
static int open_file_backend(struct fx *fx)
{
	struct siov_backend_conf bc = {.name = "disk", .type = SIOV_BACKEND_FILE};
	const char *tmp = getenv("TMPDIR");
	static uint8_t fill[DISK_SIZE];
	struct siov_err err;
	int fd;

	snprintf(fx->dir, sizeof(fx->dir), "%s/siov-virtio-XXXXXX", tmp ? tmp : "/tmp");
	if (!mkdtemp(fx->dir))
		return -1;
	snprintf(fx->path, sizeof(fx->path), "%s/disk", fx->dir);
	fd = open(fx->path, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
	memset(fill, FILL, sizeof(fill));
	if (fd < 0 || pwrite(fd, fill, sizeof(fill), 0) != (ssize_t)sizeof(fill))
		return -1;
	close(fd);
	snprintf(bc.path, sizeof(bc.path), "%s", fx->path);
	if (siov_backend_open(&bc, &fx->bd, &err)) {
		print_error("file backend: %s\n", err.msg);
		return -1;
	}
	return 0;
}

static int setup_file_common(void **state, bool readonly)
{
	struct fx *fx = fx_new();

	*state = fx;
	if (!fx || open_file_backend(fx))
		return -1;
	return add_queue(fx, WIN_OFF, WIN_SIZE, readonly);
}

static int setup_file(void **state)
{
	return setup_file_common(state, false);
}

static int setup_file_ro(void **state)
{
	return setup_file_common(state, true);
}

/* A ram backend seen through two VDEVs: q[0] the window, q[1] the whole device. */
static int setup_ram(void **state)
{
	struct siov_backend_conf bc = {.name = "ram0", .type = SIOV_BACKEND_RAM, .size = DISK_SIZE};
	struct siov_err err;
	struct fx *fx = fx_new();

	*state = fx;
	if (!fx || siov_backend_open(&bc, &fx->bd, &err))
		return -1;
	if (add_queue(fx, WIN_OFF, WIN_SIZE, false))
		return -1;
	return add_queue(fx, 0, DISK_SIZE, false);
}

static int teardown(void **state)
{
	struct fx *fx = *state;
	unsigned i;

	if (!fx)
		return 0;
	/* Detach first: afterwards the engine never touches the queue again. */
	for (i = 0; i < fx->nq; i++) {
		siov_engine_detach(&fx->q[i].vq);
		siov_vq_release(&fx->q[i].vq);
		siov_blk_destroy(fx->blk[i]);
		tq_unwire(&fx->q[i]);
	}
	siov_engines_destroy(fx->engines);
	siov_backend_close(fx->bd);
	if (fx->path[0])
		unlink(fx->path);
	if (fx->dir[0])
		rmdir(fx->dir);
	guest_fini(&fx->g);
	free(fx);
	return 0;
}

/* ---- the driver side ---- */

static bool wait_used(struct tq *q, uint16_t idx)
{
	uint64_t deadline = now_ns() + TIMEOUT_NS;

	while (tq_used_idx(q) != idx) {
		if (now_ns() > deadline)
			return false;
		usleep(100);
	}
	return true;
}

/* Publishes the chain at head 0 on queue qi and kicks the engine. */
static void kick(struct fx *fx, unsigned qi)
{
	tq_publish(&fx->q[qi], 0);
	assert_int_equal(eventfd_write(fx->q[qi].kick_fd, 1), 0);
}

/*
 * Runs one request (header, optional data, status byte) on queue qi and
 * waits for its used element; returns the status byte the device wrote.
 */
static uint8_t run_req(struct fx *fx, unsigned qi, uint32_t type, uint64_t sector, uint64_t data,
		       uint32_t len, bool data_wr)
{
	struct tq *q = &fx->q[qi];
	struct virtio_blk_outhdr *h = guest_ptr(&fx->g, HDR_GPA);
	uint8_t *status = guest_ptr(&fx->g, STATUS_GPA);
	uint16_t idx = tq_used_idx(q);

	*h = (struct virtio_blk_outhdr){.type = type, .sector = sector};
	*status = STATUS_NONE;
	tq_desc(q, 0, HDR_GPA, sizeof(*h), VRING_DESC_F_NEXT, len ? 1 : 2);
	tq_desc(q, 1, data, len, VRING_DESC_F_NEXT | (data_wr ? VRING_DESC_F_WRITE : 0), 2);
	tq_desc(q, 2, STATUS_GPA, 1, VRING_DESC_F_WRITE, 0);
	kick(fx, qi);
	if (!wait_used(q, idx + 1))
		fail_msg("request type %u: no used element within 5 s", type);
	assert_int_equal(q->used->ring[idx % QNUM].id, 0);
	fx->used_len = q->used->ring[idx % QNUM].len;
	return *status;
}

static uint8_t blk_write(struct fx *fx, unsigned qi, uint64_t sector, uint64_t gpa, uint32_t len)
{
	return run_req(fx, qi, VIRTIO_BLK_T_OUT, sector, gpa, len, false);
}

static uint8_t blk_read(struct fx *fx, unsigned qi, uint64_t sector, uint64_t gpa, uint32_t len)
{
	return run_req(fx, qi, VIRTIO_BLK_T_IN, sector, gpa, len, true);
}

static uint8_t blk_discard(struct fx *fx, uint32_t type, uint64_t sector, uint32_t n)
{
	struct virtio_blk_discard_write_zeroes *seg = guest_ptr(&fx->g, SEG_GPA);

	*seg = (struct virtio_blk_discard_write_zeroes){.sector = sector, .num_sectors = n};
	return run_req(fx, 0, type, 0, SEG_GPA, sizeof(*seg), false);
}

/* Fills len bytes of guest memory at gpa with a pattern that differs per seed. */
static void fill_pattern(struct fx *fx, uint64_t gpa, uint32_t len, unsigned seed)
{
	uint8_t *p = guest_ptr(&fx->g, gpa);
	uint32_t i;

	for (i = 0; i < len; i++)
		p[i] = (uint8_t)(i * 7 + seed);
}

/* Asserts the backing file holds byte b over [off, off+len). */
static void assert_file_bytes(struct fx *fx, uint64_t off, uint32_t len, uint8_t b)
{
	uint8_t buf[8192];
	uint32_t i;
	int fd = open(fx->path, O_RDONLY | O_CLOEXEC);

	assert_true(fd >= 0 && len <= sizeof(buf));
	assert_int_equal(pread(fd, buf, len, (off_t)off), len);
	close(fd);
	for (i = 0; i < len; i++)
		if (buf[i] != b)
			fail_msg("file byte %llu is 0x%02x, expected 0x%02x",
				 (unsigned long long)(off + i), buf[i], b);
}

static void assert_file_matches(struct fx *fx, uint64_t off, const void *want, uint32_t len)
{
	uint8_t buf[8192];
	int fd = open(fx->path, O_RDONLY | O_CLOEXEC);

	assert_true(fd >= 0 && len <= sizeof(buf));
	assert_int_equal(pread(fd, buf, len, (off_t)off), len);
	close(fd);
	assert_memory_equal(buf, want, len);
}

/* ---- reads and writes ---- */

static void blk_write_then_read_back(void **state)
{
	struct fx *fx = *state;
	uint8_t want[4096];

	fill_pattern(fx, DATA_GPA, sizeof(want), 1);
	memcpy(want, guest_ptr(&fx->g, DATA_GPA), sizeof(want));
	assert_int_equal(blk_write(fx, 0, 3, DATA_GPA, sizeof(want)), VIRTIO_BLK_S_OK);
	assert_int_equal(fx->used_len, 1); /* only the status byte was written */
	memset(guest_ptr(&fx->g, DATA_GPA), 0, sizeof(want));
	assert_int_equal(blk_read(fx, 0, 3, DATA_GPA, sizeof(want)), VIRTIO_BLK_S_OK);
	assert_int_equal(fx->used_len, sizeof(want) + 1);
	assert_memory_equal(guest_ptr(&fx->g, DATA_GPA), want, sizeof(want));
}

static void blk_write_lands_at_window_offset(void **state)
{
	struct fx *fx = *state;
	const uint64_t at = WIN_OFF + 5 * 512;

	fill_pattern(fx, DATA_GPA, 1024, 2);
	assert_int_equal(blk_write(fx, 0, 5, DATA_GPA, 1024), VIRTIO_BLK_S_OK);
	assert_file_matches(fx, at, guest_ptr(&fx->g, DATA_GPA), 1024);
	assert_file_bytes(fx, at - 512, 512, FILL);
	assert_file_bytes(fx, at + 1024, 512, FILL);
}

static void blk_buffer_across_memory_regions(void **state)
{
	struct fx *fx = *state;
	uint8_t want[4096];

	/* The guest buffer is contiguous in guest-physical space only. */
	fill_pattern(fx, CROSS_GPA, 0x800, 3);
	fill_pattern(fx, GPA_R1, 0x800, 3 + 0x800 * 7);
	memcpy(want, guest_ptr(&fx->g, CROSS_GPA), 0x800);
	memcpy(want + 0x800, guest_ptr(&fx->g, GPA_R1), 0x800);
	assert_int_equal(blk_write(fx, 0, 0, CROSS_GPA, sizeof(want)), VIRTIO_BLK_S_OK);
	assert_file_matches(fx, WIN_OFF, want, sizeof(want));
	memset(guest_ptr(&fx->g, CROSS_GPA), 0, 0x800);
	memset(guest_ptr(&fx->g, GPA_R1), 0, 0x800);
	assert_int_equal(blk_read(fx, 0, 0, CROSS_GPA, sizeof(want)), VIRTIO_BLK_S_OK);
	assert_memory_equal(guest_ptr(&fx->g, CROSS_GPA), want, 0x800);
	assert_memory_equal(guest_ptr(&fx->g, GPA_R1), want + 0x800, 0x800);
}

/* Virtio 1.x drivers may frame a request any way (ANY_LAYOUT): header and data together. */
static void blk_write_with_header_and_data_in_one_descriptor(void **state)
{
	struct fx *fx = *state;
	struct tq *q = &fx->q[0];
	struct virtio_blk_outhdr *h = guest_ptr(&fx->g, ANY_GPA);

	*h = (struct virtio_blk_outhdr){.type = VIRTIO_BLK_T_OUT, .sector = 9};
	fill_pattern(fx, ANY_GPA + sizeof(*h), 512, 9);
	*(uint8_t *)guest_ptr(&fx->g, STATUS_GPA) = STATUS_NONE;
	tq_desc(q, 0, ANY_GPA, sizeof(*h) + 512, VRING_DESC_F_NEXT, 1);
	tq_desc(q, 1, STATUS_GPA, 1, VRING_DESC_F_WRITE, 0);
	kick(fx, 0);
	assert_true(wait_used(q, 1));
	assert_int_equal(*(uint8_t *)guest_ptr(&fx->g, STATUS_GPA), VIRTIO_BLK_S_OK);
	assert_file_matches(fx, WIN_OFF + 9 * 512, guest_ptr(&fx->g, ANY_GPA + sizeof(*h)), 512);
}

static void blk_read_past_window_end_fails(void **state)
{
	struct fx *fx = *state;
	uint8_t untouched[1024];

	memset(guest_ptr(&fx->g, DATA_GPA), 0xcc, sizeof(untouched));
	memset(untouched, 0xcc, sizeof(untouched));
	/* The last sector is inside, the next one is not. */
	assert_int_equal(blk_read(fx, 0, WIN_SECTORS - 1, DATA_GPA, 1024), VIRTIO_BLK_S_IOERR);
	assert_int_equal(blk_read(fx, 0, WIN_SECTORS, DATA_GPA, 512), VIRTIO_BLK_S_IOERR);
	/* sector * 512 would wrap to a small offset. */
	assert_int_equal(blk_read(fx, 0, UINT64_MAX / 256, DATA_GPA, 512), VIRTIO_BLK_S_IOERR);
	assert_memory_equal(guest_ptr(&fx->g, DATA_GPA), untouched, sizeof(untouched));
	assert_int_equal(blk_read(fx, 0, WIN_SECTORS - 1, DATA_GPA, 512), VIRTIO_BLK_S_OK);
}

static void blk_write_past_window_end_touches_nothing(void **state)
{
	struct fx *fx = *state;

	fill_pattern(fx, DATA_GPA, 1024, 4);
	assert_int_equal(blk_write(fx, 0, WIN_SECTORS - 1, DATA_GPA, 1024), VIRTIO_BLK_S_IOERR);
	assert_int_equal(blk_write(fx, 0, UINT64_MAX / 256, DATA_GPA, 512), VIRTIO_BLK_S_IOERR);
	assert_file_bytes(fx, WIN_OFF + WIN_SIZE - 512, 1024, FILL);
	assert_file_bytes(fx, 0, 512, FILL);
}

static void blk_write_to_readonly_fails(void **state)
{
	struct fx *fx = *state;

	assert_true(siov_blk_dev_ops.features(fx->blk[0]) & (1ull << VIRTIO_BLK_F_RO));
	fill_pattern(fx, DATA_GPA, 512, 5);
	assert_int_equal(blk_write(fx, 0, 0, DATA_GPA, 512), VIRTIO_BLK_S_IOERR);
	assert_int_equal(blk_discard(fx, VIRTIO_BLK_T_WRITE_ZEROES, 0, 1), VIRTIO_BLK_S_IOERR);
	assert_file_bytes(fx, WIN_OFF, 512, FILL);
	/* Reading still works. */
	assert_int_equal(blk_read(fx, 0, 0, DATA_GPA, 512), VIRTIO_BLK_S_OK);
	assert_int_equal(*(uint8_t *)guest_ptr(&fx->g, DATA_GPA), FILL);
}

static void blk_length_not_sector_multiple_fails(void **state)
{
	struct fx *fx = *state;

	fill_pattern(fx, DATA_GPA, 1000, 6);
	assert_int_equal(blk_write(fx, 0, 0, DATA_GPA, 100), VIRTIO_BLK_S_IOERR);
	assert_int_equal(blk_read(fx, 0, 0, DATA_GPA, 1000), VIRTIO_BLK_S_IOERR);
	assert_file_bytes(fx, WIN_OFF, 1024, FILL);
}

/* ---- other request types ---- */

static void blk_get_id_returns_name(void **state)
{
	struct fx *fx = *state;
	char want[VIRTIO_BLK_ID_BYTES] = DEVNAME;

	memset(guest_ptr(&fx->g, DATA_GPA), 0xcc, sizeof(want));
	assert_int_equal(run_req(fx, 0, VIRTIO_BLK_T_GET_ID, 0, DATA_GPA, sizeof(want), true),
			 VIRTIO_BLK_S_OK);
	/* The name, then zeros to the full 20 bytes. */
	assert_memory_equal(guest_ptr(&fx->g, DATA_GPA), want, sizeof(want));
	assert_int_equal(fx->used_len, sizeof(want) + 1);
}

static void blk_flush_succeeds(void **state)
{
	struct fx *fx = *state;

	assert_int_equal(run_req(fx, 0, VIRTIO_BLK_T_FLUSH, 0, 0, 0, false), VIRTIO_BLK_S_OK);
	assert_int_equal(fx->used_len, 1);
}

/* Writes data over sectors 8..15 of queue qi, then discards 8..11 and zeroes 12..15. */
static void discard_and_zero(struct fx *fx)
{
	static const uint8_t zeros[4096];

	fill_pattern(fx, DATA_GPA, 4096, 7);
	assert_int_equal(blk_write(fx, 0, 8, DATA_GPA, 4096), VIRTIO_BLK_S_OK);
	assert_int_equal(blk_discard(fx, VIRTIO_BLK_T_DISCARD, 8, 4), VIRTIO_BLK_S_OK);
	assert_int_equal(blk_discard(fx, VIRTIO_BLK_T_WRITE_ZEROES, 12, 4), VIRTIO_BLK_S_OK);
	memset(guest_ptr(&fx->g, DATA_GPA), 0xcc, 4096);
	assert_int_equal(blk_read(fx, 0, 8, DATA_GPA, 4096), VIRTIO_BLK_S_OK);
	assert_memory_equal(guest_ptr(&fx->g, DATA_GPA), zeros, 4096);
}

static void blk_discard_and_write_zeroes_read_zeros(void **state)
{
	struct fx *fx = *state;

	discard_and_zero(fx);
	/* Only the requested range: the sectors either side keep the file's fill. */
	assert_file_bytes(fx, WIN_OFF + 8 * 512, 4096, 0);
	assert_file_bytes(fx, WIN_OFF + 7 * 512, 512, FILL);
	assert_file_bytes(fx, WIN_OFF + 16 * 512, 512, FILL);
}

static void blk_discard_past_window_end_fails(void **state)
{
	struct fx *fx = *state;

	assert_int_equal(blk_discard(fx, VIRTIO_BLK_T_DISCARD, WIN_SECTORS - 1, 2),
			 VIRTIO_BLK_S_IOERR);
	assert_int_equal(blk_discard(fx, VIRTIO_BLK_T_WRITE_ZEROES, WIN_SECTORS - 1, 2),
			 VIRTIO_BLK_S_IOERR);
	assert_file_bytes(fx, WIN_OFF + WIN_SIZE - 512, 1024, FILL);
}

static void blk_unknown_type_is_unsupported(void **state)
{
	struct fx *fx = *state;

	assert_int_equal(run_req(fx, 0, 0x77, 0, DATA_GPA, 512, true), VIRTIO_BLK_S_UNSUPP);
	assert_int_equal(fx->used_len, 1);
}

/* A request with no device-writable byte cannot be completed: the queue breaks. */
static void blk_request_without_status_breaks_queue(void **state)
{
	struct fx *fx = *state;
	struct tq *q = &fx->q[0];
	uint64_t deadline = now_ns() + TIMEOUT_NS;
	eventfd_t v;

	*(struct virtio_blk_outhdr *)guest_ptr(&fx->g, HDR_GPA) =
	    (struct virtio_blk_outhdr){.type = VIRTIO_BLK_T_FLUSH};
	tq_desc(q, 0, HDR_GPA, sizeof(struct virtio_blk_outhdr), 0, 0);
	kick(fx, 0);
	while (!siov_vq_is_broken(&q->vq) && now_ns() < deadline)
		usleep(100);
	assert_true(siov_vq_is_broken(&q->vq));
	assert_non_null(strstr(q->vq.broken_reason, "status"));
	assert_int_equal(eventfd_read(fx->q[0].err_fd, &v), 0);
	/* A good request after it is never served, and the used ring stays as it was. */
	tq_desc(q, 0, HDR_GPA, sizeof(struct virtio_blk_outhdr), VRING_DESC_F_NEXT, 2);
	tq_desc(q, 2, STATUS_GPA, 1, VRING_DESC_F_WRITE, 0);
	kick(fx, 0);
	usleep(100 * 1000);
	assert_int_equal(tq_used_idx(q), 0);
}

/* ---- config space ---- */

static void blk_config_reports_geometry(void **state)
{
	struct fx *fx = *state;
	uint8_t buf[256];
	struct virtio_blk_config c;
	static const uint8_t zeros[256];

	memset(buf, 0xcc, sizeof(buf));
	siov_blk_dev_ops.get_config(fx->blk[0], buf, 0, sizeof(buf));
	memcpy(&c, buf, sizeof(c));
	assert_int_equal(c.capacity, WIN_SIZE / 512);
	assert_int_equal(c.num_queues, 1);
	assert_true(c.seg_max > 0 && c.seg_max <= SIOV_VQ_MAX_IOV - 2);
	assert_int_equal(c.blk_size, siov_backend_block_size(fx->bd));
	assert_int_equal(c.wce, 1);
	/* SPDK asks for 256 bytes: everything past the struct reads as zero. */
	assert_memory_equal(buf + sizeof(c), zeros, sizeof(buf) - sizeof(c));
	/* A read at an offset gives the same bytes. */
	siov_blk_dev_ops.get_config(fx->blk[0], buf, offsetof(struct virtio_blk_config, blk_size),
				    4);
	assert_memory_equal(buf, &c.blk_size, 4);
	memset(buf, 0xcc, sizeof(buf));
	siov_blk_dev_ops.get_config(fx->blk[0], buf, sizeof(c) + 8, 16);
	assert_memory_equal(buf, zeros, 16);
}

static void blk_set_config_toggles_wce(void **state)
{
	struct fx *fx = *state;
	const uint32_t off = offsetof(struct virtio_blk_config, wce);
	uint8_t b = 0, cap[8] = {0};

	assert_int_equal(siov_blk_dev_ops.set_config(fx->blk[0], &b, off, 1), 0);
	siov_blk_dev_ops.get_config(fx->blk[0], &b, off, 1);
	assert_int_equal(b, 0);
	b = 1;
	assert_int_equal(siov_blk_dev_ops.set_config(fx->blk[0], &b, off, 1), 0);
	b = 0;
	siov_blk_dev_ops.get_config(fx->blk[0], &b, off, 1);
	assert_int_equal(b, 1);
	/* The capacity is not the driver's to change. */
	assert_int_equal(siov_blk_dev_ops.set_config(fx->blk[0], cap, 0, sizeof(cap)), -EINVAL);
	siov_blk_dev_ops.get_config(fx->blk[0], cap, 0, sizeof(cap));
	assert_int_equal(cap[1], (WIN_SIZE / 512) >> 8);
}

/* ---- ram backend, two windows ---- */

static void blk_ram_window_maps_to_backend_offset(void **state)
{
	struct fx *fx = *state;
	uint8_t want[1024];
	static const uint8_t zeros[512];

	fill_pattern(fx, DATA_GPA, sizeof(want), 8);
	memcpy(want, guest_ptr(&fx->g, DATA_GPA), sizeof(want));
	assert_int_equal(blk_write(fx, 0, 2, DATA_GPA, sizeof(want)), VIRTIO_BLK_S_OK);
	/* Queue 1 sees the whole device: the bytes are at WIN_OFF + 2 sectors. */
	memset(guest_ptr(&fx->g, DATA_GPA), 0xcc, 2048);
	assert_int_equal(blk_read(fx, 1, WIN_OFF / 512 + 1, DATA_GPA, 2048), VIRTIO_BLK_S_OK);
	assert_memory_equal(guest_ptr(&fx->g, DATA_GPA), zeros, 512);
	assert_memory_equal((uint8_t *)guest_ptr(&fx->g, DATA_GPA) + 512, want, sizeof(want));
	assert_memory_equal((uint8_t *)guest_ptr(&fx->g, DATA_GPA) + 1536, zeros, 512);
}

static void blk_ram_discard_and_write_zeroes_read_zeros(void **state)
{
	discard_and_zero(*state);
}

/* ---- error policy: a disk that is full until the test makes room ---- */

struct full_disk {
	struct siov_backend *inner;
	volatile bool full;
	volatile unsigned refused;
};

static int full_open(struct siov_backend *bd, struct siov_err *err)
{
	return 0;
}

static void full_close(struct siov_backend *bd)
{
	struct full_disk *f = bd->priv;

	siov_backend_close(f->inner);
	free(f);
}

static int full_submit(struct siov_backend *bd, struct siov_io_ctx *ctx, struct siov_io *io)
{
	struct full_disk *f = bd->priv;

	if (f->full && io->op == SIOV_IO_WRITE) {
		f->refused++;
		siov_io_complete_later(ctx, io, -ENOSPC);
		return 0;
	}
	return siov_backend_submit(f->inner, ctx, io);
}

static const struct siov_backend_ops full_ops = {
    .type_name = "full",
    .open = full_open,
    .close = full_close,
    .submit = full_submit,
};

static int setup_hold_common(void **state, enum siov_error_policy p, uint32_t timeout_ms,
			     bool in_order)
{
	struct siov_backend_conf bc = {.name = "ram0", .type = SIOV_BACKEND_RAM, .size = DISK_SIZE};
	struct siov_err err;
	struct full_disk *f = calloc(1, sizeof(*f));
	struct siov_backend *bd = calloc(1, sizeof(*bd));
	struct fx *fx = fx_new();

	*state = fx;
	if (!fx || !f || !bd || siov_backend_open(&bc, &f->inner, &err))
		return -1;
	snprintf(bd->conf.name, sizeof(bd->conf.name), "full");
	bd->ops = &full_ops;
	bd->size = DISK_SIZE;
	bd->block_size = 512;
	bd->priv = f;
	f->full = true;
	fx->bd = bd;
	fx->policy = p;
	fx->hold_timeout_ms = timeout_ms;
	fx->in_order = in_order;
	return add_queue(fx, WIN_OFF, WIN_SIZE, false);
}

static int setup_hold(void **state)
{
	return setup_hold_common(state, SIOV_ERROR_HOLD, 0, false);
}

static int setup_hold_timeout(void **state)
{
	return setup_hold_common(state, SIOV_ERROR_HOLD, 300, false);
}

static int setup_hold_in_order(void **state)
{
	return setup_hold_common(state, SIOV_ERROR_HOLD, 0, true);
}

static int setup_report(void **state)
{
	return setup_hold_common(state, SIOV_ERROR_REPORT, 0, false);
}

static struct full_disk *full_of(struct fx *fx)
{
	return fx->bd->priv;
}

/* Starts a write of one sector at sector 3 without waiting for it. */
static uint16_t start_write(struct fx *fx)
{
	struct tq *q = &fx->q[0];
	struct virtio_blk_outhdr *h = guest_ptr(&fx->g, HDR_GPA);
	uint16_t idx = tq_used_idx(q);

	fill_pattern(fx, DATA_GPA, 512, 21);
	*h = (struct virtio_blk_outhdr){.type = VIRTIO_BLK_T_OUT, .sector = 3};
	*(uint8_t *)guest_ptr(&fx->g, STATUS_GPA) = STATUS_NONE;
	tq_desc(q, 0, HDR_GPA, sizeof(*h), VRING_DESC_F_NEXT, 1);
	tq_desc(q, 1, DATA_GPA, 512, VRING_DESC_F_NEXT, 2);
	tq_desc(q, 2, STATUS_GPA, 1, VRING_DESC_F_WRITE, 0);
	kick(fx, 0);
	return idx;
}

/* A held write is not completed, is counted, and goes through on resume. */
static void blk_hold_keeps_write_until_resumed(void **state)
{
	struct fx *fx = *state;
	struct siov_blk_hold_stats h;
	uint16_t idx = start_write(fx);
	uint8_t want[512];
	int i;

	for (i = 0; i < 100 && !full_of(fx)->refused; i++)
		usleep(1000);
	assert_true(full_of(fx)->refused > 0);
	usleep(200000);
	assert_int_equal(tq_used_idx(&fx->q[0]), idx); /* not completed */
	siov_blk_hold_stats(fx->blk[0], &h);
	assert_int_equal(h.held, 1);
	assert_int_equal(h.last_error, -ENOSPC);
	assert_int_equal(h.hold_events, 1);
	assert_true(h.since_ns > 0);
	memcpy(want, guest_ptr(&fx->g, DATA_GPA), sizeof(want));
	full_of(fx)->full = false;
	siov_blk_resume(fx->blk[0]);
	assert_true(wait_used(&fx->q[0], idx + 1));
	assert_int_equal(*(uint8_t *)guest_ptr(&fx->g, STATUS_GPA), VIRTIO_BLK_S_OK);
	siov_blk_hold_stats(fx->blk[0], &h);
	assert_int_equal(h.held, 0);
	/* The bytes landed: read them back through the device. */
	memset(guest_ptr(&fx->g, DATA_GPA), 0, 512);
	assert_int_equal(blk_read(fx, 0, 3, DATA_GPA, 512), VIRTIO_BLK_S_OK);
	assert_memory_equal(guest_ptr(&fx->g, DATA_GPA), want, sizeof(want));
}

/* Past the timeout a held write fails as with report, and is counted so. */
static void blk_hold_times_out(void **state)
{
	struct fx *fx = *state;
	struct siov_blk_hold_stats h;
	uint16_t idx = start_write(fx);

	assert_true(wait_used(&fx->q[0], idx + 1));
	assert_int_equal(*(uint8_t *)guest_ptr(&fx->g, STATUS_GPA), VIRTIO_BLK_S_IOERR);
	siov_blk_hold_stats(fx->blk[0], &h);
	assert_int_equal(h.held, 0);
	assert_int_equal(h.timed_out, 1);
}

/* report: the error reaches the driver at once; switching to report fails what is held. */
static void blk_report_fails_at_once(void **state)
{
	struct fx *fx = *state;
	struct siov_blk_hold_stats h;
	uint16_t idx = start_write(fx);

	assert_true(wait_used(&fx->q[0], idx + 1));
	assert_int_equal(*(uint8_t *)guest_ptr(&fx->g, STATUS_GPA), VIRTIO_BLK_S_IOERR);
	siov_blk_hold_stats(fx->blk[0], &h);
	assert_int_equal(h.held_total, 0);
	siov_blk_set_error_policy(fx->blk[0], SIOV_ERROR_HOLD, 0);
	idx = start_write(fx);
	usleep(200000);
	assert_int_equal(tq_used_idx(&fx->q[0]), idx);
	siov_blk_set_error_policy(fx->blk[0], SIOV_ERROR_REPORT, 0);
	assert_true(wait_used(&fx->q[0], idx + 1));
	assert_int_equal(*(uint8_t *)guest_ptr(&fx->g, STATUS_GPA), VIRTIO_BLK_S_IOERR);
}

/*
 * In order, a read popped with a write that the backend refuses (held by the
 * hold policy) finishes at the backend but waits to be used; on resume both
 * are used, the write first, with one used element.
 */
static void move_queue(struct fx *fx);

static void in_order_held_pair(struct fx *fx, bool move)
{
	struct tq *q = &fx->q[0];
	struct virtio_blk_outhdr *w = guest_ptr(&fx->g, HDR_GPA), *r = w + 4;
	uint8_t *wstatus = guest_ptr(&fx->g, STATUS_GPA), *rstatus = wstatus + 1;
	uint16_t idx = tq_used_idx(q);
	int i;

	*w = (struct virtio_blk_outhdr){.type = VIRTIO_BLK_T_OUT, .sector = 3};
	*r = (struct virtio_blk_outhdr){.type = VIRTIO_BLK_T_IN, .sector = 5};
	*wstatus = *rstatus = STATUS_NONE;
	tq_desc(q, 0, HDR_GPA, sizeof(*w), VRING_DESC_F_NEXT, 1);
	tq_desc(q, 1, DATA_GPA, 512, VRING_DESC_F_NEXT, 2);
	tq_desc(q, 2, STATUS_GPA, 1, VRING_DESC_F_WRITE, 0);
	tq_desc(q, 3, HDR_GPA + 4 * sizeof(*w), sizeof(*r), VRING_DESC_F_NEXT, 4);
	tq_desc(q, 4, DATA_GPA + 0x1000, 512, VRING_DESC_F_NEXT | VRING_DESC_F_WRITE, 5);
	tq_desc(q, 5, STATUS_GPA + 1, 1, VRING_DESC_F_WRITE, 0);
	/* Both in one index update: popped in one round, the write first. */
	q->avail->ring[q->avail_idx++ % QNUM] = 0;
	tq_publish(q, 3);
	assert_int_equal(eventfd_write(q->kick_fd, 1), 0);
	for (i = 0; i < 500 && *(volatile uint8_t *)rstatus == STATUS_NONE; i++)
		usleep(1000);
	assert_true(full_of(fx)->refused > 0);
	assert_int_equal(*rstatus, VIRTIO_BLK_S_OK); /* done at the backend ... */
	usleep(100000);
	assert_int_equal(tq_used_idx(q), idx); /* ... and not used before the write */
	assert_true(SIOV_STAT_GET(q->vq.stats.order_held) >= 1);
	if (move)
		move_queue(fx);
	full_of(fx)->full = false;
	siov_blk_resume(fx->blk[0]);
	assert_true(wait_used(q, idx + 2));
	assert_int_equal(*wstatus, VIRTIO_BLK_S_OK);
	/* The write wrote its whole status byte: left out, the read's element stands for both. */
	assert_int_equal(q->used->ring[idx % QNUM].id, 3);
	assert_int_equal(q->used->ring[idx % QNUM].len, 513);
}

static void blk_in_order_read_waits_behind_held_write(void **state)
{
	in_order_held_pair(*state, false);
}

/*
 * The same pair while the queue moves to another engine (what rebalancing
 * does every second): the held write and the finished read behind it stay,
 * and both are used on resume, in order.
 */
static void blk_in_order_held_pair_survives_queue_move(void **state)
{
	in_order_held_pair(*state, true);
}

/*
 * Moves queue 0 as rebalancing does (to the fixture's one engine: the same
 * detach and attach as between two).
 */
static void move_queue(struct fx *fx)
{
	assert_int_equal(siov_engine_move(&fx->q[0].vq, siov_engines_get(fx->engines, 0)), 0);
}

/* A held write survives its queue moving to another engine: resume still sends it. */
static void blk_hold_survives_queue_move(void **state)
{
	struct fx *fx = *state;
	struct siov_blk_hold_stats h;
	uint16_t idx = start_write(fx);
	int i;

	for (i = 0; i < 500 && !full_of(fx)->refused; i++)
		usleep(1000);
	assert_true(full_of(fx)->refused > 0);
	move_queue(fx);
	siov_blk_hold_stats(fx->blk[0], &h);
	assert_int_equal(h.held, 1);
	full_of(fx)->full = false;
	siov_blk_resume(fx->blk[0]);
	assert_true(wait_used(&fx->q[0], idx + 1));
	assert_int_equal(*(uint8_t *)guest_ptr(&fx->g, STATUS_GPA), VIRTIO_BLK_S_OK);
}

#define F(f)  cmocka_unit_test_setup_teardown(f, setup_file, teardown)
#define RO(f) cmocka_unit_test_setup_teardown(f, setup_file_ro, teardown)
#define R(f)  cmocka_unit_test_setup_teardown(f, setup_ram, teardown)

int main(void)
{
	const struct CMUnitTest tests[] = {
	    F(blk_write_then_read_back),
	    F(blk_write_lands_at_window_offset),
	    F(blk_buffer_across_memory_regions),
	    F(blk_write_with_header_and_data_in_one_descriptor),
	    F(blk_read_past_window_end_fails),
	    F(blk_write_past_window_end_touches_nothing),
	    RO(blk_write_to_readonly_fails),
	    F(blk_length_not_sector_multiple_fails),
	    F(blk_get_id_returns_name),
	    F(blk_flush_succeeds),
	    F(blk_discard_and_write_zeroes_read_zeros),
	    F(blk_discard_past_window_end_fails),
	    F(blk_unknown_type_is_unsupported),
	    F(blk_request_without_status_breaks_queue),
	    F(blk_config_reports_geometry),
	    F(blk_set_config_toggles_wce),
	    R(blk_ram_window_maps_to_backend_offset),
	    R(blk_ram_discard_and_write_zeroes_read_zeros),
	    cmocka_unit_test_setup_teardown(blk_hold_keeps_write_until_resumed, setup_hold,
					    teardown),
	    cmocka_unit_test_setup_teardown(blk_hold_times_out, setup_hold_timeout, teardown),
	    cmocka_unit_test_setup_teardown(blk_report_fails_at_once, setup_report, teardown),
	    cmocka_unit_test_setup_teardown(blk_in_order_read_waits_behind_held_write,
					    setup_hold_in_order, teardown),
	    cmocka_unit_test_setup_teardown(blk_hold_survives_queue_move, setup_hold, teardown),
	    cmocka_unit_test_setup_teardown(blk_in_order_held_pair_survives_queue_move,
					    setup_hold_in_order, teardown),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
