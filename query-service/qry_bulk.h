/*
 * qry_bulk.h - steps 1 and 2 of `query-service rebuild` (qry_rebuild.c):
 * create the shadow tables <table>_rebuild of the views being rebuilt and
 * fill them from one snapshot of the log.
 *
 * A reader thread (qry_feed.h) streams every event visible in one
 * REPEATABLE READ snapshot into chunks of events, in the table's physical
 * order (cheap) or in position order; this thread puts physical-order
 * events back in position order through a reorder window (qry_order.h)
 * and folds each event into every view:
 * - a view with copy_rows() (rows only ever appended: the statement) gets
 *   a new batch per chunk, streamed through one COPY into a shadow that
 *   its own session created, without indexes, in the one transaction
 *   that loads it all (COPY FREEZE); committed, it is then indexed by
 *   that session and a second one side by side (one index each, the
 *   primary key attached afterwards) while the kept batches below are
 *   written: sorted index builds cost a fraction of row-by-row index
 *   inserts;
 * - any other view (rows keyed and updated: accounts, daily) keeps one
 *   batch across the chunks, as big as the view itself rather than as the
 *   log, written when it grows big and at the end.
 * Sessions that write shadows run with synchronous_commit off: a crash
 * only means running the rebuild again.
 */
#ifndef QRY_BULK_H
#define QRY_BULK_H

#include <libpq-fe.h>
#include <stddef.h>

#include "es_buf.h"
#include "es_error.h"
#include "es_store.h"
#include "es_token.h"
#include "qry_parked.h"
#include "views/view.h"

/* The shadow of table t is named t QRY_SHADOW_SUFFIX. */
#define QRY_SHADOW_SUFFIX "_rebuild"
/* Longest name of a view's table, in bytes. */
#define QRY_TABLE_MAX 64

/* A view being rebuilt: zeroed, with `ops` set, before the first load. */
struct qry_bulk_view {
	const struct view_ops *ops;
	void *batch; /* changes not yet written; caller frees with ops */
	/* with ops->copy_rows: the session streaming rows into its shadow */
	PGconn *load;
	struct es_buf rows;
	/* while its indexes build: a second session, and what they are */
	PGconn *aux;
	PGresult *plan;
	struct qry_parked parked; /* streams parked; caller releases */
};

/*
 * Create the shadows of the views `vs` and fill them with one snapshot of
 * the log of `write_url`, read in position order with `ordered`, else in
 * the table's physical order; the kept batches written on `rd` (a session
 * of `read_url`), the copied shadows indexed and committed by sessions of
 * their own (two each while indexing). `s` becomes that snapshot as a read
 * cursor; `events` grows by the events read. 0; 1 when the physical order was
 * too far from position order (nothing done: call again, ordered); -1 with
 * `err` set. ownership: borrows everything; `s` is released and replaced; the
 * caller frees each vs[i].batch with vs[i].ops->batch_free().
 */
int qry_bulk_load(const char *write_url, const char *read_url, PGconn *rd,
		  struct qry_bulk_view *vs, size_t nv, int ordered,
		  struct es_cursor *s, long long *events, struct es_error *err);

/*
 * Fold `ev` into `batch` of `ops`, unless `parked` holds its stream. An
 * event the view cannot apply parks its stream in `parked`, as the
 * projector does (guarantee 6). -1 with `err` only for what is not the
 * event's fault.
 * ownership: borrows everything.
 */
int qry_bulk_apply(const struct view_ops *ops, void *batch,
		   struct qry_parked *parked, const struct es_event *ev,
		   struct es_error *err);

/* CLOCK_MONOTONIC in seconds, the clock of the rebuild's timings. */
double qry_bulk_seconds(void);

#endif
