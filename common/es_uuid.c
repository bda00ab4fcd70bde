/*
 * es_uuid.c - random (version 4) and time-ordered (version 7) UUIDs from
 * the kernel's generator, and
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
#include <time.h>
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
 * Byte `i` of `out` from the two digits at p[at], or return -1. Written
 * out for all sixteen bytes (DECODE_BYTES): with constant offsets each
 * byte is two loads, two tests and a store, where the loop over
 * digit_at[] cost three times as much.
 */
#define DECODE_BYTE(i, at)                                                \
	do {                                                              \
		unsigned hi_ = hex[p[(at)]], lo_;                         \
		if (!hi_)                                                 \
			return -1;                                        \
		lo_ = hex[p[(at) + 1]];                                   \
		if (!lo_)                                                 \
			return -1;                                        \
		out[(i)] = (unsigned char)((hi_ & 15) << 4 | (lo_ & 15)); \
	} while (0)
#define DECODE_DASH(at)             \
	do {                        \
		if (p[(at)] != '-') \
			return -1;  \
	} while (0)

/*
 * Decode `s` with the digit table `hex` into `out`: 0 or -1. Reads
 * strictly left to right and stops at the first byte out of place, so it
 * never reads past the NUL of a short string.
 */
static int decode(const char *s, const unsigned char *hex,
		  unsigned char out[16])
{
	const unsigned char *p = (const unsigned char *)s;

	if (!s)
		return -1;
	DECODE_BYTE(0, 0);
	DECODE_BYTE(1, 2);
	DECODE_BYTE(2, 4);
	DECODE_BYTE(3, 6);
	DECODE_DASH(8);
	DECODE_BYTE(4, 9);
	DECODE_BYTE(5, 11);
	DECODE_DASH(13);
	DECODE_BYTE(6, 14);
	DECODE_BYTE(7, 16);
	DECODE_DASH(18);
	DECODE_BYTE(8, 19);
	DECODE_BYTE(9, 21);
	DECODE_DASH(23);
	DECODE_BYTE(10, 24);
	DECODE_BYTE(11, 26);
	DECODE_BYTE(12, 28);
	DECODE_BYTE(13, 30);
	DECODE_BYTE(14, 32);
	DECODE_BYTE(15, 34);
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
 * Random bytes are drawn POOL_BYTES at a time, per thread (no lock, and
 * no two threads share bytes): one getrandom(2) every few dozen ids
 * rather than one per id. Bytes are used once and wiped; a child of
 * fork() starts with an empty pool, so that it never repeats its
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

/* `len` (at most POOL_BYTES) fresh random bytes into `b`, or abort. */
static void random_bytes(unsigned char *b, size_t len)
{
	pthread_once(&atfork_once, atfork_register);
	if (pool_left < len) {
		if (from_getrandom(pool, sizeof(pool)) < 0 &&
		    from_urandom(pool, sizeof(pool)) < 0) {
			/*
			 * Ids that are not random would collide and silently
			 * merge streams or events; nothing sensible is left
			 * to do.
			 */
			es_log(ES_LOG_ERROR, "uuid_failed", "{s:s}", "reason",
			       "neither getrandom(2) nor /dev/urandom gave random bytes");
			abort();
		}
		pool_left = sizeof(pool);
	}
	pool_left -= len;
	memcpy(b, pool + pool_left, len);
	memset(pool + pool_left, 0, len);
}

void es_uuid_v4(char out[37])
{
	unsigned char b[16];

	random_bytes(b, sizeof(b));
	b[6] = (unsigned char)((b[6] & 0x0f) | 0x40); /* version 4 */
	b[8] = (unsigned char)((b[8] & 0x3f) | 0x80); /* RFC 4122 variant */
	es_uuid_format(b, out);
}

/* Random bytes per version 7 id: 12 + 62 bits, rounded up. */
#define V7_RANDOM 10

void es_uuid_v7(unsigned char out[16])
{
	struct timespec ts;
	unsigned long long ms;
	int i;

	clock_gettime(CLOCK_REALTIME, &ts);
	ms = (unsigned long long)ts.tv_sec * 1000 +
	     (unsigned long long)ts.tv_nsec / 1000000;
	for (i = 0; i < 6; i++)
		out[i] = (unsigned char)(ms >> (8 * (5 - i)));
	random_bytes(out + 6, V7_RANDOM);
	out[6] = (unsigned char)((out[6] & 0x0f) | 0x70); /* version 7 */
	out[8] = (unsigned char)((out[8] & 0x3f) | 0x80); /* RFC 9562 variant */
}

void es_uuid_v7_text(char out[37])
{
	unsigned char b[16];

	es_uuid_v7(b);
	es_uuid_format(b, out);
}
