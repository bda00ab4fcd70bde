/*
 * check_views.c - the projected views' pure folds on event lists, without
 * a database: accounts, statement, daily totals, owner totals, the large
 * transactions cursor and page, and the bulk-writing helpers.
 */
#include <check.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>

#include "../../query-service/views/view_account.h"
#include "../../query-service/views/bulk.h"
#include "../../query-service/views/daily.h"
#include "../../query-service/views/keymap.h"
#include "../../query-service/views/large.h"
#include "../../query-service/views/owner.h"
#include "../../query-service/views/payload.h"
#include "../../query-service/views/statement.h"
#include "../../query-service/views/view.h"
#include "es_buf.h"
#include "view_log.h"

#define A_ID "11111111-1111-4111-8111-111111111111"
#define B_ID "22222222-2222-4222-8222-222222222222"
#define C_ID "33333333-3333-4333-8333-333333333333"
#define T_ID "44444444-4444-4444-8444-444444444444"
#define A    "account-" A_ID
#define B    "account-" B_ID
#define C    "account-" C_ID

#define T1 "2024-05-01T10:00:00.000001Z"
#define T2 "2024-05-01T11:00:00.000000Z"
#define T3 "2024-05-01T23:59:59.999999Z"
#define T4 "2024-05-02T00:00:00.000000Z"
#define T5 "2024-05-02T08:30:00.500000Z"

/* An event list; each event's position is its index + 1 (or given). */
static struct es_events log_ = ES_EVENTS_INIT;

static void log_reset(void)
{
	es_events_release(&log_);
}

/* Append an event; `data` is JSON text. Returns it. */
static struct es_event *push_at(long long position, const char *stream,
				long long version, const char *type,
				const char *data, const char *time)
{
	return view_log_push(&log_, position, stream, version, type, data, "{}",
			     time);
}

static struct es_event *push(const char *stream, long long version,
			     const char *type, const char *data,
			     const char *time)
{
	return push_at((long long)log_.n + 1, stream, version, type, data,
		       time);
}

static const char *opened(const char *owner, const char *currency,
			  long long limit)
{
	static char buf[256];

	snprintf(buf, sizeof(buf),
		 "{\"account_id\":\"x\",\"owner\":\"%s\",\"currency\":\"%s\","
		 "\"overdraft_limit\":%lld}",
		 owner, currency, limit);
	return buf;
}

static const char *money(long long amount, long long after,
			 const char *currency)
{
	static char buf[256];

	snprintf(buf, sizeof(buf),
		 "{\"amount\":%lld,\"balance_after\":%lld,\"currency\":\"%s\"}",
		 amount, after, currency);
	return buf;
}

static const char *sent(const char *to, long long amount, long long after,
			const char *currency)
{
	static char buf[256];

	snprintf(buf, sizeof(buf),
		 "{\"transfer_id\":\"%s\",\"to_account_id\":\"%s\","
		 "\"amount\":%lld,\"balance_after\":%lld,\"currency\":\"%s\","
		 "\"reference\":\"rent\"}",
		 T_ID, to, amount, after, currency);
	return buf;
}

static const char *received(const char *from, long long amount, long long after,
			    const char *currency)
{
	static char buf[256];

	snprintf(buf, sizeof(buf),
		 "{\"transfer_id\":\"%s\",\"from_account_id\":\"%s\","
		 "\"amount\":%lld,\"balance_after\":%lld,\"currency\":\"%s\","
		 "\"reference\":\"rent\"}",
		 T_ID, from, amount, after, currency);
	return buf;
}

/* Fold every event of the log into a new batch of `ops`; must succeed. */
static void *fold_all(const struct view_ops *ops)
{
	struct es_error err = ES_ERROR_INIT;
	void *batch = ops->batch_new();
	size_t i;

	ck_assert_ptr_nonnull(batch);
	for (i = 0; i < log_.n; i++)
		ck_assert_msg(ops->apply(batch, &log_.v[i], &err) >= 0,
			      "%s: event %zu: %s", ops->name, i + 1,
			      err.detail);
	return batch;
}

/* Apply the last event of the log to a fresh batch: -1, ES_EINVALID. */
static void assert_batch_refuses(const struct view_ops *ops,
				 const char *detail_part)
{
	struct es_error err = ES_ERROR_INIT;
	void *batch = ops->batch_new();
	size_t i;
	int r = 0;

	for (i = 0; i < log_.n && r >= 0; i++)
		r = ops->apply(batch, &log_.v[i], &err);
	ck_assert_int_eq(r, -1);
	ck_assert_int_eq(i, log_.n);
	ck_assert_int_eq(err.code, ES_EINVALID);
	ck_assert_msg(strstr(err.detail, detail_part) != NULL,
		      "detail '%s' lacks '%s'", err.detail, detail_part);
	ops->batch_free(batch);
	es_error_release(&err);
}

/* ---- accounts ---- */

/* A's life: opened, deposit, withdrawal, transfer out, transfer in. */
static void account_a_story(void)
{
	push(A, 1, "AccountOpened", opened("Zoë Ørsted", "EUR", 500), T1);
	push(A, 2, "MoneyDeposited", money(1000, 1000, "EUR"), T2);
	push(A, 3, "MoneyWithdrawn", money(1300, -300, "EUR"), T2);
	push(A, 4, "TransferSent", sent(B_ID, 200, -500, "EUR"), T3);
	push(A, 5, "TransferReceived", received(B_ID, 550, 50, "EUR"), T4);
}

START_TEST(account_fold_follows_balance_version_and_times)
{
	struct es_error err = ES_ERROR_INIT;
	struct view_account acc;
	size_t i;

	memset(&acc, 0, sizeof(acc));
	account_a_story();
	for (i = 0; i < log_.n; i++)
		ck_assert_int_eq(view_account_fold(&acc, &log_.v[i], &err), 1);
	ck_assert_str_eq(acc.id, A_ID);
	ck_assert_str_eq(acc.owner, "Zoë Ørsted");
	ck_assert_str_eq(acc.currency, "EUR");
	ck_assert_int_eq(acc.balance, 50);
	ck_assert_int_eq(acc.overdraft_limit, 500);
	ck_assert_int_eq(acc.status, VIEW_ACCOUNT_OPEN);
	ck_assert_int_eq(acc.version, 5);
	ck_assert_str_eq(acc.opened_at, T1);
	ck_assert_str_eq(acc.updated_at, T4);

	push(A, 6, "MoneyWithdrawn", money(50, 0, "EUR"), T5);
	push(A, 7, "AccountClosed", "{}", T5);
	ck_assert_int_eq(view_account_fold(&acc, &log_.v[5], &err), 1);
	ck_assert_int_eq(view_account_fold(&acc, &log_.v[6], &err), 1);
	ck_assert_int_eq(acc.balance, 0);
	ck_assert_int_eq(acc.status, VIEW_ACCOUNT_CLOSED);
	ck_assert_int_eq(acc.version, 7);
	ck_assert_str_eq(acc.opened_at, T1);
	ck_assert_str_eq(acc.updated_at, T5);
	ck_assert_int_eq(err.code, ES_OK);
	log_reset();
}
END_TEST

START_TEST(account_fold_skips_other_categories_and_unknown_types)
{
	struct es_error err = ES_ERROR_INIT;
	struct view_account acc, before;
	size_t i;

	memset(&acc, 0, sizeof(acc));
	push(A, 1, "AccountOpened", opened("Ann", "USD", 0), T1);
	ck_assert_int_eq(view_account_fold(&acc, &log_.v[0], &err), 1);
	before = acc;
	push(A, 2, "AccountNicknamed", "{\"nick\":\"x\"}", T2);
	push("orders-" A_ID, 1, "MoneyDeposited", money(5, 5, "USD"), T2);
	push("Account-" A_ID, 1, "MoneyDeposited", money(5, 5, "USD"), T2);
	push("account-42", 1, "MoneyDeposited", money(5, 5, "USD"), T2);
	push("account-" A_ID "0", 1, "MoneyDeposited", money(5, 5, "USD"), T2);
	push("accounts", 1, "AccountOpened", opened("Bob", "USD", 0), T2);
	for (i = 1; i < log_.n; i++)
		ck_assert_int_eq(view_account_fold(&acc, &log_.v[i], &err), 0);
	ck_assert_mem_eq(&acc, &before, sizeof(acc));
	ck_assert_int_eq(err.code, ES_OK);
	ck_assert_int_eq(view_account_stream("account-" A_ID, acc.id), 1);
	ck_assert_int_eq(view_account_stream("account-", acc.id), 0);
	ck_assert_int_eq(view_account_stream(NULL, acc.id), 0);
	log_reset();
}
END_TEST

