/*
 * large.h - the pure parts of GET /audit/large-transactions: statement
 * rows whose amount is at or above a threshold, largest first, then in
 * log order (position), paged with an "<amount>.<position>" cursor.
 */
#ifndef VIEW_LARGE_H
#define VIEW_LARGE_H

#include <jansson.h>
#include <stddef.h>

#include "es_error.h"
#include "statement.h"

/* Room for any cursor and its NUL. */
#define VIEW_LARGE_CURSOR_MAX 48

/*
 * The SQL of one page over view_statement (VIEW_STATEMENT_COLUMNS):
 * $1 min_amount, $2 and $3 the cursor's amount and position (both NULL
 * for the first page), $4 the limit (ask for one more row than the page
 * holds to learn whether another page follows). Uses the index on
 * (amount DESC, position).
 */
#define VIEW_LARGE_WHERE                                     \
	"amount >= $1::bigint AND ($2::bigint IS NULL OR"    \
	" (amount <= $2::bigint AND (amount < $2::bigint OR" \
	" position > $3::bigint)))"
#define VIEW_LARGE_ORDER "amount DESC, position"

/*
 * Write "<amount>.<position>" into `buf`. Returns its length, or -1 if
 * `len` is too small or a number is negative.
 */
int view_large_cursor_format(long long amount, long long position, char *buf,
			     size_t len);

/*
 * Parse a cursor: two non-negative decimal numbers without sign or
 * leading zeros, joined by one dot, each within 64 bits. ES_EMALFORMED
 * otherwise (`*amount` and `*position` untouched).
 */
int view_large_cursor_parse(const char *s, long long *amount,
			    long long *position, struct es_error *err);

/*
 * Whether a row (amount, position) comes after the cursor (after_amount,
 * after_position) in the route's order.
 */
int view_large_follows(long long amount, long long position,
		       long long after_amount, long long after_position);

/*
 * One page over `rows` (any order) as the SQL above gives it: the rows
 * with amount >= min_amount that follow the cursor `after` (NULL: from
 * the start), in the route's order, at most `limit` of them, into `out`
 * (room for `limit`). Returns how many; `*more` says whether rows remain
 * after them. A malformed cursor (or no memory) gives no rows.
 * ownership: `out` borrows from `rows`.
 */
size_t view_large_page(const struct view_statement_row *rows, size_t n,
		       long long min_amount, const char *after, size_t limit,
		       const struct view_statement_row **out, int *more);

/*
 * An item of the route: view_statement_row_json() plus "account_id" and
 * "position". Caller frees with json_decref(); NULL when out of memory.
 */
json_t *view_large_row_json(const struct view_statement_row *row);

/* The route (qry_read.h). */
struct qry_read_def;
extern const struct qry_read_def view_large_read;

#endif
