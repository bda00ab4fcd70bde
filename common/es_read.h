/*
 * es_read.h - reading the events table: a stream's version and events,
 * and the log in snapshot windows (the tailing order), as struct
 * es_event or as JSON text.
 */
#ifndef ES_READ_H
#define ES_READ_H

#include <libpq-fe.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "es_error.h"
#include "es_store.h"
#include "es_token.h"

/*
 * An SQL expression: the text of the statement's snapshot, as
 * pg_current_snapshot() gives it on a primary. On a hot standby
 * pg_current_snapshot() lists no running transactions (the standby keeps
 * them apart), so every transaction between xmin and xmax would look
 * committed and a reader would skip the events of those still running.
 * There the list is made again: every transaction in [xmin, xmax) that
 * has no event this snapshot sees and has not aborted. That is every one
 * still running, and perhaps some that committed without events (more
 * xips than needed never skip an event; they cost a look each later).
 *
 * Those that committed without events (the projector's own transactions
 * on the views, among others) would pile up while a transaction stays
 * open on the primary, and with them the tokens. ES_SQL_SNAPSHOT_DONE's
 * XMAX and XIP (SQL of types xid8 and xid8[], or NULL) are a snapshot of
 * the primary that this statement's snapshot is known to postdate (the
 * standby had replayed, before the statement began, the primary's WAL as
 * of that snapshot: es_read_forward_done()): a transaction finished in it
 * (below XMAX and not in XIP) is finished here too and is not looked
 * at: only XIP's and those from XMAX on are. The work is one index probe
 * per transaction looked at, so without such a snapshot a transaction
 * held open on the primary makes it grow with every xid since.
 */
#define ES_SQL_SNAPSHOT_DONE(XMAX, XIP)                                   \
	"(SELECT CASE WHEN NOT pg_is_in_recovery() THEN s::text ELSE"     \
	" pg_snapshot_xmin(s)::text || ':' || pg_snapshot_xmax(s)::text"  \
	" || ':' || coalesce((SELECT string_agg(x::text, ',' ORDER BY x)" \
	" FROM (SELECT generate_series(greatest("                         \
	"pg_snapshot_xmin(s)::text::bigint, (" XMAX ")::text::bigint),"   \
	" pg_snapshot_xmax(s)::text::bigint - 1) AS x UNION ALL"          \
	" SELECT u::text::bigint FROM unnest(" XIP ") u"                  \
	" WHERE u >= pg_snapshot_xmin(s) AND u < pg_snapshot_xmax(s)"     \
	" AND u < " XMAX ") c WHERE NOT EXISTS"                           \
	" (SELECT FROM events e WHERE e.transaction_id = x::text::xid8)"  \
	" AND pg_xact_status(x::text::xid8) <> 'aborted'), '') END"       \
	" FROM pg_current_snapshot() s)"
#define ES_SQL_SNAPSHOT ES_SQL_SNAPSHOT_DONE("NULL::xid8", "NULL::xid8[]")

struct es_buf; /* es_buf.h */

/* The stream's current version, 0 when it has no events. */
int es_stream_version(PGconn *db, const char *stream_id, long long *version,
		      struct es_error *err);

/*
 * Append to `out` the events of `stream_id` with versions >= from_version,
 * ascending, at most `limit` (1..ES_READ_LIMIT_MAX) of them.
 * On failure `out` is as it was.
 * ownership: caller frees `out` with es_events_release().
 */
int es_read_stream(PGconn *db, const char *stream_id, long long from_version,
		   size_t limit, struct es_events *out, struct es_error *err);

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
 * (es_append_batch() sees to that for its own appends).
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
 * es_read_forward() on a hot standby with `done`: a snapshot of its
 * primary that the read's snapshot is known to postdate (the standby had
 * replayed the primary's WAL as of `done` before this call), so that the
 * running transactions the read lists leave out those finished in `done`
 * (ES_SQL_SNAPSHOT_DONE). NULL: es_read_forward().
 */
int es_read_forward_done(PGconn *db, const struct es_cursor *after,
			 size_t limit, const struct es_snapshot *done,
			 struct es_events *out, struct es_cursor *next,
			 struct es_error *err);

/*
 * The text of this statement's snapshot (ES_SQL_SNAPSHOT_DONE with `done`,
 * see es_read_forward_done(); NULL: ES_SQL_SNAPSHOT), or NULL with `err`.
 * In a REPEATABLE READ transaction, the transaction's.
 * ownership: caller frees.
 */
char *es_read_snapshot(PGconn *db, const struct es_snapshot *done,
		       struct es_error *err);

/*
 * Whether the log holds an event of a transaction visible in `to` but
 * not in `from`: *any 1 or 0. A reader at `from` then holds every event a
 * reader at `to` holds when *any is 0 and `to` covers `from` (the
 * transactions between them wrote no event). Call it on the session whose
 * read gave `to`, after that read: its snapshot must see every
 * transaction `to` sees finished (on a hot standby es_read_forward_done()
 * makes sure of that). -1 with `err` when the statement fails.
 */
int es_read_any_between(PGconn *db, const struct es_snapshot *from,
			const struct es_snapshot *to, int *any,
			struct es_error *err);

/* An LSN's text ("16/B374D848") as a number; 0 when it is not one. */
uint64_t es_lsn_value(const char *s);

/*
 * pg_last_wal_replay_lsn() on `db` into *lsn: 1 on a hot standby, 0 on a
 * primary (nothing replayed), -1 when the statement failed. A read whose
 * snapshot is taken later on the same session may use a primary's
 * snapshot as `done` (es_read_forward_done()) when *lsn is at or past
 * the insert LSN read after it.
 */
int es_replay_lsn(PGconn *db, uint64_t *lsn);

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

/* es_read_forward_json() with `done`, as es_read_forward_done(). */
int es_read_forward_json_done(PGconn *db, const struct es_cursor *after,
			      size_t limit, const struct es_snapshot *done,
			      struct es_buf *out, size_t *n,
			      struct es_cursor *next, struct es_error *err);

#endif
