/*
 * view_account.c - the account view: one row per account, folded from the
 * account streams ("account-<uuid>"): AccountOpened sets every column,
 * money events set the balance from their "balance_after",
 * OverdraftLimitChanged sets overdraft_limit (and nothing else: the
 * balance it states is the one the row has), AccountClosed closes; each
 * moves version, updated_at and position. Unknown types and other
 * categories are skipped.
 *
 * The pure fold (view_account_fold) serves the in-memory view; the batch
 * (view_accounts_ops) keeps per account what its events said and writes
 * the table in two statements: one upsert for the accounts opened in the
 * batch, one UPDATE ... FROM for the others.
 */
#include "view_account.h"

#include <stdlib.h>
#include <string.h>

#include "bulk.h"
#include "es_event.h"
#include "es_utf8.h"
#include "keymap.h"
#include "payload.h"

enum acc_kind { ACC_SKIP, ACC_OPENED, ACC_MONEY, ACC_LIMIT, ACC_CLOSED };

/* One event as the account view reads it. Strings borrow from the event. */
struct acc_event {
	enum acc_kind kind;
	char id[37];
	const char *owner;
	char currency[4];
	long long overdraft_limit;
	long long balance_after;
	char time[VIEW_TIME_MAX];
};

int view_account_stream(const char *stream_id, char id[37])
{
	return view_stream_account(stream_id, id);
}

static enum acc_kind kind_of(const char *type)
{
	if (!type)
		return ACC_SKIP;
	if (!strcmp(type, ES_EV_ACCOUNT_OPENED))
		return ACC_OPENED;
	if (!strcmp(type, ES_EV_MONEY_DEPOSITED) ||
	    !strcmp(type, ES_EV_MONEY_WITHDRAWN) ||
	    !strcmp(type, ES_EV_TRANSFER_SENT) ||
	    !strcmp(type, ES_EV_TRANSFER_RECEIVED))
		return ACC_MONEY;
	if (!strcmp(type, ES_EV_OVERDRAFT_CHANGED))
		return ACC_LIMIT;
	if (!strcmp(type, ES_EV_ACCOUNT_CLOSED))
		return ACC_CLOSED;
	return ACC_SKIP;
}

/* Read `ev`: 1 with `p` filled, 0 to skip it, -1 when malformed. */
static int parse(const struct es_event *ev, struct acc_event *p,
		 struct es_error *err)
{
	memset(p, 0, sizeof(*p));
	p->kind = kind_of(ev->type);
	if (p->kind == ACC_SKIP || !view_event_account(ev, p->id))
		return 0;
	if (view_event_time(ev, p->time, err) < 0)
		return -1;
	switch (p->kind) {
	case ACC_OPENED:
		if (view_payload_str(ev, ES_F_OWNER, 1,
				     sizeof(((struct view_account *)0)->owner),
				     &p->owner, err) < 0 ||
		    view_payload_currency(ev, ES_F_CURRENCY, 1, p->currency,
					  err) < 0 ||
		    view_payload_int(ev, ES_F_OVERDRAFT_LIMIT,
				     &p->overdraft_limit, err) < 0)
			return -1;
		if (p->overdraft_limit < 0)
			return view_payload_error(
				ev, err, "'overdraft_limit' is negative");
		break;
	case ACC_MONEY:
		if (view_payload_int(ev, ES_F_BALANCE_AFTER, &p->balance_after,
				     err) < 0)
			return -1;
		break;
	case ACC_LIMIT:
		if (view_payload_int(ev, ES_F_OVERDRAFT_LIMIT,
				     &p->overdraft_limit, err) < 0)
			return -1;
		if (p->overdraft_limit < 0)
			return view_payload_error(
				ev, err, "'overdraft_limit' is negative");
		break;
	default:
		break;
	}
	return 1;
}

