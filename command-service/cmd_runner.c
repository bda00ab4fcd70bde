/*
 * cmd_runner.c - load, decide, append, settle and reply for every
 * command, in group-commit rounds (the steps are in cmd_runner.h). The
 * planning is cmd_round.c's; this file does the I/O it plans: the lock
 * stripes, the loads, the batch statement, the key rows, the answers.
 */
#include "cmd_runner.h"

#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "account_repo.h"
#include "account_state.h"
#include "cmd_idem.h"
#include "cmd_kinds.h"
#include "cmd_metrics.h"
#include "cmd_notify.h"
#include "cmd_outcome.h"
#include "cmd_request.h"
#include "cmd_round.h"
#include "es_db.h"
#include "es_http.h"
#include "es_log.h"
#include "es_append.h"
#include "es_buf.h"
#include "es_event.h"
#include "es_token.h"

/* One round on a worker. */
struct round {
	struct cmd_ctx *ctx;
	PGconn *db;
	struct cmd_round plan;
	struct cmd_request **cr; /* the members, in job order */
	size_t n;
	int tx; /* a transaction is open */
	/*
	 * Its id, once a fresh append told; else 0. Not from a replay (a raw
	 * append whose every event names an event id stored before): that
	 * answers with the earlier transaction's id and position, whose
	 * event is another command's.
	 */
	unsigned long long xid;
	long long pos; /* a position it appended at, with xid */
	char command_id[37]; /* the command whose event is at pos */
};

/* ---- the context ---- */

int cmd_ctx_init(struct cmd_ctx *ctx, struct es_error *err)
{
	ctx->repo = account_repo_new(CMD_CACHE_MAX);
	ctx->contended = calloc(ACCOUNT_REPO_LOCKS, sizeof(*ctx->contended));
	if (!ctx->repo || !ctx->contended) {
		cmd_ctx_release(ctx);
		return es_error_set(err, ES_EINTERNAL, "out of memory");
	}
	return 0;
}

void cmd_ctx_release(struct cmd_ctx *ctx)
{
	account_repo_free(ctx->repo);
	ctx->repo = NULL;
	free(ctx->contended);
	ctx->contended = NULL;
}

int cmd_runner_prepare(PGconn *db, void *arg, struct es_error *err)
{
	(void)arg;
	if (account_repo_prepare(db, err) < 0 || cmd_idem_prepare(db, err) < 0)
		return -1;
	return 0;
}

/* ---- submitting ---- */

static void job_reject(struct cmd_job *job, const struct es_error *err)
{
	struct cmd_request *cr = (struct cmd_request *)job;

	cmd_reply_error(cr, err);
	cmd_request_send(cr);
}

/*
 * A worker takes the job: only while its request still waits for the
 * answer (the shutdown may have answered it 503 meanwhile).
 */
static int job_take(struct cmd_job *job)
{
	return es_http_take(((struct cmd_request *)job)->req);
}

void cmd_runner_submit(struct cmd_request *cr)
{
	struct es_request *req = cr->req;
	struct cmd_ctx *ctx = req->ctx;
	struct es_error err = ES_ERROR_INIT;
	const char *ids[2] = { NULL, NULL };

	if (!ctx || !ctx->repo || !ctx->pool) {
		es_error_set(&err, ES_EINTERNAL,
			     "the command pipeline is not set up");
		cmd_request_fail(req, cr, &err);
		es_error_release(&err);
		return;
	}
	cr->load = cr->kind->streams(&cr->cmd, ids);
	cr->ticket.ids[0] = ids[0];
	cr->ticket.ids[1] = ids[1];
	cr->ticket.claim = cr->cmd.claim[0] ? cr->cmd.claim : NULL;
	cr->ticket.key = cr->key[0] ? cr->key : NULL;
	/* no run(): the pool runs commands through cmd_runner_run() */
	cr->job.reject = job_reject;
	cr->job.take = job_take;
	es_http_suspend(req);
	if (cmd_pool_submit(ctx->pool, &cr->job, &err) < 0) {
		cmd_reply_error(cr, &err);
		cmd_request_send(cr); /* resumes */
	}
	es_error_release(&err);
}

