/*
 * cmd_batch.c - group commit: one round of a worker's command jobs.
 *
 * A round
 *   1. takes the jobs in hand, oldest first, that can go together: no
 *      two name the same id (cr->lock) or Idempotency-Key, and their lock
 *      stripes are free or held by this round already. The first job of
 *      the round waits for its stripes (holding none yet, so it cannot
 *      deadlock); the others only try, and a job whose stripe another
 *      worker holds sits the round out. Stripes are held until the
 *      transaction has ended and the cache says what is now true, so no
 *      other worker decides on what this round is changing;
 *   2. looks up Idempotency-Keys not looked up yet: a stored answer is
 *      the answer;
 *   3. decide()s each command (load, decide) into an answer, a retry on
 *      fresh state, or an append;
 *   4. appends the events of all commands with one es_append_batch()
 *      statement, where each command's append succeeds or fails on its
 *      own. With no Idempotency-Key to store that statement runs in
 *      autocommit mode and is the whole transaction: one round trip and
 *      one commit for the round. With keys: BEGIN, the appends, one
 *      INSERT of the key rows (the answers of the appends and of the
 *      rejections decided on fresh state), COMMIT;
 *   5. only after the commit, settled() caches the state the appends
 *      led to, and the answers go out. When the transaction fails, every
 *      command whose answer rode on it is answered with the error (503)
 *      instead, its cached state forgotten; when it lost a race (another
 *      process appended, a concurrent request stored the same key), those
 *      commands decide again in the next round.
 * Commands that asked to decide again, and those that sat the round out,
 * are carried over to the next round, which the pool fills up with new
 * jobs from its queue.
 */
#include "cmd_batch.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "account_repo.h"
#include "cmd_metrics.h"
#include "cmd_notify.h"
#include "cmd_routes.h"
#include "es_db.h"
#include "es_hash.h"
#include "es_http.h"
#include "es_log.h"
#include "es_append.h"

/* Decisions of a command after which its next round first waits a bit. */
#define BACKOFF_AFTER 3

/* A set of strings (ids and keys of a round), open addressing. */
struct names {
	const char **slot;
	size_t mask;
};

struct round {
	struct cmd_ctx *ctx;
	PGconn *db;
	struct cmd_request **cr; /* the round's commands, in job order */
	size_t n;
	size_t *stripes; /* held, in the order taken */
	size_t nstripes;
	unsigned char held[ACCOUNT_REPO_LOCKS];
	struct names names;
	int tx; /* a transaction is open */
};

/* The slot of `s` in the set: where it is, or the free one to put it. */
static const char **names_slot(struct names *set, const char *s)
{
	size_t i = (size_t)es_hash_str(s) & set->mask;

	while (set->slot[i] && strcmp(set->slot[i], s) != 0)
		i = (i + 1) & set->mask;
	return &set->slot[i];
}

/* Whether `cr` names an id or key that a command of the round names. */
static int clashes(struct round *r, const struct cmd_request *cr)
{
	for (int i = 0; i < 2; i++)
		if (cr->lock[i] && *names_slot(&r->names, cr->lock[i]))
			return 1;
	return cr->key[0] && *names_slot(&r->names, cr->key);
}

static void add_names(struct round *r, const struct cmd_request *cr)
{
	for (int i = 0; i < 2; i++)
		if (cr->lock[i])
			*names_slot(&r->names, cr->lock[i]) = cr->lock[i];
	/* a key equal to some id only costs a round's wait */
	if (cr->key[0])
		*names_slot(&r->names, cr->key) = cr->key;
}

/*
 * Take the stripes of `cr` that the round does not hold: waiting for
 * them when the round holds none (lower first), else only if free.
 */
static int take_stripes(struct round *r, const struct cmd_request *cr)
{
	struct account_repo *repo = r->ctx->repo;
	size_t s[2], k = 0, i, t;
	int wait = r->nstripes == 0;

	for (i = 0; i < 2; i++) {
		if (!cr->lock[i])
			continue;
		t = account_repo_stripe(cr->lock[i]);
		if (!r->held[t] && (k == 0 || s[0] != t))
			s[k++] = t;
	}
	if (k == 2 && s[1] < s[0]) {
		t = s[0];
		s[0] = s[1];
		s[1] = t;
	}
	for (i = 0; i < k; i++) {
		if (wait) {
			account_repo_lock_stripe(repo, s[i]);
		} else if (account_repo_trylock_stripe(repo, s[i]) < 0) {
			while (i-- > 0)
				account_repo_unlock_stripe(repo, s[i]);
			return -1;
		}
	}
	for (i = 0; i < k; i++) {
		r->held[s[i]] = 1;
		r->stripes[r->nstripes++] = s[i];
	}
	return 0;
}

