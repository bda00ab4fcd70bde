/*
 * es_db.c - PostgreSQL connections, the SQLSTATE map, and long-lived
 * connections that reconnect with a backoff.
 */
#include "es_db.h"

#include <errno.h>
#include <poll.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "es_log.h"

#define SQL_READY "SELECT 1 FROM schema_migrations WHERE name = $1"

PGconn *es_db_connect(const char *conninfo, struct es_error *err)
{
	PGconn *db = PQconnectdb(conninfo);

	if (!db) {
		es_error_set(err, ES_EUNAVAIL, "database unreachable");
		return NULL;
	}
	if (PQstatus(db) != CONNECTION_OK) {
		es_log(ES_LOG_WARN, "db_connect_failed", "{s:s}", "error",
		       PQerrorMessage(db));
		PQfinish(db);
		es_error_set(err, ES_EUNAVAIL, "database unreachable");
		return NULL;
	}
	return db;
}

static int sqlstate_is(const char *state, const char *want)
{
	return state && strcmp(state, want) == 0;
}

/* The kind of a SQLSTATE of a statement that ran (not a lost session). */
static enum es_db_fail fail_of(const char *state, const char *constraint)
{
	if (sqlstate_is(state, "TDV01"))
		return ES_DB_FAIL_VERSION;
	if (sqlstate_is(state, "TDI01"))
		return ES_DB_FAIL_EVENT_ID;
	if (sqlstate_is(state, "40001") || sqlstate_is(state, "40P01") ||
	    (sqlstate_is(state, "23505") && constraint &&
	     strcmp(constraint, "events_stream_id_stream_version_key") == 0))
		return ES_DB_FAIL_RACE;
	return ES_DB_FAIL_OTHER;
}

enum es_db_fail es_db_fail_of(const PGresult *res)
{
	return fail_of(PQresultErrorField(res, PG_DIAG_SQLSTATE),
		       PQresultErrorField(res, PG_DIAG_CONSTRAINT_NAME));
}

/* The map of es_db_error() and es_db_state_error(). */
static int state_error(const char *state, const char *constraint,
		       const char *msg, const char *detail,
		       struct es_error *err)
{
	switch (fail_of(state, constraint)) {
	case ES_DB_FAIL_VERSION:
		if (err && err->code == ES_OK && detail)
			err->current_version = strtoll(detail, NULL, 10);
		return es_error_set(err, ES_ECONFLICT, "%s", msg ? msg : "");
	case ES_DB_FAIL_EVENT_ID:
		/* an event id already stored by another append */
		return es_error_set(err, ES_ECONFLICT, "%s", msg ? msg : "");
	case ES_DB_FAIL_RACE:
		if (sqlstate_is(state, "23505"))
			return es_error_set(
				err, ES_ECONFLICT,
				"another writer appended to the stream first");
		/*
		 * serialization failure, deadlock: the client may simply
		 * retry; worth seeing all the same (lock order bugs)
		 */
		es_log(ES_LOG_WARN, "db_serialization", "{s:s, s:s}",
		       "sqlstate", state, "error", msg ? msg : "");
		return es_error_set(err, ES_ECONFLICT,
				    "concurrent update, please retry");
	case ES_DB_FAIL_OTHER:
		break;
	}
	es_log(ES_LOG_ERROR, "db_error", "{s:s, s:s, s:s}", "sqlstate",
	       state ? state : "", "constraint", constraint ? constraint : "",
	       "error", msg ? msg : "");
	return es_error_set(err, ES_EINTERNAL, "unexpected database error");
}

int es_db_error(PGconn *db, const PGresult *res, struct es_error *err)
{
	const char *state =
		res ? PQresultErrorField(res, PG_DIAG_SQLSTATE) : NULL;

	if (!res || es_db_broken(db) ||
	    (state && strncmp(state, "08", 2) == 0) ||
	    sqlstate_is(state, "57P01") || sqlstate_is(state, "57P02") ||
	    sqlstate_is(state, "57P03") || sqlstate_is(state, "53300")) {
		es_log(ES_LOG_WARN, "db_unavailable", "{s:s, s:s}", "sqlstate",
		       state ? state : "", "error",
		       db ? PQerrorMessage(db) : "");
		return es_error_set(err, ES_EUNAVAIL, "database unavailable");
	}
	return state_error(
		state, PQresultErrorField(res, PG_DIAG_CONSTRAINT_NAME),
		PQresultErrorField(res, PG_DIAG_MESSAGE_PRIMARY),
		PQresultErrorField(res, PG_DIAG_MESSAGE_DETAIL), err);
}

int es_db_state_error(const char *state, const char *msg,
		      const char *current_version, struct es_error *err)
{
	return state_error(state, NULL, msg, current_version, err);
}

