/* check_http.c - es_http on a real daemon, spoken to over plain sockets. */
#define _GNU_SOURCE /* strcasestr */
#include <check.h>
#include <arpa/inet.h>
#include <jansson.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

#include "es_auth_mint.h"
#include "es_http.h"
#include "es_log.h"

struct later {
	struct es_request *req;
	int delay_ms;
	int send; /* 0: resume without answering */
};

static void *answer_later(void *arg)
{
	struct later *l = arg;
	struct timespec ts = { l->delay_ms / 1000,
			       (l->delay_ms % 1000) * 1000000L };

	nanosleep(&ts, NULL);
	if (l->send) {
		es_http_add_header(l->req, "X-Later", "yes");
		es_http_send_json(l->req, 200,
				  json_pack("{s:s}", "answered", "later"));
	}
	es_http_resume(l->req);
	free(l);
	return NULL;
}

/* Suspend, and let a detached thread answer after ?ms= milliseconds. */
static void suspend_handler(struct es_request *req)
{
	struct later *l = calloc(1, sizeof(*l));
	const char *ms = es_request_query(req, "ms");
	pthread_t t;

	l->req = req;
	l->delay_ms = ms ? atoi(ms) : 100;
	l->send = es_request_query(req, "silent") == NULL;
	es_http_suspend(req);
	pthread_create(&t, NULL, answer_later, l);
	pthread_detach(t);
}

/*
 * /take?take_ms=&answer_ms=&tag=: the owner takes the request after
 * take_ms (es_http_take()), reads a header and a query argument, and if
 * it took it answers after answer_ms more.
 */
struct taker {
	struct es_request *req;
	int take_ms, answer_ms;
};

static atomic_int took = -1; /* es_http_take()'s answer, -1 before */
static atomic_bool taker_done;
static char taker_read[128]; /* "X-Echo/tag" as the owner read them */

static void sleep_ms(int ms)
{
	struct timespec ts = { ms / 1000, (ms % 1000) * 1000000L };

	nanosleep(&ts, NULL);
}

static void *take_later(void *arg)
{
	struct taker *t = arg;
	const char *echo, *tag;
	bool ok;

	sleep_ms(t->take_ms);
	ok = es_http_take(t->req);
	/* after a 503 the connection is gone: these read the copies */
	echo = es_request_header(t->req, "x-echo");
	tag = es_request_query(t->req, "tag");
	snprintf(taker_read, sizeof(taker_read), "%s/%s", echo ? echo : "-",
		 tag ? tag : "-");
	atomic_store(&took, ok);
	if (ok) {
		sleep_ms(t->answer_ms);
		es_http_send_json(t->req, 200,
				  json_pack("{s:s}", "answered", "owner"));
	}
	es_http_resume(t->req);
	free(t);
	atomic_store(&taker_done, true);
	return NULL;
}

static void take_handler(struct es_request *req)
{
	struct taker *t = calloc(1, sizeof(*t));
	const char *take_ms = es_request_query(req, "take_ms");
	const char *answer_ms = es_request_query(req, "answer_ms");
	pthread_t th;

	t->req = req;
	t->take_ms = take_ms ? atoi(take_ms) : 0;
	t->answer_ms = answer_ms ? atoi(answer_ms) : 0;
	es_http_suspend(req);
	pthread_create(&th, NULL, take_later, t);
	pthread_detach(th);
}

static void fast_handler(struct es_request *req)
{
	es_http_send_json(req, 200, json_pack("{s:s}", "status", "ok"));
}

static void item_handler(struct es_request *req)
{
	es_http_add_header(req, "X-Item", es_request_param(req, "id"));
	es_http_send_json(req, 200,
			  json_pack("{s:s, s:s, s:s?}", "id",
				    es_request_param(req, "id"), "route",
				    req->route, "q",
				    es_request_query(req, "q")));
}

static void echo_handler(struct es_request *req)
{
	es_http_send_json(req, 201, json_incref(req->json));
}

static void raw_handler(struct es_request *req)
{
	es_http_send_text(req, 200, "text/plain", req->body, req->len);
}

static void mute_handler(struct es_request *req)
{
	(void)req;
}

static atomic_int counted; /* requests that reached count_handler() */

static void count_handler(struct es_request *req)
{
	atomic_fetch_add(&counted, 1);
	es_http_send_json(req, 200,
			  json_pack("{s:I}", "len", (json_int_t)req->len));
}

/* Sends the first 11 bytes of a longer malloc()ed block, uncopied. */
static void buffer_handler(struct es_request *req)
{
	char *b = strdup("hello world, and what follows is not sent");

	es_http_send_buffer(req, 200, "text/x-test", b, 11);
}

static const struct es_route routes[] = {
	{ "GET", "/fast", fast_handler, 0, NULL, ES_ROLE_ANY },
	{ "GET", "/buffer", buffer_handler, 0, NULL, ES_ROLE_ANY },
	{ "GET", "/slow", suspend_handler, 0, NULL, ES_ROLE_ANY },
	{ "GET", "/take", take_handler, 0, NULL, ES_ROLE_ANY },
	{ "GET", "/items/{id}", item_handler, 0, NULL, ES_ROLE_ANY },
	{ "DELETE", "/items/{id}", fast_handler, 0, NULL, ES_ROLE_ANY },
	{ "POST", "/echo", echo_handler, ES_ROUTE_JSON, NULL, ES_ROLE_ANY },
	{ "POST", "/raw", raw_handler, 0, NULL, ES_ROLE_ANY },
	{ "GET", "/mute", mute_handler, 0, NULL, ES_ROLE_ANY },
	{ "POST", "/count", count_handler, 0, NULL, ES_ROLE_ANY },
	{ "GET", "/count", count_handler, 0, NULL, ES_ROLE_ANY },
};

static struct es_http *h;

/* AUTH=off: every request is the anonymous principal, with every role */
static struct es_auth *auth_off(void)
{
	static const struct es_auth_config off = { .mode = "off" };
	static struct es_auth *a;
	struct es_error err = ES_ERROR_INIT;

	if (!a)
		a = es_auth_new(&off, &err);
	ck_assert_msg(a != NULL, "es_auth_new: %s", err.detail);
	return a;
}

static struct es_http *start(long threads)
{
	struct es_http_config cfg = {
		.bind_address = "127.0.0.1",
		.port = 0,
		.threads = threads,
		.max_connections = 64,
		.per_ip_connections = 0,
		.connection_memory = 32768,
		.idle_timeout = 5,
		.max_body = 1000,
		.request_timeout = 2,
		.auth = auth_off(),
	};
	struct es_error err = ES_ERROR_INIT;
	struct es_http *s;

	s = es_http_start(&cfg, routes, sizeof(routes) / sizeof(*routes), NULL,
			  &err);
	ck_assert_msg(s != NULL, "es_http_start: %s", err.detail);
	return s;
}