/* Fold the log's last event into an open account: -1, ES_EINVALID. */
static void assert_fold_refuses(const char *detail_part)
{
	struct es_error err = ES_ERROR_INIT;
	struct view_account acc;

	memset(&acc, 0, sizeof(acc));
	if (log_.n > 1)
		ck_assert_int_eq(view_account_fold(&acc, &log_.v[0], &err), 1);
	ck_assert_int_eq(view_account_fold(&acc, &log_.v[log_.n - 1], &err),
			 -1);
	ck_assert_int_eq(err.code, ES_EINVALID);
	ck_assert_msg(strstr(err.detail, detail_part) != NULL,
		      "detail '%s' lacks '%s'", err.detail, detail_part);
	es_error_release(&err);
	assert_batch_refuses(&view_accounts_ops, detail_part);
	log_reset();
}

START_TEST(account_fold_refuses_malformed_payloads)
{
	push(A, 1, "AccountOpened",
	     "{\"owner\":7,\"currency\":\"EUR\","
	     "\"overdraft_limit\":0}",
	     T1);
	assert_fold_refuses("event 1 (AccountOpened of '" A "'): 'owner'");
	push(A, 1, "AccountOpened",
	     "{\"owner\":\"Ann\",\"currency\":\"eur\","
	     "\"overdraft_limit\":0}",
	     T1);
	assert_fold_refuses("'currency' is not a three-letter");
	push(A, 1, "AccountOpened", "{\"owner\":\"Ann\",\"currency\":\"EUR\"}",
	     T1);
	assert_fold_refuses("'overdraft_limit' is missing");
	push(A, 1, "AccountOpened", opened("Ann", "EUR", -1), T1);
	assert_fold_refuses("'overdraft_limit' is negative");
	push(A, 1, "AccountOpened", opened("Ann", "EUR", 0), "yesterday");
	assert_fold_refuses("recorded_at 'yesterday'");
	push(A, 1, "AccountOpened", opened("Ann", "EUR", 0), NULL);
	assert_fold_refuses("recorded_at");
	push(A, 1, "AccountOpened", opened("Ann", "EUR", 0), T1);
	push(A, 2, "MoneyDeposited", "{\"amount\":5,\"balance_after\":\"5\"}",
	     T2);
	assert_fold_refuses("event 2 (MoneyDeposited of '" A
			    "'): 'balance_after' is not an integer");
	push(A, 1, "AccountOpened", opened("Ann", "EUR", 0), T1);
	push(A, 2, "TransferSent", "[1, 2]", T2);
	assert_fold_refuses("'balance_after' is missing");
	push(A, 1, "AccountOpened", opened("Ann", "EUR", 0), T1);
	push(A, 2, "AccountOpened",
	     "{\"owner\":\"a\\u0000b\","
	     "\"currency\":\"EUR\","
	     "\"overdraft_limit\":0}",
	     T2);
	assert_fold_refuses(
		"the payload cannot be read: \\u0000 is not allowed");
	/* valid JSON beyond what jansson holds, as jsonb prints 1e19 */
	push(A, 1, "AccountOpened", opened("Ann", "EUR", 0), T1);
	push(A, 2, "MoneyDeposited",
	     "{\"amount\": 10000000000000000000, \"balance_after\": 1}", T2);
	assert_fold_refuses("event 2 (MoneyDeposited of '" A
			    "'): the payload cannot be read: too big integer");
}
END_TEST

START_TEST(payloads_of_other_streams_are_not_decoded)
{
	char big[400] = "{\"x\": 1";
	void *batch;
	size_t i;

	/* 1e308 as jsonb prints it: 309 digits */
	memset(big + 7, '0', 308);
	strcpy(big + 315, "}");
	push("misc-2", 1, "Note", "{\"x\": 10000000000000000000}", T1);
	push("misc-2", 2, "MoneyDeposited", big, T1);
	for (i = 0; i < log_.n; i++) {
		ck_assert_ptr_null(log_.v[i].payload);
		ck_assert_ptr_null(log_.v[i].payload_flat);
		ck_assert_ptr_null(log_.v[i].payload_error);
	}
	batch = fold_all(&view_accounts_ops);
	ck_assert_int_eq(view_accounts_ops.batch_size(batch), 0);
	view_accounts_ops.batch_free(batch);
	batch = fold_all(&view_statement_ops);
	ck_assert_int_eq(view_statement_ops.batch_size(batch), 0);
	view_statement_ops.batch_free(batch);
	batch = fold_all(&view_daily_ops);
	ck_assert_int_eq(view_daily_ops.batch_size(batch), 0);
	view_daily_ops.batch_free(batch);
	log_reset();
}
END_TEST

START_TEST(account_fold_refuses_money_before_opening)
{
	struct es_error err = ES_ERROR_INIT;
	struct view_account acc;

	memset(&acc, 0, sizeof(acc));
	push(A, 2, "MoneyDeposited", money(5, 5, "EUR"), T2);
	ck_assert_int_eq(view_account_fold(&acc, &log_.v[0], &err), -1);
	ck_assert_int_eq(err.code, ES_EINVALID);
	ck_assert_ptr_nonnull(strstr(err.detail, "never opened"));
	es_error_release(&err);

	/* an event of another account is a bug of the caller */
	push(B, 1, "AccountOpened", opened("Bob", "EUR", 0), T1);
	push(A, 1, "AccountOpened", opened("Ann", "EUR", 0), T1);
	ck_assert_int_eq(view_account_fold(&acc, &log_.v[1], &err), 1);
	ck_assert_int_eq(view_account_fold(&acc, &log_.v[2], &err), -1);
	ck_assert_int_eq(err.code, ES_EINTERNAL);
	es_error_release(&err);
	log_reset();
}
END_TEST

START_TEST(account_json_has_every_field)
{
	struct es_error err = ES_ERROR_INIT;
	struct view_account acc;
	json_t *j;
	size_t i;

	memset(&acc, 0, sizeof(acc));
	account_a_story();
	for (i = 0; i < log_.n; i++)
		ck_assert_int_eq(view_account_fold(&acc, &log_.v[i], &err), 1);
	j = view_account_json(&acc);
	ck_assert_ptr_nonnull(j);
	ck_assert_int_eq(json_object_size(j), 9);
	ck_assert_str_eq(json_string_value(json_object_get(j, "id")), A_ID);
	ck_assert_str_eq(json_string_value(json_object_get(j, "owner")),
			 "Zoë Ørsted");
	ck_assert_str_eq(json_string_value(json_object_get(j, "currency")),
			 "EUR");
	ck_assert_int_eq(json_integer_value(json_object_get(j, "balance")), 50);
	ck_assert_int_eq(
		json_integer_value(json_object_get(j, "overdraft_limit")), 500);
	ck_assert_str_eq(json_string_value(json_object_get(j, "status")),
			 "open");
	ck_assert_int_eq(json_integer_value(json_object_get(j, "version")), 5);
	ck_assert_str_eq(json_string_value(json_object_get(j, "opened_at")),
			 T1);
	ck_assert_str_eq(json_string_value(json_object_get(j, "updated_at")),
			 T4);
	json_decref(j);
	acc.status = VIEW_ACCOUNT_CLOSED;
	j = view_account_json(&acc);
	ck_assert_str_eq(json_string_value(json_object_get(j, "status")),
			 "closed");
	json_decref(j);
	log_reset();
}
END_TEST

