/*
 * qry_routes.c - the GET routes of the query service.
 *
 * A database-backed route runs in three steps: parse (on the HTTP
 * thread: bad input is answered at once), wait (only with a token the
 * view has not passed: the request is suspended and parked in qry_state),
 * run (on a read worker, which answers and resumes the request). The
 * per-request state is one struct route_job that travels through those
 * steps and is freed after the answer.
 *
 * The handler thread owns a request it suspended only in the rare cases
 * where it cannot hand it over (the view passed the token between the
 * check and the park, or the pool refused the job); it then answers and
 * resumes it itself, which es_http allows from any thread.
 */
#include "es_array.h"
#include "qry_routes.h"

#include <ctype.h>
#include <inttypes.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "es_db.h"
#include "es_hash.h"
#include "es_buf.h"
#include "es_log.h"
#include "es_probe.h"
#include "es_read.h"
#include "es_token.h"
#include "views/view_account.h"
#include "views/daily.h"
#include "views/large.h"
#include "views/owner.h"
#include "views/statement.h"

#define LIMIT_DEFAULT 100
#define LIMIT_MAX     1000
#define WAIT_DEFAULT  2000
#define WAIT_MAX      10000
#define CURSOR_MAX    64
#define METRICS_TYPE  "text/plain; version=0.0.4; charset=utf-8"

/* One statement each: the rows and the view's checkpoint, one snapshot. */
#define CHECKPOINT(view)                                                 \
	" FROM (SELECT 1) one LEFT JOIN (SELECT position AS cp_position" \
	" FROM projection_checkpoints WHERE view = '" view "') cp ON true"
#define FROM_ACCOUNTS  CHECKPOINT("accounts")
#define FROM_STATEMENT CHECKPOINT("statement")
#define FROM_DAILY     CHECKPOINT("daily")

#define SQL_STATEMENT                                                \
	"SELECT cp.cp_position, EXISTS (SELECT 1 FROM view_accounts" \
	" WHERE account_id = $1::uuid), " VIEW_STATEMENT_COLUMNS     \
		FROM_STATEMENT                                       \
	" LEFT JOIN LATERAL (SELECT * FROM view_statement"           \
	" WHERE account_id = $1::uuid AND version > $2::bigint"      \
	" ORDER BY version LIMIT $3::bigint) s ON true ORDER BY s.version"

#define SQL_OWNER                                                          \
	"SELECT cp.cp_position, " VIEW_ACCOUNT_COLUMNS FROM_ACCOUNTS       \
	" LEFT JOIN LATERAL (SELECT * FROM view_accounts WHERE owner = $1" \
	" ORDER BY account_id) a ON true ORDER BY a.account_id"

#define SQL_DAILY                                                           \
	"SELECT cp.cp_position, " VIEW_DAILY_COLUMNS FROM_DAILY             \
	" LEFT JOIN LATERAL (SELECT * FROM view_daily"                      \
	" WHERE ($1::date IS NULL OR day >= $1::date)"                      \
	" AND ($2::date IS NULL OR day <= $2::date)"                        \
	" AND ($3::date IS NULL OR (day, currency) > ($3::date, $4::text))" \
	" ORDER BY day, currency LIMIT $5::bigint) d ON true"               \
	" ORDER BY d.day, d.currency"

#define SQL_LARGE                                                       \
	"SELECT cp.cp_position, " VIEW_STATEMENT_COLUMNS FROM_STATEMENT \
	" LEFT JOIN LATERAL (SELECT * FROM view_statement"              \
	" WHERE " VIEW_LARGE_WHERE " ORDER BY " VIEW_LARGE_ORDER        \
	" LIMIT $4::bigint) s ON true ORDER BY s.amount DESC, s.position"

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

#define SQL_PENDING                                                  \
	"SELECT pid, backend_xid::text, floor(extract(epoch FROM"    \
	" clock_timestamp() - xact_start) * 1000)::bigint, state,"   \
	" left(query, 200) FROM pg_stat_activity"                    \
	" WHERE backend_xid IS NOT NULL AND pid <> pg_backend_pid()" \
	" AND datname = current_database() ORDER BY xact_start"

#define SQL_SNAPSHOT_BEGIN "BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY"

struct route_job;

/* How one database-backed route parses and runs. */
struct route_def {
	const char *view; /* whose position it answers with, NULL: the log */
	int ryw; /* takes X-Min-Position */
	int (*parse)(struct route_job *j, struct es_error *err);
	void (*run)(struct route_job *j, struct qry_worker *w);
};

struct route_job {
	struct qry_job base; /* for the pool */
	struct qry_waiter wait; /* for read-your-writes */
	struct es_request *req;
	struct qry_ctx *ctx;
	const struct route_def *def;
	const char *min_token; /* borrowed from the request */
	long wait_ms;
	/* parsed parameters, as each route needs them */
	char id[37];
	char *text; /* owner or stream id, owned */
	long limit;
	int has_after;
	long long after_a, after_b;
	char after_day[11], after_cur[4];
	struct es_cursor after_cursor;
	char from[11], to[11];
	long long num; /* min_amount, from_version */
	char canon[160]; /* the parameters, for the ETag */
};

/* ---- small helpers ---- */

/* A decimal integer, optional '-', no spaces, no overflow. */
static int parse_ll(const char *s, long long *out)
{
	long long v = 0;
	int neg = 0;

	if (!s || !*s)
		return -1;
	if (*s == '-') {
		neg = 1;
		s++;
	}
	if (!*s || strlen(s) > 18)
		return -1;
	for (; *s; s++) {
		if (*s < '0' || *s > '9')
			return -1;
		v = v * 10 + (*s - '0');
	}
	*out = neg ? -v : v;
	return 0;
}