static void setup(void)
{
	es_log_set_level("off");
	h = start(2);
}

static void teardown(void)
{
	ck_assert_int_eq(es_http_stop(h, 1000), 0);
	h = NULL;
}

static int dial(unsigned int port)
{
	struct sockaddr_in sin = { .sin_family = AF_INET };
	struct timeval tv = { 5, 0 };
	int fd = socket(AF_INET, SOCK_STREAM, 0);

	ck_assert_int_ge(fd, 0);
	sin.sin_port = htons((uint16_t)port);
	sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
	ck_assert_int_eq(connect(fd, (struct sockaddr *)&sin, sizeof(sin)), 0);
	return fd;
}

static void send_all(int fd, const char *data, size_t len)
{
	while (len > 0) {
		ssize_t n = send(fd, data, len, MSG_NOSIGNAL);

		if (n <= 0)
			return; /* the server may have closed on us */
		data += n;
		len -= (size_t)n;
	}
}

struct reply {
	int status; /* 0: connection closed without an answer */
	char head[4096];
	char body[8192];
	double secs;
};

/* Read until the server closes (every request says Connection: close). */
static void read_reply(int fd, struct reply *rep)
{
	char buf[16384]; /* not static: background threads read too */
	size_t len = 0;
	ssize_t n;
	char *sep;

	while (len < sizeof(buf) - 1 &&
	       (n = recv(fd, buf + len, sizeof(buf) - 1 - len, 0)) > 0)
		len += (size_t)n;
	buf[len] = '\0';
	close(fd);
	memset(rep->head, 0, sizeof(rep->head));
	memset(rep->body, 0, sizeof(rep->body));
	rep->status = 0;
	sep = strstr(buf, "\r\n\r\n");
	if (!sep || sscanf(buf, "HTTP/1.1 %d", &rep->status) != 1)
		return;
	snprintf(rep->head, sizeof(rep->head), "%.*s", (int)(sep - buf), buf);
	snprintf(rep->body, sizeof(rep->body), "%s", sep + 4);
}

/* Read one answer with a Content-Length off a kept-alive connection. */
static void read_one(int fd, struct reply *rep)
{
	char buf[8192];
	size_t len = 0, want = 0;
	char *sep = NULL, *cl;
	ssize_t n;

	memset(rep, 0, sizeof(*rep));
	while (len < sizeof(buf) - 1) {
		n = recv(fd, buf + len, 1, 0);
		if (n <= 0)
			return;
		len += (size_t)n;
		buf[len] = '\0';
		if ((sep = strstr(buf, "\r\n\r\n")) != NULL)
			break;
	}
	if (!sep || sscanf(buf, "HTTP/1.1 %d", &rep->status) != 1)
		return;
	snprintf(rep->head, sizeof(rep->head), "%.*s", (int)(sep - buf), buf);
	cl = strcasestr(rep->head, "\r\nContent-Length: ");
	if (cl)
		want = strtoul(cl + 18, NULL, 10);
	for (len = 0; len < want && len < sizeof(rep->body) - 1;
	     len += (size_t)n)
		if ((n = recv(fd, rep->body + len, want - len, 0)) <= 0)
			break;
}

static void request(const char *raw, struct reply *rep)
{
	struct timespec t0, t1;
	int fd;

	clock_gettime(CLOCK_MONOTONIC, &t0);
	fd = dial(es_http_port(h));
	send_all(fd, raw, strlen(raw));
	read_reply(fd, rep);
	clock_gettime(CLOCK_MONOTONIC, &t1);
	rep->secs = (double)(t1.tv_sec - t0.tv_sec) +
		    (double)(t1.tv_nsec - t0.tv_nsec) / 1e9;
}

static void get(const char *path, struct reply *rep)
{
	char raw[512];

	snprintf(raw, sizeof(raw),
		 "GET %s HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n",
		 path);
	request(raw, rep);
}

static void post(const char *path, const char *type, const char *body,
		 struct reply *rep)
{
	char raw[4096];

	snprintf(raw, sizeof(raw),
		 "POST %s HTTP/1.1\r\nHost: t\r\nConnection: close\r\n"
		 "%s%s%sContent-Length: %zu\r\n\r\n%s",
		 path, type ? "Content-Type: " : "", type ? type : "",
		 type ? "\r\n" : "", strlen(body), body);
	request(raw, rep);
}

/* The value of header `name` in rep->head, or "" (static buffer). */
static const char *header(const struct reply *rep, const char *name)
{
	static char value[256];
	const char *line = rep->head;
	size_t n = strlen(name);

	value[0] = '\0';
	while ((line = strstr(line, "\r\n")) != NULL) {
		line += 2;
		if (strncasecmp(line, name, n) == 0 && line[n] == ':') {
			const char *v = line + n + 1, *end;

			while (*v == ' ')
				v++;
			end = strstr(v, "\r\n");
			snprintf(value, sizeof(value), "%.*s",
				 (int)(end ? end - v : (long)strlen(v)), v);
			break;
		}
	}
	return value;
}

static json_t *body_json(const struct reply *rep)
{
	json_t *j = json_loads(rep->body, 0, NULL);

	ck_assert_msg(j != NULL, "body is not JSON: '%s'", rep->body);
	return j;
}

static void assert_problem(const struct reply *rep, int status)
{
	json_t *j;

	ck_assert_int_eq(rep->status, status);
	ck_assert_str_eq(header(rep, "Content-Type"),
			 "application/problem+json");
	j = body_json(rep);
	ck_assert_int_eq(json_integer_value(json_object_get(j, "status")),
			 status);
	ck_assert_ptr_nonnull(json_string_value(json_object_get(j, "type")));
	ck_assert_ptr_nonnull(json_string_value(json_object_get(j, "detail")));
	json_decref(j);
}

START_TEST(get_route_answers_json_with_request_id)
{
	struct reply rep;
	json_t *j;

	get("/fast", &rep);
	ck_assert_int_eq(rep.status, 200);
	ck_assert_str_eq(header(&rep, "Content-Type"), "application/json");
	ck_assert_int_gt(strlen(header(&rep, "X-Request-Id")), 0);
	j = body_json(&rep);
	ck_assert_str_eq(json_string_value(json_object_get(j, "status")), "ok");
	json_decref(j);
}
END_TEST

START_TEST(params_query_and_added_headers_reach_the_handler)
{
	struct reply rep;
	json_t *j;

	get("/items/abc%2d42?q=x%20y", &rep); /* the path is decoded */
	ck_assert_int_eq(rep.status, 200);
	ck_assert_str_eq(header(&rep, "X-Item"), "abc-42");
	j = body_json(&rep);
	ck_assert_str_eq(json_string_value(json_object_get(j, "id")), "abc-42");
	ck_assert_str_eq(json_string_value(json_object_get(j, "route")),
			 "/items/{id}");
	ck_assert_str_eq(json_string_value(json_object_get(j, "q")), "x y");
	json_decref(j);
}
END_TEST

