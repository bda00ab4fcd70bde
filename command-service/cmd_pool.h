/*
 * cmd_pool.h - a small pool of PostgreSQL connections, each driven by a
 * worker thread, fed from one bounded queue of jobs.
 *
 * HTTP threads never block on the database: a route suspends its
 * request (es_http_suspend()), submits a job, and the worker that runs
 * it answers and resumes the request. Several workers commit at once, so
 * PostgreSQL can group their commits.
 */
#ifndef CMD_POOL_H
#define CMD_POOL_H

#include <libpq-fe.h>
#include <stdint.h>

#include "es_error.h"

struct cmd_pool_config {
	const char *conninfo;
	long size; /* connections and workers */
	long queue_max; /* jobs waiting at most; more is 503 */
	long queue_timeout_ms; /* a job waiting longer is rejected, 503 */
	long statement_timeout_ms; /* set on every connection; 0: leave it */
	/* run on every new connection (prepare statements), or NULL */
	int (*on_connect)(PGconn *db, void *arg, struct es_error *err);
	void *on_connect_arg;
};

struct cmd_job {
	/*
	 * Run on a worker with a healthy connection in autocommit mode; it
	 * must leave the connection idle (no open transaction) again.
	 */
	void (*run)(struct cmd_job *job, PGconn *db);
	/*
	 * Called instead of run() when the job cannot run: the queue wait
	 * timed out, the database is unreachable (ES_EUNAVAIL with
	 * retry_after), or the pool is stopping.
	 */
	void (*reject)(struct cmd_job *job, const struct es_error *err);
	/* private to the pool */
	struct cmd_job *next;
	int64_t enqueued_ns;
};

struct cmd_pool_stats {
	long size;
	long in_use; /* workers running a job */
	long waiting; /* jobs in the queue */
	long connected; /* healthy connections */
};

/*
 * Start `cfg->size` workers. Connections are opened lazily and
 * re-opened when broken, so the pool starts while the database is down;
 * jobs then get reject() with ES_EUNAVAIL at once instead of waiting.
 * ownership: borrows `cfg` (must outlive the pool); caller frees with
 * cmd_pool_stop().
 */
struct cmd_pool *cmd_pool_start(const struct cmd_pool_config *cfg,
				struct es_error *err);

/*
 * Queue `job`; ES_EUNAVAIL (503) when the queue is full or the pool is
 * stopping, and then the job is not queued (neither callback runs).
 * ownership: borrows `job` until its run() or reject() has been called.
 */
int cmd_pool_submit(struct cmd_pool *pool, struct cmd_job *job,
		    struct es_error *err);

void cmd_pool_stats(struct cmd_pool *pool, struct cmd_pool_stats *out);

/*
 * Refuse new jobs and reject every queued one (ES_EUNAVAIL, "the service
 * is shutting down") instead of running it; jobs already running finish.
 * For a shutdown whose HTTP server answered requests 503 when its grace
 * period ran out: their commands must not be applied after that answer.
 */
void cmd_pool_cancel(struct cmd_pool *pool);

/* Run every queued job, then close the connections and free the pool. */
void cmd_pool_stop(struct cmd_pool *pool);

#endif
