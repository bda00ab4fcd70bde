/*
 * cmd_routes.h - the command service's routes, and the pipeline that
 * every command route shares.
 *
 * A route parses and validates on the HTTP thread (400, 404 for a path
 * id, 415, 422 are answered there and nothing reaches the database),
 * then suspends the request and hands a job to the pool (cmd_pool.h);
 * a worker runs load, decide, append, answers and resumes the request.
 *
 * main.c serves cmd_routes[] next to its own /health, /ready and
 * /metrics, with a struct cmd_ctx as the server's ctx:
 *
 *	struct cmd_ctx ctx = { .retries = ..., .ops = ... };
 *	cmd_ctx_init(&ctx, &err);
 *	pool_cfg.on_connect = cmd_prepare; pool_cfg.on_connect_arg = &ctx;
 *	ctx.pool = cmd_pool_start(&pool_cfg, &err);
 *	... es_http_start(&http, routes_with_cmd_routes, n, &ctx, &err) ...
 *	es_http_stop(); cmd_pool_stop(ctx.pool); cmd_ctx_release(&ctx);
 */
#ifndef CMD_ROUTES_H
#define CMD_ROUTES_H

#include <jansson.h>
#include <libpq-fe.h>
#include <stddef.h>

#include "cmd_pool.h"
#include "es_error.h"
#include "es_router.h"
#include "es_store.h"

struct es_request;
struct account_repo;

#define CMD_CACHE_MAX 100000 /* accounts kept in the process cache */

struct cmd_notify;

struct cmd_ctx {
	struct cmd_pool *pool; /* set by main before serving */
	struct cmd_notify *notify; /* hints for readers, or NULL */
	long retries; /* COMMAND_RETRIES (>= 1): decisions per command */
	void *ops; /* main.c's own state for its routes (probe, http) */
	struct account_repo *repo; /* made by cmd_ctx_init() */
};

/*
 * Make what the routes need (the account cache and lock table) from the
 * fields main has set. ES_EINTERNAL when out of memory.
 * ownership: caller frees with cmd_ctx_release(), after the HTTP server
 * and the pool have stopped.
 */
int cmd_ctx_init(struct cmd_ctx *ctx, struct es_error *err);
void cmd_ctx_release(struct cmd_ctx *ctx);

/*
 * The pool's on_connect hook (`arg` is the struct cmd_ctx): prepares the
 * hot-path statements on a new connection. ES_EUNAVAIL or ES_EINTERNAL
 * (e.g. the idempotency_keys table is missing: schema not current).
 */
int cmd_prepare(PGconn *db, void *arg, struct es_error *err);

/*
 * POST /accounts, /accounts/{id}/deposits, /accounts/{id}/withdrawals,
 * /accounts/{id}/close, /transfers, /streams/{stream_id}/events; all
 * ES_ROUTE_JSON.
 */
extern const struct es_route cmd_routes[];
extern const size_t cmd_nroutes;

/* ---- the shared pipeline, for cmd_accounts.c and cmd_streams.c ---- */

#define CMD_ID_MAX  128 /* correlation, causation ids, principal */
#define CMD_KEY_MAX 255 /* Idempotency-Key */

/* What a command's step tells the batch runner (cmd_batch.h). */
enum cmd_step {
	CMD_DONE, /* the answer is set */
	CMD_AGAIN, /* decide again in a later round, on fresh state */
	CMD_APPEND, /* append cr->streams in this round's transaction */
};

struct cmd_request;

/*
 * A command route's part on a worker, run by cmd_batch_run() in rounds,
 * under the lock stripes of cr->lock[] (no other command of this process
 * decides on those ids meanwhile).
 */
struct cmd_steps {
	/*
	 * Load and decide, on state from the cache or, with `fresh`, from
	 * the database. Set the answer (CMD_DONE), ask to decide again on
	 * fresh state (CMD_AGAIN: a rejection is only decided on fresh
	 * state), or fill cr->streams[0..nstreams) (CMD_APPEND).
	 */
	enum cmd_step (*decide)(struct cmd_request *cr, PGconn *db, int fresh);
	/*
	 * The outcome of the append: `token` when it was written
	 * (cr->streams[i].version set), else `err` (never both). Set the
	 * answer (CMD_DONE) or ask to decide again (CMD_AGAIN).
	 */
	enum cmd_step (*appended)(struct cmd_request *cr, const char *token,
				  const struct es_error *err);
	/*
	 * The state that decide() built on is settled: the append
	 * `committed`, or it did not happen or did not commit (forget what
	 * was decided on). NULL when there is nothing to do.
	 */
	void (*settled)(struct cmd_request *cr, int committed);
	/* frees what the route's struct owns, or NULL */
	void (*release)(struct cmd_request *cr);
	/* the 503 detail when COMMAND_RETRIES decisions did not do, "%s"
	 * lock[0] */
	const char *gave_up;
};

