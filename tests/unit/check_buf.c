/*
 * check_buf.c - struct es_buf: JSON strings escaped as jansson escapes
 * them, compact JSON, integers, printf text, growth, dropping a prefix,
 * and an out-of-memory failure that sticks until the end.
 */
#include <check.h>
#include <jansson.h>
#include <limits.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "es_buf.h"

/* es_buf_add_jstr() writes what json_dumps() writes for the same string. */
START_TEST(buf_jstr_escapes_as_jansson_does)
{
	struct es_buf b = ES_BUF_INIT;
	char all[160];
	size_t n = 0;
	json_t *j;
	char *want;

	for (int c = 1; c < 0x80; c++)
		all[n++] = (char)c;
	memcpy(all + n, "\xc3\xa9\xe2\x82\xac/\\\"", 8);
	n += 8;
	j = json_stringn(all, n);
	ck_assert_ptr_nonnull(j);
	want = json_dumps(j, JSON_ENCODE_ANY);
	es_buf_add_jstr(&b, all, n);
	ck_assert(!b.failed);
	ck_assert_str_eq(b.s, want);
	ck_assert_uint_eq(b.len, strlen(want));
	free(want);
	json_decref(j);
	es_buf_release(&b);
}
END_TEST

START_TEST(buf_jstr_finds_an_escape_at_every_offset)
{
	/* plain words, UTF-8 and DEL, then one byte to escape moved along */
	static const char special[] = { 1, '\n', 0x1f, '"', '\\' };
	char s[40];
	size_t at, k, len;

	for (len = 0; len < sizeof(s); len++)
		s[len] = (char)("abc\xc3\xa9\x7f~ 0123456789xyz/"[len % 20]);
	for (k = 0; k < sizeof(special); k++) {
		for (at = 0; at < sizeof(s); at++) {
			struct es_buf b = ES_BUF_INIT;
			char t[sizeof(s)], *want;
			json_t *j;

			/* not inside the two bytes of the é */
			if (at % 20 == 3 || at % 20 == 4)
				continue;
			memcpy(t, s, sizeof(s));
			t[at] = special[k];
			j = json_stringn(t, sizeof(t));
			ck_assert_ptr_nonnull(j);
			want = json_dumps(j, JSON_ENCODE_ANY);
			es_buf_add_jstr(&b, t, sizeof(t));
			ck_assert_str_eq(b.s, want);
			free(want);
			json_decref(j);
			es_buf_release(&b);
		}
	}
}
END_TEST

START_TEST(buf_compact_drops_whitespace_outside_strings_only)
{
	static const char *const in[][2] = {
		{ "{\"a\": 1, \"b\": [1, 2, {\"c\": null}]}",
		  "{\"a\":1,\"b\":[1,2,{\"c\":null}]}" },
		{ "{\"k e y\": \"v a l\"}", "{\"k e y\":\"v a l\"}" },
		{ "{\"q\": \"a\\\" b, c: \\\\\", \"n\":\t1.50 }",
		  "{\"q\":\"a\\\" b, c: \\\\\",\"n\":1.50}" },
		{ " [ ]\r\n", "[]" },
		{ "\"\\u0020 \"", "\"\\u0020 \"" },
	};

	for (size_t i = 0; i < sizeof(in) / sizeof(*in); i++) {
		struct es_buf b = ES_BUF_INIT;

		es_buf_adds(&b, "<");
		es_buf_add_json_compact(&b, in[i][0], strlen(in[i][0]));
		es_buf_adds(&b, ">");
		ck_assert(!b.failed);
		ck_assert_uint_eq(b.len, strlen(in[i][1]) + 2);
		ck_assert_int_eq(strncmp(b.s + 1, in[i][1], b.len - 2), 0);
		es_buf_release(&b);
	}
}
END_TEST

/* The byte-at-a-time compaction, the reference for the word-wise one. */
static size_t compact_ref(const char *s, size_t len, char *o)
{
	size_t i, n = 0;
	int in_string = 0;

	for (i = 0; i < len; i++) {
		char c = s[i];

		if (in_string) {
			o[n++] = c;
			if (c == '\\' && i + 1 < len)
				o[n++] = s[++i];
			else if (c == '"')
				in_string = 0;
			continue;
		}
		if (c == ' ' || c == '\n' || c == '\t' || c == '\r')
			continue;
		if (c == '"')
			in_string = 1;
		o[n++] = c;
	}
	return n;
}

START_TEST(buf_compact_matches_the_byte_loop_at_every_alignment)
{
	/* pieces that put quotes, escapes and spaces at every offset */
	static const char *const piece[] = {
		"{\"amount\": 2500, ",
		"\"currency\": \"EUR\"",
		", ",
		"\"a\\\"b\"",
		"\"\\\\\"",
		"[1, 2, 3]",
		"  \t\r\n",
		"\"with spaces inside it\"",
		"\"Zo\xc3\xab \\u0020\"",
		"null",
		"\"0123456789abcdef0123456789\"",
		": ",
		"\x01",
		"}",
	};
	char in[512], want[512];
	unsigned seed = 12345;
	int round;

	for (round = 0; round < 20000; round++) {
		struct es_buf b = ES_BUF_INIT;
		size_t len = 0, n, pre = (size_t)round % 9;

		while (len < 200) {
			const char *p;

			seed = seed * 1103515245u + 12345u;
			p = piece[(seed >> 16) %
				  (sizeof(piece) / sizeof(*piece))];
			memcpy(in + len, p, strlen(p));
			len += strlen(p);
		}
		/* a prefix moves the output's alignment too */
		es_buf_add(&b, "<<<<<<<<", pre);
		n = compact_ref(in, len - (size_t)round % 13, want);
		es_buf_add_json_compact(&b, in, len - (size_t)round % 13);
		ck_assert(!b.failed);
		ck_assert_uint_eq(b.len, pre + n);
		ck_assert_int_eq(memcmp(b.s + pre, want, n), 0);
		ck_assert_int_eq(b.s[b.len], '\0');
		es_buf_release(&b);
	}
}
END_TEST

