#!/usr/bin/env bash
# The response cache (RFC 7252 §5.6, RFC 8075 §6-7) seen from both sides: what the HTTP client gets
# (X-Cache, Age beside the stored max-age, 304) and how often coap_testsrv is asked (Max-Age, ETag revalidation
# with 2.03, invalidation by unsafe methods, single flight for 200 concurrent cold GETs, LRU bounds after
# 10 000 distinct keys), plus the /metrics counters.
source "$(dirname "$0")/lib.sh"

MAX_ENTRIES=100
MAX_BYTES=65536 # bodies above MAX_BYTES/8 are served but not stored

start_testsrv
SRV=$TESTSRV_PORT
GW_PORT=$(free_port)
write_config "$T/gw.json" "coap://127.0.0.1:$SRV" \
    '"timeout_ms": 10000, "max_inflight": 16, "queue_limit": 100000' '"cache": true' \
    "\"cache\": { \"enabled\": true, \"max_entries\": $MAX_ENTRIES, \"max_bytes\": $MAX_BYTES }"
start_gateway "$T/gw.json"

# Value of one /metrics sample (no labels), "missing" when absent.
metric() { # NAME
    local text
    text=$(curl -sS --max-time 10 "$(url /metrics)") || fail "GET /metrics failed"
    awk -v n="$1" '$1 == n { v = $2 } END { print (v == "" ? "missing" : v) }' <<<"$text"
}

# curl does not create its -o file when a response has no body (304): empty it first, so BODY is not the
# previous response's.
http_cond() {
    : >"$T/body"
    http "$@"
}

# ---- fresh hit: MISS, then HIT with Age and the stored max-age; one device request ----
m_hits=$(metric coapgw_cache_hits_total)
m_misses=$(metric coapgw_cache_misses_total)
m_stores=$(metric coapgw_cache_stores_total)
[[ $m_hits =~ ^[0-9]+$ && $m_misses =~ ^[0-9]+$ && $m_stores =~ ^[0-9]+$ ]] ||
    fail "/metrics lacks the cache counters (hits=$m_hits misses=$m_misses stores=$m_stores)"
assert_eq 0 "$(metric coapgw_cache_entries)" "coapgw_cache_entries before any request"

http GET "/api/r/fresh?body=hello&max_age=60"
assert_status 200 "first GET"
assert_eq hello "$BODY" "first GET body"
assert_header X-Cache MISS
assert_header Cache-Control "max-age=60"
cp "$T/headers" "$T/miss.headers"
http GET "/api/r/fresh?body=hello&max_age=60"
assert_status 200 "second GET"
assert_eq hello "$BODY" "second GET body"
assert_header X-Cache HIT
assert_header_matches Age '^[0-9]+$'
age=$(header Age)
assert_eq "max-age=60" "$(header Cache-Control)" "Cache-Control on a hit with Age $age (the lifetime: RFC 9111 §4.2.3)"
assert_eq 1 "$(srv_count "$SRV" "GET /r/fresh")" "device requests for two GETs within Max-Age"
assert_eq $((m_misses + 1)) "$(metric coapgw_cache_misses_total)" "coapgw_cache_misses_total after MISS, HIT"
assert_eq $((m_hits + 1)) "$(metric coapgw_cache_hits_total)" "coapgw_cache_hits_total after MISS, HIT"
assert_eq $((m_stores + 1)) "$(metric coapgw_cache_stores_total)" "coapgw_cache_stores_total after MISS, HIT"
assert_eq 1 "$(metric coapgw_cache_entries)" "coapgw_cache_entries after MISS, HIT"

# Once the entry has aged a second, a hit says Age >= 1 and still the stored max-age (polling: every
# hit is free for the device).
aged_hit() {
    http GET "/api/r/fresh?body=hello&max_age=60"
    local age
    age=$(header Age) || fail "hit without Age"
    ((age >= 1)) || {
        sleep 0.1
        return 1
    }
}
wait_until "a hit with Age >= 1" aged_hit
assert_header X-Cache HIT
age=$(header Age)
assert_eq "max-age=60" "$(header Cache-Control)" "Cache-Control on a hit with Age $age (the lifetime: RFC 9111 §4.2.3)"
cp "$T/headers" "$T/hit.headers"
assert_eq 1 "$(srv_count "$SRV" "GET /r/fresh")" "device requests after many hits"
for f in miss hit; do
    echo "[$TEST_NAME] curl -i, $f:" >&2
    grep -iE '^(HTTP/|x-cache|age|cache-control|etag)' "$T/$f.headers" | tr -d '\r' >&2
done

