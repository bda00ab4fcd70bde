/*
 * es_http.c - the HTTP server both services run on (libmicrohttpd).
 *
 * libmicrohttpd calls on_uri() when a request line arrives (we allocate
 * the request there, so the log and the in-flight count see every
 * request), on_request() after the headers, for each body chunk and once
 * more when the body is complete (the route's handler runs then), and
 * on_completed() when the request is over (one log line, the counters,
 * and our reference on the request is dropped). The checks that must come
 * before any handler (framing, limits, the request's deadline) run in
 * on_request()'s first call, once the headers are in; the deadline is
 * checked again with each piece of body.
 *
 * Suspended requests: es_http_suspend() gives the handler's ownership of
 * the request to another thread (the "owner"); from then on the
 * request's response, state and references change under its own lock,
 * r->lock, since es_http_drain() and es_http_stop() may race with the
 * owner. h->lock guards the list of suspended requests and the count of
 * owners' references; it is taken before r->lock, and only twice per
 * request (suspend, resume): one lock for every request in flight was
 * contended enough to cost several futex calls per request. The owner's
 * es_http_resume() makes libmicrohttpd call on_request() again, which
 * queues the stored response. es_http_suspend() also copies the request
 * headers and query arguments into memory of the request's own: once
 * the shutdown answers a suspended request, libmicrohttpd frees the
 * connection's memory while the owner may still be reading them.
 */
#define _GNU_SOURCE /* sched_getaffinity(), CPU_COUNT() */
#include "es_array.h"
#include "es_http.h"

#include <arpa/inet.h>
#include <errno.h>
#include <linux/tcp.h> /* struct tcp_info with tcpi_bytes_received */
#include <microhttpd.h>
#include <netinet/in.h>
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/random.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <time.h>
#include <unistd.h>

#include "es_json.h"
#include "es_log.h"

#define MAX_STATUS    600
#define CLOSE_WAIT_MS 1000 /* after the grace period, for forced answers */
#define TICK_MS	      5 /* how often the shutdown looks again */
#define DISCARD_MAX   (1024 * 1024) /* over-cap chunked bytes read to 413 */
#define WATCH_TICK_MS 500 /* how often the header deadline is checked */

/* Latency histogram bounds, seconds (Prometheus `le`); +Inf is `count`. */
static const double latency_le[] = { 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025,
				     0.05,   0.1,   0.25,   0.5,   1,	 2.5 };

struct route_stats {
	atomic_ulong by_status[MAX_STATUS]; /* [0]: no status (aborted) */
	atomic_ulong le[ARRAY_SIZE(latency_le)]; /* not cumulative */
	atomic_ulong count;
	atomic_ulong sum_us;
};

enum req_state {
	REQ_ACTIVE, /* the handler's thread owns it */
	REQ_SUSPENDED, /* the owner may send and must resume */
	REQ_RESUMED /* answered (by the owner or by es_http_stop()) */
};

struct header {
	struct header *next;
	char *name, *value;
};

/* A request header or query argument, copied by es_http_suspend(). */
struct value {
	enum MHD_ValueKind kind;
	const char *key, *value; /* NULL value: "?flag" without '=' */
};

struct request {
	struct es_request pub;
	struct es_http *h;
	struct MHD_Connection *conn; /* NULL once completed */
	struct timespec start;
	bool started; /* headers seen: routed and checked */
	bool handled; /* the handler has run */
	bool suspended; /* es_http_suspend() was called: lock r->lock */
	bool mhd_suspended; /* MHD_suspend_connection() was called */
	bool taken; /* es_http_take(): its owner answers it, not a 503 */
	bool copied; /* values[] holds the headers and query arguments */
	bool too_large;
	bool bad_target; /* the raw request target has a space, a control
			    byte or %00 */
	size_t discarded; /* body bytes past the cap, dropped */
	enum req_state state;
	int refs; /* on_uri(): 1, es_http_suspend(): +1 */
	size_t route_index; /* h->nroutes: unmatched */
	struct es_match match;
	char *strings; /* method and path, owned */
	char *body;
	size_t body_cap;
	struct MHD_Response *response; /* stored until queued */
	unsigned int status; /* of the stored response */
	unsigned int sent; /* status queued to libmicrohttpd, 0 if none */
	struct header *headers; /* added before the response exists */
	struct value *values; /* nvalues, then their strings: one block */
	size_t nvalues;
	struct request *prev, *next; /* in h->suspended */
	struct track *track; /* its connection's, NULL without a deadline */
	unsigned long num; /* the number in its made-up id */
	char id[72];
	char correlation[129]; /* X-Correlation-Id sent back, for the log */
	struct es_principal principal; /* pub.principal points here */
	pthread_mutex_t lock; /* once suspended: see the file's comment */
};

struct es_http {
	struct MHD_Daemon *daemon;
	const struct es_route *routes;
	size_t nroutes;
	void *ctx;
	struct es_auth *auth; /* borrowed; NULL: every token is refused */
	size_t max_body;
	long request_timeout_ms; /* 0: no deadline */
	unsigned int port;
	atomic_uint in_flight;
	atomic_bool stopping; /* quiesced: answers say Connection: close */
	atomic_ulong next_id;
	char id_prefix[16];
	pthread_mutex_t lock;
	struct request *suspended; /* waiting for their owners */
	unsigned int held; /* owners' references not yet resumed */
	atomic_uint resuming; /* owners between unlinking and waking theirs */
	bool closing; /* drained: new suspends are answered 503 at once,
			 es_http_take() refuses */
	bool stopped; /* the daemon is gone; free h when held reaches 0 */
	/* the stopping thread's own */
	bool drained; /* es_http_drain() ran */
	MHD_socket listen_fd; /* quiesced, closed after the daemon stops */
	int cut; /* requests es_http_drain() answered 503 */
	struct route_stats *stats; /* nroutes + 1 */
	/* the header deadline (see "the header deadline" below) */
	long header_timeout_ms; /* 0: none, and no watchdog */
	pthread_mutex_t track_lock; /* the list; a track's fd stays open */
	pthread_cond_t track_cond;
	struct track *tracks;
	bool watch_stop;
	pthread_t watchdog;
};

/* ---- requests ---- */

static double elapsed_s(const struct timespec *start)
{
	struct timespec now;

	clock_gettime(CLOCK_MONOTONIC, &now);
	return (double)(now.tv_sec - start->tv_sec) +
	       (double)(now.tv_nsec - start->tv_nsec) / 1e9;
}

/* "<prefix>-<num in hex>" into `id` (72 bytes): "%s-%lx" without printf. */
static void format_id(char id[72], const char *prefix, unsigned long num)
{
	static const char hex[] = "0123456789abcdef";
	char digits[2 * sizeof(num)];
	size_t n = strlen(prefix), k = 0;

	do {
		digits[k++] = hex[num & 15];
		num >>= 4;
	} while (num);
	memcpy(id, prefix, n);
	id[n++] = '-';
	while (k)
		id[n++] = digits[--k];
	id[n] = '\0';
}

static struct request *request_new(struct es_http *h)
{
	struct request *r = calloc(1, sizeof(*r));

	if (!r)
		return NULL;
	r->h = h;
	pthread_mutex_init(&r->lock, NULL);
	r->refs = 1;
	r->state = REQ_ACTIVE;
	r->route_index = h->nroutes;
	r->pub.ctx = h->ctx;
	r->pub.body = "";
	clock_gettime(CLOCK_MONOTONIC, &r->start);
	r->num =
		atomic_fetch_add_explicit(&h->next_id, 1, memory_order_relaxed);
	format_id(r->id, h->id_prefix, r->num);
	r->pub.id = r->id;
	atomic_fetch_add(&h->in_flight, 1);
	return r;
}

static void request_free(struct request *r)
{
	struct header *hd, *next;

	for (hd = r->headers; hd; hd = next) {
		next = hd->next;
		free(hd->name);
		free(hd->value);
		free(hd);
	}
	if (r->response)
		MHD_destroy_response(r->response);
	json_decref(r->pub.json);
	free(r->body);
	free(r->strings);
	free(r->values);
	pthread_mutex_destroy(&r->lock);
	free(r);
}

static void http_free(struct es_http *h)
{
	pthread_mutex_destroy(&h->lock);
	free(h->stats);
	free(h);
}

/* Drop one reference; r->lock is held if r->suspended. Whether to free. */
static bool request_unref(struct request *r)
{
	return --r->refs == 0;
}

static void lock_if(struct request *r)
{
	if (r->suspended)
		pthread_mutex_lock(&r->lock);
}

static void unlock_if(struct request *r)
{
	if (r->suspended)
		pthread_mutex_unlock(&r->lock);
}

static struct request *request_of(struct es_request *req)
{
	return (struct request *)((char *)req - offsetof(struct request, pub));
}

static bool sane_request_id(const char *s)
{
	size_t n = 0;

	for (; s[n]; n++)
		if (n == 64 || !(s[n] == '-' || s[n] == '_' || s[n] == '.' ||
				 s[n] == ':' || (s[n] >= '0' && s[n] <= '9') ||
				 (s[n] >= 'a' && s[n] <= 'z') ||
				 (s[n] >= 'A' && s[n] <= 'Z')))
			return false;
	return n > 0;
}

