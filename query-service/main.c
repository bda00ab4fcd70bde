/*
 * main.c - the query service: tails the event log into views (read
 * models) and serves them over HTTP GET.
 *
 * main() reads the configuration, then starts, in order: the shared
 * state (qry_state.h), the read workers (qry_readpool.h), the in-memory
 * account view (qry_memory.h), the one log reader that feeds it and, as
 * the projector, the table views (qry_tail.h), and the HTTP server with
 * the routes of qry_routes.h. On SIGTERM or SIGINT it stops the HTTP
 * server first (no new connections; requests in flight, parked ones
 * included, may finish within SHUTDOWN_GRACE_MS), answers what is still
 * parked, then stops the workers and the reader, and exits 0.
 *
 * `query-service rebuild [view]` rebuilds one view (or all) from the log
 * into shadow tables and swaps them in (qry_rebuild()), without serving.
 * `query-service parked list` and `parked retry VIEW STREAM` list and
 * retry the streams parked for a view (qry_parked.h).
 */
#include <malloc.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "es_array.h"
#include "es_config.h"
#include "es_http.h"
#include "es_log.h"
#include "es_service.h"
#include "qry_memory.h"
#include "qry_parked.h"
#include "qry_readpool.h"
#include "qry_routes.h"
#include "qry_state.h"
#include "qry_tail.h"
#include "views/view.h"

#define PROG	 "query-service"
#define POOL_MIN 2
/* statement_timeout of the read workers' connections */
#define READ_STATEMENT_TIMEOUT_MS 10000

struct qry_config {
	const char *database_url;
	const char *read_database_url;
	const char *log_database_url;
	const char *log_level;
	long shutdown_grace_ms;
	long batch;
	long poll_ms;
	long leader_retry_ms;
	long read_pool_size;
	long memory_view_max_mb;
	struct es_http_config http;
	struct es_auth_config auth;
};

/* READ_POOL_SIZE 0: as many as HTTP threads, at least POOL_MIN. */
static long read_pool_size(const struct qry_config *c)
{
	long n = c->read_pool_size;

	if (n <= 0)
		n = c->http.threads;
	if (n <= 0)
		n = es_http_cpus();
	return n < POOL_MIN ? POOL_MIN : n;
}

/*
 * `query-service rebuild [view]`: 0 on success, 1 on failure (qry_rebuild()
 * logs its progress).
 */
static int rebuild(const struct qry_tail_config *tc, const char *view)
{
	struct es_error err = ES_ERROR_INIT;
	int ret = 0;

	if (qry_rebuild(tc, view, &err) < 0) {
		fprintf(stderr, "%s: cannot rebuild %s%s%s: %s\n", PROG,
			view ? "'" : "every view", view ? view : "",
			view ? "'" : "", err.detail);
		ret = 1;
	}
	es_error_release(&err);
	return ret;
}

/*
 * `query-service parked list` and `parked retry VIEW STREAM`: 0 on
 * success (a retry that parks the stream again is 2), 1 on failure.
 */
static int parked(const struct qry_tail_config *tc, int argc, char **argv)
{
	struct es_error err = ES_ERROR_INIT;
	const char *rd =
		tc->read_url && *tc->read_url ? tc->read_url : tc->write_url;
	int ret = 1, still = 0;

	if (argc == 1 && strcmp(argv[0], "list") == 0) {
		if (qry_parked_list(rd, &err) == 0)
			ret = 0;
	} else if (argc == 3 && strcmp(argv[0], "retry") == 0) {
		if (qry_parked_retry(tc->write_url, rd, argv[1], argv[2],
				     &still, &err) == 0) {
			fprintf(stderr, "%s: '%s' %s for view '%s'\n", PROG,
				argv[2],
				still ? "is still parked (see parked list)"
				      : "is no longer parked",
				argv[1]);
			ret = still ? 2 : 0;
		}
	} else {
		es_error_set(&err, ES_EINVALID,
			     "usage: parked list | parked retry VIEW STREAM");
	}
	if (ret == 1)
		fprintf(stderr, "%s: parked: %s\n", PROG, err.detail);
	es_error_release(&err);
	return ret;
}

/*
 * glibc gives each thread that allocates an arena of its own (up to 8 per
 * CPU), and each keeps what its thread freed: with the HTTP, read and
 * tail threads that was half of this service's peak RSS (10,000 accounts
 * under GET load: 53.5 MB, 25.5 MB with two arenas). Two, unless the
 * operator set MALLOC_ARENA_MAX (which glibc reads itself).
 */
