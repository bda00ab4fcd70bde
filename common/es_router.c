/* es_router.c - match (method, path) against a table of routes. */
#include "es_router.h"

#include <string.h>

static const char *segment_end(const char *s)
{
	while (*s && *s != '/')
		s++;
	return s;
}

/* Whether `path` fits `pattern`; captures go into m->params and m->buf. */
static int match_path(const char *pattern, const char *path, struct es_match *m)
{
	const char *p = pattern, *s = path;
	size_t used = 0;

	m->nparams = 0;
	for (;;) {
		const char *pe, *se;
		size_t plen, slen;

		if (*p != '/' || *s != '/')
			return 0;
		p++;
		s++;
		pe = segment_end(p);
		se = segment_end(s);
		plen = (size_t)(pe - p);
		slen = (size_t)(se - s);
		if (plen >= 2 && p[0] == '{' && pe[-1] == '}') {
			if (slen == 0 || m->nparams == ES_ROUTER_MAX_PARAMS ||
			    used + slen + 1 > sizeof(m->buf))
				return 0;
			memcpy(m->buf + used, s, slen);
			m->buf[used + slen] = '\0';
			m->params[m->nparams].name = p + 1;
			m->params[m->nparams].name_len = plen - 2;
			m->params[m->nparams].value = m->buf + used;
			m->nparams++;
			used += slen + 1;
		} else if (plen != slen || memcmp(p, s, plen) != 0) {
			return 0;
		}
		p = pe;
		s = se;
		if (!*p || !*s)
			return !*p && !*s;
	}
}

static void allow_add(char *allow, size_t size, const char *method)
{
	size_t len = strlen(allow), mlen = strlen(method);
	const char *hit = allow;

	/* already listed? entries are separated by ", " */
	while ((hit = strstr(hit, method)) != NULL) {
		if ((hit == allow || hit[-1] == ' ') &&
		    (hit[mlen] == '\0' || hit[mlen] == ','))
			return;
		hit += mlen;
	}
	if (len + (len ? 2 : 0) + mlen + 1 > size)
		return;
	if (len) {
		memcpy(allow + len, ", ", 2);
		len += 2;
	}
	memcpy(allow + len, method, mlen + 1);
}

int es_router_match(const struct es_route *routes, size_t n, const char *method,
		    const char *path, struct es_match *m, struct es_error *err)
{
	int path_matched = 0;

	m->route = NULL;
	m->nparams = 0;
	m->allow[0] = '\0';
	for (size_t i = 0; i < n; i++) {
		const struct es_route *r = &routes[i];

		if (!match_path(r->pattern, path, m))
			continue;
		if (strcmp(r->method, method) == 0 ||
		    (strcmp(method, "HEAD") == 0 &&
		     strcmp(r->method, "GET") == 0)) {
			m->route = r;
			return 0;
		}
		path_matched = 1;
	}
	if (!path_matched)
		return es_error_set(err, ES_ENOTFOUND, "no route for '%.120s'",
				    path);
	/* a second pass builds Allow: the table order, HEAD after GET */
	for (size_t i = 0; i < n; i++) {
		if (!match_path(routes[i].pattern, path, m))
			continue;
		allow_add(m->allow, sizeof(m->allow), routes[i].method);
		if (strcmp(routes[i].method, "GET") == 0)
			allow_add(m->allow, sizeof(m->allow), "HEAD");
	}
	m->nparams = 0;
	return es_error_set(err, ES_EMETHOD,
			    "'%.20s' is not allowed on '%.120s'", method, path);
}

const char *es_match_param(const struct es_match *m, const char *name)
{
	size_t len = strlen(name);

	for (size_t i = 0; i < m->nparams; i++)
		if (m->params[i].name_len == len &&
		    memcmp(m->params[i].name, name, len) == 0)
			return m->params[i].value;
	return NULL;
}

int es_router_write(FILE *out, const struct es_route *routes, size_t n,
		    struct es_error *err)
{
	for (size_t i = 0; i < n; i++) {
		const struct es_route *r = &routes[i];

		if (!r->method || !*r->method || !r->pattern ||
		    r->pattern[0] != '/')
			return es_error_set(
				err, ES_EINTERNAL,
				"route %zu of the table is malformed", i);
		if (fprintf(out, "%s %s\n", r->method, r->pattern) < 0)
			return es_error_set(err, ES_EINTERNAL,
					    "cannot write the routes");
	}
	if (fflush(out) != 0 || ferror(out))
		return es_error_set(err, ES_EINTERNAL,
				    "cannot write the routes");
	return 0;
}
