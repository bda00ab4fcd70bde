/*
 * check_round.c - the planning of a group-commit round (cmd_round.h):
 * which commands join, which stripes they take, and the fate of each
 * after the batch statement. Pure, so no database and no threads.
 */
#include <check.h>
#include <stdio.h>
#include <string.h>

#include "../../command-service/cmd_round.h"
#include "es_array.h"

#define A1 "11111111-1111-4111-8111-111111111111"
#define A2 "22222222-2222-4222-8222-222222222222"
#define A3 "33333333-3333-4333-8333-333333333333"
#define A4 "44444444-4444-4444-8444-444444444444"
#define A5 "55555555-5555-4555-8555-555555555555"
#define A6 "66666666-6666-4666-8666-666666666666"
#define A7 "77777777-7777-4777-8777-777777777777"
#define A8 "88888888-8888-4888-8888-888888888888"
#define A9 "99999999-9999-4999-8999-999999999999"
#define U  "00000000-0000-4000-8000-000000000000"

#define RETRIES 30

static struct cmd_ticket ticket(const char *a, const char *b, const char *key)
{
	struct cmd_ticket t = { .ids = { a, b }, .key = key };

	return t;
}

/*
 * Offer `t` to the round as the runner does, every stripe free: returns
 * whether it joined.
 */
static int offer(struct cmd_round *r, const struct cmd_ticket *t)
{
	size_t want[2], n;
	int wait;

	if (cmd_round_admit(r, t, RETRIES, want, &n, &wait) != CMD_ADMIT_JOIN)
		return 0;
	cmd_round_join(r, t, want, n);
	return 1;
}

/*
 * Offer t[0..n) to a new round in their order: which joined, as a string
 * of '1' (joined) and '0' (sat out).
 */
static const char *joins(const struct cmd_ticket *t, size_t n)
{
	static char out[16];
	struct cmd_round r;
	size_t i;

	ck_assert_uint_lt(n, sizeof(out));
	ck_assert_int_eq(cmd_round_init(&r, n), 0);
	for (i = 0; i < n; i++)
		out[i] = offer(&r, &t[i]) ? '1' : '0';
	out[n] = '\0';
	cmd_round_release(&r);
	return out;
}

START_TEST(commands_on_other_accounts_share_a_round)
{
	const struct cmd_ticket t[] = { ticket(A1, NULL, NULL),
					ticket(A2, NULL, NULL) };

	ck_assert_str_eq(joins(t, ARRAY_SIZE(t)), "11");
}
END_TEST

START_TEST(two_commands_on_one_account_never_share_a_round)
{
	/* either side of a transfer counts */
	const struct cmd_ticket t[] = {
		ticket(A1, NULL, NULL),
		ticket(A1, NULL, NULL),
		ticket(A2, A1, NULL),
		ticket(A3, A2, NULL),
	};

	ck_assert_str_eq(joins(t, ARRAY_SIZE(t)), "1001");
}
END_TEST

START_TEST(one_key_joins_a_round_once)
{
	const struct cmd_ticket t[] = {
		ticket(A1, NULL, "k"),
		ticket(A2, NULL, "k"),
		ticket(A3, NULL, "other"),
	};

	ck_assert_str_eq(joins(t, ARRAY_SIZE(t)), "101");
}
END_TEST

START_TEST(a_stream_id_is_a_name_like_an_account)
{
	const struct cmd_ticket t[] = {
		ticket("order-1", NULL, NULL),
		ticket("order-1", NULL, NULL),
		ticket("order-2", NULL, NULL),
	};

	ck_assert_str_eq(joins(t, ARRAY_SIZE(t)), "101");
}
END_TEST

/*
 * The round of t0380-group-commit, in job order: what joins is a
 * matter of names, not of timing.
 */