/* A UUID in any case, copied lower-case into out[37]. */
static int uuid_lower(const char *s, char out[37])
{
	int i;

	if (!s || strlen(s) != 36)
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

/* Whether `s` is valid UTF-8 of 1 to `max` characters. */
static int utf8_ok(const char *s, size_t max)
{
	const unsigned char *p = (const unsigned char *)s;
	size_t n = 0;

	while (*p) {
		int len, i;

		if (*p < 0x80)
			len = 1;
		else if (*p >= 0xc2 && *p <= 0xdf)
			len = 2;
		else if (*p >= 0xe0 && *p <= 0xef)
			len = 3;
		else if (*p >= 0xf0 && *p <= 0xf4)
			len = 4;
		else
			return 0;
		for (i = 1; i < len; i++)
			if ((p[i] & 0xc0) != 0x80)
				return 0;
		p += len;
		n++;
	}
	return n >= 1 && n <= max;
}

/* "YYYY-MM-DD", a real date. */
static int date_ok(const char *s)
{
	static const int mdays[] = { 31, 29, 31, 30, 31, 30,
				     31, 31, 30, 31, 30, 31 };
	int y, m, d, i;

	if (!s || strlen(s) != 10 || s[4] != '-' || s[7] != '-')
		return 0;
	for (i = 0; i < 10; i++)
		if (i != 4 && i != 7 && !isdigit((unsigned char)s[i]))
			return 0;
	y = atoi(s);
	m = atoi(s + 5);
	d = atoi(s + 8);
	if (y < 1 || m < 1 || m > 12 || d < 1 || d > mdays[m - 1])
		return 0;
	if (m == 2 && d == 29 &&
	    !(y % 4 == 0 && (y % 100 != 0 || y % 400 == 0)))
		return 0;
	return 1;
}

static int currency_ok(const char *s)
{
	return strlen(s) == 3 && isupper((unsigned char)s[0]) &&
	       isupper((unsigned char)s[1]) && isupper((unsigned char)s[2]);
}

/* ?limit=: default 100, an integer in [1, 1000], else 422. */
static int parse_limit(struct route_job *j, struct es_error *err)
{
	const char *s = es_request_query(j->req, "limit");
	long long v;

	j->limit = LIMIT_DEFAULT;
	if (!s)
		return 0;
	if (parse_ll(s, &v) < 0 || v < 1 || v > LIMIT_MAX)
		return es_error_field(err, "limit",
				      "must be an integer in [1, %d]",
				      LIMIT_MAX);
	j->limit = (long)v;
	return 0;
}

/* Whether If-None-Match lists `etag` (weak comparison) or is "*". */
static int etag_matches(const char *inm, const char *etag)
{
	const char *e = strncmp(etag, "W/", 2) == 0 ? etag + 2 : etag;
	size_t elen = strlen(e);

	while (inm && *inm) {
		const char *end;
		size_t len;

		while (*inm == ' ' || *inm == '\t' || *inm == ',')
			inm++;
		if (!*inm)
			break;
		end = inm;
		while (*end && *end != ',')
			end++;
		len = (size_t)(end - inm);
		while (len && (inm[len - 1] == ' ' || inm[len - 1] == '\t'))
			len--;
		if (len == 1 && *inm == '*')
			return 1;
		if (len > 2 && strncmp(inm, "W/", 2) == 0) {
			inm += 2;
			len -= 2;
		}
		if (len == elen && strncmp(inm, e, len) == 0)
			return 1;
		inm = end;
	}
	return 0;
}

static void add_position(struct es_request *req, const char *pos)
{
	if (pos)
		es_http_add_header(req, "X-Position", pos);
}

/* X-Position of view `view` as qry_state knows it. */
static void add_view_position(struct es_request *req, struct qry_ctx *ctx,
			      const char *view)
{
	char *pos = view ? qry_state_pos_token(ctx->st, view) : NULL;

	add_position(req, pos);
	free(pos);
}

/*
 * A 64-bit hash of `n` bytes of `s`, continuing from `h`: eight bytes a
 * step (FNV-1a a byte at a time took a millisecond for a page of 1000
 * events).
 */
static uint64_t hash_bytes(uint64_t h, const char *s, size_t n)
{
	uint64_t w;

	for (; n >= 8; s += 8, n -= 8) {
		memcpy(&w, s, 8);
		h = (h ^ w) * 0x9e3779b97f4a7c15ULL;
		h ^= h >> 29;
	}
	for (; n; s++, n--)
		h = (h ^ (unsigned char)*s) * 1099511628211ULL;
	return h;
}

/*
 * Answer a list or object, `len` bytes of JSON `text` (taken), read at
 * `position`. The ETag is weak and hashes the path, the parameters and
 * the body: the position moves on whenever anything is appended to the
 * log (and even when nothing is: a read's snapshot moves with every
 * transaction), so an ETag of the position alone would almost never give
 * a 304. 304 when If-None-Match has it.
 */
static void answer_text(struct route_job *j, const char *position, char *text,
			size_t len)
{
	char etag[40];
	uint64_t h;

	add_position(j->req, position);
	h = es_hash_add(ES_HASH_INIT, j->req->path);
	h = es_hash_add(h, "?");
	h = es_hash_add(h, j->canon);
	h = es_hash_add(h, "\n");
	h = hash_bytes(h, text, len);
	snprintf(etag, sizeof(etag), "W/\"%016" PRIx64 "\"", h);
	es_http_add_header(j->req, "ETag", etag);
	if (etag_matches(es_request_header(j->req, "If-None-Match"), etag)) {
		free(text);
		es_http_send_text(j->req, 304, "application/json", "", 0);
	} else {
		es_http_send_buffer(j->req, 200, "application/json", text, len);
	}
}

/* answer_text() of `body` (taken), or 500 when it cannot be written. */
static void answer(struct route_job *j, const char *position, json_t *body)
{
	char *text = body ? json_dumps(body, JSON_COMPACT) : NULL;
	struct es_error err = ES_ERROR_INIT;

	json_decref(body);
	if (!text) {
		add_position(j->req, position);
		es_error_set(&err, ES_EINTERNAL, "cannot encode the response");
		es_http_send_problem(j->req, &err);
		return;
	}
	answer_text(j, position, text, strlen(text));
}

/*
 * answer_text() of `body`, a list whose items are written and which ends
 * with `next` (or null); `body` is emptied.
 */
static void answer_list(struct route_job *j, const char *position,
			struct es_buf *body, const char *next)
{
	struct es_error err = ES_ERROR_INIT;
	size_t len;
	char *text;

	es_buf_adds(body, "],\"next\":");
	if (next)
		es_buf_add_jstr(body, next, strlen(next));
	else
		es_buf_adds(body, "null");
	es_buf_adds(body, "}");
	text = es_buf_detach(body, &len);
	if (!text) {
		add_position(j->req, position);
		es_error_set(&err, ES_EINTERNAL, "out of memory");
		es_http_send_problem(j->req, &err);
		return;
	}
	answer_text(j, position, text, len);
}

/* ---- jobs ---- */

static void job_free(struct route_job *j)
{
	es_cursor_release(&j->after_cursor);
	free(j->text);
	free(j);
}

/* Answer `err` with the view's position, resume, free. */
static void job_fail(struct route_job *j, const struct es_error *err)
{
	if (j->def && j->def->view)
		add_view_position(j->req, j->ctx, j->def->view);
	es_http_send_problem(j->req, err);
	es_http_resume(j->req);
	job_free(j);
}

static void job_run(struct qry_job *base, struct qry_worker *w)
{
	struct route_job *j = (struct route_job *)base;

	j->def->run(j, w);
	es_http_resume(j->req);
	job_free(j);
}

static void job_reject(struct qry_job *base, const struct es_error *err)
{
	job_fail((struct route_job *)base, err);
}

static void job_submit(struct route_job *j)
{
	struct es_error err = ES_ERROR_INIT;

	j->base.run = job_run;
	j->base.reject = job_reject;
	if (qry_readpool_submit(j->ctx->pool, &j->base, &err) < 0)
		job_fail(j, &err);
	es_error_release(&err);
}

/* 503 for a token the view did not reach in time. */
static void fail_timeout(struct route_job *j, const char *view)
{
	struct es_error err = ES_ERROR_INIT;

	err.retry_after = 1;
	es_error_set(
		&err, ES_EUNAVAIL,
		"the '%s' view has not reached position '%.60s' within %ld ms",
		view, j->min_token, j->wait_ms);
	job_fail(j, &err);
}

static void fail_cancelled(struct route_job *j)
{
	struct es_error err = ES_ERROR_INIT;

	es_error_set(&err, ES_EUNAVAIL, "the service is shutting down");
	job_fail(j, &err);
}

static void job_waited(struct qry_waiter *w, enum qry_wait_result r)
{
	struct route_job *j = w->arg;

	if (r == QRY_WAIT_COVERED)
		job_submit(j);
	else if (r == QRY_WAIT_TIMEOUT)
		fail_timeout(j, j->def->view);
	else
		fail_cancelled(j);
}

/*
 * X-Min-Position (or ?min_position=) and X-Wait-Ms. 400 for a wait that
 * is not an integer in [0, 10000]; the token is checked by the caller.
 */
static int parse_wait(struct es_request *req, const char **token, long *ms,
		      struct es_error *err)
{
	const char *s = es_request_header(req, "X-Wait-Ms");
	long long v;

	*token = es_request_header(req, "X-Min-Position");
	if (!*token)
		*token = es_request_query(req, "min_position");
	*ms = WAIT_DEFAULT;
	if (!s)
		return 0;
	if (parse_ll(s, &v) < 0 || v < 0 || v > WAIT_MAX)
		return es_error_set(
			err, ES_EMALFORMED,
			"X-Wait-Ms must be an integer in [0, %d], got '%.40s'",
			WAIT_MAX, s);
	*ms = (long)v;
	return 0;
}

/*
 * The pipeline of every database-backed route: parse, maybe wait, then
 * hand to a worker.
 */
static void db_route(struct es_request *req, const struct route_def *def)
{
	struct qry_ctx *ctx = req->ctx;
	struct es_error err = ES_ERROR_INIT;
	struct route_job *j = calloc(1, sizeof(*j));
	int covered = 1, r;

	if (!j) {
		es_error_set(&err, ES_EINTERNAL, "out of memory");
		es_http_send_problem(req, &err);
		return;
	}
	j->req = req;
	j->ctx = ctx;
	j->def = def;
	es_cursor_init(&j->after_cursor);
	if (def->ryw) {
		if (parse_wait(req, &j->min_token, &j->wait_ms, &err) < 0)
			goto fail;
		if (j->min_token && def->view)
			covered = qry_state_covers(ctx->st, def->view,
						   j->min_token, &err);
		else if (j->min_token)
			covered = es_token_covers(ES_CURSOR_START, j->min_token,
						  &err) < 0
					  ? -1
					  : 1;
		if (covered < 0)
			goto fail;
	}
	if (def->parse && def->parse(j, &err) < 0)
		goto fail;
	es_http_suspend(req);
	if (!covered) {
		j->wait.deadline_ms = qry_state_clock_ms() + j->wait_ms;
		j->wait.done = job_waited;
		j->wait.arg = j;
		r = qry_state_park(ctx->st, def->view, j->min_token, &j->wait,
				   &err);
		if (r == 0)
			return;
		if (r < 0) {
			job_fail(j, &err);
			es_error_release(&err);
			return;
		}
	}
	job_submit(j);
	return;
fail:
	if (def->view)
		add_view_position(req, ctx, def->view);
	es_http_send_problem(req, &err);
	es_error_release(&err);
	job_free(j);
}

/* ---- GET /accounts/{id}: from memory ---- */

/* Answer account `id` from the in-memory view. */
static void serve_account(struct es_request *req, struct qry_ctx *ctx,
			  const char *id)
{
	struct es_error err = ES_ERROR_INIT;
	struct qry_memory_read rd;
	char etag[32];
	int r;

	r = qry_memory_get(ctx->mem, id, &rd, &err);
	if (r < 0) {
		add_view_position(req, ctx, QRY_MEMORY_VIEW);
		es_http_send_problem(req, &err);
		es_error_release(&err);
		return;
	}
	add_position(req, rd.position);
	if (r == 0) {
		es_error_set(&err, ES_ENOTFOUND, "account '%s' does not exist",
			     id);
		es_http_send_problem(req, &err);
		es_error_release(&err);
		free(rd.mem);
		return;
	}
	snprintf(etag, sizeof(etag), "\"%lld\"", rd.version);
	es_http_add_header(req, "ETag", etag);
	if (etag_matches(es_request_header(req, "If-None-Match"), etag)) {
		es_http_send_text(req, 304, "application/json", "", 0);
		free(rd.mem);
	} else {
		/* the body is at the start of rd.mem: sent without a copy */
		es_http_send_buffer(req, 200, "application/json", rd.mem,
				    rd.len);
	}
}

/* A parked GET /accounts/{id}: answered by whoever wakes it. */
struct account_wait {
	struct qry_waiter wait;
	struct es_request *req;
	struct qry_ctx *ctx;
	const char *token; /* borrowed from the request */
	long wait_ms;
	char id[37];
};

static void account_waited(struct qry_waiter *w, enum qry_wait_result r)
{
	struct account_wait *a = w->arg;
	struct es_error err = ES_ERROR_INIT;

	if (r == QRY_WAIT_COVERED) {
		serve_account(a->req, a->ctx, a->id);
	} else {
		if (r == QRY_WAIT_TIMEOUT) {
			err.retry_after = 1;
			es_error_set(
				&err, ES_EUNAVAIL,
				"the '%s' view has not reached position '%.60s' within %ld ms",
				QRY_MEMORY_VIEW, a->token, a->wait_ms);
		} else {
			es_error_set(&err, ES_EUNAVAIL,
				     "the service is shutting down");
		}
		add_view_position(a->req, a->ctx, QRY_MEMORY_VIEW);
		es_http_send_problem(a->req, &err);
		es_error_release(&err);
	}
	es_http_resume(a->req);
	free(a);
}

static void get_account(struct es_request *req)
{
	struct qry_ctx *ctx = req->ctx;
	struct es_error err = ES_ERROR_INIT;
	struct account_wait *a = NULL;
	const char *token;
	char id[37];
	long wait_ms;
	int covered = 1, r;

	if (parse_wait(req, &token, &wait_ms, &err) < 0)
		goto fail;
	if (uuid_lower(es_request_param(req, "id"), id) < 0) {
		es_error_set(&err, ES_ENOTFOUND,
			     "account '%.60s' does not exist",
			     es_request_param(req, "id"));
		goto fail;
	}
	if (token) {
		covered =
			qry_state_covers(ctx->st, QRY_MEMORY_VIEW, token, &err);
		if (covered < 0)
			goto fail;
	}
	if (covered) {
		serve_account(req, ctx, id);
		return;
	}
	a = calloc(1, sizeof(*a));
	if (!a) {
		es_error_set(&err, ES_EINTERNAL, "out of memory");
		goto fail;
	}
	a->req = req;
	a->ctx = ctx;
	a->token = token;
	a->wait_ms = wait_ms;
	memcpy(a->id, id, sizeof(id));
	a->wait.deadline_ms = qry_state_clock_ms() + wait_ms;
	a->wait.done = account_waited;
	a->wait.arg = a;
	es_http_suspend(req);
	r = qry_state_park(ctx->st, QRY_MEMORY_VIEW, token, &a->wait, &err);
	if (r == 0)
		return;
	/* passed meanwhile, or stopping: we own the request still */
	if (r > 0)
		serve_account(req, ctx, id);
	else
		es_http_send_problem(req, &err);
	es_error_release(&err);
	es_http_resume(req);
	free(a);
	return;
fail:
	add_view_position(req, ctx, QRY_MEMORY_VIEW);
	es_http_send_problem(req, &err);
	es_error_release(&err);
}

/* ---- database helpers for the workers ---- */

/* Run prepared `name`; NULL and the error answered on failure. */
static PGresult *run_prepared(struct route_job *j, struct qry_worker *w,
			      const char *name, int n,
			      const char *const *params)
{
	struct es_error err = ES_ERROR_INIT;
	PGconn *db = qry_worker_db(w, QRY_DB_READ, &err);
	PGresult *res;

	if (!db)
		goto fail;
	res = PQexecPrepared(db, name, n, params, NULL, NULL, 0);
	if (PQresultStatus(res) == PGRES_TUPLES_OK)
		return res;
	es_db_error(db, res, &err);
	PQclear(res);
fail:
	add_view_position(j->req, j->ctx, j->def->view);
	es_http_send_problem(j->req, &err);
	es_error_release(&err);
	return NULL;
}

/* Answer an internal error found while reading rows. */
static void fail_rows(struct route_job *j, struct es_error *err)
{
	if (!es_error_isset(err))
		es_error_set(err, ES_EINTERNAL, "out of memory");
	add_view_position(j->req, j->ctx, j->def->view);
	es_http_send_problem(j->req, err);
	es_error_release(err);
}

/* The checkpoint column (0) of `res`, "0:0:" without one. */
static const char *checkpoint_of(const PGresult *res)
{
	if (PQntuples(res) < 1 || PQgetisnull(res, 0, 0))
		return ES_CURSOR_START;
	return PQgetvalue(res, 0, 0);
}

/* Rows of `res` that hold a view row (column `col` not NULL). */
static int data_rows(const PGresult *res, int col)
{
	int n = PQntuples(res);

	return n == 1 && PQgetisnull(res, 0, col) ? 0 : n;
}

/* {"items": items, "next": next-or-null}; takes `items`. */
static json_t *list(json_t *items, const char *next)
{
	return json_pack("{s:o, s:s?}", "items", items, "next", next);
}

/* ---- GET /accounts/{id}/transactions ---- */

static int parse_statement(struct route_job *j, struct es_error *err)
{
	const char *after = es_request_query(j->req, "after");
	const char *id = es_request_param(j->req, "id");

	if (uuid_lower(id, j->id) < 0)
		return es_error_set(err, ES_ENOTFOUND,
				    "account '%.60s' does not exist", id);
	if (after) {
		if (parse_ll(after, &j->after_a) < 0 || j->after_a < 0)
			return es_error_set(err, ES_EMALFORMED,
					    "malformed cursor '%.60s'", after);
		j->has_after = 1;
	}
	if (parse_limit(j, err) < 0)
		return -1;
	snprintf(j->canon, sizeof(j->canon), "limit=%ld&after=%lld", j->limit,
		 j->has_after ? j->after_a : 0);
	return 0;
}

static void run_statement(struct route_job *j, struct qry_worker *w)
{
	struct es_error err = ES_ERROR_INIT;
	char after[24], lim[24], next[24];
	const char *params[3] = { j->id, after, lim };
	json_t *items = json_array();
	PGresult *res;
	int i, n, more;

	snprintf(after, sizeof(after), "%lld", j->has_after ? j->after_a : 0);
	snprintf(lim, sizeof(lim), "%ld", j->limit + 1);
	res = run_prepared(j, w, "qry_statement", 3, params);
	if (!res) {
		json_decref(items);
		return;
	}
	if (strcmp(PQgetvalue(res, 0, 1), "t") != 0) {
		add_position(j->req, checkpoint_of(res));
		es_error_set(&err, ES_ENOTFOUND, "account '%s' does not exist",
			     j->id);
		es_http_send_problem(j->req, &err);
		goto out;
	}
	n = data_rows(res, 2);
	more = n > j->limit;
	if (more)
		n = (int)j->limit;
	for (i = 0; i < n && items; i++) {
		struct view_statement_row row;

		if (view_statement_from_pg(res, i, 2, &row, &err) < 0 ||
		    json_array_append_new(items,
					  view_statement_row_json(&row)) < 0)
			break;
		snprintf(next, sizeof(next), "%lld", row.version);
	}
	if (!items || i < n) {
		fail_rows(j, &err);
		goto out;
	}
	answer(j, checkpoint_of(res), list(items, more ? next : NULL));
	items = NULL;
out:
	json_decref(items);
	es_error_release(&err);
	PQclear(res);
}

/* ---- GET /owners/{owner}/accounts ---- */

static int parse_owner(struct route_job *j, struct es_error *err)
{
	const char *after = es_request_query(j->req, "after");

	j->text = strdup(es_request_param(j->req, "owner"));
	if (!j->text)
		return es_error_set(err, ES_EINTERNAL, "out of memory");
	if (after) {
		if (uuid_lower(after, j->id) < 0)
			return es_error_set(err, ES_EMALFORMED,
					    "malformed cursor '%.60s'", after);
		j->has_after = 1;
	}
	if (parse_limit(j, err) < 0)
		return -1;
	snprintf(j->canon, sizeof(j->canon), "limit=%ld&after=%s", j->limit,
		 j->has_after ? j->id : "");
	return 0;
}

static void run_owner(struct route_job *j, struct qry_worker *w)
{
	struct es_error err = ES_ERROR_INIT;
	const char *params[1] = { j->text };
	struct view_account *rows = NULL;
	json_t *all = NULL, *body = NULL, *items = NULL;
	PGresult *res = NULL;
	char *state_pos = NULL;
	const char *position;
	int i, n = 0, first = 0, taken = 0;

	/* an owner that cannot exist has no accounts */
	if (utf8_ok(j->text, 200)) {
		res = run_prepared(j, w, "qry_owner", 1, params);
		if (!res)
			return;
		position = checkpoint_of(res);
		n = data_rows(res, 1);
	} else {
		state_pos = qry_state_pos_token(j->ctx->st, j->def->view);
		position = state_pos ? state_pos : ES_CURSOR_START;
	}
	rows = calloc((size_t)n + 1, sizeof(*rows));
	items = json_array();
	if (!rows || !items)
		goto fail;
	for (i = 0; i < n; i++)
		if (view_account_from_pg(res, i, 1, &rows[i], &err) < 0)
			goto fail;
	/* the totals cover every account; the items are one page */
	all = view_owner_json(j->text, rows, (size_t)n, &err);
	if (!all)
		goto fail;
	if (j->has_after)
		while (first < n && strcmp(rows[first].id, j->id) <= 0)
			first++;
	for (i = first; i < n && taken < j->limit; i++, taken++)
		if (json_array_append_new(items, view_account_json(&rows[i])) <
		    0)
			goto fail;
	body = json_pack("{s:s, s:o, s:s?, s:O}", "owner", j->text, "items",
			 items, "next",
			 i < n && taken > 0 ? rows[i - 1].id : NULL, "totals",
			 json_object_get(all, "totals"));
	items = NULL;
	if (!body)
		goto fail;
	answer(j, position, body);
	goto out;
fail:
	fail_rows(j, &err);
out:
	json_decref(items);
	json_decref(all);
	free(rows);
	free(state_pos);
	PQclear(res);
	es_error_release(&err);
}

/* ---- GET /stats/daily ---- */

static int parse_daily(struct route_job *j, struct es_error *err)
{
	const char *from = es_request_query(j->req, "from");
	const char *to = es_request_query(j->req, "to");
	const char *after = es_request_query(j->req, "after");

	if (from && !date_ok(from))
		es_error_field(err, "from", "must be a date, YYYY-MM-DD");
	if (to && !date_ok(to))
		es_error_field(err, "to", "must be a date, YYYY-MM-DD");
	if (es_error_isset(err))
		return -1;
	if (from && to && strcmp(from, to) > 0)
		return es_error_field(err, "from", "must not be after 'to'");
	snprintf(j->from, sizeof(j->from), "%s", from ? from : "");
	snprintf(j->to, sizeof(j->to), "%s", to ? to : "");
	if (after) {
		/* "<day>.<currency>" */
		if (strlen(after) != 14 || after[10] != '.')
			return es_error_set(err, ES_EMALFORMED,
					    "malformed cursor '%.60s'", after);
		memcpy(j->after_day, after, 10);
		j->after_day[10] = '\0';
		memcpy(j->after_cur, after + 11, 4);
		if (!date_ok(j->after_day) || !currency_ok(j->after_cur))
			return es_error_set(err, ES_EMALFORMED,
					    "malformed cursor '%.60s'", after);
		j->has_after = 1;
	}
	if (parse_limit(j, err) < 0)
		return -1;
	snprintf(j->canon, sizeof(j->canon),
		 "from=%s&to=%s&limit=%ld&after=%s.%s", j->from, j->to,
		 j->limit, j->after_day, j->after_cur);
	return 0;
}

static void run_daily(struct route_job *j, struct qry_worker *w)
{
	struct es_error err = ES_ERROR_INIT;
	char lim[24], next[CURSOR_MAX];
	const char *params[5] = { j->from[0] ? j->from : NULL,
				  j->to[0] ? j->to : NULL,
				  j->has_after ? j->after_day : NULL,
				  j->has_after ? j->after_cur : NULL, lim };
	json_t *items = json_array();
	PGresult *res;
	int i, n, more;

	snprintf(lim, sizeof(lim), "%ld", j->limit + 1);
	res = run_prepared(j, w, "qry_daily", 5, params);
	if (!res) {
		json_decref(items);
		return;
	}
	n = data_rows(res, 1);
	more = n > j->limit;
	if (more)
		n = (int)j->limit;
	for (i = 0; i < n && items; i++) {
		struct view_daily_row row;

		if (view_daily_from_pg(res, i, 1, &row, &err) < 0 ||
		    json_array_append_new(items, view_daily_row_json(&row)) < 0)
			break;
		snprintf(next, sizeof(next), "%s.%s", row.day, row.currency);
	}
	if (!items || i < n) {
		fail_rows(j, &err);
		json_decref(items);
	} else {
		answer(j, checkpoint_of(res), list(items, more ? next : NULL));
	}
	es_error_release(&err);
	PQclear(res);
}

/* ---- GET /audit/large-transactions ---- */

static int parse_large(struct route_job *j, struct es_error *err)
{
	const char *min = es_request_query(j->req, "min_amount");
	const char *after = es_request_query(j->req, "after");

	if (!min)
		es_error_field(err, "min_amount", "is required");
	else if (parse_ll(min, &j->num) < 0 || j->num < 0)
		es_error_field(err, "min_amount",
			       "must be an integer of at least 0");
	if (parse_limit(j, err) < 0 || es_error_isset(err))
		return -1;
	if (after) {
		if (view_large_cursor_parse(after, &j->after_a, &j->after_b,
					    err) < 0)
			return -1;
		j->has_after = 1;
	}
	snprintf(j->canon, sizeof(j->canon),
		 "min_amount=%lld&limit=%ld&after=%lld.%lld", j->num, j->limit,
		 j->has_after ? j->after_a : -1,
		 j->has_after ? j->after_b : -1);
	return 0;
}

static void run_large(struct route_job *j, struct qry_worker *w)
{
	struct es_error err = ES_ERROR_INIT;
	char min[24], aa[24], ab[24], lim[24], next[VIEW_LARGE_CURSOR_MAX];
	const char *params[4] = { min, j->has_after ? aa : NULL,
				  j->has_after ? ab : NULL, lim };
	json_t *items = json_array();
	PGresult *res;
	int i, n, more;

	snprintf(min, sizeof(min), "%lld", j->num);
	snprintf(aa, sizeof(aa), "%lld", j->after_a);
	snprintf(ab, sizeof(ab), "%lld", j->after_b);
	snprintf(lim, sizeof(lim), "%ld", j->limit + 1);
	res = run_prepared(j, w, "qry_large", 4, params);
	if (!res) {
		json_decref(items);
		return;
	}
	n = data_rows(res, 1);
	more = n > j->limit;
	if (more)
		n = (int)j->limit;
	for (i = 0; i < n && items; i++) {
		struct view_statement_row row;

		if (view_statement_from_pg(res, i, 1, &row, &err) < 0 ||
		    json_array_append_new(items, view_large_row_json(&row)) < 0)
			break;
		view_large_cursor_format(row.amount, row.position, next,
					 sizeof(next));
	}
	if (!items || i < n) {
		fail_rows(j, &err);
		json_decref(items);
	} else {
		answer(j, checkpoint_of(res), list(items, more ? next : NULL));
	}
	es_error_release(&err);
	PQclear(res);
}

/* ---- the raw log: GET /streams/{stream_id} and GET /events ---- */

static int parse_stream(struct route_job *j, struct es_error *err)
{
	const char *from = es_request_query(j->req, "from_version");
	const char *after = es_request_query(j->req, "after");

	j->text = strdup(es_request_param(j->req, "stream_id"));
	if (!j->text)
		return es_error_set(err, ES_EINTERNAL, "out of memory");
	j->num = 1;
	if (from && after)
		return es_error_field(err, "after",
				      "give from_version or after, not both");
	if (from && (parse_ll(from, &j->num) < 0 || j->num < 0))
		return es_error_field(err, "from_version",
				      "must be an integer of at least 0");
	if (after) {
		if (parse_ll(after, &j->num) < 0 || j->num < 0)
			return es_error_set(err, ES_EMALFORMED,
					    "malformed cursor '%.60s'", after);
		j->num++;
	}
	if (parse_limit(j, err) < 0)
		return -1;
	snprintf(j->canon, sizeof(j->canon), "from_version=%lld&limit=%ld",
		 j->num, j->limit);
	return 0;
}

static void run_stream(struct route_job *j, struct qry_worker *w)
{
	struct es_error err = ES_ERROR_INIT;
	struct es_buf body = ES_BUF_INIT;
	PGresult *res = NULL;
	char *snapshot = NULL, next[24];
	long long version = 0, last = 0;
	size_t n = 0;
	bool more = false;
	PGconn *db;

	if (!utf8_ok(j->text, ES_STREAM_ID_MAX)) {
		es_error_set(&err, ES_ENOTFOUND, "stream does not exist");
		goto fail;
	}
	db = qry_worker_db(w, QRY_DB_WRITE, &err);
	if (!db)
		goto fail;
	/* the rows and the snapshot they were read in */
	if (es_db_exec(db, SQL_SNAPSHOT_BEGIN, &err) < 0)
		goto fail;
	res = PQexec(db, "SELECT pg_current_snapshot()::text");
	if (PQresultStatus(res) != PGRES_TUPLES_OK || PQntuples(res) != 1) {
		es_db_error(db, res, &err);
		goto fail;
	}
	snapshot = strdup(PQgetvalue(res, 0, 0));
	es_buf_adds(&body, "{\"items\":[");
	if (!snapshot ||
	    es_read_stream_json(db, j->text, j->num, (size_t)j->limit, &body,
				&n, &last, &more, &err) < 0 ||
	    (n == 0 && es_stream_version(db, j->text, &version, &err) < 0) ||
	    es_db_exec(db, "COMMIT", &err) < 0)
		goto fail;
	if (n == 0 && version == 0) {
		add_position(j->req, snapshot);
		es_error_set(&err, ES_ENOTFOUND,
			     "stream '%.100s' does not exist", j->text);
		goto fail;
	}
	snprintf(next, sizeof(next), "%lld", last);
	answer_list(j, snapshot, &body, more ? next : NULL);
	goto out;
fail:
	if (!es_error_isset(&err))
		es_error_set(&err, ES_EINTERNAL, "out of memory");
	es_http_send_problem(j->req, &err);
out:
	es_buf_release(&body);
	free(snapshot);
	PQclear(res);
	es_error_release(&err);
}

static int parse_events(struct route_job *j, struct es_error *err)
{
	const char *after = es_request_query(j->req, "after");

	if (after && es_cursor_parse(after, &j->after_cursor, err) < 0)
		return -1;
	if (parse_limit(j, err) < 0)
		return -1;
	snprintf(j->canon, sizeof(j->canon), "limit=%ld", j->limit);
	return 0;
}

static void run_events(struct route_job *j, struct qry_worker *w)
{
	struct es_error err = ES_ERROR_INIT;
	struct es_buf body = ES_BUF_INIT;
	struct es_cursor next;
	char *token = NULL;
	size_t n = 0;
	PGconn *db;

	es_cursor_init(&next);
	es_buf_adds(&body, "{\"items\":[");
	db = qry_worker_db(w, QRY_DB_WRITE, &err);
	if (!db || es_read_forward_json(db, &j->after_cursor, (size_t)j->limit,
					&body, &n, &next, &err) < 0)
		goto fail;
	token = es_cursor_format(&next);
	if (!token) {
		es_error_set(&err, ES_EINTERNAL, "out of memory");
		goto fail;
	}
	answer_list(j, token, &body, token);
	goto out;
fail:
	es_http_send_problem(j->req, &err);
out:
	es_buf_release(&body);
	free(token);
	es_cursor_release(&next);
	es_error_release(&err);
}

/* ---- GET /status ---- */

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

/* A copy of one view's status, taken under st->lock. */
struct view_snap {
	struct qry_view_status s; /* pos deep-copied */
	char *token;
	long long lag_events, lag_ms;
	int lag_known;
};

/* Copy every view's status; `db` (may be NULL) for the lags. */
static struct view_snap *snap_views(struct qry_state *st, PGconn *db, size_t *n,
				    int *leader, long long *epoch)
{
	struct view_snap *v = calloc(QRY_VIEW_MAX, sizeof(*v));
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

static void free_snaps(struct view_snap *v, size_t n)
{
	size_t i;

	for (i = 0; v && i < n; i++) {
		es_cursor_release(&v[i].s.pos);
		free(v[i].token);
	}
	free(v);
}

static json_t *view_status_json(const struct view_snap *v)
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
	json_object_set_new(o, "lag_events",
			    v->lag_known ? json_integer(v->lag_events)
					 : json_null());
	json_object_set_new(o, "lag_ms",
			    v->lag_known ? json_integer(v->lag_ms)
					 : json_null());
	return o;
}

/* The backends of the event store holding a transaction id. */
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
				     "state",
				     PQgetisnull(res, i, 3)
					     ? NULL
					     : PQgetvalue(res, i, 3),
				     "query",
				     PQgetisnull(res, i, 4)
					     ? NULL
					     : PQgetvalue(res, i, 4)));
	PQclear(res);
	return a;
}

