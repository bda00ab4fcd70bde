/*
 * main.c - the command service: accepts commands over HTTP, decides them
 * against the current state of their aggregate, appends events.
 *
 * main() reads the configuration, starts the connection pool, then the
 * HTTP server with the command routes (cmd_routes.h) and its own
 * /health, /ready and /metrics. On SIGTERM or SIGINT it drains the HTTP
 * server (no new connections; requests in flight, those waiting in the
 * pool included, may finish within SHUTDOWN_GRACE_MS; those still
 * queued then are answered 503), cancels the pool (its queue is dropped,
 * the statements running are cancelled; the rounds running end with
 * their true answers), waits STOP_WAIT_MS at most for its workers, stops
 * the HTTP server (a command whose worker is still stuck in the database
 * is answered 504, outcome unknown), and exits 0. Stuck threads are left
 * running, with what they use, and the process ends at once (_exit()).
 */
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cmd_metrics.h"
#include "cmd_notify.h"
#include "cmd_pool.h"
#include "cmd_routes.h"
#include "cmd_runner.h"
#include "es_array.h"
#include "es_config.h"
#include "es_http.h"
#include "es_log.h"
#include "es_probe.h"
#include "es_service.h"

#define PROG		 "command-service"
#define POOL_MIN	 2
#define POOL_DEFAULT_MAX 32
/*
 * After the grace period, how long the rounds still running (their
 * statements cancelled) may take to end, and the notifier its NOTIFY.
 */
#define STOP_WAIT_MS   3000
#define NOTIFY_WAIT_MS 1000

#define METRICS_TYPE "text/plain; version=0.0.4; charset=utf-8"

struct cmd_config {
	const char *database_url;
	const char *log_level;
	long shutdown_grace_ms;
	long pool_size;
	long queue_max;
	long queue_timeout_ms;
	long statement_timeout_ms;
	long retries;
	long batch_max;
	int notify;
	struct es_http_config http;
	struct es_auth_config auth;
};

/* main.c's own state, reached from its routes through cmd_ctx.ops. */
struct ops {
	struct es_probe probe;
	struct es_http *_Atomic http; /* set once the server runs */
};

static struct ops *ops_of(struct es_request *req)
{
	struct cmd_ctx *ctx = req->ctx;

	return ctx->ops;
}

static void ready(struct es_request *req)
{
	es_probe_ready(&ops_of(req)->probe, req);
}

static void metrics(struct es_request *req)
{
	struct cmd_ctx *ctx = req->ctx;
	struct es_error err = ES_ERROR_INIT;
	char *text = NULL;
	size_t len = 0;
	FILE *out;
	int rc;

	out = open_memstream(&text, &len);
	if (!out) {
		es_error_set(&err, ES_EINTERNAL, "cannot write the metrics");
		es_http_send_problem(req, &err);
		return;
	}
	rc = cmd_metrics_write(out, ctx->pool, atomic_load(&ops_of(req)->http));
	if (fclose(out) != 0 || rc < 0) {
		es_error_set(&err, ES_EINTERNAL, "cannot write the metrics");
		es_http_send_problem(req, &err);
	} else {
		es_http_send_text(req, 200, METRICS_TYPE, text, len);
	}
	free(text);
}

static const struct es_route own_routes[] = {
	{ "GET", "/health", es_probe_health, ES_ROUTE_PUBLIC, NULL, 0 },
	{ "GET", "/ready", ready, ES_ROUTE_PUBLIC, NULL, 0 },
	{ "GET", "/metrics", metrics, 0, NULL, ES_ROLE_OPERATOR },
};

/*
 * Our routes, then the command routes. ownership: caller frees with
 * free().
 */
static struct es_route *all_routes(size_t *n)
{
	size_t own = ARRAY_SIZE(own_routes);
	struct es_route *r = calloc(own + cmd_nroutes, sizeof(*r));

	if (!r)
		return NULL;
	memcpy(r, own_routes, sizeof(own_routes));
	memcpy(r + own, cmd_routes, cmd_nroutes * sizeof(*r));
	*n = own + cmd_nroutes;
	return r;
}

