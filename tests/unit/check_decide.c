/* check_decide.c - every rule of the account domain, without a database. */
#include <check.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>

#include "../../command-service/account_decide.h"
#include "es_array.h"

#define A_ID "11111111-1111-4111-8111-111111111111"
#define B_ID "22222222-2222-4222-8222-222222222222"
#define T_ID "33333333-3333-4333-8333-333333333333"

/* An open account at version 3. */
static void open_state(struct account *acc, const char *id,
		       const char *currency, long long balance,
		       long long overdraft_limit)
{
	account_init(acc, id);
	acc->status = ACCOUNT_OPEN;
	acc->version = 3;
	acc->balance = balance;
	acc->overdraft_limit = overdraft_limit;
	strcpy(acc->currency, currency);
	strcpy(acc->owner, "Ada Lovelace");
}

static void closed_state(struct account *acc, const char *id)
{
	open_state(acc, id, "EUR", 0, 0);
	acc->status = ACCOUNT_CLOSED;
}

static struct money_cmd money(long long amount, const char *reference)
{
	struct money_cmd cmd = { .amount = amount,
				 .reference = reference,
				 .expected_version = -1 };

	strcpy(cmd.account_id, A_ID);
	return cmd;
}

static struct transfer_cmd transfer(const char *from, const char *to,
				    long long amount, const char *reference)
{
	struct transfer_cmd cmd = { .amount = amount, .reference = reference };

	strcpy(cmd.transfer_id, T_ID);
	strcpy(cmd.from, from);
	strcpy(cmd.to, to);
	return cmd;
}

/* The data of the one event in `events`, which must be of `type`. */
static json_t *only_event(json_t *events, const char *type)
{
	json_t *ev, *data;

	ck_assert_ptr_nonnull(events);
	ck_assert_int_eq(json_array_size(events), 1);
	ev = json_array_get(events, 0);
	ck_assert_str_eq(json_string_value(json_object_get(ev, "type")), type);
	data = json_object_get(ev, "data");
	ck_assert_msg(json_is_object(data), "%s has no data object", type);
	return data;
}

static long long int_of(const json_t *data, const char *key)
{
	const json_t *v = json_object_get(data, key);

	ck_assert_msg(json_is_integer(v), "'%s' is not an integer", key);
	return json_integer_value(v);
}

static const char *str_of(const json_t *data, const char *key)
{
	const json_t *v = json_object_get(data, key);

	ck_assert_msg(json_is_string(v), "'%s' is not a string", key);
	return json_string_value(v);
}

/* The decision was refused with `code` and a detail holding `needle`. */
static void assert_refused(json_t *events, struct es_error *err,
			   enum es_err code, const char *needle)
{
	ck_assert_ptr_null(events);
	ck_assert_int_eq(err->code, code);
	ck_assert_msg(strstr(err->detail, needle) != NULL,
		      "detail '%s' lacks '%s'", err->detail, needle);
	es_error_release(err);
}

/* A 422 whose only field problem is about `field`. */
static void assert_invalid_field(json_t *events, struct es_error *err,
				 const char *field)
{
	ck_assert_ptr_null(events);
	ck_assert_int_eq(err->code, ES_EINVALID);
	ck_assert_int_eq(json_array_size(err->fields), 1);
	ck_assert_str_eq(str_of(json_array_get(err->fields, 0), "field"),
			 field);
	es_error_release(err);
}

START_TEST(open_of_new_account_emits_account_opened)
{
	struct es_error err = ES_ERROR_INIT;
	struct account acc;
	struct open_cmd cmd = { .owner = "Zoë", .overdraft_limit = 500 };
	json_t *events, *data;

	account_init(&acc, A_ID);
	strcpy(cmd.account_id, A_ID);
	strcpy(cmd.currency, "EUR");
	events = account_decide_open(&acc, &cmd, &err);
	data = only_event(events, ES_EV_ACCOUNT_OPENED);
	ck_assert_str_eq(str_of(data, "account_id"), A_ID);
	ck_assert_str_eq(str_of(data, "owner"), "Zoë");
	ck_assert_str_eq(str_of(data, "currency"), "EUR");
	ck_assert_int_eq(int_of(data, "overdraft_limit"), 500);
	ck_assert_int_eq(json_object_size(data), 4);
	ck_assert_int_eq(err.code, ES_OK);
	json_decref(events);
}
END_TEST

START_TEST(open_on_existing_account_conflicts)
{
	struct es_error err = ES_ERROR_INIT;
	struct account acc;
	struct open_cmd cmd = { .owner = "Ada" };

	strcpy(cmd.account_id, A_ID);
	strcpy(cmd.currency, "EUR");
	open_state(&acc, A_ID, "EUR", 0, 0);
	assert_refused(account_decide_open(&acc, &cmd, &err), &err,
		       ES_ECONFLICT, "already exists");
	closed_state(&acc, A_ID);
	assert_refused(account_decide_open(&acc, &cmd, &err), &err,
		       ES_ECONFLICT, "already exists");
}
END_TEST

