/*
 * es_append.h - appending to the events table: one append of events to
 * several streams at once, and group commit (many appends, one
 * statement).
 */
#ifndef ES_APPEND_H
#define ES_APPEND_H

#include <libpq-fe.h>
#include <stddef.h>

#include "es_error.h"
#include "es_store.h"
#include "es_token.h"

/*
 * Append to `n` streams atomically, in one statement (one round trip):
 * each stream's events get versions previous + 1, + 2, ... and positions
 * in the order given. Works in autocommit mode and inside the caller's
 * open transaction (READ COMMITTED), whose fate it then shares. Call it
 * before the transaction's other writes: a transaction that already holds
 * a transaction id may, rarely, get ES_ECONFLICT for a stream that a
 * younger transaction appended to meanwhile (readers order events by
 * transaction id, so the younger one's events must not come first).
 *
 * Events without "event_id" get a random one. If every event carries an
 * event_id and all of them are already stored, in these streams and in
 * this order, by one earlier append, that append is returned as if it had
 * just happened (versions and token of the original) and nothing is
 * stored. An event_id stored otherwise is ES_ECONFLICT.
 *
 * Errors: ES_EINVALID with field problems for bad input (stream id empty,
 * over ES_STREAM_ID_MAX characters, not UTF-8 or twice in one call; events
 * not a non-empty array of objects with a string "type" and an object
 * "data", "metadata" an object if given, "event_id" a UUID, unique);
 * ES_ECONFLICT when a stream is not at its expected version, or another
 * writer appends to it first, with err->current_version (the version
 * that stays); ES_ECONFLICT with current_version -1 for an event_id
 * stored by another append; ES_EUNAVAIL, ES_EINTERNAL. Nothing is stored
 * on failure. In autocommit mode, lost races are retried first: a few
 * times when every stream is ES_ANY, once when every event has an
 * event_id (a twin of this append may have committed first).
 *
 * On success fills each streams[i].version and writes the append token,
 * "<xid>.<position>", into `token` (`tokenlen` at least
 * ES_APPEND_TOKEN_MAX, else ES_EINTERNAL before anything is written;
 * `token` may be NULL).
 * ownership: borrows everything.
 */
int es_append(PGconn *db, struct es_stream_append *streams, size_t n,
	      char *token, size_t tokenlen, struct es_error *err);

/*
 * One append of es_append_batch(), and its outcome.
 */
struct es_append_req {
	struct es_stream_append *streams; /* borrowed; versions filled */
	size_t n;
	/* out */
	int ok; /* 1: appended, `token` and the streams' versions are set */
	struct es_error err; /* else why; release with es_error_release() */
	char token[ES_APPEND_TOKEN_MAX];
	int sent_; /* private */
};

/*
 * Group commit: `n` appends, each what one es_append() call would do,
 * in ONE statement (one round trip), each with an outcome of its own: a
 * request that fails stores nothing and leaves the others alone. Every
 * request gets `ok`, and then its streams' versions and its token, or
 * `err`, as es_append() reports them (ES_EINVALID with fields for bad
 * input, ES_ECONFLICT with current_version, ES_EINTERNAL). No stream may
 * be named by two requests of one call: the later request gets
 * ES_EINTERNAL without being sent. Events of requests with event ids
 * follow es_append()'s rules for them, each such request in a
 * subtransaction of its own; the others are written by one INSERT.
 * Requests that succeed share the transaction, hence the xid of their
 * tokens.
 *
 * Returns 0 when every request has its outcome. Returns -1 when the
 * statement failed as a whole, with nothing stored: ES_ECONFLICT when a
 * concurrent writer took one of the versions meanwhile (in autocommit
 * mode the statement is run again first, a few times: nothing else
 * changes, and the request that lost then gets its own ES_ECONFLICT),
 * ES_EUNAVAIL, ES_EINTERNAL. Transactions as for es_append(): in
 * autocommit mode the statement commits by itself.
 * ownership: borrows everything; the caller releases each request's
 * `err` (which must hold nothing to free when called: it is reset).
 */
int es_append_batch(PGconn *db, struct es_append_req *reqs, size_t n,
		    struct es_error *err);

#endif
