/*
 * cmd_routes.c - the command service's route table, and the pipeline its
 * routes share: request metadata, the hand-over to a pool worker,
 * Idempotency-Key lookups and storage, and the answer. The rounds of
 * load-decide-append on a worker are cmd_batch.c's.
 */
#include "cmd_routes.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "account_repo.h"
#include "cmd_accounts.h"
#include "cmd_batch.h"
#include "cmd_metrics.h"
#include "cmd_parse.h"
#include "cmd_streams.h"
#include "es_array.h"
#include "es_db.h"
#include "es_http.h"
#include "es_json.h"
#include "es_log.h"
#include "es_uuid.h"

const struct es_route cmd_routes[] = {
	{ "POST", "/accounts", cmd_post_open, ES_ROUTE_JSON, NULL },
	{ "POST", "/accounts/{id}/deposits", cmd_post_deposit, ES_ROUTE_JSON,
	  NULL },
	{ "POST", "/accounts/{id}/withdrawals", cmd_post_withdraw,
	  ES_ROUTE_JSON, NULL },
	{ "POST", "/accounts/{id}/close", cmd_post_close, ES_ROUTE_JSON, NULL },
	{ "POST", "/transfers", cmd_post_transfer, ES_ROUTE_JSON, NULL },
	{ "POST", "/streams/{stream_id}/events", cmd_post_stream_events,
	  ES_ROUTE_JSON, NULL },
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
 * Store answers, one VALUES row each ($1-$5, $6-$10, ...): the keys that
 * are there already come back without a row. A concurrent request
 * inserting the same key waits here until the first one's transaction
 * ends.
 */
#define SQL_IDEM_PUT                                                 \
	"INSERT INTO idempotency_keys (key, fingerprint, status,"    \
	" response, headers) VALUES %s ON CONFLICT (key) DO NOTHING" \
	" RETURNING key"
#define SQL_IDEM_ROW "($%zu, $%zu, $%zu::int, $%zu::jsonb, $%zu::jsonb)"

/* ---- the context ---- */

int cmd_ctx_init(struct cmd_ctx *ctx, struct es_error *err)
{
	ctx->repo = account_repo_new(CMD_CACHE_MAX);
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
	    prepare(db, "cmd_idem_get", SQL_IDEM_GET, 2, get_types, err) < 0)
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
	if (cr->steps && cr->steps->release)
		cr->steps->release(cr);
	json_decref(cr->metadata);
	json_decref(cr->body);
	json_decref(cr->headers);
	free(cr);
}

struct cmd_request *cmd_request_new(struct es_request *req, size_t size,
				    const char *command,
				    const struct cmd_steps *steps)
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
	cr->steps = steps;
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
	if (!cr->metadata || !cr->headers) {
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

void cmd_send_reply(struct cmd_request *cr)
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

/* ---- Idempotency-Key ---- */

int cmd_idem_lookup(struct cmd_request *cr, PGconn *db)
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

int cmd_idem_storable(const struct cmd_request *cr)
{
	unsigned int st = cr->status;

	return cr->key[0] && !cr->final &&
	       ((st >= 200 && st < 300) || st == 404 || st == 409 || st == 412);
}

static int cmp_key(const void *a, const void *b)
{
	const struct cmd_request *x = *(struct cmd_request *const *)a;
	const struct cmd_request *y = *(struct cmd_request *const *)b;

	return strcmp(x->key, y->key);
}

int cmd_idem_store(PGconn *db, struct cmd_request **crs, size_t n, int *taken,
		   struct es_error *err)
{
	struct cmd_request **v = NULL;
	const char **values = NULL;
	char(*status)[16] = NULL;
	char **texts = NULL;
	char *rows = NULL, *sql = NULL;
	size_t i, k, at = 0, rowlen = sizeof(SQL_IDEM_ROW) + 5 * 20 + 2;
	PGresult *res = NULL;
	int ret = -1;

	if (n == 0)
		return 0;
	v = malloc(n * sizeof(*v));
	values = calloc(5 * n, sizeof(*values));
	status = calloc(n, sizeof(*status));
	texts = calloc(2 * n, sizeof(*texts));
	rows = malloc(n * rowlen);
	if (!v || !values || !status || !texts || !rows) {
		es_error_set(err, ES_EINTERNAL, "out of memory");
		goto out;
	}
	/* in key order, so that two batches cannot deadlock on their keys */
	memcpy(v, crs, n * sizeof(*v));
	qsort(v, n, sizeof(*v), cmp_key);
	for (i = 0; i < n; i++) {
		snprintf(status[i], sizeof(status[i]), "%u", v[i]->status);
		texts[2 * i] = body_text(v[i]->body);
		texts[2 * i + 1] = json_dumps(v[i]->headers,
					      JSON_COMPACT | JSON_SORT_KEYS);
		if (!texts[2 * i] || !texts[2 * i + 1]) {
			es_error_set(err, ES_EINTERNAL,
				     "cannot encode the answer");
			goto out;
		}
		values[5 * i] = v[i]->key;
		values[5 * i + 1] = v[i]->fingerprint;
		values[5 * i + 2] = status[i];
		values[5 * i + 3] = texts[2 * i];
		values[5 * i + 4] = texts[2 * i + 1];
		at += (size_t)snprintf(rows + at, n * rowlen - at,
				       "%s" SQL_IDEM_ROW, i ? ", " : "",
				       5 * i + 1, 5 * i + 2, 5 * i + 3,
				       5 * i + 4, 5 * i + 5);
	}
	sql = malloc(sizeof(SQL_IDEM_PUT) + at);
	if (!sql) {
		es_error_set(err, ES_EINTERNAL, "out of memory");
		goto out;
	}
	snprintf(sql, sizeof(SQL_IDEM_PUT) + at, SQL_IDEM_PUT, rows);
	res = PQexecParams(db, sql, (int)(5 * n), NULL, values, NULL, NULL, 0);
	if (PQresultStatus(res) != PGRES_TUPLES_OK) {
		es_db_error(db, res, err);
		goto out;
	}
	for (i = 0; i < n; i++) {
		taken[i] = 1;
		for (k = 0; k < (size_t)PQntuples(res); k++)
			if (!strcmp(PQgetvalue(res, (int)k, 0), crs[i]->key))
				taken[i] = 0;
	}
	ret = 0;
out:
	for (i = 0; texts && i < 2 * n; i++)
		free(texts[i]);
	PQclear(res);
	free(sql);
	free(rows);
	free(texts);
	free(status);
	free(values);
	free(v);
	return ret;
}

/* ---- on a worker ---- */

static void job_reject(struct cmd_job *job, const struct es_error *err)
{
	struct cmd_request *cr = (struct cmd_request *)job;

	cmd_reply_error(cr, err);
	cmd_send_reply(cr);
}

void cmd_request_submit(struct cmd_request *cr)
{
	struct es_request *req = cr->req;
	struct es_error err = ES_ERROR_INIT;

	/* the pool runs jobs through its run_batch(), cmd_batch_run() */
	cr->job.reject = job_reject;
	es_http_suspend(req);
	if (cmd_pool_submit(cr->ctx->pool, &cr->job, &err) < 0) {
		cmd_reply_error(cr, &err);
		cmd_send_reply(cr); /* resumes */
	}
	es_error_release(&err);
}
