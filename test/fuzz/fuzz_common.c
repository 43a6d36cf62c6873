/* Helpers shared by the fuzz targets; see fuzz_common.h. */
#include <dirent.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

#include "fuzz_common.h"
#include "siov_internal/log.h"

/* ---- input reader ---- */

void fz_bytes(struct fz *f, void *out, size_t n)
{
	size_t take = n < f->left ? n : f->left;

	memcpy(out, f->p, take);
	memset((uint8_t *)out + take, 0, n - take);
	f->p += take;
	f->left -= take;
}

uint8_t fz_u8(struct fz *f)
{
	uint8_t v;

	fz_bytes(f, &v, sizeof(v));
	return v;
}

uint16_t fz_u16(struct fz *f)
{
	uint16_t v;

	fz_bytes(f, &v, sizeof(v));
	return v;
}

uint32_t fz_u32(struct fz *f)
{
	uint32_t v;

	fz_bytes(f, &v, sizeof(v));
	return v;
}

uint64_t fz_u64(struct fz *f)
{
	uint64_t v;

	fz_bytes(f, &v, sizeof(v));
	return v;
}

/* ---- quiet logging: replaces lib/util/log.c in the fuzzers ---- */

static int g_log = -1;

void siov_log_set_level(enum siov_log_level level)
{
}

void siov_log(enum siov_log_level level, const char *fmt, ...)
{
	char line[1024];
	va_list ap;
	int n;

	if (g_log < 0)
		g_log = getenv("SIOV_FUZZ_LOG") != NULL;
	if (!g_log)
		return;
	va_start(ap, fmt);
	n = vsnprintf(line, sizeof(line) - 1, fmt, ap);
	va_end(ap);
	if (n < 0)
		return;
	if (n > (int)sizeof(line) - 2)
		n = sizeof(line) - 2;
	line[n++] = '\n';
	(void)!write(STDERR_FILENO, line, n);
}

/* ---- guest memory ---- */

/* Front-end addresses and file offsets unrelated to guest-physical ones. */
static const struct siov_mem_desc default_layout[3] = {
    {.gpa = FG_GPA_R0, .size = FG_REG_SIZE, .uva = 0x7f0000000000ull, .fd_offset = 0},
    {.gpa = FG_GPA_R1, .size = FG_REG_SIZE, .uva = 0x7f0000100000ull, .fd_offset = 2 * FG_REG_SIZE},
    {.gpa = FG_GPA_R2, .size = FG_REG_SIZE, .uva = 0x7f0000300000ull, .fd_offset = FG_REG_SIZE},
};

void fuzz_guest_init(struct fuzz_guest *g)
{
	memset(g, 0, sizeof(*g));
	g->fd = memfd_create("siov-fuzz-guest", MFD_CLOEXEC);
	if (g->fd < 0 || ftruncate(g->fd, FG_FD_SIZE) < 0)
		abort();
	g->base = mmap(NULL, FG_FD_SIZE, PROT_READ | PROT_WRITE, MAP_SHARED, g->fd, 0);
	if (g->base == MAP_FAILED)
		abort();
	siov_memtable_init(&g->mt);
	fuzz_guest_reset(g, NULL, 0);
}

void fuzz_guest_reset(struct fuzz_guest *g, const struct siov_mem_desc *custom, unsigned ncustom)
{
	const struct siov_mem_desc *r = custom ? custom : default_layout;
	unsigned i, n = custom ? ncustom : 3;

	siov_memtable_clear(&g->mt);
	memset(g->base, 0, FG_FD_SIZE);
	g->nregions = 0;
	for (i = 0; i < n && i < 3; i++) {
		/* A region the table refuses is simply absent: that is what we test. */
		if (siov_memtable_add(&g->mt, &r[i], g->fd) == 0)
			g->regions[g->nregions++] = r[i];
	}
}

uint8_t *fuzz_guest_ptr(const struct fuzz_guest *g, uint64_t gpa, uint64_t len)
{
	unsigned i;

	for (i = 0; i < g->nregions; i++) {
		const struct siov_mem_desc *r = &g->regions[i];
		if (gpa >= r->gpa && gpa - r->gpa < r->size && len <= r->size - (gpa - r->gpa))
			return g->base + r->fd_offset + (gpa - r->gpa);
	}
	return NULL;
}