/*
 * view_event_check() learns once what view_event_account() and
 * view_event_time() would find out each time: with the flags and
 * without them (an event nobody checked), the answers are the same.
 */
START_TEST(event_check_answers_as_the_full_checks_do)
{
	static const char *const streams[] = {
		"account-" A_ID,
		"account-6F9619FF-8B86-D011-B42D-00C04FC964FF",
		"account-6f9619ff-8b86-d011-b42d-00c04fc964f",
		"account-6f9619ff-8b86-d011-b42d-00c04fc964ff0",
		"account-6f9619ff8b86-d011-b42d-00c04fc964ff0",
		"account-",
		"accounts-" A_ID,
		"misc-1",
		NULL,
	};
	static const char *const times[] = {
		T1,
		"2024-05-01T12:00:00Z",
		"2024-05-01T12:00:00.1Z",
		"2024-05-01T12:00:00.1234567Z",
		"2024-05-01 12:00:00Z",
		"2024-05-01T12:00:00+00",
		"",
		NULL,
	};
	struct es_error e1 = ES_ERROR_INIT, e2 = ES_ERROR_INIT;
	char id1[37], id2[37], t1[VIEW_TIME_MAX], t2[VIEW_TIME_MAX];
	size_t i, k;
	int accounts = 0, good_times = 0;

	for (i = 0; i < sizeof(streams) / sizeof(*streams); i++) {
		for (k = 0; k < sizeof(times) / sizeof(*times); k++) {
			struct es_event ev;
			int a1, a2, r1, r2;

			memset(&ev, 0, sizeof(ev));
			ev.stream_id = (char *)streams[i];
			ev.recorded_at = (char *)times[k];
			ev.type = (char *)"MoneyDeposited";
			memset(id1, 0, sizeof(id1));
			memset(id2, 0, sizeof(id2));
			a1 = view_event_account(&ev, id1);
			r1 = view_event_time(&ev, t1, &e1);
			view_event_check(&ev);
			ck_assert(ev.view_flags & VIEW_EV_KNOWN);
			a2 = view_event_account(&ev, id2);
			r2 = view_event_time(&ev, t2, &e2);
			ck_assert_int_eq(a1, a2);
			ck_assert_int_eq(r1, r2);
			if (a1) {
				ck_assert_str_eq(id1, id2);
				accounts++;
			}
			if (r1 == 0) {
				ck_assert_str_eq(t1, t2);
				good_times++;
			} else {
				ck_assert_str_eq(e1.detail, e2.detail);
			}
			es_error_release(&e1);
			es_error_release(&e2);
			e1 = (struct es_error)ES_ERROR_INIT;
			e2 = (struct es_error)ES_ERROR_INIT;
		}
	}
	/* the account stream, with each of the three good times */
	ck_assert_int_eq(accounts, 8);
	ck_assert_int_eq(good_times, 3 * 9);
}
END_TEST

/* view_account_render() against jansson's own dump of the same account. */
static void render_matches_jansson(const struct view_account *acc)
{
	struct es_buf b = ES_BUF_INIT;
	json_t *j = view_account_json(acc);
	char *want = json_dumps(j, JSON_COMPACT);

	ck_assert_ptr_nonnull(want);
	ck_assert_int_eq(view_account_render(acc, &b), 0);
	ck_assert(!b.failed);
	ck_assert_str_eq(b.s, want);
	free(want);
	json_decref(j);
	es_buf_release(&b);
}

START_TEST(account_render_is_jansson_byte_for_byte)
{
	static const char *const owners[] = {
		"Zoë Ørsted",
		"plain",
		"quote \" back \\ slash",
		"tab\tnl\ncr\r",
		"\x01\x1f\x7f ctl",
		"/slash/ 𝄞 \u2028",
		"",
	};
	static const long long nums[] = {
		0, -1, 1, LLONG_MIN, LLONG_MAX, 1000000000000LL
	};
	struct view_account acc;
	size_t i;

	for (i = 0; i < sizeof(owners) / sizeof(*owners); i++) {
		memset(&acc, 0, sizeof(acc));
		memcpy(acc.id, A_ID, sizeof(acc.id));
		snprintf(acc.owner, sizeof(acc.owner), "%s", owners[i]);
		memcpy(acc.currency, "EUR", 4);
		acc.balance = nums[i % 6];
		acc.overdraft_limit = nums[(i + 3) % 6];
		acc.version = nums[(i + 1) % 6];
		acc.status = i % 2 ? VIEW_ACCOUNT_CLOSED : VIEW_ACCOUNT_OPEN;
		snprintf(acc.opened_at, sizeof(acc.opened_at), "%s", T1);
		snprintf(acc.updated_at, sizeof(acc.updated_at), "%s", T4);
		render_matches_jansson(&acc);
	}
}
END_TEST

START_TEST(account_render_leaves_bad_utf8_to_jansson)
{
	struct es_buf b = ES_BUF_INIT;
	struct view_account acc;

	memset(&acc, 0, sizeof(acc));
	memcpy(acc.id, A_ID, sizeof(acc.id));
	memcpy(acc.owner, "bad \xc3\x28", 7);
	ck_assert_int_eq(view_account_render(&acc, &b), -1);
	ck_assert_uint_eq(b.len, 0);
	es_buf_release(&b);
}
END_TEST

START_TEST(accounts_batch_keeps_latest_state_and_what_it_knows)
{
	const struct view_account_change *a, *b, *c;
	void *batch;

	account_a_story(); /* positions 1-5 */
	/* B and C were opened in an earlier batch */
	push(B, 7, "TransferReceived", received(A_ID, 200, 900, "EUR"), T3);
	push(B, 8, "TransferSent", sent(A_ID, 550, 350, "EUR"), T4);
	push(C, 4, "AccountClosed", "{}", T5);
	push(A, 6, "AccountNicknamed", "{}", T5);
	push("other-1", 1, "MoneyDeposited", money(1, 1, "EUR"), T5);
	batch = fold_all(&view_accounts_ops);
	ck_assert_int_eq(view_accounts_ops.batch_size(batch), 8);

	a = view_accounts_batch_get(batch, A_ID);
	ck_assert_ptr_nonnull(a);
	ck_assert_int_eq(a->opened, 1);
	ck_assert_str_eq(a->row.owner, "Zoë Ørsted");
	ck_assert_str_eq(a->row.currency, "EUR");
	ck_assert_int_eq(a->row.balance, 50);
	ck_assert_int_eq(a->row.version, 5);
	ck_assert_int_eq(a->position, 5);
	ck_assert_str_eq(a->row.opened_at, T1);
	ck_assert_str_eq(a->row.updated_at, T4);

	b = view_accounts_batch_get(batch, B_ID);
	ck_assert_ptr_nonnull(b);
	ck_assert_int_eq(b->opened, 0);
	ck_assert_int_eq(b->has_balance, 1);
	ck_assert_int_eq(b->has_status, 0);
	ck_assert_int_eq(b->row.balance, 350);
	ck_assert_int_eq(b->row.version, 8);
	ck_assert_int_eq(b->position, 7);
	ck_assert_str_eq(b->row.updated_at, T4);
	ck_assert_str_eq(b->row.owner, "");

	c = view_accounts_batch_get(batch, C_ID);
	ck_assert_ptr_nonnull(c);
	ck_assert_int_eq(c->opened, 0);
	ck_assert_int_eq(c->has_balance, 0);
	ck_assert_int_eq(c->has_status, 1);
	ck_assert_int_eq(c->row.status, VIEW_ACCOUNT_CLOSED);
	ck_assert_int_eq(c->row.version, 4);

	ck_assert_ptr_null(view_accounts_batch_get(batch, T_ID));
	view_accounts_ops.batch_free(batch);
	log_reset();
}
END_TEST