START_TEST(sane_client_request_id_is_kept_and_odd_one_replaced)
{
	struct reply rep;

	request("GET /fast HTTP/1.1\r\nHost: t\r\nConnection: close\r\n"
		"X-Request-Id: abc-123\r\n\r\n",
		&rep);
	ck_assert_str_eq(header(&rep, "X-Request-Id"), "abc-123");
	request("GET /fast HTTP/1.1\r\nHost: t\r\nConnection: close\r\n"
		"X-Request-Id: a b<script>\r\n\r\n",
		&rep);
	ck_assert_str_ne(header(&rep, "X-Request-Id"), "a b<script>");
	ck_assert_int_gt(strlen(header(&rep, "X-Request-Id")), 0);
}
END_TEST

START_TEST(unknown_path_is_404_problem)
{
	struct reply rep;

	get("/nowhere", &rep);
	assert_problem(&rep, 404);
	get("/fast/", &rep);
	assert_problem(&rep, 404);
	get("/items/", &rep);
	assert_problem(&rep, 404);
}
END_TEST

START_TEST(wrong_method_is_405_with_allow)
{
	struct reply rep;

	post("/fast", "application/json", "{}", &rep);
	assert_problem(&rep, 405);
	ck_assert_str_eq(header(&rep, "Allow"), "GET, HEAD");
	request("PUT /items/7 HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n",
		&rep);
	assert_problem(&rep, 405);
	ck_assert_str_eq(header(&rep, "Allow"), "GET, HEAD, DELETE");
}
END_TEST

START_TEST(error_answers_keep_the_connection)
{
	static const char *const reqs[] = {
		"GET /nowhere HTTP/1.1\r\nHost: t\r\n\r\n",
		"POST /fast HTTP/1.1\r\nHost: t\r\nContent-Length: 2\r\n\r\n{}",
		"POST /echo HTTP/1.1\r\nHost: t\r\nContent-Type: text/plain\r\n"
		"Content-Length: 2\r\n\r\n{}",
		"POST /echo HTTP/1.1\r\nHost: t\r\nContent-Type: application/json"
		"\r\nContent-Length: 2\r\n\r\n[]",
		"GET /fast HTTP/1.1\r\nHost: t\r\n\r\n",
	};
	static const int want[] = { 404, 405, 415, 400, 200 };
	struct reply rep;
	int fd = dial(es_http_port(h));

	for (size_t i = 0; i < sizeof(want) / sizeof(*want); i++) {
		send_all(fd, reqs[i], strlen(reqs[i]));
		read_one(fd, &rep);
		ck_assert_int_eq(rep.status, want[i]);
		ck_assert_ptr_null(strcasestr(rep.head, "Connection: close"));
	}
	close(fd);
}
END_TEST

START_TEST(unknown_path_with_large_body_is_answered_at_once)
{
	struct reply rep;

	request("POST /nowhere HTTP/1.1\r\nHost: t\r\n"
		"Content-Length: 99999999\r\n\r\n",
		&rep);
	assert_problem(&rep, 404);
	ck_assert_str_eq(header(&rep, "Connection"), "close");
}
END_TEST

START_TEST(head_reaches_get_route_without_body)
{
	struct reply rep;

	request("HEAD /fast HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n",
		&rep);
	ck_assert_int_eq(rep.status, 200);
	ck_assert_str_eq(rep.body, "");
	ck_assert_str_eq(header(&rep, "Content-Length"), "15");
}
END_TEST

START_TEST(json_route_parses_body)
{
	struct reply rep;
	json_t *j;

	post("/echo", "application/json; charset=UTF-8", "{\"a\":[1,2]}", &rep);
	ck_assert_int_eq(rep.status, 201);
	j = body_json(&rep);
	ck_assert_int_eq(json_array_size(json_object_get(j, "a")), 2);
	json_decref(j);
}
END_TEST

START_TEST(json_route_refuses_other_content_types)
{
	struct reply rep;

	post("/echo", "text/plain", "{}", &rep);
	assert_problem(&rep, 415);
	post("/echo", NULL, "{}", &rep);
	assert_problem(&rep, 415);
	post("/echo", "application/json; charset=latin1", "{}", &rep);
	assert_problem(&rep, 415);
}
END_TEST

START_TEST(json_route_refuses_bad_json)
{
	struct reply rep;

	post("/echo", "application/json", "{\"a\":", &rep);
	assert_problem(&rep, 400);
	post("/echo", "application/json", "[1]", &rep);
	assert_problem(&rep, 400);
	post("/echo", "application/json", "", &rep);
	assert_problem(&rep, 400);
	/* the detail echoes bytes that are not UTF-8: still a problem */
	post("/echo", "application/json", "{\"a\":\xff}", &rep);
	assert_problem(&rep, 400);
}
END_TEST

START_TEST(announced_large_body_is_413_before_reading)
{
	struct reply rep;

	request("POST /raw HTTP/1.1\r\nHost: t\r\nConnection: close\r\n"
		"Content-Length: 1001\r\n\r\n",
		&rep);
	assert_problem(&rep, 413);
	request("POST /echo HTTP/1.1\r\nHost: t\r\nConnection: close\r\n"
		"Content-Type: application/json\r\n"
		"Expect: 100-continue\r\nContent-Length: 99999999\r\n\r\n",
		&rep);
	assert_problem(&rep, 413);
}
END_TEST

static void chunked(size_t total, struct reply *rep)
{
	char *raw = malloc(total * 2 + 512), *p = raw;
	int fd;

	p += sprintf(p, "POST /raw HTTP/1.1\r\nHost: t\r\nConnection: close\r\n"
			"Transfer-Encoding: chunked\r\n\r\n");
	for (size_t left = total; left > 0;) {
		size_t n = left > 100 ? 100 : left;

		p += sprintf(p, "%zx\r\n", n);
		memset(p, 'x', n);
		p += n;
		p += sprintf(p, "\r\n");
		left -= n;
	}
	p += sprintf(p, "0\r\n\r\n");
	fd = dial(es_http_port(h));
	send_all(fd, raw, (size_t)(p - raw));
	read_reply(fd, rep);
	free(raw);
}

START_TEST(chunked_body_within_cap_is_read)
{
	struct reply rep;

	chunked(1000, &rep);
	ck_assert_int_eq(rep.status, 200);
	ck_assert_int_eq(strlen(rep.body), 1000);
}
END_TEST

START_TEST(chunked_body_over_cap_is_413)
{
	struct reply rep;

	chunked(5000, &rep);
	assert_problem(&rep, 413);
}
END_TEST

START_TEST(chunked_body_far_over_cap_is_cut_off)
{
	struct reply rep;

	chunked(3 * 1024 * 1024, &rep);
	ck_assert_int_eq(rep.status, 0);
}
END_TEST

