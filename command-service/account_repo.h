/*
 * account_repo.h - loading an account's state at the same cost whatever
 * the length of its stream, and the locks that keep commands on one
 * account from racing each other inside the process.
 *
 * State comes from a process cache (checked by version: every append
 * states the version it builds on, so a stale entry only costs a
 * conflict and a fresh load), or from the database: the stream's first
 * event (the opening facts), its last OverdraftLimitChanged (the limit
 * now) and its last event (version, the balance, closed), three index
 * lookups in one prepared statement. No replay of the stream: every
 * event after the opening states the balance it leaves (es_event.h).
 */
#ifndef ACCOUNT_REPO_H
#define ACCOUNT_REPO_H

#include <libpq-fe.h>
#include <stddef.h>

#include "account_state.h"
#include "es_error.h"

#define ACCOUNT_REPO_STRIPES 256 /* cache shards */
/*
 * Lock stripes: many, as a group-commit round holds dozens at once, and
 * every command whose stripe another worker holds must sit out a round.
 */
#define ACCOUNT_REPO_LOCKS 4096

struct account_repo;

/*
 * A cache of at most `max` accounts (evicting arbitrary ones when full,
 * in ACCOUNT_REPO_STRIPES shards) and ACCOUNT_REPO_LOCKS lock stripes.
 * NULL when out of memory.
 * ownership: caller frees with account_repo_free().
 */
struct account_repo *account_repo_new(size_t max);
void account_repo_free(struct account_repo *repo);

/* Prepare the load statement on a new connection (the pool's hook). */
int account_repo_prepare(PGconn *db, struct es_error *err);

/*
 * The lock stripe of `key` (an account id, or any other id such as a
 * stream id), in [0, ACCOUNT_REPO_LOCKS). A group-commit round holds
 * many at once: it takes a stripe waiting only while it holds no other
 * stripe, or lower ones only (so two rounds cannot deadlock), else it
 * only tries to take it (0, else -1: busy).
 */
size_t account_repo_stripe(const char *key);
void account_repo_lock_stripe(struct account_repo *repo, size_t stripe);
int account_repo_trylock_stripe(struct account_repo *repo, size_t stripe);
void account_repo_unlock_stripe(struct account_repo *repo, size_t stripe);

/*
 * Load account `id` (lower-case UUID) into `acc`: from the cache unless
 * `fresh`, else (or on a miss) from the database, which also refreshes
 * the cache. *from_db says which it was. An account without events is
 * ACCOUNT_NONE at version 0 (not cached). State from the cache lacks the
 * owner (acc->owner is ""): no rule needs it.
 * ES_EUNAVAIL, ES_EINTERNAL (e.g. an unreadable event).
 */
int account_repo_load(struct account_repo *repo, PGconn *db, const char *id,
		      int fresh, struct account *acc, int *from_db,
		      struct es_error *err);

/* Remember `acc` as the account's state (after a committed append). */
void account_repo_store(struct account_repo *repo, const struct account *acc);

/* Forget what the cache holds of `id` (after a conflict or a failure). */
void account_repo_forget(struct account_repo *repo, const char *id);

#endif
