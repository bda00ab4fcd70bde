/*
 * qry_routes.h - the GET routes of the query service (SPEC section 6):
 * the views, the raw log, /status, /metrics, /health and /ready.
 *
 * GET /accounts/{id} is answered on the HTTP thread from the in-memory
 * view (qry_memory.h), without the database. Every other route that reads
 * a database suspends its request and hands it to a read worker
 * (qry_readpool.h), which answers it with one statement that reads the
 * rows and the view's checkpoint together, so X-Position is never older
 * than what the rows show.
 *
 * Read-your-writes: X-Min-Position (or ?min_position=) takes an append or
 * a read token; X-Wait-Ms (default 2000) an integer in [0, 10000], else
 * 400. A request whose view has not passed the token is parked in
 * qry_state (no thread held) until it has (then answered) or the wait is
 * over (503 with Retry-After: 1). /streams and /events read the log
 * itself at the time of the request: there the token is only checked.
 */
#ifndef QRY_ROUTES_H
#define QRY_ROUTES_H

#include <libpq-fe.h>
#include <stddef.h>

#include "es_error.h"
#include "es_http.h"
#include "qry_memory.h"
#include "qry_readpool.h"
#include "qry_state.h"

/* What the routes reach through es_request.ctx. */
struct qry_ctx {
	struct qry_state *st; /* borrowed */
	struct qry_memory *mem; /* borrowed */
	struct qry_readpool *pool; /* borrowed */
	struct es_http *_Atomic http; /* for /metrics, once it runs */
};

extern const struct es_route qry_routes[];
extern const size_t qry_nroutes;

/*
 * Prepare the routes' statements on a new read worker connection (its
 * qry_readpool_config.on_connect).
 */
int qry_routes_prepare(PGconn *db, enum qry_db which, struct es_error *err);

#endif
