/*
 * tandem-bench.c - the load client of the benchmarks (bench/run): HTTP/1.1
 * keep-alive over plain sockets to the services on 127.0.0.1, one JSON
 * object of figures on stdout, errors on stderr with a non-zero exit.
 *
 *   tandem-bench lag --command URL --query URL --accounts FILE --rate R
 *                    --seconds S [--conns N] [--qconns M] [--seed X]
 *   tandem-bench fold --command URL --query URL --accounts FILE --rate R
 *                     --seconds S [--conns N] [--seed X]
 *   tandem-bench latency --command URL --account ID --n N
 *   tandem-bench feed --query URL [--limit L]
 *   tandem-bench --help
 *
 * Every request carries "Authorization: Bearer $TANDEM_TOKEN" when that
 * variable is set (a token with the roles the routes need).
 *
 * lag: open loop. Deposit k is due at start + k / R, whatever the answers
 * do; a due deposit goes out on an idle one of N command connections
 * (default 8), or waits in line for one. The first second is a warm-up:
 * deposits due in it are sent but not counted (those not sent by its end
 * are dropped). Deposits due in the S seconds after it are counted; those
 * still waiting for a connection when the S seconds end are dropped, not
 * sent, so a service slower than R shows as a rate below R. For each 201
 * the client takes its `position` and at once sends GET /accounts/{id}
 * with X-Min-Position: <position> and X-Wait-Ms: 10000 on a query
 * connection of its own (M opened beforehand, default 16; more are opened
 * when all are busy, up to 200: under the services' default
 * PER_IP_CONNECTION_LIMIT, 256, past which a new connection is closed
 * unanswered; then the GET waits in the client for one, and that wait
 * counts in its lag). The lag of a deposit is the arrival of
 * that GET's 200 minus the arrival of the 201; its read-your-writes round
 * trip is the arrival of that 200 minus the moment the deposit's request
 * began to be written (what a client that POSTs, then GETs with the
 * token, waits in all); the POST's own time is the arrival of the 201
 * minus that moment; its queue time, that moment minus the moment it was
 * due (waiting for a free command connection, in none of the others).
 * Prints
 * {"sent","ok","errors","p50_ms","p90_ms","p99_ms","max_ms",
 *  "ryw_p50_ms","ryw_p90_ms","ryw_p99_ms","ryw_max_ms","post_p50_ms",
 *  "post_p99_ms","queue_p50_ms","queue_p99_ms","rate"}:
 * sent = counted deposits sent; ok = those answered 201 whose GET answered
 * 200; errors = the rest (another status, a broken connection, no answer
 * within 20 s); p*_ms are the lags, ryw_*_ms the round trips, post_*_ms
 * the POSTs, of the ok ones, queue_*_ms the queue times of all sent;
 * rate = sent / S. Exits 1 when none is ok. Deposits still waiting for a
 * connection at the end are not sent, so a service slower than R shows
 * in the rate and in the queue times.
 *
 * fold: the deposits of lag, the same way, but nothing reads them while
 * they run (the projector's work alone); once all are answered, GET
 * /status every 50 ms until every view, the in-memory one too, is loaded,
 * running and without lag (at most 60 s). Prints
 * {"sent","ok","errors","post_p50_ms","post_p99_ms","queue_p50_ms",
 *  "queue_p99_ms","rate","fold_wait_ms","status_polls"}: ok = counted deposits
 * answered 201; fold_wait_ms = from the last answer to the /status that showed
 * every view caught up. Exits 1 when none is ok, a view is stopped, or the
 * views do not catch up.
 *
 * latency: 50 deposits of 1 to the account ID not counted, then N counted
 * ones, one after the other on one connection; each is timed from just
 * before its request is written to its answer's last byte. Prints
 * {"n","p50_us","mean_us","p99_us"}. An answer other than 201 stops it.
 *
 * feed: GET /events?limit=L (default 1000), then ?after=<next>&limit=L
 * with the `next` of each page, until a page has no items or no `next`;
 * each body is read for its structure, its items counted and its `next`
 * decoded (not built into jansson objects: see page_scan()). Prints
 * {"events","pages","seconds","eps"}: pages counts every GET, the last
 * (empty) one included; seconds is from the first request to the last
 * answer. An answer other than 200 stops it.
 *
 * Percentiles are nearest-rank over all samples; times come from
 * CLOCK_MONOTONIC as the answer's last byte is read. One thread: the lag's
 * connections are multiplexed with epoll.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <jansson.h>
#include <math.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "es_auth.h"
#include "es_buf.h"
#include "es_error.h"

#define HEAD_MAX       (64 * 1024) /* bytes of a status line and headers */
#define BODY_MAX       (256L * 1024 * 1024)
#define READ_CHUNK     (64 * 1024)
#define TOKEN_MAX      4096 /* bytes of a position token */
#define ID_MAX	       128 /* bytes of an account id */
#define QCONNS_MAX     200 /* query connections of lag at most (above) */
#define CONNS_MAX      256 /* command connections of lag at most */
#define WARMUP_NS      1000000000ULL
#define DRAIN_NS       20000000000ULL /* wait for answers after the end */
#define REQUEST_NS     20000000000ULL /* an answer later than this fails */
#define TICK_NS	       100000000ULL /* how often lag checks deadlines */
#define FOLD_POLL_NS   50000000L /* fold: GET /status this often at the end */
#define FOLD_WAIT_NS   60000000000ULL /* fold: the views fold within this */
#define LATENCY_WARMUP 50
#define ROUNDTRIP_MS   30000
#define DEPOSIT_BODY   "{\"amount\":1}"
#define NS_PER_S       1000000000.0

static const char usage_text[] =
	"usage: tandem-bench lag --command URL --query URL --accounts FILE\n"
	"                        --rate R --seconds S [--conns N] [--qconns M]\n"
	"                        [--seed X]\n"
	"       tandem-bench fold --command URL --query URL --accounts FILE\n"
	"                         --rate R --seconds S [--conns N] [--seed X]\n"
	"       tandem-bench latency --command URL --account ID --n N\n"
	"       tandem-bench feed --query URL [--limit L]\n"
	"       tandem-bench --help\n"
	"\n"
	"URLs are http://HOST:PORT (HOST an IPv4 address or localhost).\n"
	"\n"
	"lag      deposits at R/s (open loop, after a 1 s warm-up) over N\n"
	"         command connections (default 8) to random accounts of FILE\n"
	"         (one id a line); for each 201, GET /accounts/{id} with\n"
	"         X-Min-Position: <position> and X-Wait-Ms: 10000 over query\n"
	"         connections (M opened first, default 16); lag = the GET's\n"
	"         200 minus the 201, from arrival to arrival; read-your-writes\n"
	"         round trip = the GET's 200 minus the deposit's sending;\n"
	"         post = the 201 minus the same; queue = the sending minus\n"
	"         when it was due. Prints {sent, ok, errors, p50_ms, p90_ms,\n"
	"         p99_ms, max_ms, ryw_p50_ms, ryw_p90_ms, ryw_p99_ms,\n"
	"         ryw_max_ms, post_p50_ms, post_p99_ms, queue_p50_ms,\n"
	"         queue_p99_ms, rate}.\n"
	"fold     the deposits of lag with no GETs; at the end, polls GET\n"
	"         /status until every view has folded them. Prints {sent, ok,\n"
	"         errors, post_p50_ms, post_p99_ms, queue_p50_ms,\n"
	"         queue_p99_ms, rate, fold_wait_ms, status_polls}.\n"
	"latency  N sequential deposits on account ID over one connection,\n"
	"         after 50 not counted. Prints {n, p50_us, mean_us, p99_us}.\n"
	"feed     reads GET /events?limit=L (default 1000) page by page from\n"
	"         the start. Prints {events, pages, seconds, eps}.\n";

/* ---- time ---- */

static uint64_t now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ULL + (uint64_t)ts.tv_nsec;
}

/* ---- where the services are ---- */

struct target {
	struct sockaddr_in addr;
	char host[80]; /* for the Host header: "127.0.0.1:8081" */
	char prefix[256]; /* a path the routes sit under, or "" */
	/* "Authorization: Bearer $TANDEM_TOKEN\r\n", or "" without one */
	char auth[ES_AUTH_TOKEN_MAX + 32];
};

/* The Authorization line of $TANDEM_TOKEN, checked: one header line. */
static int target_auth(struct target *t, struct es_error *err)
{
	const char *tok = getenv("TANDEM_TOKEN");

	t->auth[0] = '\0';
	if (!tok || !*tok)
		return 0;
	if (strlen(tok) > ES_AUTH_TOKEN_MAX || strpbrk(tok, " \t\r\n"))
		return es_error_set(err, ES_EINVALID,
				    "TANDEM_TOKEN is not a bearer token");
	snprintf(t->auth, sizeof(t->auth), "Authorization: Bearer %s\r\n", tok);
	return 0;
}

