#!/usr/bin/env bash
# t0020-readme-config.sh - the README's configuration tables and the code
# agree, both ways:
#   - every variable a binary lists in --help is in a table that is about
#     that binary ("Both services:", "Command service only:", "Query service
#     only:", "`bin/migrate`:");
#   - every row of those tables names a variable each of its binaries reads;
#   - the default the README gives is the one --help prints (the code's
#     config table): "required", "empty", a value, per binary ("8081
#     (command), 8082 (query)"), or, for a default that depends on where the
#     binary lies, "`A` if ..., else `B`";
#   - every row of a table about a script or file (its label names it in
#     backquotes, e.g. "`make run` (`scripts/run`):") names a variable that
#     file reads as ${VAR:-default} (${VAR:?...} is "required", "$ROOT/" the
#     project folder) or sets as VAR=value, with that default.
# Then each check is shown to fail on a README copy that breaks it.
# shellcheck disable=SC2016 # the backquotes are Markdown
set -eu -o pipefail
# shellcheck source-path=SCRIPTDIR source=lib.sh
. "$(dirname "$0")/lib.sh"

README=$TANDEM_ROOT/README.md
BINS="command-service query-service migrate"

# --- what the binaries say -------------------------------------------------
# Each binary runs from two copies: A has a migrations/ beside its bin/, B
# has none, so a default that depends on the binary's place shows as two.
# $TEST_TMP/help/BIN: "VAR<TAB>default in A<TAB>default in B" per variable,
# with A's directory written as "bin/..".
mkdir -p "$TEST_TMP/A/bin" "$TEST_TMP/A/migrations" "$TEST_TMP/B/bin" "$TEST_TMP/help"
adir=$(realpath "$TEST_TMP/A")

# help_defaults FILE: "VAR<TAB>default" from a --help output.
help_defaults()
{
	awk '/^Environment:/ { e = 1; next }
	e && NF {
		d = $0
		if (d ~ /\(required\)$/)
			d = "required"
		else if (match(d, /\(default: .*\)$/))
			d = substr(d, RSTART + 10, RLENGTH - 11)
		else
			d = "?"
		print $1 "\t" d
	}' "$1"
}

for bin in $BINS; do
	cp "$TANDEM_BIN/$bin" "$TEST_TMP/A/bin/$bin"
	cp "$TANDEM_BIN/$bin" "$TEST_TMP/B/bin/$bin"
	"$TEST_TMP/A/bin/$bin" --help >"$TEST_TMP/help/$bin.A"
	"$TEST_TMP/B/bin/$bin" --help >"$TEST_TMP/help/$bin.B"
	join -t $'\t' <(help_defaults "$TEST_TMP/help/$bin.A" | sort) \
		<(help_defaults "$TEST_TMP/help/$bin.B" | sort) |
		sed "s#$adir/#bin/../#g" >"$TEST_TMP/help/$bin"
	[ -s "$TEST_TMP/help/$bin" ] || fail "$bin --help lists no variables"
	[ "$(wc -l <"$TEST_TMP/help/$bin")" -eq \
		"$(help_defaults "$TEST_TMP/help/$bin.A" | wc -l)" ] ||
		fail "$bin --help lists other variables depending on where it lies"
	if grep -q $'\t?\t\|\t?$' "$TEST_TMP/help/$bin"; then
		fail "$bin --help gives a variable neither a default nor (required):" \
			"$(grep $'\t?' "$TEST_TMP/help/$bin")"
	fi
done

# HELP_A[BIN.VAR], HELP_B[BIN.VAR]: the defaults, from the files above
declare -A HELP_A=() HELP_B=()
for bin in $BINS; do
	while IFS=$'\t' read -r var a b; do
		HELP_A[$bin.$var]=$a
		HELP_B[$bin.$var]=$b
	done <"$TEST_TMP/help/$bin"
done

# --- the README's tables -----------------------------------------------
# tables FILE: "LABEL<TAB>VAR<TAB>DEFAULT" for each row of each table in the
# Configuration section; LABEL is the last line of text above the table.
tables()
{
	awk -F'|' '
	/^## / { inside = ($0 == "## Configuration"); next }
	!inside { next }
	/^\|/ {
		row++
		if (row <= 2)
			next
		v = $2; d = $3
		gsub(/^ +| +$/, "", v); gsub(/^ +| +$/, "", d)
		print label "\t" v "\t" d
		next
	}
	NF { label = $0 }
	{ row = 0 }
	' "$1"
}

# the binaries a table is about, from its label; empty if it is about a file
label_bins()
{
	case $1 in
	"Both services:") echo "command-service query-service" ;;
	"Command service only:") echo command-service ;;
	"Query service only:") echo query-service ;;
	'`bin/migrate`:') echo migrate ;;
	esac
}

# short name of a binary in a per-binary default ("8081 (command)")
short()
{
	case $1 in
	command-service) echo command ;;
	query-service) echo query ;;
	*) echo "$1" ;;
	esac
}

