/*
 * daily.h - the daily statistics view: per UTC day of recorded_at and
 * currency, the sums and counts of deposits, withdrawals and transfers.
 * A transfer is counted once, on its TransferSent. Table view_daily.
 */
#ifndef VIEW_DAILY_H
#define VIEW_DAILY_H

#include <libpq-fe.h>
#include <stddef.h>

#include "es_error.h"
#include "sum.h"
#include "view.h"

struct es_buf; /* es_buf.h */

/* Sums are exact at any size (numeric in view_daily). */
struct view_daily_row {
	char day[11]; /* "YYYY-MM-DD" */
	char currency[4];
	view_sum deposits_sum;
	long long deposits_count;
	view_sum withdrawals_sum;
	long long withdrawals_count;
	view_sum transfers_sum;
	long long transfers_count;
};

/*
 * Append {day, currency, deposits: {sum, count}, withdrawals: {sum,
 * count}, transfers: {sum, count}} to `out`, each sum an exact integer
 * of any size (jansson's integers stop at 2^63 - 1).
 */
void view_daily_row_render(struct es_buf *out,
			   const struct view_daily_row *row);

/* The columns of a view_daily row as view_daily_from_pg() reads them. */
#define VIEW_DAILY_COLUMNS                                     \
	"to_char(day, 'YYYY-MM-DD'), currency, deposits_sum,"  \
	" deposits_count, withdrawals_sum, withdrawals_count," \
	" transfers_sum, transfers_count"
#define VIEW_DAILY_NCOLS 8

/*
 * Row `i` of `res`, whose columns `col`.. are VIEW_DAILY_COLUMNS, into
 * `row`. ES_EINTERNAL when a value does not fit.
 */
int view_daily_from_pg(const PGresult *res, int i, int col,
		       struct view_daily_row *row, struct es_error *err);

/*
 * The totals a batch of view_daily_ops adds, one per day and currency,
 * in the order first seen. Money events without a currency are malformed
 * for this view (the command side writes it on every money event).
 * ownership: borrowed from the batch, valid until it changes.
 */
const struct view_daily_row *view_daily_rows(const void *batch, size_t *n);

extern const struct view_ops view_daily_ops;

/* GET /stats/daily (qry_read.h). */
struct qry_read_def;
extern const struct qry_read_def view_daily_read;

#endif