int es_db_exec(PGconn *db, const char *sql, struct es_error *err)
{
	PGresult *res = PQexec(db, sql);
	int ret = 0;

	if (PQresultStatus(res) != PGRES_COMMAND_OK &&
	    PQresultStatus(res) != PGRES_TUPLES_OK)
		ret = es_db_error(db, res, err);
	PQclear(res);
	return ret;
}

int es_db_check_ready(PGconn *db, struct es_error *err)
{
	const char *params[1] = { TANDEM_SCHEMA_LATEST };
	PGresult *res;
	int ret = 0;

	if (!db || es_db_broken(db))
		return es_error_set(err, ES_EUNAVAIL, "database unreachable");
	res = PQexecParams(db, SQL_READY, 1, NULL, params, NULL, NULL, 0);
	if (PQresultStatus(res) != PGRES_TUPLES_OK) {
		const char *state = PQresultErrorField(res, PG_DIAG_SQLSTATE);

		/* 42P01: no migrations table yet */
		if (sqlstate_is(state, "42P01"))
			ret = es_error_set(
				err, ES_EUNAVAIL,
				"schema not migrated: no migrations applied");
		else
			ret = es_db_error(db, res, err);
	} else if (PQntuples(res) != 1) {
		ret = es_error_set(err, ES_EUNAVAIL,
				   "schema not current: '%s' is not applied",
				   TANDEM_SCHEMA_LATEST);
	}
	PQclear(res);
	return ret;
}

int es_db_broken(PGconn *db)
{
	return !db || PQstatus(db) != CONNECTION_OK;
}

/* ---- struct es_db_link ---- */

static int64_t now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* Whether `fd` (-1: none) is readable within `ms`; waits that long. */
static int woken(int fd, long ms)
{
	struct pollfd p = { fd, POLLIN, 0 };

	if (fd < 0) {
		struct timespec ts = { ms / 1000, (ms % 1000) * 1000000L };

		while (nanosleep(&ts, &ts) < 0 && errno == EINTR)
			;
		return 0;
	}
	return poll(&p, 1, (int)ms) > 0;
}

/*
 * Connect without blocking a stop: the handshake polls the socket and
 * `wake_fd`. Keepalives first, the operator's conninfo after them (so it
 * may change them), application_name last (it names our sessions).
 */
static PGconn *link_connect(const struct es_db_link *l)
{
	const char *keys[] = { "keepalives",
			       "keepalives_idle",
			       "keepalives_interval",
			       "keepalives_count",
			       "dbname",
			       "application_name",
			       NULL };
	const char *vals[] = { "1",	    "5",	 "2", "3",
			       l->conninfo, l->app_name, NULL };
	PostgresPollingStatusType ps = PGRES_POLLING_WRITING;
	int64_t end = now_ms() + l->connect_ms;
	PGconn *db = PQconnectStartParams(keys, vals, 1);

	if (!db)
		return NULL;
	while (PQstatus(db) != CONNECTION_BAD && ps != PGRES_POLLING_OK &&
	       ps != PGRES_POLLING_FAILED) {
		struct pollfd p[2] = {
			{ PQsocket(db),
			  ps == PGRES_POLLING_READING ? POLLIN : POLLOUT, 0 },
			{ l->wake_fd, POLLIN, 0 },
		};
		int64_t left = end - now_ms();

		if (left <= 0)
			break;
		if (poll(p, l->wake_fd >= 0 ? 2 : 1, (int)left) < 0 &&
		    errno != EINTR)
			break;
		if (p[1].revents)
			break;
		if (p[0].revents)
			ps = PQconnectPoll(db);
	}
	if (ps != PGRES_POLLING_OK || PQstatus(db) != CONNECTION_OK) {
		es_log(ES_LOG_WARN, "db_connect_failed", "{s:s, s:s}",
		       "session", l->app_name ? l->app_name : "", "error",
		       PQerrorMessage(db));
		PQfinish(db);
		return NULL;
	}
	return db;
}

PGconn *es_db_link_get(struct es_db_link *l, struct es_error *err)
{
	char sql[100];

	if (!es_db_broken(l->db))
		return l->db;
	es_db_link_close(l);
	l->db = link_connect(l);
	if (!l->db) {
		es_error_set(err, ES_EUNAVAIL, "database unreachable");
		goto fail;
	}
	if (l->listen) {
		snprintf(sql, sizeof(sql), "LISTEN %s", l->listen);
		if (es_db_exec(l->db, sql, err) < 0) {
			es_db_link_close(l);
			goto fail;
		}
	}
	l->wait_ms = 0;
	return l->db;
fail:
	es_db_link_backoff(l);
	return NULL;
}

void es_db_link_backoff(struct es_db_link *l)
{
	long ms = l->wait_ms > 0 ? l->wait_ms : l->min_ms;

	woken(l->wake_fd, ms);
	l->wait_ms = ms * 2 > l->max_ms ? l->max_ms : ms * 2;
}

void es_db_link_close(struct es_db_link *l)
{
	PQfinish(l->db);
	l->db = NULL;
}
