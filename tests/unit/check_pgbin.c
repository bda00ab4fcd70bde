/*
 * check_pgbin.c - reading PostgreSQL's binary formats: integers, the
 * fields of a COPY row, and timestamps as es_event.recorded_at text,
 * checked against fixed dates and, day by day over years 1 to 9999,
 * against the C library's gmtime_r().
 */
#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "es_array.h"
#include "es_pgbin.h"

/* seconds from 1970-01-01 to 2000-01-01 */
#define PG_EPOCH 946684800LL

static const struct {
	long long us;
	const char *text;
} times[] = {
	{ 0LL, "2000-01-01T00:00:00.000000Z" },
	{ -1LL, "1999-12-31T23:59:59.999999Z" },
	{ 762566400000000LL, "2024-03-01T00:00:00.000000Z" },
	{ 762525296789012LL, "2024-02-29T12:34:56.789012Z" },
	{ -946684800000000LL, "1970-01-01T00:00:00.000000Z" },
	{ -63082281600000000LL, "0001-01-01T00:00:00.000000Z" },
	{ 252455615999999999LL, "9999-12-31T23:59:59.999999Z" },
	{ -3150575999999999LL, "1900-03-01T00:00:00.000001Z" },
	{ 3160857599000000LL, "2100-02-28T23:59:59.000000Z" },
	{ 5097600500000LL, "2000-02-29T00:00:00.500000Z" },
	{ 848941474816724LL, "2026-11-25T17:04:34.816724Z" },
};

START_TEST(time_is_utc_text)
{
	char out[ES_PGBIN_TIME_LEN + 1];

	memset(out, 'x', sizeof(out));
	ck_assert_int_eq(es_pgbin_time(times[_i].us, out), 0);
	ck_assert_str_eq(out, times[_i].text);
}
END_TEST

START_TEST(time_outside_years_1_to_9999_is_refused)
{
	char out[ES_PGBIN_TIME_LEN + 1] = "untouched";

	ck_assert_int_eq(es_pgbin_time(-63082281600000001LL, out), -1);
	ck_assert_int_eq(es_pgbin_time(252455616000000000LL, out), -1);
	ck_assert_int_eq(es_pgbin_time(INT64_MAX, out), -1);
	ck_assert_int_eq(es_pgbin_time(INT64_MIN, out), -1);
	ck_assert_str_eq(out, "untouched");
}
END_TEST

START_TEST(every_day_agrees_with_gmtime)
{
	/* 0001-01-01 in Unix seconds */
	const long long first = -62135596800LL;
	char want[64], got[ES_PGBIN_TIME_LEN + 1];
	long long day;

	/* to 9999-12-31, at a time of day that moves */
	for (day = 0; day < 3652059; day++) {
		long long secs = first + day * 86400 + (day * 7919) % 86400;
		long long us = (secs - PG_EPOCH) * 1000000 + day % 1000000;
		time_t t = (time_t)secs;
		struct tm tm;

		/* plain ifs: each ck_assert in a loop this long costs */
		if (!gmtime_r(&t, &tm))
			ck_abort_msg("day %lld: no gmtime", day);
		snprintf(want, sizeof(want),
			 "%04d-%02d-%02dT%02d:%02d:%02d.%06lldZ",
			 tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday,
			 tm.tm_hour, tm.tm_min, tm.tm_sec, day % 1000000);
		if (es_pgbin_time(us, got) != 0 || strcmp(want, got) != 0)
			ck_abort_msg("day %lld: want %s, got %s", day, want,
				     got);
	}
	ck_assert_int_eq(strncmp(got, "9999-12-31T", 11), 0);
}
END_TEST

START_TEST(any_time_writes_every_value)
{
	/* as es_pgbin_time() in its years, and something past them */
	static const struct {
		long long us;
		const char *text;
	} rare[] = {
		{ INT64_MAX, "infinity" },
		{ INT64_MIN, "-infinity" },
		{ -63082281600000001LL, "0000-12-31T23:59:59.999999Z" },
		{ 252455616000000000LL, "10000-01-01T00:00:00.000000Z" },
		{ -63113904000000000LL, "0000-01-01T00:00:00.000000Z" },
		{ -63145440000000000LL, "-001-01-01T00:00:00.000000Z" },
		{ 762525296789012LL, "2024-02-29T12:34:56.789012Z" },
	};
	char out[ES_PGBIN_TIME_MAX];
	size_t i;

	for (i = 0; i < ARRAY_SIZE(rare); i++) {
		es_pgbin_time_any(rare[i].us, out);
		ck_assert_str_eq(out, rare[i].text);
	}
}
END_TEST

START_TEST(integers_are_big_endian)
{
	const unsigned char b[8] = { 0x01, 0x02, 0x03, 0x04,
				     0x05, 0x06, 0x07, 0x08 };
	const unsigned char m[8] = { 0xff, 0xff, 0xff, 0xff,
				     0xff, 0xff, 0xff, 0xfe };

	ck_assert_uint_eq(es_pgbin_u64(b), 0x0102030405060708ULL);
	ck_assert_uint_eq(es_pgbin_u32(b), 0x01020304U);
	ck_assert_uint_eq(es_pgbin_u16(b), 0x0102U);
	ck_assert_int_eq((long long)es_pgbin_u64(m), -2);
}
END_TEST

START_TEST(fields_stop_at_the_end)
{
	/* "ab", "", NULL, then a length running past the end */
	const unsigned char row[] = { 0, 0, 0, 2,    'a',  'b',	 0,
				      0, 0, 0, 0xff, 0xff, 0xff, 0xff,
				      0, 0, 0, 9,    'x' };
	const unsigned char *p = row, *end = row + sizeof(row), *v;
	size_t n;

	ck_assert_int_eq(es_pgbin_field(&p, end, &v, &n), 0);
	ck_assert_uint_eq(n, 2);
	ck_assert_int_eq(memcmp(v, "ab", 2), 0);
	ck_assert_int_eq(es_pgbin_field(&p, end, &v, &n), 0);
	ck_assert_uint_eq(n, 0);
	ck_assert_int_eq(es_pgbin_field(&p, end, &v, &n), -1);
	p += 4;
	ck_assert_int_eq(es_pgbin_field(&p, end, &v, &n), -1);
	ck_assert_ptr_eq(p, row + 14);
	p = end - 2;
	ck_assert_int_eq(es_pgbin_field(&p, end, &v, &n), -1);
}
END_TEST

static Suite *suite(void)
{
	Suite *s = suite_create("es_pgbin");
	TCase *tc = tcase_create("pgbin");

	tcase_set_timeout(tc, 120);
	tcase_add_loop_test(tc, time_is_utc_text, 0, (int)ARRAY_SIZE(times));
	tcase_add_test(tc, time_outside_years_1_to_9999_is_refused);
	tcase_add_test(tc, every_day_agrees_with_gmtime);
	tcase_add_test(tc, any_time_writes_every_value);
	tcase_add_test(tc, integers_are_big_endian);
	tcase_add_test(tc, fields_stop_at_the_end);
	suite_add_tcase(s, tc);
	return s;
}

int main(void)
{
	SRunner *sr = srunner_create(suite());
	int failed;

	srunner_run_all(sr, CK_NORMAL);
	failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