START_TEST(a_round_of_mixed_commands)
{
	struct {
		const char *name;
		struct cmd_ticket t;
		int joins;
	} jobs[] = {
		{ "dep1a", ticket(A1, NULL, NULL), 1 },
		{ "dep1b", ticket(A1, NULL, NULL), 0 },
		{ "dep2", ticket(A2, NULL, NULL), 1 },
		{ "broke", ticket(A3, NULL, NULL), 1 },
		{ "stale", ticket(A4, NULL, NULL), 1 },
		{ "nobody", ticket(U, NULL, NULL), 1 },
		{ "keyed", ticket(A5, NULL, "gc-k1"), 1 },
		{ "replay", ticket(A9, NULL, "gc-k0"), 1 },
		{ "reused", ticket(A9, NULL, "gc-k0"), 0 },
		{ "transfer", ticket(A6, A7, NULL), 1 },
		{ "raw1", ticket("gc-order-1", NULL, NULL), 1 },
		{ "raw2", ticket("gc-order-2", NULL, NULL), 1 },
		{ "raw3", ticket("gc-order-3", NULL, NULL), 1 },
		{ "take", ticket(A8, NULL, NULL), 1 },
	};
	size_t n = ARRAY_SIZE(jobs), i, joined = 0;
	struct cmd_round r;

	ck_assert_int_eq(cmd_round_init(&r, n), 0);
	for (i = 0; i < n; i++) {
		ck_assert_msg(offer(&r, &jobs[i].t) == jobs[i].joins, "%s",
			      jobs[i].name);
		joined += (size_t)jobs[i].joins;
	}
	ck_assert_uint_eq(r.n, joined);
	cmd_round_release(&r);

	/* the next round takes the ones left out */
	ck_assert_int_eq(cmd_round_init(&r, n), 0);
	for (i = 0, joined = 0; i < n; i++)
		if (!jobs[i].joins)
			joined += (size_t)offer(&r, &jobs[i].t);
	ck_assert_uint_eq(joined, 2);
	cmd_round_release(&r);
}
END_TEST

START_TEST(the_first_member_waits_the_others_only_try)
{
	struct cmd_round r;
	struct cmd_ticket a = ticket(A1, NULL, NULL),
			  b = ticket(A2, NULL, NULL);
	size_t want[2], n;
	int wait;

	ck_assert_int_eq(cmd_round_init(&r, 2), 0);
	ck_assert_int_eq(cmd_round_admit(&r, &a, RETRIES, want, &n, &wait),
			 CMD_ADMIT_JOIN);
	ck_assert_int_eq(wait, 1);
	ck_assert_uint_eq(n, 1);
	ck_assert_uint_eq(want[0], account_repo_stripe(A1));
	cmd_round_join(&r, &a, want, n);
	ck_assert_int_eq(cmd_round_admit(&r, &b, RETRIES, want, &n, &wait),
			 CMD_ADMIT_JOIN);
	ck_assert_int_eq(wait, 0);
	cmd_round_join(&r, &b, want, n);
	ck_assert_uint_eq(r.nstripes, 1 + (account_repo_stripe(A1) !=
					   account_repo_stripe(A2)));
	cmd_round_release(&r);
}
END_TEST

/* Two ids whose stripes differ, in the order of their stripes. */
static void two_stripes(const char **lo, const char **hi)
{
	static const char *const ids[] = { A1, A2, A3, A4, A5, A6, A7, A8 };
	size_t i;

	for (i = 1; i < 8; i++)
		if (account_repo_stripe(ids[i]) != account_repo_stripe(ids[0]))
			break;
	ck_assert_uint_lt(i, 8);
	*lo = ids[0];
	*hi = ids[i];
	if (account_repo_stripe(*hi) < account_repo_stripe(*lo)) {
		*lo = ids[i];
		*hi = ids[0];
	}
}

