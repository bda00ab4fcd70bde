#!/usr/bin/env bash
# t0500-make-run.sh - scripts/run, what `make run` runs (issue 6), with its
# state in $TEST_TMP (TANDEM_STATE) and free ports everywhere:
#   - first run, two query replicas: the printed URLs are the ports asked
#     for; the development key is in the state folder (private key 0600)
#     and the printed tokens are those of its tokens.env; the printed curl
#     walkthrough works as printed, with the printed tokens and no other;
#     the tokens work as their roles say (the holder deposits to her own
#     account, not to another's: 404; the auditor reads but cannot POST:
#     403; no token: 401 with WWW-Authenticate; the operator reads
#     /status, the holder cannot); the printed mint command makes a token
#     the services take (the test's own requests use one, with every
#     role); through the
#     gateway an account is opened, deposited to and read back with
#     X-Min-Position (read-your-writes, five times in a row); GET goes to the
#     query side and POST to the command side (each side's own answer to a
#     path only the other has; a GET of a command route is the gateway's
#     405 with the command side's Allow); both query replicas answer and the gateway
#     uses both; every replica is in the gateway's upstreams;
#   - SIGINT to the run's process group (a terminal's Ctrl-C): it exits 130
#     and every process it started (services, nginx master and workers,
#     the postmaster and its children) is gone within a bounded time;
#   - second run on the same ports, two command replicas: the key is the
#     same, the tokens are new and the first run's still work; the account
#     and its events from the first run are there, an idempotency key of the
#     first run replays, the gateway uses both command replicas; a third
#     run on the same state folder is refused at once; SIGTERM to the run
#     alone (143) again leaves no process;
#   - a busy gateway, command or query port: one-line error naming the
#     port and the variable, non-zero within seconds, nothing started;
#     bad settings are one-line errors too.
set -eu -o pipefail
. "$(dirname "$0")/lib.sh"

RUN=$TANDEM_ROOT/scripts/run
STATE=$TEST_TMP/state
BIN=$(realpath -- "$TANDEM_BIN")
GW_PORT=$(free_port)
CMD_PORT=$(free_port)
QRY_PORT=$(free_port)
RUN_PID=
RUN_ST=
RUN_OUT=
# seconds: scripts/run's own bound per GET /health, and ours on the whole
# start and the whole stop
START_TIMEOUT=30
START_BOUND=120
STOP_BOUND=60

# proc PID: PF = the fields of /proc/PID/stat after the command name
# (state ${PF[0]}, ppid ${PF[1]}, pgrp ${PF[2]}, starttime ${PF[19]});
# false if PID does not exist. Builtins only: forks are slow on a busy box.
proc()
{
	local s

	PF=()
	read -r s 2>/dev/null <"/proc/$1/stat" || return 1
	read -ra PF <<<"${s##*) }"
	[ "${#PF[@]}" -gt 19 ]
}

# cmdline PID: CL = its command line, arguments joined by spaces
cmdline()
{
	local a

	CL=
	mapfile -d '' a 2>/dev/null <"/proc/$1/cmdline" || return 1
	CL="${a[*]}"
}

# same_running PID STARTTIME: true if that very process still runs
same_running()
{
	proc "$1" && [ "${PF[0]}" != Z ] && [ "${PF[19]}" = "$2" ]
}

# children PID: the processes whose parent is PID
children()
{
	ps -e -o pid=,ppid= | awk -v p="$1" '$2 == p { print $1 }'
}

# leftovers PGID: live processes in that process group or with the state
# folder in their command line (given to awk by the environment: awk's own
# command line must not match)
leftovers()
{
	ps -e -o pid=,pgid=,stat=,args= |
		S=$STATE awk -v g="$1" '$3 !~ /^Z/ &&
			($2 == g || index($0, ENVIRON["S"]))'
}

