/*
 * check_pool.c - cmd_pool: the queue, its limits, the behaviour with an
 * unreachable database and stop. The "no database" case points at a port
 * nobody listens on, or a socket that hangs up on every connection; the
 * "db" case runs jobs on the real server of DATABASE_URL, which
 * scripts/run-tests gives every unit binary (unset, those checks fail).
 */
#include <check.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "../../command-service/cmd_metrics.h"
#include "../../command-service/cmd_pool.h"
#include "es_log.h"

#define UNREACHABLE                                                \
	"host=127.0.0.1 port=1 connect_timeout=1 sslmode=disable " \
	"gssencmode=disable"

/* ---- test jobs ---- */

struct gate {
	pthread_mutex_t lock;
	pthread_cond_t cond;
	bool open;
	int entered; /* callbacks that reached the gate */
	int done; /* callbacks finished */
};

static struct gate gate = { PTHREAD_MUTEX_INITIALIZER, PTHREAD_COND_INITIALIZER,
			    false, 0, 0 };

struct tjob {
	struct cmd_job job; /* first: the pool hands it back */
	bool wait_at_gate; /* the callback blocks until the gate opens */
	void (*body)(struct tjob *tj, PGconn *db);
	/* results */
	atomic_int ran, rejected;
	enum es_err code;
	int retry_after;
	char detail[200];
	int64_t done_ns;
	PGTransactionStatusType tx; /* as run() found the connection */
	long long backend_pid;
	char text[64]; /* what body() read */
	char text2[64];
};

static int64_t now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

static void sleep_ms(int ms)
{
	struct timespec ts = { ms / 1000, (ms % 1000) * 1000000L };

	nanosleep(&ts, NULL);
}

static void gate_reset(void)
{
	pthread_mutex_lock(&gate.lock);
	gate.open = false;
	gate.entered = 0;
	gate.done = 0;
	pthread_mutex_unlock(&gate.lock);
}

static void gate_pass(struct tjob *tj)
{
	pthread_mutex_lock(&gate.lock);
	gate.entered++;
	pthread_cond_broadcast(&gate.cond);
	while (tj->wait_at_gate && !gate.open)
		pthread_cond_wait(&gate.cond, &gate.lock);
	pthread_mutex_unlock(&gate.lock);
}

static void gate_finish(struct tjob *tj)
{
	tj->done_ns = now_ns();
	pthread_mutex_lock(&gate.lock);
	gate.done++;
	pthread_cond_broadcast(&gate.cond);
	pthread_mutex_unlock(&gate.lock);
}

static void gate_open(void)
{
	pthread_mutex_lock(&gate.lock);
	gate.open = true;
	pthread_cond_broadcast(&gate.cond);
	pthread_mutex_unlock(&gate.lock);
}

/* Wait up to `ms` for `n` callbacks to have entered (or finished). */
static bool gate_wait(int *counter, int n, int ms)
{
	struct timespec until;
	bool ok;

	clock_gettime(CLOCK_REALTIME, &until);
	until.tv_sec += ms / 1000;
	until.tv_nsec += (ms % 1000) * 1000000L;
	if (until.tv_nsec >= 1000000000L) {
		until.tv_sec++;
		until.tv_nsec -= 1000000000L;
	}
	pthread_mutex_lock(&gate.lock);
	while (*counter < n)
		if (pthread_cond_timedwait(&gate.cond, &gate.lock, &until))
			break;
	ok = *counter >= n;
	pthread_mutex_unlock(&gate.lock);
	return ok;
}

static void job_run(struct cmd_job *job, PGconn *db)
{
	struct tjob *tj = (struct tjob *)job;

	atomic_fetch_add(&tj->ran, 1);
	tj->tx = PQtransactionStatus(db);
	tj->backend_pid = PQbackendPID(db);
	gate_pass(tj);
	if (tj->body)
		tj->body(tj, db);
	gate_finish(tj);
}

static void job_reject(struct cmd_job *job, const struct es_error *err)
{
	struct tjob *tj = (struct tjob *)job;

	atomic_fetch_add(&tj->rejected, 1);
	tj->code = err->code;
	tj->retry_after = err->retry_after;
	snprintf(tj->detail, sizeof(tj->detail), "%s", err->detail);
	gate_pass(tj);
	gate_finish(tj);
}

