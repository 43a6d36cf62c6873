/*
 * Hostile front end against a real siovd: two VDEVs are windows on one RAM
 * backend, "bad" at [0, 16 MiB) and "good" right after it, so a request that
 * escapes bad's window lands in good's first bytes, which good verifies.  A
 * well-behaved front end on good writes and reads back verified data before,
 * between and after the attacks; every attack on bad must end with bad's
 * connection closed, the message refused, or bad "broken" with a reason, and
 * with siovd alive and answering.  A new session on a broken bad must work.
 *
 * Usage: hostile SIOVD SIOVCTL.  Prints "N passed, N failed"; exits 77 when
 * something it needs is missing.
 */
#include <errno.h>
#include <dirent.h>
#include <fcntl.h>
#include <poll.h>
#include <linux/virtio_blk.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include "harness.h"

#define REASON_LEN 256

/* ---- what every case checks afterwards ---- */

static int count_fds(void)
{
	char path[64];
	struct dirent *e;
	DIR *d;
	int n = 0;

	snprintf(path, sizeof(path), "/proc/%d/fd", (int)H.sd.pid);
	d = opendir(path);
	if (!d)
		return -1;
	while ((e = readdir(d)))
		n += e->d_name[0] != '.';
	closedir(d);
	return n;
}

/* siovd alive, answering, and good still verifying its data. */
static void survived(const char *name)
{
	char out[4096];
	bool alive = daemon_alive();

	check(alive, "%s: siovd alive", name);
	if (!alive)
		return;
	check(ctl(out, sizeof(out), "daemon_info", NULL) == 0, "%s: daemon_info answers", name);
	check(good_verify(), "%s: good VDEV verifies its data", name);
}

static void expect_hangup(const char *name, struct fe *fe)
{
	check(fe_wait_hangup(fe, 3000) == 0, "%s: siovd closed the connection", name);
	fe_close(fe);
	check(wait_state("bad", "listening", 3000, NULL, 0), "%s: bad is back to listening", name);
}

/* A refusal is a non-zero ack or a closed connection; both leave bad unharmed. */
static void expect_refused(const char *name, int64_t ack)
{
	check(ack != 0, "%s: refused (%s)", name,
	      ack == -ECONNRESET ? "connection closed"
	      : ack > 0		 ? "non-zero ack"
	      : ack == 0	 ? "accepted!"
				 : strerror((int)-ack));
}

/* After a descriptor violation: bad broken with a reason mentioning @why. */
static void expect_broken(const char *name, const char *why)
{
	char reason[REASON_LEN] = "";

	check(wait_state("bad", "broken", 3000, reason, sizeof(reason)), "%s: bad is broken", name);
	check(strstr(reason, why) != NULL, "%s: broken_reason says \"%s\" (\"%s\")", name, why,
	      reason);
}

/* A new session on bad resets it: verified I/O works again. */
static void bad_recovers(const char *name)
{
	struct fe fe;
	int rc = fe_setup(&fe, H.bad_sock, 5000);

	check(rc == 0, "%s: new session on bad set up (%s)", name, rc ? strerror(-rc) : "ok");
	if (rc)
		return;
	check(fe_verify_rw(&fe, 64, 8192, 77), "%s: new session on bad verifies its data", name);
	check(wait_state("bad", "running", 2000, NULL, 0), "%s: bad is running again", name);
	fe_close(&fe);
}

static int negotiated(struct fe *fe)
{
	fe_init(fe);
	if (fe_connect(fe, H.bad_sock) || fe_negotiate(fe))
		return -EIO;
	return fe_mem_create(fe, FE_MEM_LEN);
}

/* ---- malformed messages (each on a fresh connection) ---- */

static void case_oversized(void)
{
	const char *name = "size field larger than any payload";
	struct fe fe;

	fe_init(&fe);
	fe_connect(&fe, H.bad_sock);
	fe_send(&fe, VHOST_USER_GET_FEATURES, VHOST_USER_VERSION, NULL, 0x100000, NULL, 0);
	expect_hangup(name, &fe);
	survived(name);
}

static void case_truncated(void)
{
	const char *name = "truncated header then hang-up";
	uint32_t half[2] = {VHOST_USER_SET_MEM_TABLE, VHOST_USER_VERSION};
	struct fe fe;

	fe_init(&fe);
	fe_connect(&fe, H.bad_sock);
	send(fe.sock, half, 6, MSG_NOSIGNAL);
	fe_close(&fe);
	check(wait_state("bad", "listening", 3000, NULL, 0), "%s: bad is back to listening", name);
	survived(name);
}

static void case_bad_version(void)
{
	const char *name = "bad version flags";
	struct fe fe;

	fe_init(&fe);
	fe_connect(&fe, H.bad_sock);
	fe_send(&fe, VHOST_USER_GET_FEATURES, 0x2, NULL, 0, NULL, 0);
	expect_hangup(name, &fe);
	survived(name);
}

