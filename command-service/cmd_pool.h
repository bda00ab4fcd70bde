/*
 * cmd_pool.h - a small pool of PostgreSQL connections, each driven by a
 * worker thread, fed from one bounded queue of jobs.
 *
 * HTTP threads never block on the database: a route suspends its
 * request (es_http_suspend()), submits a job, and the worker that runs
 * it answers and resumes the request. Several workers commit at once, so
 * PostgreSQL can group their commits; with run_batch() a worker also
 * takes many queued jobs at once, to run them in one transaction (group
 * commit).
 *
 * Why not the query service's pool (query-service/qry_readpool.h): that
 * one runs one GET per job on two connections per worker (the read
 * database and the event store), each opened when a job first asks for
 * it, and has no queue timeout and nothing to cancel. This one owns one
 * connection per worker, hands a worker many jobs at once (group-commit
 * rounds, and the jobs a round carries over), rejects jobs that waited
 * longer than queue_timeout_ms or that a down database cannot serve,
 * and at shutdown cancels the statements running so that no command is
 * applied after its 503. The queue is the only code the two share.
 */
#ifndef CMD_POOL_H
#define CMD_POOL_H

#include <libpq-fe.h>
#include <stdint.h>

#include "es_error.h"

struct cmd_job;

/* Why the pool answered a job with reject(), or refused a submit. */
enum cmd_pool_reject {
	CMD_REJECT_QUEUE_FULL,
	CMD_REJECT_TIMEOUT,
	CMD_REJECT_UNAVAILABLE, /* no database connection */
	CMD_REJECT_STOPPING,
	CMD_REJECT__COUNT
};

struct cmd_pool_config {
	const char *conninfo;
	long size; /* connections and workers */
	long queue_max; /* jobs waiting at most; more is 503 */
	long queue_timeout_ms; /* a job waiting longer is rejected, 503 */
	long statement_timeout_ms; /* set on every connection; 0: leave it */
	/* run on every new connection (prepare statements), or NULL */
	int (*on_connect)(PGconn *db, void *arg, struct es_error *err);
	void *on_connect_arg;
	/*
	 * Group commit, or NULL: a worker takes up to `batch_max` queued
	 * jobs at once (oldest first) and calls run_batch() with them and a
	 * healthy connection in autocommit mode, instead of each job's
	 * run(). run_batch() must leave the connection idle, answer every
	 * job within a bounded number of calls, and may carry jobs over (to
	 * run them again after a conflict, say): it moves them to
	 * jobs[0..k) and returns k. Those stay with the worker (counted as
	 * running, not queued) and come first in its next call, with more
	 * jobs from the queue; they are rejected like queued ones when the
	 * database is unreachable or the pool is cancelled.
	 */
	size_t (*run_batch)(struct cmd_job **jobs, size_t n, PGconn *db,
			    void *arg);
	void *run_batch_arg;
	long batch_max; /* >= 1; 1 without run_batch */
	/* told of every rejection, for metrics (any thread), or NULL */
	void (*on_reject)(enum cmd_pool_reject why);
};

struct cmd_job {
	/*
	 * Run on a worker with a healthy connection in autocommit mode; it
	 * must leave the connection idle (no open transaction) again. Only
	 * for a pool without run_batch (which runs its jobs instead); may be
	 * NULL otherwise.
	 */
	void (*run)(struct cmd_job *job, PGconn *db);
	/*
	 * Called instead of run() when the job cannot run: the queue wait
	 * timed out, the database is unreachable (ES_EUNAVAIL with
	 * retry_after), or the pool is stopping.
	 */
	void (*reject)(struct cmd_job *job, const struct es_error *err);
	/*
	 * Called on the worker that takes the job from the queue, before it
	 * can run; 0 when it must not run any more (its request was answered
	 * meanwhile, es_http_take()): reject() is called instead, and its
	 * answer goes nowhere. Jobs carried over are not asked again. May
	 * be NULL: always run.
	 */
	int (*take)(struct cmd_job *job);
	/* private to the pool */
	struct cmd_job *next;
	int64_t enqueued_ns;
};

struct cmd_pool_stats {
	long size;
	long in_use; /* workers running jobs */
	/*
	 * Jobs in the pool beyond one per busy worker: queued, or taken
	 * into a worker's batch (in_use + waiting is every job in the pool).
	 */
	long waiting;
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
 * is shutting down") instead of running it, and the jobs that workers
 * hold for a later batch; the statements running now are cancelled, and
 * again every 100 ms while their workers are busy (from a thread of the
 * pool's, since PQcancel() may block): their jobs fail, unless the
 * server was committing them already (a COMMIT waiting for a synchronous
 * standby stops waiting and stands). For a shutdown whose HTTP server
 * answered the requests still queued 503 when its grace period ran out:
 * their commands must not be applied after that answer. Returns at once.
 */
void cmd_pool_cancel(struct cmd_pool *pool);

/*
 * Stop the pool (as cmd_pool_stop() does, or after cmd_pool_cancel())
 * and wait up to `wait_ms` for every worker to finish what it holds and
 * exit. Returns how many workers did not, stuck in the database where
 * a cancel does not reach (a dead network), or 1 when only the thread
 * that sends the cancels is stuck: the pool must then be left alone,
 * never freed, since they still use it. 0: every thread is joined, and
 * cmd_pool_stop() frees the pool at once.
 */
long cmd_pool_join(struct cmd_pool *pool, long wait_ms);

/* Run every queued job, then close the connections and free the pool. */
void cmd_pool_stop(struct cmd_pool *pool);

#endif
