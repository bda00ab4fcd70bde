/* es_store.c - append to and read from the events table. */
#include "es_store.h"

#include <ctype.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "es_db.h"
#include "es_log.h"

#define SQL_APPEND                                                   \
	"SELECT transaction_id::text, last_position, versions::text" \
	" FROM tandem_append($1::jsonb)"

#define SQL_VERSION                                              \
	"SELECT stream_version FROM events WHERE stream_id = $1" \
	" ORDER BY stream_version DESC LIMIT 1"

/* The columns of an event row, from a relation `w` of events columns. */
#define EVENT_COLS                                                         \
	"w.global_position, w.transaction_id::text, w.stream_id,"          \
	" w.stream_version, w.event_id::text, w.event_type, w.data::text," \
	" w.metadata::text, to_char(w.recorded_at AT TIME ZONE 'UTC',"     \
	" 'YYYY-MM-DD\"T\"HH24:MI:SS.US\"Z\"')"
#define EVENT_NCOLS 9

#define SQL_READ_STREAM                                      \
	"SELECT " EVENT_COLS " FROM events w"                \
	" WHERE w.stream_id = $1 AND w.stream_version >= $2" \
	" ORDER BY w.stream_version LIMIT $3"

/*
 * A window from a full snapshot lo ($1 its xip, $2 its xmax): the rows
 * this statement sees of transactions running at lo or begun after it,
 * and the statement's own snapshot as the window's end. Two index range
 * scans on events_tail_idx, each at most $3 rows, whose results are
 * already in order relative to each other (every xip is below xmax).
 * The LEFT JOIN yields the snapshot even when there are no rows.
 */
#define SQL_WINDOW_FIRST                                                       \
	"SELECT pg_current_snapshot()::text, pg_is_in_recovery(), " EVENT_COLS \
	" FROM (SELECT 1) one LEFT JOIN LATERAL ("                             \
	"  SELECT * FROM ("                                                    \
	"   (SELECT * FROM events WHERE transaction_id = ANY($1::xid8[])"      \
	"    ORDER BY transaction_id, global_position LIMIT $3)"               \
	"   UNION ALL"                                                         \
	"   (SELECT * FROM events WHERE transaction_id >= $2::xid8"            \
	"    ORDER BY transaction_id, global_position LIMIT $3)) u"            \
	"  ORDER BY transaction_id, global_position LIMIT $3) w ON true"       \
	" ORDER BY w.transaction_id, w.global_position"

/*
 * The rest of a window (lo, hi) after (xid, pos): every transaction
 * visible in hi has finished, so its committed rows are all visible now,
 * and the filters say which transactions belong to the window:
 *   $1, $2  the rest of transaction xid when it is one of lo's xips;
 *   $3      lo's later xips that hi sees finished;
 *   $4, $5  where the range above lo's xmax resumes;
 *   $6, $7  hi's xmax and xip.
 * The statement's snapshot comes along to check that it covers hi.
 */
#define SQL_WINDOW_NEXT                                                        \
	"SELECT pg_current_snapshot()::text, pg_is_in_recovery(), " EVENT_COLS \
	" FROM (SELECT 1) one LEFT JOIN LATERAL ("                             \
	"  SELECT * FROM ("                                                    \
	"   (SELECT * FROM events WHERE transaction_id = $1::xid8"             \
	"     AND global_position > $2::bigint"                                \
	"    ORDER BY transaction_id, global_position LIMIT $8)"               \
	"   UNION ALL"                                                         \
	"   (SELECT * FROM events WHERE transaction_id = ANY($3::xid8[])"      \
	"    ORDER BY transaction_id, global_position LIMIT $8)"               \
	"   UNION ALL"                                                         \
	"   (SELECT * FROM events"                                             \
	"    WHERE (transaction_id, global_position) > ($4::xid8, $5::bigint)" \
	"      AND transaction_id < $6::xid8"                                  \
	"      AND transaction_id <> ALL($7::xid8[])"                          \
	"    ORDER BY transaction_id, global_position LIMIT $8)) u"            \
	"  ORDER BY transaction_id, global_position LIMIT $8) w ON true"       \
	" ORDER BY w.transaction_id, w.global_position"

