/*
 * es_read.c - reading the events table: streams, and the log in snapshot
 * windows.
 */
#include "es_read.h"

#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "es_buf.h"
#include "es_db.h"
#include "es_log.h"
#include "es_pgbin.h"
#include "es_uuid.h"

#define SQL_VERSION                                              \
	"SELECT stream_version FROM events WHERE stream_id = $1" \
	" ORDER BY stream_version DESC LIMIT 1"

/*
 * The columns of an event row, from a relation `w` of events columns.
 * Reads ask for binary results: integers, the uuid and the timestamp
 * come as they are stored (to_char() and the integer output functions
 * cost more than the rest of a read), jsonb as a version byte and text.
 */
#define EVENT_COLS                                             \
	"w.global_position, w.transaction_id, w.stream_id,"    \
	" w.stream_version, w.event_id, w.event_type, w.data," \
	" w.metadata, w.recorded_at"
#define EVENT_NCOLS 9

#define SQL_READ_STREAM                                      \
	"SELECT " EVENT_COLS " FROM events w"                \
	" WHERE w.stream_id = $1 AND w.stream_version >= $2" \
	" ORDER BY w.stream_version LIMIT $3"

/*
 * A window read returns one row with the statement's snapshot (column 0,
 * the event columns NULL), then the event rows (column 0 NULL, the event
 * columns from WINDOW_EVENT_COL on). There is no ORDER
 * BY over the whole: sorting the wide rows once more cost a third of the
 * read, so the rows come in the order the subquery picked them (which is
 * the order they arrive in, in practice) and read_window() puts them in
 * (transaction_id, global_position) order itself if they are not.
 */
#define WINDOW_HEAD                                                                  \
	"SELECT " ES_SQL_SNAPSHOT_DONE(                                              \
		"$2::xid8",                                                          \
		"$3::xid8[]") ","                                                    \
			      " NULL::bigint, NULL::xid8, NULL::text, NULL::bigint," \
			      " NULL::uuid, NULL::text, NULL::jsonb, NULL::jsonb,"   \
			      " NULL::timestamptz"                                   \
			      " UNION ALL SELECT NULL, " EVENT_COLS " FROM "
#define WINDOW_EVENT_COL 1
#define WINDOW_NCOLS	 (WINDOW_EVENT_COL + EVENT_NCOLS)
/* global_position and transaction_id, the first two of EVENT_COLS */
#define WINDOW_POS_COL WINDOW_EVENT_COL
#define WINDOW_XID_COL (WINDOW_EVENT_COL + 1)

/*
 * The window's events come from up to three index range scans on
 * events_tail_idx, each in (transaction_id, global_position) order and at
 * most LIMIT rows, merged and cut to LIMIT; a read names only the scans
 * it needs (planning the union of three took longer than running it).
 * Each fragment takes its parameter numbers, then LIMIT's, through
 * printf. From a full snapshot lo (the first read of a window):
 *   lo's xips, and the range from lo's xmax on.
 * In the rest of a window (lo, hi) after (xid, pos), where every
 * transaction visible in hi has finished, so that its committed rows are
 * all visible now:
 *   the rest of transaction xid, when it is one of lo's xips;
 *   lo's later xips that hi sees finished;
 *   the range above lo's xmax, resuming after (xid, pos) when xid is
 *   there, up to hi's xmax, without hi's xips.
 * The statement's own snapshot is the window's end (first read), or
 * checks that the server has reached hi (the others).
 */
#define WINDOW_ORDER " ORDER BY transaction_id, global_position LIMIT $%d)"
#define WINDOW_XIPS \
	"(SELECT * FROM events WHERE transaction_id = ANY($%d::xid8[])" WINDOW_ORDER
#define WINDOW_FROM_XMAX \
	"(SELECT * FROM events WHERE transaction_id >= $%d::xid8" WINDOW_ORDER
#define WINDOW_REST_OF_XID                                       \
	"(SELECT * FROM events WHERE transaction_id = $%d::xid8" \
	" AND global_position > $%d::bigint" WINDOW_ORDER