/* Apply a parsed event to a row that holds every column. */
static void apply(struct view_account *acc, const struct es_event *ev,
		  const struct acc_event *p)
{
	switch (p->kind) {
	case ACC_OPENED:
		memset(acc, 0, sizeof(*acc));
		memcpy(acc->id, p->id, sizeof(acc->id));
		memcpy(acc->owner, p->owner, strlen(p->owner) + 1);
		memcpy(acc->currency, p->currency, sizeof(acc->currency));
		acc->overdraft_limit = p->overdraft_limit;
		acc->status = VIEW_ACCOUNT_OPEN;
		memcpy(acc->opened_at, p->time, sizeof(acc->opened_at));
		break;
	case ACC_MONEY:
		acc->balance = p->balance_after;
		break;
	case ACC_LIMIT:
		acc->overdraft_limit = p->overdraft_limit;
		break;
	case ACC_CLOSED:
		acc->status = VIEW_ACCOUNT_CLOSED;
		break;
	default:
		return;
	}
	acc->version = ev->version;
	memcpy(acc->updated_at, p->time, sizeof(acc->updated_at));
}

int view_account_fold(struct view_account *acc, const struct es_event *ev,
		      struct es_error *err)
{
	struct acc_event p;
	int r = parse(ev, &p, err);

	if (r <= 0)
		return r;
	if (acc->id[0] && strcmp(acc->id, p.id) != 0)
		return es_error_set(
			err, ES_EINTERNAL,
			"event %lld of '%s' folded into account '%s'",
			ev->position, ev->stream_id, acc->id);
	if (p.kind != ACC_OPENED && acc->status != VIEW_ACCOUNT_OPEN &&
	    acc->status != VIEW_ACCOUNT_CLOSED)
		return view_payload_error(
			ev, err, "account '%s' was never opened", p.id);
	apply(acc, ev, &p);
	return 1;
}

json_t *view_account_json(const struct view_account *acc)
{
	return json_pack("{s:s, s:s, s:s, s:I, s:I, s:s, s:I, s:s, s:s}", "id",
			 acc->id, "owner", acc->owner, "currency",
			 acc->currency, "balance", (json_int_t)acc->balance,
			 "overdraft_limit", (json_int_t)acc->overdraft_limit,
			 "status",
			 acc->status == VIEW_ACCOUNT_CLOSED ? "closed" : "open",
			 "version", (json_int_t)acc->version, "opened_at",
			 acc->opened_at, "updated_at", acc->updated_at);
}

/* `key` and its string value, each as es_buf_add_jstr() writes it. */
static void render_str(struct es_buf *out, const char *key, const char *v)
{
	es_buf_adds(out, key);
	es_buf_add_jstr(out, v, strlen(v));
}

/* Whether `s` is UTF-8: ASCII at a glance, the rest by es_utf8_chars(). */
static int utf8(const char *s)
{
	const unsigned char *p = (const unsigned char *)s;
	unsigned char high = 0;
	size_t n;

	for (n = 0; p[n]; n++)
		high |= p[n];
	return high < 0x80 || es_utf8_chars(s, n, NULL) >= 0;
}

int view_account_render(const struct view_account *acc, struct es_buf *out)
{
	/* json_pack() refuses such strings; let its path say so */
	if (!utf8(acc->id) || !utf8(acc->owner) || !utf8(acc->currency) ||
	    !utf8(acc->opened_at) || !utf8(acc->updated_at))
		return -1;
	/* the usual account in one allocation */
	es_buf_reserve(out, 320 + 6 * strlen(acc->owner));
	/* the members in view_account_json()'s order, as jansson keeps it */
	render_str(out, "{\"id\":", acc->id);
	render_str(out, ",\"owner\":", acc->owner);
	render_str(out, ",\"currency\":", acc->currency);
	es_buf_adds(out, ",\"balance\":");
	es_buf_add_int(out, acc->balance);
	es_buf_adds(out, ",\"overdraft_limit\":");
	es_buf_add_int(out, acc->overdraft_limit);
	es_buf_adds(out, acc->status == VIEW_ACCOUNT_CLOSED
				 ? ",\"status\":\"closed\""
				 : ",\"status\":\"open\"");
	es_buf_adds(out, ",\"version\":");
	es_buf_add_int(out, acc->version);
	render_str(out, ",\"opened_at\":", acc->opened_at);
	render_str(out, ",\"updated_at\":", acc->updated_at);
	es_buf_adds(out, "}");
	return 0;
}

