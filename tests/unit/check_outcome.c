/*
 * check_outcome.c - cmd_commit_outcome() on a real server (DATABASE_URL,
 * migrated by bin/migrate): committed only with our command's event at
 * the position under the xid, never for another command's event there
 * (the xid and position a promoted standby hands out again) nor for our
 * event under another xid, aborted and not-yet-handed-out xids never
 * commit, a running one is not known, and each try ends with its
 * statement's timeout (a lock held on events).
 */
#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "../../command-service/cmd_outcome.h"

static const char *db_url(void)
{
	const char *url = getenv("DATABASE_URL");

	ck_assert_msg(url && *url, "DATABASE_URL is not set: run the unit "
				   "tests with scripts/run-tests unit");
	return url;
}

/* The real schema, by the real migrate; once per process. */
static void setup(void)
{
	static int done;
	const char *bin = getenv("TANDEM_BIN");
	char cmd[4096];

	if (done)
		return;
	ck_assert_msg(bin && *bin, "TANDEM_BIN is not set");
	snprintf(cmd, sizeof(cmd), "DATABASE_URL='%s' '%s/migrate' >/dev/null",
		 db_url(), bin);
	ck_assert_msg(system(cmd) == 0, "%s failed", cmd);
	done = 1;
}

static PGconn *connect_db(void)
{
	PGconn *db = PQconnectdb(db_url());

	ck_assert_msg(PQstatus(db) == CONNECTION_OK, "%s", PQerrorMessage(db));
	return db;
}

static void exec_ok(PGconn *db, const char *sql)
{
	PGresult *res = PQexec(db, sql);

	ck_assert_msg(PQresultStatus(res) == PGRES_COMMAND_OK, "%s: %s", sql,
		      PQresultErrorMessage(res));
	PQclear(res);
}

/* Appends an event of command `cid` on `db`: its xid and position. */
static void append(PGconn *db, const char *cid, unsigned long long *xid,
		   long long *pos)
{
	const char *params[1] = { cid };
	PGresult *res = PQexecParams(
		db,
		"INSERT INTO events (stream_id, stream_version, event_id,"
		" event_type, data, metadata) VALUES ('check-outcome-' ||"
		" gen_random_uuid(), 1, gen_random_uuid(), 'Checked', '{}',"
		" jsonb_build_object('command_id', $1::text))"
		" RETURNING transaction_id::text, global_position",
		1, NULL, params, NULL, NULL, 0);

	ck_assert_msg(PQresultStatus(res) == PGRES_TUPLES_OK, "%s",
		      PQresultErrorMessage(res));
	*xid = strtoull(PQgetvalue(res, 0, 0), NULL, 10);
	*pos = strtoll(PQgetvalue(res, 0, 1), NULL, 10);
	PQclear(res);
}

#define OURS   "0d6b3d52-9f52-4a53-8f1e-1f2c3a4b5c6d"
#define THEIRS "7c1e2d3f-4a5b-4c6d-8e7f-8a9b0c1d2e3f"

START_TEST(committed_with_our_event_is_committed)
{
	PGconn *db;
	unsigned long long xid;
	long long pos;

	setup();
	db = connect_db();
	append(db, OURS, &xid, &pos);
	ck_assert_int_eq(cmd_commit_outcome(db, xid, pos, OURS, 2000), 1);
	PQfinish(db);
}
END_TEST

START_TEST(another_commands_event_there_is_not_ours)
{
	PGconn *db;
	unsigned long long xid;
	long long pos;

	setup();
	db = connect_db();
	/* committed, at that position, under that xid: but not our command */
	append(db, THEIRS, &xid, &pos);
	ck_assert_int_eq(cmd_commit_outcome(db, xid, pos, OURS, 2000), 0);
	/* nor with a position the xid did not write at */
	ck_assert_int_eq(cmd_commit_outcome(db, xid, pos + 1, THEIRS, 2000), 0);
	PQfinish(db);
}
END_TEST

START_TEST(our_event_under_another_xid_is_not_ours)
{
	PGconn *db;
	unsigned long long xid, other_xid;
	long long pos, other_pos;

	setup();
	db = connect_db();
	/* both committed: our event at pos, but under the other xid */
	append(db, OURS, &xid, &pos);
	append(db, THEIRS, &other_xid, &other_pos);
	ck_assert_int_eq(cmd_commit_outcome(db, other_xid, pos, OURS, 2000), 0);
	PQfinish(db);
}
END_TEST

