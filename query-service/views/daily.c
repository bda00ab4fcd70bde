/*
 * daily.c - the daily statistics view: a batch sums its events per UTC
 * day and currency in memory and adds the sums to view_daily with one
 * INSERT ... ON CONFLICT DO UPDATE.
 */
#include "daily.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../qry_read.h"
#include "bulk.h"
#include "es_buf.h"
#include "es_event.h"
#include "keymap.h"
#include "payload.h"
#include "view_account.h"

/* ,"<name>":{"sum":<sum>,"count":<count>} */
static void render_sum(struct es_buf *out, const char *name, view_sum sum,
		       long long count)
{
	char text[VIEW_SUM_TEXT_MAX];

	es_buf_addf(out, ",\"%s\":{\"sum\":%s,\"count\":%lld}", name,
		    view_sum_format(sum, text), count);
}

void view_daily_row_render(struct es_buf *out, const struct view_daily_row *row)
{
	/* day and currency were checked: no character to escape */
	es_buf_addf(out, "{\"day\":\"%s\",\"currency\":\"%s\"", row->day,
		    row->currency);
	render_sum(out, "deposits", row->deposits_sum, row->deposits_count);
	render_sum(out, "withdrawals", row->withdrawals_sum,
		   row->withdrawals_count);
	render_sum(out, "transfers", row->transfers_sum, row->transfers_count);
	es_buf_adds(out, "}");
}

int view_daily_from_pg(const PGresult *res, int i, int col,
		       struct view_daily_row *row, struct es_error *err)
{
	view_sum *sums[3];
	long long *counts[3];
	int k;

	memset(row, 0, sizeof(*row));
	if (PQnfields(res) < col + VIEW_DAILY_NCOLS ||
	    PQgetlength(res, i, col) != 10 || PQgetlength(res, i, col + 1) != 3)
		return es_error_set(err, ES_EINTERNAL, "bad view_daily row");
	memcpy(row->day, PQgetvalue(res, i, col), 11);
	memcpy(row->currency, PQgetvalue(res, i, col + 1), 4);
	sums[0] = &row->deposits_sum;
	counts[0] = &row->deposits_count;
	sums[1] = &row->withdrawals_sum;
	counts[1] = &row->withdrawals_count;
	sums[2] = &row->transfers_sum;
	counts[2] = &row->transfers_count;
	for (k = 0; k < 3; k++) {
		if (view_sum_parse(PQgetvalue(res, i, col + 2 + 2 * k),
				   sums[k]) < 0)
			return es_error_set(err, ES_EINTERNAL,
					    "bad view_daily sum");
		*counts[k] =
			strtoll(PQgetvalue(res, i, col + 3 + 2 * k), NULL, 10);
	}
	return 0;
}

struct daily_batch {
	struct view_daily_row *v;
	size_t n, alloc;
	struct view_keymap map; /* "YYYY-MM-DD CUR" -> index into v */
	long events;
};

static void *batch_new(void)
{
	return calloc(1, sizeof(struct daily_batch));
}

static void batch_free(void *batch)
{
	struct daily_batch *b = batch;

	if (!b)
		return;
	free(b->v);
	view_keymap_release(&b->map);
	free(b);
}

static long batch_size(const void *batch)
{
	return ((const struct daily_batch *)batch)->events;
}

static long batch_rows(const void *batch)
{
	return (long)((const struct daily_batch *)batch)->n;
}

const struct view_daily_row *view_daily_rows(const void *batch, size_t *n)
{
	const struct daily_batch *b = batch;

	*n = b->n;
	return b->v;
}

/* The totals of (day, currency), added as zeros when new. */
static struct view_daily_row *totals(struct daily_batch *b, const char *day,
				     const char *currency, struct es_error *err)
{
	struct view_daily_row *r;
	char key[16];
	size_t i, alloc;

	memcpy(key, day, 10);
	key[10] = ' ';
	memcpy(key + 11, currency, 4);
	if (view_keymap_get(&b->map, key, &i))
		return &b->v[i];
	if (b->n == b->alloc) {
		alloc = b->alloc ? b->alloc * 2 : 16;
		r = realloc(b->v, alloc * sizeof(*r));
		if (!r) {
			es_error_set(err, ES_EINTERNAL, "out of memory");
			return NULL;
		}
		b->v = r;
		b->alloc = alloc;
	}
	if (view_keymap_put(&b->map, key, b->n, err) < 0)
		return NULL;
	r = &b->v[b->n++];
	memset(r, 0, sizeof(*r));
	memcpy(r->day, day, 10);
	memcpy(r->currency, currency, 4);
	return r;
}

