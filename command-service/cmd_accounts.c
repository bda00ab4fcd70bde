/*
 * cmd_accounts.c - the account commands: open, deposit, withdraw, close,
 * transfer.
 *
 * Each route parses and validates on the HTTP thread, then a worker runs
 * attempts of load, decide, append, respond under the account's lock
 * stripe (two for a transfer, lower first). An attempt works on cached
 * state when it can; a rejection (404, 409, 412) is only ever decided on
 * state loaded from the database, so an attempt that would reject on
 * cached state asks for another one (AGAIN) that loads afresh. A version
 * conflict from the store does the same: another process appended, the
 * next attempt builds on what it wrote, up to ctx->retries attempts.
 */
#include "cmd_accounts.h"

#include <stdio.h>
#include <string.h>

#include "account.h"
#include "account_decide.h"
#include "account_repo.h"
#include "cmd_parse.h"
#include "cmd_routes.h"
#include "es_http.h"
#include "es_log.h"
#include "es_store.h"

/* What an attempt tells the loop: the answer is set, or try again. */
enum attempt { DONE, AGAIN };

struct open_req {
	struct cmd_request base;
	struct open_cmd cmd;
	int generated; /* the id is ours: no such account can exist */
};

struct money_req {
	struct cmd_request base;
	struct money_cmd cmd;
	int withdraw;
};

struct close_req {
	struct cmd_request base;
	struct close_cmd cmd;
};

struct transfer_req {
	struct cmd_request base;
	struct transfer_cmd cmd;
};

/* ---- steps shared by the commands ---- */

/* The expectation to append after `acc` with. */
static long long expected_of(const struct account *acc)
{
	return acc->version > 0 ? acc->version : ES_NO_STREAM;
}

/*
 * The client's expectations: If-Match (412) and expected_version in the
 * body (409), each against the account's version. An account that does
 * not exist is left to decide (404).
 */
static int check_version(const struct cmd_request *cr,
			 const struct account *acc, long long expected,
			 struct es_error *err)
{
	if (acc->status == ACCOUNT_NONE)
		return 0;
	if (cr->if_match >= 0 && acc->version != cr->if_match) {
		es_error_set(
			err, ES_EPRECONDITION,
			"account '%s' is at version %lld, If-Match wants %lld",
			acc->id, acc->version, cr->if_match);
		err->current_version = acc->version;
		return -1;
	}
	if (expected >= 0 && acc->version != expected) {
		es_error_set(err, ES_ECONFLICT,
			     "account '%s' is at version %lld, expected %lld",
			     acc->id, acc->version, expected);
		err->current_version = acc->version;
		return -1;
	}
	return 0;
}

/*
 * A rejection decided on `fresh` state is the answer (stored with an
 * Idempotency-Key); on cached state it calls for a fresh attempt.
 */
static enum attempt reject(struct cmd_request *cr, PGconn *db, int fresh,
			   const struct es_error *err)
{
	if (!fresh && (err->code == ES_ENOTFOUND || err->code == ES_ECONFLICT ||
		       err->code == ES_EPRECONDITION))
		return AGAIN;
	cmd_reply_error(cr, err);
	cmd_finish(cr, db);
	return DONE;
}

/*
 * A failed append: a version conflict means the state we decided on is
 * gone, so forget it and try again; anything else is the answer.
 */
static enum attempt append_failed(struct cmd_request *cr,
				  struct account_repo *repo, const char *a,
				  const char *b, const struct es_error *err)
{
	account_repo_forget(repo, a);
	if (b)
		account_repo_forget(repo, b);
	if (err->code == ES_ECONFLICT)
		return AGAIN;
	cmd_reply_error(cr, err);
	return DONE;
}

/* Fold the appended `events` into `acc`, to cache what is now true. */
static int fold(struct account *acc, const json_t *events, struct es_error *err)
{
	long long version = acc->version;
	const json_t *ev;
	size_t i;

	json_array_foreach(events, i, ev)
	{
		if (account_apply(
			    acc, json_string_value(json_object_get(ev, "type")),
			    json_object_get(ev, "data"), ++version, err) < 0)
			return -1;
	}
	return 0;
}

/*
 * Commit the answer (with its Idempotency-Key when there is one); on
 * success cache `acc` (and `acc2`) folded with their events, else forget
 * them, as what was appended may not stand.
 */
