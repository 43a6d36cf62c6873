/*
 * blkop: the block-device multitool of the guest tests.
 *
 * Busybox can write and read blocks, but it cannot issue BLKDISCARD or
 * BLKZEROOUT, cannot bypass the page cache, and has no way to write a pattern
 * that a second program can check byte for byte at another offset. This tool
 * does those things. It is built twice: statically for the guest initramfs
 * and normally for the host, where the same "check" verifies that the bytes a
 * guest wrote landed at the right place in the backend file.
 *
 * Patterns: the byte at logical position p for seed s is a hash of (s, p/8).
 * "fill PATH OFF LEN SEED [LOGICAL]" writes LEN bytes at OFF whose logical
 * positions start at LOGICAL (default OFF); "check" takes the same arguments.
 * So a guest writes at guest offset G and the host checks the file at window
 * offset W + G with LOGICAL = G.
 *
 * Exit status: 0 success, 1 mismatch or I/O error, 2 usage, 3 write refused
 * (trywrite).
 */
#define _GNU_SOURCE /* O_DIRECT */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <linux/fs.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <unistd.h>

#define CHUNK (1u << 20)

static uint64_t mix(uint64_t seed, uint64_t word)
{
	uint64_t z = seed * 0x9e3779b97f4a7c15ull + word + 0x632be59bd9b4e019ull;

	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
	z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
	return z ^ (z >> 31);
}

static uint8_t pattern_byte(uint64_t seed, uint64_t pos)
{
	return (uint8_t)(mix(seed, pos >> 3) >> (8 * (pos & 7)));
}

static void pattern(uint8_t *buf, size_t len, uint64_t seed, uint64_t pos)
{
	size_t i = 0;

	while (i < len && ((pos + i) & 7))
		buf[i] = pattern_byte(seed, pos + i), i++;
	for (; i + 8 <= len; i += 8) {
		uint64_t w = mix(seed, (pos + i) >> 3);

		memcpy(buf + i, &w, 8); /* little endian host and guest */
	}
	for (; i < len; i++)
		buf[i] = pattern_byte(seed, pos + i);
}

static uint64_t num(const char *s)
{
	char *end;
	unsigned long long v;

	errno = 0;
	v = strtoull(s, &end, 0);
	if (errno || *end || end == s) {
		fprintf(stderr, "blkop: bad number '%s'\n", s);
		exit(2);
	}
	return v;
}

/* Opens with O_DIRECT when the range allows it, so that a read proves what the
 * device holds and not what the page cache remembers. */
static int open_range(const char *path, int flags, uint64_t off, uint64_t len)
{
	int fd = -1;

	if (!(off % 512) && !(len % 512))
		fd = open(path, flags | O_DIRECT);
	if (fd < 0)
		fd = open(path, flags);
	if (fd < 0) {
		fprintf(stderr, "blkop: open %s: %s\n", path, strerror(errno));
		exit(errno == EROFS || errno == EACCES || errno == EPERM ? 3 : 1);
	}
	return fd;
}

static uint8_t *alloc_chunk(void)
{
	void *p;

	if (posix_memalign(&p, 4096, CHUNK)) {
		fprintf(stderr, "blkop: out of memory\n");
		exit(1);
	}
	return p;
}

static int do_fill(const char *path, uint64_t off, uint64_t len, uint64_t seed, uint64_t logical)
{
	int fd = open_range(path, O_WRONLY, off, len);
	uint8_t *buf = alloc_chunk();

	for (uint64_t done = 0; done < len;) {
		size_t n = len - done > CHUNK ? CHUNK : len - done;
		ssize_t r;

		pattern(buf, n, seed, logical + done);
		r = pwrite(fd, buf, n, off + done);
		if (r <= 0) {
			fprintf(stderr, "blkop: write %s at %" PRIu64 ": %s\n", path, off + done,
				r < 0 ? strerror(errno) : "short write");
			return 1;
		}
		done += r;
	}
	free(buf);
	return close(fd) ? 1 : 0;
}

/* With zero set, checks that the range holds zeros instead of a pattern. */
static int do_check(const char *path, uint64_t off, uint64_t len, int zero, uint64_t seed,
		    uint64_t logical)
{
	int fd = open_range(path, O_RDONLY, off, len);
	uint8_t *buf = alloc_chunk(), *want = alloc_chunk();

	for (uint64_t done = 0; done < len;) {
		size_t n = len - done > CHUNK ? CHUNK : len - done;
		ssize_t r = pread(fd, buf, n, off + done);

		if (r <= 0) {
			fprintf(stderr, "blkop: read %s at %" PRIu64 ": %s\n", path, off + done,
				r < 0 ? strerror(errno) : "end of device");
			return 1;
		}
		if (zero)
			memset(want, 0, r);
		else
			pattern(want, r, seed, logical + done);
		if (memcmp(buf, want, r)) {
			size_t i = 0;

			while (buf[i] == want[i])
				i++;
			fprintf(stderr,
				"blkop: MISMATCH %s at offset %" PRIu64 " (logical %" PRIu64
				"): got 0x%02x want 0x%02x (%s seed %" PRIu64 ")\n",
				path, off + done + i, logical + done + i, buf[i], want[i],
				zero ? "zeros" : "pattern", seed);
			return 1;
		}
		done += r;
	}
	free(buf);
	free(want);
	close(fd);
	return 0;
}

