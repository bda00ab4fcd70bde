/*
 * qry_readpool.c - worker threads with lazy connections, fed from one
 * bounded FIFO queue under one mutex.
 */
#include "qry_readpool.h"

#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "es_db.h"
#include "es_log.h"

#define RETRY_MS 250 /* no new connection attempt this soon after one */

struct qry_worker {
	struct qry_readpool *pool;
	pthread_t thread;
	PGconn *db[2]; /* by enum qry_db; only this worker touches them */
	int prepared[2]; /* on_connect() succeeded on db[i] */
	int64_t next_attempt_ms[2];
};

struct qry_readpool {
	const struct qry_readpool_config *cfg;
	pthread_mutex_t lock;
	pthread_cond_t cond; /* a job was queued, or the pool is stopping */
	struct qry_job *head, *tail;
	long queued;
	long busy;
	int stopping;
	long nworkers;
	struct qry_worker *workers;
};

static int64_t now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static const char *db_name(enum qry_db which)
{
	return which == QRY_DB_READ ? "read" : "write";
}

/*
 * Whether an idle connection is still usable. Between jobs the server has
 * nothing to tell us but goodbye (a restart, a terminated backend: an
 * error message, then EOF), so anything to read means it is gone; a
 * harmless notice costs one reconnection.
 */
static int alive(PGconn *db)
{
	struct pollfd p = { .fd = PQsocket(db), .events = POLLIN };

	if (es_db_broken(db) || p.fd < 0)
		return 0;
	return poll(&p, 1, 0) == 0;
}

PGconn *qry_worker_conn(struct qry_worker *w, enum qry_db which,
			struct es_error *err)
{
	const struct qry_readpool_config *cfg = w->pool->cfg;
	const char *url = which == QRY_DB_READ ? cfg->read_url : cfg->write_url;
	PGconn *db = w->db[which];
	char sql[64];

	if (db && alive(db))
		return db;
	if (db) {
		/* the server closed it while we were idle: connect again */
		PQfinish(db);
		w->db[which] = NULL;
	}
	w->prepared[which] = 0;
	if (now_ms() < w->next_attempt_ms[which]) {
		if (err && !es_error_isset(err))
			err->retry_after = 1;
		es_error_set(err, ES_EUNAVAIL, "database unreachable");
		return NULL;
	}
	db = es_db_connect(url, "tandem-query-read", err);
	if (db && cfg->statement_timeout_ms > 0) {
		snprintf(sql, sizeof(sql), "SET statement_timeout = %ld",
			 cfg->statement_timeout_ms);
		if (es_db_exec(db, sql, err) < 0) {
			PQfinish(db);
			db = NULL;
		}
	}
	if (!db) {
		w->next_attempt_ms[which] = now_ms() + RETRY_MS;
		if (err && err->code == ES_EUNAVAIL && !err->retry_after)
			err->retry_after = 1;
		return NULL;
	}
	w->db[which] = db;
	return db;
}

PGconn *qry_worker_db(struct qry_worker *w, enum qry_db which,
		      struct es_error *err)
{
	const struct qry_readpool_config *cfg = w->pool->cfg;
	struct es_error local = ES_ERROR_INIT;
	PGconn *db = qry_worker_conn(w, which, err);

	if (!db || w->prepared[which] || !cfg->on_connect)
		return db;
	if (cfg->on_connect(db, which, &local) < 0) {
		/* most likely a schema not migrated yet: try again later */
		es_log(ES_LOG_WARN, "read_prepare_failed", "{s:s, s:s}", "db",
		       db_name(which), "error", local.detail);
		es_error_release(&local);
		if (err && !es_error_isset(err))
			err->retry_after = 1;
		es_error_set(err, ES_EUNAVAIL, "database schema not ready");
		return NULL;
	}
	w->prepared[which] = 1;
	return db;
}

/* After a job: drop broken connections, end forgotten transactions. */
static void tidy(struct qry_worker *w)
{
	int i;

	for (i = 0; i < 2; i++) {
		PGconn *db = w->db[i];

		if (!db)
			continue;
		if (!es_db_broken(db) &&
		    PQtransactionStatus(db) != PQTRANS_IDLE) {
			PGresult *res = PQexec(db, "ROLLBACK");

			PQclear(res);
		}
		if (es_db_broken(db) ||
		    PQtransactionStatus(db) != PQTRANS_IDLE) {
			PQfinish(db);
			w->db[i] = NULL;
			w->prepared[i] = 0;
		}
	}
}