# start_run NAME [VAR=VALUE...]: scripts/run in the background, in its own
# process group with SIGINT at its default (as make run under a terminal;
# an asynchronous command of a script would start with SIGINT ignored),
# output in $TEST_TMP/NAME.out; sets RUN_PID and RUN_OUT
start_run()
{
	local name=$1

	shift
	RUN_OUT=$TEST_TMP/$name.out
	env TANDEM_BIN="$BIN" TANDEM_STATE="$STATE" GATEWAY_PORT="$GW_PORT" \
		COMMAND_PORT="$CMD_PORT" QUERY_PORT="$QRY_PORT" \
		START_TIMEOUT="$START_TIMEOUT" "$@" \
		perl -e '$SIG{INT} = "DEFAULT"; setpgrp(0, 0) or die "setpgrp: $!";
			exec @ARGV or die "exec: $!"' "$RUN" \
		</dev/null >"$RUN_OUT" 2>&1 &
	RUN_PID=$!
	proc "$RUN_PID" || fail "scripts/run did not start"
	RUN_ST=${PF[19]}
	track_pid "$RUN_PID"
	say "scripts/run ($name) is pid $RUN_PID"
}

# wait_run_ready: until the run prints its walkthrough's last line; fails
# at once if it exits first
wait_run_ready()
{
	local end=$((SECONDS + START_BOUND))

	while ! grep -q '^Ctrl-C stops everything' "$RUN_OUT"; do
		if ! same_running "$RUN_PID" "$RUN_ST"; then
			cat "$RUN_OUT" >&2
			fail "scripts/run exited before it was ready"
		fi
		if [ "$SECONDS" -ge "$end" ]; then
			cat "$RUN_OUT" >&2
			fail "scripts/run did not print its URLs within $START_BOUND s"
		fi
		sleep 0.2
	done
	# its own process group, so that a group signal reaches it all
	proc "$RUN_PID"
	expect_eq "${PF[2]}" "$RUN_PID" "process group of scripts/run"
}

# parse_urls: GW_URL, CMD_URLS, QRY_URLS from the run's output
parse_urls()
{
	GW_URL=$(sed -n 's/^  gateway  *\(http:[^ ]*\).*/\1/p' "$RUN_OUT")
	read -ra CMD_URLS <<<"$(sed -n 's/^  command service  *//p' "$RUN_OUT")"
	read -ra QRY_URLS <<<"$(sed -n 's/^  query service  *//p' "$RUN_OUT")"
	expect_eq "$GW_URL" "http://127.0.0.1:$GW_PORT" "gateway URL"
	expect_eq "${CMD_URLS[0]:-}" "http://127.0.0.1:$CMD_PORT" "command URL"
	expect_eq "${QRY_URLS[0]:-}" "http://127.0.0.1:$QRY_PORT" "query URL"
}

# record PID WHAT FILE: add "pid starttime what" to FILE
record()
{
	proc "$1" || fail "$2: pid $1 does not run"
	echo "$1 ${PF[19]} $2" >>"$3"
}

