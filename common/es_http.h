/*
 * es_http.h - the HTTP server both services run on (libmicrohttpd).
 *
 * Routes come from a table (es_router.h). Answers of our own are JSON or
 * application/problem+json and carry X-Request-Id; every request whose
 * request line libmicrohttpd could parse, whoever answered it, gets one
 * "request" log line (method, route pattern, status, duration_ms,
 * request_id) and counts in the metrics. An answer to a verified
 * principal carries Cache-Control: private, no-cache unless its handler
 * set Cache-Control.
 *
 * Refused before any handler runs, once the headers are in (the body is
 * never read into a handler), with 400 problem+json and Connection:
 * close: a duplicated Content-Length (even with equal values),
 * Content-Length together with Transfer-Encoding, more than one
 * Transfer-Encoding header or any coding but "chunked", a NUL byte in a
 * header value (see below), a header name that is not an RFC 9110 token
 * ("Content-Length : 5"), a header folded over lines (obs-fold), more
 * than one Authorization header (which one did a proxy check?), and a
 * request target holding a space, a control byte or "%00". Then 413 when
 * Content-Length announces more than MAX_BODY_BYTES (answered at once,
 * the body is not read, the connection closes), and 415 on ES_ROUTE_JSON
 * routes unless Content-Type is application/json, alone or with the one
 * parameter charset=utf-8 (any case, quoted or not, spaces around ';'
 * allowed: "application/json;charset=UTF-8" passes; "application/jsonx",
 * "text/json", "application/json; charset=latin1", a missing type do
 * not). A chunked body is cut off at MAX_BODY_BYTES while it arrives: the
 * rest is read and dropped to answer 413 (at most 1 MiB more, else the
 * connection is cut); the body buffer never grows past MAX_BODY_BYTES.
 *
 * Slow clients: IDLE_TIMEOUT_SECONDS closes a connection on which nothing
 * arrived for that long (libmicrohttpd's timer, reset by every byte).
 *
 * HEADER_TIMEOUT_SECONDS bounds the header phase of each request as a
 * whole, against a client that drips a header byte every few seconds
 * (slowloris) or connects and sends nothing. libmicrohttpd 0.9.75 has no
 * such limit, so es_http.c keeps one: a watchdog thread looks at every
 * connection twice a second and shuts down (shutdown(), libmicrohttpd
 * then closes it) those whose current request's headers are not complete
 * by the deadline. The phase starts when the connection is accepted, for
 * its first request; on a kept-alive connection, after an answer, the
 * connection is idle (only the idle timeout applies) until the next
 * request starts: when its request line is in, or when the watchdog sees
 * the socket's count of received bytes grow (TCP_INFO). That count is
 * taken when the watchdog first sees the connection idle, up to half a
 * second after the answer: a byte sent before then is noticed only with
 * the next one, so there the phase may last up to one gap between bytes
 * (less than the idle timeout) longer. A request whose request line is in
 * is answered 408 problem+json with Connection: close when cut (written
 * by the watchdog, best effort), and logged with status 408, termination
 * "header_timeout"; a connection cut before that is closed without an
 * answer. Each watchdog round that cuts logs a "header_timeout" line with
 * the number of connections it cut. A flood of slow connections is thus
 * bounded in time by the deadline, in number by MAX_CONNECTIONS and
 * PER_IP_CONNECTION_LIMIT, and their headers' size by
 * CONNECTION_MEMORY_BYTES.
 *
 * REQUEST_TIMEOUT_SECONDS bounds one request, from the moment its request
 * line is in until its body is complete, against a client that drips a
 * byte every few seconds: past it, the request is answered 408
 * problem+json with Connection: close and the connection is closed.
 * libmicrohttpd calls us only once the headers are complete and then for
 * each piece of body, so the deadline is checked at those moments: a
 * request whose headers alone took too long (with a header deadline off
 * or longer) is answered 408 when they are complete; a body still
 * dripping gets the 408 with its next byte past the deadline (written to
 * the socket by us, since libmicrohttpd 0.9.75 cannot queue an answer
 * while a body is arriving); a body that stops arriving altogether is
 * closed by the idle timeout without an answer.
 *
 * Limits: over MAX_CONNECTIONS (shared out among the HTTP threads),
 * libmicrohttpd stops accepting: new connections wait in the kernel's
 * listen backlog, unanswered, until another one closes. Over
 * PER_IP_CONNECTION_LIMIT a new connection is accepted and closed at
 * once, without an answer.
 *
 * libmicrohttpd 0.9.75 still answers some broken requests itself, with
 * small HTML bodies and Connection: close; it has no option or callback
 * to replace them (no MHD_OPTION_* for error pages, and these answers
 * never reach the access handler):
 * - 400: a header line it cannot parse (no colon, a NUL byte before the
 *   colon), a request line without a version (HTTP/0.9), a Content-Length
 *   that is not a number, broken chunked encoding;
 * - 413: a Content-Length or a chunk size beyond 2^64;
 * - 414: a request line longer than CONNECTION_MEMORY_BYTES allows;
 * - 431: headers larger than CONNECTION_MEMORY_BYTES allows;
 * - 505: an HTTP version other than 1.x;
 * - 500: its memory pool ran out while answering.
 * Its 400 and 413 for a bad Content-Length repeat the status line and
 * headers twice (a libmicrohttpd 0.9.75 bug). A request line it cannot
 * split at all ("BROKEN") is closed without an answer. Those 414, 505 and
 * unanswered ones never reach us (no log line, no count); the others log
 * and count with the status libmicrohttpd sent.
 *
 * NUL bytes: libmicrohttpd 0.9.75 reads each header line as a C string,
 * so a value silently ends at its first NUL byte and the length it
 * reports is the shortened one; es_http.c finds such NULs from where the
 * values lie in libmicrohttpd's buffer (see there). That misses a NUL
 * that ends the last header's value, or ends a value whose line ends in
 * a bare LF. A NUL byte sent raw inside the request target likewise cuts
 * the target short, unseen; "%00" is refused.
 */
