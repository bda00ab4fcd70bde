/*
 * keymap.c - a small hash map from short strings to indexes: an es_table
 * over copies of the keys, kept in blocks of many keys each.
 */
#include "keymap.h"

#include <stdlib.h>
#include <string.h>

/* Keys per block: one allocation for this many new keys. */
#define BLOCK_KEYS 256

struct view_keymap_block {
	struct view_keymap_block *next;
	size_t n;
	char key[BLOCK_KEYS][VIEW_KEY_MAX + 1];
};

int view_keymap_get(const struct view_keymap *m, const char *key, size_t *val)
{
	const struct es_table_slot *s = es_table_get(&m->index, key);

	if (!s)
		return 0;
	*val = s->val.idx;
	return 1;
}

/* A copy of `key` (`len` bytes) in the newest block; NULL: out of memory. */
static char *key_copy(struct view_keymap *m, const char *key, size_t len)
{
	struct view_keymap_block *b = m->keys;
	char *copy;

	if (!b || b->n == BLOCK_KEYS) {
		b = malloc(sizeof(*b));
		if (!b)
			return NULL;
		b->next = m->keys;
		b->n = 0;
		m->keys = b;
	}
	copy = b->key[b->n++];
	memcpy(copy, key, len + 1);
	return copy;
}

int view_keymap_put(struct view_keymap *m, const char *key, size_t val,
		    struct es_error *err)
{
	struct es_table_slot *s;
	size_t len = strlen(key);
	char *copy;
	int added;

	if (len == 0 || len > VIEW_KEY_MAX)
		return es_error_set(err, ES_EINTERNAL,
				    "bad key of %zu bytes for a view batch",
				    len);
	copy = key_copy(m, key, len);
	s = copy ? es_table_put(&m->index, copy, &added) : NULL;
	if (!s || !added) {
		/* the copy is not needed: out of memory, or an old key */
		if (copy)
			m->keys->n--;
		if (!s)
			return es_error_set(err, ES_EINTERNAL, "out of memory");
	}
	s->val.idx = val;
	return 0;
}

void view_keymap_release(struct view_keymap *m)
{
	struct view_keymap_block *b, *next;

	for (b = m->keys; b; b = next) {
		next = b->next;
		free(b);
	}
	m->keys = NULL;
	es_table_release(&m->index);
}
