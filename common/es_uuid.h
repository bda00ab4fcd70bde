/*
 * es_uuid.h - UUIDs: random (version 4) and time-ordered (version 7)
 * ones, and the one parser of the 8-4-4-4-12 hex text form for both
 * services.
 */
#ifndef ES_UUID_H
#define ES_UUID_H

/* Write a new random UUID, lower-case, into `out` (37 bytes with NUL). */
void es_uuid_v4(char out[37]);

/*
 * Write a new time-ordered UUID (RFC 9562 version 7) as 16 bytes into
 * `out`: the Unix time in milliseconds, then 74 random bits. Ids made
 * close in time sort close together, so a unique index on them takes
 * its inserts at one end instead of at random pages. The random bits
 * come from a per-thread pool filled by one getrandom(2) per 25 ids.
 */
void es_uuid_v7(unsigned char out[16]);

/* A new version 7 UUID as lower-case text into `out` (37 bytes). */
void es_uuid_v7_text(char out[37]);

/*
 * The UUID `s` (any case, 36 characters, dashes at 8-4-4-4) copied in its
 * canonical lower-case form into `out`: 0, or -1 (`out` untouched) when
 * `s` is NULL or not of that form. `out` may be `s`.
 */
int es_uuid_parse(const char *s, char out[37]);

/* Whether `s` is a UUID in its canonical lower-case form: 1 or 0. */
int es_uuid_is_lower(const char *s);

/*
 * The 16 bytes of the lower-case UUID `s` into `out`: 0, or -1 (`out`
 * undefined) when `s` is not a UUID in canonical lower-case form.
 */
int es_uuid_bytes(const char *s, unsigned char out[16]);

/* The 16 bytes `b` as canonical lower-case text into `out`. */
void es_uuid_format(const unsigned char b[16], char out[37]);

#endif
