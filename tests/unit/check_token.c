/* check_token.c - position tokens: parse, format, visibility, covering. */
#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "es_log.h"
#include "es_token.h"

/* Parse a read token that must be valid. */
static struct es_cursor cur(const char *s)
{
	struct es_error err = ES_ERROR_INIT;
	struct es_cursor c;

	ck_assert_msg(es_cursor_parse(s, &c, &err) == 0, "'%s': %s", s,
		      err.detail);
	return c;
}

static int covers(const char *a, const char *b)
{
	struct es_error err = ES_ERROR_INIT;
	int r = es_token_covers(a, b, &err);

	ck_assert_msg(r >= 0, "covers('%s', '%s'): %s", a, b, err.detail);
	return r;
}

START_TEST(snapshot_round_trips)
{
	static const char *const ok[] = {
		"0:0:",
		"1:1:",
		"5:9:",
		"5:9:5",
		"5:9:5,6,8",
		"100:200:150",
		"18446744073709551614:18446744073709551615:18446744073709551614",
	};

	for (size_t i = 0; i < sizeof(ok) / sizeof(*ok); i++) {
		struct es_error err = ES_ERROR_INIT;
		struct es_snapshot s;
		char *text;

		ck_assert_msg(es_snapshot_parse(ok[i], &s, &err) == 0,
			      "'%s': %s", ok[i], err.detail);
		text = es_snapshot_format(&s);
		ck_assert_str_eq(text, ok[i]);
		free(text);
		es_snapshot_release(&s);
	}
}
END_TEST

START_TEST(snapshot_fields_are_read)
{
	struct es_snapshot s;

	ck_assert_int_eq(es_snapshot_parse("10:20:12,15", &s, NULL), 0);
	ck_assert_uint_eq(s.xmin, 10);
	ck_assert_uint_eq(s.xmax, 20);
	ck_assert_uint_eq(s.nxip, 2);
	ck_assert_uint_eq(s.xip[0], 12);
	ck_assert_uint_eq(s.xip[1], 15);
	es_snapshot_release(&s);
	ck_assert_ptr_null(s.xip);
}
END_TEST

START_TEST(mid_window_cursor_round_trips)
{
	static const char *const ok[] = {
		"0:0:/5:9:7/5.3",
		"5:9:7/8:12:10/7.42",
		"5:9:7/8:12:10/11.9223372036854775807",
		"5:9:6,7/8:12:10/9.1",
	};

	for (size_t i = 0; i < sizeof(ok) / sizeof(*ok); i++) {
		struct es_cursor c = cur(ok[i]);
		char *text;

		ck_assert(c.mid);
		text = es_cursor_format(&c);
		ck_assert_str_eq(text, ok[i]);
		free(text);
		es_cursor_release(&c);
	}
}
END_TEST

START_TEST(mid_window_fields_are_read)
{
	struct es_cursor c = cur("5:9:7/8:12:10/7.42");

	ck_assert_uint_eq(c.lo.xmin, 5);
	ck_assert_uint_eq(c.lo.nxip, 1);
	ck_assert_uint_eq(c.hi.xmax, 12);
	ck_assert_uint_eq(c.xid, 7);
	ck_assert_int_eq(c.pos, 42);
	es_cursor_release(&c);
	ck_assert(!c.mid);
}
END_TEST

START_TEST(full_cursor_is_its_snapshot)
{
	struct es_cursor c = cur("5:9:7");
	char *text = es_cursor_format(&c);

	ck_assert(!c.mid);
	ck_assert_str_eq(text, "5:9:7");
	free(text);
	es_cursor_release(&c);
}
END_TEST

START_TEST(initialised_cursor_is_the_start_of_the_log)
{
	struct es_cursor c;
	char *text;

	es_cursor_init(&c);
	text = es_cursor_format(&c);
	ck_assert_str_eq(text, ES_CURSOR_START);
	free(text);
}
END_TEST

START_TEST(copies_are_deep)
{
	struct es_cursor c = cur("5:9:6,7/8:12:10/9.1"), d;
	char *a, *b;

	ck_assert_int_eq(es_cursor_copy(&d, &c, NULL), 0);
	ck_assert_ptr_ne(d.lo.xip, c.lo.xip);
	a = es_cursor_format(&c);
	es_cursor_release(&c);
	b = es_cursor_format(&d);
	ck_assert_str_eq(a, b);
	free(a);
	free(b);
	es_cursor_release(&d);
}
END_TEST