START_TEST(open_with_negative_overdraft_is_invalid)
{
	struct es_error err = ES_ERROR_INIT;
	struct account acc;
	struct open_cmd cmd = { .owner = "Ada", .overdraft_limit = -1 };

	account_init(&acc, A_ID);
	strcpy(cmd.account_id, A_ID);
	strcpy(cmd.currency, "EUR");
	assert_invalid_field(account_decide_open(&acc, &cmd, &err), &err,
			     "overdraft_limit");
}
END_TEST

START_TEST(deposit_emits_money_deposited_with_balance_after)
{
	struct es_error err = ES_ERROR_INIT;
	struct account acc;
	struct money_cmd cmd = money(50, "salary");
	json_t *events, *data;

	open_state(&acc, A_ID, "EUR", 100, 0);
	events = account_decide_deposit(&acc, &cmd, &err);
	data = only_event(events, ES_EV_MONEY_DEPOSITED);
	ck_assert_int_eq(int_of(data, "amount"), 50);
	ck_assert_int_eq(int_of(data, "balance_after"), 150);
	ck_assert_str_eq(str_of(data, "reference"), "salary");
	ck_assert_str_eq(str_of(data, "currency"), "EUR");
	ck_assert_int_eq(json_object_size(data), 4);
	json_decref(events);
}
END_TEST

START_TEST(money_event_without_reference_has_no_reference_key)
{
	struct es_error err = ES_ERROR_INIT;
	struct account acc;
	struct money_cmd cmd = money(50, NULL);
	json_t *events, *data;

	open_state(&acc, A_ID, "EUR", 100, 0);
	events = account_decide_deposit(&acc, &cmd, &err);
	data = only_event(events, ES_EV_MONEY_DEPOSITED);
	ck_assert_ptr_null(json_object_get(data, "reference"));
	ck_assert_int_eq(json_object_size(data), 3);
	json_decref(events);
	events = account_decide_withdraw(&acc, &cmd, &err);
	data = only_event(events, ES_EV_MONEY_WITHDRAWN);
	ck_assert_ptr_null(json_object_get(data, "reference"));
	ck_assert_int_eq(int_of(data, "balance_after"), 50);
	json_decref(events);
}
END_TEST

START_TEST(deposit_to_missing_account_is_not_found)
{
	struct es_error err = ES_ERROR_INIT;
	struct account acc;
	struct money_cmd cmd = money(100, NULL);

	account_init(&acc, A_ID);
	assert_refused(account_decide_deposit(&acc, &cmd, &err), &err,
		       ES_ENOTFOUND, "account '" A_ID "' does not exist");
}
END_TEST

START_TEST(deposit_to_closed_account_conflicts)
{
	struct es_error err = ES_ERROR_INIT;
	struct account acc;
	struct money_cmd cmd = money(100, NULL);

	closed_state(&acc, A_ID);
	assert_refused(account_decide_deposit(&acc, &cmd, &err), &err,
		       ES_ECONFLICT, "is closed");
}
END_TEST

START_TEST(amount_outside_1_to_10e12_is_invalid)
{
	static const long long bad[] = { 0, -5, ACCOUNT_AMOUNT_MAX + 1,
					 LLONG_MIN, LLONG_MAX };
	struct es_error err = ES_ERROR_INIT;
	struct account acc;
	struct money_cmd cmd;
	json_t *events;
	size_t i;

	open_state(&acc, A_ID, "EUR", 0, ACCOUNT_AMOUNT_MAX);
	for (i = 0; i < ARRAY_SIZE(bad); i++) {
		cmd = money(bad[i], NULL);
		assert_invalid_field(account_decide_deposit(&acc, &cmd, &err),
				     &err, "amount");
		assert_invalid_field(account_decide_withdraw(&acc, &cmd, &err),
				     &err, "amount");
	}
	cmd = money(ACCOUNT_AMOUNT_MAX, NULL);
	events = account_decide_deposit(&acc, &cmd, &err);
	ck_assert_int_eq(int_of(only_event(events, ES_EV_MONEY_DEPOSITED),
				"balance_after"),
			 ACCOUNT_AMOUNT_MAX);
	json_decref(events);
	cmd = money(1, NULL);
	events = account_decide_withdraw(&acc, &cmd, &err);
	ck_assert_int_eq(int_of(only_event(events, ES_EV_MONEY_WITHDRAWN),
				"balance_after"),
			 -1);
	json_decref(events);
}
END_TEST

