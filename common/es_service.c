/* es_service.c - the start-up steps both services share. */
#include "es_service.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "es_auth.h"
#include "es_log.h"

#define ROUTES_HELP                                                    \
	"`%s --routes` prints the HTTP routes it serves, one a line\n" \
	"(\"METHOD /path\"; a GET route also answers HEAD), and exits."

/*
 * Whether --routes comes first among the options that end the command
 * line's reading (--help, -h, --version, or an unknown one: es_config_cli()
 * answers those in order). --port N and --port=N are skipped over.
 */
static int routes_first(int argc, char **argv)
{
	for (int i = 1; i < argc; i++) {
		const char *a = argv[i];

		if (strcmp(a, "--routes") == 0)
			return 1;
		if (strcmp(a, "--port") == 0)
			i++;
		else if (strncmp(a, "--port=", 7) != 0)
			return 0;
	}
	return 0;
}

static int print_routes(const char *prog, const struct es_route *routes,
			size_t nroutes)
{
	struct es_error err = ES_ERROR_INIT;

	if (es_router_write(stdout, routes, nroutes, &err) < 0) {
		fprintf(stderr, "%s: %s\n", prog, err.detail);
		es_error_release(&err);
		return 1;
	}
	return 0;
}

int es_service_configure(int argc, char **argv, const char *prog,
			 const char *summary, const struct es_config_var *vars,
			 size_t n, const struct es_route *routes,
			 size_t nroutes, long *http_port,
			 const char *const *log_level, int *status)
{
	struct es_error err = ES_ERROR_INIT;
	char *help = NULL;
	size_t len = 0;
	long port = 0;
	FILE *f;
	int rc;

	if (routes_first(argc, argv)) {
		*status = print_routes(prog, routes, nroutes);
		return -1;
	}
	/* the summary, then a line on --routes */
	f = open_memstream(&help, &len);
	if (f) {
		fprintf(f, "%s\n" ROUTES_HELP, summary, prog);
		if (fclose(f) != 0) {
			free(help);
			help = NULL;
		}
	}
	rc = es_config_cli(argc, argv, prog, help ? help : summary, vars, n,
			   &port);
	free(help);
	switch (rc) {
	case 1:
		*status = 0;
		return -1;
	case -1:
		*status = 2;
		return -1;
	}
	if (es_config_load(vars, n, es_config_getenv, NULL, &err) < 0) {
		fprintf(stderr, "%s: %s\n", prog, err.detail);
		es_error_release(&err);
		*status = 2;
		return -1;
	}
	if (port)
		*http_port = port;
	if (es_log_set_level(*log_level) < 0) {
		fprintf(stderr,
			"%s: 'LOG_LEVEL' must be debug, info, warn, error or off, got '%s'\n",
			prog, *log_level);
		*status = 2;
		return -1;
	}
	es_log_set_service(prog);
	return 0;
}

void es_service_block_signals(sigset_t *set)
{
	sigemptyset(set);
	sigaddset(set, SIGTERM);
	sigaddset(set, SIGINT);
	sigaddset(set, SIGHUP);
	pthread_sigmask(SIG_BLOCK, set, NULL);
	signal(SIGPIPE, SIG_IGN);
}

struct es_auth *es_service_auth(const struct es_auth_config *cfg,
				struct es_error *err)
{
	struct es_auth_stats st;
	struct es_auth *a = es_auth_new(cfg, err);

	if (!a)
		return NULL;
	if (es_auth_off(a)) {
		es_log(ES_LOG_WARN, "auth_off", "{s:s}", "detail",
		       "AUTH=off: no request is authenticated, every one is "
		       "served with every role; for local experiments only");
		return a;
	}
	es_auth_stats(a, &st);
	es_log(ES_LOG_INFO, "auth", "{s:s, s:i, s:s, s:s}", "jwks_file",
	       cfg->jwks_file, "keys", (int)st.keys, "issuer", cfg->issuer,
	       "audience", cfg->audience);
	return a;
}

int es_service_wait(const sigset_t *set, struct es_auth *auth)
{
	struct es_error err = ES_ERROR_INIT;
	struct es_auth_stats st;
	int sig = 0;

	for (;;) {
		if (sigwait(set, &sig) != 0)
			continue;
		if (sig != SIGHUP)
			return sig;
		if (!auth || es_auth_off(auth)) {
			es_log(ES_LOG_INFO, "sighup", "{s:s}", "detail",
			       "no key file to re-read");
			continue;
		}
		if (es_auth_reload(auth, &err) < 0) {
			es_log(ES_LOG_ERROR, "auth_reload_failed", "{s:s}",
			       "error", err.detail);
			es_error_release(&err);
			continue;
		}
		es_auth_stats(auth, &st);
		es_log(ES_LOG_INFO, "auth_reloaded", "{s:i}", "keys",
		       (int)st.keys);
	}
}
