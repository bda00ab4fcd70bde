/*
 * qry_routes.c - the route table of the query service, GET /accounts/{id}
 * from the in-memory view, the raw log (GET /streams/{stream_id} and GET
 * /events) and GET /ready. A view's routes are its own (views/view.c
 * lists them); every database-backed route runs through qry_read.h.
 */
#include "qry_routes.h"

#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "es_array.h"
#include "es_buf.h"
#include "es_db.h"
#include "es_event.h"
#include "es_probe.h"
#include "es_read.h"
#include "es_uuid.h"
#include "qry_metrics.h"
#include "qry_status.h"
#include "views/view.h"
#include "views/view_account.h"

#define SQL_SNAPSHOT_BEGIN "BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY"

/* ---- GET /accounts/{id}: from memory, past its cap from the table ---- */

/*
 * Whether account `id`'s stream is parked for `view` (the in-memory view,
 * or "accounts" for the table): then `err` is a 503 naming the event and
 * why (the state held is older than the position answered: never served
 * as current).
 */
static int parked(struct qry_ctx *ctx, const char *view, const char *id,
		  struct es_error *err)
{
	char stream[sizeof(ES_ACCOUNT_PREFIX) + 36], why[200];
	long long position;

	snprintf(stream, sizeof(stream), ES_ACCOUNT_PREFIX "%s", id);
	if (!qry_state_parked(ctx->st, view, stream, &position, why,
			      sizeof(why)))
		return 0;
	qry_parked_account_error(err, id, position, why);
	return 1;
}

/*
 * Whether the account body `body` (the view's JSON) is `holder`'s, or
 * `holder` is NULL (the caller reads any account).
 */
static bool owned_by(const char *body, size_t len, const char *holder)
{
	json_t *j, *owner;
	bool own;

	if (!holder)
		return true;
	j = json_loadb(body, len, 0, NULL);
	owner = json_object_get(j, ES_F_OWNER);
	own = json_is_string(owner) &&
	      strcmp(json_string_value(owner), holder) == 0;
	json_decref(j);
	return own;
}

/*
 * The answer of GET /accounts/{id} (its X-Position already added),
 * whichever view `view` it comes from: the same status, body and ETag
 * rules on both paths. `body` (taken; NULL: unknown to the caller) is
 * the account's JSON, `len` bytes at its start, of `version`; or, with
 * `acc`, rendered here from it as the memory view renders its entries.
 */
static void answer_account(struct es_request *req, struct qry_ctx *ctx,
			   const char *view, const char *id,
			   const struct view_account *acc, long long version,
			   char *body, size_t len)
{
	struct es_error err = ES_ERROR_INIT;
	char etag[32];

	if (!body && acc) {
		/* as the memory view renders its entries */
		body = view_account_text(acc, &len);
		if (!body) {
			es_error_set(&err, ES_EINTERNAL, "out of memory");
			goto fail;
		}
		version = acc->version;
	}
	/*
	 * Another holder's account is answered as if it did not exist,
	 * parked or not; so is one unknown to a holder.
	 */
	if ((body || !qry_read_holder(req)) && parked(ctx, view, id, &err))
		goto fail;
	if (!body) {
		es_error_set(&err, ES_ENOTFOUND, "account '%s' does not exist",
			     id);
		goto fail;
	}
	snprintf(etag, sizeof(etag), "\"%lld\"", version);
	es_http_add_header(req, "ETag", etag);
	/* the body is at its buffer's start: sent without a copy (a 304
	 * sends only its length) */
	es_http_send_buffer(
		req,
		qry_etag_matches(es_request_header(req, "If-None-Match"), etag)
			? 304
			: 200,
		"application/json", body, len);
	return;
fail:
	es_http_send_problem(req, &err);
	es_error_release(&err);
	free(body);
}

/* ---- the table path: view_accounts, past the memory view's cap ---- */

#define SQL_ACCOUNT                                                                      \
	"SELECT cp.cp_position, " VIEW_ACCOUNT_COLUMNS QRY_READ_FROM_CHECKPOINT(         \
		"accounts") " LEFT JOIN LATERAL"                                         \
			    " (SELECT * FROM view_accounts WHERE account_id = $1::uuid)" \
			    " a ON true"

