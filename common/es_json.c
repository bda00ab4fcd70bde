/* es_json.c - strict JSON request bodies. */
#include "es_json.h"

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "es_buf.h"
#include "es_utf8.h"

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

void es_json_printable(char *s)
{
	for (; *s; s++)
		if ((unsigned char)*s < 0x20 || (unsigned char)*s > 0x7e)
			*s = '?';
}

/* ---- writing ---- */

struct key_ref {
	const char *key;
	json_t *value;
};

static int cmp_key_ref(const void *a, const void *b)
{
	return strcmp(((const struct key_ref *)a)->key,
		      ((const struct key_ref *)b)->key);
}

static int dump_sorted(struct es_buf *b, const json_t *v, int depth);

/* A string as jansson writes it; -1 when it is not UTF-8. */
static int dump_string(struct es_buf *b, const char *s, size_t len)
{
	if (es_utf8_chars(s, len, NULL) < 0)
		return -1;
	es_buf_add_jstr(b, s, len);
	return 0;
}

static int dump_object(struct es_buf *b, const json_t *v, int depth)
{
	struct key_ref small[16], *keys = small;
	size_t n = json_object_size(v), i = 0;
	const char *key;
	json_t *value;
	int ret = -1;

	if (n > sizeof(small) / sizeof(*small)) {
		keys = malloc(n * sizeof(*keys));
		if (!keys)
			return -1;
	}
	json_object_foreach((json_t *)v, key, value)
	{
		keys[i].key = key;
		keys[i].value = value;
		i++;
	}
	if (n > 1)
		qsort(keys, n, sizeof(*keys), cmp_key_ref);
	es_buf_add(b, "{", 1);
	for (i = 0; i < n; i++) {
		if (i)
			es_buf_add(b, ",", 1);
		if (dump_string(b, keys[i].key, strlen(keys[i].key)) < 0)
			goto out;
		es_buf_add(b, ":", 1);
		if (dump_sorted(b, keys[i].value, depth + 1) < 0)
			goto out;
	}
	es_buf_add(b, "}", 1);
	ret = 0;
out:
	if (keys != small)
		free(keys);
	return ret;
}

static int dump_sorted(struct es_buf *b, const json_t *v, int depth)
{
	char *text;
	size_t i;

	if (depth > ES_JSON_MAX_DEPTH)
		return -1;
	switch (json_typeof(v)) {
	case JSON_OBJECT:
		return dump_object(b, v, depth);
	case JSON_ARRAY:
		es_buf_add(b, "[", 1);
		for (i = 0; i < json_array_size(v); i++) {
			if (i)
				es_buf_add(b, ",", 1);
			if (dump_sorted(b, json_array_get(v, i), depth + 1) < 0)
				return -1;
		}
		es_buf_add(b, "]", 1);
		return 0;
	case JSON_STRING:
		return dump_string(b, json_string_value(v),
				   json_string_length(v));
	case JSON_INTEGER:
		es_buf_add_int(b, (long long)json_integer_value(v));
		return 0;
	case JSON_TRUE:
		es_buf_adds(b, "true");
		return 0;
	case JSON_FALSE:
		es_buf_adds(b, "false");
		return 0;
	case JSON_NULL:
		es_buf_adds(b, "null");
		return 0;
	case JSON_REAL:
		/* rare in answers: jansson's own digits */
		text = json_dumps(v, JSON_COMPACT | JSON_ENCODE_ANY);
		if (!text)
			return -1;
		es_buf_adds(b, text);
		free(text);
		return 0;
	}
	return -1;
}

int es_json_dump_sorted_to(struct es_buf *b, const json_t *v)
{
	return v ? dump_sorted(b, v, 0) : -1;
}

char *es_json_dump_sorted(const json_t *v, size_t *len)
{
	struct es_buf b = ES_BUF_INIT;
	size_t n = 0;
	char *text;

	if (!v || !es_buf_reserve(&b, 256) || dump_sorted(&b, v, 0) < 0) {
		es_buf_release(&b);
		return NULL;
	}
	text = es_buf_detach(&b, &n);
	if (len)
		*len = n;
	return text;
}
