/*
 * es_uuid.c - random (version 4) UUIDs from the kernel's generator, and
 * the text form's parser: table-driven, since folds check every id of
 * every event (a rebuild spent a fifth of its time here when the check
 * went character class by character class).
 */
#include "es_uuid.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
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

/*
 * The value of a hex digit with bit 4 set (so '0' is 0x10), 0 for any
 * other byte: `lower` knows lower-case digits only, `any` both cases.
 */
#define HEX_DIGITS                                                            \
	['0'] = 0x10, ['1'] = 0x11, ['2'] = 0x12, ['3'] = 0x13, ['4'] = 0x14, \
	['5'] = 0x15, ['6'] = 0x16, ['7'] = 0x17, ['8'] = 0x18, ['9'] = 0x19, \
	['a'] = 0x1a, ['b'] = 0x1b, ['c'] = 0x1c, ['d'] = 0x1d, ['e'] = 0x1e, \
	['f'] = 0x1f

static const unsigned char lower[256] = { HEX_DIGITS };
static const unsigned char any[256] = {
	HEX_DIGITS,   ['A'] = 0x1a, ['B'] = 0x1b, ['C'] = 0x1c,
	['D'] = 0x1d, ['E'] = 0x1e, ['F'] = 0x1f
};

/* Where byte i's two digits start in the text, and whether a dash leads. */
static const unsigned char digit_at[16] = { 0,	2,  4,	6,  9,	11, 14, 16,
					    19, 21, 24, 26, 28, 30, 32, 34 };
static const unsigned char dash_before[16] = {
	[4] = 1, [6] = 1, [8] = 1, [10] = 1
};

/*
 * Decode `s` with the digit table `hex` into `out`: 0 or -1. Reads
 * strictly left to right and stops at the first byte out of place, so it
 * never reads past the NUL of a short string.
 */
static int decode(const char *s, const unsigned char *hex,
		  unsigned char out[16])
{
	const unsigned char *p = (const unsigned char *)s;
	int i;

	if (!s)
		return -1;
	for (i = 0; i < 16; i++) {
		const unsigned char *q = p + digit_at[i];
		unsigned hi, lo;

		if (dash_before[i] && q[-1] != '-')
			return -1;
		hi = hex[q[0]];
		if (!hi)
			return -1;
		lo = hex[q[1]];
		if (!lo)
			return -1;
		out[i] = (unsigned char)((hi & 15) << 4 | (lo & 15));
	}
	return p[36] == '\0' ? 0 : -1;
}

int es_uuid_parse(const char *s, char out[37])
{
	unsigned char b[16];

	if (decode(s, any, b) < 0)
		return -1;
	es_uuid_format(b, out);
	return 0;
}

int es_uuid_is_lower(const char *s)
{
	unsigned char b[16];

	return decode(s, lower, b) == 0;
}

int es_uuid_bytes(const char *s, unsigned char out[16])
{
	return decode(s, lower, out);
}

void es_uuid_format(const unsigned char b[16], char out[37])
{
	static const char hex[] = "0123456789abcdef";
	int i;

	for (i = 0; i < 16; i++) {
		char *q = out + digit_at[i];

		if (dash_before[i])
			q[-1] = '-';
		q[0] = hex[b[i] >> 4];
		q[1] = hex[b[i] & 15];
	}
	out[36] = '\0';
}

/*
 * Random bytes are drawn POOL_BYTES at a time, per thread: one
 * getrandom(2) every POOL_BYTES / 16 ids rather than one per id (a
 * command makes at least one). Bytes are used once and wiped; a child
 * of fork() starts with an empty pool, so that it never repeats its
 * parent's ids.
 */
#define POOL_BYTES 512

static _Thread_local unsigned char pool[POOL_BYTES];
static _Thread_local size_t pool_left;
static pthread_once_t atfork_once = PTHREAD_ONCE_INIT;

static void pool_forget(void)
{
	pool_left = 0;
}

static void atfork_register(void)
{
	pthread_atfork(NULL, NULL, pool_forget);
}

/* 16 fresh random bytes into `b`; -1 if no source gives any. */
static int random16(unsigned char b[16])
{
	pthread_once(&atfork_once, atfork_register);
	if (pool_left < 16) {
		if (from_getrandom(pool, sizeof(pool)) < 0 &&
		    from_urandom(pool, sizeof(pool)) < 0)
			return -1;
		pool_left = sizeof(pool);
	}
	pool_left -= 16;
	memcpy(b, pool + pool_left, 16);
	memset(pool + pool_left, 0, 16);
	return 0;
}

void es_uuid_v4(char out[37])
{
	unsigned char b[16];

	if (random16(b) < 0) {
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
	es_uuid_format(b, out);
}
