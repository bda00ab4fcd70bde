/*
 * check_db.c - struct es_db_link without a server: a failed connection
 * is ES_EUNAVAIL after the backoff, which doubles up to its longest;
 * a readable wake descriptor cuts the attempt and the wait short;
 * SQLSTATEs reported as data map as es_db_error() maps them. With one
 * (DATABASE_URL): a connection comes back after the server ends it;
 * es_db_open()'s connect_timeout is per host.
 */
#include <arpa/inet.h>
#include <check.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "es_db.h"

/* Nothing listens on port 1 of the loopback address. */
#define NOWHERE "host=127.0.0.1 port=1 dbname=x user=x"

static long elapsed_ms(const struct timespec *t0)
{
	struct timespec t;

	clock_gettime(CLOCK_MONOTONIC, &t);
	return (long)((t.tv_sec - t0->tv_sec) * 1000 +
		      (t.tv_nsec - t0->tv_nsec) / 1000000);
}

START_TEST(failure_waits_and_doubles)
{
	struct es_db_link l = ES_DB_LINK_INIT(NOWHERE, -1);
	struct es_error err = ES_ERROR_INIT;
	struct timespec t0;

	l.min_ms = 40;
	l.max_ms = 100;
	clock_gettime(CLOCK_MONOTONIC, &t0);
	ck_assert_ptr_null(es_db_link_get(&l, &err));
	ck_assert_int_eq(err.code, ES_EUNAVAIL);
	ck_assert_int_ge(elapsed_ms(&t0), 40);
	ck_assert_int_eq(l.wait_ms, 80);
	es_error_release(&err);
	ck_assert_ptr_null(es_db_link_get(&l, &err));
	ck_assert_int_eq(l.wait_ms, 100); /* capped */
	es_error_release(&err);
	es_db_link_backoff(&l);
	ck_assert_int_eq(l.wait_ms, 100);
	ck_assert_int_ge(elapsed_ms(&t0), 40 + 80 + 100);
	ck_assert_ptr_null(l.db);
	es_db_link_close(&l); /* closing nothing is fine */
}
END_TEST

START_TEST(wake_fd_cuts_the_wait_short)
{
	struct es_error err = ES_ERROR_INIT;
	struct timespec t0;
	int fds[2];

	ck_assert_int_eq(pipe(fds), 0);
	ck_assert_int_eq(write(fds[1], "x", 1), 1);
	{
		struct es_db_link l = ES_DB_LINK_INIT(NOWHERE, fds[0]);

		l.min_ms = 10000;
		clock_gettime(CLOCK_MONOTONIC, &t0);
		ck_assert_ptr_null(es_db_link_get(&l, &err));
		es_db_link_backoff(&l);
		ck_assert_int_lt(elapsed_ms(&t0), 5000);
		ck_assert_int_eq(l.wait_ms, 4000); /* doubled, capped */
	}
	es_error_release(&err);
	close(fds[0]);
	close(fds[1]);
}
END_TEST

START_TEST(defaults)
{
	struct es_db_link l = ES_DB_LINK_INIT("x", -1);

	ck_assert_int_eq(l.min_ms, 250);
	ck_assert_int_eq(l.max_ms, 4000);
	ck_assert_ptr_null(l.db);
	ck_assert_ptr_null(l.listen);
	ck_assert_int_eq(l.wake_fd, -1);
}
END_TEST

START_TEST(states_reported_as_data)
{
	struct es_error err = ES_ERROR_INIT;

	ck_assert_int_eq(es_db_state_error("TDV01", "at version 7", "7", &err),
			 -1);
	ck_assert_int_eq(err.code, ES_ECONFLICT);
	ck_assert_int_eq(err.current_version, 7);
	ck_assert_str_eq(err.detail, "at version 7");
	es_error_release(&err);
	es_db_state_error("TDI01", "stored by another append", NULL, &err);
	ck_assert_int_eq(err.code, ES_ECONFLICT);
	ck_assert_int_eq(err.current_version, -1);
	es_error_release(&err);
	es_db_state_error("XX000", "boom", NULL, &err);
	ck_assert_int_eq(err.code, ES_EINTERNAL);
	ck_assert_str_eq(err.detail, "unexpected database error");
	es_error_release(&err);
}
END_TEST

/* ---- with a database (DATABASE_URL) ---- */

