/*
 * check_audit.c - the audit view's pure parts without a database: picking
 * members out of metadata text (jspan), reading the principal and ids,
 * the fold into one action per principal and command, the stored events
 * text and the route's items.
 */
#include <check.h>
#include <jansson.h>
#include <stdlib.h>
#include <string.h>

#include "../../query-service/views/audit.h"
#include "../../query-service/views/jspan.h"
#include "../../query-service/views/payload.h"
#include "../../query-service/views/view.h"
#include "es_buf.h"
#include "view_log.h"

#define A_ID "11111111-1111-4111-8111-111111111111"
#define B_ID "22222222-2222-4222-8222-222222222222"
#define A    "account-" A_ID
#define B    "account-" B_ID

#define T1 "2024-05-01T10:00:00.000001Z"
#define T2 "2024-05-01T11:00:00.000000Z"

#define C1 "aaaaaaaa-0000-4000-8000-000000000001"
#define C2 "aaaaaaaa-0000-4000-8000-000000000002"
#define C3 "aaaaaaaa-0000-4000-8000-000000000003"

/* Metadata of a command of `sub` as the command service writes it. */
#define META(sub, cmd, corr)                                               \
	"{\"principal\": {\"iss\": \"https://idp\", \"sub\": \"" sub "\"," \
	" \"roles\": [\"manager\"]}, \"command_id\": \"" cmd "\","         \
	" \"causation_id\": \"" cmd "\", \"correlation_id\": \"" corr "\"}"

static struct es_events log_ = ES_EVENTS_INIT;

static void log_reset(void)
{
	es_events_release(&log_);
}

/* Append an event at `position`; `data` and `meta` are JSON text. */
static struct es_event *push(long long position, const char *stream,
			     long long version, const char *type,
			     const char *data, const char *meta)
{
	return view_log_push(&log_, position, stream, version, type, data, meta,
			     position % 2 ? T1 : T2);
}

/* Fold the log into a new batch; every apply must succeed. */
static void *fold_all(void)
{
	struct es_error err = ES_ERROR_INIT;
	void *b = view_audit_ops.batch_new();
	size_t i;

	ck_assert_ptr_nonnull(b);
	for (i = 0; i < log_.n; i++) {
		ck_assert_int_ge(view_audit_ops.apply(b, &log_.v[i], &err), 0);
		ck_assert(!es_error_isset(&err));
	}
	return b;
}

static struct view_jspan span(const char *s)
{
	return (struct view_jspan){ s, strlen(s) };
}

/* The member `key` of `text` as written, or NULL when absent. */
static char *member(const char *text, const char *key)
{
	static char buf[4096];
	struct view_jspan v;

	if (!view_jspan_member(span(text), key, &v))
		return NULL;
	ck_assert_uint_lt(v.len, sizeof(buf));
	memcpy(buf, v.s, v.len);
	buf[v.len] = '\0';
	return buf;
}

START_TEST(jspan_finds_top_level_members_only)
{
	const char *t =
		"{\"a\": {\"b\": 1, \"k\": [\"}\", \"\\\"k\\\"\"]},"
		" \"s\": \"x\\\"}\", \"k\": [1, {\"k\": 2}], \"n\": -1.5e3}";

	ck_assert_str_eq(member(t, "a"),
			 "{\"b\": 1, \"k\": [\"}\", \"\\\"k\\\"\"]}");
	ck_assert_str_eq(member(t, "s"), "\"x\\\"}\"");
	ck_assert_str_eq(member(t, "k"), "[1, {\"k\": 2}]");
	ck_assert_str_eq(member(t, "n"), "-1.5e3");
	ck_assert_ptr_null(member(t, "b"));
	ck_assert_ptr_null(member(t, "x"));
	/* compact text, and the last of two members of one name */
	ck_assert_str_eq(member("{\"k\":true,\"k\":null}", "k"), "null");
	/* a key written with escapes is its decoded text */
	ck_assert_str_eq(member("{\"\\u006b\": 7}", "k"), "7");
	ck_assert_str_eq(member(" \n{ \"k\" :\t\"v\" } ", "k"), "\"v\"");
}
END_TEST

