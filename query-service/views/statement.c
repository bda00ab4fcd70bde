/*
 * statement.c - the statement view: one row per money movement of an
 * account, written with one COPY (binary format) per batch.
 */
#include "statement.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../qry_parked.h"
#include "../qry_read.h"
#include "bulk.h"
#include "es_event.h"
#include "es_uuid.h"
#include "payload.h"
#include "view_account.h"

static const char *const kind_names[] = {
	[VIEW_DEPOSIT] = "deposit",
	[VIEW_WITHDRAWAL] = "withdrawal",
	[VIEW_TRANSFER_OUT] = "transfer_out",
	[VIEW_TRANSFER_IN] = "transfer_in",
};

const char *view_statement_kind_name(enum view_statement_kind kind)
{
	if (kind < VIEW_DEPOSIT || kind > VIEW_TRANSFER_IN)
		return NULL;
	return kind_names[kind];
}

enum view_statement_kind view_statement_kind_parse(const char *name)
{
	int k;

	for (k = VIEW_DEPOSIT; name && k <= VIEW_TRANSFER_IN; k++)
		if (!strcmp(kind_names[k], name))
			return (enum view_statement_kind)k;
	return 0;
}

static enum view_statement_kind kind_of(const char *type)
{
	if (!type)
		return 0;
	if (!strcmp(type, ES_EV_MONEY_DEPOSITED))
		return VIEW_DEPOSIT;
	if (!strcmp(type, ES_EV_MONEY_WITHDRAWN))
		return VIEW_WITHDRAWAL;
	if (!strcmp(type, ES_EV_TRANSFER_SENT))
		return VIEW_TRANSFER_OUT;
	if (!strcmp(type, ES_EV_TRANSFER_RECEIVED))
		return VIEW_TRANSFER_IN;
	return 0;
}

/* Longest reference, in bytes (the command side allows 200 characters). */
#define REFERENCE_MAX 65536

int view_statement_row_from_event(struct view_statement_row *row,
				  const struct es_event *ev,
				  struct es_error *err)
{
	enum view_statement_kind kind = kind_of(ev->type);

	memset(row, 0, sizeof(*row));
	if (!kind || !view_event_account(ev, row->account_id))
		return 0;
	row->kind = kind;
	row->version = ev->version;
	row->position = ev->position;
	if (view_event_time(ev, row->recorded_at, err) < 0 ||
	    view_payload_int(ev, ES_F_AMOUNT, &row->amount, err) < 0 ||
	    view_payload_int(ev, ES_F_BALANCE_AFTER, &row->balance_after, err) <
		    0 ||
	    view_payload_currency(ev, ES_F_CURRENCY, 0, row->currency, err) <
		    0 ||
	    view_payload_str(ev, ES_F_REFERENCE, 0, REFERENCE_MAX,
			     &row->reference, err) < 0)
		return -1;
	if (kind == VIEW_TRANSFER_OUT || kind == VIEW_TRANSFER_IN) {
		if (view_payload_uuid(ev, ES_F_TRANSFER_ID, row->transfer_id,
				      err) < 0 ||
		    view_payload_uuid(ev,
				      kind == VIEW_TRANSFER_OUT
					      ? ES_F_TO_ACCOUNT
					      : ES_F_FROM_ACCOUNT,
				      row->counterparty, err) < 0)
			return -1;
	}
	return 1;
}

json_t *view_statement_row_json(const struct view_statement_row *row)
{
	return json_pack(
		"{s:I, s:s, s:I, s:I, s:s?, s:s?, s:s?, s:s?, s:s}", "version",
		(json_int_t)row->version, "kind",
		view_statement_kind_name(row->kind), "amount",
		(json_int_t)row->amount, "balance_after",
		(json_int_t)row->balance_after, "currency",
		row->currency[0] ? row->currency : NULL, "counterparty",
		row->counterparty[0] ? row->counterparty : NULL, "transfer_id",
		row->transfer_id[0] ? row->transfer_id : NULL, "reference",
		row->reference, "recorded_at", row->recorded_at);
}

