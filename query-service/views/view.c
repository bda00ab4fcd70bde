/*
 * view.c - the registry: the projected views, in the order the projector
 * applies them, and the routes the views serve.
 */
#include "view.h"

#include <string.h>

#include "audit.h"
#include "daily.h"
#include "es_array.h"
#include "es_auth.h"
#include "large.h"
#include "owner.h"
#include "statement.h"
#include "view_account.h"

const struct view_ops *const view_all[] = {
	&view_accounts_ops,
	&view_statement_ops,
	&view_daily_ops,
	&view_audit_ops,
};

const size_t view_count = ARRAY_SIZE(view_all);

/* a literal segment before a capture: "/accounts/{id}/x" is not "{id}" */
const struct view_route view_routes[] = {
	/* a holder reads its own only: the view's read checks the owner */
	{ "/accounts/{id}/transactions", &view_statement_read,
	  ES_ROLE_HOLDER | ES_ROLE_MANAGER | ES_ROLE_AUDITOR },
	{ "/owners/{owner}/accounts", &view_owner_read,
	  ES_ROLE_HOLDER | ES_ROLE_MANAGER | ES_ROLE_AUDITOR },
	{ "/stats/daily", &view_daily_read, ES_ROLE_MANAGER | ES_ROLE_AUDITOR },
	{ "/audit/large-transactions", &view_large_read, ES_ROLE_AUDITOR },
	/* who-did-what: the auditor's alone */
	{ "/audit/principals/{sub}/actions", &view_audit_read,
	  ES_ROLE_AUDITOR },
};

const size_t view_nroutes = ARRAY_SIZE(view_routes);

_Static_assert(ARRAY_SIZE(view_routes) <= VIEW_ROUTES_MAX,
	       "VIEW_ROUTES_MAX is too small");

const struct view_ops *view_find(const char *name)
{
	size_t i;

	for (i = 0; name && i < view_count; i++)
		if (!strcmp(view_all[i]->name, name))
			return view_all[i];
	return NULL;
}