#ifndef ES_HTTP_H
#define ES_HTTP_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>

#include "es_auth.h"
#include "es_config.h"
#include "es_error.h"
#include "es_router.h"

/* The HTTP part of a service's settings, filled by es_config_load(). */
struct es_http_config {
	const char *bind_address; /* IPv4 or IPv6 literal */
	long port; /* 0 in tests: any free port, see es_http_port() */
	long threads; /* 0: one per CPU we may run on (es_http_cpus()) */
	long max_connections;
	long per_ip_connections; /* 0: no limit */
	long connection_memory; /* bytes per connection, headers included */
	long idle_timeout; /* seconds */
	long header_timeout; /* seconds for a request's headers, 0: no limit */
	long max_body; /* bytes; larger bodies are 413 */
	long request_timeout; /* seconds to receive a request, 0: no limit */
	/*
	 * Who is asking: set by the service (es_auth_new()), not a setting.
	 * Every route but the ES_ROUTE_PUBLIC ones needs a principal:
	 * es_auth_off() gives every request the anonymous one with every
	 * role; NULL verifies nothing and refuses every such route (401).
	 * Borrowed: it must outlive the server.
	 */
	struct es_auth *auth;
};

/*
 * The rows of a service's es_config_var table that fill `h` (a struct
 * es_http_config *): PORT (default `dport`, a string), BIND_ADDRESS,
 * HTTP_THREADS, MAX_CONNECTIONS, PER_IP_CONNECTION_LIMIT,
 * CONNECTION_MEMORY_BYTES, IDLE_TIMEOUT_SECONDS, HEADER_TIMEOUT_SECONDS,
 * REQUEST_TIMEOUT_SECONDS, MAX_BODY_BYTES.
 * BIND_ADDRESS defaults to 0.0.0.0 so that containers are reachable;
 * PER_IP_CONNECTION_LIMIT defaults to 256, a quarter of MAX_CONNECTIONS:
 * one address that floods (slow or idle connections) cannot take every
 * slot, while a busy client, the gateway's 64 kept-alive connections per
 * worker or a 64-connection benchmark stay well under it. Behind a
 * gateway every client has the gateway's address: raise it there, or
 * set 0 where only the gateway can reach the service.
 */