static struct tjob *tjobs_new(int n)
{
	struct tjob *tj = calloc((size_t)n, sizeof(*tj));

	ck_assert_ptr_nonnull(tj);
	for (int i = 0; i < n; i++) {
		tj[i].job.run = job_run;
		tj[i].job.reject = job_reject;
	}
	return tj;
}

static void submit_ok(struct cmd_pool *pool, struct tjob *tj)
{
	struct es_error err = ES_ERROR_INIT;

	ck_assert_msg(cmd_pool_submit(pool, &tj->job, &err) == 0, "%s",
		      err.detail);
}

static struct cmd_pool_config config(const char *conninfo, long size,
				     long queue_max, long timeout_ms)
{
	struct cmd_pool_config cfg = {
		.conninfo = conninfo,
		.size = size,
		.queue_max = queue_max,
		.queue_timeout_ms = timeout_ms,
	};

	return cfg;
}

static void setup(void)
{
	es_log_set_level("off");
	gate_reset();
	cmd_metrics_reset();
}

/* ---- without a database ---- */

START_TEST(bad_config_is_refused)
{
	struct cmd_pool_config cfg = config(UNREACHABLE, 0, 10, 100);
	struct es_error err = ES_ERROR_INIT;

	ck_assert_ptr_null(cmd_pool_start(&cfg, &err));
	ck_assert_int_eq(err.code, ES_EINVALID);
	es_error_release(&err);
	cfg = config(UNREACHABLE, 2, 0, 100);
	ck_assert_ptr_null(cmd_pool_start(&cfg, &err));
	ck_assert_int_eq(err.code, ES_EINVALID);
	es_error_release(&err);
}
END_TEST

START_TEST(unreachable_database_rejects_every_job_quickly)
{
	struct cmd_pool_config cfg = config(UNREACHABLE, 2, 1000, 5000);
	struct es_error err = ES_ERROR_INIT;
	struct cmd_pool_stats st;
	struct cmd_pool *pool;
	struct tjob *tj = tjobs_new(50);
	int64_t t0;

	pool = cmd_pool_start(&cfg, &err);
	ck_assert_ptr_nonnull(pool);
	cmd_pool_stats(pool, &st);
	ck_assert_int_eq(st.size, 2);
	ck_assert_int_eq(st.connected, 0);
	t0 = now_ns();
	for (int i = 0; i < 50; i++)
		submit_ok(pool, &tj[i]);
	/* far less than the queue timeout */
	ck_assert(gate_wait(&gate.done, 50, 2000));
	for (int i = 0; i < 50; i++) {
		ck_assert_int_eq(tj[i].ran, 0);
		ck_assert_int_eq(tj[i].rejected, 1);
		ck_assert_int_eq(tj[i].code, ES_EUNAVAIL);
		ck_assert_int_eq(tj[i].retry_after, 1);
		ck_assert_str_eq(tj[i].detail, "database unavailable");
		ck_assert_int_lt(tj[i].done_ns - t0, 2000000000LL);
	}
	cmd_pool_stats(pool, &st);
	ck_assert_int_eq(st.connected, 0);
	ck_assert_int_eq(st.waiting, 0);
	cmd_pool_stop(pool);
	free(tj);
}
END_TEST

/* A TCP server on a loopback port that hangs up on every connection. */
struct hangup {
	int fd;
	int port;
	atomic_int accepted;
	atomic_bool stop;
	pthread_t thread;
};

static void *hangup_main(void *arg)
{
	struct hangup *hu = arg;

	while (!atomic_load(&hu->stop)) {
		int c = accept(hu->fd, NULL, NULL);

		if (c < 0)
			continue;
		if (!atomic_load(&hu->stop))
			atomic_fetch_add(&hu->accepted, 1);
		close(c);
	}
	return NULL;
}

static void hangup_start(struct hangup *hu)
{
	struct sockaddr_in sin = { .sin_family = AF_INET };
	socklen_t len = sizeof(sin);

	sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	hu->fd = socket(AF_INET, SOCK_STREAM, 0);
	ck_assert_int_ge(hu->fd, 0);
	ck_assert_int_eq(bind(hu->fd, (struct sockaddr *)&sin, sizeof(sin)), 0);
	ck_assert_int_eq(listen(hu->fd, 64), 0);
	ck_assert_int_eq(getsockname(hu->fd, (struct sockaddr *)&sin, &len), 0);
	hu->port = ntohs(sin.sin_port);
	atomic_init(&hu->accepted, 0);
	atomic_init(&hu->stop, false);
	ck_assert_int_eq(pthread_create(&hu->thread, NULL, hangup_main, hu), 0);
}

