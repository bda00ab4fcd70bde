/*
 * check_uuid.c - the UUID text form: es_uuid_parse() takes any case and
 * gives lower case, es_uuid_is_lower() and es_uuid_bytes() take the
 * canonical form only, es_uuid_format() writes it, and none of them reads
 * past the end of a short string; es_uuid_v4() makes version 4 ids.
 */
#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "es_array.h"
#include "es_uuid.h"

#define LOWER "0123abcd-ef45-4678-9abc-def012345678"
#define UPPER "0123ABCD-EF45-4678-9ABC-DEF012345678"

/* Not UUIDs, in any case. */
static const char *const bad[] = {
	"",
	"0123abcd",
	"0123abcd-",
	"0123abcd-ef45-4678-9abc-def01234567", /* one digit short */
	"0123abcd-ef45-4678-9abc-def0123456789", /* one too many */
	"0123abcd_ef45-4678-9abc-def012345678", /* not a dash */
	"0123abcd-ef45-4678-9abc+def012345678",
	"0123abcdef45-4678-9abc-def012345678-",
	"0123abcg-ef45-4678-9abc-def012345678", /* not hex */
	"0123abcd-ef45-4678-9abc-def01234567 ",
	" 0123abcd-ef45-4678-9abc-def01234567",
	"{0123abcd-ef45-4678-9abc-def012345678}",
	"0123abcd-ef45-4678-9abc-def01234567\xff",
	"0123abcdef4546789abcdef012345678",
};

START_TEST(parse_gives_lower_case)
{
	char out[37];

	ck_assert_int_eq(es_uuid_parse(LOWER, out), 0);
	ck_assert_str_eq(out, LOWER);
	ck_assert_int_eq(es_uuid_parse(UPPER, out), 0);
	ck_assert_str_eq(out, LOWER);
	ck_assert_int_eq(
		es_uuid_parse("0123aBcD-eF45-4678-9AbC-dEf012345678", out), 0);
	ck_assert_str_eq(out, LOWER);
}
END_TEST

START_TEST(parse_in_place)
{
	char s[37] = UPPER;

	ck_assert_int_eq(es_uuid_parse(s, s), 0);
	ck_assert_str_eq(s, LOWER);
}
END_TEST

START_TEST(parse_refuses_and_leaves_out_alone)
{
	char out[37] = "untouched";

	ck_assert_int_eq(es_uuid_parse(bad[_i], out), -1);
	ck_assert_str_eq(out, "untouched");
	ck_assert_int_eq(es_uuid_is_lower(bad[_i]), 0);
}
END_TEST

START_TEST(parse_null)
{
	char out[37] = "untouched";

	ck_assert_int_eq(es_uuid_parse(NULL, out), -1);
	ck_assert_str_eq(out, "untouched");
	ck_assert_int_eq(es_uuid_is_lower(NULL), 0);
}
END_TEST

START_TEST(short_strings_are_not_overread)
{
	/* each prefix of a UUID in a buffer of its own exact size */
	size_t n;

	for (n = 0; n < 36; n++) {
		char *s = malloc(n + 1);
		char out[37];

		ck_assert_ptr_nonnull(s);
		memcpy(s, LOWER, n);
		s[n] = '\0';
		ck_assert_int_eq(es_uuid_parse(s, out), -1);
		ck_assert_int_eq(es_uuid_is_lower(s), 0);
		free(s);
	}
}
END_TEST

START_TEST(lower_check)
{
	ck_assert_int_eq(es_uuid_is_lower(LOWER), 1);
	ck_assert_int_eq(es_uuid_is_lower(UPPER), 0);
	ck_assert_int_eq(
		es_uuid_is_lower("0123abcd-ef45-4678-9abC-def012345678"), 0);
}
END_TEST

START_TEST(bytes_and_format_round_trip)
{
	static const unsigned char want[16] = { 0x01, 0x23, 0xab, 0xcd,
						0xef, 0x45, 0x46, 0x78,
						0x9a, 0xbc, 0xde, 0xf0,
						0x12, 0x34, 0x56, 0x78 };
	unsigned char b[16];
	char out[37];

	ck_assert_int_eq(es_uuid_bytes(LOWER, b), 0);
	ck_assert_mem_eq(b, want, 16);
	es_uuid_format(b, out);
	ck_assert_str_eq(out, LOWER);
	ck_assert_int_eq(es_uuid_bytes(UPPER, b), -1);
	ck_assert_int_eq(es_uuid_bytes("", b), -1);
	ck_assert_int_eq(es_uuid_bytes(NULL, b), -1);
}
END_TEST

