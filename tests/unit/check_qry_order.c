/*
 * check_qry_order.c - the reorder window of rebuilds: the heap gives
 * entries back lowest position first whatever the order they came in,
 * and the guard lets an event of a stream through only above the last
 * position folded for that stream.
 */
#include <check.h>
#include <stdio.h>
#include <stdlib.h>

#include "../../query-service/qry_order.h"

START_TEST(heap_pops_in_position_order)
{
	struct qry_order_heap h = QRY_ORDER_HEAP_INIT;
	struct qry_order_entry e;
	long long last = -1, n = 0;
	unsigned seed = 12345;
	int i;

	/* mostly rising, some far behind, some far ahead, duplicates */
	for (i = 0; i < 100000; i++) {
		long long p = i;

		seed = seed * 1103515245 + 12345;
		if (seed % 7 == 0)
			p -= (long long)(seed % 5000);
		else if (seed % 11 == 0)
			p += (long long)(seed % 100000);
		ck_assert_int_eq(qry_order_push(&h, p, (void *)(size_t)(p + 1)),
				 0);
		/* interleave pops, as a window does */
		if (h.n > 2000) {
			ck_assert_int_eq(qry_order_pop(&h, &e), 1);
			/* nothing left below what came out */
			ck_assert_int_le(e.position, h.v[0].position);
			n++;
		}
	}
	ck_assert_uint_eq(h.n, 100000 - (size_t)n);
	/* from here on the order is total: everything left comes sorted */
	while (qry_order_pop(&h, &e)) {
		ck_assert_int_ge(e.position, last);
		ck_assert_ptr_eq(e.item, (void *)(size_t)(e.position + 1));
		last = e.position;
		n++;
	}
	ck_assert_int_eq(n, 100000);
	ck_assert_int_eq(qry_order_pop(&h, &e), 0);
	qry_order_heap_release(&h);
}
END_TEST

START_TEST(heap_sorts_what_it_holds)
{
	struct qry_order_heap h = QRY_ORDER_HEAP_INIT;
	struct qry_order_entry e;
	const long long in[] = { 5, 3, 9, 1, 3, 8, 2, 7, 7, 0, 6, 4 };
	const long long out[] = { 0, 1, 2, 3, 3, 4, 5, 6, 7, 7, 8, 9 };
	size_t i;

	for (i = 0; i < sizeof(in) / sizeof(in[0]); i++)
		ck_assert_int_eq(qry_order_push(&h, in[i], NULL), 0);
	for (i = 0; i < sizeof(out) / sizeof(out[0]); i++) {
		ck_assert_int_eq(qry_order_pop(&h, &e), 1);
		ck_assert_int_eq(e.position, out[i]);
	}
	ck_assert_int_eq(qry_order_pop(&h, &e), 0);
	qry_order_heap_release(&h);
}
END_TEST

START_TEST(guard_refuses_an_event_behind_its_stream)
{
	struct qry_order_guard g = QRY_ORDER_GUARD_INIT;

	ck_assert_int_eq(qry_order_advance(&g, "account-a", 10), 1);
	ck_assert_int_eq(qry_order_advance(&g, "account-b", 5), 1);
	/* late, but nothing later of its own stream was folded */
	ck_assert_int_eq(qry_order_advance(&g, "account-c", 1), 1);
	ck_assert_int_eq(qry_order_advance(&g, "account-b", 7), 1);
	/* behind account-a's 10, and the same position again */
	ck_assert_int_eq(qry_order_advance(&g, "account-a", 9), 0);
	ck_assert_int_eq(qry_order_advance(&g, "account-a", 10), 0);
	ck_assert_int_eq(qry_order_advance(&g, "account-a", 11), 1);
	ck_assert_uint_eq(qry_order_streams(&g), 3);
	qry_order_guard_release(&g);
	ck_assert_uint_eq(qry_order_streams(&g), 0);
}
END_TEST

START_TEST(guard_keeps_many_streams_apart)
{
	struct qry_order_guard g = QRY_ORDER_GUARD_INIT;
	char id[64];
	int i;

	/* enough streams to grow the table several times */
	for (i = 0; i < 50000; i++) {
		snprintf(id, sizeof(id), "account-%08d", i);
		ck_assert_int_eq(qry_order_advance(&g, id, 100000 - i), 1);
	}
	ck_assert_uint_eq(qry_order_streams(&g), 50000);
	for (i = 0; i < 50000; i++) {
		snprintf(id, sizeof(id), "account-%08d", i);
		ck_assert_int_eq(qry_order_advance(&g, id, 100000 - i), 0);
		ck_assert_int_eq(qry_order_advance(&g, id, 200000 + i), 1);
	}
	ck_assert_uint_eq(qry_order_streams(&g), 50000);
	qry_order_guard_release(&g);
}
END_TEST

static Suite *suite(void)
{
	Suite *s = suite_create("qry_order");
	TCase *tc = tcase_create("order");

	tcase_add_test(tc, heap_pops_in_position_order);
	tcase_add_test(tc, heap_sorts_what_it_holds);
	tcase_add_test(tc, guard_refuses_an_event_behind_its_stream);
	tcase_add_test(tc, guard_keeps_many_streams_apart);
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
