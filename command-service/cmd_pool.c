/*
 * cmd_pool.c - worker threads, one PostgreSQL connection each, fed from
 * one bounded FIFO queue.
 *
 * Everything shared lives under pool->lock: the queue, the counters and
 * the database's up/down state. A worker holds the lock only to take a
 * job or to update the counters; it connects, runs and rejects jobs with
 * the lock released.
 *
 * When the database is down a worker does not wait for it: a failed
 * connection attempt rejects the worker's job at once, and every job that
 * was queued before the attempt began (it could not have fared better);
 * for RETRY_NS after a failed attempt the worker rejects jobs without
 * trying again, so that a down server sees at most one attempt per
 * worker per RETRY_NS. While other workers are connected, though (the
 * server refused only this one, e.g. too many clients), the worker puts
 * its job back and leaves the queue to them until it may try again.
 *
 * Group commit (cfg->run_batch): a worker takes up to cfg->batch_max
 * jobs from the head of the queue at once, and the jobs run_batch()
 * carries over stay in the worker's own array, ahead of the next ones it
 * takes. A worker with carried jobs does not wait for the queue.
 *
 * Cancel: PQcancel() connects to the server and may block (a dead
 * network), so it runs on a thread of its own, the canceller, which
 * borrows a busy worker's PGcancel with the lock released, and the
 * stopping thread only ever waits with a deadline (cmd_pool_join()).
 */
#include "cmd_pool.h"

#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "es_db.h"
#include "es_json.h"
#include "es_log.h"

#define RETRY_NS	(250 * 1000000LL) /* between connection attempts */
#define RETRY_AFTER	1 /* seconds, in 503s */
#define APP_NAME	"tandem-command-service"
#define MS_NS(ms)	((int64_t)(ms)*1000000LL)
#define ALIVE_CHECKS	4
#define CANCEL_EVERY_MS 100 /* after cmd_pool_cancel(), while workers run */

struct worker {
	struct cmd_pool *pool;
	pthread_t thread;
	PGconn *db; /* NULL until connected; only this worker touches it */
	int64_t next_attempt_ns; /* no connection attempt before this */
	long index;
	struct cmd_job **jobs; /* [batch_max]: the batch in hand */
	/* under pool->lock */
	PGcancel *cancel; /* for db; NULL while the canceller borrows it */
	unsigned long cancel_gen; /* bumped whenever `cancel` is replaced */
	bool busy; /* running a batch: the canceller cancels it */
	bool joined; /* the stopping thread's: pthread_join() done */
};

struct cmd_pool {
	const struct cmd_pool_config *cfg;
	pthread_mutex_t lock;
	pthread_cond_t cond; /* a job was queued, or the pool is stopping */
	struct cmd_job *head, *tail;
	long waiting; /* queued */
	long held; /* in workers' hands */
	long in_use;
	long connected;
	bool stopping;
	bool cancelled; /* cmd_pool_cancel(): carried jobs are rejected */
	pthread_cond_t exit_cond; /* a worker or the canceller exited */
	long exited; /* workers that left worker_main() */
	pthread_t canceller;
	bool canceller_started, canceller_exited, canceller_joined;
	bool cancel_done; /* the canceller must end */
	bool down; /* attempts fail and no worker is connected */
	long connecting; /* connection attempts under way */
	long throttled; /* workers leaving jobs to connected ones */
	long nworkers; /* started */
	struct worker *workers;
};

static int64_t now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

static struct timespec timespec_of(int64_t ns)
{
	struct timespec ts = { .tv_sec = (time_t)(ns / 1000000000LL),
			       .tv_nsec = (long)(ns % 1000000000LL) };

	return ts;
}

/* Tell cfg->on_reject() of a rejection. */
static void count_reject(struct cmd_pool *p, enum cmd_pool_reject why)
{
	if (p->cfg->on_reject)
		p->cfg->on_reject(why);
}

/* ---- connections ---- */

