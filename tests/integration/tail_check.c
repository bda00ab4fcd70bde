/*
 * tail_check.c - prove that es_read_forward() never skips an event, never
 * returns one twice, and is not held back by open transactions.
 *
 *   tail_check outoforder        a held transaction, later commits
 *   tail_check stress [SEED]     concurrent writers against one reader
 *   tail_check scan              reads touch the window, not the table
 *
 * DATABASE_URL names a migrated database of its own. Exits 0 when every
 * check holds, 1 with a message otherwise.
 */
#include <inttypes.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "es_db.h"
#include "es_log.h"
#include "es_append.h"
#include "es_read.h"
#include "es_token.h"

#define CHECK(cond, ...)                                                       \
	do {                                                                   \
		if (!(cond)) {                                                 \
			fprintf(stderr, "tail_check: line %d: %s: ", __LINE__, \
				#cond);                                        \
			fprintf(stderr, __VA_ARGS__);                          \
			fputc('\n', stderr);                                   \
			exit(1);                                               \
		}                                                              \
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

/* The first column of the first row; caller frees. */
static char *query1(PGconn *db, const char *sql)
{
	PGresult *res = PQexec(db, sql);
	char *v;

	CHECK(PQresultStatus(res) == PGRES_TUPLES_OK && PQntuples(res) >= 1,
	      "%s: %s", sql, PQerrorMessage(db));
	v = strdup(PQgetvalue(res, 0, 0));
	PQclear(res);
	return v;
}

static long long query_ll(PGconn *db, const char *sql)
{
	char *v = query1(db, sql);
	long long n = strtoll(v, NULL, 10);

	free(v);
	return n;
}

static double now_s(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void current_snapshot(PGconn *db, struct es_cursor *c)
{
	char *text = query1(db, "SELECT pg_current_snapshot()::text");
	struct es_error err = ES_ERROR_INIT;

	CHECK(es_cursor_parse(text, c, &err) == 0, "%s: %s", text, err.detail);
	free(text);
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

/* Append `n` events to `stream` (expected ES_ANY); the token in `tok`. */
static void append_n(PGconn *db, const char *stream, int n,
		     struct es_append_token *tok)
{
	struct es_error err = ES_ERROR_INIT;
	struct es_stream_append sa = { stream, ES_ANY, NULL, 0 };
	char token[ES_APPEND_TOKEN_MAX];
	json_t *evs = json_array();
	int i;

	for (i = 0; i < n; i++)
		json_array_append_new(evs, json_pack("{s:s, s:{s:i}}", "type",
						     "Tested", "data", "i", i));
	sa.events = evs;
	CHECK(append_one(db, &sa, 1, token, &err) == 0, "append to '%s': %s",
	      stream, err.detail);
	CHECK(es_append_token_parse(token, tok, &err) == 0, "token '%s'",
	      token);
	json_decref(evs);
}

/*
 * The reader's bookkeeping: how often each position was returned, each
 * stream's last version, and the cursor.
 */
struct reader {
	PGconn *db;
	struct es_cursor cur;
	unsigned char *seen;
	size_t nseen;
	long long total, windows, mids;
	size_t limit;
};

/* Last versions per stream, keyed by name, for the small scenarios. */
struct stream_last {
	char name[64];
	long long version;
};

static struct stream_last lasts[512];
static size_t nlasts;

static long long *last_version(const char *stream)
{
	size_t i;

	for (i = 0; i < nlasts; i++)
		if (strcmp(lasts[i].name, stream) == 0)
			return &lasts[i].version;
	CHECK(nlasts < sizeof(lasts) / sizeof(*lasts), "too many streams");
	snprintf(lasts[nlasts].name, sizeof(lasts[nlasts].name), "%s", stream);
	lasts[nlasts].version = 0;
	return &lasts[nlasts++].version;
}

static void mark_seen(struct reader *r, const struct es_event *e)
{
	long long *last;

	CHECK(e->position > 0, "position %lld", e->position);
	if ((size_t)e->position >= r->nseen) {
		size_t n = r->nseen ? r->nseen : 1024;

		while (n <= (size_t)e->position)
			n *= 2;
		r->seen = realloc(r->seen, n);
		CHECK(r->seen, "out of memory");
		memset(r->seen + r->nseen, 0, n - r->nseen);
		r->nseen = n;
	}
	CHECK(!r->seen[e->position], "position %lld returned twice",
	      e->position);
	r->seen[e->position] = 1;
	r->total++;
	last = last_version(e->stream_id);
	CHECK(e->version == *last + 1,
	      "stream '%s': version %lld after %lld (position %lld)",
	      e->stream_id, e->version, *last, e->position);
	*last = e->version;
}

/*
 * One es_read_forward(); checks each event and that the new cursor
 * covers the old one. Returns the number of events.
 */
static size_t read_once(struct reader *r, struct es_events *out)
{
	struct es_error err = ES_ERROR_INIT;
	struct es_cursor prev;
	size_t i, before = out->n;

	CHECK(es_cursor_copy(&prev, &r->cur, &err) == 0, "copy");
	CHECK(es_read_forward(r->db, &r->cur, r->limit, out, &r->cur, &err) ==
		      0,
	      "read_forward: %s", err.detail);
	CHECK(es_cursor_covers(&r->cur, &prev), "cursor went backwards");
	CHECK(out->n - before <= r->limit, "%zu events over limit %zu",
	      out->n - before, r->limit);
	for (i = before; i < out->n; i++) {
		mark_seen(r, &out->v[i]);
		if (i > before) {
			const struct es_event *a = &out->v[i - 1],
					      *b = &out->v[i];

			CHECK(a->xid < b->xid || (a->xid == b->xid &&
						  a->position < b->position),
			      "not in tailing order: %lld after %lld",
			      b->position, a->position);
		}
	}
	r->windows += !r->cur.mid;
	r->mids += r->cur.mid;
	es_cursor_release(&prev);
	return out->n - before;
}

/* Read until the cursor covers `target`; the events go to `out`. */
static void read_until(struct reader *r, const struct es_cursor *target,
		       struct es_events *out, double timeout)
{
	double end = now_s() + timeout;

	while (!es_cursor_covers(&r->cur, target)) {
		CHECK(now_s() < end, "reader did not catch up in %.0f s",
		      timeout);
		if (!read_once(r, out))
			usleep(1000);
	}
}

/* Read up to what is committed now. */
static void drain(struct reader *r, PGconn *db, struct es_events *out)
{
	struct es_cursor now;

	current_snapshot(db, &now);
	read_until(r, &now, out, 20);
	es_cursor_release(&now);
}

static int has_position(const struct es_events *ev, long long pos)
{
	size_t i;

	for (i = 0; i < ev->n; i++)
		if (ev->v[i].position == pos)
			return 1;
	return 0;
}

static int cursor_covers(const struct reader *r,
			 const struct es_append_token *a)
{
	return es_cursor_covers_append(&r->cur, a);
}

/*
 * A transaction takes the lower positions and stays open while later ones
 * commit: the reader gets the later events at once, and the held ones in
 * a later window once they commit; nothing twice, nothing skipped.
 */
static int scenario_outoforder(void)
{
	PGconn *held = connect_db(), *w = connect_db(), *aborted = connect_db();
	struct reader r = { .db = connect_db(), .limit = 2 };
	struct es_events ev = ES_EVENTS_INIT;
	struct es_append_token ht, hplain, wt[7], at;
	char *v;
	int i;

	es_cursor_init(&r.cur);
	/* something before, so the held window does not start at 0:0: */
	append_n(w, "oo-before", 3, &wt[0]);
	drain(&r, w, &ev);
	CHECK(ev.n == 3, "%zu events before", ev.n);
	es_events_release(&ev);

	/* the held transaction: three events by es_append_batch, one plain */
	exec_ok(held, "BEGIN");
	append_n(held, "oo-held", 3, &ht);
	v = query1(held, "INSERT INTO events (stream_id, stream_version,"
			 " event_id, event_type, data, metadata)"
			 " VALUES ('oo-plain', 1, gen_random_uuid(), 'Plain',"
			 " '{}', '{}')"
			 " RETURNING transaction_id::text || '.' ||"
			 " global_position");
	CHECK(es_append_token_parse(v, &hplain, NULL) == 0, "%s", v);
	free(v);
	CHECK(hplain.xid == ht.xid, "one transaction");
	/* and one that will roll back */
	exec_ok(aborted, "BEGIN");
	append_n(aborted, "oo-aborted", 2, &at);

	/* later transactions commit (positions above the held ones) */
	for (i = 1; i <= 5; i++) {
		append_n(w, i % 2 ? "oo-w1" : "oo-w2", 1, &wt[i]);
		CHECK(wt[i].pos > ht.pos && wt[i].xid > ht.xid,
		      "later append %d at %" PRIu64 ".%" PRId64, i, wt[i].xid,
		      wt[i].pos);
	}
	drain(&r, w, &ev);
	CHECK(ev.n == 5, "the open transactions held back others: %zu of 5",
	      ev.n);
	for (i = 1; i <= 5; i++) {
		CHECK(has_position(&ev, wt[i].pos), "missing %" PRId64,
		      wt[i].pos);
		CHECK(cursor_covers(&r, &wt[i]), "token %d not covered", i);
	}
	CHECK(!cursor_covers(&r, &ht), "covers the held transaction");
	CHECK(!has_position(&ev, ht.pos), "read an uncommitted event");
	CHECK(r.mids > 0, "no mid-window cursor with limit 2");
	es_events_release(&ev);

	/* still nothing new while they stay open */
	CHECK(read_once(&r, &ev) == 0, "%zu events from nowhere", ev.n);

	/* more later commits, then the held one commits, one aborts */
	append_n(w, "oo-w1", 2, &wt[6]);
	exec_ok(aborted, "ROLLBACK");
	exec_ok(held, "COMMIT");
	drain(&r, w, &ev);
	CHECK(ev.n == 6, "after the commit: %zu of 6 events", ev.n);
	CHECK(ev.v[0].position == ht.pos - 2 && ev.v[3].position == hplain.pos,
	      "the held transaction's events come first, in order");
	CHECK(cursor_covers(&r, &ht) && cursor_covers(&r, &hplain),
	      "held transaction not covered after reading it");
	CHECK(cursor_covers(&r, &wt[6]), "last append not covered");
	CHECK(cursor_covers(&r, &at), "an aborted append is covered too");
	CHECK(!has_position(&ev, at.pos), "read a rolled-back event");
	es_events_release(&ev);

	/*
	 * Two held transactions; the first commits and its window is read
	 * one event at a time; the second commits halfway through: it
	 * belongs to the next window, not to the rest of this one.
	 */
	{
		PGconn *h2 = connect_db();
		struct es_append_token t1, t2, t3;

		exec_ok(held, "BEGIN");
		append_n(held, "oo-h1", 2, &t1);
		exec_ok(h2, "BEGIN");
		append_n(h2, "oo-h2", 2, &t2);
		/* a later commit, so that both are in the snapshot's xip */
		append_n(w, "oo-w3", 1, &t3);
		drain(&r, w, &ev);
		CHECK(ev.n == 1, "%zu events, not 1", ev.n);
		CHECK(es_snapshot_visible(&r.cur.lo, t3.xid) &&
			      !es_snapshot_visible(&r.cur.lo, t1.xid) &&
			      !es_snapshot_visible(&r.cur.lo, t2.xid) &&
			      t2.xid < r.cur.lo.xmax,
		      "both held transactions are in the snapshot's xip");
		es_events_release(&ev);
		exec_ok(held, "COMMIT");
		append_n(w, "oo-w3", 1, &t3);
		r.limit = 1;
		CHECK(read_once(&r, &ev) == 1 && r.cur.mid,
		      "a one-event page of a three-event window");
		exec_ok(h2, "COMMIT");
		while (r.cur.mid)
			read_once(&r, &ev);
		CHECK(ev.n == 3, "the window had %zu events, not 3", ev.n);
		CHECK(r.total == 18, "total %lld", r.total);
		CHECK(!strcmp(ev.v[0].stream_id, "oo-h1") &&
			      !strcmp(ev.v[1].stream_id, "oo-h1") &&
			      !strcmp(ev.v[2].stream_id, "oo-w3"),
		      "the window is h1, h1, w3");
		CHECK(!cursor_covers(&r, &t2), "covers the late commit");
		es_events_release(&ev);
		r.limit = 2;
		drain(&r, w, &ev);
		CHECK(ev.n == 2 && !strcmp(ev.v[0].stream_id, "oo-h2"),
		      "the late commit in the next window: %zu events", ev.n);
		CHECK(cursor_covers(&r, &t2), "the late commit not covered");
		es_events_release(&ev);
		PQfinish(h2);
	}

	CHECK(r.total == query_ll(w, "SELECT count(*) FROM events"),
	      "read %lld events, the log has more", r.total);
	printf("outoforder: %lld events, %lld windows, %lld mid-window reads\n",
	       r.total, r.windows, r.mids);
	es_cursor_release(&r.cur);
	free(r.seen);
	PQfinish(held);
	PQfinish(w);
	PQfinish(aborted);
	PQfinish(r.db);
	return 0;
}

/* ---- stress ---- */

#define NWRITERS 8
#define NAPPENDS 300
#define NSTREAMS 40

struct shared {
	pthread_mutex_t lock;
	struct es_append_token *tokens; /* committed appends */
	size_t ntokens, alloc;
	atomic_int writers_done;
	atomic_long committed, rolled_back, conflicts, held;
};

struct writer {
	struct shared *sh;
	unsigned seed;
	int id;
};

static void add_token(struct shared *sh, const struct es_append_token *t)
{
	pthread_mutex_lock(&sh->lock);
	if (sh->ntokens == sh->alloc) {
		sh->alloc = sh->alloc ? 2 * sh->alloc : 256;
		sh->tokens = realloc(sh->tokens, sh->alloc * sizeof(*t));
		CHECK(sh->tokens, "out of memory");
	}
	sh->tokens[sh->ntokens++] = *t;
	pthread_mutex_unlock(&sh->lock);
}

static void publish(struct shared *sh, const char *token)
{
	struct es_append_token a;

	CHECK(es_append_token_parse(token, &a, NULL) == 0, "token %s", token);
	add_token(sh, &a);
	atomic_fetch_add(&sh->committed, 1);
}

static json_t *some_events(struct writer *w, int n, int i)
{
	json_t *evs = json_array();
	int k;

	for (k = 0; k < n; k++)
		json_array_append_new(evs,
				      json_pack("{s:s, s:{s:i, s:i, s:i}}",
						"type", "Stressed", "data", "w",
						w->id, "i", i, "k", k));
	return evs;
}

static void *writer_main(void *arg)
{
	struct writer *w = arg;
	PGconn *db = connect_db();
	int i;

	for (i = 0; i < NAPPENDS; i++) {
		struct es_error err = ES_ERROR_INIT;
		struct es_stream_append sa[2];
		char s0[32], s1[32], token[ES_APPEND_TOKEN_MAX];
		int op = (int)(rand_r(&w->seed) % 100);
		int a = (int)(rand_r(&w->seed) % NSTREAMS);
		int b = (a + 1 + (int)(rand_r(&w->seed) % (NSTREAMS - 1))) %
			NSTREAMS;
		size_t n = op >= 60 && op < 80 ? 2 : 1;
		int in_tx = op >= 80, rollback = op >= 95, ret;

		snprintf(s0, sizeof(s0), "st-%d", a);
		snprintf(s1, sizeof(s1), "st-%d", b);
		sa[0] = (struct es_stream_append){
			s0, ES_ANY,
			some_events(w, 1 + (int)(rand_r(&w->seed) % 3), i), 0
		};
		sa[1] = (struct es_stream_append){ s1, ES_ANY,
						   some_events(w, 1, i), 0 };
		/* a third of the single appends state the version they read */
		if (n == 1 && op < 20)
			CHECK(es_stream_version(db, s0, &sa[0].expected,
						&err) == 0,
			      "%s", err.detail);
		if (in_tx)
			exec_ok(db, "BEGIN");
		ret = append_one(db, sa, n, token, &err);
		if (ret < 0) {
			long long exp = sa[0].expected;

			CHECK(err.code == ES_ECONFLICT, "writer %d: %s", w->id,
			      err.detail);
			CHECK(n > 1 || exp == ES_ANY ||
				      err.current_version > exp,
			      "conflict at %lld expecting %lld: %s",
			      err.current_version, exp, err.detail);
			atomic_fetch_add(&w->sh->conflicts, 1);
			if (in_tx)
				exec_ok(db, "ROLLBACK");
		} else if (in_tx) {
			/* hold it open a while, as a slow command would */
			usleep((useconds_t)(rand_r(&w->seed) % 150000));
			atomic_fetch_add(&w->sh->held, 1);
			if (rollback) {
				exec_ok(db, "ROLLBACK");
				atomic_fetch_add(&w->sh->rolled_back, 1);
			} else {
				exec_ok(db, "COMMIT");
				publish(w->sh, token);
			}
		} else {
			publish(w->sh, token);
		}
		json_decref((json_t *)sa[0].events);
		json_decref((json_t *)sa[1].events);
		es_error_release(&err);
	}
	PQfinish(db);
	atomic_fetch_add(&w->sh->writers_done, 1);
	return NULL;
}

struct tail {
	struct reader r;
	struct shared *sh;
	size_t checked; /* tokens[0, checked) are covered and verified */
	struct es_append_token *pending;
	size_t npending;
};

/*
 * Every committed append whose token the cursor covers must have been
 * read already (its greatest position at least).
 */
static void check_tokens(struct tail *t)
{
	size_t i, keep = 0, n;

	pthread_mutex_lock(&t->sh->lock);
	n = t->sh->ntokens;
	if (n > t->checked) {
		t->pending =
			realloc(t->pending, (t->npending + n - t->checked) *
						    sizeof(*t->pending));
		CHECK(t->pending, "out of memory");
		memcpy(t->pending + t->npending, t->sh->tokens + t->checked,
		       (n - t->checked) * sizeof(*t->pending));
		t->npending += n - t->checked;
		t->checked = n;
	}
	pthread_mutex_unlock(&t->sh->lock);
	for (i = 0; i < t->npending; i++) {
		const struct es_append_token *a = &t->pending[i];

		if (!cursor_covers(&t->r, a)) {
			t->pending[keep++] = *a;
			continue;
		}
		CHECK((size_t)a->pos < t->r.nseen && t->r.seen[a->pos],
		      "token %" PRIu64 ".%" PRId64
		      " is covered but its event was not read",
		      a->xid, a->pos);
	}
	t->npending = keep;
}

static int scenario_stress(unsigned seed)
{
	struct shared sh = { .lock = PTHREAD_MUTEX_INITIALIZER };
	struct writer w[NWRITERS];
	pthread_t th[NWRITERS];
	struct tail t = { .r = { .db = connect_db(), .limit = 7 }, .sh = &sh };
	PGconn *main_db = connect_db(), *longtx = connect_db();
	struct es_events ev = ES_EVENTS_INIT;
	struct es_append_token lt;
	struct es_cursor target;
	double start = now_s(), caught;
	unsigned rseed = seed;
	PGresult *res;
	long long rows;
	int i;

	es_cursor_init(&t.r.cur);
	/* a transaction that stays open through the whole run */
	exec_ok(longtx, "BEGIN");
	append_n(longtx, "st-long", 2, &lt);
	for (i = 0; i < NWRITERS; i++) {
		w[i] = (struct writer){ &sh, seed * 1000u + (unsigned)i, i };
		CHECK(pthread_create(&th[i], NULL, writer_main, &w[i]) == 0,
		      "thread");
	}
	/* tail while they write */
	while (atomic_load(&sh.writers_done) < NWRITERS) {
		size_t got = read_once(&t.r, &ev);

		es_events_release(&ev);
		check_tokens(&t);
		if (!got)
			usleep(2000);
		/* now and then let a window grow over many pages */
		else if (rand_r(&rseed) % 20 == 0)
			usleep(20000 + rand_r(&rseed) % 30000);
		CHECK(now_s() - start < 50, "writers did not finish in 50 s");
	}
	for (i = 0; i < NWRITERS; i++)
		pthread_join(th[i], NULL);
	/* everything committed is read although longtx is still open */
	current_snapshot(main_db, &target);
	CHECK(target.lo.nxip >= 1, "longtx not running?");
	caught = now_s();
	read_until(&t.r, &target, &ev, 10);
	caught = now_s() - caught;
	es_events_release(&ev);
	es_cursor_release(&target);
	check_tokens(&t);
	CHECK(t.npending == 0, "%zu committed appends not covered", t.npending);
	CHECK(!cursor_covers(&t.r, &lt), "covers the open transaction");

	/* now it commits, and comes in a window of its own */
	exec_ok(longtx, "COMMIT");
	add_token(&sh, &lt);
	drain(&t.r, main_db, &ev);
	es_events_release(&ev);
	check_tokens(&t);
	CHECK(t.npending == 0, "%zu appends not covered at the end",
	      t.npending);

	/* the reader has every row of the log exactly once */
	res = PQexec(main_db, "SELECT global_position FROM events");
	CHECK(PQresultStatus(res) == PGRES_TUPLES_OK, "%s",
	      PQerrorMessage(main_db));
	rows = PQntuples(res);
	for (i = 0; i < rows; i++) {
		long long pos = strtoll(PQgetvalue(res, i, 0), NULL, 10);

		CHECK(pos > 0 && (size_t)pos < t.r.nseen && t.r.seen[pos],
		      "position %lld never read", pos);
	}
	PQclear(res);
	CHECK(rows == t.r.total, "read %lld events, the log has %lld",
	      t.r.total, rows);
	/* and per stream the versions have no gaps */
	CHECK(query_ll(main_db,
		       "SELECT count(*) FROM (SELECT stream_id FROM events"
		       " GROUP BY stream_id HAVING max(stream_version) <>"
		       " count(*)) g") == 0,
	      "a stream has gaps");
	printf("stress: seed %u, %lld events in %lld windows and %lld"
	       " mid-window reads; %ld appends committed, %ld held open,"
	       " %ld rolled back, %ld conflicts; caught up past an open"
	       " transaction in %.3f s; %.1f s in all\n",
	       seed, t.r.total, t.r.windows, t.r.mids,
	       atomic_load(&sh.committed), atomic_load(&sh.held),
	       atomic_load(&sh.rolled_back), atomic_load(&sh.conflicts), caught,
	       now_s() - start);
	CHECK(atomic_load(&sh.rolled_back) > 0 && t.r.mids > 0,
	      "the run did not exercise rollbacks and mid-window reads");
	es_cursor_release(&t.r.cur);
	free(t.r.seen);
	free(t.pending);
	free(sh.tokens);
	PQfinish(t.r.db);
	PQfinish(main_db);
	PQfinish(longtx);
	return 0;
}

/* ---- scan ---- */

/* Rows that scans of `events` have touched so far, from the statistics. */
static long long touched(PGconn *watch)
{
	return query_ll(watch, "SELECT coalesce(seq_tup_read, 0) +"
			       " coalesce(idx_tup_fetch, 0)"
			       " FROM pg_stat_user_tables"
			       " WHERE relname = 'events'");
}

/* Flush the reader's statistics, so that `watch` sees them. */
static void flush_stats(PGconn *db)
{
	exec_ok(db, "SELECT pg_stat_force_next_flush()");
	/* the flush happens when the session goes idle: ask once more */
	exec_ok(db, "SELECT 1");
}

/*
 * With a transaction open since before 100,000 events were written, a
 * read of a small window must touch about that window's rows, not the
 * 100,000 between the open transaction's xid and the window.
 */
static int scenario_scan(void)
{
	PGconn *w = connect_db(), *longtx = connect_db(), *watch = connect_db();
	struct reader r = { .db = connect_db(), .limit = 1000 };
	struct es_events ev = ES_EVENTS_INIT;
	struct es_append_token lt, small;
	long long before, cost, naive;
	char *xmin;

	es_cursor_init(&r.cur);
	exec_ok(longtx, "BEGIN");
	append_n(longtx, "scan-long", 1, &lt);
	exec_ok(w,
		"INSERT INTO events (stream_id, stream_version, event_id,"
		" event_type, data) SELECT 'scan-' || (g % 100),"
		" g / 100 + 1, gen_random_uuid(), 'Bulk',"
		" jsonb_build_object('g', g) FROM generate_series(0, 99999) g");
	exec_ok(w, "ANALYZE events");
	drain(&r, w, &ev);
	CHECK(r.total == 100000, "%lld events", r.total);
	es_events_release(&ev);
	CHECK(r.cur.lo.nxip >= 1, "open transaction not in the snapshot");

	/* a small window, with the open transaction's xid far behind */
	append_n(w, "scan-small", 3, &small);
	flush_stats(r.db);
	before = touched(watch);
	CHECK(read_once(&r, &ev) == 3, "%zu events", ev.n);
	flush_stats(r.db);
	cost = touched(watch) - before;
	es_events_release(&ev);

	/* what a scan from the open transaction's xid would cost */
	xmin = query1(w, "SELECT pg_snapshot_xmin(pg_current_snapshot())");
	{
		char sql[256];

		snprintf(sql, sizeof(sql),
			 "SELECT count(*) FROM (SELECT * FROM events WHERE"
			 " transaction_id >= '%s' ORDER BY transaction_id,"
			 " global_position) e",
			 xmin);
		flush_stats(r.db);
		before = touched(watch);
		exec_ok(r.db, sql);
		flush_stats(r.db);
		naive = touched(watch) - before;
	}
	free(xmin);
	printf("scan: a 3-event window touched %lld rows; a scan from the"
	       " open transaction's xid touches %lld\n",
	       cost, naive);
	CHECK(naive >= 100000, "the statistics do not count (%lld)", naive);
	CHECK(cost <= 50, "the window read touched %lld rows", cost);

	/* the open transaction commits: its window is small too */
	exec_ok(longtx, "COMMIT");
	flush_stats(r.db);
	before = touched(watch);
	CHECK(read_once(&r, &ev) == 1, "%zu events", ev.n);
	flush_stats(r.db);
	cost = touched(watch) - before;
	es_events_release(&ev);
	CHECK(cursor_covers(&r, &lt), "open transaction not covered");
	printf("scan: the long transaction's window touched %lld rows\n", cost);
	CHECK(cost <= 50, "the window read touched %lld rows", cost);
	es_cursor_release(&r.cur);
	free(r.seen);
	PQfinish(w);
	PQfinish(longtx);
	PQfinish(watch);
	PQfinish(r.db);
	return 0;
}

int main(int argc, char **argv)
{
	es_log_threshold = ES_LOG_OFF;
	setvbuf(stdout, NULL, _IOLBF, 0);
	CHECK(argc >= 2, "usage: tail_check outoforder|stress [SEED]|scan");
	if (strcmp(argv[1], "outoforder") == 0)
		return scenario_outoforder();
	if (strcmp(argv[1], "stress") == 0)
		return scenario_stress(
			argc > 2 ? (unsigned)strtoul(argv[2], NULL, 10)
				 : (unsigned)time(NULL));
	if (strcmp(argv[1], "scan") == 0)
		return scenario_scan();
	CHECK(0, "unknown scenario '%s'", argv[1]);
	return 1;
}