static void case_many_fds(void)
{
	const char *name = "20 fds on one message";
	int fds[20], i, before = count_fds(), after;
	uint64_t v = 0;
	struct fe fe;

	for (i = 0; i < 20; i++)
		fds[i] = eventfd(0, EFD_CLOEXEC);
	fe_init(&fe);
	fe_connect(&fe, H.bad_sock);
	fe_send(&fe, VHOST_USER_SET_VRING_CALL, VHOST_USER_VERSION, &v, 8, fds, 20);
	for (i = 0; i < 20; i++)
		close(fds[i]);
	expect_hangup(name, &fe);
	/*
	 * siovd closes the RPC connection of the last siovctl call a moment
	 * later, so that connection may be counted in before and gone by now:
	 * fewer fds than before is fine, one of the 20 kept is not.
	 */
	for (i = 0; i < 50 && (after = count_fds()) > before; i++)
		usleep(20000);
	check(after <= before, "%s: siovd holds %d fds, no more than before (%d)", name, after,
	      before);
	survived(name);
}

static void case_nregions(void)
{
	const char *name = "SET_MEM_TABLE with 9 regions";
	struct siov_vu_msg m = {0};
	int fds[8], i;
	struct fe fe;

	if (negotiated(&fe))
		return check(false, "%s: set-up", name);
	m.payload.mem.nregions = 9;
	for (i = 0; i < 8; i++) {
		m.payload.mem.regions[i] = fe_region(&fe);
		fds[i] = fe.memfd;
	}
	fe_send(&fe, VHOST_USER_SET_MEM_TABLE, VHOST_USER_VERSION | VHOST_USER_NEED_REPLY,
		&m.payload, sizeof(m.payload.mem), fds, 8);
	expect_hangup(name, &fe);
	survived(name);
}

static void case_fewer_fds(void)
{
	const char *name = "SET_MEM_TABLE with fewer fds than regions";
	struct siov_vu_mem_table t = {.nregions = 2};
	struct fe fe;

	if (negotiated(&fe))
		return check(false, "%s: set-up", name);
	t.regions[0] = fe_region(&fe);
	t.regions[1] = fe_region(&fe);
	t.regions[1].guest_phys_addr += 1ull << 40;
	t.regions[1].userspace_addr += 1ull << 40;
	expect_refused(name, fe_call(&fe, VHOST_USER_SET_MEM_TABLE, &t, 8 + 2 * 32, &fe.memfd, 1));
	fe_close(&fe);
	survived(name);
}

static void case_overlap(void)
{
	const char *name = "SET_MEM_TABLE with overlapping regions";
	struct siov_vu_mem_table t = {.nregions = 2};
	struct fe fe;
	int fds[2];

	if (negotiated(&fe))
		return check(false, "%s: set-up", name);
	t.regions[0] = fe_region(&fe);
	t.regions[1] = fe_region(&fe);
	t.regions[1].guest_phys_addr += 4096;
	t.regions[1].userspace_addr += 1ull << 40;
	fds[0] = fds[1] = fe.memfd;
	expect_refused(name, fe_call(&fe, VHOST_USER_SET_MEM_TABLE, &t, 8 + 2 * 32, fds, 2));
	fe_close(&fe);
	survived(name);
}

static void case_vring_num(uint32_t num)
{
	struct siov_vu_vring_state st = {.index = 0, .num = num};
	char name[64];
	struct fe fe;

	snprintf(name, sizeof(name), "SET_VRING_NUM %u", num);
	if (negotiated(&fe))
		return check(false, "%s: set-up", name);
	expect_refused(name, fe_call(&fe, VHOST_USER_SET_VRING_NUM, &st, sizeof(st), NULL, 0));
	fe_close(&fe);
	survived(name);
}

static void case_set_config_wrap(void)
{
	const char *name = "SET_CONFIG whose offset+size wraps";
	struct siov_vu_config c = {.offset = 0xfffffff0u, .size = 0x20};
	struct fe fe;

	if (negotiated(&fe))
		return check(false, "%s: set-up", name);
	expect_refused(name,
		       fe_call(&fe, VHOST_USER_SET_CONFIG, &c, SIOV_VU_CONFIG_HDR + 0x20, NULL, 0));
	fe_close(&fe);
	survived(name);
}

static void case_queue_index(void)
{
	const char *name = "GET_VRING_BASE of queue 200";
	struct siov_vu_vring_state st = {.index = 200};
	struct fe fe;

	if (negotiated(&fe))
		return check(false, "%s: set-up", name);
	expect_refused(name, fe_call(&fe, VHOST_USER_GET_VRING_BASE, &st, sizeof(st), NULL, 0));
	fe_close(&fe);
	survived(name);
}

/*
 * Ring messages before features and memory, a kick on a ring with no memory,
 * GET_VRING_BASE of a ring never started, the memory table last, then
 * features nobody offered: nothing may crash, and a new session must work.
 */