/* `text` as one log-safe line: printable ASCII, no trailing newline. */
static void log_text(char *buf, size_t len, const char *text)
{
	size_t n;

	snprintf(buf, len, "%s", text);
	n = strlen(buf);
	while (n > 0 && (buf[n - 1] == '\n' || buf[n - 1] == ' '))
		buf[--n] = '\0';
	for (char *c = buf; *c; c++)
		if (*c == '\n' || *c == '\t')
			*c = ' ';
	es_json_printable(buf);
}

/* The connection's last error, for the log. */
static void conn_message(PGconn *db, char *buf, size_t len)
{
	log_text(buf, len, db ? PQerrorMessage(db) : "out of memory");
}

/*
 * Open a connection (es_db_open(): notices go to the JSON log).
 * Keepalives come first and `conninfo` last, so that anything the
 * operator's conninfo says wins (libpq keeps the last value of a
 * repeated keyword, and expands "dbname" as a whole conninfo string or
 * URI).
 */
static PGconn *conn_open(const struct cmd_pool_config *cfg, char *msg,
			 size_t msglen)
{
	const char *const keys[] = { "keepalives",
				     "keepalives_idle",
				     "keepalives_interval",
				     "keepalives_count",
				     "fallback_application_name",
				     "dbname",
				     NULL };
	const char *const vals[] = { "1",      "30",	      "10", "3",
				     APP_NAME, cfg->conninfo, NULL };
	PGconn *db = es_db_open(keys, vals, -1, 0);

	if (db && PQstatus(db) == CONNECTION_OK)
		return db;
	conn_message(db, msg, msglen);
	PQfinish(db);
	return NULL;
}

/* Settings of our own, then the service's on_connect(). */
static int conn_setup(const struct cmd_pool_config *cfg, PGconn *db,
		      struct es_error *err)
{
	char sql[64];
	PGresult *res;
	int ok;

	if (cfg->statement_timeout_ms > 0) {
		snprintf(sql, sizeof(sql), "SET statement_timeout = %ld",
			 cfg->statement_timeout_ms);
		res = PQexec(db, sql);
		ok = PQresultStatus(res) == PGRES_COMMAND_OK;
		PQclear(res);
		if (!ok)
			return es_error_set(err, ES_EUNAVAIL,
					    "database unavailable");
	}
	if (cfg->on_connect &&
	    cfg->on_connect(db, cfg->on_connect_arg, err) < 0)
		return -1;
	if (PQtransactionStatus(db) != PQTRANS_IDLE)
		return es_error_set(err, ES_EINTERNAL,
				    "on_connect left a transaction open");
	return 0;
}

/*
 * Whether an idle connection still looks usable. A server that shuts
 * down tells its idle clients (FATAL 57P01, then EOF); reading that now
 * spares the next job a failure on a connection that is already gone.
 */
static bool conn_alive(PGconn *db)
{
	struct pollfd pfd = { .fd = PQsocket(db), .events = POLLIN };
	PGnotify *note;

	for (int i = 0; i < ALIVE_CHECKS; i++) {
		if (es_db_broken(db) || pfd.fd < 0)
			return false;
		if (poll(&pfd, 1, 0) <= 0)
			return true; /* nothing to read: the usual case */
		if (!PQconsumeInput(db))
			return false;
		while ((note = PQnotifies(db))) /* nobody LISTENs */
			PQfreemem(note);
	}
	return !es_db_broken(db);
}

/*
 * A connection attempt ended. The database counts as down when an attempt
 * failed and no worker is connected or still trying; it is up again with
 * the first success. Only the changes are logged.
 */
static void attempt_done(struct cmd_pool *p, bool ok, const char *msg)
{
	bool was, now;

	pthread_mutex_lock(&p->lock);
	p->connecting--;
	if (ok)
		p->connected++;
	was = p->down;
	if (ok)
		p->down = false;
	else if (p->connected == 0 && p->connecting == 0)
		p->down = true;
	now = p->down;
	/* throttled workers may have to serve, or reject, the queue now */
	if (p->throttled)
		pthread_cond_broadcast(&p->cond);
	pthread_mutex_unlock(&p->lock);
	if (now && !was)
		es_log(ES_LOG_WARN, "db_pool_down", "{s:s}", "error", msg);
	else if (was && !now)
		es_log(ES_LOG_INFO, "db_pool_up", NULL);
}

