/*
 * check_account_repo.c - the account cache and the lock stripes, without
 * a database (cache hits never touch the connection).
 */
#include <check.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>

#include "../../command-service/account_repo.h"
#include "es_hash.h"
#include "es_log.h"

static void make_id(char out[37], unsigned int n)
{
	snprintf(out, 37, "%08x-0000-4000-8000-%012x", n, n * 7919u);
}

static struct account opened(const char *id, long long version,
			     long long balance)
{
	struct account acc;

	account_init(&acc, id);
	acc.status = ACCOUNT_OPEN;
	acc.version = version;
	acc.balance = balance;
	acc.overdraft_limit = 50;
	memcpy(acc.currency, "EUR", 4);
	snprintf(acc.owner, sizeof(acc.owner), "Ann");
	return acc;
}

/*
 * Whether the cache holds `id`: a load without a database (NULL) only
 * succeeds from the cache.
 */
static int cached(struct account_repo *repo, const char *id)
{
	struct es_error err = ES_ERROR_INIT;
	struct account acc;
	int from_db = -1, hit;

	hit = account_repo_load(repo, NULL, id, 0, &acc, &from_db, &err) == 0;
	es_error_release(&err);
	return hit && from_db == 0;
}

START_TEST(stored_state_comes_back_from_the_cache)
{
	struct account_repo *repo = account_repo_new(1000);
	struct es_error err = ES_ERROR_INIT;
	struct account in, out;
	char id[37];
	int from_db = -1;

	ck_assert_ptr_nonnull(repo);
	make_id(id, 1);
	in = opened(id, 7, 1234);
	account_repo_store(repo, &in);
	ck_assert_int_eq(
		account_repo_load(repo, NULL, id, 0, &out, &from_db, &err), 0);
	ck_assert_int_eq(from_db, 0);
	ck_assert_str_eq(out.id, id);
	ck_assert_str_eq(out.stream_id, in.stream_id);
	ck_assert_int_eq(out.status, ACCOUNT_OPEN);
	ck_assert_int_eq(out.version, 7);
	ck_assert_int_eq(out.balance, 1234);
	ck_assert_int_eq(out.overdraft_limit, 50);
	ck_assert_str_eq(out.currency, "EUR");
	/* the owner is not kept: no rule needs it */
	ck_assert_str_eq(out.owner, "");

	/* a newer state replaces the old one */
	in = opened(id, 8, 1000);
	in.status = ACCOUNT_CLOSED;
	account_repo_store(repo, &in);
	account_repo_load(repo, NULL, id, 0, &out, &from_db, &err);
	ck_assert_int_eq(out.version, 8);
	ck_assert_int_eq(out.status, ACCOUNT_CLOSED);
	ck_assert(cached(repo, id));
	account_repo_free(repo);
}
END_TEST

START_TEST(forget_and_absent_accounts_leave_no_entry)
{
	struct account_repo *repo = account_repo_new(1000);
	struct account acc;
	char id[37];

	make_id(id, 2);
	acc = opened(id, 3, 0);
	account_repo_store(repo, &acc);
	ck_assert(cached(repo, id));
	account_repo_forget(repo, id);
	ck_assert(!cached(repo, id));
	account_repo_forget(repo, id); /* twice is fine */

	/* an account without events is never cached */
	account_init(&acc, id);
	account_repo_store(repo, &acc);
	ck_assert(!cached(repo, id));
	acc = opened(id, 1, 0);
	account_repo_store(repo, &acc);
	account_init(&acc, id);
	account_repo_store(repo, &acc);
	ck_assert(!cached(repo, id));
	account_repo_free(repo);
}
END_TEST

START_TEST(the_cache_stays_bounded)
{
	struct account_repo *repo = account_repo_new(1000);
	struct es_error err = ES_ERROR_INIT;
	struct account acc, out;
	unsigned int i, n;
	char id[37];
	int from_db;

	for (i = 0; i < 20000; i++) {
		make_id(id, i);
		acc = opened(id, i + 1, i);
		account_repo_store(repo, &acc);
	}
	/* the last one stored is there */
	ck_assert_int_eq(
		account_repo_load(repo, NULL, id, 0, &out, &from_db, &err), 0);
	ck_assert_int_eq(out.version, 20000);
	/* 1000 spread over the stripes, each rounded up */
	for (i = 0, n = 0; i < 20000; i++) {
		make_id(id, i);
		n += cached(repo, id);
	}
	ck_assert_uint_le(n, 1000 + ACCOUNT_REPO_STRIPES);
	ck_assert_uint_ge(n, 1000);
	account_repo_free(repo);
}
END_TEST

/* `n` ids (from `from` on) that fall into one cache shard. */
static unsigned int same_shard(char ids[][37], unsigned int n,
			       unsigned int from)
{
	unsigned int i, k = 0;
	uint64_t shard = 0;

	for (i = from; k < n; i++) {
		make_id(ids[k], i);
		if (k == 0)
			shard = es_hash_str(ids[0]) % ACCOUNT_REPO_STRIPES;
		if (es_hash_str(ids[k]) % ACCOUNT_REPO_STRIPES == shard)
			k++;
	}
	return i;
}