/* An X-Correlation-Id worth echoing: 1-128 printable ASCII, no spaces. */
static bool sane_correlation_id(const char *s)
{
	size_t n = 0;

	for (; s[n]; n++)
		if (n == 128 || s[n] < 0x21 || s[n] > 0x7e)
			return false;
	return n > 0;
}

/* ---- responses ---- */

static struct MHD_Response *response_from(char *buf, size_t len,
					  const char *type)
{
	struct MHD_Response *resp;

	resp = MHD_create_response_from_buffer(len, buf, MHD_RESPMEM_MUST_FREE);
	if (!resp) {
		free(buf);
		return NULL;
	}
	MHD_add_response_header(resp, MHD_HTTP_HEADER_CONTENT_TYPE, type);
	return resp;
}

static struct MHD_Response *problem_response(const struct es_error *err,
					     const char *allow)
{
	static const char fallback[] =
		"{\"type\":\"https://tandem.dev/problems/internal\","
		"\"title\":\"Internal error\",\"status\":500}";
	unsigned int status = es_error_status(err->code);
	struct MHD_Response *resp;
	char retry[24], *body = NULL;
	json_t *p;

	p = es_error_problem(err);
	if (!p) {
		/* the detail may have echoed bytes that are not UTF-8 */
		struct es_error tmp = *err;

		es_json_printable(tmp.detail);
		p = es_error_problem(&tmp);
	}
	if (p)
		body = json_dumps(p, JSON_COMPACT);
	json_decref(p);
	if (!body)
		body = strdup(fallback);
	if (!body)
		return NULL;
	resp = response_from(body, strlen(body), "application/problem+json");
	if (!resp)
		return NULL;
	if (status == MHD_HTTP_SERVICE_UNAVAILABLE) {
		snprintf(retry, sizeof(retry), "%d",
			 err->retry_after > 0 ? err->retry_after : 1);
		MHD_add_response_header(resp, MHD_HTTP_HEADER_RETRY_AFTER,
					retry);
	}
	if (status == MHD_HTTP_METHOD_NOT_ALLOWED && allow && *allow)
		MHD_add_response_header(resp, MHD_HTTP_HEADER_ALLOW, allow);
	return resp;
}

/*
 * Store `resp` as the answer to `r` unless one is already there or the
 * request was answered for its owner. ownership: takes `resp`.
 */
static void set_response(struct request *r, unsigned int status,
			 struct MHD_Response *resp)
{
	struct header *hd, *next;
	bool stored = false;

	if (!resp) {
		es_log(ES_LOG_ERROR, "response_failed", "{s:s, s:i}",
		       "request_id", r->id, "status", (int)status);
		return;
	}
	lock_if(r);
	if (!r->response && r->state != REQ_RESUMED) {
		for (hd = r->headers; hd; hd = next) {
			next = hd->next;
			MHD_add_response_header(resp, hd->name, hd->value);
			free(hd->name);
			free(hd->value);
			free(hd);
		}
		r->headers = NULL;
		r->response = resp;
		r->status = status;
		stored = true;
	}
	unlock_if(r);
	if (!stored)
		MHD_destroy_response(resp);
}

void es_http_send_json(struct es_request *req, unsigned int status,
		       json_t *body)
{
	struct request *r = request_of(req);
	char *text = body ? json_dumps(body, JSON_COMPACT) : NULL;

	json_decref(body);
	if (!text) {
		struct es_error err = ES_ERROR_INIT;

		es_error_set(&err, ES_EINTERNAL, "cannot encode the response");
		es_http_send_problem(req, &err);
		return;
	}
	set_response(r, status,
		     response_from(text, strlen(text), "application/json"));
}

const char *es_request_auth_mode(const struct es_request *req)
{
	const struct es_http *h = request_of((struct es_request *)req)->h;

	return h->auth && es_auth_off(h->auth) ? "off" : "jwt";
}

void es_http_send_problem(struct es_request *req, const struct es_error *err)
{
	struct request *r = request_of(req);

	set_response(r, es_error_status(err->code),
		     problem_response(err, r->match.allow));
}

void es_http_send_text(struct es_request *req, unsigned int status,
		       const char *content_type, const char *text, size_t len)
{
	char *copy = malloc(len + 1);

	if (copy) {
		memcpy(copy, text, len);
		copy[len] = '\0';
	}
	es_http_send_buffer(req, status, content_type, copy, len);
}

void es_http_send_buffer(struct es_request *req, unsigned int status,
			 const char *content_type, char *buf, size_t len)
{
	set_response(request_of(req), status,
		     buf ? response_from(buf, len, content_type) : NULL);
}

void es_http_send_buffer_with(struct es_request *req, unsigned int status,
			      const char *content_type, char *buf, size_t len,
			      const char *const *headers, size_t n)
{
	struct MHD_Response *resp =
		buf ? response_from(buf, len, content_type) : NULL;

	/* the response is ours alone until set_response() stores it */
	for (size_t i = 0; resp && i < n; i++)
		MHD_add_response_header(resp, headers[2 * i],
					headers[2 * i + 1]);
	set_response(request_of(req), status, resp);
}

void es_http_add_header(struct es_request *req, const char *name,
			const char *value)
{
	struct request *r = request_of(req);
	struct header *hd;

	lock_if(r);
	if (strcasecmp(name, "X-Correlation-Id") == 0)
		snprintf(r->correlation, sizeof(r->correlation), "%s", value);
	if (r->response) {
		MHD_add_response_header(r->response, name, value);
	} else if (r->state != REQ_RESUMED) {
		hd = calloc(1, sizeof(*hd));
		if (hd) {
			hd->name = strdup(name);
			hd->value = strdup(value);
		}
		if (hd && hd->name && hd->value) {
			struct header **tail = &r->headers;

			while (*tail)
				tail = &(*tail)->next;
			*tail = hd; /* keep the order they were added in */
		} else if (hd) {
			free(hd->name);
			free(hd->value);
			free(hd);
		}
	}
	unlock_if(r);
}

/* Hand the stored response to libmicrohttpd (500 if there is none). */
static enum MHD_Result queue(struct request *r)
{
	struct MHD_Response *resp;
	enum MHD_Result ret;
	unsigned int status;

	lock_if(r);
	resp = r->response;
	r->response = NULL;
	status = r->status;
	unlock_if(r);
	if (!resp) {
		struct es_error err = ES_ERROR_INIT;

		es_log(ES_LOG_ERROR, "no_response", "{s:s, s:s?}", "request_id",
		       r->id, "route", r->pub.route);
		es_error_set(&err, ES_EINTERNAL, "the request got no answer");
		status = MHD_HTTP_INTERNAL_SERVER_ERROR;
		resp = problem_response(&err, NULL);
		if (!resp)
			return MHD_NO;
	}
	MHD_add_response_header(resp, "X-Request-Id", r->id);
	/*
	 * An answer to a verified principal is that principal's: no shared
	 * cache may keep it, and a private one asks again (the ETag makes
	 * that cheap) rather than show an old balance.
	 */
	if (r->pub.principal &&
	    !MHD_get_response_header(resp, MHD_HTTP_HEADER_CACHE_CONTROL))
		MHD_add_response_header(resp, MHD_HTTP_HEADER_CACHE_CONTROL,
					"private, no-cache");
	/* echo the client's correlation id on answers no handler gave */
	if (r->correlation[0] &&
	    !MHD_get_response_header(resp, "X-Correlation-Id"))
		MHD_add_response_header(resp, "X-Correlation-Id",
					r->correlation);
	if (atomic_load(&r->h->stopping))
		MHD_add_response_header(resp, MHD_HTTP_HEADER_CONNECTION,
					"close");
	ret = MHD_queue_response(r->conn, status, resp);
	if (ret == MHD_YES)
		r->sent = status;
	MHD_destroy_response(resp);
	return ret;
}

/* ---- the request pipeline ---- */

/* What scan_header() found among the request headers. */
struct header_scan {
	unsigned int content_length; /* how many Content-Length headers */
	unsigned int transfer_encoding; /* how many Transfer-Encoding */
	unsigned int authorization; /* how many Authorization headers */
	bool chunked; /* the last Transfer-Encoding was "chunked" */
	char te[48]; /* the last Transfer-Encoding, for the detail */
	const char *prev_key; /* the previous header, for line_ends_at() */
	const char *prev_end; /* where its value ends (its terminating NUL) */
	struct es_error *err; /* set on the first bad header */
};

/* RFC 9110 tchar. */
static bool is_tchar(unsigned char c)
{
	return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') ||
	       (c >= 'A' && c <= 'Z') || (c && strchr("!#$%&'*+-.^_`|~", c));
}

/*
 * NUL bytes in header values, and folded header lines. libmicrohttpd
 * 0.9.75 splits the header block into lines at CR/LF and then treats
 * each line as a C string: a value ends at its first NUL byte, and
 * MHD_get_connection_values_n() reports that shortened length, so the
 * rest of the line vanishes unseen. What it keeps is the layout: the
 * lines are parsed in place in the connection's read buffer, in order;
 * the colon after a key and each line's CR LF (or bare LF) are
 * overwritten with NULs; the next line's key starts right after. So a
 * value that really ends at its line's end is followed by one or two
 * NULs and then the next key, or, for the last header, by the empty
 * line, whose first byte is a NUL after the rewrite too. More bytes
 * before the next key mean a NUL byte in the value. A folded line
 * (obs-fold) shows as a key that libmicrohttpd moved elsewhere, away
 * from its value (it also garbles the key); RFC 9112 lets a server
 * refuse obs-fold with 400. Still unseen: a NUL that ends the last
 * value, or ends a value whose line ends in a bare LF (the NUL and the LF
 * then look like a CR LF).
 */