START_TEST(connects_listens_and_comes_back)
{
	const char *url = getenv("DATABASE_URL");
	struct es_error err = ES_ERROR_INIT;
	struct es_db_link l = ES_DB_LINK_INIT(url, -1);
	PGconn *db, *other;
	PGnotify *n;
	char pid[32];

	ck_assert_msg(url && *url, "DATABASE_URL is not set: run the unit "
				   "tests with scripts/run-tests unit");
	l.app_name = "check_db";
	l.listen = "check_db_link";
	l.wait_ms = 1000;
	db = es_db_link_get(&l, &err);
	ck_assert_msg(db != NULL, "%s", err.detail);
	ck_assert_int_eq(l.wait_ms, 0); /* a fresh connection resets it */
	ck_assert_ptr_eq(es_db_link_get(&l, &err), db); /* kept */
	other = es_db_connect(url, NULL, &err);
	ck_assert_ptr_nonnull(other);
	ck_assert_int_eq(es_db_exec(other, "NOTIFY check_db_link", &err), 0);
	ck_assert_int_eq(es_db_exec(db, "SELECT 1", &err), 0);
	n = PQnotifies(db);
	ck_assert_ptr_nonnull(n);
	ck_assert_str_eq(n->relname, "check_db_link");
	PQfreemem(n);
	/* the server ends the session: the next use notices, get reconnects */
	snprintf(pid, sizeof(pid), "%d", PQbackendPID(db));
	{
		const char *params[1] = { pid };
		PGresult *res = PQexecParams(
			other, "SELECT pg_terminate_backend($1::int)", 1, NULL,
			params, NULL, NULL, 0);

		ck_assert_int_eq(PQresultStatus(res), PGRES_TUPLES_OK);
		PQclear(res);
	}
	while (es_db_exec(db, "SELECT 1", &err) == 0)
		usleep(10000);
	es_error_release(&err);
	ck_assert(es_db_broken(db));
	db = es_db_link_get(&l, &err);
	ck_assert_msg(db != NULL, "%s", err.detail);
	ck_assert(!es_db_broken(db));
	es_db_link_close(&l);
	ck_assert_ptr_null(l.db);
	PQfinish(other);
}
END_TEST

/* DATABASE_URL's server; the strings point into `opts`. */
struct server {
	PQconninfoOption *opts; /* free with PQconninfoFree() */
	const char *host, *port, *user, *dbname;
};

static void server_of_url(struct server *sv)
{
	const char *url = getenv("DATABASE_URL");
	PQconninfoOption *o;

	ck_assert_msg(url && *url, "DATABASE_URL is not set: run the unit "
				   "tests with scripts/run-tests unit");
	*sv = (struct server){ PQconninfoParse(url, NULL), NULL, NULL, NULL,
			       NULL };
	ck_assert_ptr_nonnull(sv->opts);
	for (o = sv->opts; o->keyword; o++) {
		if (!strcmp(o->keyword, "host"))
			sv->host = o->val;
		else if (!strcmp(o->keyword, "port"))
			sv->port = o->val;
		else if (!strcmp(o->keyword, "user"))
			sv->user = o->val;
		else if (!strcmp(o->keyword, "dbname"))
			sv->dbname = o->val;
	}
	ck_assert_msg(sv->host && sv->port,
		      "DATABASE_URL names no host and port");
}

/*
 * A loopback port whose handshakes the kernel completes but nobody
 * answers (listening, never accepting): a host that does not answer.
 */
static int silent_listener(int *port)
{
	struct sockaddr_in a = { .sin_family = AF_INET };
	socklen_t len = sizeof(a);
	int fd = socket(AF_INET, SOCK_STREAM, 0);

	ck_assert_int_ge(fd, 0);
	a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	ck_assert_int_eq(bind(fd, (struct sockaddr *)&a, sizeof(a)), 0);
	ck_assert_int_eq(listen(fd, 8), 0);
	ck_assert_int_eq(getsockname(fd, (struct sockaddr *)&a, &len), 0);
	*port = ntohs(a.sin_port);
	return fd;
}

/*
 * connect_timeout is per host, as in libpq: two hosts that never answer
 * leave the third its own time (a handshake bounded by one
 * connect_timeout in all never reached the second host; one that went
 * on from the first host it matched would not pass the second).
 */