static void hangup_stop(struct hangup *hu)
{
	struct sockaddr_in sin = { .sin_family = AF_INET };
	int c = socket(AF_INET, SOCK_STREAM, 0);

	atomic_store(&hu->stop, true);
	/* wake accept() */
	sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	sin.sin_port = htons((uint16_t)hu->port);
	connect(c, (struct sockaddr *)&sin, sizeof(sin));
	close(c);
	pthread_join(hu->thread, NULL);
	close(hu->fd);
}

START_TEST(down_database_is_not_hammered)
{
	struct hangup hu;
	char conninfo[160];
	struct cmd_pool_config cfg;
	struct es_error err = ES_ERROR_INIT;
	struct cmd_pool *pool;
	enum { N = 400, SIZE = 3 };
	struct tjob *tj = tjobs_new(N);
	int64_t t0, secs_x4;
	int attempts;

	hangup_start(&hu);
	snprintf(conninfo, sizeof(conninfo),
		 "host=127.0.0.1 port=%d connect_timeout=2 sslmode=disable "
		 "gssencmode=disable",
		 hu.port);
	cfg = config(conninfo, SIZE, N, 5000);
	pool = cmd_pool_start(&cfg, &err);
	ck_assert_ptr_nonnull(pool);
	/* a steady stream of jobs for about a second */
	t0 = now_ns();
	for (int i = 0; i < N; i++) {
		submit_ok(pool, &tj[i]);
		sleep_ms(2);
	}
	ck_assert(gate_wait(&gate.done, N, 3000));
	cmd_pool_stop(pool);
	attempts = atomic_load(&hu.accepted);
	hangup_stop(&hu);
	/* at most one attempt per worker per 250 ms, plus the first */
	secs_x4 = (now_ns() - t0) / 250000000LL + 1;
	ck_assert_int_ge(attempts, 1);
	ck_assert_msg(attempts <= SIZE * secs_x4, "%d attempts in %lld ms",
		      attempts, (long long)(now_ns() - t0) / 1000000);
	for (int i = 0; i < N; i++) {
		ck_assert_int_eq(tj[i].rejected, 1);
		ck_assert_int_eq(tj[i].code, ES_EUNAVAIL);
		/* rejected at once, not after the queue timeout */
		ck_assert_int_lt(tj[i].done_ns - tj[i].job.enqueued_ns,
				 1000000000LL);
	}
	free(tj);
}
END_TEST

START_TEST(full_queue_refuses_submit)
{
	struct cmd_pool_config cfg = config(UNREACHABLE, 1, 2, 0);
	struct es_error err = ES_ERROR_INIT;
	struct cmd_pool_stats st;
	struct cmd_pool *pool;
	struct tjob *tj = tjobs_new(4);

	pool = cmd_pool_start(&cfg, &err);
	ck_assert_ptr_nonnull(pool);
	tj[0].wait_at_gate = true; /* holds the only worker */
	submit_ok(pool, &tj[0]);
	ck_assert(gate_wait(&gate.entered, 1, 3000));
	submit_ok(pool, &tj[1]);
	submit_ok(pool, &tj[2]);
	cmd_pool_stats(pool, &st);
	ck_assert_int_eq(st.waiting, 2);
	ck_assert_int_eq(st.in_use, 1);
	ck_assert_int_eq(cmd_pool_submit(pool, &tj[3].job, &err), -1);
	ck_assert_int_eq(err.code, ES_EUNAVAIL);
	ck_assert_int_eq(err.retry_after, 1);
	ck_assert_str_eq(err.detail, "too many requests queued");
	es_error_release(&err);
	gate_open();
	ck_assert(gate_wait(&gate.done, 3, 3000));
	cmd_pool_stop(pool);
	/* the refused job was never called back */
	ck_assert_int_eq(tj[3].ran + tj[3].rejected, 0);
	for (int i = 0; i < 3; i++)
		ck_assert_int_eq(tj[i].ran + tj[i].rejected, 1);
	free(tj);
}
END_TEST

