/*
 * fuzz_state: recovery of a state dir (lib/ctrl/state.c), which reads files
 * a crash, a disk or an operator may have left in any shape.  The input is
 * split at the first two "\n\x00" markers into DIR/siovd.json,
 * DIR/siovd.journal.0 and DIR/siovd.journal.1 (a part that is empty is no
 * file), in a fresh temporary directory per input.
 *
 * Checks: a read-only open either succeeds or fails with a message; if it
 * succeeds, a writable open (which cuts a torn tail and starts the writer)
 * must succeed too, and after its close (which compacts everything into a
 * new snapshot) a read-only open must find the same objects and the same
 * last change: compaction never loses or invents anything.
 */
#include <dirent.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "fuzz_common.h"
#include "siov_internal/state.h"

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static char g_dir[64];

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
	strcpy(g_dir, "/tmp/fuzz-state-XXXXXX");
	return mkdtemp(g_dir) ? 0 : 1;
}

static void put_file(const char *name, const uint8_t *p, size_t n)
{
	char path[128];
	int fd;

	if (!n)
		return;
	snprintf(path, sizeof(path), "%s/%s", g_dir, name);
	fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
	if (fd < 0)
		abort();
	if (write(fd, p, n) != (ssize_t)n)
		abort();
	close(fd);
}

static void clear_dir(void)
{
	DIR *d = opendir(g_dir);
	struct dirent *e;
	char path[512];

	while (d && (e = readdir(d))) {
		if (strcmp(e->d_name, ".") && strcmp(e->d_name, "..")) {
			snprintf(path, sizeof(path), "%s/%s", g_dir, e->d_name);
			unlink(path);
		}
	}
	if (d)
		closedir(d);
}

/* The next part of the input, up to a "\n\0" marker (kept: the '\n' ends a line). */
static size_t part(const uint8_t *p, size_t n, size_t *skip)
{
	for (size_t i = 0; i + 1 < n; i++)
		if (p[i] == '\n' && p[i + 1] == 0) {
			*skip = i + 2;
			return i + 1;
		}
	*skip = n;
	return n;
}

static int open_count(bool readonly, uint64_t *entries, uint64_t *seq)
{
	struct siov_state_opts o = {.dir = g_dir, .readonly = readonly, .compact_records = 2};
	struct siov_state *st;
	struct siov_err err = {0};
	int rc = siov_state_open(&o, &st, &err);

	if (rc < 0) {
		if (!err.msg[0])
			abort(); /* a refusal must say why */
		return rc;
	}
	siov_state_recovered(st, entries, seq);
	siov_state_close(st);
	return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static const char *const names[] = {"siovd.json", "siovd.journal.0", "siovd.journal.1"};
	uint64_t e1 = 0, s1 = 0, e2 = 0, s2 = 0;
	size_t skip;

	clear_dir();
	for (int i = 0; i < 3 && size; i++) {
		size_t n = part(data, size, &skip);
		put_file(names[i], data, n);
		data += skip;
		size -= skip;
	}
	if (open_count(true, &e1, &s1) == 0) {
		if (open_count(false, &e2, &s2) < 0 || e2 != e1 || s2 != s1)
			abort();
		if (open_count(true, &e2, &s2) < 0 || e2 != e1 || s2 != s1)
			abort(); /* after compaction */
	}
	return 0;
}