static void case_out_of_order(void)
{
	const char *name = "messages out of order";
	struct siov_vu_vring_addr a = {.index = 0,
				       .desc_user_addr = 0x1000,
				       .avail_user_addr = 0x2000,
				       .used_user_addr = 0x3000};
	struct siov_vu_vring_state st = {.index = 0, .num = 1};
	uint64_t kick = 0, junk = ~0ull;
	struct siov_vu_mem_region r;
	int efd = eventfd(0, EFD_CLOEXEC);
	struct fe fe;

	fe_init(&fe);
	if (efd < 0 || fe_connect(&fe, H.bad_sock) || fe_mem_create(&fe, FE_MEM_LEN))
		return check(false, "%s: set-up", name);
	fe_send(&fe, VHOST_USER_SET_VRING_ADDR, VHOST_USER_VERSION, &a, sizeof(a), NULL, 0);
	fe_send(&fe, VHOST_USER_SET_VRING_KICK, VHOST_USER_VERSION, &kick, 8, &efd, 1);
	fe_send(&fe, VHOST_USER_SET_VRING_ENABLE, VHOST_USER_VERSION, &st, sizeof(st), NULL, 0);
	eventfd_write(efd, 1);
	check(fe_call(&fe, VHOST_USER_GET_VRING_BASE, &st, sizeof(st), NULL, 0) >= 0,
	      "%s: GET_VRING_BASE of a ring never started is answered", name);
	r = fe_region(&fe);
	struct siov_vu_mem_table t = {.nregions = 1, .regions = {r}};
	fe_send(&fe, VHOST_USER_SET_MEM_TABLE, VHOST_USER_VERSION, &t, 8 + sizeof(r), &fe.memfd, 1);
	fe_send(&fe, VHOST_USER_SET_FEATURES, VHOST_USER_VERSION, &junk, 8, NULL, 0);
	fe_send(&fe, VHOST_USER_SET_MEM_TABLE, VHOST_USER_VERSION, &t, 8 + sizeof(r), &fe.memfd, 1);
	check(fe_call(&fe, VHOST_USER_GET_FEATURES, NULL, 0, NULL, 0) > 0,
	      "%s: the connection still answers", name);
	close(efd);
	fe_close(&fe);
	check(wait_state("bad", "listening", 3000, NULL, 0), "%s: bad is back to listening", name);
	survived(name);
	bad_recovers(name);
}

/* Floods requests whose replies it never reads: siovd must not block on it. */
static void case_never_reads(void)
{
	const char *name = "front end that never reads its socket";
	struct fe fe;
	char out[4096];
	int i, rc = 0;

	if (negotiated(&fe))
		return check(false, "%s: set-up", name);
	fcntl(fe.sock, F_SETFL, O_NONBLOCK);
	/*
	 * Keep requesting, pausing while our own send buffer is full, until siovd
	 * gives up on us: how many requests that takes depends on how fast siovd
	 * drains them (an ASan build is slower), never on a fixed count.
	 */
	for (i = 0; i < 200000 && (rc == 0 || rc == -EAGAIN); i++) {
		rc = fe_send(&fe, VHOST_USER_GET_FEATURES, VHOST_USER_VERSION, NULL, 0, NULL, 0);
		if (rc == -EAGAIN) {
			struct pollfd p = {.fd = fe.sock, .events = POLLOUT};
			if (poll(&p, 1, 50) == 1 && (p.revents & (POLLHUP | POLLERR)))
				break;
		}
	}
	check(ctl(out, sizeof(out), "daemon_info", NULL) == 0,
	      "%s: daemon_info answers while the front end does not read (%d sent)", name, i);
	fcntl(fe.sock, F_SETFL, 0);
	expect_hangup(name, &fe);
	survived(name);
}

/* ---- rings and descriptors (a well set-up session, then bad contents) ---- */

static int bad_session(struct fe *fe, const char *name)
{
	int rc = fe_setup(fe, H.bad_sock, 5000);

	check(rc == 0, "%s: session on bad set up (%s)", name, rc ? strerror(-rc) : "ok");
	return rc;
}

/* Ends a descriptor attack: nothing completed, bad broken, and a new session works. */
static void end_ring_attack(const char *name, struct fe *fe, const char *why)
{
	check(fe_wait_used(fe, 300) == -ETIMEDOUT || why == NULL,
	      "%s: nothing completed on the bad chain", name);
	expect_broken(name, why);
	fe_close(fe);
	survived(name);
	bad_recovers(name);
}

static void case_ring_outside(void)
{
	const char *name = "SET_VRING_ADDR outside memory, then kick";
	struct siov_vu_vring_addr a = {
	    .desc_user_addr = 0x1000, .used_user_addr = 0x3000, .avail_user_addr = 0x2000};
	struct fe fe;
	int rc;

	if (negotiated(&fe))
		return check(false, "%s: set-up", name);
	{
		struct siov_vu_mem_table t = {.nregions = 1};
		t.regions[0] = fe_region(&fe);
		rc = (int)fe_call(&fe, VHOST_USER_SET_MEM_TABLE, &t, 40, &fe.memfd, 1);
	}
	if (!rc)
		rc = fe_ring_setup(&fe, &a);
	check(rc == 0 || rc == -EPROTO, "%s: ring set up or refused (%d)", name, rc);
	fe_kick(&fe);
	expect_broken(name, "outside");
	fe_close(&fe);
	survived(name);
	bad_recovers(name);
}

static void case_loop(void)
{
	const char *name = "descriptor loop";
	struct fe fe;

	if (bad_session(&fe, name))
		return;
	fe.desc[0] = (struct vring_desc){fe_addr(&fe, FE_HDR_OFF), 16, VRING_DESC_F_NEXT, 1};
	fe.desc[1] = (struct vring_desc){fe_addr(&fe, FE_DATA_OFF), 512, VRING_DESC_F_NEXT, 0};
	fe_push_head(&fe, 0);
	end_ring_attack(name, &fe, "loop");
}

static void case_avail_ahead(void)
{
	const char *name = "avail index 1000 ahead";
	struct fe fe;

	if (bad_session(&fe, name))
		return;
	fe_set_avail_idx(&fe, 1000);
	end_ring_attack(name, &fe, "ahead");
}