/* The value starts on its key's line: key, NUL (was ':'), SP/HT only. */
static bool value_follows_key(const char *key, size_t key_size,
			      const char *value)
{
	uintptr_t colon = (uintptr_t)key + key_size;

	if ((uintptr_t)value <= colon || (uintptr_t)value - colon > 256 ||
	    key[key_size] != '\0')
		return false;
	for (const char *p = key + key_size + 1; p != value; p++)
		if (*p != ' ' && *p != '\t')
			return false;
	return true;
}

/* A value ending at `end` is followed by its line's end, then `next`. */
static bool line_ends_at(const char *end, const char *next)
{
	uintptr_t gap = (uintptr_t)next - (uintptr_t)end;

	if ((uintptr_t)next <= (uintptr_t)end || gap > 2)
		return false;
	return end[0] == '\0' && (gap == 1 || end[1] == '\0');
}

static enum MHD_Result scan_header(void *cls, enum MHD_ValueKind kind,
				   const char *key, size_t key_size,
				   const char *value, size_t value_size)
{
	struct header_scan *s = cls;
	bool token = key && key_size > 0;

	(void)kind;
	/* a NUL byte in the name fails here too: it is not a tchar */
	for (size_t i = 0; token && i < key_size; i++)
		token = is_tchar((unsigned char)key[i]);
	if (!token || !value) {
		es_error_set(s->err, ES_EMALFORMED,
			     "a header name is not a valid token");
		return MHD_NO;
	}
	if (!value_follows_key(key, key_size, value)) {
		es_error_set(s->err, ES_EMALFORMED,
			     "a header is folded over several lines");
		return MHD_NO;
	}
	if (strlen(value) != value_size ||
	    (s->prev_end && !line_ends_at(s->prev_end, key))) {
		es_error_set(s->err, ES_EMALFORMED,
			     "header '%.60s' contains a NUL byte",
			     s->prev_key ? s->prev_key : key);
		return MHD_NO;
	}
	s->prev_key = key;
	s->prev_end = value + value_size;
	if (strcasecmp(key, MHD_HTTP_HEADER_CONTENT_LENGTH) == 0) {
		s->content_length++;
	} else if (strcasecmp(key, MHD_HTTP_HEADER_TRANSFER_ENCODING) == 0) {
		s->transfer_encoding++;
		s->chunked = strcasecmp(value, "chunked") == 0;
		snprintf(s->te, sizeof(s->te), "%s", value);
	} else if (strcasecmp(key, MHD_HTTP_HEADER_AUTHORIZATION) == 0) {
		s->authorization++;
	}
	return MHD_YES;
}

/*
 * Refuse, once the headers are in, what another HTTP parser on the way
 * could frame differently (request smuggling) or libmicrohttpd would read
 * in a way we do not want; see es_http.h. ES_EMALFORMED in `err`.
 */
static int check_framing(const struct request *r, struct MHD_Connection *conn,
			 struct es_error *err)
{
	struct header_scan s = { .err = err };

	if (r->bad_target)
		return es_error_set(err, ES_EMALFORMED,
				    "the request target contains a space, a "
				    "control character or %%00");
	MHD_get_connection_values_n(conn, MHD_HEADER_KIND, scan_header, &s);
	if (es_error_isset(err))
		return -1;
	/* the last value: its line's terminator, then the empty line */
	if (s.prev_end && s.prev_end[1] != '\0')
		return es_error_set(err, ES_EMALFORMED,
				    "header '%.60s' contains a NUL byte",
				    s.prev_key);
	if (s.content_length > 1)
		return es_error_set(err, ES_EMALFORMED,
				    "duplicated Content-Length header");
	if (s.transfer_encoding > 1)
		return es_error_set(err, ES_EMALFORMED,
				    "more than one Transfer-Encoding header");
	if (s.transfer_encoding && !s.chunked)
		return es_error_set(
			err, ES_EMALFORMED,
			"Transfer-Encoding '%s' is not supported, only 'chunked'",
			s.te);
	if (s.transfer_encoding && s.content_length)
		return es_error_set(
			err, ES_EMALFORMED,
			"Content-Length together with Transfer-Encoding");
	/* which one would a proxy on the way have checked? */
	if (s.authorization > 1)
		return es_error_set(err, ES_EMALFORMED,
				    "more than one Authorization header");
	return 0;
}

/* Whether the time for the request to arrive (REQUEST_TIMEOUT) is up. */
static bool past_deadline(const struct request *r)
{
	return r->h->request_timeout_ms > 0 &&
	       elapsed_s(&r->start) * 1e3 > (double)r->h->request_timeout_ms;
}

/*
 * The 408 problem, as JSON text: "`what` within `seconds` s". es_error has
 * no code for it: only this file answers 408. Caller frees with free().
 */
static char *timeout_problem(const char *what, long seconds)
{
	char detail[96];
	char *text;
	json_t *p;

	snprintf(detail, sizeof(detail), "%s within %ld s", what, seconds);
	p = json_pack("{s:s, s:s, s:i, s:s}", "type",
		      "https://tandem.dev/problems/request-timeout", "title",
		      "Request timeout", "status", MHD_HTTP_REQUEST_TIMEOUT,
		      "detail", detail);
	text = p ? json_dumps(p, JSON_COMPACT) : NULL;
	json_decref(p);
	return text;
}

static char *request_timeout_problem(const struct es_http *h)
{
	return timeout_problem("the request did not arrive whole",
			       h->request_timeout_ms / 1000);
}

/*
 * Answer 408 and close: replaces any answer stored for the request. For
 * the moments libmicrohttpd can queue an answer (headers or body
 * complete); write_timeout() is for the others.
 */
static void store_timeout(struct request *r)
{
	char *text = request_timeout_problem(r->h);

	es_log(ES_LOG_INFO, "request_timeout", "{s:s, s:s?}", "request_id",
	       r->id, "route", r->pub.route);
	if (r->response) {
		MHD_destroy_response(r->response); /* not suspended yet */
		r->response = NULL;
	}
	set_response(r, MHD_HTTP_REQUEST_TIMEOUT,
		     text ? response_from(text, strlen(text),
					  "application/problem+json")
			  : NULL);
	es_http_add_header(&r->pub, MHD_HTTP_HEADER_CONNECTION, "close");
}

/*
 * Write a 408 with `text` (problem+json, may be NULL) and Connection:
 * close straight to socket `fd`, for the request `id`, without waiting:
 * best effort, a full socket buffer drops it. Whether it was sent.
 */
static bool send_timeout(int fd, const char *id, const char *text)
{
	char head[320], date[40];
	size_t len = text ? strlen(text) : 0;
	time_t now = time(NULL);
	struct tm tm;
	int n;

	gmtime_r(&now, &tm);
	strftime(date, sizeof(date), "%a, %d %b %Y %H:%M:%S GMT", &tm);
	n = snprintf(head, sizeof(head),
		     "HTTP/1.1 408 Request Timeout\r\nDate: %s\r\n"
		     "Connection: close\r\n"
		     "Content-Type: application/problem+json\r\n"
		     "X-Request-Id: %s\r\nContent-Length: %zu\r\n\r\n",
		     date, id, len);
	if (n > 0 && (size_t)n < sizeof(head)) {
		struct iovec iov[2] = { { head, (size_t)n },
					{ (void *)text, len } };
		struct msghdr msg = { .msg_iov = iov, .msg_iovlen = 2 };

		return sendmsg(fd, &msg, MSG_NOSIGNAL | MSG_DONTWAIT) > 0;
	}
	return false;
}

/*
 * Answer 408 while the body is still arriving, when libmicrohttpd 0.9.75
 * refuses to queue a response: write it to the socket ourselves, then the
 * caller returns MHD_NO and libmicrohttpd closes the connection. Safe
 * because we run on the connection's thread inside its callback, and
 * nothing of the connection is waiting to be sent: answers to earlier
 * requests on it went out before this one was read, and so did a 100
 * Continue before its body.
 */
static void write_timeout(struct request *r, struct MHD_Connection *conn)
{
	const union MHD_ConnectionInfo *ci;
	char *text = request_timeout_problem(r->h);

	es_log(ES_LOG_INFO, "request_timeout", "{s:s, s:s?}", "request_id",
	       r->id, "route", r->pub.route);
	ci = MHD_get_connection_info(conn, MHD_CONNECTION_INFO_CONNECTION_FD);
	if (ci && send_timeout(ci->connect_fd, r->id, text))
		r->sent = MHD_HTTP_REQUEST_TIMEOUT;
	free(text);
}