static void drop_conn(struct worker *w)
{
	struct cmd_pool *p = w->pool;

	if (!w->db)
		return;
	pthread_mutex_lock(&p->lock);
	PQfreeCancel(w->cancel);
	w->cancel = NULL;
	w->cancel_gen++;
	p->connected--;
	pthread_mutex_unlock(&p->lock);
	PQfinish(w->db);
	w->db = NULL;
}

/*
 * Reject, for the worker that just failed to connect, every job queued
 * no later than `since`: the database was unreachable after they came,
 * and no other worker is connected or trying.
 */
static void reject_older(struct cmd_pool *p, int64_t since,
			 const struct es_error *err)
{
	struct cmd_job *list = NULL, **tail = &list, *job, *next;

	pthread_mutex_lock(&p->lock);
	/* with other connections up, the server refused only us */
	while (p->connected == 0 && p->connecting == 0 && p->head &&
	       p->head->enqueued_ns <= since) {
		job = p->head;
		p->head = job->next;
		if (!p->head)
			p->tail = NULL;
		p->waiting--;
		job->next = NULL;
		*tail = job;
		tail = &job->next;
	}
	pthread_mutex_unlock(&p->lock);
	for (job = list; job; job = next) {
		next = job->next; /* reject() may free the job */
		count_reject(p, CMD_REJECT_UNAVAILABLE);
		job->reject(job, err);
	}
}

/*
 * Make sure the worker has a usable connection. Returns 0, or -1 with
 * ES_EUNAVAIL; `*attempt_ns` is then the start of the failed attempt,
 * or -1 when no attempt was made (too soon after the last one).
 */
static int ensure_conn(struct worker *w, int64_t now, int64_t *attempt_ns,
		       struct es_error *err)
{
	struct cmd_pool *p = w->pool;
	struct es_error setup_err = ES_ERROR_INIT;
	char msg[256];

	*attempt_ns = -1;
	if (w->db && conn_alive(w->db))
		return 0;
	if (w->db) {
		es_log(ES_LOG_INFO, "db_pool_reconnect", "{s:i}", "worker",
		       (int)w->index);
		drop_conn(w);
	}
	if (now < w->next_attempt_ns)
		goto unavailable;
	*attempt_ns = now;
	pthread_mutex_lock(&p->lock);
	p->connecting++;
	pthread_mutex_unlock(&p->lock);
	w->db = conn_open(p->cfg, msg, sizeof(msg));
	if (!w->db) {
		es_log(ES_LOG_DEBUG, "db_pool_connect_failed", "{s:i, s:s}",
		       "worker", (int)w->index, "error", msg);
		attempt_done(p, false, msg);
		goto unavailable;
	}
	if (conn_setup(p->cfg, w->db, &setup_err) < 0) {
		conn_message(w->db, msg, sizeof(msg));
		es_log(ES_LOG_WARN, "db_pool_setup_failed", "{s:i, s:s, s:s}",
		       "worker", (int)w->index, "detail", setup_err.detail,
		       "error", msg);
		es_error_release(&setup_err);
		PQfinish(w->db);
		w->db = NULL;
		attempt_done(p, false, msg);
		goto unavailable;
	}
	attempt_done(p, true, NULL);
	pthread_mutex_lock(&p->lock);
	w->cancel = PQgetCancel(w->db); /* NULL only when out of memory */
	w->cancel_gen++;
	pthread_mutex_unlock(&p->lock);
	return 0;
unavailable:
	if (*attempt_ns >= 0)
		w->next_attempt_ns = *attempt_ns + RETRY_NS;
	es_error_set(err, ES_EUNAVAIL, "database unavailable");
	err->retry_after = RETRY_AFTER;
	return -1;
}

