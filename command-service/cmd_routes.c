/*
 * cmd_routes.c - the command service's route table, and the pipeline its
 * routes share: request metadata, the hand-over to a pool worker,
 * Idempotency-Key lookups and storage, retries, and the answer.
 */
#include "cmd_routes.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "account_repo.h"
#include "cmd_accounts.h"
#include "cmd_metrics.h"
#include "cmd_notify.h"
#include "cmd_parse.h"
#include "cmd_streams.h"
#include "es_db.h"
#include "es_http.h"
#include "es_json.h"
#include "es_log.h"
#include "es_uuid.h"

#define ARRAY_SIZE(a) (sizeof(a) / sizeof(*(a)))

const struct es_route cmd_routes[] = {
	{ "POST", "/accounts", cmd_post_open, ES_ROUTE_JSON },
	{ "POST", "/accounts/{id}/deposits", cmd_post_deposit, ES_ROUTE_JSON },
	{ "POST", "/accounts/{id}/withdrawals", cmd_post_withdraw,
	  ES_ROUTE_JSON },
	{ "POST", "/accounts/{id}/close", cmd_post_close, ES_ROUTE_JSON },
	{ "POST", "/transfers", cmd_post_transfer, ES_ROUTE_JSON },
	{ "POST", "/streams/{stream_id}/events", cmd_post_stream_events,
	  ES_ROUTE_JSON },
};
const size_t cmd_nroutes = ARRAY_SIZE(cmd_routes);

/*
 * The stored answer of an Idempotency-Key, and this request's
 * fingerprint: sha256 of "<method> <path>\n<body>" ($2, bytea).
 */
#define SQL_IDEM_GET                                                        \
	"SELECT encode(sha256($2::bytea), 'hex'), k.fingerprint, k.status," \
	" k.response::text, k.headers::text"                                \
	" FROM (SELECT 1) one LEFT JOIN idempotency_keys k ON k.key = $1"

/*
 * Store an answer; no row back when the key is there already. A
 * concurrent request inserting the same key waits here until the first
 * one's transaction ends.
 */
#define SQL_IDEM_PUT                                                        \
	"INSERT INTO idempotency_keys (key, fingerprint, status, response," \
	" headers) VALUES ($1, $2, $3::int, $4::jsonb, $5::jsonb)"          \
	" ON CONFLICT (key) DO NOTHING RETURNING 1"

/* Attempts after which a retry first waits a little. */
#define BACKOFF_AFTER 3

/* ---- the context ---- */

int cmd_ctx_init(struct cmd_ctx *ctx, struct es_error *err)
{
	if (ctx->retries <= 0)
		ctx->retries = CMD_RETRIES_DEFAULT;
	if (ctx->cache_max <= 0)
		ctx->cache_max = CMD_CACHE_DEFAULT;
	ctx->repo = account_repo_new((size_t)ctx->cache_max);
	if (!ctx->repo)
		return es_error_set(err, ES_EINTERNAL, "out of memory");
	return 0;
}

void cmd_ctx_release(struct cmd_ctx *ctx)
{
	account_repo_free(ctx->repo);
	ctx->repo = NULL;
}

static int prepare(PGconn *db, const char *name, const char *sql, int n,
		   const Oid *types, struct es_error *err)
{
	PGresult *res = PQprepare(db, name, sql, n, types);
	int ret = 0;

	if (PQresultStatus(res) != PGRES_COMMAND_OK)
		ret = es_db_error(db, res, err);
	PQclear(res);
	return ret;
}

int cmd_prepare(PGconn *db, void *arg, struct es_error *err)
{
	static const Oid get_types[] = { 25 /* text */, 17 /* bytea */ };

	(void)arg;
	if (account_repo_prepare(db, err) < 0 ||
	    prepare(db, "cmd_idem_get", SQL_IDEM_GET, 2, get_types, err) < 0 ||
	    prepare(db, "cmd_idem_put", SQL_IDEM_PUT, 0, NULL, err) < 0)
		return -1;
	return 0;
}

/* ---- request metadata ---- */

/* 1 to `max` characters of printable ASCII without spaces. */
static int printable_id(const char *s, size_t max)
{
	size_t n;

	if (!s)
		return 0;
	for (n = 0; s[n]; n++)
		if (n == max || s[n] < 0x21 || s[n] > 0x7e)
			return 0;
	return n > 0;
}

