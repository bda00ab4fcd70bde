/*
 * qry_checkpoint.h - the rows of projection_checkpoints: where each
 * projected view stands in the log, and whether a malformed event stopped
 * it. Shared by the projector (qry_tail.c) and rebuilds (qry_rebuild.c).
 */
#ifndef QRY_CHECKPOINT_H
#define QRY_CHECKPOINT_H

#include <libpq-fe.h>

#include "es_error.h"
#include "es_token.h"

/* Most views a checkpoint table is read for. */
#define QRY_CHECKPOINT_SLOTS 8

struct qry_checkpoint {
	char view[32];
	char *text; /* position exactly as stored (compare-and-set key) */
	struct es_cursor pos; /* parsed */
	long long epoch;
	long long applied;
	char *stopped_error; /* NULL while the view is healthy */
	long long stopped_position; /* -1 when unknown */
};

/*
 * Insert a checkpoint at the beginning of the log for every view of
 * view_all[] that has none (in autocommit mode or the caller's
 * transaction). ownership: borrows `db`.
 */
int qry_checkpoint_ensure(PGconn *db, struct es_error *err);

/*
 * Read the checkpoints of the views of view_all[] into `out` (room for
 * `max`), in view_all[] order, and set `*n`. A view without a row is
 * missing from `out`. With `for_update`, the rows are locked (inside the
 * caller's transaction). A position that does not parse is ES_EINTERNAL.
 * ownership: caller frees each with qry_checkpoint_release(); nothing to
 * free on failure.
 */
int qry_checkpoint_load(PGconn *db, int for_update, struct qry_checkpoint *out,
			size_t max, size_t *n, struct es_error *err);

/* Free what `c` owns and zero it. */
void qry_checkpoint_release(struct qry_checkpoint *c);

#endif