/* After run(): the connection must be idle again, else fix or drop it. */
static void after_run(struct worker *w)
{
	PGTransactionStatusType ts;
	PGresult *res;

	if (es_db_broken(w->db)) {
		drop_conn(w);
		return;
	}
	ts = PQtransactionStatus(w->db);
	if (ts == PQTRANS_IDLE)
		return;
	es_log(ES_LOG_ERROR, "bug", "{s:s, s:s}", "what",
	       "a pool job left its connection busy", "state",
	       ts == PQTRANS_INTRANS   ? "in transaction"
	       : ts == PQTRANS_INERROR ? "in failed transaction"
	       : ts == PQTRANS_ACTIVE  ? "query running"
				       : "unknown");
	if (ts == PQTRANS_INTRANS || ts == PQTRANS_INERROR) {
		res = PQexec(w->db, "ROLLBACK");
		PQclear(res);
		if (PQtransactionStatus(w->db) == PQTRANS_IDLE)
			return;
	}
	drop_conn(w);
}

static void reject(struct cmd_pool *p, struct cmd_job *job,
		   enum cmd_pool_reject why, const char *detail)
{
	struct es_error err = ES_ERROR_INIT;

	es_error_set(&err, ES_EUNAVAIL, "%s", detail);
	err.retry_after = RETRY_AFTER;
	count_reject(p, why);
	job->reject(job, &err);
}

/* Wake workers for a new job at the head or tail; p->lock held. */
static void wake_for_job(struct cmd_pool *p)
{
	/* a throttled worker would not take it: wake them all then */
	if (p->throttled)
		pthread_cond_broadcast(&p->cond);
	else
		pthread_cond_signal(&p->cond);
}

/*
 * When this worker cannot connect but others are connected or still
 * trying (the server may refuse only us, e.g. too many clients), put
 * `jobs` back at the head of the queue, in their order, for them.
 * Returns whether it did.
 */
static bool requeue_if_others(struct cmd_pool *p, struct cmd_job **jobs,
			      size_t n)
{
	bool requeued = false;
	size_t i;

	pthread_mutex_lock(&p->lock);
	if (p->connected > 0 || p->connecting > 0) {
		for (i = n; i-- > 0;) {
			jobs[i]->next = p->head;
			p->head = jobs[i];
			if (!p->tail)
				p->tail = jobs[i];
			p->waiting++;
		}
		wake_for_job(p);
		requeued = true;
	}
	pthread_mutex_unlock(&p->lock);
	return requeued;
}

/*
 * Run the `n` jobs in hand (already past their queue timeout check).
 * Returns how many are carried over, in jobs[0..k).
 */
static size_t serve(struct worker *w, struct cmd_job **jobs, size_t n)
{
	struct cmd_pool *p = w->pool;
	struct es_error err = ES_ERROR_INIT;
	int64_t now = now_ns(), attempt;
	size_t i, carried = 0;

	if (ensure_conn(w, now, &attempt, &err) < 0) {
		if (requeue_if_others(p, jobs, n))
			return 0;
		for (i = 0; i < n; i++) {
			count_reject(p, CMD_REJECT_UNAVAILABLE);
			jobs[i]->reject(jobs[i], &err);
		}
		if (attempt >= 0)
			reject_older(p, attempt, &err);
		return 0;
	}
	if (p->cfg->run_batch)
		carried = p->cfg->run_batch(jobs, n, w->db,
					    p->cfg->run_batch_arg);
	else
		jobs[0]->run(jobs[0], w->db); /* n is 1 */
	after_run(w);
	return carried;
}

/*
 * Take queued jobs into jobs[n..max) (p->lock held); those that waited
 * too long go to *late instead.
 */
static size_t take_jobs(struct cmd_pool *p, struct cmd_job **jobs, size_t n,
			size_t max, struct cmd_job **late)
{
	int64_t now = now_ns();
	struct cmd_job *job;

	while (n < max && p->head) {
		job = p->head;
		p->head = job->next;
		if (!p->head)
			p->tail = NULL;
		job->next = NULL;
		p->waiting--;
		if (p->cfg->queue_timeout_ms > 0 &&
		    now - job->enqueued_ns > MS_NS(p->cfg->queue_timeout_ms)) {
			job->next = *late;
			*late = job;
			continue;
		}
		jobs[n++] = job;
	}
	return n;
}

