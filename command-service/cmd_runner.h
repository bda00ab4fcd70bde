/*
 * cmd_runner.h - the one runner of every command: load, decide, append,
 * settle, reply, in group-commit rounds on a pool worker.
 *
 * A route hands a parsed request (cmd_request.h) to cmd_runner_submit(),
 * which queues it on the pool (cmd_pool.h); a worker calls
 * cmd_runner_run() with the jobs in hand. A round
 *   1. plans which commands join (cmd_round.h: no two naming the same id
 *      or Idempotency-Key) and takes their lock stripes, held until the
 *      transaction has ended and the cache says what is now true;
 *   2. looks Idempotency-Keys up (cmd_idem.h): a stored answer is the
 *      answer;
 *   3. loads each command's state (account_repo.h: the cache, or the
 *      database for a fresh decision) and decides it with its kind's
 *      pure decide() (cmd_kinds.h). A rejection decided on cached state
 *      is decided again on fresh state in the next round;
 *   4. appends the events of all commands with one es_append_batch()
 *      statement, where each command's append succeeds or fails on its
 *      own. With no key to store that statement is the whole
 *      transaction (one round trip, one commit); with keys: BEGIN, the
 *      appends, one INSERT of the key rows, COMMIT;
 *   5. only after the commit caches the state the appends led to
 *      (settle), then sends the answers. When the transaction fails,
 *      each command whose answer rode on it decides again or answers
 *      the error, as cmd_round_fate() says.
 * Commands that must decide again, and those that sat the round out,
 * are carried over to the next round, which the pool fills up with new
 * jobs from its queue.
 */
#ifndef CMD_RUNNER_H
#define CMD_RUNNER_H

#include <libpq-fe.h>
#include <stdatomic.h>
#include <stddef.h>

#include "cmd_pool.h"
#include "es_error.h"

#define CMD_CACHE_MAX 100000 /* accounts kept in the process cache */

struct account_repo;
struct cmd_notify;
struct cmd_request;

/*
 * What the runner needs, the HTTP server's ctx. main sets the fields
 * before cmd_ctx_init():
 *
 *	struct cmd_ctx ctx = { .retries = ..., .ops = ... };
 *	cmd_ctx_init(&ctx, &err);
 *	pool_cfg.on_connect = cmd_runner_prepare;
 *	pool_cfg.run_batch = cmd_runner_run; (both with &ctx as arg)
 *	ctx.pool = cmd_pool_start(&pool_cfg, &err);
 *	... es_http_start(&http, routes_with_cmd_routes, n, &ctx, &err) ...
 *	es_http_drain(); cmd_pool_cancel(); cmd_pool_join(); es_http_stop();
 *	cmd_pool_stop(ctx.pool); cmd_ctx_release(&ctx);
 */
struct cmd_ctx {
	struct cmd_pool *pool; /* set by main before serving */
	struct cmd_notify *notify; /* hints for readers, or NULL */
	long retries; /* COMMAND_RETRIES (>= 1): decisions per command */
	void *ops; /* main.c's own state for its routes (probe, http) */
	struct account_repo *repo; /* made by cmd_ctx_init() */
	/*
	 * per lock stripe: until when (monotonic ms) its ids count as
	 * contended by another process (cmd_round_serialize()); made by
	 * cmd_ctx_init()
	 */
	atomic_llong *contended;
};

/*
 * Make the account cache and lock stripes. ES_EINTERNAL when out of
 * memory. ownership: caller frees with cmd_ctx_release(), after the
 * HTTP server and the pool have stopped.
 */
int cmd_ctx_init(struct cmd_ctx *ctx, struct es_error *err);
void cmd_ctx_release(struct cmd_ctx *ctx);

/*
 * The pool's on_connect hook (`arg` is the struct cmd_ctx): prepares the
 * hot-path statements on a new connection. ES_EUNAVAIL or ES_EINTERNAL
 * (e.g. the idempotency_keys table is missing: schema not current).
 */
int cmd_runner_prepare(PGconn *db, void *arg, struct es_error *err);

/*
 * Suspend the request and queue it on the pool of its server's ctx;
 * answers on failure. ownership: takes `cr`.
 */
void cmd_runner_submit(struct cmd_request *cr);

/*
 * The pool's run_batch() (`arg` is the struct cmd_ctx): run one round
 * of the command jobs jobs[0..n) (struct cmd_request) on `db` and
 * answer those it finished. Returns how many it carries over, moved to
 * jobs[0..k) in their order. jobs[0] always joins the round (waiting
 * for its lock stripes if it must), so every command is answered within
 * COMMAND_RETRIES rounds of its own.
 */
size_t cmd_runner_run(struct cmd_job **jobs, size_t n, PGconn *db, void *arg);

#endif