START_TEST(malformed_read_tokens_are_refused)
{
	static const char *const bad[] = {
		"",
		"x",
		"0:0",
		"0:0:,",
		":0:",
		"0::",
		"-1:0:",
		"1:-2:",
		"+1:2:",
		" 1:2:",
		"1:2: ",
		"1:2:\n",
		"01:2:",
		"1:02:",
		"1:5:03",
		"18446744073709551616:18446744073709551616:", /* 2^64 */
		"1:99999999999999999999999:",
		"5:4:", /* xmin > xmax */
		"5:9:4", /* xip below xmin */
		"5:9:9", /* xip at xmax */
		"5:9:12", /* xip above xmax */
		"5:9:7,6", /* unsorted */
		"5:9:6,6", /* duplicate */
		"5:9:6,",
		"5:9:6,,7",
		"5:9:6;7",
		"5:9:6x",
		"5:9:6:",
		"5:9:6 ",
		"1.5",
		"1:2:/",
		"5:9:7/8:12:10",
		"5:9:7/8:12:10/",
		"5:9:7/8:12:10/7",
		"5:9:7/8:12:10/7.",
		"5:9:7/8:12:10/.1",
		"5:9:7/8:12:10/7.1x",
		"5:9:7/8:12:10/7.1/",
		"5:9:7/8:12:10/7.-1",
		"5:9:7/8:12:10/7.9223372036854775808", /* pos over int64 */
		"5:9:7/8:12:10/7.01",
		"5:9:7/x/7.1",
		"5:9:8,7/8:12:10/7.1", /* bad lo */
		"5:9:7/8:12:13/7.1", /* bad hi */
		"5:9:7/8:12:10/10.1", /* xid running in hi */
		"5:9:7/8:12:10/6.1", /* xid already in lo */
		"5:9:7/8:12:10/12.1", /* xid beyond hi */
		"8:12:/5:9:7/7.1", /* hi before lo */
		"5:9:7/5:9:/7.1x",
	};

	for (size_t i = 0; i < sizeof(bad) / sizeof(*bad); i++) {
		struct es_error err = ES_ERROR_INIT;
		struct es_cursor c;

		ck_assert_msg(es_cursor_parse(bad[i], &c, &err) == -1,
			      "accepted '%s'", bad[i]);
		ck_assert_int_eq(err.code, ES_EMALFORMED);
		ck_assert_ptr_nonnull(
			strstr(err.detail, "malformed position token"));
	}
}
END_TEST

START_TEST(a_null_token_is_refused)
{
	struct es_error err = ES_ERROR_INIT;
	struct es_cursor c;
	struct es_append_token a;

	ck_assert_int_eq(es_cursor_parse(NULL, &c, &err), -1);
	ck_assert_int_eq(err.code, ES_EMALFORMED);
	es_error_release(&err);
	ck_assert_int_eq(es_append_token_parse(NULL, &a, &err), -1);
	ck_assert_int_eq(err.code, ES_EMALFORMED);
}
END_TEST

START_TEST(an_over_long_token_is_refused)
{
	struct es_error err = ES_ERROR_INIT;
	struct es_cursor c;
	size_t len = ES_TOKEN_MAX + 100, at;
	char *s = malloc(len + 1);

	/* a valid shape, only too long: 1:N:2,3,4,... */
	at = (size_t)sprintf(s, "1:99999999:");
	for (unsigned x = 2; at < len - 10; x++)
		at += (size_t)sprintf(s + at, "%s%u", x > 2 ? "," : "", x);
	ck_assert_int_eq(es_cursor_parse(s, &c, &err), -1);
	ck_assert_int_eq(err.code, ES_EMALFORMED);
	ck_assert_ptr_nonnull(strstr(err.detail, "too long"));
	free(s);
}
END_TEST

