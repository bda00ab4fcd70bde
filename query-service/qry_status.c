/*
 * qry_status.c - GET /status: the role, every view's position, health and
 * lag (events the view has not applied and the age of the oldest, from
 * the event store), the transactions in flight on the event store, and
 * the in-memory view. qry_metrics.c reads the same snapshot of the views.
 */
#include "qry_status.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "es_db.h"

/*
 * Events not covered by a cursor: those of lo's xips and from lo's xmax
 * on ($1, $2), less, for a mid-window cursor ($3), those of hi's window
 * up to (xid, pos) ($4, $5) that hi sees ($6 its xmax, $7 its xips).
 */
#define SQL_LAG                                                             \
	"SELECT count(*), coalesce(floor(extract(epoch FROM"                \
	" clock_timestamp() - min(recorded_at)) * 1000), 0)::bigint FROM (" \
	" SELECT transaction_id, global_position, recorded_at FROM events"  \
	"  WHERE transaction_id = ANY($1::xid8[])"                          \
	" UNION ALL"                                                        \
	" SELECT transaction_id, global_position, recorded_at FROM events"  \
	"  WHERE transaction_id >= $2::xid8) u"                             \
	" WHERE NOT ($3::boolean AND (transaction_id, global_position) <="  \
	"  ($4::xid8, $5::bigint) AND transaction_id < $6::xid8"            \
	"  AND transaction_id <> ALL($7::xid8[]))"

/*
 * Never the query text: another session's SQL may carry its data (a card
 * number in a literal), and /status is not that session's to show.
 */
#define SQL_PENDING                                                  \
	"SELECT pid, backend_xid::text, floor(extract(epoch FROM"    \
	" clock_timestamp() - xact_start) * 1000)::bigint,"          \
	" application_name, state FROM pg_stat_activity"             \
	" WHERE backend_xid IS NOT NULL AND pid <> pg_backend_pid()" \
	" AND datname = current_database() ORDER BY xact_start"

/*
 * Whether the log database is a standby, how far it has replayed, and
 * against what: the primary's WAL position ($1, as the log reader read it
 * on DATABASE_URL; NULL when it could not), else what the primary last
 * told the standby's WAL receiver (visible to superusers and
 * pg_read_all_stats), else what the standby has received. The lag in ms
 * is 0 when it has replayed up to that point, else the age of the last
 * transaction it replayed.
 */
#define SQL_REPLAY                                                      \
	"SELECT pg_is_in_recovery(), r::text, e::text,"                 \
	" greatest(pg_wal_lsn_diff(e, r), 0)::bigint,"                  \
	" CASE WHEN r >= e THEN 0 ELSE floor(extract(epoch FROM"        \
	" clock_timestamp() - pg_last_xact_replay_timestamp()) * 1000)" \
	" END::bigint"                                                  \
	" FROM (SELECT r, coalesce($1::pg_lsn, (SELECT latest_end_lsn"  \
	" FROM pg_stat_wal_receiver), pg_last_wal_receive_lsn()) AS e"  \
	" FROM (SELECT pg_last_wal_replay_lsn() AS r) x) y"

/* How old the primary's WAL position may be for SQL_REPLAY (ms). */
#define PRIMARY_LSN_MAX_AGE_MS 5000

/* "{x,y,...}" of `n` xids. Caller frees. */
static char *xid_list(const uint64_t *x, size_t n)
{
	char *s = malloc(n * 21 + 3);
	size_t i, at = 0;

	if (!s)
		return NULL;
	s[at++] = '{';
	for (i = 0; i < n; i++)
		at += (size_t)sprintf(s + at, "%s%" PRIu64, i ? "," : "", x[i]);
	s[at++] = '}';
	s[at] = '\0';
	return s;
}

/* Events not covered by `c`, and the age of the oldest, in ms. */
static int lag_of(PGconn *db, const struct es_cursor *c, long long *events,
		  long long *ms, struct es_error *err)
{
	char xmax[24], xid[24], pos[24], hixmax[24];
	char *xip = xid_list(c->lo.xip, c->lo.nxip);
	char *hixip = xid_list(c->hi.xip, c->hi.nxip);
	const char *params[7] = { xip,	  xmax, c->mid ? "t" : "f", xid, pos,
				  hixmax, hixip };
	PGresult *res;
	int ret = -1;

	if (!xip || !hixip) {
		es_error_set(err, ES_EINTERNAL, "out of memory");
		goto out;
	}
	snprintf(xmax, sizeof(xmax), "%" PRIu64, c->lo.xmax);
	snprintf(xid, sizeof(xid), "%" PRIu64, c->xid);
	snprintf(pos, sizeof(pos), "%" PRId64, c->pos);
	snprintf(hixmax, sizeof(hixmax), "%" PRIu64, c->hi.xmax);
	res = PQexecPrepared(db, "qry_lag", 7, params, NULL, NULL, 0);
	if (PQresultStatus(res) == PGRES_TUPLES_OK && PQntuples(res) == 1) {
		*events = strtoll(PQgetvalue(res, 0, 0), NULL, 10);
		*ms = strtoll(PQgetvalue(res, 0, 1), NULL, 10);
		ret = 0;
	} else {
		es_db_error(db, res, err);
	}
	PQclear(res);
out:
	free(xip);
	free(hixip);
	return ret;
}

