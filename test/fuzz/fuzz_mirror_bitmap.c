/*
 * libFuzzer target: the mirror's bitmap file (STATE_DIR/mirror-NAME.bitmap),
 * which a restarted siovd reads back: a state file, so hostile (edited by
 * hand, truncated, left by another version, corrupted on disk).
 *
 * Input: byte 0 picks the mode.  Even: the rest is the whole file (cut or
 * zero-padded to the size a mirror of two 1 MiB members expects, so that the
 * header is parsed rather than the file dismissed for its size; a shorter or
 * longer file is tried when byte 1 says so).  Odd: the rest is a list of
 * (offset u16, value u8) edits applied to a valid file that such a mirror
 * wrote, so the fuzzer starts from a header that passes and breaks it a few
 * bytes at a time.  The mirror is then opened over two ram members, looked at
 * and closed.
 *
 * Checks: opening never crashes and either fails with a message or gives a
 * mirror with both members listed, at least one of them in sync, every state
 * a known one and every reason a terminated string of bounded length.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "fuzz_common.h"
#include "siov_internal/backend.h"
#include "siov_internal/mirror.h"

#define MEMBER_SIZE (1u << 20)
#define FILE_MAX    (64u << 10)

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static struct siov_backend *g_a, *g_b;
static char g_path[300];
static uint8_t g_template[FILE_MAX];
static size_t g_template_len;

static struct siov_backend *ram(const char *name)
{
	struct siov_backend_conf c = {.type = SIOV_BACKEND_RAM, .size = MEMBER_SIZE};
	struct siov_err err = {0};
	struct siov_backend *bd = NULL;

	snprintf(c.name, sizeof(c.name), "%s", name);
	if (siov_backend_open(&c, &bd, &err))
		abort();
	return bd;
}

static int open_mirror(struct siov_backend **out, struct siov_err *err)
{
	struct siov_backend_conf c = {.name = "m", .type = SIOV_BACKEND_MIRROR};
	struct siov_mirror_member mm[2] = {{.bd = g_a}, {.bd = g_b}};
	struct siov_mirror_opts o = {.bitmap_path = g_path};

	return siov_mirror_open(&c, mm, 2, &o, out, err);
}

static void write_file(const uint8_t *p, size_t n)
{
	int fd = open(g_path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);

	if (fd < 0 || (n && write(fd, p, n) != (ssize_t)n))
		abort();
	close(fd);
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
	struct siov_backend *m = NULL;
	struct siov_err err = {0};
	int fd;

	snprintf(g_path, sizeof(g_path), "%s/mirror-m.bitmap", fuzz_tmpdir("fuzz-bitmap"));
	g_a = ram("a");
	g_b = ram("b");
	/* A valid file, as a mirror leaves it after a clean close. */
	if (open_mirror(&m, &err))
		abort();
	siov_backend_close(m);
	fd = open(g_path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		abort();
	g_template_len = (size_t)read(fd, g_template, sizeof(g_template));
	close(fd);
	if (g_template_len == 0 || g_template_len >= sizeof(g_template))
		abort();
	return 0;
}

static void check(struct siov_backend *m)
{
	struct siov_mirror_info info;
	unsigned i, in_sync = 0;

	siov_mirror_get_info(m, &info);
	if (info.nmembers != 2)
		abort();
	for (i = 0; i < info.nmembers; i++) {
		const struct siov_member_info *mi = &info.members[i];

		if (mi->state > SIOV_MEMBER_FAILED || strnlen(mi->reason, 200) >= 128)
			abort();
		in_sync += mi->state == SIOV_MEMBER_IN_SYNC;
	}
	if (!in_sync)
		abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static uint8_t file[FILE_MAX];
	struct siov_backend *m = NULL;
	struct siov_err err = {0};
	struct fz f;
	size_t n = g_template_len;
	uint8_t mode;

	fz_init(&f, data, size);
	mode = fz_u8(&f);
	if (mode & 1) {
		memcpy(file, g_template, n);
		while (f.left >= 3) {
			uint16_t off = fz_u16(&f);
			file[off % n] = fz_u8(&f);
		}
	} else {
		memset(file, 0, n);
		fz_bytes(&f, file, SIOV_MIN(f.left, n));
		if (mode & 2)
			n = size % n; /* a truncated file */
	}
	write_file(file, n);
	if (open_mirror(&m, &err) == 0) {
		check(m);
		siov_backend_close(m);
	} else if (!err.msg[0]) {
		abort(); /* a refusal says why */
	}
	return 0;
}
