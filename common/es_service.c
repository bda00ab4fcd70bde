/* es_service.c - the start-up steps both services share. */
#include "es_service.h"

#include <pthread.h>
#include <stdio.h>

#include "es_log.h"

int es_service_configure(int argc, char **argv, const char *prog,
			 const char *summary, const struct es_config_var *vars,
			 size_t n, long *http_port,
			 const char *const *log_level, int *status)
{
	struct es_error err = ES_ERROR_INIT;
	long port = 0;

	switch (es_config_cli(argc, argv, prog, summary, vars, n, &port)) {
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
	pthread_sigmask(SIG_BLOCK, set, NULL);
	signal(SIGPIPE, SIG_IGN);
}