static void *worker_main(void *arg)
{
	struct qry_worker *w = arg;
	struct qry_readpool *p = w->pool;

	for (;;) {
		struct qry_job *job;

		pthread_mutex_lock(&p->lock);
		while (!p->head && !p->stopping)
			pthread_cond_wait(&p->cond, &p->lock);
		job = p->head;
		if (!job) {
			pthread_mutex_unlock(&p->lock);
			break;
		}
		p->head = job->next;
		if (!p->head)
			p->tail = NULL;
		p->queued--;
		p->busy++;
		pthread_mutex_unlock(&p->lock);
		job->next = NULL;
		job->run(job, w);
		tidy(w);
		pthread_mutex_lock(&p->lock);
		p->busy--;
		pthread_mutex_unlock(&p->lock);
	}
	PQfinish(w->db[QRY_DB_READ]);
	PQfinish(w->db[QRY_DB_WRITE]);
	return NULL;
}

struct qry_readpool *qry_readpool_start(const struct qry_readpool_config *cfg,
					struct es_error *err)
{
	struct qry_readpool *p = calloc(1, sizeof(*p));
	long i;

	if (!p) {
		es_error_set(err, ES_EINTERNAL, "out of memory");
		return NULL;
	}
	p->cfg = cfg;
	pthread_mutex_init(&p->lock, NULL);
	pthread_cond_init(&p->cond, NULL);
	p->workers = calloc((size_t)cfg->size, sizeof(*p->workers));
	if (!p->workers) {
		es_error_set(err, ES_EINTERNAL, "out of memory");
		qry_readpool_stop(p);
		return NULL;
	}
	for (i = 0; i < cfg->size; i++) {
		p->workers[i].pool = p;
		if (pthread_create(&p->workers[i].thread, NULL, worker_main,
				   &p->workers[i]) != 0) {
			es_error_set(err, ES_EINTERNAL,
				     "cannot start a read worker");
			qry_readpool_stop(p);
			return NULL;
		}
		p->nworkers++;
	}
	return p;
}

int qry_readpool_submit(struct qry_readpool *p, struct qry_job *job,
			struct es_error *err)
{
	int ret = 0;

	pthread_mutex_lock(&p->lock);
	if (p->stopping) {
		ret = es_error_set(err, ES_EUNAVAIL,
				   "the service is shutting down");
	} else if (p->queued >= p->cfg->queue_max) {
		if (err && !es_error_isset(err))
			err->retry_after = 1;
		ret = es_error_set(
			err, ES_EUNAVAIL,
			"too many requests waiting for the database");
	} else {
		job->next = NULL;
		if (p->tail)
			p->tail->next = job;
		else
			p->head = job;
		p->tail = job;
		p->queued++;
		pthread_cond_signal(&p->cond);
	}
	pthread_mutex_unlock(&p->lock);
	return ret;
}

void qry_readpool_stats(struct qry_readpool *p, long *queued, long *busy)
{
	pthread_mutex_lock(&p->lock);
	*queued = p->queued;
	*busy = p->busy;
	pthread_mutex_unlock(&p->lock);
}

void qry_readpool_stop(struct qry_readpool *p)
{
	struct es_error err = ES_ERROR_INIT;
	struct qry_job *job, *next;
	long i;

	if (!p)
		return;
	pthread_mutex_lock(&p->lock);
	p->stopping = 1;
	job = p->head;
	p->head = p->tail = NULL;
	p->queued = 0;
	pthread_cond_broadcast(&p->cond);
	pthread_mutex_unlock(&p->lock);
	es_error_set(&err, ES_EUNAVAIL, "the service is shutting down");
	for (; job; job = next) {
		next = job->next;
		job->next = NULL;
		job->reject(job, &err);
	}
	for (i = 0; i < p->nworkers; i++)
		pthread_join(p->workers[i].thread, NULL);
	free(p->workers);
	pthread_cond_destroy(&p->cond);
	pthread_mutex_destroy(&p->lock);
	free(p);
}
