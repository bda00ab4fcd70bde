/*
 * qry_view_flush.c - fold the whole event log into every view and flush
 * the batches into real tables, as the projector does, for t0400.
 *
 *   qry_view_flush flush [SUFFIX [SEED]]
 *       read every event (es_read_forward from the beginning, in pages,
 *       payloads decoded as the projector does),
 *       fold them into batches of random sizes and flush each batch in
 *       one transaction into the view tables + SUFFIX; a non-empty SUFFIX
 *       ("_rebuild") first creates those tables (view_shadow_create(),
 *       view_statement's without indexes, added at the end).
 *   qry_view_flush bench BATCH [SUFFIX]
 *       the same with batches of BATCH events; prints the time spent
 *       reading, folding and flushing, and events per second. With
 *       BENCH_ACCOUNTS_EVERY=K the accounts batch is written every K-th
 *       batch only (0: once, at the end), as a rebuild may do; with
 *       BENCH_ASYNC_COMMIT=1 the batches commit without waiting for the
 *       WAL flush (synchronous_commit off); with BENCH_DEFER_INDEXES=1
 *       the shadow of view_statement is indexed after the load.
 *   qry_view_flush statements SUFFIX
 *       per view, into new empty tables + SUFFIX (LIKE ... INCLUDING ALL):
 *       flush the first half of the log, then count the
 *       statements (libpq's trace) the flush of the second half sends, in
 *       one batch, in a transaction rolled back afterwards.
 *
 * DATABASE_URL is the event store; READ_DATABASE_URL (optional) holds the
 * views. Exits 0 on success, 1 with a message on stderr otherwise.
 */
#include <inttypes.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>

#include "../../query-service/views/bulk.h"
#include "../../query-service/views/payload.h"
#include "../../query-service/views/view.h"
#include "es_db.h"
#include "es_log.h"
#include "es_read.h"
#include "es_token.h"

#define PAGE 2000

