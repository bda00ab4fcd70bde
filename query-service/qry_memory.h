/*
 * qry_memory.h - the in-memory account view every query-service replica
 * keeps for GET /accounts/{id}: a hash map from account id to the
 * account and its JSON body, rendered once per change.
 *
 * It is one of the views the process's one log reader (qry_tail.h)
 * feeds, whether the process leads or follows: the reader loads it with
 * qry_memory_load(), folds each batch of events into its staged changes
 * with qry_memory_apply() (view_account_fold()), and publishes them with
 * the position they reach with qry_memory_publish(). A batch is
 * published whole, together with that position, under one write lock: a
 * reader never sees an account older than the position it is told.
 * Readers (the HTTP threads) call qry_memory_get() at any time; every
 * other function is the log reader's alone.
 *
 * With a cap (qry_memory_set_cap(), MEMORY_VIEW_MAX_MB) the view holds
 * the accounts it loaded or saw opened first, up to the cap, and keeps
 * folding those; once one is left out it is `capped`, and an account it
 * does not hold is no longer "unknown" but "ask view_accounts"
 * (qry_routes.c reads it there, with that table's own position).
 */
#ifndef QRY_MEMORY_H
#define QRY_MEMORY_H

#include <libpq-fe.h>
#include <stddef.h>

#include "es_error.h"
#include "es_store.h"
#include "es_token.h"

struct qry_memory;

/*
 * An empty view, not loaded: qry_memory_get() is -1 until
 * qry_memory_load(). NULL when out of memory. ownership: caller frees
 * with qry_memory_free().
 */
struct qry_memory *qry_memory_new(struct es_error *err);

/* Free everything. NULL is a no-op. */
void qry_memory_free(struct qry_memory *m);

/*
 * Load view_accounts and the "accounts" checkpoint from the read
 * database `db` in one REPEATABLE READ transaction (so they agree),
 * publish them, and set `pos` to that checkpoint (ES_CURSOR_START when
 * nothing was projected yet): where reading the log goes on. Drops what
 * was staged. `db` must be outside a transaction.
 * ownership: borrows `db`; caller releases `pos` (initialised here) with
 * es_cursor_release().
 */
int qry_memory_load(struct qry_memory *m, PGconn *db, struct es_cursor *pos,
		    struct es_error *err);

/*
 * Fold `ev` into the staged changes (pure: no I/O). Events of other
 * streams and types are skipped (0). -1 with ES_EINVALID when the
 * payload cannot be applied (the caller parks the stream; the stage is
 * as it was), or ES_EINTERNAL when out of memory.
 * ownership: borrows `ev`.
 */
int qry_memory_apply(struct qry_memory *m, const struct es_event *ev,
		     struct es_error *err);

/*
 * Publish the staged changes and `pos` (what the view now reflects), all
 * or nothing, and empty the stage. -1 when out of memory (nothing
 * published, the stage kept).
 */
int qry_memory_publish(struct qry_memory *m, const struct es_cursor *pos,
		       struct es_error *err);

/* Drop the staged changes. */
void qry_memory_discard(struct qry_memory *m);

/* What qry_memory_get() copies out, from one consistent state. */
struct qry_memory_read {
	char *mem; /* owns body and position: free(mem) */
	const char *body; /* the account's JSON (at mem), or NULL when
			     unknown */
	size_t len;
	long long version;
	const char *position; /* the view's position (a read token) */
	/*
	 * The cap left some account out: an unknown one may be in
	 * view_accounts (GET /accounts/{id} reads it there).
	 */
	int capped;
};

/*
 * Look account `id` (lower-case UUID) up. 1 found, 0 unknown (position
 * still set), -1 when the view has not loaded yet (ES_EUNAVAIL) or out
 * of memory.
 * ownership: caller frees out->mem with free() after 0 or 1.
 */
int qry_memory_get(struct qry_memory *m, const char *id,
		   struct qry_memory_read *out, struct es_error *err);

/*
 * The cap (MEMORY_VIEW_MAX_MB): at most `max_bytes` of accounts, as
 * entries count them, 0: no cap. Which accounts are held past it: the
 * first ones loaded or opened, and they stay (no eviction) until the
 * view loads again. An account left out is skipped for good by the
 * fold, so what is held is always whole. Call before the first load and
 * before any other thread uses the view.
 */
void qry_memory_set_cap(struct qry_memory *m, size_t max_bytes);

/*
 * 0 when the view, loaded and past its cap, does not hold account `id`
 * (it may be in view_accounts), else 1 (qry_memory_get() answers).
 */
int qry_memory_holds(struct qry_memory *m, const char *id);

/* What /status and /metrics show of the view. */
struct qry_memory_stats {
	size_t accounts; /* held */
	size_t bytes; /* counted against the cap */
	size_t max_bytes; /* the cap, 0: none */
	int capped; /* some account was left out for the cap */
};

void qry_memory_stats(struct qry_memory *m, struct qry_memory_stats *out);

#endif