static int batch_apply(void *batch, const struct es_event *ev,
		       struct es_error *err)
{
	struct daily_batch *b = batch;
	struct view_daily_row *r;
	char id[37], time[VIEW_TIME_MAX], currency[4];
	long long amount = 0, *count;
	view_sum *sum;

	if (!ev->type || !view_event_account(ev, id))
		return 0;
	/* a transfer counts once, on its TransferSent */
	if (strcmp(ev->type, ES_EV_MONEY_DEPOSITED) != 0 &&
	    strcmp(ev->type, ES_EV_MONEY_WITHDRAWN) != 0 &&
	    strcmp(ev->type, ES_EV_TRANSFER_SENT) != 0)
		return 0;
	if (view_event_time(ev, time, err) < 0 ||
	    view_payload_int(ev, ES_F_AMOUNT, &amount, err) < 0 ||
	    view_payload_currency(ev, ES_F_CURRENCY, 1, currency, err) < 0)
		return -1;
	r = totals(b, time, currency, err);
	if (!r)
		return -1;
	if (!strcmp(ev->type, ES_EV_MONEY_DEPOSITED)) {
		sum = &r->deposits_sum;
		count = &r->deposits_count;
	} else if (!strcmp(ev->type, ES_EV_MONEY_WITHDRAWN)) {
		sum = &r->withdrawals_sum;
		count = &r->withdrawals_count;
	} else {
		sum = &r->transfers_sum;
		count = &r->transfers_count;
	}
	if (__builtin_add_overflow(*sum, amount, sum))
		return view_payload_error(
			ev, err, "the day's sum of %s overflows", currency);
	(*count)++;
	b->events++;
	return 1;
}

#define SQL_ADD                                                             \
	"INSERT INTO %s AS d (day, currency, deposits_sum, deposits_count," \
	" withdrawals_sum, withdrawals_count, transfers_sum,"               \
	" transfers_count)"                                                 \
	" SELECT * FROM unnest($1::date[], $2::text[], $3::numeric[],"      \
	" $4::bigint[], $5::numeric[], $6::bigint[], $7::numeric[],"        \
	" $8::bigint[])"                                                    \
	" ON CONFLICT (day, currency) DO UPDATE SET"                        \
	" deposits_sum = d.deposits_sum + EXCLUDED.deposits_sum,"           \
	" deposits_count = d.deposits_count + EXCLUDED.deposits_count,"     \
	" withdrawals_sum = d.withdrawals_sum + EXCLUDED.withdrawals_sum,"  \
	" withdrawals_count = d.withdrawals_count"                          \
	" + EXCLUDED.withdrawals_count,"                                    \
	" transfers_sum = d.transfers_sum + EXCLUDED.transfers_sum,"        \
	" transfers_count = d.transfers_count + EXCLUDED.transfers_count"
#define ADD_NPARAMS 8

static int batch_flush(void *batch, PGconn *db, const char *suffix,
		       struct es_error *err)
{
	struct daily_batch *b = batch;
	struct es_buf col[ADD_NPARAMS] = { ES_BUF_INIT };
	const char *params[ADD_NPARAMS];
	const struct view_daily_row *r;
	char table[64], sql[1024], sum[VIEW_SUM_TEXT_MAX];
	size_t i;
	int k, ret = -1;

	if (view_table_name(table, sizeof(table), "view_daily", suffix, err) <
	    0)
		return -1;
	if (!b->n)
		return 0;
	for (k = 0; k < ADD_NPARAMS; k++)
		view_arr_open(&col[k]);
	for (i = 0; i < b->n; i++) {
		r = &b->v[i];
		view_arr_word(&col[0], r->day);
		view_arr_word(&col[1], r->currency);
		view_arr_word(&col[2], view_sum_format(r->deposits_sum, sum));
		view_arr_ll(&col[3], r->deposits_count);
		view_arr_word(&col[4],
			      view_sum_format(r->withdrawals_sum, sum));
		view_arr_ll(&col[5], r->withdrawals_count);
		view_arr_word(&col[6], view_sum_format(r->transfers_sum, sum));
		view_arr_ll(&col[7], r->transfers_count);
	}
	for (k = 0; k < ADD_NPARAMS; k++) {
		view_arr_close(&col[k]);
		if (es_buf_check(&col[k], err) < 0)
			goto out;
		params[k] = col[k].s;
	}
	snprintf(sql, sizeof(sql), SQL_ADD, table);
	if (view_exec(db, table, *suffix ? NULL : "add", sql, ADD_NPARAMS,
		      params, NULL, err) < 0)
		goto out;
	ret = 0;
out:
	for (k = 0; k < ADD_NPARAMS; k++)
		es_buf_release(&col[k]);
	return ret;
}

