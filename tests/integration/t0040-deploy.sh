#!/usr/bin/env bash
# t0040-deploy.sh - the container deployment files, checked without a
# container engine (the topology test t0510 runs the same shape as
# processes):
#
#   compose     docker-compose (Debian's 1.29.2) accepts docker-compose.yml
#               with .env.example, and its resolved form has the services,
#               the volume, the healthcheck, the start order and ports that
#               agree with the gateway's configuration; both services get
#               the key folder TANDEM_JWKS_DIR mounted read-only, their
#               AUTH_JWKS_FILE in it, and AUTH_ISSUER and AUTH_AUDIENCE
#               from the env file; no password, no key folder, no issuer
#               or no audience: no config, naming the variable;
#               .env.example shows every variable the file reads.
#               --profile replica adds only postgres-standby (own volume,
#               after a healthy postgres, deploy/postgres/standby.sh) and
#               query-service-standby (LOG_DATABASE_URL the standby,
#               READ_DATABASE_URL and DATABASE_URL the primary, alias
#               query-service); postgres runs replication-hba.sh first.
#   gateway     nginx -t passes deploy/gateway/nginx.conf as it is (its
#               upstream host names, the compose services, mapped to
#               127.0.0.1 in /etc/hosts of a private mount namespace), and
#               make run's scripts/gateway conf + test.
#   live        that same file serves: in a private network namespace (where
#               8080-8082 are free) nginx with it in front of a real command
#               and query service on their default ports; routing,
#               read-your-writes, 404, 405 (with Allow), 502, with the
#               tests' token passed on and none refused (401); and
#               deploy/healthcheck, the images' HEALTHCHECK, finds each
#               service's port (told apart by which one listens, as every
#               route but /health and /ready needs a token).
#   Dockerfile  Debian 12 stages, the compose targets, a non-root USER and
#               a HEALTHCHECK in the shipped stages, the binaries and the
#               migrations where bin/migrate finds them, the -dev packages
#               the Makefile's pkg-config modules need; the build stage's
#               COPY and RUN make replayed in an empty folder build the
#               binaries; every library those and $TANDEM_BIN's link comes
#               from a package the runtime stage installs (or the base
#               image's), and no package is there for nothing; .dockerignore
#               lets in what the COPY lines copy.
#
# Each check is shown failing on a broken copy where that is cheap.
set -eu -o pipefail
. "$(dirname "$0")/lib.sh"

R=$TANDEM_ROOT
PY=/usr/bin/python3 # Debian's, with python3-yaml (docker-compose needs it)
command -v docker-compose >/dev/null || fail "docker-compose is not installed (scripts/deps)"
command -v nginx >/dev/null || fail "nginx is not installed (scripts/deps)"
"$PY" -c 'import yaml' || fail "$PY cannot import yaml"

# The variables docker-compose.yml reads come from the env file only.
mapfile -t COMPOSE_VARS < <(grep -o '[$][{][A-Za-z_][A-Za-z0-9_]*' "$R/docker-compose.yml" |
	cut -c 3- | sort -u)
[ "${#COMPOSE_VARS[@]}" -ge 3 ] || fail "docker-compose.yml reads only: ${COMPOSE_VARS[*]}"
unset "${COMPOSE_VARS[@]}" COMPOSE_FILE COMPOSE_PROJECT_NAME COMPOSE_PROFILES

# ---------------------------------------------------------------------------
# The gateway's upstreams: "HOST PORT" of each `server` line in nginx.conf.
upstream_servers()
{
	sed -n 's/^[[:space:]]*server[[:space:]]\{1,\}\([A-Za-z0-9._-]*\):\([0-9]*\)[[:space:];].*/\1 \2/p' "$1"
}

# Port of HOST in nginx.conf's upstreams.
upstream_port()
{
	upstream_servers "$1" | awk -v h="$2" '$1 == h && !done { print $2; done = 1 }'
}

# ---------------------------------------------------------------------------
# compose