START_TEST(jspan_finds_nothing_in_what_is_not_an_object)
{
	static const char *const bad[] = {
		"",	     "[{\"k\": 1}]", "\"k\"",	    "null",
		"{}",	     "{\"k\"}",	     "{\"k\": }",   "{\"k\": 1",
		"{\"k\" 1}", "{\"k\": 1,}",  "{\"k\": [1}", "{\"k\": \"1}",
		"{k: 1}",    "{\"k\": 1 2}", "{\"k\": 1}}",
	};
	struct view_jspan v;
	size_t i;

	for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
		ck_assert_msg(!view_jspan_member(span(bad[i]), "k", &v),
			      "found k in '%s'", bad[i]);
	ck_assert(!view_jspan_member((struct view_jspan){ NULL, 0 }, "k", &v));
	/* a length that cuts the text short */
	ck_assert(!view_jspan_member((struct view_jspan){ "{\"k\": 1}", 7 },
				     "k", &v));
}
END_TEST

START_TEST(jspan_skips_values_of_any_depth_without_recursion)
{
	size_t depth = 1000000, i, n = 0;
	char *t = malloc(2 * depth + 64);

	ck_assert_ptr_nonnull(t);
	n += (size_t)sprintf(t, "{\"deep\": ");
	for (i = 0; i < depth; i++)
		t[n++] = '[';
	for (i = 0; i < depth; i++)
		t[n++] = ']';
	n += (size_t)sprintf(t + n, ", \"k\": \"v\"}");
	ck_assert_str_eq(member(t, "k"), "\"v\"");
	free(t);
}
END_TEST

static long str_of(const char *text, char *out, size_t max)
{
	return view_jspan_string(span(text), out, max);
}

START_TEST(jspan_string_decodes_short_strings)
{
	char out[16];

	ck_assert_int_eq(str_of("\"abc\"", out, 15), 3);
	ck_assert_str_eq(out, "abc");
	ck_assert_int_eq(str_of("\"a\\\"b\\u00e9\"", out, 15), 5);
	ck_assert_str_eq(out, "a\"b\xc3\xa9");
	ck_assert_int_eq(str_of("\"\xc3\xa9t\xc3\xa9\"", out, 15), 5);
	ck_assert_int_eq(str_of("\"\"", out, 15), 0);
	/* exactly at the limit, and one byte past it */
	ck_assert_int_eq(str_of("\"0123456789abcde\"", out, 15), 15);
	ck_assert_int_eq(str_of("\"0123456789abcdef\"", out, 15), -1);
	ck_assert_int_eq(str_of("\"\\u0030123456789abcdef\"", out, 15), -1);
	/* NUL, raw control characters and bad UTF-8 cannot be text */
	ck_assert_int_eq(str_of("\"a\\u0000b\"", out, 15), -1);
	ck_assert_int_eq(str_of("\"a\tb\"", out, 15), -1);
	ck_assert_int_eq(str_of("\"\xc3\"", out, 15), -1);
	ck_assert_int_eq(str_of("\"\xed\xa0\x80\"", out, 15), -1);
	/* not a string */
	ck_assert_int_eq(str_of("12", out, 15), -1);
	ck_assert_int_eq(str_of("null", out, 15), -1);
	ck_assert_int_eq(str_of("[\"a\"]", out, 15), -1);
	ck_assert_int_eq(str_of("\"", out, 15), -1);
	ck_assert_int_eq(str_of("\"a\"b\"", out, 15), -1);
}
END_TEST

START_TEST(meta_reads_principal_sub_and_ids)
{
	struct view_audit_meta m;
	const char *t = META("alice", C1, "corr-1");

	ck_assert_int_eq(view_audit_meta_read(t, strlen(t), &m), 1);
	ck_assert_str_eq(m.sub, "alice");
	ck_assert_str_eq(m.command_id, C1);
	ck_assert_str_eq(m.correlation_id, "corr-1");
	/* ids that are not short strings count as absent */
	t = "{\"principal\": {\"sub\": \"bob\"}, \"command_id\": 12,"
	    " \"correlation_id\": {\"a\": 1}}";
	ck_assert_int_eq(view_audit_meta_read(t, strlen(t), &m), 1);
	ck_assert_str_eq(m.sub, "bob");
	ck_assert_str_eq(m.command_id, "");
	ck_assert_str_eq(m.correlation_id, "");
}
END_TEST