/* A text value of `res` into `out` of `size` bytes, else -1. */
static int pg_str(const PGresult *res, int i, int col, char *out, size_t size,
		  struct es_error *err)
{
	int len = PQgetlength(res, i, col);

	if (PQgetisnull(res, i, col) || (size_t)len >= size)
		return es_error_set(
			err, ES_EINTERNAL,
			"column %d of a view_accounts row is %s", col,
			PQgetisnull(res, i, col) ? "null" : "too long");
	memcpy(out, PQgetvalue(res, i, col), (size_t)len + 1);
	return 0;
}

int view_account_from_pg(const PGresult *res, int i, int col,
			 struct view_account *acc, struct es_error *err)
{
	char status[8];

	memset(acc, 0, sizeof(*acc));
	if (PQnfields(res) < col + VIEW_ACCOUNT_NCOLS ||
	    pg_str(res, i, col, acc->id, sizeof(acc->id), err) < 0 ||
	    pg_str(res, i, col + 1, acc->owner, sizeof(acc->owner), err) < 0 ||
	    pg_str(res, i, col + 2, acc->currency, sizeof(acc->currency), err) <
		    0 ||
	    pg_str(res, i, col + 5, status, sizeof(status), err) < 0 ||
	    pg_str(res, i, col + 7, acc->opened_at, sizeof(acc->opened_at),
		   err) < 0 ||
	    pg_str(res, i, col + 8, acc->updated_at, sizeof(acc->updated_at),
		   err) < 0)
		return es_error_set(err, ES_EINTERNAL, "bad view_accounts row");
	acc->balance = strtoll(PQgetvalue(res, i, col + 3), NULL, 10);
	acc->overdraft_limit = strtoll(PQgetvalue(res, i, col + 4), NULL, 10);
	acc->version = strtoll(PQgetvalue(res, i, col + 6), NULL, 10);
	acc->status = strcmp(status, "closed") == 0 ? VIEW_ACCOUNT_CLOSED
						    : VIEW_ACCOUNT_OPEN;
	return 0;
}

/* The batch of view_accounts_ops. */
struct accounts_batch {
	struct view_account_change *v; /* in order of first appearance */
	size_t n, alloc;
	struct view_keymap map; /* account id -> index into v */
	long events;
};

static void *batch_new(void)
{
	return calloc(1, sizeof(struct accounts_batch));
}

static void batch_free(void *batch)
{
	struct accounts_batch *b = batch;

	if (!b)
		return;
	free(b->v);
	view_keymap_release(&b->map);
	free(b);
}

static long batch_size(const void *batch)
{
	return ((const struct accounts_batch *)batch)->events;
}

static long batch_rows(const void *batch)
{
	return (long)((const struct accounts_batch *)batch)->n;
}

const struct view_account_change *view_accounts_batch_get(const void *batch,
							  const char *id)
{
	const struct accounts_batch *b = batch;
	size_t i;

	if (!view_keymap_get(&b->map, id, &i))
		return NULL;
	return &b->v[i];
}

/* The entry of account `id`, added (knowing nothing) when new. */
static struct view_account_change *entry(struct accounts_batch *b,
					 const char *id, struct es_error *err)
{
	struct view_account_change *c;
	size_t i, alloc;

	if (view_keymap_get(&b->map, id, &i))
		return &b->v[i];
	if (b->n == b->alloc) {
		alloc = b->alloc ? b->alloc * 2 : 256;
		c = realloc(b->v, alloc * sizeof(*c));
		if (!c) {
			es_error_set(err, ES_EINTERNAL, "out of memory");
			return NULL;
		}
		b->v = c;
		b->alloc = alloc;
	}
	if (view_keymap_put(&b->map, id, b->n, err) < 0)
		return NULL;
	c = &b->v[b->n++];
	memset(c, 0, sizeof(*c));
	memcpy(c->row.id, id, sizeof(c->row.id));
	return c;
}

static int batch_apply(void *batch, const struct es_event *ev,
		       struct es_error *err)
{
	struct accounts_batch *b = batch;
	struct view_account_change *c;
	struct acc_event p;
	int r = parse(ev, &p, err);

