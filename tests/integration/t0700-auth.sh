#!/usr/bin/env bash
# t0700-auth.sh - who is asking (SPEC section 11), on both services and
# through the gateway:
#
# 1. Every route x every role (holder on its own account, manager,
#    auditor, service, operator, no token) answers what the access table
#    says: the route's success, 403 problem+json for a valid token without
#    the role, 401 with WWW-Authenticate for none. /health and /ready need
#    no token.
# 2. Bad tokens are 401 (expired, not yet valid, wrong audience, wrong
#    issuer, forged signature, alg none, HS256 signed with the public key,
#    unknown kid, another key under a known kid, no sub, a token in the
#    URL) and append nothing.
# 3. A holder reaches only its own accounts: another's account, statement
#    and owner list are 404 word for word as for one that does not exist;
#    its commands on another's account are 404 and its opening of an
#    account for another owner or with an overdraft is 403; the log holds
#    nothing of them.
# 4. Every event's metadata has the verified principal; X-Principal is
#    ignored. Idempotency-Keys are the principal's own.
# 5. Keys rotate on SIGHUP: a new key works after it, the old one until it
#    is dropped; a bad key file keeps the keys in use. AUTH_ROLES_CLAIM
#    takes a dotted path.
# 6. AUTH=off must be asked for: the service warns, /ready says so, every
#    request is the anonymous principal. Without a key file the services
#    refuse to start.
set -eu -o pipefail
. "$(dirname "$0")/lib.sh"

migrate_db
start_service CMD command-service
start_service QRY query-service

GEN=$TANDEM_ROOT/scripts/gateway
GW_DIR=$TEST_TMP/gw
GW_PORT=$(free_port)
"$GEN" conf "$GW_DIR" "$GW_PORT" "127.0.0.1:$CMD_PORT" "127.0.0.1:$QRY_PORT" ||
	fail "scripts/gateway conf failed"
"$GEN" exec "$GW_DIR" 2>"$GW_DIR/stderr.log" &
GW_PID=$!
track_pid "$GW_PID"
at_exit 'kill -TERM "$GW_PID" 2>/dev/null || true; sleep 0.3'
GW=http://127.0.0.1:$GW_PORT
wait_for 10 curl -fsS --max-time 2 -o /dev/null "$GW/health"

HOLDER=$(mint alice holder)
BOB=$(mint bob holder)
MANAGER=$(mint mia manager)
AUDITOR=$(mint audrey auditor)
SERVICE=$(mint svc-ledger service)
OPERATOR=$(mint olga operator)

events()
{
	psql_q "SELECT count(*) FROM events"
}

# open OWNER [AMOUNT]: an account of OWNER (opened by the manager) with
# AMOUNT (default 1000, 0: none) in it; prints its id
open()
{
	local id amount=${2:-1000}

	AS=$MANAGER http POST "$CMD_URL/accounts" \
		"{\"owner\":\"$1\",\"currency\":\"EUR\"}"
	expect_status 201
	id=$(jq -r .account_id <<<"$HTTP_BODY")
	if [ "$amount" -gt 0 ]; then
		AS=$MANAGER http POST "$CMD_URL/accounts/$id/deposits" \
			"{\"amount\":$amount}"
		expect_status 201
	fi
	printf '%s\n' "$id"
}

A=$(open alice)
B=$(open bob)
AS=$SERVICE http POST "$CMD_URL/streams/misc-1/events" \
	'{"expected_version":"any","events":[{"type":"Note","data":{"x":1}}]}'
expect_status 201
TOKEN=$(jq -r .position <<<"$HTTP_BODY")
# the views have it all before the reads below
AS=$MANAGER ryw "/accounts/$A"

# ---- 1. route x role ----

