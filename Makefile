# Developer loop. `make dev` once, then edit and re-run `make dev` (incremental, ~7 s).
PY ?= python
ASAN_LIB := $(shell gcc -print-file-name=libasan.so) $(shell gcc -print-file-name=libstdc++.so)

.PHONY: dev test lint bench compare asan ci
dev:      ## editable install with a persistent build dir
	$(PY) -m pip install --no-build-isolation -e ".[test]" -Cbuild-dir=build/dev
test:
	$(PY) -m pytest
lint:     ## ruff (configured in pyproject.toml; installed by the test extra)
	$(PY) -m ruff check python tests bench examples
bench:    ## pytest-benchmark suites (timing on)
	$(PY) -m pytest bench
compare:  ## side-by-side peer comparisons: core, replay, second order, nn, anomaly overhead
	$(PY) bench/compare_core.py
	$(PY) bench/compare_replay.py --quick
	$(PY) bench/compare_transforms.py
	$(PY) bench/compare_nn.py --quick
	$(PY) bench/compare_anomaly.py
asan:     ## the suite under ASan + UBSan (separate build dir and install target)
	$(PY) -m pip install --no-deps . --target build/asan-site -Cbuild-dir=build/asan \
	  -Ccmake.build-type=Debug -Ccmake.define.TAPEGRAD_SANITIZE=address,undefined
	PYTHONPATH=build/asan-site LD_PRELOAD="$(ASAN_LIB)" ASAN_OPTIONS=detect_leaks=0 \
	  $(PY) -m pytest -s -q -p no:cacheprovider tests
ci:
	bash .ci/run