static void commit(struct cmd_request *cr, PGconn *db,
		   struct account_repo *repo, struct account *acc,
		   const json_t *events, struct account *acc2,
		   const json_t *events2)
{
	if (cmd_finish(cr, db) == 0 && fold(acc, events, NULL) == 0 &&
	    (!acc2 || fold(acc2, events2, NULL) == 0)) {
		account_repo_store(repo, acc);
		if (acc2)
			account_repo_store(repo, acc2);
		return;
	}
	account_repo_forget(repo, acc->id);
	if (acc2)
		account_repo_forget(repo, acc2->id);
}

/*
 * Append `events` to the account's stream after `expected`, answer 201
 * {account_id, version, position, ...extra} with ETag (and Location when
 * given), and cache the state the events lead to.
 * ownership: takes `extra` (may be NULL), borrows the rest.
 */
static enum attempt append_one(struct cmd_request *cr, PGconn *db,
			       struct account *acc, long long expected,
			       json_t *events, json_t *extra,
			       const char *location)
{
	struct account_repo *repo = cr->ctx->repo;
	struct es_error err = ES_ERROR_INIT;
	struct es_stream_append s = { .stream_id = acc->stream_id,
				      .expected = expected,
				      .events = events };
	char token[ES_APPEND_TOKEN_MAX], etag[32];
	enum attempt rc = DONE;
	json_t *body;

	if (cmd_add_metadata(cr, events, &err) < 0) {
		cmd_reply_error(cr, &err);
		goto out;
	}
	if (cmd_append(cr, db, &s, 1, token, &err) < 0) {
		rc = append_failed(cr, repo, acc->id, NULL, &err);
		goto out;
	}
	body = json_pack("{s:s, s:I, s:s}", "account_id", acc->id, "version",
			 (json_int_t)s.version, "position", token);
	if (body && extra)
		json_object_update(body, extra);
	cmd_reply(cr, 201, body);
	if (location)
		cmd_reply_header(cr, "Location", location);
	snprintf(etag, sizeof(etag), "\"%lld\"", s.version);
	cmd_reply_header(cr, "ETag", etag);
	commit(cr, db, repo, acc, events, NULL, NULL);
out:
	json_decref(extra);
	es_error_release(&err);
	return rc;
}

/*
 * Run attempts of `attempt` under the lock stripes of `a` and `b`, the
 * first on whatever state is at hand, later ones on fresh state.
 */
static void run_attempts(struct cmd_request *cr, PGconn *db,
			 enum attempt (*attempt)(struct cmd_request *cr,
						 PGconn *db, int fresh),
			 const char *a, const char *b)
{
	struct account_repo *repo = cr->ctx->repo;
	struct es_error err = ES_ERROR_INIT;
	enum attempt rc = AGAIN;
	int n;

	for (n = 0; rc == AGAIN && cmd_retry(cr, n); n++) {
		account_repo_lock(repo, a, b);
		rc = attempt(cr, db, n > 0);
		account_repo_unlock(repo, a, b);
	}
	if (rc == AGAIN) {
		es_log(ES_LOG_WARN, "command_gave_up", "{s:s, s:s, s:i}",
		       "request_id", cr->req->id, "command", cr->command,
		       "attempts", n);
		es_error_set(
			&err, ES_EUNAVAIL,
			"account '%s' changed too often to decide; try again",
			a);
		err.retry_after = 1;
		cmd_reply_error(cr, &err);
		es_error_release(&err);
	}
}

/* The request's own failure on the HTTP thread: answer and free. */
static void fail(struct es_request *req, struct cmd_request *cr,
		 struct es_error *err)
{
	cmd_request_fail(req, cr, err);
	es_error_release(err);
}

/* If-Match names one existing stream's version; not for these. */
static int no_if_match(const struct cmd_request *cr, struct es_error *err)
{
	if (cr->if_match >= 0)
		return es_error_set(
			err, ES_EMALFORMED,
			"If-Match applies only to a command on one existing account");
	return 0;
}

/* ---- open ---- */

static enum attempt open_attempt(struct cmd_request *cr, PGconn *db, int fresh)
{
	struct open_req *r = (struct open_req *)cr;
	struct account_repo *repo = cr->ctx->repo;
	struct es_error err = ES_ERROR_INIT;
	char location[64];
	struct account acc;
	json_t *events = NULL;
	enum attempt rc = DONE;
	int from_db = 1;

