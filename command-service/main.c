/*
 * main.c - the command service: accepts commands over HTTP, decides them
 * against the current state of their aggregate, appends events.
 */
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "es_config.h"
#include "es_http.h"
#include "es_log.h"
#include "es_probe.h"

#define PROG	      "command-service"
#define ARRAY_SIZE(a) (sizeof(a) / sizeof(*(a)))

struct cmd_config {
	const char *database_url;
	const char *log_level;
	long shutdown_grace_ms;
	struct es_http_config http;
};

struct cmd_ctx {
	struct es_probe probe;
};

static void ready(struct es_request *req)
{
	struct cmd_ctx *ctx = req->ctx;

	es_probe_ready(&ctx->probe, req);
}

static const struct es_route routes[] = {
	{ "GET", "/health", es_probe_health, 0 },
	{ "GET", "/ready", ready, 0 },
};

/* Block the stop signals in every thread; main() takes them with sigwait. */
static void block_signals(sigset_t *set)
{
	sigemptyset(set);
	sigaddset(set, SIGTERM);
	sigaddset(set, SIGINT);
	pthread_sigmask(SIG_BLOCK, set, NULL);
	signal(SIGPIPE, SIG_IGN);
}

int main(int argc, char **argv)
{
	struct cmd_config c = { 0 };
	const struct es_config_var vars[] = {
		{ "DATABASE_URL", ES_CONFIG_STR, &c.database_url, NULL, 0, 0,
		  "PostgreSQL URI or conninfo of the event store" },
		ES_HTTP_CONFIG_VARS(&c.http, "8081"),
		{ "SHUTDOWN_GRACE_MS", ES_CONFIG_INT, &c.shutdown_grace_ms,
		  "5000", 0, 600000,
		  "on SIGTERM, how long in-flight requests may take" },
		{ "LOG_LEVEL", ES_CONFIG_STR, &c.log_level, "info", 0, 0,
		  "debug, info, warn, error or off" },
	};
	struct es_error err = ES_ERROR_INIT;
	struct cmd_ctx ctx;
	struct es_http *h;
	sigset_t stop;
	long port = 0;
	int sig = 0;

	switch (es_config_cli(argc, argv, PROG,
			      "Accepts commands over HTTP and appends events.",
			      vars, ARRAY_SIZE(vars), &port)) {
	case 1:
		return 0;
	case -1:
		return 2;
	}
	if (es_config_load(vars, ARRAY_SIZE(vars), es_config_getenv, NULL,
			   &err) < 0) {
		fprintf(stderr, "%s: %s\n", PROG, err.detail);
		return 2;
	}
	if (port)
		c.http.port = port;
	if (es_log_set_level(c.log_level) < 0) {
		fprintf(stderr,
			"%s: 'LOG_LEVEL' must be debug, info, warn, error or off, got '%s'\n",
			PROG, c.log_level);
		return 2;
	}
	es_log_set_service(PROG);
	/* a database that does not answer must not hold /ready for long */
	setenv("PGCONNECT_TIMEOUT", "3", 0);

	block_signals(&stop);
	es_probe_init(&ctx.probe, c.database_url);
	h = es_http_start(&c.http, routes, ARRAY_SIZE(routes), &ctx, &err);
	if (!h) {
		es_log(ES_LOG_ERROR, "start_failed", "{s:s}", "error",
		       err.detail);
		fprintf(stderr, "%s: %s\n", PROG, err.detail);
		es_probe_release(&ctx.probe);
		return 1;
	}
	es_log(ES_LOG_INFO, "listening", "{s:s, s:i, s:s}", "bind_address",
	       c.http.bind_address, "port", (int)es_http_port(h), "version",
	       TANDEM_VERSION);

	sigwait(&stop, &sig);
	es_log(ES_LOG_INFO, "stopping", "{s:s}", "signal",
	       sig == SIGINT ? "SIGINT" : "SIGTERM");
	es_http_stop(h, (int)c.shutdown_grace_ms);
	es_probe_release(&ctx.probe);
	es_log(ES_LOG_INFO, "stopped", NULL);
	return 0;
}
