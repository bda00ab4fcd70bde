/*
 * qry_rebuild.c - `query-service rebuild [view]`.
 *
 * 1. and 2. (qry_bulk.h) Shadow tables <table>_rebuild, empty, for the
 *    tables of the chosen views, filled from one REPEATABLE READ snapshot
 *    of the log read in the table's physical order (or, when that is too
 *    far from position order, again in position order).
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

#include "es_db.h"
#include "es_log.h"
#include "es_read.h"
#include "qry_bulk.h"
#include "qry_checkpoint.h"
#include "views/payload.h"
#include "views/view.h"

/* events per read once the bulk load is done */
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
#define SQL_UNPARK  "DELETE FROM parked_streams WHERE view = $1"
#define SQL_PARKED_GEN \
	"UPDATE projection_leader SET parked_gen = parked_gen + 1 WHERE id = 1"
#define SQL_SET_CHECKPOINT                                                   \
	"UPDATE projection_checkpoints SET position = $2, applied = $3,"     \
	" stopped_error = NULL, stopped_position = NULL, updated_at = now()" \
	" WHERE view = $1"

/*
 * Fold `evs` into a new batch of `ops` and write it into the shadow on
 * `db`, in the caller's open transaction.
 */
static int fold_and_flush(struct qry_bulk_view *v, PGconn *db,
			  const struct es_events *evs, long long *applied,
			  struct es_error *err)
{
	const struct view_ops *ops = v->ops;
	void *batch = ops->batch_new();
	int ret = -1;
	size_t i;

	if (!batch)
		return es_error_set(err, ES_EINTERNAL, "out of memory");
	for (i = 0; i < evs->n; i++)
		if (qry_bulk_apply(ops, batch, &v->parked, &evs->v[i], err) < 0)
			goto out;
	*applied += (long long)evs->n;
	ret = ops->flush(batch, db, QRY_SHADOW_SUFFIX, err);
out:
	ops->batch_free(batch);
	return ret;
}

