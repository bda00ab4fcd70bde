/*
 * audit.c - the audit view: a batch groups its events by principal and
 * command in memory and writes one row per command, with COPY, except
 * where an earlier batch may have begun the command (a read may end in
 * the middle of a transaction's events): there INSERT ... ON CONFLICT
 * merges them.
 */
#include "audit.h"

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../qry_read.h"
#include "bulk.h"
#include "es_db.h"
#include "es_event.h"
#include "es_table.h"
#include "es_utf8.h"
#include "jspan.h"

/* Whether `len` bytes at `s` hold `word`. */
static int holds(const char *s, size_t len, const char *word)
{
	size_t n = strlen(word);
	const char *p = s, *end = s + len;

	while ((size_t)(end - p) >= n &&
	       (p = memchr(p, word[0], (size_t)(end - p - (ptrdiff_t)n + 1)))) {
		if (memcmp(p, word, n) == 0)
			return 1;
		p++;
	}
	return 0;
}

int view_audit_meta_read(const char *s, size_t len, struct view_audit_meta *m)
{
	struct view_jspan meta = { s, len }, principal, v;

	m->sub[0] = m->command_id[0] = m->correlation_id[0] = '\0';
	/*
	 * Metadata is jsonb printed by PostgreSQL, whose keys are written
	 * as they are: without this word, no principal (most events of an
	 * older log), and nothing to scan.
	 */
	if (!s || !holds(s, len, ES_M_PRINCIPAL))
		return 0;
	if (!view_jspan_member(meta, ES_M_PRINCIPAL, &principal) ||
	    principal.s[0] != '{' ||
	    !view_jspan_member(principal, ES_M_SUB, &v) ||
	    view_jspan_string(v, m->sub, VIEW_AUDIT_SUB_MAX) < 1) {
		m->sub[0] = '\0';
		return 0;
	}
	if (!view_jspan_member(meta, ES_M_COMMAND_ID, &v) ||
	    view_jspan_string(v, m->command_id, VIEW_AUDIT_ID_MAX) < 0)
		m->command_id[0] = '\0';
	if (!view_jspan_member(meta, ES_M_CORRELATION_ID, &v) ||
	    view_jspan_string(v, m->correlation_id, VIEW_AUDIT_ID_MAX) < 0)
		m->correlation_id[0] = '\0';
	return 1;
}

/* ---- the batch ---- */

struct audit_batch {
	struct view_audit_action *v;
	size_t n, alloc;
	struct es_table index; /* action key -> index into v */
	long events;
	uint64_t resume_xid; /* batch_resume()'s, 0: none */
	int told; /* batch_resume() was called: reads say where they stop */
};

static void action_release(struct view_audit_action *a)
{
	size_t i;

	for (i = 0; i < a->nev; i++) {
		free(a->ev[i].stream_id);
		free(a->ev[i].type);
	}
	free(a->ev);
	free(a->sub);
	free(a->command_id);
	free(a->correlation_id);
	free(a->key);
}

static void *batch_new(void)
{
	return calloc(1, sizeof(struct audit_batch));
}

static void batch_free(void *batch)
{
	struct audit_batch *b = batch;
	size_t i;

	if (!b)
		return;
	for (i = 0; i < b->n; i++)
		action_release(&b->v[i]);
	free(b->v);
	es_table_release(&b->index);
	free(b);
}

static void batch_resume(void *batch, uint64_t xid)
{
	struct audit_batch *b = batch;

	b->resume_xid = xid;
	b->told = 1;
}

static long batch_size(const void *batch)
{
	return ((const struct audit_batch *)batch)->events;
}

static long batch_rows(const void *batch)
{
	return (long)((const struct audit_batch *)batch)->n;
}

const struct view_audit_action *view_audit_actions(const void *batch, size_t *n)
{
	const struct audit_batch *b = batch;

	*n = b->n;
	return b->v;
}

/*
 * The key of (sub, command_id): the sub's length first, so that no two
 * pairs make one key whatever bytes they hold. NULL: out of memory.
 */
static char *action_key(const struct view_audit_meta *m)
{
	size_t ns = strlen(m->sub), nc = strlen(m->command_id);
	char *k = malloc(ns + nc + 8);

	if (k)
		snprintf(k, ns + nc + 8, "%zu:%s%s", ns, m->sub, m->command_id);
	return k;
}