/* clang-format off */
#define ES_HTTP_CONFIG_VARS(h, dport)					\
	{ "PORT", ES_CONFIG_INT, &(h)->port, dport, 1, 65535,		\
	  "TCP port to listen on (--port N overrides it)" },		\
	{ "BIND_ADDRESS", ES_CONFIG_STR, &(h)->bind_address,		\
	  "0.0.0.0", 0, 0, "IPv4 or IPv6 address to listen on" },	\
	{ "HTTP_THREADS", ES_CONFIG_INT, &(h)->threads, "0", 0, 1024,	\
	  "HTTP worker threads, 0 for one per CPU" },			\
	{ "MAX_CONNECTIONS", ES_CONFIG_INT, &(h)->max_connections,	\
	  "1024", 1, 1000000, "open connections at most" },		\
	{ "PER_IP_CONNECTION_LIMIT", ES_CONFIG_INT,			\
	  &(h)->per_ip_connections, "256", 0, 1000000,			\
	  "open connections per client address, 0 for no limit" },	\
	{ "CONNECTION_MEMORY_BYTES", ES_CONFIG_INT,			\
	  &(h)->connection_memory, "32768", 4096, 16777216,		\
	  "memory per connection, request headers included" },		\
	{ "IDLE_TIMEOUT_SECONDS", ES_CONFIG_INT, &(h)->idle_timeout,	\
	  "30", 1, 86400, "close connections idle this long" },		\
	{ "HEADER_TIMEOUT_SECONDS", ES_CONFIG_INT,			\
	  &(h)->header_timeout, "10", 0, 86400,				\
	  "cut off a request whose headers take this long, 0 for none" }, \
	{ "REQUEST_TIMEOUT_SECONDS", ES_CONFIG_INT,			\
	  &(h)->request_timeout, "30", 0, 86400,			\
	  "a request not received whole this long is 408, 0 for none" }, \
	{ "MAX_BODY_BYTES", ES_CONFIG_INT, &(h)->max_body, "65536", 1,	\
	  16777216, "largest request body accepted (else 413)" }
/* clang-format on */

/*
 * What a handler sees. The fields are read-only for handlers and stay
 * valid until es_http_resume() or, without suspension, until the handler
 * returns.
 */
struct es_request {
	const char *method; /* as sent; HEAD also reaches GET routes */
	const char *path; /* percent-decoded by libmicrohttpd, no query */
	const char *route; /* the matched pattern, for logs and metrics */
	const char *id; /* the client's X-Request-Id if it is 1-64 of
			   [A-Za-z0-9._:-], else made up; sent back */
	const char *body; /* NUL-terminated copy, "" without a body */
	size_t len;
	json_t *json; /* the parsed object for ES_ROUTE_JSON routes */
	void *ctx; /* as given to es_http_start() */
	const void *arg; /* the matched route's `arg` */
	/*
	 * Who is asking, verified before the handler runs (NULL only on
	 * ES_ROUTE_PUBLIC routes). Its roles meet the route's.
	 */
	const struct es_principal *principal;
};

/*
 * Handlers.
 *
 * A handler either answers before returning (one es_http_send_*() call,
 * after any es_http_add_header() calls), or calls es_http_suspend() and
 * hands `req` to another thread, which answers later with the same
 * functions and then calls es_http_resume(). Who may call what:
 *
 * - Until es_http_suspend(), only the handler's thread touches `req`.
 * - After es_http_suspend() returns, exactly one other thread owns
 *   `req`: it may read it, call es_http_add_header() and one
 *   es_http_send_*(), and must finally call es_http_resume(); after
 *   that `req` is gone. The handler must return without touching `req`
 *   once it has handed it over.
 * - The shutdown may answer a suspended request itself (see
 *   es_http_drain() and es_http_stop()); the owner's later send is then
 *   ignored, and its es_http_resume() is still required and still safe.
 *   The request, and what es_request_header() and es_request_query()
 *   return from then on, stay valid until es_http_resume(); strings
 *   they returned before es_http_suspend() do not (they live in
 *   libmicrohttpd's memory of the connection, which such an answer
 *   frees): copy what the owner needs of them.
 * - An owner that is about to do something that must not happen once
 *   the client was told "503, not done" (a command's append) first
 *   calls es_http_take(): when it returns false, the request was
 *   answered so already, and the owner must not do it, only resume.
 *   When it returns true, the request is the owner's to answer for
 *   good: the shutdown answers it 504 (outcome unknown), never 503, if
 *   the owner has not answered when es_http_stop()'s wait ends.
 *
 * A handler that returns without answering or suspending gets a 500.
 * Sending twice keeps the first response.
 */
void es_http_suspend(struct es_request *req);
void es_http_resume(struct es_request *req);

/*
 * The owner of a suspended request takes it for an action whose
 * outcome the answer must tell: false if the shutdown answered it 503
 * already (then skip the action and resume). Under the server's lock,
 * so a take and es_http_drain()'s 503s never cross.
 */
bool es_http_take(struct es_request *req);

/* A `{name}` captured by the route, or NULL. ownership: borrowed. */
const char *es_request_param(const struct es_request *req, const char *name);

/*
 * A request header (case-insensitive name) or a decoded query argument,
 * or NULL. For the handler's thread, or the owner of a suspended request.
 * ownership: borrowed; before es_http_suspend() until the suspension or
 * the handler's return, after it until es_http_resume().
 */
const char *es_request_header(const struct es_request *req, const char *name);

/*
 * "jwt", or "off" when the server was started with AUTH=off (every
 * request is the anonymous principal): for /ready's body.
 */