START_TEST(stripes_come_lower_first_and_once)
{
	struct cmd_round r;
	struct cmd_ticket t, same;
	const char *lo, *hi;
	char other[32], twin[32];
	size_t want[2], n;
	unsigned int i;
	int wait;

	two_stripes(&lo, &hi);
	ck_assert_int_eq(cmd_round_init(&r, 3), 0);
	/* a transfer from the higher stripe to the lower one */
	t = ticket(hi, lo, NULL);
	ck_assert_int_eq(cmd_round_admit(&r, &t, RETRIES, want, &n, &wait),
			 CMD_ADMIT_JOIN);
	ck_assert_uint_eq(n, 2);
	ck_assert_uint_lt(want[0], want[1]);
	ck_assert_uint_eq(want[0], account_repo_stripe(lo));
	cmd_round_join(&r, &t, want, n);
	/* a stripe the round holds is not taken again */
	for (i = 0;; i++) {
		snprintf(other, sizeof(other), "stream-%u", i);
		if (account_repo_stripe(other) == account_repo_stripe(lo))
			break;
	}
	same = ticket(other, NULL, NULL);
	ck_assert_int_eq(cmd_round_admit(&r, &same, RETRIES, want, &n, &wait),
			 CMD_ADMIT_JOIN);
	ck_assert_uint_eq(n, 0);
	/* nor one stripe twice */
	for (i++;; i++) {
		snprintf(twin, sizeof(twin), "stream-%u", i);
		if (account_repo_stripe(twin) == account_repo_stripe(other))
			break;
	}
	cmd_round_release(&r);
	ck_assert_int_eq(cmd_round_init(&r, 1), 0);
	same = ticket(other, twin, NULL);
	ck_assert_int_eq(cmd_round_admit(&r, &same, RETRIES, want, &n, &wait),
			 CMD_ADMIT_JOIN);
	ck_assert_uint_eq(n, 1);
	cmd_round_release(&r);
}
END_TEST

START_TEST(a_solo_command_goes_alone)
{
	struct cmd_ticket first[] = { ticket(A1, NULL, NULL),
				      ticket(A2, NULL, NULL) };
	struct cmd_ticket later[] = { ticket(A2, NULL, NULL),
				      ticket(A1, NULL, NULL),
				      ticket(A3, NULL, NULL) };

	/* first in hand: the others wait */
	first[0].solo = 1;
	ck_assert_str_eq(joins(first, ARRAY_SIZE(first)), "10");
	/* later in hand: it waits for a round of its own */
	later[1].solo = 1;
	ck_assert_str_eq(joins(later, ARRAY_SIZE(later)), "101");
}
END_TEST

START_TEST(a_locked_command_goes_alone)
{
	struct cmd_ticket first[] = { ticket(A1, A2, NULL),
				      ticket(A3, NULL, NULL) };
	struct cmd_ticket later[] = { ticket(A3, NULL, NULL),
				      ticket(A1, A2, NULL),
				      ticket(A4, NULL, NULL) };

	first[0].locked = 1;
	ck_assert_str_eq(joins(first, ARRAY_SIZE(first)), "10");
	later[1].locked = 1;
	ck_assert_str_eq(joins(later, ARRAY_SIZE(later)), "101");
}
END_TEST

START_TEST(a_contended_or_beaten_command_takes_the_locks)
{
	/* the fast path: first decision, nobody else writing */
	ck_assert(!cmd_round_serialize(0, 0));
	ck_assert(!cmd_round_serialize(CMD_SERIALIZE_AFTER - 1, 0));
	/* another process wrote its account lately */
	ck_assert(cmd_round_serialize(0, 1));
	/* it lost on fresh state too: whatever the marks say */
	ck_assert(cmd_round_serialize(CMD_SERIALIZE_AFTER, 0));
	ck_assert(cmd_round_serialize(RETRIES - 1, 0));
	/* well before COMMAND_RETRIES (t0305 runs with 3) */
	ck_assert_int_le(CMD_SERIALIZE_AFTER + 1, 3);
}
END_TEST

START_TEST(a_command_gives_up_after_its_retries)
{
	struct cmd_round r;
	struct cmd_ticket t = ticket(A1, NULL, NULL);
	size_t want[2], n;
	int wait;

	ck_assert_int_eq(cmd_round_init(&r, 1), 0);
	t.attempts = RETRIES - 1;
	ck_assert_int_eq(cmd_round_admit(&r, &t, RETRIES, want, &n, &wait),
			 CMD_ADMIT_JOIN);
	t.attempts = RETRIES;
	ck_assert_int_eq(cmd_round_admit(&r, &t, RETRIES, want, &n, &wait),
			 CMD_ADMIT_GIVE_UP);
	/* even a command that would sit the round out */
	t.solo = 1;
	ck_assert_int_eq(cmd_round_admit(&r, &t, RETRIES, want, &n, &wait),
			 CMD_ADMIT_GIVE_UP);
	cmd_round_release(&r);
}
END_TEST

