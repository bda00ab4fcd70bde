/* view.c - the projected views, in the order the projector applies them. */
#include "view.h"

#include <string.h>

#include "daily.h"
#include "es_array.h"
#include "statement.h"
#include "view_account.h"

const struct view_ops *const view_all[] = {
	&view_accounts_ops,
	&view_statement_ops,
	&view_daily_ops,
};

const size_t view_count = ARRAY_SIZE(view_all);

const struct view_ops *view_find(const char *name)
{
	size_t i;

	for (i = 0; name && i < view_count; i++)
		if (!strcmp(view_all[i]->name, name))
			return view_all[i];
	return NULL;
}
