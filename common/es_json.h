/*
 * es_json.h - strict JSON request bodies, small typed getters, and a
 * growable buffer for writing JSON text without building jansson values.
 */
#ifndef ES_JSON_H
#define ES_JSON_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>

#include "es_error.h"

/* Deepest nesting of arrays and objects a request body may have. */
#define ES_JSON_MAX_DEPTH 32

/*
 * Parse `len` bytes of `buf` as one JSON object. ES_EMALFORMED, with a
 * detail saying what is wrong, for: an empty body, bytes that are not JSON
 * (with jansson's line and column), trailing garbage, duplicate keys,
 * invalid UTF-8, NUL bytes and \u0000 escapes, nesting deeper than
 * ES_JSON_MAX_DEPTH, or a top level that is not an object.
 * ownership: borrows `buf`; caller frees the result with json_decref().
 */
json_t *es_json_parse_object(const char *buf, size_t len, struct es_error *err);

/*
 * The deepest nesting of [ and { in `buf`, not counting brackets inside
 * strings. Only meaningful for input that later parses; used to refuse
 * deep bodies before jansson recurses into them.
 */
int es_json_depth(const char *buf, size_t len);

/*
 * Typed getters for validation. Each looks `key` up in `obj`:
 * - missing (or null): 0 and `*out` untouched when !required, else a
 *   field problem "is required" (ES_EINVALID) and -1;
 * - of the wrong type or out of range: a field problem and -1.
 * Field problems accumulate (es_error_field()), so a validator can call
 * several getters and report every bad field at once.
 * ownership: `*out` of es_json_str() borrows from `obj`.
 */
int es_json_str(const json_t *obj, const char *key, bool required,
		const char **out, struct es_error *err);
int es_json_int(const json_t *obj, const char *key, bool required,
		json_int_t min, json_int_t max, json_int_t *out,
		struct es_error *err);

/*
 * Make `s` safe to put in a JSON string and a log line: every byte that
 * is not printable ASCII becomes '?'. Used on text that may echo client
 * bytes (jansson's error text, libmicrohttpd's messages).
 */
void es_json_printable(char *s);

/*
 * A growable text buffer. Appending never fails visibly: out of memory
 * sets `failed`, further appends do nothing, and the caller checks
 * `failed` once at the end. `s` is NUL-terminated whenever it is not
 * NULL. Initialise with ES_BUF_INIT (or zeroes).
 */
struct es_buf {
	char *s;
	size_t len, cap;
	bool failed;
};

#define ES_BUF_INIT               \
	{                         \
		NULL, 0, 0, false \
	}

/* Room for `extra` more bytes (and the NUL); false when out of memory. */
bool es_buf_reserve(struct es_buf *b, size_t extra);

/* Append `len` bytes of `p`. ownership: borrows `p`. */
void es_buf_add(struct es_buf *b, const void *p, size_t len);

/* Append the C string `s`. */
void es_buf_adds(struct es_buf *b, const char *s);

/* Append a decimal integer. */
void es_buf_add_int(struct es_buf *b, long long v);
void es_buf_add_uint(struct es_buf *b, unsigned long long v);

/*
 * Append `len` bytes of `s` as a JSON string, quotes included, escaped as
 * jansson's json_dumps() does: '"', '\\' and control bytes; other bytes
 * (UTF-8) as they are. `s` must be valid UTF-8.
 */
void es_buf_add_jstr(struct es_buf *b, const char *s, size_t len);

/*
 * Append `len` bytes of JSON text `s` without the whitespace outside its
 * strings (PostgreSQL's jsonb output has a space after every ':' and
 * ','). `s` must be valid JSON; it is not checked.
 */
void es_buf_add_json_compact(struct es_buf *b, const char *s, size_t len);

/*
 * Take the text out of `b`, which is empty afterwards; NULL if it failed
 * (or was never written to). ownership: caller frees with free().
 */
char *es_buf_detach(struct es_buf *b, size_t *len);

/* Free the text and empty `b`. */
void es_buf_release(struct es_buf *b);

#endif