/* ---- 1. who joins ---- */

/* Take `want` (lower first): waiting, or only if all are free. */
static int take_stripes(struct round *r, const size_t *want, size_t n, int wait)
{
	struct account_repo *repo = r->ctx->repo;

	for (size_t i = 0; i < n; i++) {
		if (wait) {
			account_repo_lock_stripe(repo, want[i]);
		} else if (account_repo_trylock_stripe(repo, want[i]) < 0) {
			while (i-- > 0)
				account_repo_unlock_stripe(repo, want[i]);
			return -1;
		}
	}
	return 0;
}

static void release_stripes(struct round *r)
{
	for (size_t i = 0; i < r->plan.nstripes; i++)
		account_repo_unlock_stripe(r->ctx->repo, r->plan.stripes[i]);
	r->plan.nstripes = 0;
}

/* A small xorshift per thread, for jitter; no need for quality. */
static unsigned int noise(void)
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
	return (unsigned int)s;
}

/*
 * The oldest command in hand conflicted again and again: wait a bit
 * before the round takes any stripe (cmd_round_backoff_us()).
 */
static void backoff(const struct cmd_request *oldest)
{
	unsigned int us =
		cmd_round_backoff_us(oldest->ticket.attempts, noise());
	struct timespec ts = { 0, (long)us * 1000 };

	if (us > 0)
		nanosleep(&ts, NULL);
}

/* COMMAND_RETRIES decisions did not do: 503, try again later. */
static void give_up(struct cmd_request *cr)
{
	struct es_error err = ES_ERROR_INIT;
	const char *id = cr->ticket.ids[0];

	es_log(ES_LOG_WARN, "command_gave_up", "{s:s, s:s, s:i}", "request_id",
	       cr->req->id, "command", cr->kind->name, "attempts",
	       cr->ticket.attempts);
	es_error_set(&err, ES_EUNAVAIL, cr->kind->gave_up, id ? id : "");
	err.retry_after = 1;
	cmd_reply_error(cr, &err);
	es_error_release(&err);
	cr->step = CMD_DONE;
}

/* Milliseconds on the monotonic clock. */
static long long now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* Another process wrote an id of `t` lately (cmd_round_serialize()). */
static int contended(const struct round *r, const struct cmd_ticket *t)
{
	long long until = 0, v;

	for (int i = 0; i < 2; i++) {
		if (!t->ids[i])
			continue;
		v = atomic_load_explicit(
			&r->ctx->contended[account_repo_stripe(t->ids[i])],
			memory_order_relaxed);
		if (v > until)
			until = v;
	}
	/* the clock only when some stripe was ever marked */
	return until != 0 && until > now_ms();
}

/* Another process wrote `id`: mark it contended for a while. */
static void contend(const struct round *r, const char *id)
{
	atomic_store_explicit(&r->ctx->contended[account_repo_stripe(id)],
			      now_ms() + CMD_CONTENDED_MS,
			      memory_order_relaxed);
}

static void contend_all(const struct round *r, const struct cmd_ticket *t)
{
	for (int i = 0; i < 2; i++)
		if (t->ids[i])
			contend(r, t->ids[i]);
}

/* The jobs that make the round; the others are left as CMD_AGAIN. */
static void select_jobs(struct round *r, struct cmd_job **jobs, size_t n)
{
	struct cmd_request *cr;
	size_t want[2], nwant;
	int wait;

	for (size_t i = 0; i < n; i++) {
		cr = (struct cmd_request *)jobs[i];
		cr->step = CMD_AGAIN;
		cr->written = 0;
		cr->ticket.locked = cmd_round_serialize(
			cr->ticket.attempts, contended(r, &cr->ticket));
		switch (cmd_round_admit(&r->plan, &cr->ticket, r->ctx->retries,
					want, &nwant, &wait)) {
		case CMD_ADMIT_GIVE_UP:
			give_up(cr);
			continue;
		case CMD_ADMIT_SKIP:
			continue;
		case CMD_ADMIT_JOIN:
			break;
		}
		if (take_stripes(r, want, nwant, wait) < 0)
			continue;
		cmd_round_join(&r->plan, &cr->ticket, want, nwant);
		r->cr[r->n++] = cr;
	}
}

