/*
 * qry_json.h - parsing event payloads for a rebuild, several times faster
 * than jansson's own parser on the payloads events carry (flat objects of
 * ASCII strings and integers, as PostgreSQL prints jsonb), with the same
 * result as json_loadb(..., JSON_DECODE_ANY, ...) for every input.
 */
#ifndef QRY_JSON_H
#define QRY_JSON_H

#include <jansson.h>
#include <stddef.h>

/*
 * The JSON text `s` (`len` bytes) as json_loadb(s, len, JSON_DECODE_ANY,
 * jerr) returns it: a new value (caller frees with json_decref()), or
 * NULL with `jerr` (may be NULL) filled. Objects, arrays, strings of
 * printable ASCII without escapes, integers of up to 18 digits, true,
 * false and null are parsed here; any other text goes to json_loadb().
 */
json_t *qry_json_load(const char *s, size_t len, json_error_t *jerr);

/*
 * A flat object, as qry_json_flat() reads it: the members of an object
 * whose values are all strings of printable ASCII without escapes,
 * integers of up to 18 digits, true, false or null (every payload the
 * domain writes). One allocation: this header, the members, then their
 * texts, each NUL-terminated, at offsets from the end of the members
 * (so a copy with memcpy() of `size` bytes is whole).
 */
enum qry_flat_type {
	QRY_FLAT_NULL,
	QRY_FLAT_TRUE,
	QRY_FLAT_FALSE,
	QRY_FLAT_INT,
	QRY_FLAT_STR,
};

struct qry_flat_member {
	enum qry_flat_type type;
	size_t key, key_len; /* the name's text */
	size_t str, str_len; /* QRY_FLAT_STR: the value's text */
	long long i; /* QRY_FLAT_INT */
};

struct qry_flat {
	size_t size; /* bytes of the whole, this header included */
	size_t n;
	struct qry_flat_member m[];
};

/* More members than this: not flat (jansson's path). */
#define QRY_FLAT_MAX 32

/*
 * The JSON text `s` (`len` bytes) as a flat object made with `alloc`, when
 * it is one whose every member qry_json_load() parses itself, else NULL
 * (also when `alloc` fails): then qry_json_load() is the way. For such a
 * text json_loadb() gives an object with the same members; of a name
 * given twice the last one, as jansson keeps it.
 * ownership: caller frees what `alloc` made.
 */
struct qry_flat *qry_json_flat(const char *s, size_t len,
			       void *(*alloc)(size_t));

/* Member `key` of `f` (the last of that name), or NULL. */
const struct qry_flat_member *qry_flat_get(const struct qry_flat *f,
					   const char *key);

/* The text at offset `off` of `f` (a key or a string value). */
const char *qry_flat_text(const struct qry_flat *f, size_t off);

#endif