struct account_params {
	char id[37];
};

static int parse_account(struct qry_read *r, void *arg, struct es_error *err)
{
	struct account_params *p = arg;

	if (es_uuid_parse(es_request_param(r->req, "id"), p->id) < 0)
		return es_error_set(err, ES_ENOTFOUND,
				    "account '%.60s' does not exist",
				    es_request_param(r->req, "id"));
	return 0;
}

/*
 * The row and the "accounts" checkpoint, read in one statement: the
 * answer is never older than the X-Position it gives.
 */
static void run_account(struct qry_read *r, void *arg, struct qry_worker *w)
{
	struct account_params *p = arg;
	struct es_error err = ES_ERROR_INIT;
	const char *params[1] = { p->id };
	const char *holder = qry_read_holder(r->req);
	struct view_account acc;
	PGresult *res;
	int found;

	res = qry_read_prepared(r, w, "qry_account", 1, params);
	if (!res)
		return;
	qry_read_add_position(r->req, qry_read_position(r, res));
	found = qry_read_rows(res, 1) == 1;
	if (found && view_account_from_pg(res, 0, 1, &acc, &err) < 0) {
		es_http_send_problem(r->req, &err);
		es_error_release(&err);
		PQclear(res);
		return;
	}
	PQclear(res);
	if (found && holder && strcmp(acc.owner, holder) != 0)
		found = 0;
	answer_account(r->req, r->ctx, "accounts", p->id, found ? &acc : NULL,
		       0, NULL, 0);
}

static const struct qry_read_stmt account_stmts[] = {
	{ QRY_DB_READ, "qry_account", SQL_ACCOUNT },
	{ QRY_DB_READ, NULL, NULL },
};

static const struct qry_read_def read_account_table = {
	.view = "accounts",
	.ryw = 1,
	.stmts = account_stmts,
	.size = sizeof(struct account_params),
	.parse = parse_account,
	.run = run_account,
};

/*
 * Answer account `id` from the in-memory view; 1 when the view is past
 * its cap and does not hold it: then the table path answers (and, when
 * `suspended`, resumes the request: the caller must not).
 */
static int serve_account(struct es_request *req, struct qry_ctx *ctx,
			 const char *id, int suspended)
{
	struct es_error err = ES_ERROR_INIT;
	const char *holder = qry_read_holder(req);
	struct qry_memory_read rd;
	int r;

	r = qry_memory_get(ctx->mem, id, &rd, &err);
	if (r < 0) {
		qry_read_add_view_position(req, ctx, QRY_MEMORY_VIEW);
		es_http_send_problem(req, &err);
		es_error_release(&err);
		return 0;
	}
	if (r == 0 && rd.capped) {
		free(rd.mem);
		qry_read_start(req, &read_account_table, suspended);
		return 1;
	}
	qry_read_add_position(req, rd.position);
	if (r == 1 && !owned_by(rd.body, rd.len, holder))
		r = 0;
	if (r == 0) {
		free(rd.mem);
		rd.mem = NULL;
	}
	/* the body is at the start of rd.mem */
	answer_account(req, ctx, QRY_MEMORY_VIEW, id, NULL, rd.version, rd.mem,
		       rd.len);
	return 0;
}

/* A parked GET /accounts/{id}: answered by whoever wakes it. */
struct account_wait {
	struct qry_waiter wait;
	struct es_request *req;
	struct qry_ctx *ctx;
	char *token; /* owned copy: outlives the request's memory */
	long wait_ms;
	char id[37];
};