/* Parse "http://HOST:PORT[/PREFIX]". */
static int target_parse(const char *url, struct target *t, struct es_error *err)
{
	const char *p = url, *colon, *slash;
	char host[64], *end;
	size_t n;
	long port;

	memset(t, 0, sizeof(*t));
	if (strncmp(p, "http://", 7) != 0)
		return es_error_set(err, ES_EINVALID,
				    "'%.100s' is not an http:// URL", url);
	p += 7;
	slash = strchr(p, '/');
	colon = strchr(p, ':');
	if (!colon || (slash && colon > slash))
		return es_error_set(err, ES_EINVALID, "'%.100s' has no port",
				    url);
	n = (size_t)(colon - p);
	if (n == 0 || n >= sizeof(host))
		return es_error_set(err, ES_EINVALID, "bad host in '%.100s'",
				    url);
	memcpy(host, p, n);
	host[n] = '\0';
	errno = 0;
	port = strtol(colon + 1, &end, 10);
	if (errno || end == colon + 1 || port < 1 || port > 65535 ||
	    (*end && *end != '/'))
		return es_error_set(err, ES_EINVALID, "bad port in '%.100s'",
				    url);
	if (strcmp(host, "localhost") == 0)
		strcpy(host, "127.0.0.1");
	t->addr.sin_family = AF_INET;
	t->addr.sin_port = htons((uint16_t)port);
	if (inet_pton(AF_INET, host, &t->addr.sin_addr) != 1)
		return es_error_set(err, ES_EINVALID,
				    "host of '%.100s' is not an IPv4 address",
				    url);
	snprintf(t->host, sizeof(t->host), "%s:%ld", host, port);
	if (*end) {
		n = strlen(end);
		while (n > 0 && end[n - 1] == '/')
			n--;
		if (n >= sizeof(t->prefix))
			return es_error_set(err, ES_EINVALID,
					    "path of '%.100s' is too long",
					    url);
		memcpy(t->prefix, end, n);
		t->prefix[n] = '\0';
	}
	return target_auth(t, err);
}

/* ---- HTTP/1.1 answers ---- */

enum resp_state {
	RS_HEAD, /* status line and headers */
	RS_BODY, /* Content-Length bytes */
	RS_CHUNK_SIZE,
	RS_CHUNK_DATA,
	RS_CHUNK_END, /* the CRLF after a chunk's data */
	RS_TRAILER,
	RS_UNTIL_CLOSE, /* neither length nor chunks: the body ends at EOF */
	RS_DONE
};

struct resp {
	enum resp_state state;
	int status; /* 0 until the status line */
	int minor; /* HTTP/1.minor */
	int close; /* the server closes the connection after this answer */
	int keep_alive; /* Connection: keep-alive (matters for HTTP/1.0) */
	int chunked;
	long long length; /* Content-Length, or -1 */
	long long left; /* bytes left of the body or of the chunk */
	size_t head_bytes;
	struct es_buf body; /* decoded */
};

static void resp_reset(struct resp *r)
{
	r->state = RS_HEAD;
	r->status = 0;
	r->minor = 1;
	r->close = 0;
	r->keep_alive = 0;
	r->chunked = 0;
	r->length = -1;
	r->left = 0;
	r->head_bytes = 0;
	es_buf_reset(&r->body);
}

/* Whether the comma-separated header value `v` holds the token `tok`. */
static int has_token(const char *v, const char *tok)
{
	size_t n = strlen(tok);

	while (*v) {
		while (*v == ' ' || *v == '\t' || *v == ',')
			v++;
		if (strncasecmp(v, tok, n) == 0 &&
		    (v[n] == '\0' || v[n] == ',' || v[n] == ' ' ||
		     v[n] == '\t'))
			return 1;
		while (*v && *v != ',')
			v++;
	}
	return 0;
}

/* Whether the last coding of Transfer-Encoding value `v` is chunked. */
static int last_is_chunked(const char *v)
{
	const char *last = strrchr(v, ',');
	size_t n;

	last = last ? last + 1 : v;
	while (*last == ' ' || *last == '\t')
		last++;
	n = strlen(last);
	while (n > 0 && (last[n - 1] == ' ' || last[n - 1] == '\t'))
		n--;
	return n == 7 && strncasecmp(last, "chunked", 7) == 0;
}

static int parse_status_line(struct resp *r, char *line, struct es_error *err)
{
	char *end;
	long st;

	if (strncmp(line, "HTTP/1.", 7) != 0 ||
	    !isdigit((unsigned char)line[7]))
		return es_error_set(err, ES_EMALFORMED,
				    "bad status line '%.60s'", line);
	r->minor = line[7] - '0';
	if (line[8] != ' ')
		return es_error_set(err, ES_EMALFORMED,
				    "bad status line '%.60s'", line);
	st = strtol(line + 9, &end, 10);
	if (end != line + 12 || st < 100 || st > 999 || (*end && *end != ' '))
		return es_error_set(err, ES_EMALFORMED,
				    "bad status line '%.60s'", line);
	r->status = (int)st;
	return 0;
}

static int parse_header(struct resp *r, char *line, struct es_error *err)
{
	char *colon = strchr(line, ':'), *v, *end;
	long long n;

	if (!colon || colon == line)
		return es_error_set(err, ES_EMALFORMED, "bad header '%.60s'",
				    line);
	*colon = '\0';
	v = colon + 1;
	while (*v == ' ' || *v == '\t')
		v++;
	end = v + strlen(v);
	while (end > v && (end[-1] == ' ' || end[-1] == '\t'))
		*--end = '\0';
	if (strcasecmp(line, "Content-Length") == 0) {
		errno = 0;
		n = strtoll(v, &end, 10);
		if (errno || end == v || *end || n < 0 ||
		    (r->length >= 0 && r->length != n))
			return es_error_set(err, ES_EMALFORMED,
					    "bad Content-Length '%.40s'", v);
		r->length = n;
	} else if (strcasecmp(line, "Transfer-Encoding") == 0) {
		if (!last_is_chunked(v))
			return es_error_set(err, ES_EMALFORMED,
					    "unsupported Transfer-Encoding "
					    "'%.40s'",
					    v);
		r->chunked = 1;
	} else if (strcasecmp(line, "Connection") == 0) {
		if (has_token(v, "close"))
			r->close = 1;
		if (has_token(v, "keep-alive"))
			r->keep_alive = 1;
	}
	return 0;
}

/* The head is complete: decide how the body comes. */
static int end_of_head(struct resp *r)
{
	if (r->minor == 0 && !r->keep_alive)
		r->close = 1;
	if ((r->status >= 100 && r->status < 200 && r->status != 101) ||
	    r->status == 204 || r->status == 304) {
		/* no body; an interim 1xx is followed by the real answer */
		if (r->status < 200) {
			resp_reset(r);
			return 0;
		}
		r->state = RS_DONE;
	} else if (r->chunked) {
		r->state = RS_CHUNK_SIZE;
	} else if (r->length >= 0) {
		if (r->length > BODY_MAX)
			return -1;
		r->left = r->length;
		r->state = r->length ? RS_BODY : RS_DONE;
	} else {
		r->close = 1;
		r->state = RS_UNTIL_CLOSE;
	}
	return 0;
}

/*
 * Find the next line in in[*pos, len) and NUL-terminate it (without its
 * CR LF). Returns it, or NULL when no whole line has arrived.
 */
static char *next_line(struct es_buf *in, size_t *pos)
{
	char *start = in->s + *pos;
	char *nl = memchr(start, '\n', in->len - *pos);

	if (!nl)
		return NULL;
	*pos += (size_t)(nl - start) + 1;
	if (nl > start && nl[-1] == '\r')
		nl--;
	*nl = '\0';
	return start;
}

static int body_add(struct resp *r, const char *p, size_t n,
		    struct es_error *err)
{
	if (r->body.len + n > BODY_MAX)
		return es_error_set(err, ES_ETOOLARGE, "answer too large");
	es_buf_add(&r->body, p, n);
	return es_buf_check(&r->body, err);
}

/*
 * Parse what has arrived in `in` (consuming what it uses); `eof` says the
 * server closed the connection. Returns 1 when the answer is complete, 0
 * when more must arrive, -1 on a malformed answer or an early EOF.
 */
static int resp_feed(struct resp *r, struct es_buf *in, int eof,
		     struct es_error *err)
{
	size_t pos = 0, n, start;
	int ret = -1;
	char *line, *end;
	long long size;

	while (r->state != RS_DONE) {
		switch (r->state) {
		case RS_HEAD:
		case RS_CHUNK_SIZE:
		case RS_CHUNK_END:
		case RS_TRAILER:
			start = pos;
			line = next_line(in, &pos);
			if (!line) {
				if (r->state == RS_HEAD &&
				    r->head_bytes + in->len - pos > HEAD_MAX) {
					es_error_set(err, ES_EMALFORMED,
						     "answer head too large");
					goto out;
				}
				goto more;
			}
			if (r->state == RS_HEAD) {
				r->head_bytes += pos - start;
				if (r->head_bytes > HEAD_MAX) {
					es_error_set(err, ES_EMALFORMED,
						     "answer head too large");
					goto out;
				}
				if (!r->status) {
					if (parse_status_line(r, line, err) < 0)
						goto out;
				} else if (*line) {
					if (parse_header(r, line, err) < 0)
						goto out;
				} else if (end_of_head(r) < 0) {
					es_error_set(err, ES_ETOOLARGE,
						     "answer too large");
					goto out;
				}
			} else if (r->state == RS_CHUNK_SIZE) {
				errno = 0;
				size = strtoll(line, &end, 16);
				if (errno || end == line || size < 0 ||
				    size > BODY_MAX ||
				    (*end && *end != ';' && *end != ' ' &&
				     *end != '\t')) {
					es_error_set(err, ES_EMALFORMED,
						     "bad chunk size '%.20s'",
						     line);
					goto out;
				}
				r->left = size;
				r->state = size ? RS_CHUNK_DATA : RS_TRAILER;
			} else if (r->state == RS_CHUNK_END) {
				if (*line) {
					es_error_set(err, ES_EMALFORMED,
						     "chunk longer than its "
						     "size");
					goto out;
				}
				r->state = RS_CHUNK_SIZE;
			} else if (!*line) {
				r->state = RS_DONE; /* end of the trailers */
			}
			break;
		case RS_BODY:
		case RS_CHUNK_DATA:
			n = in->len - pos;
			if ((long long)n > r->left)
				n = (size_t)r->left;
			if (n == 0)
				goto more;
			if (body_add(r, in->s + pos, n, err) < 0)
				goto out;
			pos += n;
			r->left -= (long long)n;
			if (r->left == 0)
				r->state = r->state == RS_BODY ? RS_DONE
							       : RS_CHUNK_END;
			break;
		case RS_UNTIL_CLOSE:
			n = in->len - pos;
			if (n && body_add(r, in->s + pos, n, err) < 0)
				goto out;
			pos += n;
			if (!eof)
				goto more;
			r->state = RS_DONE;
			break;
		case RS_DONE:
			break;
		}
	}
	ret = 1;
	goto out;
more:
	if (eof) {
		es_error_set(err, ES_EUNAVAIL,
			     r->status ? "connection closed mid-answer"
				       : "connection closed without an answer");
		goto out;
	}
	ret = 0;
out:
	es_buf_consume(in, pos);
	return ret;
}