START_TEST(handler_that_does_not_answer_gets_500)
{
	struct reply rep;

	get("/mute", &rep);
	assert_problem(&rep, 500);
}
END_TEST

START_TEST(suspended_request_is_answered_by_another_thread)
{
	struct reply rep;
	json_t *j;

	get("/slow?ms=50", &rep);
	ck_assert_int_eq(rep.status, 200);
	ck_assert_str_eq(header(&rep, "X-Later"), "yes");
	j = body_json(&rep);
	ck_assert_str_eq(json_string_value(json_object_get(j, "answered")),
			 "later");
	json_decref(j);
}
END_TEST

START_TEST(resume_without_answer_is_500)
{
	struct reply rep;

	get("/slow?ms=10&silent=1", &rep);
	assert_problem(&rep, 500);
}
END_TEST

struct bg {
	struct reply rep;
	const char *path;
};

static void *bg_get(void *arg)
{
	struct bg *b = arg;

	get(b->path, &b->rep);
	return NULL;
}

/* Wait until `n` requests are in flight, and their handlers have run. */
static void wait_in_flight(unsigned int n)
{
	struct timespec tick = { 0, 10 * 1000000L };
	int i;

	for (i = 0; i < 500 && es_http_in_flight(h) != n; i++)
		nanosleep(&tick, NULL);
	ck_assert_uint_eq(es_http_in_flight(h), n);
	for (i = 0; i < 5; i++)
		nanosleep(&tick, NULL);
}

START_TEST(suspended_request_does_not_hold_a_thread)
{
	/* long enough that a held thread shows through a loaded machine */
	struct bg slow[3] = { { .path = "/slow?ms=1500" },
			      { .path = "/slow?ms=1500" },
			      { .path = "/slow?ms=1500" } };
	struct reply rep;
	pthread_t t[3];

	/* one HTTP thread, three waiting requests: a fourth still gets in */
	es_http_stop(h, 0);
	h = start(1);
	for (int i = 0; i < 3; i++)
		pthread_create(&t[i], NULL, bg_get, &slow[i]);
	wait_in_flight(3);
	get("/fast", &rep);
	ck_assert_int_eq(rep.status, 200);
	ck_assert_double_lt(rep.secs, 1.0);
	for (int i = 0; i < 3; i++) {
		pthread_join(t[i], NULL);
		ck_assert_int_eq(slow[i].rep.status, 200);
		ck_assert_double_ge(slow[i].rep.secs, 1.45);
	}
}
END_TEST

START_TEST(stop_waits_for_suspended_requests)
{
	struct bg slow = { .path = "/slow?ms=300" };
	pthread_t t;

	pthread_create(&t, NULL, bg_get, &slow);
	wait_in_flight(1);
	ck_assert_int_eq(es_http_stop(h, 2000), 0);
	pthread_join(t, NULL);
	ck_assert_int_eq(slow.rep.status, 200);
	h = start(2);
}
END_TEST

START_TEST(stop_answers_503_when_grace_runs_out)
{
	struct bg slow = { .path = "/slow?ms=800" };
	struct timespec owner = { 1, 0 };
	pthread_t t;

	pthread_create(&t, NULL, bg_get, &slow);
	wait_in_flight(1);
	ck_assert_int_eq(es_http_stop(h, 100), 1);
	pthread_join(t, NULL);
	assert_problem(&slow.rep, 503);
	ck_assert_str_eq(header(&slow.rep, "Retry-After"), "1");
	/* the owner answers and resumes after the stop: ignored, no crash */
	nanosleep(&owner, NULL);
	h = start(2);
}
END_TEST

struct bg_raw {
	struct reply rep;
	const char *raw;
};

static void *bg_request(void *arg)
{
	struct bg_raw *b = arg;

	request(b->raw, &b->rep);
	return NULL;
}

/* Start GET /take with `query` and X-Echo: hello; wait for its handler. */
static void take_in_background(struct bg_raw *b, char *raw, size_t size,
			       const char *query, pthread_t *t)
{
	snprintf(raw, size,
		 "GET /take?%s HTTP/1.1\r\nHost: t\r\nX-Echo: hello\r\n"
		 "Connection: close\r\n\r\n",
		 query);
	b->raw = raw;
	atomic_store(&took, -1);
	atomic_store(&taker_done, false);
	taker_read[0] = '\0';
	pthread_create(t, NULL, bg_request, b);
	wait_in_flight(1);
}

static void wait_taker(void)
{
	for (int i = 0; i < 300 && !atomic_load(&taker_done); i++)
		sleep_ms(10);
	ck_assert(atomic_load(&taker_done));
}

START_TEST(taken_request_gets_its_owners_answer_after_the_grace)
{
	struct bg_raw b = { 0 };
	char raw[256];
	pthread_t t;

	take_in_background(&b, raw, sizeof(raw), "answer_ms=400&tag=a", &t);
	/* taken at once: the drain leaves it to its owner */
	ck_assert_int_eq(es_http_drain(h, 100), 0);
	ck_assert_int_eq(es_http_stop(h, 2000), 0);
	pthread_join(t, NULL);
	ck_assert_int_eq(b.rep.status, 200);
	ck_assert_int_eq(atomic_load(&took), 1);
	ck_assert_str_eq(taker_read, "hello/a");
	wait_taker();
	h = start(2);
}
END_TEST

START_TEST(taken_request_unanswered_in_time_is_504_not_503)
{
	struct bg_raw b = { 0 };
	char raw[256];
	json_t *j;
	pthread_t t;

	take_in_background(&b, raw, sizeof(raw), "answer_ms=900&tag=b", &t);
	ck_assert_int_eq(es_http_stop(h, 100), 1);
	pthread_join(t, NULL);
	assert_problem(&b.rep, 504);
	j = body_json(&b.rep);
	ck_assert_str_eq(json_string_value(json_object_get(j, "type")),
			 "https://tandem.dev/problems/outcome-unknown");
	json_decref(j);
	/* the owner answers and resumes after the stop: ignored */
	wait_taker();
	ck_assert_int_eq(atomic_load(&took), 1);
	h = start(2);
}
END_TEST

START_TEST(take_after_the_503_fails_and_the_request_stays_readable)
{
	struct bg_raw b = { 0 };
	char raw[256];
	pthread_t t;

	take_in_background(&b, raw, sizeof(raw), "take_ms=500&tag=c", &t);
	ck_assert_int_eq(es_http_stop(h, 100), 1);
	pthread_join(t, NULL);
	assert_problem(&b.rep, 503);
	/* the connection closed long before the owner reads the request */
	wait_taker();
	ck_assert_int_eq(atomic_load(&took), 0);
	ck_assert_str_eq(taker_read, "hello/c");
	h = start(2);
}
END_TEST