/* A new action of `m` at the end of the batch, or NULL (out of memory). */
static struct view_audit_action *
action_new(struct audit_batch *b, const struct view_audit_meta *m, char *key)
{
	struct view_audit_action *a;
	size_t alloc;

	if (b->n == b->alloc) {
		alloc = b->alloc ? b->alloc * 2 : 64;
		a = realloc(b->v, alloc * sizeof(*a));
		if (!a)
			return NULL;
		b->v = a;
		b->alloc = alloc;
	}
	a = &b->v[b->n];
	memset(a, 0, sizeof(*a));
	a->sub = strdup(m->sub);
	a->command_id = m->command_id[0] ? strdup(m->command_id) : NULL;
	a->correlation_id =
		m->correlation_id[0] ? strdup(m->correlation_id) : NULL;
	a->position = -1;
	if (!a->sub || (m->command_id[0] && !a->command_id) ||
	    (m->correlation_id[0] && !a->correlation_id)) {
		action_release(a);
		return NULL;
	}
	a->key = key;
	b->n++;
	return a;
}

/* Add `ev` to `a`, in position order; -1 when out of memory. */
static int action_add(struct view_audit_action *a, const struct es_event *ev,
		      const struct view_audit_meta *m, const char *time)
{
	struct view_audit_event e = { 0 }, *v;
	/* the first event names the command's position, time, correlation */
	int first = !a->nev || ev->position < a->position;
	char *corr = NULL;
	size_t i, alloc;

	if (a->nev == a->alloc) {
		alloc = a->alloc ? a->alloc * 2 : 4;
		v = realloc(a->ev, alloc * sizeof(*v));
		if (!v)
			return -1;
		a->ev = v;
		a->alloc = alloc;
	}
	e.position = ev->position;
	e.version = ev->version;
	e.has_amount = view_payload_int_if(ev, ES_F_AMOUNT, &e.amount);
	if (!e.has_amount)
		e.amount = 0;
	e.stream_id = strdup(ev->stream_id);
	e.type = strdup(ev->type);
	if (first && a->nev && m->correlation_id[0])
		corr = strdup(m->correlation_id);
	if (!e.stream_id || !e.type ||
	    (first && a->nev && m->correlation_id[0] && !corr)) {
		free(e.stream_id);
		free(e.type);
		return -1;
	}
	if (first && a->nev) {
		free(a->correlation_id);
		a->correlation_id = corr;
	}
	if (first) {
		a->position = ev->position;
		snprintf(a->recorded_at, sizeof(a->recorded_at), "%s", time);
	}
	for (i = a->nev; i > 0 && a->ev[i - 1].position > e.position; i--)
		a->ev[i] = a->ev[i - 1];
	a->ev[i] = e;
	a->nev++;
	return 0;
}

/* Whether `s` is UTF-8 (what a jsonb string must be). */
static int utf8(const char *s)
{
	return s && es_utf8_chars(s, strlen(s), NULL) >= 0;
}

static int batch_apply(void *batch, const struct es_event *ev,
		       struct es_error *err)
{
	struct audit_batch *b = batch;
	struct view_audit_meta m;
	struct view_audit_action *a = NULL;
	struct es_table_slot *slot = NULL;
	char time[VIEW_TIME_MAX], *key = NULL;
	int added = 0;

	if (!view_audit_meta_read(ev->metadata, ev->metadata_len, &m) ||
	    !utf8(ev->stream_id) || !utf8(ev->type))
		return 0;
	if (view_event_time(ev, time, err) < 0)
		return -1;
	if (m.command_id[0]) {
		key = action_key(&m);
		if (!key)
			goto oom;
		slot = es_table_get(&b->index, key);
		if (slot) {
			free(key);
			key = NULL;
			a = &b->v[slot->val.idx];
		}
	}
	if (!a) {
		/* room first: the put cannot fail after the action is made */
		if (key && es_table_reserve(&b->index, 1) < 0)
			goto oom;
		a = action_new(b, &m, key);
		if (!a)
			goto oom;
		if (key) {
			slot = es_table_put(&b->index, key, &added);
			slot->val.idx = b->n - 1;
		}
		key = NULL;
	}
	if (action_add(a, ev, &m, time) < 0)
		return es_error_set(err, ES_EINTERNAL, "out of memory");
	if (ev->xid && ev->xid == b->resume_xid)
		a->resumed = 1;
	b->events++;
	return 1;
oom:
	free(key);
	return es_error_set(err, ES_EINTERNAL, "out of memory");
}

