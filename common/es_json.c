/* es_json.c - strict JSON request bodies. */
#include "es_json.h"

#include <stdbool.h>
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

void es_json_printable(char *s)
{
	for (; *s; s++)
		if ((unsigned char)*s < 0x20 || (unsigned char)*s > 0x7e)
			*s = '?';
}