static void release_stripes(struct round *r)
{
	while (r->nstripes > 0) {
		size_t s = r->stripes[--r->nstripes];

		r->held[s] = 0;
		account_repo_unlock_stripe(r->ctx->repo, s);
	}
}

/* A small xorshift per thread, for jitter; no need for quality. */
static unsigned int jitter(unsigned int bound)
{
	static _Thread_local unsigned long long s;

	if (!s) {
		struct timespec ts;

		clock_gettime(CLOCK_MONOTONIC, &ts);
		s = ((unsigned long long)ts.tv_nsec << 20) ^
		    (unsigned long long)(size_t)&ts ^ 0x9e3779b97f4a7c15ULL;
	}
	s ^= s << 13;
	s ^= s >> 7;
	s ^= s << 17;
	return bound ? (unsigned int)(s % bound) : 0;
}

/*
 * The oldest command in hand conflicted again and again (two processes
 * racing for one account): before the round takes any lock stripe, wait
 * up to 0.2 ms per decision so far, at most 5 ms, jittered, so that the
 * racers fall out of step and this process's other commands on the
 * account are not held up meanwhile.
 */
static void backoff(const struct cmd_request *oldest)
{
	struct timespec ts = { 0, 0 };
	int n = oldest->attempts;
	unsigned int us;

	if (n < BACKOFF_AFTER || oldest->final)
		return;
	us = (unsigned int)(n < 25 ? n : 25) * 200;
	ts.tv_nsec = (long)(50 + jitter(us)) * 1000;
	nanosleep(&ts, NULL);
}

/* COMMAND_RETRIES decisions did not do: 503, try again later. */
static void give_up(struct cmd_request *cr)
{
	struct es_error err = ES_ERROR_INIT;

	es_log(ES_LOG_WARN, "command_gave_up", "{s:s, s:s, s:i}", "request_id",
	       cr->req->id, "command", cr->command, "attempts", cr->attempts);
	es_error_set(&err, ES_EUNAVAIL, cr->steps->gave_up,
		     cr->lock[0] ? cr->lock[0] : "");
	err.retry_after = 1;
	cmd_reply_error(cr, &err);
	es_error_release(&err);
	cr->step = CMD_DONE;
}

/* Whether the answer of `cr` rides on the round's transaction. */
static int depends(const struct round *r, const struct cmd_request *cr)
{
	return cr->written ||
	       (r->tx && cr->step == CMD_DONE && cmd_idem_storable(cr));
}

/* What a transaction's failure means for the commands it carried. */
enum fate {
	RETRY, /* a lost race: decide again */
	SOLO, /* unknown: each decides again in a round of its own */
	ANSWER, /* the error is the answer (503 when unreachable) */
};

static enum fate fate_of(const struct es_error *err, size_t ncommands)
{
	if (err->code == ES_ECONFLICT)
		return RETRY;
	/*
	 * A failure that is neither a lost race nor the database going
	 * away (a trigger, a constraint, a full disk) may be one command's
	 * doing: do not let it fail the others.
	 */
	if (err->code != ES_EUNAVAIL && ncommands > 1)
		return SOLO;
	return ANSWER;
}

/* Apply `fate` to a command whose append or answer did not commit. */
static void undone(struct cmd_request *cr, const struct es_error *err,
		   enum fate fate)
{
	if (cr->written && cr->steps->settled)
		cr->steps->settled(cr, 0);
	cr->written = 0;
	switch (fate) {
	case SOLO:
		cr->solo = 1;
		cr->attempts--; /* not its fault, as far as we know */
		/* fall through */
	case RETRY:
		cr->step = CMD_AGAIN;
		break;
	case ANSWER:
		cmd_reply_error(cr, err);
		cr->step = CMD_DONE;
		break;
	}
}

/*
 * The transaction is gone (rolled back, or its commit failed): every
 * command whose answer rode on it decides again, or is answered with
 * `err` (see fate_of()).
 */
static void tx_failed(struct round *r, const struct es_error *err)
{
	enum fate fate;
	size_t i, k = 0;

	for (i = 0; i < r->n; i++)
		k += depends(r, r->cr[i]);
	fate = fate_of(err, k);
	for (i = 0; i < r->n; i++)
		if (depends(r, r->cr[i]))
			undone(r->cr[i], err, fate);
	r->tx = 0;
}

