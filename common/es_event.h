/*
 * es_event.h - the event contract both services share: the account
 * category's stream prefix, its event types and their payload fields,
 * and the NOTIFY channels. The command side writes these names, the
 * views read them; SPEC sections 3 and 4 are the prose of this file.
 *
 * Payloads (every money event carries ES_F_BALANCE_AFTER):
 *
 *	AccountOpened     {account_id, owner, currency, overdraft_limit}
 *	MoneyDeposited    {amount, balance_after, currency, reference?}
 *	MoneyWithdrawn    {amount, balance_after, currency, reference?}
 *	TransferSent      {transfer_id, to_account_id, amount, balance_after,
 *	                   currency, reference?}
 *	TransferReceived  {transfer_id, from_account_id, amount,
 *	                   balance_after, currency, reference?}
 *	AccountClosed     {}
 *	OverdraftLimitChanged {account_id, overdraft_limit,
 *	                   previous_overdraft_limit, balance}
 *
 * OverdraftLimitChanged moves no money: `balance` is the balance the new
 * limit was checked against (balance >= -overdraft_limit), unchanged by
 * the event, so that every event after the opening states the balance
 * (the command side loads an account from its first event, its last
 * OverdraftLimitChanged and its last event: account_repo.h).
 *
 * A transfer also appends TransferMade {transfer_id, from_account_id,
 * to_account_id, amount, currency, reference?} as the first and only
 * event of its own stream, "transfer-<transfer_id>", in the same
 * transaction: the log's (stream_id, stream_version) key makes the
 * transfer id unique, as the account stream does an account id.
 */
#ifndef ES_EVENT_H
#define ES_EVENT_H

/* Streams of the account category are "account-<lower-case uuid>". */
#define ES_ACCOUNT_PREFIX     "account-"
#define ES_ACCOUNT_PREFIX_LEN (sizeof(ES_ACCOUNT_PREFIX) - 1)

/* The streams of the transfer category: "transfer-<lower-case uuid>". */
#define ES_TRANSFER_PREFIX     "transfer-"
#define ES_TRANSFER_PREFIX_LEN (sizeof(ES_TRANSFER_PREFIX) - 1)

/* Event types of the account and transfer categories. */
#define ES_EV_ACCOUNT_OPENED	"AccountOpened"
#define ES_EV_MONEY_DEPOSITED	"MoneyDeposited"
#define ES_EV_MONEY_WITHDRAWN	"MoneyWithdrawn"
#define ES_EV_TRANSFER_SENT	"TransferSent"
#define ES_EV_TRANSFER_RECEIVED "TransferReceived"
#define ES_EV_ACCOUNT_CLOSED	"AccountClosed"
#define ES_EV_TRANSFER_MADE	"TransferMade"
#define ES_EV_OVERDRAFT_CHANGED "OverdraftLimitChanged"

/* Payload fields. */
#define ES_F_ACCOUNT_ID	     "account_id"
#define ES_F_OWNER	     "owner"
#define ES_F_CURRENCY	     "currency"
#define ES_F_OVERDRAFT_LIMIT "overdraft_limit"
#define ES_F_AMOUNT	     "amount"
#define ES_F_BALANCE_AFTER   "balance_after"
#define ES_F_REFERENCE	     "reference"
#define ES_F_TRANSFER_ID     "transfer_id"
#define ES_F_TO_ACCOUNT	     "to_account_id"
#define ES_F_FROM_ACCOUNT    "from_account_id"
#define ES_F_PREVIOUS_LIMIT  "previous_overdraft_limit"
#define ES_F_BALANCE	     "balance"

/*
 * Metadata fields the command service writes on every event (a raw
 * append's own metadata keys of these names are replaced):
 *
 *	command_id      one per command: all its events share it
 *	correlation_id  X-Correlation-Id, else the command id
 *	causation_id    X-Causation-Id, else the command id
 *	principal       {sub, iss, roles: [names]}: the verified caller
 *	                (es_auth.h); no client header sets it
 */
#define ES_M_COMMAND_ID	    "command_id"
#define ES_M_CORRELATION_ID "correlation_id"
#define ES_M_CAUSATION_ID   "causation_id"
#define ES_M_PRINCIPAL	    "principal"
#define ES_M_SUB	    "sub"
#define ES_M_ISS	    "iss"
#define ES_M_ROLES	    "roles"

/*
 * NOTIFY channels: the command service hints ES_CHANNEL_EVENTS after
 * appends commit; the leading projector announces each checkpoint on
 * ES_CHANNEL_CHECKPOINT. Both are hints: readers also poll.
 */
#define ES_CHANNEL_EVENTS     "tandem_events"
#define ES_CHANNEL_CHECKPOINT "tandem_checkpoint"

#endif
