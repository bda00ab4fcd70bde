/*
 * keymap.c - a small hash map from short strings to indexes: open
 * addressing with linear probing, FNV-1a, kept at most half full.
 */
#include "keymap.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "es_hash.h"

/* The slot holding `key`, or the free slot where it would go. */
static struct view_keymap_slot *find(const struct view_keymap_slot *slots,
				     size_t cap, const char *key)
{
	size_t i = (size_t)es_hash_str(key) & (cap - 1);

	while (slots[i].key[0] && strcmp(slots[i].key, key) != 0)
		i = (i + 1) & (cap - 1);
	return (struct view_keymap_slot *)&slots[i];
}

int view_keymap_get(const struct view_keymap *m, const char *key, size_t *val)
{
	const struct view_keymap_slot *s;

	if (!m->cap)
		return 0;
	s = find(m->slots, m->cap, key);
	if (!s->key[0])
		return 0;
	*val = s->val;
	return 1;
}

static int grow(struct view_keymap *m, struct es_error *err)
{
	size_t cap = m->cap ? m->cap * 2 : 64, i;
	struct view_keymap_slot *slots, *s;

	slots = calloc(cap, sizeof(*slots));
	if (!slots)
		return es_error_set(err, ES_EINTERNAL, "out of memory");
	for (i = 0; i < m->cap; i++) {
		if (!m->slots[i].key[0])
			continue;
		s = find(slots, cap, m->slots[i].key);
		*s = m->slots[i];
	}
	free(m->slots);
	m->slots = slots;
	m->cap = cap;
	return 0;
}

int view_keymap_put(struct view_keymap *m, const char *key, size_t val,
		    struct es_error *err)
{
	struct view_keymap_slot *s;
	size_t len = strlen(key);

	if (len == 0 || len > VIEW_KEY_MAX)
		return es_error_set(err, ES_EINTERNAL,
				    "bad key of %zu bytes for a view batch",
				    len);
	if ((m->n + 1) * 2 > m->cap && grow(m, err) < 0)
		return -1;
	s = find(m->slots, m->cap, key);
	if (!s->key[0])
		m->n++;
	memcpy(s->key, key, len + 1);
	s->val = val;
	return 0;
}

void view_keymap_release(struct view_keymap *m)
{
	free(m->slots);
	m->slots = NULL;
	m->cap = 0;
	m->n = 0;
}
