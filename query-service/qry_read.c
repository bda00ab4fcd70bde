/*
 * qry_read.c - the pipeline of the database-backed GET routes: parse,
 * maybe wait, run on a read worker; and the helpers a view's read code
 * answers with.
 *
 * The handler thread owns a request it suspended only in the rare cases
 * where it cannot hand it over (the view passed the token between the
 * check and the park, or the pool refused the job); it then answers and
 * resumes it itself, which es_http allows from any thread.
 */
#include "qry_read.h"

#include <ctype.h>
#include <inttypes.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "es_db.h"
#include "es_hash.h"
#include "es_read.h"
#include "es_token.h"
#include "es_utf8.h"

#define WAIT_DEFAULT 2000
#define WAIT_MAX     10000

/* ---- small helpers ---- */

/* A decimal integer, optional '-', no spaces, no overflow. */
int qry_parse_ll(const char *s, long long *out)
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

int qry_utf8_ok(const char *s, size_t max)
{
	long n = es_utf8_chars(s, strlen(s), NULL);

	return n >= 1 && (size_t)n <= max;
}

/* "YYYY-MM-DD", a real date. */
int qry_date_ok(const char *s)
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

int qry_currency_ok(const char *s)
{
	return strlen(s) == 3 && isupper((unsigned char)s[0]) &&
	       isupper((unsigned char)s[1]) && isupper((unsigned char)s[2]);
}

const char *qry_read_holder(const struct es_request *req)
{
	const struct es_principal *p = req->principal;

	if (!p || p->roles & (ES_ROLE_MANAGER | ES_ROLE_AUDITOR))
		return NULL;
	return p->sub;
}

int qry_read_limit(struct qry_read *r, long *limit, struct es_error *err)
{
	const char *s = es_request_query(r->req, "limit");
	long long v;

	*limit = QRY_LIMIT_DEFAULT;
	if (!s)
		return 0;
	if (qry_parse_ll(s, &v) < 0 || v < 1 || v > QRY_LIMIT_MAX)
		return es_error_field(err, "limit",
				      "must be an integer in [1, %d]",
				      QRY_LIMIT_MAX);
	*limit = (long)v;
	return 0;
}

/* Whether If-None-Match lists `etag` (weak comparison) or is "*". */
int qry_etag_matches(const char *inm, const char *etag)
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

int qry_read_done(const struct qry_read *r, PGconn *db,
		  struct es_snapshot *done)
{
	uint64_t replayed;

	return qry_state_log_standby(r->ctx->st) &&
	       es_replay_lsn(db, &replayed) > 0 &&
	       qry_state_take_done(r->ctx->st, replayed, done);
}

int qry_read_check_covers(const struct qry_read *r, const char *position,
			  struct es_error *err)
{
	int c;

	if (!r->min_token)
		return 0;
	c = es_token_covers(position, r->min_token, err);
	if (c < 0)
		return -1;
	if (c)
		return 0;
	err->retry_after = 1;
	return es_error_set(err, ES_EUNAVAIL,
			    "the log read has not reached position '%.60s'",
			    r->min_token);
}

void qry_read_add_position(struct es_request *req, const char *pos)
{
	if (pos)
		es_http_add_header(req, "X-Position", pos);
}

/* X-Position of view `view` as qry_state knows it. */
void qry_read_add_view_position(struct es_request *req, struct qry_ctx *ctx,
				const char *view)
{
	char *pos = view ? qry_state_pos_token(ctx->st, view) : NULL;

	qry_read_add_position(req, pos);
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
void qry_read_answer_text(struct qry_read *j, const char *position, char *text,
			  size_t len)
{
	char etag[40];
	uint64_t h;

	qry_read_add_position(j->req, position);
	h = es_hash_add(ES_HASH_INIT, j->req->path);
	h = es_hash_add(h, "?");
	h = es_hash_add(h, j->canon);
	h = es_hash_add(h, "\n");
	h = hash_bytes(h, text, len);
	snprintf(etag, sizeof(etag), "W/\"%016" PRIx64 "\"", h);
	es_http_add_header(j->req, "ETag", etag);
	/* a 304 sends only the length of the 200's body */
	es_http_send_buffer(
		j->req,
		qry_etag_matches(es_request_header(j->req, "If-None-Match"),
				 etag)
			? 304
			: 200,
		"application/json", text, len);
}

/*
 * qry_read_answer_text() of `body`, a list whose items are written and which
 * ends with `next` (or null); `body` is emptied.
 */
void qry_read_answer_list(struct qry_read *j, const char *position,
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
		qry_read_add_position(j->req, position);
		es_error_set(&err, ES_EINTERNAL, "out of memory");
		es_http_send_problem(j->req, &err);
		return;
	}
	qry_read_answer_text(j, position, text, len);
}

/* ---- jobs ---- */