/* ---- connections ---- */

struct lag_job {
	int measured;
	size_t account; /* index into the accounts */
	uint64_t t_sent; /* the deposit's request began to be written */
	uint64_t t_201; /* arrival of the deposit's 201 */
	char *token; /* its position, for the GET */
};

struct conn {
	int fd; /* -1 when closed */
	const struct target *t;
	struct es_buf out; /* the request */
	size_t out_off; /* bytes of it written */
	struct es_buf in; /* bytes read and not parsed yet */
	struct resp r;
	int reused; /* an earlier request completed on this connection */
	int got; /* bytes of the current answer arrived */
	int busy; /* a request is on it (lag) */
	int want_out; /* registered for EPOLLOUT (lag) */
	uint64_t deadline; /* of the request on it (lag) */
	struct lag_job job; /* the request on it (lag) */
};

static void conn_init(struct conn *c, const struct target *t)
{
	memset(c, 0, sizeof(*c));
	c->fd = -1;
	c->t = t;
	resp_reset(&c->r);
}

static void conn_close(struct conn *c)
{
	if (c->fd >= 0)
		close(c->fd);
	c->fd = -1;
	c->reused = 0;
	c->want_out = 0;
	c->in.len = 0;
}

static void conn_release(struct conn *c)
{
	conn_close(c);
	es_buf_release(&c->out);
	es_buf_release(&c->in);
	es_buf_release(&c->r.body);
	free(c->job.token);
	c->job.token = NULL;
}

/* Connect (blocking: loopback answers at once), then go non-blocking. */
static int conn_open(struct conn *c, struct es_error *err)
{
	int one = 1, fd;

	fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return es_error_set(err, ES_EUNAVAIL,
				    "cannot open a socket: %s",
				    strerror(errno));
	if (connect(fd, (const struct sockaddr *)&c->t->addr,
		    sizeof(c->t->addr)) < 0) {
		es_error_set(err, ES_EUNAVAIL, "cannot connect to '%s': %s",
			     c->t->host, strerror(errno));
		close(fd);
		return -1;
	}
	setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	if (fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK) < 0) {
		es_error_set(err, ES_EINTERNAL, "cannot set O_NONBLOCK: %s",
			     strerror(errno));
		close(fd);
		return -1;
	}
	c->fd = fd;
	c->reused = 0;
	c->in.len = 0;
	return 0;
}

/*
 * Put a request in c->out: METHOD PREFIX+PATH, the extra header lines
 * `headers` (each ending in CR LF, or NULL) and a JSON `body` (or NULL).
 */
static int conn_request(struct conn *c, const char *method, const char *path,
			const char *headers, const char *body,
			struct es_error *err)
{
	es_buf_reset(&c->out);
	c->out_off = 0;
	es_buf_addf(&c->out, "%s %s%s HTTP/1.1\r\nHost: %s\r\n%s", method,
		    c->t->prefix, path, c->t->host, c->t->auth);
	if (headers)
		es_buf_adds(&c->out, headers);
	if (body)
		es_buf_addf(&c->out,
			    "Content-Type: application/json\r\n"
			    "Content-Length: %zu\r\n\r\n%s",
			    strlen(body), body);
	else
		es_buf_adds(&c->out, "\r\n");
	if (es_buf_check(&c->out, err) < 0)
		return -1;
	resp_reset(&c->r);
	c->got = 0;
	return 0;
}

/* Write what the socket takes. Returns 1 when all is out, 0 if not yet. */
static int conn_write(struct conn *c, struct es_error *err)
{
	ssize_t n;

	while (c->out_off < c->out.len) {
		n = send(c->fd, c->out.s + c->out_off, c->out.len - c->out_off,
			 MSG_NOSIGNAL);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
			return 0;
		if (n < 0)
			return es_error_set(err, ES_EUNAVAIL,
					    "cannot write to '%s': %s",
					    c->t->host, strerror(errno));
		c->out_off += (size_t)n;
	}
	return 1;
}

/*
 * Read what has arrived and parse it. Returns 1 when the answer is
 * complete (the connection is closed if the server said so), 0 if more
 * must arrive, -1 on an error.
 */
static int conn_read(struct conn *c, struct es_error *err)
{
	ssize_t n;
	int rc, eof = 0;

	for (;;) {
		if (!es_buf_reserve(&c->in, READ_CHUNK))
			return es_error_set(err, ES_EINTERNAL, "out of memory");
		n = recv(c->fd, c->in.s + c->in.len, c->in.cap - c->in.len - 1,
			 0);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
			return 0;
		if (n < 0 && errno != ECONNRESET)
			return es_error_set(err, ES_EUNAVAIL,
					    "cannot read from '%s': %s",
					    c->t->host, strerror(errno));
		if (n <= 0)
			eof = 1;
		else
			c->got = 1;
		if (n > 0)
			c->in.len += (size_t)n;
		c->in.s[c->in.len] = '\0';
		rc = resp_feed(&c->r, &c->in, eof, err);
		if (rc < 0)
			return -1;
		if (rc > 0) {
			c->reused = 1;
			if (c->r.close || eof)
				conn_close(c);
			return 1;
		}
		if (eof)
			return 0; /* not reached: resp_feed fails at EOF */
	}
}

static int poll_one(int fd, short events, uint64_t deadline,
		    struct es_error *err)
{
	struct pollfd p = { .fd = fd, .events = events };
	uint64_t now;
	int rc;

	for (;;) {
		now = now_ns();
		if (now >= deadline)
			return es_error_set(err, ES_EUNAVAIL,
					    "no answer in %d ms", ROUNDTRIP_MS);
		rc = poll(&p, 1, (int)((deadline - now) / 1000000 + 1));
		if (rc > 0)
			return 0;
		if (rc < 0 && errno != EINTR)
			return es_error_set(err, ES_EINTERNAL, "poll: %s",
					    strerror(errno));
	}
}

/* One attempt of the request in c->out: write it, wait for the answer. */
static int roundtrip_once(struct conn *c, struct es_error *err)
{
	uint64_t deadline = now_ns() + ROUNDTRIP_MS * 1000000ULL;
	int rc;

	if (c->fd < 0 && conn_open(c, err) < 0)
		return -1;
	while ((rc = conn_write(c, err)) == 0)
		if (poll_one(c->fd, POLLOUT, deadline, err) < 0)
			return -1;
	if (rc < 0)
		return -1;
	do {
		if (poll_one(c->fd, POLLIN, deadline, err) < 0)
			return -1;
	} while ((rc = conn_read(c, err)) == 0);
	return rc < 0 ? -1 : 0;
}

/*
 * Send the request in c->out and wait for its whole answer in c->r. A
 * kept-alive connection the server closed before answering is reopened,
 * and the request sent again if `idempotent`.
 */
static int roundtrip(struct conn *c, int idempotent, struct es_error *err)
{
	struct es_error first = ES_ERROR_INIT;
	int reused = c->reused && c->fd >= 0;

	if (roundtrip_once(c, &first) == 0)
		return 0;
	conn_close(c);
	if (!(idempotent && reused && !c->got)) {
		es_error_set(err, first.code, "%s", first.detail);
		es_error_release(&first);
		return -1;
	}
	es_error_release(&first);
	c->out_off = 0;
	resp_reset(&c->r);
	c->got = 0;
	if (roundtrip_once(c, err) < 0) {
		conn_close(c);
		return -1;
	}
	return 0;
}

/* ---- figures ---- */

static int cmp_u64(const void *a, const void *b)
{
	uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;

	return x < y ? -1 : x > y;
}

/* Nearest rank of sorted v[0, n), n > 0. */
static uint64_t percentile(const uint64_t *v, size_t n, double q)
{
	size_t rank = (size_t)ceil(q * (double)n);

	if (rank < 1)
		rank = 1;
	if (rank > n)
		rank = n;
	return v[rank - 1];
}

/* `x` rounded to `digits` decimals, as a JSON real. */
static json_t *real_rounded(double x, int digits)
{
	double f = pow(10, digits);

	return json_real(round(x * f) / f);
}

static int print_json(json_t *o)
{
	char *s;

	if (!o)
		return -1;
	s = json_dumps(o, JSON_COMPACT | JSON_REAL_PRECISION(15));
	json_decref(o);
	if (!s)
		return -1;
	printf("%s\n", s);
	free(s);
	return fflush(stdout) == 0 ? 0 : -1;
}