START_TEST(meta_skips_principals_of_odd_shape)
{
	static const char *const odd[] = {
		"{}",
		"{\"principal\": \"alice\"}",
		"{\"principal\": 42}",
		"{\"principal\": null}",
		"{\"principal\": [\"alice\"]}",
		"{\"principal\": {}}",
		"{\"principal\": {\"sub\": \"\"}}",
		"{\"principal\": {\"sub\": 7}}",
		"{\"principal\": {\"sub\": null}}",
		"{\"principal\": {\"sub\": [\"a\"]}}",
		"{\"principal\": {\"sub\": \"a\\u0000b\"}}",
		"{\"principal\": {\"name\": \"alice\"}}",
		"{\"x\": {\"principal\": {\"sub\": \"alice\"}}}",
		"{\"x\": \"{\\\"principal\\\": {\\\"sub\\\": \\\"a\\\"}}\"}",
		"[{\"principal\": {\"sub\": \"alice\"}}]",
		"\"principal\"",
		"{\"principal\": {\"sub\": \"alice\"}",
		"not json principal",
	};
	struct view_audit_meta m;
	size_t i;

	for (i = 0; i < sizeof(odd) / sizeof(odd[0]); i++)
		ck_assert_msg(!view_audit_meta_read(odd[i], strlen(odd[i]), &m),
			      "listed %s", odd[i]);
	ck_assert(!view_audit_meta_read(NULL, 0, &m));
}
END_TEST

START_TEST(meta_sub_is_at_most_256_bytes)
{
	struct view_audit_meta m;
	char t[600], sub[300];

	memset(sub, 'x', 256);
	sub[256] = '\0';
	snprintf(t, sizeof(t), "{\"principal\": {\"sub\": \"%s\"}}", sub);
	ck_assert_int_eq(view_audit_meta_read(t, strlen(t), &m), 1);
	ck_assert_uint_eq(strlen(m.sub), 256);
	strcat(sub, "x");
	snprintf(t, sizeof(t), "{\"principal\": {\"sub\": \"%s\"}}", sub);
	ck_assert_int_eq(view_audit_meta_read(t, strlen(t), &m), 0);
	/* 86 three-byte characters are 258 bytes */
	t[0] = '\0';
	strcat(t, "{\"principal\": {\"sub\": \"");
	for (int i = 0; i < 86; i++)
		strcat(t, "\xe2\x82\xac");
	strcat(t, "\"}}");
	ck_assert_int_eq(view_audit_meta_read(t, strlen(t), &m), 0);
}
END_TEST

/* The action of `sub` and `cmd` in the batch, or NULL. */
static const struct view_audit_action *find(const void *b, const char *sub,
					    const char *cmd)
{
	const struct view_audit_action *v;
	size_t n, i;

	v = view_audit_actions(b, &n);
	for (i = 0; i < n; i++)
		if (!strcmp(v[i].sub, sub) &&
		    (cmd ? v[i].command_id && !strcmp(v[i].command_id, cmd)
			 : !v[i].command_id))
			return &v[i];
	return NULL;
}

