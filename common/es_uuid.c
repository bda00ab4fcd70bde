/* es_uuid.c - random (version 4) UUIDs from the kernel's generator. */
#include "es_uuid.h"

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <sys/random.h>
#include <unistd.h>

#include "es_log.h"

/* Fill `buf` from getrandom(2); -1 if the call is unavailable or fails. */
static int from_getrandom(unsigned char *buf, size_t len)
{
	size_t got = 0;

	while (got < len) {
		ssize_t n = getrandom(buf + got, len - got, 0);

		if (n < 0) {
			if (errno == EINTR)
				continue;
			return -1;
		}
		got += (size_t)n;
	}
	return 0;
}

/* The fallback for kernels or sandboxes without getrandom(2). */
static int from_urandom(unsigned char *buf, size_t len)
{
	size_t got = 0;
	int fd, ret = -1;

	do
		fd = open("/dev/urandom", O_RDONLY | O_CLOEXEC);
	while (fd < 0 && errno == EINTR);
	if (fd < 0)
		return -1;
	while (got < len) {
		ssize_t n = read(fd, buf + got, len - got);

		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			goto out;
		got += (size_t)n;
	}
	ret = 0;
out:
	close(fd);
	return ret;
}

void es_uuid_v4(char out[37])
{
	static const char hex[] = "0123456789abcdef";
	unsigned char b[16];
	int i, o = 0;

	if (from_getrandom(b, sizeof(b)) < 0 &&
	    from_urandom(b, sizeof(b)) < 0) {
		/*
		 * Ids that are not random would collide and silently merge
		 * streams or events; nothing sensible is left to do.
		 */
		es_log(ES_LOG_ERROR, "uuid_failed", "{s:s}", "reason",
		       "neither getrandom(2) nor /dev/urandom gave random bytes");
		abort();
	}
	b[6] = (unsigned char)((b[6] & 0x0f) | 0x40); /* version 4 */
	b[8] = (unsigned char)((b[8] & 0x3f) | 0x80); /* RFC 4122 variant */
	for (i = 0; i < 16; i++) {
		if (i == 4 || i == 6 || i == 8 || i == 10)
			out[o++] = '-';
		out[o++] = hex[b[i] >> 4];
		out[o++] = hex[b[i] & 0x0f];
	}
	out[o] = '\0';
}