static void rollback(struct round *r)
{
	PGresult *res;

	if (PQtransactionStatus(r->db) == PQTRANS_INTRANS ||
	    PQtransactionStatus(r->db) == PQTRANS_INERROR) {
		res = PQexec(r->db, "ROLLBACK");
		PQclear(res);
	}
}

/* 3. Keys, then decisions. */
static void decide_all(struct round *r)
{
	struct cmd_request *cr;
	size_t i;

	for (i = 0; i < r->n; i++) {
		cr = r->cr[i];
		if (cr->key[0] && !cr->looked_up && !cr->final) {
			if (cmd_idem_lookup(cr, r->db) != 0) {
				cr->final =
					1; /* a stored answer, or a failure */
				cr->step = CMD_DONE;
				continue;
			}
			cr->looked_up = 1;
		}
		if (cr->attempts > 0)
			cmd_metrics_retry();
		cr->nstreams = 0;
		cr->step = cr->steps->decide(cr, r->db, cr->attempts++ > 0);
	}
}

/* 4. The appends of every command that has one, in one statement. */
static void append_all(struct round *r)
{
	struct es_error err = ES_ERROR_INIT;
	struct es_append_req *reqs;
	struct cmd_request *cr;
	enum fate fate;
	size_t i, k = 0;

	reqs = calloc(r->n, sizeof(*reqs));
	if (!reqs) {
		es_error_set(&err, ES_EINTERNAL, "out of memory");
		goto fail;
	}
	for (i = 0; i < r->n; i++) {
		cr = r->cr[i];
		if (cr->step != CMD_APPEND)
			continue;
		reqs[k].streams = cr->streams;
		reqs[k].n = cr->nstreams;
		reqs[k].err = (struct es_error)ES_ERROR_INIT;
		k++;
	}
	if (k == 0)
		goto out;
	if (es_append_batch(r->db, reqs, k, &err) < 0)
		goto fail;
	for (i = 0, k = 0; i < r->n; i++) {
		struct es_append_req *q;

		cr = r->cr[i];
		if (cr->step != CMD_APPEND)
			continue;
		q = &reqs[k++];
		if (q->ok) {
			cr->written = 1;
			cr->step = cr->steps->appended(cr, q->token, NULL);
			continue;
		}
		if (q->err.code == ES_ECONFLICT)
			cmd_metrics_conflict();
		if (cr->steps->settled)
			cr->steps->settled(cr, 0);
		cr->step = cr->steps->appended(cr, NULL, &q->err);
	}
	goto out;
fail:
	/* nothing was written */
	if (err.code == ES_ECONFLICT)
		cmd_metrics_conflict();
	for (i = 0, k = 0; i < r->n; i++)
		k += r->cr[i]->step == CMD_APPEND;
	fate = fate_of(&err, k);
	for (i = 0; i < r->n; i++) {
		cr = r->cr[i];
		if (cr->step != CMD_APPEND)
			continue;
		cr->written = 1; /* so that undone() calls settled(cr, 0) */
		undone(cr, &err, fate);
	}
	if (r->tx) {
		rollback(r);
		tx_failed(r, &err);
	}
out:
	for (i = 0; reqs && i < r->n; i++)
		es_error_release(&reqs[i].err);
	free(reqs);
	es_error_release(&err);
}

/* 4b. The key rows of the answers worth keeping, then COMMIT. */
static void finish_tx(struct round *r)
{
	struct es_error err = ES_ERROR_INIT;
	struct cmd_request **rows = NULL;
	int *taken = NULL, lost = 0;
	size_t i, m = 0;

	rows = malloc(r->n * sizeof(*rows));
	taken = calloc(r->n, sizeof(*taken));
	if (!rows || !taken) {
		es_error_set(&err, ES_EINTERNAL, "out of memory");
		goto fail;
	}
	for (i = 0; i < r->n; i++)
		if (r->cr[i]->step == CMD_DONE && cmd_idem_storable(r->cr[i]))
			rows[m++] = r->cr[i];
	if (cmd_idem_store(r->db, rows, m, taken, &err) < 0)
		goto fail;
	for (i = 0; i < m; i++) {
		if (!taken[i])
			continue;
		/* answer from what the other request stored */
		rows[i]->looked_up = 0;
		rows[i]->attempts--;
		lost = 1;
	}
	if (lost) {
		/* those whose key was taken answer from it, the others retry */
		es_error_set(&err, ES_ECONFLICT,
			     "an Idempotency-Key was taken");
		rollback(r);
		tx_failed(r, &err);
		goto out;
	}
	if (es_db_exec(r->db, "COMMIT", &err) < 0)
		goto fail;
	r->tx = 0;
	goto out;
fail:
	rollback(r);
	tx_failed(r, &err);
out:
	free(rows);
	free(taken);
	es_error_release(&err);
}