# No Max-Age: 60 s by default. Max-Age 0 without an ETag: never stored.
http GET "/api/r/noage?body=x"
assert_header Cache-Control "max-age=60"
http GET "/api/r/noage?body=x"
assert_header X-Cache HIT
assert_eq 1 "$(srv_count "$SRV" "GET /r/noage")" "device requests without Max-Age (default 60 s)"
for i in 1 2; do
    http GET "/api/r/zero?body=z&max_age=0"
    assert_status 200 "GET $i with Max-Age 0"
    assert_header X-Cache MISS
done
assert_eq 2 "$(srv_count "$SRV" "GET /r/zero")" "device requests with Max-Age 0 (not stored)"

# ---- expiry: Max-Age 2 -> hits until it passes, then the device is asked again ----
t0=$(now_ms)
http GET "/api/r/exp?body=e&max_age=2"
assert_header X-Cache MISS
asked_again() {
    http GET "/api/r/exp?body=e&max_age=2"
    assert_status 200 "GET while waiting for expiry"
    local n
    n=$(srv_count "$SRV" "GET /r/exp")
    if ((n == 1)); then
        assert_header X-Cache HIT
        sleep 0.1
        return 1
    fi
    assert_eq 2 "$n" "device requests for the first GET after expiry"
    assert_header X-Cache MISS
}
wait_until "a GET after Max-Age to reach the device again" asked_again
expired_after=$(($(now_ms) - t0))
((expired_after >= 1900)) || fail "entry with Max-Age 2 refetched after only $expired_after ms"
echo "[$TEST_NAME] Max-Age 2: 1 device request while fresh, the 2nd after $expired_after ms" >&2

# ---- unsafe methods invalidate ----
http GET "/api/r/res?body=v1"
http GET "/api/r/res?body=v1"
assert_header X-Cache HIT
m_inval=$(metric coapgw_cache_invalidations_total)
http PUT "/api/r/res?body=v1" -H 'Content-Type: text/plain' --data-binary 'v2'
assert_status 200 "PUT"
assert_header X-Cache BYPASS
http GET "/api/r/res?body=v1"
assert_header X-Cache MISS
assert_eq 2 "$(srv_count "$SRV" "GET /r/res")" "device GETs around a PUT (asked again after it)"
((m_inval < $(metric coapgw_cache_invalidations_total))) ||
    fail "coapgw_cache_invalidations_total did not move after a PUT"

# DELETE drops every Accept variant of the resource.
for accept in application/json text/plain; do
    http GET "/api/r/var?body=x&max_age=60" -H "Accept: $accept"
    http GET "/api/r/var?body=x&max_age=60" -H "Accept: $accept"
    assert_header X-Cache HIT
done
assert_eq 2 "$(srv_count "$SRV" "GET /r/var")" "device GETs for two Accept variants"
http DELETE "/api/r/var?body=x&max_age=60"
assert_header X-Cache BYPASS
for accept in application/json text/plain; do
    http GET "/api/r/var?body=x&max_age=60" -H "Accept: $accept"
    assert_header X-Cache MISS
done
assert_eq 4 "$(srv_count "$SRV" "GET /r/var")" "device GETs after DELETE (both variants refetched)"

# POST answered 2.01 with a Location: the created resource's entry goes too.
http GET "/api/r/item"
http GET "/api/r/item"
assert_header X-Cache HIT
http POST "/api/r/coll?code=2.01&loc_path=r/item" -H 'Content-Type: text/plain' --data-binary 'new'
assert_status 201 "POST answered 2.01"
http GET "/api/r/item"
assert_header X-Cache MISS
assert_eq 2 "$(srv_count "$SRV" "GET /r/item")" "device GETs of a 2.01's Location target"

# ---- stale entry with an ETag: one conditional request, 2.03, stored body served ----
ET="etag=0a1b&max_age=2&body=tagged"
http GET "/api/r/et?$ET"
assert_header X-Cache MISS
assert_header ETag '"0a1b"'
m_reval=$(metric coapgw_cache_revalidated_total)
revalidated() {
    http GET "/api/r/et?$ET"
    [[ $(header X-Cache) == REVALIDATED ]] || {
        assert_header X-Cache HIT
        sleep 0.1
        return 1
    }
}
wait_until "a GET of the stale entry to be revalidated" revalidated
assert_status 200 "revalidated GET"
assert_eq tagged "$BODY" "body served after 2.03"
assert_header ETag '"0a1b"'
assert_header_matches Cache-Control '^max-age=[12]$'
assert_eq 2 "$(srv_count "$SRV" "GET /r/et")" "device GETs: first fetch + one revalidation"
assert_eq 1 "$(srv_count "$SRV" "ETAG /r/et")" "device requests carrying the ETag"
assert_eq 1 "$(srv_count "$SRV" "VALID /r/et")" "2.03 Valid answers (no payload) sent by the device"
assert_eq $((m_reval + 1)) "$(metric coapgw_cache_revalidated_total)" "coapgw_cache_revalidated_total"
http GET "/api/r/et?$ET"
assert_header X-Cache HIT # 2.03 refreshed the entry
assert_eq 2 "$(srv_count "$SRV" "GET /r/et")" "device GETs right after the refresh"

