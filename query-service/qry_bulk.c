/* qry_bulk.c - steps 1 and 2 of a rebuild: the bulk load of the shadows. */
#include "qry_bulk.h"

#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "es_db.h"
#include "es_log.h"
#include "qry_feed.h"
#include "qry_order.h"
#include "views/bulk.h"

/* rows a kept batch may hold before it is written out */
#define KEPT_ROWS_MAX 65536

double qry_bulk_seconds(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

int qry_bulk_apply(const struct view_ops *ops, void *batch,
		   struct qry_parked *parked, const struct es_event *ev,
		   struct es_error *err)
{
	struct es_error e = ES_ERROR_INIT;
	int ret = 0;

	if (qry_parked_holds(parked, ev) || ops->apply(batch, ev, &e) >= 0)
		return 0;
	if (e.code == ES_EINVALID) {
		es_log(ES_LOG_ERROR, "stream_parked",
		       "{s:s, s:s, s:I, s:I, s:s}", "view", ops->name, "stream",
		       ev->stream_id, "position", (json_int_t)ev->position,
		       "version", (json_int_t)ev->version, "error", e.detail);
		ret = qry_parked_add(parked, ev, e.detail, err);
	} else {
		ret = es_error_set(err, e.code,
				   "cannot rebuild view '%s': event %lld"
				   " (%s, '%s' version %lld): %s",
				   ops->name, ev->position, ev->type,
				   ev->stream_id, ev->version, e.detail);
	}
	es_error_release(&e);
	return ret;
}

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
static int copy_start(struct qry_bulk_view *v, struct es_error *err)
{
	const char *table = v->ops->tables[0];
	char name[QRY_TABLE_MAX + sizeof(QRY_SHADOW_SUFFIX)], sql[1024];
	PGresult *res;
	int n;

	if (!table || v->ops->tables[1])
		return es_error_set(
			err, ES_EINTERNAL,
			"view '%s' must have one table to be copied",
			v->ops->name);
	if (view_table_name(name, sizeof(name), table, QRY_SHADOW_SUFFIX, err) <
		    0 ||
	    view_shadow_create(v->load, table, QRY_SHADOW_SUFFIX, 1, err) < 0)
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

/* Send `sql` (NULL or "": nothing) on `db` without waiting for it. */
static int send_async(PGconn *db, const char *sql, struct es_error *err)
{
	if (!sql || !*sql)
		return 0;
	if (!PQsendQuery(db, sql))
		return es_db_error(db, NULL, err);
	return 0;
}

/* Every result of what send_async() sent on `db`: 0, or the first error. */
static int wait_async(PGconn *db, struct es_error *err)
{
	PGresult *res;
	int ret = 0;

	while ((res = PQgetResult(db))) {
		if (PQresultStatus(res) != PGRES_COMMAND_OK && ret == 0)
			ret = es_db_error(db, res, err);
		PQclear(res);
	}
	return ret;
}

/*
 * End the COPY of copy_start() and commit the shadow, its rows frozen;
 * then start building its indexes without waiting, every other one on a
 * second session of `url` (v->aux), so that the server sorts for two
 * indexes at once while this thread writes the kept views:
 * copy_index_wait() collects them.
 */
static int copy_end(struct qry_bulk_view *v, const char *url,
		    struct es_error *err)
{
	struct es_buf on[2] = { ES_BUF_INIT, ES_BUF_INIT };
	PGresult *res;
	int i, n, ret = 0;

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
	if (ret < 0 || es_db_exec(v->load, "COMMIT", err) < 0)
		return -1;
	v->plan = view_shadow_index_plan(v->load, v->ops->tables[0],
					 QRY_SHADOW_SUFFIX, err);
	if (!v->plan)
		return -1;
	n = PQntuples(v->plan);
	if (n > 1) {
		v->aux = es_db_connect(url, "tandem-rebuild", err);
		if (!v->aux || es_db_exec(v->aux,
					  "SET synchronous_commit = off;"
					  " SET maintenance_work_mem = '16MB'",
					  err) < 0)
			return -1;
	}
	/* the plan puts the primary key first: the biggest sort */
	for (i = 0; i < n; i++) {
		struct es_buf *b = &on[i % 2];

		if (b->len)
			es_buf_adds(b, "; ");
		es_buf_adds(b, PQgetvalue(v->plan, i, 0));
	}
	if (es_buf_check(&on[0], err) < 0 || es_buf_check(&on[1], err) < 0 ||
	    send_async(v->load, on[0].s, err) < 0 ||
	    (v->aux && send_async(v->aux, on[1].s, err) < 0))
		ret = -1;
	es_buf_release(&on[0]);
	es_buf_release(&on[1]);
	return ret;
}

/* The indexes copy_end() started: wait, then make them constraints. */
static int copy_index_wait(struct qry_bulk_view *v, struct es_error *err)
{
	int i, ret = wait_async(v->load, err);

	if (v->aux && wait_async(v->aux, err) < 0)
		ret = -1;
	for (i = 0; ret == 0 && i < PQntuples(v->plan); i++)
		if (!PQgetisnull(v->plan, i, 1))
			ret = es_db_exec(v->load, PQgetvalue(v->plan, i, 1),
					 err);
	PQclear(v->plan);
	v->plan = NULL;
	if (v->aux)
		PQfinish(v->aux);
	v->aux = NULL;
	return ret;
}

/* Write a kept batch in its own transaction on `db`; start a new one. */
static int write_kept(struct qry_bulk_view *v, PGconn *db, struct es_error *err)
{
	if (es_db_exec(db, "BEGIN", err) < 0 ||
	    v->ops->flush(v->batch, db, QRY_SHADOW_SUFFIX, err) < 0 ||
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
	struct qry_bulk_view *vs;
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
		if (qry_bulk_apply(b->vs[k].ops, b->vs[k].batch,
				   &b->vs[k].parked, ev, err) < 0)
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
	double t0 = qry_bulk_seconds();
	size_t k;

	for (k = 0; k < b->nv; k++) {
		struct qry_bulk_view *v = &b->vs[k];

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
	b->bt.write += qry_bulk_seconds() - t0;
	return 0;
}

/* Take in a chunk of the feed: fold what its events let go, write. */
static int bulk_chunk(struct bulk *b, struct qry_feed_chunk *c,
		      struct es_error *err)
{
	double t0 = qry_bulk_seconds();
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
	b->bt.fold += qry_bulk_seconds() - t0;
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

int qry_bulk_load(const char *write_url, const char *read_url, PGconn *rd,
		  struct qry_bulk_view *vs, size_t nv, int ordered,
		  struct es_cursor *s, long long *events, struct es_error *err)
{
	struct bulk b;
	struct qry_feed_chunk *c;
	char *snap = NULL;
	double t0 = qry_bulk_seconds(), last_log = t0, t, ti;
	size_t k;
	const char *metadata_key = NULL;
	int ret = -1, r, metadata = 0;

	memset(&b, 0, sizeof(b));
	b.vs = vs;
	b.nv = nv;
	b.rd = rd;
	b.ordered = ordered;
	for (k = 0; k < nv; k++) {
		struct qry_bulk_view *v = &vs[k];
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
				if (view_shadow_create(rd, *tb,
						       QRY_SHADOW_SUFFIX, 0,
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
		v->load = es_db_connect(read_url, "tandem-rebuild", err);
		if (!v->load ||
		    es_db_exec(v->load,
			       "SET synchronous_commit = off;"
			       " SET maintenance_work_mem = '16MB'; BEGIN",
			       err) < 0 ||
		    copy_start(v, err) < 0)
			goto out;
	}
	for (k = 0; k < nv; k++) {
		const char *key = vs[k].ops->metadata_key;

		if (!vs[k].ops->metadata)
			continue;
		/* one member for every view that reads metadata, or all */
		if (!metadata)
			metadata_key = key;
		else if (!key || !metadata_key || strcmp(key, metadata_key))
			metadata_key = NULL;
		metadata = 1;
	}
	b.feed =
		qry_feed_start(write_url, ordered, metadata, metadata_key, err);
	if (!b.feed)
		goto out;
	while ((c = qry_feed_next(b.feed))) {
		r = bulk_chunk(&b, c, err);
		if (r != 0) {
			ret = r;
			goto out;
		}
		if (qry_bulk_seconds() - last_log >= 1.0) {
			last_log = qry_bulk_seconds();
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
	/* the copied shadows index while the kept batches are written */
	ti = qry_bulk_seconds();
	for (k = 0; k < nv; k++)
		if (vs[k].load && copy_end(&vs[k], read_url, err) < 0)
			goto out;
	t = qry_bulk_seconds();
	for (k = 0; k < nv; k++)
		if (!vs[k].load && write_kept(&vs[k], rd, err) < 0)
			goto out;
	b.bt.write += qry_bulk_seconds() - t;
	for (k = 0; k < nv; k++)
		if (vs[k].load && copy_index_wait(&vs[k], err) < 0)
			goto out;
	b.bt.index = qry_bulk_seconds() - ti;
	*events += b.folded;
	es_log(ES_LOG_INFO, "rebuild_loaded",
	       "{s:I, s:b, s:I, s:I, s:f, s:f, s:f, s:f}", "events",
	       (json_int_t)b.folded, "ordered", ordered, "copied_out",
	       (json_int_t)b.copied, "streams",
	       (json_int_t)qry_order_streams(&b.guard), "seconds",
	       qry_bulk_seconds() - t0, "fold_seconds", b.bt.fold,
	       "write_seconds", b.bt.write, "index_seconds", b.bt.index);
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
		if (vs[k].aux)
			PQfinish(vs[k].aux);
		vs[k].aux = NULL;
		PQclear(vs[k].plan);
		vs[k].plan = NULL;
		es_buf_release(&vs[k].rows);
	}
	return ret;
}