static void rollback(struct round *r);

/*
 * The statement that opens the round's transaction and takes the stream
 * locks of `cr`'s streams exclusive, ascending and distinct, as
 * migrations/0014_append_stream_locks.sql says; NULL when out of memory.
 * ownership: caller frees.
 */
static char *lock_sql(PGconn *db, const struct cmd_request *cr)
{
	/* a raw append names its stream, the others an account */
	const char *prefix = cr->load == CMD_LOAD_NONE ? "" : ES_ACCOUNT_PREFIX;
	struct es_buf name = ES_BUF_INIT, sql = ES_BUF_INIT;
	char *lit;

	es_buf_addf(&sql,
		    "BEGIN; SELECT pg_advisory_xact_lock(%d, q.k) FROM"
		    " (SELECT DISTINCT hashtext(s) AS k FROM unnest(ARRAY[",
		    ES_STREAM_LOCK_CLASS);
	for (int i = 0; i < 2 && cr->ticket.ids[i]; i++) {
		es_buf_reset(&name);
		es_buf_adds(&name, prefix);
		es_buf_adds(&name, cr->ticket.ids[i]);
		lit = name.failed ? NULL
				  : PQescapeLiteral(db, name.s, name.len);
		if (!lit) {
			sql.failed = true;
			break;
		}
		if (i > 0)
			es_buf_adds(&sql, ", ");
		es_buf_adds(&sql, lit);
		PQfreemem(lit);
	}
	es_buf_adds(&sql, "]::text[]) s ORDER BY 1) q");
	es_buf_release(&name);
	return es_buf_detach(&sql, NULL);
}

/*
 * A round under the locks (its one member is locked): open its
 * transaction and take the stream locks of the member's streams, in one
 * round trip. On failure the member decides again or answers, as
 * cmd_round_fate() says, and the round has no member left.
 */
static void lock_ids(struct round *r)
{
	struct es_error err = ES_ERROR_INIT;
	struct cmd_request *cr = r->cr[0];
	PGresult *res = NULL;
	char *sql;

	if (!cr->ticket.ids[0])
		return;
	sql = lock_sql(r->db, cr);
	if (sql)
		res = PQexec(r->db, sql);
	free(sql);
	if (PQresultStatus(res) == PGRES_TUPLES_OK) {
		PQclear(res);
		r->tx = 1;
		return;
	}
	if (!sql)
		es_error_set(&err, ES_EINTERNAL, "out of memory");
	else
		es_db_error(r->db, res, &err);
	PQclear(res);
	rollback(r);
	cr->ticket.attempts++; /* a decision's worth: the loop is bounded */
	cr->step = cmd_round_undo(&cr->ticket, cmd_round_fate(err.code, 1));
	if (cr->step == CMD_DONE)
		cmd_reply_error(cr, &err);
	r->n = 0;
	es_error_release(&err);
}

/* ---- 2. and 3. keys, loads and decisions ---- */

/* Answer `cr` with `err`. */
static enum cmd_step answer_error(struct cmd_request *cr,
				  const struct es_error *err)
{
	cmd_reply_error(cr, err);
	return CMD_DONE;
}

/* Whether the stream `id` has events. */
static int written(PGconn *db, const char *id, int *yes, struct es_error *err)
{
	PGresult *res = PQexecParams(
		db, "SELECT 1 FROM events WHERE stream_id = $1 LIMIT 1", 1,
		NULL, &id, NULL, NULL, 0);
	int ret = 0;

	if (PQresultStatus(res) != PGRES_TUPLES_OK)
		ret = es_db_error(db, res, err);
	else
		*yes = PQntuples(res) > 0;
	PQclear(res);
	return ret;
}

/*
 * Load account ids[i] of `cr`, from the cache unless `fresh`. Under the
 * locks (always fresh), first what the cache holds: the database ahead
 * of it means that another process wrote the account (contend()).
 */