START_TEST(job_waiting_too_long_is_rejected)
{
	struct cmd_pool_config cfg = config(UNREACHABLE, 1, 10, 100);
	struct es_error err = ES_ERROR_INIT;
	struct cmd_pool *pool;
	struct tjob *tj = tjobs_new(2);

	pool = cmd_pool_start(&cfg, &err);
	ck_assert_ptr_nonnull(pool);
	tj[0].wait_at_gate = true;
	submit_ok(pool, &tj[0]);
	ck_assert(gate_wait(&gate.entered, 1, 3000));
	submit_ok(pool, &tj[1]);
	sleep_ms(300);
	gate_open();
	ck_assert(gate_wait(&gate.done, 2, 3000));
	ck_assert_int_eq(tj[1].rejected, 1);
	ck_assert_int_eq(tj[1].code, ES_EUNAVAIL);
	ck_assert_int_eq(tj[1].retry_after, 1);
	ck_assert_str_eq(tj[1].detail,
			 "timed out waiting for a database connection");
	cmd_pool_stop(pool);
	free(tj);
}
END_TEST

static void *stop_thread(void *arg)
{
	cmd_pool_stop(arg);
	return NULL;
}

START_TEST(stop_refuses_new_jobs_and_drains_the_queue)
{
	struct cmd_pool_config cfg = config(UNREACHABLE, 1, 1000, 0);
	struct es_error err = ES_ERROR_INIT;
	struct cmd_pool *pool;
	enum { N = 20, MORE = 400 };
	struct tjob *tj = tjobs_new(N), *more = tjobs_new(MORE);
	pthread_t t;
	int k;

	pool = cmd_pool_start(&cfg, &err);
	ck_assert_ptr_nonnull(pool);
	tj[0].wait_at_gate = true; /* the worker is busy: jobs stay queued */
	submit_ok(pool, &tj[0]);
	ck_assert(gate_wait(&gate.entered, 1, 3000));
	for (int i = 1; i < N; i++)
		submit_ok(pool, &tj[i]);
	ck_assert_int_eq(pthread_create(&t, NULL, stop_thread, pool), 0);
	/* submits succeed until the stop begins, then fail */
	for (k = 0; k < MORE; k++) {
		if (cmd_pool_submit(pool, &more[k].job, &err) < 0)
			break;
		sleep_ms(5);
	}
	ck_assert_int_lt(k, MORE);
	ck_assert_int_eq(err.code, ES_EUNAVAIL);
	ck_assert_int_eq(err.retry_after, 1);
	ck_assert_str_eq(err.detail, "the service is shutting down");
	es_error_release(&err);
	gate_open();
	pthread_join(t, NULL);
	/* every queued job got its one callback before stop returned */
	for (int i = 0; i < N; i++)
		ck_assert_int_eq(tj[i].ran + tj[i].rejected, 1);
	for (int i = 0; i < k; i++)
		ck_assert_int_eq(more[i].ran + more[i].rejected, 1);
	ck_assert_int_eq(more[k].ran + more[k].rejected, 0);
	free(more);
	free(tj);
}
END_TEST

START_TEST(cancel_rejects_queued_jobs_and_lets_running_ones_finish)
{
	struct cmd_pool_config cfg = config(UNREACHABLE, 1, 100, 0);
	struct es_error err = ES_ERROR_INIT;
	struct cmd_pool *pool;
	enum { N = 6 };
	struct tjob *tj = tjobs_new(N + 1);

	pool = cmd_pool_start(&cfg, &err);
	ck_assert_ptr_nonnull(pool);
	tj[0].wait_at_gate = true;
	submit_ok(pool, &tj[0]);
	ck_assert(gate_wait(&gate.entered, 1, 3000));
	for (int i = 1; i < N; i++)
		submit_ok(pool, &tj[i]);
	cmd_pool_cancel(pool);
	/* the queued ones are rejected now, while the first still runs */
	for (int i = 1; i < N; i++) {
		ck_assert_int_eq(tj[i].ran, 0);
		ck_assert_int_eq(tj[i].rejected, 1);
		ck_assert_int_eq(tj[i].code, ES_EUNAVAIL);
		ck_assert_str_eq(tj[i].detail, "the service is shutting down");
	}
	ck_assert_int_eq(tj[0].rejected + tj[0].ran, 1);
	ck_assert_int_eq(cmd_pool_submit(pool, &tj[N].job, &err), -1);
	ck_assert_str_eq(err.detail, "the service is shutting down");
	es_error_release(&err);
	gate_open();
	cmd_pool_stop(pool);
	ck_assert_int_eq(tj[N].ran + tj[N].rejected, 0);
	free(tj);
}
END_TEST

