#!/usr/bin/env bash
# t0831-memory-rss.sh - what one account costs a query service's memory
# (the figure README gives for sizing MEMORY_VIEW_MAX_MB): VmRSS of a
# follower (it feeds only the in-memory view) before and after N accounts
# (an AccountOpened and a MoneyDeposited each) come through the log, and
# again after a restart that loads them from view_accounts. Prints both
# figures per account and what the view counts against the cap, and
# fails past 2,000 bytes an account (the view's entries are some 300).
#   MEMORY_RSS_N=1000000 TESTS=t0831 make integration   (default 10,000)
set -eu -o pipefail
# shellcheck source-path=SCRIPTDIR source=lib.sh
. "$(dirname "$0")/lib.sh"

N=${MEMORY_RSS_N:-10000}
MAX_PER_ACCOUNT=2000
# AddressSanitizer's build (make asan) pads every allocation and keeps
# what is freed in quarantine: about 6,800 bytes an account after the
# fold there, so a bound of its own for it
if grep -q __asan_init "$TANDEM_BIN/query-service"; then
	MAX_PER_ACCOUNT=12000
fi

migrate_db
start_service LEAD query-service
start_service MEM query-service
# held(URL, N): the view of URL holds N accounts
held()
{
	http GET "$1/status"
	expect_status 200
	expect_json .memory_accounts "$2"
}
rss_kb()
{
	awk '$1 == "VmRSS:" { print $2 }' "/proc/$1/status"
}
wait_for 30 held "$MEM_URL" 0
http GET "$MEM_URL/status"
expect_json .role follower
rss0=$(rss_kb "$MEM_PID")

say "$N accounts into the log"
psql_q "
INSERT INTO events (stream_id, stream_version, event_id, event_type, data)
SELECT 'account-' || u, v, gen_random_uuid(),
	CASE v WHEN 1 THEN 'AccountOpened' ELSE 'MoneyDeposited' END,
	CASE v WHEN 1 THEN jsonb_build_object('account_id', u,
		'owner', 'owner-' || (i % 1000), 'currency', 'EUR',
		'overdraft_limit', 0)
	ELSE jsonb_build_object('account_id', u, 'amount', 100 + i,
		'balance_after', 100 + i, 'currency', 'EUR') END
FROM (SELECT gen_random_uuid()::text AS u, i
      FROM generate_series(1, $N) i) s, (VALUES (1), (2)) vv(v)
ORDER BY i, v" >/dev/null
wait_for 600 held "$MEM_URL" "$N"
rss1=$(rss_kb "$MEM_PID")
http GET "$MEM_URL/status"
counted=$(jq -r .memory_bytes <<<"$HTTP_BODY")

say "restart: the view loads from view_accounts"
projected()
{
	[ "$(psql_q "SELECT count(*) FROM view_accounts")" = "$N" ]
}
wait_for 600 projected
stop_pid "$MEM_PID"
start_service MEM query-service
wait_for 600 held "$MEM_URL" "$N"
rss2=$(rss_kb "$MEM_PID")

fold=$(((rss1 - rss0) * 1024 / N))
load=$(((rss2 - rss0) * 1024 / N))
say "N=$N: VmRSS ${rss0} kB empty, ${rss1} kB after the fold" \
	"(${fold} B an account), ${rss2} kB after a load (${load} B an" \
	"account); the cap counts $((counted / N)) B an account"
[ "$fold" -le "$MAX_PER_ACCOUNT" ] ||
	fail "$fold bytes an account after the fold"
[ "$load" -le "$MAX_PER_ACCOUNT" ] ||
	fail "$load bytes an account after a load"