static void job_free(struct qry_read *j)
{
	if (j->def->release)
		j->def->release(j->params);
	free(j->min_token);
	free(j->served);
	free(j->early_pos);
	free(j->early_base);
	free(j);
}

/*
 * The view whose position a read-your-writes request waits for: its
 * own, or for the raw log the in-memory view's, which the log reader
 * moves with every read of the log (a reader at a position has seen the
 * log up to it).
 */
static const char *wait_view(const struct qry_read_def *def)
{
	return def->view ? def->view : QRY_MEMORY_VIEW;
}

/*
 * Answer `err` with the view's position (the log reader's for the raw
 * log), resume, free.
 */
static void job_fail(struct qry_read *j, const struct es_error *err)
{
	if (j->def->view || j->def->ryw)
		qry_read_add_view_position(j->req, j->ctx, wait_view(j->def));
	es_http_send_problem(j->req, err);
	es_http_resume(j->req);
	job_free(j);
}

static void job_run(struct qry_job *base, struct qry_worker *w)
{
	struct qry_read *j = (struct qry_read *)base;

	if (j->min_token && j->def->view)
		qry_state_served_pair(j->ctx->st, j->def->view, &j->early_pos,
				      &j->early_base);
	j->def->run(j, j->params, w);
	es_http_resume(j->req);
	job_free(j);
}

static void job_reject(struct qry_job *base, const struct es_error *err)
{
	job_fail((struct qry_read *)base, err);
}

static void job_submit(struct qry_read *j)
{
	struct es_error err = ES_ERROR_INIT;

	j->base.run = job_run;
	j->base.reject = job_reject;
	if (qry_readpool_submit(j->ctx->pool, &j->base, &err) < 0)
		job_fail(j, &err);
	es_error_release(&err);
}

/* 503 for a token the view did not reach in time. */
static void fail_timeout(struct qry_read *j, const char *view)
{
	struct es_error err = ES_ERROR_INIT;

	err.retry_after = 1;
	es_error_set(
		&err, ES_EUNAVAIL,
		"the '%s' view has not reached position '%.60s' within %ld ms",
		view, j->min_token, j->wait_ms);
	job_fail(j, &err);
}

static void fail_cancelled(struct qry_read *j)
{
	struct es_error err = ES_ERROR_INIT;

	es_error_set(&err, ES_EUNAVAIL, "the service is shutting down");
	job_fail(j, &err);
}

static void job_waited(struct qry_waiter *w, enum qry_wait_result r)
{
	struct qry_read *j = w->arg;

	if (r == QRY_WAIT_COVERED)
		job_submit(j);
	else if (r == QRY_WAIT_TIMEOUT)
		fail_timeout(j, wait_view(j->def));
	else
		fail_cancelled(j);
}

/*
 * X-Min-Position (or ?min_position=) and X-Wait-Ms. 400 for a wait that
 * is not an integer in [0, 10000]; the token is checked by the caller.
 */