static atomic_int takes; /* take() calls */

static int take_yes(struct cmd_job *job)
{
	(void)job;
	atomic_fetch_add(&takes, 1);
	return 1;
}

static int take_no(struct cmd_job *job)
{
	(void)job;
	atomic_fetch_add(&takes, 1);
	return 0;
}

START_TEST(job_whose_take_fails_is_rejected_unrun)
{
	struct cmd_pool_config cfg = config(UNREACHABLE, 1, 100, 0);
	struct es_error err = ES_ERROR_INIT;
	struct cmd_pool *pool;
	enum { N = 10 };
	struct tjob *tj = tjobs_new(N + 1);

	atomic_store(&takes, 0);
	pool = cmd_pool_start(&cfg, &err);
	ck_assert_ptr_nonnull(pool);
	/* the worker is busy: the others are queued after its attempt */
	tj[0].wait_at_gate = true;
	submit_ok(pool, &tj[0]);
	ck_assert(gate_wait(&gate.entered, 1, 3000));
	for (int i = 1; i <= N; i++) {
		tj[i].job.take = i % 2 ? take_no : take_yes;
		submit_ok(pool, &tj[i]);
	}
	gate_open();
	ck_assert(gate_wait(&gate.done, N + 1, 3000));
	ck_assert_int_eq(atomic_load(&takes), N);
	for (int i = 1; i <= N; i++) {
		ck_assert_int_eq(tj[i].ran, 0);
		ck_assert_int_eq(tj[i].rejected, 1);
		/* the others were taken, and found no database */
		ck_assert_str_eq(tj[i].detail,
				 i % 2 ? "the service is shutting down"
				       : "database unavailable");
	}
	cmd_pool_stop(pool);
	free(tj);
}
END_TEST

START_TEST(join_gives_up_on_a_stuck_worker_in_time)
{
	struct cmd_pool_config cfg = config(UNREACHABLE, 2, 100, 0);
	struct es_error err = ES_ERROR_INIT;
	struct cmd_pool *pool;
	struct tjob *tj = tjobs_new(1);
	int64_t t0;

	pool = cmd_pool_start(&cfg, &err);
	ck_assert_ptr_nonnull(pool);
	tj[0].wait_at_gate = true; /* its callback hangs until the gate opens */
	submit_ok(pool, &tj[0]);
	ck_assert(gate_wait(&gate.entered, 1, 3000));
	cmd_pool_cancel(pool);
	t0 = now_ns();
	ck_assert_int_eq(cmd_pool_join(pool, 300), 1);
	ck_assert_int_ge(now_ns() - t0, 250000000LL);
	ck_assert_int_lt(now_ns() - t0, 1500000000LL);
	gate_open();
	/* once it is free, joining succeeds, and the pool can be freed */
	ck_assert_int_eq(cmd_pool_join(pool, 3000), 0);
	cmd_pool_stop(pool);
	free(tj);
}
END_TEST

START_TEST(join_of_an_idle_cancelled_pool_is_at_once)
{
	struct cmd_pool_config cfg = config(UNREACHABLE, 4, 10, 0);
	struct es_error err = ES_ERROR_INIT;
	struct cmd_pool *pool = cmd_pool_start(&cfg, &err);
	int64_t t0;

	ck_assert_ptr_nonnull(pool);
	cmd_pool_cancel(pool);
	t0 = now_ns();
	ck_assert_int_eq(cmd_pool_join(pool, 5000), 0);
	ck_assert_int_lt(now_ns() - t0, 1000000000LL);
	cmd_pool_stop(pool);
	ck_assert_int_eq(cmd_pool_join(NULL, 10), 0);
}
END_TEST

START_TEST(stop_of_idle_pool_returns)
{
	struct cmd_pool_config cfg = config(UNREACHABLE, 4, 10, 0);
	struct es_error err = ES_ERROR_INIT;
	struct cmd_pool *pool = cmd_pool_start(&cfg, &err);

	ck_assert_ptr_nonnull(pool);
	cmd_pool_stop(pool);
	cmd_pool_stop(NULL);
}
END_TEST

/* ---- with a database (DATABASE_URL) ---- */