struct samples {
	uint64_t *v;
	size_t n, cap;
};

static int samples_add(struct samples *s, uint64_t x)
{
	uint64_t *v;
	size_t cap;

	if (s->n == s->cap) {
		cap = s->cap ? s->cap * 2 : 4096;
		v = realloc(s->v, cap * sizeof(*v));
		if (!v)
			return -1;
		s->v = v;
		s->cap = cap;
	}
	s->v[s->n++] = x;
	return 0;
}

/* ---- command-line numbers and ids ---- */

static int parse_num(const char *name, const char *s, double lo, double hi,
		     double *out, struct es_error *err)
{
	char *end;
	double x;

	errno = 0;
	x = strtod(s, &end);
	if (errno || end == s || *end || !(x >= lo && x <= hi))
		return es_error_set(err, ES_EINVALID,
				    "--%s must be a number in [%g, %g], "
				    "got '%.40s'",
				    name, lo, hi, s);
	*out = x;
	return 0;
}

static int parse_int(const char *name, const char *s, long lo, long hi,
		     long *out, struct es_error *err)
{
	char *end;
	long x;

	errno = 0;
	x = strtol(s, &end, 10);
	if (errno || end == s || *end || x < lo || x > hi)
		return es_error_set(err, ES_EINVALID,
				    "--%s must be an integer in [%ld, %ld], "
				    "got '%.40s'",
				    name, lo, hi, s);
	*out = x;
	return 0;
}

/* An account id goes into a path as it is: letters, digits, '-' only. */
static int id_ok(const char *s)
{
	size_t n = 0;

	for (; s[n]; n++)
		if (!isalnum((unsigned char)s[n]) && s[n] != '-')
			return 0;
	return n > 0 && n < ID_MAX;
}

/* A token goes into a header as it is: printable ASCII, no spaces. */
static int token_ok(const char *s)
{
	size_t n = 0;

	for (; s[n]; n++)
		if (s[n] < 0x21 || s[n] > 0x7e)
			return 0;
	return n > 0 && n < TOKEN_MAX;
}

/* The problem detail (or the start) of a body, for a message. */
static const char *body_hint(const struct resp *r)
{
	return r->body.s ? r->body.s : "";
}

/* ---- latency ---- */

static int cmd_latency(const struct target *cmd, const char *account, long n,
		       struct es_error *err)
{
	struct samples s = { 0 };
	struct conn c;
	char path[ID_MAX + 32];
	uint64_t t, sum = 0;
	long i;
	int ret = -1;

	conn_init(&c, cmd);
	snprintf(path, sizeof(path), "/accounts/%s/deposits", account);
	for (i = 0; i < LATENCY_WARMUP + n; i++) {
		if (conn_request(&c, "POST", path, NULL, DEPOSIT_BODY, err) < 0)
			goto out;
		t = now_ns();
		if (roundtrip(&c, 0, err) < 0)
			goto out;
		t = now_ns() - t;
		if (c.r.status != 201) {
			es_error_set(err, ES_EUNAVAIL,
				     "deposit %ld answered %d: %.120s", i + 1,
				     c.r.status, body_hint(&c.r));
			goto out;
		}
		if (i < LATENCY_WARMUP)
			continue;
		if (samples_add(&s, t) < 0) {
			es_error_set(err, ES_EINTERNAL, "out of memory");
			goto out;
		}
		sum += t;
	}
	qsort(s.v, s.n, sizeof(*s.v), cmp_u64);
	if (print_json(json_pack(
		    "{s:I, s:o, s:o, s:o}", "n", (json_int_t)s.n, "p50_us",
		    real_rounded((double)percentile(s.v, s.n, 0.50) / 1e3, 1),
		    "mean_us", real_rounded((double)sum / (double)s.n / 1e3, 1),
		    "p99_us",
		    real_rounded((double)percentile(s.v, s.n, 0.99) / 1e3,
				 1))) < 0) {
		es_error_set(err, ES_EINTERNAL, "cannot print the figures");
		goto out;
	}
	ret = 0;
out:
	free(s.v);
	conn_release(&c);
	return ret;
}

/* ---- feed ---- */

/* Append `s` percent-encoded (all but RFC 3986 unreserved bytes). */
static void add_encoded(struct es_buf *b, const char *s)
{
	static const char hex[] = "0123456789ABCDEF";
	char e[3];

	for (; *s; s++) {
		unsigned char ch = (unsigned char)*s;

		if (isalnum(ch) || ch == '-' || ch == '.' || ch == '_' ||
		    ch == '~') {
			es_buf_add(b, s, 1);
			continue;
		}
		e[0] = '%';
		e[1] = hex[ch >> 4];
		e[2] = hex[ch & 15];
		es_buf_add(b, e, 3);
	}
}

/*
 * A light reader of a page {"items": [...], "next": "..." | null}: counts
 * the items and decodes `next`, checking the structure (strings, escapes,
 * nesting, commas) but not the grammar of numbers and literals. jansson
 * takes longer to build a 1000-event page (about 14 ms for 460 KB) than
 * the service may take to send it, and the figure is the service's.
 */
struct scan {
	const char *p, *end;
};

#define SCAN_DEPTH 64

static void skip_ws(struct scan *s)
{
	while (s->p < s->end && (*s->p == ' ' || *s->p == '\t' ||
				 *s->p == '\n' || *s->p == '\r'))
		s->p++;
}

static int hex4(const char *p)
{
	int v = 0, i;

	for (i = 0; i < 4; i++) {
		v <<= 4;
		if (p[i] >= '0' && p[i] <= '9')
			v |= p[i] - '0';
		else if (p[i] >= 'a' && p[i] <= 'f')
			v |= p[i] - 'a' + 10;
		else if (p[i] >= 'A' && p[i] <= 'F')
			v |= p[i] - 'A' + 10;
		else
			return -1;
	}
	return v;
}

/*
 * Step over the string at s->p, appending its ASCII text to `out` if not
 * NULL (an escape of a non-ASCII character there fails).
 */
static int scan_string(struct scan *s, struct es_buf *out)
{
	const char *q;
	char ch;
	int v;

	if (s->p >= s->end || *s->p != '"')
		return -1;
	for (s->p++;; s->p++) {
		/* a run of plain bytes at once */
		for (q = s->p; q < s->end && *q != '"' && *q != '\\' &&
			       (unsigned char)*q >= 0x20;
		     q++)
			;
		if (out && q > s->p)
			es_buf_add(out, s->p, (size_t)(q - s->p));
		if (out && out->failed)
			return -1;
		s->p = q;
		if (s->p >= s->end || (unsigned char)*s->p < 0x20)
			return -1;
		if (*s->p == '"') {
			s->p++;
			return 0;
		}
		if (s->end - s->p < 2)
			return -1;
		ch = *++s->p;
		if (ch == 'u') {
			if (s->end - s->p < 5 || (v = hex4(s->p + 1)) < 0)
				return -1;
			s->p += 4;
			if (out && v >= 0x80)
				return -1;
			ch = (char)v;
		} else if (ch == '"' || ch == '\\' || ch == '/') {
			;
		} else if (ch && strchr("bfnrt", ch)) {
			ch = ch == 'b'	 ? '\b'
			     : ch == 'f' ? '\f'
			     : ch == 'n' ? '\n'
			     : ch == 'r' ? '\r'
					 : '\t';
		} else {
			return -1;
		}
		if (out)
			es_buf_add(out, &ch, 1);
		if (out && out->failed)
			return -1;
	}
}

/* Step over one value of any kind, nested ones included. */
static int scan_value(struct scan *s)
{
	char stack[SCAN_DEPTH];
	int depth = 0;
	char ch;

	skip_ws(s);
	do {
		if (s->p >= s->end)
			return -1;
		ch = *s->p;
		if (ch == '"') {
			if (scan_string(s, NULL) < 0)
				return -1;
		} else if (ch == '{' || ch == '[') {
			if (depth == SCAN_DEPTH)
				return -1;
			stack[depth++] = ch == '{' ? '}' : ']';
			s->p++;
		} else if (ch == '}' || ch == ']') {
			if (depth == 0 || stack[depth - 1] != ch)
				return -1;
			depth--;
			s->p++;
		} else if (depth && (ch == ',' || ch == ':' || ch == ' ' ||
				     ch == '\t' || ch == '\n' || ch == '\r')) {
			s->p++;
		} else if (isalnum((unsigned char)ch) || ch == '-') {
			while (s->p < s->end &&
			       (isalnum((unsigned char)*s->p) || *s->p == '-' ||
				*s->p == '+' || *s->p == '.'))
				s->p++;
		} else {
			return -1;
		}
	} while (depth);
	return 0;
}

/* Expect the byte `ch` (after spaces). */
static int scan_char(struct scan *s, char ch)
{
	skip_ws(s);
	if (s->p >= s->end || *s->p != ch)
		return -1;
	s->p++;
	return 0;
}

/* Whether the next byte (after spaces) is `ch`; steps over it if so. */
static int scan_if(struct scan *s, char ch)
{
	skip_ws(s);
	if (s->p < s->end && *s->p == ch) {
		s->p++;
		return 1;
	}
	return 0;
}

/* Count the elements of the array at s->p. */
static int scan_items(struct scan *s, long long *n)
{
	*n = 0;
	if (scan_char(s, '[') < 0)
		return -1;
	if (scan_if(s, ']'))
		return 0;
	do {
		if (scan_value(s) < 0)
			return -1;
		(*n)++;
	} while (scan_if(s, ','));
	return scan_char(s, ']');
}