/* ---- fds ---- */

int fuzz_count_fds(void)
{
	DIR *d = opendir("/proc/self/fd");
	struct dirent *e;
	int n = 0;

	if (!d)
		return -1;
	while ((e = readdir(d))) {
		char path[64], target[64];
		ssize_t len;

		if (e->d_name[0] == '.')
			continue;
		/*
		 * Pipes are the sanitizers' (llvm-symbolizer, started the first
		 * time a report or a suppression needs a symbol); siovd has none.
		 */
		snprintf(path, sizeof(path), "/proc/self/fd/%s", e->d_name);
		len = readlink(path, target, sizeof(target) - 1);
		if (len > 0 && (target[len] = '\0', !strncmp(target, "pipe:", 5)))
			continue;
		n++;
	}
	closedir(d);
	return n - 1; /* the directory's own fd */
}

void fuzz_check_fds(const char *target)
{
	static int baseline = -1;
	int n = fuzz_count_fds();

	if (baseline < 0) {
		baseline = n;
		return;
	}
	if (n > baseline) {
		fprintf(stderr, "%s: fd leak: %d fds open, %d after the first input\n", target, n,
			baseline);
		abort();
	}
}

/* ---- temporary directory ---- */

static char g_tmpdir[128];

const char *fuzz_tmpdir(const char *tag)
{
	const char *t = getenv("TMPDIR");

	if (g_tmpdir[0])
		return g_tmpdir;
	snprintf(g_tmpdir, sizeof(g_tmpdir), "%s/siov-%s-XXXXXX", t && strlen(t) < 60 ? t : "/tmp",
		 tag);
	if (!mkdtemp(g_tmpdir))
		abort();
	atexit(fuzz_tmpdir_cleanup);
	return g_tmpdir;
}

void fuzz_tmpdir_cleanup(void)
{
	char path[512];
	struct dirent *e;
	DIR *d;

	if (!g_tmpdir[0] || !(d = opendir(g_tmpdir)))
		return;
	while ((e = readdir(d))) {
		if (e->d_name[0] == '.' && (!e->d_name[1] || !strcmp(e->d_name, "..")))
			continue;
		snprintf(path, sizeof(path), "%s/%s", g_tmpdir, e->d_name);
		unlink(path);
	}
	closedir(d);
	rmdir(g_tmpdir);
}

void fuzz_check_chain(const struct siov_vq *vq, const struct siov_vq_chain *c, const char *target)
{
	const struct siov_memtable *mt = vq->mem;
	uint64_t total = 0;
	unsigned i, j;

	if (c->out_num + c->in_num > SIOV_VQ_MAX_IOV || c->head >= vq->num) {
		fprintf(stderr, "%s: chain head %u with %u+%u iovecs\n", target, c->head,
			c->out_num, c->in_num);
		abort();
	}
	for (i = 0; i < c->out_num + c->in_num; i++) {
		const uint8_t *b = c->iov[i].iov_base;
		size_t l = c->iov[i].iov_len;

		for (j = 0; j < mt->nregions; j++) {
			const struct siov_mem_region *m = &mt->regions[j];
			if (b >= m->host && l <= m->size && (uint64_t)(b - m->host) <= m->size - l)
				break;
		}
		if (j == mt->nregions || l == 0) {
			fprintf(stderr, "%s: iovec %u (%p+%zu) is not inside one region\n", target,
				i, (void *)b, l);
			abort();
		}
		/* Touch both ends: a wrong host pointer faults here, not in a later I/O. */
		(void)*(volatile const uint8_t *)b;
		(void)*(volatile const uint8_t *)(b + l - 1);
		total += l;
	}
	if (total != c->out_len + c->in_len) {
		fprintf(stderr, "%s: iovecs hold %llu bytes, chain says %llu\n", target,
			(unsigned long long)total, (unsigned long long)(c->out_len + c->in_len));
		abort();
	}
}