/*
 * Ask the jobs just taken from the queue, jobs[from..n), whether they
 * may still run (cmd_job.take()), and reject those that may not, keeping
 * the others in their order. Returns how many jobs are left in hand.
 */
static size_t take_wanted(struct cmd_pool *p, struct cmd_job **jobs,
			  size_t from, size_t n)
{
	size_t i, k = from;

	for (i = from; i < n; i++) {
		if (!jobs[i]->take || jobs[i]->take(jobs[i])) {
			jobs[k++] = jobs[i];
			continue;
		}
		/* answered already: the rejection goes nowhere */
		reject(p, jobs[i], CMD_REJECT_STOPPING,
		       "the service is shutting down");
	}
	return k;
}

static void *worker_main(void *arg)
{
	struct worker *w = arg;
	struct cmd_pool *p = w->pool;
	size_t max = p->cfg->run_batch ? (size_t)p->cfg->batch_max : 1;
	struct cmd_job *late, *next;
	size_t n = 0, i; /* jobs in hand: carried over from the last batch */
	size_t held, kept;

	pthread_mutex_lock(&p->lock);
	for (;;) {
		while (n == 0 && !p->head && !p->stopping)
			pthread_cond_wait(&p->cond, &p->lock);
		if (n == 0 && !p->head)
			break; /* stopping, and the queue is drained */
		if (n > 0 && p->cancelled) {
			pthread_mutex_unlock(&p->lock);
			for (i = 0; i < n; i++)
				reject(p, w->jobs[i], CMD_REJECT_STOPPING,
				       "the service is shutting down");
			pthread_mutex_lock(&p->lock);
			p->held -= (long)n;
			n = 0;
			continue;
		}
		if (n == 0 && !w->db &&
		    (p->connected > 0 || p->connecting > 0) &&
		    now_ns() < w->next_attempt_ns) {
			/*
			 * Our last attempt failed, yet others are connected
			 * or trying (the server may refuse only us, e.g. too
			 * many clients): leave the job to them until we may
			 * try again.
			 */
			struct timespec until = timespec_of(w->next_attempt_ns);

			p->throttled++;
			pthread_cond_timedwait(&p->cond, &p->lock, &until);
			p->throttled--;
			continue;
		}
		late = NULL;
		held = n;
		n = take_jobs(p, w->jobs, n, max, &late);
		p->held += (long)(n - held);
		pthread_mutex_unlock(&p->lock);
		for (; late; late = next) {
			next = late->next; /* reject() may free the job */
			reject(p, late, CMD_REJECT_TIMEOUT,
			       "timed out waiting for a database connection");
		}
		kept = take_wanted(p, w->jobs, held, n);
		pthread_mutex_lock(&p->lock);
		p->held -= (long)(n - kept);
		n = kept;
		if (n == 0)
			continue;
		p->in_use++;
		w->busy = true;
		pthread_mutex_unlock(&p->lock);
		held = n;
		n = serve(w, w->jobs, n);
		pthread_mutex_lock(&p->lock);
		p->held -= (long)(held - n);
		p->in_use--;
		w->busy = false;
	}
	p->exited++;
	pthread_cond_broadcast(&p->exit_cond);
	pthread_mutex_unlock(&p->lock);
	return NULL;
}

/*
 * Cancel the statement of every busy worker; p->lock held, released
 * around each PQcancel(), which connects to the server and may block.
 */
static void cancel_busy(struct cmd_pool *p)
{
	char msg[256];

	for (long i = 0; i < p->nworkers; i++) {
		struct worker *w = &p->workers[i];
		PGcancel *c = w->cancel;
		unsigned long gen = w->cancel_gen;

		if (!w->busy || !c)
			continue;
		w->cancel = NULL; /* borrowed while the lock is released */
		pthread_mutex_unlock(&p->lock);
		PQcancel(c, msg, sizeof(msg));
		pthread_mutex_lock(&p->lock);
		if (w->cancel_gen == gen)
			w->cancel = c;
		else
			PQfreeCancel(c); /* its connection is gone */
	}
}