/*
 * Read a page: the number of its items in *items, its `next` in `next`
 * (and *has_next 1) unless it is null or missing.
 */
static int page_scan(const char *p, size_t len, long long *items,
		     struct es_buf *next, int *has_next)
{
	struct scan s = { p, p + len };
	struct es_buf key = ES_BUF_INIT;
	int seen_items = 0, ret = -1;

	*items = 0;
	*has_next = 0;
	if (scan_char(&s, '{') < 0)
		goto out;
	if (!scan_if(&s, '}')) {
		do {
			es_buf_reset(&key);
			skip_ws(&s);
			if (scan_string(&s, &key) < 0 ||
			    !es_buf_reserve(&key, 0) || scan_char(&s, ':') < 0)
				goto out;
			skip_ws(&s);
			if (strcmp(key.s, "items") == 0) {
				if (scan_items(&s, items) < 0)
					goto out;
				seen_items = 1;
			} else if (strcmp(key.s, "next") == 0 && s.p < s.end &&
				   *s.p == '"') {
				es_buf_reset(next);
				if (scan_string(&s, next) < 0 ||
				    !es_buf_reserve(next, 0))
					goto out;
				*has_next = 1;
			} else if (scan_value(&s) < 0) {
				goto out;
			}
		} while (scan_if(&s, ','));
		if (scan_char(&s, '}') < 0)
			goto out;
	}
	skip_ws(&s);
	if (s.p == s.end && seen_items)
		ret = 0;
out:
	es_buf_release(&key);
	return ret;
}

static int cmd_feed(const struct target *qry, long limit, struct es_error *err)
{
	struct es_buf path = ES_BUF_INIT, next = ES_BUF_INIT;
	struct conn c;
	long long events = 0, pages = 0, n;
	int has_next;
	uint64_t t0, t;
	double secs;
	int ret = -1;

	conn_init(&c, qry);
	es_buf_addf(&path, "/events?limit=%ld", limit);
	if (es_buf_check(&path, err) < 0)
		goto out;
	t0 = now_ns();
	for (;;) {
		if (conn_request(&c, "GET", path.s, NULL, NULL, err) < 0 ||
		    roundtrip(&c, 1, err) < 0)
			goto out;
		pages++;
		if (c.r.status != 200) {
			es_error_set(err, ES_EUNAVAIL,
				     "page %lld answered %d: %.120s", pages,
				     c.r.status, body_hint(&c.r));
			goto out;
		}
		if (page_scan(c.r.body.s, c.r.body.len, &n, &next, &has_next) <
		    0) {
			es_error_set(err, ES_EMALFORMED,
				     "page %lld is not {items, next}: %.80s",
				     pages, body_hint(&c.r));
			goto out;
		}
		events += n;
		if (n == 0 || !has_next)
			break;
		es_buf_reset(&path);
		es_buf_addf(&path, "/events?limit=%ld&after=", limit);
		add_encoded(&path, next.s);
		if (es_buf_check(&path, err) < 0)
			goto out;
	}
	t = now_ns() - t0;
	secs = (double)t / NS_PER_S;
	if (print_json(json_pack(
		    "{s:I, s:I, s:o, s:o}", "events", (json_int_t)events,
		    "pages", (json_int_t)pages, "seconds",
		    real_rounded(secs, 6), "eps",
		    real_rounded(secs > 0 ? (double)events / secs : 0, 1))) <
	    0) {
		es_error_set(err, ES_EINTERNAL, "cannot print the figures");
		goto out;
	}
	ret = 0;
out:
	es_buf_release(&next);
	es_buf_release(&path);
	conn_release(&c);
	return ret;
}

/* ---- lag ---- */

struct accounts {
	char **id;
	size_t n;
};

static void accounts_release(struct accounts *a)
{
	size_t i;

	for (i = 0; i < a->n; i++)
		free(a->id[i]);
	free(a->id);
	a->id = NULL;
	a->n = 0;
}

/* One id a line; blank lines and surrounding spaces are ignored. */
static int accounts_load(const char *file, struct accounts *a,
			 struct es_error *err)
{
	FILE *f = fopen(file, "r");
	char *line = NULL, *s, *e, **v;
	size_t cap = 0, lineno = 0, vcap = 0;
	int ret = -1;

	if (!f)
		return es_error_set(err, ES_EINVALID,
				    "cannot open '%.100s': %s", file,
				    strerror(errno));
	while (getline(&line, &cap, f) >= 0) {
		lineno++;
		s = line;
		while (isspace((unsigned char)*s))
			s++;
		e = s + strlen(s);
		while (e > s && isspace((unsigned char)e[-1]))
			*--e = '\0';
		if (!*s)
			continue;
		if (!id_ok(s)) {
			es_error_set(err, ES_EINVALID,
				     "%.100s:%zu: bad account id '%.60s'", file,
				     lineno, s);
			goto out;
		}
		if (a->n == vcap) {
			vcap = vcap ? vcap * 2 : 1024;
			v = realloc(a->id, vcap * sizeof(*v));
			if (!v)
				goto oom;
			a->id = v;
		}
		a->id[a->n] = strdup(s);
		if (!a->id[a->n])
			goto oom;
		a->n++;
	}
	if (ferror(f)) {
		es_error_set(err, ES_EINVALID, "cannot read '%.100s'", file);
		goto out;
	}
	if (a->n == 0) {
		es_error_set(err, ES_EINVALID, "no account ids in '%.100s'",
			     file);
		goto out;
	}
	ret = 0;
	goto out;
oom:
	es_error_set(err, ES_EINTERNAL, "out of memory");
out:
	free(line);
	fclose(f);
	return ret;
}

/* A FIFO of GETs waiting for a query connection. */
struct job_queue {
	struct lag_job *v;
	size_t head, n, cap;
};

static int queue_push(struct job_queue *q, const struct lag_job *j)
{
	struct lag_job *v;
	size_t i, cap;

	if (q->n == q->cap) {
		cap = q->cap ? q->cap * 2 : 256;
		v = malloc(cap * sizeof(*v));
		if (!v)
			return -1;
		for (i = 0; i < q->n; i++)
			v[i] = q->v[(q->head + i) % q->cap];
		free(q->v);
		q->v = v;
		q->cap = cap;
		q->head = 0;
	}
	q->v[(q->head + q->n) % q->cap] = *j;
	q->n++;
	return 0;
}

static struct lag_job queue_pop(struct job_queue *q)
{
	struct lag_job j = q->v[q->head];

	q->head = (q->head + 1) % q->cap;
	q->n--;
	return j;
}

struct pool {
	struct conn **c; /* all the connections */
	size_t n, max;
	struct conn **idle; /* a stack of those without a request */
	size_t nidle;
	int query; /* 1 for the query side */
};

struct lag {
	const struct target *cmd, *qry;
	const struct accounts *acc;
	int reads; /* GET each deposit (lag), or not (fold) */
	int ep;
	struct pool cp, qp;
	struct job_queue getq;
	struct samples lags; /* 201 to the GET's 200 */
	struct samples ryws; /* the deposit's sending to the GET's 200 */
	struct samples posts; /* the deposit's sending to its 201 */
	struct samples waits; /* its due time to its sending */
	uint64_t rng;
	long long sent, ok, errors;
	long long inflight; /* counted deposits not yet ok or failed */
	char first_error[240];
};

static uint64_t rng_next(uint64_t *s)
{
	uint64_t x = *s;

	x ^= x >> 12;
	x ^= x << 25;
	x ^= x >> 27;
	*s = x;
	return x * 2685821657736338717ULL;
}

static void lag_error(struct lag *l, const struct lag_job *j, const char *fmt,
		      ...) __attribute__((format(printf, 3, 4)));

/* A counted deposit failed, at its POST or its GET. */
static void lag_error(struct lag *l, const struct lag_job *j, const char *fmt,
		      ...)
{
	va_list ap;

	if (!j->measured)
		return;
	l->errors++;
	l->inflight--;
	if (l->first_error[0])
		return;
	va_start(ap, fmt);
	vsnprintf(l->first_error, sizeof(l->first_error), fmt, ap);
	va_end(ap);
}

static int pool_add(struct lag *l, struct pool *p, struct es_error *err)
{
	struct conn *c = malloc(sizeof(*c));
	struct epoll_event ev = { .events = EPOLLIN };

	if (!c)
		return es_error_set(err, ES_EINTERNAL, "out of memory");
	conn_init(c, p->query ? l->qry : l->cmd);
	if (conn_open(c, err) < 0) {
		free(c);
		return -1;
	}
	ev.data.ptr = c;
	if (epoll_ctl(l->ep, EPOLL_CTL_ADD, c->fd, &ev) < 0) {
		es_error_set(err, ES_EINTERNAL, "epoll_ctl: %s",
			     strerror(errno));
		conn_release(c);
		free(c);
		return -1;
	}
	p->c[p->n++] = c;
	p->idle[p->nidle++] = c;
	return 0;
}

static int pool_init(struct lag *l, struct pool *p, size_t open, size_t max,
		     int query, struct es_error *err)
{
	size_t i;

	p->query = query;
	p->max = max;
	p->c = calloc(max, sizeof(*p->c));
	p->idle = calloc(max, sizeof(*p->idle));
	if (!p->c || !p->idle)
		return es_error_set(err, ES_EINTERNAL, "out of memory");
	for (i = 0; i < open; i++)
		if (pool_add(l, p, err) < 0)
			return -1;
	return 0;
}

