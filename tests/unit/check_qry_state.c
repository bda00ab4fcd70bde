/*
 * check_qry_state.c - the query service's shared state: view positions
 * and health, and read-your-writes waiters (woken when covered, expired
 * by the timer, cancelled at shutdown).
 */
#include <check.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "es_log.h"
#include "../../query-service/qry_state.h"

static const char *const names[] = { "accounts", "statement", NULL };

struct probe {
	struct qry_waiter w;
	atomic_int calls;
	atomic_int result;
	int64_t at_ms; /* when done() ran */
};

static void probe_done(struct qry_waiter *w, enum qry_wait_result r)
{
	struct probe *p = w->arg;

	p->at_ms = qry_state_clock_ms();
	atomic_store(&p->result, (int)r);
	atomic_fetch_add(&p->calls, 1);
}

static void probe_init(struct probe *p, int64_t wait_ms)
{
	memset(p, 0, sizeof(*p));
	p->w.deadline_ms = qry_state_clock_ms() + wait_ms;
	p->w.done = probe_done;
	p->w.arg = p;
	atomic_init(&p->calls, 0);
	atomic_init(&p->result, -1);
}

static void set_pos(struct qry_state *st, const char *view, const char *tok,
		    int reset)
{
	struct es_error err = ES_ERROR_INIT;
	struct es_cursor c;

	ck_assert_msg(es_cursor_parse(tok, &c, &err) == 0, "%s", err.detail);
	qry_state_set_pos(st, view, &c, NULL, 7, reset);
	es_cursor_release(&c);
}

static void sleep_ms(long ms)
{
	struct timespec ts = { ms / 1000, (ms % 1000) * 1000000 };

	nanosleep(&ts, NULL);
}

START_TEST(positions_start_at_the_beginning_of_the_log)
{
	struct qry_state st;
	char *tok;

	ck_assert_int_eq(qry_state_init(&st, names), 0);
	ck_assert_uint_eq(st.nviews, 2);
	tok = qry_state_pos_token(&st, "statement");
	ck_assert_str_eq(tok, ES_CURSOR_START);
	free(tok);
	ck_assert_ptr_null(qry_state_pos_token(&st, "nope"));
	qry_state_release(&st);
}
END_TEST

START_TEST(covers_compares_with_the_views_position)
{
	struct es_error err = ES_ERROR_INIT;
	struct qry_state st;

	ck_assert_int_eq(qry_state_init(&st, names), 0);
	set_pos(&st, "accounts", "10:12:10", 0);
	ck_assert_int_eq(qry_state_covers(&st, "accounts", "9.5", &err), 1);
	ck_assert_int_eq(qry_state_covers(&st, "accounts", "11.5", &err), 1);
	ck_assert_int_eq(qry_state_covers(&st, "accounts", "10.5", &err), 0);
	ck_assert_int_eq(qry_state_covers(&st, "accounts", "12.5", &err), 0);
	ck_assert_int_eq(qry_state_covers(&st, "accounts", "5:9:", &err), 1);
	ck_assert_int_eq(qry_state_covers(&st, "accounts", "13:13:", &err), 0);
	ck_assert_int_eq(qry_state_covers(&st, "statement", "9.5", &err), 0);
	ck_assert(!es_error_isset(&err));
	ck_assert_int_eq(qry_state_covers(&st, "accounts", "x.5", &err), -1);
	ck_assert_int_eq(err.code, ES_EMALFORMED);
	es_error_release(&err);
	ck_assert_int_eq(qry_state_covers(&st, "nope", "9.5", &err), -1);
	es_error_release(&err);
	qry_state_release(&st);
}
END_TEST

START_TEST(served_token_only_for_its_base_checkpoint)
{
	struct es_error err = ES_ERROR_INIT;
	struct qry_state st;
	struct es_cursor c;
	char *tok;

	ck_assert_int_eq(qry_state_init(&st, names), 0);
	ck_assert_ptr_null(qry_state_served_token(&st, "statement", "0:0:"));
	ck_assert_int_eq(es_cursor_parse("20:20:", &c, &err), 0);
	/* past an empty window after the checkpoint 10:12:10 */
	qry_state_set_pos(&st, "statement", &c, "10:12:10", -1, 0);
	es_cursor_release(&c);
	tok = qry_state_served_token(&st, "statement", "10:12:10");
	ck_assert_ptr_nonnull(tok);
	ck_assert_str_eq(tok, "20:20:");
	free(tok);
	{
		char *pos, *base;

		qry_state_served_pair(&st, "statement", &pos, &base);
		ck_assert_str_eq(pos, "20:20:");
		ck_assert_str_eq(base, "10:12:10");
		free(pos);
		free(base);
		qry_state_served_pair(&st, "accounts", &pos, &base);
		ck_assert_ptr_null(pos);
		ck_assert_ptr_null(base);
	}
	/* rows read at another checkpoint: that one is their position */
	ck_assert_ptr_null(qry_state_served_token(&st, "statement", "20:20:"));
	ck_assert_ptr_null(qry_state_served_token(&st, "statement", NULL));
	ck_assert_ptr_null(qry_state_served_token(&st, "accounts", "10:12:10"));
	ck_assert_ptr_null(qry_state_served_token(&st, "nope", "10:12:10"));
	/* an older cursor is ignored, and so is its base */
	ck_assert_int_eq(es_cursor_parse("15:15:", &c, &err), 0);
	qry_state_set_pos(&st, "statement", &c, "15:15:", -1, 0);
	es_cursor_release(&c);
	ck_assert_ptr_null(qry_state_served_token(&st, "statement", "15:15:"));
	/* a position without a base has none */
	set_pos(&st, "statement", "30:30:", 0);
	ck_assert_ptr_null(
		qry_state_served_token(&st, "statement", "10:12:10"));
	qry_state_release(&st);
}
END_TEST

