/* check_account.c - folding an account's events into its state. */
#include <check.h>
#include <stdlib.h>
#include <string.h>

#include "../../command-service/account_state.h"
#include "es_array.h"

#define A_ID "11111111-1111-4111-8111-111111111111"

/*
 * Fold `json`, an array of [type, data] pairs, into a fresh state; the
 * i-th event gets version i + 1. Returns what the last account_apply()
 * returned.
 */
static int fold(struct account *acc, const char *json, struct es_error *err)
{
	json_error_t jerr;
	json_t *events = json_loads(json, 0, &jerr), *ev;
	size_t i;
	int ret = 0;

	ck_assert_msg(events != NULL, "bad test JSON: %s", jerr.text);
	account_init(acc, A_ID);
	json_array_foreach(events, i, ev)
	{
		ret = account_apply(
			acc, json_string_value(json_array_get(ev, 0)),
			json_array_get(ev, 1), (long long)i + 1, err);
		if (ret < 0)
			break;
	}
	json_decref(events);
	return ret;
}

#define OPENED                                                           \
	"[\"AccountOpened\", {\"account_id\": \"" A_ID "\", \"owner\": " \
	"\"Zoë\", \"currency\": \"EUR\", \"overdraft_limit\": 500}]"

START_TEST(new_state_is_empty)
{
	struct account acc;

	memset(&acc, 0x5a, sizeof(acc));
	account_init(&acc, A_ID);
	ck_assert_str_eq(acc.id, A_ID);
	ck_assert_str_eq(acc.stream_id, "account-" A_ID);
	ck_assert_int_eq(acc.status, ACCOUNT_NONE);
	ck_assert_int_eq(acc.version, 0);
	ck_assert_int_eq(acc.balance, 0);
	ck_assert_int_eq(acc.overdraft_limit, 0);
	ck_assert_str_eq(acc.currency, "");
	ck_assert_str_eq(acc.owner, "");
}
END_TEST

START_TEST(opened_sets_the_opening_facts)
{
	struct es_error err = ES_ERROR_INIT;
	struct account acc;

	ck_assert_int_eq(fold(&acc, "[" OPENED "]", &err), 0);
	ck_assert_int_eq(acc.status, ACCOUNT_OPEN);
	ck_assert_int_eq(acc.version, 1);
	ck_assert_int_eq(acc.balance, 0);
	ck_assert_int_eq(acc.overdraft_limit, 500);
	ck_assert_str_eq(acc.currency, "EUR");
	ck_assert_str_eq(acc.owner, "Zoë");
	ck_assert_int_eq(err.code, ES_OK);
}
END_TEST

START_TEST(money_events_set_balance_from_balance_after)
{
	struct es_error err = ES_ERROR_INIT;
	struct account acc;

	ck_assert_int_eq(
		fold(&acc,
		     "[" OPENED ","
		     "[\"MoneyDeposited\", {\"amount\": 100, \"balance_after\": 100}],"
		     "[\"MoneyWithdrawn\", {\"amount\": 30, \"balance_after\": 70, \"reference\": \"x\"}],"
		     "[\"TransferReceived\", {\"transfer_id\": \"t\", \"from_account_id\": \"b\", \"amount\": 5, \"balance_after\": 75}],"
		     "[\"TransferSent\", {\"transfer_id\": \"u\", \"to_account_id\": \"b\", \"amount\": 475, \"balance_after\": -400}]"
		     "]",
		     &err),
		0);
	ck_assert_int_eq(acc.status, ACCOUNT_OPEN);
	ck_assert_int_eq(acc.version, 5);
	ck_assert_int_eq(acc.balance, -400);
	ck_assert_int_eq(acc.overdraft_limit, 500);
	ck_assert_str_eq(acc.currency, "EUR");
}
END_TEST

START_TEST(closed_closes_the_account)
{
	struct es_error err = ES_ERROR_INIT;
	struct account acc;

	ck_assert_int_eq(
		fold(&acc,
		     "[" OPENED ","
		     "[\"MoneyDeposited\", {\"amount\": 9, \"balance_after\": 9}],"
		     "[\"MoneyWithdrawn\", {\"amount\": 9, \"balance_after\": 0}],"
		     "[\"AccountClosed\", {}]]",
		     &err),
		0);
	ck_assert_int_eq(acc.status, ACCOUNT_CLOSED);
	ck_assert_int_eq(acc.version, 4);
	ck_assert_int_eq(acc.balance, 0);
}
END_TEST