START_TEST(accounts_batch_reopening_resets_the_row)
{
	const struct view_account_change *b;
	void *batch;

	push(B, 3, "MoneyDeposited", money(10, 110, "EUR"), T1);
	push(B, 4, "AccountOpened", opened("Bea", "CHF", 7), T2);
	batch = fold_all(&view_accounts_ops);
	b = view_accounts_batch_get(batch, B_ID);
	ck_assert_int_eq(b->opened, 1);
	ck_assert_int_eq(b->has_balance, 0);
	ck_assert_int_eq(b->row.balance, 0);
	ck_assert_str_eq(b->row.currency, "CHF");
	ck_assert_int_eq(b->row.overdraft_limit, 7);
	ck_assert_int_eq(b->row.version, 4);
	view_accounts_ops.batch_free(batch);
	log_reset();
}
END_TEST

START_TEST(accounts_batch_holds_many_accounts)
{
	char stream[64], id[37];
	void *batch;
	const struct view_account_change *c;
	int i;

	for (i = 0; i < 5000; i++) {
		snprintf(stream, sizeof(stream),
			 "account-00000000-0000-4000-8000-%012d", i);
		push(stream, 1, "AccountOpened", opened("Ann", "EUR", 0), T1);
		push(stream, 2, "MoneyDeposited", money(i + 1, i + 1, "EUR"),
		     T2);
	}
	batch = fold_all(&view_accounts_ops);
	for (i = 0; i < 5000; i++) {
		snprintf(id, sizeof(id), "00000000-0000-4000-8000-%012d", i);
		c = view_accounts_batch_get(batch, id);
		ck_assert_ptr_nonnull(c);
		ck_assert_int_eq(c->row.balance, i + 1);
		ck_assert_int_eq(c->position, 2 * i + 2);
	}
	view_accounts_ops.batch_free(batch);
	log_reset();
}
END_TEST

static const char *limit_changed(long long limit, long long previous,
				 long long balance)
{
	static char buf[256];

	snprintf(buf, sizeof(buf),
		 "{\"account_id\":\"" A_ID "\",\"overdraft_limit\":%lld,"
		 "\"previous_overdraft_limit\":%lld,\"balance\":%lld}",
		 limit, previous, balance);
	return buf;
}

START_TEST(account_fold_takes_limit_changes)
{
	struct es_error err = ES_ERROR_INIT;
	struct view_account acc;
	size_t i;

	memset(&acc, 0, sizeof(acc));
	account_a_story(); /* limit 500, balance 50 at version 5 */
	push(A, 6, "OverdraftLimitChanged", limit_changed(2000, 500, 50), T5);
	for (i = 0; i < log_.n; i++)
		ck_assert_int_eq(view_account_fold(&acc, &log_.v[i], &err), 1);
	ck_assert_int_eq(acc.overdraft_limit, 2000);
	ck_assert_int_eq(acc.balance, 50);
	ck_assert_int_eq(acc.status, VIEW_ACCOUNT_OPEN);
	ck_assert_int_eq(acc.version, 6);
	ck_assert_str_eq(acc.opened_at, T1);
	ck_assert_str_eq(acc.updated_at, T5);
	/* money after it keeps the limit */
	push(A, 7, "MoneyWithdrawn", money(1050, -1000, "EUR"), T5);
	ck_assert_int_eq(view_account_fold(&acc, &log_.v[6], &err), 1);
	ck_assert_int_eq(acc.overdraft_limit, 2000);
	ck_assert_int_eq(acc.balance, -1000);
	ck_assert_int_eq(acc.version, 7);
	ck_assert_int_eq(err.code, ES_OK);
	log_reset();

	push(A, 1, "AccountOpened", opened("Ann", "EUR", 0), T1);
	push(A, 2, "OverdraftLimitChanged", "{\"balance\":0}", T2);
	assert_fold_refuses("event 2 (OverdraftLimitChanged of '" A
			    "'): 'overdraft_limit' is missing");
	push(A, 1, "AccountOpened", opened("Ann", "EUR", 0), T1);
	push(A, 2, "OverdraftLimitChanged", limit_changed(-1, 0, 0), T2);
	assert_fold_refuses("'overdraft_limit' is negative");
	push(A, 1, "AccountOpened", opened("Ann", "EUR", 0), T1);
	push(A, 2, "OverdraftLimitChanged", "{\"overdraft_limit\":\"9\"}", T2);
	assert_fold_refuses("'overdraft_limit' is not an integer");
}
END_TEST

START_TEST(accounts_batch_knows_a_changed_limit)
{
	const struct view_account_change *a, *b;
	void *batch;

	/* A opened in this batch, B earlier */
	push(A, 1, "AccountOpened", opened("Ann", "EUR", 0), T1);
	push(A, 2, "OverdraftLimitChanged", limit_changed(300, 0, 0), T2);
	push(B, 5, "OverdraftLimitChanged", limit_changed(0, 100, 10), T3);
	batch = fold_all(&view_accounts_ops);
	ck_assert_int_eq(view_accounts_ops.batch_size(batch), 3);

	a = view_accounts_batch_get(batch, A_ID);
	ck_assert_ptr_nonnull(a);
	ck_assert_int_eq(a->opened, 1);
	ck_assert_int_eq(a->row.overdraft_limit, 300);
	ck_assert_int_eq(a->row.version, 2);

	b = view_accounts_batch_get(batch, B_ID);
	ck_assert_ptr_nonnull(b);
	ck_assert_int_eq(b->opened, 0);
	ck_assert_int_eq(b->has_limit, 1);
	ck_assert_int_eq(b->has_balance, 0);
	ck_assert_int_eq(b->has_status, 0);
	ck_assert_int_eq(b->row.overdraft_limit, 0);
	ck_assert_int_eq(b->row.version, 5);
	ck_assert_int_eq(b->position, 3);
	ck_assert_str_eq(b->row.updated_at, T3);
	view_accounts_ops.batch_free(batch);
	log_reset();
}
END_TEST

/* A limit change moves no money: no statement row, no daily sum. */
START_TEST(limit_changes_are_no_movements)
{
	const struct view_statement_row *r;
	const struct view_daily_row *rows;
	struct view_statement_row row;
	struct es_error err = ES_ERROR_INIT;
	void *batch;
	size_t n;

	push(A, 1, "AccountOpened", opened("Ann", "EUR", 0), T1);
	push(A, 2, "MoneyDeposited", money(100, 100, "EUR"), T2);
	push(A, 3, "OverdraftLimitChanged", limit_changed(5000, 0, 100), T2);
	push(A, 4, "MoneyWithdrawn", money(600, -500, "EUR"), T2);
	ck_assert_int_eq(view_statement_row_from_event(&row, &log_.v[2], &err),
			 0);
	ck_assert_int_eq(err.code, ES_OK);

	batch = fold_all(&view_statement_ops);
	r = view_statement_rows(batch, &n);
	ck_assert_int_eq(n, 2);
	ck_assert_int_eq(r[0].version, 2);
	ck_assert_int_eq(r[1].version, 4);
	ck_assert_int_eq(r[1].balance_after, -500);
	view_statement_ops.batch_free(batch);

	batch = fold_all(&view_daily_ops);
	ck_assert_int_eq(view_daily_ops.batch_size(batch), 2);
	rows = view_daily_rows(batch, &n);
	ck_assert_int_eq(n, 1);
	ck_assert_int_eq(rows[0].deposits_sum, 100);
	ck_assert_int_eq(rows[0].deposits_count, 1);
	ck_assert_int_eq(rows[0].withdrawals_sum, 600);
	ck_assert_int_eq(rows[0].withdrawals_count, 1);
	ck_assert_int_eq(rows[0].transfers_count, 0);
	view_daily_ops.batch_free(batch);
	log_reset();
}
END_TEST

/* ---- statement ---- */

