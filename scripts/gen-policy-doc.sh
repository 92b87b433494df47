#!/bin/sh
# Regenerate the syscall policy table in docs/security-model.md (between the
# policy-table markers) from the binary's own table:
#
#   scripts/gen-policy-doc.sh build/bin/quiver-guest           rewrite the doc
#   scripts/gen-policy-doc.sh build/bin/quiver-guest --check   fail if it is stale
set -eu

bin=${1:?usage: $0 PATH/TO/quiver-guest [--check]}
mode=${2:-write}
doc="$(cd "$(dirname "$0")/.." && pwd)/docs/security-model.md"
begin='<!-- policy-table:begin -->'
end='<!-- policy-table:end -->'

[ -x "$bin" ] || { echo "$0: $bin: not an executable" >&2; exit 1; }
[ -f "$doc" ] || { echo "$0: $doc: missing" >&2; exit 1; }
grep -qxF "$begin" "$doc" && grep -qxF "$end" "$doc" ||
	{ echo "$0: $doc: the markers $begin / $end must each be on a line of their own" >&2; exit 1; }

table=$(mktemp)
out=$(mktemp)
trap 'rm -f "$table" "$out"' EXIT INT TERM

"$bin" policy --format markdown >"$table"
awk -v begin="$begin" -v end="$end" -v table="$table" '
	$0 == begin { print; print ""; while ((getline line < table) > 0) print line; print ""; skip = 1; next }
	$0 == end   { skip = 0 }
	!skip       { print }
' "$doc" >"$out"

if [ "$mode" = "--check" ]; then
	if cmp -s "$doc" "$out"; then
		echo "policy table in docs/security-model.md is up to date"
	else
		echo "docs/security-model.md: policy table is stale; run $0 $bin" >&2
		exit 1
	fi
else
	cat "$out" >"$doc"
	echo "docs/security-model.md: policy table regenerated ($(grep -c '^| [0-9]' "$table") syscalls)"
fi
