/*
 * keymap.h - a small hash map from short strings (account ids, day and
 * currency pairs) to indexes into a batch's own array of rows.
 */
#ifndef VIEW_KEYMAP_H
#define VIEW_KEYMAP_H

#include <stddef.h>

#include "es_error.h"
#include "es_table.h"

/* Longest key, in bytes. */
#define VIEW_KEY_MAX 47

/* Copies of the keys, in blocks that never move. */
struct view_keymap_block;

struct view_keymap {
	struct es_table index; /* key (in `keys`) -> val.idx */
	struct view_keymap_block *keys; /* owned; the newest first */
};

#define VIEW_KEYMAP_INIT            \
	{                           \
		ES_TABLE_INIT, NULL \
	}

/* The value of `key` into `*val`: 1 when present, 0 when absent. */
int view_keymap_get(const struct view_keymap *m, const char *key, size_t *val);

/*
 * Map `key` (1..VIEW_KEY_MAX bytes, not yet present) to `val`.
 * -1 with ES_EINTERNAL when out of memory or the key is too long.
 */
int view_keymap_put(struct view_keymap *m, const char *key, size_t val,
		    struct es_error *err);

/* Free the index and the keys; `m` is empty afterwards. */
void view_keymap_release(struct view_keymap *m);

#endif