#define WINDOW_RANGE                                                          \
	"(SELECT * FROM events"                                               \
	" WHERE (transaction_id, global_position) > ($%d::xid8, $%d::bigint)" \
	" AND transaction_id < $%d::xid8"                                     \
	" AND transaction_id <> ALL($%d::xid8[])" WINDOW_ORDER

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

/* ---- event rows, as binary results hold them ---- */

/* One event row: numbers decoded, text pointing into the PGresult. */
struct raw_event {
	int64_t position;
	uint64_t xid;
	int64_t version;
	const char *stream_id, *type, *data, *metadata;
	size_t stream_id_len, type_len, data_len, metadata_len;
	char event_id[37];
	char recorded_at[ES_PGBIN_TIME_MAX];
};

/* The big-endian integer of a binary result's 8-byte value. */
static uint64_t be64(const char *p)
{
	return es_pgbin_u64((const unsigned char *)p);
}

/* Whether the EVENT_COLS from column `col` of `res` came in binary. */
static int event_cols_binary(const PGresult *res, int col, struct es_error *err)
{
	int i;

	if (PQnfields(res) < col + EVENT_NCOLS)
		return es_error_set(err, ES_EINTERNAL,
				    "unexpected read result");
	for (i = 0; i < EVENT_NCOLS; i++)
		if (PQfformat(res, col + i) != 1)
			return es_error_set(err, ES_EINTERNAL,
					    "unexpected read result");
	return 0;
}

/*
 * Decode row `row` of `res`, EVENT_COLS in binary from column `col`
 * (event_cols_binary() checked). A NULL has length 0 in libpq: the
 * fixed-size and jsonb columns refuse it by their length, the two text
 * columns ask.
 */
static int raw_event_get(const PGresult *res, int row, int col,
			 struct raw_event *e, struct es_error *err)
{
	static const int size[EVENT_NCOLS] = { 8, 8, -1, 8, 16, -1, -1, -1, 8 };
	const char *v[EVENT_NCOLS];
	int len[EVENT_NCOLS], i;

	for (i = 0; i < EVENT_NCOLS; i++) {
		v[i] = PQgetvalue(res, row, col + i);
		len[i] = PQgetlength(res, row, col + i);
		if (size[i] >= 0 && len[i] != size[i])
			return es_error_set(err, ES_EINTERNAL,
					    "unexpected read result");
	}
	if (PQgetisnull(res, row, col + 2) || PQgetisnull(res, row, col + 5))
		return es_error_set(err, ES_EINTERNAL,
				    "unexpected read result");
	e->position = (int64_t)be64(v[0]);
	e->xid = be64(v[1]);
	e->stream_id = v[2];
	e->stream_id_len = (size_t)len[2];
	e->version = (int64_t)be64(v[3]);
	es_uuid_format((const unsigned char *)v[4], e->event_id);
	e->type = v[5];
	e->type_len = (size_t)len[5];
	/* jsonb's binary form: a version byte (1), then the text */
	if (len[6] < 2 || v[6][0] != 1 || len[7] < 2 || v[7][0] != 1)
		return es_error_set(err, ES_EINTERNAL,
				    "event at position %" PRId64
				    " is not readable",
				    e->position);
	e->data = v[6] + 1;
	e->data_len = (size_t)len[6] - 1;
	e->metadata = v[7] + 1;
	e->metadata_len = (size_t)len[7] - 1;
	es_pgbin_time_any((int64_t)be64(v[8]), e->recorded_at);
	return 0;
}

/*
 * Append the event rows `rows[0..n)` of `res` (EVENT_COLS from column
 * `col`; rows NULL: 0, 1, 2...) to `out`. On failure `out` is as it was.
 */
static int take_rows(const PGresult *res, int col, const int *rows, size_t n,
		     struct es_events *out, struct es_error *err)
{
	size_t old = out->n, i;

