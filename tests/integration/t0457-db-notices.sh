#!/usr/bin/env bash
# t0457-db-notices.sh - libpq's notices and warnings reach stderr only as
# JSON log lines, on every connection of bin/migrate, the command
# service, the query service and `query-service rebuild`.
#
# The test database carries a setting that the server refuses at every
# session start (ALTER DATABASE ... SET default_text_search_config to a
# configuration that does not exist), so every connection, its handshake
# included, gets a WARNING. A migration raises a WARNING of its own, and
# every session of the services is terminated under them (the server's
# FATAL on an idle connection). Then every line each program wrote is a
# JSON object, and the warnings are among them as "db_notice" lines at
# level "warn".
set -eu -o pipefail
. "$(dirname "$0")/lib.sh"

WARN='invalid value for parameter "default_text_search_config"'

# all_json LOG NAME: every line of LOG is a JSON object
all_json()
{
	local bad

	[ -s "$1" ] || fail "$2 wrote nothing to $1"
	bad=$(jq -R -r 'select((try fromjson catch null) | type != "object")' \
		"$1") || fail "jq failed on $1"
	[ -z "$bad" ] || fail "$2 wrote lines that are not JSON: $bad"
}

# has_notice LOG NAME LEVEL TEXT: a db_notice line at LEVEL whose
# message contains TEXT
has_notice()
{
	jq -R -n -e --arg l "$3" --arg t "$4" '[inputs |
		(try fromjson catch {}) | select(.event == "db_notice" and
		.level == $l and (.message | type) == "string" and
		(.message | contains($t)))] | length > 0' "$1" >/dev/null || fail "$2: no db_notice at level $3 with '$4'" \
		"in $1: $(tail -n 5 "$1")"
}

psql_q "ALTER DATABASE \"$PGDATABASE\"
	SET default_text_search_config = 'pg_catalog.t0457_none'" 2>/dev/null
# the warning is real: psql, whose notices go to stderr as text, shows it
psql_q "SELECT 1" 2>&1 >/dev/null | grep -qF "$WARN" ||
	fail "a new session does not get the warning"

say "bin/migrate: the session start's warning and a migration's own"
mkdir "$TEST_TMP/migrations"
cp "$TANDEM_ROOT"/migrations/*.sql "$TEST_TMP/migrations/"
echo "DO \$\$ BEGIN RAISE WARNING 't0457 migration warning'; END \$\$;" \
	>"$TEST_TMP/migrations/9000_t0457_warning.sql"
rc=0
MIGRATIONS_DIR=$TEST_TMP/migrations "$TANDEM_BIN/migrate" \
	>"$TEST_TMP/migrate.out" 2>"$TEST_TMP/migrate.log" || rc=$?
[ "$rc" -eq 0 ] || fail "migrate exited $rc: $(cat "$TEST_TMP/migrate.log")"
[ ! -s "$TEST_TMP/migrate.out" ] ||
	fail "migrate wrote to stdout: $(cat "$TEST_TMP/migrate.out")"
all_json "$TEST_TMP/migrate.log" migrate
has_notice "$TEST_TMP/migrate.log" migrate warn "$WARN"
has_notice "$TEST_TMP/migrate.log" migrate warn "t0457 migration warning"

say "the services, their connections and their reconnections"
start_service CMD command-service DB_POOL_SIZE=2
start_service QRY query-service POLL_INTERVAL_MS=50
http POST "$CMD_URL/accounts" '{"owner":"t0457","currency":"EUR"}'
expect_status 201
A=$(jq -r .account_id <<<"$HTTP_BODY")
http POST "$CMD_URL/accounts/$A/deposits" '{"amount":5}'
expect_status 201
TOKEN=$(jq -r .position <<<"$HTTP_BODY")
http GET "$QRY_URL/accounts/$A" "" -H "X-Min-Position: $TOKEN"
expect_status 200
http GET "$QRY_URL/status"
expect_status 200
http GET "$CMD_URL/ready"
expect_status 200
http GET "$QRY_URL/ready"
expect_status 200

say "terminate every session of the services"
n=$(psql_q "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity
	WHERE datname = current_database() AND pid <> pg_backend_pid()" \
	2>/dev/null)
[ "$n" -gt 0 ] || fail "no session to terminate"
# they come back by themselves: a deposit goes through and is read
deposit_read()
{
	local t

	t=$(curl -sf --max-time 5 -H 'Content-Type: application/json' \
		-d '{"amount":1}' "$CMD_URL/accounts/$A/deposits" |
		jq -r .position) || return 1
	curl -sf --max-time 5 -H "X-Min-Position: $t" \
		"$QRY_URL/accounts/$A" >/dev/null
}
wait_for 30 deposit_read
http GET "$QRY_URL/status"
expect_status 200
http GET "$QRY_URL/ready"
expect_status 200

say "query-service rebuild"
rc=0
"$TANDEM_BIN/query-service" rebuild >"$TEST_TMP/rebuild.out" \
	2>"$TEST_TMP/rebuild.log" || rc=$?
[ "$rc" -eq 0 ] || fail "rebuild exited $rc: $(tail -5 "$TEST_TMP/rebuild.log")"
all_json "$TEST_TMP/rebuild.log" "query-service rebuild"
has_notice "$TEST_TMP/rebuild.log" "query-service rebuild" warn "$WARN"

for s in CMD QRY; do
	all_json "$TEST_TMP/$s.log" "$s"
	has_notice "$TEST_TMP/$s.log" "$s" warn "$WARN"
done