# record_pids FILE N_CMD N_QRY: every process the running run started,
# checked against what it claims to be
record_pids()
{
	local file=$1 name pid port n_cmd=0 n_qry=0 n c line pg_pid

	: >"$file"
	[ -s "$STATE/run.pids" ] || fail "no $STATE/run.pids"
	record "$RUN_PID" scripts/run "$file"
	while read -r name pid port; do
		case $name in
		run)
			expect_eq "$pid" "$RUN_PID" "run.pids: run"
			continue
			;;
		gateway)
			expect_eq "$port" "$GW_PORT" "run.pids: gateway port"
			cmdline "$pid"
			[[ $CL == "nginx: master process"*"$STATE/gateway"* ]] ||
				fail "gateway pid $pid is '$CL'"
			n=0
			for c in $(children "$pid"); do
				cmdline "$c" || continue
				[[ $CL == "nginx: worker"* ]] || continue
				record "$c" "nginx worker" "$file"
				n=$((n + 1))
			done
			[ "$n" -ge 1 ] || fail "no nginx worker under $pid"
			;;
		command-service*)
			n_cmd=$((n_cmd + 1))
			[[ " ${CMD_URLS[*]} " == *" http://127.0.0.1:$port "* ]] ||
				fail "$name port $port is not among the printed URLs"
			;;
		query-service*)
			n_qry=$((n_qry + 1))
			[[ " ${QRY_URLS[*]} " == *" http://127.0.0.1:$port "* ]] ||
				fail "$name port $port is not among the printed URLs"
			;;
		*) fail "unexpected line in run.pids: $name $pid $port" ;;
		esac
		case $name in
		command-service* | query-service*)
			c=$(readlink "/proc/$pid/exe") ||
				fail "$name: pid $pid does not run"
			expect_eq "$c" "$BIN/${name%-[0-9]*}" "binary of $name"
			;;
		esac
		record "$pid" "$name" "$file"
	done <"$STATE/run.pids"
	expect_eq "$n_cmd" "$2" "command replicas in run.pids"
	expect_eq "$n_qry" "$3" "query replicas in run.pids"
	line=$("$TANDEM_ROOT/scripts/pg" status "$STATE/pg") ||
		fail "no PostgreSQL runs in $STATE/pg"
	pg_pid=${line%% *}
	# scripts/pg may have put the cluster elsewhere (realdir)
	c=$STATE/pg
	[ ! -f "$c/realdir" ] || c=$(<"$c/realdir")
	cmdline "$pg_pid"
	[[ $CL == *postgres*"$c/data"* ]] || fail "postmaster $pg_pid is '$CL'"
	record "$pg_pid" postmaster "$file"
	n=0
	for c in $(children "$pg_pid"); do
		# a backend may just have ended
		proc "$c" || continue
		echo "$c ${PF[19]} postgres child" >>"$file"
		n=$((n + 1))
	done
	[ "$n" -ge 1 ] || fail "no child of the postmaster $pg_pid"
	say "$(wc -l <"$file") processes of the run recorded"
}

# all_gone FILE PGID: none of the recorded processes runs, nothing is left
# in the run's process group or names the state folder
all_gone()
{
	local pid st what left

	while read -r pid st what; do
		if same_running "$pid" "$st"; then
			echo "$what (pid $pid) still runs"
			return 1
		fi
	done <"$1"
	left=$(leftovers "$2")
	if [ -n "$left" ]; then
		echo "left behind: $left"
		return 1
	fi
}