/* A nullable text value of `res` into `out` of `size` bytes. */
static int pg_str(const PGresult *res, int i, int col, int nullable, char *out,
		  size_t size, struct es_error *err)
{
	int len = PQgetlength(res, i, col);

	out[0] = '\0';
	if (PQgetisnull(res, i, col)) {
		if (nullable)
			return 0;
		return es_error_set(err, ES_EINTERNAL,
				    "column %d of a view_statement row is null",
				    col);
	}
	if ((size_t)len >= size)
		return es_error_set(
			err, ES_EINTERNAL,
			"column %d of a view_statement row is too long", col);
	memcpy(out, PQgetvalue(res, i, col), (size_t)len + 1);
	return 0;
}

int view_statement_from_pg(const PGresult *res, int i, int col,
			   struct view_statement_row *row, struct es_error *err)
{
	char kind[16];

	memset(row, 0, sizeof(*row));
	if (PQnfields(res) < col + VIEW_STATEMENT_NCOLS)
		return es_error_set(err, ES_EINTERNAL,
				    "too few columns for a view_statement row");
	if (pg_str(res, i, col, 0, row->account_id, sizeof(row->account_id),
		   err) < 0 ||
	    pg_str(res, i, col + 3, 0, kind, sizeof(kind), err) < 0 ||
	    pg_str(res, i, col + 6, 1, row->currency, sizeof(row->currency),
		   err) < 0 ||
	    pg_str(res, i, col + 7, 1, row->counterparty,
		   sizeof(row->counterparty), err) < 0 ||
	    pg_str(res, i, col + 8, 1, row->transfer_id,
		   sizeof(row->transfer_id), err) < 0 ||
	    pg_str(res, i, col + 10, 0, row->recorded_at,
		   sizeof(row->recorded_at), err) < 0)
		return -1;
	row->kind = view_statement_kind_parse(kind);
	if (!row->kind)
		return es_error_set(err, ES_EINTERNAL,
				    "unknown kind in a view_statement row");
	row->version = strtoll(PQgetvalue(res, i, col + 1), NULL, 10);
	row->position = strtoll(PQgetvalue(res, i, col + 2), NULL, 10);
	row->amount = strtoll(PQgetvalue(res, i, col + 4), NULL, 10);
	row->balance_after = strtoll(PQgetvalue(res, i, col + 5), NULL, 10);
	row->reference = PQgetisnull(res, i, col + 9)
				 ? NULL
				 : PQgetvalue(res, i, col + 9);
	return 0;
}

/* The batch of view_statement_ops: rows whose references it owns. */
struct statement_batch {
	struct view_statement_row *v;
	size_t n, alloc;
};

static void *batch_new(void)
{
	return calloc(1, sizeof(struct statement_batch));
}

static void batch_free(void *batch)
{
	struct statement_batch *b = batch;
	size_t i;

	if (!b)
		return;
	for (i = 0; i < b->n; i++)
		free((char *)b->v[i].reference);
	free(b->v);
	free(b);
}

static long batch_size(const void *batch)
{
	return (long)((const struct statement_batch *)batch)->n;
}

const struct view_statement_row *view_statement_rows(const void *batch,
						     size_t *n)
{
	const struct statement_batch *b = batch;

	*n = b->n;
	return b->v;
}

static int batch_apply(void *batch, const struct es_event *ev,
		       struct es_error *err)
{
	struct statement_batch *b = batch;
	struct view_statement_row row, *v;
	size_t alloc;
	int r = view_statement_row_from_event(&row, ev, err);