static void case_head_range(void)
{
	const char *name = "head index >= queue size";
	struct fe fe;

	if (bad_session(&fe, name))
		return;
	fe_push_head(&fe, FE_QUEUE_SIZE + 3);
	end_ring_attack(name, &fe, "out of range");
}

static void submit_rw(struct fe *fe, uint32_t type, uint64_t data, uint32_t len, uint16_t dflags)
{
	struct virtio_blk_outhdr *h = (void *)(fe->mem + FE_HDR_OFF);
	struct fe_buf b[3] = {{fe_addr(fe, FE_HDR_OFF), 16, 0},
			      {data, len, dflags},
			      {fe_addr(fe, FE_STATUS_OFF), 1, VRING_DESC_F_WRITE}};

	h->type = type;
	h->sector = 0;
	fe->mem[FE_STATUS_OFF] = 0xee;
	fe_submit(fe, b, 3);
}

static void case_addr_outside(void)
{
	const char *name = "descriptor address outside the memory table";
	struct fe fe;

	if (bad_session(&fe, name))
		return;
	submit_rw(&fe, VIRTIO_BLK_T_IN, 0x10000, 4096, VRING_DESC_F_WRITE);
	end_ring_attack(name, &fe, "outside");
}

static void case_addr_straddle(void)
{
	const char *name = "descriptor straddling the end of the region";
	struct fe fe;

	if (bad_session(&fe, name))
		return;
	submit_rw(&fe, VIRTIO_BLK_T_IN, fe_addr(&fe, FE_MEM_LEN - 512), 4096, VRING_DESC_F_WRITE);
	end_ring_attack(name, &fe, "outside");
}

static void case_addr_wrap(void)
{
	const char *name = "descriptor address+len wrapping 2^64";
	struct fe fe;

	if (bad_session(&fe, name))
		return;
	submit_rw(&fe, VIRTIO_BLK_T_IN, 0xfffffffffffff000ull, 0x2000, VRING_DESC_F_WRITE);
	end_ring_attack(name, &fe, "outside");
}

static void case_no_status(void)
{
	const char *name = "request without a status byte";
	struct fe_buf b[2];
	struct fe fe;

	if (bad_session(&fe, name))
		return;
	b[0] = (struct fe_buf){fe_addr(&fe, FE_HDR_OFF), 16, 0};
	b[1] = (struct fe_buf){fe_addr(&fe, FE_DATA_OFF), 512, 0};
	((struct virtio_blk_outhdr *)(fe.mem + FE_HDR_OFF))->type = VIRTIO_BLK_T_OUT;
	fe_submit(&fe, b, 2);
	end_ring_attack(name, &fe, "status");
}

/* A read into a device-readable buffer must fail or break, never fill it. */
static void case_read_into_readable(void)
{
	const char *name = "read request with a device-readable data buffer";
	char state[64] = "";
	struct fe fe;
	int st = -1;

	if (bad_session(&fe, name))
		return;
	/* Something distinct from the pattern at sector 0 for the read to bring in. */
	fe_verify_rw(&fe, 0, 4096, 4242);
	memset(fe.mem + FE_DATA_OFF, 0xab, 4096);
	submit_rw(&fe, VIRTIO_BLK_T_IN, fe_addr(&fe, FE_DATA_OFF), 4096, 0);
	if (fe_wait_used(&fe, 1000) == 0)
		st = fe.mem[FE_STATUS_OFF];
	vdev_state("bad", state, sizeof(state), NULL, 0);
	check(memchr(fe.mem + FE_DATA_OFF, 0xab, 1) &&
		  !pattern_check(fe.mem + FE_DATA_OFF, 4096, 4242),
	      "%s: the read-only buffer was not written", name);
	check((st >= 0 && st != VIRTIO_BLK_S_OK) || !strcmp(state, "broken"),
	      "%s: failed or broke bad (status %d, state %s)", name, st, state);
	fe_close(&fe);
	survived(name);
	bad_recovers(name);
}

static void case_indirect_outside(void)
{
	const char *name = "indirect table outside memory";
	struct fe_buf b = {0x10000, 4 * 16, VRING_DESC_F_INDIRECT};
	struct fe fe;

	if (bad_session(&fe, name))
		return;
	fe_submit(&fe, &b, 1);
	end_ring_attack(name, &fe, "indirect");
}

/* An indirect chain of 300 one-byte segments: more iovecs than siovd allows. */
static void case_indirect_long(void)
{
	const char *name = "indirect chain of 300 segments";
	struct vring_desc *t;
	struct fe_buf b;
	struct fe fe;
	unsigned i;

	if (bad_session(&fe, name))
		return;
	t = (void *)(fe.mem + FE_SCRATCH_OFF);
	for (i = 0; i < 300; i++)
		t[i] = (struct vring_desc){fe_addr(&fe, FE_DATA_OFF + i), 1,
					   (uint16_t)(VRING_DESC_F_WRITE | VRING_DESC_F_NEXT),
					   (uint16_t)(i + 1)};
	t[0] = (struct vring_desc){fe_addr(&fe, FE_HDR_OFF), 16, VRING_DESC_F_NEXT, 1};
	t[299].flags = VRING_DESC_F_WRITE;
	((struct virtio_blk_outhdr *)(fe.mem + FE_HDR_OFF))->type = VIRTIO_BLK_T_IN;
	b = (struct fe_buf){fe_addr(&fe, FE_SCRATCH_OFF), 300 * 16, VRING_DESC_F_INDIRECT};
	fe_submit(&fe, &b, 1);
	end_ring_attack(name, &fe, "segments");
}