START_TEST(deposit_that_would_overflow_the_balance_conflicts)
{
	struct es_error err = ES_ERROR_INIT;
	struct account acc;
	struct money_cmd cmd = money(11, NULL);
	json_t *events;

	open_state(&acc, A_ID, "EUR", LLONG_MAX - 10, 0);
	assert_refused(account_decide_deposit(&acc, &cmd, &err), &err,
		       ES_ECONFLICT, "balance would overflow");
	cmd.amount = 10;
	events = account_decide_deposit(&acc, &cmd, &err);
	ck_assert_int_eq(int_of(only_event(events, ES_EV_MONEY_DEPOSITED),
				"balance_after"),
			 LLONG_MAX);
	json_decref(events);
}
END_TEST

START_TEST(withdraw_within_balance_succeeds)
{
	struct es_error err = ES_ERROR_INIT;
	struct account acc;
	struct money_cmd cmd = money(100, "rent");
	json_t *events, *data;

	open_state(&acc, A_ID, "EUR", 100, 0);
	events = account_decide_withdraw(&acc, &cmd, &err);
	data = only_event(events, ES_EV_MONEY_WITHDRAWN);
	ck_assert_int_eq(int_of(data, "amount"), 100);
	ck_assert_int_eq(int_of(data, "balance_after"), 0);
	ck_assert_str_eq(str_of(data, "reference"), "rent");
	json_decref(events);
}
END_TEST

START_TEST(withdraw_within_overdraft_succeeds_with_right_balance_after)
{
	struct es_error err = ES_ERROR_INIT;
	struct account acc;
	struct money_cmd cmd = money(400, NULL);
	json_t *events;

	open_state(&acc, A_ID, "EUR", 100, 500);
	events = account_decide_withdraw(&acc, &cmd, &err);
	ck_assert_int_eq(int_of(only_event(events, ES_EV_MONEY_WITHDRAWN),
				"balance_after"),
			 -300);
	json_decref(events);
}
END_TEST

START_TEST(withdraw_exactly_to_minus_overdraft_succeeds)
{
	struct es_error err = ES_ERROR_INIT;
	struct account acc;
	struct money_cmd cmd = money(600, NULL);
	json_t *events;

	open_state(&acc, A_ID, "EUR", 100, 500);
	events = account_decide_withdraw(&acc, &cmd, &err);
	ck_assert_int_eq(int_of(only_event(events, ES_EV_MONEY_WITHDRAWN),
				"balance_after"),
			 -500);
	json_decref(events);
	/* already overdrawn: the same rule from below zero */
	open_state(&acc, A_ID, "EUR", -400, 500);
	cmd.amount = 100;
	events = account_decide_withdraw(&acc, &cmd, &err);
	ck_assert_int_eq(int_of(only_event(events, ES_EV_MONEY_WITHDRAWN),
				"balance_after"),
			 -500);
	json_decref(events);
}
END_TEST

START_TEST(withdraw_beyond_overdraft_conflicts)
{
	struct es_error err = ES_ERROR_INIT;
	struct account acc;
	struct money_cmd cmd = money(601, NULL);

	open_state(&acc, A_ID, "EUR", 100, 500);
	assert_refused(account_decide_withdraw(&acc, &cmd, &err), &err,
		       ES_ECONFLICT, "insufficient funds");
	open_state(&acc, A_ID, "EUR", 100, 0);
	cmd.amount = 101;
	assert_refused(account_decide_withdraw(&acc, &cmd, &err), &err,
		       ES_ECONFLICT, "insufficient funds");
}
END_TEST

START_TEST(withdraw_from_missing_or_closed_account_is_refused)
{
	struct es_error err = ES_ERROR_INIT;
	struct account acc;
	struct money_cmd cmd = money(1, NULL);

	account_init(&acc, A_ID);
	assert_refused(account_decide_withdraw(&acc, &cmd, &err), &err,
		       ES_ENOTFOUND, "does not exist");
	closed_state(&acc, A_ID);
	assert_refused(account_decide_withdraw(&acc, &cmd, &err), &err,
		       ES_ECONFLICT, "is closed");
}
END_TEST

/*
 * account_decide_transfer() of a transfer not made before: the account
 * streams' arrays into *fe and *te; the transfer stream's TransferMade,
 * there exactly when the others are, is checked and freed.
 */
static int decide_transfer(const struct account *from, const struct account *to,
			   const struct transfer_cmd *cmd, json_t **fe,
			   json_t **te, struct es_error *err)
{
	json_t *ev[3];
	int ret = account_decide_transfer(from, to, cmd, 0, ev, err);

	*fe = ev[0];
	*te = ev[1];
	if (ret == 0)
		ck_assert_str_eq(json_string_value(json_object_get(
					 only_event(ev[2], ES_EV_TRANSFER_MADE),
					 "transfer_id")),
				 cmd->transfer_id);
	else
		ck_assert_ptr_null(ev[2]);
	json_decref(ev[2]);
	return ret;
}

/*
 * The transfer's own stream gets TransferMade; a transfer id recorded
 * before is 409 naming it, after the accounts' existence and before
 * their state (funds, currency).
 */