START_TEST(buf_integers_and_growth)
{
	struct es_buf b = ES_BUF_INIT;
	size_t len;
	char *s;

	es_buf_add_int(&b, LLONG_MIN);
	es_buf_adds(&b, " ");
	es_buf_add_int(&b, 0);
	es_buf_adds(&b, " ");
	es_buf_add_int(&b, -7);
	es_buf_adds(&b, " ");
	es_buf_add_uint(&b, ULLONG_MAX);
	ck_assert_str_eq(b.s, "-9223372036854775808 0 -7 18446744073709551615");
	for (int i = 0; i < 100000; i++)
		es_buf_add(&b, "x", 1);
	ck_assert_uint_eq(b.len, 46 + 100000);
	ck_assert_uint_eq(strlen(b.s), b.len);
	s = es_buf_detach(&b, &len);
	ck_assert_ptr_nonnull(s);
	ck_assert_uint_eq(len, 46 + 100000);
	ck_assert_ptr_null(b.s);
	ck_assert_uint_eq(b.len, 0);
	free(s);
	/* nothing written: nothing to detach */
	ck_assert_ptr_null(es_buf_detach(&b, &len));
	ck_assert_uint_eq(len, 0);
}
END_TEST

START_TEST(buf_failure_sticks)
{
	struct es_buf b = ES_BUF_INIT;

	es_buf_adds(&b, "ok");
	ck_assert(!es_buf_reserve(&b, SIZE_MAX - 1));
	ck_assert(b.failed);
	es_buf_adds(&b, "more");
	es_buf_add_jstr(&b, "s", 1);
	ck_assert_uint_eq(b.len, 2);
	ck_assert_ptr_null(es_buf_detach(&b, NULL));
	ck_assert(!b.failed);
}
END_TEST

START_TEST(buf_printf_reset_and_consume)
{
	struct es_buf b = ES_BUF_INIT;
	struct es_error err = ES_ERROR_INIT;
	char *keep;

	es_buf_addf(&b, "%s=%d;", "a", 1);
	es_buf_addf(&b, "%.3s", "bcdef");
	ck_assert_str_eq(b.s, "a=1;bcd");
	es_buf_consume(&b, 4);
	ck_assert_str_eq(b.s, "bcd");
	ck_assert_uint_eq(b.len, 3);
	es_buf_consume(&b, 10);
	ck_assert_str_eq(b.s, "");
	ck_assert_uint_eq(b.len, 0);
	es_buf_addf(&b, "%0*d", 1000, 7);
	ck_assert_uint_eq(b.len, 1000);
	ck_assert_uint_eq(strlen(b.s), 1000);
	keep = b.s;
	es_buf_reset(&b);
	ck_assert_ptr_eq(b.s, keep); /* the memory stays */
	ck_assert_str_eq(b.s, "");
	ck_assert_int_eq(es_buf_check(&b, &err), 0);
	es_buf_release(&b);
	/* nothing to drop or forget in an empty buffer */
	es_buf_consume(&b, 1);
	es_buf_reset(&b);
	ck_assert_ptr_null(b.s);
}
END_TEST

START_TEST(buf_check_reports_the_failure)
{
	struct es_buf b = ES_BUF_INIT;
	struct es_error err = ES_ERROR_INIT;

	ck_assert(!es_buf_reserve(&b, SIZE_MAX));
	es_buf_reset(&b);
	ck_assert(b.failed); /* a reset keeps the failure */
	ck_assert_int_eq(es_buf_check(&b, &err), -1);
	ck_assert_int_eq(err.code, ES_EINTERNAL);
	es_error_release(&err);
	es_buf_release(&b);
}
END_TEST

static Suite *buf_suite(void)
{
	Suite *s = suite_create("buf");
	TCase *tc = tcase_create("buf");

	tcase_add_test(tc, buf_jstr_escapes_as_jansson_does);
	tcase_add_test(tc, buf_jstr_finds_an_escape_at_every_offset);
	tcase_add_test(tc, buf_compact_drops_whitespace_outside_strings_only);
	tcase_add_test(tc,
		       buf_compact_matches_the_byte_loop_at_every_alignment);
	tcase_add_test(tc, buf_integers_and_growth);
	tcase_add_test(tc, buf_failure_sticks);
	tcase_add_test(tc, buf_printf_reset_and_consume);
	tcase_add_test(tc, buf_check_reports_the_failure);
	suite_add_tcase(s, tc);
	return s;
}

int main(void)
{
	SRunner *sr = srunner_create(buf_suite());
	int failed;

	srunner_run_all(sr, CK_NORMAL);
	failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