START_TEST(new_connections_are_refused_after_stop)
{
	struct sockaddr_in sin = { .sin_family = AF_INET };
	unsigned int port = es_http_port(h);
	int fd;

	es_http_stop(h, 100);
	h = NULL;
	fd = socket(AF_INET, SOCK_STREAM, 0);
	sin.sin_port = htons((uint16_t)port);
	sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	ck_assert_int_ne(connect(fd, (struct sockaddr *)&sin, sizeof(sin)), 0);
	close(fd);
	h = start(2);
}
END_TEST

START_TEST(in_flight_returns_to_zero_and_metrics_count)
{
	struct reply rep;
	char *text = NULL;
	size_t size = 0;
	FILE *out;

	get("/fast", &rep);
	get("/nowhere", &rep);
	/* libmicrohttpd answers a broken request line itself */
	request("BROKEN\r\n\r\n", &rep);
	for (int i = 0; i < 100 && es_http_in_flight(h) > 0; i++)
		usleep(10000);
	ck_assert_uint_eq(es_http_in_flight(h), 0);
	out = open_memstream(&text, &size);
	ck_assert_int_eq(es_http_metrics_write(h, out), 0);
	fclose(out);
	ck_assert_ptr_nonnull(strstr(
		text,
		"http_requests_total{method=\"GET\",route=\"/fast\",status=\"200\"} 1\n"));
	ck_assert_ptr_nonnull(strstr(
		text,
		"http_requests_total{method=\"\",route=\"unmatched\",status=\"404\"} 1\n"));
	ck_assert_ptr_nonnull(strstr(
		text,
		"http_request_duration_seconds_count{method=\"GET\",route=\"/fast\"} 1\n"));
	ck_assert_ptr_nonnull(strstr(
		text,
		"http_request_duration_seconds_bucket{method=\"GET\",route=\"/fast\",le=\"2.5\"} 1\n"));
	ck_assert_ptr_nonnull(strstr(
		text,
		"http_request_duration_seconds_bucket{method=\"GET\",route=\"/fast\",le=\"+Inf\"} 1\n"));
	free(text);
}
END_TEST

START_TEST(huge_headers_get_an_answer_and_no_leak)
{
	static char raw[65536];
	char *text = NULL, want[128];
	struct reply rep;
	size_t n, size = 0;
	FILE *out;

	n = (size_t)sprintf(raw, "GET /fast HTTP/1.1\r\nHost: t\r\nX-Big: ");
	memset(raw + n, 'a', 40000);
	strcpy(raw + n + 40000, "\r\nConnection: close\r\n\r\n");
	request(raw, &rep);
	/* libmicrohttpd's own answer (431 in 0.9.75), not ours */
	ck_assert_int_ge(rep.status, 400);
	for (int i = 0; i < 100 && es_http_in_flight(h) > 0; i++)
		usleep(10000);
	ck_assert_uint_eq(es_http_in_flight(h), 0);
	/* counted with the status libmicrohttpd answered */
	out = open_memstream(&text, &size);
	ck_assert_int_eq(es_http_metrics_write(h, out), 0);
	fclose(out);
	snprintf(want, sizeof(want),
		 "http_requests_total{method=\"\",route=\"unmatched\","
		 "status=\"%d\"} 1\n",
		 rep.status);
	ck_assert_msg(strstr(text, want), "no '%s' in:\n%s", want, text);
	free(text);
}
END_TEST

/* A string literal and its length, NUL bytes included. */
#define RAW(s) s, sizeof(s) - 1

/* Bytes curl would not send; each must be 400 from us, then closed. */
static const struct {
	const char *name;
	const char *raw;
	size_t len;
	const char *detail; /* a part of the problem's detail */
} framing_cases[] = {
	{ "duplicated Content-Length, equal values",
	  RAW("POST /count HTTP/1.1\r\nHost: t\r\nContent-Length: 3\r\n"
	      "Content-Length: 3\r\n\r\nabc"),
	  "duplicated Content-Length" },
	{ "duplicated Content-Length, other values",
	  RAW("POST /count HTTP/1.1\r\nHost: t\r\nContent-Length: 3\r\n"
	      "Content-Length: 30\r\n\r\nabc"),
	  "duplicated Content-Length" },
	{ "Content-Length with chunked",
	  RAW("POST /count HTTP/1.1\r\nHost: t\r\nContent-Length: 3\r\n"
	      "Transfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n"),
	  "Content-Length together with Transfer-Encoding" },
	{ "chunked with Content-Length",
	  RAW("POST /count HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n"
	      "Content-Length: 3\r\n\r\n3\r\nabc\r\n0\r\n\r\n"),
	  "Content-Length together with Transfer-Encoding" },
	{ "gzip",
	  RAW("POST /count HTTP/1.1\r\nHost: t\r\n"
	      "Transfer-Encoding: gzip\r\n\r\nabc"),
	  "Transfer-Encoding 'gzip' is not supported" },
	{ "chunked, gzip",
	  RAW("POST /count HTTP/1.1\r\nHost: t\r\n"
	      "Transfer-Encoding: chunked, gzip\r\n\r\n0\r\n\r\n"),
	  "is not supported" },
	{ "empty Transfer-Encoding",
	  RAW("POST /count HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: \r\n\r\n"),
	  "is not supported" },
	{ "two Transfer-Encoding",
	  RAW("POST /count HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n"
	      "Transfer-Encoding: chunked\r\n\r\n0\r\n\r\n"),
	  "more than one Transfer-Encoding" },
	{ "NUL in the last value",
	  RAW("GET /count HTTP/1.1\r\nHost: t\r\nX-A: a\0b\r\n\r\n"),
	  "header 'X-A' contains a NUL byte" },
	{ "NUL in a value",
	  RAW("GET /count HTTP/1.1\r\nX-A: a\0b\r\nHost: t\r\n\r\n"),
	  "header 'X-A' contains a NUL byte" },
	{ "NUL ending a value",
	  RAW("GET /count HTTP/1.1\r\nX-A: a\0\r\nHost: t\r\n\r\n"),
	  "header 'X-A' contains a NUL byte" },
	{ "NUL in a value, LF endings",
	  RAW("GET /count HTTP/1.1\nHost: t\nX-A: a\0b\n\n"),
	  "header 'X-A' contains a NUL byte" },
	{ "space before the colon",
	  RAW("POST /count HTTP/1.1\r\nHost: t\r\nContent-Length : 3\r\n\r\nabc"),
	  "not a valid token" },
	{ "folded header",
	  RAW("GET /count HTTP/1.1\r\nHost: t\r\nX-A: a\r\n b\r\n\r\n"),
	  "folded" },
	{ "%00 in the target",
	  RAW("GET /count%00x HTTP/1.1\r\nHost: t\r\n\r\n"), "request target" },
	{ "space in the target", RAW("GET /co unt HTTP/1.1\r\nHost: t\r\n\r\n"),
	  "request target" },
};