START_TEST(transfer_claims_its_id_once)
{
	struct es_error err = ES_ERROR_INIT;
	struct account from, to, none;
	struct transfer_cmd cmd = transfer(A_ID, B_ID, 250, "rent");
	json_t *ev[3], *data;

	open_state(&from, A_ID, "EUR", 1000, 0);
	open_state(&to, B_ID, "EUR", 40, 0);
	ck_assert_int_eq(account_decide_transfer(&from, &to, &cmd, 0, ev, &err),
			 0);
	data = only_event(ev[2], ES_EV_TRANSFER_MADE);
	ck_assert_str_eq(str_of(data, "transfer_id"), T_ID);
	ck_assert_str_eq(str_of(data, "from_account_id"), A_ID);
	ck_assert_str_eq(str_of(data, "to_account_id"), B_ID);
	ck_assert_int_eq(int_of(data, "amount"), 250);
	ck_assert_str_eq(str_of(data, "currency"), "EUR");
	ck_assert_str_eq(str_of(data, "reference"), "rent");
	ck_assert_int_eq(json_object_size(data), 6);
	for (int i = 0; i < 3; i++)
		json_decref(ev[i]);

	ck_assert_int_eq(account_decide_transfer(&from, &to, &cmd, 1, ev, &err),
			 -1);
	ck_assert_ptr_null(ev[0]);
	ck_assert_ptr_null(ev[1]);
	ck_assert_ptr_null(ev[2]);
	ck_assert_int_eq(err.code, ES_ECONFLICT);
	ck_assert_str_eq(err.detail, "transfer '" T_ID "' already exists");
	es_error_release(&err);

	/* named even when the first left too little to send, or the state
	 * breaks another rule */
	cmd.amount = 5000;
	strcpy(to.currency, "USD");
	ck_assert_int_eq(account_decide_transfer(&from, &to, &cmd, 1, ev, &err),
			 -1);
	ck_assert_str_eq(err.detail, "transfer '" T_ID "' already exists");
	es_error_release(&err);
	/* an account that does not exist is still 404 */
	account_init(&none, B_ID);
	ck_assert_int_eq(
		account_decide_transfer(&from, &none, &cmd, 1, ev, &err), -1);
	ck_assert_int_eq(err.code, ES_ENOTFOUND);
	es_error_release(&err);
}
END_TEST

START_TEST(transfer_emits_sent_and_received_with_both_balances)
{
	struct es_error err = ES_ERROR_INIT;
	struct account from, to;
	struct transfer_cmd cmd = transfer(A_ID, B_ID, 250, "invoice 7");
	json_t *fe, *te, *data;

	open_state(&from, A_ID, "EUR", 1000, 0);
	open_state(&to, B_ID, "EUR", 40, 0);
	ck_assert_int_eq(decide_transfer(&from, &to, &cmd, &fe, &te, &err), 0);
	data = only_event(fe, ES_EV_TRANSFER_SENT);
	ck_assert_str_eq(str_of(data, "transfer_id"), T_ID);
	ck_assert_str_eq(str_of(data, "to_account_id"), B_ID);
	ck_assert_int_eq(int_of(data, "amount"), 250);
	ck_assert_int_eq(int_of(data, "balance_after"), 750);
	ck_assert_str_eq(str_of(data, "reference"), "invoice 7");
	ck_assert_str_eq(str_of(data, "currency"), "EUR");
	ck_assert_int_eq(json_object_size(data), 6);
	data = only_event(te, ES_EV_TRANSFER_RECEIVED);
	ck_assert_str_eq(str_of(data, "transfer_id"), T_ID);
	ck_assert_str_eq(str_of(data, "from_account_id"), A_ID);
	ck_assert_int_eq(int_of(data, "amount"), 250);
	ck_assert_int_eq(int_of(data, "balance_after"), 290);
	ck_assert_str_eq(str_of(data, "reference"), "invoice 7");
	ck_assert_str_eq(str_of(data, "currency"), "EUR");
	ck_assert_int_eq(json_object_size(data), 6);
	json_decref(fe);
	json_decref(te);
}
END_TEST

START_TEST(transfer_without_reference_has_no_reference_key)
{
	struct es_error err = ES_ERROR_INIT;
	struct account from, to;
	struct transfer_cmd cmd = transfer(A_ID, B_ID, 1, NULL);
	json_t *fe, *te;

	open_state(&from, A_ID, "EUR", 1, 0);
	open_state(&to, B_ID, "EUR", 0, 0);
	ck_assert_int_eq(decide_transfer(&from, &to, &cmd, &fe, &te, &err), 0);
	ck_assert_ptr_null(json_object_get(only_event(fe, ES_EV_TRANSFER_SENT),
					   "reference"));
	ck_assert_ptr_null(json_object_get(
		only_event(te, ES_EV_TRANSFER_RECEIVED), "reference"));
	json_decref(fe);
	json_decref(te);
}
END_TEST

