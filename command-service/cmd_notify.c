/* cmd_notify.c - coalesced NOTIFY hints after appends, off the hot path. */
#include "cmd_notify.h"

#include <libpq-fe.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdlib.h>
#include <time.h>

#include "es_db.h"
#include "es_event.h"

struct cmd_notify {
	const char *conninfo;
	pthread_t thread;
	pthread_mutex_t lock;
	pthread_cond_t cond;
	bool pending; /* a poke since the last NOTIFY went out */
	bool stopping;
	bool exited; /* notify_main() returned */
};

/* Wait for a poke (or the stop); false when stopping. */
static bool wait_poke(struct cmd_notify *n)
{
	bool go;

	pthread_mutex_lock(&n->lock);
	while (!n->pending && !n->stopping)
		pthread_cond_wait(&n->cond, &n->lock);
	go = !n->stopping;
	n->pending = false; /* pokes from now on ask for the next NOTIFY */
	pthread_mutex_unlock(&n->lock);
	return go;
}

static void *notify_main(void *arg)
{
	struct cmd_notify *n = arg;
	struct es_db_link link = ES_DB_LINK_INIT(n->conninfo, -1);
	PGconn *db, *set = NULL;

	link.app_name = "tandem-command-notify";

	while (wait_poke(n)) {
		struct es_error err = ES_ERROR_INIT;

		/* down: the hint is lost (after the backoff); readers poll */
		db = es_db_link_get(&link, &err);
		/*
		 * A hint need not wait for a synchronous standby: with one
		 * that does not answer, the NOTIFY would hang, and the stop
		 * with it.
		 */
		if (db && db != set &&
		    es_db_exec(db, "SET synchronous_commit = local", &err) == 0)
			set = db;
		if (db)
			es_db_exec(db, "NOTIFY " ES_CHANNEL_EVENTS, &err);
		es_error_release(&err);
	}
	es_db_link_close(&link);
	pthread_mutex_lock(&n->lock);
	n->exited = true;
	pthread_cond_broadcast(&n->cond);
	pthread_mutex_unlock(&n->lock);
	return NULL;
}

struct cmd_notify *cmd_notify_start(const char *conninfo, struct es_error *err)
{
	struct cmd_notify *n = calloc(1, sizeof(*n));

	if (!n) {
		es_error_set(err, ES_EINTERNAL, "out of memory");
		return NULL;
	}
	n->conninfo = conninfo;
	pthread_mutex_init(&n->lock, NULL);
	pthread_cond_init(&n->cond, NULL);
	if (pthread_create(&n->thread, NULL, notify_main, n) != 0) {
		pthread_cond_destroy(&n->cond);
		pthread_mutex_destroy(&n->lock);
		free(n);
		es_error_set(err, ES_EINTERNAL, "cannot start the notifier");
		return NULL;
	}
	return n;
}

void cmd_notify_poke(struct cmd_notify *n)
{
	if (!n)
		return;
	pthread_mutex_lock(&n->lock);
	if (!n->pending) {
		n->pending = true;
		pthread_cond_signal(&n->cond);
	}
	pthread_mutex_unlock(&n->lock);
}

bool cmd_notify_stop(struct cmd_notify *n, long wait_ms)
{
	struct timespec until;
	bool exited;

	if (!n)
		return true;
	clock_gettime(CLOCK_REALTIME, &until); /* the condition's clock */
	until.tv_sec += wait_ms / 1000;
	until.tv_nsec += (wait_ms % 1000) * 1000000L;
	if (until.tv_nsec >= 1000000000L) {
		until.tv_sec++;
		until.tv_nsec -= 1000000000L;
	}
	pthread_mutex_lock(&n->lock);
	n->stopping = true;
	pthread_cond_broadcast(&n->cond);
	while (!n->exited &&
	       pthread_cond_timedwait(&n->cond, &n->lock, &until) == 0)
		;
	exited = n->exited;
	pthread_mutex_unlock(&n->lock);
	if (!exited)
		return false; /* its NOTIFY hangs: leave it be */
	pthread_join(n->thread, NULL);
	pthread_cond_destroy(&n->cond);
	pthread_mutex_destroy(&n->lock);
	free(n);
	return true;
}