START_TEST(bad_framing_is_400_before_the_handler_and_closes)
{
	const char *raw = framing_cases[_i].raw;
	size_t len =
		framing_cases[_i].len ? framing_cases[_i].len : strlen(raw);
	struct reply rep;
	json_t *j;
	int fd;

	atomic_store(&counted, 0);
	fd = dial(es_http_port(h));
	send_all(fd, raw, len);
	/* no Connection: close in the request: reading ends only because
	 * the server closes, not after SO_RCVTIMEO's 5 s */
	read_reply(fd, &rep);
	assert_problem(&rep, 400);
	ck_assert_str_eq(header(&rep, "Connection"), "close");
	j = body_json(&rep);
	ck_assert_msg(strstr(json_string_value(json_object_get(j, "detail")),
			     framing_cases[_i].detail),
		      "%s: detail '%s'", framing_cases[_i].name,
		      json_string_value(json_object_get(j, "detail")));
	json_decref(j);
	ck_assert_int_eq(atomic_load(&counted), 0);
}
END_TEST

START_TEST(ordinary_header_layouts_pass)
{
	static const char *const reqs[] = {
		"GET /count HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n",
		"GET /count HTTP/1.1\nHost: t\nX-A: 1\nConnection: close\n\n",
		"GET /count HTTP/1.1\r\nHost: t \t\r\nX-A:\r\nX-B:   \r\n"
		"X-C:\tc\t\r\nConnection: close\r\n\r\n",
		"GET /count HTTP/1.1\r\nHost: t\nX-A: 1\r\nConnection: close\n\n",
		"GET /count HTTP/1.0\r\n\r\n",
		"GET /count HTTP/1.1\r\nHost: t\r\nCookie: a=b; c=\"d\"\r\n"
		"Connection: close\r\n\r\n",
		"POST /count HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: Chunked\r\n"
		"Connection: close\r\n\r\n3\r\nabc\r\n0\r\n\r\n",
	};
	struct reply rep;

	atomic_store(&counted, 0);
	for (size_t i = 0; i < sizeof(reqs) / sizeof(*reqs); i++) {
		request(reqs[i], &rep);
		ck_assert_msg(rep.status == 200, "request %zu: status %d", i,
			      rep.status);
	}
	ck_assert_int_eq(atomic_load(&counted), sizeof(reqs) / sizeof(*reqs));
}
END_TEST

/*
 * Send `head` at once (or a byte every `ms` if head_drip), then `body` a
 * byte every `ms`, stopping as soon as an answer comes; read it.
 */
static void drip(const char *head, bool head_drip, const char *body, int ms,
		 struct reply *rep)
{
	struct timespec t0, t1;
	const char *parts[2] = { head, body };
	int fd;

	clock_gettime(CLOCK_MONOTONIC, &t0);
	fd = dial(es_http_port(h));
	for (int p = 0; p < 2; p++) {
		size_t n = strlen(parts[p]);

		if (p == 0 && !head_drip) {
			send_all(fd, head, n);
			continue;
		}
		for (size_t i = 0; i < n; i++) {
			struct pollfd pfd = { .fd = fd, .events = POLLIN };

			if (poll(&pfd, 1, ms) != 0)
				goto answered;
			send_all(fd, parts[p] + i, 1);
		}
	}
answered:
	read_reply(fd, rep);
	clock_gettime(CLOCK_MONOTONIC, &t1);
	rep->secs = (double)(t1.tv_sec - t0.tv_sec) +
		    (double)(t1.tv_nsec - t0.tv_nsec) / 1e9;
}

START_TEST(body_dripping_past_the_deadline_is_408)
{
	struct reply rep;

	atomic_store(&counted, 0);
	/* 40 bytes at one per 150 ms: 6 s; the deadline is 2 s, the idle
	 * timeout 5 s is never reached */
	drip("POST /count HTTP/1.1\r\nHost: t\r\nContent-Length: 40\r\n\r\n",
	     false, "0123456789012345678901234567890123456789", 150, &rep);
	assert_problem(&rep, 408);
	ck_assert_str_eq(header(&rep, "Connection"), "close");
	ck_assert_double_ge(rep.secs, 1.9);
	ck_assert_double_lt(rep.secs, 3.5);
	drip("POST /count HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked"
	     "\r\n\r\n",
	     false, "5\r\nabcde\r\n5\r\nabcde\r\n5\r\nabcde\r\n0\r\n\r\n", 150,
	     &rep);
	assert_problem(&rep, 408);
	ck_assert_double_lt(rep.secs, 3.5);
	ck_assert_int_eq(atomic_load(&counted), 0);
}
END_TEST

START_TEST(headers_dripping_past_the_deadline_are_408)
{
	struct reply rep;

	atomic_store(&counted, 0);
	/* the deadline runs from the end of the request line: 60 more
	 * bytes at one per 50 ms take 3 s */
	drip("GET /count HTTP/1.1\r\nHost: t\r\n"
	     "X-Pad: 0123456789012345678901234567890123456789\r\n\r\n",
	     true, "", 50, &rep);
	assert_problem(&rep, 408);
	ck_assert_str_eq(header(&rep, "Connection"), "close");
	ck_assert_int_eq(atomic_load(&counted), 0);
}
END_TEST

START_TEST(deadline_counts_per_request_not_per_connection)
{
	static const char req[] = "GET /count HTTP/1.1\r\nHost: t\r\n\r\n";
	struct timespec idle = { 2, 500 * 1000000L };
	struct reply rep;
	int fd = dial(es_http_port(h));

	send_all(fd, req, strlen(req));
	read_one(fd, &rep);
	ck_assert_int_eq(rep.status, 200);
	nanosleep(&idle, NULL); /* past the deadline, within the idle timeout */
	send_all(fd, req, strlen(req));
	read_one(fd, &rep);
	ck_assert_int_eq(rep.status, 200);
	close(fd);
}
END_TEST

START_TEST(json_content_types)
{
	ck_assert(es_http_is_json_type("application/json"));
	ck_assert(es_http_is_json_type("Application/JSON"));
	ck_assert(es_http_is_json_type("application/json; charset=utf-8"));
	ck_assert(es_http_is_json_type("application/json;charset=UTF-8"));
	ck_assert(es_http_is_json_type("application/json; charset=\"utf-8\""));
	ck_assert(!es_http_is_json_type(NULL));
	ck_assert(!es_http_is_json_type(""));
	ck_assert(!es_http_is_json_type("text/json"));
	ck_assert(!es_http_is_json_type("application/jsonx"));
	ck_assert(!es_http_is_json_type("application/json; charset=latin1"));
	ck_assert(!es_http_is_json_type("application/json; boundary=x"));
	ck_assert(!es_http_is_json_type("application/json; charset=utf-8x"));
	ck_assert(es_http_is_json_type("application/json ; charset=utf-8"));
	ck_assert(es_http_is_json_type("application/json;\tcharset=Utf-8"));
	ck_assert(!es_http_is_json_type("application/json;"));
	ck_assert(
		!es_http_is_json_type("application/json; charset=utf-8; x=y"));
	ck_assert(!es_http_is_json_type("application/json; charset="));
	ck_assert(!es_http_is_json_type("application/json-patch+json"));
	ck_assert(!es_http_is_json_type(" application/json"));
}
END_TEST

