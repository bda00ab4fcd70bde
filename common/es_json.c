/*
 * es_json.c - strict JSON request bodies, small typed getters, and
 * struct es_buf.
 */
#include "es_json.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int es_json_depth(const char *buf, size_t len)
{
	int depth = 0, max = 0;
	bool in_string = false;

	for (size_t i = 0; i < len; i++) {
		char c = buf[i];

		if (in_string) {
			if (c == '\\')
				i++; /* the escaped byte cannot end the string
				      */
			else if (c == '"')
				in_string = false;
			continue;
		}
		switch (c) {
		case '"':
			in_string = true;
			break;
		case '[':
		case '{':
			if (++depth > max)
				max = depth;
			break;
		case ']':
		case '}':
			if (depth > 0)
				depth--;
			break;
		}
	}
	return max;
}

static const char *type_name(const json_t *v)
{
	switch (json_typeof(v)) {
	case JSON_OBJECT:
		return "an object";
	case JSON_ARRAY:
		return "an array";
	case JSON_STRING:
		return "a string";
	case JSON_INTEGER:
	case JSON_REAL:
		return "a number";
	case JSON_TRUE:
	case JSON_FALSE:
		return "a boolean";
	case JSON_NULL:
		return "null";
	}
	return "unknown";
}

json_t *es_json_parse_object(const char *buf, size_t len, struct es_error *err)
{
	json_error_t jerr;
	json_t *v;

	if (!buf || len == 0) {
		es_error_set(err, ES_EMALFORMED, "request body is empty");
		return NULL;
	}
	if (es_json_depth(buf, len) > ES_JSON_MAX_DEPTH) {
		es_error_set(err, ES_EMALFORMED,
			     "JSON nested deeper than %d levels",
			     ES_JSON_MAX_DEPTH);
		return NULL;
	}
	if (memchr(buf, '\0', len)) {
		es_error_set(err, ES_EMALFORMED,
			     "invalid JSON: the body contains a NUL byte");
		return NULL;
	}
	v = json_loadb(buf, len, JSON_REJECT_DUPLICATES | JSON_DECODE_ANY,
		       &jerr);
	if (!v && json_error_code(&jerr) == json_error_null_character) {
		es_error_set(
			err, ES_EMALFORMED,
			"invalid JSON at line %d, column %d: \\u0000 is not allowed in strings",
			jerr.line, jerr.column);
		return NULL;
	}
	if (!v) {
		es_json_printable(jerr.text);
		es_error_set(err, ES_EMALFORMED,
			     "invalid JSON at line %d, column %d: %s",
			     jerr.line, jerr.column, jerr.text);
		return NULL;
	}
	if (!json_is_object(v)) {
		es_error_set(err, ES_EMALFORMED,
			     "request body must be a JSON object, not %s",
			     type_name(v));
		json_decref(v);
		return NULL;
	}
	return v;
}

int es_json_str(const json_t *obj, const char *key, bool required,
		const char **out, struct es_error *err)
{
	json_t *v = json_object_get(obj, key);

	if (!v || json_is_null(v))
		return required ? es_error_field(err, key, "is required") : 0;
	if (!json_is_string(v))
		return es_error_field(err, key, "must be a string, not %s",
				      type_name(v));
	*out = json_string_value(v);
	return 0;
}

int es_json_int(const json_t *obj, const char *key, bool required,
		json_int_t min, json_int_t max, json_int_t *out,
		struct es_error *err)
{
	json_t *v = json_object_get(obj, key);
	json_int_t i;

	if (!v || json_is_null(v))
		return required ? es_error_field(err, key, "is required") : 0;
	if (!json_is_integer(v))
		return es_error_field(err, key, "must be an integer, not %s",
				      type_name(v));
	i = json_integer_value(v);
	if (i < min || i > max)
		return es_error_field(
			err, key,
			"must be an integer in [%" JSON_INTEGER_FORMAT
			", %" JSON_INTEGER_FORMAT "]",
			min, max);
	*out = i;
	return 0;
}

void es_json_printable(char *s)
{
	for (; *s; s++)
		if ((unsigned char)*s < 0x20 || (unsigned char)*s > 0x7e)
			*s = '?';
}

/* ---- struct es_buf ---- */

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
	for (i = 0; i < len; i++) {
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
	size_t i;

	if (!es_buf_reserve(b, len))
		return;
	o = b->s + b->len;
	for (i = 0; i < len; i++) {
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
