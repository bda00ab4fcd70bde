#!/usr/bin/env bash
# t0030-openapi.sh - docs/openapi.yaml is a valid OpenAPI description and
# names exactly the routes the services serve.
#
# 1. `redocly lint` with the pinned @redocly/cli (tools/openapi, installed
#    by scripts/deps) and its config finds no error, warning or ignored
#    problem; a broken copy makes it fail.
# 2. For each service, the (METHOD, path) pairs of the operations tagged
#    with it equal the lines its binary prints with --routes (its real
#    route table), both ways; copies with a route taken out or made up
#    must fail the comparison.
# 3. Each documented route, asked on the running service, is not answered
#    by the router (404 "no route for", 405): the documented paths and
#    methods reach a handler. A made-up path and a wrong method must fail
#    that probe.
# 4. Who may call what, as described and as served: the bearer scheme
#    (http, bearer, JWT) is the global security; exactly GET /health and
#    GET /ready say `security: []`; every other operation lists 401 (with
#    the WWW-Authenticate header, problem+json) and 403, and its roles in
#    `x-roles`. Live, on each service that serves it: without a token a
#    public operation answers 200 and every other one 401 with
#    `WWW-Authenticate: Bearer realm="tandem", error="invalid_token"`; a
#    token of each single role gets past the check (neither 401 nor 403)
#    if the role is in `x-roles`, else 403. Copies with a role added or
#    taken away, an operation made public, or a 401 left out must fail.
# 5. A session of real requests (successes and most error cases, no token
#    and the wrong role included) gives answers whose status is listed for
#    their operation and whose bodies match the described schemas
#    (tools/openapi/check-answers.js); a tampered answer must not pass.
set -eu -o pipefail
. "$(dirname "$0")/lib.sh"

OPENAPI=$TANDEM_ROOT/docs/openapi.yaml
CONFIG=$TANDEM_ROOT/tools/openapi/redocly.yaml
REDOCLY=$TANDEM_ROOT/tools/openapi/node_modules/.bin/redocly
# No telemetry, no update check: CI reaches no host but the registries.
export REDOCLY_TELEMETRY=off REDOCLY_SUPPRESS_UPDATE_NOTICE=true

[ -x "$REDOCLY" ] ||
	fail "no $REDOCLY: scripts/deps installs it (make deps)"
pinned=$(jq -r '.dependencies["@redocly/cli"]' \
	"$TANDEM_ROOT/tools/openapi/package.json")
got=$("$REDOCLY" --version)
expect_eq "$got" "$pinned" "redocly in tools/openapi/node_modules"

# lint FILE: run `redocly lint`; sets LINT_RC (its exit status) and
# LINT_TOTALS ("errors warnings ignored"); fails when redocly cannot
# report them.
lint()
{
	local out=$TEST_TMP/lint.json

	LINT_RC=0
	"$REDOCLY" lint --config "$CONFIG" --format=json "$1" \
		>"$out" 2>"$TEST_TMP/lint.err" || LINT_RC=$?
	LINT_TOTALS=$(jq -r '.totals | "\(.errors) \(.warnings) \(.ignored)"' \
		"$out" 2>/dev/null) ||
		fail "redocly lint $1 gave no totals (exit $LINT_RC):" \
			"$(tail -n 20 "$TEST_TMP/lint.err")"
}

say "lint docs/openapi.yaml with @redocly/cli $got"
lint "$OPENAPI"
if [ "$LINT_TOTALS" != "0 0 0" ] || [ "$LINT_RC" -ne 0 ]; then
	"$REDOCLY" lint --config "$CONFIG" "$OPENAPI" >&2 || true
	fail "redocly lint: errors, warnings, ignored = $LINT_TOTALS" \
		"(exit $LINT_RC)"
fi

say "the lint fails on a broken copy"
# an operation without its summary, a schema of a type that does not exist
sed -e '/^      summary: Open an account$/d' \
	-e '0,/^      type: object$/s//      type: objekt/' \
	"$OPENAPI" >"$TEST_TMP/broken.yaml"
[ "$(diff "$OPENAPI" "$TEST_TMP/broken.yaml" | grep -c '^[<>]')" -eq 3 ] ||
	fail "the broken copy is not broken as planned"
