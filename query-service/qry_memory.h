/*
 * qry_memory.h - the in-memory account view every query-service replica
 * keeps for GET /accounts/{id}: a hash map from account id to the
 * account and its JSON body, rendered once per change.
 *
 * Its own tailer thread loads view_accounts and the "accounts"
 * checkpoint from the read database in one REPEATABLE READ transaction
 * (so they agree), then reads the log forward from there on the event
 * store (es_read_forward()), woken by LISTEN tandem_events and by
 * polling, and folds each batch with view_account_fold(). A batch is
 * published whole, together with the position it reaches, under one
 * write lock: a reader never sees an account older than the position it
 * is told. The position is view QRY_MEMORY_VIEW in qry_state. An event
 * the fold cannot apply stops the view (qry_state_stop_view()) at the
 * start of its batch; it keeps serving what it had.
 */
#ifndef QRY_MEMORY_H
#define QRY_MEMORY_H

#include <stddef.h>

#include "es_error.h"
#include "qry_state.h"

struct qry_memory_config {
	const char *write_url; /* the event store */
	const char *read_url; /* view_accounts and the checkpoints */
	long batch; /* events per read */
	long poll_ms; /* poll this often when no NOTIFY comes */
};

struct qry_memory;

/*
 * Start the tailer thread. The databases need not be reachable yet: it
 * keeps retrying, and until it has loaded, qry_memory_get() is -1.
 * ownership: borrows `cfg` and `st` (both must outlive it); caller frees
 * with qry_memory_stop().
 */
struct qry_memory *qry_memory_start(const struct qry_memory_config *cfg,
				    struct qry_state *st, struct es_error *err);

/* Stop the thread and free everything. NULL is a no-op. */
void qry_memory_stop(struct qry_memory *m);

/* What qry_memory_get() copies out, from one consistent state. */
struct qry_memory_read {
	char *mem; /* owns body and position: free(mem) */
	const char *body; /* the account's JSON (at mem), or NULL when
			     unknown */
	size_t len;
	long long version;
	const char *position; /* the view's position (a read token) */
};

/*
 * Look account `id` (lower-case UUID) up. 1 found, 0 unknown (position
 * still set), -1 when the view has not loaded yet (ES_EUNAVAIL) or out
 * of memory.
 * ownership: caller frees out->mem with free() after 0 or 1.
 */
int qry_memory_get(struct qry_memory *m, const char *id,
		   struct qry_memory_read *out, struct es_error *err);

/* Accounts held. */
size_t qry_memory_count(struct qry_memory *m);

#endif