# stop_run SIGNAL TARGET STATUS: send SIGNAL to TARGET (a pid, or -pgid),
# expect the run to exit with STATUS within STOP_BOUND s, then nothing left
stop_run()
{
	local sig=$1 target=$2 want=$3 end rc=0 p

	kill -s "$sig" -- "$target"
	end=$((SECONDS + STOP_BOUND))
	while same_running "$RUN_PID" "$RUN_ST"; do
		[ "$SECONDS" -lt "$end" ] ||
			fail "scripts/run did not exit within $STOP_BOUND s of SIG$sig"
		sleep 0.1
	done
	wait "$RUN_PID" || rc=$?
	expect_eq "$rc" "$want" "exit status of scripts/run after SIG$sig"
	grep -q '^run: stopped' "$RUN_OUT" || fail "no 'run: stopped' line"
	# every process ended well (status 0) when told to stop
	p=$(grep -E '^run: .*(exited with status|did not stop)' "$RUN_OUT") &&
		fail "$p"
	p=$(grep -lE 'AddressSanitizer|LeakSanitizer|runtime error:' \
		"$STATE"/log/*.log) && fail "sanitizer reports in $p"
	wait_for 10 all_gone "$PIDS" "$RUN_PID"
	[ ! -e "$STATE/run.pids" ] || fail "run.pids is still there"
	for p in "$GW_PORT" "$CMD_PORT" "$QRY_PORT"; do
		[ -z "$(ss -Hltn "sport = :$p")" ] || fail "port $p still listens"
	done
	RUN_PID=
}

# On any failure: stop a run still going (TERM, by its pid), then anything
# recorded that still runs, then the cluster.
run_cleanup()
{
	local i f pid st what pass

	if [ -n "$RUN_PID" ] && same_running "$RUN_PID" "$RUN_ST"; then
		kill -TERM "$RUN_PID" 2>/dev/null
		for i in $(seq 1 400); do
			same_running "$RUN_PID" "$RUN_ST" || break
			sleep 0.1
		done
	fi
	# the services and nginx first, then the cluster by its own script,
	# then whatever of it is still there
	for pass in 1 2; do
		for f in "$TEST_TMP"/pids.*; do
			[ -f "$f" ] || continue
			while read -r pid st what; do
				case $pass$what in
				1postmaster | "1postgres child") continue ;;
				esac
				if same_running "$pid" "$st"; then
					echo "t0500: killing $what $pid" >&2
					kill -KILL "$pid" 2>/dev/null
				fi
			done <"$f"
		done
		[ "$pass" -eq 2 ] ||
			"$TANDEM_ROOT/scripts/pg" destroy "$STATE/pg" >&2
	done
}
at_exit run_cleanup

# prefix: the process part of the last response's X-Request-Id
prefix()
{
	local id

	id=$(header X-Request-Id)
	[ -n "$id" ] || fail "no X-Request-Id"
	echo "${id%-*}"
}

say "bad settings are one-line errors"
bad_setting()
{
	local var=$1 rc=0 out

	shift
	out=$(env TANDEM_BIN="$BIN" TANDEM_STATE="$STATE" GATEWAY_PORT="$GW_PORT" \
		COMMAND_PORT="$CMD_PORT" QUERY_PORT="$QRY_PORT" "$@" \
		timeout -k 5 10 "$RUN" 2>&1) || rc=$?
	[ "$rc" -ne 0 ] && [ "$rc" -ne 124 ] && [ "$rc" -ne 137 ] ||
		fail "$*: exit status $rc; output: $out"
	expect_eq "$(wc -l <<<"$out")" 1 "lines of output for $*"
	[[ $out == "run: "*"$var"* ]] || fail "$*: '$out' does not name $var"
}
bad_setting QUERY_REPLICAS QUERY_REPLICAS=0
bad_setting QUERY_REPLICAS QUERY_REPLICAS=two
bad_setting COMMAND_REPLICAS COMMAND_REPLICAS=1000
bad_setting COMMAND_REPLICAS COMMAND_REPLICAS=-1
bad_setting GATEWAY_PORT GATEWAY_PORT=65536
bad_setting QUERY_PORT QUERY_PORT=80x
bad_setting GATEWAY_PORT GATEWAY_PORT="$CMD_PORT"
bad_setting TOKEN_TTL TOKEN_TTL=0
bad_setting TOKEN_TTL TOKEN_TTL=1h
[ ! -e "$STATE/pg" ] || fail "a bad setting created $STATE/pg"
[ ! -e "$STATE/auth" ] || fail "a bad setting created $STATE/auth"

# The test's own requests (http, curl) go with a token of make run's key
# once it exists, not with lib.sh's ADMIN_TOKEN: CURL_HOME moves here.
# The printed walkthrough runs with no .curlrc token at all.
mkdir -p "$TEST_TMP/curl-run" "$TEST_TMP/curl-none"
: >"$TEST_TMP/curl-none/.curlrc"

# parse_tokens: T_HOLDER, T_MANAGER, T_AUDITOR, T_OPERATOR as the run
# printed them, checked against its tokens.env; MINT: the printed mint
# command, as words
parse_tokens()
{
	local name printed filed cmd

	for name in T_HOLDER T_MANAGER T_AUDITOR T_OPERATOR; do
		printed=$(sed -n "s/^  $name=\([A-Za-z0-9_.-]*\)\$/\1/p" "$RUN_OUT")
		[ "$(wc -l <<<"$printed")" -eq 1 ] && [ -n "$printed" ] ||
			fail "the run printed no single $name line"
		filed=$(sed -n "s/^$name=//p" "$STATE/auth/tokens.env")
		expect_eq "$printed" "$filed" "$name printed and in auth/tokens.env"
		declare -g "$name=$printed"
	done
	cmd=$(sed -n '/^  [^ ]*tandem-token mint /{N;s/\\\n */ /;s/^  //p}' "$RUN_OUT")
	[ -n "$cmd" ] || fail "the run printed no tandem-token mint command"
	read -ra MINT <<<"$cmd"
	[ "${MINT[0]}" = "$BIN/tandem-token" ] || [ "${MINT[0]}" = bin/tandem-token ] ||
		fail "the printed mint command runs '${MINT[0]}'"
	MINT[0]=$BIN/tandem-token
}

# run_mint SUB ROLES: a token made by the printed mint command
run_mint()
{
	local i args=()

	for i in "${MINT[@]}"; do
		case $i in
		SUB) args+=("$1") ;;
		ROLES) args+=("$2") ;;
		*) args+=("$i") ;;
		esac
	done
	(cd "$TANDEM_ROOT" && "${args[@]}")
}

