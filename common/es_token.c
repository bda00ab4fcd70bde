/* es_token.c - position tokens: parse, format, compare. No database. */
#include "es_token.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MALFORMED "malformed position token"

/*
 * One unsigned decimal at *pp, not past `end`: digits only, no sign, no
 * leading zero (but "0" itself), no overflow. Advances *pp.
 */
static int parse_u64(const char **pp, const char *end, uint64_t *out)
{
	const char *p = *pp;
	uint64_t v = 0;

	if (p >= end || *p < '0' || *p > '9')
		return -1;
	if (*p == '0' && p + 1 < end && p[1] >= '0' && p[1] <= '9')
		return -1;
	for (; p < end && *p >= '0' && *p <= '9'; p++) {
		unsigned d = (unsigned)(*p - '0');

		if (v > (UINT64_MAX - d) / 10)
			return -1;
		v = v * 10 + d;
	}
	*out = v;
	*pp = p;
	return 0;
}

static int parse_i64(const char **pp, const char *end, int64_t *out)
{
	uint64_t v;

	if (parse_u64(pp, end, &v) < 0 || v > (uint64_t)INT64_MAX)
		return -1;
	*out = (int64_t)v;
	return 0;
}

/* "<xmin>:<xmax>:<xip>,..." filling exactly [p, end). */
static int parse_snapshot_span(const char *p, const char *end,
			       struct es_snapshot *out, const char **why)
{
	struct es_snapshot s = { 0 };
	const char *q;
	size_t cap = 0;

	*why = "not a snapshot";
	if (parse_u64(&p, end, &s.xmin) < 0 || p >= end || *p++ != ':' ||
	    parse_u64(&p, end, &s.xmax) < 0 || p >= end || *p++ != ':')
		return -1;
	if (s.xmin > s.xmax) {
		*why = "xmin above xmax";
		return -1;
	}
	if (p < end) {
		cap = 1;
		for (q = p; q < end; q++)
			cap += *q == ',';
		s.xip = malloc(cap * sizeof(*s.xip));
		if (!s.xip) {
			*why = "out of memory";
			return -1;
		}
	}
	while (p < end) {
		uint64_t x;

		if (s.nxip && *p++ != ',')
			goto bad;
		if (parse_u64(&p, end, &x) < 0)
			goto bad;
		if (x < s.xmin || x >= s.xmax) {
			*why = "xip outside [xmin, xmax)";
			goto bad_kept;
		}
		if (s.nxip && x <= s.xip[s.nxip - 1]) {
			*why = "xip not strictly ascending";
			goto bad_kept;
		}
		s.xip[s.nxip++] = x;
	}
	if (!s.nxip) {
		free(s.xip);
		s.xip = NULL;
	}
	*out = s;
	return 0;
bad:
	*why = "not a snapshot";
bad_kept:
	free(s.xip);
	return -1;
}

int es_snapshot_parse(const char *s, struct es_snapshot *out,
		      struct es_error *err)
{
	const char *why;
	size_t len;

	if (!s || !(len = strnlen(s, ES_TOKEN_MAX + 1)))
		return es_error_set(err, ES_EMALFORMED, MALFORMED ": empty");
	if (len > ES_TOKEN_MAX)
		return es_error_set(err, ES_EMALFORMED, MALFORMED ": too long");
	if (parse_snapshot_span(s, s + len, out, &why) < 0)
		return es_error_set(err, ES_EMALFORMED, MALFORMED ": %s", why);
	return 0;
}

/* Append `s` at buf + *at; `buf` was sized by snapshot_maxlen(). */
static void put_snapshot(char *buf, size_t *at, const struct es_snapshot *s)
{
	size_t i;

	*at += (size_t)sprintf(buf + *at, "%" PRIu64 ":%" PRIu64 ":", s->xmin,
			       s->xmax);
	for (i = 0; i < s->nxip; i++)
		*at += (size_t)sprintf(buf + *at, "%s%" PRIu64, i ? "," : "",
				       s->xip[i]);
}

static size_t snapshot_maxlen(const struct es_snapshot *s)
{
	return 2 * 21 + s->nxip * 21;
}

char *es_snapshot_format(const struct es_snapshot *s)
{
	char *buf = malloc(snapshot_maxlen(s) + 1);
	size_t at = 0;

	if (buf)
		put_snapshot(buf, &at, s);
	return buf;
}

int es_snapshot_copy(struct es_snapshot *dst, const struct es_snapshot *src,
		     struct es_error *err)
{
	uint64_t *xip = NULL;