	if (r <= 0)
		return r;
	if (b->n == b->alloc) {
		alloc = b->alloc ? b->alloc * 2 : 1024;
		v = realloc(b->v, alloc * sizeof(*v));
		if (!v)
			return es_error_set(err, ES_EINTERNAL, "out of memory");
		b->v = v;
		b->alloc = alloc;
	}
	if (row.reference) {
		row.reference = strdup(row.reference);
		if (!row.reference)
			return es_error_set(err, ES_EINTERNAL, "out of memory");
	}
	b->v[b->n++] = row;
	return 1;
}

#define COPY_COLUMNS                                                  \
	"account_id, version, position, kind, amount, balance_after," \
	" currency, counterparty, transfer_id, reference, recorded_at"
#define SQL_COPY     "COPY %s (" COPY_COLUMNS ") FROM STDIN (FORMAT binary)"
#define COPY_NFIELDS 11

/* One row in COPY binary format; -1 for a value of the wrong form. */
static int copy_row(struct es_buf *buf, const struct view_statement_row *r)
{
	view_bin_row(buf, COPY_NFIELDS);
	if (view_bin_uuid(buf, r->account_id) < 0)
		return -1;
	view_bin_ll(buf, r->version);
	view_bin_ll(buf, r->position);
	view_bin_text(buf, view_statement_kind_name(r->kind));
	view_bin_ll(buf, r->amount);
	view_bin_ll(buf, r->balance_after);
	view_bin_text(buf, r->currency[0] ? r->currency : NULL);
	if (view_bin_uuid(buf, r->counterparty) < 0 ||
	    view_bin_uuid(buf, r->transfer_id) < 0)
		return -1;
	view_bin_text(buf, r->reference);
	return view_bin_time(buf, r->recorded_at);
}

static int batch_copy_rows(const void *batch, struct es_buf *out,
			   struct es_error *err)
{
	const struct statement_batch *b = batch;
	size_t i;

	for (i = 0; i < b->n; i++)
		if (copy_row(out, &b->v[i]) < 0)
			return es_error_set(err, ES_EINTERNAL,
					    "event %lld: bad row for"
					    " view_statement",
					    b->v[i].position);
	return es_buf_check(out, err);
}

static int batch_flush(void *batch, PGconn *db, const char *suffix,
		       struct es_error *err)
{
	struct statement_batch *b = batch;
	struct es_buf buf = ES_BUF_INIT;
	char table[64], sql[512];
	int ret = -1;

	if (view_table_name(table, sizeof(table), "view_statement", suffix,
			    err) < 0)
		return -1;
	if (!b->n)
		return 0;
	view_bin_begin(&buf);
	if (batch_copy_rows(b, &buf, err) < 0)
		goto out;
	view_bin_end(&buf);
	if (es_buf_check(&buf, err) < 0)
		goto out;
	snprintf(sql, sizeof(sql), SQL_COPY, table);
	if (view_copy_run(db, table, sql, &buf, err) < 0)
		goto out;
	ret = 0;
out:
	es_buf_release(&buf);
	return ret;
}

static const char *const tables[] = { "view_statement", NULL };

const struct view_ops view_statement_ops = {
	.name = "statement",
	.batch_new = batch_new,
	.batch_free = batch_free,
	.apply = batch_apply,
	.batch_size = batch_size,
	.batch_rows = batch_size,
	.flush = batch_flush,
	.copy_columns = COPY_COLUMNS,
	.copy_rows = batch_copy_rows,
	.tables = tables,
};

/* ---- GET /accounts/{id}/transactions ---- */

#define SQL_READ                                                                        \
	"SELECT cp.cp_position, EXISTS (SELECT 1 FROM view_accounts"                    \
	" WHERE account_id = $1::uuid AND ($4::text = '' OR owner = $4::text)),"        \
	" (SELECT json_build_object('position',"                                        \
	" position, 'error', error)::text FROM parked_streams WHERE view = 'statement'" \
	" AND stream_id = '" ES_ACCOUNT_PREFIX                                          \
	"' || $1), " VIEW_STATEMENT_COLUMNS QRY_READ_FROM_CHECKPOINT(                   \
		"statement") " LEFT JOIN LATERAL (SELECT * FROM view_statement"         \
			     " WHERE account_id = $1::uuid AND version > $2::bigint"    \
			     " ORDER BY version LIMIT $3::bigint) s ON true ORDER BY s.version"

