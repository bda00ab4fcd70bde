/*
 * cmd_accounts.c - the account commands: open, deposit, withdraw, close,
 * transfer.
 *
 * Each route parses and validates on the HTTP thread, then a worker runs
 * the command's steps in group-commit rounds (cmd_batch.h) under the
 * account's lock stripe (two for a transfer): decide() loads (from the
 * cache when it can) and decides, appended() answers from what the store
 * wrote, settled() caches the state the events lead to once they have
 * committed, or forgets it. A rejection (404, 409, 412) is only ever
 * decided on state loaded from the database, so a decision that would
 * reject on cached state asks for another round (CMD_AGAIN) that loads
 * afresh. A version conflict from the store does the same: another
 * process appended, the next decision builds on what it wrote, up to
 * ctx->retries decisions.
 */
#include "cmd_accounts.h"

#include <stdio.h>
#include <string.h>

#include "account_state.h"
#include "account_decide.h"
#include "account_repo.h"
#include "cmd_parse.h"
#include "cmd_routes.h"
#include "es_http.h"
#include "es_log.h"
#include "es_store.h"

#define GAVE_UP "account '%s' changed too often to decide; try again"

/* What an account command decided on, and what it appends. */
struct decision {
	struct account acc;
	json_t *events; /* owned, or NULL */
};

struct open_req {
	struct cmd_request base;
	struct open_cmd cmd;
	int generated; /* the id is ours: no such account can exist */
	struct decision d;
};

struct money_req {
	struct cmd_request base;
	struct money_cmd cmd;
	int withdraw;
	struct decision d;
};

struct close_req {
	struct cmd_request base;
	struct close_cmd cmd;
	struct decision d;
};

struct transfer_req {
	struct cmd_request base;
	struct transfer_cmd cmd;
	struct decision from, to;
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
 * Idempotency-Key); on cached state it calls for a fresh decision.
 */
static enum cmd_step reject(struct cmd_request *cr, int fresh,
			    const struct es_error *err)
{
	if (!fresh && (err->code == ES_ENOTFOUND || err->code == ES_ECONFLICT ||
		       err->code == ES_EPRECONDITION))
		return CMD_AGAIN;
	cmd_reply_error(cr, err);
	return CMD_DONE;
}

/* The answer is `err` (a failure to load, say). */
static enum cmd_step fail(struct cmd_request *cr, const struct es_error *err)
{
	cmd_reply_error(cr, err);
	return CMD_DONE;
}

/* Drop what an earlier decision appended. */
static void reset(struct decision *d)
{
	json_decref(d->events);
	d->events = NULL;
}

/*
 * Ask to append `d->events` (with the request's metadata) to the
 * account's stream after `expected`, as cr->streams[i].
 */
static enum cmd_step to_append(struct cmd_request *cr, struct decision *d,
			       long long expected)
{
	struct es_error err = ES_ERROR_INIT;
	struct es_stream_append *s = &cr->streams[cr->nstreams];

	if (cmd_add_metadata(cr, d->events, &err) < 0) {
		cmd_reply_error(cr, &err);
		es_error_release(&err);
		return CMD_DONE;
	}
	s->stream_id = d->acc.stream_id;
	s->expected = expected;
	s->events = d->events;
	s->version = 0;
	cr->nstreams++;
	return CMD_APPEND;
}

/*
 * A failed append: a version conflict means the state we decided on is
 * gone (settled() forgot it), so decide again; anything else is the
 * answer.
 */
