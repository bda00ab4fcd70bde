/*
 * qry_status.h - GET /status, and the snapshot of every view's status
 * that GET /metrics (qry_metrics.h) reads too.
 */
#ifndef QRY_STATUS_H
#define QRY_STATUS_H

#include <libpq-fe.h>
#include <stddef.h>

#include "qry_read.h"
#include "qry_state.h"

/* A copy of one view's status, taken under st->lock, and its lag. */
struct qry_status_view {
	struct qry_view_status s; /* pos deep-copied */
	char *token; /* s.pos as a read token, or NULL */
	long long lag_events, lag_ms;
	int lag_known;
};

/*
 * Copy every view's status (`n` of them) and the role; with `db` (the
 * event store, may be NULL) also each view's lag. NULL when out of
 * memory. ownership: caller frees with qry_status_snap_free().
 */
struct qry_status_view *qry_status_snap(struct qry_state *st, PGconn *db,
					size_t *n, int *leader,
					long long *epoch);
void qry_status_snap_free(struct qry_status_view *v, size_t n);

/* GET /status (qry_read.h); its statements include the lag's. */
extern const struct qry_read_def qry_status_read;

#endif
