#!/usr/bin/env bash
# t0800-pg-standby.sh - scripts/pg's streaming standbys (SPEC section 12),
# the ground the replication tests stand on:
#
# 1. `scripts/pg standby PRIMARY DIR sync` makes a hot standby by
#    pg_basebackup -R: it streams, the primary lists it as synchronous,
#    it answers reads with what the primary committed and refuses writes.
# 2. While a synchronous standby is down, a commit on the primary waits
#    (it is not acknowledged); once the standby is back, it completes.
# 3. After kill -9 of the primary's postmaster, `scripts/pg promote` makes
#    the standby a writable primary that holds every acknowledged commit.
# 4. A second, asynchronous standby streams too and is not synchronous.
set -eu -o pipefail
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/proj_lib.sh"


pg_own_start "$TEST_TMP/prim"
P_URL=$OWN_DATABASE_URL
P_PID=$OWN_PG_PID
proj_psql "$P_URL" "CREATE TABLE t (x int PRIMARY KEY); INSERT INTO t VALUES (1)"

say "a synchronous hot standby"
pg_own_standby "$TEST_TMP/prim" "$TEST_TMP/stby" sync
S_URL=$OWN_DATABASE_URL
[ "$S_URL" != "$P_URL" ] || fail "the standby has the primary's URL"
expect_eq "$(proj_psql "$P_URL" "SELECT application_name || ' ' || state || ' ' ||
	sync_state FROM pg_stat_replication")" \
	"tandem_standby_stby streaming sync" "the primary's replication view"
expect_eq "$(proj_psql "$S_URL" "SELECT pg_is_in_recovery()")" t "standby in recovery"
proj_psql "$P_URL" "INSERT INTO t VALUES (2)"
# synchronous_commit=on waits for the standby's flush, not its replay
wait_for 10 test "$(proj_psql "$S_URL" "SELECT count(*) FROM t")" = 2
out=$(proj_psql "$S_URL" "INSERT INTO t VALUES (3)" 2>&1) &&
	fail "the standby took a write"
[[ $out == *"read-only transaction"* ]] || fail "standby write: $out"

say "a commit waits while the synchronous standby is down"
pg_own_stop "$TEST_TMP/stby"
proj_psql "$P_URL" "INSERT INTO t VALUES (4)" &
W=$!
track_pid "$W"
sleep 1
kill -0 "$W" 2>/dev/null || fail "a commit was acknowledged without the standby"
expect_eq "$(proj_psql "$P_URL" "SELECT count(*) FROM pg_stat_activity
	WHERE wait_event = 'SyncRep'")" 1 "sessions waiting for the standby"
pg_own_start "$TEST_TMP/stby"
S_URL=$OWN_DATABASE_URL
wait "$W" || fail "the waiting commit failed"

say "kill -9 of the primary, promote the standby"
kill -KILL "$P_PID"
"$TANDEM_ROOT/scripts/pg" promote "$TEST_TMP/stby" ||
	fail "scripts/pg promote failed"
expect_eq "$(proj_psql "$S_URL" "SELECT pg_is_in_recovery()")" f "promoted"
expect_eq "$(proj_psql "$S_URL" "SELECT string_agg(x::text, ',' ORDER BY x) FROM t")" \
	1,2,4 "acknowledged commits on the new primary"
proj_psql "$S_URL" "INSERT INTO t VALUES (5)"
out=$("$TANDEM_ROOT/scripts/pg" promote "$TEST_TMP/stby" 2>&1) &&
	fail "a primary was promoted again"
[[ $out == *"not a standby"* ]] || fail "second promote: $out"

say "an asynchronous standby of the new primary"
pg_own_standby "$TEST_TMP/stby" "$TEST_TMP/stby2"
S2_URL=$OWN_DATABASE_URL
expect_eq "$(proj_psql "$S_URL" "SELECT sync_state FROM pg_stat_replication
	WHERE application_name = 'tandem_standby_stby2'")" async "its sync state"
proj_psql "$S_URL" "INSERT INTO t VALUES (6)"
wait_for 10 test "$(proj_psql "$S2_URL" "SELECT max(x) FROM t")" = 6
say "ok"
