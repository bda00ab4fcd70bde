/* sum.c - 128-bit sums of the views, as decimal text. */
#include "sum.h"

char *view_sum_format(view_sum v, char out[VIEW_SUM_TEXT_MAX])
{
	char tmp[VIEW_SUM_TEXT_MAX];
	size_t n = 0, i = 0;
	view_sum m = v;

	/* digit by digit, towards zero: -v would overflow for the minimum */
	do {
		int d = (int)(m % 10);

		tmp[n++] = (char)('0' + (d < 0 ? -d : d));
		m /= 10;
	} while (m);
	if (v < 0)
		out[i++] = '-';
	while (n)
		out[i++] = tmp[--n];
	out[i] = '\0';
	return out;
}

int view_sum_parse(const char *s, view_sum *out)
{
	view_sum v = 0;
	int neg = 0;

	if (*s == '-') {
		neg = 1;
		s++;
	}
	if (!*s)
		return -1;
	for (; *s; s++) {
		if (*s < '0' || *s > '9' || __builtin_mul_overflow(v, 10, &v) ||
		    __builtin_add_overflow(v, neg ? -(*s - '0') : *s - '0', &v))
			return -1;
	}
	*out = v;
	return 0;
}
