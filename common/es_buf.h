/*
 * es_buf.h - a growable buffer, the one of both services, the tools and
 * the benchmark client: text and binary rows alike, with appenders of
 * decimal integers and of JSON text (written without building jansson
 * values).
 */
#ifndef ES_BUF_H
#define ES_BUF_H

#include <stdbool.h>
#include <stddef.h>

#include "es_error.h"

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

/* Append printf()'s text of `fmt` and what follows. */
void es_buf_addf(struct es_buf *b, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));

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

/* Forget the contents, keep the memory (and `failed`). */
void es_buf_reset(struct es_buf *b);

/* Drop the first `n` bytes (all of them when `n` >= len). */
void es_buf_consume(struct es_buf *b, size_t n);

/* 0, or -1 with ES_EINTERNAL when an append ran out of memory. */
int es_buf_check(const struct es_buf *b, struct es_error *err);

#endif
