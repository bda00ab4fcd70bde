/*
 * check_table.c - struct es_table: string keys found by text, hash keys
 * by hash, values kept across growth, reserve making puts safe, the walk
 * visiting every key once, a hash of 0 taken as a key like any other,
 * and removal that keeps every other key reachable.
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

/* A hash below 2^32 starts its probe at hash % cap. */
static void put_hashes(struct es_table *t, const uint64_t *h, size_t n)
{
	size_t i;

	for (i = 0; i < n; i++)
		es_table_put_hash(t, h[i], NULL)->val.idx = (size_t)h[i];
}

static void assert_only(const struct es_table *t, const uint64_t *h, size_t n,
			uint64_t gone)
{
	size_t i;

	ck_assert_uint_eq(t->n, n);
	for (i = 0; i < n; i++) {
		struct es_table_slot *s = es_table_get_hash(t, h[i]);

		ck_assert_ptr_nonnull(s);
		ck_assert_uint_eq(s->val.idx, h[i]);
	}
	ck_assert_ptr_null(es_table_get_hash(t, gone));
}

START_TEST(del_keeps_keys_that_probed_past)
{
	struct es_table t = ES_TABLE_INIT;
	/* three share home 5 (slots 5, 6, 7); 6 and 7 are pushed to 8, 9 */
	const uint64_t h[] = { 5, 5 + 64, 5 + 128, 6, 7 };
	const uint64_t rest[] = { 5 + 64, 5 + 128, 6, 7 };

	ck_assert_int_eq(es_table_reserve(&t, 8), 0);
	ck_assert_uint_eq(t.cap, 64);
	put_hashes(&t, h, 5);
	ck_assert_ptr_eq(es_table_get_hash(&t, 7), &t.v[9]);
	es_table_del(&t, es_table_get_hash(&t, 5));
	/* a cleared slot 5 would hide all four */
	assert_only(&t, rest, 4, 5);
	/* each moved back one slot, none before its home */
	ck_assert_ptr_eq(es_table_get_hash(&t, 5 + 64), &t.v[5]);
	ck_assert_ptr_eq(es_table_get_hash(&t, 6), &t.v[7]);
	ck_assert_ptr_eq(es_table_get_hash(&t, 7), &t.v[8]);
	ck_assert_uint_eq(t.v[9].hash, 0);

	/* a key at its home stays when the hole is behind it */
	es_table_del(&t, es_table_get_hash(&t, 5 + 128));
	ck_assert_ptr_eq(es_table_get_hash(&t, 6), &t.v[6]);
	ck_assert_ptr_eq(es_table_get_hash(&t, 7), &t.v[7]);
	es_table_del(&t, es_table_get_hash(&t, 6));
	ck_assert_ptr_eq(es_table_get_hash(&t, 7), &t.v[7]);
	ck_assert_uint_eq(t.n, 2);
	es_table_release(&t);
}
END_TEST

START_TEST(del_wraps_around_the_end)
{
	struct es_table t = ES_TABLE_INIT;
	/* home 63 thrice (63, 0, 1), then home 0 (pushed to 2), home 2 (3) */
	const uint64_t h[] = { 63, 63 + 64, 63 + 128, 64, 2 };
	const uint64_t rest[] = { 63 + 64, 63 + 128, 64, 2 };
	const uint64_t last[] = { 63 + 64, 2 };

	ck_assert_int_eq(es_table_reserve(&t, 8), 0);
	ck_assert_uint_eq(t.cap, 64);
	put_hashes(&t, h, 5);
	ck_assert_ptr_eq(es_table_get_hash(&t, 64), &t.v[2]);
	ck_assert_ptr_eq(es_table_get_hash(&t, 2), &t.v[3]);
	es_table_del(&t, es_table_get_hash(&t, 63));
	assert_only(&t, rest, 4, 63);
	ck_assert_ptr_eq(es_table_get_hash(&t, 63 + 64), &t.v[63]);
	ck_assert_ptr_eq(es_table_get_hash(&t, 63 + 128), &t.v[0]);
	ck_assert_ptr_eq(es_table_get_hash(&t, 64), &t.v[1]);
	ck_assert_ptr_eq(es_table_get_hash(&t, 2), &t.v[2]);
	ck_assert_uint_eq(t.v[3].hash, 0);

	/* holes at 1, then 0: nothing after them may move before its home */
	es_table_del(&t, es_table_get_hash(&t, 64));
	es_table_del(&t, es_table_get_hash(&t, 63 + 128));
	ck_assert_ptr_eq(es_table_get_hash(&t, 63 + 64), &t.v[63]);
	ck_assert_ptr_eq(es_table_get_hash(&t, 2), &t.v[2]);
	assert_only(&t, last, 2, 63 + 128);
	es_table_del(&t, es_table_get_hash(&t, 63 + 64));
	ck_assert_ptr_null(es_table_get_hash(&t, 63 + 64));
	ck_assert_ptr_eq(es_table_get_hash(&t, 2), &t.v[2]);
	ck_assert_uint_eq(t.n, 1);
	es_table_release(&t);
}
END_TEST

START_TEST(del_of_many_string_keys)
{
	static char keys[NKEYS][16];
	struct es_table t = ES_TABLE_INIT;
	struct es_table_slot *s;
	size_t cap;
	int i, round;

	for (i = 0; i < NKEYS; i++) {
		snprintf(keys[i], sizeof(keys[i]), "k%d", i);
		es_table_put(&t, keys[i], NULL)->val.num = i;
	}
	cap = t.cap;
	/* drop and put back by turns, each round leaving a different half */
	for (round = 0; round < 3; round++) {
		for (i = round % 2; i < NKEYS; i += 2)
			es_table_del(&t, es_table_get(&t, keys[i]));
		ck_assert_uint_eq(t.n, NKEYS / 2);
		for (i = 0; i < NKEYS; i++) {
			s = es_table_get(&t, keys[i]);
			if (i % 2 == round % 2) {
				ck_assert_ptr_null(s);
				continue;
			}
			ck_assert_ptr_nonnull(s);
			ck_assert_int_eq(s->val.num, i);
		}
		for (i = round % 2; i < NKEYS; i += 2)
			es_table_put(&t, keys[i], NULL)->val.num = i;
		ck_assert_uint_eq(t.n, NKEYS);
	}
	ck_assert_uint_eq(t.cap, cap); /* removal leaves no debris to grow by */
	for (i = 0; i < NKEYS; i++)
		es_table_del(&t, es_table_get(&t, keys[i]));
	ck_assert_uint_eq(t.n, 0);
	for (i = 0; i < (int)t.cap; i++)
		ck_assert_uint_eq(t.v[i].hash, 0);
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
	tcase_add_test(tc, del_keeps_keys_that_probed_past);
	tcase_add_test(tc, del_wraps_around_the_end);
	tcase_add_test(tc, del_of_many_string_keys);
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
