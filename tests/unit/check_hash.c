/*
 * check_hash.c - es_hash_str() is FNV-1a 64 (the published test vectors),
 * reads bytes as unsigned and stops at the NUL; es_hash_add() continues
 * a hash where it left off.
 */
#include <check.h>
#include <stdlib.h>

#include "es_hash.h"

START_TEST(published_vectors)
{
	ck_assert_uint_eq(es_hash_str(""), 0xcbf29ce484222325ULL);
	ck_assert_uint_eq(es_hash_str("a"), 0xaf63dc4c8601ec8cULL);
	ck_assert_uint_eq(es_hash_str("foobar"), 0x85944171f73967e8ULL);
}
END_TEST

START_TEST(high_bytes_are_unsigned)
{
	/* 0xff xor'ed as 255, not as -1 sign-extended */
	uint64_t want = (0xcbf29ce484222325ULL ^ 0xffULL) * 1099511628211ULL;

	ck_assert_uint_eq(es_hash_str("\xff"), want);
}
END_TEST

START_TEST(add_continues_the_hash)
{
	ck_assert_uint_eq(es_hash_add(ES_HASH_INIT, "foobar"),
			  es_hash_str("foobar"));
	ck_assert_uint_eq(es_hash_add(es_hash_str("foo"), "bar"),
			  es_hash_str("foobar"));
	ck_assert_uint_eq(es_hash_add(12345, ""), 12345);
}
END_TEST

START_TEST(stops_at_the_nul)
{
	const char two[] = "ab\0cd";

	ck_assert_uint_eq(es_hash_str(two), es_hash_str("ab"));
	ck_assert_uint_ne(es_hash_str("ab"), es_hash_str("ba"));
}
END_TEST

static Suite *hash_suite(void)
{
	Suite *s = suite_create("hash");
	TCase *tc = tcase_create("fnv1a");

	tcase_add_test(tc, published_vectors);
	tcase_add_test(tc, high_bytes_are_unsigned);
	tcase_add_test(tc, add_continues_the_hash);
	tcase_add_test(tc, stops_at_the_nul);
	suite_add_tcase(s, tc);
	return s;
}

int main(void)
{
	SRunner *sr = srunner_create(hash_suite());
	int failed;

	srunner_run_all(sr, CK_NORMAL);
	failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
