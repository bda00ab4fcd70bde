/* large.c - the pure parts of GET /audit/large-transactions. */
#include "large.h"

#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int view_large_cursor_format(long long amount, long long position, char *buf,
			     size_t len)
{
	int n;

	if (amount < 0 || position < 0)
		return -1;
	n = snprintf(buf, len, "%lld.%lld", amount, position);
	if (n < 0 || (size_t)n >= len)
		return -1;
	return n;
}

/* A canonical non-negative decimal of `len` bytes at `s`, else -1. */
static int number(const char *s, size_t len, long long *out)
{
	unsigned long long v = 0;
	size_t i;

	if (len == 0 || len > 19 || (len > 1 && s[0] == '0'))
		return -1;
	for (i = 0; i < len; i++) {
		if (s[i] < '0' || s[i] > '9')
			return -1;
		v = v * 10 + (unsigned long long)(s[i] - '0');
	}
	/* 19 digits fit in 64 unsigned bits; the signed ones may not */
	if (v > (unsigned long long)LLONG_MAX)
		return -1;
	*out = (long long)v;
	return 0;
}

int view_large_cursor_parse(const char *s, long long *amount,
			    long long *position, struct es_error *err)
{
	const char *dot = s ? strchr(s, '.') : NULL;
	long long a = 0, p = 0;

	if (!dot || number(s, (size_t)(dot - s), &a) < 0 ||
	    number(dot + 1, strlen(dot + 1), &p) < 0)
		return es_error_set(err, ES_EMALFORMED,
				    "malformed cursor '%.60s'", s ? s : "");
	*amount = a;
	*position = p;
	return 0;
}

int view_large_follows(long long amount, long long position,
		       long long after_amount, long long after_position)
{
	return amount < after_amount ||
	       (amount == after_amount && position > after_position);
}

/* The route's order: amount descending, then position ascending. */
static int order(const void *a, const void *b)
{
	const struct view_statement_row *x =
		*(const struct view_statement_row *const *)a;
	const struct view_statement_row *y =
		*(const struct view_statement_row *const *)b;

	if (x->amount != y->amount)
		return x->amount > y->amount ? -1 : 1;
	if (x->position != y->position)
		return x->position < y->position ? -1 : 1;
	return 0;
}

size_t view_large_page(const struct view_statement_row *rows, size_t n,
		       long long min_amount, const char *after, size_t limit,
		       const struct view_statement_row **out, int *more)
{
	const struct view_statement_row **all;
	long long aa = 0, ap = 0;
	size_t i, m = 0, k;

	*more = 0;
	if (after && view_large_cursor_parse(after, &aa, &ap, NULL) < 0)
		return 0;
	all = malloc((n ? n : 1) * sizeof(*all));
	if (!all)
		return 0;
	for (i = 0; i < n; i++)
		if (rows[i].amount >= min_amount &&
		    (!after || view_large_follows(rows[i].amount,
						  rows[i].position, aa, ap)))
			all[m++] = &rows[i];
	qsort(all, m, sizeof(*all), order);
	k = m < limit ? m : limit;
	memcpy(out, all, k * sizeof(*all));
	*more = m > k;
	free(all);
	return k;
}

json_t *view_large_row_json(const struct view_statement_row *row)
{
	json_t *o = view_statement_row_json(row);

	if (o && (json_object_set_new(o, "account_id",
				      json_string(row->account_id)) < 0 ||
		  json_object_set_new(o, "position",
				      json_integer(row->position)) < 0)) {
		json_decref(o);
		return NULL;
	}
	return o;
}