/*
 * One command request in flight. A route embeds it first in its own
 * struct, which cmd_request_new() allocates zeroed.
 */
struct cmd_request {
	struct cmd_job job; /* for the pool */
	struct es_request *req; /* borrowed until es_http_resume() */
	struct cmd_ctx *ctx;
	const char *command; /* metrics label: "deposit", ... */
	const struct cmd_steps *steps;
	/*
	 * What the command decides on (account ids, a stream id), set by
	 * the route before cmd_request_submit(): commands naming the same
	 * never share a round; lock[1] may be NULL. Borrowed from the
	 * route's struct.
	 */
	const char *lock[2];
	/* what decide() asks to append: streams[0..nstreams) */
	struct es_stream_append streams[2];
	size_t nstreams;
	json_t *metadata; /* owned: every event's metadata */
	char command_id[37];
	char correlation_id[CMD_ID_MAX + 1];
	char key[CMD_KEY_MAX + 1]; /* Idempotency-Key, "" if none */
	char fingerprint[65]; /* sha256 hex, from the key lookup */
	long long if_match; /* If-Match version, -1 if none */
	/* the answer being built */
	unsigned int status;
	json_t *body; /* owned: JSON or problem object */
	json_t *headers; /* owned: {name: value} sent and stored along */
	int retry_after; /* with 503 */
	int replayed; /* answered from a stored key */
	/* the batch runner's */
	int attempts; /* decide() calls so far */
	int looked_up; /* the key was looked up and is not stored yet */
	int final; /* the answer came from the key's row: nothing to store */
	int solo; /* its round failed for no known reason: it goes alone */
	enum cmd_step step; /* in this round */
	int written; /* this round's append is in its transaction */
};

/*
 * Allocate `size` bytes (a route's struct, starting with struct
 * cmd_request) for `req`, read the metadata headers (X-Correlation-Id,
 * X-Causation-Id, X-Principal, traceparent), Idempotency-Key (400 if
 * not 1-255 printable ASCII) and If-Match (400 if malformed), and set
 * X-Correlation-Id on the answer. `steps` is the worker part.
 * On failure answers `req` itself and returns NULL.
 * ownership: the request owns the result; it is freed after the answer.
 */
struct cmd_request *cmd_request_new(struct es_request *req, size_t size,
				    const char *command,
				    const struct cmd_steps *steps);

/*
 * Answer `req` with `err` on the HTTP thread (validation failed) and free
 * `cr` (may be NULL). ownership: borrows `err`.
 */
void cmd_request_fail(struct es_request *req, struct cmd_request *cr,
		      const struct es_error *err);

/* Suspend the request and queue it for a worker; answers on failure. */
void cmd_request_submit(struct cmd_request *cr);

/* Add the request's metadata to every event of `events` ([{type, data}]) */
int cmd_add_metadata(struct cmd_request *cr, json_t *events,
		     struct es_error *err);

/* Set the answer: `status` and `body` (takes `body`). */
void cmd_reply(struct cmd_request *cr, unsigned int status, json_t *body);
/* Add a header to the answer (sent, and stored with a key). */
void cmd_reply_header(struct cmd_request *cr, const char *name,
		      const char *value);
/* Set the answer to the problem of `err` (ETag with a 412's version). */
void cmd_reply_error(struct cmd_request *cr, const struct es_error *err);

/* ---- for the batch runner (cmd_batch.c) ---- */

/*
 * Look the request's Idempotency-Key up. 0: not stored yet
 * (cr->fingerprint set); 1: answered from the stored row, or 422 for a
 * key of another request; -1: the database failed (answer set to the
 * problem).
 */
int cmd_idem_lookup(struct cmd_request *cr, PGconn *db);

/* Whether the request's answer goes into its key's row (2xx, 404, 409, 412). */
int cmd_idem_storable(const struct cmd_request *cr);

/*
 * Insert the key rows of crs[0..n) (looked up, distinct keys) in one
 * statement, in the caller's transaction. taken[i] says that another
 * request stored crs[i]'s key first (that request's transaction
 * committed meanwhile): the caller must roll back. ES_EUNAVAIL,
 * ES_ECONFLICT (deadlock), ES_EINTERNAL.
 */
int cmd_idem_store(PGconn *db, struct cmd_request **crs, size_t n, int *taken,
		   struct es_error *err);

/* Send the answer, count it, resume the request and free `cr`. */
void cmd_send_reply(struct cmd_request *cr);

#endif
