/* es_db.c - PostgreSQL connections and the SQLSTATE map. */
#include "es_db.h"

#include <stdlib.h>
#include <string.h>

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

int es_db_error(PGconn *db, const PGresult *res, struct es_error *err)
{
	const char *state =
		res ? PQresultErrorField(res, PG_DIAG_SQLSTATE) : NULL;
	const char *constraint =
		res ? PQresultErrorField(res, PG_DIAG_CONSTRAINT_NAME) : NULL;
	const char *msg =
		res ? PQresultErrorField(res, PG_DIAG_MESSAGE_PRIMARY) : NULL;
	const char *detail =
		res ? PQresultErrorField(res, PG_DIAG_MESSAGE_DETAIL) : NULL;

	if (!res || es_db_broken(db) ||
	    (state && strncmp(state, "08", 2) == 0) ||
	    sqlstate_is(state, "57P01") || sqlstate_is(state, "57P02") ||
	    sqlstate_is(state, "57P03") || sqlstate_is(state, "53300")) {
		es_log(ES_LOG_WARN, "db_unavailable", "{s:s, s:s}", "sqlstate",
		       state ? state : "", "error",
		       db ? PQerrorMessage(db) : "");
		return es_error_set(err, ES_EUNAVAIL, "database unavailable");
	}
	if (sqlstate_is(state, "TDV01")) {
		if (err && err->code == ES_OK && detail)
			err->current_version = strtoll(detail, NULL, 10);
		return es_error_set(err, ES_ECONFLICT, "%s", msg ? msg : "");
	}
	/* an event id already stored by another append */
	if (sqlstate_is(state, "TDI01"))
		return es_error_set(err, ES_ECONFLICT, "%s", msg ? msg : "");
	/* serialization failure, deadlock: the client may simply retry */
	if (sqlstate_is(state, "40001") || sqlstate_is(state, "40P01")) {
		/* retried as a conflict, but worth seeing: lock order bugs */
		es_log(ES_LOG_WARN, "db_serialization", "{s:s, s:s}",
		       "sqlstate", state, "error", msg ? msg : "");
		return es_error_set(err, ES_ECONFLICT,
				    "concurrent update, please retry");
	}
	if (sqlstate_is(state, "23505") && constraint &&
	    strcmp(constraint, "events_stream_id_stream_version_key") == 0)
		return es_error_set(
			err, ES_ECONFLICT,
			"another writer appended to the stream first");
	es_log(ES_LOG_ERROR, "db_error", "{s:s, s:s, s:s}", "sqlstate",
	       state ? state : "", "constraint", constraint ? constraint : "",
	       "error", msg ? msg : "");
	return es_error_set(err, ES_EINTERNAL, "unexpected database error");
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
