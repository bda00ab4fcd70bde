/* es_service.h - the start-up steps both services share. */
#ifndef ES_SERVICE_H
#define ES_SERVICE_H

#include <signal.h>
#include <stddef.h>

#include "es_config.h"
#include "es_error.h"
#include "es_router.h"

/*
 * The command line (--help, --version, --routes, --port N over PORT),
 * the environment table, and the log level and name. `*log_level` is
 * read after the table is loaded (it points at the table's LOG_LEVEL
 * slot). --routes prints `routes` (es_router_write()) without reading
 * the environment; --help mentions it after `summary`. Whichever of
 * --help, --version and --routes comes first is answered.
 * Returns 0 to go on; else -1 with *status the exit status (0 after
 * --help, --version or --routes, 1 when the routes cannot be written,
 * 2 on a bad argument or setting, message printed).
 * ownership: borrows everything.
 */
int es_service_configure(int argc, char **argv, const char *prog,
			 const char *summary, const struct es_config_var *vars,
			 size_t n, const struct es_route *routes,
			 size_t nroutes, long *http_port,
			 const char *const *log_level, int *status);

/*
 * Block SIGTERM, SIGINT and SIGHUP in this thread and every thread it
 * starts (main takes them with es_service_wait(`set`)), and ignore SIGPIPE.
 */
void es_service_block_signals(sigset_t *set);

struct es_auth;
struct es_auth_config;

/*
 * The token verifier of a service, from its AUTH_* settings: with
 * AUTH=off a warning is logged (every request is served as the anonymous
 * principal with every role). NULL with `err` set when the settings or
 * the key file are wrong. ownership: caller frees with es_auth_free().
 */
struct es_auth *es_service_auth(const struct es_auth_config *cfg,
				struct es_error *err);

/*
 * Wait for SIGTERM or SIGINT in the set es_service_block_signals() made
 * (returned); on SIGHUP meanwhile, re-read the key file of `auth` (may be
 * NULL): a bad file is logged and the keys in use stay.
 */
int es_service_wait(const sigset_t *set, struct es_auth *auth);

#endif