const char *es_request_auth_mode(const struct es_request *req);
const char *es_request_query(const struct es_request *req, const char *name);

/* Add a header to the response (before or after es_http_send_*()). */
void es_http_add_header(struct es_request *req, const char *name,
			const char *value);

/* Answer with `body` as application/json. ownership: takes `body`. */
void es_http_send_json(struct es_request *req, unsigned int status,
		       json_t *body);

/*
 * Answer with err as application/problem+json (es_error_problem()), plus
 * Retry-After on 503 (err->retry_after, else 1 s) and Allow on 405.
 * ownership: borrows `err`.
 */
void es_http_send_problem(struct es_request *req, const struct es_error *err);

/* Answer with `len` bytes of `text` as `content_type`. ownership: borrows. */
void es_http_send_text(struct es_request *req, unsigned int status,
		       const char *content_type, const char *text, size_t len);

/*
 * The same without a copy: answer with the first `len` bytes of `buf`, a
 * malloc()ed block that is sent as it is and then freed. With status 304
 * libmicrohttpd sends no body but a Content-Length of `len`: give the
 * 200's body, so that the length is the 200's (RFC 9110 section 8.6
 * allows that length or none; libmicrohttpd 0.9.75 cannot leave it out).
 * ownership: takes `buf` (freed with free(), even when the answer fails).
 */
void es_http_send_buffer(struct es_request *req, unsigned int status,
			 const char *content_type, char *buf, size_t len);

/*
 * Whether a Content-Type value names JSON: application/json, optionally
 * with the one parameter charset=utf-8 (quoted or not), case-insensitive,
 * spaces and tabs allowed around ';'. Anything else is 0: other types
 * (text/json, application/jsonx), other charsets, other parameters.
 */
int es_http_is_json_type(const char *content_type);

/*
 * es_http_send_buffer() with `n` more headers, headers[2i] the name and
 * headers[2i + 1] the value of each, on the answer: for the owner of a
 * suspended request, one lock for the answer and all of its headers
 * rather than one per es_http_add_header() call.
 * ownership: takes `buf` as es_http_send_buffer() does; borrows the rest.
 */
void es_http_send_buffer_with(struct es_request *req, unsigned int status,
			      const char *content_type, char *buf, size_t len,
			      const char *const *headers, size_t n);

struct es_http;

/*
 * Listen on cfg->bind_address:cfg->port and serve `routes` with an
 * internal thread pool (epoll). Every request gets one "request" log line
 * when it completes. ES_EINTERNAL if the daemon cannot start (address in
 * use, bad bind address).
 * ownership: borrows `cfg`, `routes` and `ctx`, which must outlive the
 * server; caller frees with es_http_stop().
 */
struct es_http *es_http_start(const struct es_http_config *cfg,
			      const struct es_route *routes, size_t nroutes,
			      void *ctx, struct es_error *err);

/*
 * The CPUs this process may run on (its affinity mask, as taskset sets
 * it), at least 1: the HTTP threads when cfg->threads is 0.
 */
long es_http_cpus(void);

/* The port actually bound (useful when cfg->port was 0). */
unsigned int es_http_port(const struct es_http *h);

/* Requests between their first callback and their completion. */
unsigned int es_http_in_flight(const struct es_http *h);

/*
 * Shutdown, in two steps, so that a service can settle the work its
 * owners hold in between:
 *
 * es_http_drain() stops accepting (new connections are refused; the
 * requests on open ones are still served, their answers close them),
 * waits up to `grace_ms` for every request in flight to finish, then
 * answers 503 "shutting down" each request still suspended that no
 * owner took (es_http_take()); from then on a request suspended is
 * answered 503 at once and cannot be taken. Returns how many it
 * answered. A second call does nothing.
 *
 * es_http_stop() drains with `wait_ms` as the grace period if that was
 * not done, waits up to `wait_ms` for the owners of the taken requests
 * to answer and resume them, answers those still waiting 504 (outcome
 * unknown, retry with the same Idempotency-Key: their owner may still
 * act), then stops the daemon and frees `h` (once the last owner
 * resumed). Returns the number of requests cut short: answered by the
 * shutdown, or still unfinished when the daemon stopped.
 */
int es_http_drain(struct es_http *h, int grace_ms);
int es_http_stop(struct es_http *h, int wait_ms);

/*
 * Write the request counters in Prometheus text format:
 * http_requests_total{route,status} and the histogram
 * http_request_duration_seconds{route}. Requests that matched no route
 * count under route="unmatched".
 */
int es_http_metrics_write(const struct es_http *h, FILE *out);

#endif
