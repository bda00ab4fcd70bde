/*
 * cmd_kinds.h - every command the service takes, one const descriptor
 * each (SPEC sections 4 and 5): how to parse its body, which streams it
 * decides on, a pure decide over the loaded state, and how to render its
 * answer. The route table (cmd_routes.h) names a descriptor per route,
 * and one runner (cmd_runner.h) does load, decide, append, settle and
 * reply for every kind alike, single or grouped in a round.
 *
 * Nothing here does I/O: parse() runs on the HTTP thread, the rest on a
 * worker between the runner's load and its append.
 */
#ifndef CMD_KINDS_H
#define CMD_KINDS_H

#include <jansson.h>
#include <stddef.h>

#include "account_decide.h"
#include "account_state.h"
#include "cmd_parse.h"
#include "es_auth.h"
#include "es_error.h"
#include "es_store.h"

struct es_request;

/* How a command finds the state it decides on. */
enum cmd_load {
	CMD_LOAD_ACCOUNTS, /* the accounts that streams() names */
	CMD_LOAD_NEW, /* none: an account id of our own making (empty) */
	CMD_LOAD_NONE, /* no state: a raw append */
};

/* A parsed command, as a kind's parse() fills it. */
struct cmd {
	union {
		struct open_cmd open;
		struct money_cmd money;
		struct close_cmd close;
		struct overdraft_cmd overdraft;
		struct transfer_cmd transfer;
		struct raw_append_cmd raw;
	} u;
	long long if_match; /* If-Match version, -1 if none; set before parse */
	int all_ids; /* raw: every event carries an event_id */
	json_t *events; /* owned: a raw append's events, else NULL */
	/*
	 * A stream this command must be the first to write (a transfer's
	 * own, which claims its id), or "". `claimed`: the runner found it
	 * written, on fresh state; set before decide().
	 */
	char claim[64];
	int claimed;
	/*
	 * Who may be acted on: "" for any account (a manager), else the
	 * sub of a holder, whose commands reach only accounts it owns
	 * (another's answers as if it did not exist); set before parse.
	 */
	char holder[ES_AUTH_SUB_MAX];
};

/*
 * What decide() asks to append: streams[0..n), one per account in the
 * order streams() names them, then the claim's if there is one.
 */
struct cmd_decision {
	struct es_stream_append streams[3];
	json_t *events[3]; /* owned: the arrays streams[i].events points to */
	size_t n;
};

struct cmd_kind {
	const char *name; /* the metrics label: "deposit", ... */
	/*
	 * Fill `cmd` from the request's path and body (cmd->if_match is
	 * set already). 400, 404 (a path id), 422 with `err`.
	 */
	int (*parse)(const struct es_request *req, struct cmd *cmd,
		     struct es_error *err);
	/*
	 * The ids the command decides on, ids[1] NULL for one (no two
	 * commands naming the same id share a round), and how their state
	 * is found. ownership: the ids are borrowed from `cmd`.
	 */
	enum cmd_load (*streams)(const struct cmd *cmd, const char *ids[2]);
	/*
	 * Pure: the events to append, given the state of the ids (acc[i],
	 * or empty states for CMD_LOAD_NEW, unused for CMD_LOAD_NONE).
	 * Else -1 with a rejection (404, 409, 412, 422).
	 * ownership: `d` takes its arrays (caller frees with
	 * cmd_decision_release()), and borrows acc's stream ids.
	 */
	int (*decide)(const struct cmd *cmd, const struct account acc[2],
		      struct cmd_decision *d, struct es_error *err);
	/*
	 * The 201 body once `d` was written at `token` (the streams'
	 * versions set); headers (Location, ETag) go into `headers`.
	 * ownership: caller frees the body with json_decref().
	 */
	json_t *(*answer)(const struct cmd *cmd, const struct account acc[2],
			  const struct cmd_decision *d, const char *token,
			  json_t *headers);
	/*
	 * The store refused the append with `err`: NULL to decide again,
	 * else the answer (`err`, or one made in `scratch`). `attempts` are
	 * the decisions so far. NULL: ES_ECONFLICT decides again (another
	 * process appended), anything else is the answer.
	 */
	const struct es_error *(*refused)(const struct cmd *cmd, int attempts,
					  const struct es_error *err,
					  struct es_error *scratch);
	/* the 503 detail when COMMAND_RETRIES decisions did not do, "%s" the
	 * first id */
	const char *gave_up;
};

extern const struct cmd_kind cmd_kind_open;
extern const struct cmd_kind cmd_kind_deposit;
extern const struct cmd_kind cmd_kind_withdraw;
extern const struct cmd_kind cmd_kind_close;
extern const struct cmd_kind cmd_kind_overdraft_limit;
extern const struct cmd_kind cmd_kind_transfer;
extern const struct cmd_kind cmd_kind_append;

/* Free what a command owns. */
void cmd_release(struct cmd *cmd);

/* Free a decision's events and empty it. */
void cmd_decision_release(struct cmd_decision *d);

#endif
