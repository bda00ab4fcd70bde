/*
 * large.c - GET /audit/large-transactions: its pure parts (cursor,
 * page, item), and the route over view_statement.
 */
#include "large.h"

#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../qry_read.h"

int view_large_cursor_format(long long amount, long long position, char *buf,
			     size_t len)
{
	int n;

	if (amount < 0 || position < 0)
		return -1;
	n = snprintf(buf, len, "%lld.%lld", amount, position);
	if (n < 0 || (size_t)n >= len)
		return -1;
	return n;
}

/* A canonical non-negative decimal of `len` bytes at `s`, else -1. */
static int number(const char *s, size_t len, long long *out)
{
	unsigned long long v = 0;
	size_t i;

	if (len == 0 || len > 19 || (len > 1 && s[0] == '0'))
		return -1;
	for (i = 0; i < len; i++) {
		if (s[i] < '0' || s[i] > '9')
			return -1;
		v = v * 10 + (unsigned long long)(s[i] - '0');
	}
	/* 19 digits fit in 64 unsigned bits; the signed ones may not */
	if (v > (unsigned long long)LLONG_MAX)
		return -1;
	*out = (long long)v;
	return 0;
}

int view_large_cursor_parse(const char *s, long long *amount,
			    long long *position, struct es_error *err)
{
	const char *dot = s ? strchr(s, '.') : NULL;
	long long a = 0, p = 0;

	if (!dot || number(s, (size_t)(dot - s), &a) < 0 ||
	    number(dot + 1, strlen(dot + 1), &p) < 0)
		return es_error_set(err, ES_EMALFORMED,
				    "malformed cursor '%.60s'", s ? s : "");
	*amount = a;
	*position = p;
	return 0;
}

int view_large_follows(long long amount, long long position,
		       long long after_amount, long long after_position)
{
	return amount < after_amount ||
	       (amount == after_amount && position > after_position);
}

/* The route's order: amount descending, then position ascending. */
static int order(const void *a, const void *b)
{
	const struct view_statement_row *x =
		*(const struct view_statement_row *const *)a;
	const struct view_statement_row *y =
		*(const struct view_statement_row *const *)b;

	if (x->amount != y->amount)
		return x->amount > y->amount ? -1 : 1;
	if (x->position != y->position)
		return x->position < y->position ? -1 : 1;
	return 0;
}

size_t view_large_page(const struct view_statement_row *rows, size_t n,
		       long long min_amount, const char *after, size_t limit,
		       const struct view_statement_row **out, int *more)
{
	const struct view_statement_row **all;
	long long aa = 0, ap = 0;
	size_t i, m = 0, k;

	*more = 0;
	if (after && view_large_cursor_parse(after, &aa, &ap, NULL) < 0)
		return 0;
	all = malloc((n ? n : 1) * sizeof(*all));
	if (!all)
		return 0;
	for (i = 0; i < n; i++)
		if (rows[i].amount >= min_amount &&
		    (!after || view_large_follows(rows[i].amount,
						  rows[i].position, aa, ap)))
			all[m++] = &rows[i];
	qsort(all, m, sizeof(*all), order);
	k = m < limit ? m : limit;
	memcpy(out, all, k * sizeof(*all));
	*more = m > k;
	free(all);
	return k;
}

json_t *view_large_row_json(const struct view_statement_row *row)
{
	json_t *o = view_statement_row_json(row);

	if (o && (json_object_set_new(o, "account_id",
				      json_string(row->account_id)) < 0 ||
		  json_object_set_new(o, "position",
				      json_integer(row->position)) < 0)) {
		json_decref(o);
		return NULL;
	}
	return o;
}

/* ---- the route ---- */

#define SQL_READ                                                                   \
	"SELECT cp.cp_position, " VIEW_STATEMENT_COLUMNS QRY_READ_FROM_CHECKPOINT( \
		"statement") " LEFT JOIN LATERAL (SELECT * FROM view_statement"    \
			     " WHERE " VIEW_LARGE_WHERE                            \
			     " ORDER BY " VIEW_LARGE_ORDER                         \
			     " LIMIT $4::bigint) s ON true ORDER BY s.amount DESC, s.position"

struct read_params {
	long long min;
	int has_after;
	long long after_amount, after_position;
	long limit;
};

static int read_parse(struct qry_read *r, void *arg, struct es_error *err)
{
	struct read_params *p = arg;
	const char *min = es_request_query(r->req, "min_amount");
	const char *after = es_request_query(r->req, "after");

	if (!min)
		es_error_field(err, "min_amount", "is required");
	else if (qry_parse_ll(min, &p->min) < 0 || p->min < 0)
		es_error_field(err, "min_amount",
			       "must be an integer of at least 0");
	if (qry_read_limit(r, &p->limit, err) < 0 || es_error_isset(err))
		return -1;
	if (after) {
		if (view_large_cursor_parse(after, &p->after_amount,
					    &p->after_position, err) < 0)
			return -1;
		p->has_after = 1;
	}
	snprintf(r->canon, sizeof(r->canon),
		 "min_amount=%lld&limit=%ld&after=%lld.%lld", p->min, p->limit,
		 p->has_after ? p->after_amount : -1,
		 p->has_after ? p->after_position : -1);
	return 0;
}

static int read_item(const PGresult *res, int i, int col, char *next,
		     struct es_buf *out, struct es_error *err)
{
	struct view_statement_row row;

	if (view_statement_from_pg(res, i, col, &row, err) < 0)
		return -1;
	view_large_cursor_format(row.amount, row.position, next,
				 QRY_CURSOR_MAX);
	return qry_read_add_json(out, view_large_row_json(&row), err);
}

static void read_run(struct qry_read *r, void *arg, struct qry_worker *w)
{
	struct read_params *p = arg;
	char min[24], aa[24], ab[24], lim[24];
	const char *params[4] = { min, p->has_after ? aa : NULL,
				  p->has_after ? ab : NULL, lim };
	PGresult *res;

	snprintf(min, sizeof(min), "%lld", p->min);
	snprintf(aa, sizeof(aa), "%lld", p->after_amount);
	snprintf(ab, sizeof(ab), "%lld", p->after_position);
	snprintf(lim, sizeof(lim), "%ld", p->limit + 1);
	res = qry_read_prepared(r, w, "qry_large", 4, params);
	if (!res)
		return;
	qry_read_page(r, res, 1, p->limit, read_item);
	PQclear(res);
}

static const struct qry_read_stmt read_stmts[] = {
	{ QRY_DB_READ, "qry_large", SQL_READ },
	{ QRY_DB_READ, NULL, NULL },
};

const struct qry_read_def view_large_read = {
	.view = "statement",
	.ryw = 1,
	.stmts = read_stmts,
	.size = sizeof(struct read_params),
	.parse = read_parse,
	.run = read_run,
};
