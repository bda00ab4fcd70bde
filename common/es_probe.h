/* es_probe.h - GET /health and GET /ready, the same on both services. */
#ifndef ES_PROBE_H
#define ES_PROBE_H

#include <libpq-fe.h>
#include <pthread.h>
#include <stdatomic.h>

#include "es_http.h"

/*
 * The readiness check's own database connection: opened on the first
 * /ready, reset when broken, one check at a time (a probe that finds the
 * lock taken answers with the last result rather than wait for it).
 */
struct es_probe {
	const char *conninfo; /* borrowed */
	pthread_mutex_t lock; /* guards db */
	PGconn *db;
	atomic_int ready; /* the last check's answer */
};

/* ownership: borrows `conninfo`, which must outlive the probe. */
void es_probe_init(struct es_probe *p, const char *conninfo);

/* Close the connection. */
void es_probe_release(struct es_probe *p);

/* GET /health: 200 {"status":"ok"} while the process serves at all. */
void es_probe_health(struct es_request *req);

/*
 * GET /ready: 200 {"status":"ready"} when the database answers and its
 * schema is current (es_db_check_ready()), else 503 problem+json with
 * Retry-After. Never fails the process: the service stays up and turns
 * ready when the database does.
 */
void es_probe_ready(struct es_probe *p, struct es_request *req);

#endif
