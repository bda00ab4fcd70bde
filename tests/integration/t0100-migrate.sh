#!/usr/bin/env bash
# t0100-migrate.sh - bin/migrate applies each file once, in name order, each
# in its own transaction; refuses edited or missing applied files; is safe
# when several replicas start at once.
set -eu -o pipefail
. "$(dirname "$0")/lib.sh"

MIGRATE=$TANDEM_BIN/migrate
SRC=$TANDEM_ROOT/migrations
export MIGRATIONS_DIR=$SRC
unset LOG_LEVEL

# The shipped files, in the order bin/migrate must apply them.
files=$(for f in "$SRC"/*.sql; do basename "$f"; done |
	grep -E '^[0-9]{4}_[a-z0-9_]+\.sql$' | LC_ALL=C sort)
nfiles=$(printf '%s\n' "$files" | wc -l)
first=$(printf '%s\n' "$files" | head -n 1)
[ -n "$first" ] || fail "no migrations in '$SRC'"

# sql URL SQL: one value per row, fields separated by |
sql()
{
	psql -X -At -q -v ON_ERROR_STOP=1 "$1" -c "$2"
}

# contains TEXT PATTERN MSG
contains()
{
	case $1 in
	*"$2"*) ;;
	*) fail "$3: expected '$2' in: $1" ;;
	esac
}

# not_contains TEXT PATTERN MSG
not_contains()
{
	case $1 in
	*"$2"*) fail "$3: unexpected '$2' in: $1" ;;
	esac
}

applied_names()
{
	sql "$1" "SELECT name FROM schema_migrations ORDER BY name"
}

db=$(new_db "${PGDATABASE}_main")

# --status on an empty database: everything pending, nothing created.
out=$(DATABASE_URL=$db "$MIGRATE" --status) ||
	fail "--status on an empty database exited non-zero"
expect_eq "$out" "$(printf '%s\n' "$files" | sed 's/^/pending /')" \
	"--status before the first run"
expect_eq "$(sql "$db" "SELECT to_regclass('schema_migrations') IS NULL")" \
	t "--status must not create schema_migrations"

# First run: every file, in order, one log line each.
err=$(DATABASE_URL=$db "$MIGRATE" 2>&1 >/dev/null) ||
	fail "first run exited non-zero: $err"
expect_eq "$(applied_names "$db")" "$files" "applied after the first run"
expect_eq "$(printf '%s\n' "$err" | grep -c '"event":"migration_applied"')" \
	"$nfiles" "one migration_applied log line per file"
expect_eq "$(printf '%s\n' "$err" | grep '"event":"migration_applied"' |
	sed 's/.*"name":"\([^"]*\)".*/\1/')" "$files" \
	"files applied in name order"
contains "$err" '"event":"migrate_done"' "summary line"
expect_eq "$(sql "$db" "SELECT count(*) FROM schema_migrations
	WHERE checksum !~ '^[0-9a-f]{64}\$'")" 0 "checksums are SHA-256 hex"
expect_eq "$(sql "$db" "SELECT checksum FROM schema_migrations
	WHERE name = '$first'")" \
	"$(sha256sum <"$SRC/$first" | cut -d' ' -f1)" \
	"checksum of '$first' is the SHA-256 of its bytes"
expect_eq "$(sql "$db" "SELECT to_regclass('events') IS NOT NULL")" t \
	"events table created"
before=$(sql "$db" "SELECT name, applied_at FROM schema_migrations
	ORDER BY name")

# Second run: nothing to do.
err=$(DATABASE_URL=$db "$MIGRATE" 2>&1 >/dev/null) ||
	fail "second run exited non-zero: $err"
not_contains "$err" migration_applied "second run applied something"
contains "$err" '"applied":0' "second run summary"
expect_eq "$(sql "$db" "SELECT name, applied_at FROM schema_migrations
	ORDER BY name")" "$before" "second run changed schema_migrations"

# --status lists them as applied, with a timestamp.
out=$(DATABASE_URL=$db "$MIGRATE" --status) || fail "--status exited non-zero"
expect_eq "$(printf '%s\n' "$out" | awk '{print $1, $2}')" \
	"$(printf '%s\n' "$files" | sed 's/^/applied /')" "--status after runs"
expect_eq "$(printf '%s\n' "$out" |
	grep -cE '^applied [^ ]+ [0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9:.]+Z$')" \
	"$nfiles" "--status lines carry applied_at"

# An applied file edited afterwards: refused, nothing new applied, not even
# a pending file that sorts after it.
edited=$TEST_TMP/edited
cp -r "$SRC" "$edited"
printf '\n-- an innocent-looking edit\n' >>"$edited/$first"
printf 'CREATE TABLE t0100_never (id int);\n' >"$edited/9999_never.sql"
if err=$(MIGRATIONS_DIR=$edited DATABASE_URL=$db "$MIGRATE" 2>&1); then
	fail "an edited applied file was accepted: $err"
fi
contains "$err" "migrate: '$first' was edited after it was applied (checksum" \
	"refusal names the edited file"
expect_eq "$(applied_names "$db")" "$files" "nothing applied after a refusal"
expect_eq "$(sql "$db" "SELECT to_regclass('t0100_never') IS NULL")" t \
	"pending file applied despite the refusal"
if out=$(MIGRATIONS_DIR=$edited DATABASE_URL=$db "$MIGRATE" --status \
	2>/dev/null); then
	fail "--status exited 0 with an edited file"
fi
contains "$out" "edited $first " "--status shows the edited file"
contains "$out" "pending 9999_never.sql" "--status shows the pending file"

# An applied file gone from the directory: refused too.
gone=$TEST_TMP/gone
cp -r "$SRC" "$gone"
rm "$gone/$first"
printf 'CREATE TABLE t0100_never (id int);\n' >"$gone/9999_never.sql"
if err=$(MIGRATIONS_DIR=$gone DATABASE_URL=$db "$MIGRATE" 2>&1); then
	fail "a missing applied file was accepted: $err"
fi
contains "$err" "'$first' was applied at" "refusal names the missing file"
contains "$err" "is missing from" "refusal says it is missing"
expect_eq "$(sql "$db" "SELECT to_regclass('t0100_never') IS NULL")" t \
	"pending file applied despite a missing one"
if DATABASE_URL=$db MIGRATIONS_DIR=$gone "$MIGRATE" --status \
	>/dev/null 2>&1; then
	fail "--status exited 0 with a missing file"
fi

# A new file: pending, then applied once, in its own right; badly named
# files are ignored with a warning.
more=$TEST_TMP/more
cp -r "$SRC" "$more"
printf 'CREATE TABLE t0100_extra (id int);\nINSERT INTO t0100_extra VALUES (1), (2);\n' \
	>"$more/9000_t0100_extra.sql"
printf 'CREATE TABLE t0100_ignored (id int);\n' >"$more/9001-Ignored.sql"
printf 'not a migration\n' >"$more/README.md"
out=$(MIGRATIONS_DIR=$more DATABASE_URL=$db "$MIGRATE" --status 2>/dev/null) ||
	fail "--status with a pending file exited non-zero"
expect_eq "$(printf '%s\n' "$out" | tail -n 1)" "pending 9000_t0100_extra.sql" \
	"--status shows the new file as pending"
expect_eq "$(printf '%s\n' "$out" | grep -c '^applied ')" "$nfiles" \
	"--status still shows the others as applied"
err=$(MIGRATIONS_DIR=$more DATABASE_URL=$db "$MIGRATE" 2>&1) ||
	fail "applying a new file failed: $err"
contains "$err" '"event":"migration_ignored","name":"9001-Ignored.sql"' \
	"badly named file warned about"
expect_eq "$(printf '%s\n' "$err" | grep -c '"event":"migration_applied"')" 1 \
	"only the new file applied"
expect_eq "$(sql "$db" "SELECT count(*) FROM t0100_extra")" 2 \
	"the new file ran"
expect_eq "$(sql "$db" "SELECT to_regclass('t0100_ignored') IS NULL")" t \
	"badly named file applied"
expect_eq "$(applied_names "$db")" "$(printf '%s\n9000_t0100_extra.sql' \
	"$files")" "schema_migrations after the new file"
out=$(MIGRATIONS_DIR=$more DATABASE_URL=$db "$MIGRATE" --status 2>/dev/null)
contains "$out" "applied 9000_t0100_extra.sql " "--status after applying it"
MIGRATIONS_DIR=$more DATABASE_URL=$db "$MIGRATE" 2>/dev/null ||
	fail "re-run after the new file failed"
expect_eq "$(sql "$db" "SELECT count(*) FROM t0100_extra")" 2 \
	"the new file ran twice"

# A migration with an error leaves nothing of itself behind, and stops the
# run before later files.
printf 'CREATE TABLE t0100_broken (id int);\nINSERT INTO t0100_broken VALUES (1);\nSELECT no_such_column FROM t0100_broken;\n' \
	>"$more/9002_t0100_broken.sql"
printf 'CREATE TABLE t0100_after (id int);\n' >"$more/9003_t0100_after.sql"
if err=$(MIGRATIONS_DIR=$more DATABASE_URL=$db "$MIGRATE" 2>&1); then
	fail "a broken migration succeeded: $err"
fi
contains "$err" "migrate: cannot apply '9002_t0100_broken.sql': line 3:" \
	"error names the file and line"
contains "$err" no_such_column "error carries the server's message"
expect_eq "$(sql "$db" "SELECT count(*) FROM schema_migrations
	WHERE name IN ('9002_t0100_broken.sql', '9003_t0100_after.sql')")" 0 \
	"broken or later migration recorded"
expect_eq "$(sql "$db" "SELECT to_regclass('t0100_broken') IS NULL
	AND to_regclass('t0100_after') IS NULL")" t \
	"broken migration left a table behind"

# A file that commits on its own is reported, not recorded.
rm "$more/9002_t0100_broken.sql" "$more/9003_t0100_after.sql"
printf 'CREATE TABLE t0100_committed (id int);\nCOMMIT;\n' \
	>"$more/9004_t0100_commit.sql"
if err=$(MIGRATIONS_DIR=$more DATABASE_URL=$db "$MIGRATE" 2>&1); then
	fail "a migration with its own COMMIT succeeded: $err"
fi
contains "$err" "'9004_t0100_commit.sql': it ended the transaction itself" \
	"own COMMIT reported"
expect_eq "$(sql "$db" "SELECT count(*) FROM schema_migrations
	WHERE name = '9004_t0100_commit.sql'")" 0 "own COMMIT recorded"

# Four replicas starting at once on an empty database.
race=$(new_db "${PGDATABASE}_race")
pids=
for i in 1 2 3 4; do
	DATABASE_URL=$race "$MIGRATE" 2>"$TEST_TMP/race$i.log" &
	track_pid $!
	pids="$pids $!"
done
i=0
for pid in $pids; do
	i=$((i + 1))
	wait "$pid" || fail "concurrent run $i failed: $(cat "$TEST_TMP/race$i.log")"
done
expect_eq "$(applied_names "$race")" "$files" \
	"each file exactly once after concurrent runs"
expect_eq "$(cat "$TEST_TMP"/race?.log | grep -c '"event":"migration_applied"')" \
	"$nfiles" "each file applied by exactly one run"

# Default MIGRATIONS_DIR: <binary's dir>/../migrations.
inst=$TEST_TMP/inst
mkdir -p "$inst/bin" "$inst/migrations"
cp "$MIGRATE" "$inst/bin/migrate"
printf 'SELECT 1;\n' >"$inst/migrations/0001_only.sql"
out=$(cd / && env -u MIGRATIONS_DIR DATABASE_URL="$(new_db "${PGDATABASE}_inst")" \
	"$inst/bin/migrate" --status) || fail "--status with the default dir"
expect_eq "$out" "pending 0001_only.sql" "default dir beside the binary"

# Command line and environment.
out=$("$MIGRATE" --help) || fail "--help exited non-zero"
contains "$out" DATABASE_URL "--help lists DATABASE_URL"
contains "$out" MIGRATIONS_DIR "--help lists MIGRATIONS_DIR"
contains "$out" --status "--help mentions --status"
out=$("$MIGRATE" --version) || fail "--version exited non-zero"
contains "$out" migrate "--version"
if err=$(env -u DATABASE_URL "$MIGRATE" 2>&1); then
	fail "ran without DATABASE_URL"
fi
contains "$err" DATABASE_URL "missing DATABASE_URL named"
if err=$(DATABASE_URL=$db LOG_LEVEL=loud "$MIGRATE" 2>&1); then
	fail "ran with a bad LOG_LEVEL"
fi
contains "$err" LOG_LEVEL "bad LOG_LEVEL named"
if DATABASE_URL=$db "$MIGRATE" --bogus >/dev/null 2>&1; then
	fail "accepted an unknown argument"
fi
if err=$(DATABASE_URL=$db MIGRATIONS_DIR=$TEST_TMP/nowhere "$MIGRATE" 2>&1); then
	fail "ran with a missing MIGRATIONS_DIR"
fi
contains "$err" "$TEST_TMP/nowhere" "missing MIGRATIONS_DIR named"
if err=$(DATABASE_URL='postgresql://tandem@127.0.0.1:1/none?connect_timeout=2' \
	"$MIGRATE" 2>&1); then
	fail "ran against an unreachable database"
fi
contains "$err" "database unreachable" "unreachable database reported"