/* ---- packed rings (VIRTIO_F_RING_PACKED): the same rules, another format ---- */

static int bad_packed_session(struct fe *fe, const char *name)
{
	int rc = fe_setup_packed(fe, H.bad_sock, 5000);

	check(rc == 0, "%s: packed session on bad set up (%s)", name, rc ? strerror(-rc) : "ok");
	return rc;
}

/* Writes a chain at @slot with this lap's (or the next lap's) flags, head flags last; no kick. */
static void pk_write(struct fe *fe, uint16_t slot, const struct fe_buf *b, unsigned n, uint16_t id,
		     bool next_lap)
{
	unsigned i;

	for (i = n; i-- > 0;) {
		struct vring_packed_desc *d = &fe->pdesc[(slot + i) % fe->num];
		d->addr = b[i].addr;
		d->len = b[i].len;
		d->id = id;
		__atomic_store_n(&d->flags,
				 (uint16_t)(b[i].flags | (i + 1 < n ? VRING_DESC_F_NEXT : 0) |
					    fe_pk_avail_flags(fe, next_lap)),
				 __ATOMIC_RELEASE);
	}
	fe->pk_pending++;
}

/* Good I/O on a packed ring, round the ring several times, and the state siovd reports. */
static void case_packed_works(void)
{
	const char *name = "packed ring: verified I/O";
	struct siov_vu_vring_state st = {0, 0};
	struct siov_vu_msg m;
	struct fe fe;
	bool ok = true;
	int i;

	if (bad_packed_session(&fe, name))
		return;
	/* 3 slots per request on a ring of 16: 12 requests go round it twice and a bit. */
	for (i = 0; i < 6 && ok; i++)
		ok = fe_verify_rw(&fe, 64 + 16 * (uint64_t)i, 4096, 300 + (uint32_t)i);
	check(ok, "%s: 12 requests verify on a packed ring", name);
	/* GET_VRING_BASE: position 36 % 16 = 4 in lap 3 (wrap 1), used = avail. */
	if (fe_send(&fe, VHOST_USER_GET_VRING_BASE, VHOST_USER_VERSION, &st, sizeof(st), NULL, 0) ||
	    fe_recv(&fe, &m, 5000) != 1)
		m.payload.state.num = 0;
	check(m.payload.state.num == (0x8004u | 0x8004u << 16),
	      "%s: GET_VRING_BASE gives avail and used with wrap counters (0x%x)", name,
	      m.payload.state.num);
	fe_close(&fe);
	survived(name);
}

/* One chain per attack; buffer addresses are offsets into the session's memory. */
static void pk_attack(const char *name, const struct fe_buf *b, unsigned n, uint16_t id,
		      const char *why)
{
	struct fe_buf r[4];
	struct fe fe;
	unsigned i;

	if (bad_packed_session(&fe, name))
		return;
	for (i = 0; i < n && i < 4; i++)
		r[i] = (struct fe_buf){fe_addr(&fe, b[i].addr), b[i].len, b[i].flags};
	fe_pk_submit(&fe, r, n, id);
	end_ring_attack(name, &fe, why);
}

static void case_packed_chains(void)
{
	const struct fe_buf blk[3] = {{FE_HDR_OFF, 16, 0},
				      {FE_DATA_OFF, 512, VRING_DESC_F_WRITE},
				      {FE_STATUS_OFF, 1, VRING_DESC_F_WRITE}};
	const struct fe_buf huge[1] = {{FE_DATA_OFF, 0xfffffff0u, VRING_DESC_F_WRITE}};
	const struct fe_buf ind_next[2] = {{FE_SCRATCH_OFF, 32, VRING_DESC_F_INDIRECT},
					   {FE_DATA_OFF, 8, 0}};
	const struct fe_buf ind_len[1] = {{FE_SCRATCH_OFF, 24, VRING_DESC_F_INDIRECT}};

	pk_attack("packed: buffer id past the ring", blk, 3, FE_QUEUE_SIZE + 5, "out of range");
	pk_attack("packed: huge length", huge, 1, 0, "outside the memory table");
	pk_attack("packed: indirect descriptor with NEXT", ind_next, 2, 0, "with NEXT set");
	pk_attack("packed: indirect table of 24 bytes", ind_len, 1, 0, "bad indirect table length");
}

/* The second descriptor of a chain carries the next lap's flags: the driver lies about it. */
static void case_packed_wrap_lie(void)
{
	const char *name = "packed: chain with a descriptor of the wrong lap";
	struct fe fe;

	if (bad_packed_session(&fe, name))
		return;
	fe.pdesc[1] = (struct vring_packed_desc){
	    fe_addr(&fe, FE_DATA_OFF), 512, 0,
	    (uint16_t)(VRING_DESC_F_WRITE | fe_pk_avail_flags(&fe, true))};
	fe.pdesc[0] = (struct vring_packed_desc){fe_addr(&fe, FE_HDR_OFF), 16, 0, 0};
	__atomic_store_n(&fe.pdesc[0].flags,
			 (uint16_t)(VRING_DESC_F_NEXT | fe_pk_avail_flags(&fe, false)),
			 __ATOMIC_RELEASE);
	fe.pk_pending = 1;
	fe_kick(&fe);
	end_ring_attack(name, &fe, "not available");
}

