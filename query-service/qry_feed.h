/*
 * qry_feed.h - reading the whole event log fast, for rebuilds: a thread
 * of its own streams every event visible in one REPEATABLE READ snapshot
 * through one COPY ... TO STDOUT (FORMAT binary) into chunks of events,
 * a few chunks ahead of the caller, who folds them and gives them back
 * for reuse.
 *
 * Only what views read is read: an event's xid, event_id and data stay
 * 0, "" and NULL (see view_ops.apply), its metadata too unless asked
 * for. Its payload is what view_payload_decode() gives (only the streams
 * the views fold are decoded), parsed by qry_json_load().
 */
#ifndef QRY_FEED_H
#define QRY_FEED_H

#include <stddef.h>

#include "es_error.h"
#include "es_read.h"

/* Events per chunk. */
#define QRY_FEED_CHUNK 4096

/*
 * A chunk: events whose strings and data the chunk owns (never
 * es_events_release() or json_decref() them); valid until given back.
 */
struct qry_feed_chunk {
	struct es_events evs;
	size_t pending; /* free for the caller: events not yet done */
	struct qry_feed_chunk *next; /* free for the caller while it holds it */
};

struct qry_feed;

/*
 * Start reading the events table of `url` in a new thread and session:
 * with `ordered`, in position order (an index scan); else in the table's
 * physical order (a sequential scan, through the small ring of buffers
 * PostgreSQL gives big scans: far cheaper, but the order of the rows as
 * they lie in the table). With `metadata`, each event's metadata text
 * is read too (for a view_ops with `metadata` set); with `metadata_key`
 * too (a plain lower-case name), only of the events whose metadata has
 * that member at its top level, the others' being NULL. ownership: borrows
 * `url` and `metadata_key` (must outlive the feed); caller ends it with
 * qry_feed_finish().
 * NULL with ES_EINTERNAL when the thread cannot start.
 */
struct qry_feed *qry_feed_start(const char *url, int ordered, int metadata,
				const char *metadata_key, struct es_error *err);

/*
 * The next chunk, in the order read, or NULL at the end and when the
 * reader failed (qry_feed_finish() says which). ownership: give it back
 * with qry_feed_give_back().
 */
struct qry_feed_chunk *qry_feed_next(struct qry_feed *f);

/* Hand back a chunk of qry_feed_next(): its events are gone. */
void qry_feed_give_back(struct qry_feed *f, struct qry_feed_chunk *c);

/*
 * Stop the reader (if still reading), join it and free the feed with its
 * chunks (given back or not). 0, or -1 with the reader's error (the
 * server's, ES_EUNAVAIL, ES_EINTERNAL for an unreadable event). With
 * `snapshot` (may be NULL): the snapshot read, as pg_current_snapshot()
 * text, or NULL if the read never began; caller frees it with free().
 * NULL is a no-op.
 */
int qry_feed_finish(struct qry_feed *f, char **snapshot, struct es_error *err);

/*
 * A copy of `src` (an event of a chunk) that outlives the chunk, made with
 * malloc(). 0, or -1 when out of memory. ownership: caller frees `dst`
 * with qry_feed_event_release().
 */
int qry_feed_event_copy(struct es_event *dst, const struct es_event *src);
void qry_feed_event_release(struct es_event *e);

#endif
