/*
 * cmd_kinds.c - the command descriptors: open, deposit, withdraw, close,
 * overdraft limit, transfer (the account commands, decided by
 * account_decide.h) and the
 * raw append to a stream outside the account category, which has no
 * aggregate to decide for: the store checks its expected version (409
 * with current_version, 412 when it came from If-Match) and makes a
 * retry that carries the same event ids answer like the first append.
 */
#include "cmd_kinds.h"

#include <stdio.h>
#include <string.h>

#include "es_event.h"
#include "es_http.h"

#define ACCOUNT_GAVE_UP "account '%s' changed too often to decide; try again"

void cmd_release(struct cmd *cmd)
{
	json_decref(cmd->events);
	cmd->events = NULL;
}

void cmd_decision_release(struct cmd_decision *d)
{
	for (size_t i = 0; i < d->n; i++)
		json_decref(d->events[i]);
	d->n = 0;
}

/*
 * Add `events` (taken; NULL when the decision failed) as the append to
 * `stream_id` after `expected`.
 */
static int add_stream(struct cmd_decision *d, const char *stream_id,
		      long long expected, json_t *events)
{
	if (!events)
		return -1;
	d->events[d->n] = events;
	d->streams[d->n].stream_id = stream_id;
	d->streams[d->n].expected = expected;
	d->streams[d->n].events = events;
	d->streams[d->n].version = 0;
	d->n++;
	return 0;
}

/* The expectation to append after `acc` with. */
static long long expected_of(const struct account *acc)
{
	return acc->version > 0 ? acc->version : ES_NO_STREAM;
}

/* If-Match names one existing stream's version; not for these. */
static int no_if_match(const struct cmd *cmd, struct es_error *err)
{
	if (cmd->if_match >= 0)
		return es_error_set(
			err, ES_EMALFORMED,
			"If-Match applies only to a command on one existing account");
	return 0;
}

/*
 * The client's expectations: If-Match (412) and expected_version in the
 * body (409), each against the account's version. An account that does
 * not exist is left to decide (404).
 */
