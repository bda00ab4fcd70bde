/*
 * append-cpu.c - PostgreSQL's CPU per appended event, three ways (driven
 * by bench/append-cpu.sh):
 *
 *   append-cpu ROUNDS BATCHES [ACCOUNTS]
 *
 * Each round runs, in turn on connections of their own, BATCHES batches
 * of 12 deposit-like events, one event to each of 12 accounts (of
 * ACCOUNTS, default 1200, visited in turn, each at its exact version),
 * every batch one autocommit statement:
 *
 *   old    tandem_append_batch($1::jsonb) (0005), the document built as
 *          es_append.c built it before 0011
 *   new    es_append_batch() of 12 requests: tandem_append_batch_rows()
 *          (0011), binary arrays, version 7 event ids made here
 *   plain  one prepared 12-row INSERT ... SELECT ... generate_series(),
 *          payloads as constants and gen_random_uuid(), no checks: the
 *          shape of bench/pgbench-append.sql, 12 rows a transaction
 *
 * Before each, a CHECKPOINT, so every way pays for first touches of pages
 * (full-page images) as a steady state does. Payload sizes are those of
 * bench/pgbench-append.sql. For each run, the backend's CPU from
 * /proc/<pid>/stat (utime + stime, clock ticks) and /proc/<pid>/schedstat
 * (on-CPU nanoseconds) before and after, divided by the events stored:
 *
 *   round MODE us_per_event_stat us_per_event_sched
 *
 * and at the end the median of each mode over the rounds:
 *
 *   median MODE us_per_event_stat us_per_event_sched
 *
 * With APPEND_CPU_EXISTING=1 the batches go to the streams of
 * bench/append-preload.sql instead of new ones (mode m to its accounts
 * m * ACCOUNTS .. (m + 1) * ACCOUNTS - 1, from their versions in the log),
 * so that a large preload puts each append on a leaf of its own in the
 * stream index, as deposits to random accounts of a long log do.
 *
 * APPEND_CPU_ONLY=MODE runs that mode alone (the plain one cannot run on
 * existing streams: its 12 rows share one version).
 *
 * The backend must run on this machine (the /proc files are read here).
 * DATABASE_URL names the database, migrated to 0011.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "es_append.h"
#include "es_db.h"
#include "es_log.h"
#include "es_uuid.h"

#define PER_BATCH 12
#define MODES	  3

static const char *const mode_name[MODES] = { "old", "new", "plain" };

static const char data_text[] =
	"{\"amount\": 100, \"currency\": \"EUR\", \"balance_after\": 12345}";

#define SQL_OLD                                                            \
	"SELECT cmd, transaction_id::text, last_position, versions::text," \
	" error_code, error_message, current_version"                      \
	" FROM tandem_append_batch($1::jsonb)"

/* $1 the round and mode's stream prefix, $2 the first of 12 accounts */
#define SQL_PLAIN                                                                \
	"INSERT INTO events (stream_id, stream_version, event_id, event_type,"   \
	" data, metadata)"                                                       \
	" SELECT $1 || lpad((($2::int + g) % $4::int)::text, 24, '0'), $3,"      \
	" gen_random_uuid(), 'MoneyDeposited',"                                  \
	" '{\"amount\": 100, \"currency\": \"EUR\", \"balance_after\": 12345}'," \
	" '{\"command_id\": \"2f1d7f64-4a0e-4c1b-9a53-0b6f7e3c9d21\","           \
	" \"causation_id\": \"2f1d7f64-4a0e-4c1b-9a53-0b6f7e3c9d21\","           \
	" \"correlation_id\": \"2f1d7f64-4a0e-4c1b-9a53-0b6f7e3c9d21\"}'"        \
	" FROM generate_series(0, 11) g"

struct cpu {
	double ticks; /* utime + stime */
	double ns; /* schedstat */
};

static void die(const char *what, const char *detail)
{
	fprintf(stderr, "append-cpu: %s: %s\n", what, detail);
	exit(1);
}

static struct cpu backend_cpu(int pid)
{
	struct cpu c = { 0, 0 };
	char path[64], buf[1024], *p;
	unsigned long ut = 0, st = 0;
	FILE *f;
	int i;

	snprintf(path, sizeof(path), "/proc/%d/stat", pid);
	f = fopen(path, "r");
	if (!f || !fgets(buf, sizeof(buf), f))
		die("cannot read", path);
	fclose(f);
	/* fields after the command's closing parenthesis: 3 is state */
	p = strrchr(buf, ')');
	for (i = 3; p && i <= 13; i++)
		p = strchr(p + 1, ' ');
	if (!p || sscanf(p, " %lu %lu", &ut, &st) != 2)
		die("cannot parse", path);
	c.ticks = (double)(ut + st);
	snprintf(path, sizeof(path), "/proc/%d/schedstat", pid);
	f = fopen(path, "r");
	if (f && fscanf(f, "%lf", &c.ns) != 1)
		c.ns = 0;
	if (f)
		fclose(f);
	return c;
}