START_TEST(statement_has_one_row_per_movement_with_balance_after)
{
	const struct view_statement_row *r;
	void *batch;
	size_t n;
	json_t *j;

	account_a_story();
	push(A, 6, "AccountNicknamed", "{}", T5);
	push(A, 7, "MoneyDeposited",
	     "{\"amount\":9,\"balance_after\":59,\"reference\":\"a\\tb\"}", T5);
	push(A, 8, "AccountClosed", "{}", T5);
	push("other-1", 1, "MoneyDeposited", money(1, 1, "EUR"), T5);
	batch = fold_all(&view_statement_ops);
	r = view_statement_rows(batch, &n);
	ck_assert_int_eq(n, 5);
	ck_assert_int_eq(view_statement_ops.batch_size(batch), 5);

	ck_assert_int_eq(r[0].kind, VIEW_DEPOSIT);
	ck_assert_int_eq(r[0].amount, 1000);
	ck_assert_int_eq(r[0].balance_after, 1000);
	ck_assert_int_eq(r[0].version, 2);
	ck_assert_int_eq(r[0].position, 2);
	ck_assert_str_eq(r[0].currency, "EUR");
	ck_assert_str_eq(r[0].counterparty, "");
	ck_assert_ptr_null(r[0].reference);
	ck_assert_str_eq(r[0].recorded_at, T2);

	ck_assert_int_eq(r[1].kind, VIEW_WITHDRAWAL);
	ck_assert_int_eq(r[1].balance_after, -300);

	ck_assert_int_eq(r[2].kind, VIEW_TRANSFER_OUT);
	ck_assert_int_eq(r[2].amount, 200);
	ck_assert_int_eq(r[2].balance_after, -500);
	ck_assert_str_eq(r[2].counterparty, B_ID);
	ck_assert_str_eq(r[2].transfer_id, T_ID);
	ck_assert_str_eq(r[2].reference, "rent");

	ck_assert_int_eq(r[3].kind, VIEW_TRANSFER_IN);
	ck_assert_int_eq(r[3].balance_after, 50);
	ck_assert_str_eq(r[3].counterparty, B_ID);
	ck_assert_str_eq(r[3].account_id, A_ID);

	/* older data without a currency: kept, with none */
	ck_assert_int_eq(r[4].kind, VIEW_DEPOSIT);
	ck_assert_int_eq(r[4].version, 7);
	ck_assert_str_eq(r[4].currency, "");
	ck_assert_str_eq(r[4].reference, "a\tb");

	j = view_statement_row_json(&r[2]);
	ck_assert_int_eq(json_object_size(j), 9);
	ck_assert_str_eq(json_string_value(json_object_get(j, "kind")),
			 "transfer_out");
	ck_assert_int_eq(
		json_integer_value(json_object_get(j, "balance_after")), -500);
	ck_assert_str_eq(json_string_value(json_object_get(j, "counterparty")),
			 B_ID);
	json_decref(j);
	j = view_statement_row_json(&r[4]);
	ck_assert(json_is_null(json_object_get(j, "currency")));
	ck_assert(json_is_null(json_object_get(j, "transfer_id")));
	ck_assert(json_is_null(json_object_get(j, "counterparty")));
	json_decref(j);
	view_statement_ops.batch_free(batch);
	log_reset();
}
END_TEST

START_TEST(statement_kind_names_round_trip)
{
	int k;

	for (k = VIEW_DEPOSIT; k <= VIEW_TRANSFER_IN; k++)
		ck_assert_int_eq(
			view_statement_kind_parse(view_statement_kind_name(k)),
			k);
	ck_assert_int_eq(view_statement_kind_parse("refund"), 0);
	ck_assert_ptr_null(view_statement_kind_name(0));
}
END_TEST

START_TEST(statement_refuses_malformed_payloads)
{
	push(A, 2, "MoneyDeposited", "{\"balance_after\":5}", T2);
	assert_batch_refuses(&view_statement_ops,
			     "event 1 (MoneyDeposited of '" A
			     "'): 'amount' is missing");
	log_reset();
	push(A, 2, "MoneyWithdrawn", "{\"amount\":5.5,\"balance_after\":5}",
	     T2);
	assert_batch_refuses(&view_statement_ops, "'amount' is not an integer");
	log_reset();
	push(A, 2, "MoneyDeposited",
	     "{\"amount\":5,\"balance_after\":5,\"currency\":\"EURO\"}", T2);
	assert_batch_refuses(&view_statement_ops, "'currency'");
	log_reset();
	push(A, 2, "MoneyDeposited",
	     "{\"amount\":5,\"balance_after\":5,\"reference\":5}", T2);
	assert_batch_refuses(&view_statement_ops,
			     "'reference' is not a string");
	log_reset();
	push(A, 2, "TransferSent",
	     "{\"amount\":5,\"balance_after\":5,\"to_account_id\":\"" B_ID
	     "\"}",
	     T2);
	assert_batch_refuses(&view_statement_ops, "'transfer_id' is missing");
	log_reset();
	push(A, 2, "TransferReceived",
	     "{\"amount\":5,\"balance_after\":5,\"transfer_id\":\"" T_ID
	     "\",\"from_account_id\":\"bob\"}",
	     T2);
	assert_batch_refuses(&view_statement_ops,
			     "'from_account_id' is not a UUID");
	log_reset();
	push(A, 2, "MoneyDeposited", money(5, 5, "EUR"), "2024-05-01 10:00");
	assert_batch_refuses(&view_statement_ops, "recorded_at");
	log_reset();
}
END_TEST

START_TEST(statement_takes_upper_case_uuids_in_lower_case)
{
	const struct view_statement_row *r;
	void *batch;
	size_t n;

	push(A, 2, "TransferSent",
	     "{\"amount\":5,\"balance_after\":5,\"transfer_id\":"
	     "\"4444444A-4444-4444-8444-44444444444F\","
	     "\"to_account_id\":\"" B_ID "\"}",
	     T2);
	batch = fold_all(&view_statement_ops);
	r = view_statement_rows(batch, &n);
	ck_assert_int_eq(n, 1);
	ck_assert_str_eq(r[0].transfer_id,
			 "4444444a-4444-4444-8444-44444444444f");
	view_statement_ops.batch_free(batch);
	log_reset();
}
END_TEST

/* ---- daily ---- */

static const struct view_daily_row *daily_row(const struct view_daily_row *rows,
					      size_t n, const char *day,
					      const char *currency)
{
	size_t i;

	for (i = 0; i < n; i++)
		if (!strcmp(rows[i].day, day) &&
		    !strcmp(rows[i].currency, currency))
			return &rows[i];
	return NULL;
}