# ---- HTTP conditional GET ----
http_cond GET "/api/r/et?$ET" -H 'If-None-Match: "0a1b"'
assert_status 304 "If-None-Match with the stored ETag"
assert_eq "" "$BODY" "304 body"
assert_header ETag '"0a1b"'
http_cond GET "/api/r/et?$ET" -H 'If-None-Match: "ffff", W/"0a1b"'
assert_status 304 "If-None-Match list with a weak match"
http GET "/api/r/et?$ET" -H 'If-None-Match: "ffff"'
assert_status 200 "If-None-Match with another ETag"
assert_eq tagged "$BODY" "body for a non-matching If-None-Match"
assert_eq 2 "$(srv_count "$SRV" "GET /r/et")" "device GETs after conditional GETs served from the cache"
# A cold resource: the gateway fetches (or asks with the ETag) and still answers 304.
http_cond GET "/api/r/cold?etag=beef&body=c" -H 'If-None-Match: "beef"'
assert_status 304 "If-None-Match on a cold resource"
assert_eq "" "$BODY" "304 body on a cold resource"
assert_eq 1 "$(srv_count "$SRV" "GET /r/cold")" "device GETs for a cold conditional GET"

# ---- Cache-Control from the client ----
http GET "/api/r/et?$ET" -H 'Cache-Control: no-cache'
assert_status 200 "no-cache GET of an ETag resource"
assert_header X-Cache REVALIDATED
assert_eq tagged "$BODY" "no-cache body"
assert_eq 3 "$(srv_count "$SRV" "GET /r/et")" "device GETs after no-cache (forced revalidation)"
assert_eq 2 "$(srv_count "$SRV" "VALID /r/et")" "2.03 answers after no-cache"
http GET "/api/r/fresh?body=hello&max_age=60" -H 'Cache-Control: no-cache'
assert_status 200 "no-cache GET without ETag"
assert_eq 2 "$(srv_count "$SRV" "GET /r/fresh")" "device GETs after no-cache (refetched)"

http GET "/api/r/ns?body=x" -H 'Cache-Control: no-store'
assert_status 200 "no-store GET"
assert_header X-Cache BYPASS
http GET "/api/r/ns?body=x"
assert_header X-Cache MISS
assert_eq 2 "$(srv_count "$SRV" "GET /r/ns")" "device GETs: no-store stored nothing"

# ---- one resource, two spellings: one entry ----
http GET "/api/r/t~x?body=t"
assert_header X-Cache MISS
http GET "/api/r/t%7Ex?body=t"
assert_header X-Cache HIT
http GET "/api/r/t%7ex?body=t"
assert_header X-Cache HIT
assert_eq 1 "$(srv_count "$SRV" "GET /r/t~x")" "device GETs for ~, %7E and %7e"

# ---- oversized bodies (> max_bytes/8) are served, not stored ----
for i in 1 2; do
    http GET "/api/r/huge?size=$((MAX_BYTES / 8 + 1))"
    assert_status 200 "GET $i of an oversized body"
    assert_eq $((MAX_BYTES / 8 + 1)) "$(wc -c <"$T/body" | tr -d ' ')" "oversized body length"
done
assert_eq 2 "$(srv_count "$SRV" "GET /r/huge")" "device GETs for a body above max_bytes/8"

# ---- single flight: 200 concurrent identical cold GETs, the device delays its answer 500 ms ----
N=200
awk -v u="$(url "/api/r/sf?delay_ms=500&body=flight")" -v t="$T" -v n="$N" 'BEGIN {
    for (i = 0; i < n; i++)
        printf "url = \"%s\"\noutput = \"%s/sf.%d.body\"\ndump-header = \"%s/sf.%d.headers\"\n", u, t, i, t, i
}' >"$T/sf.cfg"
curl -sS --no-progress-meter --parallel --parallel-immediate --parallel-max "$N" --max-time 60 \
    -w '%{http_code}\n' -K "$T/sf.cfg" >"$T/sf.codes" || fail "curl --parallel for the single flight failed"
assert_eq "$N" "$(grep -c '^200$' "$T/sf.codes")" "clients answered 200 of $N"
for ((i = 0; i < N; i++)); do
    [[ $(cat "$T/sf.$i.body") == flight ]] || fail "client $i got '$(head -c 100 "$T/sf.$i.body")'"
done
sf_device=$(srv_count "$SRV" "GET /r/sf")
sf_miss=$(cat "$T"/sf.*.headers | tr -d '\r' | grep -ci '^x-cache: MISS$' || true)
echo "[$TEST_NAME] single flight: $N concurrent cold GETs -> $sf_device device request(s)," \
    "$sf_miss answered as MISS (waited for the flight), $((N - sf_miss)) as HIT" >&2
