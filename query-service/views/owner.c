/*
 * owner.c - an owner's accounts with totals per currency (pure), and
 * the route that reads them from view_accounts.
 */
#include "owner.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../qry_read.h"
#include "es_buf.h"
#include "es_uuid.h"
#include "sum.h"

struct total {
	char currency[4];
	view_sum balance;
	long long accounts;
};

static int by_currency(const void *a, const void *b)
{
	return strcmp(((const struct total *)a)->currency,
		      ((const struct total *)b)->currency);
}

/* Add `acc` to its currency's total in `t` (n of them so far). */
static void add(struct total *t, size_t *n, const struct view_account *acc)
{
	size_t i;

	for (i = 0; i < *n; i++)
		if (!strcmp(t[i].currency, acc->currency))
			break;
	if (i == *n) {
		memset(&t[i], 0, sizeof(t[i]));
		memcpy(t[i].currency, acc->currency, sizeof(t[i].currency));
		(*n)++;
	}
	/* 128 bits: no number of 64-bit balances reachable overflows it */
	t[i].balance += acc->balance;
	t[i].accounts++;
}

int view_owner_totals(struct es_buf *out, const char *owner,
		      const struct view_account *rows, size_t n,
		      struct es_error *err)
{
	char text[VIEW_SUM_TEXT_MAX];
	struct total *t = calloc(n ? n : 1, sizeof(*t));
	size_t nt = 0, i;

	if (!t)
		return es_error_set(err, ES_EINTERNAL, "out of memory");
	for (i = 0; i < n; i++) {
		if (!owner || strcmp(rows[i].owner, owner) != 0) {
			free(t);
			return es_error_set(err, ES_EINTERNAL,
					    "account '%s' is not the owner's",
					    rows[i].id);
		}
		add(t, &nt, &rows[i]);
	}
	qsort(t, nt, sizeof(*t), by_currency);
	es_buf_adds(out, "[");
	/* currencies are three upper-case letters: nothing to escape */
	for (i = 0; i < nt; i++)
		es_buf_addf(out,
			    "%s{\"currency\":\"%s\",\"balance\":%s,"
			    "\"accounts\":%lld}",
			    i ? "," : "", t[i].currency,
			    view_sum_format(t[i].balance, text), t[i].accounts);
	es_buf_adds(out, "]");
	free(t);
	return es_buf_check(out, err);
}

/* ---- GET /owners/{owner}/accounts ---- */

#define SQL_READ                                                                               \
	"SELECT cp.cp_position, " VIEW_ACCOUNT_COLUMNS QRY_READ_FROM_CHECKPOINT(               \
		"accounts") " LEFT JOIN LATERAL (SELECT * FROM view_accounts WHERE owner = $1" \
			    " ORDER BY account_id) a ON true ORDER BY a.account_id"

struct read_params {
	char *owner; /* owned */
	int has_after;
	char after[37];
	long limit;
};

static int read_parse(struct qry_read *r, void *arg, struct es_error *err)
{
	struct read_params *p = arg;
	const char *after = es_request_query(r->req, "after");

	const char *holder = qry_read_holder(r->req);

	p->owner = strdup(es_request_param(r->req, "owner"));
	if (!p->owner)
		return es_error_set(err, ES_EINTERNAL, "out of memory");
	/* a holder's own list only: another's is as if it did not exist */
	if (holder && strcmp(p->owner, holder) != 0)
		return es_error_set(err, ES_ENOTFOUND,
				    "owner '%.60s' was not found", p->owner);
	if (after) {
		if (es_uuid_parse(after, p->after) < 0)
			return es_error_set(err, ES_EMALFORMED,
					    "malformed cursor '%.60s'", after);
		p->has_after = 1;
	}
	if (qry_read_limit(r, &p->limit, err) < 0)
		return -1;
	snprintf(r->canon, sizeof(r->canon), "limit=%ld&after=%s", p->limit,
		 p->after);
	return 0;
}

static void read_release(void *arg)
{
	struct read_params *p = arg;

	free(p->owner);
}

static void read_run(struct qry_read *r, void *arg, struct qry_worker *w)
{
	struct read_params *p = arg;
	struct es_error err = ES_ERROR_INIT;
	const char *params[1] = { p->owner };
	struct view_account *rows = NULL;
	struct es_buf out = ES_BUF_INIT;
	json_t *body = NULL, *items = NULL;
	PGresult *res = NULL;
	char *state_pos = NULL, *head = NULL, *text;
	const char *position;
	int i, n = 0, first = 0, taken = 0;
	size_t len;

	/* an owner that cannot exist has no accounts */
	if (qry_utf8_ok(p->owner, 200)) {
		res = qry_read_prepared(r, w, "qry_owner", 1, params);
		if (!res)
			return;
		position = qry_read_position(r, res);
		n = qry_read_rows(res, 1);
	} else {
		state_pos = qry_state_pos_token(r->ctx->st, r->def->view);
		position = state_pos ? state_pos : ES_CURSOR_START;
	}
	rows = calloc((size_t)n + 1, sizeof(*rows));
	items = json_array();
	if (!rows || !items)
		goto fail;
	for (i = 0; i < n; i++)
		if (view_account_from_pg(res, i, 1, &rows[i], &err) < 0)
			goto fail;
	if (p->has_after)
		while (first < n && strcmp(rows[first].id, p->after) <= 0)
			first++;
	for (i = first; i < n && taken < p->limit; i++, taken++)
		if (json_array_append_new(items, view_account_json(&rows[i])) <
		    0)
			goto fail;
	body = json_pack("{s:s, s:o, s:s?}", "owner", p->owner, "items", items,
			 "next", i < n && taken > 0 ? rows[i - 1].id : NULL);
	items = NULL;
	head = body ? json_dumps(body, JSON_COMPACT) : NULL;
	if (!head)
		goto fail;
	/*
	 * The totals cover every account (the items are one page), written
	 * as text: jansson holds no integer past 2^63 - 1.
	 */
	es_buf_add(&out, head, strlen(head) - 1);
	es_buf_adds(&out, ",\"totals\":");
	if (view_owner_totals(&out, p->owner, rows, (size_t)n, &err) < 0)
		goto fail;
	es_buf_adds(&out, "}");
	text = es_buf_detach(&out, &len);
	if (!text)
		goto fail;
	qry_read_answer_text(r, position, text, len);
	goto out;
fail:
	qry_read_fail(r, &err);
out:
	json_decref(items);
	json_decref(body);
	free(head);
	es_buf_release(&out);
	free(rows);
	free(state_pos);
	PQclear(res);
	es_error_release(&err);
}

static const struct qry_read_stmt read_stmts[] = {
	{ QRY_DB_READ, "qry_owner", SQL_READ },
	{ QRY_DB_READ, NULL, NULL },
};

const struct qry_read_def view_owner_read = {
	.view = "accounts",
	.ryw = 1,
	.stmts = read_stmts,
	.size = sizeof(struct read_params),
	.parse = read_parse,
	.run = read_run,
	.release = read_release,
};