static int lower_hex(const char *s, size_t n)
{
	size_t i;
	int nonzero = 0;

	for (i = 0; i < n; i++) {
		if (!((s[i] >= '0' && s[i] <= '9') ||
		      (s[i] >= 'a' && s[i] <= 'f')))
			return -1;
		nonzero |= s[i] != '0';
	}
	return nonzero;
}

/*
 * W3C trace context, version 00:
 * ^00-[0-9a-f]{32}-[0-9a-f]{16}-[0-9a-f]{2}$, trace and parent ids not
 * all zero.
 */
static int valid_traceparent(const char *s)
{
	return s && strlen(s) == 55 && s[0] == '0' && s[1] == '0' &&
	       s[2] == '-' && s[35] == '-' && s[52] == '-' &&
	       lower_hex(s + 3, 32) == 1 && lower_hex(s + 36, 16) == 1 &&
	       lower_hex(s + 53, 2) >= 0;
}

static void request_free(struct cmd_request *cr)
{
	if (!cr)
		return;
	if (cr->release)
		cr->release(cr);
	json_decref(cr->metadata);
	json_decref(cr->body);
	json_decref(cr->headers);
	json_decref(cr->pending);
	free(cr);
}

struct cmd_request *
cmd_request_new(struct es_request *req, size_t size, const char *command,
		void (*run)(struct cmd_request *cr, PGconn *db))
{
	struct cmd_ctx *ctx = req->ctx;
	struct es_error err = ES_ERROR_INIT;
	struct cmd_request *cr;
	const char *s;

	cr = calloc(1, size < sizeof(*cr) ? sizeof(*cr) : size);
	if (!cr) {
		es_error_set(&err, ES_EINTERNAL, "out of memory");
		cmd_request_fail(req, NULL, &err);
		return NULL;
	}
	cr->req = req;
	cr->ctx = ctx;
	cr->command = command;
	cr->run = run;
	cr->if_match = -1;
	es_uuid_v4(cr->command_id);
	s = es_request_header(req, "X-Correlation-Id");
	snprintf(cr->correlation_id, sizeof(cr->correlation_id), "%s",
		 printable_id(s, CMD_ID_MAX) ? s : cr->command_id);
	es_http_add_header(req, "X-Correlation-Id", cr->correlation_id);
	s = es_request_header(req, "X-Causation-Id");
	cr->metadata =
		json_pack("{s:s, s:s, s:s}", "command_id", cr->command_id,
			  "correlation_id", cr->correlation_id, "causation_id",
			  printable_id(s, CMD_ID_MAX) ? s : cr->command_id);
	cr->headers = json_object();
	cr->pending = json_array();
	if (!cr->metadata || !cr->headers || !cr->pending) {
		es_error_set(&err, ES_EINTERNAL, "out of memory");
		goto fail;
	}
	s = es_request_header(req, "X-Principal");
	if (printable_id(s, CMD_ID_MAX))
		json_object_set_new(cr->metadata, "principal", json_string(s));
	s = es_request_header(req, "traceparent");
	if (valid_traceparent(s))
		json_object_set_new(cr->metadata, "traceparent",
				    json_string(s));
	s = es_request_header(req, "Idempotency-Key");
	if (s) {
		if (!printable_id(s, CMD_KEY_MAX)) {
			es_error_set(
				&err, ES_EMALFORMED,
				"Idempotency-Key must be 1 to %d characters of printable ASCII without spaces",
				CMD_KEY_MAX);
			goto fail;
		}
		snprintf(cr->key, sizeof(cr->key), "%s", s);
	}
	if (cmd_parse_if_match(es_request_header(req, "If-Match"),
			       &cr->if_match, &err) < 0)
		goto fail;
	if (!ctx || !ctx->repo || !ctx->pool) {
		es_error_set(&err, ES_EINTERNAL,
			     "the command pipeline is not set up");
		goto fail;
	}
	return cr;
fail:
	cmd_request_fail(req, cr, &err);
	es_error_release(&err);
	return NULL;
}

void cmd_request_fail(struct es_request *req, struct cmd_request *cr,
		      const struct es_error *err)
{
	es_http_send_problem(req, err);
	cmd_metrics_command(cr ? cr->command : "other",
			    es_error_status(err->code));
	request_free(cr);
}

int cmd_add_metadata(struct cmd_request *cr, json_t *events,
		     struct es_error *err)
{
	json_t *ev, *meta;
	size_t i;

