/*
 * cmd_request.h - one command request in flight: its metadata (read from
 * the headers on the HTTP thread), its parsed command, the runner's
 * working state, and the answer, which goes out once.
 */
#ifndef CMD_REQUEST_H
#define CMD_REQUEST_H

#include <jansson.h>

#include "account_state.h"
#include "cmd_kinds.h"
#include "cmd_pool.h"
#include "cmd_round.h"
#include "es_error.h"

struct es_request;

#define CMD_ID_MAX  128 /* correlation, causation ids, principal */
#define CMD_KEY_MAX 255 /* Idempotency-Key */

struct cmd_request {
	struct cmd_job job; /* first: the pool hands it back */
	struct es_request *req; /* borrowed until es_http_resume() */
	const struct cmd_kind *kind;
	struct cmd cmd;
	json_t *metadata; /* owned: every event's metadata */
	char command_id[37];
	char correlation_id[CMD_ID_MAX + 1];
	char key[CMD_KEY_MAX + 1]; /* Idempotency-Key, "" if none */
	/* whose key it is: the verified principal's (es_auth.h) */
	char iss[ES_AUTH_SUB_MAX];
	char sub[ES_AUTH_SUB_MAX];
	char fingerprint[65]; /* sha256 hex, from the key lookup */
	/* the answer being built */
	unsigned int status;
	json_t *body; /* owned: JSON or problem object */
	json_t *headers; /* owned: {name: value} sent and stored along */
	int retry_after; /* with 503 */
	int replayed; /* answered from a stored key */
	/* the runner's (cmd_runner.c) */
	struct cmd_ticket ticket; /* what the round's planning knows */
	int looked_up; /* the key was looked up and is not stored yet */
	enum cmd_step step; /* in this round */
	int written; /* this round's append is in its transaction */
	enum cmd_load load; /* how acc[] was found */
	struct account acc[2]; /* the state decided on */
	struct cmd_decision decision; /* what it appends */
};

/*
 * A request of `kind` for `req`: reads the metadata headers
 * (X-Correlation-Id, X-Causation-Id, traceparent; the principal is the
 * verified token's, req->principal),
 * Idempotency-Key (400 if not 1-255 printable ASCII) and If-Match (400
 * if malformed), sets X-Correlation-Id on the answer, then parses the
 * command with kind->parse(). On failure answers `req` itself and
 * returns NULL.
 * ownership: caller frees with cmd_request_send() (the answer) or
 * cmd_request_fail().
 */
struct cmd_request *cmd_request_new(struct es_request *req,
				    const struct cmd_kind *kind);

/*
 * Answer `req` with `err` on the HTTP thread (it never reached a
 * worker) and free `cr` (may be NULL). ownership: borrows `err`.
 */
void cmd_request_fail(struct es_request *req, struct cmd_request *cr,
		      const struct es_error *err);

/* Add the request's metadata to every event of `events` ([{type, data}]). */
int cmd_request_add_metadata(struct cmd_request *cr, json_t *events,
			     struct es_error *err);

/* Set the answer: `status`, `body` (taken) and `headers` (borrowed). */
void cmd_reply(struct cmd_request *cr, unsigned int status, json_t *body,
	       const json_t *headers);
/* Set the answer to the problem of `err` (ETag with a 412's version). */
void cmd_reply_error(struct cmd_request *cr, const struct es_error *err);

/* Send the answer, count it, resume the request and free `cr`. */
void cmd_request_send(struct cmd_request *cr);

#endif
