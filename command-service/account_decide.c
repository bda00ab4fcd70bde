/*
 * account_decide.c - the rules of the account domain (SPEC section 4):
 * pure functions of (state, command) to events or a rule error, no I/O.
 *
 * Checks run in a fixed order, the command's own rules first (amount,
 * same account), then existence, then state: so the answer to a command
 * that breaks several rules does not depend on anything but its inputs.
 * Version checks (expected_version, If-Match) are the pipeline's job.
 */
#include "account_decide.h"

#include <string.h>

/* {type, data}; takes `data`. NULL (and an error) when out of memory. */
static json_t *event_new(const char *type, json_t *data, struct es_error *err)
{
	json_t *ev;

	/* a NULL or non-UTF-8 string, or no memory: a bug of the caller */
	ev = data ? json_object() : NULL;
	if (!ev || json_object_set_new_nocheck(ev, "type",
					       json_string_nocheck(type)) < 0) {
		json_decref(ev);
		json_decref(data);
		ev = NULL;
	} else if (json_object_set_new_nocheck(ev, "data", data) < 0) {
		json_decref(ev); /* `data` went with the failed call */
		ev = NULL;
	}
	if (!ev)
		es_error_set(err, ES_EINTERNAL, "cannot build the %s event",
			     type);
	return ev;
}

/* [event]; takes `ev`. */
static json_t *one_event(json_t *ev, struct es_error *err)
{
	json_t *arr;

	if (!ev)
		return NULL;
	arr = json_array();
	if (!arr || json_array_append_new(arr, ev) < 0) {
		json_decref(arr);
		es_error_set(err, ES_EINTERNAL, "out of memory");
		return NULL;
	}
	return arr;
}

static int check_amount(long long amount, struct es_error *err)
{
	if (amount <= 0)
		return es_error_field(err, "amount", "must be greater than 0");
	if (amount > ACCOUNT_AMOUNT_MAX)
		return es_error_field(err, "amount", "must be at most %lld",
				      ACCOUNT_AMOUNT_MAX);
	return 0;
}

/* ES_ENOTFOUND for no account, ES_ECONFLICT for a closed one. */
static int check_open(const struct account *acc, struct es_error *err)
{
	if (acc->status == ACCOUNT_NONE)
		return es_error_set(err, ES_ENOTFOUND, ACCOUNT_NOT_FOUND,
				    acc->id);
	if (acc->status == ACCOUNT_CLOSED)
		return es_error_set(err, ES_ECONFLICT, "account '%s' is closed",
				    acc->id);
	return 0;
}

/* The balance after taking `amount` out, if the overdraft allows it. */
static int debit(const struct account *acc, long long amount, long long *after,
		 struct es_error *err)
{
	if (__builtin_sub_overflow(acc->balance, amount, after) ||
	    *after < -acc->overdraft_limit)
		return es_error_set(
			err, ES_ECONFLICT,
			"insufficient funds in account '%s': balance %lld, overdraft limit %lld, amount %lld",
			acc->id, acc->balance, acc->overdraft_limit, amount);
	return 0;
}

/* The balance after putting `amount` in, unless it overflows. */
static int credit(const struct account *acc, long long amount, long long *after,
		  struct es_error *err)
{
	if (__builtin_add_overflow(acc->balance, amount, after))
		return es_error_set(err, ES_ECONFLICT,
				    "balance would overflow in account '%s'",
				    acc->id);
	return 0;
}

/*
 * {amount, balance_after, currency, reference?} of a deposit or
 * withdrawal. The currency makes each money event self-describing, so a
 * view (daily totals per currency) folds it without looking anything up.
 */
static json_t *money_data(long long amount, long long after,
			  const char *currency, const char *reference)
{
	/* built by hand: json_pack() parses its format on every call */
	json_t *d = json_object();

	if (!d ||
	    json_object_set_new_nocheck(d, ES_F_AMOUNT,
					json_integer((json_int_t)amount)) < 0 ||
	    json_object_set_new_nocheck(d, ES_F_BALANCE_AFTER,
					json_integer((json_int_t)after)) < 0 ||
	    json_object_set_new_nocheck(d, ES_F_CURRENCY,
					json_string(currency)) < 0 ||
	    (reference &&
	     json_object_set_new_nocheck(d, ES_F_REFERENCE,
					 json_string(reference)) < 0)) {
		json_decref(d);
		return NULL;
	}
	return d;
}