/* Two chains with one buffer id, both available before the kick. */
static void case_packed_duplicate_id(void)
{
	const char *name = "packed: one buffer id twice in flight";
	struct fe fe;
	struct fe_buf b[3];

	if (bad_packed_session(&fe, name))
		return;
	b[0] = (struct fe_buf){fe_addr(&fe, FE_HDR_OFF), 16, 0};
	b[1] = (struct fe_buf){fe_addr(&fe, FE_DATA_OFF), 512, VRING_DESC_F_WRITE};
	b[2] = (struct fe_buf){fe_addr(&fe, FE_STATUS_OFF), 1, VRING_DESC_F_WRITE};
	((struct virtio_blk_outhdr *)(fe.mem + FE_HDR_OFF))->type = VIRTIO_BLK_T_IN;
	pk_write(&fe, 3, b, 3, 7, false); /* the second chain first: invisible until slot 0 is */
	pk_write(&fe, 0, b, 3, 7, false);
	fe_kick(&fe);
	expect_broken(name, "already in flight");
	fe_close(&fe);
	survived(name);
	bad_recovers(name);
}

/* Every slot available and chained: a chain that never ends within the ring. */
static void case_packed_endless(void)
{
	const char *name = "packed: every slot chained with NEXT";
	struct fe_buf b[FE_QUEUE_SIZE];
	struct fe fe;
	unsigned i;

	if (bad_packed_session(&fe, name))
		return;
	for (i = 0; i < FE_QUEUE_SIZE; i++)
		b[i] = (struct fe_buf){fe_addr(&fe, FE_DATA_OFF), 8, VRING_DESC_F_WRITE};
	pk_write(&fe, 0, b, FE_QUEUE_SIZE, 0, false);
	fe.pdesc[FE_QUEUE_SIZE - 1].flags |= VRING_DESC_F_NEXT;
	fe_kick(&fe);
	end_ring_attack(name, &fe, "chain");
}

/* SET_VRING_BASE with a position past the ring: refused at start, not trusted. */
static void case_packed_base(void)
{
	const char *name = "packed: SET_VRING_BASE past the ring";
	struct siov_vu_vring_state st = {0, 0x8000u | 40u};
	int kick = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	uint64_t v = 0;
	struct fe fe;

	if (kick < 0 || bad_packed_session(&fe, name)) {
		if (kick >= 0)
			close(kick);
		return;
	}
	fe_call(&fe, VHOST_USER_GET_VRING_BASE, &(struct siov_vu_vring_state){0, 0}, sizeof(st),
		NULL, 0);
	check(fe_call(&fe, VHOST_USER_SET_VRING_BASE, &st, sizeof(st), NULL, 0) == 0,
	      "%s: SET_VRING_BASE accepted while stopped", name);
	fe_call(&fe, VHOST_USER_SET_VRING_KICK, &v, 8, &kick, 1);
	close(kick);
	expect_broken(name, "past the ring");
	fe_close(&fe);
	survived(name);
	bad_recovers(name);
}

/* Past the end of the window: a plain I/O error, and the neighbour untouched. */
/* ---- VIRTIO_F_IN_ORDER: negotiated, then not kept by the driver ---- */

static int bad_in_order_session(struct fe *fe, const char *name, bool packed)
{
	int rc = fe_setup_in_order(fe, H.bad_sock, 5000, packed);

	check(rc == 0, "%s: in-order session on bad set up (%s)", name, rc ? strerror(-rc) : "ok");
	return rc;
}

/* Verified I/O on both ring formats, and vdev_stats says the queue runs in order. */
static void case_in_order_works(void)
{
	const char *name = "in order: verified I/O, split and packed";
	char out[65536];
	struct fe fe;
	bool ok = true;
	int packed;

	for (packed = 0; packed < 2; packed++) {
		if (bad_in_order_session(&fe, name, packed))
			return;
		for (int i = 0; i < 8 && ok; i++)
			ok = fe_verify_rw(&fe, 64 + 16 * (uint64_t)i, 4096, 500 + (uint32_t)i);
		check(ok, "%s: 16 requests verify (%s ring)", name, packed ? "packed" : "split");
		check(ctl(out, sizeof(out), "vdev_stats", "--name", "bad", NULL) == 0 &&
			  strstr(out, "\"in_order\": true") != NULL,
		      "%s: vdev_stats shows the queue in order (%s ring)", name,
		      packed ? "packed" : "split");
		fe_close(&fe);
	}
	survived(name);
}

/* The driver makes one head available twice: it would be used twice. */
static void case_in_order_reused_head(void)
{
	const char *name = "in order: one head made available twice";
	struct fe fe;

	if (bad_in_order_session(&fe, name, false))
		return;
	((struct virtio_blk_outhdr *)(fe.mem + FE_HDR_OFF))->type = VIRTIO_BLK_T_IN;
	fe.desc[0] = (struct vring_desc){fe_addr(&fe, FE_HDR_OFF), 16, VRING_DESC_F_NEXT, 1};
	fe.desc[1] = (struct vring_desc){fe_addr(&fe, FE_DATA_OFF), 512,
					 VRING_DESC_F_NEXT | VRING_DESC_F_WRITE, 2};
	fe.desc[2] = (struct vring_desc){fe_addr(&fe, FE_STATUS_OFF), 1, VRING_DESC_F_WRITE, 0};
	/* Both entries in one index update: the first cannot complete before the second shows. */
	fe.avail->ring[0] = fe.avail->ring[1] = 0;
	fe_set_avail_idx(&fe, 2);
	expect_broken(name, "in flight");
	fe_close(&fe);
	survived(name);
	bad_recovers(name);
}

