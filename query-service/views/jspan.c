/*
 * jspan.c - members of JSON text found by scanning, not parsing: strings
 * are skipped to their closing quote, objects and arrays to the bracket
 * that closes them (a counter, not a recursion), scalars to the next
 * delimiter.
 */
#include "jspan.h"

#include <jansson.h>
#include <string.h>

#include "es_utf8.h"

static const char *skip_ws(const char *p, const char *end)
{
	while (p < end && (*p == ' ' || *p == '\t' || *p == '\n' || *p == '\r'))
		p++;
	return p;
}

/* `p` at a '"': just after the closing quote, or NULL. */
static const char *skip_string(const char *p, const char *end)
{
	for (p++; p < end; p++) {
		if (*p == '\\')
			p++;
		else if (*p == '"')
			return p + 1;
	}
	return NULL;
}

/* `p` at a value: just after it, or NULL. */
static const char *skip_value(const char *p, const char *end)
{
	const char *start = p;
	size_t depth = 0;

	if (p >= end)
		return NULL;
	if (*p == '"')
		return skip_string(p, end);
	if (*p != '{' && *p != '[') {
		while (p < end && !strchr(",:]} \t\n\r\"{[", *p))
			p++;
		return p > start ? p : NULL;
	}
	while (p < end) {
		if (*p == '"') {
			p = skip_string(p, end);
			if (!p)
				return NULL;
			continue;
		}
		if (*p == '{' || *p == '[') {
			depth++;
		} else if (*p == '}' || *p == ']') {
			if (--depth == 0)
				return p + 1;
		}
		p++;
	}
	return NULL;
}

/* Whether the key `k` (a string as written, quotes included) is `key`. */
static int key_is(struct view_jspan k, const char *key)
{
	size_t n = strlen(key);
	char buf[256];
	long len;

	if (k.len == n + 2 && memcmp(k.s + 1, key, n) == 0)
		return 1;
	if (n >= sizeof(buf) || !memchr(k.s, '\\', k.len))
		return 0;
	len = view_jspan_string(k, buf, sizeof(buf) - 1);
	return len == (long)n && memcmp(buf, key, n) == 0;
}

int view_jspan_member(struct view_jspan v, const char *key,
		      struct view_jspan *out)
{
	const char *end = v.s ? v.s + v.len : NULL, *p;
	struct view_jspan k, found = { NULL, 0 };

	if (!v.s)
		return 0;
	p = skip_ws(v.s, end);
	if (p >= end || *p != '{')
		return 0;
	p = skip_ws(p + 1, end);
	if (p < end && *p == '}')
		return 0;
	for (;;) {
		const char *val;

		if (p >= end || *p != '"')
			return 0;
		k.s = p;
		p = skip_string(p, end);
		if (!p)
			return 0;
		k.len = (size_t)(p - k.s);
		p = skip_ws(p, end);
		if (p >= end || *p != ':')
			return 0;
		val = skip_ws(p + 1, end);
		p = skip_value(val, end);
		if (!p)
			return 0;
		if (key_is(k, key)) {
			found.s = val;
			found.len = (size_t)(p - val);
		}
		p = skip_ws(p, end);
		if (p < end && *p == ',') {
			p = skip_ws(p + 1, end);
			continue;
		}
		if (p < end && *p == '}')
			break;
		return 0;
	}
	/* nothing but space after the object */
	if (skip_ws(p + 1, end) != end || !found.s)
		return 0;
	*out = found;
	return 1;
}

long view_jspan_string(struct view_jspan v, char *out, size_t max)
{
	json_t *j;
	const char *s;
	size_t n, i;

	if (!v.s || v.len < 2 || v.s[0] != '"' || v.s[v.len - 1] != '"')
		return -1;
	n = v.len - 2;
	if (!memchr(v.s, '\\', v.len)) {
		/* as written: no control character, UTF-8, no quote inside */
		if (n > max || es_utf8_chars(v.s + 1, n, NULL) < 0)
			return -1;
		for (i = 0; i < n; i++)
			if ((unsigned char)v.s[1 + i] < 0x20 ||
			    v.s[1 + i] == '"')
				return -1;
		memcpy(out, v.s + 1, n);
		out[n] = '\0';
		return (long)n;
	}
	/* an escape is at most six bytes of text for one byte of string */
	if (n / 6 > max)
		return -1;
	j = json_loadb(v.s, v.len, JSON_DECODE_ANY, NULL);
	s = json_string_value(j);
	n = s ? json_string_length(j) : 0;
	if (!s || n > max || memchr(s, '\0', n)) {
		json_decref(j);
		return -1;
	}
	memcpy(out, s, n);
	out[n] = '\0';
	json_decref(j);
	return (long)n;
}
