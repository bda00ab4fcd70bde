/*
 * qry_rebuild.h - rebuild views from the beginning of the log into shadow
 * tables (<table>_rebuild) while the live ones keep serving, then swap
 * them in, with their checkpoints, in one transaction. qry_rebuild() (in
 * qry_tail.h) is the `query-service rebuild [view]` entry point.
 */
#ifndef QRY_REBUILD_H
#define QRY_REBUILD_H

#include "es_error.h"
#include "qry_tail.h"

struct qry_rebuild_stats {
	long long events; /* events read from the log */
	double seconds; /* from the first read to the commit of the swap */
	double swap_seconds; /* the swap transaction alone */
};

/*
 * Rebuild the views named in `views` (NULL-terminated; NULL: every view),
 * as qry_rebuild() describes, and fill `stats` (may be NULL).
 * ownership: borrows everything.
 */
int qry_rebuild_views(const struct qry_tail_config *cfg,
		      const char *const *views, struct qry_rebuild_stats *stats,
		      struct es_error *err);

#endif
