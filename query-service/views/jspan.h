/*
 * jspan.h - picking members out of JSON text without building it: the
 * audit view reads three strings of every event's metadata, which may be
 * any JSON value of any size and depth (SPEC section 3, guarantee 6).
 * A scan walks the object's top level once, skipping each value by its
 * brackets and strings, without recursion and without allocating; only
 * the short strings it returns are decoded.
 *
 * Text that is not well-formed where the scan passes is treated as
 * holding nothing (the metadata of the log is jsonb: always valid).
 */
#ifndef VIEW_JSPAN_H
#define VIEW_JSPAN_H

#include <stddef.h>

/* A JSON value inside a larger text: `len` bytes at `s`, as written. */
struct view_jspan {
	const char *s;
	size_t len;
};

/*
 * The value of member `key` of the JSON object `v`: 1 and `*out` when
 * `v` is an object that has it (the last member of that name, as a
 * parser that keeps the last one sees it), else 0 (not an object, no
 * such member, or text not well-formed). Keys written with escapes
 * match their decoded text.
 * ownership: `out` points into `v`'s text.
 */
int view_jspan_member(struct view_jspan v, const char *key,
		      struct view_jspan *out);

/*
 * The JSON string `v`, decoded, into `out` (room for `max` + 1 bytes):
 * its length in bytes, or -1 when `v` is not a string, decodes to more
 * than `max` bytes, or holds a NUL character (text columns cannot).
 * Decoded strings are UTF-8.
 */
long view_jspan_string(struct view_jspan v, char *out, size_t max);

#endif
