#!/usr/bin/env bash
# `make install` into a DESTDIR (cmake --install of this build tree, what the Makefile target runs): the tree
# is exactly the binary, coapgw(1), the example configuration, the systemd unit and the docs; the installed
# binary runs the installed configuration (the demo on 127.0.0.1:8080/5683, so inside a private network
# namespace); the man page describes every option of --help and renders without a warning; the unit points
# at the installed files, has its hardening, passes `systemd-analyze verify` (else a structural check) and
# its ExecStartPre runs.
if [[ -z ${COAPGW_IN_NETNS:-} ]]; then
    if [[ $(id -u) != 0 ]] || ! unshare -n true 2>/dev/null; then
        echo "SKIP: test_install needs root and unshare -n to run the example configuration on 8080/5683"
        exit 77
    fi
    exec unshare -n env COAPGW_IN_NETNS=1 bash "$0" "$@"
fi
source "$(dirname "$0")/lib.sh"
ip link set lo up || fail "cannot bring up lo in the private network namespace"

BUILD=$(dirname "$COAPGW")
[[ -f $BUILD/CMakeCache.txt ]] || fail "$BUILD is not the build tree of $COAPGW"
PREFIX=$(sed -n 's/^CMAKE_INSTALL_PREFIX:PATH=//p' "$BUILD/CMakeCache.txt")
[[ $PREFIX == /* ]] || fail "no absolute CMAKE_INSTALL_PREFIX in $BUILD/CMakeCache.txt"
if [[ $PREFIX == /usr ]]; then
    ETC=/etc/coapgw
else
    ETC=$PREFIX/etc/coapgw
fi
DEST=$T/root
DESTDIR=$DEST cmake --install "$BUILD" >"$T/install.log" 2>&1 || fail "cmake --install: $(cat "$T/install.log")"

# ---- the tree ----
expected=$(printf '%s\n' "$PREFIX/bin/coapgw" "$PREFIX/share/man/man1/coapgw.1" "$ETC/coapgw.json" \
    "$PREFIX/lib/systemd/system/coapgw.service" "$PREFIX/share/doc/coapgw/README.md" \
    "$PREFIX/share/doc/coapgw/SECURITY.md" | sort)
actual=$(cd "$DEST" && find . -type f -o -type l | sed 's|^\.||' | sort)
assert_eq "$expected" "$actual" "installed files"
BIN=$DEST$PREFIX/bin/coapgw
UNIT=$DEST$PREFIX/lib/systemd/system/coapgw.service
MAN=$DEST$PREFIX/share/man/man1/coapgw.1
[[ -x $BIN ]] || fail "$BIN is not executable"
for f in "$UNIT" "$MAN" "$DEST$ETC/coapgw.json"; do
    [[ $(stat -c %a "$f") == 644 ]] || fail "$f: mode $(stat -c %a "$f"), expected 644"
    ! grep -n '@[A-Z_]*@' "$f" || fail "$f: a configure placeholder was left"
done
cmp -s "$DEST$ETC/coapgw.json" "$(dirname "$0")/../../deploy/coapgw.json" ||
    fail "the installed configuration is not deploy/coapgw.json"

# ---- the installed binary with the installed configuration ----
version=$("$BIN" --version) || fail "installed coapgw --version"
assert_match "$version" "^coapgw [0-9]+\.[0-9]+\.[0-9]+ " "installed --version"
out=$("$BIN" --config "$DEST$ETC/coapgw.json" --check-config 2>&1) || fail "installed configuration: $out"
COAPGW=$BIN
GW_PORT=8080
start_gateway "$DEST$ETC/coapgw.json"
http GET /api/
assert_status 200 "GET /api/ with the example configuration"
assert_eq "Hello, CoAP!" "$BODY" "GET /api/ with the example configuration"
http GET /api/sensors/temperature
assert_status 200 "GET /api/sensors/temperature"
assert_contains "$BODY" '"unit":"Cel"' "the demo sensor"
assert_eq 0 "$("$BIN" --health http://127.0.0.1:8080/readyz >/dev/null; echo $?)" "--health /readyz"
stop_gateway

# ---- the man page ----
opts=$("$BIN" --help | grep -oE -- '--[a-z][a-z-]+' | sort -u)
[[ $(wc -l <<<"$opts") -ge 9 ]] || fail "--help lists too few options: $opts"
for o in $opts; do
    grep -qF -- "${o//-/\\-}" "$MAN" || fail "coapgw(1) does not describe $o (from --help)"
done
assert_contains "$(head -n 5 "$MAN")" "\"coapgw $(awk '{ print $2 }' <<<"$version")\"" "man page version"
if command -v groff >/dev/null 2>&1; then
    warnings=$(groff -man -Tutf8 -ww -z "$MAN" 2>&1)
    assert_eq "" "$warnings" "groff warnings for coapgw(1)"
    text=$(groff -man -Tutf8 "$MAN" 2>/dev/null | sed 's/.\x08//g')
    assert_contains "$text" "--health URL" "rendered man page"
    assert_contains "$text" "$ETC/coapgw.json" "rendered man page names the installed configuration"
fi

# ---- the systemd unit ----
unit=$(cat "$UNIT")
for line in "Type=simple" "ExecStart=$PREFIX/bin/coapgw --config $ETC/coapgw.json" \
    "ExecStartPre=$PREFIX/bin/coapgw --config $ETC/coapgw.json --check-config" \
    "ExecReload=/bin/kill -HUP \$MAINPID" "DynamicUser=yes" "ProtectSystem=strict" "ProtectHome=yes" \
    "NoNewPrivileges=yes" "PrivateTmp=yes" "PrivateDevices=yes" "CapabilityBoundingSet=" \
    "RestrictAddressFamilies=AF_INET AF_INET6 AF_UNIX AF_NETLINK" "SystemCallFilter=@system-service" \
    "WantedBy=multi-user.target"; do
    grep -qxF -- "$line" "$UNIT" || fail "coapgw.service lacks the line '$line'"
done
# Structure: sections [Unit] [Service] [Install] in that order, every other line a comment or Key=value.
sections=$(grep -E '^\[' "$UNIT" | tr '\n' ' ')
assert_eq "[Unit] [Service] [Install] " "$sections" "unit sections"
bad=$(grep -vE '^(#.*|\[[A-Za-z]+\]|[A-Z][A-Za-z]+=.*|)$' "$UNIT" || true)
assert_eq "" "$bad" "lines of coapgw.service that are not Key=value"
# The same unit with its paths under DESTDIR, so its commands exist here.
sed "s|$PREFIX/bin/coapgw|$BIN|g; s|$ETC/|$DEST$ETC/|g" "$UNIT" >"$T/coapgw.service"
pre=$(sed -n 's/^ExecStartPre=//p' "$T/coapgw.service")
read -ra pre_argv <<<"$pre"
out=$("${pre_argv[@]}" 2>&1) || fail "ExecStartPre ($pre) failed: $out"
if command -v systemd-analyze >/dev/null 2>&1; then
    out=$(systemd-analyze verify --man=no "$T/coapgw.service" 2>&1) || fail "systemd-analyze verify: $out"
    assert_eq "" "$out" "systemd-analyze verify coapgw.service"
    # The hardening as systemd scores it: 0 (locked down) to 10 (exposed); "OK" is below 5.
    out=$(systemd-analyze security --offline=yes "$T/coapgw.service" 2>&1 | tail -n 1) || true
    level=$(sed -n 's/.*Overall exposure level for coapgw.service: \([0-9.]*\).*/\1/p' <<<"$out")
    [[ -n $level ]] || fail "systemd-analyze security gave no exposure level: $out"
    awk -v l="$level" 'BEGIN { exit !(l <= 2.0) }' || fail "exposure level $level, expected at most 2.0"
    echo "systemd-analyze security: exposure $level"
else
    echo "systemd-analyze not installed: structural check of coapgw.service only"
fi
pass