static void run_status(struct route_job *j, struct qry_worker *w)
{
	struct es_error err = ES_ERROR_INIT;
	PGconn *db = qry_worker_db(w, QRY_DB_WRITE, &err);
	struct view_snap *v;
	json_t *body, *views, *pending = NULL;
	long long epoch;
	size_t n = 0, i;
	int leader;

	v = snap_views(j->ctx->st, db, &n, &leader, &epoch);
	if (db && !es_db_broken(db))
		pending = pending_json(db, &err);
	body = json_pack(
		"{s:s, s:I, s:[], s:n, s:o?, s:I, s:I}", "role",
		leader ? "leader" : "follower", "epoch", (json_int_t)epoch,
		"views", "memory", "pending_transactions", pending,
		"waiting_requests", (json_int_t)qry_state_waiting(j->ctx->st),
		"memory_accounts", (json_int_t)qry_memory_count(j->ctx->mem));
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
	free_snaps(v, n);
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

/* ---- GET /metrics ---- */

static void run_metrics(struct route_job *j, struct qry_worker *w)
{
	struct es_error err = ES_ERROR_INIT;
	PGconn *db = qry_worker_db(w, QRY_DB_WRITE, &err);
	struct es_http *h = atomic_load(&j->ctx->http);
	struct view_snap *v;
	char *text = NULL;
	size_t len = 0, n = 0, i;
	long long epoch;
	long queued = 0, busy = 0;
	int leader, rc = 0;
	FILE *out;

	es_error_release(&err);
	v = snap_views(j->ctx->st, db, &n, &leader, &epoch);
	out = open_memstream(&text, &len);
	if (!out || !v) {
		if (out)
			fclose(out);
		free(text);
		free_snaps(v, n);
		es_error_set(&err, ES_EINTERNAL, "cannot write the metrics");
		es_http_send_problem(j->req, &err);
		return;
	}
	if (h)
		rc = es_http_metrics_write(h, out);
	fprintf(out, "# HELP tandem_events_projected_total Events applied to "
		     "each view.\n# TYPE tandem_events_projected_total "
		     "counter\n");
	for (i = 0; i < n; i++)
		fprintf(out,
			"tandem_events_projected_total{view=\"%s\"} %lld\n",
			v[i].s.name, v[i].s.applied);
	fprintf(out, "# HELP tandem_projection_apply_seconds Time spent "
		     "applying batches to each view.\n# TYPE "
		     "tandem_projection_apply_seconds summary\n");
	for (i = 0; i < n; i++)
		fprintf(out,
			"tandem_projection_apply_seconds_sum{view=\"%s\"} %.6f\n"
			"tandem_projection_apply_seconds_count{view=\"%s\"} %lld\n",
			v[i].s.name, v[i].s.apply_seconds, v[i].s.name,
			v[i].s.batches);
	fprintf(out, "# HELP tandem_projection_lag_events Committed events "
		     "a view has not applied yet.\n# TYPE "
		     "tandem_projection_lag_events gauge\n");
	for (i = 0; i < n; i++)
		if (v[i].lag_known)
			fprintf(out,
				"tandem_projection_lag_events{view=\"%s\"} %lld\n",
				v[i].s.name, v[i].lag_events);
	fprintf(out, "# HELP tandem_projection_lag_seconds Age of the oldest "
		     "event a view has not applied yet.\n# TYPE "
		     "tandem_projection_lag_seconds gauge\n");
	for (i = 0; i < n; i++)
		if (v[i].lag_known)
			fprintf(out,
				"tandem_projection_lag_seconds{view=\"%s\"} %.3f\n",
				v[i].s.name, (double)v[i].lag_ms / 1e3);
	fprintf(out,
		"# HELP tandem_projection_stopped Whether a malformed "
		"event stopped the view.\n# TYPE tandem_projection_stopped "
		"gauge\n");
	for (i = 0; i < n; i++)
		fprintf(out, "tandem_projection_stopped{view=\"%s\"} %d\n",
			v[i].s.name, v[i].s.stopped ? 1 : 0);
	qry_readpool_stats(j->ctx->pool, &queued, &busy);
	fprintf(out,
		"# HELP tandem_waiting_requests Read-your-writes requests "
		"waiting for a view.\n# TYPE tandem_waiting_requests gauge\n"
		"tandem_waiting_requests %ld\n"
		"# HELP tandem_leader Whether this process projects the views.\n"
		"# TYPE tandem_leader gauge\ntandem_leader %d\n"
		"# HELP tandem_leader_epoch The fencing epoch while leader.\n"
		"# TYPE tandem_leader_epoch gauge\ntandem_leader_epoch %lld\n"
		"# HELP tandem_memory_accounts Accounts in the in-memory view.\n"
		"# TYPE tandem_memory_accounts gauge\ntandem_memory_accounts %zu\n"
		"# HELP tandem_read_queue Database reads waiting for a worker.\n"
		"# TYPE tandem_read_queue gauge\ntandem_read_queue %ld\n"
		"# HELP tandem_read_busy Read workers running a query.\n"
		"# TYPE tandem_read_busy gauge\ntandem_read_busy %ld\n",
		qry_state_waiting(j->ctx->st), leader ? 1 : 0,
		leader ? epoch : 0, qry_memory_count(j->ctx->mem), queued,
		busy);
	free_snaps(v, n);
	if (fclose(out) != 0 || rc < 0) {
		es_error_set(&err, ES_EINTERNAL, "cannot write the metrics");
		es_http_send_problem(j->req, &err);
	} else {
		es_http_send_text(j->req, 200, METRICS_TYPE, text, len);
	}
	free(text);
}

/* ---- GET /ready ---- */

static void run_ready(struct route_job *j, struct qry_worker *w)
{
	struct es_error err = ES_ERROR_INIT;
	PGconn *wdb = qry_worker_conn(w, QRY_DB_WRITE, &err);
	PGconn *rdb = wdb ? qry_worker_conn(w, QRY_DB_READ, &err) : NULL;

	if (!wdb || !rdb || es_db_check_ready(wdb, &err) < 0 ||
	    es_db_check_ready(rdb, &err) < 0) {
		if (err.code != ES_EUNAVAIL) {
			es_error_release(&err);
			es_error_set(&err, ES_EUNAVAIL, "database not ready");
		}
		es_http_send_problem(j->req, &err);
	} else {
		es_http_send_json(j->req, 200,
				  json_pack("{s:s}", "status", "ready"));
	}
	es_error_release(&err);
}

/* ---- the table ---- */

static const struct route_def def_statement = { "statement", 1, parse_statement,
						run_statement };
static const struct route_def def_owner = { "accounts", 1, parse_owner,
					    run_owner };
static const struct route_def def_daily = { "daily", 1, parse_daily,
					    run_daily };
static const struct route_def def_large = { "statement", 1, parse_large,
					    run_large };
static const struct route_def def_stream = { NULL, 1, parse_stream,
					     run_stream };
static const struct route_def def_events = { NULL, 1, parse_events,
					     run_events };
static const struct route_def def_status = { NULL, 0, NULL, run_status };
static const struct route_def def_metrics = { NULL, 0, NULL, run_metrics };
static const struct route_def def_ready = { NULL, 0, NULL, run_ready };

static void get_statement(struct es_request *req)
{
	db_route(req, &def_statement);
}

static void get_owner(struct es_request *req)
{
	db_route(req, &def_owner);
}

static void get_daily(struct es_request *req)
{
	db_route(req, &def_daily);
}

static void get_large(struct es_request *req)
{
	db_route(req, &def_large);
}

static void get_stream(struct es_request *req)
{
	db_route(req, &def_stream);
}

static void get_events(struct es_request *req)
{
	db_route(req, &def_events);
}

static void get_status(struct es_request *req)
{
	db_route(req, &def_status);
}

static void get_metrics(struct es_request *req)
{
	db_route(req, &def_metrics);
}

static void get_ready(struct es_request *req)
{
	db_route(req, &def_ready);
}

const struct es_route qry_routes[] = {
	{ "GET", "/health", es_probe_health, 0, NULL },
	{ "GET", "/ready", get_ready, 0, NULL },
	{ "GET", "/metrics", get_metrics, 0, NULL },
	{ "GET", "/status", get_status, 0, NULL },
	{ "GET", "/accounts/{id}", get_account, 0, NULL },
	{ "GET", "/accounts/{id}/transactions", get_statement, 0, NULL },
	{ "GET", "/owners/{owner}/accounts", get_owner, 0, NULL },
	{ "GET", "/stats/daily", get_daily, 0, NULL },
	{ "GET", "/audit/large-transactions", get_large, 0, NULL },
	{ "GET", "/streams/{stream_id}", get_stream, 0, NULL },
	{ "GET", "/events", get_events, 0, NULL },
};

const size_t qry_nroutes = ARRAY_SIZE(qry_routes);

int qry_routes_prepare(PGconn *db, enum qry_db which, struct es_error *err)
{
	static const struct {
		enum qry_db db;
		const char *name, *sql;
	} stmts[] = {
		{ QRY_DB_READ, "qry_statement", SQL_STATEMENT },
		{ QRY_DB_READ, "qry_owner", SQL_OWNER },
		{ QRY_DB_READ, "qry_daily", SQL_DAILY },
		{ QRY_DB_READ, "qry_large", SQL_LARGE },
		{ QRY_DB_WRITE, "qry_lag", SQL_LAG },
		{ QRY_DB_WRITE, "qry_pending", SQL_PENDING },
	};
	size_t i;

	for (i = 0; i < ARRAY_SIZE(stmts); i++) {
		PGresult *res;

		if (stmts[i].db != which)
			continue;
		res = PQprepare(db, stmts[i].name, stmts[i].sql, 0, NULL);
		if (PQresultStatus(res) != PGRES_COMMAND_OK) {
			es_db_error(db, res, err);
			PQclear(res);
			return -1;
		}
		PQclear(res);
	}
	return 0;
}
