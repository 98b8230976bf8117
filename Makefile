# Thin wrapper over CMake. `make run` and `make test` are the README's two commands.
JOBS ?= $(shell nproc 2>/dev/null || echo 2)

.PHONY: all deps deps-build build gateway run test test-plain test-sanitize test-release test-fuzz fuzz clean

all: build

# deps: every package of `make test`; deps-build: only what building the gateway needs (`make run`).
deps:
	@./scripts/deps.sh

deps-build:
	@./scripts/deps.sh build

build: deps
	cmake -S . -B build -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
	cmake --build build -j $(JOBS)

# The gateway alone (no tests): what `make run` needs.
gateway: deps-build
	cmake -S . -B build -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
	cmake --build build -j $(JOBS) --target coapgw

run: gateway
	./build/coapgw

test: deps test-plain test-release test-sanitize test-fuzz

test-plain:
	cmake -S . -B build-test -DCMAKE_BUILD_TYPE=RelWithDebInfo -DCOAPGW_WERROR=ON >/dev/null
	cmake --build build-test -j $(JOBS)
	cd build-test && ctest --output-on-failure -j $(JOBS)

test-sanitize:
	cmake -S . -B build-asan -DCMAKE_BUILD_TYPE=Debug -DCOAPGW_WERROR=ON -DCOAPGW_SANITIZE=ON >/dev/null
	cmake --build build-asan -j $(JOBS)
	cd build-asan && ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
		ctest --output-on-failure -j $(JOBS)

# The suites build in directories of their own, so `make test` never replaces the binary a running `make run`
# uses (build/coapgw).
# Release (-O3) warns about things the other builds do not see (e.g. -Wformat-truncation): build only.
test-release:
	cmake -S . -B build-release -DCMAKE_BUILD_TYPE=Release -DCOAPGW_WERROR=ON >/dev/null
	cmake --build build-release -j $(JOBS)

# The integration tests with the gateway under valgrind memcheck (no definite leak, no memory error), in a
# plain Debug build of its own (build-valgrind/); valgrind is installed on demand. Not part of `make test`.
.PHONY: valgrind
valgrind: deps
	./scripts/valgrind.sh

clean:
	rm -rf build build-test build-asan build-release build-fuzz build-valgrind

# `make install` (PREFIX=/usr/local, DESTDIR for staging): the gateway, coapgw(1), the example configuration
# (PREFIX/etc/coapgw/coapgw.json; /etc/coapgw with PREFIX=/usr) and the systemd unit (PREFIX/lib/systemd/system).
# `make docker` builds the image (docker if an engine answers, else podman); `make docker-test` builds it and
# proves it runs (docker/README.md). Neither is part of `make test`.
.PHONY: install docker docker-test
PREFIX ?= /usr/local
install: deps-build
	cmake -S . -B build -DCMAKE_BUILD_TYPE=RelWithDebInfo -DCMAKE_INSTALL_PREFIX=$(PREFIX) >/dev/null
	cmake --build build -j $(JOBS) --target coapgw
	DESTDIR=$(DESTDIR) cmake --install build

docker:
	./docker/build.sh

docker-test:
	./docker/test.sh

# libFuzzer harnesses (fuzz/README.md), built with clang in build-fuzz/: FUZZ_SECONDS each with `make fuzz`,
# 10 s each in `make test`. A crash fails the run and leaves its reproducer in build-fuzz/crashes/.
FUZZ_SECONDS ?= 60

fuzz: deps
	JOBS=$(JOBS) ./fuzz/run.sh $(FUZZ_SECONDS)

test-fuzz:
	JOBS=$(JOBS) ./fuzz/run.sh 10