static void pool_release(struct pool *p)
{
	size_t i;

	for (i = 0; i < p->n; i++) {
		conn_release(p->c[i]);
		free(p->c[i]);
	}
	free(p->c);
	free(p->idle);
	memset(p, 0, sizeof(*p));
}

/* (Re)register c's socket for reading, and for writing if `out`. */
static void watch(struct lag *l, struct conn *c, int out)
{
	struct epoll_event ev = { .events = EPOLLIN | (out ? EPOLLOUT : 0) };

	ev.data.ptr = c;
	if (c->want_out == out)
		return;
	c->want_out = out;
	epoll_ctl(l->ep, EPOLL_CTL_MOD, c->fd, &ev);
}

/*
 * Take c out of use after a failed request: the server closed it or
 * broke the protocol. It reopens at its next request.
 */
static void conn_drop(struct lag *l, struct conn *c)
{
	if (c->fd >= 0)
		epoll_ctl(l->ep, EPOLL_CTL_DEL, c->fd, NULL);
	conn_close(c);
}

/* Send the request in c->out on c, reopening it if it was closed. */
static int conn_start(struct lag *l, struct conn *c, struct es_error *err)
{
	struct epoll_event ev = { .events = EPOLLIN };
	int rc;

	if (c->fd < 0) {
		if (conn_open(c, err) < 0)
			return -1;
		ev.data.ptr = c;
		if (epoll_ctl(l->ep, EPOLL_CTL_ADD, c->fd, &ev) < 0) {
			es_error_set(err, ES_EINTERNAL, "epoll_ctl: %s",
				     strerror(errno));
			conn_close(c);
			return -1;
		}
	}
	c->busy = 1;
	c->deadline = now_ns() + REQUEST_NS;
	rc = conn_write(c, err);
	if (rc < 0) {
		conn_drop(l, c);
		return -1;
	}
	watch(l, c, rc == 0);
	return 0;
}

/* Send the GET of job `j` on c. */
static void get_start(struct lag *l, struct conn *c, struct lag_job *j)
{
	struct es_error err = ES_ERROR_INIT;
	char path[ID_MAX + 16];
	struct es_buf hdr = ES_BUF_INIT;

	c->job = *j;
	j->token = NULL; /* c->job has it now */
	snprintf(path, sizeof(path), "/accounts/%s",
		 l->acc->id[c->job.account]);
	es_buf_addf(&hdr, "X-Min-Position: %s\r\nX-Wait-Ms: 10000\r\n",
		    c->job.token);
	if (es_buf_check(&hdr, &err) < 0 ||
	    conn_request(c, "GET", path, hdr.s, NULL, &err) < 0 ||
	    conn_start(l, c, &err) < 0)
		goto fail;
	goto out;
fail:
	c->busy = 0;
	l->qp.idle[l->qp.nidle++] = c;
	lag_error(l, &c->job, "GET: %s", err.detail);
	free(c->job.token);
	c->job.token = NULL;
out:
	es_buf_release(&hdr);
	es_error_release(&err);
}

/* Query connection c is free: give it the next waiting GET, if any. */
static void qry_free(struct lag *l, struct conn *c)
{
	struct lag_job j;

	l->qp.idle[l->qp.nidle++] = c;
	while (l->getq.n && l->qp.nidle) {
		j = queue_pop(&l->getq);
		get_start(l, l->qp.idle[--l->qp.nidle], &j);
	}
}

/* Hand a GET to an idle query connection, a new one, or the queue. */
static int get_submit(struct lag *l, struct lag_job *j, struct es_error *err)
{
	struct es_error e = ES_ERROR_INIT;

	if (!l->qp.nidle && l->qp.n < l->qp.max) {
		if (pool_add(l, &l->qp, &e) < 0) {
			lag_error(l, j, "GET: %s", e.detail);
			es_error_release(&e);
			free(j->token);
			return 0;
		}
	}
	if (!l->qp.nidle) {
		if (queue_push(&l->getq, j) < 0)
			return es_error_set(err, ES_EINTERNAL, "out of memory");
		return 0;
	}
	get_start(l, l->qp.idle[--l->qp.nidle], j);
	return 0;
}

/*
 * Send deposit `measured`, due at `due`, to a random account on the idle
 * connection c.
 */
static void deposit_start(struct lag *l, struct conn *c, int measured,
			  uint64_t due)
{
	struct es_error err = ES_ERROR_INIT;
	char path[ID_MAX + 32];

	memset(&c->job, 0, sizeof(c->job));
	c->job.measured = measured;
	c->job.account = (size_t)(rng_next(&l->rng) >> 11) % l->acc->n;
	if (measured) {
		l->sent++;
		l->inflight++;
	}
	snprintf(path, sizeof(path), "/accounts/%s/deposits",
		 l->acc->id[c->job.account]);
	if (conn_request(c, "POST", path, NULL, DEPOSIT_BODY, &err) < 0)
		goto fail;
	c->job.t_sent = now_ns();
	if (measured &&
	    samples_add(&l->waits,
			c->job.t_sent > due ? c->job.t_sent - due : 0) < 0) {
		es_error_set(&err, ES_EINTERNAL, "out of memory");
		goto fail;
	}
	if (conn_start(l, c, &err) < 0)
		goto fail;
	goto out;
fail:
	c->busy = 0;
	l->cp.idle[l->cp.nidle++] = c;
	lag_error(l, &c->job, "deposit: %s", err.detail);
out:
	es_error_release(&err);
}

/* The answer on c is complete (at `now`): on with the deposit. */
static int answered(struct lag *l, struct conn *c, uint64_t now,
		    struct es_error *err)
{
	struct lag_job j = c->job;
	json_t *body, *pos;

	memset(&c->job, 0, sizeof(c->job));
	c->busy = 0;
	if (c->t == l->cmd) {
		l->cp.idle[l->cp.nidle++] = c;
		if (c->r.status != 201) {
			lag_error(l, &j, "deposit answered %d: %.120s",
				  c->r.status, body_hint(&c->r));
			return 0;
		}
		body = json_loadb(c->r.body.s, c->r.body.len, 0, NULL);
		pos = json_object_get(body, "position");
		if (!json_is_string(pos) || !token_ok(json_string_value(pos))) {
			lag_error(l, &j, "201 without a position: %.120s",
				  body_hint(&c->r));
			json_decref(body);
			return 0;
		}
		j.t_201 = now;
		if (!l->reads) {
			json_decref(body);
			if (!j.measured)
				return 0;
			l->ok++;
			l->inflight--;
			if (samples_add(&l->posts, j.t_201 - j.t_sent) < 0)
				return es_error_set(err, ES_EINTERNAL,
						    "out of memory");
			return 0;
		}
		j.token = strdup(json_string_value(pos));
		json_decref(body);
		if (!j.token)
			return es_error_set(err, ES_EINTERNAL, "out of memory");
		return get_submit(l, &j, err);
	}
	if (c->r.status != 200) {
		lag_error(l, &j, "GET answered %d: %.120s", c->r.status,
			  body_hint(&c->r));
	} else if (j.measured) {
		l->ok++;
		l->inflight--;
		if (samples_add(&l->lags, now - j.t_201) < 0 ||
		    samples_add(&l->ryws, now - j.t_sent) < 0 ||
		    samples_add(&l->posts, j.t_201 - j.t_sent) < 0) {
			free(j.token);
			return es_error_set(err, ES_EINTERNAL, "out of memory");
		}
	}
	free(j.token);
	qry_free(l, c);
	return 0;
}

/* The request on c failed with `why`. */
static void failed(struct lag *l, struct conn *c, const char *why)
{
	struct lag_job j = c->job;

	conn_drop(l, c);
	memset(&c->job, 0, sizeof(c->job));
	c->busy = 0;
	lag_error(l, &j, "%s: %s", c->t == l->cmd ? "deposit" : "GET", why);
	free(j.token);
	if (c->t == l->cmd)
		l->cp.idle[l->cp.nidle++] = c;
	else
		qry_free(l, c);
}

static int on_event(struct lag *l, struct conn *c, uint32_t events,
		    struct es_error *err)
{
	struct es_error e = ES_ERROR_INIT;
	int rc;

	if (!c->busy) {
		/* an idle connection readable: the server closed it */
		conn_drop(l, c);
		return 0;
	}
	if (events & EPOLLOUT) {
		rc = conn_write(c, &e);
		if (rc < 0)
			goto fail;
		watch(l, c, rc == 0);
	}
	if (events & (EPOLLIN | EPOLLERR | EPOLLHUP)) {
		rc = conn_read(c, &e);
		if (rc < 0)
			goto fail;
		if (rc > 0) {
			/* answered before the request was out: unusable */
			if (c->out_off < c->out.len)
				conn_drop(l, c);
			/* (closed already if the server said so) */
			return answered(l, c, now_ns(), err);
		}
	}
	return 0;
fail:
	failed(l, c, e.detail);
	es_error_release(&e);
	return 0;
}

static void check_deadlines(struct lag *l, struct pool *p, uint64_t now)
{
	size_t i;

	for (i = 0; i < p->n; i++)
		if (p->c[i]->busy && now >= p->c[i]->deadline)
			failed(l, p->c[i], "no answer in 20 s");
}

/*
 * Whether a GET /status body shows every view (the in-memory one too)
 * loaded, running and without lag: 1 yes, 0 not yet, -1 a stopped view
 * or not a /status body.
 */
