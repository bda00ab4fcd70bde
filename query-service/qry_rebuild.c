/*
 * qry_rebuild.c - `query-service rebuild [view]`.
 *
 * 1. Shadow tables <table>_rebuild, empty (view_shadow_create()), for the
 *    tables of the chosen views; leftovers of an earlier run are dropped.
 * 2. Bulk load of one snapshot of the log: a reader thread streams every
 *    event visible in one REPEATABLE READ snapshot, in position order,
 *    with one COPY ... TO STDOUT (binary; only the columns views read),
 *    into chunks of events; this thread folds each chunk into every view:
 *    - a view with copy_rows() (rows only ever appended: the statement)
 *      gets a new batch per chunk, streamed through one COPY into a
 *      shadow that its own session created, without indexes, in the one
 *      transaction that loads it all (COPY FREEZE) and then indexes it:
 *      sorted index builds cost a fraction of row-by-row index inserts;
 *    - any other view (rows keyed and updated: accounts, daily) keeps one
 *      batch across the chunks, as big as the view itself rather than as
 *      the log, written when it holds KEPT_ROWS_MAX rows and at the end.
 *    Sessions that write shadows run with synchronous_commit off: a crash
 *    only means running the rebuild again.
 * 3. Catch up: read on from that snapshot (es_read_forward) until a read
 *    comes back short, writing each batch into the shadows.
 * 4. Swap, in ONE read-database transaction: lock the projection_leader
 *    row (the live projector's next batch waits for us), read the live
 *    checkpoints, read on until the shadow's cursor covers every healthy
 *    one, write that last stretch into the shadows, drop the live tables,
 *    rename the shadows, their indexes and grants to the live names, set
 *    the rebuilt views' checkpoints to the shadow's cursor (epoch kept,
 *    stopped_error cleared), NOTIFY tandem_checkpoint, COMMIT.
 *
 * A reader sees the old tables or the new ones, each with its checkpoint;
 * the live projector's next batch finds the rebuilt views' checkpoints
 * moved (compare-and-set), rolls back and starts over from them.
 */
#include "qry_rebuild.h"

#include <jansson.h>
#include <malloc.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "es_db.h"
#include "es_log.h"
#include "es_read.h"
#include "qry_checkpoint.h"
#include "qry_feed.h"
#include "qry_order.h"
#include "views/bulk.h"
#include "views/view.h"

#define SUFFIX	  "_rebuild"
#define TABLE_MAX 64
/* events per read once the bulk load is done */
#define REBUILD_BATCH 4000
/* rows a kept batch may hold before it is written out */
#define KEPT_ROWS_MAX 65536

#define SQL_FENCE "SELECT epoch FROM projection_leader WHERE id = 1 FOR UPDATE"
/* index name, unique, and the definition from USING on (name-free) */
#define SQL_INDEXES                                                \
	"SELECT i.relname, x.indisunique,"                         \
	" substr(pg_get_indexdef(x.indexrelid),"                   \
	" strpos(pg_get_indexdef(x.indexrelid), ' USING '))"       \
	" FROM pg_index x JOIN pg_class i ON i.oid = x.indexrelid" \
	" WHERE x.indrelid = $1::regclass ORDER BY i.relname"
/* grants of a table, other than its owner's own */
#define SQL_GRANTS                                                   \
	"SELECT CASE WHEN a.grantee = 0 THEN 'PUBLIC'"               \
	" ELSE quote_ident(r.rolname) END, a.privilege_type"         \
	" FROM pg_class c CROSS JOIN LATERAL aclexplode(c.relacl) a" \
	" LEFT JOIN pg_roles r ON r.oid = a.grantee"                 \
	" WHERE c.oid = $1::regclass AND a.grantee <> c.relowner"
#define SQL_COMMENT "SELECT obj_description($1::regclass, 'pg_class')"
#define SQL_SET_CHECKPOINT                                                   \
	"UPDATE projection_checkpoints SET position = $2, applied = $3,"     \
	" stopped_error = NULL, stopped_position = NULL, updated_at = now()" \
	" WHERE view = $1"