#define CHECK(cond, ...)                                                \
	do {                                                            \
		if (!(cond)) {                                          \
			fprintf(stderr, "qry_view_flush: %s: ", #cond); \
			fprintf(stderr, __VA_ARGS__);                   \
			fputc('\n', stderr);                            \
			exit(1);                                        \
		}                                                       \
	} while (0)

static PGconn *connect_env(const char *var, const char *fallback)
{
	struct es_error err = ES_ERROR_INIT;
	const char *url = getenv(var);
	PGconn *db;

	if (!url || !*url)
		url = fallback ? getenv(fallback) : NULL;
	CHECK(url && *url, "%s is not set", var);
	db = es_db_connect(url, NULL, &err);
	CHECK(db, "cannot connect: %s", err.detail);
	return db;
}

static void exec_ok(PGconn *db, const char *sql)
{
	struct es_error err = ES_ERROR_INIT;

	CHECK(es_db_exec(db, sql, &err) == 0, "%s: %s", sql, err.detail);
}

static double now_s(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/*
 * The shadow tables of every view, empty; with `defer`, view_statement's
 * without indexes (see view_shadow_create()).
 */
static void create_shadows(PGconn *db, const char *suffix, int defer)
{
	struct es_error err = ES_ERROR_INIT;
	const char *const *t;
	size_t v;

	for (v = 0; v < view_count; v++)
		for (t = view_all[v]->tables; *t; t++)
			CHECK(view_shadow_create(
				      db, *t, suffix,
				      defer && !strcmp(*t, "view_statement"),
				      &err) == 0,
			      "shadow of %s: %s", *t, err.detail);
}

/* Index the shadow of view_statement made by create_shadows(..., 1). */
static void index_shadows(PGconn *db, const char *suffix)
{
	struct es_error err = ES_ERROR_INIT;

	exec_ok(db, "SET maintenance_work_mem = '256MB'");
	CHECK(view_shadow_index(db, "view_statement", suffix, &err) == 0,
	      "indexes of view_statement%s: %s", suffix, err.detail);
}

struct run {
	PGconn *rd, *wr;
	const char *suffix;
	void *batch[8];
	long pending; /* events folded since the last flush */
	long long events, batches;
	double t_read, t_fold, t_flush;
	double t_view[8], t_commit; /* parts of t_flush */
	long accounts_every; /* see flush_all() */
};

static void batches_new(struct run *r)
{
	size_t v;

	for (v = 0; v < view_count; v++) {
		r->batch[v] = view_all[v]->batch_new();
		CHECK(r->batch[v], "out of memory");
	}
	r->pending = 0;
}

static void batches_free(struct run *r)
{
	size_t v;

	for (v = 0; v < view_count; v++)
		view_all[v]->batch_free(r->batch[v]);
}

/*
 * Write the views' batches in one transaction, then start new ones. With
 * accounts_every k > 1 (bench), the accounts batch goes on folding and is
 * written every k-th time and at the end (`last`) only: what a rebuild
 * may do, its tables being invisible until the swap.
 */
static void flush_all(struct run *r, int last)
{
	struct es_error err = ES_ERROR_INIT;
	double t0 = now_s(), t1;
	size_t v;
	int skip;

	/* at the end a kept accounts batch may hold events */
	if (!r->pending && !(last && r->accounts_every != 1))
		return;
	exec_ok(r->wr, "BEGIN");
	for (v = 0; v < view_count; v++) {
		skip = v == 0 && !last && r->accounts_every != 1 &&
		       (!r->accounts_every ||
			(r->batches + 1) % r->accounts_every);
		if (skip)
			continue;
		t1 = now_s();
		CHECK(view_all[v]->flush(r->batch[v], r->wr, r->suffix, &err) ==
			      0,
		      "flush of view %s: %s", view_all[v]->name, err.detail);
		r->t_view[v] += now_s() - t1;
		view_all[v]->batch_free(r->batch[v]);
		r->batch[v] = view_all[v]->batch_new();
		CHECK(r->batch[v], "out of memory");
	}
	t1 = now_s();
	exec_ok(r->wr, "COMMIT");
	r->t_commit += now_s() - t1;
	r->t_flush += now_s() - t0;
	r->batches++;
	r->pending = 0;
}

/*
 * Read the log from the beginning and fold each event into every view;
 * flush whenever next_size() events are pending.
 */
static void project(struct run *r, long (*next_size)(void *), void *arg)
{
	struct es_error err = ES_ERROR_INIT;
	struct es_events page = ES_EVENTS_INIT;
	struct es_cursor cur;
	long target = next_size(arg);
	double t0;
	size_t i, v;

	es_cursor_init(&cur);
	batches_new(r);
	for (;;) {
		t0 = now_s();
		CHECK(es_read_forward(r->rd, &cur, PAGE, &page, &cur, &err) ==
				      0 &&
			      view_payload_decode_all(&page, &err) == 0,
		      "read: %s", err.detail);
		r->t_read += now_s() - t0;
		if (!page.n)
			break;
		for (i = 0; i < page.n; i++) {
			t0 = now_s();
			for (v = 0; v < view_count; v++)
				CHECK(view_all[v]->apply(r->batch[v],
							 &page.v[i], &err) >= 0,
				      "view %s: %s", view_all[v]->name,
				      err.detail);
			r->t_fold += now_s() - t0;
			r->events++;
			if (++r->pending >= target) {
				flush_all(r, 0);
				target = next_size(arg);
			}
		}
		es_events_release(&page);
	}
	flush_all(r, 1);
	batches_free(r);
	es_cursor_release(&cur);
}

/* splitmix64: a well-mixed sequence from any seed, small ones included. */
static uint64_t next_random(uint64_t *state)
{
	uint64_t z = (*state += 0x9e3779b97f4a7c15ULL);

	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
	z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
	return z ^ (z >> 31);
}

/* Batch sizes for `flush`: mostly small, now and then large. */
static long random_size(void *arg)
{
	static const long max[] = { 1, 3, 20, 150, 300 };
	uint64_t *state = arg;
	uint64_t r = next_random(state);

	return 1 + (long)((r >> 8) % (uint64_t)max[(r & 0xff) % 9 / 2]);
}

static long fixed_size(void *arg)
{
	return *(long *)arg;
}

static int cmd_flush(const char *suffix, unsigned int seed)
{
	struct run r = { .accounts_every = 1 };
	uint64_t state = seed;

	r.rd = connect_env("DATABASE_URL", NULL);
	r.wr = connect_env("READ_DATABASE_URL", "DATABASE_URL");
	r.suffix = suffix;
	if (*suffix)
		create_shadows(r.wr, suffix, 1);
	project(&r, random_size, &state);
	if (*suffix)
		index_shadows(r.wr, suffix);
	printf("events %lld batches %lld seed %u\n", r.events, r.batches, seed);
	PQfinish(r.rd);
	PQfinish(r.wr);
	return 0;
}

/*
 * CPU seconds (user + system) the server process of `db` has used so far,
 * or -1 when it is not readable here (another machine, no /proc).
 */
static double backend_cpu(PGconn *db)
{
	char path[64], buf[1024], *p;
	unsigned long long ut = 0, st = 0;
	FILE *f;
	int n;

	snprintf(path, sizeof(path), "/proc/%d/stat", PQbackendPID(db));
	f = fopen(path, "r");
	if (!f)
		return -1;
	n = (int)fread(buf, 1, sizeof(buf) - 1, f);
	fclose(f);
	buf[n > 0 ? n : 0] = '\0';
	/* fields 14 and 15, counted after the ")" that ends the name */
	p = strrchr(buf, ')');
	if (!p || sscanf(p + 2,
			 "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u"
			 " %llu %llu",
			 &ut, &st) != 2)
		return -1;
	return (double)(ut + st) / (double)sysconf(_SC_CLK_TCK);
}

static double self_cpu(void)
{
	struct rusage ru;

	getrusage(RUSAGE_SELF, &ru);
	return (double)ru.ru_utime.tv_sec + (double)ru.ru_utime.tv_usec / 1e6 +
	       (double)ru.ru_stime.tv_sec + (double)ru.ru_stime.tv_usec / 1e6;
}

static int cmd_bench(long size, const char *suffix)
{
	const char *every = getenv("BENCH_ACCOUNTS_EVERY");
	const char *async = getenv("BENCH_ASYNC_COMMIT");
	const char *defer_s = getenv("BENCH_DEFER_INDEXES");
	int defer = defer_s && !strcmp(defer_s, "1");
	struct run r = { .accounts_every = every ? atol(every) : 1 };
	double t0 = now_s(), t1, t_index, total, cpu_rd, cpu_wr, cpu_self;
	size_t v;

	r.rd = connect_env("DATABASE_URL", NULL);
	r.wr = connect_env("READ_DATABASE_URL", "DATABASE_URL");
	r.suffix = suffix;
	if (*suffix)
		create_shadows(r.wr, suffix, defer);
	if (async && !strcmp(async, "1"))
		exec_ok(r.wr, "SET synchronous_commit = off");
	cpu_rd = backend_cpu(r.rd);
	cpu_wr = backend_cpu(r.wr);
	cpu_self = self_cpu();
	project(&r, fixed_size, &size);
	t1 = now_s();
	if (*suffix && defer)
		index_shadows(r.wr, suffix);
	t_index = now_s() - t1;
	total = now_s() - t0;
	cpu_rd = backend_cpu(r.rd) - cpu_rd;
	cpu_wr = backend_cpu(r.wr) - cpu_wr;
	cpu_self = self_cpu() - cpu_self;
	printf("events %lld batches %lld batch_size %ld\n", r.events, r.batches,
	       size);
	printf("read %.3f s, fold %.3f s, flush %.3f s, total %.3f s\n",
	       r.t_read, r.t_fold, r.t_flush, total);
	for (v = 0; v < view_count; v++)
		printf("flush %s %.3f s\n", view_all[v]->name, r.t_view[v]);
	printf("commit %.3f s\n", r.t_commit);
	printf("index afterwards %.3f s\n", t_index);
	printf("fold+flush %.0f events/s\n",
	       (double)r.events / (r.t_fold + r.t_flush + t_index));
	printf("read+fold+flush %.0f events/s\n", (double)r.events / total);
	/* what the work costs, whatever else the machine is doing */
	printf("cpu: this process %.3f s, reading backend %.3f s,"
	       " writing backend %.3f s\n",
	       cpu_self, cpu_rd, cpu_wr);
	PQfinish(r.rd);
	PQfinish(r.wr);
	return 0;
}

/* Statements (Query and Parse messages) a libpq trace file records. */
static int count_statements(FILE *f)
{
	char line[512];
	int n = 0;

	rewind(f);
	while (fgets(line, sizeof(line), f))
		if (line[0] == 'F' &&
		    (strstr(line, "\tQuery\t") || strstr(line, "\tParse\t")))
			n++;
	return n;
}

/*
 * A new batch of view `v` holding events [from, to) of `all`, told that
 * its read began inside transaction `xid` (0: at a transaction's start),
 * as the projector tells its batches.
 */
static void *fold_range(size_t v, const struct es_events *all, size_t from,
			size_t to, uint64_t xid)
{
	struct es_error err = ES_ERROR_INIT;
	void *batch = view_all[v]->batch_new();
	size_t i;

	CHECK(batch, "out of memory");
	if (view_all[v]->batch_resume)
		view_all[v]->batch_resume(batch, xid);
	for (i = from; i < to; i++)
		CHECK(view_all[v]->apply(batch, &all->v[i], &err) >= 0,
		      "view %s: %s", view_all[v]->name, err.detail);
	return batch;
}

/*
 * Per view, in a transaction rolled back afterwards: flush the first half
 * of the log, then count the statements the flush of the second half
 * sends (so accounts opened earlier are in it too). The halves split
 * inside a transaction of several events, the first from the middle on,
 * as a projector's read that stops inside one: whether a view's flush
 * then costs more must not depend on where the middle of a random log
 * happens to fall.
 */
static int cmd_statements(const char *suffix)
{
	struct es_error err = ES_ERROR_INIT;
	struct es_events all = ES_EVENTS_INIT;
	struct es_cursor cur;
	PGconn *rd = connect_env("DATABASE_URL", NULL);
	PGconn *wr = connect_env("READ_DATABASE_URL", "DATABASE_URL");
	void *first, *second;
	size_t v, before, half;
	FILE *f;

	create_shadows(wr, suffix, 0);
	es_cursor_init(&cur);
	do {
		before = all.n;
		CHECK(es_read_forward(rd, &cur, PAGE, &all, &cur, &err) == 0 &&
			      view_payload_decode_all(&all, &err) == 0,
		      "read: %s", err.detail);
	} while (all.n > before);
	for (half = all.n / 2; half < all.n; half++)
		if (half && all.v[half].xid == all.v[half - 1].xid)
			break;
	CHECK(half < all.n, "no transaction of several events after the "
			    "log's middle");
	printf("events %zu split %zu\n", all.n, half);
	for (v = 0; v < view_count; v++) {
		first = fold_range(v, &all, 0, half, 0);
		second = fold_range(v, &all, half, all.n, all.v[half].xid);
		f = tmpfile();
		CHECK(f, "no temporary file");
		exec_ok(wr, "BEGIN");
		CHECK(view_all[v]->flush(first, wr, suffix, &err) == 0,
		      "flush of view %s: %s", view_all[v]->name, err.detail);
		PQtrace(wr, f);
		PQsetTraceFlags(wr, PQTRACE_SUPPRESS_TIMESTAMPS);
		CHECK(view_all[v]->flush(second, wr, suffix, &err) == 0,
		      "flush of view %s: %s", view_all[v]->name, err.detail);
		PQuntrace(wr);
		fflush(f);
		exec_ok(wr, "ROLLBACK");
		printf("%s %ld events %d statements\n", view_all[v]->name,
		       view_all[v]->batch_size(second), count_statements(f));
		fclose(f);
		view_all[v]->batch_free(first);
		view_all[v]->batch_free(second);
	}
	es_events_release(&all);
	es_cursor_release(&cur);
	PQfinish(rd);
	PQfinish(wr);
	return 0;
}

int main(int argc, char **argv)
{
	const char *cmd = argc > 1 ? argv[1] : "";

	es_log_set_level("warn");
	if (!strcmp(cmd, "flush"))
		return cmd_flush(
			argc > 2 ? argv[2] : "",
			argc > 3 ? (unsigned int)strtoul(argv[3], NULL, 10)
				 : (unsigned int)time(NULL));
	if (!strcmp(cmd, "bench") && argc > 2 && atol(argv[2]) > 0)
		return cmd_bench(atol(argv[2]), argc > 3 ? argv[3] : "");
	if (!strcmp(cmd, "statements") && argc > 2 && *argv[2])
		return cmd_statements(argv[2]);
	fprintf(stderr, "usage: qry_view_flush flush [SUFFIX [SEED]] |"
			" bench BATCH [SUFFIX] | statements SUFFIX\n");
	return 2;
}