/* A refused transfer: -1, both arrays NULL, `code`, detail with `needle`. */
static void assert_transfer_refused(const struct account *from,
				    const struct account *to,
				    const struct transfer_cmd *cmd,
				    enum es_err code, const char *needle)
{
	struct es_error err = ES_ERROR_INIT;
	json_t sentinel, *fe = &sentinel, *te = &sentinel;

	ck_assert_int_eq(decide_transfer(from, to, cmd, &fe, &te, &err), -1);
	ck_assert_ptr_null(fe);
	ck_assert_ptr_null(te);
	ck_assert_int_eq(err.code, code);
	ck_assert_msg(strstr(err.detail, needle) != NULL,
		      "detail '%s' lacks '%s'", err.detail, needle);
	es_error_release(&err);
}

START_TEST(transfer_to_same_account_is_invalid)
{
	struct es_error err = ES_ERROR_INIT;
	struct account acc;
	struct transfer_cmd cmd = transfer(A_ID, A_ID, 10, NULL);
	json_t *fe, *te;

	open_state(&acc, A_ID, "EUR", 100, 0);
	ck_assert_int_eq(decide_transfer(&acc, &acc, &cmd, &fe, &te, &err), -1);
	ck_assert_ptr_null(fe);
	ck_assert_ptr_null(te);
	assert_invalid_field(NULL, &err, "to");
}
END_TEST

START_TEST(transfer_amount_outside_range_is_invalid)
{
	struct es_error err = ES_ERROR_INIT;
	struct account from, to;
	struct transfer_cmd cmd = transfer(A_ID, B_ID, 0, NULL);
	json_t *fe, *te;

	open_state(&from, A_ID, "EUR", 100, 0);
	open_state(&to, B_ID, "EUR", 0, 0);
	ck_assert_int_eq(decide_transfer(&from, &to, &cmd, &fe, &te, &err), -1);
	assert_invalid_field(NULL, &err, "amount");
	cmd.amount = ACCOUNT_AMOUNT_MAX + 1;
	ck_assert_int_eq(decide_transfer(&from, &to, &cmd, &fe, &te, &err), -1);
	assert_invalid_field(NULL, &err, "amount");
}
END_TEST

START_TEST(transfer_currency_mismatch_conflicts)
{
	struct account from, to;
	struct transfer_cmd cmd = transfer(A_ID, B_ID, 10, NULL);

	struct es_error err = ES_ERROR_INIT;
	json_t *fe, *te;

	open_state(&from, A_ID, "EUR", 100, 0);
	open_state(&to, B_ID, "USD", 0, 0);
	assert_transfer_refused(&from, &to, &cmd, ES_ECONFLICT,
				"currency mismatch");
	/* the receiver's currency is not told: it may be anyone's account */
	ck_assert_int_eq(decide_transfer(&from, &to, &cmd, &fe, &te, &err), -1);
	ck_assert_ptr_null(strstr(err.detail, "USD"));
	ck_assert_ptr_nonnull(strstr(err.detail, "EUR"));
	es_error_release(&err);
	/* from an account that cannot pay, the currencies are not compared */
	open_state(&from, A_ID, "EUR", 5, 0);
	assert_transfer_refused(&from, &to, &cmd, ES_ECONFLICT,
				"insufficient funds");
}
END_TEST

START_TEST(transfer_from_closed_account_conflicts)
{
	struct account from, to;
	struct transfer_cmd cmd = transfer(A_ID, B_ID, 10, NULL);

	closed_state(&from, A_ID);
	open_state(&to, B_ID, "EUR", 0, 0);
	assert_transfer_refused(&from, &to, &cmd, ES_ECONFLICT,
				"account '" A_ID "' is closed");
}
END_TEST

START_TEST(transfer_to_closed_account_conflicts)
{
	struct account from, to;
	struct transfer_cmd cmd = transfer(A_ID, B_ID, 10, NULL);

	open_state(&from, A_ID, "EUR", 100, 0);
	closed_state(&to, B_ID);
	assert_transfer_refused(&from, &to, &cmd, ES_ECONFLICT,
				"account '" B_ID "' is closed");
}
END_TEST

START_TEST(transfer_with_missing_account_is_not_found)
{
	struct account from, to;
	struct transfer_cmd cmd = transfer(A_ID, B_ID, 10, NULL);

	account_init(&from, A_ID);
	open_state(&to, B_ID, "EUR", 0, 0);
	assert_transfer_refused(&from, &to, &cmd, ES_ENOTFOUND,
				"account '" A_ID "' does not exist");
	open_state(&from, A_ID, "EUR", 100, 0);
	account_init(&to, B_ID);
	assert_transfer_refused(&from, &to, &cmd, ES_ENOTFOUND,
				"account '" B_ID "' does not exist");
}
END_TEST

