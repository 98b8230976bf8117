#!/usr/bin/env bash
# Command line: --help, --version, --check-config (valid, each kind of invalid file), unknown options,
# a missing file, and a gateway started on an invalid file refusing to run.
source "$(dirname "$0")/lib.sh"

# run ARGS...: runs coapgw to completion; sets RC, OUT (stdout) and ERR (stderr).
run() {
    RC=0
    timeout 30 "$COAPGW" "$@" >"$T/out" 2>"$T/err" </dev/null || RC=$?
    OUT=$(cat "$T/out")
    ERR=$(cat "$T/err")
}

run --help
assert_eq 0 "$RC" "--help exit status"
assert_contains "$OUT" "--config" "--help"
assert_contains "$OUT" "--check-config" "--help"
assert_match "$OUT" "[Ee]xample" "--help has an example"
assert_contains "$OUT" "curl http://127.0.0.1:8080/api/" "--help example"

run --version
assert_eq 0 "$RC" "--version exit status"
assert_match "$OUT" "coapgw [0-9]+\.[0-9]+\.[0-9]+" "--version"

GW_PORT=$(free_port)
write_config "$T/good.json" "coap://127.0.0.1:5683/base" '"timeout_ms": 2000, "max_inflight": 4, "type": "non"' \
    '"methods": ["GET", "PUT"], "cache": true' \
    '"demo_server": { "enabled": false, "listen": "127.0.0.1:5683" }, "limits": { "max_body_bytes": 4096 }'
run --check-config --config "$T/good.json"
assert_eq 0 "$RC" "--check-config on a valid file (stderr: $ERR)"

# check_invalid NAME FIELD [EXACT_REASON] < JSON: exit 2 and exactly one line "FILE: FIELD: reason".
check_invalid() {
    local f=$T/$1.json
    cat >"$f"
    run --check-config --config "$f"
    assert_eq 2 "$RC" "--check-config exit status on $1 (stderr: $ERR)"
    if [[ -n ${3:-} ]]; then
        assert_eq "$f: $2: $3" "$ERR" "error message for $1"
    else
        [[ $ERR == "$f: $2: "?* && $ERR != *$'\n'* ]] ||
            fail "error message for $1: expected one line '$f: $2: <reason>', got '$ERR'"
    fi
}

check_invalid timeout upstreams.x.timeout_ms "must be between 1 and 600000" <<'JSON'
{ "upstreams": { "x": { "uri": "coap://127.0.0.1:5683", "timeout_ms": 0 } },
  "routes": [ { "prefix": "/api/", "upstream": "x" } ] }
JSON
check_invalid unknown_top lisen <<'JSON'
{ "lisen": "127.0.0.1:8080",
  "upstreams": { "x": { "uri": "coap://127.0.0.1:5683" } }, "routes": [ { "prefix": "/api/", "upstream": "x" } ] }
JSON
check_invalid unknown_upstream_field upstreams.x.timeout <<'JSON'
{ "upstreams": { "x": { "uri": "coap://127.0.0.1:5683", "timeout": 5 } },
  "routes": [ { "prefix": "/api/", "upstream": "x" } ] }
JSON
check_invalid route_to_nowhere "routes[0].upstream" <<'JSON'
{ "upstreams": { "x": { "uri": "coap://127.0.0.1:5683" } }, "routes": [ { "prefix": "/api/", "upstream": "y" } ] }
JSON
check_invalid bad_listen listen <<'JSON'
{ "listen": "127.0.0.1", "upstreams": { "x": { "uri": "coap://127.0.0.1:5683" } },
  "routes": [ { "prefix": "/api/", "upstream": "x" } ] }
JSON
check_invalid bad_scheme upstreams.x.uri <<'JSON'
{ "upstreams": { "x": { "uri": "http://127.0.0.1:5683" } }, "routes": [ { "prefix": "/api/", "upstream": "x" } ] }
JSON
check_invalid bad_type upstreams.x.type <<'JSON'
{ "upstreams": { "x": { "uri": "coap://127.0.0.1:5683", "type": "sometimes" } },
  "routes": [ { "prefix": "/api/", "upstream": "x" } ] }
JSON
check_invalid inflight_zero upstreams.x.max_inflight <<'JSON'
{ "upstreams": { "x": { "uri": "coap://127.0.0.1:5683", "max_inflight": 0 } },
  "routes": [ { "prefix": "/api/", "upstream": "x" } ] }
JSON
check_invalid timeout_string upstreams.x.timeout_ms <<'JSON'
{ "upstreams": { "x": { "uri": "coap://127.0.0.1:5683", "timeout_ms": "5000" } },
  "routes": [ { "prefix": "/api/", "upstream": "x" } ] }
JSON

# A base-path segment too long for a Uri-Path option would make every request a 414: refused up front.
LONG_SEG=$(printf 'x%.0s' {1..300})
check_invalid long_base_segment upstreams.x.uri \
    "path segment 2 is 300 bytes after decoding; a Uri-Path option holds at most 255" <<JSON
{ "upstreams": { "x": { "uri": "coap://127.0.0.1:5683/base/$LONG_SEG" } },
  "routes": [ { "prefix": "/api/", "upstream": "x" } ] }
JSON

# A JSON syntax error points at FILE:LINE:COL (the missing comma is noticed on line 3).
printf '{\n  "listen": "127.0.0.1:8080"\n  "upstreams": {}\n}\n' >"$T/syntax.json"
run --check-config --config "$T/syntax.json"
assert_eq 2 "$RC" "--check-config exit status on a JSON syntax error"
assert_match "$ERR" "^$T/syntax.json:3:[0-9]+: [^[:cntrl:]]+$" "syntax error message"

run --check-config --config "$T/does-not-exist.json"
assert_eq 2 "$RC" "--check-config exit status on a missing file"
assert_contains "$ERR" "$T/does-not-exist.json" "missing file message"

run --bogus-option
assert_eq 2 "$RC" "exit status on an unknown option"
assert_contains "$ERR" "--bogus-option" "unknown option message"
assert_match "$ERR" "[Uu]sage" "unknown option prints the usage"

# Starting (not only checking) on an invalid file must refuse to run, naming the field.
run --config "$T/timeout.json"
assert_eq 2 "$RC" "exit status when started with an invalid file"
assert_contains "$ERR" "upstreams.x.timeout_ms" "start-up error"

pass
