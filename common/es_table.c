/* es_table.c - open addressing, linear probing, at most half full. */
#include "es_table.h"

#include <stdlib.h>
#include <string.h>

#include "es_hash.h"

/* Slots of a table's first allocation. */
#define FIRST_CAP 64

uint64_t es_table_hash(const char *key)
{
	uint64_t h = es_hash_str(key);

	return h ? h : 1;
}

/* Where the probe for `hash` starts: FNV-1a's high bits mixed in. */
static size_t home(uint64_t hash, size_t cap)
{
	return (size_t)(hash ^ hash >> 32) & (cap - 1);
}

/*
 * The slot of (hash, key), or the free slot where it would go. `key`
 * NULL compares hashes alone. The table must have a free slot.
 */
static struct es_table_slot *probe(const struct es_table *t, uint64_t hash,
				   const char *key)
{
	size_t mask = t->cap - 1, i = home(hash, t->cap);
	struct es_table_slot *s;

	for (;; i = (i + 1) & mask) {
		s = &t->v[i];
		if (!s->hash)
			return s;
		if (s->hash == hash && (!key || strcmp(s->key, key) == 0))
			return s;
	}
}

static int grow_to(struct es_table *t, size_t cap)
{
	struct es_table bigger = { calloc(cap, sizeof(*t->v)), t->n, cap };
	size_t i;

	if (!bigger.v)
		return -1;
	for (i = 0; i < t->cap; i++) {
		const struct es_table_slot *s = &t->v[i];
		size_t j;

		if (!s->hash)
			continue;
		/* keys are unique: the first free slot is the one */
		for (j = home(s->hash, cap); bigger.v[j].hash;
		     j = (j + 1) & (cap - 1))
			;
		bigger.v[j] = *s;
	}
	free(t->v);
	*t = bigger;
	return 0;
}

int es_table_reserve(struct es_table *t, size_t extra)
{
	size_t cap = t->cap ? t->cap : FIRST_CAP;

	while ((t->n + extra + 1) * 2 > cap)
		cap *= 2;
	return cap == t->cap ? 0 : grow_to(t, cap);
}

static struct es_table_slot *get(const struct es_table *t, uint64_t hash,
				 const char *key)
{
	struct es_table_slot *s;

	if (!t->cap)
		return NULL;
	s = probe(t, hash, key);
	return s->hash ? s : NULL;
}

static struct es_table_slot *put(struct es_table *t, uint64_t hash,
				 const char *key, int *added)
{
	struct es_table_slot *s;

	if (es_table_reserve(t, 1) < 0)
		return NULL;
	s = probe(t, hash, key);
	if (added)
		*added = !s->hash;
	if (!s->hash) {
		s->hash = hash;
		s->key = key;
		t->n++;
	}
	return s;
}

struct es_table_slot *es_table_get(const struct es_table *t, const char *key)
{
	return get(t, es_table_hash(key), key);
}

struct es_table_slot *es_table_put(struct es_table *t, const char *key,
				   int *added)
{
	return put(t, es_table_hash(key), key, added);
}

struct es_table_slot *es_table_get_hash(const struct es_table *t, uint64_t hash)
{
	return get(t, hash ? hash : 1, NULL);
}

struct es_table_slot *es_table_put_hash(struct es_table *t, uint64_t hash,
					int *added)
{
	return put(t, hash ? hash : 1, NULL, added);
}

void es_table_del(struct es_table *t, struct es_table_slot *s)
{
	size_t mask = t->cap - 1, hole = (size_t)(s - t->v), j = hole;

	/*
	 * Each key after the hole, up to the next free slot, moves into the
	 * hole when its probe passed it: when it sits at least as far from
	 * its home as from the hole.
	 */
	for (;;) {
		j = (j + 1) & mask;
		if (!t->v[j].hash)
			break;
		if (((j - home(t->v[j].hash, t->cap)) & mask) >=
		    ((j - hole) & mask)) {
			t->v[hole] = t->v[j];
			hole = j;
		}
	}
	memset(&t->v[hole], 0, sizeof(t->v[hole]));
	t->n--;
}

struct es_table_slot *es_table_next(const struct es_table *t, size_t *i)
{
	while (*i < t->cap) {
		struct es_table_slot *s = &t->v[(*i)++];

		if (s->hash)
			return s;
	}
	return NULL;
}

void es_table_release(struct es_table *t)
{
	free(t->v);
	memset(t, 0, sizeof(*t));
}