/*
 * After cmd_pool_cancel(): cancel what the workers run, and again every
 * CANCEL_EVERY_MS (a cancel that arrives between two statements of a
 * round is lost), until every worker has exited or the pool stops.
 */
static void *canceller_main(void *arg)
{
	struct cmd_pool *p = arg;
	struct timespec until;

	pthread_mutex_lock(&p->lock);
	while (!p->cancel_done && p->exited < p->nworkers) {
		cancel_busy(p);
		until = timespec_of(now_ns() + MS_NS(CANCEL_EVERY_MS));
		while (!p->cancel_done && p->exited < p->nworkers &&
		       pthread_cond_timedwait(&p->exit_cond, &p->lock,
					      &until) != ETIMEDOUT)
			;
	}
	p->canceller_exited = true;
	pthread_cond_broadcast(&p->exit_cond);
	pthread_mutex_unlock(&p->lock);
	return NULL;
}

/* ---- the pool ---- */

static void pool_free(struct cmd_pool *p)
{
	for (long i = 0; p->workers && i < p->cfg->size; i++)
		free(p->workers[i].jobs);
	pthread_cond_destroy(&p->cond);
	pthread_cond_destroy(&p->exit_cond);
	pthread_mutex_destroy(&p->lock);
	free(p->workers);
	free(p);
}

/*
 * Stop and join the started workers (the queue is drained first), then
 * the canceller.
 */
static void join_workers(struct cmd_pool *p)
{
	pthread_mutex_lock(&p->lock);
	p->stopping = true;
	pthread_cond_broadcast(&p->cond);
	pthread_mutex_unlock(&p->lock);
	for (long i = 0; i < p->nworkers; i++)
		if (!p->workers[i].joined) {
			pthread_join(p->workers[i].thread, NULL);
			p->workers[i].joined = true;
		}
	pthread_mutex_lock(&p->lock);
	p->cancel_done = true;
	pthread_cond_broadcast(&p->exit_cond);
	pthread_mutex_unlock(&p->lock);
	if (p->canceller_started && !p->canceller_joined) {
		pthread_join(p->canceller, NULL);
		p->canceller_joined = true;
	}
	for (long i = 0; i < p->nworkers; i++) {
		PQfreeCancel(p->workers[i].cancel);
		p->workers[i].cancel = NULL;
		PQfinish(p->workers[i].db);
		p->workers[i].db = NULL;
	}
	p->connected = 0;
}

struct cmd_pool *cmd_pool_start(const struct cmd_pool_config *cfg,
				struct es_error *err)
{
	pthread_condattr_t attr;
	struct cmd_pool *p;
	int rc;

	if (!cfg->conninfo || cfg->size < 1 || cfg->queue_max < 1 ||
	    (cfg->run_batch && cfg->batch_max < 1)) {
		es_error_set(
			err, ES_EINVALID,
			"a pool needs a conninfo, size >= 1, queue_max >= 1, batch_max >= 1");
		return NULL;
	}
	p = calloc(1, sizeof(*p));
	if (!p) {
		es_error_set(err, ES_EINTERNAL, "out of memory");
		return NULL;
	}
	p->cfg = cfg;
	pthread_mutex_init(&p->lock, NULL);
	pthread_condattr_init(&attr);
	pthread_condattr_setclock(&attr, CLOCK_MONOTONIC); /* timespec_of() */
	pthread_cond_init(&p->cond, &attr);
	pthread_cond_init(&p->exit_cond, &attr);
	pthread_condattr_destroy(&attr);
	p->workers = calloc((size_t)cfg->size, sizeof(*p->workers));
	if (!p->workers) {
		pool_free(p);
		es_error_set(err, ES_EINTERNAL, "out of memory");
		return NULL;
	}
	for (long i = 0; i < cfg->size; i++) {
		struct worker *w = &p->workers[i];

		w->pool = p;
		w->index = i;
		w->jobs = calloc(cfg->run_batch ? (size_t)cfg->batch_max : 1,
				 sizeof(*w->jobs));
		if (!w->jobs) {
			join_workers(p);
			pool_free(p);
			es_error_set(err, ES_EINTERNAL, "out of memory");
			return NULL;
		}
		rc = pthread_create(&w->thread, NULL, worker_main, w);
		if (rc) {
			join_workers(p);
			pool_free(p);
			es_error_set(err, ES_EINTERNAL,
				     "cannot start pool worker: %s",
				     strerror(rc));
			return NULL;
		}
		p->nworkers++;
	}
	return p;
}

