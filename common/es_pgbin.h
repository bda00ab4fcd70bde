/*
 * es_pgbin.h - reading values in PostgreSQL's binary formats, as COPY
 * ... TO STDOUT (FORMAT binary) and binary query results send them:
 * big-endian integers, the length-prefixed fields of a row, timestamps.
 * The one decoder of both the event store's reads and the query
 * service's COPY feed.
 */
#ifndef ES_PGBIN_H
#define ES_PGBIN_H

#include <stddef.h>
#include <stdint.h>

/* Big-endian integers at `p`. */
uint64_t es_pgbin_u64(const unsigned char *p);
uint32_t es_pgbin_u32(const unsigned char *p);
uint16_t es_pgbin_u16(const unsigned char *p);

/*
 * The next field of a COPY binary row at `*p` (its 32-bit length, then
 * its bytes), not past `end`: 0 with `*val` and `*len` set and `*p` moved
 * past it; -1 when it runs past `end` or is NULL (length -1).
 */
int es_pgbin_field(const unsigned char **p, const unsigned char *end,
		   const unsigned char **val, size_t *len);

/* Length of es_pgbin_time()'s text. */
#define ES_PGBIN_TIME_LEN 27

/*
 * A timestamptz (microseconds since 2000-01-01 00:00:00 UTC) as text in
 * UTC, "YYYY-MM-DDTHH:MM:SS.ffffffZ": what to_char(t AT TIME ZONE 'UTC',
 * 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"') prints, so es_event.recorded_at.
 * 0, or -1 (nothing written) outside years 1 to 9999.
 */
int es_pgbin_time(int64_t us, char out[ES_PGBIN_TIME_LEN + 1]);

/* Room for es_pgbin_time_any()'s text and its NUL. */
#define ES_PGBIN_TIME_MAX 40

/*
 * Any timestamptz as text: es_pgbin_time()'s for years 1 to 9999, else
 * "infinity", "-infinity", or the year as a signed number of at least
 * four characters, as printf's "%04" writes it ("0000-...", "-044-...",
 * "10000-..."). Never fails.
 */
void es_pgbin_time_any(int64_t us, char out[ES_PGBIN_TIME_MAX]);

#endif