	/* load: an id of our own making names no account yet */
	if (r->generated)
		account_init(&acc, r->cmd.account_id);
	else if (account_repo_load(repo, db, r->cmd.account_id, fresh, &acc,
				   &from_db, &err) < 0)
		goto fail;
	/* decide */
	events = account_decide_open(&acc, &r->cmd, &err);
	if (!events) {
		rc = reject(cr, db, from_db, &err);
		goto out;
	}
	/* append, respond */
	snprintf(location, sizeof(location), "/accounts/%s", acc.id);
	rc = append_one(cr, db, &acc, ES_NO_STREAM, events, NULL, location);
	goto out;
fail:
	cmd_reply_error(cr, &err);
out:
	json_decref(events);
	es_error_release(&err);
	return rc;
}

static void open_run(struct cmd_request *cr, PGconn *db)
{
	struct open_req *r = (struct open_req *)cr;

	run_attempts(cr, db, open_attempt, r->cmd.account_id, NULL);
}

void cmd_post_open(struct es_request *req)
{
	struct es_error err = ES_ERROR_INIT;
	struct open_req *r;

	r = (struct open_req *)cmd_request_new(req, sizeof(*r), "open",
					       open_run);
	if (!r)
		return;
	/* parse and validate; the rest runs on a worker */
	if (no_if_match(&r->base, &err) < 0 ||
	    cmd_parse_open(req->json, &r->cmd, &err) < 0) {
		fail(req, &r->base, &err);
		return;
	}
	r->generated = !json_object_get(req->json, "account_id") ||
		       json_is_null(json_object_get(req->json, "account_id"));
	cmd_request_submit(&r->base);
}

/* ---- deposit and withdraw ---- */

static enum attempt money_attempt(struct cmd_request *cr, PGconn *db, int fresh)
{
	struct money_req *r = (struct money_req *)cr;
	struct account_repo *repo = cr->ctx->repo;
	struct es_error err = ES_ERROR_INIT;
	struct account acc;
	json_t *events = NULL;
	enum attempt rc = DONE;
	int from_db;

	/* load */
	if (account_repo_load(repo, db, r->cmd.account_id, fresh, &acc,
			      &from_db, &err) < 0)
		goto fail;
	/* decide */
	if (check_version(cr, &acc, r->cmd.expected_version, &err) == 0)
		events = r->withdraw
				 ? account_decide_withdraw(&acc, &r->cmd, &err)
				 : account_decide_deposit(&acc, &r->cmd, &err);
	if (!events) {
		rc = reject(cr, db, from_db, &err);
		goto out;
	}
	/* append, respond */
	rc = append_one(
		cr, db, &acc, expected_of(&acc), events,
		json_pack("{s:O}", "balance",
			  json_object_get(
				  json_object_get(json_array_get(events, 0),
						  "data"),
				  "balance_after")),
		NULL);
	goto out;
fail:
	cmd_reply_error(cr, &err);
out:
	json_decref(events);
	es_error_release(&err);
	return rc;
}

static void money_run(struct cmd_request *cr, PGconn *db)
{
	struct money_req *r = (struct money_req *)cr;

	run_attempts(cr, db, money_attempt, r->cmd.account_id, NULL);
}

static void post_money(struct es_request *req, int withdraw)
{
	struct es_error err = ES_ERROR_INIT;
	struct money_req *r;

	r = (struct money_req *)cmd_request_new(
		req, sizeof(*r), withdraw ? "withdraw" : "deposit", money_run);
	if (!r)
		return;
	r->withdraw = withdraw;
	/* parse and validate; the rest runs on a worker */
	if (cmd_parse_money(es_request_param(req, "id"), req->json, &r->cmd,
			    &err) < 0)
		fail(req, &r->base, &err);
	else
		cmd_request_submit(&r->base);
}

void cmd_post_deposit(struct es_request *req)
{
	post_money(req, 0);
}

void cmd_post_withdraw(struct es_request *req)
{
	post_money(req, 1);
}

/* ---- close ---- */

static enum attempt close_attempt(struct cmd_request *cr, PGconn *db, int fresh)
{
	struct close_req *r = (struct close_req *)cr;
	struct account_repo *repo = cr->ctx->repo;
	struct es_error err = ES_ERROR_INIT;
	struct account acc;
	json_t *events = NULL;
	enum attempt rc = DONE;
	int from_db;

