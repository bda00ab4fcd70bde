/*
 * qry_rebuild.c - `query-service rebuild [view]`.
 *
 * 1. Shadow tables: <table>_rebuild (LIKE <table> INCLUDING ALL) for each
 *    table of the chosen views; leftovers of an earlier run are dropped.
 * 2. Bulk build: this thread reads the log from the beginning in large
 *    batches (es_read_forward) while one worker per view, each on its own
 *    read-database session, folds every batch and writes it into its
 *    shadow (COPY or multi-row statements, synchronous_commit off: a crash
 *    only means running the rebuild again), until a read comes back short.
 * 3. Swap, in ONE read-database transaction: lock the projection_leader
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
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "es_db.h"
#include "es_log.h"
#include "es_store.h"
#include "qry_checkpoint.h"
#include "views/view.h"

#define SUFFIX "_rebuild"
/* batches queued for a worker before the reader waits */
#define QUEUE_DEPTH 3
#define TABLE_MAX   64
/* events per batch (and positions per slice of the bulk read) */
#define REBUILD_BATCH 4000

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

/* A batch of events shared by the workers; the last one frees it. */
struct chunk {
	struct es_events evs;
	atomic_int refs;
};

struct pipeline;

struct worker {
	struct pipeline *p;
	const struct view_ops *ops;
	PGconn *db;
	pthread_t thread;
	int started;
	struct chunk *q[QUEUE_DEPTH];
	size_t head, n;
	long long applied;
	double busy; /* seconds folding and writing */
	struct es_error err;
	int failed;
};

struct pipeline {
	pthread_mutex_t lock;
	pthread_cond_t cond; /* queue changes, failures */
	int closing;
	int failed;
	struct worker w[QRY_VIEW_MAX];
	size_t nw;
};

