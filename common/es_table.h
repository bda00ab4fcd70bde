/*
 * es_table.h - the one hash table of the services' in-memory maps and
 * sets: open addressing with linear probing, kept at most half full,
 * slots that remember each key's hash.
 *
 * A table is keyed either by strings (es_table_get(), es_table_put():
 * equal hash, then equal text) or by 64-bit hashes alone
 * (es_table_get_hash(), es_table_put_hash(): two keys of one hash are
 * one key). Use one kind per table. Every slot carries a value, a pointer
 * or a number, which the table never looks at.
 *
 * Keys are borrowed: a string key must live, unchanged, as long as its
 * slot (point it into the value it maps to, as a struct that starts with
 * its id does; when a value replaces one that held its slot's key, point
 * `key` at the new value's copy). A slot pointer is good until the next
 * put, reserve or del. es_table_del() removes a key by backward shift:
 * no tombstones, so a table that forgets keys (a cache that evicts)
 * probes no further than one that never did.
 */
#ifndef ES_TABLE_H
#define ES_TABLE_H

#include <stddef.h>
#include <stdint.h>

struct es_table_slot {
	uint64_t hash; /* never 0; 0 marks a free slot */
	const char *key; /* borrowed; NULL in a table keyed by hash */
	union {
		void *ptr;
		long long num;
		size_t idx;
	} val;
};

struct es_table {
	struct es_table_slot *v; /* owned; cap is a power of two, or 0 */
	size_t n, cap;
};

#define ES_TABLE_INIT \
	{             \
		0     \
	}

/* The hash of a string key, as the table uses it (never 0). */
uint64_t es_table_hash(const char *key);

/* The slot of `key`, or NULL when it is absent. */
struct es_table_slot *es_table_get(const struct es_table *t, const char *key);

/*
 * The slot of `key`, added (with its hash and `key`, value zero) when it
 * is absent, and `*added` (may be NULL) says which. NULL when out of
 * memory, with nothing changed.
 */
struct es_table_slot *es_table_put(struct es_table *t, const char *key,
				   int *added);

/* es_table_get() and es_table_put() for a table keyed by hash. */
struct es_table_slot *es_table_get_hash(const struct es_table *t,
					uint64_t hash);
struct es_table_slot *es_table_put_hash(struct es_table *t, uint64_t hash,
					int *added);

/*
 * Remove slot `s` (from a get or put on `t`). Keys that probed past it
 * move back, so other slot pointers, and a walk under way, are no longer
 * good. What the value points to is not freed: take it first.
 */
void es_table_del(struct es_table *t, struct es_table_slot *s);

/* Room for `extra` more keys, so that puts of that many cannot fail. */
int es_table_reserve(struct es_table *t, size_t extra);

/*
 * Walk the slots in use: `*i` starts at 0; each call returns the next
 * slot in use, or NULL after the last.
 */
struct es_table_slot *es_table_next(const struct es_table *t, size_t *i);

/* Free the slots (not what they point to); `t` is empty afterwards. */
void es_table_release(struct es_table *t);

#endif