	if (event_cols_binary(res, col, err) < 0)
		return -1;
	if (out->n + n > out->alloc) {
		size_t alloc = out->alloc ? out->alloc : 16;
		struct es_event *v;

		while (alloc < out->n + n)
			alloc *= 2;
		v = realloc(out->v, alloc * sizeof(*v));
		if (!v)
			return es_error_set(err, ES_EINTERNAL, "out of memory");
		out->v = v;
		out->alloc = alloc;
	}
	for (i = 0; i < n; i++) {
		struct es_event *e = &out->v[out->n];
		struct raw_event r;

		if (raw_event_get(res, rows ? rows[i] : (int)i, col, &r, err) <
		    0)
			goto fail;
		memset(e, 0, sizeof(*e));
		e->position = r.position;
		e->xid = r.xid;
		e->stream_id = strndup(r.stream_id, r.stream_id_len);
		e->version = r.version;
		memcpy(e->event_id, r.event_id, sizeof(e->event_id));
		e->type = strndup(r.type, r.type_len);
		e->data = strndup(r.data, r.data_len);
		e->data_len = r.data_len;
		e->metadata = strndup(r.metadata, r.metadata_len);
		e->metadata_len = r.metadata_len;
		e->recorded_at = strdup(r.recorded_at);
		out->n++;
		if (!e->stream_id || !e->type || !e->recorded_at || !e->data ||
		    !e->metadata) {
			es_error_set(err, ES_EINTERNAL, "out of memory");
			goto fail;
		}
	}
	return 0;
fail:
	es_events_truncate(out, old);
	return -1;
}

/*
 * Bytes into room render_event() reserved: the fixed parts of an event
 * go in without a reserve or strlen() each (they were a third of a page).
 */
#define PUT_LIT(b, lit) put_raw((b), (lit), sizeof(lit) - 1)

static void put_raw(struct es_buf *b, const char *s, size_t n)
{
	memcpy(b->s + b->len, s, n);
	b->len += n;
}

static void put_uint(struct es_buf *b, uint64_t v)
{
	char tmp[24];
	size_t i = sizeof(tmp);

	do {
		tmp[--i] = (char)('0' + v % 10);
		v /= 10;
	} while (v);
	put_raw(b, tmp + i, sizeof(tmp) - i);
}

static void put_int(struct es_buf *b, int64_t v)
{
	if (v < 0) {
		put_raw(b, "-", 1);
		/* -(v + 1) + 1 cannot overflow, even for INT64_MIN */
		put_uint(b, (uint64_t) - (v + 1) + 1);
	} else {
		put_uint(b, (uint64_t)v);
	}
}

/* One event as JSON text, the shape es_read.h gives. */
static void render_event(struct es_buf *b, const struct raw_event *e)
{
	/* the literals, three numbers, the event id and the time */
	if (!es_buf_reserve(b, 256 + sizeof(e->recorded_at)))
		return;
	PUT_LIT(b, "{\"position\":");
	put_int(b, e->position);
	PUT_LIT(b, ",\"transaction_id\":");
	put_uint(b, e->xid);
	PUT_LIT(b, ",\"stream_id\":");
	b->s[b->len] = '\0';
	es_buf_add_jstr(b, e->stream_id, e->stream_id_len);
	if (!es_buf_reserve(b, 160))
		return;
	PUT_LIT(b, ",\"version\":");
	put_int(b, e->version);
	PUT_LIT(b, ",\"event_id\":\"");
	put_raw(b, e->event_id, strlen(e->event_id));
	PUT_LIT(b, "\",\"type\":");
	b->s[b->len] = '\0';
	es_buf_add_jstr(b, e->type, e->type_len);
	es_buf_add(b, ",\"data\":", sizeof(",\"data\":") - 1);
	es_buf_add_json_compact(b, e->data, e->data_len);
	es_buf_add(b, ",\"metadata\":", sizeof(",\"metadata\":") - 1);
	es_buf_add_json_compact(b, e->metadata, e->metadata_len);
	if (!es_buf_reserve(b, 32 + sizeof(e->recorded_at)))
		return;
	PUT_LIT(b, ",\"recorded_at\":\"");
	put_raw(b, e->recorded_at, strlen(e->recorded_at));
	PUT_LIT(b, "\"}");
	b->s[b->len] = '\0';
}