START_TEST(limit_change_sets_the_limit_and_states_the_balance)
{
	struct es_error err = ES_ERROR_INIT;
	struct account acc;

	ck_assert_int_eq(
		fold(&acc,
		     "[" OPENED ","
		     "[\"MoneyWithdrawn\", {\"amount\": 400, \"balance_after\": -400}],"
		     "[\"OverdraftLimitChanged\", {\"overdraft_limit\": 400, \"previous_overdraft_limit\": 500, \"balance\": -400}]]",
		     &err),
		0);
	ck_assert_int_eq(acc.status, ACCOUNT_OPEN);
	ck_assert_int_eq(acc.version, 3);
	ck_assert_int_eq(acc.balance, -400);
	ck_assert_int_eq(acc.overdraft_limit, 400);
	ck_assert_str_eq(acc.currency, "EUR");
	/* later money events keep it */
	ck_assert_int_eq(
		fold(&acc,
		     "[" OPENED ","
		     "[\"OverdraftLimitChanged\", {\"overdraft_limit\": 2000, \"previous_overdraft_limit\": 500, \"balance\": 0}],"
		     "[\"MoneyWithdrawn\", {\"amount\": 1500, \"balance_after\": -1500}]]",
		     &err),
		0);
	ck_assert_int_eq(acc.balance, -1500);
	ck_assert_int_eq(acc.overdraft_limit, 2000);
	ck_assert_int_eq(err.code, ES_OK);
}
END_TEST

/*
 * Fold `all` (a JSON array of events) whole, and only its events with the
 * versions `pick` lists (as account_repo.c loads them: the first, the
 * last OverdraftLimitChanged, the last); the two states must be equal.
 */
static void assert_load_equals_fold(const char *all_json, const int *pick,
				    size_t npick)
{
	struct es_error err = ES_ERROR_INIT;
	struct account all, some;
	json_t *events = json_loads(all_json, 0, NULL), *ev;
	size_t i;

	ck_assert_ptr_nonnull(events);
	ck_assert_int_eq(fold(&all, all_json, &err), 0);
	account_init(&some, A_ID);
	for (i = 0; i < npick; i++) {
		ev = json_array_get(events, (size_t)pick[i] - 1);
		ck_assert_int_eq(
			account_apply(&some,
				      json_string_value(json_array_get(ev, 0)),
				      json_array_get(ev, 1), pick[i], &err),
			0);
	}
	json_decref(events);
	ck_assert_int_eq(some.status, all.status);
	ck_assert_int_eq(some.version, all.version);
	ck_assert_int_eq(some.balance, all.balance);
	ck_assert_int_eq(some.overdraft_limit, all.overdraft_limit);
	ck_assert_str_eq(some.currency, all.currency);
	ck_assert_str_eq(some.owner, all.owner);
}

/* With limit changes: the first, the last change and the last event. */
START_TEST(first_last_limit_change_and_last_give_the_same_state_as_all)
{
	static const int one_two_four[] = { 1, 2, 4 }, one_four[] = { 1, 4 },
			 one_two[] = { 1, 2 }, one_three_six[] = { 1, 3, 6 };

	/* a change, then money */
	assert_load_equals_fold(
		"[" OPENED ","
		"[\"OverdraftLimitChanged\", {\"overdraft_limit\": 900, \"previous_overdraft_limit\": 500, \"balance\": 0}],"
		"[\"MoneyWithdrawn\", {\"amount\": 800, \"balance_after\": -800}],"
		"[\"MoneyDeposited\", {\"amount\": 100, \"balance_after\": -700}]]",
		one_two_four, 3);
	/* money, then changes: the last event is the last change */
	assert_load_equals_fold(
		"[" OPENED ","
		"[\"MoneyDeposited\", {\"amount\": 30, \"balance_after\": 30}],"
		"[\"OverdraftLimitChanged\", {\"overdraft_limit\": 10, \"previous_overdraft_limit\": 500, \"balance\": 30}],"
		"[\"OverdraftLimitChanged\", {\"overdraft_limit\": 20, \"previous_overdraft_limit\": 10, \"balance\": 30}]]",
		one_four, 2);
	/* only a change */
	assert_load_equals_fold(
		"[" OPENED ","
		"[\"OverdraftLimitChanged\", {\"overdraft_limit\": 0, \"previous_overdraft_limit\": 500, \"balance\": 0}]]",
		one_two, 2);
	/* a change, money back to 0, closed */
	assert_load_equals_fold(
		"[" OPENED ","
		"[\"MoneyDeposited\", {\"amount\": 5, \"balance_after\": 5}],"
		"[\"OverdraftLimitChanged\", {\"overdraft_limit\": 7, \"previous_overdraft_limit\": 500, \"balance\": 5}],"
		"[\"MoneyWithdrawn\", {\"amount\": 9, \"balance_after\": -4}],"
		"[\"MoneyDeposited\", {\"amount\": 4, \"balance_after\": 0}],"
		"[\"AccountClosed\", {}]]",
		one_three_six, 3);
}
END_TEST

