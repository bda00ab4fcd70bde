/*
 * view.h - the registry of the views, and what every projected view
 * provides: a pure fold of events into pending row changes (a batch),
 * and how to write a batch. A view is one file of views/: its fold, its
 * flush, and its routes' read code; adding one touches that file, the
 * registry (view.c) and a migration.
 *
 * The projector reads events in the tailing order, calls apply() for each
 * event the view has not yet seen, then flush() inside the transaction
 * that also moves the view's checkpoint: a crash anywhere loses nothing
 * and applies nothing twice.
 */
#ifndef VIEW_H
#define VIEW_H

#include <libpq-fe.h>
#include <stdint.h>

#include "es_error.h"
#include "es_store.h"

struct es_buf; /* es_buf.h */

struct view_ops {
	const char *name; /* "accounts", "statement", "daily", "audit" */

	/*
	 * The fold reads the events' metadata (ev->metadata), of every
	 * stream: a rebuild of this view reads that column too.
	 */
	int metadata;
	/*
	 * With `metadata`, optionally: a member of the metadata's top level
	 * (a plain lower-case name) without which the fold finds nothing in
	 * it, so that a rebuild reads the metadata of the events that have
	 * it only (NULL: of every event).
	 */
	const char *metadata_key;

	/* A new, empty batch. ownership: caller frees with batch_free(). */
	void *(*batch_new)(void);
	void (*batch_free)(void *batch);

	/*
	 * Fold `ev` into the batch (pure: no I/O). Events of other streams or
	 * unknown types are skipped (return 0). A payload the view cannot
	 * apply is -1 with ES_EINVALID and a detail naming the field; the
	 * batch is left as it was (the event is read whole before anything
	 * changes), and the caller parks the event's stream for the view
	 * (qry_parked.h) and goes on with the other streams. No view needs
	 * the event's xid or event_id (audit's compares the xid with
	 * batch_resume()'s): a rebuild passes them as 0 and "". Its
	 * metadata only a view with `metadata` set reads; a rebuild of
	 * none of those passes NULL.
	 * ownership: borrows `ev`; copies what it keeps.
	 */
	int (*apply)(void *batch, const struct es_event *ev,
		     struct es_error *err);

	/*
	 * Optional: the events folded next (until the next call) were read
	 * after a read that stopped inside transaction `xid`, whose earlier
	 * events an earlier batch may hold; 0 when the read did not stop
	 * inside one, or nobody knows (a rebuild).
	 */
	void (*batch_resume)(void *batch, uint64_t xid);

	/* Events folded into the batch since batch_new(). */
	long (*batch_size)(const void *batch);

	/*
	 * Rows the batch holds, what its memory grows with (for the accounts
	 * view, the accounts it has seen). A rebuild keeps one batch of a
	 * view without copy_rows() across the whole log and writes it out
	 * only when this grows large.
	 */
	long (*batch_rows)(const void *batch);

	/*
	 * Write the batch's changes to the view's tables, inside the
	 * caller's open transaction, in as few statements as possible
	 * (multi-row statements or COPY). `suffix` is appended to every table
	 * name: "" for the live tables, "_rebuild" for a rebuild's shadow.
	 */
	int (*flush)(void *batch, PGconn *db, const char *suffix,
		     struct es_error *err);

	/*
	 * Optional, for a view of one table whose flush only appends rows
	 * (never reads, updates or deletes one): the table's columns that
	 * copy_rows() fills, and copy_rows() itself, which adds the batch's
	 * rows to `out` in COPY binary format, without header or trailer
	 * (see bulk.h). A rebuild streams the whole log through one COPY
	 * <table>_rebuild (copy_columns) FROM STDIN (FORMAT binary, FREEZE)
	 * into a shadow created without indexes in the same transaction, and
	 * indexes it afterwards (view_shadow_index()). NULL for a view whose
	 * flush needs the table's keys.
	 * ownership: borrows everything.
	 */
	const char *copy_columns;
	int (*copy_rows)(const void *batch, struct es_buf *out,
			 struct es_error *err);

	/*
	 * The tables the view owns, NULL-terminated; for a rebuild's shadow
	 * tables (CREATE TABLE x_rebuild (LIKE x INCLUDING ALL)) and swap.
	 */
	const char *const *tables;
};

/* The projected views, in the order they are applied. */
extern const struct view_ops *const view_all[];
extern const size_t view_count;

/* The view named `name`, or NULL. */
const struct view_ops *view_find(const char *name);

/*
 * The GET routes the views serve, each read by the code of its view
 * (parameters, SQL, rendering: a struct qry_read_def of qry_read.h);
 * qry_routes.c puts them in its table.
 */
struct qry_read_def;
struct view_route {
	const char *pattern; /* as es_route.pattern */
	const struct qry_read_def *read;
	unsigned int roles; /* who may read it: es_route.roles */
};

#define VIEW_ROUTES_MAX 8
extern const struct view_route view_routes[];
extern const size_t view_nroutes;

#endif
