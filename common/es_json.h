/*
 * es_json.h - strict JSON request bodies (JSON text is written with
 * es_buf.h's appenders).
 */
#ifndef ES_JSON_H
#define ES_JSON_H

#include <jansson.h>
#include <stddef.h>

#include "es_buf.h"
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
 * The text json_dumps(v, JSON_COMPACT | JSON_SORT_KEYS | JSON_ENCODE_ANY)
 * gives, byte for byte, written without jansson's encoder (which costs
 * several times as much on the small objects of an answer), and its
 * length in *len (may be NULL). NULL when out of memory, or when a
 * string is not valid UTF-8 or nesting is deeper than
 * ES_JSON_MAX_DEPTH (where jansson fails too).
 * ownership: borrows `v`; caller frees with free().
 */
char *es_json_dump_sorted(const json_t *v, size_t *len);

/*
 * The same text as es_json_dump_sorted(), appended to `b`: 0, or -1 as
 * there (then `b` holds part of the text after what it had).
 * ownership: borrows `v`.
 */
int es_json_dump_sorted_to(struct es_buf *b, const json_t *v);

/*
 * Make `s` safe to put in a JSON string and a log line: every byte that
 * is not printable ASCII becomes '?'. Used on text that may echo client
 * bytes (jansson's error text, libmicrohttpd's messages).
 */
void es_json_printable(char *s);

#endif
