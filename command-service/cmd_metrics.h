/*
 * cmd_metrics.h - the command service's own counters, and GET /metrics.
 *
 * The counters are process-wide atomics, like Redis's stat_* fields: a
 * route bumps them from whichever thread it runs on, with no context to
 * pass around and no lock. Metrics are the one place where the service
 * keeps global state; configuration never is.
 */
#ifndef CMD_METRICS_H
#define CMD_METRICS_H

#include <stdio.h>

#include "cmd_pool.h"

struct es_http;

/*
 * `n` events of type `event_type` were committed. The account types of
 * es_event.h are counted each under their name; any other type (raw
 * appends carry what the client chose) counts under "other", so that the
 * label stays bounded.
 */
void cmd_metrics_appended(const char *event_type, long n);

/* One append transaction committed (of one or more events, streams). */
void cmd_metrics_append(void);

/* es_append() reported a version conflict (ES_ECONFLICT from the store). */
void cmd_metrics_conflict(void);

/* A command went back to load-decide-append after a conflict. */
void cmd_metrics_retry(void);

/* A request was answered from a stored Idempotency-Key response. */
void cmd_metrics_replay(void);

/*
 * A command request was answered with HTTP `status`. `command` is one of
 * "open", "deposit", "withdraw", "transfer", "close", "append" (raw
 * append); anything else counts as "other". The outcome label comes from
 * the status: 2xx "accepted"; 404, 409, 412 "rejected" (decided against
 * the state); other 4xx "invalid"; 503 "unavailable"; else "error".
 * A replay counts as its stored status, plus cmd_metrics_replay().
 */
void cmd_metrics_command(const char *command, unsigned int status);

/*
 * The pool answered a job with reject(), or refused a submit, for `why`
 * (cmd_pool.h): counted as "queue_full", "timeout", "unavailable" (no
 * database connection) or "stopping". main.c makes it the pool's
 * on_reject hook.
 */
void cmd_metrics_pool_reject(enum cmd_pool_reject why);

/* Set every counter back to zero (for tests). */
void cmd_metrics_reset(void);

/*
 * Write everything in Prometheus text format (version 0.0.4), with HELP
 * and TYPE lines: the counters above, the gauges of `pool` (size, in
 * use, waiting, connected; skipped when NULL) and es_http_metrics_write()
 * of `http` (skipped when NULL). Returns 0, or -1 when writing failed.
 * ownership: borrows everything.
 */
int cmd_metrics_write(FILE *out, struct cmd_pool *pool,
		      const struct es_http *http);

#endif
