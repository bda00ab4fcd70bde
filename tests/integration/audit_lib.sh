# tests/integration/audit_lib.sh - helpers of the audit view's tests
# (t0640, t0641), sourced after lib.sh:
#
#   audit_meta SUB CMD CORR          metadata as the command service writes
#                                    it: principal {sub, iss, roles},
#                                    command_id, causation_id, correlation_id
#   audit_append JSON                one tandem_append() call (the command
#                                    service's append function, one command):
#                                    JSON is its argument; prints the last
#                                    position
#   audit_append_batch JSON          one tandem_append_batch() call (group
#                                    commit: several commands, one statement)
#   audit_pages SUB LIMIT            page through GET /audit/principals/SUB/
#                                    actions LIMIT at a time, checking that
#                                    positions only grow, pages hold at
#                                    most LIMIT items, and `next` is the
#                                    last item's position on full pages,
#                                    else null; prints the items, one JSON
#                                    line each
#   audit_fold_sql                   SQL: the fold of the events table the
#                                    view should equal, one row per
#                                    (sub, item): {"sub", "item"} (the
#                                    item without its streams, which
#                                    audit_items_check derives)
#   audit_fold_lines                 that fold, one line each, keys sorted,
#                                    lines sorted
#   audit_subs                       the subs the view lists, from the
#                                    events table, one a line
#   audit_view_lines SUBS...         the view's answer in the same shape,
#                                    for the subs given (default: all of
#                                    audit_subs)
#   audit_items_check                stdin: items; fails unless each item's
#                                    streams are its events' streams, once
#                                    each, in order
#
# shellcheck shell=bash

audit_meta()
{
	jq -cn --arg s "$1" --arg c "$2" --arg r "$3" '{principal: {sub: $s,
		iss: "https://idp.test", roles: ["manager"]}, command_id: $c,
		causation_id: $c, correlation_id: $r}'
}

audit_append()
{
	psql_q "SELECT last_position FROM tandem_append(\$tj\$$1\$tj\$::jsonb)"
}

audit_append_batch()
{
	psql_q "SELECT count(*) FILTER (WHERE error_code IS NULL)
		FROM tandem_append_batch(\$tj\$$1\$tj\$::jsonb)"
}

# percent-encode a path segment
_audit_seg()
{
	jq -rn --arg s "$1" '$s | @uri'
}

audit_pages()
{
	local sub=$1 limit=$2 after="" pages=0 last=-1 out head n

	while :; do
		http GET "$QRY_URL/audit/principals/$(_audit_seg "$sub")/actions?limit=$limit${after:+&after=$after}"
		expect_status 200
		# one jq a page: "ok N LAST NEXT", then the items
		out=$(jq -r --argjson last "$last" --argjson limit "$limit" '
			[.items[].position] as $p | ($p | length) as $n
			| if $p == ($p | sort) and ($p | all(. > $last))
				and $n <= $limit and (.next == null
				or (.next == ($p[-1] | tostring) and $n == $limit))
			then "ok \($n) \(if $n > 0 then $p[-1] else $last end)" +
				" \(.next // "")", (.items[] | tojson)
			else "bad" end' <<<"$HTTP_BODY")
		head=${out%%$'\n'*}
		[ "${head%% *}" = ok ] ||
			fail "a page out of order, over $limit, or a wrong next: $HTTP_BODY"
		read -r _ n last after <<<"$head"
		[ "$n" -eq 0 ] || printf '%s\n' "${out#*$'\n'}"
		[ -n "$after" ] || break
		pages=$((pages + 1))
		[ "$pages" -lt 100000 ] || fail "paging does not end"
	done
}

audit_fold_sql()
{
	cat <<'EOF'
WITH e AS (
	SELECT global_position AS p, stream_id, stream_version AS v,
		event_type AS t, data, recorded_at,
		metadata->'principal'->>'sub' AS sub,
		CASE WHEN jsonb_typeof(metadata->'command_id') = 'string'
			AND octet_length(metadata->>'command_id') BETWEEN 1 AND 256
			THEN metadata->>'command_id' END AS cmd,
		CASE WHEN jsonb_typeof(metadata->'correlation_id') = 'string'
			AND octet_length(metadata->>'correlation_id') BETWEEN 1 AND 256
			THEN metadata->>'correlation_id' END AS corr
	FROM events
	WHERE jsonb_typeof(metadata->'principal') = 'object'
	AND jsonb_typeof(metadata->'principal'->'sub') = 'string'
	AND octet_length(metadata->'principal'->>'sub') BETWEEN 1 AND 256
), g AS (
	SELECT *, min(p) OVER (PARTITION BY sub, cmd,
		CASE WHEN cmd IS NULL THEN p END) AS first
	FROM e
)
SELECT jsonb_build_object('sub', sub, 'item', jsonb_build_object(
	'position', first,
	'recorded_at', (array_agg(to_char(recorded_at AT TIME ZONE 'UTC',
		'YYYY-MM-DD"T"HH24:MI:SS.US"Z"') ORDER BY p))[1],
	'command_id', min(cmd),
	'correlation_id', (array_agg(corr ORDER BY p))[1],
	'events', jsonb_agg(jsonb_build_object('position', p,
		'stream', stream_id, 'version', v, 'type', t,
		'amount', CASE WHEN stream_id LIKE 'account-%'
			AND jsonb_typeof(data->'amount') = 'number'
			AND data->>'amount' ~ '^-?[0-9]{1,18}$'
			THEN (data->>'amount')::bigint END) ORDER BY p)))::text
FROM g GROUP BY sub, first
EOF
}

audit_fold_lines()
{
	psql_q "$(audit_fold_sql)" | jq -cS . | LC_ALL=C sort
}

audit_subs()
{
	psql_q "SELECT DISTINCT metadata->'principal'->>'sub' FROM events
		WHERE jsonb_typeof(metadata->'principal') = 'object'
		AND jsonb_typeof(metadata->'principal'->'sub') = 'string'
		AND octet_length(metadata->'principal'->>'sub') BETWEEN 1 AND 256
		ORDER BY 1"
}

audit_view_lines()
{
	local sub subs=("$@")

	[ $# -gt 0 ] || mapfile -t subs < <(audit_subs)
	for sub in "${subs[@]}"; do
		audit_pages "$sub" 1000 |
			jq -cS --arg s "$sub" '{sub: $s, item: del(.streams)}'
	done | LC_ALL=C sort
}

audit_items_check()
{
	jq -e -s 'all(.[]; .streams == (reduce .events[].stream as $s ([];
		if any(.[]; . == $s) then . else . + [$s] end)))' >/dev/null ||
		fail "an item's streams are not its events' streams"
}
