/*
 * es_db.h - PostgreSQL connections, the one SQLSTATE-to-error map, and
 * long-lived connections that reconnect with a backoff (struct
 * es_db_link).
 */
#ifndef ES_DB_H
#define ES_DB_H

#include <libpq-fe.h>

#include "es_error.h"

/*
 * Open a connection from libpq's keyword and value arrays, as
 * PQconnectdbParams() with expand_dbname, except that libpq's notices
 * and warnings go to the JSON log (event "db_notice", at the level of
 * their severity) instead of stderr, from the handshake on: every
 * connection of the services and of bin/migrate is made here. The
 * handshake polls the socket and `wake_fd` (-1: none), so a stop cuts it
 * short, and gives each host the conninfo names at most `connect_ms`
 * (0: the conninfo's connect_timeout, else 10 s), from the moment libpq
 * turned to it, then goes on to the next one, as libpq's own blocking
 * connect does (its non-blocking one would wait on a host that never
 * answers; unlike libpq, a name's further addresses are not tried then).
 * Returns the connection in whatever state it ended: CONNECTION_OK or
 * not (PQerrorMessage() says why, empty when cut short); NULL only when
 * out of memory.
 * ownership: borrows the arrays; caller frees with PQfinish().
 */
PGconn *es_db_open(const char *const *keys, const char *const *vals,
		   int wake_fd, long connect_ms);

/*
 * Connect with `conninfo` (a libpq URI or key=value string), through
 * es_db_open(), as `app_name` (application_name, so that an operator can
 * tell our sessions apart in pg_stat_activity and in GET /status; it
 * overrides one in `conninfo`), or NULL for conninfo's or libpq's.
 * ES_EUNAVAIL when the server cannot be reached; the server's text goes
 * to the log, never to the client.
 * ownership: caller frees with PQfinish().
 */
PGconn *es_db_connect(const char *conninfo, const char *app_name,
		      struct es_error *err);

/*
 * Turn a failed result (or a NULL one) into an es_error. The only place
 * where SQLSTATEs become error kinds: a broken connection, a server
 * shutting down or out of a resource (disk full, out of memory, too many
 * connections: SQLSTATE 53000-53300) is ES_EUNAVAIL, and so is a
 * cancelled statement (57014: statement_timeout or a cancel request;
 * the statement and its transaction did not happen), a clash on
 * `events_stream_id_stream_version_key` is ES_ECONFLICT, the store's own
 * version-mismatch SQLSTATE 'TDV01' is ES_ECONFLICT with current_version
 * from the message's DETAIL, 'TDI01' (an event id stored by another
 * append), 40001 and 40P01 are ES_ECONFLICT, everything else ES_EINTERNAL.
 * ownership: borrows both. Returns -1.
 */
int es_db_error(PGconn *db, const PGresult *res, struct es_error *err);

/*
 * What the SQLSTATE of a failed statement says about running it again
 * (es_db_error() maps the same kinds to errors).
 */
enum es_db_fail {
	ES_DB_FAIL_OTHER, /* anything else, a lost session too */
	ES_DB_FAIL_VERSION, /* TDV01: a stream not at the expected version */
	ES_DB_FAIL_EVENT_ID, /* TDI01: an event id stored by another append */
	ES_DB_FAIL_RACE, /* 40001, 40P01, or a clash on
			  * events_stream_id_stream_version_key: a
			  * concurrent writer; running again may succeed */
};

/* The kind of the failed result `res`. ownership: borrows `res`. */
enum es_db_fail es_db_fail_of(const PGresult *res);

/*
 * es_db_error() for a SQLSTATE reported as data rather than as a failed
 * statement (the per-request outcomes of tandem_append_batch()): the same
 * map, with `msg` as the server's message and `current_version` (text,
 * or NULL) for TDV01's current_version. Returns -1.
 */
int es_db_state_error(const char *state, const char *msg,
		      const char *current_version, struct es_error *err);

/* Run a statement that returns no rows; es_db_error() on failure. */
int es_db_exec(PGconn *db, const char *sql, struct es_error *err);