/*
 * Append rows `rows[0..n)` of `res` (as take_rows()) to `out` as JSON,
 * comma-separated. The version of the last one in *last (may be NULL).
 * On failure `out` is as it was.
 */
static int render_rows(const PGresult *res, int col, const int *rows, size_t n,
		       struct es_buf *out, long long *last,
		       struct es_error *err)
{
	size_t old = out->len, i;
	struct raw_event r;

	if (event_cols_binary(res, col, err) < 0)
		return -1;
	/* about what the events take, to grow the buffer once */
	if (n) {
		int first = rows ? rows[0] : 0;

		es_buf_reserve(out,
			       n * ((size_t)PQgetlength(res, first, col + 6) +
				    (size_t)PQgetlength(res, first, col + 7) +
				    320));
	}
	for (i = 0; i < n; i++) {
		if (raw_event_get(res, rows ? rows[i] : (int)i, col, &r, err) <
		    0)
			goto fail;
		if (i)
			es_buf_add(out, ",", 1);
		render_event(out, &r);
		if (last)
			*last = r.version;
	}
	if (out->failed) {
		es_error_set(err, ES_EINTERNAL, "out of memory");
		goto fail;
	}
	return 0;
fail:
	if (out->s && !out->failed) {
		out->len = old;
		out->s[old] = '\0';
	}
	return -1;
}

static PGresult *read_stream(PGconn *db, const char *stream_id,
			     long long from_version, size_t limit,
			     struct es_error *err)
{
	char from[24], lim[24];
	const char *params[3] = { stream_id, from, lim };
	PGresult *res;

	if (limit < 1 || limit > ES_READ_LIMIT_MAX) {
		es_error_field(err, "limit", "must be in [1, %d]",
			       ES_READ_LIMIT_MAX);
		return NULL;
	}
	snprintf(from, sizeof(from), "%lld", from_version);
	snprintf(lim, sizeof(lim), "%zu", limit);
	res = PQexecParams(db, SQL_READ_STREAM, 3, NULL, params, NULL, NULL, 1);
	if (PQresultStatus(res) != PGRES_TUPLES_OK) {
		es_db_error(db, res, err);
		PQclear(res);
		return NULL;
	}
	return res;
}

int es_read_stream(PGconn *db, const char *stream_id, long long from_version,
		   size_t limit, struct es_events *out, struct es_error *err)
{
	PGresult *res = read_stream(db, stream_id, from_version, limit, err);
	int ret;

	if (!res)
		return -1;
	ret = take_rows(res, 0, NULL, (size_t)PQntuples(res), out, err);
	PQclear(res);
	return ret;
}