lint "$TEST_TMP/broken.yaml"
[ "$LINT_RC" -ne 0 ] || fail "redocly lint passed a broken file"
[ "${LINT_TOTALS%% *}" -ge 2 ] ||
	fail "redocly lint found '$LINT_TOTALS' in the broken file, wanted 2 errors"

# bundle YAML JSON: the description as JSON, for jq
bundle()
{
	"$REDOCLY" bundle "$1" --ext json -o "$2" >/dev/null 2>"$TEST_TMP/bundle.err" ||
		fail "redocly bundle $1 failed: $(tail -n 20 "$TEST_TMP/bundle.err")"
	[ -s "$2" ] || fail "redocly bundle wrote nothing to $2"
}

# doc_routes JSON TAG: "METHOD /path" of every operation tagged TAG
doc_routes()
{
	jq -r --arg tag "$2" '
		.paths | to_entries[] | .key as $path | .value | to_entries[]
		| select(.key | IN("get", "put", "post", "delete", "options",
			"head", "patch", "trace"))
		| select(.value.tags // [] | index($tag))
		| "\(.key | ascii_upcase) \($path)"' "$1" | LC_ALL=C sort
}

# served_routes BINARY: what the binary's own route table holds
served_routes()
{
	local out

	out=$("$TANDEM_BIN/$1" --routes) || fail "$1 --routes failed"
	[ -n "$out" ] || fail "$1 --routes printed nothing"
	grep -qvE '^(GET|POST) /[^ ]*$' <<<"$out" &&
		fail "$1 --routes printed a line that is not 'METHOD /path': $out"
	LC_ALL=C sort <<<"$out"
}

# compare JSON: for both services, documented == served, both ways;
# prints what differs and returns 1.
compare()
{
	local json=$1 svc doc srv extra missing bad=0

	for svc in command-service query-service; do
		doc=$(doc_routes "$json" "$svc")
		srv=$(served_routes "$svc")
		missing=$(LC_ALL=C comm -23 <(echo "$srv") <(echo "$doc"))
		extra=$(LC_ALL=C comm -13 <(echo "$srv") <(echo "$doc"))
		if [ -n "$missing" ]; then
			echo "$svc serves, docs/openapi.yaml does not describe:" \
				"${missing//$'\n'/, }"
			bad=1
		fi
		if [ -n "$extra" ]; then
			echo "docs/openapi.yaml describes, $svc does not serve:" \
				"${extra//$'\n'/, }"
			bad=1
		fi
	done
	return $bad
}

bundle "$OPENAPI" "$TEST_TMP/openapi.json"
doc_json=$TEST_TMP/openapi.json

say "info.version is the VERSION file"
expect_eq "$(jq -r .info.version "$doc_json")" \
	"$(cat "$TANDEM_ROOT/VERSION")" "info.version of docs/openapi.yaml"

say "every operation belongs to a service"
untagged=$(jq -r '
	.paths | to_entries[] | .key as $path | .value | to_entries[]
	| select(.key | IN("get", "put", "post", "delete", "options", "head",
		"patch", "trace"))
	| (.value.tags // []) as $tags
	| select(($tags - ["command-service", "query-service"]) == $tags)
	| "\(.key | ascii_upcase) \($path)"' "$doc_json")
[ -z "$untagged" ] || fail "operations of no service: $untagged"

say "documented routes = served routes, both services, both ways"
n_cmd=$(served_routes command-service | wc -l)
n_qry=$(served_routes query-service | wc -l)
[ "$n_cmd" -ge 9 ] || fail "command-service --routes lists only $n_cmd routes"
[ "$n_qry" -ge 11 ] || fail "query-service --routes lists only $n_qry routes"
diff=$(compare "$doc_json") || fail "$diff"

say "the comparison fails without a served route, or with a made-up one"
# (copies of the bundled JSON: no need to bundle again)
jq 'del(.paths["/transfers"])' "$doc_json" >"$TEST_TMP/less.json"
if diff=$(compare "$TEST_TMP/less.json"); then
	fail "a description without /transfers passed the comparison"
fi
[[ $diff == *"command-service serves, docs/openapi.yaml does not describe: POST /transfers"* ]] ||
	fail "the comparison did not name POST /transfers: $diff"
jq '.paths["/accounts/{id}/freeze"] = {post: (.paths["/accounts/{id}/close"].post
	| .operationId = "freeze")}
	| .paths["/events"].delete = (.paths["/events"].get
	| .operationId = "deleteLog")' "$doc_json" >"$TEST_TMP/more.json"
if diff=$(compare "$TEST_TMP/more.json"); then
	fail "a description with made-up routes passed the comparison"
fi
[[ $diff == *"query-service does not serve: DELETE /events"* ]] ||
	fail "the comparison did not name DELETE /events: $diff"
[[ $diff == *"command-service does not serve: POST /accounts/{id}/freeze"* ]] ||
	fail "the comparison did not name POST /accounts/{id}/freeze: $diff"

# ---- every documented route reaches a handler ----

migrate_db
start_service CMD command-service MAX_BODY_BYTES=4096
start_service QRY query-service

# fill PATH: the documented PATH with a value for each parameter
fill()
{
	local path=$1

	path=${path//\{id\}/0b5e1d7a-6c4f-4e2b-9a8d-3f1c2b4a5e6d}
	path=${path//\{stream_id\}/t0030-probe}
	path=${path//\{owner\}/t0030-probe}
	path=${path//\{sub\}/t0030-probe}
	[[ $path != *"{"* ]] || fail "no value for a parameter of $path"
	echo "$path"
}

# probe URL METHOD PATH: whether the router (not a handler) answered:
# 405, or 404 "no route for". POSTs go without a body or Content-Type,
# so a command route answers 415 before doing anything. Prints the
# status and detail; returns 1 when the router answered.
probe()
{
	local url=$1 method=$2 path=$3 detail

	path=$(fill "$path")
	http "$method" "$url$path"
	detail=$(jq -r '.detail? // empty' <<<"$HTTP_BODY" 2>/dev/null || true)
	echo "$method $path: $HTTP_STATUS $detail"
	if [ "$HTTP_STATUS" = 405 ] ||
		{ [ "$HTTP_STATUS" = 404 ] && [[ $detail == "no route for"* ]]; }; then
		return 1
	fi
	return 0
}

say "each documented route is served by a handler"
probed=0
for svc in command-service query-service; do
	url=$CMD_URL
	[ "$svc" = query-service ] && url=$QRY_URL
	while read -r method path; do
		out=$(probe "$url" "$method" "$path") ||
			fail "$svc: the router answers the documented $out"
		# a GET route answers HEAD too
		if [ "$method" = GET ]; then
			out=$(probe "$url" HEAD "$path") ||
				fail "$svc: the router answers the documented $out"
		fi
		probed=$((probed + 1))
	done < <(doc_routes "$doc_json" "$svc")
done
[ "$probed" -ge 20 ] || fail "only $probed routes probed"
say "probed $probed documented routes"

say "the probe fails on a made-up path and on a wrong method"
if out=$(probe "$CMD_URL" POST '/accounts/{id}/freeze'); then
	fail "the probe passed a made-up path: $out"
fi
[[ $out == *": 404 no route for"* ]] || fail "unexpected probe answer: $out"
if out=$(probe "$QRY_URL" DELETE /events); then
	fail "the probe passed a wrong method: $out"
fi
[[ $out == *": 405 "* ]] || fail "unexpected probe answer: $out"
if out=$(probe "$QRY_URL" POST '/accounts/{id}'); then
	fail "the probe passed the query service's /accounts/{id} for POST: $out"
fi

# ---- who may call what ----

ROLES=(holder manager auditor service operator)
declare -A ROLE_TOKEN=()
for r in "${ROLES[@]}"; do
	ROLE_TOKEN[$r]=$(mint t0030-probe "$r")
done
CHALLENGE='Bearer realm="tandem", error="invalid_token"'

# doc_security JSON: "METHOD PATH PUBLIC ROLES SERVICES" per operation;
# PUBLIC is 1 when its security (else the global one) asks for nothing,
# ROLES its x-roles ("-" for none), SERVICES its tags, comma-joined
doc_security()
{
	jq -r '
		(.security // []) as $global
		| .paths | to_entries[] | .key as $path | .value | to_entries[]
		| select(.key | IN("get", "put", "post", "delete", "options",
			"head", "patch", "trace"))
		| (.value.security // $global) as $sec
		| [(.key | ascii_upcase), $path,
		   (if ($sec | length) == 0 or ($sec | any(. == {})) then 1 else 0 end),
		   ((.value["x-roles"] // []) | if length == 0 then "-" else join(",") end),
		   (.value.tags // [] | join(","))]
		| join(" ")' "$1"
}

# security_doc JSON: what the description says of security hangs
# together; prints each problem, returns 1 if any
security_doc()
{
	local json=$1 out

	out=$(jq -r --argjson roles "$(printf '%s\n' "${ROLES[@]}" | jq -R . | jq -s .)" '
		. as $root
		| def deref: if type == "object" and has("$ref")
			then (."$ref" | ltrimstr("#/") | split("/")) as $p
				| $root | getpath($p)
			else . end;
		(.components.securitySchemes.bearer // {}) as $b
		| (if $b.type == "http" and ($b.scheme | ascii_downcase) == "bearer"
			and $b.bearerFormat == "JWT" then empty
		   else "the bearer scheme is not http bearer JWT: \($b)" end),
		  (if .security == [{bearer: []}] then empty
		   else "the global security is not [{bearer: []}]: \(.security)" end),
		  (.security as $global
		   | .paths | to_entries[] | .key as $path | .value | to_entries[]
		   | select(.key | IN("get", "put", "post", "delete", "options",
			"head", "patch", "trace"))
		   | "\(.key | ascii_upcase) \($path)" as $op | .value
		   | (.security // $global) as $sec
		   | if ($sec | length) == 0 or ($sec | any(. == {})) then
			(if ["GET /health", "GET /ready"] | index($op) then empty
			 else "\($op) needs no token" end),
			(if .responses | has("401") or has("403")
			 then "\($op) needs no token but lists 401 or 403" else empty end)
		     else
			(if ["GET /health", "GET /ready"] | index($op)
			 then "\($op) needs a token" else empty end),
			(.["x-roles"] // []) as $x
			| (if ($x | length) > 0 and ($x - $roles) == [] and
				($x | unique | length) == ($x | length) then empty
			   else "\($op): x-roles \($x) is not a list of roles of \($roles)" end),
			  (.responses["401"] | deref) as $u
			  | (if $u == null then "\($op) does not list 401"
			     elif ($u.headers // {} | has("WWW-Authenticate") | not)
			     then "\($op): its 401 has no WWW-Authenticate header"
			     elif ($u.content // {} | has("application/problem+json") | not)
			     then "\($op): its 401 is not problem+json"
			     else empty end),
			  (.responses["403"] | deref) as $f
			  | (if $f == null then "\($op) does not list 403"
			     elif ($f.content // {} | has("application/problem+json") | not)
			     then "\($op): its 403 is not problem+json"
			     else empty end)
		     end)' "$json") || fail "jq failed on $json"
	[ -z "$out" ] || {
		echo "$out"
		return 1
	}
}

# security_live JSON [OPERATION]: each operation (or only OPERATION,
# "METHOD PATH") asked without a token and with a token of each role, on
# each service it is tagged with; prints each answer that disagrees with
# the description, returns 1 if any
security_live()
{
	local json=$1 only=${2:-} method path public xroles svcs svc url r
	local bad=0 n=0 want

	while read -r method path public xroles svcs; do
		[ -z "$only" ] || [ "$only" = "$method $path" ] || continue
		for svc in ${svcs//,/ }; do
			case $svc in
			command-service) url=$CMD_URL$(fill "$path") ;;
			query-service) url=$QRY_URL$(fill "$path") ;;
			*) continue ;;
			esac
			n=$((n + 1))
			AS=none http "$method" "$url"
			if [ "$public" = 1 ]; then
				[ "$HTTP_STATUS" = 200 ] || {
					echo "$svc: $method $path is documented public;" \
						"without a token it answered $HTTP_STATUS"
					bad=1
				}
				continue
			fi
			if [ "$HTTP_STATUS" != 401 ] ||
				[ "$(header WWW-Authenticate)" != "$CHALLENGE" ] ||
				[ "$(header Content-Type)" != application/problem+json ]; then
				echo "$svc: $method $path without a token: $HTTP_STATUS," \
					"WWW-Authenticate '$(header WWW-Authenticate)'," \
					"Content-Type '$(header Content-Type)'"
				bad=1
			fi
			for r in "${ROLES[@]}"; do
				AS=${ROLE_TOKEN[$r]} http "$method" "$url"
				if [[ ,$xroles, == *",$r,"* ]]; then
					want="neither 401 nor 403"
					[ "$HTTP_STATUS" != 401 ] && [ "$HTTP_STATUS" != 403 ] &&
						continue
				else
					want=403
					[ "$HTTP_STATUS" = 403 ] && continue
				fi
				echo "$svc: $method $path with a token of $r (x-roles" \
					"$xroles): $HTTP_STATUS, wanted $want"
				bad=1
			done
		done
	done < <(doc_security "$json")
	[ "$n" -gt 0 ] || {
		echo "no operation checked${only:+ (only $only)}"
		return 1
	}
	return $bad
}

say "who may call what: the description"
out=$(security_doc "$doc_json") || fail "$out"
expect_eq "$(doc_security "$doc_json" | awk '$3 == 1 { print $1, $2 }' | tr '\n' ' ')" \
	"GET /health GET /ready " "the operations that need no token"

say "who may call what: every documented operation, no token and each role"
out=$(security_live "$doc_json") || fail "$out"
say "$(doc_security "$doc_json" | wc -l) operations x (no token + ${#ROLES[@]} roles) agree"

say "who may call what: broken copies fail"
# security_broken NAME JQ OPERATION MESSAGE: a copy of the description
# edited by JQ fails the checks (the live one on OPERATION alone), saying
# MESSAGE
security_broken()
{
	local name=$1 edit=$2 op=$3 msg=$4 f=$TEST_TMP/sec-$1.json out

	jq "$edit" "$doc_json" >"$f"
	cmp -s "$f" "$doc_json" && fail "$name: the edit changed nothing"
	if out=$(
		st=0
		security_doc "$f" || st=1
		security_live "$f" "$op" || st=1
		exit $st
	); then
		fail "$name: the checks passed a broken description"
	fi
	[[ $out == *"$msg"* ]] || fail "$name: the checks failed for another reason: $out"
}
security_broken role-taken '.paths["/stats/daily"].get["x-roles"] = ["auditor"]' \
	"GET /stats/daily" "with a token of manager (x-roles auditor): 200, wanted 403"
security_broken role-added '.paths["/events"].get["x-roles"] += ["holder"]' \
	"GET /events" "with a token of holder (x-roles auditor,service,holder): 403"
security_broken made-public '.paths["/transfers"].post.security = []' \
	"POST /transfers" "POST /transfers needs no token"
security_broken public-live '.paths["/transfers"].post.security = [{}]
	| del(.paths["/transfers"].post.responses["401", "403"])' \
	"POST /transfers" "POST /transfers is documented public; without a token it answered 401"
security_broken no-401 'del(.paths["/accounts/{id}"].get.responses["401"])' \
	"GET /accounts/{id}" "GET /accounts/{id} does not list 401"
security_broken no-challenge 'del(.components.responses.Unauthorized.headers["WWW-Authenticate"])' \
	"GET /events" "its 401 has no WWW-Authenticate header"
security_broken health-secured '.paths["/health"].get |= del(.security)' \
	"GET /health" "GET /health needs a token"

# ---- real answers match the description ----

ANSWERS=$TEST_TMP/answers.jsonl
: >"$ANSWERS"

# ans METHOD TEMPLATE URL [BODY [curl args...]]: send the request, keep
# the answer for the check (TEMPLATE is the documented path)
ans()
{
	local method=$1 template=$2 url=$3

	shift 3
	http "$method" "$url" "$@"
	jq -nc --arg m "$method" --arg p "$template" --arg s "$HTTP_STATUS" \
		--arg t "$(header Content-Type)" --arg b "$HTTP_BODY" \
		'{method: $m, path: $p, status: ($s | tonumber),
		  content_type: $t, body: $b}' >>"$ANSWERS"
}

say "a session of real requests"
A=8d0c5a8e-2f4b-4f7a-9c3e-6b1d2e3f4a5b
B=3f2b8c1e-9a4d-4e7b-8c21-5d6f7a8b9c0d
NOPE=11111111-2222-4333-8444-555555555555
C=$CMD_URL
Q=$QRY_URL
ans POST /accounts "$C/accounts" \
	"{\"owner\":\"Ann Smith\",\"currency\":\"EUR\",\"overdraft_limit\":100,\"account_id\":\"$A\"}"
expect_status 201
ans POST /accounts "$C/accounts" \
	"{\"owner\":\"Ann Smith\",\"currency\":\"EUR\",\"account_id\":\"$B\"}"
ans POST /accounts "$C/accounts" '{"owner":"Bob","currency":"USD"}'
USD=$(jq -r .account_id <<<"$HTTP_BODY")
ans POST /accounts "$C/accounts" "{\"owner\":\"x\",\"currency\":\"EUR\",\"account_id\":\"$B\"}"
expect_status 409
ans POST /accounts "$C/accounts" '{"owner":"","currency":"eur","overdraft_limit":-1,"colour":"red"}'
expect_status 422
ans POST /accounts "$C/accounts" '{"owner":"x"'
expect_status 400
ans POST /accounts "$C/accounts" '{"owner":"x","currency":"EUR"}' -H 'Content-Type: text/plain'
expect_status 415
ans POST /accounts "$C/accounts" "{\"owner\":\"$(printf '%05000d' 0)\"}"
expect_status 413
ans POST /accounts "$C/accounts" '{"owner":"x","currency":"EUR"}' -H 'If-Match: "1"'
expect_status 400
D='/accounts/{id}/deposits'
W='/accounts/{id}/withdrawals'
ans POST "$D" "$C/accounts/$A/deposits" '{"amount":10000,"reference":"salary"}' \
	-H 'Idempotency-Key: t0030-dep-1'
expect_status 201
TOKEN=$(jq -r .position <<<"$HTTP_BODY")
ans POST "$D" "$C/accounts/$A/deposits" '{"amount":10000,"reference":"salary"}' \
	-H 'Idempotency-Key: t0030-dep-1'
expect_header Idempotent-Replayed true
ans POST "$D" "$C/accounts/$A/deposits" '{"amount":20000}' \
	-H 'Idempotency-Key: t0030-dep-1'
expect_status 422
ans POST "$D" "$C/accounts/$NOPE/deposits" '{"amount":1}'
expect_status 404
ans POST "$D" "$C/accounts/$A/deposits" '{"amount":5,"expected_version":1}'
expect_status 409
ans POST "$W" "$C/accounts/$A/withdrawals" '{"amount":2500}' -H 'If-Match: "2"'
expect_status 201
ans POST "$W" "$C/accounts/$A/withdrawals" '{"amount":2500}' -H 'If-Match: "2"'
expect_status 412
ans POST "$W" "$C/accounts/$A/withdrawals" '{"amount":100000}'
expect_status 409
ans POST /transfers "$C/transfers" \
	"{\"from\":\"$A\",\"to\":\"$B\",\"amount\":1500,\"reference\":\"rent\"}"
expect_status 201
ans POST /transfers "$C/transfers" "{\"from\":\"$A\",\"to\":\"$USD\",\"amount\":1}"
expect_status 409
ans POST /transfers "$C/transfers" "{\"from\":\"$A\",\"to\":\"$NOPE\",\"amount\":1}"
expect_status 404
ans POST /transfers "$C/transfers" "{\"from\":\"$A\",\"to\":\"$A\",\"amount\":0}"
expect_status 422
ans POST "$W" "$C/accounts/$B/withdrawals" '{"amount":1500}'
ans POST '/accounts/{id}/close' "$C/accounts/$A/close" '{}'
expect_status 409
ans POST '/accounts/{id}/close' "$C/accounts/$B/close" '{"expected_version":3}'
expect_status 201
ans POST '/accounts/{id}/close' "$C/accounts/$B/close" '{}' -H 'If-Match: "3"'
expect_status 412
O='/accounts/{id}/overdraft-limit'
ans POST "$O" "$C/accounts/$A/overdraft-limit" '{"overdraft_limit":500}'
expect_status 201
ans POST "$O" "$C/accounts/$A/overdraft-limit" '{"overdraft_limit":0}' \
	-H 'If-Match: "1"'
expect_status 412
ans POST "$O" "$C/accounts/$B/overdraft-limit" '{"overdraft_limit":500}'
expect_status 409
ans POST "$O" "$C/accounts/$NOPE/overdraft-limit" '{"overdraft_limit":500}'
expect_status 404
ans POST "$O" "$C/accounts/$A/overdraft-limit" '{"overdraft_limit":-1}'
expect_status 422
ans POST "$O" "$C/accounts/$A/overdraft-limit" '[500]'
expect_status 400
S='/streams/{stream_id}/events'
ans POST "$S" "$C/streams/orders-42/events" \
	'{"expected_version":"no_stream","events":[{"type":"OrderPlaced","data":{"order_id":42},"event_id":"5c1f1d6e-0b7a-4c55-9a8e-2f4b6d8e0a11"}]}'
expect_status 201
ans POST "$S" "$C/streams/orders-42/events" \
	'{"expected_version":"no_stream","events":[{"type":"OrderPlaced","data":{}}]}'
expect_status 409
ans POST "$S" "$C/streams/orders-42/events" \
	'{"expected_version":"any","events":[{"type":"OrderShipped","data":{},"metadata":{"carrier":"DHL"}}]}' \
	-H 'If-Match: "7"'
expect_status 412
ans POST "$S" "$C/streams/account-1/events" '{"expected_version":"any","events":[]}'
expect_status 422
# a principal object in metadata, for the audit view (a client's before
# the services verify tokens, the token's after)
ans POST "$S" "$C/streams/orders-43/events" \
	'{"expected_version":"any","events":[{"type":"OrderNoted","data":{"amount":3},"metadata":{"principal":{"sub":"t0030-auditee","iss":"https://idp.test","roles":[]}}}]}'
expect_status 201
AUDIT_TOKEN=$(jq -r .position <<<"$HTTP_BODY")
for p in /health /ready /metrics; do
	ans GET "$p" "$C$p"
	expect_status 200
	ans GET "$p" "$Q$p"
	expect_status 200
done
ans GET /status "$Q/status"
expect_status 200
ans GET '/accounts/{id}' "$Q/accounts/$A" "" -H "X-Min-Position: $TOKEN"
expect_status 200
etag=$(header ETag)
ans GET '/accounts/{id}' "$Q/accounts/$A" "" -H "If-None-Match: $etag"
expect_status 304
ans HEAD '/accounts/{id}' "$Q/accounts/$A"
expect_status 200
ans GET '/accounts/{id}' "$Q/accounts/$NOPE"
expect_status 404
ans GET '/accounts/{id}' "$Q/accounts/$A" "" -H 'X-Wait-Ms: 20000'
expect_status 400
ans GET '/accounts/{id}' "$Q/accounts/$A" "" -H 'X-Min-Position: 999999999.1' \
	-H 'X-Wait-Ms: 100'
expect_status 503
T='/accounts/{id}/transactions'
ans GET "$T" "$Q/accounts/$A/transactions?limit=2" "" -H "X-Min-Position: $TOKEN"
expect_status 200
ans GET "$T" "$Q/accounts/$A/transactions?limit=2&after=$(jq -r .next <<<"$HTTP_BODY")"
expect_status 200
ans GET "$T" "$Q/accounts/$A/transactions?limit=0"
expect_status 422
ans GET "$T" "$Q/accounts/$NOPE/transactions"
expect_status 404
ans GET '/owners/{owner}/accounts' "$Q/owners/Ann%20Smith/accounts"
expect_status 200
ans GET '/owners/{owner}/accounts' "$Q/owners/Ann%20Smith/accounts?after=bad"
expect_status 400
ans GET /stats/daily "$Q/stats/daily"
expect_status 200
ans GET /stats/daily "$Q/stats/daily?from=2026-13-01"
expect_status 422
ans GET /audit/large-transactions "$Q/audit/large-transactions?min_amount=2000"
expect_status 200
ans GET /audit/large-transactions "$Q/audit/large-transactions"
expect_status 422
P='/audit/principals/{sub}/actions'
AUDITEE=$(psql_q "SELECT metadata->'principal'->>'sub' FROM events
	WHERE jsonb_typeof(metadata->'principal') = 'object'
	ORDER BY global_position DESC LIMIT 1")
[ -n "$AUDITEE" ] || fail "no event with a principal object"
ans GET "$P" "$Q/audit/principals/$AUDITEE/actions?limit=1" "" \
	-H "X-Min-Position: $AUDIT_TOKEN"
expect_status 200
expect_json '.items | length' 1
ans GET "$P" "$Q/audit/principals/$AUDITEE/actions?after=x"
expect_status 400
ans GET "$P" "$Q/audit/principals/$AUDITEE/actions?limit=0"
expect_status 422
ans GET "$P" "$Q/audit/principals/$(printf 'x%.0s' $(seq 1 257))/actions"
expect_status 404
ans GET '/streams/{stream_id}' "$Q/streams/orders-42?limit=1"
expect_status 200
ans GET '/streams/{stream_id}' "$Q/streams/nope"
expect_status 404
ans GET '/streams/{stream_id}' "$Q/streams/orders-42?after=1&from_version=1"
expect_status 422
ans GET /events "$Q/events?limit=2"
expect_status 200
ans GET /events "$Q/events?after=junk"
expect_status 400
AS=none ans POST /accounts "$C/accounts" '{"owner":"x","currency":"EUR"}'
expect_status 401
AS=${ROLE_TOKEN[auditor]} ans POST /accounts "$C/accounts" '{"owner":"x","currency":"EUR"}'
expect_status 403
AS=$(mint Bob holder) ans POST /accounts "$C/accounts" '{"owner":"x","currency":"EUR"}'
expect_status 403
AS=$(mint Bob holder) ans POST "$D" "$C/accounts/$A/deposits" '{"amount":1}'
expect_status 404
AS=none ans GET '/accounts/{id}' "$Q/accounts/$A"
expect_status 401
AS=$(mint Bob holder) ans GET '/accounts/{id}' "$Q/accounts/$A"
expect_status 404
AS=$(mint "Ann Smith" holder) ans GET '/accounts/{id}' "$Q/accounts/$A"
expect_status 200
AS=$(mint Bob holder) ans GET '/owners/{owner}/accounts' "$Q/owners/Ann%20Smith/accounts"
expect_status 404
AS=${ROLE_TOKEN[holder]} ans GET /stats/daily "$Q/stats/daily"
expect_status 403
AS=$(mint t0030 holder --ttl -120) ans GET /events "$Q/events"
expect_status 401
AS=none ans GET /metrics "$C/metrics"
expect_status 401
AS=none ans GET /ready "$Q/ready"
expect_status 200
expect_json .auth jwt

say "a malformed traceparent: ignored by the service, accepted by the schema"
ans POST "$D" "$C/accounts/$A/deposits" '{"amount":1}' -H 'traceparent: 01-zz'
expect_status 201
psql_q "SELECT metadata ? 'traceparent' FROM events
	WHERE global_position = (SELECT max(global_position) FROM events)" |
	grep -qx f || fail "a malformed traceparent was stored"
# shellcheck disable=SC2016 # the JavaScript is not for the shell
node -e '
	const Ajv = require(process.argv[1]).default;
	const doc = require(process.argv[2]);
	const ok = new Ajv({ strict: false }).validate(
		doc.components.parameters.Traceparent.schema, "01-zz");
	process.exit(ok ? 0 : 1);' \
	"$TANDEM_ROOT/tools/openapi/node_modules/@redocly/ajv/dist/2020" \
	"$doc_json" ||
	fail "the schema refuses a traceparent the service accepts (201)"

say "the answers match docs/openapi.yaml ($(wc -l <"$ANSWERS") answers)"
CHECK=$TANDEM_ROOT/tools/openapi/check-answers.js
out=$(node "$CHECK" "$doc_json" "$ANSWERS") || fail "$out"
say "$out"
# every status the session met is one the description lists
statuses=$(jq -r .status "$ANSWERS" | sort -u | tr '\n' ' ')
expect_eq "$statuses" "200 201 304 400 401 403 404 409 412 413 415 422 503 " \
	"statuses the session met"

say "a tampered answer does not pass"
# an unknown field in an account, and a status the operation never gives
jq -c 'if .path == "/accounts/{id}" and .status == 200 and .method == "GET"
	then .body |= (fromjson | .colour = "red" | tojson) else . end' \
	"$ANSWERS" >"$TEST_TMP/tampered.jsonl"
if out=$(node "$CHECK" "$doc_json" "$TEST_TMP/tampered.jsonl"); then
	fail "an account with an extra field passed the check"
fi
[[ $out == *"additional properties"* ]] || fail "unexpected check output: $out"
jq -c 'if .path == "/stats/daily" then .status = 404 else . end' \
	"$ANSWERS" >"$TEST_TMP/tampered.jsonl"
if out=$(node "$CHECK" "$doc_json" "$TEST_TMP/tampered.jsonl"); then
	fail "a 404 from /stats/daily passed the check"
fi
[[ $out == *"status 404 is not described"* ]] || fail "unexpected check output: $out"
