#!/usr/bin/env bash
# Every environment variable a binary lists in --help is documented in the
# README's configuration tables.
set -eu -o pipefail
. "$(dirname "$0")/lib.sh"

readme="$TANDEM_ROOT/README.md"
checked=0
for bin in command-service query-service migrate; do
	vars=$("$TANDEM_BIN/$bin" --help | awk '/^Environment:/{e=1;next} e&&NF{print $1}')
	[ -n "$vars" ] || fail "$bin --help lists no variables"
	for v in $vars; do
		grep -q "^| \`$v\` |" "$readme" ||
			fail "$bin reads $v, but README.md does not document it"
		checked=$((checked + 1))
	done
done
# the check itself must be able to fail
if grep -q '^| `NO_SUCH_VARIABLE` |' "$readme"; then
	fail "README documents a variable no binary has"
fi
[ "$checked" -ge 15 ] || fail "only $checked variables checked"
say "checked $checked variables"
