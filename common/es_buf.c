/* es_buf.c - a growable buffer, and appenders of numbers and JSON text. */
#include "es_buf.h"

#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

bool es_buf_reserve(struct es_buf *b, size_t extra)
{
	size_t need, cap;
	char *s;

	if (b->failed)
		return false;
	need = b->len + extra + 1;
	if (need < extra) {
		b->failed = true;
		return false;
	}
	if (need <= b->cap)
		return true;
	cap = b->cap ? b->cap : 256;
	while (cap < need)
		cap = cap > SIZE_MAX / 2 ? need : cap * 2;
	s = realloc(b->s, cap);
	if (!s) {
		b->failed = true;
		return false;
	}
	b->s = s;
	b->cap = cap;
	return true;
}

void es_buf_add(struct es_buf *b, const void *p, size_t len)
{
	if (!es_buf_reserve(b, len))
		return;
	memcpy(b->s + b->len, p, len);
	b->len += len;
	b->s[b->len] = '\0';
}

void es_buf_adds(struct es_buf *b, const char *s)
{
	es_buf_add(b, s, strlen(s));
}

void es_buf_addf(struct es_buf *b, const char *fmt, ...)
{
	va_list ap;
	int n;

	va_start(ap, fmt);
	n = vsnprintf(NULL, 0, fmt, ap);
	va_end(ap);
	if (n < 0) {
		b->failed = true;
		return;
	}
	if (!es_buf_reserve(b, (size_t)n))
		return;
	va_start(ap, fmt);
	vsnprintf(b->s + b->len, (size_t)n + 1, fmt, ap);
	va_end(ap);
	b->len += (size_t)n;
}

void es_buf_add_uint(struct es_buf *b, unsigned long long v)
{
	char tmp[24];
	size_t i = sizeof(tmp);

	do {
		tmp[--i] = (char)('0' + v % 10);
		v /= 10;
	} while (v);
	es_buf_add(b, tmp + i, sizeof(tmp) - i);
}

void es_buf_add_int(struct es_buf *b, long long v)
{
	if (v < 0) {
		es_buf_add(b, "-", 1);
		/* -(v + 1) + 1 cannot overflow, even for LLONG_MIN */
		es_buf_add_uint(b, (unsigned long long)-(v + 1) + 1);
	} else {
		es_buf_add_uint(b, (unsigned long long)v);
	}
}

/*
 * es_buf_add_json_compact() reads eight bytes at a time: a word without a
 * byte that matters (a quote, a backslash inside a string; a quote or
 * whitespace outside) is copied whole. The bit tricks flag every such
 * byte; bytes above the lowest flagged one may be flagged wrongly (a
 * borrow), so only the lowest is trusted, as the scan goes in order.
 */
#define ONES  0x0101010101010101ULL
#define HIGHS 0x8080808080808080ULL

/* The high bit of each byte of `w` that is `c` (exact up to the first). */
static inline uint64_t bytes_eq(uint64_t w, unsigned char c)
{
	uint64_t x = w ^ (ONES * c);

	return (x - ONES) & ~x & HIGHS;
}

/* The same for the bytes of `w` below `n` (at most 0x80). */
static inline uint64_t bytes_lt(uint64_t w, unsigned char n)
{
	return (w - ONES * n) & ~w & HIGHS;
}

/* The bytes below 0x21 (space and controls). */
static inline uint64_t bytes_le_space(uint64_t w)
{
	return bytes_lt(w, 0x21);
}

