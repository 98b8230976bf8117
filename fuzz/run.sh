#!/bin/sh
# Builds the libFuzzer harnesses with clang (ASan + UBSan) into build-fuzz/ and runs each for SECONDS
# (default 60). Usage: fuzz/run.sh [SECONDS] [TARGET...]. Each target starts from its seeds in
# fuzz/corpus/<target>/ (read only) plus what earlier runs found (build-fuzz/corpus/<target>/). A crash,
# leak or timeout fails the run and leaves its reproducer in build-fuzz/crashes/; replay it with
# `build-fuzz/fuzz_<target> build-fuzz/crashes/<file>`. Prints libFuzzer's executions per target.
set -eu
root=$(cd "$(dirname "$0")/.." && pwd)
secs=${1:-60}
[ $# -gt 0 ] && shift
targets=${*:-"translate response headers config fproxy wire"}
out="$root/build-fuzz"
jobs=${JOBS:-2}

command -v clang >/dev/null || { echo "fuzz: needs clang (scripts/deps.sh installs it)" >&2; exit 1; }
cmake -S "$root/fuzz" -B "$out" -DCMAKE_C_COMPILER=clang -DCMAKE_BUILD_TYPE=Debug >/dev/null
cmake --build "$out" -j "$jobs" >/dev/null
mkdir -p "$out/crashes"

failed=""
for t in $targets; do
    mkdir -p "$out/corpus/$t"
    log="$out/fuzz_$t.log"
    # -timeout: one input taking this long is a hang (generous: the machine is shared);
    # the first corpus directory receives new inputs, the seeds stay untouched.
    if ASAN_OPTIONS=detect_leaks=1:abort_on_error=0 UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
        "$out/fuzz_$t" -max_total_time="$secs" -timeout=20 -rss_limit_mb=2048 -print_final_stats=1 \
        -artifact_prefix="$out/crashes/$t-" "$out/corpus/$t" "$root/fuzz/corpus/$t" >"$log" 2>&1; then
        execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log")
        cov=$(grep -o 'cov: [0-9]*' "$log" | tail -n 1)
        echo "fuzz_$t: ${secs}s, ${execs:-?} executions, $cov, no crash, leak or timeout"
    else
        echo "fuzz_$t: FAILED (log: $log)" >&2
        grep -E '^(==[0-9]+==ERROR|SUMMARY|.*runtime error|artifact_prefix|Test unit written)' "$log" | head -n 8 >&2
        failed="$failed $t"
    fi
done
if [ -n "$failed" ]; then
    echo "fuzz: failed:$failed; reproducers in $out/crashes/" >&2
    exit 1
fi
