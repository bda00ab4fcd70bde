/*
 * qry_parked.c - parked streams: the projector's in-memory sets, their
 * rows in parked_streams, and the operator's list and retry.
 */
#include "qry_parked.h"

#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "es_db.h"
#include "es_read.h"
#include "es_token.h"
#include "views/payload.h"
#include "views/view.h"

#define SQL_LOAD                                                 \
	"SELECT stream_id, version, position, error,"            \
	" extract(epoch FROM since)::bigint FROM parked_streams" \
	" WHERE view = $1 ORDER BY since, stream_id"
#define SQL_LIST                                                      \
	"SELECT json_build_object('view', view, 'stream', stream_id," \
	" 'version', version, 'position', position, 'error', error,"  \
	" 'since', to_char(since AT TIME ZONE 'UTC',"                 \
	" 'YYYY-MM-DD\"T\"HH24:MI:SS\"Z\"'))::text"                   \
	" FROM parked_streams ORDER BY view, since, stream_id"
#define SQL_STORE                                                         \
	"INSERT INTO parked_streams (view, stream_id, version, position," \
	" error, since) SELECT $1, s, v, p, e, to_timestamp(t)"           \
	" FROM json_to_recordset($2::json)"                               \
	" AS u(s text, v bigint, p bigint, e text, t bigint)"             \
	" ON CONFLICT (view, stream_id) DO UPDATE SET"                    \
	" version = EXCLUDED.version, position = EXCLUDED.position,"      \
	" error = EXCLUDED.error, since = EXCLUDED.since"
#define SQL_GEN "SELECT parked_gen FROM projection_leader WHERE id = 1"
#define SQL_RETRY_LOCK                                             \
	"UPDATE projection_leader SET parked_gen = parked_gen + 1" \
	" WHERE id = 1"
#define SQL_RETRY_ROW                                        \
	"SELECT p.version, c.position FROM parked_streams p" \
	" JOIN projection_checkpoints c ON c.view = p.view"  \
	" WHERE p.view = $1 AND p.stream_id = $2 FOR UPDATE OF p"
#define SQL_RETRY_REPARK                                         \
	"UPDATE parked_streams SET version = $3, position = $4," \
	" error = $5, since = now() WHERE view = $1 AND stream_id = $2"
#define SQL_RETRY_DONE \
	"DELETE FROM parked_streams WHERE view = $1 AND stream_id = $2"
#define RETRY_PAGE 1000

const struct qry_parked_stream *qry_parked_get(const struct qry_parked *p,
					       const char *stream)
{
	size_t i;

	for (i = 0; i < p->n; i++)
		if (strcmp(p->v[i].stream, stream) == 0)
			return &p->v[i];
	return NULL;
}

int qry_parked_holds(const struct qry_parked *p, const struct es_event *ev)
{
	const struct qry_parked_stream *s;

	if (!p->n || !ev->stream_id)
		return 0;
	s = qry_parked_get(p, ev->stream_id);
	return s && ev->version >= s->version;
}

/* Add an entry (copies the strings). */
static int add(struct qry_parked *p, const char *stream, long long version,
	       long long position, const char *error, long long since,
	       struct es_error *err)
{
	struct qry_parked_stream *s;

	if (p->n == p->alloc) {
		size_t alloc = p->alloc ? p->alloc * 2 : 8;

		s = realloc(p->v, alloc * sizeof(*s));
		if (!s)
			return es_error_set(err, ES_EINTERNAL, "out of memory");
		p->v = s;
		p->alloc = alloc;
	}
	s = &p->v[p->n];
	s->stream = strdup(stream);
	s->error = strdup(error);
	s->version = version;
	s->position = position;
	s->since = since;
	if (!s->stream || !s->error) {
		free(s->stream);
		free(s->error);
		return es_error_set(err, ES_EINTERNAL, "out of memory");
	}
	p->n++;
	return 0;
}

int qry_parked_add(struct qry_parked *p, const struct es_event *ev,
		   const char *why, struct es_error *err)
{
	return add(p, ev->stream_id, ev->version, ev->position, why,
		   (long long)time(NULL), err);
}

int qry_parked_account_error(struct es_error *err, const char *id,
			     long long position, const char *why)
{
	return es_error_set(err, ES_EUNAVAIL,
			    "account '%s' is parked at position %lld: %s", id,
			    position, why);
}

void qry_parked_truncate(struct qry_parked *p, size_t n)
{
	while (p->n > n) {
		p->n--;
		free(p->v[p->n].stream);
		free(p->v[p->n].error);
	}
}

int qry_parked_copy(struct qry_parked *dst, const struct qry_parked *src,
		    struct es_error *err)
{
	size_t i;