int es_read_stream_json(PGconn *db, const char *stream_id,
			long long from_version, size_t limit,
			struct es_buf *out, size_t *n, long long *last_version,
			bool *more, struct es_error *err)
{
	PGresult *res;
	size_t rows;
	int ret;

	if (limit < 1 || limit >= ES_READ_LIMIT_MAX)
		return es_error_field(err, "limit", "must be in [1, %d]",
				      ES_READ_LIMIT_MAX - 1);
	/* one row more than asked says whether the stream goes on */
	res = read_stream(db, stream_id, from_version, limit + 1, err);
	if (!res)
		return -1;
	rows = (size_t)PQntuples(res);
	*n = rows > limit ? limit : rows;
	*more = rows > limit;
	*last_version = 0;
	ret = render_rows(res, 0, NULL, *n, out, last_version, err);
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

/* An event row of a window read, for putting them in order. */
struct row_key {
	uint64_t xid;
	int64_t pos;
	int row;
};

static int cmp_row_key(const void *a, const void *b)
{
	const struct row_key *x = a, *y = b;

	if (x->xid != y->xid)
		return x->xid < y->xid ? -1 : 1;
	if (x->pos != y->pos)
		return x->pos < y->pos ? -1 : 1;
	return 0;
}

/*
 * The SQL of one window read and its parameters; $1 is the LIMIT, $2 and
 * $3 the snapshot of ES_SQL_SNAPSHOT_DONE (or NULL). Its
 * shape, the letters of its scans in order, names it as a statement
 * prepared once per session (es_db_exec_prepared()): the text of a
 * shape, parameter numbers included, is always the same.
 */
struct window_sql {
	char scans[1024];
	size_t len;
	int nscans;
	char shape[8];
	const char *params[12];
	int nparams;
};

/* Parameter `v` (borrowed) of `q`; its number. */
static int window_param(struct window_sql *q, const char *v)
{
	q->params[q->nparams] = v;
	return ++q->nparams;
}

/*
 * Add the scan of fragment `fmt`, whose arguments are parameter numbers;
 * `letter` names the fragment in the shape.
 */
static void window_scan(struct window_sql *q, char letter, const char *fmt, ...)
{
	va_list ap;
	int n;

	q->shape[q->nscans] = letter;
	if (q->nscans++) {
		n = snprintf(q->scans + q->len, sizeof(q->scans) - q->len,
			     " UNION ALL ");
		q->len += (size_t)n;
	}
	va_start(ap, fmt);
	n = vsnprintf(q->scans + q->len, sizeof(q->scans) - q->len, fmt, ap);
	va_end(ap);
	q->len += (size_t)n;
}

/*
 * Run the window read `q` (binary results), as the statement of its
 * shape: a window read parses once per session, not once per window
 * (a few events a window at a steady rate cost the server more to parse
 * and plan than to read).
 */
static PGresult *window_exec(PGconn *db, const struct window_sql *q)
{
	char sql[sizeof(q->scans) + 1024], name[32];

	snprintf(name, sizeof(name), "es_window_%s", q->shape);
	if (es_db_is_prepared(db, name))
		return es_db_exec_prepared(db, name, NULL, q->nparams,
					   q->params, NULL, NULL, 1);

	/* one scan is in order already; more are merged */
	if (q->nscans == 1)
		snprintf(sql, sizeof(sql), WINDOW_HEAD "%s w", q->scans);
	else
		snprintf(sql, sizeof(sql),
			 WINDOW_HEAD "(SELECT * FROM (%s) u"
				     " ORDER BY transaction_id, global_position"
				     " LIMIT $1) w",
			 q->scans);
	return es_db_exec_prepared(db, name, sql, q->nparams, q->params, NULL,
				   NULL, 1);
}

/* One window read: the result, its event rows in order, the cursor. */
struct window {
	PGresult *res;
	int *rows; /* event rows of res to take, in tailing order */
	size_t n;
	struct es_cursor next; /* after them */
};

static void window_release(struct window *w)
{
	PQclear(w->res);
	free(w->rows);
	es_cursor_release(&w->next);
	memset(w, 0, sizeof(*w));
}

/*
 * Run the window statement for the events after `after`, at most `limit`,
 * into `w`. The common part of es_read_forward() and
 * es_read_forward_json(); see es_read_forward() for what it checks.
 * On failure `w` is empty.
 */
static int read_window(PGconn *db, const struct es_cursor *after, size_t limit,
		       const struct es_snapshot *done, struct window *w,
		       struct es_error *err)
{
	char a1x[24], a1p[24], bx[24], bp[24], hix[24], lim[24], dx[24];
	struct window_sql q = { .len = 0 };
	struct es_cursor nc = { 0 };
	struct es_snapshot now = { 0 };
	struct row_key *keys = NULL;
	char *xipa = NULL, *hixip = NULL, *dxip = NULL;
	PGresult *res = NULL;
	int nrows, i, snap_row = -1, ret = -1, p1, p2, p3, p4;
	size_t n = 0, k;

	memset(w, 0, sizeof(*w));
	if (limit < 1 || limit > ES_READ_LIMIT_MAX)
		return es_error_field(err, "limit", "must be in [1, %d]",
				      ES_READ_LIMIT_MAX);
	/* One row more than asked says whether the window goes on. */
	snprintf(lim, sizeof(lim), "%zu", limit + 1);
	window_param(&q, lim);
	/* $2 and $3: the primary's snapshot `done`, or NULL */
	if (done) {
		snprintf(dx, sizeof(dx), "%" PRIu64, done->xmax);
		dxip = xid_array(done->xip, done->nxip, NULL, NULL);
		if (!dxip) {
			es_error_set(err, ES_EINTERNAL, "out of memory");
			goto out;
		}
	}
	window_param(&q, done ? dx : NULL);
	window_param(&q, dxip);
	if (!after->mid) {
		xipa = xid_array(after->lo.xip, after->lo.nxip, NULL, NULL);
		if (!xipa) {
			es_error_set(err, ES_EINTERNAL, "out of memory");
			goto out;
		}
		snprintf(bx, sizeof(bx), "%" PRIu64, after->lo.xmax);
		if (after->lo.nxip) {
			p1 = window_param(&q, xipa);
			window_scan(&q, 'x', WINDOW_XIPS, p1, 1);
		}
		p1 = window_param(&q, bx);
		window_scan(&q, 'f', WINDOW_FROM_XMAX, p1, 1);
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
			p1 = window_param(&q, a1x);
			p2 = window_param(&q, a1p);
			window_scan(&q, 'r', WINDOW_REST_OF_XID, p1, p2, 1);
		} else {
			snprintf(bx, sizeof(bx), "%" PRIu64, after->xid);
			snprintf(bp, sizeof(bp), "%" PRId64, after->pos);
		}
		if (strcmp(xipa, "{}") != 0) {
			p1 = window_param(&q, xipa);
			window_scan(&q, 'x', WINDOW_XIPS, p1, 1);
		}
		snprintf(hix, sizeof(hix), "%" PRIu64, after->hi.xmax);
		p1 = window_param(&q, bx);
		p2 = window_param(&q, bp);
		p3 = window_param(&q, hix);
		p4 = window_param(&q, hixip);
		window_scan(&q, 'g', WINDOW_RANGE, p1, p2, p3, p4, 1);
	}
	res = window_exec(db, &q);
	if (PQresultStatus(res) != PGRES_TUPLES_OK) {
		es_db_error(db, res, err);
		goto out;
	}
	nrows = PQntuples(res);
	if (PQnfields(res) != WINDOW_NCOLS || nrows < 1)
		goto unexpected;
	keys = malloc((size_t)nrows * sizeof(*keys));
	if (!keys) {
		es_error_set(err, ES_EINTERNAL, "out of memory");
		goto out;
	}
	/* one row has the snapshot, the others are events */
	for (i = 0; i < nrows; i++) {
		if (!PQgetisnull(res, i, 0)) {
			if (snap_row >= 0)
				goto unexpected;
			snap_row = i;
			continue;
		}
		if (PQgetisnull(res, i, WINDOW_POS_COL) ||
		    PQgetisnull(res, i, WINDOW_XID_COL) ||
		    PQgetlength(res, i, WINDOW_POS_COL) != 8 ||
		    PQgetlength(res, i, WINDOW_XID_COL) != 8)
			goto unexpected;
		keys[n].pos = (int64_t)be64(PQgetvalue(res, i, WINDOW_POS_COL));
		keys[n].xid = be64(PQgetvalue(res, i, WINDOW_XID_COL));
		keys[n].row = i;
		n++;
	}
	if (snap_row < 0 ||
	    es_snapshot_parse(PQgetvalue(res, snap_row, 0), &now, NULL) < 0)
		goto unexpected;
	/*
	 * A server that has not yet seen what the cursor has (a lagging
	 * replica, a token from elsewhere) would make us skip events.
	 */
	if (!es_snapshot_covers(&now, after->mid ? &after->hi : &after->lo)) {
		err_set_behind(err);
		goto out;
	}
	for (k = 1; k < n; k++)
		if (cmp_row_key(&keys[k - 1], &keys[k]) > 0)
			break;
	if (k < n)
		qsort(keys, n, sizeof(*keys), cmp_row_key);
	if (!after->mid) {
		nc.lo = now;
		memset(&now, 0, sizeof(now));
	} else if (es_snapshot_copy(&nc.lo, &after->hi, err) < 0) {
		goto out;
	}
	/* nc.lo is now hi, the window's end */
	if (n > limit) {
		n = limit;
		nc.hi = nc.lo;
		memset(&nc.lo, 0, sizeof(nc.lo));
		if (es_snapshot_copy(&nc.lo, &after->lo, err) < 0)
			goto out;
		nc.mid = 1;
		nc.xid = keys[n - 1].xid;
		nc.pos = keys[n - 1].pos;
	}
	/* the row numbers, in place of the keys */
	w->rows = malloc((n ? n : 1) * sizeof(*w->rows));
	if (!w->rows) {
		es_error_set(err, ES_EINTERNAL, "out of memory");
		goto out;
	}
	for (k = 0; k < n; k++)
		w->rows[k] = keys[k].row;
	w->n = n;
	w->res = res;
	res = NULL;
	w->next = nc;
	memset(&nc, 0, sizeof(nc));
	ret = 0;
	goto out;
unexpected:
	es_error_set(err, ES_EINTERNAL, "unexpected read result");
out:
	if (ret < 0)
		window_release(w);
	es_cursor_release(&nc);
	es_snapshot_release(&now);
	PQclear(res);
	free(keys);
	free(xipa);
	free(hixip);
	free(dxip);
	return ret;
}

