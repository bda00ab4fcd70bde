# tests/integration/proj_lib.sh - helpers of the projector tests
# (t0410-t0440), sourced after lib.sh:
#
#	. "$(dirname "$0")/proj_lib.sh"
#
#   proj_psql URL SQL [psql args]    run SQL on URL, print rows (unaligned)
#   proj_seed URL TAG ACCOUNTS STEPS append account traffic straight into
#                                    events in one transaction (see
#                                    proj_seed.sql): ACCOUNTS * (STEPS + 1)
#                                    events
#   proj_fold_diff EVENTS_URL [VIEWS_URL]
#                                    compare the view tables on VIEWS_URL
#                                    (default EVENTS_URL) with a fold of the
#                                    events on EVENTS_URL computed here in
#                                    SQL; print a diff and return 1 when
#                                    they differ
#   proj_fold_equal SECONDS EVENTS_URL [VIEWS_URL]
#                                    wait until they are equal, else fail
#                                    with the diff
#   proj_covered VIEWS_URL TOKEN     true when every view's checkpoint
#                                    covers TOKEN (an append or read token)
#   proj_holds VIEWS_URL TOKEN [EVENTS_URL]
#                                    true when every view's checkpoint
#                                    holds every event a reader at TOKEN (a
#                                    read token) holds: it covers TOKEN, or
#                                    the log on EVENTS_URL (default
#                                    VIEWS_URL) has no event between the
#                                    two. The projector commits no empty
#                                    window, so a snapshot taken after its
#                                    last commit is seldom covered
#   proj_snapshot URL                print pg_current_snapshot() of URL, a
#                                    read token of everything committed
#   proj_role URL                    the role GET /status gives (leader,
#                                    follower)
#   proj_one_leads URL_A URL_B       whether exactly one of the two leads
#   proj_pick_leader A B             wait until exactly one of the query
#                                    services A and B (start_service
#                                    prefixes) leads; L and F are their
#                                    prefixes, L_PID, F_PID, F_URL theirs
#   proj_hold URL APP                a psql session named APP on URL holds
#                                    a transaction that appended the
#                                    opening of account $HELD (new): no
#                                    commit until proj_hold_commit
#   proj_held_open APP               whether it still holds it
#   proj_hold_commit                 commit it, wait for the session's end
#   proj_load NAME COUNT ID...       COUNT deposits to the accounts ID...
#                                    through $CMD_URL, 8 at a time, in the
#                                    background; the statuses in
#                                    $TEST_TMP/NAME.codes, one a line.
#                                    COUNT 0: rounds of 400 until
#                                    proj_load_stop (a load that outlasts
#                                    the checks under it on any machine)
#   proj_load_done NAME              wait for it; fail unless every answer
#                                    was 201
#   proj_load_stop NAME              end a COUNT 0 load after its round,
#                                    then as proj_load_done
#
# shellcheck shell=bash

PROJ_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
PROJ_COVERS=$TANDEM_BUILD/tests/qry_token_covers

proj_psql()
{
	local url=$1 sql=$2

	shift 2
	psql -X -A -t -q -v ON_ERROR_STOP=1 -d "$url" -c "$sql" "$@"
}

proj_seed()
{
	psql -X -q -v ON_ERROR_STOP=1 -d "$1" -v tag="$2" -v accounts="$3" \
		-v steps="$4" -f "$PROJ_DIR/proj_seed.sql" >/dev/null ||
		fail "proj_seed: cannot append to $1"
}

proj_snapshot()
{
	proj_psql "$1" "SELECT pg_current_snapshot()"
}

# The money movements of the account streams, as the statement has them.
PROJ_MONEY="SELECT substr(stream_id, 9)::uuid AS account_id,
	stream_version AS version, global_position AS position,
	CASE event_type WHEN 'MoneyDeposited' THEN 'deposit'
		WHEN 'MoneyWithdrawn' THEN 'withdrawal'
		WHEN 'TransferSent' THEN 'transfer_out'
		ELSE 'transfer_in' END AS kind,
	(data->>'amount')::bigint AS amount,
	(data->>'balance_after')::bigint AS balance_after,
	data->>'currency' AS currency,
	coalesce(data->>'to_account_id', data->>'from_account_id')::uuid
		AS counterparty,
	(data->>'transfer_id')::uuid AS transfer_id,
	data->>'reference' AS reference, recorded_at
FROM events WHERE stream_id LIKE 'account-%' AND event_type IN
	('MoneyDeposited', 'MoneyWithdrawn', 'TransferSent', 'TransferReceived')"