/* Step 3: fold `evs` into every view and write them in one transaction. */
static int catch_up(PGconn *rd, struct qry_bulk_view *vs, size_t n,
		    const struct es_events *evs, struct es_error *err)
{
	long long folded = 0;
	size_t i;

	if (es_db_exec(rd, "BEGIN", err) < 0)
		return -1;
	for (i = 0; i < n; i++)
		if (fold_and_flush(&vs[i], rd, evs, &folded, err) < 0)
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
	char live[2 * QRY_TABLE_MAX + 3], shadow[2 * QRY_TABLE_MAX + 3];
	char name[QRY_TABLE_MAX + sizeof(QRY_SHADOW_SUFFIX)],
		from[2 * QRY_TABLE_MAX + 3], to[2 * QRY_TABLE_MAX + 3],
		who[2 * QRY_TABLE_MAX + 3];
	PGresult *li = NULL, *si = NULL, *gr = NULL, *cm = NULL;
	char used[64] = { 0 };
	char *comment = NULL;
	int i, j, ret = -1;

	snprintf(name, sizeof(name), "%s" QRY_SHADOW_SUFFIX, table);
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
static int swap(PGconn *rd, PGconn *wr, struct qry_bulk_view *vs, size_t nops,
		struct es_cursor *s, long long *applied, size_t limit,
		struct es_error *err)
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
		if (es_read_forward(wr, s, limit, &evs, s, err) < 0 ||
		    view_payload_decode_all(&evs, err) < 0)
			goto out;
	}
	for (i = 0; i < nops; i++) {
		folded = 0;
		if (fold_and_flush(&vs[i], rd, &evs, &folded, err) < 0)
			goto out;
	}
	/* every view folds every event */
	*applied += folded;
	for (i = 0; i < nops; i++)
		for (k = 0; vs[i].ops->tables[k]; k++)
			if (swap_table(rd, vs[i].ops->tables[k], err) < 0)
				goto out;
	text = es_cursor_format(s);
	if (!text) {
		es_error_set(err, ES_EINTERNAL, "out of memory");
		goto out;
	}
	snprintf(count, sizeof(count), "%lld", *applied);
	for (i = 0; i < nops; i++) {
		params[0] = vs[i].ops->name;
		params[1] = text;
		params[2] = count;
		res = PQexecParams(rd, SQL_SET_CHECKPOINT, 3, NULL, params,
				   NULL, NULL, 0);
		if (PQresultStatus(res) != PGRES_COMMAND_OK) {
			es_db_error(rd, res, err);
			goto out;
		}
		PQclear(res);
		/* the streams parked now replace the view's old ones */
		res = PQexecParams(rd, SQL_UNPARK, 1, NULL, params, NULL, NULL,
				   0);
		if (PQresultStatus(res) != PGRES_COMMAND_OK) {
			es_db_error(rd, res, err);
			goto out;
		}
		PQclear(res);
		res = NULL;
		if (qry_parked_store(rd, vs[i].ops->name, &vs[i].parked, 0,
				     err) < 0)
			goto out;
	}
	/* the projectors read their parked streams again */
	if (es_db_exec(rd, SQL_PARKED_GEN, err) < 0)
		goto out;
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
	struct qry_bulk_view vs[QRY_VIEW_MAX];
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
	wr = es_db_connect(cfg->write_url, "tandem-rebuild", err);
	if (!wr)
		goto out;
	rd = es_db_connect(read_url, "tandem-rebuild", err);
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

	t0 = qry_bulk_seconds();
	r = qry_bulk_load(cfg->write_url, read_url, rd, vs, nops, 0, &s,
			  &events, err);
	if (r > 0) {
		es_log(ES_LOG_INFO, "rebuild_reread", "{s:s}", "order",
		       "position");
		r = qry_bulk_load(cfg->write_url, read_url, rd, vs, nops, 1, &s,
				  &events, err);
	}
	if (r < 0)
		goto out;
	/* then read on from that snapshot until caught up */
	do {
		if (es_read_forward(wr, &s, REBUILD_BATCH, &evs, &s, err) < 0 ||
		    view_payload_decode_all(&evs, err) < 0)
			goto out;
		n = evs.n;
		if (n && catch_up(rd, vs, nops, &evs, err) < 0)
			goto out;
		es_events_release(&evs);
		events += (long long)n;
	} while (n == REBUILD_BATCH);
	applied = events;

	ts = qry_bulk_seconds();
	if (swap(rd, wr, vs, nops, &s, &applied, REBUILD_BATCH, err) < 0)
		goto out;
	if (stats) {
		stats->events = applied;
		stats->seconds = qry_bulk_seconds() - t0;
		stats->swap_seconds = qry_bulk_seconds() - ts;
	}
	for (i = 0; i < nops; i++)
		es_log(ES_LOG_INFO, "rebuild_swapped", "{s:s, s:I, s:f, s:f}",
		       "view", ops[i]->name, "events", (json_int_t)applied,
		       "seconds", qry_bulk_seconds() - t0, "swap_seconds",
		       qry_bulk_seconds() - ts);
	ret = 0;
out:
	for (i = 0; i < nops; i++) {
		if (vs[i].batch)
			vs[i].ops->batch_free(vs[i].batch);
		qry_parked_release(&vs[i].parked);
	}
	if (ret < 0 && rd && PQstatus(rd) == CONNECTION_OK) {
		/* leave no half-built shadow behind */
		if (PQtransactionStatus(rd) != PQTRANS_IDLE)
			PQclear(PQexec(rd, "ROLLBACK"));
		for (i = 0; i < nops; i++)
			for (k = 0; ops[i]->tables[k]; k++) {
				char q[2 * QRY_TABLE_MAX + 3];
				char name[QRY_TABLE_MAX +
					  sizeof(QRY_SHADOW_SUFFIX)];

				snprintf(name, sizeof(name),
					 "%s" QRY_SHADOW_SUFFIX,
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