/* An overdraft limit of an opening or a change: 0..ACCOUNT_AMOUNT_MAX. */
static int check_limit(long long limit, struct es_error *err)
{
	if (limit < 0)
		return es_error_field(err, "overdraft_limit",
				      "must be at least 0");
	if (limit > ACCOUNT_AMOUNT_MAX)
		return es_error_field(err, "overdraft_limit",
				      "must be at most %lld",
				      ACCOUNT_AMOUNT_MAX);
	return 0;
}

json_t *account_decide_open(const struct account *acc,
			    const struct open_cmd *cmd, struct es_error *err)
{
	if (check_limit(cmd->overdraft_limit, err) < 0)
		return NULL;
	if (acc->status != ACCOUNT_NONE) {
		es_error_set(err, ES_ECONFLICT, "account '%s' already exists",
			     cmd->account_id);
		return NULL;
	}
	return one_event(
		event_new(ES_EV_ACCOUNT_OPENED,
			  json_pack("{s:s, s:s, s:s, s:I}", ES_F_ACCOUNT_ID,
				    cmd->account_id, ES_F_OWNER, cmd->owner,
				    ES_F_CURRENCY, cmd->currency,
				    ES_F_OVERDRAFT_LIMIT,
				    (json_int_t)cmd->overdraft_limit),
			  err),
		err);
}

json_t *account_decide_deposit(const struct account *acc,
			       const struct money_cmd *cmd,
			       struct es_error *err)
{
	long long after = 0;

	if (check_amount(cmd->amount, err) < 0 || check_open(acc, err) < 0 ||
	    credit(acc, cmd->amount, &after, err) < 0)
		return NULL;
	return one_event(event_new(ES_EV_MONEY_DEPOSITED,
				   money_data(cmd->amount, after, acc->currency,
					      cmd->reference),
				   err),
			 err);
}

json_t *account_decide_withdraw(const struct account *acc,
				const struct money_cmd *cmd,
				struct es_error *err)
{
	long long after = 0;

	if (check_amount(cmd->amount, err) < 0 || check_open(acc, err) < 0 ||
	    debit(acc, cmd->amount, &after, err) < 0)
		return NULL;
	return one_event(event_new(ES_EV_MONEY_WITHDRAWN,
				   money_data(cmd->amount, after, acc->currency,
					      cmd->reference),
				   err),
			 err);
}

json_t *account_decide_close(const struct account *acc,
			     const struct close_cmd *cmd, struct es_error *err)
{
	(void)cmd;
	if (check_open(acc, err) < 0)
		return NULL;
	if (acc->balance != 0) {
		es_error_set(
			err, ES_ECONFLICT,
			"cannot close account '%s': its balance is %lld, not 0",
			acc->id, acc->balance);
		return NULL;
	}
	return one_event(event_new(ES_EV_ACCOUNT_CLOSED, json_object(), err),
			 err);
}

json_t *account_decide_overdraft_limit(const struct account *acc,
				       const struct overdraft_cmd *cmd,
				       struct es_error *err)
{
	if (check_limit(cmd->overdraft_limit, err) < 0 ||
	    check_open(acc, err) < 0)
		return NULL;
	/* the floor a lower limit sets must not be above the balance */
	if (acc->balance < -cmd->overdraft_limit) {
		es_error_set(
			err, ES_ECONFLICT,
			"overdraft limit of account '%s' cannot be %lld: balance %lld is below %lld",
			acc->id, cmd->overdraft_limit, acc->balance,
			-cmd->overdraft_limit);
		return NULL;
	}
	return one_event(
		event_new(ES_EV_OVERDRAFT_CHANGED,
			  json_pack("{s:s, s:I, s:I, s:I}", ES_F_ACCOUNT_ID,
				    acc->id, ES_F_OVERDRAFT_LIMIT,
				    (json_int_t)cmd->overdraft_limit,
				    ES_F_PREVIOUS_LIMIT,
				    (json_int_t)acc->overdraft_limit,
				    ES_F_BALANCE, (json_int_t)acc->balance),
			  err),
		err);
}