# The table: SIDE METHOD PATH BODY, then the answer of holder (alice, on
# her own account), manager, auditor, service, operator, no token. C is
# the command side, Q the query side, B both (/health, /ready, /metrics).
# {A}: alice's account; {C}: a fresh account of alice's, for each close.
ROWS=(
	"C|POST|/accounts|{\"owner\":\"alice\",\"currency\":\"EUR\"}|201 201 403 403 403 401"
	"C|POST|/accounts/{A}/deposits|{\"amount\":1}|201 201 403 403 403 401"
	"C|POST|/accounts/{A}/withdrawals|{\"amount\":1}|201 201 403 403 403 401"
	"C|POST|/accounts/{C}/close|{}|201 201 403 403 403 401"
	"C|POST|/accounts/{A}/overdraft-limit|{\"overdraft_limit\":100}|403 201 403 403 403 401"
	"C|POST|/transfers|{\"from\":\"{A}\",\"to\":\"$B\",\"amount\":1}|201 201 403 403 403 401"
	"C|POST|/streams/misc-2/events|{\"expected_version\":\"any\",\"events\":[{\"type\":\"Note\",\"data\":{}}]}|403 403 403 201 403 401"
	"Q|GET|/accounts/{A}||200 200 200 403 403 401"
	"Q|GET|/accounts/{A}/transactions||200 200 200 403 403 401"
	"Q|GET|/owners/alice/accounts||200 200 200 403 403 401"
	"Q|GET|/stats/daily||403 200 200 403 403 401"
	"Q|GET|/audit/large-transactions?min_amount=1||403 403 200 403 403 401"
	"Q|GET|/audit/principals/alice/actions||403 403 200 403 403 401"
	"Q|GET|/streams/misc-1||403 403 200 200 403 401"
	"Q|GET|/events||403 403 200 200 403 401"
	"Q|GET|/status||403 403 403 403 200 401"
	"B|GET|/metrics||403 403 403 403 200 401"
	"B|GET|/health||200 200 200 200 200 200"
	"B|GET|/ready||200 200 200 200 200 200"
)
ROLE_NAMES=(holder manager auditor service operator none)
ROLE_TOKENS=("$HOLDER" "$MANAGER" "$AUDITOR" "$SERVICE" "$OPERATOR" none)

# try BASE METHOD PATH BODY TOKEN WANT LABEL
try()
{
	local base=$1 method=$2 path=$3 body=$4 tok=$5 want=$6 label=$7

	AS=$tok http "$method" "$base$path" "$body"
	[ "$HTTP_STATUS" = "$want" ] ||
		fail "$label: expected $want, got $HTTP_STATUS:" \
			"$(_lib_short "$HTTP_BODY")"
	case $want in
	401)
		expect_header Content-Type application/problem+json
		expect_json .status 401
		expect_header WWW-Authenticate \
			'Bearer realm="tandem", error="invalid_token"'
		;;
	403)
		expect_header Content-Type application/problem+json
		expect_json .status 403
		[[ $(jq -r .detail <<<"$HTTP_BODY") == *"needs one of the roles"* ]] ||
			fail "$label: 403 detail names no role: $HTTP_BODY"
		;;
	esac
}

