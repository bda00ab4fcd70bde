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

#endif
