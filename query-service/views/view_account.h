/*
 * view_account.h - the account view: one row per account (id, owner, currency,
 * balance, overdraft_limit, status, version, opened_at, updated_at), folded
 * from the account streams. Used by the projector (table view_accounts) and by
 * the in-memory view every replica keeps for GET /accounts/{id}.
 */
#ifndef VIEW_ACCOUNT_H
#define VIEW_ACCOUNT_H

#include <jansson.h>

#include "es_buf.h"
#include "es_error.h"
#include "es_store.h"
#include "view.h"

enum view_account_status { VIEW_ACCOUNT_OPEN = 1, VIEW_ACCOUNT_CLOSED };

struct view_account {
	char id[37];
	char owner[801];
	char currency[4];
	long long balance;
	long long overdraft_limit;
	enum view_account_status status;
	long long version;
	char opened_at[40]; /* ISO 8601 UTC, as es_event.recorded_at */
	char updated_at[40];
};

/*
 * The account id of an event of the account category ("account-<uuid>"),
 * copied into `id`; 0 for streams of other categories.
 */
int view_account_stream(const char *stream_id, char id[37]);

/*
 * Fold one event of the account's stream into `acc` (pure). For
 * AccountOpened `acc` may be zeroed. Returns 1 when applied, 0 when the
 * event is not one this view folds (other category, unknown type), -1
 * with ES_EINVALID when the payload is malformed.
 */
int view_account_fold(struct view_account *acc, const struct es_event *ev,
		      struct es_error *err);

/* The JSON of GET /accounts/{id}. ownership: caller frees (json_decref). */
json_t *view_account_json(const struct view_account *acc);

/*
 * The same JSON as text, byte for byte what json_dumps(view_account_json(
 * acc), JSON_COMPACT) writes, appended to `out` without building it:
 * 0, or -1 (nothing appended) when a string is not UTF-8, which only
 * jansson's own path may judge. Out of memory shows in out->failed.
 */
int view_account_render(const struct view_account *acc, struct es_buf *out);

/*
 * That text in a buffer of its own: view_account_render()'s, or where it
 * declines, jansson's. Its length in *len. NULL when out of memory.
 * ownership: caller frees.
 */
char *view_account_text(const struct view_account *acc, size_t *len);

extern const struct view_ops view_accounts_ops;

/*
 * What a batch of view_accounts_ops knows of one account. An account
 * opened in the batch (`opened`) has every column of `row`; for one
 * opened earlier only the columns the batch's events set are known:
 * version and updated_at always, balance when `has_balance`,
 * overdraft_limit when `has_limit`, status when `has_status`; owner,
 * currency and opened_at stay with the table's row.
 */
struct view_account_change {
	struct view_account row;
	long long position; /* global_position of the last event folded */
	int opened;
	int has_balance;
	int has_limit;
	int has_status;
};

/*
 * The batch's knowledge of account `id`, or NULL (no event of it in the
 * batch). ownership: borrowed from the batch, valid until it changes.
 */
const struct view_account_change *view_accounts_batch_get(const void *batch,
							  const char *id);

/*
 * The columns of a view_accounts row as view_account_from_pg() reads them
 * (times in the form of es_event.recorded_at), for SELECT lists.
 */
#define VIEW_ACCOUNT_COLUMNS                                           \
	"account_id::text, owner, currency, balance, overdraft_limit," \
	" status, version,"                                            \
	" to_char(opened_at AT TIME ZONE 'UTC',"                       \
	" 'YYYY-MM-DD\"T\"HH24:MI:SS.US\"Z\"'),"                       \
	" to_char(updated_at AT TIME ZONE 'UTC',"                      \
	" 'YYYY-MM-DD\"T\"HH24:MI:SS.US\"Z\"')"
#define VIEW_ACCOUNT_NCOLS 9

/*
 * Row `i` of `res`, whose columns `col`.. are VIEW_ACCOUNT_COLUMNS, into
 * `acc`. ES_EINTERNAL when a value does not fit.
 */
int view_account_from_pg(const PGresult *res, int i, int col,
			 struct view_account *acc, struct es_error *err);

#endif