START_TEST(send_buffer_sends_len_bytes_of_the_block)
{
	struct reply rep;

	get("/buffer", &rep);
	ck_assert_int_eq(rep.status, 200);
	ck_assert_str_eq(header(&rep, "Content-Type"), "text/x-test");
	ck_assert_str_eq(header(&rep, "Content-Length"), "11");
	ck_assert_str_eq(rep.body, "hello world");
}
END_TEST

/* One thread: no pool (no warning), suspend and resume still work. */
START_TEST(one_thread_serves_and_resumes)
{
	struct reply rep;

	ck_assert_int_eq(es_http_stop(h, 1000), 0);
	h = start(1);
	get("/fast", &rep);
	ck_assert_int_eq(rep.status, 200);
	get("/slow", &rep);
	ck_assert_int_eq(rep.status, 200);
	ck_assert_str_eq(header(&rep, "X-Later"), "yes");
}
END_TEST

START_TEST(cpus_follow_the_affinity_mask)
{
	cpu_set_t all, one;
	int first = -1;

	ck_assert_int_eq(sched_getaffinity(0, sizeof(all), &all), 0);
	ck_assert_int_eq(es_http_cpus(), CPU_COUNT(&all));
	for (int i = 0; i < CPU_SETSIZE && first < 0; i++)
		if (CPU_ISSET(i, &all))
			first = i;
	CPU_ZERO(&one);
	CPU_SET(first, &one);
	ck_assert_int_eq(sched_setaffinity(0, sizeof(one), &one), 0);
	ck_assert_int_eq(es_http_cpus(), 1);
	ck_assert_int_eq(sched_setaffinity(0, sizeof(all), &all), 0);
}
END_TEST

START_TEST(bad_bind_address_fails_to_start)
{
	struct es_http_config cfg = { .bind_address = "not-an-ip",
				      .max_connections = 1,
				      .connection_memory = 32768,
				      .idle_timeout = 1,
				      .max_body = 1 };
	struct es_error err = ES_ERROR_INIT;

	ck_assert_ptr_null(es_http_start(&cfg, routes, 1, NULL, &err));
	ck_assert_int_eq(err.code, ES_EINVALID);
	ck_assert_str_eq(
		err.detail,
		"'BIND_ADDRESS' must be an IP address, got 'not-an-ip'");
}
END_TEST

START_TEST(port_in_use_fails_to_start)
{
	struct es_http_config cfg = { .bind_address = "127.0.0.1",
				      .port = es_http_port(h),
				      .max_connections = 1,
				      .connection_memory = 32768,
				      .idle_timeout = 1,
				      .max_body = 1 };
	struct es_error err = ES_ERROR_INIT;

	ck_assert_ptr_null(es_http_start(&cfg, routes, 1, NULL, &err));
	ck_assert_int_eq(err.code, ES_EINTERNAL);
}
END_TEST

/* ---- who is asking ---- */

static char auth_dir[] = "/tmp/check_http_auth.XXXXXX";
static char auth_jwks[64];
static EVP_PKEY *auth_key;
static struct es_auth *auth_jwt;

/* Echo the principal: "sub roles" */
static void whoami_handler(struct es_request *req)
{
	char buf[300];

	snprintf(buf, sizeof(buf), "%s %u",
		 req->principal ? req->principal->sub : "(none)",
		 req->principal ? req->principal->roles : 0u);
	es_http_send_text(req, 200, "text/plain", buf, strlen(buf));
}

static const struct es_route auth_routes[] = {
	{ "GET", "/public", whoami_handler, ES_ROUTE_PUBLIC, NULL, 0 },
	{ "GET", "/managers", whoami_handler, 0, NULL, ES_ROLE_MANAGER },
	{ "GET", "/closed", whoami_handler, 0, NULL, 0 },
};

/* A token of auth_key for `sub` with `roles` (names), valid now. */
static char *auth_token(const char *sub, const char *role)
{
	struct es_error err = ES_ERROR_INIT;
	json_t *hd = json_pack("{s:s, s:s}", "alg", "ES256", "kid", "k1");
	json_t *pl = json_pack("{s:s, s:s, s:s, s:I, s:I, s:[s]}", "iss",
			       "https://iss.test", "aud", "tandem", "sub", sub,
			       "iat", (json_int_t)time(NULL), "exp",
			       (json_int_t)time(NULL) + 300, "roles", role);
	char *t = es_mint_sign_json("ES256", auth_key, NULL, 0, hd, pl, &err);

	ck_assert_msg(t != NULL, "mint: %s", err.detail);
	json_decref(hd);
	json_decref(pl);
	return t;
}

static void auth_setup(void)
{
	struct es_http_config cfg = {
		.bind_address = "127.0.0.1",
		.threads = 1,
		.max_connections = 16,
		.connection_memory = 32768,
		.idle_timeout = 5,
		.max_body = 1000,
	};
	struct es_auth_config ac = {
		.mode = "jwt",
		.issuer = "https://iss.test",
		.audience = "tandem",
		.leeway_s = 30,
		.roles_claim = "roles",
		.cache_max = 10,
	};
	struct es_error err = ES_ERROR_INIT;
	json_t *set;
	FILE *f;

	es_log_set_level("off");
	ck_assert_ptr_nonnull(mkdtemp(auth_dir));
	snprintf(auth_jwks, sizeof(auth_jwks), "%s/jwks.json", auth_dir);
	auth_key = es_mint_keygen("ES256", 0, &err);
	ck_assert_ptr_nonnull(auth_key);
	set = json_pack("{s:[o]}", "keys", es_mint_jwk(auth_key, "k1", &err));
	f = fopen(auth_jwks, "w");
	ck_assert_ptr_nonnull(f);
	ck_assert_int_eq(json_dumpf(set, f, 0), 0);
	ck_assert_int_eq(fclose(f), 0);
	json_decref(set);
	ac.jwks_file = auth_jwks;
	auth_jwt = es_auth_new(&ac, &err);
	ck_assert_msg(auth_jwt != NULL, "es_auth_new: %s", err.detail);
	cfg.auth = auth_jwt;
	h = es_http_start(&cfg, auth_routes,
			  sizeof(auth_routes) / sizeof(*auth_routes), NULL,
			  &err);
	ck_assert_msg(h != NULL, "es_http_start: %s", err.detail);
}

static void auth_teardown(void)
{
	es_http_stop(h, 1000);
	h = NULL;
	es_auth_free(auth_jwt);
	EVP_PKEY_free(auth_key);
	unlink(auth_jwks);
	rmdir(auth_dir);
}

