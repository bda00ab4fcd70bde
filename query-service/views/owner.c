/* owner.c - an owner's accounts with totals per currency (pure). */
#include "owner.h"

#include <stdlib.h>
#include <string.h>

struct total {
	char currency[4];
	long long balance;
	long long accounts;
};

static int by_currency(const void *a, const void *b)
{
	return strcmp(((const struct total *)a)->currency,
		      ((const struct total *)b)->currency);
}

/* Add `acc` to its currency's total in `t` (n of them so far). */
static int add(struct total *t, size_t *n, const struct view_account *acc,
	       struct es_error *err)
{
	size_t i;

	for (i = 0; i < *n; i++)
		if (!strcmp(t[i].currency, acc->currency))
			break;
	if (i == *n) {
		memset(&t[i], 0, sizeof(t[i]));
		memcpy(t[i].currency, acc->currency, sizeof(t[i].currency));
		(*n)++;
	}
	if (__builtin_add_overflow(t[i].balance, acc->balance, &t[i].balance))
		return es_error_set(err, ES_EINTERNAL,
				    "the total of %s overflows", acc->currency);
	t[i].accounts++;
	return 0;
}

json_t *view_owner_json(const char *owner, const struct view_account *rows,
			size_t n, struct es_error *err)
{
	struct total *t = NULL;
	json_t *out = NULL, *accounts, *totals, *o;
	size_t nt = 0, i;

	t = calloc(n ? n : 1, sizeof(*t));
	out = json_pack("{s:s, s:[], s:[]}", "owner", owner ? owner : "",
			"accounts", "totals");
	if (!t || !out)
		goto oom;
	accounts = json_object_get(out, "accounts");
	totals = json_object_get(out, "totals");
	for (i = 0; i < n; i++) {
		if (!owner || strcmp(rows[i].owner, owner) != 0) {
			es_error_set(err, ES_EINTERNAL,
				     "account '%s' is not the owner's",
				     rows[i].id);
			goto fail;
		}
		if (add(t, &nt, &rows[i], err) < 0)
			goto fail;
		if (json_array_append_new(accounts,
					  view_account_json(&rows[i])) < 0)
			goto oom;
	}
	qsort(t, nt, sizeof(*t), by_currency);
	for (i = 0; i < nt; i++) {
		o = json_pack("{s:s, s:I, s:I}", "currency", t[i].currency,
			      "balance", (json_int_t)t[i].balance, "accounts",
			      (json_int_t)t[i].accounts);
		if (json_array_append_new(totals, o) < 0)
			goto oom;
	}
	free(t);
	return out;
oom:
	es_error_set(err, ES_EINTERNAL, "out of memory");
fail:
	free(t);
	json_decref(out);
	return NULL;
}