START_TEST(transfer_insufficient_funds_conflicts)
{
	struct es_error err = ES_ERROR_INIT;
	struct account from, to;
	struct transfer_cmd cmd = transfer(A_ID, B_ID, 301, NULL);
	json_t *fe, *te;

	open_state(&from, A_ID, "EUR", 100, 200);
	open_state(&to, B_ID, "EUR", 0, 0);
	assert_transfer_refused(&from, &to, &cmd, ES_ECONFLICT,
				"insufficient funds in account '" A_ID "'");
	/* exactly down to the overdraft limit is allowed */
	cmd.amount = 300;
	ck_assert_int_eq(decide_transfer(&from, &to, &cmd, &fe, &te, &err), 0);
	ck_assert_int_eq(
		int_of(only_event(fe, ES_EV_TRANSFER_SENT), "balance_after"),
		-200);
	ck_assert_int_eq(int_of(only_event(te, ES_EV_TRANSFER_RECEIVED),
				"balance_after"),
			 300);
	json_decref(fe);
	json_decref(te);
}
END_TEST

START_TEST(transfer_that_would_overflow_receiver_conflicts)
{
	struct account from, to;
	struct transfer_cmd cmd = transfer(A_ID, B_ID, 10, NULL);

	open_state(&from, A_ID, "EUR", 100, 0);
	open_state(&to, B_ID, "EUR", LLONG_MAX - 9, 0);
	assert_transfer_refused(&from, &to, &cmd, ES_ECONFLICT,
				"balance would overflow");
}
END_TEST

START_TEST(transfer_with_swapped_states_is_an_internal_error)
{
	struct account from, to;
	struct transfer_cmd cmd = transfer(A_ID, B_ID, 10, NULL);

	open_state(&from, A_ID, "EUR", 100, 0);
	open_state(&to, B_ID, "EUR", 100, 0);
	assert_transfer_refused(&to, &from, &cmd, ES_EINTERNAL,
				"transfer got the state of account");
}
END_TEST

START_TEST(close_with_zero_balance_emits_account_closed)
{
	struct es_error err = ES_ERROR_INIT;
	struct account acc;
	struct close_cmd cmd = { .account_id = A_ID, .expected_version = -1 };
	json_t *events, *data;

	open_state(&acc, A_ID, "EUR", 0, 100);
	events = account_decide_close(&acc, &cmd, &err);
	data = only_event(events, ES_EV_ACCOUNT_CLOSED);
	ck_assert_int_eq(json_object_size(data), 0);
	json_decref(events);
}
END_TEST

START_TEST(close_with_non_zero_balance_conflicts)
{
	struct es_error err = ES_ERROR_INIT;
	struct account acc;
	struct close_cmd cmd = { .account_id = A_ID, .expected_version = -1 };

	open_state(&acc, A_ID, "EUR", 1, 0);
	assert_refused(account_decide_close(&acc, &cmd, &err), &err,
		       ES_ECONFLICT, "balance is 1, not 0");
	open_state(&acc, A_ID, "EUR", -1, 100);
	assert_refused(account_decide_close(&acc, &cmd, &err), &err,
		       ES_ECONFLICT, "balance is -1, not 0");
}
END_TEST

START_TEST(close_of_closed_or_missing_account_is_refused)
{
	struct es_error err = ES_ERROR_INIT;
	struct account acc;
	struct close_cmd cmd = { .account_id = A_ID, .expected_version = -1 };

	closed_state(&acc, A_ID);
	assert_refused(account_decide_close(&acc, &cmd, &err), &err,
		       ES_ECONFLICT, "is closed");
	account_init(&acc, A_ID);
	assert_refused(account_decide_close(&acc, &cmd, &err), &err,
		       ES_ENOTFOUND, "does not exist");
}
END_TEST

/* ---- overdraft limit ---- */

static struct overdraft_cmd limit_cmd(long long limit)
{
	struct overdraft_cmd cmd = { .overdraft_limit = limit,
				     .expected_version = -1 };

	strcpy(cmd.account_id, A_ID);
	return cmd;
}

/* One OverdraftLimitChanged; frees `events`. */
static void assert_limit_changed(json_t *events)
{
	only_event(events, ES_EV_OVERDRAFT_CHANGED);
	json_decref(events);
}

START_TEST(limit_change_emits_new_and_previous_limit_and_balance)
{
	struct es_error err = ES_ERROR_INIT;
	struct account acc;
	struct overdraft_cmd cmd = limit_cmd(900);
	json_t *events, *data;

	open_state(&acc, A_ID, "EUR", -250, 300);
	events = account_decide_overdraft_limit(&acc, &cmd, &err);
	data = only_event(events, ES_EV_OVERDRAFT_CHANGED);
	ck_assert_str_eq(str_of(data, "account_id"), A_ID);
	ck_assert_int_eq(int_of(data, "overdraft_limit"), 900);
	ck_assert_int_eq(int_of(data, "previous_overdraft_limit"), 300);
	ck_assert_int_eq(int_of(data, "balance"), -250);
	ck_assert_int_eq(json_object_size(data), 4);
	ck_assert_int_eq(err.code, ES_OK);
	json_decref(events);
}
END_TEST