	json_array_foreach(events, i, ev)
	{
		meta = json_object_get(ev, "metadata");
		if (!json_is_object(meta)) {
			meta = json_object();
			if (!meta || json_object_set_new(ev, "metadata", meta))
				return es_error_set(err, ES_EINTERNAL,
						    "out of memory");
		}
		/* ours win over a client's keys of the same name */
		if (json_object_update(meta, cr->metadata) < 0)
			return es_error_set(err, ES_EINTERNAL, "out of memory");
	}
	return 0;
}

/* ---- answers ---- */

void cmd_reply(struct cmd_request *cr, unsigned int status, json_t *body)
{
	json_decref(cr->body);
	cr->body = body;
	cr->status = status;
	json_object_clear(cr->headers);
	cr->retry_after = 0;
}

void cmd_reply_header(struct cmd_request *cr, const char *name,
		      const char *value)
{
	json_object_set_new(cr->headers, name, json_string(value));
}

void cmd_reply_error(struct cmd_request *cr, const struct es_error *err)
{
	json_t *p = es_error_problem(err);
	char etag[32];

	if (!p) {
		/* the detail may echo bytes that are not UTF-8 */
		struct es_error tmp = *err;

		es_json_printable(tmp.detail);
		p = es_error_problem(&tmp);
	}
	cmd_reply(cr, es_error_status(err->code), p);
	if (err->code == ES_EPRECONDITION && err->current_version >= 0) {
		snprintf(etag, sizeof(etag), "\"%lld\"", err->current_version);
		cmd_reply_header(cr, "ETag", etag);
	}
	if (err->code == ES_EUNAVAIL)
		cr->retry_after = err->retry_after > 0 ? err->retry_after : 1;
}

/*
 * The answer's body as sent and stored: compact with sorted keys, so
 * that a replay from the jsonb column is byte for byte the same.
 */
static char *body_text(const json_t *body)
{
	return json_dumps(body, JSON_COMPACT | JSON_SORT_KEYS);
}

/* Send the answer, resume the request and free `cr`. */
static void send_reply(struct cmd_request *cr)
{
	struct es_request *req = cr->req;
	const char *name;
	json_t *value;
	char *text = NULL;
	char retry[16];

	if (cr->body)
		text = body_text(cr->body);
	if (!text) {
		struct es_error err = ES_ERROR_INIT;

		es_error_set(&err, ES_EINTERNAL, "cannot encode the answer");
		es_http_send_problem(req, &err);
		cmd_metrics_command(cr->command, 500);
		goto out;
	}
	json_object_foreach(cr->headers, name, value)
		es_http_add_header(req, name, json_string_value(value));
	if (cr->replayed)
		es_http_add_header(req, "Idempotent-Replayed", "true");
	if (cr->status == 503) {
		snprintf(retry, sizeof(retry), "%d",
			 cr->retry_after > 0 ? cr->retry_after : 1);
		es_http_add_header(req, "Retry-After", retry);
	}
	es_http_send_text(req, cr->status,
			  cr->status >= 400 ? "application/problem+json"
					    : "application/json",
			  text, strlen(text));
	cmd_metrics_command(cr->command, cr->status);
	if (cr->replayed)
		cmd_metrics_replay();
out:
	free(text);
	request_free(cr);
	es_http_resume(req);
}

/* ---- appends, and Idempotency-Key ---- */

static void rollback(PGconn *db)
{
	PGresult *res;

	if (PQtransactionStatus(db) != PQTRANS_INTRANS &&
	    PQtransactionStatus(db) != PQTRANS_INERROR)
		return;
	res = PQexec(db, "ROLLBACK");
	PQclear(res);
}

/* Count the events of `cr->pending` as committed. */
static void count_committed(struct cmd_request *cr)
{
	json_t *events, *ev;
	size_t i, j;

	if (json_array_size(cr->pending) == 0)
		return;
	cmd_notify_poke(cr->ctx->notify);
	cmd_metrics_append();
	json_array_foreach(cr->pending, i, events)
	{
		json_array_foreach(events, j, ev) cmd_metrics_appended(
			json_string_value(json_object_get(ev, "type")), 1);
	}
	json_array_clear(cr->pending);
}

int cmd_append(struct cmd_request *cr, PGconn *db,
	       struct es_stream_append *streams, size_t n, char *token,
	       struct es_error *err)
{
	size_t i;