static int load_account(struct round *r, struct cmd_request *cr, int i,
			int fresh, int *from_db, struct es_error *err)
{
	struct account_repo *repo = r->ctx->repo;
	const char *id = cr->ticket.ids[i];
	struct account *acc = &cr->acc[i];
	long long cached;

	if (!cr->ticket.locked)
		return account_repo_load(repo, r->db, id, fresh, acc, from_db,
					 err);
	/* a miss loads from the database: fresh already */
	if (account_repo_load(repo, r->db, id, 0, acc, from_db, err) < 0)
		return -1;
	if (*from_db)
		return 0;
	cached = acc->version;
	if (account_repo_load(repo, r->db, id, 1, acc, from_db, err) < 0)
		return -1;
	if (acc->version != cached)
		contend(r, id);
	return 0;
}

/*
 * Load the state of the command's ids, and with `fresh` whether its
 * claim is written (else it is taken to be free: a stale guess costs a
 * conflict); *fresh_out: all from the db.
 */
static int load(struct round *r, struct cmd_request *cr, int fresh,
		int *fresh_out, struct es_error *err)
{
	int from_db;

	*fresh_out = 1;
	for (int i = 0; i < 2 && cr->ticket.ids[i]; i++) {
		if (cr->load == CMD_LOAD_NEW) {
			account_init(&cr->acc[i], cr->ticket.ids[i]);
		} else if (cr->load == CMD_LOAD_ACCOUNTS) {
			if (load_account(r, cr, i, fresh, &from_db, err) < 0)
				return -1;
			*fresh_out &= from_db;
		}
	}
	cr->cmd.claimed = 0;
	if (!cr->ticket.claim)
		return 0;
	if (!fresh) {
		*fresh_out = 0;
		return 0;
	}
	return written(r->db, cr->ticket.claim, &cr->cmd.claimed, err);
}

/*
 * Load and decide, on state from the cache or, with `fresh`, from the
 * database: the answer (CMD_DONE), a fresh decision next round
 * (CMD_AGAIN), or an append with our metadata (CMD_APPEND).
 */
static enum cmd_step decide(struct round *r, struct cmd_request *cr, int fresh)
{
	struct es_error err = ES_ERROR_INIT;
	enum cmd_step step = CMD_APPEND;
	int from_db;

	cmd_decision_release(&cr->decision);
	if (load(r, cr, fresh, &from_db, &err) < 0) {
		step = answer_error(cr, &err);
		goto out;
	}
	if (cr->kind->decide(&cr->cmd, cr->acc, &cr->decision, &err) < 0) {
		step = cmd_round_recheck(err.code, from_db)
			       ? CMD_AGAIN
			       : answer_error(cr, &err);
		goto out;
	}
	for (size_t i = 0; i < cr->decision.n; i++)
		if (cmd_request_add_metadata(cr, cr->decision.events[i], &err) <
		    0) {
			step = answer_error(cr, &err);
			break;
		}
out:
	es_error_release(&err);
	return step;
}

static void decide_all(struct round *r)
{
	struct cmd_request *cr;

	for (size_t i = 0; i < r->n; i++) {
		cr = r->cr[i];
		if (cr->key[0] && !cr->looked_up) {
			if (cmd_idem_lookup(cr, r->db) != 0) {
				/* a stored answer, or a failure */
				cr->step = CMD_DONE;
				continue;
			}
			cr->looked_up = 1;
		}
		if (cr->ticket.attempts > 0)
			cmd_metrics_retry();
		cr->step = decide(
			r, cr, cr->ticket.attempts++ > 0 || cr->ticket.locked);
	}
}

/* ---- 4. the append, and what becomes of each command ---- */

/* Fold the appended `events` into `acc`, to cache what is now true. */
static int fold(struct account *acc, const json_t *events)
{
	long long version = acc->version;
	const json_t *ev;
	size_t i;

	json_array_foreach(events, i, ev)
	{
		if (account_apply(
			    acc, json_string_value(json_object_get(ev, "type")),
			    json_object_get(ev, "data"), ++version, NULL) < 0)
			return -1;
	}
	return 0;
}

/*
 * The state the decision of `cr` built on is settled: its append
 * `committed` (cache the state its events lead to), or it did not
 * happen or commit (forget it: it may be stale).
 */
