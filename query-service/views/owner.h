/*
 * owner.h - an owner's accounts with totals per currency (GET
 * /owners/{owner}/accounts), computed from the view_accounts rows of
 * that owner (pure), and that route.
 */
#ifndef VIEW_OWNER_H
#define VIEW_OWNER_H

#include <jansson.h>
#include <stddef.h>

#include "view_account.h"
#include "es_error.h"

/*
 * {"owner", "accounts": [view_account_json() of each row, in the order
 * given], "totals": [{"currency", "balance", "accounts"}, ...]}, one total
 * per currency sorted by currency code: the sum of the balances of the
 * rows in that currency and how many rows there are (closed accounts
 * included: they hold 0). Rows of another owner are ES_EINTERNAL (a bug
 * of the caller); a sum beyond 64 bits is ES_EINTERNAL.
 * ownership: borrows everything; caller frees the result with
 * json_decref(). NULL with `err` set on failure.
 */
json_t *view_owner_json(const char *owner, const struct view_account *rows,
			size_t n, struct es_error *err);

/* GET /owners/{owner}/accounts (qry_read.h). */
struct qry_read_def;
extern const struct qry_read_def view_owner_read;

#endif
