/*
 * check_utf8.c - es_utf8_chars(): characters counted, every malformed
 * form refused (overlong, surrogates, past U+10FFFF, cut short, stray
 * continuation bytes), and control characters reported.
 */
#include <check.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "es_array.h"
#include "es_utf8.h"

static long chars(const char *s, bool *control)
{
	return es_utf8_chars(s, strlen(s), control);
}

START_TEST(counts_characters)
{
	bool ctl = true;

	ck_assert_int_eq(chars("", &ctl), 0);
	ck_assert(!ctl);
	ck_assert_int_eq(chars("abc", NULL), 3);
	ck_assert_int_eq(chars("\xc3\xa9t\xc3\xa9", NULL), 3); /* été */
	ck_assert_int_eq(chars("\xe2\x82\xac", NULL), 1); /* U+20AC */
	ck_assert_int_eq(chars("\xf0\x9f\x98\x80", NULL), 1); /* U+1F600 */
	ck_assert_int_eq(chars("\xf4\x8f\xbf\xbf", NULL), 1); /* U+10FFFF */
	ck_assert_int_eq(chars("\xed\x9f\xbf", NULL), 1); /* U+D7FF */
	ck_assert_int_eq(es_utf8_chars("a\0b", 3, NULL), 3);
}
END_TEST

static const char *const bad[] = {
	"\x80", /* a continuation byte alone */
	"a\xbf",
	"\xc0\xaf", /* overlong '/' */
	"\xc1\xbf",
	"\xe0\x80\xaf", /* overlong, 3 bytes */
	"\xf0\x80\x80\xaf", /* overlong, 4 bytes */
	"\xed\xa0\x80", /* U+D800, a surrogate */
	"\xed\xbf\xbf", /* U+DFFF */
	"\xf4\x90\x80\x80", /* U+110000 */
	"\xf5\x80\x80\x80",
	"\xff",
	"\xc3", /* cut short */
	"\xe2\x82",
	"\xf0\x9f\x98",
	"\xc3(", /* not a continuation */
};

START_TEST(refuses_malformed)
{
	ck_assert_int_eq(chars(bad[_i], NULL), -1);
}
END_TEST

START_TEST(cut_short_by_len)
{
	/* the bytes past `len` do not complete a sequence */
	ck_assert_int_eq(es_utf8_chars("\xe2\x82\xac", 2, NULL), -1);
	ck_assert_int_eq(es_utf8_chars("\xe2\x82\xac", 3, NULL), 1);
}
END_TEST

START_TEST(reports_control_characters)
{
	bool ctl;

	ck_assert_int_eq(chars("a\tb", &ctl), 3);
	ck_assert(ctl);
	ck_assert_int_eq(chars("a\x7f", &ctl), 2);
	ck_assert(ctl);
	ck_assert_int_eq(chars("\xc2\x85", &ctl), 1); /* U+0085, C1 */
	ck_assert(ctl);
	ck_assert_int_eq(chars("\xc2\xa0 ~", &ctl), 3); /* U+00A0 */
	ck_assert(!ctl);
}
END_TEST

/*
 * One odd character at every offset of printable ASCII text, so that it
 * falls in every byte of an eight-byte word and in the tail after the
 * last whole word: the count and the control flag stay exact.
 */
START_TEST(odd_characters_anywhere_in_long_text)
{
	static const struct {
		const char *bytes;
		long chars; /* of the 30-byte text holding it */
		bool ctl;
	} odd[] = {
		{ "\x01", 30, true },	   { "\x1f", 30, true },
		{ "\x7f", 30, true },	   { " ", 30, false },
		{ "~", 30, false },	   { "\xc2\x85", 29, true },
		{ "\xc3\xa9", 29, false }, { "\xe2\x82\xac", 28, false },
		{ "\xff", -1, false },	   { "\x80", -1, false },
	};
	char text[31];
	size_t i, at, k;
	bool ctl;

	for (i = 0; i < ARRAY_SIZE(odd); i++) {
		k = strlen(odd[i].bytes);
		for (at = 0; at + k <= 30; at++) {
			memset(text, 'a', 30);
			memcpy(text + at, odd[i].bytes, k);
			ctl = !odd[i].ctl;
			ck_assert_int_eq(es_utf8_chars(text, 30, &ctl),
					 odd[i].chars);
			if (odd[i].chars >= 0)
				ck_assert_msg(ctl == odd[i].ctl,
					      "odd %zu at %zu", i, at);
		}
	}
	/* a NUL is a character, and a control one */
	memset(text, 'a', 30);
	text[13] = '\0';
	ck_assert_int_eq(es_utf8_chars(text, 30, &ctl), 30);
	ck_assert(ctl);
	ck_assert_int_eq(es_utf8_chars(text, 16, &ctl), 16);
	ck_assert(ctl);
	ck_assert_int_eq(es_utf8_chars(text, 8, &ctl), 8);
	ck_assert(!ctl);
}
END_TEST

static Suite *utf8_suite(void)
{
	Suite *s = suite_create("utf8");
	TCase *tc = tcase_create("utf8");

	tcase_add_test(tc, counts_characters);
	tcase_add_loop_test(tc, refuses_malformed, 0, (int)ARRAY_SIZE(bad));
	tcase_add_test(tc, cut_short_by_len);
	tcase_add_test(tc, reports_control_characters);
	tcase_add_test(tc, odd_characters_anywhere_in_long_text);
	suite_add_tcase(s, tc);
	return s;
}

int main(void)
{
	SRunner *sr = srunner_create(utf8_suite());
	int failed;

	srunner_run_all(sr, CK_NORMAL);
	failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
