/* es_store.h - append to and read from the events table. */
#ifndef ES_STORE_H
#define ES_STORE_H

#include <jansson.h>
#include <libpq-fe.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "es_error.h"
#include "es_token.h"

/*
 * Expected versions for es_append(): ES_ANY appends whatever the stream's
 * version; ES_NO_STREAM (and 0, the same thing) wants a stream without
 * events; N > 0 wants the stream exactly at version N.
 */
#define ES_ANY	     (-2LL)
#define ES_NO_STREAM (-1LL)

/* Longest stream id, in characters (the events table's check). */
#define ES_STREAM_ID_MAX 200
/* Longest event type, in characters. */
#define ES_EVENT_TYPE_MAX 200
/* Most events one es_read_stream() or es_read_forward() returns. */
#define ES_READ_LIMIT_MAX 100000

struct es_stream_append {
	const char *stream_id;
	long long expected; /* ES_ANY, ES_NO_STREAM or 0, or N > 0 */
	const json_t *events; /* [{type, data, metadata?, event_id?}] */
	long long version; /* out: the stream's version after the append */
};

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

/* The stream's current version, 0 when it has no events. */
int es_stream_version(PGconn *db, const char *stream_id, long long *version,
		      struct es_error *err);

struct es_event {
	long long position; /* global_position */
	uint64_t xid; /* transaction_id */
	char *stream_id;
	long long version;
	char event_id[37];
	char *type;
	json_t *data;
	json_t *metadata;
	char *recorded_at; /* ISO 8601 in UTC, "2024-05-01T12:00:00.123456Z" */
};

struct es_events {
	struct es_event *v;
	size_t n, alloc;
};

#define ES_EVENTS_INIT \
	{              \
		0      \
	}

/* Free every event and the array; `ev` is empty afterwards. */
void es_events_release(struct es_events *ev);

/*
 * Append to `out` the events of `stream_id` with versions >= from_version,
 * ascending, at most `limit` (1..ES_READ_LIMIT_MAX) of them.
 * On failure `out` is as it was.
 * ownership: caller frees `out` with es_events_release().
 */
int es_read_stream(PGconn *db, const char *stream_id, long long from_version,
		   size_t limit, struct es_events *out, struct es_error *err);

struct es_buf; /* es_buf.h */

/*
 * es_read_stream() for serving the log as JSON, without building jansson
 * values: appends to `out` the events (at most `limit`, 1 to
 * ES_READ_LIMIT_MAX - 1) as JSON objects separated by commas, each
 * {"position", "transaction_id", "stream_id", "version", "event_id",
 * "type", "data", "metadata", "recorded_at"}, data and metadata as
 * stored, without insignificant whitespace. Sets *n to their number,
 * *last_version to the version of the last one (0 without any), and
 * *more to whether the stream has events after them.
 * On failure `out` is as it was.
 * ownership: borrows everything; `out` stays the caller's.
 */
int es_read_stream_json(PGconn *db, const char *stream_id,
			long long from_version, size_t limit,
			struct es_buf *out, size_t *n, long long *last_version,
			bool *more, struct es_error *err);

/*
 * Tail the log: append to `out` the next events after `after`, at most
 * `limit` (1..ES_READ_LIMIT_MAX), in the tailing order, and set `next` to
 * the cursor after them. An empty result still moves `next` on to the
 * current snapshot, past idle and aborted transactions.
 *
 * From a full snapshot lo, one statement takes pg_current_snapshot() as
 * hi and returns the events visible in hi but not in lo: the committed
 * events of transactions that were running at lo or began after it, in
 * (transaction_id, global_position) order, found by index range scans on
 * events_tail_idx (lo's xips, and from lo's xmax on). If they do not all
 * fit, `next` is a mid-window cursor and the following calls finish the
 * window. So every committed event is returned exactly once, whatever the
 * order in which transactions commit, and a transaction left open holds
 * back only its own events. Events of one stream come in version order
 * (es_append() sees to that for its own appends).
 *
 * Call it in autocommit mode or READ COMMITTED, in a transaction that has
 * not written to events (its own rows would be read before they commit).
 * ES_EUNAVAIL (retry_after 1) when the server's snapshot does not cover
 * the cursor yet (a lagging replica, a token from another cluster); also
 * ES_EINVALID for a bad limit, ES_EINTERNAL.
 * On failure `out` is as it was and `next` untouched.
 * ownership: borrows `after`. `next` must hold a cursor (es_cursor_init(),
 * es_cursor_parse() or an earlier call; it may be `after` itself), which
 * is released and replaced. Caller frees `out` with es_events_release()
 * and `next` with es_cursor_release().
 */
int es_read_forward(PGconn *db, const struct es_cursor *after, size_t limit,
		    struct es_events *out, struct es_cursor *next,
		    struct es_error *err);

/*
 * es_read_forward() for serving the log as JSON: the events go to `out`
 * as es_read_stream_json() writes them, *n is their number. The same
 * window, cursor and errors as es_read_forward().
 * On failure `out` is as it was and `next` untouched.
 * ownership: as es_read_forward(); `out` stays the caller's.
 */
int es_read_forward_json(PGconn *db, const struct es_cursor *after,
			 size_t limit, struct es_buf *out, size_t *n,
			 struct es_cursor *next, struct es_error *err);

#endif
