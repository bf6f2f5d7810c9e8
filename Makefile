# Two newcomer commands: `make demo` and `make test`. Each sets itself up, from the lock.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
PEER_PY ?= $(shell pyenv root 2>/dev/null)/versions/3.13.0/bin/python3.13
PEER := .venv-peer

.PHONY: demo test lint typecheck imports unit conformance peer-venv bench bench-check bench-peer deploy-check adversarial clean lock lock-check matrix test-sdk3 test-sdk2 test-sdk-floor test-latest

# -- the lock ----------------------------------------------------------------------------------------
# Our own environments install exactly what uv.lock holds (`uv sync --locked`): a fresh machine
# next month gets what CI tested. uv itself is bootstrapped here, pinned, into .venv-tools.
# After changing pyproject.toml run `make lock` and commit uv.lock (a new SDK release for a line:
# bump its group in pyproject.toml, then `make lock`).
UV_VERSION := 0.13.9
TOOLS := .venv-tools
UV := $(TOOLS)/bin/uv

$(UV):
	test -x $(TOOLS)/bin/python || $(PY) -m venv $(TOOLS)
	$(TOOLS)/bin/pip install -q "uv==$(UV_VERSION)"

lock: $(UV)
	$(UV) lock --python $(PY)

lock-check: $(UV)
	@$(UV) lock --check --python $(PY) -q || { \
	  echo "uv.lock is out of date with pyproject.toml: run 'make lock' (uv lock) and commit uv.lock." >&2; exit 1; }

# $(call sync,VENV,GROUP): VENV holds the project (editable), every test dependency and GROUP's sentry-sdk.
define sync
UV_PROJECT_ENVIRONMENT=$(1) $(UV) sync --locked --python $(PY) --extra test --no-default-groups --group $(2) -q
endef

# -- the Sentry SDK matrix: one line per SDK line we support, each locked, each its own venv --------
#   line         venv              sentry-sdk  what runs there
#   latest 3.x   .venv             3.0.0       make test (everything), make demo; make test-sdk3:
#                                              the demo, the deploy check and the Sentry benchmarks
#   latest 2.x   .venv-sdk2        2.76.0      make test-sdk2: mypy, the Sentry/kit/docs/demo suites,
#                                              the demo, the deploy check and the Sentry benchmarks
#   floor        .venv-sdk-floor   2.36.0      make test-sdk-floor: the Sentry/kit suites and the README
#                                              and testing-docs examples, less the envelope snapshots
#                                              (they pin the latest releases' headers)
#   unlocked     .venv-latest      newest      make test-latest: installed as a user does (pip, no lock,
#                                              newest releases the ranges allow), the Sentry/kit/docs
#                                              suites and the demo
# The versions live in pyproject.toml's [dependency-groups] and in uv.lock; `make matrix` runs the
# three locked lines.
SDK2 := .venv-sdk2
SDK_FLOOR := .venv-sdk-floor
LATEST := .venv-latest
SENTRY_SUITES := tests/sentry tests/testing_kit tests/otel/test_coexistence.py tests/docs tests/propagation tests/tracing
FLOOR_SUITES := tests/sentry tests/testing_kit tests/otel/test_coexistence.py tests/docs/test_readme.py tests/docs/test_docs_testing.py tests/propagation tests/tracing

$(STAMP): pyproject.toml uv.lock $(UV)
	$(MAKE) --no-print-directory lock-check
	$(call sync,$(VENV),sdk3)
	touch $(STAMP)

$(SDK2)/.installed: pyproject.toml uv.lock $(UV)
	$(MAKE) --no-print-directory lock-check
	$(call sync,$(SDK2),sdk2)
	touch $@

$(SDK_FLOOR)/.installed: pyproject.toml uv.lock $(UV)
	$(MAKE) --no-print-directory lock-check
	$(call sync,$(SDK_FLOOR),sdk-floor)
	touch $@

# What one locked line runs beside the suites: the demo, the deploy check, the Sentry benchmarks.
# $(call sdk_line,VENV)
define sdk_line
$(1)/bin/python -m vgi_rpc.demo --quiet
$(1)/bin/python scripts/deploy_check.py --nginx "$$(bash scripts/ensure_nginx.sh)"
$(1)/bin/pytest benchmarks/test_sentry.py -q -p no:randomly
endef

matrix: test-sdk3 test-sdk2 test-sdk-floor

test-sdk3: $(STAMP)
	$(BIN)/python -c "import sentry_sdk; assert sentry_sdk.VERSION.startswith('3.'), sentry_sdk.VERSION; print('sentry-sdk', sentry_sdk.VERSION)"
	$(call sdk_line,$(VENV))

test-sdk2: $(SDK2)/.installed
	$(SDK2)/bin/python -c "import sentry_sdk; assert sentry_sdk.VERSION.startswith('2.'), sentry_sdk.VERSION; print('sentry-sdk', sentry_sdk.VERSION)"
	$(SDK2)/bin/mypy vgi_rpc
	$(SDK2)/bin/pytest -q $(SENTRY_SUITES) tests/soak
	$(call sdk_line,$(SDK2))

