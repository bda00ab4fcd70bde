/*
 * account_state.h - the command side's account aggregate: the state its
 * rules decide on, and how the account's events build it. (The query
 * side's read model of an account is query-service/views/account.h.)
 * Event names and payload fields are the contract of es_event.h.
 */
#ifndef ACCOUNT_STATE_H
#define ACCOUNT_STATE_H

#include <jansson.h>

#include "es_error.h"
#include "es_event.h"

#define ACCOUNT_AMOUNT_MAX    1000000000000LL /* 10^12 minor units */
#define ACCOUNT_OWNER_MAX     200 /* characters */
#define ACCOUNT_REFERENCE_MAX 200 /* characters */

enum account_status { ACCOUNT_NONE, ACCOUNT_OPEN, ACCOUNT_CLOSED };

struct account {
	char id[37]; /* lower-case UUID */
	char stream_id[48]; /* "account-<id>" */
	enum account_status status; /* ACCOUNT_NONE: no such account */
	long long version; /* the stream's version, 0 when absent */
	long long balance; /* minor units */
	long long overdraft_limit; /* >= 0; balance may go down to -limit */
	char currency[4];
	char owner[4 * ACCOUNT_OWNER_MAX + 1]; /* UTF-8 */
};

/* An empty state (ACCOUNT_NONE, version 0) for account `id`. */
void account_init(struct account *acc, const char *id);

/*
 * Fold one event of the account's stream into `acc` (pure): AccountOpened
 * sets the opening facts, money events set the balance from their
 * "balance_after", OverdraftLimitChanged sets the limit and the balance
 * it states, AccountClosed closes (at balance 0, which closing needs).
 * `version` is the event's stream version. Unknown types only move the
 * version.
 * ES_EINTERNAL when a payload lacks what its type needs.
 */
int account_apply(struct account *acc, const char *type, const json_t *data,
		  long long version, struct es_error *err);

#endif