static double now_s(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/*
 * Fold `ev` into `batch` of `ops`. A malformed event is ES_EINVALID
 * naming the view and the event.
 */
static int apply_event(const struct view_ops *ops, void *batch,
		       const struct es_event *ev, struct es_error *err)
{
	struct es_error e = ES_ERROR_INIT;

	if (ops->apply(batch, ev, &e) >= 0)
		return 0;
	es_error_set(err, e.code,
		     "cannot rebuild view '%s': event %lld"
		     " (%s, '%s' version %lld): %s",
		     ops->name, ev->position, ev->type, ev->stream_id,
		     ev->version, e.detail);
	es_error_release(&e);
	return -1;
}

/*
 * Fold `evs` into a new batch of `ops` and write it into the shadow on
 * `db`, in the caller's open transaction.
 */
static int fold_and_flush(const struct view_ops *ops, PGconn *db,
			  const struct es_events *evs, long long *applied,
			  struct es_error *err)
{
	void *batch = ops->batch_new();
	int ret = -1;
	size_t i;

	if (!batch)
		return es_error_set(err, ES_EINTERNAL, "out of memory");
	for (i = 0; i < evs->n; i++)
		if (apply_event(ops, batch, &evs->v[i], err) < 0)
			goto out;
	*applied += (long long)evs->n;
	ret = ops->flush(batch, db, SUFFIX, err);
out:
	ops->batch_free(batch);
	return ret;
}

/* ---- the bulk load ---- */

/* A view being rebuilt. */
struct rview {
	const struct view_ops *ops;
	void *batch; /* changes not yet written */
	/* with ops->copy_rows: the session streaming rows into its shadow */
	PGconn *load;
	struct es_buf rows;
};

struct bulk_times {
	double fold, write, index;
};

/* Send `rows` (COPY data) on `db`, in the middle of a COPY FROM STDIN. */
static int copy_send(PGconn *db, const struct es_buf *rows,
		     struct es_error *err)
{
	return view_copy_data(db, rows) < 0 ? es_db_error(db, NULL, err) : 0;
}

/*
 * On `v->load`, in its open transaction: create the shadow of the view's
 * table without indexes and start the COPY into it.
 */
static int copy_start(struct rview *v, struct es_error *err)
{
	const char *table = v->ops->tables[0];
	char name[TABLE_MAX + sizeof(SUFFIX)], sql[1024];
	PGresult *res;
	int n;

	if (!table || v->ops->tables[1])
		return es_error_set(
			err, ES_EINTERNAL,
			"view '%s' must have one table to be copied",
			v->ops->name);
	if (view_table_name(name, sizeof(name), table, SUFFIX, err) < 0 ||
	    view_shadow_create(v->load, table, SUFFIX, 1, err) < 0)
		return -1;
	/* FREEZE: the table is new in this transaction */
	n = snprintf(sql, sizeof(sql),
		     "COPY %s (%s) FROM STDIN (FORMAT binary, FREEZE)", name,
		     v->ops->copy_columns);
	if (n < 0 || (size_t)n >= sizeof(sql))
		return es_error_set(err, ES_EINTERNAL, "statement too long");
	res = PQexec(v->load, sql);
	if (PQresultStatus(res) != PGRES_COPY_IN) {
		es_db_error(v->load, res, err);
		PQclear(res);
		return -1;
	}
	PQclear(res);
	es_buf_reset(&v->rows);
	view_bin_begin(&v->rows);
	if (es_buf_check(&v->rows, err) < 0)
		return -1;
	return copy_send(v->load, &v->rows, err);
}

/* End the COPY of copy_start(); index the shadow; commit. */
static int copy_finish(struct rview *v, struct es_error *err)
{
	PGresult *res;
	int ret = 0;

	es_buf_reset(&v->rows);
	view_bin_end(&v->rows);
	if (es_buf_check(&v->rows, err) < 0 ||
	    copy_send(v->load, &v->rows, err) < 0)
		return -1;
	if (PQputCopyEnd(v->load, NULL) != 1)
		return es_db_error(v->load, NULL, err);
	while ((res = PQgetResult(v->load))) {
		if (PQresultStatus(res) != PGRES_COMMAND_OK && ret == 0)
			ret = es_db_error(v->load, res, err);
		PQclear(res);
	}
	if (ret < 0 ||
	    view_shadow_index(v->load, v->ops->tables[0], SUFFIX, err) < 0 ||
	    es_db_exec(v->load, "COMMIT", err) < 0)
		return -1;
	return 0;
}

/* Write a kept batch in its own transaction on `db`; start a new one. */
static int write_kept(struct rview *v, PGconn *db, struct es_error *err)
{
	if (es_db_exec(db, "BEGIN", err) < 0 ||
	    v->ops->flush(v->batch, db, SUFFIX, err) < 0 ||
	    es_db_exec(db, "COMMIT", err) < 0) {
		if (PQtransactionStatus(db) != PQTRANS_IDLE)
			PQclear(PQexec(db, "ROLLBACK"));
		return -1;
	}
	v->ops->batch_free(v->batch);
	v->batch = v->ops->batch_new();
	if (!v->batch)
		return es_error_set(err, ES_EINTERNAL, "out of memory");
	return 0;
}

/*
 * The bulk read in the table's physical order goes through a window of
 * this many events (a min-heap by position) that puts them back in
 * position order: rows of concurrent appends lie a little out of order.
 * An event coming later than that is still folded when no later event of
 * its stream was (qry_order.h); otherwise the log is read again, in
 * position order.
 */
#define REORDER_WINDOW 16384
/*
 * Chunks that events waiting in the window may hold; past that, the
 * waiting events of the oldest (rows that lie far ahead of their turn)
 * are copied out and the chunk is given back.
 */
#define CHUNKS_HELD_MAX 16
/* streams the order guard may know; past that, read in position order */
#define GUARD_STREAMS_MAX (8L << 20)

struct bulk {
	struct rview *vs;
	size_t nv;
	PGconn *rd;
	int ordered;
	struct qry_feed *feed;
	struct qry_order_heap heap; /* events read, not yet folded */
	struct qry_order_guard guard;
	struct qry_feed_chunk
		*held; /* chunks with waiting events, oldest first */
	size_t nheld;
	long long folded, copied;
	struct bulk_times bt;
};

/* The held chunk whose events `ev` is one of, or NULL: a copy. */
static struct qry_feed_chunk *holder(struct bulk *b, const struct es_event *ev)
{
	struct qry_feed_chunk *c;

	for (c = b->held; c; c = c->next)
		if (ev >= c->evs.v && ev < c->evs.v + c->evs.n)
			return c;
	return NULL;
}

static void unhold(struct bulk *b, struct qry_feed_chunk *c)
{
	struct qry_feed_chunk **p;

	for (p = &b->held; *p != c; p = &(*p)->next)
		;
	*p = c->next;
	b->nheld--;
	qry_feed_give_back(b->feed, c);
}

/* Done with `ev`: its chunk may go back, a copy is freed. */
static void event_done(struct bulk *b, struct es_event *ev)
{
	struct qry_feed_chunk *c = holder(b, ev);

	if (!c) {
		qry_feed_event_release(ev);
		free(ev);
	} else if (--c->pending == 0) {
		unhold(b, c);
	}
}

/*
 * Fold `ev` into every view: 0; 1 when a later event of its stream was
 * folded already (read again in order); -1 with `err` set.
 */
static int fold_event(struct bulk *b, struct es_event *ev, struct es_error *err)
{
	size_t k;
	int r;

	if (!b->ordered) {
		r = qry_order_advance(&b->guard, ev->stream_id, ev->position);
		if (r < 0)
			return es_error_set(err, ES_EINTERNAL, "out of memory");
		if (r == 0) {
			es_log(ES_LOG_INFO, "rebuild_out_of_order",
			       "{s:I, s:s}", "position",
			       (json_int_t)ev->position, "stream",
			       ev->stream_id);
			return 1;
		}
	}
	for (k = 0; k < b->nv; k++)
		if (apply_event(b->vs[k].ops, b->vs[k].batch, ev, err) < 0)
			return -1;
	b->folded++;
	event_done(b, ev);
	return 0;
}

/* Fold waiting events, lowest position first, until `keep` wait. */
static int fold_waiting(struct bulk *b, size_t keep, struct es_error *err)
{
	struct qry_order_entry e;
	int r;

	while (b->heap.n > keep && qry_order_pop(&b->heap, &e)) {
		r = fold_event(b, e.item, err);
		if (r != 0) {
			/* not folded: still ours to free */
			event_done(b, e.item);
			return r;
		}
	}
	return 0;
}

/* Copy the waiting events of the oldest held chunk out; give it back. */
static int release_oldest(struct bulk *b, struct es_error *err)
{
	struct qry_feed_chunk *c = b->held;
	size_t i;

	for (i = 0; i < b->heap.n; i++) {
		struct es_event *ev = b->heap.v[i].item, *cp;

		if (ev < c->evs.v || ev >= c->evs.v + c->evs.n)
			continue;
		cp = malloc(sizeof(*cp));
		if (!cp || qry_feed_event_copy(cp, ev) < 0) {
			free(cp);
			return es_error_set(err, ES_EINTERNAL, "out of memory");
		}
		b->heap.v[i].item = cp;
		b->copied++;
	}
	unhold(b, c);
	return 0;
}

/* Forget the waiting events (copies are freed); give every chunk back. */
static void drop_waiting(struct bulk *b)
{
	struct qry_order_entry e;

	while (qry_order_pop(&b->heap, &e))
		if (!holder(b, e.item)) {
			qry_feed_event_release(e.item);
			free(e.item);
		}
	while (b->held)
		unhold(b, b->held);
}

/* Write what is due: every copied view's rows, a kept batch grown big. */
static int write_due(struct bulk *b, struct es_error *err)
{
	double t0 = now_s();
	size_t k;

	for (k = 0; k < b->nv; k++) {
		struct rview *v = &b->vs[k];

		if (v->load) {
			es_buf_reset(&v->rows);
			if (v->ops->copy_rows(v->batch, &v->rows, err) < 0 ||
			    copy_send(v->load, &v->rows, err) < 0)
				return -1;
			v->ops->batch_free(v->batch);
			v->batch = v->ops->batch_new();
			if (!v->batch)
				return es_error_set(err, ES_EINTERNAL,
						    "out of memory");
		} else if (v->ops->batch_rows(v->batch) >= KEPT_ROWS_MAX &&
			   write_kept(v, b->rd, err) < 0) {
			return -1;
		}
	}
	b->bt.write += now_s() - t0;
	return 0;
}

/* Take in a chunk of the feed: fold what its events let go, write. */
static int bulk_chunk(struct bulk *b, struct qry_feed_chunk *c,
		      struct es_error *err)
{
	double t0 = now_s();
	size_t i;
	int r;

	c->pending = c->evs.n;
	c->next = NULL;
	if (b->held) {
		struct qry_feed_chunk *t = b->held;

		while (t->next)
			t = t->next;
		t->next = c;
	} else {
		b->held = c;
	}
	b->nheld++;
	for (i = 0; i < c->evs.n; i++)
		if (qry_order_push(&b->heap, c->evs.v[i].position,
				   &c->evs.v[i]) < 0)
			return es_error_set(err, ES_EINTERNAL, "out of memory");
	r = fold_waiting(b, b->ordered ? 0 : REORDER_WINDOW, err);
	b->bt.fold += now_s() - t0;
	if (r != 0)
		return r;
	while (b->nheld > CHUNKS_HELD_MAX)
		if (release_oldest(b, err) < 0)
			return -1;
	if (qry_order_streams(&b->guard) > GUARD_STREAMS_MAX) {
		es_log(ES_LOG_INFO, "rebuild_too_many_streams", "{s:I}",
		       "streams", (json_int_t)qry_order_streams(&b->guard));
		return 1;
	}
	return write_due(b, err);
}

/*
 * Steps 1 and 2: create the shadows of the views `vs` and fill them with
 * one snapshot of the log, read in position order with `ordered`, else
 * in the table's physical order; the kept batches written, the copied
 * shadows indexed and committed. `s` becomes that snapshot as a read
 * token; `events` grows by the events read. 0; 1 when the physical order
 * was too far from position order (nothing done: read again, ordered);
 * -1 with `err` set.
 */
static int bulk(const char *write_url, const char *read_url, PGconn *rd,
		struct rview *vs, size_t nv, int ordered, struct es_cursor *s,
		long long *events, struct es_error *err)
{
	struct bulk b;
	struct qry_feed_chunk *c;
	char *snap = NULL;
	double t0 = now_s(), last_log = t0, t;
	size_t k;
	int ret = -1, r;

	memset(&b, 0, sizeof(b));
	b.vs = vs;
	b.nv = nv;
	b.rd = rd;
	b.ordered = ordered;
	for (k = 0; k < nv; k++) {
		struct rview *v = &vs[k];
		const char *const *tb;

		if (v->batch)
			v->ops->batch_free(v->batch);
		v->batch = v->ops->batch_new();
		if (!v->batch) {
			es_error_set(err, ES_EINTERNAL, "out of memory");
			goto out;
		}
		if (!v->ops->copy_rows) {
			for (tb = v->ops->tables; *tb; tb++)
				if (view_shadow_create(rd, *tb, SUFFIX, 0,
						       err) < 0)
					goto out;
			continue;
		}
		/*
		 * Index builds sort in runs of maintenance_work_mem: a small
		 * one merges runs from temporary files, a large one sorts in
		 * fresh memory the server must fault in page by page. For
		 * 1,000,000 statement rows both indexes took 1.5-2.0 s of
		 * server CPU with 4-16MB, 2.4-3.5 s with 32-256MB.
		 */
		v->load = es_db_connect(read_url, err);
		if (!v->load ||
		    es_db_exec(v->load,
			       "SET synchronous_commit = off;"
			       " SET maintenance_work_mem = '16MB'; BEGIN",
			       err) < 0 ||
		    copy_start(v, err) < 0)
			goto out;
	}
	b.feed = qry_feed_start(write_url, ordered, err);
	if (!b.feed)
		goto out;
	while ((c = qry_feed_next(b.feed))) {
		r = bulk_chunk(&b, c, err);
		if (r != 0) {
			ret = r;
			goto out;
		}
		if (now_s() - last_log >= 1.0) {
			last_log = now_s();
			es_log(ES_LOG_INFO, "rebuild_progress", "{s:I, s:i}",
			       "events", (json_int_t)(*events + b.folded),
			       "per_second",
			       (int)((double)b.folded / (last_log - t0)));
		}
	}
	/* the end of the read, or its failure (which qry_feed_finish says) */
	r = fold_waiting(&b, 0, err);
	if (r == 0)
		r = write_due(&b, err);
	drop_waiting(&b);
	if (qry_feed_finish(b.feed, &snap, err) < 0)
		r = -1;
	b.feed = NULL;
	if (r != 0) {
		ret = r;
		goto out;
	}
	if (!snap) {
		es_error_set(err, ES_EINTERNAL,
			     "the bulk read has no snapshot");
		goto out;
	}
	es_cursor_release(s);
	if (es_cursor_parse(snap, s, err) < 0)
		goto out;
	t = now_s();
	for (k = 0; k < nv; k++)
		if (!vs[k].load && write_kept(&vs[k], rd, err) < 0)
			goto out;
	b.bt.write += now_s() - t;
	t = now_s();
	for (k = 0; k < nv; k++)
		if (vs[k].load && copy_finish(&vs[k], err) < 0)
			goto out;
	b.bt.index = now_s() - t;
	*events += b.folded;
	es_log(ES_LOG_INFO, "rebuild_loaded",
	       "{s:I, s:b, s:I, s:I, s:f, s:f, s:f, s:f}", "events",
	       (json_int_t)b.folded, "ordered", ordered, "copied_out",
	       (json_int_t)b.copied, "streams",
	       (json_int_t)qry_order_streams(&b.guard), "seconds", now_s() - t0,
	       "fold_seconds", b.bt.fold, "write_seconds", b.bt.write,
	       "index_seconds", b.bt.index);
	ret = 0;
out:
	/* a feed still reading: stop it; its chunks go with it */
	drop_waiting(&b);
	qry_feed_finish(b.feed, NULL, NULL);
	qry_order_heap_release(&b.heap);
	qry_order_guard_release(&b.guard);
	free(snap);
	/* an unfinished load rolls back: its shadow goes with it */
	for (k = 0; k < nv; k++) {
		if (vs[k].load)
			PQfinish(vs[k].load);
		vs[k].load = NULL;
		es_buf_release(&vs[k].rows);
	}
	return ret;
}

/* Step 3: fold `evs` into every view and write them in one transaction. */
static int catch_up(PGconn *rd, const struct view_ops *const *ops, size_t n,
		    const struct es_events *evs, struct es_error *err)
{
	long long folded = 0;
	size_t i;

	if (es_db_exec(rd, "BEGIN", err) < 0)
		return -1;
	for (i = 0; i < n; i++)
		if (fold_and_flush(ops[i], rd, evs, &folded, err) < 0)
			goto fail;
	if (es_db_exec(rd, "COMMIT", err) < 0)
		goto fail;
	return 0;
fail:
	if (PQtransactionStatus(rd) != PQTRANS_IDLE)
		PQclear(PQexec(rd, "ROLLBACK"));
	return -1;
}

/* Run `sql` with one parameter, expecting rows. Caller PQclear()s. */
static PGresult *query1(PGconn *db, const char *sql, const char *param,
			struct es_error *err)
{
	const char *params[1] = { param };
	PGresult *res = PQexecParams(db, sql, param ? 1 : 0, NULL,
				     param ? params : NULL, NULL, NULL, 0);

	if (PQresultStatus(res) != PGRES_TUPLES_OK) {
		es_db_error(db, res, err);
		PQclear(res);
		return NULL;
	}
	return res;
}

/* Run a statement built from `fmt` (identifiers already quoted). */
static int execf(PGconn *db, struct es_error *err, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

static int execf(PGconn *db, struct es_error *err, const char *fmt, ...)
{
	char sql[1024];
	va_list ap;
	int n;

	va_start(ap, fmt);
	n = vsnprintf(sql, sizeof(sql), fmt, ap);
	va_end(ap);
	if (n < 0 || (size_t)n >= sizeof(sql))
		return es_error_set(err, ES_EINTERNAL, "statement too long");
	return es_db_exec(db, sql, err);
}

/* `name` as a quoted identifier into `out`. */
static int ident(PGconn *db, const char *name, char *out, size_t len,
		 struct es_error *err)
{
	char *q = PQescapeIdentifier(db, name, strlen(name));
	int ret = 0;

	if (!q)
		return es_error_set(err, ES_EINTERNAL, "cannot quote '%s'",
				    name);
	if (strlen(q) >= len)
		ret = es_error_set(err, ES_EINTERNAL, "name too long: '%s'",
				   name);
	else
		strcpy(out, q);
	PQfreemem(q);
	return ret;
}

/*
 * Inside the swap transaction: drop `table`, rename its shadow over it,
 * and give the shadow's indexes (and so their constraints) the live
 * names, the live table's grants and its comment.
 */
static int swap_table(PGconn *db, const char *table, struct es_error *err)
{
	char live[2 * TABLE_MAX + 3], shadow[2 * TABLE_MAX + 3];
	char name[TABLE_MAX + sizeof(SUFFIX)], from[2 * TABLE_MAX + 3],
		to[2 * TABLE_MAX + 3], who[2 * TABLE_MAX + 3];
	PGresult *li = NULL, *si = NULL, *gr = NULL, *cm = NULL;
	char used[64] = { 0 };
	char *comment = NULL;
	int i, j, ret = -1;

	snprintf(name, sizeof(name), "%s" SUFFIX, table);
	if (ident(db, table, live, sizeof(live), err) < 0 ||
	    ident(db, name, shadow, sizeof(shadow), err) < 0)
		return -1;
	li = query1(db, SQL_INDEXES, table, err);
	si = li ? query1(db, SQL_INDEXES, name, err) : NULL;
	gr = si ? query1(db, SQL_GRANTS, table, err) : NULL;
	cm = gr ? query1(db, SQL_COMMENT, table, err) : NULL;
	if (!cm)
		goto out;
	if (PQntuples(cm) == 1 && !PQgetisnull(cm, 0, 0)) {
		const char *c = PQgetvalue(cm, 0, 0);

		comment = PQescapeLiteral(db, c, strlen(c));
		if (!comment) {
			es_error_set(err, ES_EINTERNAL, "cannot quote comment");
			goto out;
		}
	}
	if (execf(db, err, "DROP TABLE %s; ALTER TABLE %s RENAME TO %s", live,
		  shadow, live) < 0)
		goto out;
	for (i = 0; i < PQntuples(si); i++) {
		for (j = 0; j < PQntuples(li) && j < (int)sizeof(used); j++) {
			if (used[j] ||
			    strcmp(PQgetvalue(si, i, 1),
				   PQgetvalue(li, j, 1)) ||
			    strcmp(PQgetvalue(si, i, 2), PQgetvalue(li, j, 2)))
				continue;
			used[j] = 1;
			if (strcmp(PQgetvalue(si, i, 0),
				   PQgetvalue(li, j, 0)) == 0)
				break;
			if (ident(db, PQgetvalue(si, i, 0), from, sizeof(from),
				  err) < 0 ||
			    ident(db, PQgetvalue(li, j, 0), to, sizeof(to),
				  err) < 0 ||
			    execf(db, err, "ALTER INDEX %s RENAME TO %s", from,
				  to) < 0)
				goto out;
			break;
		}
	}
	for (i = 0; i < PQntuples(gr); i++) {
		const char *priv = PQgetvalue(gr, i, 1);

		/* privilege_type is a keyword like SELECT; grantee quoted */
		if (strspn(priv, "ABCDEFGHIJKLMNOPQRSTUVWXYZ ") != strlen(priv))
			continue;
		snprintf(who, sizeof(who), "%s", PQgetvalue(gr, i, 0));
		if (execf(db, err, "GRANT %s ON %s TO %s", priv, live, who) < 0)
			goto out;
	}
	if (comment &&
	    execf(db, err, "COMMENT ON TABLE %s IS %s", live, comment) < 0)
		goto out;
	ret = 0;
out:
	if (comment)
		PQfreemem(comment);
	PQclear(li);
	PQclear(si);
	PQclear(gr);
	PQclear(cm);
	return ret;
}

/* Whether `c` covers every checkpoint in `cps`. */
static int covers_all(const struct es_cursor *c,
		      const struct qry_checkpoint *cps, size_t n)
{
	size_t i;

	for (i = 0; i < n; i++)
		if (!es_cursor_covers(c, &cps[i].pos))
			return 0;
	return 1;
}

/*
 * The swap transaction on `rd`. `s` is the shadows' cursor (moved on
 * here), `applied` the events folded into them so far.
 */
static int swap(PGconn *rd, PGconn *wr, const struct view_ops *const *ops,
		size_t nops, struct es_cursor *s, long long *applied,
		size_t limit, struct es_error *err)
{
	struct qry_checkpoint cps[QRY_CHECKPOINT_SLOTS];
	struct es_events evs = ES_EVENTS_INIT;
	const char *params[3];
	char *text = NULL, count[24];
	long long folded = 0;
	PGresult *res = NULL;
	size_t ncp = 0, i, k;
	int ret = -1;

	memset(cps, 0, sizeof(cps));
	res = PQexec(rd, "BEGIN; " SQL_FENCE);
	if (PQresultStatus(res) != PGRES_TUPLES_OK) {
		es_db_error(rd, res, err);
		goto out;
	}
	PQclear(res);
	res = NULL;
	if (qry_checkpoint_load(rd, 1, cps, QRY_CHECKPOINT_SLOTS, &ncp, err) <
	    0)
		goto out;
	/* the live views may not go back: cover every live checkpoint */
	while (!covers_all(s, cps, ncp)) {
		if (es_read_forward(wr, s, limit, &evs, s, err) < 0)
			goto out;
	}
	for (i = 0; i < nops; i++) {
		folded = 0;
		if (fold_and_flush(ops[i], rd, &evs, &folded, err) < 0)
			goto out;
	}
	/* every view folds every event */
	*applied += folded;
	for (i = 0; i < nops; i++)
		for (k = 0; ops[i]->tables[k]; k++)
			if (swap_table(rd, ops[i]->tables[k], err) < 0)
				goto out;
	text = es_cursor_format(s);
	if (!text) {
		es_error_set(err, ES_EINTERNAL, "out of memory");
		goto out;
	}
	snprintf(count, sizeof(count), "%lld", *applied);
	for (i = 0; i < nops; i++) {
		params[0] = ops[i]->name;
		params[1] = text;
		params[2] = count;
		res = PQexecParams(rd, SQL_SET_CHECKPOINT, 3, NULL, params,
				   NULL, NULL, 0);
		if (PQresultStatus(res) != PGRES_COMMAND_OK) {
			es_db_error(rd, res, err);
			goto out;
		}
		PQclear(res);
		res = NULL;
	}
	res = PQexec(rd, "NOTIFY tandem_checkpoint; COMMIT");
	if (PQresultStatus(res) != PGRES_COMMAND_OK ||
	    strcmp(PQcmdStatus(res), "COMMIT") != 0) {
		if (PQresultStatus(res) == PGRES_COMMAND_OK)
			es_error_set(err, ES_EINTERNAL, "swap aborted");
		else
			es_db_error(rd, res, err);
		goto out;
	}
	ret = 0;
out:
	if (ret < 0 && PQtransactionStatus(rd) != PQTRANS_IDLE)
		PQclear(PQexec(rd, "ROLLBACK"));
	PQclear(res);
	free(text);
	for (i = 0; i < ncp; i++)
		qry_checkpoint_release(&cps[i]);
	es_events_release(&evs);
	return ret;
}

/* The views named in `names` (NULL: all) into `ops`. */
static int pick_views(const char *const *names, const struct view_ops **ops,
		      size_t *n, struct es_error *err)
{
	size_t i, k;

	*n = 0;
	if (!names) {
		for (i = 0; i < view_count && i < QRY_VIEW_MAX; i++)
			ops[(*n)++] = view_all[i];
		return 0;
	}
	for (i = 0; names[i]; i++) {
		const struct view_ops *v = view_find(names[i]);

		if (!v)
			return es_error_set(err, ES_ENOTFOUND,
					    "unknown view '%s'", names[i]);
		for (k = 0; k < *n; k++)
			if (ops[k] == v)
				break;
		if (k < *n)
			continue;
		if (*n >= QRY_VIEW_MAX)
			return es_error_set(err, ES_EINVALID, "too many views");
		ops[(*n)++] = v;
	}
	if (*n == 0)
		return es_error_set(err, ES_EINVALID, "no view to rebuild");
	return 0;
}

/* pg_try_advisory_lock key of a running rebuild ("tandemR1") */
#define REBUILD_LOCK_KEY "8386105358618022449"

int qry_rebuild_views(const struct qry_tail_config *cfg,
		      const char *const *views, struct qry_rebuild_stats *stats,
		      struct es_error *err)
{
	const struct view_ops *ops[QRY_VIEW_MAX];
	struct rview vs[QRY_VIEW_MAX];
	const char *read_url = cfg->read_url && *cfg->read_url ? cfg->read_url
							       : cfg->write_url;
	struct es_cursor s;
	struct es_events evs = ES_EVENTS_INIT;
	PGconn *rd = NULL, *wr = NULL;
	PGresult *res = NULL;
	long long events = 0, applied = 0;
	double t0, ts;
	size_t nops = 0, i, k, n;
	int ret = -1, r;

	es_cursor_init(&s);
	memset(vs, 0, sizeof(vs));
	if (pick_views(views, ops, &nops, err) < 0)
		return -1;
	for (i = 0; i < nops; i++)
		vs[i].ops = ops[i];
#ifdef M_TRIM_THRESHOLD
	/*
	 * Batches of events and results come and go by the megabyte: keep
	 * the memory instead of giving it back and faulting it in again.
	 */
	mallopt(M_TRIM_THRESHOLD, 512 << 20);
	mallopt(M_MMAP_THRESHOLD, 64 << 20);
#endif
	wr = es_db_connect(cfg->write_url, err);
	if (!wr)
		goto out;
	rd = es_db_connect(read_url, err);
	if (!rd)
		goto out;
	res = PQexec(rd, "SELECT pg_try_advisory_lock(" REBUILD_LOCK_KEY ")");
	if (PQresultStatus(res) != PGRES_TUPLES_OK) {
		es_db_error(rd, res, err);
		goto out;
	}
	if (strcmp(PQgetvalue(res, 0, 0), "t") != 0) {
		es_error_set(err, ES_ECONFLICT, "another rebuild is running");
		goto out;
	}
	/* es_read_forward() sorts whole batches */
	if (es_db_exec(wr, "SET work_mem = '64MB'", err) < 0)
		goto out;
	if (es_db_exec(rd, "SET synchronous_commit = off", err) < 0 ||
	    qry_checkpoint_ensure(rd, err) < 0)
		goto out;
	for (i = 0; i < nops; i++)
		es_log(ES_LOG_INFO, "rebuild_started", "{s:s, s:b}", "view",
		       ops[i]->name, "copied", ops[i]->copy_rows != NULL);

	t0 = now_s();
	r = bulk(cfg->write_url, read_url, rd, vs, nops, 0, &s, &events, err);
	if (r > 0) {
		es_log(ES_LOG_INFO, "rebuild_reread", "{s:s}", "order",
		       "position");
		r = bulk(cfg->write_url, read_url, rd, vs, nops, 1, &s, &events,
			 err);
	}
	if (r < 0)
		goto out;
	/* then read on from that snapshot until caught up */
	do {
		if (es_read_forward(wr, &s, REBUILD_BATCH, &evs, &s, err) < 0)
			goto out;
		n = evs.n;
		if (n && catch_up(rd, ops, nops, &evs, err) < 0)
			goto out;
		es_events_release(&evs);
		events += (long long)n;
	} while (n == REBUILD_BATCH);
	applied = events;

	ts = now_s();
	if (swap(rd, wr, ops, nops, &s, &applied, REBUILD_BATCH, err) < 0)
		goto out;
	if (stats) {
		stats->events = applied;
		stats->seconds = now_s() - t0;
		stats->swap_seconds = now_s() - ts;
	}
	for (i = 0; i < nops; i++)
		es_log(ES_LOG_INFO, "rebuild_swapped", "{s:s, s:I, s:f, s:f}",
		       "view", ops[i]->name, "events", (json_int_t)applied,
		       "seconds", now_s() - t0, "swap_seconds", now_s() - ts);
	ret = 0;
out:
	for (i = 0; i < nops; i++)
		if (vs[i].batch)
			vs[i].ops->batch_free(vs[i].batch);
	if (ret < 0 && rd && PQstatus(rd) == CONNECTION_OK) {
		/* leave no half-built shadow behind */
		if (PQtransactionStatus(rd) != PQTRANS_IDLE)
			PQclear(PQexec(rd, "ROLLBACK"));
		for (i = 0; i < nops; i++)
			for (k = 0; ops[i]->tables[k]; k++) {
				char q[2 * TABLE_MAX + 3];
				char name[TABLE_MAX + sizeof(SUFFIX)];

				snprintf(name, sizeof(name), "%s" SUFFIX,
					 ops[i]->tables[k]);
				if (ident(rd, name, q, sizeof(q), NULL) == 0)
					execf(rd, NULL,
					      "DROP TABLE IF EXISTS %s", q);
			}
	}
	PQclear(res);
	es_events_release(&evs);
	es_cursor_release(&s);
	if (rd)
		PQfinish(rd);
	if (wr)
		PQfinish(wr);
	return ret;
}

int qry_rebuild(const struct qry_tail_config *cfg, const char *view,
		struct es_error *err)
{
	const char *names[2] = { view, NULL };
	struct qry_rebuild_stats st = { 0 };
	int ret;

	ret = qry_rebuild_views(cfg, view ? names : NULL, &st, err);
	if (ret == 0)
		es_log(ES_LOG_INFO, "rebuild_done", "{s:s, s:I, s:f, s:i}",
		       "view", view ? view : "all", "events",
		       (json_int_t)st.events, "seconds", st.seconds,
		       "events_per_second",
		       st.seconds > 0 ? (int)((double)st.events / st.seconds)
				      : 0);
	return ret;
}