static PGconn *connect_or_die(void)
{
	struct es_error err = ES_ERROR_INIT;
	const char *url = getenv("DATABASE_URL");
	PGconn *db;

	if (!url)
		die("DATABASE_URL", "not set");
	db = es_db_connect(url, NULL, &err);
	if (!db || PQstatus(db) != CONNECTION_OK)
		die("connect", err.detail);
	return db;
}

static void exec_or_die(PGconn *db, const char *sql)
{
	struct es_error err = ES_ERROR_INIT;

	if (es_db_exec(db, sql, &err) < 0)
		die(sql, err.detail);
}

struct run {
	PGconn *db;
	char prefix[64];
	long accounts, next;
	long base; /* number of its first account */
	long long *version; /* per account */
	json_t *meta;
	json_t *data;
};

static void account_id(const struct run *r, long k, char *out, size_t len)
{
	snprintf(out, len, "%s%024ld", r->prefix, r->base + k % r->accounts);
}

static json_t *deposit_events(const struct run *r)
{
	return json_pack("[{s:s, s:O, s:O}]", "type", "MoneyDeposited", "data",
			 r->data, "metadata", r->meta);
}

static void batch_old(struct run *r)
{
	json_t *all = json_array();
	const char *params[1];
	PGresult *res;
	char *body, sid[96];
	int j;

	for (j = 0; j < PER_BATCH; j++) {
		long k = (r->next + j) % r->accounts;

		account_id(r, k, sid, sizeof(sid));
		json_array_append_new(
			all, json_pack("{s:i, s:[{s:s, s:I, s:o}], s:b}", "i",
				       j + 1, "s", "stream_id", sid, "expected",
				       (json_int_t)r->version[k], "events",
				       deposit_events(r), "x", 0));
	}
	body = json_dumps(all, JSON_COMPACT);
	params[0] = body;
	res = PQexecParams(r->db, SQL_OLD, 1, NULL, params, NULL, NULL, 0);
	if (PQresultStatus(res) != PGRES_TUPLES_OK || PQntuples(res) != 12 ||
	    !PQgetisnull(res, 0, 4))
		die("old", PQresultErrorMessage(res));
	PQclear(res);
	free(body);
	json_decref(all);
}

static void batch_new(struct run *r)
{
	struct es_error err = ES_ERROR_INIT;
	struct es_append_req reqs[PER_BATCH];
	struct es_stream_append sa[PER_BATCH];
	char sid[PER_BATCH][96];
	int j;

	memset(reqs, 0, sizeof(reqs));
	for (j = 0; j < PER_BATCH; j++) {
		long k = (r->next + j) % r->accounts;

		account_id(r, k, sid[j], sizeof(sid[j]));
		sa[j] = (struct es_stream_append){ sid[j], r->version[k],
						   deposit_events(r), 0 };
		reqs[j].streams = &sa[j];
		reqs[j].n = 1;
		reqs[j].err = (struct es_error)ES_ERROR_INIT;
	}
	if (es_append_batch(r->db, reqs, PER_BATCH, &err) < 0)
		die("new", err.detail);
	for (j = 0; j < PER_BATCH; j++) {
		if (!reqs[j].ok)
			die("new", reqs[j].err.detail);
		json_decref((json_t *)sa[j].events);
	}
}

static void batch_plain(struct run *r)
{
	char first[24], version[24], accounts[24];
	const char *params[4] = { r->prefix, first, version, accounts };
	PGresult *res;

	/* the 12 accounts of a batch share one version here: visited in turn */
	snprintf(first, sizeof(first), "%ld", r->next % r->accounts);
	snprintf(version, sizeof(version), "%lld",
		 r->version[r->next % r->accounts] + 1);
	snprintf(accounts, sizeof(accounts), "%ld", r->accounts);
	res = PQexecPrepared(r->db, "plain", 4, params, NULL, NULL, 0);
	if (PQresultStatus(res) != PGRES_COMMAND_OK)
		die("plain", PQresultErrorMessage(res));
	PQclear(res);
}

static void batch(struct run *r, int mode)
{
	int j;

	if (mode == 0)
		batch_old(r);
	else if (mode == 1)
		batch_new(r);
	else
		batch_plain(r);
	for (j = 0; j < PER_BATCH; j++)
		r->version[(r->next + j) % r->accounts]++;
	r->next += PER_BATCH;
}