/*
 * ---- the header deadline ----
 *
 * libmicrohttpd 0.9.75 has no limit on the header phase as a whole (its
 * timeout is reset by every byte), so we keep one of our own. Each
 * connection gets a track when it opens (MHD_OPTION_NOTIFY_CONNECTION);
 * a watchdog thread looks at every track each WATCH_TICK_MS and cuts the
 * connections whose current request's headers are not in by their
 * deadline: shutdown(), never close(), so that libmicrohttpd notices on
 * its own thread and closes the connection as it always does.
 *
 * The header phase of a connection's first request starts when the
 * connection is accepted (a client that sends nothing is cut too). After
 * an answer, the connection is idle, under IDLE_TIMEOUT_SECONDS only,
 * until the next request starts: when its request line is in (on_uri())
 * or, for a request line that drips, when the watchdog sees the
 * socket's received byte count (TCP_INFO) grow; the watchdog takes
 * that count when it first sees the connection idle, so bytes sent
 * before that are noticed with the next ones. The phase ends when the
 * headers are complete (the first on_request()); the body has
 * REQUEST_TIMEOUT_SECONDS.
 *
 * All of a track's phase is one atomic word, changed by compare and
 * swap, so the request path takes no lock: the connection's thread moves
 * it between T_HEADERS, T_BUSY and T_IDLE, the watchdog from T_IDLE to
 * T_HEADERS and from T_HEADERS to T_CUT, which is final. A request whose
 * headers complete after the cut is refused (its connection is going).
 * The list of tracks is under h->track_lock, which the watchdog holds
 * while it uses a track's fd: libmicrohttpd closes the socket only after
 * MHD_CONNECTION_NOTIFY_CLOSED, which takes the lock to drop the track.
 *
 * Once the request line is in, the cut is answered 408 problem+json with
 * Connection: close, written by the watchdog (nothing else is written to
 * the connection while its headers arrive, except libmicrohttpd's own
 * error answers, which then end the connection anyway), best effort; the
 * request's log line says status 408, termination "header_timeout".
 * Before that, the connection is closed without an answer.
 */
enum track_phase {
	T_HEADERS, /* value: when the phase started, ms (now_ms()) */
	T_IDLE, /* value: answers on the connection so far */
	T_BUSY, /* headers in: body, handler, answer */
	T_CUT /* by the watchdog, for good */
};

struct track {
	struct track *prev, *next; /* h->tracks */
	int fd;
	_Atomic uint64_t state; /* phase | value << 2 */
	atomic_ulong
		request; /* 1 + num of the request whose line is in, or 0 */
	atomic_bool answered; /* the watchdog sent the 408 */
	uint64_t answers; /* the connection's thread's */
	uint64_t idle_state; /* the watchdog's: the idle phase it saw */
	uint64_t idle_bytes; /* and the bytes received then */
};

static uint64_t now_ms(void)
{
	struct timespec now;

	clock_gettime(CLOCK_MONOTONIC, &now);
	return (uint64_t)now.tv_sec * 1000 + (uint64_t)now.tv_nsec / 1000000;
}

static uint64_t track_word(enum track_phase phase, uint64_t value)
{
	return value << 2 | phase;
}

static enum track_phase track_phase(uint64_t word)
{
	return (enum track_phase)(word & 3);
}

/* The connection's track, or NULL (no deadline, or it could not have one). */
static struct track *track_of(const struct es_http *h,
			      struct MHD_Connection *conn)
{
	const union MHD_ConnectionInfo *ci;

	if (!h->header_timeout_ms)
		return NULL;
	ci = MHD_get_connection_info(conn, MHD_CONNECTION_INFO_SOCKET_CONTEXT);
	return ci ? ci->socket_context : NULL;
}

/* Move `t` to `phase` unless it was cut. Whether it was cut. */
static bool track_move(struct track *t, enum track_phase phase, uint64_t value)
{
	uint64_t old = atomic_load(&t->state);

	do {
		if (track_phase(old) == T_CUT)
			return true;
	} while (!atomic_compare_exchange_weak(&t->state, &old,
					       track_word(phase, value)));
	return false;
}

/* A request line is in: its header phase runs, if it did not already. */
static void track_request_line(struct track *t, unsigned long num)
{
	uint64_t old = atomic_load(&t->state);

	atomic_store(&t->request, num + 1);
	if (track_phase(old) == T_IDLE)
		atomic_compare_exchange_strong(&t->state, &old,
					       track_word(T_HEADERS, now_ms()));
}

/*
 * The request is over: the connection is idle until the next one.
 * Whether the header deadline cut it; then sets `status` to 408 if the
 * watchdog sent that.
 */
static bool track_request_over(struct track *t, unsigned int *status)
{
	atomic_store(&t->request, 0);
	if (!track_move(t, T_IDLE, ++t->answers))
		return false;
	if (atomic_load(&t->answered))
		*status = MHD_HTTP_REQUEST_TIMEOUT;
	return true;
}

static void on_connection(void *cls, struct MHD_Connection *conn,
			  void **socket_context,
			  enum MHD_ConnectionNotificationCode code)
{
	struct es_http *h = cls;
	const union MHD_ConnectionInfo *ci;
	struct track *t;

	if (!h->header_timeout_ms)
		return;
	if (code == MHD_CONNECTION_NOTIFY_STARTED) {
		ci = MHD_get_connection_info(conn,
					     MHD_CONNECTION_INFO_CONNECTION_FD);
		t = ci ? calloc(1, sizeof(*t)) : NULL;
		if (!t)
			return; /* out of memory: no deadline for this one */
		t->fd = ci->connect_fd;
		atomic_init(&t->state, track_word(T_HEADERS, now_ms()));
		atomic_init(&t->request, 0);
		atomic_init(&t->answered, false);
		pthread_mutex_lock(&h->track_lock);
		t->next = h->tracks;
		if (h->tracks)
			h->tracks->prev = t;
		h->tracks = t;
		pthread_mutex_unlock(&h->track_lock);
		*socket_context = t;
		return;
	}
	t = *socket_context;
	if (!t)
		return;
	pthread_mutex_lock(&h->track_lock);
	if (t->prev)
		t->prev->next = t->next;
	else
		h->tracks = t->next;
	if (t->next)
		t->next->prev = t->prev;
	pthread_mutex_unlock(&h->track_lock);
	*socket_context = NULL;
	free(t);
}

/* The bytes the socket has received so far. Whether it could tell. */
static bool bytes_received(int fd, uint64_t *bytes)
{
	struct tcp_info ti;
	socklen_t len = sizeof(ti);

	if (getsockopt(fd, IPPROTO_TCP, TCP_INFO, &ti, &len) < 0 ||
	    len < offsetof(struct tcp_info, tcpi_bytes_received) +
			    sizeof(ti.tcpi_bytes_received))
		return false;
	*bytes = ti.tcpi_bytes_received;
	return true;
}

/* h->track_lock held: the header phase of `t` is over; cut it. */
static void track_cut(struct es_http *h, struct track *t)
{
	unsigned long num = atomic_load(&t->request);

	if (num) {
		char *text =
			timeout_problem("the request headers did not arrive",
					h->header_timeout_ms / 1000);
		char id[72];

		snprintf(id, sizeof(id), "%s-%lx", h->id_prefix, num - 1);
		if (send_timeout(t->fd, id, text))
			atomic_store(&t->answered, true);
		free(text);
	}
	shutdown(t->fd, SHUT_RDWR); /* libmicrohttpd sees the end and closes */
}

/* h->track_lock held: one look at every track. Returns how many were cut. */
static int watch_round(struct es_http *h)
{
	uint64_t now = now_ms(), bytes;
	int cut = 0;

	for (struct track *t = h->tracks; t; t = t->next) {
		uint64_t word = atomic_load(&t->state);

		switch (track_phase(word)) {
		case T_HEADERS:
			if (now >= (word >> 2) +
					    (uint64_t)h->header_timeout_ms &&
			    atomic_compare_exchange_strong(
				    &t->state, &word, track_word(T_CUT, 0))) {
				track_cut(h, t);
				cut++;
			}
			break;
		case T_IDLE:
			if (!bytes_received(t->fd, &bytes))
				break;
			if (word != t->idle_state) {
				t->idle_state = word; /* a new idle phase */
				t->idle_bytes = bytes;
			} else if (bytes != t->idle_bytes) {
				/* the next request's first bytes */
				atomic_compare_exchange_strong(
					&t->state, &word,
					track_word(T_HEADERS, now));
			}
			break;
		default:
			break;
		}
	}
	return cut;
}

static void *watchdog(void *arg)
{
	struct es_http *h = arg;
	struct timespec until;
	int cut;

	pthread_mutex_lock(&h->track_lock);
	while (!h->watch_stop) {
		clock_gettime(CLOCK_MONOTONIC, &until);
		until.tv_nsec += WATCH_TICK_MS * 1000000L;
		if (until.tv_nsec >= 1000000000L) {
			until.tv_sec++;
			until.tv_nsec -= 1000000000L;
		}
		pthread_cond_timedwait(&h->track_cond, &h->track_lock, &until);
		if (h->watch_stop)
			break;
		cut = watch_round(h);
		if (cut) {
			pthread_mutex_unlock(&h->track_lock);
			es_log(ES_LOG_INFO, "header_timeout", "{s:i, s:i}",
			       "connections", cut, "seconds",
			       (int)(h->header_timeout_ms / 1000));
			pthread_mutex_lock(&h->track_lock);
		}
	}
	pthread_mutex_unlock(&h->track_lock);
	return NULL;
}