static enum cmd_step append_failed(struct cmd_request *cr,
				   const struct es_error *err)
{
	if (err->code == ES_ECONFLICT)
		return CMD_AGAIN;
	cmd_reply_error(cr, err);
	return CMD_DONE;
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
 * The decision's events committed: cache the state they lead to; else
 * forget the account, as what we decided on may be stale.
 */
static void settle(struct account_repo *repo, struct decision *d, int committed)
{
	if (committed && d->events && fold(&d->acc, d->events, NULL) == 0)
		account_repo_store(repo, &d->acc);
	else
		account_repo_forget(repo, d->acc.id);
}

/*
 * The 201 of a one-account command: {account_id, version, position,
 * ...extra} with ETag (and Location when given).
 * ownership: takes `extra` (may be NULL).
 */
static enum cmd_step answer_one(struct cmd_request *cr, const char *token,
				const struct account *acc, json_t *extra,
				const char *location)
{
	char etag[32];
	json_t *body;

	body = json_pack("{s:s, s:I, s:s}", "account_id", acc->id, "version",
			 (json_int_t)cr->streams[0].version, "position", token);
	if (body && extra)
		json_object_update(body, extra);
	json_decref(extra);
	cmd_reply(cr, 201, body);
	if (location)
		cmd_reply_header(cr, "Location", location);
	snprintf(etag, sizeof(etag), "\"%lld\"", cr->streams[0].version);
	cmd_reply_header(cr, "ETag", etag);
	return CMD_DONE;
}

/* The request's own failure on the HTTP thread: answer and free. */
static void fail_early(struct es_request *req, struct cmd_request *cr,
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

static enum cmd_step open_decide(struct cmd_request *cr, PGconn *db, int fresh)
{
	struct open_req *r = (struct open_req *)cr;
	struct es_error err = ES_ERROR_INIT;
	enum cmd_step step;
	int from_db = 1;

	reset(&r->d);
	/* load: an id of our own making names no account yet */
	if (r->generated)
		account_init(&r->d.acc, r->cmd.account_id);
	else if (account_repo_load(cr->ctx->repo, db, r->cmd.account_id, fresh,
				   &r->d.acc, &from_db, &err) < 0) {
		step = fail(cr, &err);
		goto out;
	}
	/* decide */
	r->d.events = account_decide_open(&r->d.acc, &r->cmd, &err);
	step = r->d.events ? to_append(cr, &r->d, ES_NO_STREAM)
			   : reject(cr, from_db, &err);
out:
	es_error_release(&err);
	return step;
}

static enum cmd_step open_appended(struct cmd_request *cr, const char *token,
				   const struct es_error *err)
{
	struct open_req *r = (struct open_req *)cr;
	char location[64];

	if (err)
		return append_failed(cr, err);
	snprintf(location, sizeof(location), "/accounts/%s", r->d.acc.id);
	return answer_one(cr, token, &r->d.acc, NULL, location);
}

static void open_settled(struct cmd_request *cr, int committed)
{
	struct open_req *r = (struct open_req *)cr;

	settle(cr->ctx->repo, &r->d, committed);
}

static void open_release(struct cmd_request *cr)
{
	reset(&((struct open_req *)cr)->d);
}

static const struct cmd_steps open_steps = {
	.decide = open_decide,
	.appended = open_appended,
	.settled = open_settled,
	.release = open_release,
	.gave_up = GAVE_UP,
};

void cmd_post_open(struct es_request *req)
{
	struct es_error err = ES_ERROR_INIT;
	struct open_req *r;

	r = (struct open_req *)cmd_request_new(req, sizeof(*r), "open",
					       &open_steps);
	if (!r)
		return;
	/* parse and validate; the rest runs on a worker */
	if (no_if_match(&r->base, &err) < 0 ||
	    cmd_parse_open(req->json, &r->cmd, &err) < 0) {
		fail_early(req, &r->base, &err);
		return;
	}
	r->generated = !json_object_get(req->json, "account_id") ||
		       json_is_null(json_object_get(req->json, "account_id"));
	r->base.lock[0] = r->cmd.account_id;
	cmd_request_submit(&r->base);
}

/* ---- deposit and withdraw ---- */

static enum cmd_step money_decide(struct cmd_request *cr, PGconn *db, int fresh)
{
	struct money_req *r = (struct money_req *)cr;
	struct es_error err = ES_ERROR_INIT;
	enum cmd_step step;
	int from_db;

	reset(&r->d);
	/* load */
	if (account_repo_load(cr->ctx->repo, db, r->cmd.account_id, fresh,
			      &r->d.acc, &from_db, &err) < 0) {
		step = fail(cr, &err);
		goto out;
	}
	/* decide */
	if (check_version(cr, &r->d.acc, r->cmd.expected_version, &err) == 0)
		r->d.events = r->withdraw
				      ? account_decide_withdraw(&r->d.acc,
								&r->cmd, &err)
				      : account_decide_deposit(&r->d.acc,
							       &r->cmd, &err);
	step = r->d.events ? to_append(cr, &r->d, expected_of(&r->d.acc))
			   : reject(cr, from_db, &err);
out:
	es_error_release(&err);
	return step;
}

static enum cmd_step money_appended(struct cmd_request *cr, const char *token,
				    const struct es_error *err)
{
	struct money_req *r = (struct money_req *)cr;
	const json_t *data;

	if (err)
		return append_failed(cr, err);
	data = json_object_get(json_array_get(r->d.events, 0), "data");
	return answer_one(cr, token, &r->d.acc,
			  json_pack("{s:O}", "balance",
				    json_object_get(data, "balance_after")),
			  NULL);
}

static void money_settled(struct cmd_request *cr, int committed)
{
	struct money_req *r = (struct money_req *)cr;

	settle(cr->ctx->repo, &r->d, committed);
}

static void money_release(struct cmd_request *cr)
{
	reset(&((struct money_req *)cr)->d);
}

static const struct cmd_steps money_steps = {
	.decide = money_decide,
	.appended = money_appended,
	.settled = money_settled,
	.release = money_release,
	.gave_up = GAVE_UP,
};

static void post_money(struct es_request *req, int withdraw)
{
	struct es_error err = ES_ERROR_INIT;
	struct money_req *r;

	r = (struct money_req *)cmd_request_new(
		req, sizeof(*r), withdraw ? "withdraw" : "deposit",
		&money_steps);
	if (!r)
		return;
	r->withdraw = withdraw;
	/* parse and validate; the rest runs on a worker */
	if (cmd_parse_money(es_request_param(req, "id"), req->json, &r->cmd,
			    &err) < 0) {
		fail_early(req, &r->base, &err);
		return;
	}
	r->base.lock[0] = r->cmd.account_id;
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

static enum cmd_step close_decide(struct cmd_request *cr, PGconn *db, int fresh)
{
	struct close_req *r = (struct close_req *)cr;
	struct es_error err = ES_ERROR_INIT;
	enum cmd_step step;
	int from_db;

	reset(&r->d);
	/* load */
	if (account_repo_load(cr->ctx->repo, db, r->cmd.account_id, fresh,
			      &r->d.acc, &from_db, &err) < 0) {
		step = fail(cr, &err);
		goto out;
	}
	/* decide */
	if (check_version(cr, &r->d.acc, r->cmd.expected_version, &err) == 0)
		r->d.events = account_decide_close(&r->d.acc, &r->cmd, &err);
	step = r->d.events ? to_append(cr, &r->d, expected_of(&r->d.acc))
			   : reject(cr, from_db, &err);
out:
	es_error_release(&err);
	return step;
}

static enum cmd_step close_appended(struct cmd_request *cr, const char *token,
				    const struct es_error *err)
{
	struct close_req *r = (struct close_req *)cr;

	if (err)
		return append_failed(cr, err);
	return answer_one(cr, token, &r->d.acc, NULL, NULL);
}

static void close_settled(struct cmd_request *cr, int committed)
{
	struct close_req *r = (struct close_req *)cr;

	settle(cr->ctx->repo, &r->d, committed);
}

static void close_release(struct cmd_request *cr)
{
	reset(&((struct close_req *)cr)->d);
}

static const struct cmd_steps close_steps = {
	.decide = close_decide,
	.appended = close_appended,
	.settled = close_settled,
	.release = close_release,
	.gave_up = GAVE_UP,
};

void cmd_post_close(struct es_request *req)
{
	struct es_error err = ES_ERROR_INIT;
	struct close_req *r;

	r = (struct close_req *)cmd_request_new(req, sizeof(*r), "close",
						&close_steps);
	if (!r)
		return;
	/* parse and validate; the rest runs on a worker */
	if (cmd_parse_close(es_request_param(req, "id"), req->json, &r->cmd,
			    &err) < 0) {
		fail_early(req, &r->base, &err);
		return;
	}
	r->base.lock[0] = r->cmd.account_id;
	cmd_request_submit(&r->base);
}

/* ---- transfer ---- */

static enum cmd_step transfer_decide(struct cmd_request *cr, PGconn *db,
				     int fresh)
{
	struct transfer_req *r = (struct transfer_req *)cr;
	struct account_repo *repo = cr->ctx->repo;
	struct es_error err = ES_ERROR_INIT;
	enum cmd_step step;
	int from_db, to_db;

	reset(&r->from);
	reset(&r->to);
	/* load */
	if (account_repo_load(repo, db, r->cmd.from, fresh, &r->from.acc,
			      &from_db, &err) < 0 ||
	    account_repo_load(repo, db, r->cmd.to, fresh, &r->to.acc, &to_db,
			      &err) < 0) {
		step = fail(cr, &err);
		goto out;
	}
	/* decide */
	if (account_decide_transfer(&r->from.acc, &r->to.acc, &r->cmd,
				    &r->from.events, &r->to.events, &err) < 0) {
		step = reject(cr, from_db && to_db, &err);
		goto out;
	}
	/* append: both streams, all or nothing */
	step = to_append(cr, &r->from, expected_of(&r->from.acc));
	if (step == CMD_APPEND)
		step = to_append(cr, &r->to, expected_of(&r->to.acc));
out:
	es_error_release(&err);
	return step;
}

static enum cmd_step transfer_appended(struct cmd_request *cr,
				       const char *token,
				       const struct es_error *err)
{
	struct transfer_req *r = (struct transfer_req *)cr;

	if (err)
		return append_failed(cr, err);
	cmd_reply(cr, 201,
		  json_pack("{s:s, s:I, s:I, s:s}", "transfer_id",
			    r->cmd.transfer_id, "from_version",
			    (json_int_t)cr->streams[0].version, "to_version",
			    (json_int_t)cr->streams[1].version, "position",
			    token));
	return CMD_DONE;
}

static void transfer_settled(struct cmd_request *cr, int committed)
{
	struct transfer_req *r = (struct transfer_req *)cr;

	settle(cr->ctx->repo, &r->from, committed);
	settle(cr->ctx->repo, &r->to, committed);
}

static void transfer_release(struct cmd_request *cr)
{
	struct transfer_req *r = (struct transfer_req *)cr;

	reset(&r->from);
	reset(&r->to);
}

static const struct cmd_steps transfer_steps = {
	.decide = transfer_decide,
	.appended = transfer_appended,
	.settled = transfer_settled,
	.release = transfer_release,
	.gave_up = GAVE_UP,
};

void cmd_post_transfer(struct es_request *req)
{
	struct es_error err = ES_ERROR_INIT;
	struct transfer_req *r;

	r = (struct transfer_req *)cmd_request_new(req, sizeof(*r), "transfer",
						   &transfer_steps);
	if (!r)
		return;
	/* parse and validate; the rest runs on a worker */
	if (no_if_match(&r->base, &err) < 0 ||
	    cmd_parse_transfer(req->json, &r->cmd, &err) < 0) {
		fail_early(req, &r->base, &err);
		return;
	}
	r->base.lock[0] = r->cmd.from;
	r->base.lock[1] = r->cmd.to;
	cmd_request_submit(&r->base);
}
