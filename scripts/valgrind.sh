#!/bin/sh
# `make valgrind`: the integration tests with every gateway they start through lib.sh's start_gateway running
# under valgrind's memcheck (COAPGW_WRAPPER), in a plain Debug build of its own (build-valgrind/, no
# sanitizer: the two do not mix). A definite leak or a memory error makes valgrind exit 99 instead of the
# gateway's 0, which fails the test's stop_gateway. valgrind is installed on demand (Debian, apt-get, as
# scripts/deps.sh does); `make test` never needs it.
#
# Environment: JOBS (parallel tests, default 2), FAULT_SLOW (timeouts of the fault tests multiplied, default
# 5), DEADLINE_S (lib.sh's wait_until bound, default 120), VALGRIND_TESTS (a ctest -R regex to run only
# some tests). The valgrind logs are build-valgrind/valgrind/gw.PID.log.
set -eu

cd "$(dirname "$0")/.."
BUILD=build-valgrind
JOBS=${JOBS:-2}

if ! command -v valgrind >/dev/null 2>&1; then
    echo "coapgw: installing valgrind"
    SUDO=""
    if [ "$(id -u)" -ne 0 ]; then
        command -v sudo >/dev/null 2>&1 || { echo "coapgw: need root (or sudo) to install valgrind" >&2; exit 1; }
        SUDO=sudo
    fi
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends valgrind >/dev/null
fi

cmake -S . -B "$BUILD" -DCMAKE_BUILD_TYPE=Debug -DCOAPGW_WERROR=ON -DCOAPGW_SANITIZE=OFF \
    -DCOAPGW_TEST_TIMEOUT=1200 >/dev/null
cmake --build "$BUILD" -j "$JOBS"

LOGS=$PWD/$BUILD/valgrind
rm -rf "$LOGS"
mkdir -p "$LOGS"
COAPGW_WRAPPER="valgrind --tool=memcheck --leak-check=full --errors-for-leak-kinds=definite"
COAPGW_WRAPPER="$COAPGW_WRAPPER --show-leak-kinds=definite --error-exitcode=99 --num-callers=30"
COAPGW_WRAPPER="$COAPGW_WRAPPER --log-file=$LOGS/gw.%p.log"
export COAPGW_WRAPPER
export FAULT_SLOW="${FAULT_SLOW:-5}"
export DEADLINE_S="${DEADLINE_S:-120}"

# Skipped under valgrind, each for a reason of timing (a gateway 20 to 50 times slower, its threads run one
# at a time), not of memory; their code paths are run by the other tests:
#   integ_slowloris      asserts closes within header_timeout_s + 2 s and an answer within 1 s
#   integ_log_stall      asserts each of 3000 requests is answered within 2 s
#   integ_concurrency    1000 concurrent 1 s requests in 110 s, and <= 16 threads (valgrind adds its own)
SKIP='^integ_(slowloris|log_stall|concurrency)$'

start=$(date +%s)
rc=0
(cd "$BUILD" && ctest -L integration -E "$SKIP" -R "${VALGRIND_TESTS:-.}" --output-on-failure -j "$JOBS") || rc=$?
end=$(date +%s)

runs=$(find "$LOGS" -name 'gw.*.log' | wc -l)
bad=$(grep -l -E 'ERROR SUMMARY: [1-9]|definitely lost: [1-9]' "$LOGS"/gw.*.log 2>/dev/null || true)
echo "valgrind: $runs gateway runs, $((end - start)) s; skipped (timing): slowloris log_stall concurrency"
if [ -n "$bad" ]; then
    echo "valgrind: errors or definite leaks in:" >&2
    for f in $bad; do
        echo "----- $f" >&2
        grep -E -A 20 'ERROR SUMMARY: [1-9]|definitely lost' "$f" | head -n 60 >&2
    done
    rc=1
else
    echo "valgrind: no memory error and no definite leak in any gateway run"
fi
exit "$rc"