static int do_range_ioctl(const char *path, unsigned long req, const char *what, uint64_t off,
			  uint64_t len)
{
	uint64_t range[2] = {off, len};
	int fd = open(path, O_WRONLY);

	if (fd < 0 || ioctl(fd, req, range)) {
		fprintf(stderr, "blkop: %s %s [%" PRIu64 ", +%" PRIu64 "): %s\n", what, path, off,
			len, strerror(errno));
		return 1;
	}
	close(fd);
	return 0;
}

static int do_pread(const char *path, uint64_t off, uint64_t len)
{
	int fd = open_range(path, O_RDONLY, off, len);
	uint8_t *buf = alloc_chunk();
	ssize_t r = pread(fd, buf, len > CHUNK ? CHUNK : len, off);

	if (r < 0)
		printf("error %s\n", strerror(errno));
	else
		printf("%zd\n", r);
	return 0;
}

static int do_trywrite(const char *path, uint64_t off, uint64_t len)
{
	int fd = open(path, O_WRONLY | O_DIRECT);
	uint8_t *buf = alloc_chunk();
	ssize_t r;

	if (fd < 0) {
		printf("refused open: %s\n", strerror(errno));
		return 3;
	}
	memset(buf, 0xa5, len > CHUNK ? CHUNK : len);
	r = pwrite(fd, buf, len > CHUNK ? CHUNK : len, off);
	if (r < 0) {
		printf("refused write: %s\n", strerror(errno));
		return 3;
	}
	if (fsync(fd)) {
		printf("refused fsync: %s\n", strerror(errno));
		return 3;
	}
	printf("written %zd\n", r);
	return 0;
}

static int do_ioctl_u64(const char *path, const char *what)
{
	int fd = open(path, O_RDONLY);
	uint64_t size;
	int ro;

	if (fd < 0) {
		fprintf(stderr, "blkop: open %s: %s\n", path, strerror(errno));
		return 1;
	}
	if (!strcmp(what, "size")) {
		if (ioctl(fd, BLKGETSIZE64, &size))
			return perror("BLKGETSIZE64"), 1;
		printf("%" PRIu64 "\n", size);
	} else {
		if (ioctl(fd, BLKROGET, &ro))
			return perror("BLKROGET"), 1;
		printf("%d\n", ro);
	}
	return 0;
}

static int do_flush(const char *path)
{
	int fd = open(path, O_WRONLY);

	if (fd < 0 || fsync(fd)) {
		fprintf(stderr, "blkop: flush %s: %s\n", path, strerror(errno));
		return 1;
	}
	close(fd);
	return 0;
}

static int usage(void)
{
	fprintf(stderr, "usage: blkop fill|check PATH OFF LEN SEED [LOGICAL]\n"
			"       blkop zeros|discard|zeroout|pread|trywrite PATH OFF LEN\n"
			"       blkop size|ro|flush PATH\n");
	return 2;
}

int main(int argc, char **argv)
{
	const char *cmd = argc > 1 ? argv[1] : "";

	if (argc == 3 && (!strcmp(cmd, "size") || !strcmp(cmd, "ro")))
		return do_ioctl_u64(argv[2], cmd);
	if (argc == 3 && !strcmp(cmd, "flush"))
		return do_flush(argv[2]);
	if (argc < 5)
		return usage();

	uint64_t off = num(argv[3]), len = num(argv[4]);

	if ((!strcmp(cmd, "fill") || !strcmp(cmd, "check")) && (argc == 6 || argc == 7)) {
		uint64_t seed = num(argv[5]), logical = argc == 7 ? num(argv[6]) : off;

		return cmd[0] == 'f' ? do_fill(argv[2], off, len, seed, logical)
				     : do_check(argv[2], off, len, 0, seed, logical);
	}
	if (argc != 5)
		return usage();
	if (!strcmp(cmd, "zeros"))
		return do_check(argv[2], off, len, 1, 0, 0);
	if (!strcmp(cmd, "discard"))
		return do_range_ioctl(argv[2], BLKDISCARD, "BLKDISCARD", off, len);
	if (!strcmp(cmd, "zeroout"))
		return do_range_ioctl(argv[2], BLKZEROOUT, "BLKZEROOUT", off, len);
	if (!strcmp(cmd, "pread"))
		return do_pread(argv[2], off, len);
	if (!strcmp(cmd, "trywrite"))
		return do_trywrite(argv[2], off, len);
	return usage();
}