/*
 * A try ends with its statement: a lock on events held by another
 * session (the look for our event waits on it) does not hold the
 * question past its deadline by more than one try.
 */
START_TEST(a_held_lock_bounds_each_try)
{
	PGconn *db, *locker;
	unsigned long long xid;
	long long pos;
	struct timespec t0, t1;
	long ms;

	setup();
	db = connect_db();
	locker = connect_db();
	append(db, OURS, &xid, &pos);
	exec_ok(locker, "BEGIN");
	exec_ok(locker, "LOCK TABLE events IN ACCESS EXCLUSIVE MODE");
	clock_gettime(CLOCK_MONOTONIC, &t0);
	ck_assert_int_eq(cmd_commit_outcome(db, xid, pos, OURS, 300), -1);
	clock_gettime(CLOCK_MONOTONIC, &t1);
	ms = (t1.tv_sec - t0.tv_sec) * 1000 +
	     (t1.tv_nsec - t0.tv_nsec) / 1000000;
	ck_assert_msg(ms < CMD_OUTCOME_TRY_MS + 1800, "asked for %ld ms", ms);
	exec_ok(locker, "ROLLBACK");
	ck_assert_int_eq(cmd_commit_outcome(db, xid, pos, OURS, 2000), 1);
	PQfinish(locker);
	PQfinish(db);
}
END_TEST

START_TEST(aborted_is_never)
{
	PGconn *db;
	unsigned long long xid;
	long long pos;

	setup();
	db = connect_db();
	exec_ok(db, "BEGIN");
	append(db, OURS, &xid, &pos);
	exec_ok(db, "ROLLBACK");
	ck_assert_int_eq(cmd_commit_outcome(db, xid, pos, OURS, 2000), 0);
	PQfinish(db);
}
END_TEST

START_TEST(xid_not_handed_out_is_never)
{
	PGconn *db;
	PGresult *res;
	unsigned long long xid;

	setup();
	db = connect_db();
	res = PQexec(db, "SELECT (pg_current_xact_id()::text::bigint"
			 " + 100000)::text");
	ck_assert_int_eq(PQresultStatus(res), PGRES_TUPLES_OK);
	xid = strtoull(PQgetvalue(res, 0, 0), NULL, 10);
	PQclear(res);
	ck_assert_int_eq(cmd_commit_outcome(db, xid, 1, OURS, 2000), 0);
	PQfinish(db);
}
END_TEST

START_TEST(running_is_not_known_in_time)
{
	PGconn *db, *other;
	unsigned long long xid;
	long long pos;

	setup();
	db = connect_db();
	other = connect_db();
	exec_ok(other, "BEGIN");
	append(other, OURS, &xid, &pos);
	/* asked for 600 ms while it runs: not known */
	ck_assert_int_eq(cmd_commit_outcome(db, xid, pos, OURS, 600), -1);
	exec_ok(other, "COMMIT");
	ck_assert_int_eq(cmd_commit_outcome(db, xid, pos, OURS, 600), 1);
	PQfinish(other);
	PQfinish(db);
}
END_TEST

START_TEST(unreachable_is_not_known)
{
	PGconn *db = PQconnectdb("host=127.0.0.1 port=1 dbname=x user=x "
				 "connect_timeout=1");

	/* the settings of a connection that never came up, nobody there */
	ck_assert_int_eq(cmd_commit_outcome(db, 1000, 1, OURS, 300), -1);
	PQfinish(db);
}
END_TEST

int main(void)
{
	Suite *s = suite_create("outcome");
	TCase *tc = tcase_create("db");
	SRunner *sr;
	int failed;

	tcase_set_timeout(tc, 60);
	tcase_add_test(tc, committed_with_our_event_is_committed);
	tcase_add_test(tc, another_commands_event_there_is_not_ours);
	tcase_add_test(tc, our_event_under_another_xid_is_not_ours);
	tcase_add_test(tc, a_held_lock_bounds_each_try);
	tcase_add_test(tc, aborted_is_never);
	tcase_add_test(tc, xid_not_handed_out_is_never);
	tcase_add_test(tc, running_is_not_known_in_time);
	tcase_add_test(tc, unreachable_is_not_known);
	suite_add_tcase(s, tc);
	sr = srunner_create(s);
	srunner_run_all(sr, CK_NORMAL);
	failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
