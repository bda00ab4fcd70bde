#!/usr/bin/env bash
# t0431-rebuild-order.sh - a rebuild reads the log as its rows lie in the
# events table (a sequential scan) and puts the events back in position
# order, as far as each stream needs (qry_order.h, qry_rebuild.c); the
# rebuilt views equal the fold of the log whatever order the rows lie in:
#   1. rows shuffled within blocks of 100 (appends of concurrent
#      transactions): one read, in the table's order;
#   2. every 50th row lying 80,000 rows before its turn (rows written
#      into old pages): they wait for their turn, copied out of the chunks
#      they would otherwise hold (they lie in more chunks than a rebuild
#      holds, CHUNKS_HELD_MAX);
#   3. the second event of a stream lying after all the stream's later
#      events, beyond the reorder window: the rebuild reads the log again,
#      in position order;
# and, as the rows lie again in position order, a plain read once more.
set -eu -o pipefail
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/proj_lib.sh"

migrate_db
say "seed 150,750 events in 3 transactions"
for tag in a b c; do
	proj_seed "$DATABASE_URL" "$tag" 250 200
done
N=$(psql_q "SELECT count(*) FROM events")
expect_eq "$N" 150750 "events seeded"

# lay_out EXPR: the same rows (positions, transaction ids and all) written
# again, in the order of the SQL expression EXPR over global_position
lay_out()
{
	psql_q "BEGIN;
	CREATE TEMP TABLE keep ON COMMIT DROP AS SELECT * FROM events;
	ALTER TABLE events DISABLE TRIGGER events_append_only_truncate;
	TRUNCATE events;
	ALTER TABLE events ENABLE ALWAYS TRIGGER events_append_only_truncate;
	INSERT INTO events OVERRIDING SYSTEM VALUE
		SELECT * FROM keep ORDER BY $1, global_position;
	COMMIT"
	psql_q "VACUUM ANALYZE events"
	expect_eq "$(psql_q "SELECT count(*) FROM events")" "$N" "events kept"
}

# behind: rows lying after a row of a higher position
behind()
{
	psql_q "SELECT count(*) FROM (SELECT global_position AS p,
		max(global_position) OVER (ORDER BY ctid ROWS BETWEEN
		UNBOUNDED PRECEDING AND 1 PRECEDING) AS m FROM events) x
		WHERE m > p"
}

# rebuild NAME: rebuild every view, log in $TEST_TMP/NAME.log; the views
# must equal the fold
rebuild()
{
	"$TANDEM_BIN/query-service" rebuild 2>"$TEST_TMP/$1.log" ||
		fail "rebuild $1 failed: $(tail -5 "$TEST_TMP/$1.log")"
	proj_fold_equal 5 "$DATABASE_URL"
	expect_eq "$(psql_q "SELECT count(DISTINCT position) || ' ' ||
		(count(*) FILTER (WHERE stopped_error IS NOT NULL)) FROM projection_checkpoints")" \
		"1 0" "checkpoints agree, none stopped"
}

# loaded NAME KEY: the value of KEY in NAME's last rebuild_loaded line
loaded()
{
	grep '"event":"rebuild_loaded"' "$TEST_TMP/$1.log" | tail -1 |
		jq -r ".$2"
}

say "1. rows shuffled within blocks of 100"
lay_out "global_position / 100, md5(global_position::text)"
[ "$(behind)" -gt 10000 ] || fail "the rows lie in order: $(behind) behind"
rebuild shuffled
expect_eq "$(loaded shuffled ordered)" false "read in the table's order"
expect_eq "$(loaded shuffled events)" "$N" "events folded"
! grep -q rebuild_reread "$TEST_TMP/shuffled.log" ||
	fail "the log was read again: $(grep -m1 rebuild_out "$TEST_TMP/shuffled.log")"

say "2. every 50th row 80,000 rows early"
lay_out "CASE WHEN global_position % 50 = 0
	THEN global_position - 80000 ELSE global_position END"
rebuild early
expect_eq "$(loaded early ordered)" false "read in the table's order"
[ "$(loaded early copied_out)" -gt 0 ] ||
	fail "no waiting event was copied out: $(loaded early copied_out)"
! grep -q rebuild_reread "$TEST_TMP/early.log" ||
	fail "the log was read again"

say "3. a stream's second event after its later ones"
P=$(psql_q "SELECT min(global_position) FROM events
	WHERE stream_version = 2")
lay_out "CASE WHEN global_position = $P THEN 1e12 ELSE global_position END"
rebuild late
grep -q '"event":"rebuild_out_of_order","position":'"$P" "$TEST_TMP/late.log" ||
	fail "no rebuild_out_of_order for $P: $(grep -m2 rebuild_ "$TEST_TMP/late.log")"
grep -q '"event":"rebuild_reread"' "$TEST_TMP/late.log" ||
	fail "the log was not read again"
expect_eq "$(loaded late ordered)" true "read again in position order"
expect_eq "$(loaded late events)" "$N" "events folded"

say "in position order again"
lay_out "global_position"
expect_eq "$(behind)" 0 "rows behind"
rebuild plain
expect_eq "$(loaded plain ordered)" false "read in the table's order"
expect_eq "$(loaded plain copied_out)" 0 "events copied out"
