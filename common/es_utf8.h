/* es_utf8.h - checking and counting UTF-8 text. */
#ifndef ES_UTF8_H
#define ES_UTF8_H

#include <stdbool.h>
#include <stddef.h>

/*
 * The characters (code points) of `len` bytes of UTF-8 at `s`; -1 when
 * the bytes are not UTF-8 (overlong forms, surrogates, code points past
 * U+10FFFF and sequences cut short included). A NUL byte is a character
 * like any other. `*control` (when `control` is not NULL) tells whether
 * a C0 or C1 control character or DEL occurs.
 */
long es_utf8_chars(const char *s, size_t len, bool *control);

#endif