/*
 * /ready: the server answers and the newest migration this binary was
 * built with (TANDEM_SCHEMA_LATEST) is recorded as applied.
 * ES_EUNAVAIL otherwise, with a detail saying which.
 */
int es_db_check_ready(PGconn *db, struct es_error *err);

/*
 * A statement prepared once per session: es_db_exec_prepared() prepares
 * `name` (PQprepare) the first time the session runs it, and runs it by
 * name from then on, so the server parses it once per session (and,
 * with plan_cache_mode force_generic_plan, plans it once). Which names a
 * session has is kept with its PGconn (libpq-events.h instance data): a
 * new connection or a PQreset() knows none, so whatever reconnects
 * prepares again. `sql` is read only when preparing (NULL will do when
 * es_db_is_prepared() said yes); one name must always stand for the same
 * text. A failed prepare is returned as the result. When the server has
 * lost the statement (26000: DISCARD ALL, a pooler's other session) or
 * its plan no longer fits (0A000: an ALTER TABLE changed a result
 * column), the session's statements start over (DEALLOCATE ALL) and,
 * outside a transaction and with `sql` at hand, the call runs once more;
 * otherwise the error is returned and the next call prepares afresh.
 * ownership: borrows everything; caller PQclear()s the result.
 */
PGresult *es_db_exec_prepared(PGconn *db, const char *name, const char *sql,
			      int nparams, const char *const *values,
			      const int *lengths, const int *formats,
			      int result_format);

/*
 * Whether this session has prepared `name` (through es_db_exec_prepared()
 * or es_db_set_prepared()).
 */
int es_db_is_prepared(const PGconn *db, const char *name);

/*
 * Record that this session has prepared `name` itself (PQsendPrepare() in
 * a pipeline, say), in the list es_db_exec_prepared() keeps: 0, or -1 out
 * of memory, and then the session is marked broken (es_db_broken()), as
 * one whose statements are no longer known.
 */
int es_db_set_prepared(PGconn *db, const char *name);

/*
 * Whether the connection is broken and should be reset: lost, or on a
 * server that refused a write as read-only (es_db_error() saw 25006).
 */
int es_db_broken(PGconn *db);

/*
 * A long-lived connection (a notifier, a log reader, a LISTEN session)
 * that comes back after the server goes away, with a backoff between
 * attempts. Fill in the settings (ES_DB_LINK_INIT gives the defaults),
 * then call es_db_link_get() whenever the connection is needed.
 */
struct es_db_link {
	/* settings */
	const char *conninfo; /* borrowed; a libpq URI or key=value string */
	const char *app_name; /* borrowed; application_name, or NULL */
	const char *listen; /* borrowed; a channel to LISTEN on, or NULL */
	int wake_fd; /* -1, or readable when waits should end (a stop pipe) */
	long min_ms, max_ms; /* the backoff's first and longest wait */
	long connect_ms; /* how long one attempt may take */
	/* state */
	PGconn *db; /* owned; NULL while down */
	long wait_ms; /* the next backoff; 0: min_ms */
};

#define ES_DB_LINK_INIT(conninfo, wake_fd)                                   \
	{                                                                    \
		(conninfo), NULL, NULL, (wake_fd), 250, 4000, 10000, NULL, 0 \
	}

/*
 * The connection, connected again when it is missing or broken: the
 * attempt polls the socket and `wake_fd`, so a stop cuts it short, and
 * keepalives make a dead peer show up as a broken connection. LISTENs
 * on `listen` after connecting. A fresh connection resets the backoff.
 * On failure (the log says why) waits the backoff, doubling it up to
 * max_ms, and returns NULL with ES_EUNAVAIL.
 * ownership: the link keeps the connection; es_db_link_close() frees it.
 */
PGconn *es_db_link_get(struct es_db_link *l, struct es_error *err);

/*
 * Wait the backoff, ending early when `wake_fd` turns readable (nothing
 * is read from it), then double it up to max_ms: for a caller whose work
 * on the connection failed.
 */
void es_db_link_backoff(struct es_db_link *l);

/* Close the connection (a later es_db_link_get() connects again). */
void es_db_link_close(struct es_db_link *l);

#endif