checked=0
for via in direct gateway; do
	say "every route x every role ($via)"
	for row in "${ROWS[@]}"; do
		IFS='|' read -r side method path body wants <<<"$row"
		read -r -a want <<<"$wants"
		bases=()
		if [ "$via" = gateway ]; then
			bases=("$GW")
		else
			case $side in
			C) bases=("$CMD_URL") ;;
			Q) bases=("$QRY_URL") ;;
			B) bases=("$CMD_URL" "$QRY_URL") ;;
			esac
		fi
		for base in "${bases[@]}"; do
			for i in "${!ROLE_NAMES[@]}"; do
				p=${path//\{A\}/$A}
				b=${body//\{A\}/$A}
				if [[ $p == *"{C}"* ]]; then
					p=${p//\{C\}/$(open alice 0)}
				fi
				try "$base" "$method" "$p" "$b" "${ROLE_TOKENS[$i]}" \
					"${want[$i]}" \
					"$via $method $path as ${ROLE_NAMES[$i]}"
				checked=$((checked + 1))
			done
		done
	done
done
say "$checked route x role answers checked"
[ "$checked" -ge 200 ] || fail "only $checked answers checked"

# ---- 2. bad tokens ----

say "bad tokens are 401 and append nothing"
"$TANDEM_BIN/tandem-token" keygen --alg ES256 --kid test-1 \
	--private "$TEST_TMP/other.pem" --jwks "$TEST_TMP/other.json" >/dev/null
"$TANDEM_BIN/tandem-token" keygen --alg RS256 --kid rsa-x \
	--private "$TEST_TMP/rsa-x.pem" --jwks "$TEST_TMP/rsa-x.json" >/dev/null
declare -A BAD=(
	[expired]=$(mint alice holder --ttl -120)
	[not_yet_valid]=$(mint alice holder --nbf-in 120)
	[issued_in_the_future]=$(mint alice holder --iat-in 120)
	[wrong_audience]=$("$TANDEM_BIN/tandem-token" mint --key "$AUTH_KEY" --kid test-1 \
		--sub alice --roles holder --iss "$AUTH_ISSUER" --aud other)
	[wrong_issuer]=$("$TANDEM_BIN/tandem-token" mint --key "$AUTH_KEY" --kid test-1 \
		--sub alice --roles holder --iss https://evil.test \
		--aud "$AUTH_AUDIENCE")
	[forged]=$(mint alice holder --tamper)
	[alg_none]=$(mint alice holder --alg-none)
	[hs256_public_key]=$(mint alice holder --hs256-public-pem)
	[unknown_kid]=$(mint alice holder --kid test-9)
	[other_key_known_kid]=$("$TANDEM_BIN/tandem-token" mint \
		--key "$TEST_TMP/other.pem" --kid test-1 --sub alice \
		--roles holder --iss "$AUTH_ISSUER" --aud "$AUTH_AUDIENCE")
	[unknown_rsa_key]=$("$TANDEM_BIN/tandem-token" mint \
		--key "$TEST_TMP/rsa-x.pem" --kid rsa-x --sub alice \
		--roles holder --iss "$AUTH_ISSUER" --aud "$AUTH_AUDIENCE")
	[no_sub]=$(mint alice holder --no-sub)
	[no_exp]=$(mint alice holder --no-exp)
	[garbage]=not.a.token
)
before=$(events)
for name in "${!BAD[@]}"; do
	for base in "$CMD_URL" "$GW"; do
		try "$base" POST "/accounts/$A/deposits" '{"amount":5}' \
			"${BAD[$name]}" 401 "deposit with a token $name"
	done
	for base in "$QRY_URL" "$GW"; do
		try "$base" GET "/accounts/$A" "" "${BAD[$name]}" 401 \
			"GET with a token $name"
	done
done
AS=none http GET "$QRY_URL/accounts/$A?access_token=$HOLDER"
expect_status 401
expect_text "URL"
AS=none http POST "$CMD_URL/accounts/$A/deposits?access_token=$HOLDER" \
	'{"amount":5}'
expect_status 401
AS=none http GET "$QRY_URL/accounts/$A" "" -H "Authorization: Basic YTpi"
expect_status 401
# two Authorization headers: which one would a proxy have checked? Neither.
for base in "$CMD_URL" "$QRY_URL" "$GW"; do
	AS=none http GET "$base/accounts/$A" "" \
		-H "Authorization: Bearer $HOLDER" -H "Authorization: Bearer $BOB"
	expect_status 400
	[ "$base" = "$GW" ] || expect_text "more than one Authorization header"
done
AS=none http POST "$CMD_URL/accounts/$A/deposits" '{"amount":5}' \
	-H "Authorization: Bearer $BOB" -H "Authorization: Bearer $HOLDER"
expect_status 400
expect_header Content-Type application/problem+json
expect_text "Authorization"
expect_eq "$(events)" "$before" "events after the refused requests"
# no token, nor its signature, in any log
for log in "$TEST_TMP"/CMD.log "$TEST_TMP"/QRY.log; do
	sig=${HOLDER##*.}
	! grep -qF "$sig" "$log" || fail "a token is in $log"
done

# ---- 3. a holder reaches only its own ----

say "a holder never sees nor moves another holder's accounts"
NOSUCH=7c3e1f2a-0b4d-4e5f-8a9b-1c2d3e4f5a6b
before=$(events)
for path in "/accounts/%s" "/accounts/%s/transactions"; do
	# shellcheck disable=SC2059
	AS=$HOLDER http GET "$QRY_URL$(printf "$path" "$B")"
	expect_status 404
	theirs=$(jq -c 'del(.instance)' <<<"$HTTP_BODY" | sed "s/$B/ID/g")
	# shellcheck disable=SC2059
	AS=$HOLDER http GET "$QRY_URL$(printf "$path" "$NOSUCH")"
	expect_status 404
	none=$(jq -c 'del(.instance)' <<<"$HTTP_BODY" | sed "s/$NOSUCH/ID/g")
	expect_eq "$theirs" "$none" "404 of another's $path and of no account"
done
AS=$HOLDER http GET "$QRY_URL/owners/bob/accounts"
expect_status 404
AS=$BOB http GET "$QRY_URL/owners/bob/accounts"
expect_status 200
expect_json '.items | length' 1
for route in deposits withdrawals; do
	AS=$HOLDER http POST "$CMD_URL/accounts/$B/$route" '{"amount":1}'
	expect_status 404
	theirs=$(jq -r .detail <<<"$HTTP_BODY" | sed "s/$B/ID/g")
	AS=$HOLDER http POST "$CMD_URL/accounts/$NOSUCH/$route" '{"amount":1}'
	expect_status 404
	expect_eq "$theirs" "$(jq -r .detail <<<"$HTTP_BODY" |
		sed "s/$NOSUCH/ID/g")" "404 of another's and of no account ($route)"
done
AS=$HOLDER http POST "$CMD_URL/accounts/$B/close" '{}' -H 'If-Match: "2"'
expect_status 404
AS=$HOLDER http POST "$CMD_URL/transfers" \
	"{\"from\":\"$B\",\"to\":\"$A\",\"amount\":1}"
expect_status 404
AS=$HOLDER http POST "$CMD_URL/accounts" '{"owner":"bob","currency":"EUR"}'
expect_status 403
AS=$HOLDER http POST "$CMD_URL/accounts" \
	'{"owner":"alice","currency":"EUR","overdraft_limit":1000000000000}'
expect_status 403
expect_eq "$(events)" "$before" "events after a holder's tries on another's"
# and to any open account, from its own
AS=$HOLDER http POST "$CMD_URL/transfers" \
	"{\"from\":\"$A\",\"to\":\"$B\",\"amount\":7}"
expect_status 201
# ... without learning the receiver's currency
AS=$MANAGER http POST "$CMD_URL/accounts" '{"owner":"bob","currency":"USD"}'
expect_status 201
BUSD=$(jq -r .account_id <<<"$HTTP_BODY")
AS=$HOLDER http POST "$CMD_URL/transfers" \
	"{\"from\":\"$A\",\"to\":\"$BUSD\",\"amount\":7}"
expect_status 409
expect_text "currency mismatch"
[[ $HTTP_BODY != *USD* ]] || fail "the receiver's currency is told: $HTTP_BODY"

say "answers to a principal are private to it"
for url in "$QRY_URL/accounts/$A" "$GW/accounts/$A" \
	"$QRY_URL/accounts/$A/transactions"; do
	AS=$HOLDER http GET "$url"
	expect_status 200
	expect_header Cache-Control "private, no-cache"
done
AS=$HOLDER http POST "$CMD_URL/accounts/$A/deposits" '{"amount":1}'
expect_status 201
expect_header Cache-Control "private, no-cache"
AS=none http GET "$QRY_URL/health"
expect_status 200
! has_header Cache-Control || fail "a public answer is private: /health"

# ---- 4. the principal in every event; keys are the principal's ----

say "events record the verified principal, X-Principal is ignored"
AS=$HOLDER http POST "$CMD_URL/accounts/$A/deposits" '{"amount":3}' \
	-H 'X-Principal: bank-admin'
expect_status 201
expect_eq "$(psql_q "SELECT metadata->'principal' FROM events
	WHERE stream_id = 'account-$A' ORDER BY stream_version DESC LIMIT 1")" \
	'{"iss": "https://tandem.test", "sub": "alice", "roles": ["holder"]}' \
	"the deposit's principal"
expect_eq "$(psql_q "SELECT count(*) FROM events
	WHERE metadata->'principal'->>'sub' IS NULL
	   OR metadata::text LIKE '%bank-admin%'")" 0 \
	"events without a principal, or with the header's"
AS=$SERVICE http POST "$CMD_URL/streams/misc-3/events" \
	'{"expected_version":"any","events":[{"type":"Note","data":{},"metadata":{"principal":{"sub":"bank-admin"}}}]}'
expect_status 201
expect_eq "$(psql_q "SELECT metadata->'principal'->>'sub' FROM events
	WHERE stream_id = 'misc-3'")" svc-ledger "a raw append's own principal"

say "Idempotency-Keys are the principal's own"
AS=$HOLDER http POST "$CMD_URL/accounts/$A/deposits" '{"amount":11}' \
	-H 'Idempotency-Key: shared-key'
expect_status 201
alice_pos=$(jq -r .position <<<"$HTTP_BODY")
AS=$BOB http POST "$CMD_URL/accounts/$B/deposits" '{"amount":11}' \
	-H 'Idempotency-Key: shared-key'
expect_status 201
[ "$(jq -r .position <<<"$HTTP_BODY")" != "$alice_pos" ] ||
	fail "bob got alice's stored answer"
expect_eq "$(has_header Idempotent-Replayed && echo yes || echo no)" no \
	"bob's answer is not a replay"
AS=$HOLDER http POST "$CMD_URL/accounts/$A/deposits" '{"amount":11}' \
	-H 'Idempotency-Key: shared-key'
expect_status 201
expect_json .position "$alice_pos"
expect_eq "$(psql_q "SELECT string_agg(sub, ',' ORDER BY sub)
	FROM idempotency_keys WHERE key = 'shared-key'")" alice,bob \
	"rows of the shared key"

# ---- 5. rotation ----

say "a second key works after SIGHUP, the first until it is dropped"
"$TANDEM_BIN/tandem-token" keygen --alg RS256 --kid test-2 --append \
	--private "$TEST_TMP/key2.pem" --jwks "$AUTH_JWKS_FILE" >/dev/null
NEW=$("$TANDEM_BIN/tandem-token" mint --key "$TEST_TMP/key2.pem" \
	--kid test-2 --sub mia --roles manager --iss "$AUTH_ISSUER" \
	--aud "$AUTH_AUDIENCE")
AS=$NEW http GET "$QRY_URL/accounts/$A"
expect_status 401
# reloaded: wait for the log line (SIGHUP is asynchronous)
reloaded()
{
	[ "$(grep -c '"auth_reloaded"' "$1")" -ge "$2" ]
}
kill -HUP "$CMD_PID" "$QRY_PID"
wait_for 10 reloaded "$TEST_TMP/CMD.log" 1
wait_for 10 reloaded "$TEST_TMP/QRY.log" 1
for base in "$QRY_URL" "$GW"; do
	try "$base" GET "/accounts/$A" "" "$NEW" 200 "the new key"
	try "$base" GET "/accounts/$A" "" "$MANAGER" 200 "the old key"
done
try "$CMD_URL" POST "/accounts/$A/deposits" '{"amount":1}' "$NEW" 201 \
	"a deposit with the new key"
"$TANDEM_BIN/tandem-token" drop --jwks "$AUTH_JWKS_FILE" --kid test-1 \
	>/dev/null
kill -HUP "$CMD_PID" "$QRY_PID"
wait_for 10 reloaded "$TEST_TMP/CMD.log" 2
wait_for 10 reloaded "$TEST_TMP/QRY.log" 2
# the old token was verified (and cached) before: not any more
try "$QRY_URL" GET "/accounts/$A" "" "$MANAGER" 401 "the dropped key"
try "$CMD_URL" POST "/accounts/$A/deposits" '{"amount":1}' "$MANAGER" 401 \
	"the dropped key (command side)"
try "$QRY_URL" GET "/accounts/$A" "" "$NEW" 200 "the new key after the drop"

say "a bad key file on SIGHUP keeps the keys in use"
cp "$AUTH_JWKS_FILE" "$TEST_TMP/good.json"
printf '{"keys": [' >"$AUTH_JWKS_FILE"
kill -HUP "$QRY_PID"
wait_for 10 grep -q '"auth_reload_failed"' "$TEST_TMP/QRY.log"
try "$QRY_URL" GET "/accounts/$A" "" "$NEW" 200 "after a bad reload"
cp "$TEST_TMP/good.json" "$AUTH_JWKS_FILE"

say "AUTH_ROLES_CLAIM takes a dotted path"
start_service QR2 query-service AUTH_ROLES_CLAIM=realm_access.roles
NESTED=$("$TANDEM_BIN/tandem-token" mint --key "$TEST_TMP/key2.pem" \
	--kid test-2 --sub audrey --roles auditor \
	--roles-claim realm_access.roles --iss "$AUTH_ISSUER" \
	--aud "$AUTH_AUDIENCE")
AS=$NESTED http GET "$QR2_URL/audit/large-transactions?min_amount=1"
expect_status 200
AS=$NEW http GET "$QR2_URL/audit/large-transactions?min_amount=1"
expect_status 403
stop_pid "$QR2_PID"

# ---- 6. AUTH=off, and no key file ----

say "AUTH=off is asked for, warned of and said by /ready"
start_service OFF command-service AUTH=off
grep -q '"auth_off"' "$TEST_TMP/OFF.log" || fail "no warning with AUTH=off"
AS=none http GET "$OFF_URL/ready"
expect_status 200
expect_json .auth off
AS=none http GET "$CMD_URL/ready"
expect_json .auth jwt
AS=none http POST "$OFF_URL/accounts" '{"owner":"zed","currency":"EUR"}' \
	-H 'X-Principal: bank-admin'
expect_status 201
expect_eq "$(psql_q "SELECT metadata->'principal'->>'sub' FROM events
	WHERE data->>'owner' = 'zed'")" anonymous "the principal with AUTH=off"
stop_pid "$OFF_PID"

say "without a key file, or with a bad one, the services refuse to start"
for bin in command-service query-service; do
	for bad in AUTH_JWKS_FILE= AUTH_JWKS_FILE=$TEST_TMP/missing.json \
		AUTH_ISSUER= AUTH_AUDIENCE= AUTH=basic; do
		st=0
		out=$(env "$bad" PORT="$(free_port)" DATABASE_URL="$DATABASE_URL" \
			timeout 10 "$TANDEM_BIN/$bin" 2>&1) || st=$?
		[ "$st" -ne 0 ] && [ "$st" -ne 124 ] ||
			fail "$bin with $bad: exit status $st (expected a refusal)"
		[[ $out == *AUTH* ]] ||
			fail "$bin with $bad: the error names no setting: $out"
	done
done