START_TEST(a_long_but_allowed_snapshot_parses)
{
	struct es_cursor c;
	char *s = malloc(ES_TOKEN_MAX), *back;
	size_t at = (size_t)sprintf(s, "1:99999999:");
	unsigned x;

	for (x = 2; at < ES_TOKEN_MAX - 20; x++)
		at += (size_t)sprintf(s + at, "%s%u", x > 2 ? "," : "", x);
	c = cur(s);
	ck_assert_uint_eq(c.lo.nxip, x - 2);
	back = es_cursor_format(&c);
	ck_assert_str_eq(back, s);
	free(back);
	free(s);
	es_cursor_release(&c);
}
END_TEST

START_TEST(append_token_round_trips)
{
	static const char *const ok[] = { "0.0", "758.3", "5.1",
					  "18446744073709551615."
					  "9223372036854775807" };
	char buf[ES_APPEND_TOKEN_MAX];

	for (size_t i = 0; i < sizeof(ok) / sizeof(*ok); i++) {
		struct es_error err = ES_ERROR_INIT;
		struct es_append_token a;

		ck_assert_msg(es_append_token_parse(ok[i], &a, &err) == 0,
			      "'%s': %s", ok[i], err.detail);
		ck_assert_int_eq(es_append_token_format(&a, buf, sizeof(buf)),
				 (int)strlen(ok[i]));
		ck_assert_str_eq(buf, ok[i]);
	}
}
END_TEST

START_TEST(append_token_format_refuses_a_short_buffer)
{
	struct es_append_token a = { .xid = 758, .pos = 3 };
	char buf[8];

	ck_assert_int_eq(es_append_token_format(&a, buf, 5), -1);
	ck_assert_int_eq(es_append_token_format(&a, buf, 6), 5);
	ck_assert_str_eq(buf, "758.3");
}
END_TEST

START_TEST(malformed_append_tokens_are_refused)
{
	static const char *const bad[] = {
		"",
		"5",
		"5.",
		".5",
		"5..1",
		"5.1.",
		"-5.1",
		"5.-1",
		"+5.1",
		"5.1 ",
		" 5.1",
		"05.1",
		"5.01",
		"18446744073709551616.1", /* xid 2^64 */
		"5.9223372036854775808", /* position 2^63 */
		"5.1x",
		"5,1",
		"5:1",
		"1:2:",
		"0123456789012345678901234567890123456789012345678.1",
	};

	for (size_t i = 0; i < sizeof(bad) / sizeof(*bad); i++) {
		struct es_error err = ES_ERROR_INIT;
		struct es_append_token a;

		ck_assert_msg(es_append_token_parse(bad[i], &a, &err) == -1,
			      "accepted '%s'", bad[i]);
		ck_assert_int_eq(err.code, ES_EMALFORMED);
	}
}
END_TEST

START_TEST(visible_means_below_xmax_and_not_running)
{
	struct es_cursor c = cur("10:20:12,15,19");

	ck_assert(es_snapshot_visible(&c.lo, 1));
	ck_assert(es_snapshot_visible(&c.lo, 9));
	ck_assert(es_snapshot_visible(&c.lo, 10));
	ck_assert(es_snapshot_visible(&c.lo, 11));
	ck_assert(!es_snapshot_visible(&c.lo, 12));
	ck_assert(es_snapshot_visible(&c.lo, 13));
	ck_assert(!es_snapshot_visible(&c.lo, 15));
	ck_assert(es_snapshot_visible(&c.lo, 18));
	ck_assert(!es_snapshot_visible(&c.lo, 19));
	ck_assert(!es_snapshot_visible(&c.lo, 20));
	ck_assert(!es_snapshot_visible(&c.lo, 21));
	es_cursor_release(&c);
}
END_TEST

START_TEST(the_start_of_the_log_sees_nothing)
{
	struct es_cursor c;

	es_cursor_init(&c);
	ck_assert(!es_snapshot_visible(&c.lo, 0));
	ck_assert(!es_snapshot_visible(&c.lo, 3));
	ck_assert_int_eq(covers("0:0:", "3.1"), 0);
	ck_assert_int_eq(covers("0:0:", "0:0:"), 1);
	ck_assert_int_eq(covers("5:5:", "0:0:"), 1);
	ck_assert_int_eq(covers("0:0:", "5:5:"), 0);
}
END_TEST