void view_audit_events_json(const struct view_audit_action *a,
			    struct es_buf *out)
{
	const struct view_audit_event *e;
	size_t i;

	es_buf_adds(out, "[");
	for (i = 0; i < a->nev; i++) {
		e = &a->ev[i];
		es_buf_addf(out,
			    "%s{\"position\":%lld,\"stream\":", i ? "," : "",
			    e->position);
		es_buf_add_jstr(out, e->stream_id, strlen(e->stream_id));
		es_buf_addf(out, ",\"version\":%lld,\"type\":", e->version);
		es_buf_add_jstr(out, e->type, strlen(e->type));
		if (e->has_amount)
			es_buf_addf(out, ",\"amount\":%lld}", e->amount);
		else
			es_buf_adds(out, ",\"amount\":null}");
	}
	es_buf_adds(out, "]");
}

#define SQL_ADD                                                                   \
	"INSERT INTO %s AS a (sub, position, command_id, correlation_id,"         \
	" recorded_at, events)"                                                   \
	" SELECT * FROM unnest($1::text[], $2::bigint[], $3::text[], $4::text[]," \
	" $5::timestamptz[], $6::jsonb[])"                                        \
	" ON CONFLICT (sub, command_id) DO UPDATE SET"                            \
	" position = least(a.position, EXCLUDED.position),"                       \
	" recorded_at = CASE WHEN EXCLUDED.position < a.position"                 \
	" THEN EXCLUDED.recorded_at ELSE a.recorded_at END,"                      \
	" correlation_id = CASE WHEN EXCLUDED.position < a.position"              \
	" THEN EXCLUDED.correlation_id ELSE a.correlation_id END,"                \
	" events = (SELECT jsonb_agg(e ORDER BY (e->>'position')::bigint)"        \
	" FROM jsonb_array_elements(a.events || EXCLUDED.events) e)"
#define ADD_NPARAMS 6

#define COPY_COLUMNS \
	"sub, position, command_id, correlation_id, recorded_at, events"
/*
 * Unreleased: the views written after it in the transaction commit
 * with it, and nothing rolls back to it but the fallback below.
 */
#define SQL_SAVEPOINT_COPY                                  \
	"SAVEPOINT view_audit_copy; COPY %s (" COPY_COLUMNS \
	") FROM STDIN (FORMAT binary)"
#define SQL_ROLLBACK "ROLLBACK TO SAVEPOINT view_audit_copy"

/*
 * Whether the batch's action `i` may continue a command an earlier batch
 * wrote: one of a transaction a read stopped inside (batch_resume()); in
 * a batch nobody told where reads stopped (a rebuild), the batch's first
 * (a read that stops inside a transaction leaves the rest of one command
 * at least to the next batch, whose first action it is).
 */
static int resumed(const struct audit_batch *b, size_t i)
{
	return b->v[i].resumed || (i == 0 && !b->told);
}

/*
 * The batch's actions of which resumed() is `which` as rows of COPY
 * binary format; -1 (with `err`) for an action whose time has not the
 * form view_bin_time() takes.
 */
static int copy_rows(const struct audit_batch *b, int which, struct es_buf *out,
		     struct es_error *err)
{
	struct es_buf ev = ES_BUF_INIT;
	const struct view_audit_action *a;
	size_t i;
	int ret = -1;

	view_bin_begin(out);
	for (i = 0; i < b->n; i++) {
		if (resumed(b, i) != which)
			continue;
		a = &b->v[i];
		view_bin_row(out, ADD_NPARAMS);
		view_bin_text(out, a->sub);
		view_bin_ll(out, a->position);
		view_bin_text(out, a->command_id);
		view_bin_text(out, a->correlation_id);
		if (view_bin_time(out, a->recorded_at) < 0) {
			es_error_set(err, ES_EINTERNAL,
				     "event %lld: bad time for view_audit",
				     a->position);
			goto out;
		}
		es_buf_reset(&ev);
		view_audit_events_json(a, &ev);
		if (es_buf_check(&ev, err) < 0)
			goto out;
		view_bin_jsonb(out, ev.s, ev.len);
	}
	view_bin_end(out);
	ret = es_buf_check(out, err);
out:
	es_buf_release(&ev);
	return ret;
}