say "first run: two query replicas"
start_run first QUERY_REPLICAS=2
wait_run_ready
parse_urls
expect_eq "${#CMD_URLS[@]}" 1 "command URLs"
expect_eq "${#QRY_URLS[@]}" 2 "query URLs"
[ "${QRY_URLS[1]}" != "${QRY_URLS[0]}" ] || fail "two query replicas on one port"
[ -f "$STATE/pg/.tandem-pg" ] || fail "the cluster is not in TANDEM_STATE"
[ -s "$STATE/log/query-service-2.log" ] || fail "no log of the second query replica"
for u in "${CMD_URLS[@]}" "${QRY_URLS[@]}"; do
	grep -qF "server ${u#http://} " "$STATE/gateway/nginx.conf" ||
		fail "$u is not in the gateway's upstreams"
done
PIDS=$TEST_TMP/pids.first
record_pids "$PIDS" 1 2

say "the development key and the printed tokens"
for f in dev-key.pem jwks.json tokens.env; do
	[ -s "$STATE/auth/$f" ] || fail "no $STATE/auth/$f"
done
expect_eq "$(stat -c %a "$STATE/auth/dev-key.pem")" 600 "mode of the private key"
expect_eq "$(stat -c %a "$STATE/auth/tokens.env")" 600 "mode of tokens.env"
grep -q PRIVATE "$STATE/auth/jwks.json" && fail "jwks.json holds a private key"
jq -e '.keys | length == 1 and .[0].kid == "dev-1" and (.[0] | has("d") | not)' \
	"$STATE/auth/jwks.json" >/dev/null || fail "jwks.json: $(cat "$STATE/auth/jwks.json")"
JWKS_SUM=$(sha256sum <"$STATE/auth/jwks.json")
parse_tokens
expect_eq "$(jq -Rr 'split(".")[1] | @base64d | fromjson | .sub' <<<"$T_HOLDER")" Ann \
	"sub of T_HOLDER"
ADMIN_RUN=$(run_mint t0500-admin holder,manager,auditor,service,operator)
printf 'header = "Authorization: Bearer %s"\n' "$ADMIN_RUN" >"$TEST_TMP/curl-run/.curlrc"
export CURL_HOME=$TEST_TMP/curl-run
http GET "$GW_URL/status"
expect_status 200

say "the printed walkthrough works as printed, with the printed tokens"
{
	sed -n 's/^  \(T_[A-Z]*=\)/\1/p' "$RUN_OUT"
	sed -n '/^  G=/,/X-Min-Position: \$P/p' "$RUN_OUT"
} >"$TEST_TMP/walkthrough.sh"
expect_eq "$(grep -c curl "$TEST_TMP/walkthrough.sh")" 3 "curl lines in the walkthrough"
expect_eq "$(grep -c 'Authorization: Bearer \$T_HOLDER' "$TEST_TMP/walkthrough.sh")" 3 \
	"requests of the walkthrough with the holder's token"
grep -qxF "  G=$GW_URL" "$TEST_TMP/walkthrough.sh" || fail "the walkthrough does not use the gateway"
HTTP_BODY=$(cd "$TEST_TMP" && CURL_HOME=$TEST_TMP/curl-none \
	timeout 60 bash -eu -o pipefail walkthrough.sh) ||
	fail "the walkthrough failed: $HTTP_BODY"
expect_json .owner Ann
expect_json .balance 2500
expect_json .version 2
expect_json .status open
ANN=$(jq -r .id <<<"$HTTP_BODY")
# without the tokens the same walkthrough gets nowhere
out=$(cd "$TEST_TMP" && grep -v '^T_' walkthrough.sh |
	CURL_HOME=$TEST_TMP/curl-none T_HOLDER= timeout 60 bash -u 2>&1) || true