/*
 * Before the daemon starts: the lock, and the watchdog if there is a
 * header deadline. -1 if the thread cannot start.
 */
static int watchdog_start(struct es_http *h, long header_timeout)
{
	pthread_condattr_t attr;

	h->header_timeout_ms = header_timeout * 1000;
	if (!h->header_timeout_ms)
		return 0;
	pthread_mutex_init(&h->track_lock, NULL);
	pthread_condattr_init(&attr);
	pthread_condattr_setclock(&attr, CLOCK_MONOTONIC);
	pthread_cond_init(&h->track_cond, &attr);
	pthread_condattr_destroy(&attr);
	if (pthread_create(&h->watchdog, NULL, watchdog, h) != 0) {
		pthread_cond_destroy(&h->track_cond);
		pthread_mutex_destroy(&h->track_lock);
		h->header_timeout_ms = 0;
		return -1;
	}
	return 0;
}

/* Once the daemon is gone (no tracks are left). */
static void watchdog_stop(struct es_http *h)
{
	if (!h->header_timeout_ms)
		return;
	pthread_mutex_lock(&h->track_lock);
	h->watch_stop = true;
	pthread_cond_signal(&h->track_cond);
	pthread_mutex_unlock(&h->track_lock);
	pthread_join(h->watchdog, NULL);
	pthread_cond_destroy(&h->track_cond);
	pthread_mutex_destroy(&h->track_lock);
}

/* Match the route; sets r->match, route_index and pub.route. */
static int route(struct request *r, struct es_error *err)
{
	struct es_http *h = r->h;

	if (es_router_match(h->routes, h->nroutes, r->pub.method, r->pub.path,
			    &r->match, err) < 0)
		return -1;
	r->route_index = (size_t)(r->match.route - h->routes);
	r->pub.route = r->match.route->pattern;
	r->pub.arg = r->match.route->arg;
	return 0;
}

/*
 * Who is asking: a route that is not ES_ROUTE_PUBLIC needs a verified
 * bearer token (401 otherwise, with WWW-Authenticate as RFC 6750 says)
 * whose roles meet the route's (403 otherwise). A token in the query
 * string is refused, never read: URLs end up in logs and histories.
 * Sets r->pub.principal. Returns 0, else -1 with the answer stored.
 */
static int authenticate(struct request *r, struct MHD_Connection *conn)
{
	const struct es_route *route = r->match.route;
	struct es_error err = ES_ERROR_INIT;
	struct timespec now;
	const char *s;

	if (route->flags & ES_ROUTE_PUBLIC)
		return 0;
	if (r->h->auth && es_auth_off(r->h->auth)) {
		snprintf(r->principal.sub, sizeof(r->principal.sub), "%s",
			 ES_AUTH_ANONYMOUS);
		r->principal.roles = ES_ROLE_ANY;
		r->pub.principal = &r->principal;
		return 0;
	}
	if (MHD_lookup_connection_value(conn, MHD_GET_ARGUMENT_KIND,
					"access_token")) {
		es_error_set(&err, ES_EUNAUTHORIZED,
			     "a token in the URL is refused; send it in the "
			     "Authorization header");
		goto refuse;
	}
	s = MHD_lookup_connection_value(conn, MHD_HEADER_KIND,
					MHD_HTTP_HEADER_AUTHORIZATION);
	if (!s) {
		es_error_set(
			&err, ES_EUNAUTHORIZED,
			"this route needs 'Authorization: Bearer <token>'");
		goto refuse;
	}
	if (!r->h->auth) {
		es_error_set(&err, ES_EUNAUTHORIZED,
			     "no token can be verified here");
		goto refuse;
	}
	clock_gettime(CLOCK_REALTIME, &now);
	if (es_auth_verify(r->h->auth, s, (int64_t)now.tv_sec, &r->principal,
			   &err) < 0)
		goto refuse;
	if (!(r->principal.roles & route->roles)) {
		char need[96];

		es_role_names(route->roles, need, sizeof(need));
		es_error_set(&err, ES_EFORBIDDEN,
			     "%s %s needs one of the roles: %s", route->method,
			     route->pattern, need[0] ? need : "(none)");
		es_http_send_problem(&r->pub, &err);
		es_error_release(&err);
		return -1;
	}
	r->pub.principal = &r->principal;
	return 0;
refuse:
	if (err.code != ES_EUNAUTHORIZED) {
		/* out of memory, say: still not verified */
		es_error_release(&err);
		es_error_set(&err, ES_EUNAUTHORIZED, "the token is not valid");
	}
	es_http_send_problem(&r->pub, &err);
	es_http_add_header(&r->pub, MHD_HTTP_HEADER_WWW_AUTHENTICATE,
			   "Bearer realm=\"tandem\", error=\"invalid_token\"");
	es_error_release(&err);
	return -1;
}

/*
 * After the headers: check the framing, route, then refuse what we will
 * not read. Returns 0 to read the body (an error answer may already be
 * stored: r->handled is then set and the body is dropped, so the
 * connection stays usable), -1 to answer at once (the connection closes)
 * or to drop the connection when nothing could be stored.
 */
static int request_begin(struct request *r, struct MHD_Connection *conn,
			 const char *url, const char *method)
{
	struct es_http *h = r->h;
	struct es_error err = ES_ERROR_INIT;
	size_t mlen = strlen(method), plen = strlen(url);
	unsigned long long cl = 0;
	bool too_large = false;
	const char *s;
	char *end;

	r->conn = conn;
	r->strings = malloc(mlen + plen + 2);
	if (!r->strings)
		return -1;
	memcpy(r->strings, method, mlen + 1);
	memcpy(r->strings + mlen + 1, url, plen + 1);
	r->pub.method = r->strings;
	r->pub.path = r->strings + mlen + 1;
	s = MHD_lookup_connection_value(conn, MHD_HEADER_KIND, "X-Request-Id");
	if (s && sane_request_id(s))
		snprintf(r->id, sizeof(r->id), "%s", s);
	s = MHD_lookup_connection_value(conn, MHD_HEADER_KIND,
					"X-Correlation-Id");
	if (s && sane_correlation_id(s))
		snprintf(r->correlation, sizeof(r->correlation), "%s", s);
	if (check_framing(r, conn, &err) < 0) {
		struct es_error ignored = ES_ERROR_INIT;

		route(r, &ignored); /* for the logs and metrics only */
		es_log(ES_LOG_INFO, "bad_framing", "{s:s, s:s}", "request_id",
		       r->id, "detail", err.detail);
		es_http_send_problem(&r->pub, &err);
		es_http_add_header(&r->pub, MHD_HTTP_HEADER_CONNECTION,
				   "close");
		r->handled = true;
		return -1;
	}
	s = MHD_lookup_connection_value(conn, MHD_HEADER_KIND,
					MHD_HTTP_HEADER_CONTENT_LENGTH);
	if (s) {
		errno = 0;
		cl = strtoull(s, &end, 10);
		too_large = errno || *end || cl > h->max_body;
	}
	if (route(r, &err) < 0) {
		es_http_send_problem(&r->pub, &err);
		r->handled = true;
		return too_large ? -1 : 0;
	}
	if (authenticate(r, conn) < 0) {
		r->handled = true;
		return too_large ? -1 : 0;
	}
	if (too_large) {
		es_error_set(&err, ES_ETOOLARGE,
			     "request body is larger than %zu bytes",
			     h->max_body);
		es_http_send_problem(&r->pub, &err);
		r->handled = true;
		return -1;
	}
	if (past_deadline(r)) {
		/* the headers alone took too long */
		store_timeout(r);
		r->handled = true;
		return -1;
	}
	if (r->match.route->flags & ES_ROUTE_JSON) {
		s = MHD_lookup_connection_value(conn, MHD_HEADER_KIND,
						MHD_HTTP_HEADER_CONTENT_TYPE);
		if (!es_http_is_json_type(s)) {
			es_error_set(
				&err, ES_EMEDIATYPE,
				"Content-Type must be application/json, got '%.60s'",
				s ? s : "");
			es_http_send_problem(&r->pub, &err);
			r->handled = true;
			return 0;
		}
	}
	if (cl > 0) {
		r->body = malloc(cl + 1);
		r->body_cap = r->body ? cl + 1 : 0;
	}
	return 0;
}

/*
 * One chunk of the body. A response cannot be queued while the body
 * streams in, so a body that outgrows the cap without having announced
 * its size (chunked) is read on and dropped, to answer 413 at its end,
 * for at most DISCARD_MAX more bytes; past that the connection is cut
 * off (returns -1). The body of a request already answered is dropped
 * the same way.
 */