	json_array_clear(cr->pending);
	if (cr->key[0] && es_db_exec(db, "BEGIN", err) < 0)
		return -1;
	if (es_append(db, streams, n, token, token ? ES_APPEND_TOKEN_MAX : 0,
		      err) < 0) {
		if (err && err->code == ES_ECONFLICT)
			cmd_metrics_conflict();
		rollback(db);
		return -1;
	}
	for (i = 0; i < n; i++)
		json_array_append(cr->pending, (json_t *)streams[i].events);
	if (cr->key[0])
		cr->in_tx = 1;
	else
		count_committed(cr);
	return 0;
}

/*
 * Look the request's key up. 0: not stored yet (cr->fingerprint set);
 * 1: answered from the stored row, or 422 for another request's key;
 * -1: the database failed (answer set to the problem).
 */
static int idem_lookup(struct cmd_request *cr, PGconn *db)
{
	struct es_request *req = cr->req;
	struct es_error err = ES_ERROR_INIT;
	const char *values[2];
	int lengths[2], formats[2] = { 0, 1 };
	size_t mlen = strlen(req->method), plen = strlen(req->path);
	size_t len = mlen + 1 + plen + 1 + req->len;
	PGresult *res = NULL;
	json_t *body = NULL, *headers = NULL;
	char *buf = NULL;
	int ret = -1;

	buf = malloc(len);
	if (!buf || len > (size_t)0x7fffffff) {
		es_error_set(&err, ES_EINTERNAL, "out of memory");
		goto out;
	}
	memcpy(buf, req->method, mlen);
	buf[mlen] = ' ';
	memcpy(buf + mlen + 1, req->path, plen);
	buf[mlen + 1 + plen] = '\n';
	memcpy(buf + mlen + plen + 2, req->body, req->len);
	values[0] = cr->key;
	values[1] = buf;
	lengths[0] = 0;
	lengths[1] = (int)len;
	res = PQexecPrepared(db, "cmd_idem_get", 2, values, lengths, formats,
			     0);
	if (PQresultStatus(res) != PGRES_TUPLES_OK || PQntuples(res) != 1) {
		es_db_error(db, res, &err);
		goto out;
	}
	snprintf(cr->fingerprint, sizeof(cr->fingerprint), "%s",
		 PQgetvalue(res, 0, 0));
	if (PQgetisnull(res, 0, 1)) {
		ret = 0;
		goto out;
	}
	if (strcmp(PQgetvalue(res, 0, 1), cr->fingerprint) != 0) {
		es_error_set(
			&err, ES_EINVALID,
			"Idempotency-Key '%.100s' was used for another request",
			cr->key);
		es_error_field(&err, "Idempotency-Key",
			       "was used with another method, path or body");
		cmd_reply_error(cr, &err);
		ret = 1;
		goto out;
	}
	body = json_loads(PQgetvalue(res, 0, 3), 0, NULL);
	headers = json_loads(PQgetvalue(res, 0, 4), 0, NULL);
	if (!body || !json_is_object(headers)) {
		es_error_set(&err, ES_EINTERNAL,
			     "the stored answer of a key is not readable");
		goto out;
	}
	cmd_reply(cr, (unsigned int)atoi(PQgetvalue(res, 0, 2)), body);
	body = NULL;
	json_object_update(cr->headers, headers);
	cr->replayed = 1;
	ret = 1;
out:
	if (ret < 0) {
		es_log(ES_LOG_WARN, "idempotency_lookup_failed",
		       "{s:s, s:s, s:s}", "request_id", req->id, "key", cr->key,
		       "error", err.detail);
		cmd_reply_error(cr, &err);
	}
	json_decref(body);
	json_decref(headers);
	PQclear(res);
	free(buf);
	es_error_release(&err);
	return ret;
}

static int storable(unsigned int status)
{
	return (status >= 200 && status < 300) || status == 404 ||
	       status == 409 || status == 412;
}