START_TEST(fold_groups_each_principals_commands)
{
	const struct view_audit_action *a;
	void *b;
	size_t n;

	/* a group commit: two commands' events interleaved in one insert */
	push(10, A, 1, "AccountOpened",
	     "{\"account_id\": \"" A_ID "\", \"owner\": \"o\","
	     " \"currency\": \"EUR\", \"overdraft_limit\": 0}",
	     META("alice", C1, "corr-1"));
	push(11, A, 2, "TransferSent",
	     "{\"amount\": 30, \"balance_after\": -30, \"currency\": \"EUR\","
	     " \"transfer_id\": \"" C3 "\", \"to_account_id\": \"" B_ID "\"}",
	     META("bob", C2, "corr-2"));
	push(12, B, 1, "MoneyDeposited",
	     "{\"amount\": 5, \"balance_after\": 5, \"currency\": \"EUR\"}",
	     META("alice", C3, "corr-3"));
	push(13, B, 2, "TransferReceived",
	     "{\"amount\": 30, \"balance_after\": 35, \"currency\": \"EUR\","
	     " \"transfer_id\": \"" C3 "\", \"from_account_id\": \"" A_ID "\"}",
	     META("bob", C2, "corr-2"));
	push(14, "transfer-" C3, 1, "TransferMade",
	     "{\"amount\": 30, \"currency\": \"EUR\"}",
	     META("bob", C2, "corr-2"));
	/* no principal: skipped */
	push(15, A, 3, "MoneyDeposited",
	     "{\"amount\": 1, \"balance_after\": -29, \"currency\": \"EUR\"}",
	     "{\"command_id\": \"" C1 "\"}");
	b = fold_all();
	view_audit_actions(b, &n);
	ck_assert_uint_eq(n, 3);
	ck_assert_int_eq(view_audit_ops.batch_size(b), 5);
	ck_assert_int_eq(view_audit_ops.batch_rows(b), 3);

	a = find(b, "bob", C2);
	ck_assert_ptr_nonnull(a);
	ck_assert_int_eq(a->position, 11);
	ck_assert_str_eq(a->recorded_at, T1);
	ck_assert_str_eq(a->correlation_id, "corr-2");
	ck_assert_uint_eq(a->nev, 3);
	ck_assert_int_eq(a->ev[0].position, 11);
	ck_assert_str_eq(a->ev[0].stream_id, A);
	ck_assert_str_eq(a->ev[0].type, "TransferSent");
	ck_assert(a->ev[0].has_amount);
	ck_assert_int_eq(a->ev[0].amount, 30);
	ck_assert_int_eq(a->ev[1].position, 13);
	ck_assert_int_eq(a->ev[1].version, 2);
	ck_assert_int_eq(a->ev[1].amount, 30);
	/* the transfer stream's payload is not the views' to read */
	ck_assert_str_eq(a->ev[2].type, "TransferMade");
	ck_assert(!a->ev[2].has_amount);

	a = find(b, "alice", C1);
	ck_assert_ptr_nonnull(a);
	ck_assert_int_eq(a->position, 10);
	ck_assert_uint_eq(a->nev, 1);
	ck_assert(!a->ev[0].has_amount);
	a = find(b, "alice", C3);
	ck_assert_ptr_nonnull(a);
	ck_assert_int_eq(a->position, 12);
	ck_assert_str_eq(a->recorded_at, T2);
	ck_assert_int_eq(a->ev[0].amount, 5);
	view_audit_ops.batch_free(b);
	log_reset();
}
END_TEST

START_TEST(fold_keeps_principals_and_lone_events_apart)
{
	const struct view_audit_action *a, *v;
	void *b;
	size_t n;

	/* one command id under two subs: two actions */
	push(1, A, 1, "MoneyDeposited", "{\"amount\": 1}",
	     META("alice", C1, "c"));
	push(2, B, 1, "MoneyDeposited", "{\"amount\": 2}",
	     META("bob", C1, "c"));
	/* events without a command id: one action each */
	push(3, A, 2, "MoneyDeposited", "{\"amount\": 3}",
	     "{\"principal\": {\"sub\": \"alice\"}}");
	push(4, A, 3, "MoneyDeposited", "{\"amount\": 4}",
	     "{\"principal\": {\"sub\": \"alice\"}}");
	/* a sub whose bytes could run into a command id */
	push(5, A, 4, "MoneyDeposited", "{\"amount\": 5}",
	     "{\"principal\": {\"sub\": \"alice" C1
	     "\"}, \"command_id\": \"x\"}");
	push(6, A, 5, "MoneyDeposited", "{\"amount\": 6}",
	     "{\"principal\": {\"sub\": \"alice\"}, \"command_id\": \"" C1
	     "x\"}");
	b = fold_all();
	v = view_audit_actions(b, &n);
	ck_assert_uint_eq(n, 6);
	ck_assert_int_eq(find(b, "alice", C1)->ev[0].amount, 1);
	ck_assert_int_eq(find(b, "bob", C1)->ev[0].amount, 2);
	ck_assert_int_eq(v[2].position, 3);
	ck_assert_ptr_null(v[2].command_id);
	ck_assert_ptr_null(v[3].command_id);
	ck_assert_int_eq(v[3].ev[0].amount, 4);
	ck_assert_str_eq(v[4].sub, "alice" C1);
	ck_assert_str_eq(v[5].command_id, C1 "x");
	a = find(b, "alice", C1 "x");
	ck_assert_uint_eq(a->nev, 1);
	view_audit_ops.batch_free(b);
	log_reset();
}
END_TEST

