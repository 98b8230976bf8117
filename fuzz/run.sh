#!/bin/sh
# Builds the libFuzzer harnesses with clang (ASan + UBSan) and runs each for SECONDS (default 60).
# Usage: fuzz/run.sh [SECONDS]. Crashes are written to fuzz/out/ as crash-* files.
set -eu
cd "$(dirname "$0")"
secs=${1:-60}
command -v clang >/dev/null || { echo "fuzz: needs clang (apt-get install clang)" >&2; exit 1; }
mkdir -p out corpus/translate corpus/config
flags="-g -O1 -std=c11 -D_GNU_SOURCE -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=all -I.."
clang $flags -o out/fuzz_translate fuzz_translate.c ../proxy/translate.c
clang $flags -o out/fuzz_config fuzz_config.c ../config/cfg.c $(pkg-config --cflags --libs jansson)
cp -n ../tests/integration/*.json corpus/config/ 2>/dev/null || true
printf '{"listen":"127.0.0.1:8080","upstreams":{"a":{"uri":"coap://h/b"}},"routes":[{"prefix":"/x/","upstream":"a"}]}' > corpus/config/seed.json
printf 'a/b%%2Fc/\0x=1&y\0application/json\0text/html, */*;q=0.1\0"0a1b"\0*' > corpus/translate/seed
for h in translate config; do
    echo "== fuzz_$h for ${secs}s"
    (cd out && ./fuzz_$h -max_total_time="$secs" -timeout=5 -rss_limit_mb=2048 ../corpus/$h) 2>&1 | tail -n 3
done
