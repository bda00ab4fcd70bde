/*
 * store_check.c - drive common/es_append.c and es_read.c from integration
 * tests.
 *
 *   store_check append [STREAM EXPECTED EVENTS]...
 *       one append to one or more streams, as the one request of an
 *       es_append_batch() call; EXPECTED is any, no_stream or N; EVENTS a
 *       JSON array. Prints "ok V1 V2 ... TOKEN", or
 *       "error CODE CURRENT_VERSION DETAIL [FIELDS]" and exits 2.
 *   store_check version STREAM          prints the stream's version
 *   store_check read STREAM FROM LIMIT  one line per event:
 *       "VERSION TYPE EVENT_ID DATA METADATA"
 *   store_check tail TOKEN LIMIT        one es_read_forward(); prints one
 *       line per event "POSITION STREAM VERSION", then "next TOKEN"
 *   store_check covers READ TOKEN       prints 1 or 0
 *   store_check race                    two connections race on a stream
 *   store_check race-ids                two identical appends race
 *   store_check younger                 the out-of-order append check
 *   store_check commit-error            an append whose commit fails
 *   store_check batch [--tx] REQ [-- REQ]...
 *       one es_append_batch() call of several requests, each REQ
 *       STREAM EXPECTED EVENTS triples as for append (--tx: inside
 *       BEGIN ... COMMIT); one line per request, "N ok V1 ... TOKEN" or
 *       "N error CODE CURRENT_VERSION DETAIL"
 *   store_check batch-race              two batches race on the same
 *       streams: the loser's requests get their conflicts
 *   store_check batch-deadlock N        two connections append N batches
 *       each to the same streams, named in opposite orders, each in a
 *       transaction: no deadlock; prints "batches A B"
 *   store_check batch-younger           the out-of-order check per request
 *
 * DATABASE_URL names the database. Exit 0 on success, 1 when a check
 * fails, 2 when an es_ call fails as printed.
 */
#include <inttypes.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "es_db.h"
#include "es_log.h"
#include "es_append.h"
#include "es_read.h"
#include "es_token.h"

static const char *const code_names[ES_ERR__COUNT] = {
	[ES_OK] = "OK",
	[ES_EMALFORMED] = "EMALFORMED",
	[ES_EUNAUTHORIZED] = "EUNAUTHORIZED",
	[ES_EFORBIDDEN] = "EFORBIDDEN",
	[ES_ENOTFOUND] = "ENOTFOUND",
	[ES_EMETHOD] = "EMETHOD",
	[ES_ECONFLICT] = "ECONFLICT",
	[ES_EPRECONDITION] = "EPRECONDITION",
	[ES_ETOOLARGE] = "ETOOLARGE",
	[ES_EMEDIATYPE] = "EMEDIATYPE",
	[ES_EINVALID] = "EINVALID",
	[ES_EUNAVAIL] = "EUNAVAIL",
	[ES_EINTERNAL] = "EINTERNAL",
	[ES_EUNKNOWN] = "EUNKNOWN",
};