# proj_fold_sql VIEW: the fold of the events, in SQL, one text row each
proj_fold_sql()
{
	case $1 in
	statement)
		echo "SELECT concat_ws('|', account_id, version, position, kind,
			amount, balance_after, currency, counterparty,
			transfer_id, reference, recorded_at)
			FROM ($PROJ_MONEY) m ORDER BY account_id, version"
		;;
	daily)
		echo "SELECT concat_ws('|', (recorded_at AT TIME ZONE 'UTC')::date,
			currency,
			coalesce(sum(amount) FILTER (WHERE kind = 'deposit'), 0),
			count(*) FILTER (WHERE kind = 'deposit'),
			coalesce(sum(amount) FILTER (WHERE kind = 'withdrawal'), 0),
			count(*) FILTER (WHERE kind = 'withdrawal'),
			coalesce(sum(amount) FILTER (WHERE kind = 'transfer_out'), 0),
			count(*) FILTER (WHERE kind = 'transfer_out'))
			FROM ($PROJ_MONEY) m WHERE kind <> 'transfer_in'
			GROUP BY (recorded_at AT TIME ZONE 'UTC')::date, currency
			ORDER BY 1"
		;;
	accounts)
		# balance from the amounts, not from balance_after
		echo "WITH ev AS (SELECT stream_id, stream_version AS v,
				event_type AS t, data AS d
				FROM events WHERE stream_id LIKE 'account-%')
			SELECT concat_ws('|', substr(o.stream_id, 9)::uuid,
				o.d->>'owner', o.d->>'currency',
				coalesce(sum(CASE WHEN m.t IN ('MoneyDeposited',
					'TransferReceived') THEN (m.d->>'amount')::bigint
					WHEN m.t IN ('MoneyWithdrawn', 'TransferSent')
					THEN -(m.d->>'amount')::bigint END), 0),
				(o.d->>'overdraft_limit')::bigint,
				CASE WHEN bool_or(m.t = 'AccountClosed')
					THEN 'closed' ELSE 'open' END,
				max(m.v))
			FROM ev o JOIN ev m ON m.stream_id = o.stream_id
			WHERE o.t = 'AccountOpened'
			GROUP BY o.stream_id, o.d ORDER BY 1"
		;;
	esac
}

# proj_view_sql VIEW: the view's table, in the same shape
proj_view_sql()
{
	case $1 in
	statement)
		echo "SELECT concat_ws('|', account_id, version, position, kind,
			amount, balance_after, currency, counterparty,
			transfer_id, reference, recorded_at)
			FROM view_statement ORDER BY account_id, version"
		;;
	daily)
		echo "SELECT concat_ws('|', day, currency, deposits_sum,
			deposits_count, withdrawals_sum, withdrawals_count,
			transfers_sum, transfers_count) FROM view_daily ORDER BY 1"
		;;
	accounts)
		echo "SELECT concat_ws('|', account_id, owner, currency, balance,
			overdraft_limit, status, version)
			FROM view_accounts ORDER BY 1"
		;;
	esac
}

proj_fold_diff()
{
	local ev=$1 vw=${2:-$1} v rc=0 d=$TEST_TMP/.proj-fold

	mkdir -p "$d"
	for v in accounts statement daily; do
		# one snapshot for the views, so that they are read together
		proj_psql "$ev" "$(proj_fold_sql $v)" >"$d/$v.fold" ||
			return 2
		proj_psql "$vw" "$(proj_view_sql $v)" >"$d/$v.view" ||
			return 2
		if ! diff -u "$d/$v.fold" "$d/$v.view" >"$d/$v.diff"; then
			echo "view $v differs from the fold" \
				"($(grep -c . "$d/$v.fold") rows folded," \
				"$(grep -c . "$d/$v.view") in the view):"
			head -n 20 "$d/$v.diff"
			rc=1
		fi
	done
	return $rc
}

proj_fold_equal()
{
	local secs=$1 end out

	shift
	end=$(($(_lib_now_ms) + secs * 1000))
	while :; do
		if out=$(proj_fold_diff "$@" 2>&1); then
			return 0
		fi
		if [ "$(_lib_now_ms)" -ge "$end" ]; then
			printf '%s\n' "$out" >&2
			fail "the views did not equal the fold within $secs s"
		fi
		sleep 0.2
	done
}

proj_covered()
{
	local url=$1 token=$2 pos

	[ -x "$PROJ_COVERS" ] || fail "no $PROJ_COVERS: build it with make"
	while read -r pos; do
		[ "$("$PROJ_COVERS" "$pos" "$token")" = 1 ] || return 1
	done < <(proj_psql "$url" "SELECT position FROM projection_checkpoints")
	return 0
}

