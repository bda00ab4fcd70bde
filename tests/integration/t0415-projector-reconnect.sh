#!/usr/bin/env bash
# t0415-projector-reconnect.sh - the projector's sessions come back with
# their prepared statements: the log reader's window reads and the
# flusher's writes (views, checkpoints) are prepared once per session
# (common/es_db.h es_db_exec_prepared()), so a session the projector opens
# again after losing one must prepare them again. Three times over:
#   1. pg_terminate_backend() of the projector's log reader and of its
#      flusher's session (found in pg_stat_activity by application_name),
#      some of it while a catch-up is under way;
#   2. new events, in windows split into several reads (PROJECTOR_BATCH=7:
#      every shape of the window read), reach the views through new
#      sessions of the same process, same leader epoch;
#   3. the views equal a fold of the log, and each view's checkpoint counts
#      exactly the events of the log: nothing skipped, nothing twice.
# Then a column of the log changes type under the same sessions (their
# prepared plans no longer fit): the sessions start their statements over
# and the views go on, and GET /events answers.
set -eu -o pipefail
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/proj_lib.sh"

migrate_db
start_service QRY query-service POLL_INTERVAL_MS=50 PROJECTOR_BATCH=7

# the pid of the projector's session named $1, empty without one
backend()
{
	psql_q "SELECT string_agg(pid::text, ',') FROM pg_stat_activity
		WHERE application_name = '$1' AND datname = current_database()"
}

# every view's checkpoint counts each event of the log once
applied_all()
{
	[ "$(psql_q "SELECT count(*) FROM projection_checkpoints
		WHERE applied IS DISTINCT FROM
			(SELECT count(*) FROM events)")" = 0 ] &&
		[ "$(psql_q "SELECT count(*) FROM projection_checkpoints")" = 4 ]
}

say "the projector folds a first seed"
proj_seed "$DATABASE_URL" r0 10 9
proj_fold_equal 30 "$DATABASE_URL"
wait_for 10 applied_all
epoch=$(psql_q "SELECT epoch FROM projection_leader")
wait_for 10 eval '[ -n "$(backend tandem-projector-tail)" ]'
wait_for 10 eval '[ -n "$(backend tandem-projector)" ]'

for round in 1 2 3; do
	reader=$(backend tandem-projector-tail)
	flusher=$(backend tandem-projector)
	say "round $round: terminate the reader ($reader) and the" \
		"flusher's session ($flusher)"
	# round 2: while the projector is catching up with a seed
	[ "$round" -ne 2 ] || proj_seed "$DATABASE_URL" "c$round" 20 19
	expect_eq "$(psql_q "SELECT count(pg_terminate_backend(pid))
		FROM pg_stat_activity WHERE application_name IN
		('tandem-projector-tail', 'tandem-projector')
		AND datname = current_database()")" 2 "sessions terminated"
	for tag in a b c; do
		proj_seed "$DATABASE_URL" "r$round$tag" 6 4
	done
	psql_q "NOTIFY tandem_events" >/dev/null
	proj_fold_equal 30 "$DATABASE_URL"
	wait_for 10 applied_all
	now_reader=$(backend tandem-projector-tail)
	now_flusher=$(backend tandem-projector)
	[ -n "$now_reader" ] && [ "$now_reader" != "$reader" ] ||
		fail "the reader's session is not a new one: '$now_reader'"
	[ -n "$now_flusher" ] && [ "$now_flusher" != "$flusher" ] ||
		fail "the flusher's session is not a new one: '$now_flusher'"
	kill -0 "$QRY_PID" || fail "the query service is gone"
	expect_eq "$(psql_q "SELECT epoch FROM projection_leader")" "$epoch" \
		"the same leader went on"
	say "round $round: $(psql_q "SELECT count(*) FROM events") events," \
		"views equal the fold, checkpoints count each once"
done

expect_eq "$(grep -c 'prepared statement' "$TEST_TMP/QRY.log" || true)" 0 \
	"no prepared statement missing in the log"

# A column of the log changes type under the running service: every
# prepared read of it now fails with "cached plan must not change result
# type" (0A000) in the same sessions, which must start their statements
# over instead of stalling the views.
for coll in default C; do
	reader=$(backend tandem-projector-tail)
	say "events.stream_id becomes COLLATE \"$coll\" under the same sessions"
	psql_q "ALTER TABLE events ALTER COLUMN stream_id
		TYPE text COLLATE \"$coll\"" >/dev/null
	proj_seed "$DATABASE_URL" "t$coll" 6 4
	psql_q "NOTIFY tandem_events" >/dev/null
	proj_fold_equal 30 "$DATABASE_URL"
	wait_for 10 applied_all
	expect_eq "$(backend tandem-projector-tail)" "$reader" \
		"the reader's session (the same one went on)"
	AS=$ADMIN_TOKEN http GET "$QRY_URL/events?limit=5"
	expect_status 200
done