void es_buf_add_jstr(struct es_buf *b, const char *s, size_t len)
{
	static const char hex[] = "0123456789ABCDEF"; /* as jansson */
	char *o;
	size_t i;

	/* the worst case, "\u00XX" for every byte, and the quotes */
	if (len > (SIZE_MAX - 2) / 6) {
		b->failed = true;
		return;
	}
	if (!es_buf_reserve(b, len * 6 + 2))
		return;
	o = b->s + b->len;
	*o++ = '"';
	i = 0;
#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
	/* words without a byte to escape go as they are */
	while (i + 8 <= len) {
		uint64_t w;

		memcpy(&w, s + i, 8);
		if (bytes_eq(w, '"') | bytes_eq(w, '\\') | bytes_lt(w, 0x20))
			break;
		memcpy(o, &w, 8);
		o += 8;
		i += 8;
	}
#endif
	for (; i < len; i++) {
		unsigned char c = (unsigned char)s[i];

		if (c >= 0x20 && c != '"' && c != '\\') {
			*o++ = (char)c;
			continue;
		}
		*o++ = '\\';
		switch (c) {
		case '"':
		case '\\':
			*o++ = (char)c;
			break;
		case '\b':
			*o++ = 'b';
			break;
		case '\f':
			*o++ = 'f';
			break;
		case '\n':
			*o++ = 'n';
			break;
		case '\r':
			*o++ = 'r';
			break;
		case '\t':
			*o++ = 't';
			break;
		default:
			*o++ = 'u';
			*o++ = '0';
			*o++ = '0';
			*o++ = hex[c >> 4];
			*o++ = hex[c & 15];
		}
	}
	*o++ = '"';
	*o = '\0';
	b->len = (size_t)(o - b->s);
}

void es_buf_add_json_compact(struct es_buf *b, const char *s, size_t len)
{
	bool in_string = false;
	char *o;
	size_t i = 0;

	if (!es_buf_reserve(b, len))
		return;
	o = b->s + b->len;
#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
	/* the output never outruns the input, so a whole word fits */
	while (i + 8 <= len) {
		uint64_t w, m;
		unsigned k;

		memcpy(&w, s + i, 8);
		m = in_string ? bytes_eq(w, '"') | bytes_eq(w, '\\')
			      : bytes_eq(w, '"') | bytes_le_space(w);
		memcpy(o, &w, 8);
		if (!m) {
			o += 8;
			i += 8;
			continue;
		}
		k = (unsigned)__builtin_ctzll(m) / 8;
		o += k;
		i += k;
		/* s[i] is the byte that matters, already at *o */
		if (s[i] == '"') {
			in_string = !in_string;
			o++;
			i++;
		} else if (in_string) {
			/* a backslash and the byte it escapes */
			o++;
			i++;
			if (i < len)
				*o++ = s[i++];
		} else if (s[i] == ' ' || s[i] == '\n' || s[i] == '\t' ||
			   s[i] == '\r') {
			i++; /* whitespace: dropped */
		} else {
			o++; /* not JSON; kept as the byte loop keeps it */
			i++;
		}
	}
#endif
	for (; i < len; i++) {
		char c = s[i];

		if (in_string) {
			*o++ = c;
			if (c == '\\' && i + 1 < len)
				*o++ = s[++i]; /* the escaped byte */
			else if (c == '"')
				in_string = false;
			continue;
		}
		if (c == ' ' || c == '\n' || c == '\t' || c == '\r')
			continue;
		if (c == '"')
			in_string = true;
		*o++ = c;
	}
	*o = '\0';
	b->len = (size_t)(o - b->s);
}

char *es_buf_detach(struct es_buf *b, size_t *len)
{
	char *s = b->failed ? NULL : b->s;

	if (!s)
		free(b->s);
	if (len)
		*len = s ? b->len : 0;
	memset(b, 0, sizeof(*b));
	return s;
}

void es_buf_release(struct es_buf *b)
{
	free(b->s);
	memset(b, 0, sizeof(*b));
}

void es_buf_reset(struct es_buf *b)
{
	b->len = 0;
	if (b->s)
		b->s[0] = '\0';
}

void es_buf_consume(struct es_buf *b, size_t n)
{
	if (n >= b->len) {
		es_buf_reset(b);
		return;
	}
	memmove(b->s, b->s + n, b->len - n);
	b->len -= n;
	b->s[b->len] = '\0';
}

int es_buf_check(const struct es_buf *b, struct es_error *err)
{
	if (b->failed)
		return es_error_set(err, ES_EINTERNAL, "out of memory");
	return 0;
}
