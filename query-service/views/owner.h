/*
 * owner.h - an owner's accounts with totals per currency (GET
 * /owners/{owner}/accounts), computed from the view_accounts rows of
 * that owner (pure), and that route.
 */
#ifndef VIEW_OWNER_H
#define VIEW_OWNER_H

#include <stddef.h>

#include "es_error.h"
#include "view_account.h"

struct es_buf; /* es_buf.h */

/*
 * Append the owner's totals to `out`: [{"currency", "balance",
 * "accounts"}, ...], one per currency sorted by currency code, the exact
 * sum of the balances of the rows in that currency (an integer of any
 * size: never a float, never an error) and how many rows there are
 * (closed accounts included: they hold 0). Rows of another owner are
 * ES_EINTERNAL (a bug of the caller), as is running out of memory.
 * ownership: borrows everything. 0, or -1 with `err` (`out` may then
 * hold part of the totals).
 */
int view_owner_totals(struct es_buf *out, const char *owner,
		      const struct view_account *rows, size_t n,
		      struct es_error *err);

/* GET /owners/{owner}/accounts (qry_read.h). */
struct qry_read_def;
extern const struct qry_read_def view_owner_read;

#endif