START_TEST(limit_can_be_lowered_to_exactly_the_debt)
{
	struct es_error err = ES_ERROR_INIT;
	struct account acc;
	struct overdraft_cmd cmd = limit_cmd(250);
	json_t *events, *data;

	/* balance == -new_limit: the floor is the balance itself */
	open_state(&acc, A_ID, "EUR", -250, 1000);
	events = account_decide_overdraft_limit(&acc, &cmd, &err);
	data = only_event(events, ES_EV_OVERDRAFT_CHANGED);
	ck_assert_int_eq(int_of(data, "overdraft_limit"), 250);
	ck_assert_int_eq(int_of(data, "previous_overdraft_limit"), 1000);
	json_decref(events);
	/* and to 0 when the balance is 0 or more */
	cmd = limit_cmd(0);
	open_state(&acc, A_ID, "EUR", 0, 1000);
	assert_limit_changed(account_decide_overdraft_limit(&acc, &cmd, &err));
	open_state(&acc, A_ID, "EUR", 7, 1000);
	assert_limit_changed(account_decide_overdraft_limit(&acc, &cmd, &err));
	ck_assert_int_eq(err.code, ES_OK);
}
END_TEST

START_TEST(limit_below_the_debt_conflicts_naming_balance_and_limit)
{
	struct es_error err = ES_ERROR_INIT;
	struct account acc;
	struct overdraft_cmd cmd = limit_cmd(249);

	open_state(&acc, A_ID, "EUR", -250, 1000);
	assert_refused(account_decide_overdraft_limit(&acc, &cmd, &err), &err,
		       ES_ECONFLICT,
		       "cannot be 249: balance -250 is below -249");
	cmd = limit_cmd(0);
	open_state(&acc, A_ID, "EUR", -1, 1);
	assert_refused(account_decide_overdraft_limit(&acc, &cmd, &err), &err,
		       ES_ECONFLICT, "balance -1 is below 0");
}
END_TEST

START_TEST(limit_of_missing_or_closed_account_is_refused)
{
	struct es_error err = ES_ERROR_INIT;
	struct account acc;
	struct overdraft_cmd cmd = limit_cmd(100);

	account_init(&acc, A_ID);
	assert_refused(account_decide_overdraft_limit(&acc, &cmd, &err), &err,
		       ES_ENOTFOUND, "does not exist");
	closed_state(&acc, A_ID);
	assert_refused(account_decide_overdraft_limit(&acc, &cmd, &err), &err,
		       ES_ECONFLICT, "is closed");
}
END_TEST

START_TEST(limit_outside_0_to_10e12_is_invalid_as_at_opening)
{
	static const long long bad[] = { -1, LLONG_MIN, ACCOUNT_AMOUNT_MAX + 1,
					 LLONG_MAX };
	struct es_error err = ES_ERROR_INIT;
	struct account acc, none;
	struct overdraft_cmd cmd;
	struct open_cmd open = { .owner = "Ada" };
	size_t i;

	open_state(&acc, A_ID, "EUR", 0, 0);
	account_init(&none, A_ID);
	strcpy(open.account_id, A_ID);
	strcpy(open.currency, "EUR");
	for (i = 0; i < ARRAY_SIZE(bad); i++) {
		cmd = limit_cmd(bad[i]);
		assert_invalid_field(
			account_decide_overdraft_limit(&acc, &cmd, &err), &err,
			"overdraft_limit");
		/* the command's own rule first: 422 before 404 */
		assert_invalid_field(
			account_decide_overdraft_limit(&none, &cmd, &err), &err,
			"overdraft_limit");
		/* the same rule as an opening's */
		open.overdraft_limit = bad[i];
		assert_invalid_field(account_decide_open(&none, &open, &err),
				     &err, "overdraft_limit");
	}
	cmd = limit_cmd(ACCOUNT_AMOUNT_MAX);
	assert_limit_changed(account_decide_overdraft_limit(&acc, &cmd, &err));
	ck_assert_int_eq(err.code, ES_OK);
}
END_TEST

static void assert_same_state(const struct account *a, const struct account *b)
{
	ck_assert_str_eq(a->id, b->id);
	ck_assert_str_eq(a->stream_id, b->stream_id);
	ck_assert_int_eq(a->status, b->status);
	ck_assert_int_eq(a->version, b->version);
	ck_assert_int_eq(a->balance, b->balance);
	ck_assert_int_eq(a->overdraft_limit, b->overdraft_limit);
	ck_assert_str_eq(a->currency, b->currency);
	ck_assert_str_eq(a->owner, b->owner);
}

