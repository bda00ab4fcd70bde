/*
 * statement.h - the statement view: one row per money movement of an
 * account (deposit, withdrawal, transfer out, transfer in), with the
 * balance it left; oldest first by the stream version. Table
 * view_statement; also the rows of the large-transactions route.
 */
#ifndef VIEW_STATEMENT_H
#define VIEW_STATEMENT_H

#include <jansson.h>
#include <libpq-fe.h>
#include <stddef.h>

#include "es_error.h"
#include "es_store.h"
#include "view.h"

enum view_statement_kind {
	VIEW_DEPOSIT = 1, /* MoneyDeposited */
	VIEW_WITHDRAWAL, /* MoneyWithdrawn */
	VIEW_TRANSFER_OUT, /* TransferSent */
	VIEW_TRANSFER_IN /* TransferReceived */
};

struct view_statement_row {
	char account_id[37];
	long long version; /* the event's stream version */
	long long position; /* its global_position */
	enum view_statement_kind kind;
	long long amount;
	long long balance_after;
	char currency[4]; /* "" when the event has none (older data) */
	char counterparty[37]; /* the other account of a transfer, else "" */
	char transfer_id[37]; /* "" when not a transfer */
	const char *reference; /* NULL when none; see who owns it below */
	char recorded_at[40]; /* as es_event.recorded_at */
};

/* "deposit", "withdrawal", "transfer_out", "transfer_in"; NULL otherwise. */
const char *view_statement_kind_name(enum view_statement_kind kind);

/* The kind named `name`, or 0. */
enum view_statement_kind view_statement_kind_parse(const char *name);

/*
 * The row of one event (pure): 1 and `row` filled, 0 when the event is
 * not a money movement of an account stream (other categories, other and
 * unknown types), -1 with ES_EINVALID naming the event when its payload
 * is malformed (amount or balance_after not integers, a currency that is
 * not three upper-case letters, a transfer without a UUID transfer_id or
 * counterparty, a reference that is not a string). A missing currency is
 * left empty.
 * ownership: row->reference borrows from `ev`.
 */
int view_statement_row_from_event(struct view_statement_row *row,
				  const struct es_event *ev,
				  struct es_error *err);

/*
 * A statement item: {version, kind, amount, balance_after, currency,
 * counterparty, transfer_id, reference, recorded_at}, null for what the
 * row lacks. Caller frees with json_decref(); NULL when out of memory.
 */
json_t *view_statement_row_json(const struct view_statement_row *row);

/*
 * The columns of a view_statement row as view_statement_from_pg() reads
 * them, for SELECT lists.
 */
#define VIEW_STATEMENT_COLUMNS                                              \
	"account_id::text, version, position, kind, amount, balance_after," \
	" currency, counterparty::text, transfer_id::text, reference,"      \
	" to_char(recorded_at AT TIME ZONE 'UTC',"                          \
	" 'YYYY-MM-DD\"T\"HH24:MI:SS.US\"Z\"')"
#define VIEW_STATEMENT_NCOLS 11

/*
 * Row `i` of `res`, whose columns `col`.. are VIEW_STATEMENT_COLUMNS,
 * into `row`. ES_EINTERNAL when a value does not fit.
 * ownership: row->reference borrows from `res`.
 */
int view_statement_from_pg(const PGresult *res, int i, int col,
			   struct view_statement_row *row,
			   struct es_error *err);

/*
 * The rows of a batch of view_statement_ops, in the order folded.
 * ownership: borrowed from the batch (references included), valid until
 * it changes.
 */
const struct view_statement_row *view_statement_rows(const void *batch,
						     size_t *n);

extern const struct view_ops view_statement_ops;

/* GET /accounts/{id}/transactions (qry_read.h). */
struct qry_read_def;
extern const struct qry_read_def view_statement_read;

#endif