#define CHECK(cond, ...)                                                \
	do {                                                            \
		if (!(cond)) {                                          \
			fprintf(stderr,                                 \
				"store_check: line %d: %s: ", __LINE__, \
				#cond);                                 \
			fprintf(stderr, __VA_ARGS__);                   \
			fputc('\n', stderr);                            \
			exit(1);                                        \
		}                                                       \
	} while (0)

static PGconn *connect_db(void)
{
	struct es_error err = ES_ERROR_INIT;
	const char *url = getenv("DATABASE_URL");
	PGconn *db;

	CHECK(url, "DATABASE_URL is not set");
	db = es_db_connect(url, NULL, &err);
	CHECK(db, "%s", err.detail);
	return db;
}

static void exec_ok(PGconn *db, const char *sql)
{
	struct es_error err = ES_ERROR_INIT;

	CHECK(es_db_exec(db, sql, &err) == 0, "%s: %s", sql, err.detail);
}

/* Print `err` and release it. */
static int print_error(struct es_error *err)
{
	char *fields =
		err->fields ? json_dumps(err->fields, JSON_COMPACT) : NULL;

	printf("error %s %lld %s%s%s\n", code_names[err->code],
	       err->current_version, err->detail, fields ? " " : "",
	       fields ? fields : "");
	free(fields);
	es_error_release(err);
	return 2;
}

/*
 * Append to the `n` streams of `sa` as the one request of an
 * es_append_batch() call, what the command service does: 0 with the
 * token, or -1 with the request's error or the call's.
 */
static int append_one(PGconn *db, struct es_stream_append *sa, size_t n,
		      char token[ES_APPEND_TOKEN_MAX], struct es_error *err)
{
	struct es_append_req req = { .streams = sa,
				     .n = n,
				     .err = ES_ERROR_INIT };

	if (es_append_batch(db, &req, 1, err) < 0) {
		es_error_release(&req.err);
		return -1;
	}
	if (!req.ok) {
		*err = req.err; /* moved */
		return -1;
	}
	snprintf(token, ES_APPEND_TOKEN_MAX, "%s", req.token);
	return 0;
}

static long long parse_expected(const char *s)
{
	if (strcmp(s, "any") == 0)
		return ES_ANY;
	if (strcmp(s, "no_stream") == 0)
		return ES_NO_STREAM;
	return strtoll(s, NULL, 10);
}

static int cmd_append(PGconn *db, int argc, char **argv)
{
	struct es_error err = ES_ERROR_INIT;
	size_t n = (size_t)argc / 3, i;
	struct es_stream_append *sa = calloc(n ? n : 1, sizeof(*sa));
	char token[ES_APPEND_TOKEN_MAX];
	int ret = 0;

	CHECK(argc % 3 == 0, "append wants STREAM EXPECTED EVENTS triples");
	for (i = 0; i < n; i++) {
		json_error_t jerr;

		sa[i].stream_id = argv[3 * i];
		sa[i].expected = parse_expected(argv[3 * i + 1]);
		sa[i].events =
			json_loads(argv[3 * i + 2], JSON_DECODE_ANY, &jerr);
		CHECK(sa[i].events, "events: %s", jerr.text);
	}
	if (append_one(db, sa, n, token, &err) < 0) {
		ret = print_error(&err);
	} else {
		printf("ok");
		for (i = 0; i < n; i++)
			printf(" %lld", sa[i].version);
		printf(" %s\n", token);
	}
	for (i = 0; i < n; i++)
		json_decref((json_t *)sa[i].events);
	free(sa);
	es_error_release(&err);
	return ret;
}

static int cmd_version(PGconn *db, const char *stream)
{
	struct es_error err = ES_ERROR_INIT;
	long long v;

	if (es_stream_version(db, stream, &v, &err) < 0)
		return print_error(&err);
	printf("%lld\n", v);
	return 0;
}

static int cmd_read(PGconn *db, const char *stream, const char *from,
		    const char *limit)
{
	struct es_error err = ES_ERROR_INIT;
	struct es_events ev = ES_EVENTS_INIT;
	size_t i;

	if (es_read_stream(db, stream, strtoll(from, NULL, 10),
			   strtoul(limit, NULL, 10), &ev, &err) < 0)
		return print_error(&err);
	for (i = 0; i < ev.n; i++) {
		/* the stored text, printed compact */
		json_t *dj = json_loads(ev.v[i].data, JSON_DECODE_ANY, NULL);
		json_t *mj =
			json_loads(ev.v[i].metadata, JSON_DECODE_ANY, NULL);
		char *d = json_dumps(dj, JSON_COMPACT | JSON_ENCODE_ANY);
		char *m = json_dumps(mj, JSON_COMPACT | JSON_ENCODE_ANY);

		CHECK(strcmp(ev.v[i].stream_id, stream) == 0, "stream %s",
		      ev.v[i].stream_id);
		CHECK(strlen(ev.v[i].recorded_at) == 27 &&
			      ev.v[i].recorded_at[26] == 'Z',
		      "recorded_at '%s'", ev.v[i].recorded_at);
		printf("%lld %s %s %s %s\n", ev.v[i].version, ev.v[i].type,
		       ev.v[i].event_id, d, m);
		free(d);
		free(m);
		json_decref(dj);
		json_decref(mj);
	}
	es_events_release(&ev);
	return 0;
}

static int cmd_tail(PGconn *db, const char *token, const char *limit)
{
	struct es_error err = ES_ERROR_INIT;
	struct es_events ev = ES_EVENTS_INIT;
	struct es_cursor c;
	char *next;
	size_t i;

	if (es_cursor_parse(token, &c, &err) < 0)
		return print_error(&err);
	if (es_read_forward(db, &c, strtoul(limit, NULL, 10), &ev, &c, &err) <
	    0) {
		es_cursor_release(&c);
		return print_error(&err);
	}
	for (i = 0; i < ev.n; i++)
		printf("%lld %s %lld\n", ev.v[i].position, ev.v[i].stream_id,
		       ev.v[i].version);
	next = es_cursor_format(&c);
	printf("next %s\n", next);
	free(next);
	es_cursor_release(&c);
	es_events_release(&ev);
	return 0;
}

static int cmd_covers(const char *read, const char *token)
{
	struct es_error err = ES_ERROR_INIT;
	int r = es_token_covers(read, token, &err);

	if (r < 0)
		return print_error(&err);
	printf("%d\n", r);
	return 0;
}

struct racer {
	PGconn *db;
	struct es_stream_append sa;
	char token[ES_APPEND_TOKEN_MAX];
	struct es_error err;
	int ret;
};

static void *race_append(void *arg)
{
	struct racer *r = arg;

	r->ret = append_one(r->db, &r->sa, 1, r->token, &r->err);
	return NULL;
}

/* Wait until `db`'s backend waits for a lock (it blocks on the other). */
static void wait_blocked(PGconn *watch, PGconn *db)
{
	char sql[160];
	int i;

	snprintf(sql, sizeof(sql),
		 "SELECT 1 FROM pg_stat_activity WHERE pid = %d"
		 " AND wait_event_type = 'Lock'",
		 PQbackendPID(db));
	for (i = 0; i < 200; i++) {
		PGresult *res = PQexec(watch, sql);
		int n = PQntuples(res);

		PQclear(res);
		if (n == 1)
			return;
		usleep(25000);
	}
	CHECK(0, "the second writer never waited for the first");
}

/*
 * A appends version 2 and holds its transaction; B appends version 2 too
 * and waits on A's row; A commits; B loses with current_version 2.
 */
static int cmd_race(void)
{
	PGconn *a = connect_db(), *b = connect_db(), *watch = connect_db();
	struct racer ra = { .db = a, .err = ES_ERROR_INIT };
	struct racer rb = { .db = b, .err = ES_ERROR_INIT };
	json_t *evs = json_loads("[{\"type\":\"Raced\",\"data\":{}}]", 0, NULL);
	pthread_t t;

	ra.sa = (struct es_stream_append){ "race-1", ES_NO_STREAM, evs, 0 };
	race_append(&ra);
	CHECK(ra.ret == 0 && ra.sa.version == 1, "A: %s", ra.err.detail);
	ra.sa.expected = 1;
	rb.sa = ra.sa;
	exec_ok(a, "BEGIN");
	race_append(&ra);
	CHECK(ra.ret == 0, "A: %s", ra.err.detail);
	CHECK(pthread_create(&t, NULL, race_append, &rb) == 0, "thread");
	wait_blocked(watch, b);
	exec_ok(a, "COMMIT");
	pthread_join(t, NULL);
	CHECK(rb.ret == -1, "B won too: %s", rb.token);
	CHECK(rb.err.code == ES_ECONFLICT, "B: %s", rb.err.detail);
	CHECK(rb.err.current_version == 2, "B: current_version %lld",
	      rb.err.current_version);
	printf("race: %s\n", rb.err.detail);

	/* with ES_ANY the loser retries on its own and appends version 3 */
	ra.sa.expected = ES_ANY;
	rb.sa.expected = ES_ANY;
	es_error_release(&rb.err);
	exec_ok(a, "BEGIN");
	race_append(&ra);
	CHECK(ra.ret == 0 && ra.sa.version == 3, "A: %s", ra.err.detail);
	CHECK(pthread_create(&t, NULL, race_append, &rb) == 0, "thread");
	wait_blocked(watch, b);
	exec_ok(a, "COMMIT");
	pthread_join(t, NULL);
	CHECK(rb.ret == 0, "B: %s", rb.err.detail);
	CHECK(rb.sa.version == 4, "B at version %lld", rb.sa.version);
	printf("race any: %lld %lld\n", ra.sa.version, rb.sa.version);

	json_decref(evs);
	PQfinish(a);
	PQfinish(b);
	PQfinish(watch);
	return 0;
}

/*
 * The same append (same event ids) twice at once, as a client retrying
 * while its first attempt is still in flight: B waits on A's event ids
 * and, A committed, loses with a conflict; sent again (the command
 * service decides a raw append with event ids again after its first
 * conflict) it finds them stored and answers with A's versions and
 * token, storing nothing.
 */
static int cmd_race_ids(void)
{
	PGconn *a = connect_db(), *b = connect_db(), *watch = connect_db();
	struct racer ra = { .db = a, .err = ES_ERROR_INIT };
	struct racer rb = { .db = b, .err = ES_ERROR_INIT };
	json_t *evs = json_loads(
		"[{\"type\":\"Twin\",\"data\":{},"
		"\"event_id\":\"5e0d7a38-2b8c-4d55-9d8e-0c3b6a9b1f01\"},"
		"{\"type\":\"Twin\",\"data\":{},"
		"\"event_id\":\"5e0d7a38-2b8c-4d55-9d8e-0c3b6a9b1f02\"}]",
		0, NULL);
	pthread_t t;

	ra.sa = (struct es_stream_append){ "twin-1", ES_NO_STREAM, evs, 0 };
	rb.sa = ra.sa;
	exec_ok(a, "BEGIN");
	race_append(&ra);
	CHECK(ra.ret == 0, "A: %s", ra.err.detail);
	CHECK(pthread_create(&t, NULL, race_append, &rb) == 0, "thread");
	wait_blocked(watch, b);
	exec_ok(a, "COMMIT");
	pthread_join(t, NULL);
	CHECK(rb.ret == -1 && rb.err.code == ES_ECONFLICT, "B: %d %s %s",
	      rb.ret, code_names[rb.err.code], rb.err.detail);
	es_error_release(&rb.err);
	race_append(&rb);
	CHECK(rb.ret == 0, "B: %s %s", code_names[rb.err.code], rb.err.detail);
	CHECK(rb.sa.version == 2, "B at version %lld", rb.sa.version);
	CHECK(strcmp(ra.token, rb.token) == 0, "tokens %s and %s", ra.token,
	      rb.token);
	printf("race-ids: %s %s\n", ra.token, rb.token);
	json_decref(evs);
	PQfinish(a);
	PQfinish(b);
	PQfinish(watch);
	return 0;
}

/*
 * A takes a transaction id first; B appends to a stream and commits; A
 * then appends to the same stream: its events would sort before B's in a
 * reader's window, so the append is refused, and succeeds in a new
 * transaction.
 */
static int cmd_younger(void)
{
	PGconn *a = connect_db(), *b = connect_db();
	struct racer ra = { .db = a, .err = ES_ERROR_INIT };
	struct racer rb = { .db = b, .err = ES_ERROR_INIT };
	json_t *evs = json_loads("[{\"type\":\"Aged\",\"data\":{}}]", 0, NULL);

	ra.sa = (struct es_stream_append){ "young-1", ES_ANY, evs, 0 };
	rb.sa = ra.sa;
	exec_ok(a, "BEGIN");
	exec_ok(a, "SELECT pg_current_xact_id()");
	race_append(&rb);
	CHECK(rb.ret == 0, "B: %s", rb.err.detail);
	race_append(&ra);
	CHECK(ra.ret == -1, "A appended after a younger transaction: %s",
	      ra.token);
	CHECK(ra.err.code == ES_ECONFLICT && ra.err.current_version == 1,
	      "A: %s %lld", ra.err.detail, ra.err.current_version);
	printf("younger: %s\n", ra.err.detail);
	exec_ok(a, "ROLLBACK");
	es_error_release(&ra.err);

	/* a transaction that got its id earlier, but not from a later one */
	exec_ok(a, "BEGIN");
	exec_ok(a, "SELECT pg_current_xact_id()");
	race_append(&ra);
	CHECK(ra.ret == 0 && ra.sa.version == 2, "A: %s", ra.err.detail);
	exec_ok(a, "COMMIT");
	json_decref(evs);
	PQfinish(a);
	PQfinish(b);
	return 0;
}

/*
 * An autocommit append whose commit fails (a deferred constraint
 * trigger): the statement ran and sent its rows, the Sync's commit
 * refused them. The call fails as a whole, nothing is stored, and the
 * connection serves the next append.
 */
static int cmd_commit_error(void)
{
	PGconn *db = connect_db();
	struct es_error err = ES_ERROR_INIT;
	json_t *evs =
		json_loads("[{\"type\":\"Doomed\",\"data\":{}}]", 0, NULL);
	struct es_stream_append sa = { "doomed-1", ES_ANY, evs, 0 };
	char token[ES_APPEND_TOKEN_MAX];
	PGresult *res;

	exec_ok(db, "CREATE FUNCTION doomed() RETURNS trigger"
		    " LANGUAGE plpgsql AS $$BEGIN"
		    " RAISE EXCEPTION 'doomed at commit'; END$$");
	exec_ok(db, "CREATE CONSTRAINT TRIGGER doomed AFTER INSERT ON events"
		    " DEFERRABLE INITIALLY DEFERRED FOR EACH ROW"
		    " WHEN (NEW.stream_id = 'doomed-1')"
		    " EXECUTE FUNCTION doomed()");
	CHECK(append_one(db, &sa, 1, token, &err) == -1, "appended, token %s",
	      token);
	CHECK(err.code == ES_EINTERNAL, "%s %s", code_names[err.code],
	      err.detail);
	es_error_release(&err);
	res = PQexec(db, "SELECT count(*) FROM events"
			 " WHERE stream_id = 'doomed-1'");
	CHECK(PQresultStatus(res) == PGRES_TUPLES_OK &&
		      strcmp(PQgetvalue(res, 0, 0), "0") == 0,
	      "stored: %s", PQresultErrorMessage(res));
	PQclear(res);
	sa.stream_id = "doomed-2";
	CHECK(append_one(db, &sa, 1, token, &err) == 0, "next: %s", err.detail);
	CHECK(sa.version == 1, "next at version %lld", sa.version);
	exec_ok(db, "DROP TRIGGER doomed ON events");
	exec_ok(db, "DROP FUNCTION doomed()");
	printf("commit-error: %s\n", token);
	json_decref(evs);
	PQfinish(db);
	return 0;
}

/*
 * Print one request's outcome as "N ok VERSIONS TOKEN", with " replay"
 * when it stored nothing, or "N error ...".
 */
static void print_req(size_t k, const struct es_append_req *r)
{
	size_t i;

	if (!r->ok) {
		printf("%zu error %s %lld %s\n", k + 1, code_names[r->err.code],
		       r->err.current_version, r->err.detail);
		return;
	}
	printf("%zu ok", k + 1);
	for (i = 0; i < r->n; i++)
		printf(" %lld", r->streams[i].version);
	/* a replay: the token of the append that stored its events */
	printf(" %s%s\n", r->token, r->fresh ? "" : " replay");
}

static int cmd_batch(PGconn *db, int argc, char **argv)
{
	struct es_error err = ES_ERROR_INIT;
	struct es_append_req *reqs = calloc((size_t)argc + 1, sizeof(*reqs));
	struct es_stream_append *sa = calloc((size_t)argc + 1, sizeof(*sa));
	size_t nreq = 0, ns = 0, i;
	int a = 0, tx = 0, ret = 0;

	CHECK(reqs && sa, "out of memory");
	if (argc > 0 && strcmp(argv[0], "--tx") == 0) {
		tx = 1;
		a = 1;
	}
	while (a < argc) {
		reqs[nreq].streams = &sa[ns];
		reqs[nreq].err = (struct es_error)ES_ERROR_INIT;
		while (a < argc && strcmp(argv[a], "--") != 0) {
			json_error_t jerr;

			CHECK(a + 2 < argc, "a request wants triples");
			sa[ns].stream_id = argv[a];
			sa[ns].expected = parse_expected(argv[a + 1]);
			sa[ns].events =
				json_loads(argv[a + 2], JSON_DECODE_ANY, &jerr);
			CHECK(sa[ns].events, "events: %s", jerr.text);
			ns++;
			reqs[nreq].n++;
			a += 3;
		}
		nreq++;
		a++; /* the "--" */
	}
	if (tx)
		exec_ok(db, "BEGIN");
	if (es_append_batch(db, reqs, nreq, &err) < 0) {
		ret = print_error(&err);
	} else {
		for (i = 0; i < nreq; i++)
			print_req(i, &reqs[i]);
	}
	if (tx)
		exec_ok(db, ret ? "ROLLBACK" : "COMMIT");
	for (i = 0; i < nreq; i++)
		es_error_release(&reqs[i].err);
	for (i = 0; i < ns; i++)
		json_decref((json_t *)sa[i].events);
	free(reqs);
	free(sa);
	es_error_release(&err);
	return ret;
}

/* A batch of requests, one stream each, run by a thread. */
struct batcher {
	PGconn *db;
	struct es_append_req reqs[8];
	struct es_stream_append sa[8];
	size_t n;
	struct es_error err;
	int ret;
};

static void batcher_set(struct batcher *b, const char *const *streams,
			const long long *expected, size_t n, const json_t *evs)
{
	size_t i;

	b->n = n;
	for (i = 0; i < n; i++) {
		b->sa[i] = (struct es_stream_append){ streams[i], expected[i],
						      evs, 0 };
		b->reqs[i] = (struct es_append_req){ .streams = &b->sa[i],
						     .n = 1,
						     .err = ES_ERROR_INIT };
	}
}

static void batcher_release(struct batcher *b)
{
	size_t i;

	for (i = 0; i < b->n; i++)
		es_error_release(&b->reqs[i].err);
	es_error_release(&b->err);
}

static void *batch_run(void *arg)
{
	struct batcher *b = arg;

	b->ret = es_append_batch(b->db, b->reqs, b->n, &b->err);
	return NULL;
}

static long long version_of(PGconn *db, const char *stream)
{
	struct es_error err = ES_ERROR_INIT;
	long long v;

	CHECK(es_stream_version(db, stream, &v, &err) == 0, "%s", err.detail);
	return v;
}

/*
 * A holds a batch to rb-d, rb-c, rb-b (named in that order) in an open
 * transaction; B's autocommit batch to rb-a, rb-b, rb-c, rb-d (any) and
 * rb-new waits on it; A commits. B's statement failed as a whole on the
 * unique constraint and ran again: its requests to rb-b and rb-c lose
 * with current_version 2, the others get through, rb-d at any after A's.
 */
static int cmd_batch_race(void)
{
	static const char *const four[] = { "rb-a", "rb-b", "rb-c", "rb-d" };
	static const char *const a_streams[] = { "rb-d", "rb-c", "rb-b" };
	static const char *const b_streams[] = { "rb-a", "rb-b", "rb-c", "rb-d",
						 "rb-new" };
	static const long long ones[] = { 1, 1, 1 };
	static const long long none[] = { ES_NO_STREAM, ES_NO_STREAM,
					  ES_NO_STREAM, ES_NO_STREAM };
	static const long long b_expected[] = { 1, 1, 1, ES_ANY, ES_NO_STREAM };
	PGconn *a = connect_db(), *b = connect_db(), *watch = connect_db();
	struct batcher ba = { .db = a }, bb = { .db = b };
	json_t *evs = json_loads("[{\"type\":\"Raced\",\"data\":{}}]", 0, NULL);
	pthread_t t;
	size_t i;

	batcher_set(&ba, four, none, 4, evs);
	batch_run(&ba);
	CHECK(ba.ret == 0, "setup: %s", ba.err.detail);
	for (i = 0; i < 4; i++)
		CHECK(ba.reqs[i].ok, "setup %zu: %s", i, ba.reqs[i].err.detail);
	batcher_release(&ba);

	batcher_set(&ba, a_streams, ones, 3, evs);
	batcher_set(&bb, b_streams, b_expected, 5, evs);
	exec_ok(a, "BEGIN");
	batch_run(&ba);
	CHECK(ba.ret == 0, "A: %s", ba.err.detail);
	for (i = 0; i < 3; i++)
		CHECK(ba.reqs[i].ok && ba.sa[i].version == 2, "A %zu: %s", i,
		      ba.reqs[i].err.detail);
	CHECK(pthread_create(&t, NULL, batch_run, &bb) == 0, "thread");
	wait_blocked(watch, b);
	exec_ok(a, "COMMIT");
	pthread_join(t, NULL);
	CHECK(bb.ret == 0, "B failed as a whole: %s", bb.err.detail);
	for (i = 0; i < 5; i++)
		print_req(i, &bb.reqs[i]);
	CHECK(bb.reqs[0].ok && bb.sa[0].version == 2, "rb-a: %s",
	      bb.reqs[0].err.detail);
	for (i = 1; i <= 2; i++)
		CHECK(!bb.reqs[i].ok && bb.reqs[i].err.code == ES_ECONFLICT &&
			      bb.reqs[i].err.current_version == 2,
		      "%s: %s %lld", b_streams[i], bb.reqs[i].err.detail,
		      bb.reqs[i].err.current_version);
	CHECK(bb.reqs[3].ok && bb.sa[3].version == 3, "rb-d: %s",
	      bb.reqs[3].err.detail);
	CHECK(bb.reqs[4].ok && bb.sa[4].version == 1, "rb-new: %s",
	      bb.reqs[4].err.detail);
	CHECK(strcmp(bb.reqs[0].token, ba.reqs[0].token) != 0,
	      "one token for two transactions");
	CHECK(version_of(watch, "rb-b") == 2 && version_of(watch, "rb-c") == 2,
	      "the losers stored something");
	batcher_release(&ba);
	batcher_release(&bb);
	json_decref(evs);
	PQfinish(a);
	PQfinish(b);
	PQfinish(watch);
	return 0;
}

struct looper {
	PGconn *db;
	const char *const *streams;
	int rounds, ok, lost;
	char why[400];
};

static void *batch_loop(void *arg)
{
	static const long long any[] = { ES_ANY, ES_ANY, ES_ANY,
					 ES_ANY, ES_ANY, ES_ANY };
	struct looper *l = arg;
	json_t *evs =
		json_loads("[{\"type\":\"Looped\",\"data\":{}}]", 0, NULL);
	struct batcher b = { .db = l->db };
	int i;
	size_t j;

	for (i = 0; i < l->rounds && !l->why[0]; i++) {
		batcher_set(&b, l->streams, any, 6, evs);
		exec_ok(l->db, "BEGIN");
		batch_run(&b);
		if (b.ret == 0) {
			for (j = 0; j < 6; j++)
				if (!b.reqs[j].ok)
					snprintf(l->why, sizeof(l->why),
						 "request %zu: %s", j,
						 b.reqs[j].err.detail);
			exec_ok(l->db, "COMMIT");
			l->ok++;
		} else {
			/* only a lost race on a version may end it */
			if (strcmp(b.err.detail,
				   "another writer appended to the stream first") !=
			    0)
				snprintf(l->why, sizeof(l->why), "%s %s",
					 code_names[b.err.code], b.err.detail);
			exec_ok(l->db, "ROLLBACK");
			l->lost++;
		}
		batcher_release(&b);
	}
	json_decref(evs);
	return NULL;
}

/*
 * Two connections append `rounds` batches each, in transactions, to the
 * same six streams, one naming them in ascending order, the other in
 * descending: inserts in stream_id order mean that neither ever waits for
 * a lock the other waits for. A deadlock (40P01) fails the check.
 */
static int cmd_batch_deadlock(int rounds)
{
	static const char *const up[] = { "dl-1", "dl-2", "dl-3",
					  "dl-4", "dl-5", "dl-6" };
	static const char *const down[] = { "dl-6", "dl-5", "dl-4",
					    "dl-3", "dl-2", "dl-1" };
	struct looper la = { .db = connect_db(),
			     .streams = up,
			     .rounds = rounds };
	struct looper lb = { .db = connect_db(),
			     .streams = down,
			     .rounds = rounds };
	pthread_t ta, tb;

	CHECK(pthread_create(&ta, NULL, batch_loop, &la) == 0, "thread");
	CHECK(pthread_create(&tb, NULL, batch_loop, &lb) == 0, "thread");
	pthread_join(ta, NULL);
	pthread_join(tb, NULL);
	CHECK(!la.why[0], "A: %s", la.why);
	CHECK(!lb.why[0], "B: %s", lb.why);
	printf("batches %d %d lost %d\n", la.ok, lb.ok, la.lost + lb.lost);
	PQfinish(la.db);
	PQfinish(lb.db);
	return 0;
}

/*
 * The younger-transaction rule per request: A takes its id, B appends to
 * by-1 and commits, A's batch to by-1 and by-2 refuses by-1 alone.
 */
static int cmd_batch_younger(void)
{
	static const char *const one[] = { "by-1" };
	static const char *const both[] = { "by-1", "by-2" };
	static const long long any[] = { ES_ANY, ES_ANY };
	PGconn *a = connect_db(), *b = connect_db();
	struct batcher ba = { .db = a }, bb = { .db = b };
	json_t *evs = json_loads("[{\"type\":\"Aged\",\"data\":{}}]", 0, NULL);
	size_t i;

	exec_ok(a, "BEGIN");
	exec_ok(a, "SELECT pg_current_xact_id()");
	batcher_set(&bb, one, any, 1, evs);
	batch_run(&bb);
	CHECK(bb.ret == 0 && bb.reqs[0].ok, "B: %s", bb.reqs[0].err.detail);
	batcher_set(&ba, both, any, 2, evs);
	batch_run(&ba);
	CHECK(ba.ret == 0, "A: %s", ba.err.detail);
	for (i = 0; i < 2; i++)
		print_req(i, &ba.reqs[i]);
	CHECK(!ba.reqs[0].ok && ba.reqs[0].err.code == ES_ECONFLICT &&
		      ba.reqs[0].err.current_version == 1,
	      "by-1: %s", ba.reqs[0].err.detail);
	CHECK(ba.reqs[1].ok && ba.sa[1].version == 1, "by-2: %s",
	      ba.reqs[1].err.detail);
	exec_ok(a, "COMMIT");
	CHECK(version_of(b, "by-1") == 1 && version_of(b, "by-2") == 1,
	      "by-1 %lld by-2 %lld", version_of(b, "by-1"),
	      version_of(b, "by-2"));
	batcher_release(&ba);
	batcher_release(&bb);
	json_decref(evs);
	PQfinish(a);
	PQfinish(b);
	return 0;
}

int main(int argc, char **argv)
{
	PGconn *db = NULL;
	int ret = 1;

	es_log_threshold = ES_LOG_OFF;
	setvbuf(stdout, NULL, _IOLBF, 0);
	CHECK(argc >= 2, "usage: store_check COMMAND ARGS...");
	if (strcmp(argv[1], "covers") == 0 && argc == 4)
		return cmd_covers(argv[2], argv[3]);
	if (strcmp(argv[1], "race") == 0)
		return cmd_race();
	if (strcmp(argv[1], "race-ids") == 0)
		return cmd_race_ids();
	if (strcmp(argv[1], "younger") == 0)
		return cmd_younger();
	if (strcmp(argv[1], "commit-error") == 0)
		return cmd_commit_error();
	if (strcmp(argv[1], "batch-race") == 0)
		return cmd_batch_race();
	if (strcmp(argv[1], "batch-deadlock") == 0 && argc == 3)
		return cmd_batch_deadlock(atoi(argv[2]));
	if (strcmp(argv[1], "batch-younger") == 0)
		return cmd_batch_younger();
	db = connect_db();
	if (strcmp(argv[1], "append") == 0)
		ret = cmd_append(db, argc - 2, argv + 2);
	else if (strcmp(argv[1], "batch") == 0)
		ret = cmd_batch(db, argc - 2, argv + 2);
	else if (strcmp(argv[1], "version") == 0 && argc == 3)
		ret = cmd_version(db, argv[2]);
	else if (strcmp(argv[1], "read") == 0 && argc == 5)
		ret = cmd_read(db, argv[2], argv[3], argv[4]);
	else if (strcmp(argv[1], "tail") == 0 && argc == 4)
		ret = cmd_tail(db, argv[2], argv[3]);
	else
		CHECK(0, "unknown command '%s'", argv[1]);
	PQfinish(db);
	return ret;
}