/*
 * DB_POOL_SIZE 0: two connections per CPU this process may run on (its
 * affinity, as for the HTTP threads), at least POOL_MIN and at most
 * POOL_DEFAULT_MAX. Each connection carries one group-commit round at a
 * time; rounds beyond what the CPUs can decide and answer only split the
 * queue into smaller batches, and a batch's fixed cost (its statement,
 * its commit) is the dearer part of a small one. The cap keeps a big
 * machine's default inside PostgreSQL's defaults: COMMIT_BATCH_MAX (64)
 * x 3 stream locks x 32 connections is 6,144 of the lock table's 6,400,
 * and 32 of max_connections' 100.
 */
static long pool_size(long configured)
{
	long n = configured;

	if (n <= 0) {
		n = 2 * es_http_cpus();
		if (n > POOL_DEFAULT_MAX)
			n = POOL_DEFAULT_MAX;
	}
	return n < POOL_MIN ? POOL_MIN : n;
}

int main(int argc, char **argv)
{
	struct cmd_config c = { 0 };
	const struct es_config_var vars[] = {
		{ "DATABASE_URL", ES_CONFIG_STR, &c.database_url, NULL, 0, 0,
		  "PostgreSQL URI or conninfo of the event store" },
		ES_HTTP_CONFIG_VARS(&c.http, "8081"),
		ES_AUTH_CONFIG_VARS(&c.auth),
		{ "DB_POOL_SIZE", ES_CONFIG_INT, &c.pool_size, "0", 0, 1000,
		  "database connections, 0 for two per CPU we may run on (2 to 32)" },
		{ "DB_QUEUE_MAX", ES_CONFIG_INT, &c.queue_max, "1024", 1,
		  1000000,
		  "commands waiting for a connection at most (else 503)" },
		{ "DB_QUEUE_TIMEOUT_MS", ES_CONFIG_INT, &c.queue_timeout_ms,
		  "5000", 1, 600000,
		  "a command waiting longer for a connection gets 503" },
		{ "DB_STATEMENT_TIMEOUT_MS", ES_CONFIG_INT,
		  &c.statement_timeout_ms, "5000", 0, 3600000,
		  "statement_timeout of every connection, 0 for none" },
		{ "COMMAND_RETRIES", ES_CONFIG_INT, &c.retries, "30", 1, 1000,
		  "load-decide-append attempts of a command on version conflicts" },
		{ "COMMIT_BATCH_MAX", ES_CONFIG_INT, &c.batch_max, "64", 1,
		  100000,
		  "commands a worker decides and commits together in one transaction at most" },
		{ "NOTIFY_EVENTS", ES_CONFIG_BOOL, &c.notify, "true", 0, 0,
		  "send NOTIFY tandem_events after appends (coalesced, outside them)" },
		{ "SHUTDOWN_GRACE_MS", ES_CONFIG_INT, &c.shutdown_grace_ms,
		  "5000", 0, 600000,
		  "on SIGTERM, how long in-flight requests may take" },
		{ "LOG_LEVEL", ES_CONFIG_STR, &c.log_level, "info", 0, 0,
		  "debug, info, warn, error or off" },
	};
	struct es_error err = ES_ERROR_INIT;
	struct cmd_pool_config pool_cfg = { 0 };
	struct cmd_ctx ctx = { 0 };
	struct ops ops = { 0 };
	struct es_route *routes = NULL;
	struct es_http *h = NULL;
	size_t nroutes = 0;
	sigset_t stop;
	int status;
	int sig = 0, ret = 1;
	long stuck = 0;

	routes = all_routes(&nroutes);
	if (!routes) {
		fprintf(stderr, "%s: out of memory\n", PROG);
		return 1;
	}
	if (es_service_configure(
		    argc, argv, PROG,
		    "Accepts commands over HTTP and appends events.", vars,
		    ARRAY_SIZE(vars), routes, nroutes, &c.http.port,
		    &c.log_level, &status) < 0) {
		free(routes);
		return status;
	}
	/* a database that does not answer must not hold a worker for long */
	setenv("PGCONNECT_TIMEOUT", "3", 0);

	es_service_block_signals(&stop);
	es_probe_init(&ops.probe, c.database_url);
	c.http.auth = es_service_auth(&c.auth, &err);
	if (!c.http.auth)
		goto out;
	atomic_init(&ops.http, NULL);
	ctx.retries = c.retries;
	ctx.ops = &ops;
	if (cmd_ctx_init(&ctx, &err) < 0)
		goto out;
	pool_cfg.conninfo = c.database_url;
	pool_cfg.size = pool_size(c.pool_size);
	pool_cfg.queue_max = c.queue_max;
	pool_cfg.queue_timeout_ms = c.queue_timeout_ms;
	pool_cfg.statement_timeout_ms = c.statement_timeout_ms;
	pool_cfg.on_connect = cmd_runner_prepare;
	pool_cfg.on_connect_arg = &ctx;
	pool_cfg.run_batch = cmd_runner_run;
	pool_cfg.run_batch_arg = &ctx;
	pool_cfg.batch_max = c.batch_max;
	pool_cfg.on_reject = cmd_metrics_pool_reject;
	ctx.pool = cmd_pool_start(&pool_cfg, &err);
	if (!ctx.pool)
		goto out;
	if (c.notify) {
		ctx.notify = cmd_notify_start(c.database_url, &err);
		if (!ctx.notify)
			goto out;
	}
	h = es_http_start(&c.http, routes, nroutes, &ctx, &err);
	if (!h)
		goto out;
	atomic_store(&ops.http, h);
	es_log(ES_LOG_INFO, "listening", "{s:s, s:i, s:s, s:i, s:i}",
	       "bind_address", c.http.bind_address, "port",
	       (int)es_http_port(h), "version", TANDEM_VERSION, "db_pool_size",
	       (int)pool_cfg.size, "commit_batch_max", (int)pool_cfg.batch_max);

	sig = es_service_wait(&stop, c.http.auth);
	es_log(ES_LOG_INFO, "stopping", "{s:s, s:i}", "signal",
	       sig == SIGINT ? "SIGINT" : "SIGTERM", "in_flight",
	       (int)es_http_in_flight(h));
	es_http_drain(h, (int)c.shutdown_grace_ms);
	/*
	 * The requests still queued in the pool were answered 503 when the
	 * grace period ran out: their commands must not run after that. The
	 * rounds running took theirs (es_http_take()) and answer them
	 * truly; cancelling their statements makes them end sooner.
	 */
	cmd_pool_cancel(ctx.pool);
	stuck = cmd_pool_join(ctx.pool, STOP_WAIT_MS);
	if (stuck)
		es_log(ES_LOG_WARN, "workers_abandoned", "{s:i, s:s}",
		       "workers", (int)stuck, "why",
		       "stuck in the database after their statements were "
		       "cancelled; their commands are answered 504");
	es_http_stop(h, 0);
	atomic_store(&ops.http, NULL); /* no handler runs any more */
	/* (a stuck worker may still poke the notifier) */
	if (!stuck && !cmd_notify_stop(ctx.notify, NOTIFY_WAIT_MS)) {
		es_log(ES_LOG_WARN, "notifier_abandoned", NULL);
		stuck++;
	}
	if (stuck) {
		/* the stuck threads still use the pool, the cache, libpq */
		es_log(ES_LOG_INFO, "stopped", NULL);
		_exit(0);
	}
	ctx.notify = NULL;
	ret = 0;
out:
	if (ret) {
		es_log(ES_LOG_ERROR, "start_failed", "{s:s}", "error",
		       err.detail);
		fprintf(stderr, "%s: %s\n", PROG, err.detail);
	}
	/* after the server, so that nothing submits jobs any more */
	cmd_pool_stop(ctx.pool);
	cmd_notify_stop(ctx.notify, NOTIFY_WAIT_MS);
	cmd_ctx_release(&ctx);
	es_probe_release(&ops.probe);
	es_auth_free(c.http.auth);
	free(routes);
	es_error_release(&err);
	if (!ret)
		es_log(ES_LOG_INFO, "stopped", NULL);
	return ret;
}
