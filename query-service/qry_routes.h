/*
 * qry_routes.h - the GET routes of the query service (SPEC section 6):
 * the views' (views/view.c), the raw log, /status (qry_status.h),
 * /metrics (qry_metrics.h), /health and /ready.
 *
 * GET /accounts/{id} is answered on the HTTP thread from the in-memory
 * view (qry_memory.h), without the database; with a read-your-writes
 * token it has not passed, the request is parked in qry_state until it
 * has. Every other route that reads a database runs through qry_read.h:
 * a read worker answers it with one statement that reads the rows and
 * the view's checkpoint together, so X-Position is never older than what
 * the rows show. /streams and /events read the log itself at the time
 * of the request: there the token is only checked.
 */
#ifndef QRY_ROUTES_H
#define QRY_ROUTES_H

#include <libpq-fe.h>
#include <stddef.h>

#include "es_error.h"
#include "es_router.h"
#include "qry_read.h"
#include "qry_readpool.h"

/*
 * The route table, `n` rows; es_request.ctx must be a struct qry_ctx.
 * Built on the first call: make it before the read workers start.
 * ownership: static.
 */
const struct es_route *qry_routes(size_t *n);

/*
 * Prepare the routes' statements on a new read worker connection (its
 * qry_readpool_config.on_connect).
 */
int qry_routes_prepare(PGconn *db, enum qry_db which, struct es_error *err);

#endif