/* scripts/run-tests gives every unit binary a database; none is a failure */
static const char *db_url(void)
{
	const char *url = getenv("DATABASE_URL");

	ck_assert_msg(url && *url, "DATABASE_URL is not set: run the unit "
				   "tests with scripts/run-tests unit");
	return url;
}

static atomic_int connects;

static int count_connect(PGconn *db, void *arg, struct es_error *err)
{
	PGresult *res;
	int ok;

	res = PQprepare(db, "pool_check", "SELECT $1::int + 1", 1, NULL);
	ok = PQresultStatus(res) == PGRES_COMMAND_OK;
	PQclear(res);
	if (!ok)
		return es_error_set(err, ES_EINTERNAL, "cannot prepare");
	atomic_fetch_add((atomic_int *)arg, 1);
	return 0;
}

static void query_text(struct tjob *tj, PGconn *db, const char *sql)
{
	PGresult *res = PQexec(db, sql);

	if (PQresultStatus(res) == PGRES_TUPLES_OK && PQntuples(res) == 1)
		snprintf(tj->text, sizeof(tj->text), "%s",
			 PQgetvalue(res, 0, 0));
	else
		snprintf(tj->text, sizeof(tj->text), "error: %s",
			 PQresultErrorMessage(res));
	PQclear(res);
}

static void body_settings(struct tjob *tj, PGconn *db)
{
	const char *one = "41";
	PGresult *res;

	query_text(tj, db, "SELECT current_setting('statement_timeout')");
	/* the statement on_connect prepared is there */
	res = PQexecPrepared(db, "pool_check", 1, &one, NULL, NULL, 0);
	if (PQresultStatus(res) == PGRES_TUPLES_OK)
		snprintf(tj->text2, sizeof(tj->text2), "%s",
			 PQgetvalue(res, 0, 0));
	PQclear(res);
}

static void body_leave_tx(struct tjob *tj, PGconn *db)
{
	PQclear(PQexec(db, "BEGIN"));
	PQclear(PQexec(db, "CREATE TEMP TABLE left_open (x int)"));
	tj->text[0] = '\0';
}

static void body_temp_table(struct tjob *tj, PGconn *db)
{
	query_text(tj, db, "SELECT to_regclass('pg_temp.left_open') IS NULL");
}

static void body_suicide(struct tjob *tj, PGconn *db)
{
	query_text(tj, db, "SELECT pg_terminate_backend(pg_backend_pid())");
}

static void body_sleep(struct tjob *tj, PGconn *db)
{
	query_text(tj, db, "SELECT pg_sleep(0.3)::text");
}

static void body_short(struct tjob *tj, PGconn *db)
{
	query_text(tj, db, "SELECT 1 FROM pg_sleep(0.02)");
}

static void body_long(struct tjob *tj, PGconn *db)
{
	query_text(tj, db, "SELECT pg_sleep(2)::text");
}

static struct cmd_pool *db_pool(struct cmd_pool_config *cfg, long size)
{
	struct es_error err = ES_ERROR_INIT;
	struct cmd_pool *pool;

	*cfg = config(db_url(), size, 100, 5000);
	cfg->statement_timeout_ms = 1500;
	cfg->on_connect = count_connect;
	cfg->on_connect_arg = &connects;
	atomic_store(&connects, 0);
	pool = cmd_pool_start(cfg, &err);
	ck_assert_msg(pool != NULL, "%s", err.detail);
	return pool;
}

START_TEST(db_job_gets_idle_connection_with_settings)
{
	struct cmd_pool_config cfg;
	struct cmd_pool_stats st;
	struct cmd_pool *pool;
	struct tjob *tj;

	tj = tjobs_new(3);
	pool = db_pool(&cfg, 1);
	tj[0].body = body_settings;
	submit_ok(pool, &tj[0]);
	ck_assert(gate_wait(&gate.done, 1, 5000));
	ck_assert_int_eq(tj[0].ran, 1);
	ck_assert_int_eq(tj[0].tx, PQTRANS_IDLE);
	ck_assert_str_eq(tj[0].text, "1500ms");
	ck_assert_str_eq(tj[0].text2, "42");
	/* the worker counts itself free just after the job's end */
	for (int i = 0; i < 200; i++) {
		cmd_pool_stats(pool, &st);
		if (st.in_use == 0)
			break;
		sleep_ms(5);
	}
	ck_assert_int_eq(st.in_use, 0);
	ck_assert_int_eq(st.connected, 1);

	/* a job that leaves a transaction open: rolled back, same backend */
	tj[1].body = body_leave_tx;
	submit_ok(pool, &tj[1]);
	tj[2].body = body_temp_table;
	submit_ok(pool, &tj[2]);
	ck_assert(gate_wait(&gate.done, 3, 5000));
	ck_assert_int_eq(tj[2].tx, PQTRANS_IDLE);
	ck_assert_str_eq(tj[2].text, "t");
	ck_assert_int_eq(tj[2].backend_pid, tj[0].backend_pid);
	ck_assert_int_eq(atomic_load(&connects), 1);
	cmd_pool_stop(pool);
	free(tj);
}
END_TEST