static void account_waited(struct qry_waiter *w, enum qry_wait_result r)
{
	struct account_wait *a = w->arg;
	struct es_error err = ES_ERROR_INIT;

	if (r == QRY_WAIT_COVERED) {
		if (serve_account(a->req, a->ctx, a->id, 1)) {
			/* the table path resumes it */
			free(a->token);
			free(a);
			return;
		}
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
		qry_read_add_view_position(a->req, a->ctx, QRY_MEMORY_VIEW);
		es_http_send_problem(a->req, &err);
		es_error_release(&err);
	}
	es_http_resume(a->req);
	free(a->token);
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

	if (qry_read_parse_wait(req, &token, &wait_ms, &err) < 0)
		goto fail;
	if (es_uuid_parse(es_request_param(req, "id"), id) < 0) {
		es_error_set(&err, ES_ENOTFOUND,
			     "account '%.60s' does not exist",
			     es_request_param(req, "id"));
		goto fail;
	}
	/* past the cap, an account not held waits for the table's view */
	if (!qry_memory_holds(ctx->mem, id)) {
		qry_read_start(req, &read_account_table, 0);
		return;
	}
	if (token) {
		covered =
			qry_state_covers(ctx->st, QRY_MEMORY_VIEW, token, &err);
		if (covered < 0)
			goto fail;
	}
	if (covered) {
		serve_account(req, ctx, id, 0);
		return;
	}
	a = calloc(1, sizeof(*a));
	/* a copy: the timer may read it after the shutdown answered */
	if (!a || !(a->token = strdup(token))) {
		free(a);
		es_error_set(&err, ES_EINTERNAL, "out of memory");
		goto fail;
	}
	a->req = req;
	a->ctx = ctx;
	a->wait_ms = wait_ms;
	memcpy(a->id, id, sizeof(id));
	a->wait.deadline_ms = qry_state_clock_ms() + wait_ms;
	a->wait.done = account_waited;
	a->wait.arg = a;
	es_http_suspend(req);
	r = qry_state_park(ctx->st, QRY_MEMORY_VIEW, a->token, &a->wait, &err);
	if (r == 0)
		return;
	/* passed meanwhile, or stopping: we own the request still */
	if (r <= 0)
		es_http_send_problem(req, &err);
	es_error_release(&err);
	/* the table path resumes it itself */
	if (r <= 0 || !serve_account(req, ctx, id, 1))
		es_http_resume(req);
	free(a->token);
	free(a);
	return;
fail:
	qry_read_add_view_position(req, ctx, QRY_MEMORY_VIEW);
	es_http_send_problem(req, &err);
	es_error_release(&err);
}

/* ---- the raw log: GET /streams/{stream_id} and GET /events ---- */

struct stream_params {
	char *stream; /* owned */
	long long from; /* the first version */
	long limit;
};

static int parse_stream(struct qry_read *j, void *arg, struct es_error *err)
{
	struct stream_params *p = arg;
	const char *from = es_request_query(j->req, "from_version");
	const char *after = es_request_query(j->req, "after");

	p->stream = strdup(es_request_param(j->req, "stream_id"));
	if (!p->stream)
		return es_error_set(err, ES_EINTERNAL, "out of memory");
	p->from = 1;
	if (from && after)
		return es_error_field(err, "after",
				      "give from_version or after, not both");
	if (from && (qry_parse_ll(from, &p->from) < 0 || p->from < 0))
		return es_error_field(err, "from_version",
				      "must be an integer of at least 0");
	if (after) {
		if (qry_parse_ll(after, &p->from) < 0 || p->from < 0)
			return es_error_set(err, ES_EMALFORMED,
					    "malformed cursor '%.60s'", after);
		p->from++;
	}
	if (qry_read_limit(j, &p->limit, err) < 0)
		return -1;
	snprintf(j->canon, sizeof(j->canon), "from_version=%lld&limit=%ld",
		 p->from, p->limit);
	return 0;
}

static void release_stream(void *arg)
{
	struct stream_params *p = arg;

	free(p->stream);
}