START_TEST(append_below_xmin_is_covered)
{
	ck_assert_int_eq(covers("10:20:12", "9.100"), 1);
	ck_assert_int_eq(covers("10:20:12", "10.1"), 1);
}
END_TEST

START_TEST(append_of_a_running_transaction_is_not_covered)
{
	ck_assert_int_eq(covers("10:20:12,15", "12.5"), 0);
	ck_assert_int_eq(covers("10:20:12,15", "15.5"), 0);
	ck_assert_int_eq(covers("10:20:12,15", "13.5"), 1);
}
END_TEST

START_TEST(append_at_or_above_xmax_is_not_covered)
{
	ck_assert_int_eq(covers("10:20:12", "20.1"), 0);
	ck_assert_int_eq(covers("10:20:12", "21.1"), 0);
	ck_assert_int_eq(covers("10:20:12", "19.1"), 1);
}
END_TEST

START_TEST(mid_window_covers_appends_read_so_far)
{
	/* window from 5:9:7 to 8:12:10, read up to xid 9 position 40 */
	const char *c = "5:9:7/8:12:10/9.40";

	ck_assert_int_eq(covers(c, "6.3"), 1); /* in lo */
	ck_assert_int_eq(covers(c, "7.50"), 1); /* xid 7 < 9, read */
	ck_assert_int_eq(covers(c, "9.40"), 1); /* exactly the last one */
	ck_assert_int_eq(covers(c, "9.39"), 1);
	ck_assert_int_eq(covers(c, "9.41"), 0); /* later in xid 9 */
	ck_assert_int_eq(covers(c, "11.2"), 0); /* later xid of the window */
	ck_assert_int_eq(covers(c, "10.2"), 0); /* running in hi */
	ck_assert_int_eq(covers(c, "12.2"), 0); /* beyond hi */
}
END_TEST

START_TEST(read_token_covers_itself)
{
	static const char *const t[] = { "0:0:", "10:20:12,15",
					 "5:9:7/8:12:10/9.40" };

	for (size_t i = 0; i < sizeof(t) / sizeof(*t); i++)
		ck_assert_msg(covers(t[i], t[i]) == 1, "'%s'", t[i]);
}
END_TEST

START_TEST(newer_snapshot_covers_older)
{
	ck_assert_int_eq(covers("20:30:25", "10:20:12,15"), 1);
	ck_assert_int_eq(covers("12:20:12", "10:20:12,15"), 1);
	ck_assert_int_eq(covers("10:25:12,15,22", "10:20:12,15"), 1);
}
END_TEST

START_TEST(older_snapshot_does_not_cover_newer)
{
	ck_assert_int_eq(covers("10:20:12,15", "20:30:25"), 0);
	ck_assert_int_eq(covers("10:20:12,15", "12:20:12"), 0);
	ck_assert_int_eq(covers("10:20:12", "10:21:12"), 0);
}
END_TEST

START_TEST(extra_running_xid_below_the_others_xmax_does_not_cover)
{
	/* 14 is running in a but finished in b */
	ck_assert_int_eq(covers("10:25:12,14,15", "10:20:12,15"), 0);
	/* 22 is running in a but at or above b's xmax: fine */
	ck_assert_int_eq(covers("10:25:12,15,22", "10:20:12,15"), 1);
}
END_TEST

START_TEST(higher_xmax_of_only_running_xids_still_covered)
{
	/* b's xids 20 and 21 are running: it sees nothing a does not */
	ck_assert_int_eq(covers("10:20:12", "10:22:12,20,21"), 1);
	ck_assert_int_eq(covers("10:20:12", "10:22:12,20"), 0);
}
END_TEST

START_TEST(mid_window_covers_its_start_not_its_end)
{
	const char *c = "5:9:7/8:12:10/9.40";

	ck_assert_int_eq(covers(c, "5:9:7"), 1);
	ck_assert_int_eq(covers(c, "8:12:10"), 0);
	ck_assert_int_eq(covers("8:12:10", c), 1);
	ck_assert_int_eq(covers("5:9:7", c), 0);
	ck_assert_int_eq(covers("20:20:", c), 1);
}
END_TEST

