/*
 * check_table.c - struct es_table: string keys found by text, hash keys
 * by hash, values kept across growth, reserve making puts safe, the walk
 * visiting every key once, and a hash of 0 taken as a key like any other.
 */
#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "es_table.h"

#define NKEYS 20000

START_TEST(string_keys)
{
	static char keys[NKEYS][16];
	struct es_table t = ES_TABLE_INIT;
	struct es_table_slot *s;
	int i, added;

	ck_assert_ptr_null(es_table_get(&t, "k1"));
	for (i = 0; i < NKEYS; i++) {
		snprintf(keys[i], sizeof(keys[i]), "k%d", i);
		s = es_table_put(&t, keys[i], &added);
		ck_assert_ptr_nonnull(s);
		ck_assert_int_eq(added, 1);
		ck_assert_int_eq(s->val.num, 0);
		s->val.num = i * 3;
		ck_assert_uint_le(t.n * 2, t.cap); /* at most half full */
	}
	ck_assert_uint_eq(t.n, NKEYS);
	for (i = 0; i < NKEYS; i++) {
		char other[16];

		/* found by text, not by pointer */
		snprintf(other, sizeof(other), "k%d", i);
		s = es_table_get(&t, other);
		ck_assert_ptr_nonnull(s);
		ck_assert_ptr_eq(s->key, keys[i]);
		ck_assert_int_eq(s->val.num, i * 3);
	}
	ck_assert_ptr_null(es_table_get(&t, "k20000"));
	ck_assert_ptr_null(es_table_get(&t, ""));
	/* a second put finds the first */
	s = es_table_put(&t, "k7", &added);
	ck_assert_int_eq(added, 0);
	ck_assert_int_eq(s->val.num, 21);
	ck_assert_ptr_eq(s->key, keys[7]);
	ck_assert_uint_eq(t.n, NKEYS);
	es_table_release(&t);
	ck_assert_ptr_null(t.v);
	ck_assert_uint_eq(t.n, 0);
	ck_assert_ptr_null(es_table_get(&t, "k1"));
}
END_TEST

START_TEST(hash_keys)
{
	struct es_table t = ES_TABLE_INIT;
	struct es_table_slot *s;
	uint64_t h;
	int added;

	/* hashes that share their low bits, and 0 */
	for (h = 0; h < 1000; h++) {
		s = es_table_put_hash(&t, h << 40, &added);
		ck_assert_ptr_nonnull(s);
		ck_assert_int_eq(added, 1);
		ck_assert_ptr_null(s->key);
		s->val.idx = (size_t)h + 1;
	}
	for (h = 0; h < 1000; h++) {
		s = es_table_get_hash(&t, h << 40);
		ck_assert_ptr_nonnull(s);
		ck_assert_uint_eq(s->val.idx, h + 1);
	}
	ck_assert_ptr_null(es_table_get_hash(&t, 1000ULL << 40));
	s = es_table_put_hash(&t, 5ULL << 40, &added);
	ck_assert_int_eq(added, 0);
	ck_assert_uint_eq(s->val.idx, 6);
	ck_assert_uint_eq(t.n, 1000);
	es_table_release(&t);
}
END_TEST

START_TEST(string_hash_of_zero_is_not_free)
{
	ck_assert_uint_ne(es_table_hash(""), 0);
	ck_assert_uint_ne(es_table_hash("foobar"), 0);
}
END_TEST

START_TEST(reserve_then_puts_keep_their_slots)
{
	static char keys[1000][8];
	struct es_table t = ES_TABLE_INIT;
	struct es_table_slot *first;
	size_t cap;
	int i;

	ck_assert_int_eq(es_table_reserve(&t, 1000), 0);
	cap = t.cap;
	ck_assert_uint_ge(cap, 2002);
	first = es_table_put(&t, "a", NULL);
	for (i = 0; i < 998; i++) {
		snprintf(keys[i], sizeof(keys[i]), "%d", i);
		ck_assert_ptr_nonnull(es_table_put(&t, keys[i], NULL));
	}
	ck_assert_uint_eq(t.cap, cap); /* no growth: slots stayed put */
	ck_assert_ptr_eq(es_table_get(&t, "a"), first);
	ck_assert_int_eq(es_table_reserve(&t, 0), 0);
	ck_assert_uint_eq(t.cap, cap);
	es_table_release(&t);
}
END_TEST

START_TEST(walk_visits_each_key_once)
{
	static char keys[500][8];
	static int seen[500];
	struct es_table t = ES_TABLE_INIT;
	struct es_table_slot *s;
	size_t i = 0, n = 0;
	int k;

	ck_assert_ptr_null(es_table_next(&t, &i));
	for (k = 0; k < 500; k++) {
		snprintf(keys[k], sizeof(keys[k]), "%d", k);
		es_table_put(&t, keys[k], NULL)->val.idx = (size_t)k;
	}
	i = 0;
	while ((s = es_table_next(&t, &i))) {
		ck_assert_int_eq(seen[s->val.idx]++, 0);
		ck_assert_str_eq(s->key, keys[s->val.idx]);
		n++;
	}
	ck_assert_uint_eq(n, 500);
	es_table_release(&t);
}
END_TEST

static Suite *table_suite(void)
{
	Suite *s = suite_create("table");
	TCase *tc = tcase_create("table");

	tcase_add_test(tc, string_keys);
	tcase_add_test(tc, hash_keys);
	tcase_add_test(tc, string_hash_of_zero_is_not_free);
	tcase_add_test(tc, reserve_then_puts_keep_their_slots);
	tcase_add_test(tc, walk_visits_each_key_once);
	suite_add_tcase(s, tc);
	return s;
}

int main(void)
{
	SRunner *sr = srunner_create(table_suite());
	int failed;

	srunner_run_all(sr, CK_NORMAL);
	failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