/*
 * A driver that negotiated IN_ORDER must take descriptors in ring order;
 * this one chains 5 -> 11 -> 2.  siovd never relied on that: the request
 * completes normally and the ring goes on.
 */
static void case_in_order_chain_out_of_ring_order(void)
{
	const char *name = "in order: chain not in ring order";
	struct virtio_blk_outhdr *h;
	struct fe fe;

	if (bad_in_order_session(&fe, name, false))
		return;
	h = (void *)(fe.mem + FE_HDR_OFF);
	*h = (struct virtio_blk_outhdr){.type = VIRTIO_BLK_T_IN, .sector = 8};
	fe.mem[FE_STATUS_OFF] = 0xee;
	fe.desc[5] = (struct vring_desc){fe_addr(&fe, FE_HDR_OFF), 16, VRING_DESC_F_NEXT, 11};
	fe.desc[11] = (struct vring_desc){fe_addr(&fe, FE_DATA_OFF), 4096,
					  VRING_DESC_F_NEXT | VRING_DESC_F_WRITE, 2};
	fe.desc[2] = (struct vring_desc){fe_addr(&fe, FE_STATUS_OFF), 1, VRING_DESC_F_WRITE, 0};
	fe_push_head(&fe, 5);
	check(fe_wait_used(&fe, 3000) == 0 && fe.used->ring[0].id == 5 &&
		  fe.mem[FE_STATUS_OFF] == VIRTIO_BLK_S_OK,
	      "%s: completed with status OK under its own head", name);
	check(fe_verify_rw(&fe, 200, 4096, 901), "%s: the ring goes on and verifies", name);
	fe_close(&fe);
	survived(name);
}

static void case_past_end(void)
{
	const char *name = "I/O past the end of the window";
	char state[64] = "";
	struct fe fe;
	int st;

	if (bad_session(&fe, name))
		return;
	st = fe_blk(&fe, VIRTIO_BLK_T_IN, BAD_SECTORS - 1, 4096, 3000);
	check(st == VIRTIO_BLK_S_IOERR, "%s: read straddling the end gets IOERR (%d)", name, st);
	pattern_fill(fe.mem + FE_DATA_OFF, 4096, 666);
	st = fe_blk(&fe, VIRTIO_BLK_T_OUT, BAD_SECTORS - 1, 4096, 3000);
	check(st == VIRTIO_BLK_S_IOERR, "%s: write straddling the end gets IOERR (%d)", name, st);
	st = fe_blk(&fe, VIRTIO_BLK_T_OUT, BAD_SECTORS, 512, 3000);
	check(st == VIRTIO_BLK_S_IOERR, "%s: write just past the end gets IOERR (%d)", name, st);
	/* 2^55 sectors of 512 bytes wrap to offset 0 in 64-bit arithmetic. */
	st = fe_blk(&fe, VIRTIO_BLK_T_OUT, 1ull << 55, 512, 3000);
	check(st == VIRTIO_BLK_S_IOERR, "%s: write at sector 2^55 gets IOERR (%d)", name, st);
	vdev_state("bad", state, sizeof(state), NULL, 0);
	check(!strcmp(state, "running"), "%s: bad not broken (%s)", name, state);
	check(fe_verify_rw(&fe, 8, 4096, 99), "%s: bad still serves I/O on the same session", name);
	fe_close(&fe);
	survived(name);
}

/* The region vanishes under a running ring: the ring must stop, siovd not touch it. */
static void case_region_removed(void)
{
	const char *name = "memory region removed under a running ring";
	struct siov_vu_mem_reg r = {0};
	struct fe fe;
	int64_t ack;

	if (bad_session(&fe, name))
		return;
	r.region = fe_region(&fe);
	ack = fe_call(&fe, VHOST_USER_REM_MEM_REG, &r, sizeof(r), NULL, 0);
	note("REM_MEM_REG ack %lld", (long long)ack);
	submit_rw(&fe, VIRTIO_BLK_T_IN, fe_addr(&fe, FE_DATA_OFF), 4096, VRING_DESC_F_WRITE);
	check(fe_wait_used(&fe, 500) == -ETIMEDOUT || ack != 0,
	      "%s: no request served from memory that is gone", name);
	fe_close(&fe);
	survived(name);
	bad_recovers(name);
}

/* ---- memory the memfd does not back (SIGBUS territory) ---- */

static void restart_if_dead(const char *name)
{
	int rc;

	if (daemon_alive())
		return;
	fe_close(&H.good);
	rc = daemon_start();
	if (!rc)
		rc = good_start();
	note("%s: siovd restarted for the remaining cases (%s)", name, rc ? strerror(-rc) : "ok");
}