int qry_read_parse_wait(struct es_request *req, const char **token, long *ms,
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
	if (qry_parse_ll(s, &v) < 0 || v < 0 || v > WAIT_MAX)
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
void qry_read_route(struct es_request *req)
{
	qry_read_start(req, req->arg, 0);
}

void qry_read_start(struct es_request *req, const struct qry_read_def *def,
		    int suspended)
{
	struct qry_ctx *ctx = req->ctx;
	struct es_error err = ES_ERROR_INIT;
	struct qry_read *j = calloc(1, sizeof(*j) + def->size);
	const char *token = NULL;
	int covered = 1, r;

	if (!j) {
		es_error_set(&err, ES_EINTERNAL, "out of memory");
		es_http_send_problem(req, &err);
		if (suspended)
			es_http_resume(req);
		return;
	}
	j->req = req;
	j->ctx = ctx;
	j->def = def;
	j->params = j + 1;
	if (def->ryw) {
		if (qry_read_parse_wait(req, &token, &j->wait_ms, &err) < 0)
			goto fail;
		/*
		 * A copy: the request's own memory is gone once the shutdown
		 * answers it, while the timer or a worker may still read it.
		 */
		if (token && !(j->min_token = strdup(token))) {
			es_error_set(&err, ES_EINTERNAL, "out of memory");
			goto fail;
		}
		if (j->min_token)
			covered = qry_state_covers(ctx->st, wait_view(def),
						   j->min_token, &err);
		if (covered < 0)
			goto fail;
	}
	if (def->parse && def->parse(j, j->params, &err) < 0)
		goto fail;
	if (!suspended)
		es_http_suspend(req);
	if (!covered) {
		j->wait.deadline_ms = qry_state_clock_ms() + j->wait_ms;
		j->wait.done = job_waited;
		j->wait.arg = j;
		r = qry_state_park(ctx->st, wait_view(def), j->min_token,
				   &j->wait, &err);
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
		qry_read_add_view_position(req, ctx, def->view);
	es_http_send_problem(req, &err);
	es_error_release(&err);
	job_free(j);
	if (suspended)
		es_http_resume(req);
}

/* ---- database helpers for the workers ---- */

/*
 * Reads a deadlock or a serialization failure may end (the reader's lock
 * on a view table against a rebuild's swap of it): a read changes
 * nothing, so it runs again, after a pause that grows, before the client
 * hears of it.
 */
#define READ_RETRIES 4

/* Run prepared `name`; NULL and the error answered on failure. */
PGresult *qry_read_prepared(struct qry_read *j, struct qry_worker *w,
			    const char *name, int n, const char *const *params)
{
	struct es_error err = ES_ERROR_INIT;
	PGconn *db = qry_worker_db(w, QRY_DB_READ, &err);
	PGresult *res;
	int attempt;

	if (!db)
		goto fail;
	for (attempt = 0;; attempt++) {
		res = PQexecPrepared(db, name, n, params, NULL, NULL, 0);
		if (PQresultStatus(res) == PGRES_TUPLES_OK)
			return res;
		if (attempt >= READ_RETRIES ||
		    es_db_fail_of(res) != ES_DB_FAIL_RACE ||
		    PQtransactionStatus(db) != PQTRANS_IDLE)
			break;
		PQclear(res);
		usleep((useconds_t)(5000 << attempt));
	}
	es_db_error(db, res, &err);
	PQclear(res);
fail:
	qry_read_add_view_position(j->req, j->ctx, j->def->view);
	es_http_send_problem(j->req, &err);
	es_error_release(&err);
	return NULL;
}

/* Answer an internal error found while reading rows. */
void qry_read_fail(struct qry_read *j, struct es_error *err)
{
	if (!es_error_isset(err))
		es_error_set(err, ES_EINTERNAL, "out of memory");
	qry_read_add_view_position(j->req, j->ctx, j->def->view);
	es_http_send_problem(j->req, err);
	es_error_release(err);
}

/* The checkpoint column (0) of `res`, "0:0:" without one. */
const char *qry_read_checkpoint(const PGresult *res)
{
	if (PQntuples(res) < 1 || PQgetisnull(res, 0, 0))
		return ES_CURSOR_START;
	return PQgetvalue(res, 0, 0);
}

const char *qry_read_position(struct qry_read *r, const PGresult *res)
{
	const char *stored = qry_read_checkpoint(res);

	if (r->early_base && strcmp(r->early_base, stored) == 0)
		return r->early_pos;
	free(r->served);
	r->served = r->def->view ? qry_state_served_token(r->ctx->st,
							  r->def->view, stored)
				 : NULL;
	return r->served ? r->served : stored;
}

/* Rows of `res` that hold a view row (column `col` not NULL). */
int qry_read_rows(const PGresult *res, int col)
{
	int n = PQntuples(res);

	return n == 1 && PQgetisnull(res, 0, col) ? 0 : n;
}

int qry_read_prepare(PGconn *db, enum qry_db which,
		     const struct qry_read_def *const *defs,
		     struct es_error *err)
{
	const struct qry_read_stmt *st;
	size_t i;

	for (i = 0; defs[i]; i++) {
		for (st = defs[i]->stmts; st && st->name; st++) {
			PGresult *res;

			if (st->db != which)
				continue;
			res = PQprepare(db, st->name, st->sql, 0, NULL);
			if (PQresultStatus(res) != PGRES_COMMAND_OK) {
				es_db_error(db, res, err);
				PQclear(res);
				return -1;
			}
			PQclear(res);
		}
	}
	return 0;
}

int qry_read_add_json(struct es_buf *out, json_t *v, struct es_error *err)
{
	char *text = v ? json_dumps(v, JSON_COMPACT) : NULL;

	json_decref(v);
	if (!text)
		return es_error_set(err, ES_EINTERNAL, "out of memory");
	es_buf_adds(out, text);
	free(text);
	return 0;
}

void qry_read_page(struct qry_read *r, const PGresult *res, int col, long limit,
		   qry_read_item_fn *item)
{
	struct es_error err = ES_ERROR_INIT;
	struct es_buf body = ES_BUF_INIT;
	char next[QRY_CURSOR_MAX] = "";
	int i, n = qry_read_rows(res, col), more = n > limit;

	if (more)
		n = (int)limit;
	es_buf_adds(&body, "{\"items\":[");
	for (i = 0; i < n; i++) {
		if (i)
			es_buf_adds(&body, ",");
		if (item(res, i, col, next, &body, &err) < 0)
			break;
	}
	if (i < n || es_buf_check(&body, &err) < 0)
		qry_read_fail(r, &err);
	else
		qry_read_answer_list(r, qry_read_position(r, res), &body,
				     more ? next : NULL);
	es_buf_release(&body);
	es_error_release(&err);
}