/*
 * Read the window after `after`: its events into `evs`, or (`evs` NULL)
 * as JSON into `json` with their number in *n; `next` gets the cursor.
 */
static int read_forward(PGconn *db, const struct es_cursor *after, size_t limit,
			const struct es_snapshot *done, struct es_events *evs,
			struct es_buf *json, size_t *n, struct es_cursor *next,
			struct es_error *err)
{
	struct window w;
	int ret;

	if (read_window(db, after, limit, done, &w, err) < 0)
		return -1;
	if (evs)
		ret = take_rows(w.res, WINDOW_EVENT_COL, w.rows, w.n, evs, err);
	else
		ret = render_rows(w.res, WINDOW_EVENT_COL, w.rows, w.n, json,
				  NULL, err);
	if (ret == 0) {
		if (n)
			*n = w.n;
		es_cursor_release(next);
		*next = w.next;
		memset(&w.next, 0, sizeof(w.next));
	}
	window_release(&w);
	return ret;
}

int es_read_forward(PGconn *db, const struct es_cursor *after, size_t limit,
		    struct es_events *out, struct es_cursor *next,
		    struct es_error *err)
{
	return read_forward(db, after, limit, NULL, out, NULL, NULL, next, err);
}

int es_read_forward_done(PGconn *db, const struct es_cursor *after,
			 size_t limit, const struct es_snapshot *done,
			 struct es_events *out, struct es_cursor *next,
			 struct es_error *err)
{
	return read_forward(db, after, limit, done, out, NULL, NULL, next, err);
}