START_TEST(daily_sums_and_counts_per_utc_day_and_currency)
{
	const struct view_daily_row *rows, *r;
	void *batch;
	size_t n;
	struct es_buf out = ES_BUF_INIT;

	account_a_story(); /* EUR: dep 1000 T2, wd 1300 T2, tx 200 T3, rx T4 */
	push(B, 8, "TransferReceived", received(A_ID, 200, 900, "EUR"), T3);
	push(B, 9, "TransferSent", sent(A_ID, 550, 350, "EUR"), T4);
	push(C, 1, "AccountOpened", opened("Cy", "USD", 0), T3);
	push(C, 2, "MoneyDeposited", money(70, 70, "USD"), T3);
	push(C, 3, "MoneyDeposited", money(30, 100, "USD"), T4);
	push(C, 4, "MoneyWithdrawn", money(100, 0, "USD"), T5);
	push(C, 5, "AccountClosed", "{}", T5);
	push(C, 6, "Audited", money(1, 1, "USD"), T5);
	push("ledger-1", 1, "MoneyDeposited", money(9, 9, "USD"), T5);
	batch = fold_all(&view_daily_ops);
	/* 3 + 1 on 05-01 (EUR), 1 (EUR) + 2 (USD) on 05-02, 1 USD on 05-01 */
	ck_assert_int_eq(view_daily_ops.batch_size(batch), 7);
	rows = view_daily_rows(batch, &n);
	ck_assert_int_eq(n, 4);

	r = daily_row(rows, n, "2024-05-01", "EUR");
	ck_assert_ptr_nonnull(r);
	ck_assert_int_eq(r->deposits_sum, 1000);
	ck_assert_int_eq(r->deposits_count, 1);
	ck_assert_int_eq(r->withdrawals_sum, 1300);
	ck_assert_int_eq(r->withdrawals_count, 1);
	/* sent at T3 (05-01), received at T3 by B: counted once */
	ck_assert_int_eq(r->transfers_sum, 200);
	ck_assert_int_eq(r->transfers_count, 1);

	/* T3 is the last microsecond of 05-01, T4 the first of 05-02 */
	r = daily_row(rows, n, "2024-05-02", "EUR");
	ck_assert_ptr_nonnull(r);
	ck_assert_int_eq(r->deposits_count, 0);
	ck_assert_int_eq(r->withdrawals_count, 0);
	ck_assert_int_eq(r->transfers_sum, 550);
	ck_assert_int_eq(r->transfers_count, 1);

	r = daily_row(rows, n, "2024-05-01", "USD");
	ck_assert_ptr_nonnull(r);
	ck_assert_int_eq(r->deposits_sum, 70);
	ck_assert_int_eq(r->deposits_count, 1);

	r = daily_row(rows, n, "2024-05-02", "USD");
	ck_assert_ptr_nonnull(r);
	ck_assert_int_eq(r->deposits_sum, 30);
	ck_assert_int_eq(r->deposits_count, 1);
	ck_assert_int_eq(r->withdrawals_sum, 100);
	ck_assert_int_eq(r->withdrawals_count, 1);
	ck_assert_int_eq(r->transfers_count, 0);

	view_daily_row_render(&out, r);
	ck_assert_str_eq(out.s, "{\"day\":\"2024-05-02\",\"currency\":\"USD\","
				"\"deposits\":{\"sum\":30,\"count\":1},"
				"\"withdrawals\":{\"sum\":100,\"count\":1},"
				"\"transfers\":{\"sum\":0,\"count\":0}}");
	es_buf_release(&out);
	view_daily_ops.batch_free(batch);
	log_reset();
}
END_TEST

START_TEST(daily_refuses_money_without_currency)
{
	void *batch;

	/* a TransferReceived is not counted, so its currency is not needed */
	push(B, 2, "TransferReceived",
	     "{\"transfer_id\":\"" T_ID "\",\"from_account_id\":\"" A_ID
	     "\",\"amount\":5,\"balance_after\":5}",
	     T2);
	batch = fold_all(&view_daily_ops);
	ck_assert_int_eq(view_daily_ops.batch_size(batch), 0);
	view_daily_ops.batch_free(batch);
	log_reset();

	push(A, 2, "MoneyDeposited", "{\"amount\":5,\"balance_after\":5}", T2);
	assert_batch_refuses(&view_daily_ops, "event 1 (MoneyDeposited of '" A
					      "'): 'currency' is missing");
	log_reset();
	push(A, 2, "TransferSent", "{\"amount\":\"5\",\"currency\":\"EUR\"}",
	     T2);
	assert_batch_refuses(&view_daily_ops, "'amount' is not an integer");
	log_reset();
}
END_TEST

START_TEST(daily_sums_past_64_bits_are_exact)
{
	struct es_buf out = ES_BUF_INIT;
	const struct view_daily_row *r;
	void *batch;
	size_t n;

	/* until issue 12 the view stopped here: "the day's sum overflows" */
	push(A, 2, "MoneyDeposited",
	     "{\"amount\":9223372036854775807,\"currency\":\"EUR\"}", T2);
	push(A, 3, "MoneyDeposited",
	     "{\"amount\":9223372036854775807,\"currency\":\"EUR\"}", T2);
	push(A, 4, "MoneyDeposited", "{\"amount\":3,\"currency\":\"EUR\"}", T2);
	batch = fold_all(&view_daily_ops);
	r = view_daily_rows(batch, &n);
	ck_assert_int_eq(n, 1);
	view_daily_row_render(&out, r);
	ck_assert_ptr_nonnull(
		strstr(out.s, "\"deposits\":{\"sum\":18446744073709551617,"
			      "\"count\":3}"));
	es_buf_release(&out);
	view_daily_ops.batch_free(batch);
	log_reset();
}
END_TEST

START_TEST(daily_split_into_batches_adds_up)
{
	struct es_error err = ES_ERROR_INIT;
	void *b1 = view_daily_ops.batch_new(), *b2 = view_daily_ops.batch_new();
	const struct view_daily_row *r1, *r2;
	size_t n1, n2, i;

	account_a_story();
	for (i = 0; i < log_.n; i++)
		ck_assert_int_ge(
			view_daily_ops.apply(i < 3 ? b1 : b2, &log_.v[i], &err),
			0);
	r1 = view_daily_rows(b1, &n1);
	r2 = view_daily_rows(b2, &n2);
	ck_assert_int_eq(n1, 1);
	ck_assert_int_eq(n2, 1);
	ck_assert_int_eq(r1[0].deposits_sum + r2[0].deposits_sum, 1000);
	ck_assert_int_eq(r1[0].transfers_count + r2[0].transfers_count, 1);
	view_daily_ops.batch_free(b1);
	view_daily_ops.batch_free(b2);
	log_reset();
}
END_TEST

/* ---- owner ---- */

static struct view_account owned(const char *id, const char *owner,
				 const char *currency, long long balance,
				 enum view_account_status status)
{
	struct view_account a;

	memset(&a, 0, sizeof(a));
	strcpy(a.id, id);
	strcpy(a.owner, owner);
	strcpy(a.currency, currency);
	a.balance = balance;
	a.status = status;
	a.version = 3;
	strcpy(a.opened_at, T1);
	strcpy(a.updated_at, T2);
	return a;
}

/* view_owner_totals() of `rows` into a new string; NULL with `err`. */
static char *owner_totals(const char *owner, const struct view_account *rows,
			  size_t n, struct es_error *err)
{
	struct es_buf out = ES_BUF_INIT;
	char *s = NULL;

	if (view_owner_totals(&out, owner, rows, n, err) == 0)
		s = es_buf_detach(&out, NULL);
	es_buf_release(&out);
	return s;
}

START_TEST(owner_totals_per_currency_sorted)
{
	struct es_error err = ES_ERROR_INIT;
	struct view_account rows[4];
	char *s;

	rows[0] = owned(A_ID, "Ann", "USD", 100, VIEW_ACCOUNT_OPEN);
	rows[1] = owned(B_ID, "Ann", "EUR", -40, VIEW_ACCOUNT_OPEN);
	rows[2] = owned(C_ID, "Ann", "USD", 25, VIEW_ACCOUNT_OPEN);
	rows[3] = owned(T_ID, "Ann", "CHF", 0, VIEW_ACCOUNT_CLOSED);
	s = owner_totals("Ann", rows, 4, &err);
	ck_assert_str_eq(
		s, "[{\"currency\":\"CHF\",\"balance\":0,\"accounts\":1},"
		   "{\"currency\":\"EUR\",\"balance\":-40,\"accounts\":1},"
		   "{\"currency\":\"USD\",\"balance\":125,\"accounts\":2}]");
	free(s);

	s = owner_totals("Bob", NULL, 0, &err);
	ck_assert_str_eq(s, "[]");
	free(s);
	ck_assert_int_eq(err.code, ES_OK);

	ck_assert_ptr_null(owner_totals("Bob", rows, 4, &err));
	ck_assert_int_eq(err.code, ES_EINTERNAL);
	es_error_release(&err);
}
END_TEST