static void settle_one(struct round *r, struct cmd_request *cr, int committed)
{
	struct account *acc;

	if (cr->load == CMD_LOAD_NONE)
		return;
	/* the accounts' streams come first, a claim's after them */
	for (size_t i = 0; i < cr->decision.n && i < 2 && cr->ticket.ids[i];
	     i++) {
		acc = &cr->acc[i];
		if (committed && fold(acc, cr->decision.events[i]) == 0)
			account_repo_store(r->ctx->repo, acc);
		else
			account_repo_forget(r->ctx->repo, acc->id);
	}
}

/* The append of `cr` was written at `token`: its 201. */
static enum cmd_step answer(struct cmd_request *cr, const char *token)
{
	/* the answer's headers go straight into those of the reply */
	cmd_reply(cr, 201, NULL, NULL);
	cr->body = cr->kind->answer(&cr->cmd, cr->acc, &cr->decision, token,
				    cr->headers);
	return CMD_DONE;
}

/* The store refused the append of `cr` with `err`. */
static enum cmd_step refused(struct cmd_request *cr, const struct es_error *err)
{
	struct es_error scratch = ES_ERROR_INIT;
	const struct es_error *ans;
	enum cmd_step step = CMD_AGAIN;

	if (cr->kind->refused)
		ans = cr->kind->refused(&cr->cmd, cr->ticket.attempts, err,
					&scratch);
	else
		ans = err->code == ES_ECONFLICT ? NULL : err;
	if (ans)
		step = answer_error(cr, ans);
	es_error_release(&scratch);
	return step;
}

/* Whether the answer of `cr` rides on the round's transaction. */
static int depends(const struct round *r, const struct cmd_request *cr)
{
	return cr->written ||
	       (r->tx && cr->step == CMD_DONE && cmd_idem_storable(cr));
}

/*
 * The append or answer of `cr` did not commit: forget what it decided
 * on, then decide again or answer `err`, as `fate` says.
 */
static void undone(struct round *r, struct cmd_request *cr,
		   const struct es_error *err, enum cmd_fate fate)
{
	if (cr->written)
		settle_one(r, cr, 0);
	cr->written = 0;
	cr->step = cmd_round_undo(&cr->ticket, fate);
	if (cr->step == CMD_DONE)
		cmd_reply_error(cr, err);
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

/*
 * The transaction is gone: roll it back, then settle every command whose
 * answer rode on it.
 */
static void tx_failed(struct round *r, const struct es_error *err)
{
	enum cmd_fate fate;
	size_t i, k = 0;

	for (i = 0; i < r->n; i++)
		k += depends(r, r->cr[i]);
	rollback(r);
	fate = cmd_round_fate(err->code, k);
	for (i = 0; i < r->n; i++)
		if (depends(r, r->cr[i]))
			undone(r, r->cr[i], err, fate);
	r->tx = 0;
}

/*
 * A transaction when an answer goes into a key's row: an append with a
 * key, or an answer decided on fresh state worth storing.
 */
static void begin(struct round *r)
{
	struct es_error err = ES_ERROR_INIT;
	struct cmd_request *cr;
	size_t i;
	int need = 0;

	for (i = 0; i < r->n; i++) {
		cr = r->cr[i];
		need |= (cr->step == CMD_APPEND && cr->key[0]) ||
			(cr->step == CMD_DONE && cmd_idem_storable(cr));
	}
	if (!need || r->tx)
		return;
	r->tx = 1;
	if (es_db_exec(r->db, "BEGIN", &err) == 0)
		goto out;
	tx_failed(r, &err);
	for (i = 0; i < r->n; i++)
		if (r->cr[i]->step == CMD_APPEND)
			undone(r, r->cr[i], &err, CMD_FATE_ANSWER);
out:
	es_error_release(&err);
}

static void lost_commit(struct round *r, struct es_error *err);

/* The appends of every command that has one, in one statement. */
static void append_all(struct round *r)
{
	struct es_error err = ES_ERROR_INIT;
	struct es_append_req *reqs, *q;
	struct cmd_request *cr;
	enum cmd_fate fate;
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
		reqs[k].streams = cr->decision.streams;
		reqs[k].n = cr->decision.n;
		reqs[k].err = (struct es_error)ES_ERROR_INIT;
		k++;
	}
	if (k == 0)
		goto out;
	/* ES_EUNKNOWN: the outcomes came, the commit's answer did not */
	if (es_append_batch(r->db, reqs, k, &err) < 0 &&
	    err.code != ES_EUNKNOWN)
		goto fail;
	for (i = 0, k = 0; i < r->n; i++) {
		cr = r->cr[i];
		if (cr->step != CMD_APPEND)
			continue;
		q = &reqs[k++];
		if (q->ok) {
			if (!r->xid && q->fresh) {
				r->xid = q->at.xid;
				r->pos = q->at.pos;
				memcpy(r->command_id, cr->command_id,
				       sizeof(r->command_id));
			}
			cr->written = 1;
			cr->step = answer(cr, q->token);
			continue;
		}
		if (q->err.code == ES_ECONFLICT)
			cmd_metrics_conflict();
		settle_one(r, cr, 0);
		cr->step = refused(cr, &q->err);
		/*
		 * a race it lost, which it decides again; not the client's
		 * own expectation (an expected_version, a taken event id),
		 * answered: that says nothing of other writers, and marking
		 * would send every command on the stripe under the locks
		 */
		if (q->err.code == ES_ECONFLICT && cr->step == CMD_AGAIN)
			contend_all(r, &cr->ticket);
	}
	if (err.code == ES_EUNKNOWN)
		lost_commit(r, &err);
	goto out;
fail:
	/* nothing was written */
	if (err.code == ES_ECONFLICT)
		cmd_metrics_conflict();
	for (i = 0, k = 0; i < r->n; i++)
		k += r->cr[i]->step == CMD_APPEND;
	fate = cmd_round_fate(err.code, k);
	for (i = 0; i < r->n; i++) {
		cr = r->cr[i];
		if (cr->step != CMD_APPEND)
			continue;
		cr->written = 1; /* so that undone() forgets its state */
		if (err.code == ES_ECONFLICT)
			contend_all(r, &cr->ticket);
		undone(r, cr, &err, fate);
	}
	if (r->tx) {
		tx_failed(r, &err);
	}
out:
	for (i = 0; reqs && i < r->n; i++)
		es_error_release(&reqs[i].err);
	free(reqs);
	es_error_release(&err);
}