static void run_stream(struct qry_read *j, void *arg, struct qry_worker *w)
{
	struct stream_params *p = arg;
	struct es_error err = ES_ERROR_INIT;
	struct es_buf body = ES_BUF_INIT;
	struct es_snapshot done = { 0 };
	char *snapshot = NULL, next[24];
	long long version = 0, last = 0;
	size_t n = 0;
	bool more = false;
	int have_done;
	PGconn *db;

	if (!qry_utf8_ok(p->stream, ES_STREAM_ID_MAX)) {
		es_error_set(&err, ES_ENOTFOUND, "stream does not exist");
		goto fail;
	}
	db = qry_worker_db(w, QRY_DB_WRITE, &err);
	if (!db)
		goto fail;
	/* the rows and the snapshot they were read in */
	have_done = qry_read_done(j, db, &done);
	if (es_db_exec(db, SQL_SNAPSHOT_BEGIN, &err) < 0 ||
	    !(snapshot = es_read_snapshot(db, have_done ? &done : NULL, &err)))
		goto fail;
	es_buf_adds(&body, "{\"items\":[");
	if (es_read_stream_json(db, p->stream, p->from, (size_t)p->limit, &body,
				&n, &last, &more, &err) < 0 ||
	    (n == 0 && es_stream_version(db, p->stream, &version, &err) < 0) ||
	    es_db_exec(db, "COMMIT", &err) < 0 ||
	    qry_read_check_covers(j, snapshot, &err) < 0)
		goto fail;
	if (n == 0 && version == 0) {
		qry_read_add_position(j->req, snapshot);
		es_error_set(&err, ES_ENOTFOUND,
			     "stream '%.100s' does not exist", p->stream);
		goto fail;
	}
	snprintf(next, sizeof(next), "%lld", last);
	qry_read_answer_list(j, snapshot, &body, more ? next : NULL);
	goto out;
fail:
	if (!es_error_isset(&err))
		es_error_set(&err, ES_EINTERNAL, "out of memory");
	es_http_send_problem(j->req, &err);
out:
	es_buf_release(&body);
	free(snapshot);
	es_snapshot_release(&done);
	es_error_release(&err);
}

struct events_params {
	struct es_cursor after;
	long limit;
};

static int parse_events(struct qry_read *j, void *arg, struct es_error *err)
{
	struct events_params *p = arg;
	const char *after = es_request_query(j->req, "after");

	if (after && es_cursor_parse(after, &p->after, err) < 0)
		return -1;
	if (qry_read_limit(j, &p->limit, err) < 0)
		return -1;
	snprintf(j->canon, sizeof(j->canon), "limit=%ld", p->limit);
	return 0;
}

static void release_events(void *arg)
{
	struct events_params *p = arg;

	es_cursor_release(&p->after);
}

static void run_events(struct qry_read *j, void *arg, struct qry_worker *w)
{
	struct events_params *p = arg;
	struct es_error err = ES_ERROR_INIT;
	struct es_buf body = ES_BUF_INIT;
	struct es_cursor next;
	struct es_snapshot done = { 0 };
	char *token = NULL, *end = NULL;
	size_t n = 0;
	int have_done;
	PGconn *db;

	es_cursor_init(&next);
	es_buf_adds(&body, "{\"items\":[");
	db = qry_worker_db(w, QRY_DB_WRITE, &err);
	if (!db)
		goto fail;
	have_done = qry_read_done(j, db, &done);
	if (es_read_forward_json_done(db, &p->after, (size_t)p->limit,
				      have_done ? &done : NULL, &body, &n,
				      &next, &err) < 0)
		goto fail;
	token = es_cursor_format(&next);
	/* the snapshot the window ends at: a full page pages on to it */
	end = es_snapshot_format(next.mid ? &next.hi : &next.lo);
	if (!token || !end) {
		es_error_set(&err, ES_EINTERNAL, "out of memory");
		goto fail;
	}
	if (qry_read_check_covers(j, end, &err) < 0)
		goto fail;
	qry_read_answer_list(j, token, &body, token);
	goto out;
fail:
	es_http_send_problem(j->req, &err);
out:
	es_buf_release(&body);
	free(token);
	free(end);
	es_cursor_release(&next);
	es_snapshot_release(&done);
	es_error_release(&err);
}

/* ---- GET /ready ---- */