assert_eq 1 "$sf_device" "device requests for $N concurrent identical cold GETs"
((sf_miss >= 2)) || fail "only $sf_miss of $N GETs waited for the flight; the test did not overlap them"

# A client that gives up while waiting does not cancel the upstream request: its answer is cached.
rc=0
curl -sS -o /dev/null --max-time 0.3 "$(url "/api/r/gone?delay_ms=1000&body=late")" 2>/dev/null || rc=$?
assert_eq 28 "$rc" "curl exit status for a client that gave up waiting (timeout)"
gone_answered() { [[ $(srv_stat "$SRV" outstanding) == 0 ]]; }
wait_until "the device to answer the abandoned request" gone_answered
http GET "/api/r/gone?delay_ms=1000&body=late"
assert_status 200 "GET after the abandoned one"
assert_eq late "$BODY" "body after the abandoned one"
assert_eq 1 "$(srv_count "$SRV" "GET /r/gone")" "device GETs: the abandoned request's answer was kept"

# ---- bounds: 10 000 distinct keys never push the cache past max_entries; 1000 more with 800-byte bodies
# never past max_bytes ----
# get_keys N QUERY-PREFIX: N GETs of /api/r/k?<prefix><i>, 32 at a time; each must be answered 200 and
# reach the device.
get_keys() {
    local n=$1 prefix=$2 before t0
    before=$(srv_count "$SRV" "GET /r/k")
    awk -v u="$(url "/api/r/k?$prefix")" -v n="$n" 'BEGIN {
        for (i = 0; i < n; i++) printf "url = \"%s%d\"\noutput = \"/dev/null\"\n", u, i
    }' >"$T/keys.cfg"
    t0=$(now_ms)
    curl -sS --no-progress-meter --parallel --parallel-max 32 --max-time 100 -w '%{http_code}\n' \
        -K "$T/keys.cfg" >"$T/keys.codes" || fail "curl --parallel for $n distinct keys failed"
    KEYS_MS=$(($(now_ms) - t0))
    assert_eq "$n" "$(grep -c '^200$' "$T/keys.codes")" "GETs of distinct keys answered 200"
    assert_eq $((before + n)) "$(srv_count "$SRV" "GET /r/k")" "device GETs for $n distinct keys"
}

check_bounds() { # WHAT MIN_EVICTIONS
    local entries bytes evictions
    entries=$(metric coapgw_cache_entries)
    bytes=$(metric coapgw_cache_bytes)
    evictions=$(($(metric coapgw_cache_evictions_total) - m_evict))
    echo "[$TEST_NAME] $1 in $KEYS_MS ms: entries=$entries (max $MAX_ENTRIES) bytes=$bytes" \
        "(max $MAX_BYTES) evictions so far=$evictions" >&2
    ((entries <= MAX_ENTRIES)) || fail "$1: coapgw_cache_entries $entries > max_entries $MAX_ENTRIES"
    ((bytes <= MAX_BYTES)) || fail "$1: coapgw_cache_bytes $bytes > max_bytes $MAX_BYTES"
    ((entries > 0)) || fail "$1: coapgw_cache_entries is 0 after cacheable GETs"
    ((evictions >= $2)) || fail "$1: coapgw_cache_evictions_total grew by $evictions, expected >= $2"
}

# A GET with If-Match is a precondition for the device: its answer is never stored nor served from the cache.
http GET "/api/r/pre?body=pre&etag=0a0b" -H 'If-Match: "0a0b"'
assert_status 200 "GET with If-Match"
assert_header X-Cache BYPASS
http GET "/api/r/pre?body=pre&etag=0a0b"
assert_header X-Cache MISS
http GET "/api/r/pre?body=pre&etag=0a0b" -H 'If-Match: "0a0b"'
assert_header X-Cache BYPASS

K=10000
m_evict=$(metric coapgw_cache_evictions_total)
get_keys "$K" "body=k&i="
check_bounds "$K distinct keys with 1-byte bodies" $((K - MAX_ENTRIES))
assert_eq "$MAX_ENTRIES" "$(metric coapgw_cache_entries)" "entries after $K small keys (count is the bound)"
# The newest keys are still there (LRU keeps the most recent), the oldest is gone.
http GET "/api/r/k?body=k&i=$((K - 1))"
assert_header X-Cache HIT
http GET "/api/r/k?body=k&i=0"
assert_header X-Cache MISS
get_keys 1000 "size=800&i="
check_bounds "1000 more keys with 800-byte bodies" $((K + 1000 - MAX_ENTRIES))
http GET "/api/r/k?size=800&i=999"
assert_header X-Cache HIT

stop_gateway
pass