static int body_append(struct request *r, const char *data, size_t n)
{
	size_t need = r->pub.len + n + 1;

	if (r->handled) {
		r->discarded += n;
		return r->discarded > r->h->max_body + DISCARD_MAX ? -1 : 0;
	}
	if (r->too_large || need - 1 > r->h->max_body) {
		if (!r->too_large)
			es_log(ES_LOG_INFO, "body_too_large", "{s:s, s:s?}",
			       "request_id", r->id, "route", r->pub.route);
		r->too_large = true;
		r->discarded += n;
		return r->discarded > DISCARD_MAX ? -1 : 0;
	}
	if (need > r->body_cap) {
		size_t cap = r->body_cap ? r->body_cap : 1024;
		char *body;

		while (cap < need)
			cap *= 2;
		if (cap > r->h->max_body + 1)
			cap = r->h->max_body + 1;
		body = realloc(r->body, cap);
		if (!body)
			return -1;
		r->body = body;
		r->body_cap = cap;
	}
	memcpy(r->body + r->pub.len, data, n);
	r->pub.len += n;
	r->body[r->pub.len] = '\0';
	r->pub.body = r->body;
	return 0;
}

/* The whole request is in: parse a JSON body, then run the handler. */
static void dispatch(struct request *r)
{
	const struct es_route *route = r->match.route;
	struct es_error err = ES_ERROR_INIT;

	if (r->too_large) {
		es_error_set(&err, ES_ETOOLARGE,
			     "request body is larger than %zu bytes",
			     r->h->max_body);
		es_http_send_problem(&r->pub, &err);
		return;
	}
	if (route->flags & ES_ROUTE_JSON) {
		r->pub.json =
			es_json_parse_object(r->pub.body, r->pub.len, &err);
		if (!r->pub.json) {
			es_http_send_problem(&r->pub, &err);
			es_error_release(&err);
			return;
		}
	}
	route->handler(&r->pub);
}

static enum MHD_Result on_request(void *cls, struct MHD_Connection *conn,
				  const char *url, const char *method,
				  const char *version, const char *upload_data,
				  size_t *upload_data_size, void **con_cls)
{
	struct es_http *h = cls;
	struct request *r = *con_cls;

	(void)version;
	if (!r) {
		r = request_new(h);
		if (!r)
			return MHD_NO;
		r->track = track_of(h, conn);
		*con_cls = r;
	}
	if (!r->started) {
		r->started = true;
		if (r->track && track_move(r->track, T_BUSY, 0))
			return MHD_NO; /* cut by the header deadline */
		if (request_begin(r, conn, url, method) < 0)
			return r->response ? queue(r) : MHD_NO;
		return MHD_YES; /* the handler runs once the body is in */
	}
	if (r->sent) {
		/* answered at once; libmicrohttpd closes without reading on */
		*upload_data_size = 0;
		return MHD_YES;
	}
	if (*upload_data_size) {
		if (past_deadline(r)) {
			write_timeout(r, conn);
			return MHD_NO;
		}
		if (body_append(r, upload_data, *upload_data_size) < 0)
			return MHD_NO;
		*upload_data_size = 0;
		return MHD_YES;
	}
	if (!r->mhd_suspended && past_deadline(r)) {
		/* the body is complete, but too late */
		store_timeout(r);
		r->handled = true;
	}
	if (!r->handled) {
		r->handled = true;
		dispatch(r);
		if (r->mhd_suspended)
			return MHD_YES; /* on_request() runs again on resume */
	}
	return queue(r);
}

/* Whether the raw request target has a byte no valid target has. */
static bool target_is_bad(const char *uri)
{
	for (const unsigned char *p = (const unsigned char *)uri; *p; p++)
		if (*p <= 0x20 || *p == 0x7f ||
		    (p[0] == '%' && p[1] == '0' && p[2] == '0'))
			return true;
	return false;
}

static void *on_uri(void *cls, const char *uri, struct MHD_Connection *conn)
{
	struct request *r = request_new(cls);

	if (r) {
		r->bad_target = target_is_bad(uri);
		r->track = track_of(cls, conn);
		if (r->track)
			track_request_line(r->track, r->num);
	}
	return r;
}

static const char *termination_name(enum MHD_RequestTerminationCode toe)
{
	switch (toe) {
	case MHD_REQUEST_TERMINATED_COMPLETED_OK:
		return "ok";
	case MHD_REQUEST_TERMINATED_WITH_ERROR:
		return "error";
	case MHD_REQUEST_TERMINATED_TIMEOUT_REACHED:
		return "timeout";
	case MHD_REQUEST_TERMINATED_DAEMON_SHUTDOWN:
		return "shutdown";
	case MHD_REQUEST_TERMINATED_READ_ERROR:
		return "read_error";
	case MHD_REQUEST_TERMINATED_CLIENT_ABORT:
		return "client_abort";
	}
	return "unknown";
}

static void count(struct es_http *h, const struct request *r, double secs)
{
	struct route_stats *st = &h->stats[r->route_index];
	unsigned int status = r->sent < MAX_STATUS ? r->sent : 0;

	atomic_fetch_add_explicit(&st->by_status[status], 1,
				  memory_order_relaxed);
	/* one bucket per request; es_http_metrics_write() sums them up */
	for (size_t i = 0; i < ARRAY_SIZE(latency_le); i++)
		if (secs <= latency_le[i]) {
			atomic_fetch_add_explicit(&st->le[i], 1,
						  memory_order_relaxed);
			break;
		}
	atomic_fetch_add_explicit(&st->count, 1, memory_order_relaxed);
	atomic_fetch_add_explicit(&st->sum_us, (unsigned long)(secs * 1e6),
				  memory_order_relaxed);
}

static void on_completed(void *cls, struct MHD_Connection *conn, void **con_cls,
			 enum MHD_RequestTerminationCode toe)
{
	struct es_http *h = cls;
	struct request *r = *con_cls;
	double secs;
	bool dead, cut;

	if (!r)
		return;
	*con_cls = NULL;
	secs = elapsed_s(&r->start);
	cut = r->track && track_request_over(r->track, &r->sent);
	if (!r->sent) {
		/* libmicrohttpd's own answer, if it still tells */
		const union MHD_ConnectionInfo *ci = MHD_get_connection_info(
			conn, MHD_CONNECTION_INFO_HTTP_STATUS);

		if (ci)
			r->sent = ci->http_status;
	}
	/* status 0: nobody answered, or libmicrohttpd does not say */
	if (toe == MHD_REQUEST_TERMINATED_COMPLETED_OK && !cut)
		es_log(ES_LOG_INFO, "request",
		       "{s:s, s:s?, s:s?, s:i, s:f, s:s?}", "request_id", r->id,
		       "method", r->pub.method, "route", r->pub.route, "status",
		       (int)r->sent, "duration_ms", secs * 1e3,
		       "correlation_id",
		       r->correlation[0] ? r->correlation : NULL);
	else
		es_log(ES_LOG_INFO, "request",
		       "{s:s, s:s?, s:s?, s:i, s:f, s:s, s:s?}", "request_id",
		       r->id, "method", r->pub.method, "route", r->pub.route,
		       "status", (int)r->sent, "duration_ms", secs * 1e3,
		       "termination",
		       cut ? "header_timeout" : termination_name(toe),
		       "correlation_id",
		       r->correlation[0] ? r->correlation : NULL);
	count(h, r, secs);
	lock_if(r);
	r->conn = NULL;
	dead = request_unref(r);
	unlock_if(r);
	if (dead)
		request_free(r);
	atomic_fetch_sub(&h->in_flight, 1);
}

/* ---- suspend and resume ---- */

/* What copy_values() counts, then fills. */
struct copy {
	struct value *values; /* NULL while counting */
	size_t n;
	size_t bytes; /* of the strings */
	char *next; /* where the next string goes */
};

static const char *copy_string(struct copy *c, const char *s)
{
	size_t n;
	char *dst;

	if (!s)
		return NULL;
	n = strlen(s) + 1;
	if (!c->values) {
		c->bytes += n;
		return NULL;
	}
	dst = c->next;
	memcpy(dst, s, n);
	c->next += n;
	return dst;
}

static enum MHD_Result copy_value(void *cls, enum MHD_ValueKind kind,
				  const char *key, const char *value)
{
	struct copy *c = cls;
	struct value *v = c->values ? &c->values[c->n] : NULL;
	const char *k = copy_string(c, key), *val = copy_string(c, value);

	if (v) {
		v->kind = kind;
		v->key = k;
		v->value = val;
	}
	c->n++;
	return MHD_YES;
}

/*
 * Copy the request headers and query arguments into r->values, for
 * es_request_header() and es_request_query() after the suspension. Out
 * of memory, the request is left without them (lookups find nothing).
 */
static void copy_values(struct request *r)
{
	const enum MHD_ValueKind kinds =
		MHD_HEADER_KIND | MHD_GET_ARGUMENT_KIND;
	struct copy c = { 0 };
	size_t total;

	r->copied = true;
	MHD_get_connection_values(r->conn, kinds, copy_value, &c);
	if (c.n == 0)
		return;
	total = c.n * sizeof(*c.values) + c.bytes;
	c.values = malloc(total);
	if (!c.values) {
		es_log(ES_LOG_ERROR, "out_of_memory", "{s:s, s:s}",
		       "request_id", r->id, "what", "the request's headers");
		return;
	}
	c.next = (char *)(c.values + c.n);
	c.n = 0;
	MHD_get_connection_values(r->conn, kinds, copy_value, &c);
	r->values = c.values;
	r->nvalues = c.n;
}