/*
 * The batch's actions of which resumed() is `which` merged into the rows
 * of commands an earlier batch began (a read that ended in the middle of
 * a transaction, or a command id used again by a later append).
 */
static int merge_rows(const struct audit_batch *b, int which, PGconn *db,
		      const char *table, const char *suffix,
		      struct es_error *err)
{
	struct es_buf col[ADD_NPARAMS] = { ES_BUF_INIT }, ev = ES_BUF_INIT;
	const char *params[ADD_NPARAMS];
	const struct view_audit_action *a;
	char sql[1024];
	size_t i;
	int k, ret = -1;

	for (k = 0; k < ADD_NPARAMS; k++)
		view_arr_open(&col[k]);
	for (i = 0; i < b->n; i++) {
		if (resumed(b, i) != which)
			continue;
		a = &b->v[i];
		view_arr_str(&col[0], a->sub);
		view_arr_ll(&col[1], a->position);
		view_arr_str(&col[2], a->command_id);
		view_arr_str(&col[3], a->correlation_id);
		view_arr_word(&col[4], a->recorded_at);
		es_buf_reset(&ev);
		view_audit_events_json(a, &ev);
		if (es_buf_check(&ev, err) < 0)
			goto out;
		view_arr_str(&col[5], ev.s);
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
	es_buf_release(&ev);
	return ret;
}

/*
 * Nearly every action is a command no earlier batch has seen: its rows
 * go in with COPY, which spares the server the arrays' text, the
 * speculative insertion and the conflict check of INSERT ... ON
 * CONFLICT (a third of the view's cost per event). Those that may
 * continue one (resumed()) are merged. Any other row whose (sub,
 * command_id) is there already (a command id that another appender used
 * again, or a rebuild's batch that began inside a transaction of several
 * commands) undoes the COPY to its savepoint, and the rest of the batch
 * is merged.
 */
static int batch_flush(void *batch, PGconn *db, const char *suffix,
		       struct es_error *err)
{
	struct audit_batch *b = batch;
	struct es_buf rows = ES_BUF_INIT;
	char table[64], sql[256];
	size_t i, copied = 0;
	int r, ret = -1;