# readme_default CELL BIN WHICH: the default the README gives BIN in CELL;
# WHICH is "A" (the first one) or "B" (the one after "else", if any).
readme_default()
{
	local cell=$1 bin=$2 which=$3 part rest found=""

	# per binary: "V (name), W (name)"
	if [[ $cell =~ ^[^,]+\ \((command|query|migrate)\)(,\ [^,]+\ \((command|query|migrate)\))*$ ]]; then
		rest=$cell
		while [ -n "$rest" ]; do
			part=${rest%%, *}
			if [ "$part" = "$rest" ]; then rest=; else rest=${rest#*, }; fi
			if [ "${part##* (}" = "$(short "$bin"))" ]; then
				found=${part% (*}
			fi
		done
		[ -n "$found" ] || return 1
		cell=$found
	fi
	if [ "$which" = B ]; then
		[[ $cell =~ else\ \`([^\`]*)\` ]] || return 1
		echo "${BASH_REMATCH[1]}"
		return 0
	fi
	if [[ $cell =~ ^\`([^\`]*)\` ]]; then
		echo "${BASH_REMATCH[1]}"
	else
		echo "${cell%% *}"
	fi
}

# file_default FILE VAR: the default FILE gives VAR: X for the first
# ${VAR:-X} (or ${VAR-X}, ${VAR:=X}), "required" for ${VAR:?...}, else the
# value of a VAR=X line (an env file), else "empty" when FILE reads $VAR
# bare; "$ROOT/" (the project folder) is dropped. Fails when FILE does not
# read VAR.
file_default()
{
	local file=$1 name=$2 d

	d=$(grep -oE "\\\$\\{$name:?[-=?][^}]*\\}" "$file" | head -n 1) || true
	if [ -n "$d" ]; then
		d=${d#"\${$name"}
		d=${d#:}
		case $d in
		\?*) d=required ;;
		*)
			d=${d#[-=]}
			d=${d%\}}
			;;
		esac
	elif grep -q "^$name=" "$file"; then
		d=$(sed -n "s/^$name=//p" "$file" | head -n 1)
	elif grep -qE "\\\$(\\{$name\\}|$name([^A-Za-z0-9_]|\$))" "$file"; then
		d=
	else
		return 1
	fi
	d=${d#\$ROOT/}
	d=${d#\"}
	d=${d%\"}
	[ -n "$d" ] || d=empty
	echo "$d"
}

# check_readme FILE: exits (via fail) at the first disagreement; prints the
# number of rows checked.
check_readme()
{
	local readme=$1 label var cell bins bin f want got gotb rows=0
	local -A documented=()

	tables "$readme" >"$TEST_TMP/rows"
	[ -s "$TEST_TMP/rows" ] || fail "$readme has no configuration tables"
	while IFS=$'\t' read -r label var cell; do
		[[ $var =~ ^\`([A-Z][A-Z0-9_]*)\`$ ]] ||
			fail "'$label' row '$var': the variable is not \`NAME\`"
		var=${BASH_REMATCH[1]}
		[ -n "$cell" ] || fail "'$label' $var: no default"
		bins=$(label_bins "$label")
		if [ -n "$bins" ]; then
			for bin in $bins; do
				[ -n "${HELP_A[$bin.$var]:-}" ] ||
					fail "README table '$label' has $var, which $bin does not read"
				got=${HELP_A[$bin.$var]}
				gotb=${HELP_B[$bin.$var]}
				want=$(readme_default "$cell" "$bin" A) ||
					fail "README gives $var no default for $bin: '$cell'"
				[ "$want" = "$got" ] ||
					fail "README says $var defaults to '$want' for $bin;" \
						"$bin --help says '$got'"
				if [ "$gotb" != "$got" ]; then
					want=$(readme_default "$cell" "$bin" B) ||
						fail "$var's default depends on where $bin lies" \
							"('$got' or '$gotb'); README gives only '$cell'"
					[ "$want" = "$gotb" ] ||
						fail "README says $var defaults to '$want' where $bin" \
							"has no ../migrations; $bin --help says '$gotb'"
				fi
				documented[$bin.$var]=1
			done
		else
			[[ $label =~ \`([^\`]*[/.][^\`]*)\` ]] ||
				fail "README table '$label': which binary or file is it about?"
			f=${BASH_REMATCH[1]}
			[ -f "$TANDEM_ROOT/$f" ] ||
				fail "README table '$label' is about $f, which does not exist"
			got=$(file_default "$TANDEM_ROOT/$f" "$var") ||
				fail "README table '$label' has $var, which $f does not read"
			want=$(readme_default "$cell" - A) ||
				fail "README gives $var no default: '$cell'"
			[ "$want" = "$got" ] ||
				fail "README says $var defaults to '$want'; $f says '$got'"
		fi
		rows=$((rows + 1))
	done <"$TEST_TMP/rows"
	for bin in $BINS; do
		while IFS=$'\t' read -r var _; do
			[ -n "${documented[$bin.$var]:-}" ] ||
				fail "$bin reads $var, but no README table about $bin has it"
		done <"$TEST_TMP/help/$bin"
	done
	echo "$rows"
}

rows=$(check_readme "$README")
vars=$(cat "$TEST_TMP"/help/command-service "$TEST_TMP"/help/query-service \
	"$TEST_TMP"/help/migrate | wc -l)
say "README: $rows configuration rows agree with the code ($vars variables in --help)"
[ "$vars" -ge 20 ] || fail "only $vars variables in the binaries' --help"
[ "$rows" -ge 25 ] || fail "only $rows configuration rows checked"

# --- each check can fail ---------------------------------------------------
# breaks NAME MESSAGE SED_EXPR: check_readme fails on a copy of the README
# edited by SED_EXPR, saying MESSAGE.
breaks()
{
	local name=$1 msg=$2 expr=$3 out st=0

	sed "$expr" "$README" >"$TEST_TMP/$name.md"
	cmp -s "$README" "$TEST_TMP/$name.md" && fail "$name: the edit changed nothing"
	out=$( (check_readme "$TEST_TMP/$name.md") 2>&1) || st=$?
	[ "$st" -ne 0 ] || fail "$name: the check passed a broken README"
	grep -qF -- "$msg" <<<"$out" ||
		fail "$name: the check failed for another reason: $out"
	say "$name: $(tail -n 1 <<<"$out")"
}

breaks missing-row 'command-service reads COMMAND_RETRIES, but no README table' \
	'/^| `COMMAND_RETRIES` |/d'
breaks unknown-row 'has NO_SUCH_VARIABLE, which command-service does not read' \
	'/^| `COMMAND_RETRIES` |/a | `NO_SUCH_VARIABLE` | 1 | nothing |'
breaks wrong-table 'has DB_POOL_SIZE, which query-service does not read' \
	'/^| `DB_POOL_SIZE` |/d; /^| `PROJECTOR_BATCH` |/a | `DB_POOL_SIZE` | 0 | moved |'
breaks wrong-default "README says DB_QUEUE_MAX defaults to '1023'" \
	's/^| `DB_QUEUE_MAX` | 1024 |/| `DB_QUEUE_MAX` | 1023 |/'
breaks wrong-port "README says PORT defaults to '8083' for query-service" \
	's/^\(| `PORT` | 8081 (command), \)8082 (query)/\18083 (query)/'
breaks required "README says DATABASE_URL defaults to 'none'" \
	'0,/^| `DATABASE_URL` | required |/s//| `DATABASE_URL` | none |/'
breaks empty-default "README says READ_DATABASE_URL defaults to 'DATABASE_URL'" \
	's/^| `READ_DATABASE_URL` | [^|]*|/| `READ_DATABASE_URL` | `DATABASE_URL` |/'
breaks placed-default "has no ../migrations; migrate --help says 'migrations'" \
	's#^\(| `MIGRATIONS_DIR` | .*else `\)migrations`#\1./migrations`#'
breaks both-services 'has LEADER_RETRY_MS, which command-service does not read' \
	'/^| `LEADER_RETRY_MS` |/d; /^| `LOG_LEVEL` | `info` | `debug`/a | `LEADER_RETRY_MS` | 500 | moved |'
breaks unknown-table 'which binary or file is it about?' \
	's/^Query service only:$/Query side:/'

# A row of a table about a script or file (the first whose variable is in
# no other table), with a wrong default, and a variable the file does not
# read beside it.
srow=$(tables "$README" | awk -F'\t' '
	{ n[$2]++; row[NR] = $0; lab[NR] = $1; v[NR] = $2 }
	END {
		for (i = 1; i <= NR; i++)
			if (lab[i] ~ /`[^`]*[\/.][^`]*`/ && lab[i] != "`bin/migrate`:" &&
			    n[v[i]] == 1) {
				print row[i]
				exit
			}
	}')
[ -n "$srow" ] || fail "README has no configuration table about a script"
IFS=$'\t' read -r slabel svar scell <<<"$srow"
[ -z "$(label_bins "$slabel")" ] || fail "picked a binary's table: $slabel"
[[ $slabel =~ \`([^\`]*[/.][^\`]*)\` ]] || fail "no file in '$slabel'"
sfile=${BASH_REMATCH[1]}
svar=${svar//\`/}
breaks script-default "README says $svar defaults to 'x$(readme_default "$scell" - A)'" \
	"s/^| \`$svar\` | \`\\{0,1\\}/&x/"
breaks script-var "has NOT_IN_SCRIPT, which $sfile does not read" \
	"/^| \`$svar\` |/a | \`NOT_IN_SCRIPT\` | 1 | nothing |"