START_TEST(owner_totals_past_64_bits_are_exact)
{
	struct es_error err = ES_ERROR_INIT;
	struct view_account rows[3];
	char *s;

	/* until issue 12: ES_EINTERNAL "the total of USD overflows" (500) */
	rows[0] = owned(A_ID, "Ann", "USD", LLONG_MAX, VIEW_ACCOUNT_OPEN);
	rows[1] = owned(B_ID, "Ann", "USD", LLONG_MAX, VIEW_ACCOUNT_OPEN);
	rows[2] = owned(C_ID, "Ann", "EUR", LLONG_MIN, VIEW_ACCOUNT_OPEN);
	s = owner_totals("Ann", rows, 3, &err);
	ck_assert_str_eq(
		s,
		"[{\"currency\":\"EUR\",\"balance\":-9223372036854775808,\"accounts\":1},"
		"{\"currency\":\"USD\",\"balance\":18446744073709551614,\"accounts\":2}]");
	free(s);
	ck_assert_int_eq(err.code, ES_OK);
}
END_TEST

/* ---- large transactions ---- */

START_TEST(large_cursor_round_trips)
{
	static const long long cases[][2] = {
		{ 0, 0 }, { 1000, 42 }, { LLONG_MAX, LLONG_MAX }, { 7, 1 }
	};
	char buf[VIEW_LARGE_CURSOR_MAX];
	long long a = -1, p = -1;
	size_t i;

	for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		ck_assert_int_gt(view_large_cursor_format(cases[i][0],
							  cases[i][1], buf,
							  sizeof(buf)),
				 0);
		ck_assert_int_eq(view_large_cursor_parse(buf, &a, &p, NULL), 0);
		ck_assert_int_eq(a, cases[i][0]);
		ck_assert_int_eq(p, cases[i][1]);
	}
	ck_assert_int_eq(view_large_cursor_format(1000, 42, buf, sizeof(buf)),
			 7);
	ck_assert_str_eq(buf, "1000.42");
	ck_assert_int_eq(view_large_cursor_format(1000, 42, buf, 7), -1);
	ck_assert_int_eq(view_large_cursor_format(-1, 42, buf, sizeof(buf)),
			 -1);
}
END_TEST

START_TEST(large_cursor_refuses_malformed)
{
	static const char *const bad[] = {
		"",
		".",
		"1.",
		".1",
		"1",
		"01.2",
		"1.02",
		"-1.2",
		"+1.2",
		"1.-2",
		"1.2.3",
		"1,2",
		" 1.2",
		"1.2 ",
		"a.b",
		"1e3.2",
		"9223372036854775808.1",
		"1.9223372036854775808",
		"99999999999999999999.1",
	};
	struct es_error err = ES_ERROR_INIT;
	long long a = 5, p = 6;
	size_t i;

	for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		ck_assert_msg(view_large_cursor_parse(bad[i], &a, &p, &err) ==
				      -1,
			      "'%s' parsed", bad[i]);
		ck_assert_int_eq(err.code, ES_EMALFORMED);
		es_error_release(&err);
	}
	ck_assert_int_eq(view_large_cursor_parse(NULL, &a, &p, &err), -1);
	es_error_release(&err);
	ck_assert_int_eq(a, 5);
	ck_assert_int_eq(p, 6);
}
END_TEST

START_TEST(large_pages_filter_and_order)
{
	static const long long data[][2] = {
		/* amount, position */
		{ 500, 1 }, { 9000, 2 }, { 100, 3 }, { 9000, 4 },
		{ 700, 5 }, { 499, 6 },	 { 700, 7 }, { 12000, 8 },
	};
	static const long long want[] = { 8, 2, 4, 5, 7, 1 };
	struct view_statement_row rows[8];
	const struct view_statement_row *page[2];
	char cursor[VIEW_LARGE_CURSOR_MAX], *after = NULL;
	size_t i, k, got = 0;
	int more = 1, pages = 0;
	json_t *j;

	memset(rows, 0, sizeof(rows));
	for (i = 0; i < 8; i++) {
		strcpy(rows[i].account_id, A_ID);
		rows[i].amount = data[i][0];
		rows[i].position = data[i][1];
		rows[i].version = (long long)i + 2;
		rows[i].kind = VIEW_DEPOSIT;
		strcpy(rows[i].recorded_at, T1);
	}
	while (more) {
		k = view_large_page(rows, 8, 500, after, 2, page, &more);
		ck_assert_int_le(k, 2);
		for (i = 0; i < k; i++) {
			ck_assert_int_lt(got, 6);
			ck_assert_int_eq(page[i]->position, want[got++]);
		}
		ck_assert_int_gt(k, 0);
		view_large_cursor_format(page[k - 1]->amount,
					 page[k - 1]->position, cursor,
					 sizeof(cursor));
		after = cursor;
		ck_assert_int_lt(++pages, 10);
	}
	ck_assert_int_eq(got, 6);
	ck_assert_int_eq(pages, 3);
	ck_assert_int_eq(view_large_follows(700, 7, 700, 5), 1);
	ck_assert_int_eq(view_large_follows(700, 5, 700, 5), 0);
	ck_assert_int_eq(view_large_follows(701, 9, 700, 5), 0);
	ck_assert_int_eq(view_large_follows(699, 1, 700, 5), 1);

	j = view_large_row_json(&rows[7]);
	ck_assert_str_eq(json_string_value(json_object_get(j, "account_id")),
			 A_ID);
	ck_assert_int_eq(json_integer_value(json_object_get(j, "position")), 8);
	ck_assert_int_eq(json_integer_value(json_object_get(j, "amount")),
			 12000);
	json_decref(j);
}
END_TEST

/* ---- the view table and the bulk helpers ---- */

START_TEST(views_are_listed_in_order)
{
	ck_assert_int_eq(view_count, 4);
	ck_assert_str_eq(view_all[0]->name, "accounts");
	ck_assert_str_eq(view_all[1]->name, "statement");
	ck_assert_str_eq(view_all[2]->name, "daily");
	ck_assert_str_eq(view_all[3]->name, "audit");
	ck_assert_ptr_eq(view_find("daily"), &view_daily_ops);
	ck_assert_ptr_eq(view_find("accounts"), &view_accounts_ops);
	ck_assert_ptr_null(view_find("owners"));
	ck_assert_ptr_null(view_find(NULL));
	ck_assert_str_eq(view_statement_ops.tables[0], "view_statement");
	ck_assert_ptr_null(view_statement_ops.tables[1]);
}
END_TEST

/* The 8-byte big-endian value of a binary COPY field at `p` (length 8). */
static long long field8(const char *p)
{
	unsigned long long v = 0;
	int i;

	ck_assert_mem_eq(p, "\0\0\0\x08", 4);
	for (i = 0; i < 8; i++)
		v = v << 8 | (unsigned char)p[4 + i];
	return (long long)v;
}

/* view_bin_time() of `s` as microseconds since 2000-01-01 UTC. */
static long long bin_time(const char *s)
{
	struct es_buf b = ES_BUF_INIT;
	long long v;

	ck_assert_int_eq(view_bin_time(&b, s), 0);
	ck_assert_int_eq(b.len, 12);
	v = field8(b.s);
	es_buf_release(&b);
	return v;
}