struct read_params {
	char id[37];
	long long after; /* 0: from the start */
	long limit;
	char holder[ES_AUTH_SUB_MAX]; /* "": any account, else its owner */
};

static int read_parse(struct qry_read *r, void *arg, struct es_error *err)
{
	struct read_params *p = arg;
	const char *after = es_request_query(r->req, "after");
	const char *id = es_request_param(r->req, "id");

	const char *holder = qry_read_holder(r->req);

	if (es_uuid_parse(id, p->id) < 0)
		return es_error_set(err, ES_ENOTFOUND,
				    "account '%.60s' does not exist", id);
	snprintf(p->holder, sizeof(p->holder), "%s", holder ? holder : "");
	if (after && (qry_parse_ll(after, &p->after) < 0 || p->after < 0))
		return es_error_set(err, ES_EMALFORMED,
				    "malformed cursor '%.60s'", after);
	if (qry_read_limit(r, &p->limit, err) < 0)
		return -1;
	snprintf(r->canon, sizeof(r->canon), "limit=%ld&after=%lld", p->limit,
		 p->after);
	return 0;
}

static int read_item(const PGresult *res, int i, int col, char *next,
		     struct es_buf *out, struct es_error *err)
{
	struct view_statement_row row;

	if (view_statement_from_pg(res, i, col, &row, err) < 0)
		return -1;
	snprintf(next, QRY_CURSOR_MAX, "%lld", row.version);
	return qry_read_add_json(out, view_statement_row_json(&row), err);
}

/*
 * The 503 of an account whose stream the view parked, from `parked`,
 * {"position", "error"} as the read gives it.
 */
static void parked_error(struct es_error *err, const char *id,
			 const char *parked)
{
	json_t *j = json_loads(parked, 0, NULL);
	const char *why = json_string_value(json_object_get(j, "error"));

	qry_parked_account_error(
		err, id, json_integer_value(json_object_get(j, "position")),
		why ? why : "");
	json_decref(j);
}

static void read_run(struct qry_read *r, void *arg, struct qry_worker *w)
{
	struct read_params *p = arg;
	struct es_error err = ES_ERROR_INIT;
	char after[24], lim[24];
	const char *params[4] = { p->id, after, lim, p->holder };
	PGresult *res;

	snprintf(after, sizeof(after), "%lld", p->after);
	snprintf(lim, sizeof(lim), "%ld", p->limit + 1);
	res = qry_read_prepared(r, w, "qry_statement", 4, params);
	if (!res)
		return;
	if (strcmp(PQgetvalue(res, 0, 1), "t") != 0 ||
	    !PQgetisnull(res, 0, 2)) {
		qry_read_add_position(r->req, qry_read_position(r, res));
		/* a holder is told of its own accounts only, parked or not */
		if (PQgetisnull(res, 0, 2) ||
		    (p->holder[0] && strcmp(PQgetvalue(res, 0, 1), "t") != 0))
			es_error_set(&err, ES_ENOTFOUND,
				     "account '%s' does not exist", p->id);
		else
			parked_error(&err, p->id, PQgetvalue(res, 0, 2));
		es_http_send_problem(r->req, &err);
		es_error_release(&err);
	} else {
		qry_read_page(r, res, 3, p->limit, read_item);
	}
	PQclear(res);
}

static const struct qry_read_stmt read_stmts[] = {
	{ QRY_DB_READ, "qry_statement", SQL_READ },
	{ QRY_DB_READ, NULL, NULL },
};

const struct qry_read_def view_statement_read = {
	.view = "statement",
	.ryw = 1,
	.stmts = read_stmts,
	.size = sizeof(struct read_params),
	.parse = read_parse,
	.run = read_run,
};
