/* view.c - the projected views, in the order the projector applies them. */
#include "view.h"

#include <string.h>

#include "account.h"
#include "daily.h"
#include "statement.h"

const struct view_ops *const view_all[] = {
	&view_accounts_ops,
	&view_statement_ops,
	&view_daily_ops,
};

const size_t view_count = sizeof(view_all) / sizeof(view_all[0]);

const struct view_ops *view_find(const char *name)
{
	size_t i;

	for (i = 0; name && i < view_count; i++)
		if (!strcmp(view_all[i]->name, name))
			return view_all[i];
	return NULL;
}