START_TEST(connect_timeout_is_per_host)
{
	struct server sv;
	char hosts[512], ports[64];
	int silent[2], sport[2];
	struct timespec t0;
	PGconn *db;

	server_of_url(&sv);
	silent[0] = silent_listener(&sport[0]);
	silent[1] = silent_listener(&sport[1]);
	snprintf(hosts, sizeof(hosts), "127.0.0.1,127.0.0.1,%s", sv.host);
	snprintf(ports, sizeof(ports), "%d,%d,%s", sport[0], sport[1], sv.port);
	{
		const char *const keys[] = {
			"host", "port", "user", "dbname", "connect_timeout",
			NULL
		};
		const char *const vals[] = { hosts,	ports, sv.user,
					     sv.dbname, "2",   NULL };

		clock_gettime(CLOCK_MONOTONIC, &t0);
		db = es_db_open(keys, vals, -1, 0);
	}
	ck_assert_ptr_nonnull(db);
	ck_assert_msg(PQstatus(db) == CONNECTION_OK, "%s", PQerrorMessage(db));
	/* it did wait on the silent ones first */
	ck_assert_int_ge(elapsed_ms(&t0), 3900);
	PQfinish(db);
	PQconninfoFree(sv.opts);
	close(silent[0]);
	close(silent[1]);
}
END_TEST

/*
 * A host that is starting up: it takes one connection, reads what libpq
 * sends, waits 1.5 s and answers 57P03, "the database system is starting
 * up" (libpq then goes on to the next host by itself).
 */
static void *closer_main(void *arg)
{
	static const char fields[] = "SFATAL\0VFATAL\0C57P03\0"
				     "Mthe database system is starting up\0";
	unsigned char msg[1 + 4 + sizeof(fields)];
	uint32_t len = 4 + sizeof(fields); /* fields, then their end '\0' */
	int fd = accept(*(int *)arg, NULL, NULL);
	char buf[512];

	msg[0] = 'E';
	msg[1] = (unsigned char)(len >> 24);
	msg[2] = (unsigned char)(len >> 16);
	msg[3] = (unsigned char)(len >> 8);
	msg[4] = (unsigned char)len;
	memcpy(msg + 5, fields, sizeof(fields));
	if (fd >= 0) {
		(void)read(fd, buf, sizeof(buf));
		usleep(1500 * 1000);
		(void)write(fd, msg, sizeof(msg));
		close(fd);
	}
	return NULL;
}

/*
 * A host's time begins when libpq turns to it: after a first host that
 * answers 57P03 at 1.5 s, the silent second one still gets its 2 s
 * before the third, the real server (timed from the start, it had 0.5 s).
 */
START_TEST(a_hosts_time_begins_when_libpq_turns_to_it)
{
	struct server sv;
	char hosts[512], ports[64];
	int closer, silent, cport, sport;
	struct timespec t0;
	pthread_t th;
	PGconn *db;

	server_of_url(&sv);
	closer = silent_listener(&cport);
	silent = silent_listener(&sport);
	ck_assert_int_eq(pthread_create(&th, NULL, closer_main, &closer), 0);
	snprintf(hosts, sizeof(hosts), "127.0.0.1,127.0.0.1,%s", sv.host);
	snprintf(ports, sizeof(ports), "%d,%d,%s", cport, sport, sv.port);
	{
		const char *const keys[] = { "host",
					     "port",
					     "user",
					     "dbname",
					     "connect_timeout",
					     "sslmode",
					     "gssencmode",
					     NULL };
		const char *const vals[] = { hosts,	ports, sv.user,
					     sv.dbname, "2",   "disable",
					     "disable", NULL };

		clock_gettime(CLOCK_MONOTONIC, &t0);
		db = es_db_open(keys, vals, -1, 0);
	}
	ck_assert_ptr_nonnull(db);
	ck_assert_msg(PQstatus(db) == CONNECTION_OK, "%s", PQerrorMessage(db));
	/* 1.5 s on the first, 2 s on the second */
	ck_assert_int_ge(elapsed_ms(&t0), 3400);
	pthread_join(th, NULL);
	PQfinish(db);
	PQconninfoFree(sv.opts);
	close(closer);
	close(silent);
}
END_TEST

static Suite *db_suite(void)
{
	Suite *s = suite_create("db");
	TCase *tc = tcase_create("link");

	tcase_set_timeout(tc, 20);
	tcase_add_test(tc, failure_waits_and_doubles);
	tcase_add_test(tc, wake_fd_cuts_the_wait_short);
	tcase_add_test(tc, defaults);
	tcase_add_test(tc, states_reported_as_data);
	tcase_add_test(tc, connects_listens_and_comes_back);
	tcase_add_test(tc, connect_timeout_is_per_host);
	tcase_add_test(tc, a_hosts_time_begins_when_libpq_turns_to_it);
	suite_add_tcase(s, tc);
	return s;
}

int main(void)
{
	SRunner *sr = srunner_create(db_suite());
	int failed;

	srunner_run_all(sr, CK_NORMAL);
	failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
