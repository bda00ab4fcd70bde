/* es_pgbin.c - reading values in PostgreSQL's binary formats. */
#include "es_pgbin.h"

#include <inttypes.h>
#include <stdio.h>

uint64_t es_pgbin_u64(const unsigned char *p)
{
	return (uint64_t)es_pgbin_u32(p) << 32 | es_pgbin_u32(p + 4);
}

uint32_t es_pgbin_u32(const unsigned char *p)
{
	return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 |
	       (uint32_t)p[2] << 8 | p[3];
}

uint16_t es_pgbin_u16(const unsigned char *p)
{
	return (uint16_t)(p[0] << 8 | p[1]);
}

int es_pgbin_field(const unsigned char **p, const unsigned char *end,
		   const unsigned char **val, size_t *len)
{
	uint32_t n;

	if (end - *p < 4)
		return -1;
	n = es_pgbin_u32(*p);
	if (n == UINT32_MAX || (size_t)(end - *p) - 4 < n)
		return -1;
	*val = *p + 4;
	*len = n;
	*p += 4 + (size_t)n;
	return 0;
}

static void put2(char *p, unsigned v)
{
	p[0] = (char)('0' + v / 10);
	p[1] = (char)('0' + v % 10);
}

/* A day count and time of day, from microseconds since 2000-01-01 UTC. */
struct civil {
	int64_t y;
	unsigned m, d, secs, frac;
};

/*
 * Split `us` into a proleptic Gregorian date and a time of day: days to a
 * date counting years from March, by eras of 400 years (146097 days), as
 * Howard Hinnant's civil_from_days().
 */
static void civil_of(int64_t us, struct civil *c)
{
	const int64_t day_us = 86400000000LL;
	/* days from 0000-03-01 (proleptic Gregorian) to 2000-01-01 */
	const int64_t epoch = 730425;
	int64_t days, rem, z, era, doe, yoe, doy, mp, m;

	days = us / day_us;
	rem = us % day_us;
	if (rem < 0) {
		rem += day_us;
		days--;
	}
	z = days + epoch;
	era = (z >= 0 ? z : z - 146096) / 146097;
	doe = z - era * 146097;
	yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
	doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
	mp = (5 * doy + 2) / 153;
	c->d = (unsigned)(doy - (153 * mp + 2) / 5 + 1);
	m = mp < 10 ? mp + 3 : mp - 9;
	c->m = (unsigned)m;
	c->y = yoe + era * 400 + (m <= 2);
	c->secs = (unsigned)(rem / 1000000);
	c->frac = (unsigned)(rem % 1000000);
}

int es_pgbin_time(int64_t us, char out[ES_PGBIN_TIME_LEN + 1])
{
	struct civil c;
	unsigned frac, i;

	civil_of(us, &c);
	if (c.y < 1 || c.y > 9999)
		return -1;
	put2(out, (unsigned)(c.y / 100));
	put2(out + 2, (unsigned)(c.y % 100));
	out[4] = '-';
	put2(out + 5, c.m);
	out[7] = '-';
	put2(out + 8, c.d);
	out[10] = 'T';
	put2(out + 11, c.secs / 3600);
	out[13] = ':';
	put2(out + 14, c.secs / 60 % 60);
	out[16] = ':';
	put2(out + 17, c.secs % 60);
	out[19] = '.';
	for (i = 0, frac = c.frac; i < 6; i++) {
		out[25 - i] = (char)('0' + frac % 10);
		frac /= 10;
	}
	out[26] = 'Z';
	out[27] = '\0';
	return 0;
}

void es_pgbin_time_any(int64_t us, char out[ES_PGBIN_TIME_MAX])
{
	struct civil c;

	if (us == INT64_MAX || us == INT64_MIN) {
		snprintf(out, ES_PGBIN_TIME_MAX, "%s",
			 us == INT64_MAX ? "infinity" : "-infinity");
		return;
	}
	if (es_pgbin_time(us, out) == 0)
		return;
	civil_of(us, &c);
	snprintf(out, ES_PGBIN_TIME_MAX,
		 "%04" PRId64 "-%02u-%02uT%02u:%02u:%02u.%06uZ", c.y, c.m, c.d,
		 c.secs / 3600, c.secs / 60 % 60, c.secs % 60, c.frac);
}