static const char *const tables[] = { "view_daily", NULL };

const struct view_ops view_daily_ops = {
	.name = "daily",
	.batch_new = batch_new,
	.batch_free = batch_free,
	.apply = batch_apply,
	.batch_size = batch_size,
	.batch_rows = batch_rows,
	.flush = batch_flush,
	.tables = tables,
};

/* ---- GET /stats/daily ---- */

#define SQL_READ                                                                             \
	"SELECT cp.cp_position, " VIEW_DAILY_COLUMNS QRY_READ_FROM_CHECKPOINT(               \
		"daily") " LEFT JOIN LATERAL (SELECT * FROM view_daily"                      \
			 " WHERE ($1::date IS NULL OR day >= $1::date)"                      \
			 " AND ($2::date IS NULL OR day <= $2::date)"                        \
			 " AND ($3::date IS NULL OR (day, currency) > ($3::date, $4::text))" \
			 " ORDER BY day, currency LIMIT $5::bigint) d ON true"               \
			 " ORDER BY d.day, d.currency"

struct read_params {
	char from[11], to[11]; /* "" when not given */
	int has_after;
	char after_day[11], after_cur[4];
	long limit;
};

static int read_parse(struct qry_read *r, void *arg, struct es_error *err)
{
	struct read_params *p = arg;
	const char *from = es_request_query(r->req, "from");
	const char *to = es_request_query(r->req, "to");
	const char *after = es_request_query(r->req, "after");

	if (from && !qry_date_ok(from))
		es_error_field(err, "from", "must be a date, YYYY-MM-DD");
	if (to && !qry_date_ok(to))
		es_error_field(err, "to", "must be a date, YYYY-MM-DD");
	if (es_error_isset(err))
		return -1;
	if (from && to && strcmp(from, to) > 0)
		return es_error_field(err, "from", "must not be after 'to'");
	snprintf(p->from, sizeof(p->from), "%s", from ? from : "");
	snprintf(p->to, sizeof(p->to), "%s", to ? to : "");
	if (after) {
		/* "<day>.<currency>" */
		if (strlen(after) != 14 || after[10] != '.')
			return es_error_set(err, ES_EMALFORMED,
					    "malformed cursor '%.60s'", after);
		memcpy(p->after_day, after, 10);
		p->after_day[10] = '\0';
		memcpy(p->after_cur, after + 11, 4);
		if (!qry_date_ok(p->after_day) ||
		    !qry_currency_ok(p->after_cur))
			return es_error_set(err, ES_EMALFORMED,
					    "malformed cursor '%.60s'", after);
		p->has_after = 1;
	}
	if (qry_read_limit(r, &p->limit, err) < 0)
		return -1;
	snprintf(r->canon, sizeof(r->canon),
		 "from=%s&to=%s&limit=%ld&after=%s.%s", p->from, p->to,
		 p->limit, p->after_day, p->after_cur);
	return 0;
}

static int read_item(const PGresult *res, int i, int col, char *next,
		     struct es_buf *out, struct es_error *err)
{
	struct view_daily_row row;

	if (view_daily_from_pg(res, i, col, &row, err) < 0)
		return -1;
	snprintf(next, QRY_CURSOR_MAX, "%s.%s", row.day, row.currency);
	view_daily_row_render(out, &row);
	return 0;
}

static void read_run(struct qry_read *r, void *arg, struct qry_worker *w)
{
	struct read_params *p = arg;
	char lim[24];
	const char *params[5] = { p->from[0] ? p->from : NULL,
				  p->to[0] ? p->to : NULL,
				  p->has_after ? p->after_day : NULL,
				  p->has_after ? p->after_cur : NULL, lim };
	PGresult *res;

	snprintf(lim, sizeof(lim), "%ld", p->limit + 1);
	res = qry_read_prepared(r, w, "qry_daily", 5, params);
	if (!res)
		return;
	qry_read_page(r, res, 1, p->limit, read_item);
	PQclear(res);
}

static const struct qry_read_stmt read_stmts[] = {
	{ QRY_DB_READ, "qry_daily", SQL_READ },
	{ QRY_DB_READ, NULL, NULL },
};

const struct qry_read_def view_daily_read = {
	.view = "daily",
	.ryw = 1,
	.stmts = read_stmts,
	.size = sizeof(struct read_params),
	.parse = read_parse,
	.run = read_run,
};