START_TEST(format_every_byte)
{
	unsigned char b[16];
	char out[37], hex[3];
	int v;

	for (v = 0; v < 256; v++) {
		memset(b, v, sizeof(b));
		es_uuid_format(b, out);
		snprintf(hex, sizeof(hex), "%02x", v);
		ck_assert_int_eq(out[0], hex[0]);
		ck_assert_int_eq(out[35], hex[1]);
		ck_assert_int_eq(out[8], '-');
		ck_assert_int_eq(out[23], '-');
		ck_assert_int_eq(es_uuid_is_lower(out), 1);
	}
}
END_TEST

START_TEST(v4_is_version_4_lower_case)
{
	char a[37], b[37];

	es_uuid_v4(a);
	es_uuid_v4(b);
	ck_assert_int_eq(es_uuid_is_lower(a), 1);
	ck_assert_int_eq(a[14], '4');
	ck_assert(strchr("89ab", a[19]) != NULL);
	ck_assert_str_ne(a, b);
}
END_TEST

START_TEST(v7_is_version_7_in_time_order)
{
	unsigned char a[16], b[16];
	char text[37];
	unsigned long long ms_a = 0, ms_b = 0;
	struct timespec ts;
	long long now;
	int i;

	clock_gettime(CLOCK_REALTIME, &ts);
	now = (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
	es_uuid_v7(a);
	es_uuid_v7(b);
	for (i = 0; i < 6; i++) {
		ms_a = ms_a << 8 | a[i];
		ms_b = ms_b << 8 | b[i];
	}
	ck_assert_int_le(llabs((long long)ms_a - now), 1000);
	ck_assert_uint_le(ms_a, ms_b);
	es_uuid_format(a, text);
	ck_assert_int_eq(text[14], '7');
	ck_assert(strchr("89ab", text[19]) != NULL);
	ck_assert(memcmp(a, b, sizeof(a)) != 0);
}
END_TEST

/* The text form: lower case, version 7, in time order as text too. */
START_TEST(v7_text_sorts_in_time_order)
{
	char a[37], b[37];
	struct timespec pause = { 0, 2000000 };

	es_uuid_v7_text(a);
	nanosleep(&pause, NULL);
	es_uuid_v7_text(b);
	ck_assert_int_eq(es_uuid_is_lower(a), 1);
	ck_assert_int_eq(es_uuid_is_lower(b), 1);
	ck_assert_int_eq(a[14], '7');
	ck_assert(strchr("89ab", a[19]) != NULL);
	/* 2 ms apart: the time digits (8-4) differ and order them */
	ck_assert_int_lt(strncmp(a, b, 13), 0);
}
END_TEST

/* Many ids from the per-thread pool, across its refills: all different. */
START_TEST(v7_ids_do_not_repeat)
{
	enum { N = 1000 };
	static unsigned char ids[N][16];
	int i, j;

	for (i = 0; i < N; i++)
		es_uuid_v7(ids[i]);
	for (i = 0; i < N; i++)
		for (j = i + 1; j < N; j++)
			ck_assert_msg(memcmp(ids[i], ids[j], 16) != 0,
				      "ids %d and %d are equal", i, j);
}
END_TEST

static Suite *uuid_suite(void)
{
	Suite *s = suite_create("uuid");
	TCase *tc = tcase_create("text");

	tcase_add_test(tc, parse_gives_lower_case);
	tcase_add_test(tc, parse_in_place);
	tcase_add_loop_test(tc, parse_refuses_and_leaves_out_alone, 0,
			    (int)ARRAY_SIZE(bad));
	tcase_add_test(tc, parse_null);
	tcase_add_test(tc, short_strings_are_not_overread);
	tcase_add_test(tc, lower_check);
	tcase_add_test(tc, bytes_and_format_round_trip);
	tcase_add_test(tc, format_every_byte);
	tcase_add_test(tc, v4_is_version_4_lower_case);
	tcase_add_test(tc, v7_is_version_7_in_time_order);
	tcase_add_test(tc, v7_ids_do_not_repeat);
	tcase_add_test(tc, v7_text_sorts_in_time_order);
	suite_add_tcase(s, tc);
	return s;
}

int main(void)
{
	SRunner *sr = srunner_create(uuid_suite());
	int failed;

	srunner_run_all(sr, CK_NORMAL);
	failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