	if (view_table_name(table, sizeof(table), "view_audit", suffix, err) <
	    0)
		return -1;
	if (!b->n)
		return 0;
	for (i = 0; i < b->n; i++)
		copied += !resumed(b, i);
	if (copied < b->n && merge_rows(b, 1, db, table, suffix, err) < 0)
		return -1;
	if (!copied)
		return 0;
	if (copy_rows(b, 0, &rows, err) < 0)
		goto out;
	snprintf(sql, sizeof(sql), SQL_SAVEPOINT_COPY, table);
	r = view_copy_try(db, table, sql, &rows, err);
	if (r == 1 && (es_db_exec(db, SQL_ROLLBACK, err) < 0 ||
		       merge_rows(b, 0, db, table, suffix, err) < 0))
		goto out;
	if (r < 0)
		goto out;
	ret = 0;
out:
	es_buf_release(&rows);
	return ret;
}

static const char *const tables[] = { "view_audit", NULL };

const struct view_ops view_audit_ops = {
	.name = "audit",
	.metadata = 1,
	/* view_audit_meta_read() finds nothing without it */
	.metadata_key = ES_M_PRINCIPAL,
	.batch_new = batch_new,
	.batch_free = batch_free,
	.apply = batch_apply,
	.batch_resume = batch_resume,
	.batch_size = batch_size,
	.batch_rows = batch_rows,
	.flush = batch_flush,
	.tables = tables,
};

/* ---- GET /audit/principals/{sub}/actions ---- */

json_t *view_audit_item_json(long long position, const char *recorded_at,
			     const char *command_id, const char *correlation_id,
			     const char *events)
{
	json_t *stored = json_loads(events, 0, NULL), *evs = json_array(),
	       *streams = json_array(), *seen = json_object(), *e, *item = NULL;
	const char *stream;
	size_t i;

	if (!json_is_array(stored) || !evs || !streams || !seen)
		goto out;
	json_array_foreach(stored, i, e)
	{
		stream = json_string_value(json_object_get(e, "stream"));
		if (!stream)
			goto out;
		if (!json_object_get(seen, stream) &&
		    (json_object_set_new(seen, stream, json_true()) < 0 ||
		     json_array_append_new(streams, json_string(stream)) < 0))
			goto out;
		if (json_array_append_new(
			    evs,
			    json_pack("{s:O, s:O, s:O, s:O, s:O}", "position",
				      json_object_get(e, "position"), "stream",
				      json_object_get(e, "stream"), "version",
				      json_object_get(e, "version"), "type",
				      json_object_get(e, "type"), "amount",
				      json_object_get(e, "amount"))) < 0)
			goto out;
	}
	item = json_pack("{s:I, s:s, s:s?, s:s?, s:O, s:O}", "position",
			 (json_int_t)position, "recorded_at", recorded_at,
			 "command_id", command_id, "correlation_id",
			 correlation_id, "streams", streams, "events", evs);
out:
	json_decref(stored);
	json_decref(evs);
	json_decref(streams);
	json_decref(seen);
	return item;
}

#define SQL_READ                                                           \
	"SELECT cp.cp_position, a.position, to_char(a.recorded_at AT TIME" \
	" ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.US\"Z\"'), a.command_id," \
	" a.correlation_id, a.events::text" QRY_READ_FROM_CHECKPOINT(      \
		"audit") " LEFT JOIN LATERAL (SELECT * FROM view_audit"    \
			 " WHERE sub = $1 AND position > $2::bigint"       \
			 " ORDER BY position LIMIT $3::bigint) a ON true"  \
			 " ORDER BY a.position"

struct read_params {
	char sub[VIEW_AUDIT_SUB_MAX + 1];
	long long after; /* 0: from the start */
	long limit;
};

static int read_parse(struct qry_read *r, void *arg, struct es_error *err)
{
	struct read_params *p = arg;
	const char *after = es_request_query(r->req, "after");
	const char *sub = es_request_param(r->req, "sub");
	size_t len = sub ? strlen(sub) : 0;

	/* no principal the view lists has such a sub */
	if (len < 1 || len > VIEW_AUDIT_SUB_MAX ||
	    es_utf8_chars(sub, len, NULL) < 0)
		return es_error_set(err, ES_ENOTFOUND,
				    "no principal '%.60s' can have actions",
				    sub ? sub : "");
	memcpy(p->sub, sub, len + 1);
	if (after && (qry_parse_ll(after, &p->after) < 0 || p->after < 0))
		return es_error_set(err, ES_EMALFORMED,
				    "malformed cursor '%.60s'", after);
	if (qry_read_limit(r, &p->limit, err) < 0)
		return -1;
	snprintf(r->canon, sizeof(r->canon), "limit=%ld&after=%lld", p->limit,
		 p->after);
	return 0;
}

/* A nullable text column: NULL for SQL NULL. */
static const char *pg_nullable(const PGresult *res, int i, int col)
{
	return PQgetisnull(res, i, col) ? NULL : PQgetvalue(res, i, col);
}

static int read_item(const PGresult *res, int i, int col, char *next,
		     struct es_buf *out, struct es_error *err)
{
	long long position = strtoll(PQgetvalue(res, i, col), NULL, 10);
	json_t *item;

	item = view_audit_item_json(position, PQgetvalue(res, i, col + 1),
				    pg_nullable(res, i, col + 2),
				    pg_nullable(res, i, col + 3),
				    PQgetvalue(res, i, col + 4));
	if (!item)
		return es_error_set(err, ES_EINTERNAL,
				    "cannot render view_audit row %lld",
				    position);
	snprintf(next, QRY_CURSOR_MAX, "%lld", position);
	return qry_read_add_json(out, item, err);
}

static void read_run(struct qry_read *r, void *arg, struct qry_worker *w)
{
	struct read_params *p = arg;
	char after[24], lim[24];
	const char *params[3] = { p->sub, after, lim };
	PGresult *res;

	snprintf(after, sizeof(after), "%lld", p->after);
	snprintf(lim, sizeof(lim), "%ld", p->limit + 1);
	res = qry_read_prepared(r, w, "qry_audit", 3, params);
	if (!res)
		return;
	qry_read_page(r, res, 1, p->limit, read_item);
	PQclear(res);
}

static const struct qry_read_stmt read_stmts[] = {
	{ QRY_DB_READ, "qry_audit", SQL_READ },
	{ QRY_DB_READ, NULL, NULL },
};

const struct qry_read_def view_audit_read = {
	.view = "audit",
	.ryw = 1,
	.stmts = read_stmts,
	.size = sizeof(struct read_params),
	.parse = read_parse,
	.run = read_run,
};