	if (src->nxip) {
		xip = malloc(src->nxip * sizeof(*xip));
		if (!xip)
			return es_error_set(err, ES_EINTERNAL, "out of memory");
		memcpy(xip, src->xip, src->nxip * sizeof(*xip));
	}
	dst->xmin = src->xmin;
	dst->xmax = src->xmax;
	dst->xip = xip;
	dst->nxip = src->nxip;
	return 0;
}

void es_snapshot_release(struct es_snapshot *s)
{
	free(s->xip);
	memset(s, 0, sizeof(*s));
}

static int xip_has(const struct es_snapshot *s, uint64_t xid)
{
	size_t lo = 0, hi = s->nxip;

	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;

		if (s->xip[mid] == xid)
			return 1;
		if (s->xip[mid] < xid)
			lo = mid + 1;
		else
			hi = mid;
	}
	return 0;
}

int es_snapshot_visible(const struct es_snapshot *s, uint64_t xid)
{
	return xid < s->xmax && !xip_has(s, xid);
}

int es_snapshot_covers(const struct es_snapshot *a, const struct es_snapshot *b)
{
	size_t i, above = 0;

	/*
	 * Visible in b: below b->xmax and not in b's xip. Each must be below
	 * a->xmax, so b must list all of [a->xmax, b->xmax) as running...
	 */
	if (b->xmax > a->xmax) {
		for (i = 0; i < b->nxip; i++)
			above += b->xip[i] >= a->xmax;
		if (above != b->xmax - a->xmax)
			return 0;
	}
	/* ...and none of them may be running in a. */
	for (i = 0; i < a->nxip && a->xip[i] < b->xmax; i++)
		if (!xip_has(b, a->xip[i]))
			return 0;
	return 1;
}

int es_snapshot_equal(const struct es_snapshot *a, const struct es_snapshot *b)
{
	return a->xmin == b->xmin && a->xmax == b->xmax && a->nxip == b->nxip &&
	       (!a->nxip ||
		memcmp(a->xip, b->xip, a->nxip * sizeof(*a->xip)) == 0);
}

int es_snapshot_union(struct es_snapshot *out, const struct es_snapshot *a,
		      const struct es_snapshot *b, struct es_error *err)
{
	const struct es_snapshot *hi = a->xmax >= b->xmax ? a : b;
	const struct es_snapshot *lo = hi == a ? b : a;
	uint64_t *xip = NULL;
	size_t i, n = 0;

	/*
	 * Running in both: below hi's xmax, so in hi's xip, and not visible
	 * in lo (in its xip, or at or above its xmax).
	 */
	if (hi->nxip) {
		xip = malloc(hi->nxip * sizeof(*xip));
		if (!xip)
			return es_error_set(err, ES_EINTERNAL, "out of memory");
	}
	for (i = 0; i < hi->nxip; i++)
		if (!es_snapshot_visible(lo, hi->xip[i]))
			xip[n++] = hi->xip[i];
	out->xmax = hi->xmax;
	out->xmin = n ? xip[0] : hi->xmax;
	out->xip = xip;
	out->nxip = n;
	if (!n) {
		free(xip);
		out->xip = NULL;
	}
	return 0;
}

void es_cursor_init(struct es_cursor *c)
{
	memset(c, 0, sizeof(*c));
}

int es_cursor_parse(const char *s, struct es_cursor *out, struct es_error *err)
{
	struct es_cursor c = { 0 };
	const char *why, *end, *slash1, *slash2, *p;
	size_t len;

	if (!s || !(len = strnlen(s, ES_TOKEN_MAX + 1)))
		return es_error_set(err, ES_EMALFORMED, MALFORMED ": empty");
	if (len > ES_TOKEN_MAX)
		return es_error_set(err, ES_EMALFORMED, MALFORMED ": too long");
	end = s + len;
	slash1 = memchr(s, '/', len);
	if (!slash1) {
		if (parse_snapshot_span(s, end, &c.lo, &why) < 0)
			return es_error_set(err, ES_EMALFORMED,
					    MALFORMED ": %s", why);
		*out = c;
		return 0;
	}
	slash2 = memchr(slash1 + 1, '/', (size_t)(end - slash1 - 1));
	if (!slash2) {
		why = "mid-window token needs three parts";
		goto bad;
	}
	if (parse_snapshot_span(s, slash1, &c.lo, &why) < 0 ||
	    parse_snapshot_span(slash1 + 1, slash2, &c.hi, &why) < 0)
		goto bad;
	p = slash2 + 1;
	if (parse_u64(&p, end, &c.xid) < 0 || p >= end || *p++ != '.' ||
	    parse_i64(&p, end, &c.pos) < 0 || p != end) {
		why = "bad last event of mid-window token";
		goto bad;
	}
	c.mid = 1;
	if (!es_snapshot_covers(&c.hi, &c.lo)) {
		why = "window end before its start";
		goto bad;
	}
	if (!es_snapshot_visible(&c.hi, c.xid) ||
	    es_snapshot_visible(&c.lo, c.xid)) {
		why = "last event outside its window";
		goto bad;
	}
	*out = c;
	return 0;
bad:
	es_snapshot_release(&c.lo);
	es_snapshot_release(&c.hi);
	return es_error_set(err, ES_EMALFORMED, MALFORMED ": %s", why);
}