START_TEST(decide_leaves_the_state_untouched)
{
	struct es_error err = ES_ERROR_INIT;
	struct account acc, from, to, copy, copy_to;
	struct money_cmd m = money(70, "x");
	struct transfer_cmd t = transfer(A_ID, B_ID, 30, NULL);
	struct close_cmd c = { .account_id = A_ID, .expected_version = -1 };
	struct overdraft_cmd o = limit_cmd(500);
	json_t *e1, *e2;

	open_state(&acc, A_ID, "EUR", 100, 0);
	copy = acc;
	json_decref(account_decide_deposit(&acc, &m, &err));
	json_decref(account_decide_withdraw(&acc, &m, &err));
	json_decref(account_decide_close(&acc, &c, &err));
	json_decref(account_decide_overdraft_limit(&acc, &o, &err));
	es_error_release(&err);
	assert_same_state(&acc, &copy);
	from = acc;
	open_state(&to, B_ID, "EUR", 5, 0);
	copy_to = to;
	ck_assert_int_eq(decide_transfer(&from, &to, &t, &e1, &e2, &err), 0);
	assert_same_state(&from, &copy);
	assert_same_state(&to, &copy_to);
	json_decref(e1);
	json_decref(e2);
}
END_TEST

static Suite *decide_suite(void)
{
	Suite *s = suite_create("decide");
	TCase *tc = tcase_create("open");

	tcase_add_test(tc, open_of_new_account_emits_account_opened);
	tcase_add_test(tc, open_on_existing_account_conflicts);
	tcase_add_test(tc, open_with_negative_overdraft_is_invalid);
	suite_add_tcase(s, tc);
	tc = tcase_create("deposit_withdraw");
	tcase_add_test(tc, deposit_emits_money_deposited_with_balance_after);
	tcase_add_test(tc, money_event_without_reference_has_no_reference_key);
	tcase_add_test(tc, deposit_to_missing_account_is_not_found);
	tcase_add_test(tc, deposit_to_closed_account_conflicts);
	tcase_add_test(tc, amount_outside_1_to_10e12_is_invalid);
	tcase_add_test(tc, deposit_that_would_overflow_the_balance_conflicts);
	tcase_add_test(tc, withdraw_within_balance_succeeds);
	tcase_add_test(
		tc,
		withdraw_within_overdraft_succeeds_with_right_balance_after);
	tcase_add_test(tc, withdraw_exactly_to_minus_overdraft_succeeds);
	tcase_add_test(tc, withdraw_beyond_overdraft_conflicts);
	tcase_add_test(tc, withdraw_from_missing_or_closed_account_is_refused);
	suite_add_tcase(s, tc);
	tc = tcase_create("transfer");
	tcase_add_test(tc, transfer_emits_sent_and_received_with_both_balances);
	tcase_add_test(tc, transfer_claims_its_id_once);
	tcase_add_test(tc, transfer_without_reference_has_no_reference_key);
	tcase_add_test(tc, transfer_to_same_account_is_invalid);
	tcase_add_test(tc, transfer_amount_outside_range_is_invalid);
	tcase_add_test(tc, transfer_currency_mismatch_conflicts);
	tcase_add_test(tc, transfer_from_closed_account_conflicts);
	tcase_add_test(tc, transfer_to_closed_account_conflicts);
	tcase_add_test(tc, transfer_with_missing_account_is_not_found);
	tcase_add_test(tc, transfer_insufficient_funds_conflicts);
	tcase_add_test(tc, transfer_that_would_overflow_receiver_conflicts);
	tcase_add_test(tc, transfer_with_swapped_states_is_an_internal_error);
	suite_add_tcase(s, tc);
	tc = tcase_create("close");
	tcase_add_test(tc, close_with_zero_balance_emits_account_closed);
	tcase_add_test(tc, close_with_non_zero_balance_conflicts);
	tcase_add_test(tc, close_of_closed_or_missing_account_is_refused);
	tcase_add_test(tc, decide_leaves_the_state_untouched);
	suite_add_tcase(s, tc);
	tc = tcase_create("overdraft_limit");
	tcase_add_test(tc,
		       limit_change_emits_new_and_previous_limit_and_balance);
	tcase_add_test(tc, limit_can_be_lowered_to_exactly_the_debt);
	tcase_add_test(tc,
		       limit_below_the_debt_conflicts_naming_balance_and_limit);
	tcase_add_test(tc, limit_of_missing_or_closed_account_is_refused);
	tcase_add_test(tc, limit_outside_0_to_10e12_is_invalid_as_at_opening);
	suite_add_tcase(s, tc);
	return s;
}

int main(void)
{
	SRunner *sr = srunner_create(decide_suite());
	int failed;

	srunner_run_all(sr, CK_NORMAL);
	failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
