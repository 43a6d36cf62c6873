/*
 * Copying between a flat buffer and a scatter list (iov.h): for the backends
 * that keep data in memory (ram), for zero-filling a read that ran past the
 * end of a file, and for the device models' headers, segments and IDs that
 * arrive or leave spread over a guest's buffers.  These loops stop at the end
 * of the list rather than trust a length: the lists come from hostile chains.
 */
#include <string.h>

#include "siov_internal/iov.h"
#include "siov_internal/util.h"

int siov_iov_seek(const struct iovec *iov, int iovcnt, size_t *skip)
{
	int i;

	for (i = 0; i < iovcnt && *skip >= iov[i].iov_len; i++)
		*skip -= iov[i].iov_len;
	return i;
}

size_t siov_iov_from_buf(const struct iovec *iov, int iovcnt, size_t skip, const void *buf,
			 size_t len)
{
	const char *src = buf;
	size_t left = len;
	int i = siov_iov_seek(iov, iovcnt, &skip);

	for (; i < iovcnt && left > 0; i++, skip = 0) {
		size_t n = SIOV_MIN(iov[i].iov_len - skip, left);

		if (n > 0)
			memcpy((char *)iov[i].iov_base + skip, src, n);
		src += n;
		left -= n;
	}
	return len - left;
}

size_t siov_iov_to_buf(const struct iovec *iov, int iovcnt, size_t skip, void *buf, size_t len)
{
	char *dst = buf;
	size_t left = len;
	int i = siov_iov_seek(iov, iovcnt, &skip);

	for (; i < iovcnt && left > 0; i++, skip = 0) {
		size_t n = SIOV_MIN(iov[i].iov_len - skip, left);

		if (n > 0)
			memcpy(dst, (const char *)iov[i].iov_base + skip, n);
		dst += n;
		left -= n;
	}
	return len - left;
}

void siov_iov_zero_from(const struct iovec *iov, int iovcnt, size_t skip)
{
	int i = siov_iov_seek(iov, iovcnt, &skip);

	for (; i < iovcnt; i++, skip = 0) {
		if (iov[i].iov_len > skip)
			memset((char *)iov[i].iov_base + skip, 0, iov[i].iov_len - skip);
	}
}

int siov_iov_skip_front(struct iovec *iov, int iovcnt, size_t skip, struct iovec **first)
{
	int i = siov_iov_seek(iov, iovcnt, &skip);

	if (i < iovcnt) {
		iov[i].iov_base = (char *)iov[i].iov_base + skip;
		iov[i].iov_len -= skip;
	}
	*first = &iov[i];
	return iovcnt - i;
}