START_TEST(an_older_position_is_ignored_unless_reset)
{
	struct qry_state st;
	char *tok;

	ck_assert_int_eq(qry_state_init(&st, names), 0);
	set_pos(&st, "accounts", "20:20:", 0);
	set_pos(&st, "accounts", "10:10:", 0);
	tok = qry_state_pos_token(&st, "accounts");
	ck_assert_str_eq(tok, "20:20:");
	free(tok);
	ck_assert_int_eq(st.views[0].applied, 7);
	ck_assert(st.views[0].loaded);
	set_pos(&st, "accounts", "10:10:", 1);
	tok = qry_state_pos_token(&st, "accounts");
	ck_assert_str_eq(tok, "10:10:");
	free(tok);
	qry_state_release(&st);
}
END_TEST

START_TEST(stop_view_records_why_and_a_reset_clears_it)
{
	struct qry_state st;

	ck_assert_int_eq(qry_state_init(&st, names), 0);
	qry_state_stop_view(&st, "statement", 42, "'amount' is not an integer");
	ck_assert(st.views[1].stopped);
	ck_assert_int_eq(st.views[1].error_position, 42);
	ck_assert_str_eq(st.views[1].error, "'amount' is not an integer");
	ck_assert(!st.views[0].stopped);
	set_pos(&st, "statement", "3:3:", 1);
	ck_assert(!st.views[1].stopped);
	ck_assert_int_eq(st.views[1].error_position, -1);
	qry_state_add_apply(&st, "statement", 0.25);
	qry_state_add_apply(&st, "statement", 0.5);
	ck_assert_int_eq(st.views[1].batches, 2);
	ck_assert(st.views[1].apply_seconds > 0.74 &&
		  st.views[1].apply_seconds < 0.76);
	qry_state_release(&st);
}
END_TEST

/* a witness snapshot parsed from `text` (the primary's) */
static struct es_snapshot witness(const char *text)
{
	struct es_snapshot s = { 0 };

	ck_assert_int_eq(es_snapshot_parse(text, &s, NULL), 0);
	return s;
}

START_TEST(a_witness_serves_once_replay_passes_it_and_never_goes_back)
{
	struct qry_state st;
	struct es_snapshot a = witness("100:105:100,103");
	struct es_snapshot b = witness("103:120:103,110");
	struct es_snapshot got = { 0 };

	ck_assert_int_eq(qry_state_init(&st, names), 0);
	/* none offered yet */
	ck_assert_int_eq(qry_state_take_done(&st, 1000, &got), 0);
	qry_state_offer_done(&st, &a, 500);
	/* the standby has not replayed the primary's WAL as of `a` */
	ck_assert_int_eq(qry_state_take_done(&st, 499, &got), 0);
	ck_assert_int_eq(qry_state_take_done(&st, 500, &got), 1);
	ck_assert(es_snapshot_equal(&got, &a));
	es_snapshot_release(&got);
	/*
	 * a newer one comes before the standby is past it: `a` still serves
	 * (a read without a witness would list what `a` saw finished
	 * again, and not cover the tokens of the reads before it)
	 */
	qry_state_offer_done(&st, &b, 900);
	ck_assert_int_eq(qry_state_take_done(&st, 600, &got), 1);
	ck_assert(es_snapshot_equal(&got, &a));
	es_snapshot_release(&got);
	ck_assert_int_eq(qry_state_take_done(&st, 900, &got), 1);
	ck_assert(es_snapshot_equal(&got, &b));
	es_snapshot_release(&got);
	/* past `b`, `a` is gone: a read with less replayed gets none */
	ck_assert_int_eq(qry_state_take_done(&st, 950, &got), 1);
	es_snapshot_release(&got);
	ck_assert_int_eq(qry_state_take_done(&st, 700, &got), 0);
	/* the standby flag */
	ck_assert_int_eq(qry_state_log_standby(&st), 0);
	qry_state_set_log_standby(&st, 1);
	ck_assert_int_eq(qry_state_log_standby(&st), 1);
	es_snapshot_release(&a);
	es_snapshot_release(&b);
	qry_state_release(&st);
}
END_TEST

