/*
 * keymap.h - a small hash map from short strings (account ids, day and
 * currency pairs) to indexes into a batch's own array of rows.
 */
#ifndef VIEW_KEYMAP_H
#define VIEW_KEYMAP_H

#include <stddef.h>

#include "es_error.h"

/* Longest key, in bytes. */
#define VIEW_KEY_MAX 47

struct view_keymap_slot {
	char key[VIEW_KEY_MAX + 1]; /* "" in a free slot */
	size_t val;
};

struct view_keymap {
	struct view_keymap_slot *slots; /* owned; cap is a power of two */
	size_t cap, n;
};

#define VIEW_KEYMAP_INIT \
	{                \
		0        \
	}

/* The value of `key` into `*val`: 1 when present, 0 when absent. */
int view_keymap_get(const struct view_keymap *m, const char *key, size_t *val);

/*
 * Map `key` (1..VIEW_KEY_MAX bytes, not yet present) to `val`.
 * -1 with ES_EINTERNAL when out of memory or the key is too long.
 */
int view_keymap_put(struct view_keymap *m, const char *key, size_t val,
		    struct es_error *err);

/* Free the slots; `m` is empty afterwards. */
void view_keymap_release(struct view_keymap *m);

#endif