static double now_s(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void chunk_unref(struct chunk *c)
{
	if (atomic_fetch_sub(&c->refs, 1) == 1) {
		es_events_release(&c->evs);
		free(c);
	}
}

/*
 * Fold `evs` into a new batch of `ops` and write it into the shadow in one
 * transaction on `db`. A malformed event is ES_EINVALID naming it.
 */
static int fold_and_flush(const struct view_ops *ops, PGconn *db,
			  const struct es_events *evs, long long *applied,
			  int in_txn, struct es_error *err)
{
	void *batch = ops->batch_new();
	int ret = -1;
	size_t i;

	if (!batch)
		return es_error_set(err, ES_EINTERNAL, "out of memory");
	for (i = 0; i < evs->n; i++) {
		const struct es_event *ev = &evs->v[i];
		struct es_error e = ES_ERROR_INIT;

		if (ops->apply(batch, ev, &e) < 0) {
			es_error_set(err, e.code,
				     "cannot rebuild view '%s': event %lld"
				     " (%s, '%s' version %lld): %s",
				     ops->name, ev->position, ev->type,
				     ev->stream_id, ev->version, e.detail);
			es_error_release(&e);
			goto out;
		}
	}
	*applied += (long long)evs->n;
	if (!in_txn && es_db_exec(db, "BEGIN", err) < 0)
		goto out;
	if (ops->flush(batch, db, SUFFIX, err) < 0)
		goto out;
	if (!in_txn && es_db_exec(db, "COMMIT", err) < 0)
		goto out;
	ret = 0;
out:
	if (ret < 0 && !in_txn && PQtransactionStatus(db) != PQTRANS_IDLE)
		PQclear(PQexec(db, "ROLLBACK"));
	ops->batch_free(batch);
	return ret;
}

static void *worker_main(void *arg)
{
	struct worker *w = arg;
	struct pipeline *p = w->p;
	struct chunk *c;
	double t0;
	int r;

	for (;;) {
		pthread_mutex_lock(&p->lock);
		while (w->n == 0 && !p->closing && !p->failed)
			pthread_cond_wait(&p->cond, &p->lock);
		if (w->n == 0 || p->failed) {
			pthread_mutex_unlock(&p->lock);
			break;
		}
		c = w->q[w->head];
		pthread_mutex_unlock(&p->lock);

		t0 = now_s();
		r = fold_and_flush(w->ops, w->db, &c->evs, &w->applied, 0,
				   &w->err);
		w->busy += now_s() - t0;

		pthread_mutex_lock(&p->lock);
		w->head = (w->head + 1) % QUEUE_DEPTH;
		w->n--;
		if (r < 0) {
			w->failed = 1;
			p->failed = 1;
		}
		pthread_cond_broadcast(&p->cond);
		pthread_mutex_unlock(&p->lock);
		chunk_unref(c);
		if (r < 0)
			break;
	}
	return NULL;
}

/* Hand `c` to every worker (waits while a queue is full). Takes `c`. */
static int pipeline_push(struct pipeline *p, struct chunk *c)
{
	size_t i;
	int full;

	atomic_init(&c->refs, (int)p->nw);
	pthread_mutex_lock(&p->lock);
	for (;;) {
		full = 0;
		for (i = 0; i < p->nw; i++)
			if (p->w[i].n == QUEUE_DEPTH)
				full = 1;
		if (!full || p->failed)
			break;
		pthread_cond_wait(&p->cond, &p->lock);
	}
	if (p->failed) {
		pthread_mutex_unlock(&p->lock);
		es_events_release(&c->evs);
		free(c);
		return -1;
	}
	for (i = 0; i < p->nw; i++) {
		struct worker *w = &p->w[i];

		w->q[(w->head + w->n) % QUEUE_DEPTH] = c;
		w->n++;
	}
	pthread_cond_broadcast(&p->cond);
	pthread_mutex_unlock(&p->lock);
	return 0;
}

/*
 * Let the workers finish what is queued (or stop at the first failure),
 * join them and close their sessions. -1 with the first worker's error.
 */
static int pipeline_finish(struct pipeline *p, struct es_error *err)
{
	size_t i;
	int ret = 0;

	pthread_mutex_lock(&p->lock);
	p->closing = 1;
	pthread_cond_broadcast(&p->cond);
	pthread_mutex_unlock(&p->lock);
	for (i = 0; i < p->nw; i++) {
		struct worker *w = &p->w[i];

		if (w->started)
			pthread_join(w->thread, NULL);
		w->started = 0;
		while (w->n > 0) {
			chunk_unref(w->q[w->head]);
			w->head = (w->head + 1) % QUEUE_DEPTH;
			w->n--;
		}
		es_log(ES_LOG_INFO, "rebuild_worker_done", "{s:s, s:I, s:f}",
		       "view", w->ops->name, "events", (json_int_t)w->applied,
		       "busy_seconds", w->busy);
		if (w->failed && ret == 0) {
			es_error_set(err, w->err.code, "%s", w->err.detail);
			ret = -1;
		}
		es_error_release(&w->err);
		if (w->db)
			PQfinish(w->db);
		w->db = NULL;
	}
	if (p->failed && ret == 0)
		ret = es_error_set(err, ES_EINTERNAL,
				   "a rebuild worker failed");
	pthread_cond_destroy(&p->cond);
	pthread_mutex_destroy(&p->lock);
	return ret;
}

static int pipeline_start(struct pipeline *p, const char *read_url,
			  const struct view_ops *const *ops, size_t n,
			  struct es_error *err)
{
	size_t i;

	memset(p, 0, sizeof(*p));
	pthread_mutex_init(&p->lock, NULL);
	pthread_cond_init(&p->cond, NULL);
	p->nw = n;
	for (i = 0; i < n; i++) {
		struct worker *w = &p->w[i];

		w->p = p;
		w->ops = ops[i];
		w->err = (struct es_error)ES_ERROR_INIT;
		w->db = es_db_connect(read_url, err);
		if (!w->db ||
		    es_db_exec(w->db, "SET synchronous_commit = off", err) < 0)
			return -1;
		if (pthread_create(&w->thread, NULL, worker_main, w) != 0)
			return es_error_set(err, ES_EINTERNAL,
					    "cannot start a rebuild worker");
		w->started = 1;
	}
	return 0;
}

/* ---- bulk phase: the log as of one snapshot, read in parallel ---- */

#define BULK_READERS 2

/*
 * Every event visible in the exported snapshot with a position in
 * ($1, $2], in position order: per stream that is version order, the
 * only order a fold may depend on. recorded_at comes as text in UTC.
 */
#define SQL_BULK                                                                \
	"SELECT global_position, transaction_id::text, stream_id,"              \
	" stream_version, event_id::text, event_type, data::text,"              \
	" metadata::text, recorded_at FROM events"                              \
	" WHERE global_position > $1::bigint AND global_position <= $2::bigint" \
	" ORDER BY global_position"
#define SQL_EXPORT                                                  \
	"SELECT pg_export_snapshot(), pg_current_snapshot()::text," \
	" (SELECT coalesce(max(global_position), 0) FROM events),"  \
	" pg_is_in_recovery()"

struct bulk {
	struct pipeline *p;
	const char *url;
	char snapshot[128]; /* pg_export_snapshot() */
	long long max_pos, slice;
	pthread_mutex_t lock;
	pthread_cond_t cond;
	long long next_slice; /* the next slice a reader takes */
	long long next_push; /* the slice whose turn it is to be queued */
	long long events;
	int failed;
	struct es_error err;
};

/*
 * "2024-05-01 12:00:00.123+00" (TimeZone UTC) as es_event.recorded_at,
 * "2024-05-01T12:00:00.123000Z". NULL when it has another shape.
 */
static char *iso_utc(const char *s)
{
	size_t len = strlen(s), frac = 0;
	char out[40];

	if (len < 22 || s[10] != ' ' || s[4] != '-' || s[13] != ':' ||
	    strcmp(s + len - 3, "+00") != 0)
		return NULL;
	len -= 3;
	if (len > 19) {
		if (s[19] != '.' || len - 20 > 6)
			return NULL;
		frac = len - 20;
	}
	memcpy(out, s, 19);
	out[10] = 'T';
	out[19] = '.';
	memcpy(out + 20, s + 20, frac);
	memset(out + 20 + frac, '0', 6 - frac);
	out[26] = 'Z';
	out[27] = '\0';
	return strdup(out);
}

static json_t *bulk_json(const char *text, long long position)
{
	json_error_t jerr;
	json_t *j = json_loads(text, JSON_DECODE_ANY, &jerr);

	if (!j)
		es_log(ES_LOG_ERROR, "event_json_unreadable", "{s:I, s:s}",
		       "position", (json_int_t)position, "error", jerr.text);
	return j;
}

/* The rows of SQL_BULK into `out` (empty). */
static int bulk_take(const PGresult *res, struct es_events *out,
		     struct es_error *err)
{
	int i, n = PQntuples(res);

	if (n == 0)
		return 0;
	out->v = calloc((size_t)n, sizeof(*out->v));
	if (!out->v)
		return es_error_set(err, ES_EINTERNAL, "out of memory");
	out->alloc = (size_t)n;
	for (i = 0; i < n; i++) {
		struct es_event *e = &out->v[i];

		e->position = strtoll(PQgetvalue(res, i, 0), NULL, 10);
		e->xid = strtoull(PQgetvalue(res, i, 1), NULL, 10);
		e->stream_id = strdup(PQgetvalue(res, i, 2));
		e->version = strtoll(PQgetvalue(res, i, 3), NULL, 10);
		snprintf(e->event_id, sizeof(e->event_id), "%s",
			 PQgetvalue(res, i, 4));
		e->type = strdup(PQgetvalue(res, i, 5));
		e->data = bulk_json(PQgetvalue(res, i, 6), e->position);
		e->metadata = bulk_json(PQgetvalue(res, i, 7), e->position);
		e->recorded_at = iso_utc(PQgetvalue(res, i, 8));
		out->n++;
		if (!e->stream_id || !e->type)
			return es_error_set(err, ES_EINTERNAL, "out of memory");
		if (!e->recorded_at)
			return es_error_set(err, ES_EINTERNAL,
					    "event %lld: unexpected recorded_at"
					    " '%s'",
					    e->position, PQgetvalue(res, i, 8));
		if (!e->data || !e->metadata)
			return es_error_set(err, ES_EINTERNAL,
					    "event at position %lld is not"
					    " readable",
					    e->position);
	}
	return 0;
}

static void bulk_fail(struct bulk *b, struct es_error *e)
{
	pthread_mutex_lock(&b->lock);
	if (!b->failed) {
		b->failed = 1;
		es_error_set(&b->err, e->code, "%s", e->detail);
	}
	pthread_cond_broadcast(&b->cond);
	pthread_mutex_unlock(&b->lock);
}

static void *bulk_reader(void *arg)
{
	struct bulk *b = arg;
	struct es_error err = ES_ERROR_INIT;
	char set[300], lo[24], hi[24];
	const char *params[2] = { lo, hi };
	PGconn *db = es_db_connect(b->url, &err);

	snprintf(set, sizeof(set),
		 "BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY; "
		 "SET TRANSACTION SNAPSHOT '%s'; SET LOCAL TimeZone = 'UTC'",
		 b->snapshot);
	if (!db || es_db_exec(db, set, &err) < 0)
		goto fail;
	for (;;) {
		struct chunk *c;
		PGresult *res;
		long long k;

		pthread_mutex_lock(&b->lock);
		k = b->next_slice++;
		pthread_mutex_unlock(&b->lock);
		if (k * b->slice >= b->max_pos)
			break;
		snprintf(lo, sizeof(lo), "%lld", k * b->slice);
		snprintf(hi, sizeof(hi), "%lld", (k + 1) * b->slice);
		c = calloc(1, sizeof(*c));
		if (!c) {
			es_error_set(&err, ES_EINTERNAL, "out of memory");
			goto fail;
		}
		res = PQexecParams(db, SQL_BULK, 2, NULL, params, NULL, NULL,
				   0);
		if (PQresultStatus(res) != PGRES_TUPLES_OK ||
		    bulk_take(res, &c->evs, &err) < 0) {
			if (PQresultStatus(res) != PGRES_TUPLES_OK)
				es_db_error(db, res, &err);
			PQclear(res);
			es_events_release(&c->evs);
			free(c);
			goto fail;
		}
		PQclear(res);
		/* queue the slices in order */
		pthread_mutex_lock(&b->lock);
		while (b->next_push != k && !b->failed)
			pthread_cond_wait(&b->cond, &b->lock);
		b->events += (long long)c->evs.n;
		pthread_mutex_unlock(&b->lock);
		if (b->failed || c->evs.n == 0) {
			es_events_release(&c->evs);
			free(c);
		} else if (pipeline_push(b->p, c) < 0) {
			es_error_set(&err, ES_EINTERNAL,
				     "a rebuild worker failed");
			goto fail;
		}
		pthread_mutex_lock(&b->lock);
		b->next_push = k + 1;
		pthread_cond_broadcast(&b->cond);
		pthread_mutex_unlock(&b->lock);
		if (b->failed)
			break;
	}
	goto out;
fail:
	bulk_fail(b, &err);
out:
	es_error_release(&err);
	if (db)
		PQfinish(db);
	return NULL;
}

/*
 * Fold every event of one snapshot of the log into the shadows, reading
 * it with BULK_READERS sessions that share the snapshot; `s` becomes that
 * snapshot as a read token. The exporting transaction stays open on `wr`
 * until the readers are done.
 */
static int bulk_read(PGconn *wr, const char *url, struct pipeline *p,
		     size_t slice, struct es_cursor *s, long long *events,
		     struct es_error *err)
{
	pthread_t th[BULK_READERS];
	struct bulk b;
	PGresult *res = NULL;
	int started = 0, i, ret = -1;

	memset(&b, 0, sizeof(b));
	pthread_mutex_init(&b.lock, NULL);
	pthread_cond_init(&b.cond, NULL);
	b.err = (struct es_error)ES_ERROR_INIT;
	b.p = p;
	b.url = url;
	b.slice = (long long)slice;
	if (es_db_exec(wr, "BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY",
		       err) < 0)
		goto out;
	res = PQexec(wr, SQL_EXPORT);
	if (PQresultStatus(res) != PGRES_TUPLES_OK || PQntuples(res) != 1) {
		es_db_error(wr, res, err);
		goto out;
	}
	if (strcmp(PQgetvalue(res, 0, 3), "f") != 0) {
		es_error_set(err, ES_EINTERNAL, "cannot tail a standby server");
		goto out;
	}
	snprintf(b.snapshot, sizeof(b.snapshot), "%s", PQgetvalue(res, 0, 0));
	b.max_pos = strtoll(PQgetvalue(res, 0, 2), NULL, 10);
	es_cursor_release(s);
	if (es_cursor_parse(PQgetvalue(res, 0, 1), s, err) < 0)
		goto out;
	for (i = 0; i < BULK_READERS; i++) {
		if (pthread_create(&th[i], NULL, bulk_reader, &b) != 0) {
			es_error_set(err, ES_EINTERNAL,
				     "cannot start a rebuild reader");
			bulk_fail(&b, err);
			break;
		}
		started++;
	}
	for (i = 0; i < started; i++)
		pthread_join(th[i], NULL);
	if (b.failed) {
		es_error_set(err, b.err.code, "%s", b.err.detail);
		goto out;
	}
	*events += b.events;
	ret = 0;
out:
	if (PQtransactionStatus(wr) != PQTRANS_IDLE)
		PQclear(PQexec(wr, "ROLLBACK"));
	PQclear(res);
	es_error_release(&b.err);
	pthread_cond_destroy(&b.cond);
	pthread_mutex_destroy(&b.lock);
	return ret;
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

/* Drop a leftover shadow of `table` and create an empty one. */
static int create_shadow(PGconn *db, const char *table, struct es_error *err)
{
	char live[2 * TABLE_MAX + 3], shadow[2 * TABLE_MAX + 3];
	char name[TABLE_MAX + sizeof(SUFFIX)];

	snprintf(name, sizeof(name), "%s" SUFFIX, table);
	if (ident(db, table, live, sizeof(live), err) < 0 ||
	    ident(db, name, shadow, sizeof(shadow), err) < 0)
		return -1;
	return execf(db, err,
		     "DROP TABLE IF EXISTS %s; "
		     "CREATE TABLE %s (LIKE %s INCLUDING ALL)",
		     shadow, shadow, live);
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
		if (fold_and_flush(ops[i], rd, &evs, &folded, 1, err) < 0)
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
	const char *read_url = cfg->read_url && *cfg->read_url ? cfg->read_url
							       : cfg->write_url;
	struct pipeline p;
	struct es_cursor s;
	PGconn *rd = NULL, *wr = NULL;
	PGresult *res = NULL;
	long long events = 0, applied = 0;
	double t0, last_log, ts;
	size_t nops = 0, i, k, limit;
	int ret = -1, piped = 0;

	es_cursor_init(&s);
	memset(&p, 0, sizeof(p));
	if (pick_views(views, ops, &nops, err) < 0)
		return -1;
#ifdef M_TRIM_THRESHOLD
	/*
	 * Batches of events and results come and go by the megabyte: keep
	 * the memory instead of giving it back and faulting it in again.
	 */
	mallopt(M_TRIM_THRESHOLD, 512 << 20);
	mallopt(M_MMAP_THRESHOLD, 64 << 20);
#endif
	/*
	 * Batches of a few thousand events: larger ones cost more CPU (malloc
	 * and cache misses) than the statements they save.
	 */
	limit = REBUILD_BATCH;
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
	    qry_checkpoint_ensure(rd, err) < 0 ||
	    es_db_exec(rd, "BEGIN", err) < 0)
		goto out;
	for (i = 0; i < nops; i++)
		for (k = 0; ops[i]->tables[k]; k++)
			if (create_shadow(rd, ops[i]->tables[k], err) < 0)
				goto out;
	if (es_db_exec(rd, "COMMIT", err) < 0)
		goto out;
	for (i = 0; i < nops; i++)
		es_log(ES_LOG_INFO, "rebuild_started", "{s:s, s:I}", "view",
		       ops[i]->name, "batch", (json_int_t)limit);

	t0 = last_log = now_s();
	piped = 1;
	if (pipeline_start(&p, read_url, ops, nops, err) < 0)
		goto out;
	if (bulk_read(wr, cfg->write_url, &p, limit, &s, &events, err) < 0)
		goto out;
	/* then tail from that snapshot until caught up */
	for (;;) {
		struct chunk *c = calloc(1, sizeof(*c));
		size_t n;

		if (!c) {
			es_error_set(err, ES_EINTERNAL, "out of memory");
			goto out;
		}
		if (es_read_forward(wr, &s, limit, &c->evs, &s, err) < 0) {
			free(c);
			goto out;
		}
		n = c->evs.n;
		events += (long long)n;
		if (n == 0)
			free(c);
		else if (pipeline_push(&p, c) < 0)
			break; /* the worker's error, from pipeline_finish */
		if (now_s() - last_log >= 1.0) {
			last_log = now_s();
			es_log(ES_LOG_INFO, "rebuild_progress", "{s:I, s:i}",
			       "events", (json_int_t)events, "per_second",
			       (int)((double)events / (last_log - t0)));
		}
		if (n < limit)
			break;
	}
	piped = 0;
	if (pipeline_finish(&p, err) < 0)
		goto out;
	applied = events;

	ts = now_s();
	if (swap(rd, wr, ops, nops, &s, &applied, limit, err) < 0)
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
	if (piped)
		pipeline_finish(&p, NULL);
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