START_TEST(a_covered_token_is_not_parked)
{
	struct es_error err = ES_ERROR_INIT;
	struct qry_state st;
	struct probe p;

	ck_assert_int_eq(qry_state_init(&st, names), 0);
	set_pos(&st, "accounts", "10:12:", 0);
	probe_init(&p, 1000);
	ck_assert_int_eq(qry_state_park(&st, "accounts", "11.1", &p.w, &err),
			 1);
	ck_assert_int_eq(qry_state_waiting(&st), 0);
	qry_state_release(&st);
	ck_assert_int_eq(atomic_load(&p.calls), 0);
}
END_TEST

START_TEST(a_waiter_is_woken_once_when_its_view_passes_the_token)
{
	struct es_error err = ES_ERROR_INIT;
	struct qry_state st;
	struct probe p, q;

	ck_assert_int_eq(qry_state_init(&st, names), 0);
	probe_init(&p, 10000);
	probe_init(&q, 10000);
	ck_assert_int_eq(qry_state_park(&st, "accounts", "15.3", &p.w, &err),
			 0);
	ck_assert_int_eq(qry_state_park(&st, "accounts", "30:30:", &q.w, &err),
			 0);
	ck_assert_int_eq(qry_state_waiting(&st), 2);
	/* another view, and a position not far enough: nobody wakes */
	set_pos(&st, "statement", "40:40:", 0);
	set_pos(&st, "accounts", "14:16:15", 0);
	ck_assert_int_eq(atomic_load(&p.calls), 0);
	set_pos(&st, "accounts", "16:20:", 0);
	ck_assert_int_eq(atomic_load(&p.calls), 1);
	ck_assert_int_eq(atomic_load(&p.result), QRY_WAIT_COVERED);
	ck_assert_int_eq(atomic_load(&q.calls), 0);
	ck_assert_int_eq(qry_state_waiting(&st), 1);
	set_pos(&st, "accounts", "30:31:", 0);
	ck_assert_int_eq(atomic_load(&q.calls), 1);
	ck_assert_int_eq(atomic_load(&q.result), QRY_WAIT_COVERED);
	set_pos(&st, "accounts", "40:40:", 0);
	ck_assert_int_eq(atomic_load(&p.calls), 1);
	ck_assert_int_eq(qry_state_waiting(&st), 0);
	qry_state_release(&st);
}
END_TEST

START_TEST(the_timer_expires_a_waiter_at_its_deadline)
{
	struct es_error err = ES_ERROR_INIT;
	struct qry_state st;
	struct probe p, q;
	int64_t t0 = qry_state_clock_ms();
	int i;

	ck_assert_int_eq(qry_state_init(&st, names), 0);
	probe_init(&p, 5000);
	probe_init(&q, 150);
	ck_assert_int_eq(qry_state_park(&st, "accounts", "15.3", &p.w, &err),
			 0);
	/* an earlier deadline than the timer's current one */
	ck_assert_int_eq(qry_state_park(&st, "accounts", "15.3", &q.w, &err),
			 0);
	for (i = 0; i < 300 && !atomic_load(&q.calls); i++)
		sleep_ms(10);
	ck_assert_int_eq(atomic_load(&q.calls), 1);
	ck_assert_int_eq(atomic_load(&q.result), QRY_WAIT_TIMEOUT);
	ck_assert_msg(q.at_ms - t0 >= 150 && q.at_ms - t0 < 1000,
		      "expired after %lld ms", (long long)(q.at_ms - t0));
	ck_assert_int_eq(atomic_load(&p.calls), 0);
	ck_assert_int_eq(qry_state_waiting(&st), 1);
	/* release cancels what is left */
	qry_state_release(&st);
	ck_assert_int_eq(atomic_load(&p.calls), 1);
	ck_assert_int_eq(atomic_load(&p.result), QRY_WAIT_CANCELLED);
}
END_TEST

