#!/usr/bin/env bash
# HTTP semantics and caching (RFC 9110, RFC 9111) and Observe as SSE (RFC 7641 §3.2), end to end against
# coap_testsrv: Age with the stored max-age, request max-age in every spelling, Vary: Accept, no-store on
# long-poll answers, every If-None-Match tag, entity-tags on a changing method refused, US-ASCII text,
# a failed SSE registration answered with its status, notifications refreshing the cache.
source "$(dirname "$0")/lib.sh"

start_testsrv
SRV=$TESTSRV_PORT
GW_PORT=$(free_port)
write_config "$T/gw.json" "coap://127.0.0.1:$SRV" \
    '"timeout_ms": 3000, "max_inflight": 8, "queue_limit": 1000' '"cache": true'
start_gateway "$T/gw.json"

# ---- a hit carries the stored max-age and its Age, so a downstream cache never counts the age twice ----
http GET "/api/r/age?body=a&max_age=60"
assert_header X-Cache MISS
aged_hit() {
    http GET "/api/r/age?body=a&max_age=60"
    local age
    age=$(header Age) || fail "hit without Age"
    ((age >= 1)) || {
        sleep 0.1
        return 1
    }
}
wait_until "a hit with Age >= 1" aged_hit
assert_header X-Cache HIT
assert_header Cache-Control "max-age=60"
pass "a hit says max-age=60 with Age $(header Age) (RFC 9111 §4.2.3: the reader subtracts the age)"

# ---- request Cache-Control: max-age=0 in every spelling, and max-age=N, force a device request ----
n=0
for cc in 'max-age=0' 'max-age=00' 'max-age="0"' 'MAX-AGE=0' 'max-age=0, foo=bar'; do
    n=$((n + 1))
    before=$(srv_count "$SRV" "GET /r/age")
    http GET "/api/r/age?body=a&max_age=60" -H "Cache-Control: $cc"
    assert_eq $((before + 1)) "$(srv_count "$SRV" "GET /r/age")" "device requests after Cache-Control: $cc"
    assert_eq MISS "$(header X-Cache)" "X-Cache with Cache-Control: $cc"
done
pass "Cache-Control: max-age=0 is honoured in $n spellings"

# ---- Vary: Accept on answers whose representation the Accept chose ----
http GET "/api/r/vary?body=v" -H 'Accept: text/plain'
assert_header Vary Accept
http GET "/api/r/vary?body=v" -H 'Accept: text/plain'
assert_header X-Cache HIT
assert_header Vary Accept
pass "GET answers (miss and hit) carry Vary: Accept"

# ---- every entity-tag of If-None-Match counts, however many ----
http GET "/api/r/inm?body=x&etag=0a0b&max_age=60"
tags='"0001", "0002", "0003", "0004", "0005", "0006", W/"0a0b"'
: >"$T/body"
http GET "/api/r/inm?body=x&etag=0a0b&max_age=60" -H "If-None-Match: $tags"
assert_status 304 "If-None-Match whose 7th tag is the current one"
pass "the 7th entity-tag of If-None-Match gives 304"

# ---- If-None-Match with entity-tags on a PUT: refused, never dropped ----
before=$(srv_count "$SRV" "PUT /r/put")
http PUT "/api/r/put?code=2.04" -H 'If-None-Match: "0a0b"' -H 'Content-Type: text/plain' --data-binary x
assert_problem 501
assert_eq "$before" "$(srv_count "$SRV" "PUT /r/put")" "device PUTs after a refused conditional PUT"
http PUT "/api/r/put?code=2.04" -H 'If-None-Match: *' -H 'Content-Type: text/plain' --data-binary x
assert_status 204 "PUT with If-None-Match: * (mapped to CoAP's If-None-Match)"
pass "If-None-Match entity-tags on PUT get 501; * goes to the device"

# ---- text/plain; charset=us-ascii is Content-Format 0 ----
http PUT "/api/echo" -H 'Content-Type: text/plain; charset=us-ascii' --data-binary 'hi'
assert_status 200 "PUT text/plain; charset=us-ascii"
assert_contains "$BODY" "opt=12 val=" "the echo lists a Content-Format option"
assert_match "$BODY" 'opt=12 val=(00)?($|[^0-9a-f])' "Content-Format 0"
http PUT "/api/echo" -H 'Content-Type: text/plain; charset=windows-1252' --data-binary 'hi'
assert_problem 415
pass "US-ASCII text is Content-Format 0; other charsets get 415"

# ---- long-poll answers are one notification: no-store ----
http GET "/api/obs/lp?period_ms=200&observe=next"
assert_status 200 "long-poll"
assert_header Cache-Control no-store
pass "a long-poll answer is Cache-Control: no-store"

# ---- an SSE request whose registration fails gets the error's status, not a 200 stream ----
code=$(curl -sS -N -o "$T/sse.body" -D "$T/sse.headers" -w '%{http_code}' --max-time 5 \
    -H 'Accept: text/event-stream' "$(url "/api/r/gone?code=4.04&body=no%20such")") || true
assert_eq 404 "$code" "SSE request for a resource the device answers 4.04"
assert_not_contains "$(header Content-Type "$T/sse.headers")" "event-stream" "Content-Type of the failed SSE"
code=$(curl -sS -N -o "$T/sse.body" -D "$T/sse.headers" -w '%{http_code}' --max-time 5 \
    -H 'Accept: text/event-stream' "$(url "/api/r/busy?code=5.03&max_age=7")") || true
assert_eq 503 "$code" "SSE request for a resource the device answers 5.03"
assert_eq 7 "$(header Retry-After "$T/sse.headers")" "Retry-After of the failed SSE (the device's Max-Age)"
pass "failed SSE registrations get 404 / 503 + Retry-After"

# ---- each notification refreshes the cache: a GET never answers older than the subscribers got ----
http GET "/api/obs/fresh?period_ms=300&max_age=60"
first=$BODY
curl -sS -N --max-time 3 -H 'Accept: text/event-stream' "$(url /api/obs/fresh)" >"$T/sse.out" 2>/dev/null || true
last=$(grep '^data: ' "$T/sse.out" | tail -1 | sed 's/^data: //')
[[ -n $last ]] || fail "the SSE stream carried no notification"
http GET "/api/obs/fresh"
assert_header X-Cache HIT
[[ $BODY != "$first" ]] || fail "GET after the stream still answers the first representation ($first)"
pass "after notifications ($last), a cached GET answers $BODY, not the first $first"