# check_compose DIR ENV_FILE: DIR/docker-compose.yml passes
# `docker-compose config -q` with ENV_FILE, and its resolved configuration
# is Tandem's topology.
check_compose()
{
	local dir=$1 envf=$2 json s port pw want mounts

	docker-compose -f "$dir/docker-compose.yml" --env-file "$envf" \
		config -q || fail "docker-compose config -q rejects $dir/docker-compose.yml"
	json=$(docker-compose -f "$dir/docker-compose.yml" --env-file "$envf" \
		config | "$PY" -c 'import json, sys, yaml; json.dump(yaml.safe_load(sys.stdin), sys.stdout)') ||
		fail "cannot read the resolved configuration"

	# jqt FILTER MESSAGE: FILTER is true on the resolved configuration.
	jqt()
	{
		[ "$(jq -r "$1" <<<"$json")" = true ] || fail "compose: $2 ($1)"
	}

	for s in postgres migrate command-service query-service gateway; do
		jqt ".services | has(\"$s\")" "no service $s"
	done
	jqt '.volumes | has("pgdata")' "no named volume pgdata"
	jqt '.services.postgres.image | startswith("postgres:15")' \
		"postgres is not PostgreSQL 15"
	jqt '[.services.postgres.volumes[] | if type == "string" then split(":")[0:2] | join(":") else "\(.source):\(.target)" end] | index("pgdata:/var/lib/postgresql/data") != null' \
		"postgres does not keep its data in the volume pgdata"
	jqt '.services.postgres.healthcheck.test | tostring | contains("pg_isready")' \
		"postgres has no pg_isready healthcheck"
	jqt '.services.migrate.depends_on.postgres.condition == "service_healthy"' \
		"migrate does not wait for a healthy postgres"
	jqt '.services.migrate.command == ["migrate"]' "migrate does not run migrate"
	jqt '(.services.migrate.restart // "no") == "no"' "migrate is not one-shot"
	pw=$(sed -n 's/^POSTGRES_PASSWORD=//p' "$envf")
	for s in command-service query-service; do
		jqt ".services[\"$s\"].depends_on.migrate.condition == \"service_completed_successfully\"" \
			"$s does not wait for migrate to complete"
		jqt ".services[\"$s\"].command == [\"$s\"]" "$s does not run $s"
		# --scale: neither a fixed host port nor a fixed container name
		jqt ".services[\"$s\"] | has(\"ports\") | not" "$s publishes a host port"
		jqt ".services[\"$s\"] | has(\"container_name\") | not" \
			"$s has a container_name"
		jqt ".services[\"$s\"].environment.DATABASE_URL | test(\"@postgres:5432/\")" \
			"$s does not reach the postgres service"
		jqt ".services[\"$s\"].environment.PGPASSWORD == \"$pw\"" \
			"$s does not get POSTGRES_PASSWORD"
		port=$(upstream_port "$R/deploy/gateway/nginx.conf" "$s")
		[ -n "$port" ] || fail "deploy/gateway/nginx.conf has no upstream server $s"
		jqt ".services[\"$s\"].environment.PORT == \"$port\"" \
			"$s does not listen where the gateway sends it (port $port)"
	done
	jqt '.services.migrate.environment.PGPASSWORD != null' \
		"migrate does not get POSTGRES_PASSWORD"

	# who may ask: the key folder, read-only, and the token settings
	local jwks_dir iss aud
	jwks_dir=$(sed -n 's/^TANDEM_JWKS_DIR=//p' "$envf")
	[[ $jwks_dir == /* ]] || jwks_dir=$(realpath -m "$dir/$jwks_dir")
	iss=$(sed -n 's/^AUTH_ISSUER=//p' "$envf")
	aud=$(sed -n 's/^AUTH_AUDIENCE=//p' "$envf")
	for s in command-service query-service; do
		# the mounts of the key folder: {target, ro}
		mounts=$(jq -c --arg s "$s" --arg src "$jwks_dir" '
			[.services[$s].volumes // [] | .[]
			 | if type == "string" then split(":")
				| {source: .[0], target: .[1],
				   ro: ((.[2] // "") | split(",") | index("ro") != null)}
			   else {source, target, ro: (.read_only == true)} end
			 | select(.source == $src)]' <<<"$json")
		[ "$(jq length <<<"$mounts")" = 1 ] ||
			fail "compose: $s does not mount TANDEM_JWKS_DIR ($jwks_dir) once: $mounts"
		[ "$(jq '.[0].ro' <<<"$mounts")" = true ] ||
			fail "compose: $s mounts the key folder read-write"
		jqt ".services[\"$s\"].environment.AUTH_JWKS_FILE == (\"$(jq -r '.[0].target' <<<"$mounts")/jwks.json\")" \
			"$s's AUTH_JWKS_FILE is not jwks.json of the mounted key folder"
		jqt "(.services[\"$s\"].environment.AUTH // \"jwt\") == \"jwt\"" \
			"$s does not check tokens"
		jqt ".services[\"$s\"].environment.AUTH_ISSUER == \"$iss\"" \
			"$s does not get AUTH_ISSUER"
		jqt ".services[\"$s\"].environment.AUTH_AUDIENCE == \"$aud\"" \
			"$s does not get AUTH_AUDIENCE"
	done
	for s in command-service query-service; do
		jqt ".services.gateway.depends_on[\"$s\"].condition == \"service_healthy\"" \
			"the gateway does not wait for a healthy $s"
	done
	want=$(sed -n 's/^listen[[:space:]]\{1,\}\([0-9]*\);.*/\1/p' \
		"$R/deploy/gateway/gateway-listen.conf")
	jqt "[.services.gateway.ports[] | if type == \"string\" then (split(\"/\")[0] | split(\":\") | last) else (.target | tostring) end] | index(\"$want\") != null" \
		"the gateway does not publish its port $want"
	jqt '.services.gateway.build.target == "gateway"' \
		"the gateway is not the Dockerfile's gateway target"
	for s in migrate command-service query-service; do
		jqt ".services[\"$s\"].build.target == \"runtime\"" \
			"$s is not built from the runtime target"
	done
	check_compose_replica "$dir" "$envf" "$json"
	COMPOSE_JSON=$json
}

# check_compose_replica DIR ENV_FILE JSON: `--profile replica` (JSON is the
# configuration without it) adds a streaming standby of postgres and query
# replicas that read the log from it, and nothing else.
check_compose_replica()
{
	local dir=$1 envf=$2 json=$3 pw qport

	# Compose 1.29 lists a profile's services in `config` with or without
	# --profile; it starts them only with it.
	jqt '[.services | to_entries[] | select((.value.profiles // []) | length == 0) | .key] | sort == ["command-service", "gateway", "migrate", "postgres", "query-service"]' \
		"without --profile replica, not just the usual services"
	jqt '[.services | to_entries[] | select((.value.profiles // []) | length > 0) | {(.key): .value.profiles}] | add == {"postgres-standby": ["replica"], "query-service-standby": ["replica"]}' \
		"the standby and its query replicas do not exist only with the profile replica"
	jqt '[.services.postgres.volumes[] | select(type == "object" and (.target | startswith("/docker-entrypoint-initdb.d/")) and (.source | endswith("/deploy/postgres/replication-hba.sh")) and .read_only == true)] | length == 1' \
		"postgres does not run deploy/postgres/replication-hba.sh on its first start"
	json=$(docker-compose -f "$dir/docker-compose.yml" --env-file "$envf" \
		--profile replica config | "$PY" -c 'import json, sys, yaml; json.dump(yaml.safe_load(sys.stdin), sys.stdout)') ||
		fail "docker-compose --profile replica config rejects $dir/docker-compose.yml"
	pw=$(sed -n 's/^POSTGRES_PASSWORD=//p' "$envf")
	qport=$(upstream_port "$R/deploy/gateway/nginx.conf" query-service)

	# the standby: postgres 15, its own volume, a base backup of postgres
	jqt '.services["postgres-standby"].image == .services.postgres.image' \
		"postgres-standby is not the primary's image"
	jqt '[.services["postgres-standby"].volumes[] | if type == "string" then split(":") | {source: .[0], target: .[1]} else {source, target} end | select(.target == "/var/lib/postgresql/data") | .source] as $v | ($v | length == 1) and ($v[0] != "pgdata") and (.volumes | has($v[0]))' \
		"postgres-standby does not keep its data in a named volume of its own"
	jqt '.services["postgres-standby"].depends_on.postgres.condition == "service_healthy"' \
		"postgres-standby does not wait for a healthy postgres"
	jqt '.services["postgres-standby"].healthcheck.test | tostring | contains("pg_isready")' \
		"postgres-standby has no pg_isready healthcheck"
	jqt '.services["postgres-standby"] as $s | [$s.volumes[] | select(type == "object" and (.source | endswith("/deploy/postgres/standby.sh")) and .read_only == true) | .target] as $t | ($t | length == 1) and ($s.entrypoint | index($t[0]) != null)' \
		"postgres-standby does not start with deploy/postgres/standby.sh"
	jqt ".services[\"postgres-standby\"].environment | .PRIMARY_HOST == \"postgres\" and .PRIMARY_PORT == \"5432\" and .PGPASSWORD == \"$pw\"" \
		"postgres-standby does not reach postgres with POSTGRES_PASSWORD"

	# the query replicas on it
	local s=query-service-standby
	jqt ".services[\"$s\"].command == [\"query-service\"]" "$s does not run query-service"
	jqt ".services[\"$s\"].environment.LOG_DATABASE_URL | test(\"@postgres-standby:5432/\")" \
		"$s's LOG_DATABASE_URL is not the standby"
	jqt ".services[\"$s\"].environment | (.READ_DATABASE_URL | test(\"@postgres:5432/\")) and (.DATABASE_URL | test(\"@postgres:5432/\"))" \
		"$s's READ_DATABASE_URL or DATABASE_URL is not the primary"
	jqt ".services[\"$s\"].environment | .PGPASSWORD == \"$pw\" and .PORT == \"$qport\"" \
		"$s does not get POSTGRES_PASSWORD or the gateway's query port $qport"
	jqt ".services[\"$s\"].depends_on | .[\"postgres-standby\"].condition == \"service_healthy\" and .migrate.condition == \"service_completed_successfully\"" \
		"$s does not wait for a healthy standby and a completed migrate"
	jqt ".services[\"$s\"] | (has(\"ports\") or has(\"container_name\")) | not" \
		"$s has a host port or a container_name (--scale)"
	jqt ".services[\"$s\"].networks.default.aliases | index(\"query-service\") != null" \
		"$s is not reachable as query-service (the gateway's upstream)"
	jqt ".services[\"$s\"].environment | .AUTH_ISSUER == \"$(sed -n 's/^AUTH_ISSUER=//p' "$envf")\" and .AUTH_AUDIENCE == \"$(sed -n 's/^AUTH_AUDIENCE=//p' "$envf")\"" \
		"$s does not get the token settings"
	jqt ".services[\"$s\"].environment.AUTH_JWKS_FILE == .services[\"query-service\"].environment.AUTH_JWKS_FILE and .services[\"$s\"].volumes == .services[\"query-service\"].volumes" \
		"$s does not get the key folder as query-service does"
}

say "compose: docker-compose.yml with .env.example"
check_compose "$R" "$R/.env.example"
# for the Dockerfile checks below
jq -r '[.services[].build.target // empty] | unique | .[]' <<<"$COMPOSE_JSON" \
	>"$TEST_TMP/compose-targets"
for v in "${COMPOSE_VARS[@]}"; do
	grep -q "^$v=." "$R/.env.example" ||
		fail "docker-compose.yml reads $v, which .env.example does not show"
done

say "compose: without POSTGRES_PASSWORD it refuses"
: >"$TEST_TMP/empty.env"
if docker-compose -f "$R/docker-compose.yml" --env-file "$TEST_TMP/empty.env" \
	config -q 2>"$TEST_TMP/nopw.err"; then
	fail "docker-compose config accepts the file without POSTGRES_PASSWORD"
fi
grep -q POSTGRES_PASSWORD "$TEST_TMP/nopw.err" ||
	fail "no word of POSTGRES_PASSWORD: $(cat "$TEST_TMP/nopw.err")"

say "compose: without the key folder, the issuer or the audience it refuses"
for v in POSTGRES_PASSWORD TANDEM_JWKS_DIR AUTH_ISSUER AUTH_AUDIENCE; do
	grep -v "^$v=" "$R/.env.example" >"$TEST_TMP/no-$v.env"
	cmp -s "$R/.env.example" "$TEST_TMP/no-$v.env" &&
		fail ".env.example has no $v line"
	if docker-compose -f "$R/docker-compose.yml" --env-file "$TEST_TMP/no-$v.env" \
		config -q 2>"$TEST_TMP/no-$v.err"; then
		fail "docker-compose config accepts the file without $v"
	fi
	grep -q "$v" "$TEST_TMP/no-$v.err" ||
		fail "without $v: no word of it: $(cat "$TEST_TMP/no-$v.err")"
done

say "compose: broken copies fail"
# compose_broken NAME SED_SCRIPT EXPECTED_MESSAGE
compose_broken()
{
	local d=$TEST_TMP/broken-$1

	mkdir -p "$d"
	sed "$2" "$R/docker-compose.yml" >"$d/docker-compose.yml"
	! cmp -s "$d/docker-compose.yml" "$R/docker-compose.yml" ||
		fail "the sed script '$2' changes nothing"
	if (check_compose "$d" "$R/.env.example") 2>"$d/err"; then
		fail "check_compose accepts the broken copy $1"
	fi
	grep -q -- "$3" "$d/err" ||
		fail "broken copy $1 failed for another reason: $(tail -n 5 "$d/err")"
}
compose_broken order 's/service_completed_successfully/service_started/' \
	"does not wait for migrate to complete"
compose_broken key 's/condition: service_healthy/conditon: service_healthy/' \
	"config -q rejects"
compose_broken port '/^  command-service:/a\    ports: ["8081:8081"]' \
	"command-service publishes a host port"
compose_broken jwks-rw '/^      read_only: true$/d' "mounts the key folder read-write"
compose_broken jwks-path 's#^  AUTH_JWKS_FILE: /etc/tandem/auth/#&x/#' \
	"AUTH_JWKS_FILE is not jwks.json of the mounted key folder"
compose_broken no-issuer '/^  AUTH_ISSUER: /d' "does not get AUTH_ISSUER"
# --profile replica
compose_broken replica-profile '/^  postgres-standby:/,/^  query-service-standby:/{/profiles:/d}' \
	"without --profile replica, not just the usual services"
compose_broken replica-name 's/profiles: \["replica"\]/profiles: ["replicas"]/' \
	"do not exist only with the profile replica"
compose_broken replica-none '/^  postgres-standby:/,/^  gateway:/{/^  gateway:/!d}' \
	"do not exist only with the profile replica"
compose_broken replica-entrypoint 's#"/usr/local/bin/tandem-standby"\]#"/usr/local/bin/x"]#' \
	"does not start with deploy/postgres/standby.sh"
compose_broken replica-primary 's/PRIMARY_HOST: postgres$/PRIMARY_HOST: postgres-standby/' \
	"does not reach postgres with POSTGRES_PASSWORD"
compose_broken replica-log '/LOG_DATABASE_URL/s/@postgres-standby:/@postgres:/' \
	"LOG_DATABASE_URL is not the standby"
compose_broken replica-read '/READ_DATABASE_URL/s/@postgres:/@postgres-standby:/' \
	"READ_DATABASE_URL or DATABASE_URL is not the primary"
compose_broken replica-order '/^  postgres-standby:/,/^  query-service-standby:/s/condition: service_healthy/condition: service_started/' \
	"postgres-standby does not wait for a healthy postgres"
compose_broken replica-volume 's/- pgstandby:/- pgdata:/' \
	"does not keep its data in a named volume of its own"
compose_broken replica-hba 's#/docker-entrypoint-initdb.d/10-#/tmp/10-#' \
	"does not run deploy/postgres/replication-hba.sh"
compose_broken replica-alias '/aliases: \["query-service"\]/d' \
	"config -q rejects\|not reachable as query-service"
compose_broken replica-wait '/^  query-service-standby:/,/^  gateway:/s/condition: service_healthy/condition: service_started/' \
	"does not wait for a healthy standby"

say "compose: deploy/postgres's scripts"
for f in replication-hba.sh standby.sh; do
	sh -n "$R/deploy/postgres/$f" || fail "deploy/postgres/$f: sh -n fails"
done
grep -q '^echo "host replication all all scram-sha-256" >>"$PGDATA/pg_hba.conf"$' \
	"$R/deploy/postgres/replication-hba.sh" ||
	fail "replication-hba.sh adds no password-checked replication line"
grep -q 'pg_basebackup .*-R -X stream' "$R/deploy/postgres/standby.sh" ||
	fail "standby.sh does not take a streaming base backup with -R"
grep -q '^exec postgres -c hot_standby=on' "$R/deploy/postgres/standby.sh" ||
	fail "standby.sh does not run a hot standby"

# ---------------------------------------------------------------------------
# gateway configuration

conf=$R/deploy/gateway/nginx.conf
for u in tandem_command tandem_query; do
	grep -q "^[[:space:]]*upstream $u {" "$conf" ||
		fail "deploy/gateway/nginx.conf defines no upstream $u"
done
grep -q '^[[:space:]]*include routes.conf;' "$conf" ||
	fail "deploy/gateway/nginx.conf does not include routes.conf"
hosts_names=$(upstream_servers "$conf" | awk '{ print $1 }' | sort -u | tr '\n' ' ')
[ "$hosts_names" = "command-service query-service " ] ||
	fail "nginx.conf's upstream hosts are '$hosts_names', not the compose services"

# /etc/hosts with the compose service names on 127.0.0.1, for a private
# mount namespace.
hosts=$TEST_TMP/hosts
{
	cat /etc/hosts
	echo "127.0.0.1 $hosts_names"
} >"$hosts"

# nginx_t DIR: nginx -t of DIR/nginx.conf (that very file), the compose
# names resolving to 127.0.0.1.
nginx_t()
{
	local p

	p=$(mktemp -d "$TEST_TMP/nginx-t.XXXXXX")
	# shellcheck disable=SC2016 # expanded by the inner bash
	unshare --mount --propagation private bash -c \
		'mount --bind "$1" /etc/hosts && exec nginx -t -q -p "$2/" -c "$3" -e "$2/error.log"' \
		_ "$hosts" "$p" "$1/nginx.conf"
}

say "gateway: nginx -t on deploy/gateway/nginx.conf"
nginx_t "$R/deploy/gateway" || fail "nginx -t fails on deploy/gateway/nginx.conf"

say "gateway: nginx -t fails on a broken copy"
mkdir -p "$TEST_TMP/gw-broken"
cp "$R/deploy/gateway/nginx.conf" "$R/deploy/gateway/routes.conf" "$TEST_TMP/gw-broken/"
if nginx_t "$TEST_TMP/gw-broken" 2>"$TEST_TMP/gw-broken.err"; then
	fail "nginx -t passes without gateway-listen.conf"
fi
grep -q 'gateway-listen.conf' "$TEST_TMP/gw-broken.err" ||
	fail "nginx -t failed for another reason: $(cat "$TEST_TMP/gw-broken.err")"

say "gateway: make run's shape (scripts/gateway conf + test)"
p1=$(free_port)
"$R/scripts/gateway" conf "$TEST_TMP/gw-run" "$p1" \
	127.0.0.1:1,127.0.0.1:2 127.0.0.1:3 || fail "scripts/gateway conf failed"
"$R/scripts/gateway" test "$TEST_TMP/gw-run" || fail "scripts/gateway test failed"
if "$R/scripts/gateway" conf "$TEST_TMP/gw-bad" "$p1" 127.0.0.1 127.0.0.1:3 \
	2>/dev/null; then
	fail "scripts/gateway conf accepts an address without a port"
fi

# ---------------------------------------------------------------------------
# live: the compose gateway file in front of real services, in a network
# namespace of its own (its loopback has every port free, and no route
# out); the services reach the test database by its Unix socket.

sock=${TANDEM_PG_SOCKET:-$TANDEM_PG_DIR/sock}
[ -S "$sock/.s.PGSQL.$PGPORT" ] || fail "no socket $sock/.s.PGSQL.$PGPORT"
migrate_db

cat >"$TEST_TMP/live.sh" <<'LIVE'
# runs in unshare --net --mount; $HOSTS, $NS_DATABASE_URL, $R from outside
set -eu -o pipefail
. "$R/tests/integration/lib.sh"
unset PORT LOG_LEVEL READ_DATABASE_URL TANDEM_HEALTHCHECK_PID

mount --bind "$HOSTS" /etc/hosts
ip link set lo up
export DATABASE_URL=$NS_DATABASE_URL
probe()
{
	bash "$R/deploy/healthcheck" "$@"
}

# Every route but /health and /ready needs a token, which the HEALTHCHECK
# has not: the ports are told apart by which one listens. First only the
# query service, on 8082.
start_service qry query-service PORT=8082

say "live: the services' HEALTHCHECK finds each port"
TANDEM_HEALTHCHECK_PID=$qry_PID probe ||
	fail "healthcheck: query-service not found on 8082"
# a main process that looks like a command service, with nothing on 8081
bash -c 'sleep 30; :' command-service &
fakecmd=$!
track_pid "$fakecmd"
if TANDEM_HEALTHCHECK_PID=$fakecmd probe 2>/dev/null; then
	fail "healthcheck: command-service's port is not 8081"
fi
PORT=8082 TANDEM_HEALTHCHECK_PID=$fakecmd probe ||
	fail "healthcheck: PORT does not win over the process's default"
bash -c 'sleep 30; :' command-service --port 8082 &
fake=$!
track_pid "$fake"
TANDEM_HEALTHCHECK_PID=$fake probe ||
	fail "healthcheck: --port of the main process is not used"
start_service cmd command-service PORT=8081
TANDEM_HEALTHCHECK_PID=$cmd_PID probe || fail "healthcheck: command-service not found on 8081"
if probe --port 9 2>/dev/null; then
	fail "healthcheck: healthy with nothing listening"
fi
if probe --port 8081 /no-such-route 2>/dev/null; then
	fail "healthcheck: healthy on a 404"
fi
if probe --port 8082 /status 2>/dev/null; then
	fail "healthcheck: healthy on a 401 (/status without a token)"
fi

mkdir -p "$TEST_TMP/gw"
nginx -p "$TEST_TMP/gw/" -c "$R/deploy/gateway/nginx.conf" \
	-e "$TEST_TMP/gw/error.log" >"$TEST_TMP/gw/stderr" 2>&1 &
gw=$!
track_pid "$gw"

say "live: the gateway's HEALTHCHECK passes through to a query replica"
wait_for 10 probe --port 8080 /health
if TANDEM_HEALTHCHECK_PID=$$ probe 2>/dev/null; then
	fail "healthcheck: healthy without knowing a port"
fi

G=http://127.0.0.1:8080
say "live: POST to the command side, GET to the query side"
http POST "$G/accounts" '{"owner":"Ann","currency":"EUR"}'
expect_status 201
id=$(jq -r .account_id <<<"$HTTP_BODY")
pos=$(jq -r .position <<<"$HTTP_BODY")
http POST "$G/accounts/$id/deposits" '{"amount":2500}'
expect_status 201
pos=$(jq -r .position <<<"$HTTP_BODY")
http GET "$G/accounts/$id" "" -H "X-Min-Position: $pos"
expect_status 200
expect_json .owner Ann
expect_json .balance 2500
has_header X-Position || fail "no X-Position through the gateway"
http HEAD "$G/accounts/$id"
expect_status 200
expect_header ETag '"2"'

say "live: the gateway passes the token on, and a request without one is 401"
AS=none http POST "$G/accounts" '{"owner":"Ann","currency":"EUR"}'
expect_status 401
expect_header WWW-Authenticate 'Bearer realm="tandem", error="invalid_token"'
AS=none http GET "$G/accounts/$id"
expect_status 401
AS=none http GET "$G/ready"
expect_status 200
expect_json .auth jwt

say "live: the gateway's own answers"
http PUT "$G/accounts/$id" '{}'
expect_status 405
expect_header Allow "GET, HEAD"
http GET "$G/transfers"
expect_status 405
expect_header Allow POST
http GET "$G/nope"
expect_status 404
expect_header Content-Type application/problem+json
stop_pid "$cmd_PID" >/dev/null
http POST "$G/accounts" '{"owner":"Bob","currency":"EUR"}'
expect_status 502
expect_json .status 502
http GET "$G/accounts/$id"
expect_status 200

stop_pid "$gw" >/dev/null
[ "$STOP_STATUS" = 0 ] || fail "nginx exited with $STOP_STATUS on SIGTERM"
kill "$fake" "$fakecmd"
wait "$fake" "$fakecmd" 2>/dev/null || true
LIVE

say "live: deploy/gateway/nginx.conf in front of real services"
mkdir -p "$TEST_TMP/ns"
rc=0
unshare --net --mount --propagation private env TEST_TMP="$TEST_TMP/ns" \
	HOSTS="$hosts" R="$R" \
	NS_DATABASE_URL="host=$sock port=$PGPORT user=$PGUSER dbname=$PGDATABASE" \
	bash "$TEST_TMP/live.sh" || rc=$?
[ "$rc" -eq 0 ] ||
	fail "the live gateway check failed (exit $rc; logs in $TEST_TMP/ns)"

# ---------------------------------------------------------------------------
# Dockerfile

# Instructions, one per line: continuations joined, comments dropped.
instructions()
{
	local line cur=""

	while IFS= read -r line || [ -n "$line" ]; do
		[[ $line =~ ^[[:space:]]*(#|$) ]] && continue
		if [[ $line == *\\ ]]; then
			cur+="${line%\\} "
			continue
		fi
		cur+=$line
		printf '%s\n' "$cur" | tr -s '\t ' '  '
		cur=
	done <"$1"
}

# Packages of the `apt-get install` in a stage's RUN lines.
apt_installs()
{
	grep '^RUN ' <<<"$1" | sed 's/&&/\n/g' |
		sed -n 's/.*apt-get install \(.*\)/\1/p' | tr ' ' '\n' |
		grep -v -e '^-' -e '^$' || true
}

# What dpkg knows of the installed packages, read once: DEPS[p] their
# Pre-Depends and Depends (words, alternatives joined by |, no versions),
# PROVIDER[v] an installed package providing v, BASE the base image's set
# (Essential or Priority required: what debian:12-slim is made of).
declare -A DEPS=() PROVIDER=()
BASE=()
us=$'\x1f'
while read -r kind a b; do
	case $kind in
	D) DEPS[$a]=$b ;;
	P) PROVIDER[$a]=$b ;;
	B) BASE+=("$a") ;;
	esac
done < <(dpkg-query -W -f="\${Package}$us\${db:Status-Status}$us\${Essential}$us\${Priority}$us\${Provides}$us\${Pre-Depends}, \${Depends}\n" |
	awk -F "$us" '
		function norm(s) {
			gsub(/\([^)]*\)/, "", s)
			gsub(/:any/, "", s)
			gsub(/[ \t]/, "", s)
			return s
		}
		$2 == "installed" {
			n = split($6, d, ",")
			out = ""
			for (i = 1; i <= n; i++) {
				x = norm(d[i])
				if (x != "")
					out = out " " x
			}
			print "D", $1, out
			n = split($5, v, ",")
			for (i = 1; i <= n; i++) {
				x = norm(v[i])
				if (x != "")
					print "P", x, $1
			}
			if ($3 == "yes" || $4 == "required")
				print "B", $1
		}')
[ "${#BASE[@]}" -gt 10 ] || fail "dpkg knows ${#BASE[@]} required packages"

# pkg_closure PACKAGE...: fills the associative array CLOSURE with the
# packages and everything they depend on, as installed here (of "a | b"
# the first one installed).
declare -A CLOSURE=()
pkg_closure()
{
	local queue=("$@") p d alt found i=0

	CLOSURE=()
	while [ "$i" -lt "${#queue[@]}" ]; do
		p=${queue[$i]}
		i=$((i + 1))
		[ -z "${CLOSURE[$p]:-}" ] || continue
		[ -n "${DEPS[$p]+set}" ] ||
			fail "package $p is not installed here: cannot follow its dependencies"
		CLOSURE[$p]=1
		for d in ${DEPS[$p]}; do
			found=
			for alt in ${d//|/ }; do
				if [ -n "${DEPS[$alt]+set}" ]; then
					found=$alt
				elif [ -n "${PROVIDER[$alt]:-}" ]; then
					found=${PROVIDER[$alt]}
				fi
				[ -z "$found" ] || break
			done
			[ -z "$found" ] || queue+=("$found")
		done
	done
}

# lib_packages DIR...: the packages that provide the libraries the
# binaries in each DIR link, one a line. One dpkg -S for all of them (it reads its whole
# database each time); dpkg may know a file by the other side of the
# merged /usr, or by its real name.
lib_packages()
{
	local b line path c r
	local -A paths=() owner=()
	local cands=() files=()

	for b in "$@"; do
		files+=("$b/command-service" "$b/query-service" "$b/migrate")
	done
	for b in "${files[@]}"; do
		while IFS= read -r line; do
			case $line in
			*'not found'*) fail "$b: $line" ;;
			*'=> /'*) path=${line#*=> } ;;
			[[:space:]]/*) path=${line#"${line%%/*}"} ;;
			*) continue ;; # linux-vdso
			esac
			paths[${path%% (*}]=1
		done < <(ldd "$b")
	done
	for path in "${!paths[@]}"; do
		for c in "$path" "$(realpath "$path")"; do
			cands+=("$c" "/usr$c" "${c#/usr}")
		done
	done
	while IFS= read -r line; do
		# "pkg:arch, pkg2: /path"; not the "diversion by ..." lines
		[[ $line == *': /'* && $line != diversion* ]] || continue
		c=${line##*: }
		line=${line%%: /*}
		line=${line%%,*}
		owner[$c]=${line%%:*}
	done < <(dpkg -S "${cands[@]}" 2>/dev/null || true)
	for path in "${!paths[@]}"; do
		b=
		for r in "$path" "$(realpath "$path")"; do
			for c in "$r" "/usr$r" "${r#/usr}"; do
				b=${owner[$c]:-}
				[ -z "$b" ] || break 2
			done
		done
		[ -n "$b" ] || fail "no package owns $path"
		if [ -f "$TANDEM_BIN/.mode-san" ] &&
			[[ $b =~ ^lib(asan|ubsan|lsan|tsan)[0-9]*$ ]]; then
			continue # $TANDEM_BIN is a sanitizer build; the image's not
		fi
		echo "$b"
	done | sort -u
}

# missing_libs PACKAGE...: those of LIBPKGS that are neither among
# PACKAGE... (with their dependencies) nor in the base image.
missing_libs()
{
	local p

	pkg_closure "$@" "${BASE[@]}"
	for p in "${LIBPKGS[@]}"; do
		[ -n "${CLOSURE[$p]:-}" ] || echo "$p"
	done
}

df=$R/Dockerfile
[ -f "$df" ] || fail "no Dockerfile"
ins=$(instructions "$df")
# stage blocks: "NAME<TAB>IMAGE" in $TEST_TMP/stages, the instructions of
# stage N in $TEST_TMP/stage.N
n=0
: >"$TEST_TMP/stages"
while IFS= read -r line; do
	if [[ $line =~ ^FROM\ ([^ ]+)(\ [Aa][Ss]\ ([^ ]+))?$ ]]; then
		n=$((n + 1))
		printf '%s\t%s\n' "${BASH_REMATCH[3]:-$n}" "${BASH_REMATCH[1]}" >>"$TEST_TMP/stages"
		: >"$TEST_TMP/stage.$n"
		continue
	fi
	[[ $line =~ ^FROM ]] && fail "Dockerfile: cannot read '$line'"
	[ "$n" -gt 0 ] || fail "Dockerfile: '$line' before the first FROM"
	printf '%s\n' "$line" >>"$TEST_TMP/stage.$n"
done <<<"$ins"
[ "$n" -ge 2 ] || fail "Dockerfile: $n stage(s), not multi-stage"

stage_num()
{
	awk -F '\t' -v s="$1" '$1 == s { print NR; exit }' "$TEST_TMP/stages"
}
stage()
{
	local i

	i=$(stage_num "$1")
	[ -n "$i" ] || fail "Dockerfile: no stage $1"
	cat "$TEST_TMP/stage.$i"
}

say "Dockerfile: Debian 12 stages, the compose targets"
names=()
while IFS=$'\t' read -r name image; do
	case $image in
	debian:12 | debian:12-slim | debian:bookworm | debian:bookworm-slim) ;;
	debian:12@sha256:* | debian:12-slim@sha256:*) ;;
	*)
		printf '%s\n' "${names[@]}" | grep -qx -- "$image" ||
			fail "Dockerfile: stage $name is FROM $image, not Debian 12"
		;;
	esac
	names+=("$name")
done <"$TEST_TMP/stages"
[ "$(tail -n 1 "$TEST_TMP/stages" | cut -f 1)" = runtime ] ||
	fail "Dockerfile: the last stage (docker build's default) is not runtime"
while read -r t; do
	[ -n "$(stage_num "$t")" ] || fail "Dockerfile: no stage $t (a compose target)"
done <"$TEST_TMP/compose-targets"
grep -q . "$TEST_TMP/compose-targets" || fail "compose names no build target"

# shipped STAGE: non-root USER, a HEALTHCHECK running a file the stage copies
shipped()
{
	local st user cmd f

	st=$(stage "$1")
	[[ $(grep '^FROM\|^RUN\|^USER' <<<"$st" | tail -n 1) == USER* ]] ||
		fail "Dockerfile: stage $1 does not end with a USER (before CMD)"
	user=$(grep '^USER ' <<<"$st" | tail -n 1 | cut -d ' ' -f 2)
	case ${user%%:*} in
	'' | root | 0) fail "Dockerfile: stage $1 runs as '$user'" ;;
	esac
	cmd=$(grep '^HEALTHCHECK ' <<<"$st") ||
		fail "Dockerfile: stage $1 has no HEALTHCHECK"
	[[ $cmd == *' CMD '* ]] || fail "Dockerfile: stage $1: HEALTHCHECK without CMD"
	f=$(grep -o '/usr/local/bin/[A-Za-z0-9_-]*' <<<"$cmd" | head -n 1)
	[ -n "$f" ] || fail "Dockerfile: stage $1: what does the HEALTHCHECK run? ($cmd)"
	grep -q "^COPY deploy/healthcheck $f\$" <<<"$st" ||
		fail "Dockerfile: stage $1 does not copy deploy/healthcheck to $f"
}

say "Dockerfile: runtime stage"
shipped runtime
rt=$(stage runtime)
[ "$(awk -F '\t' '$1 == "runtime" { print $2 }' "$TEST_TMP/stages")" = debian:12-slim ] ||
	fail "Dockerfile: runtime is not FROM debian:12-slim"
bins=$(grep '^COPY --from=build ' <<<"$rt") ||
	fail "Dockerfile: runtime copies nothing from build"
bindest=$(awk '{ print $NF }' <<<"$bins")
bindest=${bindest%/}
bst=$(stage build)
workdir=$(sed -n 's/^WORKDIR //p' <<<"$bst" | tail -n 1)
for b in command-service query-service migrate; do
	grep -q " ${workdir%/}/bin/$b " <<<"$bins" ||
		fail "Dockerfile: runtime does not copy bin/$b from the build stage"
	grep -q "^RUN .*make .*bin/$b" <<<"$bst" ||
		fail "Dockerfile: the build stage does not make bin/$b"
done
migdest=$(dirname "$bindest")/migrations
grep -q "^COPY migrations/ $migdest/\$" <<<"$rt" ||
	fail "Dockerfile: runtime does not copy migrations/ to $migdest/ (../migrations beside $bindest)"

say "Dockerfile: the build stage has what make needs"
for f in Makefile VERSION; do
	grep -q "^COPY .*\b$f\b" <<<"$bst" || fail "Dockerfile: build stage lacks $f"
done
for d in migrations common command-service query-service tools; do
	grep -q "^COPY $d/[^ ]* $d/\$" <<<"$bst" || fail "Dockerfile: build stage lacks $d/"
done
binst=$(apt_installs "$bst")
for p in build-essential pkg-config; do
	grep -qx "$p" <<<"$binst" || fail "Dockerfile: build stage does not install $p"
done
mods=$(sed -n 's/^PKGS := //p' "$R/Makefile")
[ -n "$mods" ] || fail "no PKGS in the Makefile"
for m in $mods; do
	pc="$(pkg-config --variable=pcfiledir "$m")/$m.pc"
	dev=$(dpkg -S "$pc" 2>/dev/null | grep -m 1 ': /') ||
		fail "no package owns $pc"
	dev=${dev%%: *}
	dev=${dev%%:*}
	grep -qx "$dev" <<<"$binst" ||
		fail "Dockerfile: build stage does not install $dev (pkg-config $m)"
done

say "Dockerfile: the build stage's make works with just what it copies"
# Its COPY lines replayed into an empty folder (its WORKDIR inside), then
# its RUN make with sh, as docker build would (on this Debian 12 host,
# which has the same -dev packages).
ctx=$TEST_TMP/build-stage
wd=${workdir:-/}
mkdir -p "$ctx$wd"
while read -r _ args; do
	read -ra a <<<"$args"
	dest=${a[-1]}
	[[ $dest == /* ]] || dest=${wd%/}/$dest
	for src in "${a[@]:0:${#a[@]}-1}"; do
		# a source may be a pattern; a folder copies its contents
		mapfile -t matches < <(cd "$R" && compgen -G "$src")
		[ "${#matches[@]}" -gt 0 ] || fail "Dockerfile: build stage copies $src: no such file"
		for m in "${matches[@]}"; do
			if [[ $dest == */ ]]; then
				mkdir -p "$ctx$dest"
				if [ -d "$R/$m" ]; then
					cp -a "$R/${m%/}/." "$ctx$dest"
				else
					cp -a "$R/$m" "$ctx$dest"
				fi
			else
				mkdir -p "$(dirname "$ctx$dest")"
				cp -a "$R/$m" "$ctx$dest"
			fi
		done
	done
done < <(grep '^COPY ' <<<"$bst")
find "$ctx" \( -name '*.o' -o -name '*.d' -o -name '*.a' \) -delete
run=$(grep '^RUN .*make ' <<<"$bst" | sed 's/^RUN //')
(cd "$ctx$wd" && exec sh -c "$run") >"$TEST_TMP/build-stage.log" 2>&1 ||
	fail "the build stage's '$run' fails: $(tail -n 20 "$TEST_TMP/build-stage.log")"
for b in command-service query-service migrate; do
	[ -x "$ctx${wd%/}/bin/$b" ] || fail "the build stage makes no bin/$b"
done
"$ctx${wd%/}/bin/command-service" --version >/dev/null ||
	fail "the build stage's command-service does not run"

say "Dockerfile: runtime libraries"
# the binaries as the build stage makes them, and those under test
mapfile -t LIBPKGS < <(lib_packages "$ctx${wd%/}/bin" "$TANDEM_BIN")
[ "${#LIBPKGS[@]}" -ge 4 ] || fail "ldd found only: ${LIBPKGS[*]}"
say "linked: ${LIBPKGS[*]}"
mapfile -t rpkgs < <(apt_installs "$rt")
[ "${#rpkgs[@]}" -gt 0 ] || fail "Dockerfile: runtime installs no package"
miss=$(missing_libs "${rpkgs[@]}")
[ -z "$miss" ] ||
	fail "Dockerfile: runtime lacks the package(s) of linked libraries: ${miss//$'\n'/ }"
# every package earns its place: without it, a library is missing
for p in "${rpkgs[@]}"; do
	mapfile -t others < <(printf '%s\n' "${rpkgs[@]}" | grep -vx -- "$p")
	miss=$(missing_libs "${others[@]}")
	[ -n "$miss" ] || fail "Dockerfile: runtime installs $p, which no binary needs"
done
say "runtime packages: ${rpkgs[*]}"

say "Dockerfile: gateway stage"
shipped gateway
gst=$(stage gateway)
grep -qx 'nginx\|nginx-light' <<<"$(apt_installs "$gst")" ||
	fail "Dockerfile: gateway installs no Debian nginx"
gcopy=$(grep '^COPY deploy/gateway/nginx.conf ' <<<"$gst") ||
	fail "Dockerfile: gateway does not copy deploy/gateway/nginx.conf"
gdir=$(awk '{ print $NF }' <<<"$gcopy")
for f in routes.conf gateway-listen.conf; do
	grep -q " deploy/gateway/$f " <<<"$gcopy" ||
		fail "Dockerfile: gateway does not copy $f beside nginx.conf"
done
grep '^CMD ' <<<"$gst" | grep -q "\"-c\", \"${gdir%/}/nginx.conf\"" ||
	fail "Dockerfile: the gateway's CMD does not use ${gdir%/}/nginx.conf"

say "Dockerfile: broken copies fail"
# (missing_libs failing is shown above, once for each package.)
# shipped_broken SED_SCRIPT MESSAGE: shipped fails on the runtime stage
# edited by SED_SCRIPT, with MESSAGE.
shipped_broken()
{
	BROKEN_SED=$1
	BROKEN_FILE=$TEST_TMP/stage.$(stage_num runtime)
	if (
		stage() { sed "$BROKEN_SED" "$BROKEN_FILE"; }
		shipped runtime
	) 2>"$TEST_TMP/shipped.err"; then
		fail "shipped accepts a runtime stage edited by '$1'"
	fi
	grep -q -- "$2" "$TEST_TMP/shipped.err" ||
		fail "shipped failed for another reason: $(cat "$TEST_TMP/shipped.err")"
}
shipped_broken 's/^USER .*/USER root/' "runs as 'root'"
shipped_broken 's/^USER .*/USER 0:0/' "runs as '0:0'"
shipped_broken '/^HEALTHCHECK /d' "has no HEALTHCHECK"
shipped_broken '/^COPY deploy\/healthcheck /d' "does not copy deploy/healthcheck"

say ".dockerignore lets in what the Dockerfile copies"
di=$R/.dockerignore
[ "$(grep -v '^#' "$di" | grep -m 1 .)" = '*' ] ||
	fail ".dockerignore does not start by leaving everything out"
while read -r _ args; do
	read -ra a <<<"$args"
	for src in "${a[@]:0:${#a[@]}-1}"; do
		src=${src%/}
		(cd "$R" && compgen -G "$src" >/dev/null) ||
			fail "Dockerfile copies $src, which does not exist"
		ok=0
		p=$src
		while :; do
			grep -qxF -e "!$p" -e "!$p/" "$di" && ok=1 && break
			[[ $p == */* ]] || break
			p=${p%/*}
		done
		[ "$ok" -eq 1 ] || fail ".dockerignore leaves out $src, which the Dockerfile copies"
	done
done < <(grep '^COPY ' <<<"$ins" | grep -v -- '--from=')
say "all deployment checks passed"
