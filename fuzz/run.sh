#!/bin/sh
# Builds the libFuzzer harnesses with clang (ASan + UBSan) and runs each for SECONDS (default 60).
# Usage: fuzz/run.sh [SECONDS]. Crashes are written to fuzz/out/ as crash-* files.
set -eu
cd "$(dirname "$0")"
secs=${1:-60}
command -v clang >/dev/null || { echo "fuzz: needs clang (apt-get install clang)" >&2; exit 1; }
mkdir -p out corpus/translate corpus/config corpus/fproxy
flags="-g -O1 -std=c11 -D_GNU_SOURCE -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=all -I.."
clang $flags -o out/fuzz_translate fuzz_translate.c ../proxy/translate.c ../base/pct.c ../coap/optset.c \
    ../coap/code.c
clang $flags -o out/fuzz_config fuzz_config.c ../config/cfg.c ../base/pct.c ../base/log.c ../base/clock.c \
    ../coap/code.c $(pkg-config --cflags --libs jansson) -lpthread
clang $flags -o out/fuzz_fproxy fuzz_fproxy.c ../proxy/fproxy.c ../base/addrrule.c ../base/pct.c
cp -n ../tests/integration/*.json corpus/config/ 2>/dev/null || true
printf '{"listen":"127.0.0.1:8080","upstreams":{"a":{"uri":"coap://h/b"}},"routes":[{"prefix":"/x/","upstream":"a"}]}' > corpus/config/seed.json
printf 'a/b%%2Fc/\0x=1&y\0application/json\0text/html, */*;q=0.1\0"0a1b"\0*' > corpus/translate/seed
# fproxy: byte 0 is the mode (bit 0 rule, bit 1 pass the query, bits 2.. rule count), then NUL-split text.
printf '\000coap://sensor.example:5683/a/b%%2Fc/' > corpus/fproxy/default
printf '\022coap%%3A%%2F%%2F%%5B::1%%5D%%3A5683%%2Fx%%252Fy\000observe=next' > corpus/fproxy/encoded
printf '\022coap://[::ffff:127.0.0.1]:5684/x\000a=1&b' > corpus/fproxy/mapped
printf '\001[2001:db8::]/32:5683\000\040\001\015\270\000\000\000\000\000\000\000\000\000\000\000\001' \
    > corpus/fproxy/rule6
printf '\001224.0.1.187/32:*\000\340\000\001\273' > corpus/fproxy/rule4
for h in translate config fproxy; do
    echo "== fuzz_$h for ${secs}s"
    (cd out && ./fuzz_$h -max_total_time="$secs" -timeout=5 -rss_limit_mb=2048 ../corpus/$h) 2>&1 | tail -n 3
done
