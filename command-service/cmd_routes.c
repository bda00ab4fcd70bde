/*
 * cmd_routes.c - the command service's route table: one handler for
 * every command, the route's `arg` saying which.
 */
#include "cmd_routes.h"

#include "cmd_kinds.h"
#include "cmd_request.h"
#include "cmd_runner.h"
#include "es_array.h"
#include "es_http.h"

/* Parse and validate here, the rest runs on a worker. */
static void post_command(struct es_request *req)
{
	struct cmd_request *cr = cmd_request_new(req, req->arg);

	if (cr)
		cmd_runner_submit(cr);
}

#define HOLDER_OR_MANAGER (ES_ROLE_HOLDER | ES_ROLE_MANAGER)

const struct es_route cmd_routes[] = {
	/* a holder's own accounts only: the commands' decide checks the owner
	 */
	{ "POST", "/accounts", post_command, ES_ROUTE_JSON, &cmd_kind_open,
	  HOLDER_OR_MANAGER },
	{ "POST", "/accounts/{id}/deposits", post_command, ES_ROUTE_JSON,
	  &cmd_kind_deposit, HOLDER_OR_MANAGER },
	{ "POST", "/accounts/{id}/withdrawals", post_command, ES_ROUTE_JSON,
	  &cmd_kind_withdraw, HOLDER_OR_MANAGER },
	{ "POST", "/accounts/{id}/close", post_command, ES_ROUTE_JSON,
	  &cmd_kind_close, HOLDER_OR_MANAGER },
	/* overdraft limits are the bank's to set, never a holder's */
	{ "POST", "/accounts/{id}/overdraft-limit", post_command, ES_ROUTE_JSON,
	  &cmd_kind_overdraft_limit, ES_ROLE_MANAGER },
	{ "POST", "/transfers", post_command, ES_ROUTE_JSON, &cmd_kind_transfer,
	  HOLDER_OR_MANAGER },
	{ "POST", "/streams/{stream_id}/events", post_command, ES_ROUTE_JSON,
	  &cmd_kind_append, ES_ROLE_SERVICE },
};
const size_t cmd_nroutes = ARRAY_SIZE(cmd_routes);