[[ $out == *'"status":401'* ]] || fail "the walkthrough without tokens said: $out"

say "the printed tokens work as their roles say"
AS=$T_HOLDER http POST "$GW_URL/accounts/$ANN/deposits" '{"amount":100}'
expect_status 201
expect_json .balance 2600
AS=$T_MANAGER http POST "$GW_URL/accounts/$ANN/deposits" '{"amount":100}'
expect_status 201
expect_json .balance 2700
POS=$(jq -r .position <<<"$HTTP_BODY")
AS=$T_AUDITOR http POST "$GW_URL/accounts/$ANN/deposits" '{"amount":100}'
expect_status 403
expect_header Content-Type application/problem+json
[[ $(jq -r .detail <<<"$HTTP_BODY") == *"needs one of the roles: holder, manager"* ]] ||
	fail "the auditor's 403 says: $HTTP_BODY"
AS=$T_AUDITOR http POST "$GW_URL/accounts" '{"owner":"Ann","currency":"EUR"}'
expect_status 403
AS=none http POST "$GW_URL/accounts/$ANN/deposits" '{"amount":100}'
expect_status 401
expect_header WWW-Authenticate 'Bearer realm="tandem", error="invalid_token"'
AS=$T_AUDITOR http GET "$GW_URL/accounts/$ANN" "" -H "X-Min-Position: $POS"
expect_status 200
expect_json .balance 2700
AS=$T_OPERATOR http GET "$GW_URL/status"
expect_status 200
AS=$T_HOLDER http GET "$GW_URL/status"
expect_status 403
AS=none http GET "$GW_URL/ready"
expect_status 200
expect_json .auth jwt
# the printed mint command: another holder, who cannot touch Ann's account
BOB_T=$(run_mint Bob holder)
AS=$BOB_T http POST "$GW_URL/accounts/$ANN/deposits" '{"amount":100}'
expect_status 404
AS=$BOB_T http GET "$GW_URL/accounts/$ANN"
expect_status 404
AS=$BOB_T http POST "$GW_URL/accounts" '{"owner":"Bob","currency":"EUR"}'
expect_status 201
FIRST_T_HOLDER=$T_HOLDER

say "through the gateway: open, deposit, read your writes"
http POST "$GW_URL/accounts" '{"owner":"t0500 first run","currency":"EUR"}'
expect_status 201
ID=$(jq -r .account_id <<<"$HTTP_BODY")
expect_header Location "/accounts/$ID"
BAL=0
for i in 1 2 3 4 5; do
	http POST "$GW_URL/accounts/$ID/deposits" "{\"amount\":$((i * 100))}" \
		-H "Idempotency-Key: t0500-$ID-$i"
	expect_status 201
	BAL=$((BAL + i * 100))
	POS=$(jq -r .position <<<"$HTTP_BODY")
	http GET "$GW_URL/accounts/$ID" "" -H "X-Min-Position: $POS" -H 'X-Wait-Ms: 5000'
	expect_status 200
	expect_json .balance "$BAL"
	expect_json .version $((i + 1))
	expect_header ETag "\"$((i + 1))\""
	has_header X-Position || fail "no X-Position through the gateway"
done

say "GET and HEAD go to the query side, POST to the command side"
# each side's own answer, asked directly, so the gateway's can tell them apart
http GET "${CMD_URLS[0]}/status"
expect_status 404
http GET "${QRY_URLS[0]}/status"
expect_status 200
http GET "$GW_URL/status"
expect_status 200
jq -e '.role == "leader" or .role == "follower"' <<<"$HTTP_BODY" >/dev/null ||
	fail "GET /status through the gateway: $HTTP_BODY"
http GET "${CMD_URLS[0]}/transfers"
expect_status 405
allow=$(header Allow)
# the gateway knows the command side's route: its own 405, the same Allow
http GET "$GW_URL/transfers"
expect_status 405
expect_json .status 405
expect_header Allow "$allow"
http HEAD "${CMD_URLS[0]}/accounts/$ID"
[ "$HTTP_STATUS" != 200 ] || fail "the command side answers HEAD /accounts/{id}"
http HEAD "$GW_URL/accounts/$ID"
expect_status 200
http POST "${QRY_URLS[0]}/accounts" '{"owner":"nobody","currency":"EUR"}'
[ "$HTTP_STATUS" != 201 ] || fail "the query side opened an account"
http POST "$GW_URL/accounts" '{"owner":"t0500 routed","currency":"USD"}'
expect_status 201
http PUT "$GW_URL/accounts/$ID" '{}'
expect_status 405

