/* es_hash.h - the one string hash of the services' in-memory tables. */
#ifndef ES_HASH_H
#define ES_HASH_H

#include <stdint.h>

/*
 * FNV-1a, 64 bits: cheap, and spreads the short ids the tables are keyed
 * by (UUIDs, stream ids, Idempotency-Keys) well enough for open
 * addressing and lock striping. Not for anything a client could use to
 * force collisions against a secret.
 */
#define ES_HASH_INIT 14695981039346656037ULL

/* The hash of the NUL-terminated `s`. */
uint64_t es_hash_str(const char *s);

/* The hash `h` continued over `s`: es_hash_str(s) is es_hash_add(ES_HASH_INIT,
 * s). */
uint64_t es_hash_add(uint64_t h, const char *s);

#endif