START_TEST(cancel_answers_every_waiter_and_refuses_new_ones)
{
	struct es_error err = ES_ERROR_INIT;
	struct qry_state st;
	struct probe p[3], late;
	int i;

	ck_assert_int_eq(qry_state_init(&st, names), 0);
	for (i = 0; i < 3; i++) {
		probe_init(&p[i], 10000);
		ck_assert_int_eq(qry_state_park(&st,
						i ? "statement" : "accounts",
						"15.3", &p[i].w, &err),
				 0);
	}
	qry_state_cancel_waiters(&st);
	for (i = 0; i < 3; i++) {
		ck_assert_int_eq(atomic_load(&p[i].calls), 1);
		ck_assert_int_eq(atomic_load(&p[i].result), QRY_WAIT_CANCELLED);
	}
	probe_init(&late, 10000);
	ck_assert_int_eq(qry_state_park(&st, "accounts", "15.3", &late.w, &err),
			 -1);
	ck_assert_int_eq(err.code, ES_EUNAVAIL);
	es_error_release(&err);
	qry_state_release(&st);
	ck_assert_int_eq(atomic_load(&late.calls), 0);
}
END_TEST

START_TEST(park_refuses_malformed_tokens_and_unknown_views)
{
	struct es_error err = ES_ERROR_INIT;
	struct qry_state st;
	struct probe p;

	ck_assert_int_eq(qry_state_init(&st, names), 0);
	probe_init(&p, 1000);
	ck_assert_int_eq(qry_state_park(&st, "accounts", "1:2", &p.w, &err),
			 -1);
	ck_assert_int_eq(err.code, ES_EMALFORMED);
	es_error_release(&err);
	ck_assert_int_eq(qry_state_park(&st, "nope", "1.2", &p.w, &err), -1);
	ck_assert_int_eq(err.code, ES_EINTERNAL);
	es_error_release(&err);
	ck_assert_int_eq(qry_state_waiting(&st), 0);
	qry_state_release(&st);
	ck_assert_int_eq(atomic_load(&p.calls), 0);
}
END_TEST

/* A done() that frees its waiter, as the routes do. */
static atomic_int freed;

static void free_done(struct qry_waiter *w, enum qry_wait_result r)
{
	(void)r;
	free(w);
	atomic_fetch_add(&freed, 1);
}

START_TEST(many_waiters_are_woken_exactly_as_far_as_covered)
{
	struct es_error err = ES_ERROR_INIT;
	struct qry_state st;
	char tok[32];
	int i;

	atomic_init(&freed, 0);
	ck_assert_int_eq(qry_state_init(&st, names), 0);
	for (i = 0; i < 1000; i++) {
		struct qry_waiter *w = calloc(1, sizeof(*w));

		ck_assert_ptr_nonnull(w);
		w->deadline_ms = qry_state_clock_ms() + 60000;
		w->done = free_done;
		snprintf(tok, sizeof(tok), "%d.%d", 100 + i, i);
		ck_assert_int_eq(qry_state_park(&st, "statement", tok, w, &err),
				 0);
	}
	ck_assert_int_eq(qry_state_waiting(&st), 1000);
	/* xids 100..599 finished */
	set_pos(&st, "statement", "600:600:", 0);
	ck_assert_int_eq(atomic_load(&freed), 500);
	ck_assert_int_eq(qry_state_waiting(&st), 500);
	/* 600..1099 but 700 finished */
	set_pos(&st, "statement", "700:1100:700", 0);
	ck_assert_int_eq(atomic_load(&freed), 999);
	qry_state_release(&st);
	ck_assert_int_eq(atomic_load(&freed), 1000);
}
END_TEST

static Suite *state_suite(void)
{
	Suite *s = suite_create("qry_state");
	TCase *pos = tcase_create("positions");
	TCase *wait = tcase_create("waiters");

	tcase_add_test(pos, positions_start_at_the_beginning_of_the_log);
	tcase_add_test(pos, covers_compares_with_the_views_position);
	tcase_add_test(pos, an_older_position_is_ignored_unless_reset);
	tcase_add_test(pos, served_token_only_for_its_base_checkpoint);
	tcase_add_test(pos, stop_view_records_why_and_a_reset_clears_it);
	tcase_add_test(
		pos,
		a_witness_serves_once_replay_passes_it_and_never_goes_back);
	suite_add_tcase(s, pos);
	tcase_add_test(wait, a_covered_token_is_not_parked);
	tcase_add_test(wait,
		       a_waiter_is_woken_once_when_its_view_passes_the_token);
	tcase_add_test(wait, the_timer_expires_a_waiter_at_its_deadline);
	tcase_add_test(wait, cancel_answers_every_waiter_and_refuses_new_ones);
	tcase_add_test(wait, park_refuses_malformed_tokens_and_unknown_views);
	tcase_add_test(wait, many_waiters_are_woken_exactly_as_far_as_covered);
	suite_add_tcase(s, wait);
	return s;
}

int main(void)
{
	SRunner *sr = srunner_create(state_suite());
	int failed;

	es_log_threshold = ES_LOG_OFF;
	srunner_run_all(sr, CK_NORMAL);
	failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