/* A state handed in for the wrong account would move the wrong money. */
static int check_identity(const struct account *acc, const char *id,
			  struct es_error *err)
{
	if (acc->id[0] && strcmp(acc->id, id) != 0)
		return es_error_set(
			err, ES_EINTERNAL,
			"transfer got the state of account '%s' for account '%s'",
			acc->id, id);
	return 0;
}

int account_decide_transfer(const struct account *from,
			    const struct account *to,
			    const struct transfer_cmd *cmd, int recorded,
			    json_t *events[3], struct es_error *err)
{
	long long from_after = 0, to_after = 0;
	size_t i;

	for (i = 0; i < 3; i++)
		events[i] = NULL;
	if (!strcmp(cmd->from, cmd->to)) {
		es_error_field(err, "to", "must differ from 'from'");
		check_amount(cmd->amount, err);
		return -1;
	}
	if (check_amount(cmd->amount, err) < 0 ||
	    check_identity(from, cmd->from, err) < 0 ||
	    check_identity(to, cmd->to, err) < 0 || check_open(from, err) < 0 ||
	    check_open(to, err) < 0)
		return -1;
	if (recorded)
		return es_error_set(err, ES_ECONFLICT,
				    "transfer '%s' already exists",
				    cmd->transfer_id);
	/*
	 * The receiver may be anyone's account: its currency is not named,
	 * and only a transfer the sender could pay learns that it differs
	 * (from an empty account one cannot probe currencies).
	 */
	if (debit(from, cmd->amount, &from_after, err) < 0)
		return -1;
	if (strcmp(from->currency, to->currency) != 0)
		return es_error_set(
			err, ES_ECONFLICT,
			"currency mismatch: account '%s' holds %s, account '%s' does not",
			from->id, from->currency, to->id);
	if (credit(to, cmd->amount, &to_after, err) < 0)
		return -1;
	events[0] = one_event(
		event_new(ES_EV_TRANSFER_SENT,
			  json_pack("{s:s, s:s, s:I, s:I, s:s, s:s*}",
				    ES_F_TRANSFER_ID, cmd->transfer_id,
				    ES_F_TO_ACCOUNT, cmd->to, ES_F_AMOUNT,
				    (json_int_t)cmd->amount, ES_F_BALANCE_AFTER,
				    (json_int_t)from_after, ES_F_CURRENCY,
				    from->currency, ES_F_REFERENCE,
				    cmd->reference),
			  err),
		err);
	events[1] = one_event(
		event_new(ES_EV_TRANSFER_RECEIVED,
			  json_pack("{s:s, s:s, s:I, s:I, s:s, s:s*}",
				    ES_F_TRANSFER_ID, cmd->transfer_id,
				    ES_F_FROM_ACCOUNT, cmd->from, ES_F_AMOUNT,
				    (json_int_t)cmd->amount, ES_F_BALANCE_AFTER,
				    (json_int_t)to_after, ES_F_CURRENCY,
				    to->currency, ES_F_REFERENCE,
				    cmd->reference),
			  err),
		err);
	events[2] = one_event(
		event_new(ES_EV_TRANSFER_MADE,
			  json_pack("{s:s, s:s, s:s, s:I, s:s, s:s*}",
				    ES_F_TRANSFER_ID, cmd->transfer_id,
				    ES_F_FROM_ACCOUNT, cmd->from,
				    ES_F_TO_ACCOUNT, cmd->to, ES_F_AMOUNT,
				    (json_int_t)cmd->amount, ES_F_CURRENCY,
				    from->currency, ES_F_REFERENCE,
				    cmd->reference),
			  err),
		err);
	if (!events[0] || !events[1] || !events[2]) {
		for (i = 0; i < 3; i++) {
			json_decref(events[i]);
			events[i] = NULL;
		}
		return -1;
	}
	return 0;
}