int cmd_finish(struct cmd_request *cr, PGconn *db)
{
	struct es_error err = ES_ERROR_INIT;
	const char *values[5];
	char status[16];
	char *body = NULL, *headers = NULL;
	PGresult *res = NULL;
	int ret = -1;

	if (!cr->key[0] || !storable(cr->status)) {
		if (cr->in_tx) {
			/* only an answer worth keeping commits its events */
			rollback(db);
			cr->in_tx = 0;
			json_array_clear(cr->pending);
			return -1;
		}
		return 0;
	}
	snprintf(status, sizeof(status), "%u", cr->status);
	body = body_text(cr->body);
	headers = json_dumps(cr->headers, JSON_COMPACT | JSON_SORT_KEYS);
	if (!body || !headers) {
		es_error_set(&err, ES_EINTERNAL, "cannot encode the answer");
		goto out;
	}
	values[0] = cr->key;
	values[1] = cr->fingerprint;
	values[2] = status;
	values[3] = body;
	values[4] = headers;
	res = PQexecPrepared(db, "cmd_idem_put", 5, values, NULL, NULL, 0);
	if (PQresultStatus(res) != PGRES_TUPLES_OK) {
		es_db_error(db, res, &err);
		goto out;
	}
	if (PQntuples(res) == 0) {
		/* a request with the same key got there first */
		rollback(db);
		cr->in_tx = 0;
		json_array_clear(cr->pending);
		if (idem_lookup(cr, db) == 0) {
			es_error_set(&err, ES_EINTERNAL,
				     "the key's stored answer vanished");
			goto out;
		}
		ret = 1;
		goto out;
	}
	if (cr->in_tx) {
		cr->in_tx = 0;
		if (es_db_exec(db, "COMMIT", &err) < 0)
			goto out;
	}
	count_committed(cr);
	ret = 0;
out:
	if (ret < 0) {
		rollback(db);
		cr->in_tx = 0;
		json_array_clear(cr->pending);
		cmd_reply_error(cr, &err);
	}
	PQclear(res);
	free(body);
	free(headers);
	es_error_release(&err);
	return ret;
}

/* ---- on a worker ---- */

static void job_run(struct cmd_job *job, PGconn *db)
{
	struct cmd_request *cr = (struct cmd_request *)job;

	if (!cr->key[0] || idem_lookup(cr, db) == 0)
		cr->run(cr, db);
	if (cr->in_tx || PQtransactionStatus(db) == PQTRANS_INTRANS ||
	    PQtransactionStatus(db) == PQTRANS_INERROR) {
		es_log(ES_LOG_ERROR, "transaction_left_open", "{s:s, s:s}",
		       "request_id", cr->req->id, "command", cr->command);
		rollback(db);
		cr->in_tx = 0;
	}
	send_reply(cr);
}

static void job_reject(struct cmd_job *job, const struct es_error *err)
{
	struct cmd_request *cr = (struct cmd_request *)job;

	cmd_reply_error(cr, err);
	send_reply(cr);
}

void cmd_request_submit(struct cmd_request *cr)
{
	struct es_request *req = cr->req;
	struct es_error err = ES_ERROR_INIT;

	cr->job.run = job_run;
	cr->job.reject = job_reject;
	es_http_suspend(req);
	if (cmd_pool_submit(cr->ctx->pool, &cr->job, &err) < 0) {
		cmd_reply_error(cr, &err);
		send_reply(cr); /* resumes */
	}
	es_error_release(&err);
}

/* A small xorshift per thread, for jitter; no need for quality. */
static unsigned int jitter(unsigned int bound)
{
	static _Thread_local unsigned long long s;

	if (!s) {
		struct timespec ts;

		clock_gettime(CLOCK_MONOTONIC, &ts);
		s = ((unsigned long long)ts.tv_nsec << 20) ^
		    (unsigned long long)(size_t)&ts ^ 0x9e3779b97f4a7c15ULL;
	}
	s ^= s << 13;
	s ^= s >> 7;
	s ^= s << 17;
	return bound ? (unsigned int)(s % bound) : 0;
}

int cmd_retry(struct cmd_request *cr, int attempt)
{
	struct timespec ts;
	unsigned int us;

	if (attempt >= cr->ctx->retries)
		return 0;
	if (attempt == 0)
		return 1;
	cmd_metrics_retry();
	if (attempt >= BACKOFF_AFTER) {
		/* up to 0.2 ms per attempt, at most 5 ms */
		us = (unsigned int)(attempt < 25 ? attempt : 25) * 200;
		us = 50 + jitter(us);
		ts.tv_sec = 0;
		ts.tv_nsec = (long)us * 1000;
		nanosleep(&ts, NULL);
	}
	return 1;
}