/* Queues a read whose data buffer lies in the part of the region no file backs. */
static void read_beyond_eof(struct fe *fe)
{
	struct virtio_blk_outhdr *h = (void *)(fe->mem + FE_HDR_OFF);
	struct fe_buf b[3] = {{fe_addr(fe, FE_HDR_OFF), 16, 0},
			      {fe_addr(fe, FE_DATA_OFF), 4096, VRING_DESC_F_WRITE},
			      {fe_addr(fe, FE_STATUS_OFF), 1, VRING_DESC_F_WRITE}};

	h->type = VIRTIO_BLK_T_IN;
	h->sector = 0;
	fe->mem[FE_STATUS_OFF] = 0xee;
	fe_submit(fe, b, 3);
}

static void case_region_beyond_file(void)
{
	const char *name = "region larger than its memfd";
	struct siov_vu_mem_table t = {.nregions = 1};
	struct fe fe;
	int64_t ack;

	fe_init(&fe);
	/* The rings and headers sit in the first 128 KiB; the data buffer past it. */
	if (fe_connect(&fe, H.bad_sock) || fe_negotiate(&fe) || fe_mem_create(&fe, FE_DATA_OFF))
		return check(false, "%s: set-up", name);
	t.regions[0] = fe_region(&fe);
	ack = fe_call(&fe, VHOST_USER_SET_MEM_TABLE, &t, 40, &fe.memfd, 1);
	if (ack == 0 && fe_ring_setup(&fe, NULL) == 0) {
		note("%s: SET_MEM_TABLE accepted; reading into the part beyond EOF", name);
		read_beyond_eof(&fe);
		fe_wait_used(&fe, 1000);
	}
	fe_close(&fe);
	survived(name);
	restart_if_dead(name);
}

static void case_memfd_shrinks(void)
{
	const char *name = "memfd shrinks under a running ring";
	struct fe fe;

	if (bad_session(&fe, name))
		return;
	ftruncate(fe.memfd, FE_DATA_OFF);
	read_beyond_eof(&fe);
	fe_wait_used(&fe, 1000);
	fe_close(&fe);
	survived(name);
	restart_if_dead(name);
}

/* ---- set-up and tear-down ---- */

/* The two VDEV sockets live in siovd's directory, beside rpc.sock. */
static void name_sockets(void)
{
	snprintf(H.good_sock, sizeof(H.good_sock), "%s/good.sock", H.sd.dir);
	snprintf(H.bad_sock, sizeof(H.bad_sock), "%s/bad.sock", H.sd.dir);
}

static int create_vdevs(void)
{
	char out[4096], off[32];

	if (ctl(out, sizeof(out), "backend_create", "--name", "b0", "--type", "ram", "--size",
		"67108864", NULL))
		return -EIO;
	if (ctl(out, sizeof(out), "vdev_create", "--name", "bad", "--type", "blk", "--backend",
		"b0", "--offset", "0", "--size", "16777216", "--socket", H.bad_sock, NULL))
		return -EIO;
	snprintf(off, sizeof(off), "%u", GOOD_OFFSET);
	return ctl(out, sizeof(out), "vdev_create", "--name", "good", "--type", "blk", "--backend",
		   "b0", "--offset", off, "--size", "16777216", "--socket", H.good_sock, NULL)
		   ? -EIO
		   : 0;
}

static void final_stop(void)
{
	fe_close(&H.good);
	/* A SIGBUS under ASan is the crash already reported by its own case. */
	H.sd.allowed_report = "ERROR: AddressSanitizer: BUS";
	harness_stop();
	check(access(H.sd.rpc, F_OK) && access(H.good_sock, F_OK) && access(H.bad_sock, F_OK),
	      "SIGTERM: siovd removed its sockets");
}

static void run_attacks(void)
{
	case_oversized();
	case_truncated();
	case_bad_version();
	case_many_fds();
	case_nregions();
	case_fewer_fds();
	case_overlap();
	case_vring_num(0);
	case_vring_num(3);
	case_vring_num(65536);
	case_set_config_wrap();
	case_queue_index();
	case_never_reads();
	case_out_of_order();
	case_ring_outside();
	case_loop();
	case_avail_ahead();
	case_head_range();
	case_addr_outside();
	case_addr_straddle();
	case_addr_wrap();
	case_no_status();
	case_read_into_readable();
	case_indirect_outside();
	case_indirect_long();
	case_packed_works();
	case_packed_chains();
	case_packed_wrap_lie();
	case_packed_duplicate_id();
	case_packed_endless();
	case_packed_base();
	case_in_order_works();
	case_in_order_reused_head();
	case_in_order_chain_out_of_ring_order();
	case_past_end();
	case_region_removed();
	/* Last: these may kill siovd (it is restarted if so). */
	case_region_beyond_file();
	case_memfd_shrinks();
}

int main(int argc, char **argv)
{
	int rc;

	if ((rc = harness_begin(argc, argv)))
		return rc;
	if ((rc = daemon_start()) || (name_sockets(), rc = create_vdevs())) {
		printf("FAIL: cannot start siovd with two VDEVs: %s\n", strerror(-rc));
		return 1;
	}
	rc = good_start();
	check(rc == 0, "good: well-behaved front end writes and verifies (%s)",
	      rc ? strerror(-rc) : "ok");
	if (rc)
		return 1;
	check(good_verify(), "good: verifies before the attacks");
	run_attacks();
	check(good_verify(), "good: verifies after the attacks");
	final_stop();
	printf("%d passed, %d failed\n", H.passed, H.failed);
	fflush(stdout);
	return H.failed ? 1 : 0;
}