	if (r <= 0)
		return r;
	c = entry(b, p.id, err);
	if (!c)
		return -1;
	if (p.kind == ACC_OPENED) {
		c->opened = 1;
		c->has_balance = 0;
		c->has_limit = 0;
		c->has_status = 0;
	}
	apply(&c->row, ev, &p);
	if (p.kind == ACC_MONEY)
		c->has_balance = 1;
	else if (p.kind == ACC_LIMIT)
		c->has_limit = 1;
	else if (p.kind == ACC_CLOSED)
		c->has_status = 1;
	c->position = ev->position;
	b->events++;
	return 1;
}

static const char *status_name(enum view_account_status s)
{
	return s == VIEW_ACCOUNT_CLOSED ? "closed" : "open";
}

#define SQL_UPSERT                                                            \
	"INSERT INTO %s (account_id, owner, currency, balance,"               \
	" overdraft_limit, status, version, opened_at, updated_at, position)" \
	" SELECT * FROM unnest($1::uuid[], $2::text[], $3::text[],"           \
	" $4::bigint[], $5::bigint[], $6::text[], $7::bigint[],"              \
	" $8::timestamptz[], $9::timestamptz[], $10::bigint[])"               \
	" ON CONFLICT (account_id) DO UPDATE SET owner = EXCLUDED.owner,"     \
	" currency = EXCLUDED.currency, balance = EXCLUDED.balance,"          \
	" overdraft_limit = EXCLUDED.overdraft_limit,"                        \
	" status = EXCLUDED.status, version = EXCLUDED.version,"              \
	" opened_at = EXCLUDED.opened_at, updated_at = EXCLUDED.updated_at,"  \
	" position = EXCLUDED.position"
#define UPSERT_NPARAMS 10

#define SQL_UPDATE                                                          \
	"UPDATE %s AS v SET balance = coalesce(t.balance, v.balance),"      \
	" overdraft_limit = coalesce(t.overdraft_limit,"                    \
	" v.overdraft_limit),"                                              \
	" status = coalesce(t.status, v.status), version = t.version,"      \
	" updated_at = t.updated_at, position = t.position"                 \
	" FROM unnest($1::uuid[], $2::bigint[], $3::text[], $4::bigint[],"  \
	" $5::timestamptz[], $6::bigint[], $7::bigint[])"                   \
	" AS t(account_id, balance, status, version, updated_at, position," \
	" overdraft_limit)"                                                 \
	" WHERE v.account_id = t.account_id"
#define UPDATE_NPARAMS 7

#define SQL_MISSING                                                           \
	"SELECT t.id::text FROM unnest($1::uuid[]) AS t(id) WHERE NOT EXISTS" \
	" (SELECT 1 FROM %s v WHERE v.account_id = t.id) LIMIT 1"

/*
 * Some accounts of the UPDATE have no row: events of an account whose
 * AccountOpened the view never saw. Name one.
 */
static int missing(struct accounts_batch *b, PGconn *db, const char *table,
		   const char *ids, struct es_error *err)
{
	char sql[256];
	PGresult *res;
	const struct view_account_change *c = NULL;
	size_t i;

	snprintf(sql, sizeof(sql), SQL_MISSING, table);
	res = PQexecParams(db, sql, 1, NULL, &ids, NULL, NULL, 0);
	if (PQresultStatus(res) == PGRES_TUPLES_OK && PQntuples(res) == 1 &&
	    view_keymap_get(&b->map, PQgetvalue(res, 0, 0), &i))
		c = &b->v[i];
	PQclear(res);
	if (!c)
		return es_error_set(err, ES_EINVALID,
				    "events of accounts missing from %s",
				    table);
	return es_error_set(
		err, ES_EINVALID,
		"event %lld: account '%s' has events but was never opened",
		c->position, c->row.id);
}

static int batch_flush(void *batch, PGconn *db, const char *suffix,
		       struct es_error *err)
{
	struct accounts_batch *b = batch;
	struct es_buf col[UPSERT_NPARAMS] = { ES_BUF_INIT };
	const char *params[UPSERT_NPARAMS];
	char table[64], sql[1024];
	size_t i, nopen = 0, nupd = 0;
	long long affected = 0;
	const struct view_account_change *c;
	int k, ret = -1;

