/*
 * sum.h - the sums and totals of the views: exact integers of 128 bits,
 * which no sum of amounts can overflow (2^63 events of amounts below
 * 2^63 stay below 2^126), written as decimal text: numeric in SQL, a
 * plain number in JSON (never a float).
 */
#ifndef VIEW_SUM_H
#define VIEW_SUM_H

#include <stddef.h>

__extension__ typedef __int128 view_sum;

/* Room for any view_sum in decimal, its sign and NUL. */
#define VIEW_SUM_TEXT_MAX 42

/* `v` in decimal into `out`; returns `out`. */
char *view_sum_format(view_sum v, char out[VIEW_SUM_TEXT_MAX]);

/*
 * Decimal text, optional '-', as PostgreSQL prints an integral numeric,
 * into *out. 0, or -1 for anything else or a value out of range.
 */
int view_sum_parse(const char *s, view_sum *out);

#endif
