# Developer loop. `make dev` once, then edit and re-run `make dev` (incremental, ~7 s).
PY ?= python
ASAN_LIB := $(shell gcc -print-file-name=libasan.so) $(shell gcc -print-file-name=libstdc++.so)

.PHONY: dev test bench compare asan ci
dev:      ## editable install with a persistent build dir
	$(PY) -m pip install --no-build-isolation -e ".[test]" -Cbuild-dir=build/dev
test:
	$(PY) -m pytest
bench:    ## pytest-benchmark suites (timing on)
	$(PY) -m pytest bench
compare:  ## every side-by-side comparison (the README's tables); ARGS=--quick for a short run
	$(PY) bench/compare.py all $(ARGS)
asan:     ## the suite under ASan + UBSan (separate build dir and install target)
	$(PY) -m pip install --no-deps . --target build/asan-site -Cbuild-dir=build/asan \
	  -Ccmake.build-type=Debug -Ccmake.define.TAPEGRAD_SANITIZE=address,undefined
	PYTHONPATH=build/asan-site LD_PRELOAD="$(ASAN_LIB)" ASAN_OPTIONS=detect_leaks=0 \
	  $(PY) -m pytest -s -q -p no:cacheprovider tests
ci:
	bash .ci/run
