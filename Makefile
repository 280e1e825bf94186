# Developer loop. `make dev` once, then edit and re-run `make dev` (incremental, ~7 s).
PY ?= python
ASAN_LIB := $(shell gcc -print-file-name=libasan.so) $(shell gcc -print-file-name=libstdc++.so)
# libstdc++ is preloaded too: python itself does not link it, and ASan's __cxa_throw
# interceptor must find it at start-up. The browser tests are left out: chromium must not
# get libasan preloaded, and the page runs no C++.
# Under the sanitizers' instrumentation GCC vectorises some of the lanes' loops and not
# others, so their math would be libmvec's in some ops and scalar libm's in others, while
# F.compile()'s batch code (tests/test_compile_batch.py) always takes the SIMD forms; with
# TAPEGRAD_LIBMVEC=0 both compute scalar libm lane by lane and agree bit for bit again.
ASAN_ENV := PYTHONPATH=build/asan-site LD_PRELOAD="$(ASAN_LIB)" ASAN_OPTIONS=detect_leaks=0 \
  UBSAN_OPTIONS=print_stacktrace=1 TAPEGRAD_LIBMVEC=0

.PHONY: dev test lint bench compare asan cpptest cpptest-asan ci
dev:      ## editable install with a persistent build dir
	$(PY) -m pip install --no-build-isolation -e ".[test]" -Cbuild-dir=build/dev
test:
	$(PY) -m pytest
CXX_SOURCES = $(wildcard csrc/*/*.hpp csrc/*/*.cpp csrc/*/*.inc tests/cpp/*.cpp)
lint:     ## ruff, clang-format (both configured in the repo) and the _core stub against the module; all from the test extra
	$(PY) -m ruff check python tests bench examples
	clang-format --dry-run --Werror $(CXX_SOURCES)
	$(PY) -m mypy.stubtest tapegrad._core --allowlist tests/stubtest_allowlist.txt
bench:    ## pytest-benchmark suites (timing on)
	$(PY) -m pytest bench
compare:  ## every side-by-side comparison (the README's tables); ARGS=--quick for a short run
	$(PY) bench/compare.py all $(ARGS)
asan:     ## the suite under ASan + UBSan (own build dir and install target); CI runs this recipe
	$(PY) -m pip install --no-deps --upgrade . --target build/asan-site -Cbuild-dir=build/asan \
	  -Ccmake.build-type=Debug -Ccmake.define.TAPEGRAD_SANITIZE=address,undefined
	$(ASAN_ENV) $(PY) -c "import tapegrad, sys; f = tapegrad._core.__file__; print(f); sys.exit('asan-site' not in f)"
	$(ASAN_ENV) $(PY) -m pytest -s -q -p no:cacheprovider tests --ignore=tests/test_browser.py
# The core's C++ unit tests (tests/cpp; apt install doctest-dev), no Python involved.
# CPPTEST_DIR and CPPTEST_CMAKE pick another build, e.g. the switch dispatch:
#   make cpptest CPPTEST_DIR=build/cpptest-switch CPPTEST_CMAKE=-DTAPEGRAD_THREADED_DISPATCH=OFF
CPPTEST_DIR ?= build/cpptest
CPPTEST_CMAKE ?=
cpptest:  ## configure, build and ctest the core's C++ unit tests
	cmake -S . -B $(CPPTEST_DIR) -DTAPEGRAD_PYTHON=OFF -DTAPEGRAD_CPP_TESTS=ON $(CPPTEST_CMAKE)
	cmake --build $(CPPTEST_DIR) --parallel 2
	ctest --test-dir $(CPPTEST_DIR) --output-on-failure
cpptest-asan:  ## the same under ASan + UBSan
	$(MAKE) cpptest CPPTEST_DIR=build/cpptest-asan \
	  CPPTEST_CMAKE="-DCMAKE_BUILD_TYPE=Debug -DTAPEGRAD_SANITIZE=address,undefined"
ci:
	bash .ci/run