int es_read_forward_json(PGconn *db, const struct es_cursor *after,
			 size_t limit, struct es_buf *out, size_t *n,
			 struct es_cursor *next, struct es_error *err)
{
	return read_forward(db, after, limit, NULL, NULL, out, n, next, err);
}

int es_read_forward_json_done(PGconn *db, const struct es_cursor *after,
			      size_t limit, const struct es_snapshot *done,
			      struct es_buf *out, size_t *n,
			      struct es_cursor *next, struct es_error *err)
{
	return read_forward(db, after, limit, done, NULL, out, n, next, err);
}

char *es_read_snapshot(PGconn *db, const struct es_snapshot *done,
		       struct es_error *err)
{
	const char *params[2] = { NULL, NULL };
	char dx[24], *dxip = NULL, *snap = NULL;
	PGresult *res;

	if (done) {
		snprintf(dx, sizeof(dx), "%" PRIu64, done->xmax);
		dxip = xid_array(done->xip, done->nxip, NULL, NULL);
		if (!dxip) {
			es_error_set(err, ES_EINTERNAL, "out of memory");
			return NULL;
		}
		params[0] = dx;
		params[1] = dxip;
	}
	res = PQexecParams(
		db, "SELECT " ES_SQL_SNAPSHOT_DONE("$1::xid8", "$2::xid8[]"), 2,
		NULL, params, NULL, NULL, 0);
	if (PQresultStatus(res) != PGRES_TUPLES_OK)
		es_db_error(db, res, err);
	else if (PQntuples(res) != 1 || PQgetisnull(res, 0, 0))
		es_error_set(err, ES_EINTERNAL, "unexpected snapshot result");
	else if (!(snap = strdup(PQgetvalue(res, 0, 0))))
		es_error_set(err, ES_EINTERNAL, "out of memory");
	PQclear(res);
	free(dxip);
	return snap;
}