START_TEST(db_broken_connection_is_replaced)
{
	struct cmd_pool_config cfg;
	struct cmd_pool *pool;
	struct tjob *tj;

	tj = tjobs_new(2);
	pool = db_pool(&cfg, 1);
	tj[0].body = body_suicide;
	submit_ok(pool, &tj[0]);
	ck_assert(gate_wait(&gate.done, 1, 5000));
	tj[1].body = body_settings;
	submit_ok(pool, &tj[1]);
	ck_assert(gate_wait(&gate.done, 2, 5000));
	ck_assert_int_eq(tj[1].ran, 1);
	ck_assert_str_eq(tj[1].text, "1500ms");
	ck_assert_int_ne(tj[1].backend_pid, tj[0].backend_pid);
	ck_assert_int_eq(atomic_load(&connects), 2);
	cmd_pool_stop(pool);
	free(tj);
}
END_TEST

START_TEST(db_jobs_run_in_parallel)
{
	struct cmd_pool_config cfg;
	struct cmd_pool *pool;
	enum { N = 8 };
	struct tjob *tj;
	int64_t t0;

	tj = tjobs_new(N);
	pool = db_pool(&cfg, 4);
	t0 = now_ns();
	for (int i = 0; i < N; i++) {
		tj[i].body = body_sleep;
		submit_ok(pool, &tj[i]);
	}
	ck_assert(gate_wait(&gate.done, N, 5000));
	/*
	 * 8 jobs of 0.3 s on 4 connections: two rounds, not eight (2.4 s
	 * at the least), with room for a loaded machine
	 */
	ck_assert_int_lt(now_ns() - t0, 2100000000LL);
	for (int i = 0; i < N; i++)
		ck_assert_str_eq(tj[i].text, "");
	cmd_pool_stop(pool);
	ck_assert_int_eq(atomic_load(&connects), 4);
	free(tj);
}
END_TEST

START_TEST(db_statement_timeout_cancels_long_statements)
{
	struct cmd_pool_config cfg;
	struct cmd_pool *pool;
	struct tjob *tj;

	tj = tjobs_new(1);
	pool = db_pool(&cfg, 1);
	tj[0].body = body_long;
	submit_ok(pool, &tj[0]);
	ck_assert(gate_wait(&gate.done, 1, 5000));
	ck_assert_msg(strstr(tj[0].text, "statement timeout") != NULL, "%s",
		      tj[0].text);
	cmd_pool_stop(pool);
	free(tj);
}
END_TEST

START_TEST(db_stop_runs_queued_jobs)
{
	struct cmd_pool_config cfg;
	struct cmd_pool *pool;
	enum { N = 6 };
	struct tjob *tj;

	tj = tjobs_new(N);
	pool = db_pool(&cfg, 2);
	for (int i = 0; i < N; i++) {
		tj[i].body = body_sleep;
		submit_ok(pool, &tj[i]);
	}
	cmd_pool_stop(pool);
	for (int i = 0; i < N; i++) {
		ck_assert_int_eq(tj[i].ran, 1);
		ck_assert_str_eq(tj[i].text, "");
	}
	free(tj);
}
END_TEST

/*
 * `url` as a key=value conninfo for `user`, into `out`; the role is made
 * with at most `limit` connections.
 */