#define QRY_MALLOC_ARENAS 2

int main(int argc, char **argv)
{
	struct qry_config c = { 0 };
	const struct es_config_var vars[] = {
		{ "DATABASE_URL", ES_CONFIG_STR, &c.database_url, NULL, 0, 0,
		  "PostgreSQL URI or conninfo of the event store" },
		{ "LOG_DATABASE_URL", ES_CONFIG_STR, &c.log_database_url, "", 0,
		  0,
		  "PostgreSQL to read the event log from (may be a hot standby), empty: DATABASE_URL" },
		{ "READ_DATABASE_URL", ES_CONFIG_STR, &c.read_database_url, "",
		  0, 0,
		  "PostgreSQL for views and checkpoints, empty: DATABASE_URL" },
		ES_HTTP_CONFIG_VARS(&c.http, "8082"),
		ES_AUTH_CONFIG_VARS(&c.auth),
		{ "PROJECTOR_BATCH", ES_CONFIG_INT, &c.batch, "2000", 1, 100000,
		  "events read and applied per projector batch" },
		{ "POLL_INTERVAL_MS", ES_CONFIG_INT, &c.poll_ms, "100", 1,
		  60000, "poll the log this often when no NOTIFY comes" },
		{ "LEADER_RETRY_MS", ES_CONFIG_INT, &c.leader_retry_ms, "500",
		  10, 60000,
		  "how often a follower tries to become the leader" },
		{ "READ_POOL_SIZE", ES_CONFIG_INT, &c.read_pool_size, "0", 0,
		  1000,
		  "read workers (and connections) for database-backed GETs, 0: as many as HTTP threads" },
		{ "MEMORY_VIEW_MAX_MB", ES_CONFIG_INT, &c.memory_view_max_mb,
		  "0", 0, 1048576,
		  "cap of the in-memory account view in MiB, 0: none; past it GET /accounts/{id} reads the accounts it does not hold from view_accounts" },
		{ "SHUTDOWN_GRACE_MS", ES_CONFIG_INT, &c.shutdown_grace_ms,
		  "5000", 0, 600000,
		  "on SIGTERM, how long in-flight requests may take" },
		{ "LOG_LEVEL", ES_CONFIG_STR, &c.log_level, "info", 0, 0,
		  "debug, info, warn, error or off" },
	};
	struct es_error err = ES_ERROR_INIT;
	struct qry_readpool_config pool_cfg = { 0 };
	struct qry_tail_config tail_cfg = { 0 };
	struct qry_state st;
	struct qry_ctx ctx = { 0 };
	struct qry_tail *tail = NULL;
	struct es_http *h = NULL;
	const char *rebuild_view = NULL;
	int rebuilding = 0, state_up = 0, sig = 0, ret = 1, nparked = -1;
	char **parked_args = NULL;
	const char **view_names = NULL;
	const struct es_route *routes;
	size_t nroutes;
	sigset_t stop;
	int status;
	size_t i;

	if (!getenv("MALLOC_ARENA_MAX"))
		mallopt(M_ARENA_MAX, QRY_MALLOC_ARENAS);
	/* `rebuild [view]` comes first; options may follow it */
	if (argc > 1 && strcmp(argv[1], "rebuild") == 0) {
		rebuilding = 1;
		argv++;
		argc--;
		if (argc > 1 && argv[1][0] != '-') {
			rebuild_view = argv[1];
			argv++;
			argc--;
		}
	}
	/* `parked list` and `parked retry VIEW STREAM`, the same way */
	if (argc > 1 && strcmp(argv[1], "parked") == 0) {
		parked_args = argv + 2;
		for (nparked = 0; 2 + nparked < argc &&
				  argv[2 + nparked][0] != '-' && nparked < 3;
		     nparked++)
			;
		argv += 1 + nparked;
		argc -= 1 + nparked;
	}
	routes = qry_routes(&nroutes);
	if (es_service_configure(
		    argc, argv, PROG,
		    "Projects the event log into views and serves them over HTTP.\n"
		    "`" PROG
		    " rebuild [view]` rebuilds views from the log and exits.\n"
		    "`" PROG
		    " parked list` lists the streams parked for a view, and `" PROG
		    " parked retry VIEW STREAM` folds one again (after a fix).",
		    vars, ARRAY_SIZE(vars), routes, nroutes, &c.http.port,
		    &c.log_level, &status) < 0)
		return status;
	if (!*c.read_database_url)
		c.read_database_url = c.database_url;
	if (!*c.log_database_url)
		c.log_database_url = c.database_url;
	/* a database that does not answer must not hold a thread for long */
	setenv("PGCONNECT_TIMEOUT", "3", 0);
	setenv("PGAPPNAME", "tandem-query-service", 0);

	/* the log may come from a standby; wake-ups from the primary */
	tail_cfg.write_url = c.log_database_url;
	tail_cfg.listen_url = c.database_url;
	tail_cfg.read_url = c.read_database_url;
	tail_cfg.batch = c.batch;
	tail_cfg.poll_ms = c.poll_ms;
	tail_cfg.leader_retry_ms = c.leader_retry_ms;
	if (rebuilding)
		return rebuild(&tail_cfg, rebuild_view);
	if (nparked >= 0)
		return parked(&tail_cfg, nparked, parked_args);

	es_service_block_signals(&stop);
	c.http.auth = es_service_auth(&c.auth, &err);
	if (!c.http.auth)
		goto out;
	/* the projected views, then the in-memory one */
	view_names = calloc(view_count + 2, sizeof(*view_names));
	if (!view_names) {
		es_error_set(&err, ES_EINTERNAL, "out of memory");
		goto out;
	}
	for (i = 0; i < view_count; i++)
		view_names[i] = view_all[i]->name;
	view_names[i] = QRY_MEMORY_VIEW;
	if (qry_state_init(&st, view_names) < 0) {
		es_error_set(&err, ES_EINTERNAL,
			     "cannot set up the view state");
		goto out;
	}
	state_up = 1;
	ctx.st = &st;
	atomic_init(&ctx.http, NULL);

	pool_cfg.read_url = c.read_database_url;
	pool_cfg.write_url = c.log_database_url;
	pool_cfg.size = read_pool_size(&c);
	pool_cfg.queue_max = c.http.max_connections;
	pool_cfg.statement_timeout_ms = READ_STATEMENT_TIMEOUT_MS;
	pool_cfg.on_connect = qry_routes_prepare;
	ctx.pool = qry_readpool_start(&pool_cfg, &err);
	if (!ctx.pool)
		goto out;

	ctx.mem = qry_memory_new(&err);
	if (ctx.mem)
		qry_memory_set_cap(ctx.mem,
				   (size_t)c.memory_view_max_mb * 1024 * 1024);
	if (!ctx.mem)
		goto out;
	tail_cfg.mem = ctx.mem;
	tail = qry_tail_start(&tail_cfg, &st, &err);
	if (!tail)
		goto out;

	h = es_http_start(&c.http, routes, nroutes, &ctx, &err);
	if (!h)
		goto out;
	atomic_store(&ctx.http, h);
	es_log(ES_LOG_INFO, "listening", "{s:s, s:i, s:s, s:i}", "bind_address",
	       c.http.bind_address, "port", (int)es_http_port(h), "version",
	       TANDEM_VERSION, "read_pool_size", (int)pool_cfg.size);

	sig = es_service_wait(&stop, c.http.auth);
	es_log(ES_LOG_INFO, "stopping", "{s:s, s:i, s:i}", "signal",
	       sig == SIGINT ? "SIGINT" : "SIGTERM", "in_flight",
	       (int)es_http_in_flight(h), "waiting",
	       (int)qry_state_waiting(&st));
	es_http_stop(h, (int)c.shutdown_grace_ms);
	atomic_store(&ctx.http, NULL); /* no handler runs any more */
	ret = 0;
out:
	if (ret) {
		es_log(ES_LOG_ERROR, "start_failed", "{s:s}", "error",
		       err.detail);
		fprintf(stderr, "%s: %s\n", PROG, err.detail);
	}
	/*
	 * The server answered what it still held; parked requests and
	 * queued jobs must now be resumed (their answers are dropped).
	 */
	if (state_up)
		qry_state_cancel_waiters(&st);
	qry_readpool_stop(ctx.pool);
	qry_tail_stop(tail);
	qry_memory_free(ctx.mem);
	if (state_up)
		qry_state_release(&st);
	free(view_names);
	es_auth_free(c.http.auth);
	es_error_release(&err);
	if (!ret)
		es_log(ES_LOG_INFO, "stopped", NULL);
	return ret;
}