	qry_parked_truncate(dst, 0);
	for (i = 0; i < src->n; i++)
		if (add(dst, src->v[i].stream, src->v[i].version,
			src->v[i].position, src->v[i].error, src->v[i].since,
			err) < 0)
			return -1;
	return 0;
}

void qry_parked_release(struct qry_parked *p)
{
	qry_parked_truncate(p, 0);
	free(p->v);
	memset(p, 0, sizeof(*p));
}

int qry_parked_load(PGconn *db, const char *view, struct qry_parked *out,
		    struct es_error *err)
{
	struct qry_parked p = QRY_PARKED_INIT;
	const char *params[1] = { view };
	PGresult *res;
	int i, ret = -1;

	res = PQexecParams(db, SQL_LOAD, 1, NULL, params, NULL, NULL, 0);
	if (PQresultStatus(res) != PGRES_TUPLES_OK) {
		es_db_error(db, res, err);
		goto out;
	}
	for (i = 0; i < PQntuples(res); i++)
		if (add(&p, PQgetvalue(res, i, 0),
			strtoll(PQgetvalue(res, i, 1), NULL, 10),
			strtoll(PQgetvalue(res, i, 2), NULL, 10),
			PQgetvalue(res, i, 3),
			strtoll(PQgetvalue(res, i, 4), NULL, 10), err) < 0)
			goto out;
	qry_parked_release(out);
	*out = p;
	memset(&p, 0, sizeof(p));
	ret = 0;
out:
	qry_parked_release(&p);
	PQclear(res);
	return ret;
}

int qry_parked_store(PGconn *db, const char *view, const struct qry_parked *p,
		     size_t from, struct es_error *err)
{
	json_t *rows = json_array();
	char *text = NULL;
	const char *params[2];
	PGresult *res = NULL;
	size_t i;
	int ret = -1;

	if (from >= p->n) {
		json_decref(rows);
		return 0;
	}
	for (i = from; rows && i < p->n; i++)
		if (json_array_append_new(
			    rows, json_pack("{s:s, s:I, s:I, s:s, s:I}", "s",
					    p->v[i].stream, "v",
					    (json_int_t)p->v[i].version, "p",
					    (json_int_t)p->v[i].position, "e",
					    p->v[i].error, "t",
					    (json_int_t)p->v[i].since)) < 0)
			break;
	text = rows && i == p->n ? json_dumps(rows, JSON_COMPACT) : NULL;
	if (!text) {
		es_error_set(err, ES_EINTERNAL, "out of memory");
		goto out;
	}
	params[0] = view;
	params[1] = text;
	res = PQexecParams(db, SQL_STORE, 2, NULL, params, NULL, NULL, 0);
	if (PQresultStatus(res) != PGRES_COMMAND_OK) {
		es_db_error(db, res, err);
		goto out;
	}
	ret = 0;
out:
	PQclear(res);
	json_decref(rows);
	free(text);
	return ret;
}

int qry_parked_gen(PGconn *db, long long *gen, struct es_error *err)
{
	PGresult *res = PQexec(db, SQL_GEN);
	int ret = -1;

	if (PQresultStatus(res) != PGRES_TUPLES_OK)
		es_db_error(db, res, err);
	else if (PQntuples(res) != 1)
		es_error_set(err, ES_EINTERNAL, "projection_leader has no row");
	else
		ret = 0;
	if (ret == 0)
		*gen = strtoll(PQgetvalue(res, 0, 0), NULL, 10);
	PQclear(res);
	return ret;
}

int qry_parked_list(const char *read_url, struct es_error *err)
{
	PGconn *db = es_db_connect(read_url, "tandem-parked", err);
	PGresult *res;
	int i, ret = -1;

	if (!db)
		return -1;
	res = PQexec(db, SQL_LIST);
	if (PQresultStatus(res) != PGRES_TUPLES_OK) {
		es_db_error(db, res, err);
		goto out;
	}
	for (i = 0; i < PQntuples(res); i++)
		printf("%s\n", PQgetvalue(res, i, 0));
	ret = 0;
out:
	PQclear(res);
	PQfinish(db);
	return ret;
}

/* Run `sql` with `n` text parameters, expecting `status`. */
static PGresult *run(PGconn *db, const char *sql, int n,
		     const char *const *params, ExecStatusType status,
		     struct es_error *err)
{
	PGresult *res = PQexecParams(db, sql, n, NULL, params, NULL, NULL, 0);

	if (PQresultStatus(res) == status)
		return res;
	es_db_error(db, res, err);
	PQclear(res);
	return NULL;
}

/*
 * Fold the events of `stream` from `version` on that `cp` covers into
 * `batch` of `ops`. 0; 1 with *bad (the event's version and position)
 * and `why` when one still cannot be applied; -1 with `err`.
 */