START_TEST(mid_window_further_in_covers_earlier_in_same_window)
{
	ck_assert_int_eq(covers("5:9:7/8:12:10/9.40", "5:9:7/8:12:10/9.30"), 1);
	ck_assert_int_eq(covers("5:9:7/8:12:10/9.40", "5:9:7/8:12:10/7.90"), 1);
	ck_assert_int_eq(covers("5:9:7/8:12:10/9.30", "5:9:7/8:12:10/9.40"), 0);
	ck_assert_int_eq(covers("5:9:7/8:12:10/7.90", "5:9:7/8:12:10/9.1"), 0);
}
END_TEST

START_TEST(mid_window_of_a_later_window_covers_an_earlier_window)
{
	/* a's start 8:12:10 is the end of b's window */
	ck_assert_int_eq(covers("8:12:10/13:14:/12.1", "5:9:7/8:12:10/9.40"),
			 1);
	ck_assert_int_eq(covers("5:9:7/8:12:10/9.40", "8:12:10/13:14:/12.1"),
			 0);
}
END_TEST

START_TEST(malformed_tokens_make_covers_fail)
{
	struct es_error err = ES_ERROR_INIT;

	ck_assert_int_eq(es_token_covers("junk", "5.1", &err), -1);
	ck_assert_int_eq(err.code, ES_EMALFORMED);
	es_error_release(&err);
	ck_assert_int_eq(es_token_covers("5:9:", "5.x", &err), -1);
	ck_assert_int_eq(err.code, ES_EMALFORMED);
	es_error_release(&err);
	ck_assert_int_eq(es_token_covers("5:9:", "9:5:", &err), -1);
	ck_assert_int_eq(err.code, ES_EMALFORMED);
	es_error_release(&err);
	/* an append token is not a read token */
	ck_assert_int_eq(es_token_covers("5.1", "5:9:", &err), -1);
	ck_assert_int_eq(err.code, ES_EMALFORMED);
	es_error_release(&err);
}
END_TEST

/* The union of two snapshots, as text. */
static char *union_of(const char *a, const char *b)
{
	struct es_cursor ca = cur(a), cb = cur(b);
	struct es_snapshot u;
	struct es_error err = ES_ERROR_INIT;
	char *s;

	ck_assert_int_eq(es_snapshot_union(&u, &ca.lo, &cb.lo, &err), 0);
	s = es_snapshot_format(&u);
	ck_assert_ptr_nonnull(s);
	es_snapshot_release(&u);
	es_cursor_release(&ca);
	es_cursor_release(&cb);
	return s;
}

START_TEST(union_sees_what_either_sees)
{
	static const char *const c[][3] = {
		{ "10:20:12,15", "20:30:25", "25:30:25" },
		{ "20:30:25", "10:20:12,15", "25:30:25" },
		/* 14 finished in b: visible in the union */
		{ "10:25:12,14,15", "10:20:12,15", "12:25:12,15" },
		/* 22 at or above b's xmax, running in a: running in both */
		{ "10:25:12,22", "10:20:", "22:25:22" },
		{ "10:20:12,15", "10:20:12,15", "12:20:12,15" },
		{ "0:0:", "7:9:7", "7:9:7" },
		{ "0:0:", "0:0:", "0:0:" },
		{ "5:9:5,7", "6:9:6,8", "9:9:" },
	};

	for (size_t i = 0; i < sizeof(c) / sizeof(*c); i++) {
		char *u = union_of(c[i][0], c[i][1]);

		ck_assert_msg(strcmp(u, c[i][2]) == 0, "%s | %s: %s, not %s",
			      c[i][0], c[i][1], u, c[i][2]);
		ck_assert_int_eq(covers(u, c[i][0]), 1);
		ck_assert_int_eq(covers(u, c[i][1]), 1);
		free(u);
	}
}
END_TEST

/* A snapshot of xids below 40 drawn from `seed`, for the next test. */
static void random_snapshot(unsigned int *seed, struct es_snapshot *s)
{
	static uint64_t xip[40];
	size_t n = 0;

	s->xmax = (uint64_t)(rand_r(seed) % 40);
	for (uint64_t x = 0; x < s->xmax; x++)
		if (rand_r(seed) % 3 == 0)
			xip[n++] = x;
	s->xmin = n ? xip[0] : s->xmax;
	s->xip = xip;
	s->nxip = n;
}

