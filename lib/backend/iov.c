/*
 * Copying between a flat buffer and a scatter list, for the backends that
 * keep data in memory (ram) and for zero-filling a read that ran past the end
 * of a file.  The caller has already checked that the iovecs hold skip + len
 * bytes; these loops still stop at the end of the list rather than trust it.
 */
#include <string.h>

#include "backend_impl.h"

int siov__iov_seek(const struct iovec *iov, int iovcnt, size_t *skip)
{
	int i;

	for (i = 0; i < iovcnt && *skip >= iov[i].iov_len; i++)
		*skip -= iov[i].iov_len;
	return i;
}

void siov__iov_from_buf(const struct iovec *iov, int iovcnt, size_t skip, const void *buf,
			size_t len)
{
	const char *src = buf;
	int i = siov__iov_seek(iov, iovcnt, &skip);

	for (; i < iovcnt && len > 0; i++, skip = 0) {
		size_t n = SIOV_MIN(iov[i].iov_len - skip, len);

		if (n > 0)
			memcpy((char *)iov[i].iov_base + skip, src, n);
		src += n;
		len -= n;
	}
}

void siov__iov_to_buf(const struct iovec *iov, int iovcnt, size_t skip, void *buf, size_t len)
{
	char *dst = buf;
	int i = siov__iov_seek(iov, iovcnt, &skip);

	for (; i < iovcnt && len > 0; i++, skip = 0) {
		size_t n = SIOV_MIN(iov[i].iov_len - skip, len);

		if (n > 0)
			memcpy(dst, (const char *)iov[i].iov_base + skip, n);
		dst += n;
		len -= n;
	}
}

void siov__iov_zero_from(const struct iovec *iov, int iovcnt, size_t skip)
{
	int i = siov__iov_seek(iov, iovcnt, &skip);

	for (; i < iovcnt; i++, skip = 0) {
		if (iov[i].iov_len > skip)
			memset((char *)iov[i].iov_base + skip, 0, iov[i].iov_len - skip);
	}
}