	if (view_table_name(table, sizeof(table), "view_accounts", suffix,
			    err) < 0)
		return -1;
	for (i = 0; i < b->n; i++)
		nopen += b->v[i].opened;
	nupd = b->n - nopen;

	if (nopen) {
		for (k = 0; k < UPSERT_NPARAMS; k++)
			view_arr_open(&col[k]);
		for (i = 0; i < b->n; i++) {
			c = &b->v[i];
			if (!c->opened)
				continue;
			view_arr_word(&col[0], c->row.id);
			view_arr_str(&col[1], c->row.owner);
			view_arr_word(&col[2], c->row.currency);
			view_arr_ll(&col[3], c->row.balance);
			view_arr_ll(&col[4], c->row.overdraft_limit);
			view_arr_word(&col[5], status_name(c->row.status));
			view_arr_ll(&col[6], c->row.version);
			view_arr_word(&col[7], c->row.opened_at);
			view_arr_word(&col[8], c->row.updated_at);
			view_arr_ll(&col[9], c->position);
		}
		for (k = 0; k < UPSERT_NPARAMS; k++) {
			view_arr_close(&col[k]);
			if (es_buf_check(&col[k], err) < 0)
				goto out;
			params[k] = col[k].s;
		}
		snprintf(sql, sizeof(sql), SQL_UPSERT, table);
		if (view_exec(db, table, *suffix ? NULL : "upsert", sql,
			      UPSERT_NPARAMS, params, NULL, err) < 0)
			goto out;
	}

	if (nupd) {
		for (k = 0; k < UPDATE_NPARAMS; k++)
			view_arr_open(&col[k]);
		for (i = 0; i < b->n; i++) {
			c = &b->v[i];
			if (c->opened)
				continue;
			view_arr_word(&col[0], c->row.id);
			if (c->has_balance)
				view_arr_ll(&col[1], c->row.balance);
			else
				view_arr_null(&col[1]);
			if (c->has_status)
				view_arr_word(&col[2],
					      status_name(c->row.status));
			else
				view_arr_null(&col[2]);
			view_arr_ll(&col[3], c->row.version);
			view_arr_word(&col[4], c->row.updated_at);
			view_arr_ll(&col[5], c->position);
			if (c->has_limit)
				view_arr_ll(&col[6], c->row.overdraft_limit);
			else
				view_arr_null(&col[6]);
		}
		for (k = 0; k < UPDATE_NPARAMS; k++) {
			view_arr_close(&col[k]);
			if (es_buf_check(&col[k], err) < 0)
				goto out;
			params[k] = col[k].s;
		}
		snprintf(sql, sizeof(sql), SQL_UPDATE, table);
		if (view_exec(db, table, *suffix ? NULL : "update", sql,
			      UPDATE_NPARAMS, params, &affected, err) < 0)
			goto out;
		if ((size_t)affected != nupd) {
			missing(b, db, table, params[0], err);
			goto out;
		}
	}
	ret = 0;
out:
	for (k = 0; k < UPSERT_NPARAMS; k++)
		es_buf_release(&col[k]);
	return ret;
}

static const char *const tables[] = { "view_accounts", NULL };

const struct view_ops view_accounts_ops = {
	.name = "accounts",
	.batch_new = batch_new,
	.batch_free = batch_free,
	.apply = batch_apply,
	.batch_size = batch_size,
	.batch_rows = batch_rows,
	.flush = batch_flush,
	.tables = tables,
};

char *view_account_text(const struct view_account *acc, size_t *len)
{
	struct es_buf b = ES_BUF_INIT;
	json_t *j;
	char *text;

	if (view_account_render(acc, &b) == 0)
		return es_buf_detach(&b, len);
	es_buf_release(&b);
	j = view_account_json(acc);
	text = j ? json_dumps(j, JSON_COMPACT) : NULL;
	json_decref(j);
	*len = text ? strlen(text) : 0;
	return text;
}