/* The load strategy: the first and the last event give the whole state. */
START_TEST(first_and_last_event_give_the_same_state_as_all)
{
	static const char *const last[] = {
		"[\"MoneyDeposited\", {\"amount\": 1, \"balance_after\": 42}]",
		"[\"AccountClosed\", {}]",
		"[\"TransferSent\", {\"transfer_id\": \"t\", \"to_account_id\": \"b\", \"amount\": 1, \"balance_after\": -7}]",
	};
	struct es_error err = ES_ERROR_INIT;
	struct account all, two;
	char json[1024];
	json_t *ev;
	size_t i;

	for (i = 0; i < ARRAY_SIZE(last); i++) {
		snprintf(json, sizeof(json),
			 "[" OPENED ", [\"MoneyDeposited\", {\"amount\": 3, "
			 "\"balance_after\": 3}], [\"MoneyWithdrawn\", "
			 "{\"amount\": 3, \"balance_after\": 0}], %s]",
			 last[i]);
		ck_assert_int_eq(fold(&all, json, &err), 0);
		ck_assert_int_eq(fold(&two, "[" OPENED "]", &err), 0);
		ev = json_loads(last[i], 0, NULL);
		ck_assert_int_eq(
			account_apply(&two,
				      json_string_value(json_array_get(ev, 0)),
				      json_array_get(ev, 1), 4, &err),
			0);
		json_decref(ev);
		ck_assert_int_eq(two.status, all.status);
		ck_assert_int_eq(two.version, all.version);
		ck_assert_int_eq(two.balance, all.balance);
		ck_assert_int_eq(two.overdraft_limit, all.overdraft_limit);
		ck_assert_str_eq(two.currency, all.currency);
		ck_assert_str_eq(two.owner, all.owner);
	}
}
END_TEST

START_TEST(unknown_type_moves_version_only)
{
	struct es_error err = ES_ERROR_INIT;
	struct account acc;

	ck_assert_int_eq(
		fold(&acc,
		     "[" OPENED ","
		     "[\"MoneyDeposited\", {\"amount\": 10, \"balance_after\": 10}],"
		     "[\"NoteAdded\", {\"balance_after\": 999, \"text\": \"hi\"}]]",
		     &err),
		0);
	ck_assert_int_eq(acc.version, 3);
	ck_assert_int_eq(acc.balance, 10);
	ck_assert_int_eq(acc.status, ACCOUNT_OPEN);
	ck_assert_int_eq(
		fold(&acc,
		     "[" OPENED ","
		     "[\"NoteAdded\", {\"balance_after\": 999, \"text\": \"hi\"}],"
		     "[\"AccountClosed\", null]]",
		     &err),
		0);
	ck_assert_int_eq(acc.version, 3);
	ck_assert_int_eq(acc.balance, 0);
	ck_assert_int_eq(acc.status, ACCOUNT_CLOSED);
	ck_assert_int_eq(fold(&acc, "[[\"Whatever\", 7]]", &err), 0);
	ck_assert_int_eq(acc.status, ACCOUNT_NONE);
	ck_assert_int_eq(acc.version, 1);
}
END_TEST