say "both query replicas answer, and the gateway uses both"
QP=()
for u in "${QRY_URLS[@]}"; do
	http GET "$u/accounts/$ID" "" -H "X-Min-Position: $POS"
	expect_status 200
	expect_json .balance "$BAL"
	QP+=("$(prefix)")
done
[ "${QP[0]}" != "${QP[1]}" ] || fail "both query URLs are one process (${QP[0]})"
seen=
for i in $(seq 1 8); do
	http GET "$GW_URL/accounts/$ID"
	expect_status 200
	p=$(prefix)
	[ "$p" = "${QP[0]}" ] || [ "$p" = "${QP[1]}" ] ||
		fail "GET through the gateway answered by $p, not a query replica"
	[[ " $seen " == *" $p "* ]] || seen+=" $p"
done
expect_eq "$(wc -w <<<"$seen")" 2 "query replicas the gateway used in 8 GETs"
one_leader()
{
	local r

	r=$(for u in "${QRY_URLS[@]}"; do curl -sS --max-time 5 "$u/status" | jq -r .role; done | sort | tr '\n' ' ')
	[ "$r" = "follower leader " ]
}
wait_for 15 one_leader

say "SIGINT to the run's process group (Ctrl-C) stops all of it"
stop_run INT "-$RUN_PID" 130

say "second run on the same ports, two command replicas: the data is kept"
start_run second COMMAND_REPLICAS=2
wait_run_ready
parse_urls
expect_eq "${#CMD_URLS[@]}" 2 "command URLs"
expect_eq "${#QRY_URLS[@]}" 1 "query URLs"
PIDS=$TEST_TMP/pids.second
record_pids "$PIDS" 2 1
expect_eq "$(sha256sum <"$STATE/auth/jwks.json")" "$JWKS_SUM" "jwks.json of the second run"
parse_tokens
[ "$T_HOLDER" != "$FIRST_T_HOLDER" ] || fail "the second run printed the first run's token"
for t in "$T_HOLDER" "$FIRST_T_HOLDER"; do
	AS=$t http GET "$GW_URL/accounts/$ANN"
	expect_status 200
	expect_json .owner Ann
done
http GET "$GW_URL/accounts/$ID" "" -H "X-Min-Position: $POS" -H 'X-Wait-Ms: 5000'
expect_status 200
expect_json .balance "$BAL"
expect_json .owner "t0500 first run"
http GET "$GW_URL/streams/account-$ID"
expect_status 200
expect_json '[.items[].type] | join(",")' \
	"AccountOpened,MoneyDeposited,MoneyDeposited,MoneyDeposited,MoneyDeposited,MoneyDeposited"
http POST "$GW_URL/accounts/$ID/deposits" '{"amount":100}' -H "Idempotency-Key: t0500-$ID-1"
expect_status 201
expect_header Idempotent-Replayed true
expect_json .version 2

say "both command replicas answer, and the gateway uses both"
CP=()
for u in "${CMD_URLS[@]}"; do
	http POST "$u/accounts/$ID/deposits" '{"amount":1}'
	expect_status 201
	CP+=("$(prefix)")
	BAL=$((BAL + 1))
done
[ "${CP[0]}" != "${CP[1]}" ] || fail "both command URLs are one process (${CP[0]})"
seen=
for i in $(seq 1 8); do
	http POST "$GW_URL/accounts/$ID/deposits" '{"amount":1}'
	expect_status 201
	BAL=$((BAL + 1))
	p=$(prefix)
	[ "$p" = "${CP[0]}" ] || [ "$p" = "${CP[1]}" ] ||
		fail "POST through the gateway answered by $p, not a command replica"
	[[ " $seen " == *" $p "* ]] || seen+=" $p"