/*
 * The round's COMMIT answer was lost: an answer decided without an append
 * whose key row rode on it (a stored refusal, a 404) may not be stored,
 * and a retry with the key would decide again: each answers 503 (nothing
 * applied, retry) instead. The appends are settled by the callers.
 */
static void unstored(struct round *r)
{
	struct es_error err = ES_ERROR_INIT;

	es_error_set(&err, ES_EUNAVAIL, "database unavailable");
	for (size_t i = 0; i < r->n; i++)
		if (!r->cr[i]->written && depends(r, r->cr[i]))
			undone(r, r->cr[i], &err, CMD_FATE_ANSWER);
	es_error_release(&err);
}

/*
 * Whether the transaction may have committed is unknown: each command
 * whose append rode on it answers ES_EUNKNOWN (retry with the same
 * Idempotency-Key) and forgets the state it decided on.
 */
static void outcome_unknown(struct round *r)
{
	struct es_error keyed = ES_ERROR_INIT, unkeyed = ES_ERROR_INIT;
	struct cmd_request *cr;

	unstored(r);

	es_error_set(&keyed, ES_EUNKNOWN,
		     "the connection to the database broke while the command "
		     "committed, and whether it did is not known yet; retry "
		     "with the same Idempotency-Key");
	es_error_set(&unkeyed, ES_EUNKNOWN,
		     "the connection to the database broke while the command "
		     "committed, and whether it did is not known yet; it had "
		     "no Idempotency-Key: look before you send it again");
	for (size_t i = 0; i < r->n; i++) {
		cr = r->cr[i];
		if (!cr->written)
			continue;
		settle_one(r, cr, 0);
		cr->written = 0;
		cmd_reply_error(cr, cr->key[0] ? &keyed : &unkeyed);
		cr->step = CMD_DONE;
	}
	r->tx = 0;
	es_error_release(&keyed);
	es_error_release(&unkeyed);
}