START_TEST(bulk_writes_copy_binary_fields)
{
	static const char header[] = "PGCOPY\n\377\r\n\0\0\0\0\0\0\0\0\0";
	struct es_buf b = ES_BUF_INIT;

	ck_assert_int_eq(bin_time("2000-01-01T00:00:00Z"), 0);
	ck_assert_int_eq(bin_time("2024-05-01T10:00:00.000001Z"),
			 767872800000001LL);
	ck_assert_int_eq(bin_time("1970-01-01T00:00:00.000000Z"),
			 -946684800000000LL);
	ck_assert_int_eq(bin_time("1999-12-31T23:59:59.5Z"), -500000);
	ck_assert_int_eq(bin_time(T3), 767923199999999LL);
	ck_assert_int_eq(bin_time("2024-02-29T23:59:59.999999Z"),
			 762566399999999LL);
	ck_assert_int_eq(view_bin_time(&b, "2024-02-29 23:59:59Z"), -1);
	ck_assert_int_eq(view_bin_time(&b, "2024-13-01T00:00:00Z"), -1);
	ck_assert_int_eq(view_bin_time(&b, "2024-05-01T00:00:00.1234567Z"), -1);
	ck_assert_int_eq(view_bin_time(&b, "2024-05-01T00:00:00+01"), -1);
	ck_assert_int_eq(b.len, 0);

	view_bin_begin(&b);
	ck_assert_int_eq(b.len, 19);
	ck_assert_mem_eq(b.s, header, 19);
	view_bin_row(&b, 3);
	ck_assert_int_eq(
		view_bin_uuid(&b, "00112233-4455-6677-8899-aabbccddeeff"), 0);
	view_bin_ll(&b, -2);
	view_bin_text(&b, NULL);
	view_bin_end(&b);
	ck_assert_int_eq(b.len, 19 + 2 + 20 + 12 + 4 + 2);
	ck_assert_mem_eq(b.s + 19, "\0\x03\0\0\0\x10", 6);
	ck_assert_mem_eq(b.s + 25,
			 "\x00\x11\x22\x33\x44\x55\x66\x77\x88\x99\xaa\xbb"
			 "\xcc\xdd\xee\xff",
			 16);
	ck_assert_int_eq(field8(b.s + 41), -2);
	ck_assert_mem_eq(b.s + 53, "\xff\xff\xff\xff\xff\xff", 6);

	es_buf_reset(&b);
	view_bin_text(&b, "é\t");
	view_bin_uuid(&b, "");
	ck_assert_int_eq(b.len, 4 + 3 + 4);
	ck_assert_mem_eq(b.s, "\0\0\0\x03\xc3\xa9\t\xff\xff\xff\xff", 11);
	ck_assert_int_eq(
		view_bin_uuid(&b, "00112233-4455-6677-8899-aabbccddeef"), -1);
	ck_assert_int_eq(
		view_bin_uuid(&b, "00112233-4455-6677-8899-aabbccddeefg"), -1);
	ck_assert_int_eq(
		view_bin_uuid(&b, "001122334-455-6677-8899-aabbccddeeff"), -1);
	ck_assert_int_eq(b.len, 11);
	es_buf_release(&b);
}
END_TEST

START_TEST(bulk_escapes_array_elements_and_checks_names)
{
	struct es_error err = ES_ERROR_INIT;
	struct es_buf b = ES_BUF_INIT;
	char name[64];

	es_buf_add_int(&b, LLONG_MIN);
	ck_assert_str_eq(b.s, "-9223372036854775808");
	view_arr_open(&b);
	view_arr_str(&b, "say \"hi\", {x}\\");
	view_arr_null(&b);
	view_arr_ll(&b, -5);
	view_arr_word(&b, A_ID);
	view_arr_str(&b, "");
	view_arr_close(&b);
	ck_assert_str_eq(b.s,
			 "{\"say \\\"hi\\\", {x}\\\\\",NULL,-5," A_ID ",\"\"}");
	view_arr_open(&b);
	view_arr_close(&b);
	ck_assert_str_eq(b.s, "{}");
	ck_assert_int_eq(es_buf_check(&b, &err), 0);
	es_buf_release(&b);

	ck_assert_int_eq(view_table_name(name, sizeof(name), "view_daily",
					 "_rebuild", &err),
			 0);
	ck_assert_str_eq(name, "view_daily_rebuild");
	ck_assert_int_eq(
		view_table_name(name, sizeof(name), "view_daily", "", &err), 0);
	ck_assert_str_eq(name, "view_daily");
	ck_assert_int_eq(view_table_name(name, sizeof(name), "view_daily",
					 "; DROP TABLE x", &err),
			 -1);
	ck_assert_int_eq(err.code, ES_EINTERNAL);
	es_error_release(&err);
	ck_assert_int_eq(
		view_table_name(name, sizeof(name), "View_daily", "", &err),
		-1);
	es_error_release(&err);
}
END_TEST

START_TEST(keymap_finds_every_key_after_growing)
{
	struct es_error err = ES_ERROR_INIT;
	struct view_keymap m = VIEW_KEYMAP_INIT;
	char key[32];
	size_t v = 0;
	int i;

	ck_assert_int_eq(view_keymap_get(&m, "x", &v), 0);
	for (i = 0; i < 3000; i++) {
		snprintf(key, sizeof(key), "k%d", i);
		ck_assert_int_eq(view_keymap_put(&m, key, (size_t)i * 3, &err),
				 0);
	}
	for (i = 0; i < 3000; i++) {
		snprintf(key, sizeof(key), "k%d", i);
		ck_assert_int_eq(view_keymap_get(&m, key, &v), 1);
		ck_assert_int_eq(v, (size_t)i * 3);
	}
	ck_assert_int_eq(view_keymap_get(&m, "k3000", &v), 0);
	ck_assert_int_eq(m.index.n, 3000);
	ck_assert_int_eq(view_keymap_put(&m, "", 1, &err), -1);
	es_error_release(&err);
	view_keymap_release(&m);
}
END_TEST

static Suite *views_suite(void)
{
	Suite *s = suite_create("views");
	TCase *tc = tcase_create("accounts");

	tcase_add_test(tc, account_fold_follows_balance_version_and_times);
	tcase_add_test(tc,
		       account_fold_skips_other_categories_and_unknown_types);
	tcase_add_test(tc, account_fold_refuses_malformed_payloads);
	tcase_add_test(tc, event_check_answers_as_the_full_checks_do);
	tcase_add_test(tc, account_render_is_jansson_byte_for_byte);
	tcase_add_test(tc, account_render_leaves_bad_utf8_to_jansson);
	tcase_add_test(tc, payloads_of_other_streams_are_not_decoded);
	tcase_add_test(tc, account_fold_refuses_money_before_opening);
	tcase_add_test(tc, account_json_has_every_field);
	tcase_add_test(tc, accounts_batch_keeps_latest_state_and_what_it_knows);
	tcase_add_test(tc, accounts_batch_reopening_resets_the_row);
	tcase_add_test(tc, accounts_batch_holds_many_accounts);
	tcase_add_test(tc, account_fold_takes_limit_changes);
	tcase_add_test(tc, accounts_batch_knows_a_changed_limit);
	tcase_add_test(tc, limit_changes_are_no_movements);
	suite_add_tcase(s, tc);
	tc = tcase_create("statement");
	tcase_add_test(tc,
		       statement_has_one_row_per_movement_with_balance_after);
	tcase_add_test(tc, statement_kind_names_round_trip);
	tcase_add_test(tc, statement_refuses_malformed_payloads);
	tcase_add_test(tc, statement_takes_upper_case_uuids_in_lower_case);
	suite_add_tcase(s, tc);
	tc = tcase_create("daily");
	tcase_add_test(tc, daily_sums_and_counts_per_utc_day_and_currency);
	tcase_add_test(tc, daily_refuses_money_without_currency);
	tcase_add_test(tc, daily_sums_past_64_bits_are_exact);
	tcase_add_test(tc, daily_split_into_batches_adds_up);
	suite_add_tcase(s, tc);
	tc = tcase_create("owner_large");
	tcase_add_test(tc, owner_totals_per_currency_sorted);
	tcase_add_test(tc, owner_totals_past_64_bits_are_exact);
	tcase_add_test(tc, large_cursor_round_trips);
	tcase_add_test(tc, large_cursor_refuses_malformed);
	tcase_add_test(tc, large_pages_filter_and_order);
	suite_add_tcase(s, tc);
	tc = tcase_create("plumbing");
	tcase_add_test(tc, views_are_listed_in_order);
	tcase_add_test(tc, bulk_writes_copy_binary_fields);
	tcase_add_test(tc, bulk_escapes_array_elements_and_checks_names);
	tcase_add_test(tc, keymap_finds_every_key_after_growing);
	suite_add_tcase(s, tc);
	return s;
}

int main(void)
{
	SRunner *sr = srunner_create(views_suite());
	int failed;

	srunner_run_all(sr, CK_NORMAL);
	failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
