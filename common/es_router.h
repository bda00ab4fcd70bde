/* es_router.h - match (method, path) against a table of routes. */
#ifndef ES_ROUTER_H
#define ES_ROUTER_H

#include <stddef.h>
#include <stdio.h>

#include "es_error.h"

struct es_request;

/* A route handler; see es_http.h for what it must do before returning. */
typedef void (*es_http_handler)(struct es_request *req);

enum es_route_flags {
	/*
	 * The route takes a JSON object body: Content-Type must be
	 * application/json (415 otherwise) and the body is parsed with
	 * es_json_parse_object() before the handler runs (400 on failure).
	 */
	ES_ROUTE_JSON = 1 << 0,
	/*
	 * Anyone may call it, without a token (/health, /ready). Every
	 * other route needs a verified bearer token whose roles meet the
	 * row's `roles` (es_http.h, "who is asking").
	 */
	ES_ROUTE_PUBLIC = 1 << 1,
};

/*
 * One row of a route table. `pattern` is made of '/'-separated segments:
 * a literal matches itself exactly, `{name}` captures one non-empty
 * segment. No trailing slash: "/health/" does not match "/health".
 * The first row whose pattern and method match wins, so list literal
 * rows ("/accounts/stats") before capturing ones ("/accounts/{id}").
 * A GET row also answers HEAD.
 */
struct es_route {
	const char *method;
	const char *pattern;
	es_http_handler handler;
	unsigned int flags; /* enum es_route_flags */
	/*
	 * What the handler serves, for handlers that serve several rows
	 * (a view's descriptor, say); es_request's `arg`. May be NULL.
	 */
	const void *arg;
	/*
	 * The roles (enum es_role bits, es_auth.h) that may call it: a
	 * token with none of them is 403. 0 on a route that is not
	 * ES_ROUTE_PUBLIC: nobody may, so a row that forgets its roles is
	 * closed, never open.
	 */
	unsigned int roles;
};

#define ES_ROUTER_MAX_PARAMS 4
#define ES_ROUTER_PARAMS_BUF 1024 /* all captured values with their NULs */

struct es_match {
	const struct es_route *route; /* borrowed from the table */
	size_t nparams;
	struct {
		const char *name; /* into route->pattern, not NUL-terminated */
		size_t name_len;
		const char *value; /* NUL-terminated, into buf */
	} params[ES_ROUTER_MAX_PARAMS];
	char buf[ES_ROUTER_PARAMS_BUF];
	char allow[96]; /* with ES_EMETHOD: "GET, HEAD, POST" */
};

/*
 * Find the route for `method` and `path` (the decoded path, without the
 * query string; captures are taken as they are, not decoded again).
 * Returns 0 and fills `m`; else -1 with ES_ENOTFOUND when no pattern
 * matches the path, or ES_EMETHOD when some do but not for this method
 * (then m->allow lists the methods that would match).
 * ownership: borrows everything; `m` points into `routes`.
 */
int es_router_match(const struct es_route *routes, size_t n, const char *method,
		    const char *path, struct es_match *m, struct es_error *err);

/* The value captured as `{name}`, or NULL. ownership: points into `m`. */
const char *es_match_param(const struct es_match *m, const char *name);

/*
 * Write the table to `out`, one "METHOD /pattern" line per row in table
 * order (a GET row is not repeated as HEAD), for `--routes`. A row with
 * an empty or missing method or a pattern that does not start with '/'
 * is a bug in the table: ES_EINTERNAL, nothing written for it.
 * Returns 0, else -1 (ES_EINTERNAL also when `out` fails).
 * ownership: borrows everything.
 */
int es_router_write(FILE *out, const struct es_route *routes, size_t n,
		    struct es_error *err);

#endif