void es_http_suspend(struct es_request *req)
{
	struct request *r = request_of(req);
	struct es_http *h = r->h;
	struct es_error err = ES_ERROR_INIT;

	/* before the owner sees it: this thread still owns the connection */
	copy_values(r);
	pthread_mutex_lock(&h->lock);
	pthread_mutex_lock(&r->lock);
	r->suspended = true;
	r->refs++;
	h->held++;
	if (h->closing) {
		/* the daemon is about to stop: answer now, the owner's later
		 * send is ignored and es_http_take() refuses */
		if (!r->response) {
			es_error_set(&err, ES_EUNAVAIL,
				     "the service is shutting down");
			r->response = problem_response(&err, NULL);
			r->status = MHD_HTTP_SERVICE_UNAVAILABLE;
		}
		r->state = REQ_RESUMED;
		pthread_mutex_unlock(&r->lock);
		pthread_mutex_unlock(&h->lock);
		return;
	}
	r->state = REQ_SUSPENDED;
	r->prev = NULL;
	r->next = h->suspended;
	if (h->suspended)
		h->suspended->prev = r;
	h->suspended = r;
	/*
	 * The suspension (a system call) under r->lock alone: a wake-up
	 * needs that lock too, so none comes before it, and the server's
	 * lock is not held up meanwhile.
	 */
	pthread_mutex_unlock(&h->lock);
	r->mhd_suspended = true;
	MHD_suspend_connection(r->conn);
	pthread_mutex_unlock(&r->lock);
}

bool es_http_take(struct es_request *req)
{
	struct request *r = request_of(req);
	bool ok;

	pthread_mutex_lock(&r->lock);
	ok = r->state == REQ_SUSPENDED;
	if (ok)
		r->taken = true;
	pthread_mutex_unlock(&r->lock);
	return ok;
}

/* h->lock and r->lock held. Take `r` off the suspended list. */
static void unlink_suspended(struct es_http *h, struct request *r)
{
	if (r->prev)
		r->prev->next = r->next;
	else
		h->suspended = r->next;
	if (r->next)
		r->next->prev = r->prev;
	r->prev = r->next = NULL;
	r->state = REQ_RESUMED;
}

/* h->lock and r->lock held. Take `r` off the suspended list, wake it up. */
static void wake(struct es_http *h, struct request *r)
{
	unlink_suspended(h, r);
	MHD_resume_connection(r->conn);
}

void es_http_resume(struct es_request *req)
{
	struct request *r = request_of(req);
	struct es_http *h = r->h;
	bool dead, free_h, resume;

	pthread_mutex_lock(&h->lock);
	pthread_mutex_lock(&r->lock);
	resume = r->state == REQ_SUSPENDED;
	if (resume) {
		/* queue() answers 500 if nothing was sent */
		unlink_suspended(h, r);
		atomic_fetch_add(&h->resuming, 1);
	}
	h->held--;
	/* never with `resume`: the stop woke every request first */
	free_h = h->stopped && h->held == 0;
	pthread_mutex_unlock(&h->lock);
	/*
	 * The wake-up (a write to libmicrohttpd's event fd) under r->lock
	 * alone; es_http_stop() waits for `resuming` to drop to 0 before
	 * it stops the daemon.
	 */
	if (resume) {
		MHD_resume_connection(r->conn);
		atomic_fetch_sub(&h->resuming, 1);
	}
	dead = request_unref(r);
	pthread_mutex_unlock(&r->lock);
	if (dead)
		request_free(r);
	if (free_h)
		http_free(h);
}

/* ---- the daemon ---- */

static void on_mhd_log(void *cls, const char *fmt, va_list ap)
{
	enum es_log_level level;
	char msg[256];
	size_t n;

	(void)cls;
	vsnprintf(msg, sizeof(msg), fmt, ap);
	n = strlen(msg);
	while (n > 0 && (msg[n - 1] == '\n' || msg[n - 1] == ' '))
		msg[--n] = '\0';
	es_json_printable(msg);
	/* follows every MHD_NO of ours: a request we cut off on purpose,
	 * already logged with its reason */
	level = strncmp(msg, "Application reported internal error", 35) == 0
			? ES_LOG_DEBUG
			: ES_LOG_WARN;
	es_log(level, "http_server", "{s:s}", "message", msg);
}

static void make_id_prefix(struct es_http *h)
{
	unsigned int rnd;

	if (getrandom(&rnd, sizeof(rnd), GRND_NONBLOCK) != sizeof(rnd))
		rnd = (unsigned int)time(NULL) ^ ((unsigned int)getpid() << 16);
	snprintf(h->id_prefix, sizeof(h->id_prefix), "%08x", rnd);
}

long es_http_cpus(void)
{
	cpu_set_t set;
	long n;

	/* a process pinned with taskset gets no more threads than CPUs */
	if (sched_getaffinity(0, sizeof(set), &set) == 0 &&
	    (n = CPU_COUNT(&set)) > 0)
		return n;
	n = sysconf(_SC_NPROCESSORS_ONLN);
	return n > 0 ? n : 1;
}

struct es_http *es_http_start(const struct es_http_config *cfg,
			      const struct es_route *routes, size_t nroutes,
			      void *ctx, struct es_error *err)
{
	unsigned int flags = MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_EPOLL |
			     MHD_ALLOW_SUSPEND_RESUME | MHD_USE_ERROR_LOG;
	struct sockaddr_in6 sin6 = { .sin6_family = AF_INET6 };
	struct sockaddr_in sin = { .sin_family = AF_INET };
	struct sockaddr *addr = (struct sockaddr *)&sin;
	const union MHD_DaemonInfo *info;
	struct MHD_OptionItem pool[2] = { { MHD_OPTION_END, 0, NULL },
					  { MHD_OPTION_END, 0, NULL } };
	struct es_http *h;
	long threads = cfg->threads;

	if (inet_pton(AF_INET, cfg->bind_address, &sin.sin_addr) == 1) {
		sin.sin_port = htons((uint16_t)cfg->port);
	} else if (inet_pton(AF_INET6, cfg->bind_address, &sin6.sin6_addr) ==
		   1) {
		sin6.sin6_port = htons((uint16_t)cfg->port);
		addr = (struct sockaddr *)&sin6;
		flags |= MHD_USE_IPv6;
	} else {
		es_error_set(
			err, ES_EINVALID,
			"'BIND_ADDRESS' must be an IP address, got '%.80s'",
			cfg->bind_address);
		return NULL;
	}
	if (threads <= 0)
		threads = es_http_cpus();
	if (threads > cfg->max_connections)
		threads = cfg->max_connections; /* each gets a share of them */
	h = calloc(1, sizeof(*h));
	if (!h) {
		es_error_set(err, ES_EINTERNAL, "out of memory");
		return NULL;
	}
	h->listen_fd = MHD_INVALID_SOCKET;
	h->routes = routes;
	h->nroutes = nroutes;
	h->ctx = ctx;
	h->auth = cfg->auth;
	h->max_body = (size_t)cfg->max_body;
	h->request_timeout_ms = cfg->request_timeout * 1000;
	pthread_mutex_init(&h->lock, NULL);
	make_id_prefix(h);
	h->stats = calloc(nroutes + 1, sizeof(*h->stats));
	if (!h->stats) {
		http_free(h);
		es_error_set(err, ES_EINTERNAL, "out of memory");
		return NULL;
	}
	/*
	 * One thread: no pool, the polling thread serves (a pool size of 0
	 * or 1 draws a warning from libmicrohttpd).
	 */
	pool[0].option =
		threads > 1 ? MHD_OPTION_THREAD_POOL_SIZE : MHD_OPTION_END;
	pool[0].value = (intptr_t)threads;
	if (watchdog_start(h, cfg->header_timeout) < 0) {
		http_free(h);
		es_error_set(err, ES_EINTERNAL, "cannot start a thread");
		return NULL;
	}
	h->daemon = MHD_start_daemon(
		flags, (uint16_t)cfg->port, NULL, NULL, on_request, h,
		MHD_OPTION_EXTERNAL_LOGGER, on_mhd_log, h, MHD_OPTION_SOCK_ADDR,
		addr, MHD_OPTION_ARRAY, pool, MHD_OPTION_CONNECTION_LIMIT,
		(unsigned int)cfg->max_connections,
		MHD_OPTION_PER_IP_CONNECTION_LIMIT,
		(unsigned int)cfg->per_ip_connections,
		MHD_OPTION_CONNECTION_MEMORY_LIMIT,
		(size_t)cfg->connection_memory, MHD_OPTION_CONNECTION_TIMEOUT,
		(unsigned int)cfg->idle_timeout, MHD_OPTION_URI_LOG_CALLBACK,
		on_uri, h, MHD_OPTION_NOTIFY_COMPLETED, on_completed, h,
		MHD_OPTION_NOTIFY_CONNECTION, on_connection, h, MHD_OPTION_END);
	if (!h->daemon) {
		watchdog_stop(h);
		http_free(h);
		es_error_set(err, ES_EINTERNAL, "cannot listen on %s port %ld",
			     cfg->bind_address, cfg->port);
		return NULL;
	}
	info = MHD_get_daemon_info(h->daemon, MHD_DAEMON_INFO_BIND_PORT);
	h->port = info ? info->port : (unsigned int)cfg->port;
	return h;
}