static int check_version(const struct cmd *cmd, const struct account *acc,
			 long long expected, struct es_error *err)
{
	if (acc->status == ACCOUNT_NONE)
		return 0;
	if (cmd->if_match >= 0 && acc->version != cmd->if_match) {
		es_error_set(
			err, ES_EPRECONDITION,
			"account '%s' is at version %lld, If-Match wants %lld",
			acc->id, acc->version, cmd->if_match);
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

/* "\"<version>\"" into `headers` as the ETag. */
static void set_etag(json_t *headers, long long version)
{
	char etag[32];

	snprintf(etag, sizeof(etag), "\"%lld\"", version);
	json_object_set_new_nocheck(headers, "ETag", json_string_nocheck(etag));
}

/*
 * The 201 of a one-account command: {account_id, version, position,
 * `key`: `extra`} with ETag (no extra member when `key` is NULL). The id
 * (a UUID) and the token are ASCII: no UTF-8 check.
 * ownership: takes `extra` (may be NULL).
 */
static json_t *answer_one(const struct account *acc,
			  const struct cmd_decision *d, const char *token,
			  const char *key, json_t *extra, json_t *headers)
{
	json_t *body = json_object();
	int bad =
		!body ||
		json_object_set_new_nocheck(body, "account_id",
					    json_string_nocheck(acc->id)) < 0 ||
		json_object_set_new_nocheck(
			body, "version",
			json_integer((json_int_t)d->streams[0].version)) < 0 ||
		json_object_set_new_nocheck(body, "position",
					    json_string_nocheck(token)) < 0;

	if (key && !bad)
		bad = json_object_set_new_nocheck(body, key, extra) < 0;
	else
		json_decref(extra);
	if (bad) {
		json_decref(body);
		body = NULL;
	}
	set_etag(headers, d->streams[0].version);
	return body;
}

/* ---- open ---- */

static int open_parse(const struct es_request *req, struct cmd *cmd,
		      struct es_error *err)
{
	if (no_if_match(cmd, err) < 0)
		return -1;
	return cmd_parse_open(req->json, &cmd->u.open, err);
}

/*
 * A holder acts on its own accounts only: another's is answered as if it
 * did not exist (account_decide.h's 404, word for word), before anything
 * else is checked, so that neither an answer nor its timing tells.
 */
static int check_holder(const struct cmd *cmd, const struct account *acc,
			struct es_error *err)
{
	if (!cmd->holder[0] || acc->status == ACCOUNT_NONE ||
	    strcmp(acc->owner, cmd->holder) == 0)
		return 0;
	return es_error_set(err, ES_ENOTFOUND, ACCOUNT_NOT_FOUND, acc->id);
}

static enum cmd_load open_streams(const struct cmd *cmd, const char *ids[2])
{
	ids[0] = cmd->u.open.account_id;
	ids[1] = NULL;
	/* an id of our own making names no account yet */
	return cmd->u.open.generated ? CMD_LOAD_NEW : CMD_LOAD_ACCOUNTS;
}

static int open_decide(const struct cmd *cmd, const struct account acc[2],
		       struct cmd_decision *d, struct es_error *err)
{
	if (cmd->holder[0] && strcmp(cmd->u.open.owner, cmd->holder) != 0)
		return es_error_set(err, ES_EFORBIDDEN,
				    "a holder opens accounts for itself only: "
				    "owner must be '%.100s'",
				    cmd->holder);
	if (cmd->holder[0] && cmd->u.open.overdraft_limit != 0)
		return es_error_set(
			err, ES_EFORBIDDEN,
			"a holder opens accounts without an "
			"overdraft; a manager sets overdraft limits");
	return add_stream(d, acc[0].stream_id, ES_NO_STREAM,
			  account_decide_open(&acc[0], &cmd->u.open, err));
}

static json_t *open_answer(const struct cmd *cmd, const struct account acc[2],
			   const struct cmd_decision *d, const char *token,
			   json_t *headers)
{
	char location[64];

	(void)cmd;
	snprintf(location, sizeof(location), "/accounts/%s", acc[0].id);
	json_object_set_new(headers, "Location", json_string(location));
	return answer_one(&acc[0], d, token, NULL, NULL, headers);
}

const struct cmd_kind cmd_kind_open = {
	.name = "open",
	.parse = open_parse,
	.streams = open_streams,
	.decide = open_decide,
	.answer = open_answer,
	.gave_up = ACCOUNT_GAVE_UP,
};

/* ---- deposit and withdraw ---- */

static int money_parse(const struct es_request *req, struct cmd *cmd,
		       struct es_error *err)
{
	return cmd_parse_money(es_request_param(req, "id"), req->json,
			       &cmd->u.money, err);
}

static enum cmd_load money_streams(const struct cmd *cmd, const char *ids[2])
{
	ids[0] = cmd->u.money.account_id;
	ids[1] = NULL;
	return CMD_LOAD_ACCOUNTS;
}

static int deposit_decide(const struct cmd *cmd, const struct account acc[2],
			  struct cmd_decision *d, struct es_error *err)
{
	if (check_holder(cmd, &acc[0], err) < 0 ||
	    check_version(cmd, &acc[0], cmd->u.money.expected_version, err) < 0)
		return -1;
	return add_stream(d, acc[0].stream_id, expected_of(&acc[0]),
			  account_decide_deposit(&acc[0], &cmd->u.money, err));
}

static int withdraw_decide(const struct cmd *cmd, const struct account acc[2],
			   struct cmd_decision *d, struct es_error *err)
{
	if (check_holder(cmd, &acc[0], err) < 0 ||
	    check_version(cmd, &acc[0], cmd->u.money.expected_version, err) < 0)
		return -1;
	return add_stream(d, acc[0].stream_id, expected_of(&acc[0]),
			  account_decide_withdraw(&acc[0], &cmd->u.money, err));
}

static json_t *money_answer(const struct cmd *cmd, const struct account acc[2],
			    const struct cmd_decision *d, const char *token,
			    json_t *headers)
{
	const json_t *data =
		json_object_get(json_array_get(d->events[0], 0), "data");

	(void)cmd;
	return answer_one(
		&acc[0], d, token, "balance",
		json_incref(json_object_get(data, ES_F_BALANCE_AFTER)),
		headers);
}

const struct cmd_kind cmd_kind_deposit = {
	.name = "deposit",
	.parse = money_parse,
	.streams = money_streams,
	.decide = deposit_decide,
	.answer = money_answer,
	.gave_up = ACCOUNT_GAVE_UP,
};

const struct cmd_kind cmd_kind_withdraw = {
	.name = "withdraw",
	.parse = money_parse,
	.streams = money_streams,
	.decide = withdraw_decide,
	.answer = money_answer,
	.gave_up = ACCOUNT_GAVE_UP,
};

/* ---- close ---- */

static int close_parse(const struct es_request *req, struct cmd *cmd,
		       struct es_error *err)
{
	return cmd_parse_close(es_request_param(req, "id"), req->json,
			       &cmd->u.close, err);
}

static enum cmd_load close_streams(const struct cmd *cmd, const char *ids[2])
{
	ids[0] = cmd->u.close.account_id;
	ids[1] = NULL;
	return CMD_LOAD_ACCOUNTS;
}

static int close_decide(const struct cmd *cmd, const struct account acc[2],
			struct cmd_decision *d, struct es_error *err)
{
	if (check_holder(cmd, &acc[0], err) < 0 ||
	    check_version(cmd, &acc[0], cmd->u.close.expected_version, err) < 0)
		return -1;
	return add_stream(d, acc[0].stream_id, expected_of(&acc[0]),
			  account_decide_close(&acc[0], &cmd->u.close, err));
}

static json_t *close_answer(const struct cmd *cmd, const struct account acc[2],
			    const struct cmd_decision *d, const char *token,
			    json_t *headers)
{
	(void)cmd;
	return answer_one(&acc[0], d, token, NULL, NULL, headers);
}

const struct cmd_kind cmd_kind_close = {
	.name = "close",
	.parse = close_parse,
	.streams = close_streams,
	.decide = close_decide,
	.answer = close_answer,
	.gave_up = ACCOUNT_GAVE_UP,
};

/* ---- overdraft limit ---- */

static int overdraft_parse(const struct es_request *req, struct cmd *cmd,
			   struct es_error *err)
{
	return cmd_parse_overdraft_limit(es_request_param(req, "id"), req->json,
					 &cmd->u.overdraft, err);
}

static enum cmd_load overdraft_streams(const struct cmd *cmd,
				       const char *ids[2])
{
	ids[0] = cmd->u.overdraft.account_id;
	ids[1] = NULL;
	return CMD_LOAD_ACCOUNTS;
}

static int overdraft_decide(const struct cmd *cmd, const struct account acc[2],
			    struct cmd_decision *d, struct es_error *err)
{
	if (check_version(cmd, &acc[0], cmd->u.overdraft.expected_version,
			  err) < 0)
		return -1;
	return add_stream(d, acc[0].stream_id, expected_of(&acc[0]),
			  account_decide_overdraft_limit(
				  &acc[0], &cmd->u.overdraft, err));
}

/* {account_id, version, position, overdraft_limit} */
static json_t *overdraft_answer(const struct cmd *cmd,
				const struct account acc[2],
				const struct cmd_decision *d, const char *token,
				json_t *headers)
{
	return answer_one(
		&acc[0], d, token, "overdraft_limit",
		json_integer((json_int_t)cmd->u.overdraft.overdraft_limit),
		headers);
}

const struct cmd_kind cmd_kind_overdraft_limit = {
	.name = "overdraft_limit",
	.parse = overdraft_parse,
	.streams = overdraft_streams,
	.decide = overdraft_decide,
	.answer = overdraft_answer,
	.gave_up = ACCOUNT_GAVE_UP,
};

/* ---- transfer ---- */

static int transfer_parse(const struct es_request *req, struct cmd *cmd,
			  struct es_error *err)
{
	if (no_if_match(cmd, err) < 0 ||
	    cmd_parse_transfer(req->json, &cmd->u.transfer, err) < 0)
		return -1;
	snprintf(cmd->claim, sizeof(cmd->claim), "%s%s", ES_TRANSFER_PREFIX,
		 cmd->u.transfer.transfer_id);
	return 0;
}

static enum cmd_load transfer_streams(const struct cmd *cmd, const char *ids[2])
{
	ids[0] = cmd->u.transfer.from;
	ids[1] = cmd->u.transfer.to;
	return CMD_LOAD_ACCOUNTS;
}

/*
 * The accounts' streams and the transfer's own (which must not exist
 * yet), all or nothing: one append of three streams.
 */
static int transfer_decide(const struct cmd *cmd, const struct account acc[2],
			   struct cmd_decision *d, struct es_error *err)
{
	json_t *ev[3];

	/* from its own accounts, to any open one */
	if (check_holder(cmd, &acc[0], err) < 0)
		return -1;
	if (account_decide_transfer(&acc[0], &acc[1], &cmd->u.transfer,
				    cmd->claimed, ev, err) < 0)
		return -1;
	add_stream(d, acc[0].stream_id, expected_of(&acc[0]), ev[0]);
	add_stream(d, acc[1].stream_id, expected_of(&acc[1]), ev[1]);
	add_stream(d, cmd->claim, ES_NO_STREAM, ev[2]);
	return 0;
}

static json_t *transfer_answer(const struct cmd *cmd,
			       const struct account acc[2],
			       const struct cmd_decision *d, const char *token,
			       json_t *headers)
{
	(void)acc;
	(void)headers;
	return json_pack("{s:s, s:I, s:I, s:s}", "transfer_id",
			 cmd->u.transfer.transfer_id, "from_version",
			 (json_int_t)d->streams[0].version, "to_version",
			 (json_int_t)d->streams[1].version, "position", token);
}

const struct cmd_kind cmd_kind_transfer = {
	.name = "transfer",
	.parse = transfer_parse,
	.streams = transfer_streams,
	.decide = transfer_decide,
	.answer = transfer_answer,
	.gave_up = ACCOUNT_GAVE_UP,
};

/* ---- the raw append ---- */

/* 0 for "no_stream": the same expectation as version 0. */
static long long as_version(long long expected)
{
	return expected == ES_NO_STREAM ? 0 : expected;
}

/*
 * If-Match and the body's expected_version must agree; "any" in the body
 * leaves the expectation to If-Match.
 */
static int merge_if_match(struct cmd *cmd, struct es_error *err)
{
	struct raw_append_cmd *raw = &cmd->u.raw;
	long long want = cmd->if_match;

	if (want < 0)
		return 0;
	if (raw->expected == ES_ANY) {
		raw->expected = want > 0 ? want : ES_NO_STREAM;
		return 0;
	}
	if (as_version(raw->expected) != want)
		return es_error_set(
			err, ES_EMALFORMED,
			"If-Match wants version %lld but expected_version says %lld",
			want, as_version(raw->expected));
	return 0;
}

static int append_parse(const struct es_request *req, struct cmd *cmd,
			struct es_error *err)
{
	const json_t *ev;
	size_t i;

	if (cmd_parse_raw_append(es_request_param(req, "stream_id"), req->json,
				 &cmd->u.raw, err) < 0 ||
	    merge_if_match(cmd, err) < 0)
		return -1;
	/* a copy, to which the runner adds our metadata */
	cmd->events = json_deep_copy(cmd->u.raw.events);
	if (!cmd->events)
		return es_error_set(err, ES_EINTERNAL, "out of memory");
	cmd->all_ids = 1;
	json_array_foreach(cmd->events, i, ev) cmd->all_ids &=
		json_object_get(ev, "event_id") != NULL;
	return 0;
}

static enum cmd_load append_streams(const struct cmd *cmd, const char *ids[2])
{
	ids[0] = cmd->u.raw.stream_id;
	ids[1] = NULL;
	return CMD_LOAD_NONE;
}

static int append_decide(const struct cmd *cmd, const struct account acc[2],
			 struct cmd_decision *d, struct es_error *err)
{
	(void)acc;
	(void)err;
	return add_stream(d, cmd->u.raw.stream_id, cmd->u.raw.expected,
			  json_incref(cmd->events));
}

static json_t *append_answer(const struct cmd *cmd, const struct account acc[2],
			     const struct cmd_decision *d, const char *token,
			     json_t *headers)
{
	(void)cmd;
	(void)acc;
	set_etag(headers, d->streams[0].version);
	return json_pack("{s:I, s:s}", "version",
			 (json_int_t)d->streams[0].version, "position", token);
}

/*
 * A conflict may go away by itself: an "any" append lost a race for a
 * version, or (on the first decision) a twin with the same event ids
 * committed first, whose answer the next decision returns. An event id
 * that another append stored (current_version -1) stays a conflict. A
 * version conflict of an If-Match is a 412; the 409 or 412 is kept with
 * its key.
 */
static const struct es_error *append_refused(const struct cmd *cmd,
					     int attempts,
					     const struct es_error *err,
					     struct es_error *scratch)
{
	if (err->code != ES_ECONFLICT)
		return err;
	if ((cmd->u.raw.expected == ES_ANY && err->current_version >= 0) ||
	    (cmd->all_ids && attempts == 1))
		return NULL;
	if (cmd->if_match < 0 || err->current_version < 0)
		return err;
	es_error_set(scratch, ES_EPRECONDITION,
		     "stream '%s' is at version %lld, If-Match wants %lld",
		     cmd->u.raw.stream_id, err->current_version, cmd->if_match);
	scratch->current_version = err->current_version;
	return scratch;
}

const struct cmd_kind cmd_kind_append = {
	.name = "append",
	.parse = append_parse,
	.streams = append_streams,
	.decide = append_decide,
	.answer = append_answer,
	.refused = append_refused,
	.gave_up = "stream '%s' changed too often to append; try again",
};
