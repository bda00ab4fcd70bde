/*
 * cmd_idem.c - Idempotency-Key storage: the lookup of a key's stored
 * answer, and the rows of a round's answers, in one statement.
 */
#include "cmd_idem.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "es_db.h"
#include "es_http.h"
#include "es_log.h"

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

int cmd_idem_prepare(PGconn *db, struct es_error *err)
{
	static const Oid types[] = { 25 /* text */, 17 /* bytea */ };
	PGresult *res = PQprepare(db, "cmd_idem_get", SQL_IDEM_GET, 2, types);
	int ret = 0;

	if (PQresultStatus(res) != PGRES_COMMAND_OK)
		ret = es_db_error(db, res, err);
	PQclear(res);
	return ret;
}

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
	cmd_reply(cr, (unsigned int)atoi(PQgetvalue(res, 0, 2)), body, headers);
	body = NULL;
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

	return cr->key[0] && !cr->replayed &&
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
		texts[2 * i] = cmd_request_body_text(v[i]);
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