proj_holds()
{
	local url=$1 token=$2 events=${3:-$1} pos

	[ -x "$PROJ_COVERS" ] || fail "no $PROJ_COVERS: build it with make"
	while read -r pos; do
		[ "$("$PROJ_COVERS" "$pos" "$token")" = 1 ] && continue
		# a mid-window checkpoint: its read goes on
		case $pos in */*) return 1 ;; esac
		[ "$(proj_psql "$events" "SELECT count(*) FROM events
			WHERE pg_visible_in_snapshot(transaction_id, '$token')
			AND NOT pg_visible_in_snapshot(transaction_id,
				'$pos')")" = 0 ] || return 1
	done < <(proj_psql "$url" "SELECT position FROM projection_checkpoints")
	return 0
}

proj_held_open()
{
	[ -n "$(psql_q "SELECT backend_xid FROM pg_stat_activity
		WHERE application_name = '$1'")" ]
}

proj_hold()
{
	HELD=$(psql_q "SELECT gen_random_uuid()")
	mkfifo "$TEST_TMP/held.in"
	PGAPPNAME=$2 psql -X -q -v ON_ERROR_STOP=1 -d "$1" \
		<"$TEST_TMP/held.in" >"$TEST_TMP/held.out" 2>&1 &
	PROJ_HELD_PID=$!
	track_pid "$PROJ_HELD_PID"
	exec 3>"$TEST_TMP/held.in"
	echo "BEGIN;
	INSERT INTO events (stream_id, stream_version, event_id, event_type, data)
	VALUES ('account-$HELD', 1, gen_random_uuid(), 'AccountOpened',
		'{\"account_id\": \"$HELD\", \"owner\": \"held\",
		  \"currency\": \"EUR\", \"overdraft_limit\": 0}');" >&3
	wait_for 10 proj_held_open "$2"
}

proj_hold_commit()
{
	echo "COMMIT;" >&3
	exec 3>&-
	wait "$PROJ_HELD_PID" || fail "psql: $(cat "$TEST_TMP/held.out")"
}

proj_role()
{
	curl -sS --max-time 5 "$1/status" | jq -r .role
}

proj_one_leads()
{
	case "$(proj_role "$1") $(proj_role "$2")" in
	"leader follower" | "follower leader") return 0 ;;
	esac
	return 1
}

proj_pick_leader()
{
	local a_url b_url

	eval "a_url=\$${1}_URL b_url=\$${2}_URL"
	wait_for 10 proj_one_leads "$a_url" "$b_url"
	if [ "$(proj_role "$a_url")" = leader ]; then
		L=$1 F=$2
	else
		L=$2 F=$1
	fi
	eval "L_PID=\$${L}_PID F_PID=\$${F}_PID F_URL=\$${F}_URL"
}

proj_load()
{
	local name=$1 count=$2 conf=$TEST_TMP/$1.conf n

	shift 2
	: >"$conf"
	for n in $(seq 1 "$((count > 0 ? count : 400))"); do
		[ "$n" -eq 1 ] || echo next >>"$conf"
		printf 'url = "%s/accounts/%s/deposits"\ndata = "{\\"amount\\":%d}"\n' \
			"$CMD_URL" "${@:$((RANDOM % $# + 1)):1}" $((n % 89 + 1)) >>"$conf"
		printf 'header = "Content-Type: application/json"\noutput = "/dev/null"\nwrite-out = "%%{http_code}\\n"\n' >>"$conf"
	done
	with_auth "$conf"
	rm -f "$TEST_TMP/$name.stop"
	: >"$TEST_TMP/$name.codes"
	(
		# COUNT 0: rounds of 400 until proj_load_stop (200 at most)
		for n in $(seq 1 "$((count > 0 ? 1 : 200))"); do
			[ ! -e "$TEST_TMP/$name.stop" ] || exit 0
			curl -q -s --parallel --parallel-max 8 --max-time 120 \
				--config "$conf" >>"$TEST_TMP/$name.codes" \
				2>>"$TEST_TMP/$name.err" || exit 1
		done
	) &
	PROJ_LOAD_PID=$!
	track_pid "$PROJ_LOAD_PID"
}

proj_load_done()
{
	wait "$PROJ_LOAD_PID" || fail "curl: $(tail -3 "$TEST_TMP/$1.err")"
	_proj_load_check "$1"
}

proj_load_stop()
{
	touch "$TEST_TMP/$1.stop"
	proj_load_done "$1"
}

_proj_load_check()
{
	local bad

	bad=$(grep -vx 201 "$TEST_TMP/$1.codes" | sort | uniq -c || true)
	[ -z "$bad" ] || fail "commands answered other than 201: $bad"
}