struct qry_status_view *qry_status_snap(struct qry_state *st, PGconn *db,
					size_t *n, int *leader,
					long long *epoch)
{
	struct qry_status_view *v = calloc(QRY_VIEW_MAX, sizeof(*v));
	struct es_error err = ES_ERROR_INIT;
	size_t i;

	if (!v)
		return NULL;
	pthread_mutex_lock(&st->lock);
	*leader = st->leader;
	*epoch = st->epoch;
	*n = st->nviews;
	for (i = 0; i < st->nviews; i++) {
		v[i].s = st->views[i];
		if (es_cursor_copy(&v[i].s.pos, &st->views[i].pos, NULL) < 0)
			es_cursor_init(&v[i].s.pos);
		v[i].s.base = NULL; /* the state's, not copied */
		memset(&v[i].s.parked, 0, sizeof(v[i].s.parked));
		qry_parked_copy(&v[i].s.parked, &st->views[i].parked, NULL);
		v[i].token = es_cursor_format(&v[i].s.pos);
	}
	pthread_mutex_unlock(&st->lock);
	for (i = 0; i < *n && db; i++) {
		if (lag_of(db, &v[i].s.pos, &v[i].lag_events, &v[i].lag_ms,
			   &err) == 0)
			v[i].lag_known = 1;
		else if (es_db_broken(db))
			db = NULL;
		es_error_release(&err);
	}
	return v;
}

void qry_status_snap_free(struct qry_status_view *v, size_t n)
{
	size_t i;

	for (i = 0; v && i < n; i++) {
		es_cursor_release(&v[i].s.pos);
		qry_parked_release(&v[i].s.parked);
		free(v[i].token);
	}
	free(v);
}

/* [{stream, position, version, error, since}] of a view's parked streams */
static json_t *parked_json(const struct qry_parked *p)
{
	json_t *a = json_array();
	char since[32];
	size_t i;

	for (i = 0; a && i < p->n; i++) {
		time_t t = (time_t)p->v[i].since;
		struct tm tm;

		gmtime_r(&t, &tm);
		strftime(since, sizeof(since), "%Y-%m-%dT%H:%M:%SZ", &tm);
		json_array_append_new(
			a, json_pack("{s:s, s:I, s:I, s:s, s:s}", "stream",
				     p->v[i].stream, "position",
				     (json_int_t)p->v[i].position, "version",
				     (json_int_t)p->v[i].version, "error",
				     p->v[i].error, "since", since));
	}
	return a;
}

static json_t *view_status_json(const struct qry_status_view *v)
{
	json_t *o = json_pack("{s:s, s:s?, s:b, s:s?, s:I, s:I, s:b}", "name",
			      v->s.name, "position", v->token, "stopped",
			      v->s.stopped, "error",
			      v->s.stopped ? v->s.error : NULL, "applied",
			      (json_int_t)v->s.applied, "batches",
			      (json_int_t)v->s.batches, "loaded", v->s.loaded);

	if (!o)
		return NULL;
	json_object_set_new(o, "error_position",
			    v->s.stopped && v->s.error_position >= 0
				    ? json_integer(v->s.error_position)
				    : json_null());
	json_object_set_new(o, "parked", parked_json(&v->s.parked));
	json_object_set_new(o, "lag_events",
			    v->lag_known ? json_integer(v->lag_events)
					 : json_null());
	json_object_set_new(o, "lag_ms",
			    v->lag_known ? json_integer(v->lag_ms)
					 : json_null());
	return o;
}

static json_t *int_or_null(PGresult *res, int col)
{
	return PQgetisnull(res, 0, col)
		       ? json_null()
		       : json_integer(
				 strtoll(PQgetvalue(res, 0, col), NULL, 10));
}

static json_t *str_or_null(PGresult *res, int col)
{
	return PQgetisnull(res, 0, col) ? json_null()
					: json_string(PQgetvalue(res, 0, col));
}

/*
 * {standby, replay_lsn, primary_lsn, replay_lag_bytes, replay_lag_ms} of
 * the log database; a primary has nothing to replay (lags 0).
 */
static json_t *log_db_json(struct qry_state *st, PGconn *db,
			   struct es_error *err)
{
	char lsn[32];
	const char *params[1] = { NULL };
	PGresult *res;
	json_t *o;