START_TEST(a_rejection_on_cached_state_is_decided_again)
{
	ck_assert(cmd_round_recheck(ES_ENOTFOUND, 0));
	ck_assert(cmd_round_recheck(ES_ECONFLICT, 0));
	ck_assert(cmd_round_recheck(ES_EPRECONDITION, 0));
	ck_assert(!cmd_round_recheck(ES_EINVALID, 0));
	ck_assert(!cmd_round_recheck(ES_EUNAVAIL, 0));
	ck_assert(!cmd_round_recheck(ES_ENOTFOUND, 1));
	ck_assert(!cmd_round_recheck(ES_ECONFLICT, 1));
}
END_TEST

START_TEST(fates_after_the_batch_statement)
{
	struct cmd_ticket t = ticket(A1, NULL, NULL);

	/* a lost race: decide again */
	ck_assert_int_eq(cmd_round_fate(ES_ECONFLICT, 1), CMD_FATE_RETRY);
	ck_assert_int_eq(cmd_round_fate(ES_ECONFLICT, 5), CMD_FATE_RETRY);
	/* the database went away: the 503 is the answer */
	ck_assert_int_eq(cmd_round_fate(ES_EUNAVAIL, 5), CMD_FATE_ANSWER);
	/* an unknown failure: may be one command's doing */
	ck_assert_int_eq(cmd_round_fate(ES_EINTERNAL, 5), CMD_FATE_SOLO);
	ck_assert_int_eq(cmd_round_fate(ES_EINTERNAL, 1), CMD_FATE_ANSWER);

	t.attempts = 2;
	ck_assert_int_eq(cmd_round_undo(&t, CMD_FATE_RETRY), CMD_AGAIN);
	ck_assert_int_eq(t.attempts, 2);
	ck_assert_int_eq(t.solo, 0);
	ck_assert_int_eq(cmd_round_undo(&t, CMD_FATE_ANSWER), CMD_DONE);
	ck_assert_int_eq(cmd_round_undo(&t, CMD_FATE_SOLO), CMD_AGAIN);
	ck_assert_int_eq(t.solo, 1);
	ck_assert_int_eq(t.attempts, 1); /* not its fault */
}
END_TEST

START_TEST(backoff_only_after_repeated_conflicts)
{
	unsigned int noise;

	ck_assert_uint_eq(cmd_round_backoff_us(0, 12345), 0);
	ck_assert_uint_eq(cmd_round_backoff_us(CMD_BACKOFF_AFTER - 1, 7), 0);
	for (noise = 0; noise < 100000; noise += 997) {
		unsigned int us =
			cmd_round_backoff_us(CMD_BACKOFF_AFTER, noise);

		ck_assert_uint_ge(us, 50);
		ck_assert_uint_lt(us, 50 + CMD_BACKOFF_AFTER * 200);
		us = cmd_round_backoff_us(1000, noise);
		ck_assert_uint_lt(us, 50 + 25 * 200); /* at most 5 ms */
	}
}
END_TEST

static Suite *round_suite(void)
{
	Suite *s = suite_create("cmd_round");
	TCase *join = tcase_create("join");
	TCase *fate = tcase_create("fate");

	tcase_add_test(join, commands_on_other_accounts_share_a_round);
	tcase_add_test(join, two_commands_on_one_account_never_share_a_round);
	tcase_add_test(join, one_key_joins_a_round_once);
	tcase_add_test(join, a_stream_id_is_a_name_like_an_account);
	tcase_add_test(join, a_round_of_mixed_commands);
	tcase_add_test(join, the_first_member_waits_the_others_only_try);
	tcase_add_test(join, stripes_come_lower_first_and_once);
	tcase_add_test(join, a_solo_command_goes_alone);
	tcase_add_test(join, a_command_gives_up_after_its_retries);
	tcase_add_test(join, a_locked_command_goes_alone);
	tcase_add_test(fate, a_contended_or_beaten_command_takes_the_locks);
	suite_add_tcase(s, join);
	tcase_add_test(fate, a_rejection_on_cached_state_is_decided_again);
	tcase_add_test(fate, fates_after_the_batch_statement);
	tcase_add_test(fate, backoff_only_after_repeated_conflicts);
	suite_add_tcase(s, fate);
	return s;
}

int main(void)
{
	SRunner *sr = srunner_create(round_suite());
	int failed;

	srunner_run_all(sr, CK_NORMAL);
	failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed ? 1 : 0;
}