START_TEST(fold_takes_integer_amounts_only)
{
	void *b;
	size_t n;
	const struct view_audit_action *v;

	push(1, A, 1, "MoneyDeposited", "{\"amount\": \"5\"}",
	     META("a", C1, "c"));
	push(2, A, 2, "MoneyDeposited", "{\"amount\": 5.5}",
	     META("a", C2, "c"));
	/* past 64 bits: the payload does not decode */
	push(3, A, 3, "MoneyDeposited",
	     "{\"amount\": 123456789012345678901234567890}",
	     META("a", C3, "c"));
	push(4, A, 4, "MoneyDeposited", "[1, 2]", META("b", C1, "c"));
	push(5, "other-1", 1, "Thing", "{\"amount\": 5}", META("b", C2, "c"));
	push(6, A, 5, "MoneyWithdrawn", "{\"amount\": -9223372036854775807}",
	     META("b", C3, "c"));
	b = fold_all();
	v = view_audit_actions(b, &n);
	ck_assert_uint_eq(n, 6);
	ck_assert(!v[0].ev[0].has_amount);
	ck_assert(!v[1].ev[0].has_amount);
	ck_assert(!v[2].ev[0].has_amount);
	ck_assert(!v[3].ev[0].has_amount);
	ck_assert(!v[4].ev[0].has_amount);
	ck_assert(v[5].ev[0].has_amount);
	ck_assert_int_eq(v[5].ev[0].amount, -9223372036854775807LL);
	view_audit_ops.batch_free(b);
	log_reset();
}
END_TEST

START_TEST(fold_never_fails_on_odd_metadata_and_goes_on)
{
	static const char *const odd[] = {
		NULL,
		"",
		"{}",
		"null",
		"42",
		"\"principal\"",
		"[\"principal\"]",
		"{\"principal\": \"alice\"}",
		"{\"principal\": 12}",
		"{\"principal\": {\"sub\": 12}}",
		"{\"principal\": {\"sub\": \"\"}}",
		"{\"principal\": {\"sub\": \"a\\u0000\"}}",
		"{\"principal\": {\"sub\": \"a\"}, ",
		"{\"principal\": {\"sub\": \"\xff\"}}",
		"{\"principal\": {\"sub\": \"a\\ud800\"}}",
	};
	struct es_error err = ES_ERROR_INIT;
	char big[1200];
	void *b = view_audit_ops.batch_new();
	size_t i, n;
	const struct view_audit_action *v;

	memset(big, 0, sizeof(big));
	strcpy(big, "{\"principal\": {\"sub\": \"");
	memset(big + strlen(big), 's', 1000);
	strcat(big, "\"}}");
	for (i = 0; i < sizeof(odd) / sizeof(odd[0]); i++)
		push((long long)i + 1, A, (long long)i + 1, "MoneyDeposited",
		     "{\"amount\": 1}", odd[i]);
	push(100, A, 100, "MoneyDeposited", "{\"amount\": 1}", big);
	push(101, A, 101, "MoneyDeposited", "{\"amount\": 7}",
	     META("carol", C1, "c"));
	for (i = 0; i < log_.n; i++)
		ck_assert_int_eq(view_audit_ops.apply(b, &log_.v[i], &err),
				 i + 1 == log_.n);
	ck_assert(!es_error_isset(&err));
	v = view_audit_actions(b, &n);
	ck_assert_uint_eq(n, 1);
	ck_assert_str_eq(v[0].sub, "carol");
	ck_assert_int_eq(v[0].ev[0].amount, 7);
	view_audit_ops.batch_free(b);
	log_reset();
}
END_TEST