/* GET `path` with `authorization` (NULL: none) into `rep`. */
static void get_as(const char *path, const char *authorization,
		   struct reply *rep)
{
	char raw[4096];

	snprintf(
		raw, sizeof(raw),
		"GET %s HTTP/1.1\r\nHost: t\r\n%s%s%sConnection: close\r\n\r\n",
		path, authorization ? "Authorization: " : "",
		authorization ? authorization : "",
		authorization ? "\r\n" : "");
	request(raw, rep);
}

START_TEST(public_route_needs_no_token)
{
	struct reply rep = { 0 };

	get_as("/public", NULL, &rep);
	ck_assert_int_eq(rep.status, 200);
	ck_assert_str_eq(rep.body, "(none) 0");
}
END_TEST

START_TEST(no_or_bad_token_is_401_with_www_authenticate)
{
	static const char *const bad[] = {
		NULL, "Basic YTpi", "Bearer", "Bearer x.y.z", "bearer",
	};
	struct reply rep;

	for (size_t i = 0; i < sizeof(bad) / sizeof(*bad); i++) {
		memset(&rep, 0, sizeof(rep));
		get_as("/managers", bad[i], &rep);
		ck_assert_int_eq(rep.status, 401);
		ck_assert_str_eq(
			header(&rep, "WWW-Authenticate"),
			"Bearer realm=\"tandem\", error=\"invalid_token\"");
		ck_assert_str_eq(header(&rep, "Content-Type"),
				 "application/problem+json");
	}
}
END_TEST

START_TEST(role_decides_200_or_403)
{
	char *mgr = auth_token("mia", "manager");
	char *hol = auth_token("alice", "holder");
	char hdr[2048];
	struct reply rep = { 0 };

	snprintf(hdr, sizeof(hdr), "Bearer %s", mgr);
	get_as("/managers", hdr, &rep);
	ck_assert_int_eq(rep.status, 200);
	ck_assert_str_eq(rep.body, "mia 2"); /* ES_ROLE_MANAGER */
	memset(&rep, 0, sizeof(rep));
	get_as("/closed", hdr, &rep);
	ck_assert_int_eq(rep.status, 403); /* a row without roles */
	snprintf(hdr, sizeof(hdr), "Bearer %s", hol);
	memset(&rep, 0, sizeof(rep));
	get_as("/managers", hdr, &rep);
	ck_assert_int_eq(rep.status, 403);
	ck_assert_ptr_nonnull(
		strstr(rep.body, "needs one of the roles: manager"));
	ck_assert_str_eq(header(&rep, "WWW-Authenticate"), "");
	free(mgr);
	free(hol);
}
END_TEST

START_TEST(token_in_the_url_is_refused)
{
	char *mgr = auth_token("mia", "manager");
	char path[2048];
	struct reply rep = { 0 };

	snprintf(path, sizeof(path), "/managers?access_token=%s", mgr);
	get_as(path, NULL, &rep);
	ck_assert_int_eq(rep.status, 401);
	ck_assert_ptr_nonnull(strstr(rep.body, "URL"));
	free(mgr);
}
END_TEST

static Suite *http_suite(void)
{
	Suite *s = suite_create("http");
	TCase *tc = tcase_create("daemon");

	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_set_timeout(tc, 30);
	tcase_add_test(tc, get_route_answers_json_with_request_id);
	tcase_add_test(tc, params_query_and_added_headers_reach_the_handler);
	tcase_add_test(tc, sane_client_request_id_is_kept_and_odd_one_replaced);
	tcase_add_test(tc, unknown_path_is_404_problem);
	tcase_add_test(tc, wrong_method_is_405_with_allow);
	tcase_add_test(tc, error_answers_keep_the_connection);
	tcase_add_test(tc, unknown_path_with_large_body_is_answered_at_once);
	tcase_add_test(tc, head_reaches_get_route_without_body);
	tcase_add_test(tc, json_route_parses_body);
	tcase_add_test(tc, json_route_refuses_other_content_types);
	tcase_add_test(tc, json_route_refuses_bad_json);
	tcase_add_test(tc, announced_large_body_is_413_before_reading);
	tcase_add_test(tc, chunked_body_within_cap_is_read);
	tcase_add_test(tc, chunked_body_over_cap_is_413);
	tcase_add_test(tc, chunked_body_far_over_cap_is_cut_off);
	tcase_add_test(tc, handler_that_does_not_answer_gets_500);
	tcase_add_test(tc, suspended_request_is_answered_by_another_thread);
	tcase_add_test(tc, resume_without_answer_is_500);
	tcase_add_test(tc, suspended_request_does_not_hold_a_thread);
	tcase_add_test(tc, stop_waits_for_suspended_requests);
	tcase_add_test(tc, stop_answers_503_when_grace_runs_out);
	tcase_add_test(tc,
		       taken_request_gets_its_owners_answer_after_the_grace);
	tcase_add_test(tc, taken_request_unanswered_in_time_is_504_not_503);
	tcase_add_test(tc,
		       take_after_the_503_fails_and_the_request_stays_readable);
	tcase_add_test(tc, new_connections_are_refused_after_stop);
	tcase_add_test(tc, in_flight_returns_to_zero_and_metrics_count);
	tcase_add_test(tc, huge_headers_get_an_answer_and_no_leak);
	tcase_add_test(tc, port_in_use_fails_to_start);
	tcase_add_test(tc, send_buffer_sends_len_bytes_of_the_block);
	tcase_add_test(tc, one_thread_serves_and_resumes);
	tcase_add_loop_test(tc,
			    bad_framing_is_400_before_the_handler_and_closes, 0,
			    sizeof(framing_cases) / sizeof(*framing_cases));
	tcase_add_test(tc, ordinary_header_layouts_pass);
	tcase_add_test(tc, body_dripping_past_the_deadline_is_408);
	tcase_add_test(tc, headers_dripping_past_the_deadline_are_408);
	tcase_add_test(tc, deadline_counts_per_request_not_per_connection);
	suite_add_tcase(s, tc);
	tc = tcase_create("auth");
	tcase_add_checked_fixture(tc, auth_setup, auth_teardown);
	tcase_set_timeout(tc, 30);
	tcase_add_test(tc, public_route_needs_no_token);
	tcase_add_test(tc, no_or_bad_token_is_401_with_www_authenticate);
	tcase_add_test(tc, role_decides_200_or_403);
	tcase_add_test(tc, token_in_the_url_is_refused);
	suite_add_tcase(s, tc);
	tc = tcase_create("pure");
	tcase_add_test(tc, json_content_types);
	tcase_add_test(tc, bad_bind_address_fails_to_start);
	tcase_add_test(tc, cpus_follow_the_affinity_mask);
	suite_add_tcase(s, tc);
	return s;
}

int main(void)
{
	SRunner *sr = srunner_create(http_suite());
	int failed;

	srunner_run_all(sr, CK_NORMAL);
	failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
