/*
 * es_append.h - appending to the events table: group commit, many
 * appends in one statement, each of events to one or more streams at
 * once.
 */
#ifndef ES_APPEND_H
#define ES_APPEND_H

#include <libpq-fe.h>
#include <stddef.h>

#include "es_error.h"
#include "es_store.h"
#include "es_token.h"

/*
 * The stream locks: pg_advisory_xact_lock(ES_STREAM_LOCK_CLASS,
 * hashtext(stream_id)) ('Tndm'). es_append_batch() takes them shared on
 * every stream it appends to, for the rest of the transaction; a writer
 * that takes them exclusive (ascending keys) before it reads the state it
 * decides on cannot be overtaken by it, and so cannot conflict with it.
 * The whole protocol: migrations/0014_append_stream_locks.sql.
 */
#define ES_STREAM_LOCK_CLASS 1416520813

/*
 * One append of es_append_batch(), and its outcome.
 */
struct es_append_req {
	struct es_stream_append *streams; /* borrowed; versions filled */
	size_t n;
	/* out */
	int ok; /* 1: appended, `token` and the streams' versions are set */
	/*
	 * With ok: 1 when this call stored its events, so the token's xid is
	 * the caller's transaction; 0 for a replay (the token of the earlier
	 * append that stored them).
	 */
	int fresh;
	struct es_append_token at; /* with ok: the token, parsed */
	struct es_error err; /* else why; release with es_error_release() */
	char token[ES_APPEND_TOKEN_MAX];
	int sent_; /* private */
};

/*
 * Group commit: `n` appends in ONE statement (one round trip), each with
 * an outcome of its own: a request that fails stores nothing and leaves
 * the others alone.
 *
 * One append is atomic over its `n` streams: each stream's events get
 * versions previous + 1, + 2, ... and positions in the order given. If
 * every event of a request carries an event_id and all of them are
 * already stored, in these streams and in this order, by one earlier
 * append, that append is its outcome (versions and token of the original)
 * and nothing is stored; an event_id stored otherwise is ES_ECONFLICT with
 * current_version -1. Such requests (any event with an "event_id") run
 * each in a subtransaction of its own through tandem_append(), events
 * without one there getting a random id. The others are written by one
 * INSERT, their event ids made here (time-ordered, es_uuid_v7()); the
 * whole call is one prepared statement, tandem_append_batch_rows()
 * (migrations/0011_append_batch_rows.sql), its arguments arrays in
 * binary form, prepared once per session (a libpq event procedure on
 * `db` remembers it; PQreset() forgets it). No stream may be named by two
 * requests of one call: the later request gets ES_EINTERNAL without being
 * sent.
 *
 * Every request gets `ok`, and then its streams' versions and its append
 * token "<xid>.<position>", or `err`: ES_EINVALID with field problems for
 * bad input, found before anything is sent (stream id empty, over
 * ES_STREAM_ID_MAX characters, not UTF-8 or twice in one request;
 * events not a non-empty array of objects with a string "type" and an
 * object "data", "metadata" an object if given, "event_id" a UUID,
 * unique; in a request of several streams, an event's field is named
 * "streams[i].events[j]..."); ES_ECONFLICT when a stream is not at its
 * expected version, with current_version; ES_EINTERNAL. A request whose
 * twin (the same event ids) commits while it runs gets ES_ECONFLICT;
 * sent again, the twin's outcome. Requests that succeed share the
 * transaction, hence the xid of their tokens.
 *
 * Transactions: works in autocommit mode, where the statement commits by
 * itself, and inside the caller's open transaction (READ COMMITTED),
 * whose fate it then shares. Call it before the transaction's other
 * writes: a transaction that already holds a transaction id gets
 * ES_ECONFLICT for a stream that a younger transaction appended to
 * meanwhile (readers order events by transaction id, so the younger
 * one's events must not come first); in a new transaction it succeeds.
 *
 * Returns 0 when every request has its outcome. Returns -1 when the
 * statement failed as a whole, with nothing stored: ES_ECONFLICT when a
 * concurrent writer took one of the versions meanwhile (in autocommit
 * mode the statement is run again first, a few times: nothing else
 * changes, and the request that lost then gets its own ES_ECONFLICT, or
 * gets through when it appends at ES_ANY), ES_EUNAVAIL, ES_EINTERNAL.
 *
 * In autocommit mode the server sends the statement's outcomes before it
 * commits, so a connection that breaks before they came broke before the
 * commit began (ES_EUNAVAIL: nothing stored). One that breaks after them,
 * before the commit answered, is ES_EUNKNOWN (returning -1) when a
 * request stored events (`fresh`): every request has its outcome as if it
 * committed, but whether the `ok` ones are stored is not known; the fresh
 * ones' tokens carry the transaction id to ask pg_xact_status() about, on
 * another connection. A call of replays only stored nothing: its outcomes
 * stand.
 * ownership: borrows everything; the caller releases each request's
 * `err` (which must hold nothing to free when called: it is reset).
 */
int es_append_batch(PGconn *db, struct es_append_req *reqs, size_t n,
		    struct es_error *err);

#endif