/*
 * Events of `from`'s running transactions that finished in `to` ($1), or
 * of transactions from `from`'s xmax ($2) up to `to`'s ($3) not running
 * in `to` ($4): by the tail index, each an equality or a short range.
 */
#define SQL_ANY_BETWEEN                                                     \
	"SELECT EXISTS (SELECT 1 FROM events"                               \
	"  WHERE transaction_id = ANY($1::xid8[]))"                         \
	" OR EXISTS (SELECT 1 FROM events WHERE transaction_id >= $2::xid8" \
	"  AND transaction_id < $3::xid8"                                   \
	"  AND transaction_id <> ALL($4::xid8[]))"

int es_read_any_between(PGconn *db, const struct es_snapshot *from,
			const struct es_snapshot *to, int *any,
			struct es_error *err)
{
	char fx[24], tx[24];
	char *done = xid_array(from->xip, from->nxip, NULL, to);
	char *running = xid_array(to->xip, to->nxip, NULL, NULL);
	const char *params[4] = { done, fx, tx, running };
	PGresult *res = NULL;
	int ret = -1;

	if (!done || !running) {
		es_error_set(err, ES_EINTERNAL, "out of memory");
		goto out;
	}
	snprintf(fx, sizeof(fx), "%" PRIu64, from->xmax);
	snprintf(tx, sizeof(tx), "%" PRIu64, to->xmax);
	res = PQexecParams(db, SQL_ANY_BETWEEN, 4, NULL, params, NULL, NULL, 0);
	if (PQresultStatus(res) != PGRES_TUPLES_OK) {
		es_db_error(db, res, err);
	} else if (PQntuples(res) != 1 || PQgetisnull(res, 0, 0)) {
		es_error_set(err, ES_EINTERNAL, "unexpected result");
	} else {
		*any = PQgetvalue(res, 0, 0)[0] == 't';
		ret = 0;
	}
out:
	PQclear(res);
	free(done);
	free(running);
	return ret;
}

uint64_t es_lsn_value(const char *s)
{
	unsigned int hi, lo;
	char end;

	if (!s || sscanf(s, "%8X/%8X%c", &hi, &lo, &end) != 2)
		return 0;
	return (uint64_t)hi << 32 | lo;
}

int es_replay_lsn(PGconn *db, uint64_t *lsn)
{
	PGresult *res = PQexec(db, "SELECT pg_last_wal_replay_lsn()::text");
	int ret = -1;

	*lsn = 0;
	if (PQresultStatus(res) == PGRES_TUPLES_OK && PQntuples(res) == 1) {
		ret = !PQgetisnull(res, 0, 0);
		if (ret)
			*lsn = es_lsn_value(PQgetvalue(res, 0, 0));
	}
	PQclear(res);
	return ret;
}
