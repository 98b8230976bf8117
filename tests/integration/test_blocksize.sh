#!/usr/bin/env bash
# Block size negotiation (RFC 7959) through the gateway, against coap_testsrv --small-blocks 2: a device that
# prefers 64-byte blocks. Upload: the device answers the first Block1 block with 2.31 Continue carrying SZX 2
# and the gateway goes on in 64-byte blocks (§2.3), the body arriving intact (SHA-256). Download: the device
# sends 64-byte Block2 blocks whatever size is asked (§2.4) and the body is identical to coap-client's copy.
# A body that fits one datagram but not one of the device's blocks: the device answers 4.13 with Block1
# SZX 2 (§2.9.3) and the gateway must retry block-wise at that size before answering 413 (issue 5).
source "$(dirname "$0")/lib.sh"

LIMIT=1048576
SZX=2
BSIZE=$((1 << (SZX + 4)))

start_testsrv --small-blocks "$SZX"
SRV=$TESTSRV_PORT
GW_PORT=$(free_port)
write_config "$T/gw.json" "coap://127.0.0.1:$SRV" '"timeout_ms": 60000' '"cache": false' \
    "\"limits\": { \"max_body_bytes\": $LIMIT }"
start_gateway "$T/gw.json"

size_of() {
    wc -c <"$1" | tr -d ' '
}

# coap_testsrv's size=N body is "abc...z" repeated.
pattern() { # N
    awk -v n="$1" 'BEGIN { for (i = 0; i < n; i++) printf "%c", 97 + i % 26 }'
}

# The /stats lines about one /blk resource (what the device saw), for assertions and failure messages.
blk_stats() { # NAME
    coap_get "$SRV" /stats | grep -E "^[A-Z0-9]+ /blk/$1( |$)" || true
}

# Sum of the counters "WHAT /blk/NAME szx=S" whose S is not the device's SZX.
count_other_szx() { # WHAT NAME
    blk_stats "$2" | awk -v w="$1" -v s="szx=$SZX" '$1 == w && $3 ~ /^szx=/ && $3 != s { n += $4 } END { print n + 0 }'
}

ceil_div() { # A B
    echo $((($1 + $2 - 1) / $2))
}

# ---- upload: 20 000 random bytes; after the first block every Block1 block is 64 bytes ----
N=20000
head -c "$N" /dev/urandom >"$T/up"
up_sha=$(sha256sum <"$T/up" | cut -d' ' -f1)
http PUT /api/blk/up -H 'Content-Type: application/octet-stream' --data-binary "@$T/up"
assert_match "$HTTP_STATUS" '^20[04]$' "PUT of $N random bytes (device: $(blk_stats up | tr '\n' ';'))"
assert_eq "bytes=$N sha256=$up_sha" "$BODY" "what the device reassembled"
assert_eq 1 "$(srv_count "$SRV" "DONE /blk/up")" "uploads the device completed"
assert_eq 0 "$(srv_count "$SRV" "INCOMPLETE /blk/up")" "blocks at the wrong offset"
assert_eq 1 "$(count_other_szx BLOCK1 up)" "Block1 blocks not of the device's size (only the first may be)"
first_szx=$(blk_stats up | awk -v s="szx=$SZX" '$1 == "BLOCK1" && $3 != s { sub(/szx=/, "", $3); print $3 }')
first=$((1 << (first_szx + 4)))
small=$(srv_count "$SRV" "BLOCK1 /blk/up szx=$SZX")
assert_eq "$(ceil_div $((N - first)) "$BSIZE")" "$small" \
    "$BSIZE-byte Block1 blocks after a first block of $first bytes"
echo "upload: first Block1 block SZX $first_szx ($first bytes), then $small blocks of $BSIZE bytes"

# ---- download: 20 000 bytes in 64-byte Block2 blocks, identical to coap-client's copy ----
http GET "/api/blk/dl?size=$N"
assert_status 200 "GET of a $N-byte body"
assert_eq "$N" "$(size_of "$T/body")" "length of the body through the gateway"
"$COAP_CLIENT" -m get -b 1024 -B 60 -o "$T/direct" "coap://127.0.0.1:$SRV/blk/direct?size=$N" ||
    fail "coap-client could not read /blk/direct"
cmp -s "$T/body" "$T/direct" || fail "the $N-byte body through the gateway differs from coap-client's copy"
pattern "$N" | cmp -s - "$T/body" || fail "the $N-byte body arrived altered"
blocks=$(ceil_div "$N" "$BSIZE")
assert_eq "$blocks" "$(srv_count "$SRV" "GET /blk/dl")" "device requests for $blocks blocks of $BSIZE bytes"
# The first request may carry no Block2 or a larger one; every later one asks for the device's size.
first=$(($(srv_count "$SRV" "NOBLOCK2 /blk/dl") + $(count_other_szx BLOCK2 dl)))
assert_eq 1 "$first" "gateway requests not asking for $BSIZE-byte blocks (only the first may)"
assert_eq $((blocks - 1)) "$(srv_count "$SRV" "BLOCK2 /blk/dl szx=$SZX")" "Block2 requests at SZX $SZX"
echo "download: first request $(blk_stats dl | awk -v s="szx=$SZX" '$3 != s && $1 != "GET" { print $1, $3 }'), then" \
    "$((blocks - 1)) Block2 requests at SZX $SZX"
# coap-client asked for 1024-byte blocks first; the device answered with 64 and the client followed.
assert_eq 1 "$(srv_count "$SRV" "BLOCK2 /blk/direct szx=6")" "coap-client's first Block2 (SZX 6)"
assert_eq $((blocks - 1)) "$(srv_count "$SRV" "BLOCK2 /blk/direct szx=$SZX")" "coap-client's later blocks"

# ---- 4.13: one datagram of 300 bytes; the device wants 64-byte blocks -> the gateway retries block-wise ----
N=300
head -c "$N" /dev/urandom >"$T/small"
small_sha=$(sha256sum <"$T/small" | cut -d' ' -f1)
http PUT /api/blk/small -H 'Content-Type: application/octet-stream' --data-binary "@$T/small"
seen=$(blk_stats small | tr '\n' ';')
assert_eq 1 "$(srv_count "$SRV" "413 /blk/small")" "4.13 answers from the device (device saw: $seen)"
[[ $HTTP_STATUS =~ ^20[04]$ && $(srv_count "$SRV" "DONE /blk/small") == 1 ]] ||
    fail "the device answered 4.13 with Block1 SZX $SZX ($BSIZE-byte blocks) to a $N-byte PUT without Block1;" \
        "the gateway did not retry block-wise at that size: HTTP $HTTP_STATUS; device saw: $seen"
assert_eq "bytes=$N sha256=$small_sha" "$BODY" "what the device reassembled after the 4.13"
assert_eq "$(ceil_div "$N" "$BSIZE")" "$(srv_count "$SRV" "BLOCK1 /blk/small szx=$SZX")" \
    "Block1 blocks of $BSIZE bytes after the 4.13"
assert_eq 0 "$(count_other_szx BLOCK1 small)" "Block1 blocks of another size after the 4.13"
stop_gateway
pass