START_TEST(malformed_payload_is_an_internal_error)
{
	static const char *const bad[] = {
		"[[\"AccountOpened\", {\"currency\": \"EUR\", \"overdraft_limit\": 0}]]",
		"[[\"AccountOpened\", {\"owner\": 1, \"currency\": \"EUR\", \"overdraft_limit\": 0}]]",
		"[[\"AccountOpened\", {\"owner\": \"a\", \"currency\": \"EURO\", \"overdraft_limit\": 0}]]",
		"[[\"AccountOpened\", {\"owner\": \"a\", \"currency\": \"EUR\"}]]",
		"[[\"AccountOpened\", {\"owner\": \"a\", \"currency\": \"EUR\", \"overdraft_limit\": 1.5}]]",
		"[[\"AccountOpened\", {\"owner\": \"a\", \"currency\": \"EUR\", \"overdraft_limit\": -1}]]",
		"[[\"AccountOpened\", null]]",
		"[[\"AccountOpened\", [1, 2]]]",
		"[" OPENED ", [\"MoneyDeposited\", {\"amount\": 1}]]",
		"[" OPENED
		", [\"MoneyWithdrawn\", {\"balance_after\": \"3\"}]]",
		"[" OPENED ", [\"TransferSent\", {\"balance_after\": 3.0}]]",
		"[" OPENED ", [\"TransferReceived\", null]]",
		"[" OPENED ", [null, {}]]",
		"[" OPENED ", [\"OverdraftLimitChanged\", {\"balance\": 0}]]",
		"[" OPENED
		", [\"OverdraftLimitChanged\", {\"overdraft_limit\": 5}]]",
		"[" OPENED
		", [\"OverdraftLimitChanged\", {\"overdraft_limit\": -1, \"balance\": 0}]]",
		"[" OPENED
		", [\"OverdraftLimitChanged\", {\"overdraft_limit\": 1.5, \"balance\": 0}]]",
		"[" OPENED
		", [\"OverdraftLimitChanged\", {\"overdraft_limit\": 5, \"balance\": \"0\"}]]",
		"[" OPENED ", [\"OverdraftLimitChanged\", null]]",
	};
	struct es_error err = ES_ERROR_INIT;
	struct account acc;
	size_t i;

	for (i = 0; i < ARRAY_SIZE(bad); i++) {
		ck_assert_msg(fold(&acc, bad[i], &err) == -1, "accepted %s",
			      bad[i]);
		ck_assert_int_eq(err.code, ES_EINTERNAL);
		ck_assert(err.detail[0] != '\0');
		es_error_release(&err);
	}
}
END_TEST

START_TEST(failed_apply_leaves_the_state_alone)
{
	struct es_error err = ES_ERROR_INIT;
	struct account acc;
	json_t *data = json_pack("{s:s, s:s, s:s}", "owner", "Bob", "currency",
				 "USD", "overdraft_limit", "x");

	ck_assert_int_eq(fold(&acc, "[" OPENED "]", &err), 0);
	ck_assert_int_eq(
		account_apply(&acc, ES_EV_ACCOUNT_OPENED, data, 2, &err), -1);
	es_error_release(&err);
	ck_assert_int_eq(acc.version, 1);
	ck_assert_str_eq(acc.owner, "Zoë");
	ck_assert_str_eq(acc.currency, "EUR");
	ck_assert_int_eq(acc.overdraft_limit, 500);
	json_decref(data);
}
END_TEST

START_TEST(longest_owner_fits_the_state)
{
	struct es_error err = ES_ERROR_INIT;
	struct account acc;
	char owner[4 * ACCOUNT_OWNER_MAX + 1];
	json_t *data;
	int i;

	/* 200 four-byte characters: the most the validator lets through */
	for (i = 0; i < ACCOUNT_OWNER_MAX; i++)
		memcpy(owner + 4 * i, "\xf0\x9f\x98\x80", 4);
	owner[4 * ACCOUNT_OWNER_MAX] = '\0';
	data = json_pack("{s:s, s:s, s:i}", "owner", owner, "currency", "EUR",
			 "overdraft_limit", 0);
	account_init(&acc, A_ID);
	ck_assert_int_eq(
		account_apply(&acc, ES_EV_ACCOUNT_OPENED, data, 1, &err), 0);
	ck_assert_str_eq(acc.owner, owner);
	json_decref(data);
}
END_TEST

static Suite *account_suite(void)
{
	Suite *s = suite_create("account");
	TCase *tc = tcase_create("fold");

	tcase_add_test(tc, new_state_is_empty);
	tcase_add_test(tc, opened_sets_the_opening_facts);
	tcase_add_test(tc, money_events_set_balance_from_balance_after);
	tcase_add_test(tc, closed_closes_the_account);
	tcase_add_test(tc, limit_change_sets_the_limit_and_states_the_balance);
	tcase_add_test(tc, first_and_last_event_give_the_same_state_as_all);
	tcase_add_test(
		tc,
		first_last_limit_change_and_last_give_the_same_state_as_all);
	tcase_add_test(tc, unknown_type_moves_version_only);
	tcase_add_test(tc, malformed_payload_is_an_internal_error);
	tcase_add_test(tc, failed_apply_leaves_the_state_alone);
	tcase_add_test(tc, longest_owner_fits_the_state);
	suite_add_tcase(s, tc);
	return s;
}

int main(void)
{
	SRunner *sr = srunner_create(account_suite());
	int failed;

	srunner_run_all(sr, CK_NORMAL);
	failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
