/*
 * qry_readpool.h - the worker threads that answer the database-backed
 * GETs of the query service.
 *
 * HTTP threads never wait on the database: a route suspends its request
 * (es_http_suspend()), submits a job, and a worker runs the job on its
 * own connections (one to the read database, one to the event store,
 * each opened on first use and re-opened when broken), answers and
 * resumes the request. Read-your-writes waits end the same way: the
 * thread that moved the view hands the request to a worker.
 */
#ifndef QRY_READPOOL_H
#define QRY_READPOOL_H

#include <libpq-fe.h>

#include "es_error.h"

enum qry_db {
	QRY_DB_READ, /* views and checkpoints (READ_DATABASE_URL) */
	QRY_DB_WRITE /* the event log (LOG_DATABASE_URL, maybe a standby) */
};

struct qry_readpool_config {
	const char *read_url;
	const char *write_url;
	long size; /* workers */
	long queue_max; /* jobs waiting at most; more is 503 */
	long statement_timeout_ms; /* of every connection, 0: leave it */
	/* run on every new connection (prepare statements), or NULL */
	int (*on_connect)(PGconn *db, enum qry_db which, struct es_error *err);
};

struct qry_worker;

struct qry_job {
	/*
	 * Run on a worker. It gets connections with qry_worker_db() and must
	 * leave them idle (no open transaction).
	 */
	void (*run)(struct qry_job *job, struct qry_worker *w);
	/* Called instead of run() when the pool stops with the job queued. */
	void (*reject)(struct qry_job *job, const struct es_error *err);
	/* private to the pool */
	struct qry_job *next;
};

/*
 * Start the workers; nothing connects yet.
 * ownership: borrows `cfg` (must outlive the pool); caller frees with
 * qry_readpool_stop().
 */
struct qry_readpool *qry_readpool_start(const struct qry_readpool_config *cfg,
					struct es_error *err);

/*
 * Queue `job`. ES_EUNAVAIL when the queue is full or the pool stopping;
 * the job is then not queued and neither callback runs.
 * ownership: borrows `job` until run() or reject() is called.
 */
int qry_readpool_submit(struct qry_readpool *p, struct qry_job *job,
			struct es_error *err);

/*
 * The worker's connection to `which`, connected now if it was not (or if
 * the server closed it meanwhile), with the statements of on_connect()
 * prepared. ES_EUNAVAIL (retry_after 1) when the server cannot be
 * reached, or the statements cannot be prepared (a schema not migrated
 * yet); after a failed connection attempt the worker does not try again
 * for a short while.
 * ownership: borrowed from the worker, for the job's run() only.
 */
PGconn *qry_worker_db(struct qry_worker *w, enum qry_db which,
		      struct es_error *err);

/* The same, without on_connect() (for readiness checks). */
PGconn *qry_worker_conn(struct qry_worker *w, enum qry_db which,
			struct es_error *err);

/* Jobs waiting, and workers running one. */
void qry_readpool_stats(struct qry_readpool *p, long *queued, long *busy);

/*
 * Reject the queued jobs (ES_EUNAVAIL, "the service is shutting down"),
 * let the running ones finish, stop the workers, close their
 * connections, free `p`. NULL is a no-op.
 */
void qry_readpool_stop(struct qry_readpool *p);

#endif