int cmd_pool_submit(struct cmd_pool *p, struct cmd_job *job,
		    struct es_error *err)
{
	enum cmd_pool_reject why = CMD_REJECT__COUNT;

	job->next = NULL;
	job->enqueued_ns = now_ns();
	pthread_mutex_lock(&p->lock);
	if (p->stopping) {
		why = CMD_REJECT_STOPPING;
	} else if (p->waiting >= p->cfg->queue_max) {
		why = CMD_REJECT_QUEUE_FULL;
	} else {
		if (p->tail)
			p->tail->next = job;
		else
			p->head = job;
		p->tail = job;
		p->waiting++;
		wake_for_job(p);
	}
	pthread_mutex_unlock(&p->lock);
	if (why == CMD_REJECT__COUNT)
		return 0;
	count_reject(p, why);
	es_error_set(err, ES_EUNAVAIL, "%s",
		     why == CMD_REJECT_STOPPING ? "the service is shutting down"
						: "too many requests queued");
	if (err)
		err->retry_after = RETRY_AFTER;
	return -1;
}

void cmd_pool_stats(struct cmd_pool *p, struct cmd_pool_stats *out)
{
	pthread_mutex_lock(&p->lock);
	out->size = p->nworkers;
	out->in_use = p->in_use;
	out->waiting = p->waiting + p->held - p->in_use;
	out->connected = p->connected;
	pthread_mutex_unlock(&p->lock);
}

void cmd_pool_cancel(struct cmd_pool *p)
{
	struct cmd_job *list, *job, *next;

	if (!p)
		return;
	pthread_mutex_lock(&p->lock);
	p->stopping = true;
	p->cancelled = true;
	list = p->head;
	p->head = p->tail = NULL;
	p->waiting = 0;
	pthread_cond_broadcast(&p->cond);
	/*
	 * A batch's statement may be waiting in the server (on a lock, say)
	 * with many commands: cancel it, so that they end (and are not
	 * applied) now. One in COMMIT may commit all the same.
	 */
	if (!p->canceller_started && p->nworkers > 0) {
		if (pthread_create(&p->canceller, NULL, canceller_main, p) == 0)
			p->canceller_started = true;
		else
			cancel_busy(p); /* once, here */
	}
	pthread_mutex_unlock(&p->lock);
	for (job = list; job; job = next) {
		next = job->next; /* reject() may free the job */
		reject(p, job, CMD_REJECT_STOPPING,
		       "the service is shutting down");
	}
}

long cmd_pool_join(struct cmd_pool *p, long wait_ms)
{
	struct timespec until = timespec_of(now_ns() + MS_NS(wait_ms));
	long left;

	if (!p)
		return 0;
	pthread_mutex_lock(&p->lock);
	p->stopping = true;
	pthread_cond_broadcast(&p->cond);
	while ((p->exited < p->nworkers ||
		(p->canceller_started && !p->canceller_exited)) &&
	       pthread_cond_timedwait(&p->exit_cond, &p->lock, &until) !=
		       ETIMEDOUT)
		;
	left = p->nworkers - p->exited;
	if (left == 0 && p->canceller_started && !p->canceller_exited)
		left = 1; /* the canceller, in a PQcancel() that hangs */
	p->cancel_done = true;
	pthread_cond_broadcast(&p->exit_cond);
	pthread_mutex_unlock(&p->lock);
	if (left == 0)
		join_workers(p); /* they are gone: at once */
	return left;
}

void cmd_pool_stop(struct cmd_pool *p)
{
	if (!p)
		return;
	join_workers(p);
	pool_free(p);
}
