/*
 * account_decide.h - the rules of the account domain (SPEC section 4):
 * pure functions of (state, command) to events or a rule error, no I/O.
 */
#ifndef ACCOUNT_DECIDE_H
#define ACCOUNT_DECIDE_H

#include <jansson.h>

#include "account_state.h"
#include "es_error.h"

/* The 404 detail of an account that does not exist, "%s" its id. */
#define ACCOUNT_NOT_FOUND "account '%s' does not exist"

/* Commands, as cmd_parse.h fills them. Strings are borrowed. */
struct open_cmd {
	char account_id[37]; /* given or generated */
	int generated; /* the id is ours: no account can have it yet */
	const char *owner;
	char currency[4];
	long long overdraft_limit;
};

struct money_cmd {
	char account_id[37];
	long long amount;
	const char *reference; /* or NULL */
	long long expected_version; /* -1: not given */
};

struct transfer_cmd {
	char transfer_id[37]; /* given or generated */
	char from[37];
	char to[37];
	long long amount;
	const char *reference; /* or NULL */
};

struct close_cmd {
	char account_id[37];
	long long expected_version; /* -1: not given */
};

struct overdraft_cmd {
	char account_id[37];
	long long overdraft_limit; /* the new limit */
	long long expected_version; /* -1: not given */
};

/*
 * Each returns the events to append to the account's stream as a new
 * array [{type, data}], or NULL with:
 * ES_ENOTFOUND for an account that does not exist (status ACCOUNT_NONE),
 * ES_ECONFLICT for a rule the current state breaks (already exists,
 * closed, insufficient funds, currency mismatch, non-zero balance at
 * close), ES_EINVALID for a rule of the command alone (same account).
 * Every money event's data carries "balance_after".
 * ownership: borrows everything; caller frees the array with json_decref().
 */
json_t *account_decide_open(const struct account *acc,
			    const struct open_cmd *cmd, struct es_error *err);
json_t *account_decide_deposit(const struct account *acc,
			       const struct money_cmd *cmd,
			       struct es_error *err);
json_t *account_decide_withdraw(const struct account *acc,
				const struct money_cmd *cmd,
				struct es_error *err);
json_t *account_decide_close(const struct account *acc,
			     const struct close_cmd *cmd, struct es_error *err);

/*
 * A new overdraft limit: OverdraftLimitChanged {account_id,
 * overdraft_limit, previous_overdraft_limit, balance}. The limit is
 * checked as an opening's is (0..ACCOUNT_AMOUNT_MAX, ES_EINVALID), then
 * existence (ES_ENOTFOUND), closed (ES_ECONFLICT), and a balance that
 * the new limit would leave below its floor (balance < -limit,
 * ES_ECONFLICT naming both): balance >= -overdraft_limit always holds.
 */
json_t *account_decide_overdraft_limit(const struct account *acc,
				       const struct overdraft_cmd *cmd,
				       struct es_error *err);

/*
 * A transfer appends TransferSent to `from`, TransferReceived to `to`
 * and TransferMade to its own stream (es_event.h), each array into
 * events[0..3) in that order. `recorded`: the transfer's stream has
 * events already, ES_ECONFLICT naming the transfer id (checked after
 * the command's own rules and the accounts' existence). Returns 0, or
 * -1 (all three NULL) with an error as above.
 * ownership: caller frees the three arrays with json_decref().
 */
int account_decide_transfer(const struct account *from,
			    const struct account *to,
			    const struct transfer_cmd *cmd, int recorded,
			    json_t *events[3], struct es_error *err);

#endif
