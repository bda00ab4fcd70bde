/*
 * cmd_routes.h - the command service's routes: each names the command
 * it takes (a descriptor of cmd_kinds.h). The handler parses and
 * validates on the HTTP thread (400, 404 for a path id, 415, 422 are
 * answered there and nothing reaches the database), then hands the
 * request to the runner (cmd_runner.h), which answers it from a pool
 * worker. main.c serves cmd_routes[] next to its own /health, /ready
 * and /metrics, with a struct cmd_ctx as the server's ctx.
 */
#ifndef CMD_ROUTES_H
#define CMD_ROUTES_H

#include <stddef.h>

#include "es_router.h"

/*
 * POST /accounts, /accounts/{id}/deposits, /accounts/{id}/withdrawals,
 * /accounts/{id}/close, /transfers, /streams/{stream_id}/events; all
 * ES_ROUTE_JSON.
 */
extern const struct es_route cmd_routes[];
extern const size_t cmd_nroutes;

#endif
