# Two newcomer commands: `make demo` and `make test`. Each sets itself up.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
PEER_PY ?= $(shell pyenv root 2>/dev/null)/versions/3.13.0/bin/python3.13
PEER := .venv-peer

.PHONY: demo test lint typecheck imports unit conformance peer-venv bench bench-check bench-peer deploy-check adversarial clean test-sdk3 test-sdk-floor

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e ".[test]"
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/python -m vgi_rpc.demo

test: $(STAMP) lint typecheck imports unit

lint: $(STAMP)
	$(BIN)/ruff check vgi_rpc tests $(wildcard benchmarks scripts deploy)
	$(BIN)/ruff format --check vgi_rpc

typecheck: $(STAMP)
	$(BIN)/mypy vgi_rpc

# The import graph of vgi_rpc/ goes one way: no cycle, the core imports no transport
# (python scripts/import_graph.py prints the whole graph).
imports: $(STAMP)
	$(BIN)/python scripts/import_graph.py --check

unit: $(STAMP)
	$(BIN)/pytest -q

# The Sentry SDK's other generations, each in its own venv (make test keeps the default
# SDK, the latest 2.x): the suites whose promises depend on the SDK run there too.
SENTRY_SUITES := tests/sentry tests/testing_kit tests/otel/test_coexistence.py tests/docs/test_readme.py tests/docs/test_docs_testing.py
SDK3 := .venv-sdk3
SDK3_VERSION := 3.0.0b2
SDK_FLOOR := .venv-sdk-floor
SDK_FLOOR_VERSION := 2.36.0

$(SDK3)/.installed: pyproject.toml
	test -x $(SDK3)/bin/python || $(PY) -m venv $(SDK3)
	$(SDK3)/bin/pip install -q --upgrade pip
	$(SDK3)/bin/pip install -q -e ".[test]"
	$(SDK3)/bin/pip install -q --pre "sentry-sdk==$(SDK3_VERSION)"
	touch $@

$(SDK_FLOOR)/.installed: pyproject.toml
	test -x $(SDK_FLOOR)/bin/python || $(PY) -m venv $(SDK_FLOOR)
	$(SDK_FLOOR)/bin/pip install -q --upgrade pip
	$(SDK_FLOOR)/bin/pip install -q -e ".[test]" "sentry-sdk==$(SDK_FLOOR_VERSION)"
	touch $@

# sentry-sdk 3: the Sentry, testing-kit and README suites (snapshots: their sdk3/ set).
test-sdk3: $(SDK3)/.installed
	$(SDK3)/bin/python -c "import sentry_sdk; assert sentry_sdk.VERSION == '$(SDK3_VERSION)', sentry_sdk.VERSION"
	$(SDK3)/bin/pytest -q $(SENTRY_SUITES)

# The oldest sentry-sdk the extra allows: the same suites but the envelope snapshots,
# which pin the exact envelopes of the default SDK (headers change between 2.x releases).
test-sdk-floor: $(SDK_FLOOR)/.installed
	$(SDK_FLOOR)/bin/python -c "import sentry_sdk; assert sentry_sdk.VERSION == '$(SDK_FLOOR_VERSION)', sentry_sdk.VERSION"
	$(SDK_FLOOR)/bin/pytest -q $(SENTRY_SUITES) --ignore=tests/sentry/test_sentry_snapshots.py

$(PEER)/.installed:
	test -x $(PEER)/bin/python || (command -v python3.13 >/dev/null && python3.13 -m venv $(PEER)) || $(PEER_PY) -m venv $(PEER)
	$(PEER)/bin/pip install -q "vgi-rpc[http]==0.52.2"
	touch $(PEER)/.installed

peer-venv: $(PEER)/.installed

# The official adversarial request-contract classes (vgi-rpc 0.52.2), unchanged, run by the
# peer venv's pytest against our HTTP server and pipe worker (fixtures in tests/adversarial).
$(PEER)/.pytest: $(PEER)/.installed
	$(PEER)/bin/pip install -q "pytest>=8" "pytest-timeout>=2.3"
	touch $(PEER)/.pytest

adversarial: $(STAMP) $(PEER)/.pytest
	cd tests/adversarial && VGI_OUR_PYTHON="$(CURDIR)/$(BIN)/python" "$(CURDIR)/$(PEER)/bin/pytest" -q

conformance: $(STAMP) $(PEER)/.installed
	$(BIN)/python scripts/conformance.py --peer $(PEER)

bench: $(STAMP) $(PEER)/.installed
	mkdir -p .benchmarks
	$(BIN)/pytest benchmarks -q --benchmark-columns=median,iqr,rounds --benchmark-json=.benchmarks/pytest-benchmark.json --ratios-json=.benchmarks/ratios.json
	$(BIN)/python scripts/bench_peer.py --peer $(PEER)
	$(BIN)/python scripts/bench_report.py

bench-check: $(STAMP)
	$(BIN)/python scripts/bench_check.py

bench-peer: $(STAMP) $(PEER)/.installed
	$(BIN)/python scripts/bench_peer.py --peer $(PEER)

# Our app under gunicorn (gthread workers) behind nginx on loopback; nginx comes from
# the Debian package (apt-get install when missing). See docs/http.md "Running several workers".
deploy-check: $(STAMP)
	$(BIN)/python scripts/deploy_check.py --nginx "$$(bash scripts/ensure_nginx.sh)"

clean:
	rm -rf $(VENV) $(SDK3) $(SDK_FLOOR) build *.egg-info