static int status_folded(const struct resp *r, struct es_error *err)
{
	json_t *st =
		json_loadb(r->body.s ? r->body.s : "", r->body.len, 0, NULL);
	json_t *views = json_object_get(st, "views"), *v, *lag;
	size_t i, n = json_array_size(views);
	int ret = 1;

	if (!json_is_array(views) || !json_object_get(st, "memory")) {
		ret = es_error_set(err, ES_EMALFORMED,
				   "GET /status: no views in %.120s",
				   body_hint(r));
		goto out;
	}
	for (i = 0; i <= n; i++) {
		v = i < n ? json_array_get(views, i)
			  : json_object_get(st, "memory");
		if (!json_is_false(json_object_get(v, "stopped"))) {
			ret = es_error_set(
				err, ES_EUNAVAIL, "view '%.40s' is stopped",
				json_string_value(json_object_get(v, "name")));
			goto out;
		}
		lag = json_object_get(v, "lag_events");
		if (!json_is_true(json_object_get(v, "loaded")) ||
		    !json_is_integer(lag) || json_integer_value(lag) != 0)
			ret = 0;
	}
out:
	json_decref(st);
	return ret;
}

/*
 * fold: GET /status every FOLD_POLL_NS until every view has folded the
 * log (status_folded()), for at most FOLD_WAIT_NS; *polls counts the
 * GETs.
 */
static int wait_folded(const struct target *qry, long long *polls,
		       struct es_error *err)
{
	const struct timespec pause = { 0, FOLD_POLL_NS };
	uint64_t deadline = now_ns() + FOLD_WAIT_NS;
	struct conn c;
	int rc, ret = -1;

	conn_init(&c, qry);
	for (;;) {
		if (conn_request(&c, "GET", "/status", NULL, NULL, err) < 0 ||
		    roundtrip(&c, 1, err) < 0)
			goto out;
		(*polls)++;
		if (c.r.status != 200) {
			es_error_set(err, ES_EUNAVAIL,
				     "GET /status answered %d: %.120s",
				     c.r.status, body_hint(&c.r));
			goto out;
		}
		rc = status_folded(&c.r, err);
		if (rc < 0)
			goto out;
		if (rc > 0)
			break;
		if (now_ns() >= deadline) {
			es_error_set(err, ES_EUNAVAIL,
				     "the views had not folded the deposits "
				     "%llu s after the last answer",
				     FOLD_WAIT_NS / 1000000000ULL);
			goto out;
		}
		nanosleep(&pause, NULL);
	}
	ret = 0;
out:
	conn_release(&c);
	return ret;
}

/* Percentile `q` of sorted samples (ns) in ms, or null without any. */
static json_t *lag_ms(const struct samples *s, double q)
{
	if (!s->n)
		return json_null();
	return real_rounded((double)percentile(s->v, s->n, q) / 1e6, 3);
}

/*
 * The end of fold: once every deposit is answered, wait until the views
 * have folded them all, then print {sent, ok, errors, post_p50_ms,
 * post_p99_ms, rate, fold_wait_ms, status_polls}.
 */
static int fold_report(struct lag *l, const struct target *qry, double seconds,
		       struct es_error *err)
{
	long long polls = 0;
	uint64_t t = now_ns();

	if (l->sent == 0)
		return es_error_set(err, ES_EUNAVAIL,
				    "no deposit was sent: are all connections "
				    "stuck?");
	if (l->ok == 0)
		return es_error_set(err, ES_EUNAVAIL,
				    "no deposit was answered 201");
	if (wait_folded(qry, &polls, err) < 0)
		return -1;
	t = now_ns() - t;
	qsort(l->posts.v, l->posts.n, sizeof(*l->posts.v), cmp_u64);
	qsort(l->waits.v, l->waits.n, sizeof(*l->waits.v), cmp_u64);
	if (print_json(json_pack(
		    "{s:I, s:I, s:I, s:o, s:o, s:o, s:o, s:o, s:o, s:I}",
		    "sent", (json_int_t)l->sent, "ok", (json_int_t)l->ok,
		    "errors", (json_int_t)l->errors, "post_p50_ms",
		    lag_ms(&l->posts, 0.50), "post_p99_ms",
		    lag_ms(&l->posts, 0.99), "queue_p50_ms",
		    lag_ms(&l->waits, 0.50), "queue_p99_ms",
		    lag_ms(&l->waits, 0.99), "rate",
		    real_rounded((double)l->sent / seconds, 1), "fold_wait_ms",
		    real_rounded((double)t / 1e6, 3), "status_polls",
		    (json_int_t)polls)) < 0)
		return es_error_set(err, ES_EINTERNAL,
				    "cannot print the figures");
	return 0;
}

static int cmd_lag(const struct target *cmd, const struct target *qry,
		   const struct accounts *acc, int reads, double rate,
		   double seconds, long conns, long qconns, uint64_t seed,
		   struct es_error *err)
{
	struct epoll_event evs[256];
	struct lag l = { 0 };
	uint64_t t0, t_count, t_end, now, next_tick, due_at, wait;
	long long k = 0, k_first, k_end; /* deposits scheduled so far */
	struct timespec timeout;
	int n, i, ret = -1;
	double r;

	l.cmd = cmd;
	l.qry = qry;
	l.acc = acc;
	l.reads = reads;
	l.rng = seed ? seed : 0x9e3779b97f4a7c15ULL;
	l.ep = epoll_create1(EPOLL_CLOEXEC);
	if (l.ep < 0)
		return es_error_set(err, ES_EINTERNAL, "epoll_create1: %s",
				    strerror(errno));
	if (pool_init(&l, &l.cp, (size_t)conns, (size_t)conns, 0, err) < 0 ||
	    pool_init(&l, &l.qp, reads ? (size_t)qconns : 0, QCONNS_MAX, 1,
		      err) < 0)
		goto out;

	/* deposit k is due at t0 + k / rate; [k_first, k_end) count */
	k_first = (long long)ceil(rate * (double)WARMUP_NS / NS_PER_S);
	k_end = k_first + (long long)floor(rate * seconds);
	t0 = now_ns();
	t_count = t0 + WARMUP_NS;
	t_end = t_count + (uint64_t)(seconds * NS_PER_S);
	next_tick = t0 + TICK_NS;
	for (;;) {
		now = now_ns();
		/* warm-up deposits not sent by its end are dropped */
		if (now >= t_count && k < k_first)
			k = k_first;
		/* due deposits go out while a connection is free */
		while (now < t_end && k < k_end && l.cp.nidle) {
			due_at = t0 + (uint64_t)((double)k / rate * NS_PER_S);
			if (due_at > now)
				break;
			deposit_start(&l, l.cp.idle[--l.cp.nidle], k >= k_first,
				      due_at);
			k++;
		}
		if (now >= t_end && l.inflight == 0)
			break;
		if (now >= t_end + DRAIN_NS) {
			if (!l.first_error[0])
				snprintf(l.first_error, sizeof(l.first_error),
					 "%lld unanswered at the end",
					 l.inflight);
			l.errors += l.inflight;
			l.inflight = 0;
			break;
		}
		if (now >= next_tick) {
			check_deadlines(&l, &l.cp, now);
			check_deadlines(&l, &l.qp, now);
			next_tick = now + TICK_NS;
		}
		/* sleep until the next due deposit, tick or answer */
		wait = next_tick - now;
		if (now < t_end && k < k_end && l.cp.nidle) {
			due_at = t0 + (uint64_t)((double)k / rate * NS_PER_S);
			if (due_at <= now)
				continue;
			if (due_at - now < wait)
				wait = due_at - now;
		}
		if (now < t_end && t_end - now < wait)
			wait = t_end - now;
		/* to the nanosecond: a millisecond timeout sends late */
		timeout.tv_sec = (time_t)(wait / 1000000000ULL);
		timeout.tv_nsec = (long)(wait % 1000000000ULL);
		n = epoll_pwait2(l.ep, evs, 256, &timeout, NULL);
		if (n < 0 && errno != EINTR) {
			es_error_set(err, ES_EINTERNAL, "epoll_pwait2: %s",
				     strerror(errno));
			goto out;
		}
		for (i = 0; i < n; i++)
			if (on_event(&l, evs[i].data.ptr, evs[i].events, err) <
			    0)
				goto out;
	}

	if (l.errors)
		fprintf(stderr,
			"tandem-bench: %s: %lld errors, the first: %s\n",
			reads ? "lag" : "fold", l.errors, l.first_error);
	if (!reads) {
		ret = fold_report(&l, qry, seconds, err);
		goto out;
	}
	if (l.lags.n)
		qsort(l.lags.v, l.lags.n, sizeof(*l.lags.v), cmp_u64);
	if (l.ryws.n)
		qsort(l.ryws.v, l.ryws.n, sizeof(*l.ryws.v), cmp_u64);
	if (l.posts.n)
		qsort(l.posts.v, l.posts.n, sizeof(*l.posts.v), cmp_u64);
	if (l.waits.n)
		qsort(l.waits.v, l.waits.n, sizeof(*l.waits.v), cmp_u64);
	r = (double)l.sent / seconds;
	if (print_json(json_pack(
		    "{s:I, s:I, s:I, s:o, s:o, s:o, s:o, s:o, s:o, s:o, s:o, "
		    "s:o, s:o, s:o, s:o, s:o}",
		    "sent", (json_int_t)l.sent, "ok", (json_int_t)l.ok,
		    "errors", (json_int_t)l.errors, "p50_ms",
		    lag_ms(&l.lags, 0.50), "p90_ms", lag_ms(&l.lags, 0.90),
		    "p99_ms", lag_ms(&l.lags, 0.99), "max_ms",
		    lag_ms(&l.lags, 1.0), "ryw_p50_ms", lag_ms(&l.ryws, 0.50),
		    "ryw_p90_ms", lag_ms(&l.ryws, 0.90), "ryw_p99_ms",
		    lag_ms(&l.ryws, 0.99), "ryw_max_ms", lag_ms(&l.ryws, 1.0),
		    "post_p50_ms", lag_ms(&l.posts, 0.50), "post_p99_ms",
		    lag_ms(&l.posts, 0.99), "queue_p50_ms",
		    lag_ms(&l.waits, 0.50), "queue_p99_ms",
		    lag_ms(&l.waits, 0.99), "rate", real_rounded(r, 1))) < 0) {
		es_error_set(err, ES_EINTERNAL, "cannot print the figures");
		goto out;
	}
	if (l.sent == 0) {
		es_error_set(err, ES_EUNAVAIL,
			     "no deposit was sent: are all connections stuck?");
		goto out;
	}
	if (l.ok == 0) {
		es_error_set(err, ES_EUNAVAIL, "no deposit became visible");
		goto out;
	}
	ret = 0;
out:
	while (l.getq.n)
		free(queue_pop(&l.getq).token);
	free(l.getq.v);
	free(l.lags.v);
	free(l.ryws.v);
	free(l.posts.v);
	free(l.waits.v);
	pool_release(&l.cp);
	pool_release(&l.qp);
	close(l.ep);
	return ret;
}

