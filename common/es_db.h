/* es_db.h - PostgreSQL connections and the one SQLSTATE-to-error map. */
#ifndef ES_DB_H
#define ES_DB_H

#include <libpq-fe.h>

#include "es_error.h"

/*
 * Connect with `conninfo` (a libpq URI or key=value string).
 * ES_EUNAVAIL when the server cannot be reached; the server's text goes
 * to the log, never to the client.
 * ownership: caller frees with PQfinish().
 */
PGconn *es_db_connect(const char *conninfo, struct es_error *err);

/*
 * Turn a failed result (or a NULL one) into an es_error. The only place
 * where SQLSTATEs become error kinds: a broken connection or a server
 * shutting down is ES_EUNAVAIL, a clash on
 * `events_stream_id_stream_version_key` is ES_ECONFLICT, the store's own
 * version-mismatch SQLSTATE 'TDV01' is ES_ECONFLICT with current_version
 * from the message's DETAIL, 'TDI01' (an event id stored by another
 * append), 40001 and 40P01 are ES_ECONFLICT, everything else ES_EINTERNAL.
 * ownership: borrows both. Returns -1.
 */
int es_db_error(PGconn *db, const PGresult *res, struct es_error *err);

/* Run a statement that returns no rows; es_db_error() on failure. */
int es_db_exec(PGconn *db, const char *sql, struct es_error *err);

/*
 * /ready: the server answers and the newest migration this binary was
 * built with (TANDEM_SCHEMA_LATEST) is recorded as applied.
 * ES_EUNAVAIL otherwise, with a detail saying which.
 */
int es_db_check_ready(PGconn *db, struct es_error *err);

/* Whether the connection is broken and should be reset. */
int es_db_broken(PGconn *db);

#endif