	/* load */
	if (account_repo_load(repo, db, r->cmd.account_id, fresh, &acc,
			      &from_db, &err) < 0)
		goto fail;
	/* decide */
	if (check_version(cr, &acc, r->cmd.expected_version, &err) == 0)
		events = account_decide_close(&acc, &r->cmd, &err);
	if (!events) {
		rc = reject(cr, db, from_db, &err);
		goto out;
	}
	/* append, respond */
	rc = append_one(cr, db, &acc, expected_of(&acc), events, NULL, NULL);
	goto out;
fail:
	cmd_reply_error(cr, &err);
out:
	json_decref(events);
	es_error_release(&err);
	return rc;
}

static void close_run(struct cmd_request *cr, PGconn *db)
{
	struct close_req *r = (struct close_req *)cr;

	run_attempts(cr, db, close_attempt, r->cmd.account_id, NULL);
}

void cmd_post_close(struct es_request *req)
{
	struct es_error err = ES_ERROR_INIT;
	struct close_req *r;

	r = (struct close_req *)cmd_request_new(req, sizeof(*r), "close",
						close_run);
	if (!r)
		return;
	/* parse and validate; the rest runs on a worker */
	if (cmd_parse_close(es_request_param(req, "id"), req->json, &r->cmd,
			    &err) < 0)
		fail(req, &r->base, &err);
	else
		cmd_request_submit(&r->base);
}

/* ---- transfer ---- */

static enum attempt transfer_attempt(struct cmd_request *cr, PGconn *db,
				     int fresh)
{
	struct transfer_req *r = (struct transfer_req *)cr;
	struct account_repo *repo = cr->ctx->repo;
	struct es_error err = ES_ERROR_INIT;
	struct es_stream_append s[2] = { { 0 }, { 0 } };
	char token[ES_APPEND_TOKEN_MAX];
	struct account from, to;
	json_t *from_events = NULL, *to_events = NULL;
	enum attempt rc = DONE;
	int from_db, to_db;

	/* load */
	if (account_repo_load(repo, db, r->cmd.from, fresh, &from, &from_db,
			      &err) < 0 ||
	    account_repo_load(repo, db, r->cmd.to, fresh, &to, &to_db, &err) <
		    0)
		goto fail;
	/* decide */
	if (account_decide_transfer(&from, &to, &r->cmd, &from_events,
				    &to_events, &err) < 0) {
		rc = reject(cr, db, from_db && to_db, &err);
		goto out;
	}
	/* append: both streams in one statement, all or nothing */
	s[0].stream_id = from.stream_id;
	s[0].expected = expected_of(&from);
	s[0].events = from_events;
	s[1].stream_id = to.stream_id;
	s[1].expected = expected_of(&to);
	s[1].events = to_events;
	if (cmd_add_metadata(cr, from_events, &err) < 0 ||
	    cmd_add_metadata(cr, to_events, &err) < 0)
		goto fail;
	if (cmd_append(cr, db, s, 2, token, &err) < 0) {
		rc = append_failed(cr, repo, from.id, to.id, &err);
		goto out;
	}
	/* respond */
	cmd_reply(cr, 201,
		  json_pack("{s:s, s:I, s:I, s:s}", "transfer_id",
			    r->cmd.transfer_id, "from_version",
			    (json_int_t)s[0].version, "to_version",
			    (json_int_t)s[1].version, "position", token));
	commit(cr, db, repo, &from, from_events, &to, to_events);
	goto out;
fail:
	cmd_reply_error(cr, &err);
out:
	json_decref(from_events);
	json_decref(to_events);
	es_error_release(&err);
	return rc;
}

static void transfer_run(struct cmd_request *cr, PGconn *db)
{
	struct transfer_req *r = (struct transfer_req *)cr;

	run_attempts(cr, db, transfer_attempt, r->cmd.from, r->cmd.to);
}

void cmd_post_transfer(struct es_request *req)
{
	struct es_error err = ES_ERROR_INIT;
	struct transfer_req *r;

	r = (struct transfer_req *)cmd_request_new(req, sizeof(*r), "transfer",
						   transfer_run);
	if (!r)
		return;
	/* parse and validate; the rest runs on a worker */
	if (no_if_match(&r->base, &err) < 0 ||
	    cmd_parse_transfer(req->json, &r->cmd, &err) < 0)
		fail(req, &r->base, &err);
	else
		cmd_request_submit(&r->base);
}