/*
 * The connection broke while the round's transaction committed: the
 * COMMIT of a keyed round, the Sync of an autocommit append. A fresh
 * append told its id, and the answers are set: ask the server.
 * Committed, they stand (settle() caches and counts them); aborted, each
 * command that rode on it answers 503 (nothing was applied); not known
 * in time, ES_EUNKNOWN. No fresh append (replays only, of events
 * committed before): nothing but key rows rode on it; the replays stand
 * (a retry with the key answers the same, stored or replayed), answers
 * without an append answer 503 (unstored()).
 */
static void lost_commit(struct round *r, struct es_error *err)
{
	if (!r->xid) {
		unstored(r);
		r->tx = 0;
		return;
	}
	switch (cmd_commit_outcome(r->db, r->xid, r->pos, r->command_id,
				   CMD_OUTCOME_WAIT_MS)) {
	case 1:
		r->tx = 0;
		return;
	case -1:
		outcome_unknown(r);
		return;
	}
	es_error_release(err);
	es_error_set(err, ES_EUNAVAIL, "database unavailable");
	tx_failed(r, err);
}

/* Whether an append of the round answered (a lost COMMIT may keep it). */
static int any_written(const struct round *r)
{
	for (size_t i = 0; i < r->n; i++)
		if (r->cr[i]->written)
			return 1;
	return 0;
}

/* The key rows of the answers worth keeping, then COMMIT. */
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
		rows[i]->ticket.attempts--;
		lost = 1;
	}
	if (lost) {
		/* those whose key was taken answer from it, the others retry */
		es_error_set(&err, ES_ECONFLICT,
			     "an Idempotency-Key was taken");
		goto fail;
	}
	if (es_db_exec(r->db, "COMMIT", &err) == 0) {
		r->tx = 0;
		goto out;
	}
	/*
	 * The connection broke during COMMIT, after appends: it may have
	 * committed.
	 */
	if (err.code == ES_EUNAVAIL && any_written(r) && es_db_broken(r->db)) {
		lost_commit(r, &err);
		goto out;
	}
fail:
	tx_failed(r, &err);
out:
	free(rows);
	free(taken);
	es_error_release(&err);
}

/* ---- 5. what committed: cache it, count it, tell the readers ---- */

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
		settle_one(r, cr, 1);
		cr->written = 0;
		cmd_metrics_append();
		for (s = 0; s < cr->decision.n; s++)
			json_array_foreach(cr->decision.events[s], j, ev)
				cmd_metrics_appended(
					json_string_value(
						json_object_get(ev, "type")),
					1);
		any = 1;
	}
	if (any)
		cmd_notify_poke(r->ctx->notify);
}

size_t cmd_runner_run(struct cmd_job **jobs, size_t n, PGconn *db, void *arg)
{
	struct round r = { .ctx = arg, .db = db };
	struct es_error err = ES_ERROR_INIT;
	struct cmd_request *cr;
	size_t i, k = 0;

	r.cr = malloc(n * sizeof(*r.cr));
	if (!r.cr || cmd_round_init(&r.plan, n) < 0) {
		/* answer them all rather than spin */
		es_error_set(&err, ES_EINTERNAL, "out of memory");
		for (i = 0; i < n; i++) {
			cr = (struct cmd_request *)jobs[i];
			cmd_reply_error(cr, &err);
			cmd_request_send(cr);
		}
		goto out;
	}
	backoff((struct cmd_request *)jobs[0]);
	select_jobs(&r, jobs, n);
	if (r.plan.locked && r.n > 0)
		lock_ids(&r);
	decide_all(&r);
	begin(&r);
	append_all(&r);
	if (r.tx)
		finish_tx(&r);
	settle(&r);
	release_stripes(&r);
	/* answer, and carry the rest over in their order */
	for (i = 0; i < n; i++) {
		cr = (struct cmd_request *)jobs[i];
		if (cr->step == CMD_DONE)
			cmd_request_send(cr);
		else
			jobs[k++] = &cr->job;
	}
out:
	cmd_round_release(&r.plan);
	free(r.cr);
	es_error_release(&err);
	return k;
}