START_TEST(fold_moves_first_event_to_the_lowest_position)
{
	const struct view_audit_action *a;
	void *b;

	push(20, A, 2, "MoneyDeposited", "{\"amount\": 2}",
	     META("a", C1, "late"));
	push(18, B, 1, "MoneyDeposited", "{\"amount\": 1}",
	     META("a", C1, "early"));
	push(19, B, 2, "MoneyDeposited", "{\"amount\": 3}",
	     "{\"principal\": {\"sub\": \"a\"}, \"command_id\": \"" C1 "\"}");
	b = fold_all();
	a = find(b, "a", C1);
	ck_assert_int_eq(a->position, 18);
	ck_assert_str_eq(a->correlation_id, "early");
	ck_assert_str_eq(a->recorded_at, T2);
	ck_assert_uint_eq(a->nev, 3);
	ck_assert_int_eq(a->ev[0].position, 18);
	ck_assert_int_eq(a->ev[1].position, 19);
	ck_assert_int_eq(a->ev[2].position, 20);
	view_audit_ops.batch_free(b);
	log_reset();
}
END_TEST

START_TEST(fold_holds_many_commands)
{
	struct es_error err = ES_ERROR_INIT;
	void *b = view_audit_ops.batch_new();
	struct es_event e = { 0 };
	char meta[200], stream[] = "other-x", type[] = "T", time[] = T1;
	size_t n, i;

	e.stream_id = stream;
	e.type = type;
	e.recorded_at = time;
	e.metadata = meta;
	for (i = 0; i < 20000; i++) {
		/* commands of two events each, 5000 principals */
		snprintf(meta, sizeof(meta),
			 "{\"principal\": {\"sub\": \"p%zu\"},"
			 " \"command_id\": \"c%zu\"}",
			 i % 5000, i / 2);
		e.metadata_len = strlen(meta);
		e.position = (long long)i + 1;
		e.version = (long long)i + 1;
		ck_assert_int_eq(view_audit_ops.apply(b, &e, &err), 1);
	}
	view_audit_actions(b, &n);
	ck_assert_uint_eq(n, 20000);
	view_audit_ops.batch_free(b);
	b = view_audit_ops.batch_new();
	for (i = 0; i < 20000; i++) {
		snprintf(meta, sizeof(meta),
			 "{\"principal\": {\"sub\": \"p%zu\"},"
			 " \"command_id\": \"c%zu\"}",
			 i / 2 % 5000, i / 2);
		e.metadata_len = strlen(meta);
		e.position = (long long)i + 1;
		ck_assert_int_eq(view_audit_ops.apply(b, &e, &err), 1);
	}
	view_audit_actions(b, &n);
	ck_assert_uint_eq(n, 10000);
	ck_assert_int_eq(view_audit_ops.batch_size(b), 20000);
	view_audit_ops.batch_free(b);
}
END_TEST

START_TEST(events_json_is_what_the_table_stores)
{
	struct es_buf out = ES_BUF_INIT;
	const struct view_audit_action *a;
	json_t *j;
	void *b;

	push(7, A, 1, "MoneyDeposited", "{\"amount\": 40}", META("a", C1, "c"));
	push(8, "odd \"stream\"\\", 1, "Type\twith tab", "{}",
	     META("a", C1, "c"));
	b = fold_all();
	a = find(b, "a", C1);
	view_audit_events_json(a, &out);
	ck_assert_int_eq(es_buf_check(&out, NULL), 0);
	ck_assert_str_eq(
		out.s, "[{\"position\":7,\"stream\":\"" A "\",\"version\":1,"
		       "\"type\":\"MoneyDeposited\",\"amount\":40},"
		       "{\"position\":8,\"stream\":\"odd \\\"stream\\\"\\\\\","
		       "\"version\":1,\"type\":\"Type\\twith tab\","
		       "\"amount\":null}]");
	j = json_loads(out.s, 0, NULL);
	ck_assert(json_is_array(j));
	json_decref(j);
	es_buf_release(&out);
	view_audit_ops.batch_free(b);
	log_reset();
}
END_TEST