/* Retries of an autocommit append that lost a race it may win next. */
#define APPEND_RETRIES 3

/* Number of UTF-8 characters in `s`, or -1 if it is not valid UTF-8. */
static long utf8_chars(const char *s)
{
	const unsigned char *p = (const unsigned char *)s;
	long n = 0;

	while (*p) {
		unsigned c = *p;
		int len, i;
		unsigned cp;

		if (c < 0x80) {
			len = 1;
			cp = c;
		} else if (c >= 0xc2 && c <= 0xdf) {
			len = 2;
			cp = c & 0x1f;
		} else if (c >= 0xe0 && c <= 0xef) {
			len = 3;
			cp = c & 0x0f;
		} else if (c >= 0xf0 && c <= 0xf4) {
			len = 4;
			cp = c & 0x07;
		} else {
			return -1;
		}
		for (i = 1; i < len; i++) {
			if ((p[i] & 0xc0) != 0x80)
				return -1;
			cp = (cp << 6) | (p[i] & 0x3f);
		}
		if ((len == 3 &&
		     (cp < 0x800 || (cp >= 0xd800 && cp <= 0xdfff))) ||
		    (len == 4 && (cp < 0x10000 || cp > 0x10ffff)))
			return -1;
		p += len;
		n++;
	}
	return n;
}