static void run_ready(struct qry_read *j, void *p, struct qry_worker *w)
{
	struct es_error err = ES_ERROR_INIT;
	PGconn *wdb = qry_worker_conn(w, QRY_DB_WRITE, &err);
	PGconn *rdb = wdb ? qry_worker_conn(w, QRY_DB_READ, &err) : NULL;

	(void)p;
	if (!wdb || !rdb || es_db_check_ready(wdb, &err) < 0 ||
	    es_db_check_ready(rdb, &err) < 0) {
		if (err.code != ES_EUNAVAIL) {
			es_error_release(&err);
			es_error_set(&err, ES_EUNAVAIL, "database not ready");
		}
		es_http_send_problem(j->req, &err);
	} else {
		es_http_send_json(j->req, 200,
				  json_pack("{s:s, s:s}", "status", "ready",
					    "auth",
					    es_request_auth_mode(j->req)));
	}
	es_error_release(&err);
}

/* ---- the table ---- */

static const struct qry_read_def read_stream = {
	.ryw = 1,
	.size = sizeof(struct stream_params),
	.parse = parse_stream,
	.run = run_stream,
	.release = release_stream,
};

static const struct qry_read_def read_events = {
	.ryw = 1,
	.size = sizeof(struct events_params),
	.parse = parse_events,
	.run = run_events,
	.release = release_events,
};

static const struct qry_read_def read_ready = { .run = run_ready };

/*
 * Every GET answer carries X-Position (SPEC section 6): on the routes
 * that read no one view, the position all views have passed.
 */
static void add_min_position(struct es_request *req)
{
	struct qry_ctx *ctx = req->ctx;
	char *pos = qry_state_min_token(ctx->st);

	qry_read_add_position(req, pos);
	free(pos);
}

static void get_health(struct es_request *req)
{
	add_min_position(req);
	es_probe_health(req);
}

/* GET /ready, /metrics and /status. */
static void get_operational(struct es_request *req)
{
	add_min_position(req);
	qry_read_route(req);
}

/* The routes before the views' own, then after them. */
static const struct es_route head[] = {
	{ "GET", "/health", get_health, ES_ROUTE_PUBLIC, NULL, 0 },
	{ "GET", "/ready", get_operational, ES_ROUTE_PUBLIC, &read_ready, 0 },
	{ "GET", "/metrics", get_operational, 0, &qry_metrics_read,
	  ES_ROLE_OPERATOR },
	{ "GET", "/status", get_operational, 0, &qry_status_read,
	  ES_ROLE_OPERATOR },
	{ "GET", "/accounts/{id}", get_account, 0, NULL,
	  ES_ROLE_HOLDER | ES_ROLE_MANAGER | ES_ROLE_AUDITOR },
};
static const struct es_route tail[] = {
	{ "GET", "/streams/{stream_id}", qry_read_route, 0, &read_stream,
	  ES_ROLE_AUDITOR | ES_ROLE_SERVICE },
	{ "GET", "/events", qry_read_route, 0, &read_events,
	  ES_ROLE_AUDITOR | ES_ROLE_SERVICE },
};

#define NROUTES (ARRAY_SIZE(head) + VIEW_ROUTES_MAX + ARRAY_SIZE(tail))

static struct es_route table[NROUTES];
static const struct qry_read_def *defs[NROUTES + 2];
static size_t ntable;

const struct es_route *qry_routes(size_t *n)
{
	size_t i, k = 0;

	if (!ntable) {
		for (i = 0; i < ARRAY_SIZE(head); i++)
			table[ntable++] = head[i];
		for (i = 0; i < view_nroutes; i++)
			table[ntable++] =
				(struct es_route){ "GET",
						   view_routes[i].pattern,
						   qry_read_route,
						   0,
						   view_routes[i].read,
						   view_routes[i].roles };
		for (i = 0; i < ARRAY_SIZE(tail); i++)
			table[ntable++] = tail[i];
		for (i = 0; i < ntable; i++)
			if (table[i].arg)
				defs[k++] = table[i].arg;
		/* no route of its own: GET /accounts/{id} past the cap */
		defs[k++] = &read_account_table;
	}
	*n = ntable;
	return table;
}

int qry_routes_prepare(PGconn *db, enum qry_db which, struct es_error *err)
{
	size_t n;

	qry_routes(&n);
	return qry_read_prepare(db, which, defs, err);
}