unsigned int es_http_port(const struct es_http *h)
{
	return h->port;
}

unsigned int es_http_in_flight(const struct es_http *h)
{
	return atomic_load(&((struct es_http *)h)->in_flight);
}

/* Wait up to `ms` for no request to be in flight. */
static void wait_idle(struct es_http *h, int ms)
{
	struct timespec tick = { 0, TICK_MS * 1000 * 1000 };

	for (int waited = 0; waited < ms && atomic_load(&h->in_flight) > 0;
	     waited += TICK_MS)
		nanosleep(&tick, NULL);
}

/*
 * Wait for the owners that took their request off the suspended list to
 * wake it (a moment: no I/O but libmicrohttpd's event fd lies between).
 */
static void wait_resumed(struct es_http *h)
{
	struct timespec tick = { 0, 100 * 1000 };

	while (atomic_load(&h->resuming) > 0)
		nanosleep(&tick, NULL);
}

/* Wait up to `ms` for no request to be suspended. */
static void wait_unsuspended(struct es_http *h, int ms)
{
	struct timespec tick = { 0, TICK_MS * 1000 * 1000 };
	bool any;

	for (int waited = 0;; waited += TICK_MS) {
		pthread_mutex_lock(&h->lock);
		any = h->suspended != NULL;
		pthread_mutex_unlock(&h->lock);
		if (!any || waited >= ms)
			break;
		nanosleep(&tick, NULL);
	}
}

/*
 * Answer the suspended requests with `err` (those whose owner already
 * sent keep that answer), only the untaken ones unless `all`, and wake
 * them; h->lock held. Returns how many.
 */
static int answer_suspended(struct es_http *h, const struct es_error *err,
			    bool all)
{
	struct request *r, *next;
	int n = 0;

	for (r = h->suspended; r; r = next) {
		next = r->next;
		pthread_mutex_lock(&r->lock);
		if (r->taken && !all) {
			pthread_mutex_unlock(&r->lock);
			continue;
		}
		if (!r->response) {
			r->response = problem_response(err, NULL);
			r->status = es_error_status(err->code);
		}
		wake(h, r);
		pthread_mutex_unlock(&r->lock);
		n++;
	}
	return n;
}

int es_http_drain(struct es_http *h, int grace_ms)
{
	struct es_error err = ES_ERROR_INIT;
	int cut;

	if (!h || h->drained)
		return 0;
	h->drained = true;
	atomic_store(&h->stopping, true);
	h->listen_fd = MHD_quiesce_daemon(h->daemon);
	/*
	 * The quiesced socket stays open until the daemon stops, and the
	 * kernel would go on completing connections nobody serves: shut its
	 * reading side so that new clients are refused at once.
	 */
	if (h->listen_fd != MHD_INVALID_SOCKET)
		shutdown(h->listen_fd, SHUT_RD);
	wait_idle(h, grace_ms);
	es_error_set(&err, ES_EUNAVAIL, "the service is shutting down");
	pthread_mutex_lock(&h->lock);
	h->closing = true;
	cut = answer_suspended(h, &err, false);
	pthread_mutex_unlock(&h->lock);
	h->cut = cut;
	return cut;
}

int es_http_stop(struct es_http *h, int wait_ms)
{
	struct es_error err = ES_ERROR_INIT;
	int unknown, cut;
	bool free_h;

	if (!h)
		return 0;
	es_http_drain(h, wait_ms);
	/* what is still suspended was taken: wait for its true answer */
	wait_unsuspended(h, wait_ms);
	es_error_set(&err, ES_EUNKNOWN,
		     "the service stopped before the outcome of the request "
		     "was known; retry with the same Idempotency-Key");
	pthread_mutex_lock(&h->lock);
	unknown = answer_suspended(h, &err, true);
	pthread_mutex_unlock(&h->lock);
	if (unknown)
		es_log(ES_LOG_WARN, "http_stop_unknown", "{s:i}", "requests",
		       unknown);
	/* let the answers go out */
	wait_idle(h, CLOSE_WAIT_MS);
	cut = h->cut + unknown + (int)atomic_load(&h->in_flight);
	if (cut)
		es_log(ES_LOG_WARN, "http_stop_cut", "{s:i}", "requests", cut);
	wait_resumed(h);
	MHD_stop_daemon(h->daemon);
	watchdog_stop(h);
	if (h->listen_fd != MHD_INVALID_SOCKET)
		close(h->listen_fd);
	pthread_mutex_lock(&h->lock);
	h->stopped = true;
	free_h = h->held == 0;
	pthread_mutex_unlock(&h->lock);
	if (free_h)
		http_free(h);
	return cut;
}

/* ---- helpers ---- */

const char *es_request_param(const struct es_request *req, const char *name)
{
	const struct request *r =
		(const struct request *)((const char *)req -
					 offsetof(struct request, pub));

	return es_match_param(&r->match, name);
}

/* The copied value of `kind` named `name` (first match, any case). */
static const char *copied_value(const struct request *r,
				enum MHD_ValueKind kind, const char *name)
{
	for (size_t i = 0; i < r->nvalues; i++)
		if ((r->values[i].kind & kind) && r->values[i].key &&
		    strcasecmp(r->values[i].key, name) == 0)
			return r->values[i].value;
	return NULL;
}

/*
 * Before the suspension the handler's thread asks libmicrohttpd; after
 * it, the owner reads the copy, never the connection (which the
 * shutdown may answer and free meanwhile).
 */
static const char *lookup(const struct es_request *req, enum MHD_ValueKind kind,
			  const char *name)
{
	const struct request *r =
		(const struct request *)((const char *)req -
					 offsetof(struct request, pub));

	if (r->copied)
		return copied_value(r, kind, name);
	return r->conn ? MHD_lookup_connection_value(r->conn, kind, name)
		       : NULL;
}

const char *es_request_header(const struct es_request *req, const char *name)
{
	return lookup(req, MHD_HEADER_KIND, name);
}

const char *es_request_query(const struct es_request *req, const char *name)
{
	return lookup(req, MHD_GET_ARGUMENT_KIND, name);
}

static const char *skip_ows(const char *s)
{
	while (*s == ' ' || *s == '\t')
		s++;
	return s;
}

int es_http_is_json_type(const char *ct)
{
	static const char type[] = "application/json";
	static const char charset[] = "charset=";

	if (!ct || strncasecmp(ct, type, sizeof(type) - 1) != 0)
		return 0;
	ct = skip_ows(ct + sizeof(type) - 1);
	if (!*ct)
		return 1;
	if (*ct != ';')
		return 0;
	ct = skip_ows(ct + 1);
	if (strncasecmp(ct, charset, sizeof(charset) - 1) != 0)
		return 0;
	ct += sizeof(charset) - 1;
	if (strncasecmp(ct, "utf-8", 5) == 0)
		ct += 5;
	else if (strncasecmp(ct, "\"utf-8\"", 7) == 0)
		ct += 7;
	else
		return 0;
	return !*skip_ows(ct);
}

int es_http_metrics_write(const struct es_http *h, FILE *out)
{
	fprintf(out, "# HELP http_requests_total HTTP requests by route and "
		     "status.\n# TYPE http_requests_total counter\n");
	for (size_t i = 0; i <= h->nroutes; i++) {
		const char *route =
			i < h->nroutes ? h->routes[i].pattern : "unmatched";
		const char *method = i < h->nroutes ? h->routes[i].method : "";

		for (unsigned int s = 0; s < MAX_STATUS; s++) {
			unsigned long n = atomic_load(
				&((struct es_http *)h)->stats[i].by_status[s]);

			if (n)
				fprintf(out,
					"http_requests_total{method=\"%s\",route=\"%s\",status=\"%u\"} %lu\n",
					method, route, s, n);
		}
	}
	fprintf(out, "# HELP http_request_duration_seconds HTTP request "
		     "latency by route.\n# TYPE http_request_duration_seconds "
		     "histogram\n");
	for (size_t i = 0; i <= h->nroutes; i++) {
		struct route_stats *st = &((struct es_http *)h)->stats[i];
		const char *route =
			i < h->nroutes ? h->routes[i].pattern : "unmatched";
		const char *method = i < h->nroutes ? h->routes[i].method : "";
		unsigned long n = atomic_load(&st->count), le = 0;

		if (!n)
			continue;
		for (size_t b = 0; b < ARRAY_SIZE(latency_le); b++) {
			le += atomic_load(&st->le[b]);
			fprintf(out,
				"http_request_duration_seconds_bucket{method=\"%s\",route=\"%s\",le=\"%g\"} %lu\n",
				method, route, latency_le[b], le);
		}
		if (le > n)
			n = le; /* requests that completed while we read */
		fprintf(out,
			"http_request_duration_seconds_bucket{method=\"%s\",route=\"%s\",le=\"+Inf\"} %lu\n",
			method, route, n);
		fprintf(out,
			"http_request_duration_seconds_sum{method=\"%s\",route=\"%s\"} %.6f\n",
			method, route, (double)atomic_load(&st->sum_us) / 1e6);
		fprintf(out,
			"http_request_duration_seconds_count{method=\"%s\",route=\"%s\"} %lu\n",
			method, route, n);
	}
	return ferror(out) ? -1 : 0;
}
