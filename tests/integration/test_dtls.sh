#!/usr/bin/env bash
# coaps:// upstreams (DTLS, RFC 7252 §9) against libcoap's example servers built on GnuTLS and on OpenSSL:
# PSK and certificates (a CA, a server certificate for 127.0.0.1/localhost and a client certificate made
# here with openssl), one DTLS session per slot kept across requests (10 requests, 1 handshake), and the
# failures: a wrong PSK, an untrusted server certificate and one for another name, each a 502 within the
# upstream's timeout_ms with a warn line saying why.
source "$(dirname "$0")/lib.sh"

for bin in coap-server-gnutls coap-server-openssl openssl; do
    command -v "$bin" >/dev/null || fail "$bin not installed (packages libcoap3-bin, openssl)"
done

TIMEOUT_MS=4000
PSK=gw-secret-key

# ---- certificates ----

make_ca() { # NAME
    openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 2 -subj "/CN=$1" \
        -addext basicConstraints=critical,CA:TRUE -addext keyUsage=critical,keyCertSign,cRLSign \
        -keyout "$T/$1.key" -out "$T/$1.pem" 2>/dev/null
}

make_cert() { # NAME CA CN SAN USAGE
    openssl req -new -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -subj "/CN=$3" \
        -keyout "$T/$1.key" -out "$T/$1.csr" 2>/dev/null
    printf 'subjectAltName=%s\nextendedKeyUsage=%s\nbasicConstraints=CA:FALSE\n' "$4" "$5" >"$T/$1.ext"
    openssl x509 -req -in "$T/$1.csr" -CA "$T/$2.pem" -CAkey "$T/$2.key" -CAcreateserial -days 2 \
        -extfile "$T/$1.ext" -out "$T/$1.pem" 2>/dev/null
    chmod 600 "$T/$1.key"
}

make_ca ca
make_ca rogue-ca
make_cert server ca 127.0.0.1 "IP:127.0.0.1,DNS:localhost" serverAuth
make_cert client ca gw "DNS:gw" clientAuth
make_cert rogue rogue-ca 127.0.0.1 "IP:127.0.0.1,DNS:localhost" serverAuth
make_cert other ca other.example "DNS:other.example,IP:127.0.0.2" serverAuth
printf '%s\n' "$PSK" >"$T/psk.key"
printf 'not-the-key\n' >"$T/wrong.key"
chmod 600 "$T/psk.key" "$T/wrong.key"

# ---- servers ----

# start_server NAME BIN ARGS...: a libcoap example server on a free port P, serving DTLS on P+1 (its rule).
# P comes from freeport; P+1 may be taken, so a server that fails to start is tried again on another P.
# Sets DTLS_PORT.
start_server() {
    local name=$1 bin=$2 port pid try addr=${SERVER_ADDR:-127.0.0.1}
    shift 2
    for try in 1 2 3 4 5; do
        port=$(free_port)
        "$bin" -A "$addr" -p "$port" -v 7 "$@" >"$T/$name.log" 2>&1 &
        pid=$!
        server_ready() {
            ! alive "$pid" || grep -q -e "created DTLS endpoint $addr:$((port + 1))" \
                -e "created DTLS endpoint \[$addr\]:$((port + 1))" "$T/$name.log"
        }
        wait_until "$name to listen" server_ready
        if alive "$pid"; then
            DTLS_PORT=$((port + 1))
            return 0
        fi
    done
    fail "$name could not be started"
}

start_server psk-gnutls coap-server-gnutls -k "$PSK"
PSK_G=$DTLS_PORT
start_server psk-openssl coap-server-openssl -k "$PSK"
PSK_O=$DTLS_PORT
start_server pki-gnutls coap-server-gnutls -c "$T/server.pem" -j "$T/server.key" -C "$T/ca.pem"
PKI_G=$DTLS_PORT
start_server pki-openssl coap-server-openssl -c "$T/server.pem" -j "$T/server.key" -C "$T/ca.pem"
PKI_O=$DTLS_PORT
start_server rogue coap-server-gnutls -c "$T/rogue.pem" -j "$T/rogue.key" -n
ROGUE=$DTLS_PORT
start_server other coap-server-gnutls -c "$T/other.pem" -j "$T/other.key" -n
OTHER=$DTLS_PORT
# The name check needs the upstream written as a name: localhost. The gateway connects to its first address,
# which is ::1 on hosts whose /etc/hosts lists ::1 first: then the named server listens there.
NAME_PKI=$PKI_G
if [[ $(getent ahosts localhost | awk 'NR == 1 { print $1 }') == ::1 ]]; then
    SERVER_ADDR=::1 start_server pki-name coap-server-gnutls -c "$T/server.pem" -j "$T/server.key" -C "$T/ca.pem"
    NAME_PKI=$DTLS_PORT
fi

# ---- the gateway ----