static void limited_role(const char *url, const char *user, int limit,
			 char *out, size_t len)
{
	PQconninfoOption *opts = PQconninfoParse(url, NULL), *o;
	const char *host = "", *port = "", *dbname = "";
	char sql[160];
	PGconn *db;
	PGresult *res;

	ck_assert_ptr_nonnull(opts);
	for (o = opts; o->keyword; o++) {
		if (!o->val)
			continue;
		if (strcmp(o->keyword, "host") == 0)
			host = o->val;
		else if (strcmp(o->keyword, "port") == 0)
			port = o->val;
		else if (strcmp(o->keyword, "dbname") == 0)
			dbname = o->val;
	}
	snprintf(out, len, "host=%s port=%s dbname=%s user=%s", host, port,
		 dbname, user);
	PQconninfoFree(opts);
	db = PQconnectdb(url);
	ck_assert_int_eq(PQstatus(db), CONNECTION_OK);
	snprintf(sql, sizeof(sql),
		 "DROP ROLE IF EXISTS %s; CREATE ROLE %s LOGIN "
		 "CONNECTION LIMIT %d",
		 user, user, limit);
	res = PQexec(db, sql);
	ck_assert_msg(PQresultStatus(res) == PGRES_COMMAND_OK, "%s",
		      PQresultErrorMessage(res));
	PQclear(res);
	PQfinish(db);
}

START_TEST(db_refused_worker_leaves_jobs_to_connected_ones)
{
	struct cmd_pool_config cfg;
	struct es_error err = ES_ERROR_INIT;
	struct cmd_pool_stats st;
	struct cmd_pool *pool;
	char conninfo[300];
	enum { N = 60 };
	struct tjob *tj;

	tj = tjobs_new(N);
	/* three workers, room for two connections: one is always refused */
	limited_role(db_url(), "tandem_pool_check", 2, conninfo,
		     sizeof(conninfo));
	cfg = config(conninfo, 3, N, 10000);
	pool = cmd_pool_start(&cfg, &err);
	ck_assert_ptr_nonnull(pool);
	for (int i = 0; i < N; i++) {
		tj[i].body = body_short;
		submit_ok(pool, &tj[i]);
		if (i % 10 == 9)
			sleep_ms(100);
	}
	ck_assert(gate_wait(&gate.done, N, 8000));
	cmd_pool_stats(pool, &st);
	ck_assert_int_eq(st.connected, 2);
	cmd_pool_stop(pool);
	for (int i = 0; i < N; i++) {
		ck_assert_msg(tj[i].ran == 1, "job %d: %s", i, tj[i].detail);
		ck_assert_int_eq(tj[i].rejected, 0);
		ck_assert_str_eq(tj[i].text, "1");
	}
	free(tj);
}
END_TEST

static Suite *pool_suite(void)
{
	Suite *s = suite_create("pool");
	TCase *tc = tcase_create("no database");

	tcase_add_checked_fixture(tc, setup, NULL);
	tcase_set_timeout(tc, 30);
	tcase_add_test(tc, bad_config_is_refused);
	tcase_add_test(tc, unreachable_database_rejects_every_job_quickly);
	tcase_add_test(tc, down_database_is_not_hammered);
	tcase_add_test(tc, full_queue_refuses_submit);
	tcase_add_test(tc, job_waiting_too_long_is_rejected);
	tcase_add_test(tc, stop_refuses_new_jobs_and_drains_the_queue);
	tcase_add_test(tc,
		       cancel_rejects_queued_jobs_and_lets_running_ones_finish);
	tcase_add_test(tc, stop_of_idle_pool_returns);
	tcase_add_test(tc, job_whose_take_fails_is_rejected_unrun);
	tcase_add_test(tc, join_gives_up_on_a_stuck_worker_in_time);
	tcase_add_test(tc, join_of_an_idle_cancelled_pool_is_at_once);
	suite_add_tcase(s, tc);
	tc = tcase_create("db");
	tcase_add_checked_fixture(tc, setup, NULL);
	tcase_set_timeout(tc, 30);
	tcase_add_test(tc, db_job_gets_idle_connection_with_settings);
	tcase_add_test(tc, db_broken_connection_is_replaced);
	tcase_add_test(tc, db_jobs_run_in_parallel);
	tcase_add_test(tc, db_statement_timeout_cancels_long_statements);
	tcase_add_test(tc, db_stop_runs_queued_jobs);
	tcase_add_test(tc, db_refused_worker_leaves_jobs_to_connected_ones);
	suite_add_tcase(s, tc);
	return s;
}

int main(void)
{
	SRunner *sr = srunner_create(pool_suite());
	int failed;

	srunner_run_all(sr, CK_NORMAL);
	failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
