#!/bin/sh
# The README's configuration reference must be what cfgdoc prints from the schema rows in config/cfg.c.
# Usage: test_config_doc.sh CFGDOC README.md [--update]   (--update rewrites the table in README.md)
set -eu
cfgdoc=$1
readme=$2
begin='<!-- config-reference:begin -->'
end='<!-- config-reference:end -->'
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

if [ "$(grep -cxF "$begin" "$readme")" != 1 ] || [ "$(grep -cxF "$end" "$readme")" != 1 ]; then
    echo "FAIL: $readme needs exactly one '$begin' line and one '$end' line" >&2
    exit 1
fi
# Between the markers: a blank line, the table, a blank line (so the markers stay out of the table).
{ echo; "$cfgdoc"; echo; } >"$tmp/generated"
awk -v b="$begin" -v e="$end" '$0 == e { on = 0 } on { print } $0 == b { on = 1 }' "$readme" >"$tmp/current"

if [ "${3:-}" = --update ]; then
    awk -v b="$begin" -v e="$end" -v gen="$tmp/generated" '
        $0 == e { on = 0 }
        !on { print }
        $0 == b { on = 1; while ((getline line < gen) > 0) print line }' "$readme" >"$tmp/readme"
    cat "$tmp/readme" >"$readme"
    exit 0
fi
if ! diff -u "$tmp/current" "$tmp/generated"; then
    echo "FAIL: the configuration reference in $readme differs from cfgdoc's output (- README, + cfgdoc)." >&2
    echo "Fix the rows in config/cfg.c, or run: sh $0 $cfgdoc $readme --update" >&2
    exit 1
fi
echo "ok: the configuration reference in $readme matches the schema rows"
