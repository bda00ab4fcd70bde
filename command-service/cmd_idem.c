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
 * The stored answer of an Idempotency-Key of the principal's own (iss $3,
 * sub $4: another principal's key of the same name is another key),
 * and this request's
 * fingerprint: sha256 of "<method> <path>\n<body>" ($2, bytea), where
 * the body is the request's JSON value written out compact with sorted
 * keys, so that member order and spacing do not make another request.
 */
#define SQL_IDEM_GET                                                        \
	"SELECT encode(sha256($2::bytea), 'hex'), k.fingerprint, k.status," \
	" k.response::text, k.headers::text"                                \
	" FROM (SELECT 1) one LEFT JOIN idempotency_keys k"                 \
	" ON k.iss = $3 AND k.sub = $4 AND k.key = $1"

/*
 * Store the answers of a round, one statement whatever their number: $1
 * is [{i: iss, u: sub, k: key, f: fingerprint, s: status, r: response,
 * h: headers}, ...] in key order, inserted in that order. A round never
 * holds two requests of one key, whoever sent them (cmd_round.c). The keys that
 * are there already come back without a row. A concurrent request inserting the
 * same key waits here until the first one's transaction ends.
 */
#define SQL_IDEM_PUT                                                        \
	"INSERT INTO idempotency_keys (iss, sub, key, fingerprint, status," \
	" response, headers)"                                               \
	" SELECT a.x->>'i', a.x->>'u', a.x->>'k', a.x->>'f',"               \
	" (a.x->>'s')::int, a.x->'r', a.x->'h'"                             \
	" FROM jsonb_array_elements($1::jsonb) WITH ORDINALITY a(x, n)"     \
	" ORDER BY a.n ON CONFLICT (iss, sub, key) DO NOTHING RETURNING key"

int cmd_idem_prepare(PGconn *db, struct es_error *err)
{
	static const Oid types[] = { 25 /* text */, 17 /* bytea */, 25, 25 };
	PGresult *res = PQprepare(db, "cmd_idem_get", SQL_IDEM_GET, 4, types);
	int ret = 0;

	if (PQresultStatus(res) != PGRES_COMMAND_OK)
		ret = es_db_error(db, res, err);
	PQclear(res);
	if (ret < 0)
		return ret;
	res = PQprepare(db, "cmd_idem_put", SQL_IDEM_PUT, 1, NULL);
	if (PQresultStatus(res) != PGRES_COMMAND_OK)
		ret = es_db_error(db, res, err);
	PQclear(res);
	return ret;
}

int cmd_idem_lookup(struct cmd_request *cr, PGconn *db)
{
	struct es_request *req = cr->req;
	struct es_error err = ES_ERROR_INIT;
	const char *values[4];
	int lengths[4] = { 0 }, formats[4] = { 0, 1, 0, 0 };
	size_t mlen = strlen(req->method), plen = strlen(req->path), len;
	PGresult *res = NULL;
	json_t *body = NULL, *headers = NULL;
	char *buf = NULL, *value = NULL;
	int ret = -1;

	/* the request as a JSON value, not as the bytes that spelled it */
	value = json_dumps(req->json,
			   JSON_COMPACT | JSON_SORT_KEYS | JSON_ENCODE_ANY);
	len = mlen + 1 + plen + 1 + (value ? strlen(value) : 0);
	buf = value ? malloc(len) : NULL;
	if (!buf || len > (size_t)0x7fffffff) {
		es_error_set(&err, ES_EINTERNAL, "out of memory");
		goto out;
	}
	memcpy(buf, req->method, mlen);
	buf[mlen] = ' ';
	memcpy(buf + mlen + 1, req->path, plen);
	buf[mlen + 1 + plen] = '\n';
	memcpy(buf + mlen + plen + 2, value, strlen(value));
	values[0] = cr->key;
	values[1] = buf;
	values[2] = cr->iss;
	values[3] = cr->sub;
	lengths[1] = (int)len;
	res = PQexecPrepared(db, "cmd_idem_get", 4, values, lengths, formats,
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
	free(value);
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

/* bsearch() of a key among requests in key order. */
static int cmp_key_str(const void *key, const void *b)
{
	return strcmp(key, (*(struct cmd_request *const *)b)->key);
}

int cmd_idem_store(PGconn *db, struct cmd_request **crs, size_t n, int *taken,
		   struct es_error *err)
{
	struct cmd_request **v = NULL, **hit;
	unsigned char *stored = NULL;
	json_t *rows = NULL;
	char *text = NULL;
	const char *param;
	PGresult *res = NULL;
	size_t i, k;
	int ret = -1;

	if (n == 0)
		return 0;
	v = malloc(n * sizeof(*v));
	stored = calloc(n, 1);
	rows = json_array();
	if (!v || !stored || !rows) {
		es_error_set(err, ES_EINTERNAL, "out of memory");
		goto out;
	}
	/* in key order, so that two batches cannot deadlock on their keys */
	memcpy(v, crs, n * sizeof(*v));
	qsort(v, n, sizeof(*v), cmp_key);
	for (i = 0; i < n; i++) {
		if (json_array_append_new(
			    rows,
			    json_pack("{s:s, s:s, s:s, s:s, s:I, s:O, s:O}",
				      "i", v[i]->iss, "u", v[i]->sub, "k",
				      v[i]->key, "f", v[i]->fingerprint, "s",
				      (json_int_t)v[i]->status, "r", v[i]->body,
				      "h", v[i]->headers)) < 0) {
			es_error_set(err, ES_EINTERNAL,
				     "cannot encode the answer");
			goto out;
		}
	}
	text = json_dumps(rows, JSON_COMPACT);
	if (!text) {
		es_error_set(err, ES_EINTERNAL, "cannot encode the answer");
		goto out;
	}
	param = text;
	res = PQexecPrepared(db, "cmd_idem_put", 1, &param, NULL, NULL, 0);
	if (PQresultStatus(res) != PGRES_TUPLES_OK) {
		es_db_error(db, res, err);
		goto out;
	}
	/* stored: the keys that came back (by their place in v) */
	for (k = 0; k < (size_t)PQntuples(res); k++) {
		hit = bsearch(PQgetvalue(res, (int)k, 0), v, n, sizeof(*v),
			      cmp_key_str);
		if (hit)
			stored[hit - v] = 1;
	}
	for (i = 0; i < n; i++) {
		hit = bsearch(crs[i]->key, v, n, sizeof(*v), cmp_key_str);
		taken[i] = !hit || !stored[hit - v];
	}
	ret = 0;
out:
	PQclear(res);
	free(text);
	json_decref(rows);
	free(stored);
	free(v);
	return ret;
}