START_TEST(a_full_shard_evicts_one_entry_per_new_account)
{
	/* 4 per shard: 3 * STRIPES / STRIPES + 1 */
	struct account_repo *repo = account_repo_new(3 * ACCOUNT_REPO_STRIPES);
	char ids[12][37], other[37];
	struct account acc;
	unsigned int i, k, n, next;

	next = same_shard(ids, 12, 100);
	do
		make_id(other, next++);
	while (es_hash_str(other) % ACCOUNT_REPO_STRIPES ==
	       es_hash_str(ids[0]) % ACCOUNT_REPO_STRIPES);
	acc = opened(other, 1, 0);
	account_repo_store(repo, &acc);
	for (i = 0; i < 4; i++) {
		acc = opened(ids[i], 1, 0);
		account_repo_store(repo, &acc);
	}
	for (i = 0; i < 4; i++)
		ck_assert(cached(repo, ids[i]));
	/* storing one that is there evicts nothing */
	acc = opened(ids[2], 2, 5);
	account_repo_store(repo, &acc);
	for (i = 0; i < 4; i++)
		ck_assert(cached(repo, ids[i]));
	/* each new one takes the place of exactly one, in its shard only */
	for (k = 4; k < 12; k++) {
		acc = opened(ids[k], 1, 0);
		account_repo_store(repo, &acc);
		ck_assert(cached(repo, ids[k]));
		for (i = 0, n = 0; i <= k; i++)
			n += cached(repo, ids[i]);
		ck_assert_uint_eq(n, 4);
		ck_assert(cached(repo, other));
	}
	/* a forgotten one leaves room: the next store evicts nothing */
	for (i = 0; !cached(repo, ids[i]); i++)
		;
	account_repo_forget(repo, ids[i]);
	acc = opened(ids[i], 3, 0);
	account_repo_store(repo, &acc);
	for (i = 0, n = 0; i < 12; i++)
		n += cached(repo, ids[i]);
	ck_assert_uint_eq(n, 4);
	account_repo_free(repo);
}
END_TEST

/*
 * Hold the stripes of `a` and `b` (b may be NULL or share a's stripe) as
 * a round takes a command's stripes while holding none: lower first.
 */
static void lock_pair(struct account_repo *repo, const char *a, const char *b,
		      int lock)
{
	size_t x = account_repo_stripe(a), y = b ? account_repo_stripe(b) : x;
	size_t lo = x < y ? x : y, hi = x < y ? y : x;

	if (lock) {
		account_repo_lock_stripe(repo, lo);
		if (hi != lo)
			account_repo_lock_stripe(repo, hi);
	} else {
		if (hi != lo)
			account_repo_unlock_stripe(repo, hi);
		account_repo_unlock_stripe(repo, lo);
	}
}

struct crossing {
	struct account_repo *repo;
	const char *a, *b;
	long *counter;
};

static void *cross(void *arg)
{
	struct crossing *c = arg;
	int i;

	for (i = 0; i < 20000; i++) {
		lock_pair(c->repo, c->a, c->b, 1);
		++*c->counter; /* a data race if the locks failed */
		lock_pair(c->repo, c->a, c->b, 0);
	}
	return NULL;
}

START_TEST(crossing_locks_do_not_deadlock)
{
	struct account_repo *repo = account_repo_new(10);
	char a[37], b[37];
	long counter = 0;
	struct crossing ab, ba, aa;
	pthread_t t1, t2, t3;

	make_id(a, 10);
	make_id(b, 11);
	ab = (struct crossing){ repo, a, b, &counter };
	ba = (struct crossing){ repo, b, a, &counter };
	aa = (struct crossing){ repo, a, a, &counter };
	pthread_create(&t1, NULL, cross, &ab);
	pthread_create(&t2, NULL, cross, &ba);
	pthread_create(&t3, NULL, cross, &aa);
	pthread_join(t1, NULL);
	pthread_join(t2, NULL);
	pthread_join(t3, NULL);
	ck_assert_int_eq(counter, 60000);
	/* one account, or b NULL: one stripe */
	lock_pair(repo, a, NULL, 1);
	ck_assert_int_eq(
		account_repo_trylock_stripe(repo, account_repo_stripe(a)), -1);
	lock_pair(repo, a, NULL, 0);
	ck_assert_int_eq(
		account_repo_trylock_stripe(repo, account_repo_stripe(a)), 0);
	account_repo_unlock_stripe(repo, account_repo_stripe(a));
	account_repo_free(repo);
}
END_TEST

static Suite *repo_suite(void)
{
	Suite *s = suite_create("account_repo");
	TCase *tc = tcase_create("cache");

	tcase_add_test(tc, stored_state_comes_back_from_the_cache);
	tcase_add_test(tc, forget_and_absent_accounts_leave_no_entry);
	tcase_add_test(tc, the_cache_stays_bounded);
	tcase_add_test(tc, a_full_shard_evicts_one_entry_per_new_account);
	tcase_add_test(tc, crossing_locks_do_not_deadlock);
	tcase_set_timeout(tc, 60);
	suite_add_tcase(s, tc);
	return s;
}

int main(void)
{
	SRunner *sr = srunner_create(repo_suite());
	int failed;

	es_log_set_level("off");
	srunner_run_all(sr, CK_NORMAL);
	failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed ? 1 : 0;
}