START_TEST(union_is_exact_for_random_snapshots)
{
	unsigned int seed = 7;

	for (int round = 0; round < 2000; round++) {
		struct es_snapshot a, b, u, ca = { 0 }, cb = { 0 };
		struct es_error err = ES_ERROR_INIT;

		random_snapshot(&seed, &a);
		ck_assert_int_eq(es_snapshot_copy(&ca, &a, &err), 0);
		random_snapshot(&seed, &b);
		ck_assert_int_eq(es_snapshot_copy(&cb, &b, &err), 0);
		ck_assert_int_eq(es_snapshot_union(&u, &ca, &cb, &err), 0);
		for (uint64_t x = 0; x < 45; x++)
			ck_assert_msg(es_snapshot_visible(&u, x) ==
					      (es_snapshot_visible(&ca, x) ||
					       es_snapshot_visible(&cb, x)),
				      "round %d, xid %d", round, (int)x);
		ck_assert(es_snapshot_covers(&u, &ca));
		ck_assert(es_snapshot_covers(&u, &cb));
		for (size_t i = 1; i < u.nxip; i++)
			ck_assert(u.xip[i - 1] < u.xip[i]);
		ck_assert(u.xmin <= u.xmax);
		es_snapshot_release(&u);
		es_snapshot_release(&ca);
		es_snapshot_release(&cb);
	}
}
END_TEST

static Suite *token_suite(void)
{
	Suite *s = suite_create("token");
	TCase *tc = tcase_create("parse");
	TCase *cv = tcase_create("covers");

	tcase_add_test(tc, snapshot_round_trips);
	tcase_add_test(tc, snapshot_fields_are_read);
	tcase_add_test(tc, mid_window_cursor_round_trips);
	tcase_add_test(tc, mid_window_fields_are_read);
	tcase_add_test(tc, full_cursor_is_its_snapshot);
	tcase_add_test(tc, initialised_cursor_is_the_start_of_the_log);
	tcase_add_test(tc, copies_are_deep);
	tcase_add_test(tc, malformed_read_tokens_are_refused);
	tcase_add_test(tc, a_null_token_is_refused);
	tcase_add_test(tc, an_over_long_token_is_refused);
	tcase_add_test(tc, a_long_but_allowed_snapshot_parses);
	tcase_add_test(tc, append_token_round_trips);
	tcase_add_test(tc, append_token_format_refuses_a_short_buffer);
	tcase_add_test(tc, malformed_append_tokens_are_refused);
	suite_add_tcase(s, tc);

	tcase_add_test(cv, visible_means_below_xmax_and_not_running);
	tcase_add_test(cv, the_start_of_the_log_sees_nothing);
	tcase_add_test(cv, append_below_xmin_is_covered);
	tcase_add_test(cv, append_of_a_running_transaction_is_not_covered);
	tcase_add_test(cv, append_at_or_above_xmax_is_not_covered);
	tcase_add_test(cv, mid_window_covers_appends_read_so_far);
	tcase_add_test(cv, read_token_covers_itself);
	tcase_add_test(cv, newer_snapshot_covers_older);
	tcase_add_test(cv, older_snapshot_does_not_cover_newer);
	tcase_add_test(cv,
		       extra_running_xid_below_the_others_xmax_does_not_cover);
	tcase_add_test(cv, higher_xmax_of_only_running_xids_still_covered);
	tcase_add_test(cv, mid_window_covers_its_start_not_its_end);
	tcase_add_test(cv, mid_window_further_in_covers_earlier_in_same_window);
	tcase_add_test(cv,
		       mid_window_of_a_later_window_covers_an_earlier_window);
	tcase_add_test(cv, malformed_tokens_make_covers_fail);
	tcase_add_test(cv, union_sees_what_either_sees);
	tcase_add_test(cv, union_is_exact_for_random_snapshots);
	suite_add_tcase(s, cv);
	return s;
}

int main(void)
{
	SRunner *sr = srunner_create(token_suite());
	int failed;

	es_log_threshold = ES_LOG_OFF;
	srunner_run_all(sr, CK_NORMAL);
	failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
