/* es_append.c - appending to the events table. */
#include "es_append.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "es_buf.h"
#include "es_db.h"
#include "es_json.h"
#include "es_utf8.h"
#include "es_uuid.h"

#define SQL_APPEND_BATCH                                                   \
	"SELECT cmd, transaction_id::text, last_position, versions::text," \
	" error_code, error_message, current_version, stream_id,"          \
	" stream_version, pg_current_xact_id_if_assigned()::text"          \
	" FROM tandem_append_batch_rows($1, $2, $3, $4, $5, $6, $7, $8, $9)"

/* Retries of an autocommit append that lost a race it may win next. */
#define APPEND_RETRIES 3

/* UTF-8 characters of the C string `s`, or -1 if it is not UTF-8. */
static long utf8_chars(const char *s)
{
	return es_utf8_chars(s, strlen(s), NULL);
}

static int cmp_str(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

/* Sort `v`; whether it holds a string twice (that string in *dup). */
static int has_duplicate(char **v, size_t n, const char **dup)
{
	size_t i;

	qsort(v, n, sizeof(*v), cmp_str);
	for (i = 1; i < n; i++) {
		if (strcmp(v[i - 1], v[i]) == 0) {
			*dup = v[i];
			return 1;
		}
	}
	return 0;
}

/*
 * Check one stream's part and add its request object to `req`, and its
 * event ids (lower-case copies) to ids[*nids...]. `prefix` is "" for a
 * single stream, "streams[i]." otherwise.
 */
static void validate_stream(const struct es_stream_append *sa,
			    const char *prefix, json_t *req, char **ids,
			    size_t *nids, struct es_error *err)
{
	json_t *evs = json_array(), *ev;
	long chars;
	size_t i;

	if (!sa->stream_id || (chars = utf8_chars(sa->stream_id)) < 1 ||
	    chars > ES_STREAM_ID_MAX)
		es_error_field(err, "stream_id",
			       "must be 1 to %d characters of UTF-8",
			       ES_STREAM_ID_MAX);
	if (sa->expected < ES_ANY)
		es_error_field(
			err, "expected_version",
			"must be \"any\", \"no_stream\" or a version >= 0");
	if (!json_is_array(sa->events) || json_array_size(sa->events) == 0) {
		es_error_field(err, "events", "must be a non-empty array");
		json_decref(evs);
		return;
	}
	json_array_foreach(sa->events, i, ev)
	{
		const json_t *type = json_object_get(ev, "type");
		const json_t *data = json_object_get(ev, "data");
		const json_t *meta = json_object_get(ev, "metadata");
		const json_t *id = json_object_get(ev, "event_id");
		char field[64], uuid[37];
		json_t *out;

		if (!json_is_object(ev)) {
			snprintf(field, sizeof(field), "%sevents[%zu]", prefix,
				 i);
			es_error_field(err, field, "must be an object");
			continue;
		}
		if (!json_is_string(type) ||
		    (chars = utf8_chars(json_string_value(type))) < 1 ||
		    chars > ES_EVENT_TYPE_MAX) {
			snprintf(field, sizeof(field), "%sevents[%zu].type",
				 prefix, i);
			es_error_field(err, field,
				       "must be a string of 1 to %d characters",
				       ES_EVENT_TYPE_MAX);
		}
		if (!json_is_object(data)) {
			snprintf(field, sizeof(field), "%sevents[%zu].data",
				 prefix, i);
			es_error_field(err, field, "must be an object");
		}
		if (meta && !json_is_object(meta)) {
			snprintf(field, sizeof(field), "%sevents[%zu].metadata",
				 prefix, i);
			es_error_field(err, field, "must be an object");
		}
		if (id && (!json_is_string(id) ||
			   es_uuid_parse(json_string_value(id), uuid) < 0)) {
			snprintf(field, sizeof(field), "%sevents[%zu].event_id",
				 prefix, i);
			es_error_field(err, field, "must be a UUID");
			id = NULL;
		}
		if (es_error_isset(err))
			continue;
		out = json_pack("{s:O, s:O, s:O*}", "type", type, "data", data,
				"metadata", meta);
		if (out && id) {
			json_object_set_new(out, "event_id", json_string(uuid));
			if ((ids[*nids] = strdup(uuid))) {
				++*nids;
			} else {
				json_decref(out);
				out = NULL;
			}
		}
		if (!out || json_array_append_new(evs, out) < 0)
			es_error_set(err, ES_EINTERNAL, "out of memory");
	}
	json_array_append_new(req, json_pack("{s:s?, s:I, s:o}", "stream_id",
					     sa->stream_id, "expected",
					     (json_int_t)sa->expected, "events",
					     evs));
}

/*
 * Validate the whole call and build the request array for
 * tandem_append(); *nids says how many events carry an event_id, of
 * *nevents. NULL with the error set on bad input.
 */
static json_t *append_json(const struct es_stream_append *streams, size_t n,
			   size_t *nids_out, size_t *nevents,
			   struct es_error *err)
{
	json_t *req = NULL;
	char **ids = NULL, **sids = NULL;
	size_t i, nids = 0, maxids = 0;
	const char *dup;
	int ok = 0;

	if (n == 0) {
		es_error_field(err, "streams", "must not be empty");
		return NULL;
	}
	for (i = 0; i < n; i++)
		maxids += json_is_array(streams[i].events)
				  ? json_array_size(streams[i].events)
				  : 0;
	req = json_array();
	ids = calloc(maxids + 1, sizeof(*ids));
	sids = calloc(n, sizeof(*sids));
	if (!req || !ids || !sids) {
		es_error_set(err, ES_EINTERNAL, "out of memory");
		goto out;
	}
	for (i = 0; i < n; i++) {
		char prefix[32] = "";

		if (n > 1)
			snprintf(prefix, sizeof(prefix), "streams[%zu].", i);
		validate_stream(&streams[i], prefix, req, ids, &nids, err);
		sids[i] = (char *)streams[i].stream_id;
	}
	if (es_error_isset(err))
		goto out;
	if (has_duplicate(sids, n, &dup)) {
		es_error_field(err, "stream_id", "'%.100s' is given twice",
			       dup);
		goto out;
	}
	if (has_duplicate(ids, nids, &dup)) {
		es_error_field(err, "event_id", "'%s' is given twice", dup);
		goto out;
	}
	*nids_out = nids;
	*nevents = maxids;
	ok = 1;
out:
	for (i = 0; i < nids; i++)
		free(ids[i]);
	free(ids);
	free(sids);
	if (!ok) {
		json_decref(req);
		req = NULL;
	}
	return req;
}

/* "{1,2,3}" into versions[n]. */
static int parse_versions(const char *s, struct es_stream_append *streams,
			  size_t n)
{
	size_t i;
	char *end;

	if (*s++ != '{')
		return -1;
	for (i = 0; i < n; i++) {
		streams[i].version = strtoll(s, &end, 10);
		if (end == s || *end != (i + 1 < n ? ',' : '}'))
			return -1;
		s = end + 1;
	}
	return *s ? -1 : 0;
}

/* Whether a stream of `r` is named by one of reqs[0..i) already sent. */
static const char *named_before(const struct es_append_req *reqs, size_t i,
				const struct es_append_req *r)
{
	size_t j, a, b;

	for (j = 0; j < i; j++) {
		if (!reqs[j].sent_)
			continue;
		for (a = 0; a < r->n; a++)
			for (b = 0; b < reqs[j].n; b++)
				if (!strcmp(r->streams[a].stream_id,
					    reqs[j].streams[b].stream_id))
					return r->streams[a].stream_id;
	}
	return NULL;
}

/*
 * The arguments of tandem_append_batch_rows() (0011_append_batch_rows.sql)
 * in PostgreSQL's binary array form: one 1-D array per parameter, its
 * header written by arr_start() and its length by arr_end().
 */
#define OID_INT4    23
#define OID_INT8    20
#define OID_TEXT    25
#define OID_UUID    2950
#define OID_JSONB   3802
#define OID_INT4A   1007
#define OID_INT8A   1016
#define OID_TEXTA   1009
#define OID_UUIDA   2951
#define OID_JSONBA  3807
#define JSONB_V1    1 /* jsonb's binary form: this byte, then the text */
#define ROWS_PARAMS 9

struct arr {
	struct es_buf b;
	unsigned n;
};

static void put32(struct es_buf *b, uint32_t v)
{
	unsigned char q[4] = { (unsigned char)(v >> 24),
			       (unsigned char)(v >> 16),
			       (unsigned char)(v >> 8), (unsigned char)v };

	es_buf_add(b, q, sizeof(q));
}

static void patch32(struct es_buf *b, size_t at, uint32_t v)
{
	unsigned char *q = (unsigned char *)b->s + at;

	if (b->failed || !b->s)
		return;
	q[0] = (unsigned char)(v >> 24);
	q[1] = (unsigned char)(v >> 16);
	q[2] = (unsigned char)(v >> 8);
	q[3] = (unsigned char)v;
}

/* ndim, has-nulls, element type, length (set by arr_end()), lower bound */
static void arr_start(struct arr *a, uint32_t elem)
{
	es_buf_reset(&a->b);
	a->n = 0;
	put32(&a->b, 1);
	put32(&a->b, 0);
	put32(&a->b, elem);
	put32(&a->b, 0);
	put32(&a->b, 1);
}

static void arr_end(struct arr *a)
{
	patch32(&a->b, 12, a->n);
}

static void arr_add(struct arr *a, const void *p, size_t len)
{
	put32(&a->b, (uint32_t)len);
	es_buf_add(&a->b, p, len);
	a->n++;
}

static void arr_add_int(struct arr *a, long long v, size_t width)
{
	unsigned char q[8];
	size_t i;

	for (i = 0; i < width; i++)
		q[i] = (unsigned char)((unsigned long long)v >>
				       (8 * (width - 1 - i)));
	arr_add(a, q, width);
}

static int dump_to_buf(const char *p, size_t len, void *b)
{
	es_buf_add(b, p, len);
	return 0;
}

/*
 * `v` as a jsonb element: its length, the version byte, its text. The
 * text comes from es_json_dump_sorted_to() (a fraction of jansson's
 * cost; jsonb orders the keys itself, so the stored value is the same);
 * where that refuses (not UTF-8, too deep), jansson's as before.
 */
static void arr_add_json(struct arr *a, const json_t *v)
{
	static const unsigned char v1 = JSONB_V1;
	size_t at = a->b.len, text;

	put32(&a->b, 0);
	es_buf_add(&a->b, &v1, 1);
	text = a->b.len;
	if (es_json_dump_sorted_to(&a->b, v) < 0 && !a->b.failed) {
		a->b.len = text;
		json_dump_callback(v, dump_to_buf, &a->b, JSON_COMPACT);
	}
	patch32(&a->b, at, (uint32_t)(a->b.len - at - 4));
	a->n++;
}

/* The statement's arguments: s_ arrays per stream, e_ per event, x. */
enum { S_CMD, S_STREAM, S_EXPECTED, E_STREAM, E_ID, E_TYPE, E_DATA, E_META };

static const uint32_t rows_elem[8] = {
	OID_INT4, OID_TEXT, OID_INT8,  OID_INT4,
	OID_UUID, OID_TEXT, OID_JSONB, OID_JSONB
};

/* A stream of the arrays: its id, its request and its place there. */
struct row_stream {
	const char *sid;
	size_t req, s;
};

/* Per request of the arrays: its events, and what came back of them. */
struct tally {
	size_t want, got;
	struct es_append_token at;
};

struct rows {
	struct arr a[8];
	unsigned streams;
	struct row_stream *ss; /* `streams` of them, sorted by sid at the end */
	struct tally *t; /* per request of the call */
	json_t *x; /* [{i, s}] of the requests naming event ids, or NULL */
	char *xtext;
};

static void rows_release(struct rows *w)
{
	size_t i;

	for (i = 0; i < 8; i++)
		es_buf_release(&w->a[i].b);
	free(w->ss);
	free(w->t);
	json_decref(w->x);
	free(w->xtext);
}

static int cmp_row_stream(const void *a, const void *b)
{
	return strcmp(((const struct row_stream *)a)->sid,
		      ((const struct row_stream *)b)->sid);
}

/* Request reqs[k] into the arrays (its number in the call is k + 1). */
static void rows_add(struct rows *w, struct es_append_req *reqs, size_t k)
{
	static const unsigned char no_meta[] = { JSONB_V1, '{', '}' };
	const struct es_append_req *r = &reqs[k];
	size_t i, j;

	for (i = 0; i < r->n; i++) {
		struct es_stream_append *sa = &r->streams[i];
		const json_t *ev;

		sa->version = 0; /* the greatest of its event rows */
		w->ss[w->streams] = (struct row_stream){ sa->stream_id, k, i };
		w->streams++;
		w->t[k].want += json_array_size(sa->events);
		arr_add_int(&w->a[S_CMD], (long long)k + 1, 4);
		arr_add(&w->a[S_STREAM], sa->stream_id, strlen(sa->stream_id));
		arr_add_int(&w->a[S_EXPECTED], sa->expected, 8);
		json_array_foreach(sa->events, j, ev)
		{
			const json_t *meta = json_object_get(ev, "metadata");
			const char *type =
				json_string_value(json_object_get(ev, "type"));
			unsigned char id[16];

			es_uuid_v7(id);
			arr_add_int(&w->a[E_STREAM], w->streams, 4);
			arr_add(&w->a[E_ID], id, sizeof(id));
			arr_add(&w->a[E_TYPE], type, strlen(type));
			arr_add_json(&w->a[E_DATA],
				     json_object_get(ev, "data"));
			if (meta)
				arr_add_json(&w->a[E_META], meta);
			else
				arr_add(&w->a[E_META], no_meta,
					sizeof(no_meta));
		}
	}
}

/*
 * Validate every request and build the statement's arguments into `w`:
 * requests whose events name no event id into the arrays, the others
 * into `x`. 0, or -1 when out of memory.
 */
static int batch_request(struct es_append_req *reqs, size_t n, size_t *nsent,
			 struct rows *w)
{
	json_t *one;
	size_t i, nids, nevents, maxss = 0;
	const char *dup;

	*nsent = 0;
	for (i = 0; i < n; i++)
		maxss += reqs[i].n;
	w->ss = calloc(maxss + 1, sizeof(*w->ss));
	w->t = calloc(n, sizeof(*w->t));
	if (!w->ss || !w->t)
		return -1;
	for (i = 0; i < 8; i++)
		arr_start(&w->a[i], rows_elem[i]);
	for (i = 0; i < n; i++) {
		struct es_append_req *r = &reqs[i];

		nids = nevents = 0;
		one = append_json(r->streams, r->n, &nids, &nevents, &r->err);
		if (!one)
			continue;
		dup = named_before(reqs, i, r);
		if (dup) {
			es_error_set(&r->err, ES_EINTERNAL,
				     "stream '%.100s' is in one batch twice",
				     dup);
			json_decref(one);
			continue;
		}
		if (nids == 0) {
			json_decref(one);
			rows_add(w, reqs, i);
		} else {
			if (!w->x && !(w->x = json_array()))
				return -1;
			if (json_array_append_new(w->x,
						  json_pack("{s:I, s:o}", "i",
							    (json_int_t)(i + 1),
							    "s", one)) < 0)
				return -1;
		}
		r->sent_ = 1;
		++*nsent;
	}
	for (i = 0; i < 8; i++) {
		arr_end(&w->a[i]);
		if (w->a[i].b.failed)
			return -1;
	}
	if (w->x && !(w->xtext = json_dumps(w->x, JSON_COMPACT)))
		return -1;
	qsort(w->ss, w->streams, sizeof(*w->ss), cmp_row_stream);
	return 0;
}

/* The statement's parameters, pointing into `w`. */
struct params {
	Oid types[ROWS_PARAMS];
	const char *values[ROWS_PARAMS];
	int lengths[ROWS_PARAMS];
	int formats[ROWS_PARAMS];
};

static void rows_params(const struct rows *w, struct params *p)
{
	static const Oid array_types[8] = { OID_INT4A,	OID_TEXTA, OID_INT8A,
					    OID_INT4A,	OID_UUIDA, OID_TEXTA,
					    OID_JSONBA, OID_JSONBA };
	size_t i;

	for (i = 0; i < 8; i++) {
		p->types[i] = array_types[i];
		p->values[i] = w->a[i].b.s;
		p->lengths[i] = (int)w->a[i].b.len;
		p->formats[i] = 1;
	}
	p->types[8] = OID_JSONB;
	p->values[8] = w->xtext; /* text form; NULL when no request names ids */
	p->lengths[8] = 0;
	p->formats[8] = 0;
}

/* Row `row` of a tandem_append_batch() result into its request. */
static void batch_outcome(const PGresult *res, int row, struct es_append_req *r)
{
	struct es_append_token at;
	char *end;

	r->sent_ = 0;
	if (PQgetisnull(res, row, 4)) {
		at.xid = strtoull(PQgetvalue(res, row, 1), &end, 10);
		at.pos = strtoll(PQgetvalue(res, row, 2), NULL, 10);
		if (PQgetisnull(res, row, 1) || PQgetisnull(res, row, 2) ||
		    *end ||
		    parse_versions(PQgetvalue(res, row, 3), r->streams, r->n) <
			    0) {
			es_error_set(&r->err, ES_EINTERNAL,
				     "unexpected append result");
			return;
		}
		es_append_token_format(&at, r->token, sizeof(r->token));
		r->at = at;
		r->ok = 1;
		/*
		 * the function's rows are all made before the first is
		 * returned: the transaction's id after every append of the call
		 */
		r->fresh =
			!PQgetisnull(res, row, 9) &&
			strtoull(PQgetvalue(res, row, 9), NULL, 10) == at.xid;
		return;
	}
	es_db_state_error(PQgetvalue(res, row, 4), PQgetvalue(res, row, 5),
			  PQgetisnull(res, row, 6) ? NULL
						   : PQgetvalue(res, row, 6),
			  &r->err);
}

/*
 * The batch statement is prepared once per session, as STMT_NAME, in the
 * list of the session's statements es_db.h keeps (a reset, a new
 * session, forgets it). Not a cache of anything else: the plan of the
 * statement inside tandem_append_batch_rows() is PL/pgSQL's.
 */
#define STMT_NAME "tandem_append_batch_rows"

/* Outside pipeline mode: prepare if need be, then run. */
static PGresult *exec_prepared(PGconn *db, const struct params *p)
{
	PGresult *res;

	if (!es_db_is_prepared(db, STMT_NAME)) {
		res = PQprepare(db, STMT_NAME, SQL_APPEND_BATCH, ROWS_PARAMS,
				p->types);
		if (PQresultStatus(res) != PGRES_COMMAND_OK)
			return res;
		PQclear(res);
		if (es_db_set_prepared(db, STMT_NAME) < 0)
			return NULL;
	}
	return PQexecPrepared(db, STMT_NAME, ROWS_PARAMS, p->values, p->lengths,
			      p->formats, 0);
}

/*
 * An event row of tandem_append_batch_rows() (cmd NULL): its stream's
 * version and its request's position and transaction. A row naming no
 * stream of the arrays is ignored (its request then misses one).
 */
static void event_outcome(const PGresult *res, int row, const struct rows *w,
			  struct es_append_req *reqs)
{
	struct row_stream key = { PQgetvalue(res, row, 7), 0, 0 }, *rs;
	struct es_stream_append *sa;
	struct tally *t;
	long long pos, ver;
	char *end;

	rs = bsearch(&key, w->ss, w->streams, sizeof(*w->ss), cmp_row_stream);
	if (!rs || PQgetisnull(res, row, 1) || PQgetisnull(res, row, 2) ||
	    PQgetisnull(res, row, 8))
		return;
	sa = &reqs[rs->req].streams[rs->s];
	t = &w->t[rs->req];
	ver = strtoll(PQgetvalue(res, row, 8), NULL, 10);
	pos = strtoll(PQgetvalue(res, row, 2), NULL, 10);
	t->at.xid = strtoull(PQgetvalue(res, row, 1), &end, 10);
	if (*end)
		return;
	if (ver > sa->version)
		sa->version = ver;
	if (pos > t->at.pos)
		t->at.pos = pos;
	t->got++;
}

/*
 * A request of the arrays without a row of its own (none failed it): ok
 * when each of its events came back.
 */
static void rows_outcome(struct es_append_req *r, const struct tally *t)
{
	if (!r->sent_ || t->want == 0)
		return;
	r->sent_ = 0;
	if (t->got != t->want) {
		es_error_set(&r->err, ES_EINTERNAL, "unexpected append result");
		return;
	}
	es_append_token_format(&t->at, r->token, sizeof(r->token));
	r->at = t->at;
	r->ok = 1;
	r->fresh = 1; /* the INSERT of this call */
}

/*
 * Drain the pipeline after the statement's result: up to the Sync's
 * answer, or until the connection breaks, then leave pipeline mode.
 * *synced: the Sync answered (the server is ready again); returns the
 * first error that came on the way (the commit's), or NULL.
 */
static PGresult *drain(PGconn *db, int *synced)
{
	PGresult *r, *first = NULL;
	int nulls = 0;

	*synced = 0;
	for (;;) {
		r = PQgetResult(db);
		if (!r) {
			/* one NULL ends each query's results */
			if (es_db_broken(db) || ++nulls > 1)
				break;
			continue;
		}
		nulls = 0;
		if (PQresultStatus(r) == PGRES_PIPELINE_SYNC) {
			PQclear(r);
			*synced = 1;
			break;
		}
		if (!first)
			first = r;
		else
			PQclear(r);
	}
	PQexitPipelineMode(db);
	return first;
}

/*
 * The batch statement in autocommit mode, its rows sent before its
 * commit: in pipeline mode, a Flush after the statement makes the server
 * send its rows (the transaction id among them) as soon as it is done,
 * before the Sync that commits it; no round trip more than
 * PQexecParams(). Returns the statement's result, or, when the statement
 * ran and its commit failed, the commit's error (nothing stored). *lost:
 * the statement ran, and the connection broke before the Sync answered
 * (the result is the statement's; it may have committed, and a commit
 * error followed by the break counts as that too: pg_xact_status() will
 * tell).
 */
static PGresult *exec_flushed(PGconn *db, const struct params *p, int *lost)
{
	PGresult *res, *cres;
	int synced, prepare;

	*lost = 0;
	prepare = !es_db_is_prepared(db, STMT_NAME);
	if (!PQenterPipelineMode(db))
		return exec_prepared(db, p);
	if ((prepare && !PQsendPrepare(db, STMT_NAME, SQL_APPEND_BATCH,
				       ROWS_PARAMS, p->types)) ||
	    !PQsendQueryPrepared(db, STMT_NAME, ROWS_PARAMS, p->values,
				 p->lengths, p->formats, 0) ||
	    !PQsendFlushRequest(db) || !PQpipelineSync(db)) {
		/*
		 * No Sync went out, so nothing commits. A connection still up
		 * with half a pipeline in it stays busy: the caller's pool
		 * drops it.
		 */
		if (es_db_broken(db))
			PQclear(drain(db, &synced));
		return NULL;
	}
	if (prepare) {
		/* the Parse's answer, then the NULL that ends it */
		res = PQgetResult(db);
		if (PQresultStatus(res) != PGRES_COMMAND_OK) {
			/* the statement was not run: its error is this one */
			PQclear(drain(db, &synced));
			return res;
		}
		PQclear(res);
		PQclear(PQgetResult(db));
		/* out of memory: the session is dropped after this call */
		es_db_set_prepared(db, STMT_NAME);
	}
	res = PQgetResult(db);
	cres = drain(db, &synced);
	if (PQresultStatus(res) != PGRES_TUPLES_OK) {
		PQclear(cres);
		return res;
	}
	if (synced && !cres)
		return res; /* committed */
	if (synced) {
		/* an error at the commit, and the server is ready again */
		PQclear(res);
		return cres;
	}
	PQclear(cres);
	*lost = 1;
	return res;
}

int es_append_batch(PGconn *db, struct es_append_req *reqs, size_t n,
		    struct es_error *err)
{
	struct rows w = { 0 };
	struct params p;
	PGresult *res = NULL;
	size_t i, nsent;
	int autocommit, attempt, row, lost = 0, ret = -1;

	for (i = 0; i < n; i++) {
		es_error_release(&reqs[i].err);
		reqs[i].err = (struct es_error)ES_ERROR_INIT;
		reqs[i].ok = 0;
		reqs[i].fresh = 0;
		reqs[i].sent_ = 0;
		reqs[i].token[0] = '\0';
	}
	if (batch_request(reqs, n, &nsent, &w) < 0) {
		es_error_set(err, ES_EINTERNAL, "out of memory");
		goto out;
	}
	if (nsent == 0) {
		ret = 0;
		goto out;
	}
	rows_params(&w, &p);
	autocommit = PQtransactionStatus(db) == PQTRANS_IDLE;
	for (attempt = 0;; attempt++) {
		res = autocommit ? exec_flushed(db, &p, &lost)
				 : exec_prepared(db, &p);
		if (PQresultStatus(res) == PGRES_TUPLES_OK)
			break;
		/*
		 * Nothing was stored. In autocommit mode, run it again: the
		 * requests that did not lose the race get through, and the one
		 * that did gets its own ES_ECONFLICT with the version that
		 * beat it (or, appending at any version, gets through too),
		 * alone in the call or not.
		 */
		if (!autocommit || attempt >= APPEND_RETRIES ||
		    es_db_fail_of(res) != ES_DB_FAIL_RACE) {
			es_db_error(db, res, err);
			goto out;
		}
		PQclear(res);
	}
	for (row = 0; row < PQntuples(res); row++) {
		long k;

		if (PQgetisnull(res, row, 0)) {
			event_outcome(res, row, &w, reqs);
			continue;
		}
		k = strtol(PQgetvalue(res, row, 0), NULL, 10);
		if (k >= 1 && (size_t)k <= n && reqs[k - 1].sent_)
			batch_outcome(res, row, &reqs[k - 1]);
	}
	for (i = 0; i < n; i++)
		rows_outcome(&reqs[i], &w.t[i]);
	ret = 0;
	for (i = 0; i < n; i++) {
		/* sent, yet no outcome row */
		if (reqs[i].sent_)
			es_error_set(&reqs[i].err, ES_EINTERNAL,
				     "unexpected append result");
		/*
		 * written, by a transaction whose fate we did not hear (a
		 * replay's events were committed before: it stands)
		 */
		if (reqs[i].ok && reqs[i].fresh && lost)
			ret = es_error_set(
				err, ES_EUNKNOWN,
				"the connection to the database broke while the append committed");
	}
out:
	for (i = 0; i < n; i++)
		reqs[i].sent_ = 0;
	PQclear(res);
	rows_release(&w);
	return ret;
}