test-sdk-floor: $(SDK_FLOOR)/.installed
	$(SDK_FLOOR)/bin/python -c "import sentry_sdk; assert sentry_sdk.VERSION == '2.36.0', sentry_sdk.VERSION; print('sentry-sdk', sentry_sdk.VERSION)"
	$(SDK_FLOOR)/bin/pytest -q $(FLOOR_SUITES)

# What a user resolves today: a non-editable pip install with no lock and the newest releases the
# ranges allow (rebuilt every run), then the Sentry/kit/docs suites against that install (the tests
# check they import the installed vgi_rpc, not the checkout) and the demo from outside the checkout.
test-latest:
	rm -rf $(LATEST)
	$(PY) -m venv $(LATEST)
	$(LATEST)/bin/pip install -q --upgrade pip
	$(LATEST)/bin/pip install -q --upgrade --upgrade-strategy eager ".[test]"
	$(LATEST)/bin/pip list --format=freeze | grep -iE "^(sentry-sdk|pyarrow|falcon|httpx|opentelemetry-sdk|pytest|syrupy)=="
	VGI_RPC_EXPECT_INSTALLED=1 $(LATEST)/bin/pytest -q $(SENTRY_SUITES)
	cd $(LATEST) && bin/python -m vgi_rpc.demo --quiet

demo: $(STAMP)
	$(BIN)/python -m vgi_rpc.demo

test: $(STAMP) lint typecheck imports unit

lint: $(STAMP)
	$(BIN)/ruff check vgi_rpc tests $(wildcard benchmarks scripts deploy)
	$(BIN)/ruff format --check vgi_rpc

typecheck: $(STAMP)
	$(BIN)/mypy vgi_rpc

# The import contracts of vgi_rpc/ ([tool.importlinter] in pyproject.toml): one way from the app down
# to the core, the transports apart, no cycle, every module in a layer (`lint-imports --verbose`
# shows the graph it reads).
imports: $(STAMP)
	$(BIN)/lint-imports --no-cache

unit: $(STAMP)
	$(BIN)/pytest -q

$(PEER)/.installed:
	test -x $(PEER)/bin/python || (command -v python3.13 >/dev/null && python3.13 -m venv $(PEER)) || $(PEER_PY) -m venv $(PEER)
	$(PEER)/bin/pip install -q "vgi-rpc[http,otel]==0.52.2"  # otel: the official client then sends traceparent (tests/tracing)
	touch $(PEER)/.installed

peer-venv: $(PEER)/.installed

# The official adversarial request-contract classes (vgi-rpc 0.52.2), unchanged, run by the
# peer venv's pytest against our HTTP server and pipe worker (fixtures in tests/adversarial).
$(PEER)/.pytest: $(PEER)/.installed
	$(PEER)/bin/pip install -q "pytest>=8" "pytest-timeout>=2.3"
	touch $(PEER)/.pytest

adversarial: $(STAMP) $(PEER)/.pytest
	cd tests/adversarial && VGI_OUR_PYTHON="$(CURDIR)/$(BIN)/python" "$(CURDIR)/$(PEER)/bin/pytest" -q

# Both ways: the official runner against our pipe worker and HTTP server (scripts/conformance.py
# prints its table), the official client against our HTTP servers (tests/peer, run by the peer
# venv's pytest, our servers by our Python) and our client against the reference server
# (tests/conformance/test_reference_server.py, run by ours).
conformance: $(STAMP) $(PEER)/.pytest
	$(BIN)/python scripts/conformance.py --peer $(PEER)
	cd tests/peer && VGI_OUR_PYTHON="$(CURDIR)/$(BIN)/python" "$(CURDIR)/$(PEER)/bin/pytest" -q
	$(BIN)/pytest -q tests/conformance/test_reference_server.py

bench: $(STAMP) $(PEER)/.installed
	mkdir -p .benchmarks
	$(BIN)/pytest benchmarks -q --benchmark-columns=median,iqr,rounds --benchmark-json=.benchmarks/pytest-benchmark.json
	$(BIN)/python scripts/bench_peer.py --peer $(PEER)

bench-check: $(STAMP)
	$(BIN)/pytest benchmarks -m gated -q --benchmark-columns=median,iqr,rounds --ratio-baseline=benchmarks/baseline.json

bench-peer: $(STAMP) $(PEER)/.installed
	$(BIN)/python scripts/bench_peer.py --peer $(PEER)

# Our app under gunicorn (gthread workers) behind nginx on loopback; nginx comes from
# the Debian package (apt-get install when missing). See docs/http.md "Running several workers".
deploy-check: $(STAMP)
	$(BIN)/python scripts/deploy_check.py --nginx "$$(bash scripts/ensure_nginx.sh)"

clean:
	rm -rf $(VENV) $(SDK2) $(SDK_FLOOR) $(LATEST) $(TOOLS) build *.egg-info