char *es_cursor_format(const struct es_cursor *c)
{
	size_t at = 0;
	char *buf;

	if (!c->mid)
		return es_snapshot_format(&c->lo);
	buf = malloc(snapshot_maxlen(&c->lo) + snapshot_maxlen(&c->hi) + 48);
	if (!buf)
		return NULL;
	put_snapshot(buf, &at, &c->lo);
	buf[at++] = '/';
	put_snapshot(buf, &at, &c->hi);
	sprintf(buf + at, "/%" PRIu64 ".%" PRId64, c->xid, c->pos);
	return buf;
}

int es_cursor_copy(struct es_cursor *dst, const struct es_cursor *src,
		   struct es_error *err)
{
	struct es_cursor c = { 0 };

	if (es_snapshot_copy(&c.lo, &src->lo, err) < 0)
		return -1;
	if (es_snapshot_copy(&c.hi, &src->hi, err) < 0) {
		es_snapshot_release(&c.lo);
		return -1;
	}
	c.mid = src->mid;
	c.xid = src->xid;
	c.pos = src->pos;
	*dst = c;
	return 0;
}

void es_cursor_release(struct es_cursor *c)
{
	es_snapshot_release(&c->lo);
	es_snapshot_release(&c->hi);
	es_cursor_init(c);
}

/* (xa, pa) <= (xb, pb) in the tailing order. */
static int order_le(uint64_t xa, int64_t pa, uint64_t xb, int64_t pb)
{
	return xa < xb || (xa == xb && pa <= pb);
}

int es_cursor_covers_append(const struct es_cursor *c,
			    const struct es_append_token *a)
{
	if (es_snapshot_visible(&c->lo, a->xid))
		return 1;
	return c->mid && es_snapshot_visible(&c->hi, a->xid) &&
	       order_le(a->xid, a->pos, c->xid, c->pos);
}

int es_cursor_covers(const struct es_cursor *a, const struct es_cursor *b)
{
	/* a has seen all of a->lo; b has seen at most b->hi (or its all). */
	if (es_snapshot_covers(&a->lo, b->mid ? &b->hi : &b->lo))
		return 1;
	/* The same window read to different depths. */
	if (a->mid && b->mid && es_snapshot_equal(&a->lo, &b->lo) &&
	    es_snapshot_equal(&a->hi, &b->hi))
		return order_le(b->xid, b->pos, a->xid, a->pos);
	return 0;
}

int es_append_token_parse(const char *s, struct es_append_token *out,
			  struct es_error *err)
{
	struct es_append_token a;
	const char *p = s, *end;

	if (!s || !*s)
		return es_error_set(err, ES_EMALFORMED, MALFORMED ": empty");
	end = s + strnlen(s, ES_APPEND_TOKEN_MAX);
	if (*end)
		return es_error_set(err, ES_EMALFORMED, MALFORMED ": too long");
	if (parse_u64(&p, end, &a.xid) < 0 || p >= end || *p++ != '.' ||
	    parse_i64(&p, end, &a.pos) < 0 || p != end)
		return es_error_set(err, ES_EMALFORMED,
				    MALFORMED ": not an append token");
	*out = a;
	return 0;
}

int es_append_token_format(const struct es_append_token *a, char *buf,
			   size_t len)
{
	int n = snprintf(buf, len, "%" PRIu64 ".%" PRId64, a->xid, a->pos);

	if (n < 0 || (size_t)n >= len)
		return -1;
	return n;
}

int es_token_covers(const char *read_token, const char *token,
		    struct es_error *err)
{
	struct es_cursor reader, other;
	struct es_append_token a;
	int ret;

	if (es_cursor_parse(read_token, &reader, err) < 0)
		return -1;
	/* Only read tokens have colons. */
	if (token && strchr(token, ':')) {
		if (es_cursor_parse(token, &other, err) < 0) {
			ret = -1;
		} else {
			ret = es_cursor_covers(&reader, &other);
			es_cursor_release(&other);
		}
	} else if (es_append_token_parse(token, &a, err) < 0) {
		ret = -1;
	} else {
		ret = es_cursor_covers_append(&reader, &a);
	}
	es_cursor_release(&reader);
	return ret;
}
