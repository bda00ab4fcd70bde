/* es_utf8.c - checking and counting UTF-8 text. */
#include "es_utf8.h"

#include <stdint.h>
#include <string.h>

#define ONES  0x0101010101010101ULL
#define HIGHS 0x8080808080808080ULL

/*
 * Whether the 8 bytes of `w` are printable ASCII (0x20 to 0x7e): no high
 * bit, no byte below 0x20 (w - 0x20 borrows into its high bit), no DEL
 * (w ^ 0x7f has a zero byte there).
 */
static bool printable8(uint64_t w)
{
	uint64_t del = w ^ (0x7f * ONES);

	return ((w | ((w - 0x20 * ONES) & ~w) | ((del - ONES) & ~del)) &
		HIGHS) == 0;
}

long es_utf8_chars(const char *s, size_t len, bool *control)
{
	const unsigned char *p = (const unsigned char *)s, *end = p + len;
	bool ctl = false;
	long n = 0;

	while (p < end) {
		unsigned int c = *p, cp;
		size_t k, need;
		uint64_t w;

		/* printable ASCII, the common case, eight bytes at a time */
		if (end - p >= 8) {
			memcpy(&w, p, sizeof(w));
			if (printable8(w)) {
				p += 8;
				n += 8;
				continue;
			}
		}
		if (c < 0x80) {
			need = 1;
			cp = c;
		} else if (c >= 0xc2 && c <= 0xdf) {
			need = 2;
			cp = c & 0x1f;
		} else if (c >= 0xe0 && c <= 0xef) {
			need = 3;
			cp = c & 0x0f;
		} else if (c >= 0xf0 && c <= 0xf4) {
			need = 4;
			cp = c & 0x07;
		} else {
			return -1;
		}
		if ((size_t)(end - p) < need)
			return -1;
		for (k = 1; k < need; k++) {
			if ((p[k] & 0xc0) != 0x80)
				return -1;
			cp = (cp << 6) | (p[k] & 0x3f);
		}
		if ((need == 3 &&
		     (cp < 0x800 || (cp >= 0xd800 && cp <= 0xdfff))) ||
		    (need == 4 && (cp < 0x10000 || cp > 0x10ffff)))
			return -1;
		if (cp < 0x20 || (cp >= 0x7f && cp <= 0x9f))
			ctl = true;
		p += need;
		n++;
	}
	if (control)
		*control = ctl;
	return n;
}