psk_up() { # PORT KEYFILE
    echo "{\"uri\": \"coaps://127.0.0.1:$1\", \"timeout_ms\": $TIMEOUT_MS,
           \"psk\": {\"identity\": \"gw\", \"key_file\": \"$2\"}}"
}
pki_up() { # URI
    echo "{\"uri\": \"$1\", \"timeout_ms\": $TIMEOUT_MS,
           \"pki\": {\"ca_file\": \"ca.pem\", \"cert\": \"client.pem\", \"key\": \"client.key\"}}"
}
route() { # PREFIX UPSTREAM
    echo "{\"prefix\": \"$1\", \"upstream\": \"$2\", \"cache\": false}"
}

GW_PORT=$(free_port)
cat >"$T/gw.json" <<EOF
{
  "listen": "127.0.0.1:$GW_PORT",
  "log": {"level": "debug", "access_log": false},
  "upstreams": {
    "psk_g": $(psk_up "$PSK_G" psk.key),
    "psk_o": $(psk_up "$PSK_O" psk.key),
    "bad_psk": $(psk_up "$PSK_G" wrong.key),
    "pki_g": $(pki_up "coaps://127.0.0.1:$PKI_G"),
    "pki_o": $(pki_up "coaps://127.0.0.1:$PKI_O"),
    "pki_name": $(pki_up "coaps://localhost:$NAME_PKI"),
    "rogue": $(pki_up "coaps://127.0.0.1:$ROGUE"),
    "other": $(pki_up "coaps://127.0.0.1:$OTHER")
  },
  "routes": [
    $(route /psk-g/ psk_g), $(route /psk-o/ psk_o), $(route /bad-psk/ bad_psk), $(route /pki-g/ pki_g),
    $(route /pki-o/ pki_o), $(route /pki-name/ pki_name), $(route /rogue/ rogue), $(route /other/ other)
  ]
}
EOF
start_gateway "$T/gw.json"

handshakes() { # UPSTREAM HOLDER
    grep -c "mod=client event=dtls_connected holder=$2 upstream=\"$1\"" "$GW_LOG" || true
}

# ---- what works ----

for prefix in /psk-g/ /psk-o/ /pki-g/ /pki-o/ /pki-name/; do
    http GET "${prefix}time"
    assert_status 200 "GET ${prefix}time"
    assert_match "$BODY" '^[A-Z][a-z]{2} [0-9]{2} [0-9]{2}:[0-9]{2}:[0-9]{2}$' "${prefix}time body"
done

# 10 sequential requests on max_inflight 1: the slot keeps its DTLS session, so one handshake in all (the
# reachability probe has a session, and so a handshake, of its own).
for i in 1 2 3 4 5 6 7 8 9; do
    http GET /psk-g/time
    assert_status 200 "GET /psk-g/time #$((i + 1))"
done
assert_eq 1 "$(handshakes psk_g slot)" "DTLS handshakes of psk_g's slot for 10 requests"
server_sessions=$(grep -c "new incoming session" "$T/psk-gnutls.log" || true)
bad_sessions=$(grep -c "event=dtls_connected holder=[a-z]* upstream=\"bad_psk\"" "$GW_LOG" || true)
assert_eq 0 "$bad_sessions" "handshakes that succeeded with the wrong PSK"
gw_sessions=$(grep -c "event=dtls_connected holder=[a-z]* upstream=\"psk_g\"" "$GW_LOG" || true)
# The server also counts the bad_psk upstream's attempts; it must never see more psk_g sessions than we made.
((server_sessions >= gw_sessions)) ||
    fail "the server saw $server_sessions DTLS sessions, the gateway made $gw_sessions"

# ---- what must fail: 502 within timeout_ms, with a warn line ----

expect_502() { # PREFIX UPSTREAM EVENT
    local start took
    start=$(now_ms)
    http GET "$1time"
    took=$(($(now_ms) - start))
    assert_problem 502
    # The deadline is timeout_ms; the rest is scheduling slack on a loaded machine.
    ((took <= TIMEOUT_MS + 750)) || fail "GET $1time took $took ms (timeout_ms $TIMEOUT_MS)"
    grep -q "level=warn mod=client event=$3 upstream=\"$2\"" "$GW_LOG" ||
        fail "no warn line event=$3 for upstream $2"
    [[ $(handshakes "$2" slot) == 0 ]] || fail "upstream $2 completed a handshake"
}

expect_502 /bad-psk/ bad_psk dtls_failed
expect_502 /rogue/ rogue dtls_failed
expect_502 /other/ other dtls_rejected
grep -q 'event=dtls_rejected upstream="other" reason="the device.s certificate is not for 127.0.0.1"' \
    "$GW_LOG" ||
    fail "the wrong-name rejection does not say which name was expected"

# The key never reaches the log, at any level.
! grep -q -- "$PSK" "$GW_LOG" || fail "the PSK appears in the gateway's log"

# A failed upstream is tried afresh: the good ones still work, the bad ones still fail the same way.
http GET /psk-o/time
assert_status 200 "GET /psk-o/time after the failures"
http GET /bad-psk/time
assert_problem 502

stop_gateway
pass