/* A UUID in its 8-4-4-4-12 hex form, copied lower-case into out[37]. */
static int uuid_normalize(const char *s, char out[37])
{
	int i;

	if (strlen(s) != 36)
		return -1;
	for (i = 0; i < 36; i++) {
		if (i == 8 || i == 13 || i == 18 || i == 23) {
			if (s[i] != '-')
				return -1;
		} else if (!isxdigit((unsigned char)s[i])) {
			return -1;
		}
		out[i] = (char)tolower((unsigned char)s[i]);
	}
	out[36] = '\0';
	return 0;
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
			   uuid_normalize(json_string_value(id), uuid) < 0)) {
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
 * Validate the whole call and build the JSON for tandem_append(). NULL
 * with the error set on bad input.
 */
static char *append_request(const struct es_stream_append *streams, size_t n,
			    int *all_ids, struct es_error *err)
{
	json_t *req = NULL;
	char **ids = NULL, **sids = NULL;
	size_t i, nids = 0, maxids = 0;
	const char *dup;
	char *body = NULL;

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
	*all_ids = nids == maxids;
	body = json_dumps(req, JSON_COMPACT);
	if (!body)
		es_error_set(err, ES_EINTERNAL, "cannot encode events");
out:
	for (i = 0; i < nids; i++)
		free(ids[i]);
	free(ids);
	free(sids);
	json_decref(req);
	return body;
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

static int all_any(const struct es_stream_append *streams, size_t n)
{
	size_t i;

	for (i = 0; i < n; i++)
		if (streams[i].expected != ES_ANY)
			return 0;
	return 1;
}

int es_append(PGconn *db, struct es_stream_append *streams, size_t n,
	      char *token, size_t tokenlen, struct es_error *err)
{
	struct es_append_token at;
	const char *params[1];
	PGresult *res = NULL;
	struct es_error local = ES_ERROR_INIT;
	char *body = NULL, *end;
	int autocommit, attempt, all_ids = 0, ret = -1;

	/* validation needs somewhere to record field problems */
	if (!err)
		err = &local;
	/* refuse before writing anything, not after */
	if (token && tokenlen < ES_APPEND_TOKEN_MAX) {
		es_error_set(err, ES_EINTERNAL,
			     "append token buffer too small");
		goto out;
	}
	body = append_request(streams, n, &all_ids, err);
	if (!body)
		goto out;
	params[0] = body;
	autocommit = PQtransactionStatus(db) == PQTRANS_IDLE;
	for (attempt = 0;; attempt++) {
		const char *state;

		res = PQexecParams(db, SQL_APPEND, 1, NULL, params, NULL, NULL,
				   0);
		if (PQresultStatus(res) == PGRES_TUPLES_OK)
			break;
		state = PQresultErrorField(res, PG_DIAG_SQLSTATE);
		/*
		 * Lost a race in a transaction of our own: an ES_ANY append
		 * may win next time; and when a concurrent twin of this
		 * append (the same event ids) committed first, the next
		 * attempt finds its events and answers as it did.
		 */
		if (!autocommit || attempt >= APPEND_RETRIES || !state ||
		    !((strcmp(state, "TDV01") == 0 && all_any(streams, n)) ||
		      (attempt == 0 && all_ids &&
		       (strcmp(state, "TDI01") == 0 ||
			strcmp(state, "TDV01") == 0)))) {
			es_db_error(db, res, err);
			goto out;
		}
		PQclear(res);
	}
	if (PQntuples(res) != 1 || PQgetisnull(res, 0, 0) ||
	    PQgetisnull(res, 0, 1)) {
		es_error_set(err, ES_EINTERNAL, "unexpected append result");
		goto out;
	}
	at.xid = strtoull(PQgetvalue(res, 0, 0), &end, 10);
	at.pos = strtoll(PQgetvalue(res, 0, 1), NULL, 10);
	if (*end || parse_versions(PQgetvalue(res, 0, 2), streams, n) < 0) {
		es_error_set(err, ES_EINTERNAL, "unexpected append result");
		goto out;
	}
	if (token)
		es_append_token_format(&at, token, tokenlen);
	ret = 0;
out:
	PQclear(res);
	free(body);
	es_error_release(&local);
	return ret;
}

int es_stream_version(PGconn *db, const char *stream_id, long long *version,
		      struct es_error *err)
{
	const char *params[1] = { stream_id };
	PGresult *res;

	res = PQexecParams(db, SQL_VERSION, 1, NULL, params, NULL, NULL, 0);
	if (PQresultStatus(res) != PGRES_TUPLES_OK) {
		es_db_error(db, res, err);
		PQclear(res);
		return -1;
	}
	*version =
		PQntuples(res) ? strtoll(PQgetvalue(res, 0, 0), NULL, 10) : 0;
	PQclear(res);
	return 0;
}

static void event_release(struct es_event *e)
{
	free(e->stream_id);
	free(e->type);
	free(e->recorded_at);
	json_decref(e->data);
	json_decref(e->metadata);
}

void es_events_release(struct es_events *ev)
{
	size_t i;

	for (i = 0; i < ev->n; i++)
		event_release(&ev->v[i]);
	free(ev->v);
	memset(ev, 0, sizeof(*ev));
}

static json_t *load_json(const char *text, long long position)
{
	json_error_t jerr;
	json_t *j = json_loads(text, JSON_DECODE_ANY, &jerr);

	if (!j)
		es_log(ES_LOG_ERROR, "event_json_unreadable", "{s:I, s:s}",
		       "position", (json_int_t)position, "error", jerr.text);
	return j;
}

/*
 * Append the event rows of `res` (EVENT_COLS from column `col`, rows
 * [0, nrows)) to `out`. On failure `out` is as it was.
 */
static int take_rows(const PGresult *res, int col, int nrows,
		     struct es_events *out, struct es_error *err)
{
	size_t old = out->n;
	int i;

	if (PQnfields(res) < col + EVENT_NCOLS)
		return es_error_set(err, ES_EINTERNAL,
				    "unexpected read result");
	if (out->n + (size_t)nrows > out->alloc) {
		size_t alloc = out->alloc ? out->alloc : 16;
		struct es_event *v;

		while (alloc < out->n + (size_t)nrows)
			alloc *= 2;
		v = realloc(out->v, alloc * sizeof(*v));
		if (!v)
			return es_error_set(err, ES_EINTERNAL, "out of memory");
		out->v = v;
		out->alloc = alloc;
	}
	for (i = 0; i < nrows; i++) {
		struct es_event *e = &out->v[out->n];

		memset(e, 0, sizeof(*e));
		e->position = strtoll(PQgetvalue(res, i, col), NULL, 10);
		e->xid = strtoull(PQgetvalue(res, i, col + 1), NULL, 10);
		e->stream_id = strdup(PQgetvalue(res, i, col + 2));
		e->version = strtoll(PQgetvalue(res, i, col + 3), NULL, 10);
		snprintf(e->event_id, sizeof(e->event_id), "%s",
			 PQgetvalue(res, i, col + 4));
		e->type = strdup(PQgetvalue(res, i, col + 5));
		e->data = load_json(PQgetvalue(res, i, col + 6), e->position);
		e->metadata =
			load_json(PQgetvalue(res, i, col + 7), e->position);
		e->recorded_at = strdup(PQgetvalue(res, i, col + 8));
		out->n++;
		if (!e->stream_id || !e->type || !e->recorded_at) {
			es_error_set(err, ES_EINTERNAL, "out of memory");
			goto fail;
		}
		if (!e->data || !e->metadata) {
			es_error_set(err, ES_EINTERNAL,
				     "event at position %lld is not readable",
				     e->position);
			goto fail;
		}
	}
	return 0;
fail:
	while (out->n > old)
		event_release(&out->v[--out->n]);
	return -1;
}

int es_read_stream(PGconn *db, const char *stream_id, long long from_version,
		   size_t limit, struct es_events *out, struct es_error *err)
{
	char from[24], lim[24];
	const char *params[3] = { stream_id, from, lim };
	PGresult *res;
	int ret;

	if (limit < 1 || limit > ES_READ_LIMIT_MAX)
		return es_error_field(err, "limit", "must be in [1, %d]",
				      ES_READ_LIMIT_MAX);
	snprintf(from, sizeof(from), "%lld", from_version);
	snprintf(lim, sizeof(lim), "%zu", limit);
	res = PQexecParams(db, SQL_READ_STREAM, 3, NULL, params, NULL, NULL, 0);
	if (PQresultStatus(res) != PGRES_TUPLES_OK)
		ret = es_db_error(db, res, err);
	else
		ret = take_rows(res, 0, PQntuples(res), out, err);
	PQclear(res);
	return ret;
}

/*
 * "{x1,x2,...}": the xids of `xip` above *after (when given) and finished
 * in `finished_in` (when given).
 */
static char *xid_array(const uint64_t *xip, size_t n, const uint64_t *after,
		       const struct es_snapshot *finished_in)
{
	char *buf = malloc(n * 21 + 3);
	size_t i, at = 0;

	if (!buf)
		return NULL;
	buf[at++] = '{';
	for (i = 0; i < n; i++) {
		if (after && xip[i] <= *after)
			continue;
		if (finished_in && !es_snapshot_visible(finished_in, xip[i]))
			continue;
		at += (size_t)sprintf(buf + at, "%s%" PRIu64, at > 1 ? "," : "",
				      xip[i]);
	}
	buf[at++] = '}';
	buf[at] = '\0';
	return buf;
}

static void err_set_behind(struct es_error *err)
{
	if (err && !es_error_isset(err))
		err->retry_after = 1;
	es_error_set(err, ES_EUNAVAIL,
		     "the database has not reached this position yet");
}

int es_read_forward(PGconn *db, const struct es_cursor *after, size_t limit,
		    struct es_events *out, struct es_cursor *next,
		    struct es_error *err)
{
	char a1x[24], a1p[24], bx[24], bp[24], hix[24], lim[24];
	const char *params[8];
	struct es_cursor nc = { 0 };
	struct es_snapshot now = { 0 };
	char *xipa = NULL, *hixip = NULL;
	PGresult *res = NULL;
	int nrows, ret = -1;
	size_t old = out->n;

	if (limit < 1 || limit > ES_READ_LIMIT_MAX)
		return es_error_field(err, "limit", "must be in [1, %d]",
				      ES_READ_LIMIT_MAX);
	/* One row more than asked says whether the window goes on. */
	snprintf(lim, sizeof(lim), "%zu", limit + 1);
	if (!after->mid) {
		xipa = xid_array(after->lo.xip, after->lo.nxip, NULL, NULL);
		if (!xipa) {
			es_error_set(err, ES_EINTERNAL, "out of memory");
			goto out;
		}
		snprintf(bx, sizeof(bx), "%" PRIu64, after->lo.xmax);
		params[0] = xipa;
		params[1] = bx;
		params[2] = lim;
		res = PQexecParams(db, SQL_WINDOW_FIRST, 3, NULL, params, NULL,
				   NULL, 0);
	} else {
		const struct es_snapshot *lo = &after->lo;
		int in_xip = after->xid < lo->xmax;

		/* the rest of lo's xips: after xid, and finished in hi */
		xipa = xid_array(lo->xip, in_xip ? lo->nxip : 0, &after->xid,
				 &after->hi);
		hixip = xid_array(after->hi.xip, after->hi.nxip, NULL, NULL);
		if (!xipa || !hixip) {
			es_error_set(err, ES_EINTERNAL, "out of memory");
			goto out;
		}
		snprintf(a1x, sizeof(a1x), "%" PRIu64, after->xid);
		snprintf(a1p, sizeof(a1p), "%" PRId64, after->pos);
		if (in_xip) {
			snprintf(bx, sizeof(bx), "%" PRIu64, lo->xmax);
			snprintf(bp, sizeof(bp), "%" PRId64, INT64_MIN);
		} else {
			snprintf(bx, sizeof(bx), "%" PRIu64, after->xid);
			snprintf(bp, sizeof(bp), "%" PRId64, after->pos);
		}
		snprintf(hix, sizeof(hix), "%" PRIu64, after->hi.xmax);
		params[0] = in_xip ? a1x : NULL;
		params[1] = a1p;
		params[2] = xipa;
		params[3] = bx;
		params[4] = bp;
		params[5] = hix;
		params[6] = hixip;
		params[7] = lim;
		res = PQexecParams(db, SQL_WINDOW_NEXT, 8, NULL, params, NULL,
				   NULL, 0);
	}
	if (PQresultStatus(res) != PGRES_TUPLES_OK) {
		es_db_error(db, res, err);
		goto out;
	}
	nrows = PQntuples(res);
	/* row 0 has the snapshot, and no event if the window is empty */
	if (nrows < 1 ||
	    es_snapshot_parse(PQgetvalue(res, 0, 0), &now, NULL) < 0) {
		es_error_set(err, ES_EINTERNAL, "unexpected read result");
		goto out;
	}
	/*
	 * A hot standby's snapshots keep running xids apart from xip, so
	 * pg_current_snapshot() there would make us skip events.
	 */
	if (strcmp(PQgetvalue(res, 0, 1), "f") != 0) {
		es_log(ES_LOG_ERROR, "tail_on_standby", NULL);
		es_error_set(err, ES_EINTERNAL, "cannot tail a standby server");
		goto out;
	}
	if (PQgetisnull(res, 0, 2))
		nrows = 0;
	/*
	 * A server that has not yet seen what the cursor has (a lagging
	 * replica, a token from elsewhere) would make us skip events.
	 */
	if (!es_snapshot_covers(&now, after->mid ? &after->hi : &after->lo)) {
		err_set_behind(err);
		goto out;
	}
	if (!after->mid) {
		nc.lo = now;
		memset(&now, 0, sizeof(now));
	} else if (es_snapshot_copy(&nc.lo, &after->hi, err) < 0) {
		goto out;
	}
	/* nc.lo is now hi, the window's end */
	if ((size_t)nrows > limit) {
		nrows = (int)limit;
		nc.hi = nc.lo;
		memset(&nc.lo, 0, sizeof(nc.lo));
		if (es_snapshot_copy(&nc.lo, &after->lo, err) < 0)
			goto out;
		nc.mid = 1;
	}
	if (take_rows(res, 2, nrows, out, err) < 0)
		goto out;
	if (nc.mid) {
		nc.xid = out->v[out->n - 1].xid;
		nc.pos = out->v[out->n - 1].position;
	}
	es_cursor_release(next);
	*next = nc;
	memset(&nc, 0, sizeof(nc));
	ret = 0;
out:
	if (ret < 0) {
		while (out->n > old)
			event_release(&out->v[--out->n]);
	}
	es_cursor_release(&nc);
	es_snapshot_release(&now);
	PQclear(res);
	free(xipa);
	free(hixip);
	return ret;
}