START_TEST(item_lists_streams_once_in_order)
{
	/* as PostgreSQL prints jsonb: keys by length, then bytes */
	const char *stored =
		"[{\"type\": \"TransferSent\", \"amount\": 30, \"stream\": \"" A
		"\", \"version\": 2, \"position\": 11},"
		" {\"type\": \"TransferReceived\", \"amount\": 30, \"stream\": \"" B
		"\", \"version\": 2, \"position\": 13},"
		" {\"type\": \"Note\", \"amount\": null, \"stream\": \"" A
		"\", \"version\": 3, \"position\": 14}]";
	json_t *item = view_audit_item_json(11, T1, C2, NULL, stored);
	char *text;

	ck_assert_ptr_nonnull(item);
	text = json_dumps(item, JSON_COMPACT);
	ck_assert_str_eq(
		text,
		"{\"position\":11,\"recorded_at\":\"" T1
		"\",\"command_id\":\"" C2
		"\",\"correlation_id\":null,\"streams\":[\"" A "\",\"" B "\"],"
		"\"events\":[{\"position\":11,\"stream\":\"" A "\","
		"\"version\":2,\"type\":\"TransferSent\",\"amount\":30},"
		"{\"position\":13,\"stream\":\"" B "\",\"version\":2,"
		"\"type\":\"TransferReceived\",\"amount\":30},"
		"{\"position\":14,\"stream\":\"" A "\",\"version\":3,"
		"\"type\":\"Note\",\"amount\":null}]}");
	free(text);
	json_decref(item);
	ck_assert_ptr_null(view_audit_item_json(1, T1, NULL, NULL, "{}"));
	ck_assert_ptr_null(view_audit_item_json(1, T1, NULL, NULL, "[{}]"));
	ck_assert_ptr_null(view_audit_item_json(1, T1, NULL, NULL, "[1"));
}
END_TEST

START_TEST(audit_view_is_registered_and_reads_metadata)
{
	ck_assert_ptr_eq(view_find("audit"), &view_audit_ops);
	ck_assert(view_audit_ops.metadata);
	ck_assert_str_eq(view_audit_ops.tables[0], "view_audit");
	ck_assert_ptr_null(view_audit_ops.tables[1]);
	ck_assert(!view_find("statement")->metadata);
}
END_TEST

static Suite *audit_suite(void)
{
	Suite *s = suite_create("audit");
	TCase *tc = tcase_create("jspan");

	tcase_add_test(tc, jspan_finds_top_level_members_only);
	tcase_add_test(tc, jspan_finds_nothing_in_what_is_not_an_object);
	tcase_add_test(tc, jspan_skips_values_of_any_depth_without_recursion);
	tcase_add_test(tc, jspan_string_decodes_short_strings);
	suite_add_tcase(s, tc);
	tc = tcase_create("meta");
	tcase_add_test(tc, meta_reads_principal_sub_and_ids);
	tcase_add_test(tc, meta_skips_principals_of_odd_shape);
	tcase_add_test(tc, meta_sub_is_at_most_256_bytes);
	suite_add_tcase(s, tc);
	tc = tcase_create("fold");
	tcase_add_test(tc, fold_groups_each_principals_commands);
	tcase_add_test(tc, fold_keeps_principals_and_lone_events_apart);
	tcase_add_test(tc, fold_takes_integer_amounts_only);
	tcase_add_test(tc, fold_never_fails_on_odd_metadata_and_goes_on);
	tcase_add_test(tc, fold_moves_first_event_to_the_lowest_position);
	tcase_add_test(tc, fold_holds_many_commands);
	tcase_add_test(tc, events_json_is_what_the_table_stores);
	tcase_add_test(tc, item_lists_streams_once_in_order);
	tcase_add_test(tc, audit_view_is_registered_and_reads_metadata);
	suite_add_tcase(s, tc);
	return s;
}

int main(void)
{
	SRunner *sr = srunner_create(audit_suite());
	int failed;

	srunner_run_all(sr, CK_NORMAL);
	failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