static int refold(PGconn *wr, const struct view_ops *ops, void *batch,
		  const char *stream, long long version,
		  const struct es_cursor *cp, long long bad[2], char *why,
		  size_t why_len, struct es_error *err)
{
	struct es_events evs = ES_EVENTS_INIT;
	int ret = -1, more = 1;
	size_t i;

	while (more) {
		es_events_release(&evs);
		if (es_read_stream(wr, stream, version, RETRY_PAGE, &evs, err) <
			    0 ||
		    view_payload_decode_all(&evs, err) < 0)
			goto out;
		more = evs.n == RETRY_PAGE;
		for (i = 0; i < evs.n; i++) {
			const struct es_event *ev = &evs.v[i];
			struct es_append_token at = { ev->xid, ev->position };
			struct es_error e = ES_ERROR_INIT;

			/* the rest: the projector has not read it yet */
			if (!es_cursor_covers_append(cp, &at)) {
				ret = 0;
				goto out;
			}
			version = ev->version + 1;
			if (ops->apply(batch, ev, &e) >= 0)
				continue;
			if (e.code != ES_EINVALID) {
				es_error_set(err, e.code, "%s", e.detail);
				es_error_release(&e);
				goto out;
			}
			snprintf(why, why_len, "%s", e.detail);
			bad[0] = ev->version;
			bad[1] = ev->position;
			es_error_release(&e);
			ret = 1;
			goto out;
		}
	}
	ret = 0;
out:
	es_events_release(&evs);
	return ret;
}

int qry_parked_retry(const char *write_url, const char *read_url,
		     const char *view, const char *stream, int *still,
		     struct es_error *err)
{
	const struct view_ops *ops = view_find(view);
	const char *params[5] = { view, stream };
	PGconn *wr = NULL, *rd = NULL;
	PGresult *res = NULL;
	struct es_cursor cp;
	void *batch = NULL;
	char why[200], v[24], p[24];
	long long bad[2], version;
	int r, ret = -1;

	es_cursor_init(&cp);
	*still = 0;
	if (!ops)
		return es_error_set(err, ES_ENOTFOUND, "no view '%s'", view);
	wr = es_db_connect(write_url, "tandem-parked", err);
	rd = wr ? es_db_connect(read_url, "tandem-parked", err) : NULL;
	if (!rd || es_db_exec(rd, "BEGIN", err) < 0)
		goto out;
	/* the projector commits nothing while this row is locked */
	res = run(rd, SQL_RETRY_LOCK, 0, NULL, PGRES_COMMAND_OK, err);
	if (!res)
		goto out;
	PQclear(res);
	res = run(rd, SQL_RETRY_ROW, 2, params, PGRES_TUPLES_OK, err);
	if (!res)
		goto out;
	if (PQntuples(res) != 1) {
		es_error_set(err, ES_ENOTFOUND,
			     "stream '%.100s' is not parked for view '%s'",
			     stream, view);
		goto out;
	}
	version = strtoll(PQgetvalue(res, 0, 0), NULL, 10);
	if (es_cursor_parse(PQgetvalue(res, 0, 1), &cp, err) < 0)
		goto out;
	PQclear(res);
	res = NULL;
	batch = ops->batch_new();
	if (!batch) {
		es_error_set(err, ES_EINTERNAL, "out of memory");
		goto out;
	}
	r = refold(wr, ops, batch, stream, version, &cp, bad, why, sizeof(why),
		   err);
	if (r < 0)
		goto out;
	if (r > 0) {
		snprintf(v, sizeof(v), "%lld", bad[0]);
		snprintf(p, sizeof(p), "%lld", bad[1]);
		params[2] = v;
		params[3] = p;
		params[4] = why;
		res = run(rd, SQL_RETRY_REPARK, 5, params, PGRES_COMMAND_OK,
			  err);
		*still = 1;
	} else {
		/* what the stream has waited with goes in now */
		if (ops->flush(batch, rd, "", err) < 0)
			goto out;
		res = run(rd, SQL_RETRY_DONE, 2, params, PGRES_COMMAND_OK, err);
	}
	if (!res)
		goto out;
	PQclear(res);
	res = NULL;
	if (es_db_exec(rd, "NOTIFY tandem_checkpoint; COMMIT", err) < 0)
		goto out;
	ret = 0;
out:
	if (ret < 0 && rd && PQtransactionStatus(rd) != PQTRANS_IDLE)
		PQclear(PQexec(rd, "ROLLBACK"));
	if (batch)
		ops->batch_free(batch);
	es_cursor_release(&cp);
	PQclear(res);
	if (rd)
		PQfinish(rd);
	if (wr)
		PQfinish(wr);
	return ret;
}