	qry_state_primary_lsn(st, PRIMARY_LSN_MAX_AGE_MS, lsn, sizeof(lsn));
	if (lsn[0])
		params[0] = lsn;
	res = PQexecPrepared(db, "qry_replay", 1, params, NULL, NULL, 0);
	if (PQresultStatus(res) != PGRES_TUPLES_OK || PQntuples(res) != 1) {
		es_db_error(db, res, err);
		PQclear(res);
		return NULL;
	}
	if (strcmp(PQgetvalue(res, 0, 0), "t") != 0) {
		PQclear(res);
		return json_pack("{s:b, s:n, s:n, s:i, s:i}", "standby", 0,
				 "replay_lsn", "primary_lsn",
				 "replay_lag_bytes", 0, "replay_lag_ms", 0);
	}
	o = json_pack("{s:b, s:o, s:o, s:o, s:o}", "standby", 1, "replay_lsn",
		      str_or_null(res, 1), "primary_lsn", str_or_null(res, 2),
		      "replay_lag_bytes", int_or_null(res, 3), "replay_lag_ms",
		      int_or_null(res, 4));
	PQclear(res);
	return o;
}

/*
 * The backends of the event store holding a transaction id: pid, xid,
 * age, application name and state.
 */
static json_t *pending_json(PGconn *db, struct es_error *err)
{
	PGresult *res =
		PQexecPrepared(db, "qry_pending", 0, NULL, NULL, NULL, 0);
	json_t *a = NULL;
	int i;

	if (PQresultStatus(res) != PGRES_TUPLES_OK) {
		es_db_error(db, res, err);
		PQclear(res);
		return NULL;
	}
	a = json_array();
	for (i = 0; a && i < PQntuples(res); i++)
		json_array_append_new(
			a, json_pack("{s:I, s:s, s:I, s:s?, s:s?}", "pid",
				     (json_int_t)strtoll(PQgetvalue(res, i, 0),
							 NULL, 10),
				     "xid", PQgetvalue(res, i, 1), "age_ms",
				     (json_int_t)strtoll(PQgetvalue(res, i, 2),
							 NULL, 10),
				     "application_name",
				     PQgetisnull(res, i, 3)
					     ? NULL
					     : PQgetvalue(res, i, 3),
				     "state",
				     PQgetisnull(res, i, 4)
					     ? NULL
					     : PQgetvalue(res, i, 4)));
	PQclear(res);
	return a;
}

static void run_status(struct qry_read *j, void *p, struct qry_worker *w)
{
	struct es_error err = ES_ERROR_INIT;
	PGconn *db = qry_worker_db(w, QRY_DB_WRITE, &err);
	struct qry_status_view *v;
	struct qry_memory_stats ms;
	json_t *body, *views, *pending = NULL, *logdb = NULL;
	long long epoch;
	size_t n = 0, i;
	int leader;

	(void)p;

	v = qry_status_snap(j->ctx->st, db, &n, &leader, &epoch);
	if (db && !es_db_broken(db)) {
		logdb = log_db_json(j->ctx->st, db, &err);
		es_error_release(&err);
	}
	/* log_db_json() may have found the session broken */
	if (db && !es_db_broken(db))
		pending = pending_json(db, &err);
	qry_memory_stats(j->ctx->mem, &ms);
	body = json_pack(
		"{s:s, s:I, s:[], s:n, s:o?, s:I, s:I, s:I, s:I, s:b}", "role",
		leader ? "leader" : "follower", "epoch", (json_int_t)epoch,
		"views", "memory", "pending_transactions", pending,
		"waiting_requests", (json_int_t)qry_state_waiting(j->ctx->st),
		"memory_accounts", (json_int_t)ms.accounts, "memory_bytes",
		(json_int_t)ms.bytes, "memory_max_bytes",
		(json_int_t)ms.max_bytes, "memory_capped", ms.capped);
	if (body)
		json_object_set_new(body, "log_database",
				    logdb ? logdb : json_null());
	else
		json_decref(logdb);
	views = json_object_get(body, "views");
	for (i = 0; v && body && i < n; i++) {
		json_t *o = view_status_json(&v[i]);

		if (strcmp(v[i].s.name, QRY_MEMORY_VIEW) == 0)
			json_object_set_new(body, "memory", o);
		else
			json_array_append_new(views, o);
	}
	if (body && !pending)
		json_object_set_new(
			body, "database_error",
			json_string(err.detail[0] ? err.detail
						  : "database unavailable"));
	qry_status_snap_free(v, n);
	es_error_release(&err);
	if (!body || !v) {
		es_error_set(&err, ES_EINTERNAL, "out of memory");
		es_http_send_problem(j->req, &err);
		json_decref(body);
		return;
	}
	es_http_add_header(j->req, "Cache-Control", "no-store");
	es_http_send_json(j->req, 200, body);
}

static const struct qry_read_stmt stmts[] = {
	{ QRY_DB_WRITE, "qry_lag", SQL_LAG },
	{ QRY_DB_WRITE, "qry_pending", SQL_PENDING },
	{ QRY_DB_WRITE, "qry_replay", SQL_REPLAY },
	{ QRY_DB_WRITE, NULL, NULL },
};

const struct qry_read_def qry_status_read = {
	.stmts = stmts,
	.run = run_status,
};