done
expect_eq "$(wc -w <<<"$seen")" 2 "command replicas the gateway used in 8 POSTs"
POS=$(jq -r .position <<<"$HTTP_BODY")
http GET "$GW_URL/accounts/$ID" "" -H "X-Min-Position: $POS" -H 'X-Wait-Ms: 5000'
expect_status 200
expect_json .balance "$BAL"

say "a second run on the same state folder is refused at once"
t0=$SECONDS
rc=0
out=$(env TANDEM_BIN="$BIN" TANDEM_STATE="$STATE" GATEWAY_PORT="$GW_PORT" \
	COMMAND_PORT="$CMD_PORT" QUERY_PORT="$QRY_PORT" \
	timeout -k 5 20 "$RUN" 2>&1) || rc=$?
[ "$rc" -ne 0 ] && [ "$rc" -ne 124 ] && [ "$rc" -ne 137 ] ||
	fail "a concurrent run: exit status $rc; output: $out"
[ $((SECONDS - t0)) -le 5 ] || fail "a concurrent run took $((SECONDS - t0)) s to fail"
expect_eq "$(wc -l <<<"$out")" 1 "lines of output of a concurrent run"
[[ $out == *"another 'make run' is using"* ]] || fail "a concurrent run said: $out"
all_alive()
{
	local pid st what

	while read -r pid st what; do
		same_running "$pid" "$st" || fail "$what $pid died"
	done <"$PIDS"
}
all_alive
http GET "$GW_URL/health"
expect_status 200

say "SIGTERM to scripts/run alone stops all of it"
stop_run TERM "$RUN_PID" 143

say "a busy port is a one-line error, at once, and nothing starts"
BUSY=$(free_port)
perl -MIO::Socket::INET -e '
	my $s = IO::Socket::INET->new(LocalAddr => "127.0.0.1",
		LocalPort => $ARGV[0], Listen => 5, ReuseAddr => 1)
		or die "listen: $!\n";
	sleep 300;' "$BUSY" &
LISTENER=$!
track_pid "$LISTENER"
busy_listens()
{
	[ -n "$(ss -Hltn "sport = :$BUSY")" ]
}
wait_for 10 busy_listens
PGLOG_SIZE=$(stat -L -c %s "$STATE/pg/log")
for var in GATEWAY_PORT COMMAND_PORT QUERY_PORT; do
	t0=$(_lib_now_ms)
	rc=0
	out=$(env TANDEM_BIN="$BIN" TANDEM_STATE="$STATE" GATEWAY_PORT="$GW_PORT" \
		COMMAND_PORT="$CMD_PORT" QUERY_PORT="$QRY_PORT" "$var=$BUSY" \
		timeout -k 5 20 "$RUN" 2>&1) || rc=$?
	ms=$(($(_lib_now_ms) - t0))
	[ "$rc" -ne 0 ] && [ "$rc" -ne 124 ] && [ "$rc" -ne 137 ] ||
		fail "$var busy: exit status $rc; output: $out"
	[ "$ms" -le 5000 ] || fail "$var busy: took $ms ms to fail"
	expect_eq "$(wc -l <<<"$out")" 1 "lines of output with $var busy"
	[[ $out == "run: port $BUSY is busy"*"$var"* ]] ||
		fail "$var busy: '$out' does not name the port and $var"
	if "$TANDEM_ROOT/scripts/pg" status "$STATE/pg" >/dev/null ||
		[ "$(stat -L -c %s "$STATE/pg/log")" != "$PGLOG_SIZE" ]; then
		fail "$var busy: PostgreSQL was started"
	fi
	for p in "$GW_PORT" "$CMD_PORT" "$QRY_PORT"; do
		[ "$p" = "$BUSY" ] || [ -z "$(ss -Hltn "sport = :$p")" ] ||
			fail "$var busy: port $p listens"
	done
	left=$(leftovers -1)
	[ -z "$left" ] || fail "$var busy: left behind: $left"
	say "$var busy: '$out' after $ms ms"
done
busy_listens || fail "the listener on $BUSY is gone"
stop_pid "$LISTENER" >/dev/null

say "ok"