/* ---- main ---- */

enum opt {
	OPT_COMMAND = 1,
	OPT_QUERY,
	OPT_ACCOUNTS,
	OPT_ACCOUNT,
	OPT_RATE,
	OPT_SECONDS,
	OPT_CONNS,
	OPT_QCONNS,
	OPT_SEED,
	OPT_N,
	OPT_LIMIT,
	OPT_HELP
};

static const struct option options[] = {
	{ "command", required_argument, NULL, OPT_COMMAND },
	{ "query", required_argument, NULL, OPT_QUERY },
	{ "accounts", required_argument, NULL, OPT_ACCOUNTS },
	{ "account", required_argument, NULL, OPT_ACCOUNT },
	{ "rate", required_argument, NULL, OPT_RATE },
	{ "seconds", required_argument, NULL, OPT_SECONDS },
	{ "conns", required_argument, NULL, OPT_CONNS },
	{ "qconns", required_argument, NULL, OPT_QCONNS },
	{ "seed", required_argument, NULL, OPT_SEED },
	{ "n", required_argument, NULL, OPT_N },
	{ "limit", required_argument, NULL, OPT_LIMIT },
	{ "help", no_argument, NULL, OPT_HELP },
	{ NULL, 0, NULL, 0 },
};

struct args {
	const char *command, *query, *accounts, *account;
	double rate, seconds;
	long conns, qconns, n, limit, seed;
};

/*
 * Which options each subcommand takes, by enum opt bit; the rest are
 * refused so that a typo does not pass unnoticed.
 */
#define BIT(o) (1u << (o))
static const struct {
	const char *name;
	unsigned int allowed, required;
} subcommands[] = {
	{ "lag",
	  BIT(OPT_COMMAND) | BIT(OPT_QUERY) | BIT(OPT_ACCOUNTS) |
		  BIT(OPT_RATE) | BIT(OPT_SECONDS) | BIT(OPT_CONNS) |
		  BIT(OPT_QCONNS) | BIT(OPT_SEED),
	  BIT(OPT_COMMAND) | BIT(OPT_QUERY) | BIT(OPT_ACCOUNTS) |
		  BIT(OPT_RATE) | BIT(OPT_SECONDS) },
	{ "fold",
	  BIT(OPT_COMMAND) | BIT(OPT_QUERY) | BIT(OPT_ACCOUNTS) |
		  BIT(OPT_RATE) | BIT(OPT_SECONDS) | BIT(OPT_CONNS) |
		  BIT(OPT_SEED),
	  BIT(OPT_COMMAND) | BIT(OPT_QUERY) | BIT(OPT_ACCOUNTS) |
		  BIT(OPT_RATE) | BIT(OPT_SECONDS) },
	{ "latency", BIT(OPT_COMMAND) | BIT(OPT_ACCOUNT) | BIT(OPT_N),
	  BIT(OPT_COMMAND) | BIT(OPT_ACCOUNT) | BIT(OPT_N) },
	{ "feed", BIT(OPT_QUERY) | BIT(OPT_LIMIT), BIT(OPT_QUERY) },
};

static int parse_args(int argc, char **argv, unsigned int allowed,
		      unsigned int required, struct args *a,
		      struct es_error *err)
{
	unsigned int seen = 0;
	double x;
	int o;

	opterr = 0;
	optind = 1;
	while ((o = getopt_long(argc, argv, "", options, NULL)) != -1) {
		if (o == '?' || o == ':')
			return es_error_set(err, ES_EINVALID,
					    "unknown or incomplete option "
					    "'%.60s'",
					    argv[optind - 1]);
		if (o == OPT_HELP) {
			fputs(usage_text, stdout);
			exit(0);
		}
		if (!(allowed & BIT(o)))
			return es_error_set(err, ES_EINVALID,
					    "%s does not take --%s", argv[0],
					    options[o - 1].name);
		seen |= BIT(o);
		switch (o) {
		case OPT_COMMAND:
			a->command = optarg;
			break;
		case OPT_QUERY:
			a->query = optarg;
			break;
		case OPT_ACCOUNTS:
			a->accounts = optarg;
			break;
		case OPT_ACCOUNT:
			a->account = optarg;
			break;
		case OPT_RATE:
			if (parse_num("rate", optarg, 0.001, 1e6, &a->rate,
				      err) < 0)
				return -1;
			break;
		case OPT_SECONDS:
			if (parse_num("seconds", optarg, 0.001, 86400, &x,
				      err) < 0)
				return -1;
			a->seconds = x;
			break;
		case OPT_CONNS:
			if (parse_int("conns", optarg, 1, CONNS_MAX, &a->conns,
				      err) < 0)
				return -1;
			break;
		case OPT_QCONNS:
			if (parse_int("qconns", optarg, 1, QCONNS_MAX,
				      &a->qconns, err) < 0)
				return -1;
			break;
		case OPT_SEED:
			if (parse_int("seed", optarg, 0, 0x7fffffffL, &a->seed,
				      err) < 0)
				return -1;
			break;
		case OPT_N:
			if (parse_int("n", optarg, 1, 100000000L, &a->n, err) <
			    0)
				return -1;
			break;
		case OPT_LIMIT:
			if (parse_int("limit", optarg, 1, 1000, &a->limit,
				      err) < 0)
				return -1;
			break;
		}
	}
	if (optind < argc)
		return es_error_set(err, ES_EINVALID,
				    "unexpected argument '%.60s'",
				    argv[optind]);
	for (o = OPT_COMMAND; o < OPT_HELP; o++)
		if ((required & BIT(o)) && !(seen & BIT(o)))
			return es_error_set(err, ES_EINVALID, "%s needs --%s",
					    argv[0], options[o - 1].name);
	return 0;
}

int main(int argc, char **argv)
{
	struct args a = { .conns = 8, .qconns = 16, .limit = 1000 };
	struct es_error err = ES_ERROR_INIT;
	struct target cmd, qry;
	struct accounts acc = { 0 };
	uint64_t seed;
	size_t i;
	int rc = -1;

	signal(SIGPIPE, SIG_IGN);
	if (argc < 2) {
		fputs(usage_text, stderr);
		return 2;
	}
	if (strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0 ||
	    strcmp(argv[1], "help") == 0) {
		fputs(usage_text, stdout);
		return 0;
	}
	for (i = 0; i < sizeof(subcommands) / sizeof(subcommands[0]); i++)
		if (strcmp(argv[1], subcommands[i].name) == 0)
			break;
	if (i == sizeof(subcommands) / sizeof(subcommands[0])) {
		fprintf(stderr, "tandem-bench: unknown subcommand '%.60s'\n%s",
			argv[1], usage_text);
		return 2;
	}
	if (parse_args(argc - 1, argv + 1, subcommands[i].allowed,
		       subcommands[i].required, &a, &err) < 0 ||
	    (a.command && target_parse(a.command, &cmd, &err) < 0) ||
	    (a.query && target_parse(a.query, &qry, &err) < 0) ||
	    (a.account && !id_ok(a.account) &&
	     es_error_set(&err, ES_EINVALID, "bad account id '%.60s'",
			  a.account) < 0)) {
		fprintf(stderr, "tandem-bench: %s\n", err.detail);
		es_error_release(&err);
		return 2;
	}
	if (strcmp(argv[1], "lag") == 0 || strcmp(argv[1], "fold") == 0) {
		seed = a.seed ? (uint64_t)a.seed
			      : now_ns() ^ ((uint64_t)getpid() << 32);
		if (accounts_load(a.accounts, &acc, &err) == 0)
			rc = cmd_lag(&cmd, &qry, &acc,
				     strcmp(argv[1], "lag") == 0, a.rate,
				     a.seconds, a.conns, a.qconns, seed, &err);
		accounts_release(&acc);
	} else if (strcmp(argv[1], "latency") == 0) {
		rc = cmd_latency(&cmd, a.account, a.n, &err);
	} else {
		rc = cmd_feed(&qry, a.limit, &err);
	}
	if (rc < 0)
		fprintf(stderr, "tandem-bench: %s: %s\n", argv[1], err.detail);
	es_error_release(&err);
	return rc < 0 ? 1 : 0;
}