/* The preload's streams of run `mode`, at their versions in the log. */
static void existing_versions(struct run *r, int mode)
{
	char base[24], n[24];
	const char *params[2] = { base, n };
	PGresult *res;
	int i;

	snprintf(r->prefix, sizeof(r->prefix), "account-preload-");
	r->base = (long)mode * r->accounts;
	snprintf(base, sizeof(base), "%ld", r->base);
	snprintf(n, sizeof(n), "%ld", r->accounts);
	res = PQexecParams(
		r->db,
		"SELECT a, (SELECT coalesce(max(stream_version), 0) FROM events"
		" WHERE stream_id = 'account-preload-' || lpad(a::text, 24, '0'))"
		" FROM generate_series($1::int, $1::int + $2::int - 1) a",
		2, NULL, params, NULL, NULL, 0);
	if (PQresultStatus(res) != PGRES_TUPLES_OK)
		die("existing", PQresultErrorMessage(res));
	for (i = 0; i < PQntuples(res); i++)
		r->version[i] = strtoll(PQgetvalue(res, i, 1), NULL, 10);
	PQclear(res);
}

static int cmp_double(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;

	return (x > y) - (x < y);
}

static double median(double *v, int n)
{
	qsort(v, (size_t)n, sizeof(*v), cmp_double);
	return n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
}

int main(int argc, char **argv)
{
	int rounds, batches, round, mode, b;
	long accounts;
	struct run runs[MODES];
	double *stat_us, *sched_us, hz = (double)sysconf(_SC_CLK_TCK);
	char cmdid[37];
	PGconn *admin;

	const char *only = getenv("APPEND_CPU_ONLY");
	const char *ex = getenv("APPEND_CPU_EXISTING");
	int existing = ex && strcmp(ex, "1") == 0;

	es_log_threshold = ES_LOG_OFF;
	setvbuf(stdout, NULL, _IOLBF, 0);
	if (argc < 3)
		die("usage", "append-cpu ROUNDS BATCHES [ACCOUNTS]");
	rounds = atoi(argv[1]);
	batches = atoi(argv[2]);
	accounts = argc > 3 ? atol(argv[3]) : 1200;
	if (rounds < 1 || batches < 1 || accounts < PER_BATCH ||
	    accounts % PER_BATCH)
		die("usage", "ROUNDS, BATCHES >= 1, ACCOUNTS a multiple of 12");
	stat_us = calloc((size_t)(rounds * MODES), sizeof(double));
	sched_us = calloc((size_t)(rounds * MODES), sizeof(double));
	admin = connect_or_die();
	es_uuid_v4(cmdid);
	for (mode = 0; mode < MODES; mode++) {
		struct run *r = &runs[mode];
		PGresult *res;

		memset(r, 0, sizeof(*r));
		if (only && strcmp(only, mode_name[mode]) != 0)
			continue;
		if (existing && mode == 2)
			die("APPEND_CPU_EXISTING",
			    "takes APPEND_CPU_ONLY=old|new");
		r->db = connect_or_die();
		snprintf(r->prefix, sizeof(r->prefix), "account-%d-%s-",
			 (int)getpid(), mode_name[mode]);
		r->accounts = accounts;
		r->version = calloc((size_t)accounts, sizeof(long long));
		if (existing)
			existing_versions(r, mode);
		r->data = json_loads(data_text, 0, NULL);
		r->meta = json_pack("{s:s, s:s, s:s}", "command_id", cmdid,
				    "causation_id", cmdid, "correlation_id",
				    cmdid);
		res = PQprepare(r->db, "plain", SQL_PLAIN, 4, NULL);
		if (PQresultStatus(res) != PGRES_COMMAND_OK)
			die("prepare", PQresultErrorMessage(res));
		PQclear(res);
		fprintf(stderr, "%s: backend %d\n", mode_name[mode],
			PQbackendPID(r->db));
		/* warm-up: plans cached, every account has its first event */
		for (b = 0; b < accounts / PER_BATCH + 10; b++)
			batch(r, mode);
	}
	for (round = 0; round < rounds; round++) {
		for (mode = 0; mode < MODES; mode++) {
			struct run *r = &runs[mode];
			int pid = PQbackendPID(r->db);

			if (only && strcmp(only, mode_name[mode]) != 0)
				continue;
			struct cpu c0, c1;
			double events = (double)batches * PER_BATCH;

			exec_or_die(admin, "CHECKPOINT");
			c0 = backend_cpu(pid);
			for (b = 0; b < batches; b++)
				batch(r, mode);
			c1 = backend_cpu(pid);
			stat_us[mode * rounds + round] =
				(c1.ticks - c0.ticks) / hz * 1e6 / events;
			sched_us[mode * rounds + round] =
				(c1.ns - c0.ns) / 1e3 / events;
			printf("round %d %s %.1f %.1f\n", round + 1,
			       mode_name[mode], stat_us[mode * rounds + round],
			       sched_us[mode * rounds + round]);
		}
	}
	for (mode = 0; mode < MODES; mode++)
		printf("median %s %.1f %.1f\n", mode_name[mode],
		       median(stat_us + mode * rounds, rounds),
		       median(sched_us + mode * rounds, rounds));
	for (mode = 0; mode < MODES; mode++) {
		PQfinish(runs[mode].db);
		free(runs[mode].version);
		json_decref(runs[mode].data);
		json_decref(runs[mode].meta);
	}
	PQfinish(admin);
	free(stat_us);
	free(sched_us);
	return 0;
}