/* 5. What committed: cache it, count it, tell the readers. */
static void settle(struct round *r)
{
	struct cmd_request *cr;
	const json_t *ev;
	size_t i, s, j;
	int any = 0;

	for (i = 0; i < r->n; i++) {
		cr = r->cr[i];
		if (!cr->written)
			continue;
		if (cr->steps->settled)
			cr->steps->settled(cr, 1);
		cr->written = 0;
		cmd_metrics_append();
		for (s = 0; s < cr->nstreams; s++)
			json_array_foreach(cr->streams[s].events, j, ev)
				cmd_metrics_appended(
					json_string_value(
						json_object_get(ev, "type")),
					1);
		any = 1;
	}
	if (any)
		cmd_notify_poke(r->ctx->notify);
}

/* 1. The jobs that make the round; the others are left as CMD_AGAIN. */
static void select_jobs(struct round *r, struct cmd_job **jobs, size_t n)
{
	struct cmd_request *cr;
	size_t i;

	for (i = 0; i < n; i++) {
		cr = (struct cmd_request *)jobs[i];
		cr->step = CMD_AGAIN;
		cr->written = 0;
		if (cr->attempts >= r->ctx->retries && !cr->final) {
			give_up(cr);
			continue;
		}
		/* a command under suspicion goes alone */
		if (r->n > 0 && (cr->solo || r->cr[0]->solo))
			continue;
		if (clashes(r, cr) || take_stripes(r, cr) < 0)
			continue;
		add_names(r, cr);
		r->cr[r->n++] = cr;
	}
}

size_t cmd_batch_run(struct cmd_job **jobs, size_t n, PGconn *db, void *arg)
{
	struct round r = { .ctx = arg, .db = db };
	struct es_error err = ES_ERROR_INIT;
	struct cmd_request *cr;
	size_t i, k = 0, cap;
	int need_tx = 0;

	for (cap = 8; cap < 8 * n; cap *= 2)
		;
	r.cr = malloc(n * sizeof(*r.cr));
	r.stripes = malloc(2 * n * sizeof(*r.stripes));
	r.names.slot = calloc(cap, sizeof(*r.names.slot));
	r.names.mask = cap - 1;
	if (!r.cr || !r.stripes || !r.names.slot) {
		/* answer them all rather than spin */
		es_error_set(&err, ES_EINTERNAL, "out of memory");
		for (i = 0; i < n; i++) {
			cr = (struct cmd_request *)jobs[i];
			cmd_reply_error(cr, &err);
			cmd_send_reply(cr);
		}
		goto out;
	}
	backoff((struct cmd_request *)jobs[0]);
	select_jobs(&r, jobs, n);
	decide_all(&r);
	for (i = 0; i < r.n; i++) {
		cr = r.cr[i];
		if ((cr->step == CMD_APPEND && cr->key[0]) ||
		    (cr->step == CMD_DONE && cmd_idem_storable(cr)))
			need_tx = 1;
	}
	if (need_tx) {
		if (es_db_exec(db, "BEGIN", &err) < 0) {
			r.tx = 1;
			rollback(&r);
			tx_failed(&r, &err);
			for (i = 0; i < r.n; i++)
				if (r.cr[i]->step == CMD_APPEND)
					undone(r.cr[i], &err, ANSWER);
		} else {
			r.tx = 1;
		}
	}
	append_all(&r);
	if (r.tx)
		finish_tx(&r);
	settle(&r);
	release_stripes(&r);
	/* answer, and carry the rest over in their order */
	for (i = 0; i < n; i++) {
		cr = (struct cmd_request *)jobs[i];
		if (cr->step == CMD_DONE)
			cmd_send_reply(cr);
		else
			jobs[k++] = &cr->job;
	}
out:
	free(r.cr);
	free(r.stripes);
	free(r.names.slot);
	es_error_release(&err);
	return k;
}
