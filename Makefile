# controlplane: the two commands are `make run` and `make test`.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
BIN := $(VENV)/bin
NODE_DIR := tests/interop/node
# What the agent needs to run, and what developing it needs on top.
RUN_STAMP := $(VENV)/.installed-run
DEV_STAMP := $(VENV)/.installed-dev
TOOLS_STAMP := $(VENV)/.installed-tools

.PHONY: run tools test venv runtime proto proto-check unasync lint typecheck pytest pytest-secure cluster-test node-deps clean fuzz fuzz-smoke

## run: create .venv, install both distributions (and only their dependencies), start
## one agent on 127.0.0.1:7946; the commands are in .venv/bin
run: runtime
	$(BIN)/controlplane agent --bind 127.0.0.1 --port 7946

## tools: add grpcurl to .venv/bin (the pyproject extra `grpcurl`)
tools: $(TOOLS_STAMP)

## test: everything CI checks
test: venv node-deps lint typecheck proto-check pytest pytest-secure fuzz-smoke cluster-test

runtime: $(RUN_STAMP)

# The development environment: the runtime plus the pinned tools of requirements-dev.txt.
venv: $(DEV_STAMP)

$(RUN_STAMP): pyproject.toml clients/python/pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet -e clients/python -e .
	@touch $@

$(DEV_STAMP): $(RUN_STAMP) requirements-dev.txt
	$(PY) -m pip install --quiet -r requirements-dev.txt
	@touch $@

$(TOOLS_STAMP): $(RUN_STAMP)
	$(PY) -m pip install --quiet -e '.[grpcurl]'
	@touch $@

# Node packages for the interop tests, from the committed lockfile.
node-deps: $(if $(wildcard $(NODE_DIR)/package-lock.json),$(NODE_DIR)/node_modules/.package-lock.json)

$(NODE_DIR)/node_modules/.package-lock.json: $(NODE_DIR)/package.json $(NODE_DIR)/package-lock.json
	@command -v npm >/dev/null || { echo "npm is required for the interop tests (Node.js 20)"; exit 1; }
	cd $(NODE_DIR) && npm ci --no-audit --no-fund --loglevel=error

proto: venv
	$(PY) tools/protogen.py generate

proto-check: venv
	$(PY) tools/protogen.py check

# The blocking client is generated from the asyncio one (tools/unasync.py); lint fails
# when the committed output drifted from its source.
unasync: venv
	$(PY) tools/unasync.py generate

lint: venv
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(PY) tools/unasync.py check
	$(BIN)/buf lint

typecheck: venv
	$(BIN)/mypy controlplane clients/python/controlplane tools tests fuzz $(wildcard bench)
	@# strict is the project-wide setting; repeated here so the client can never lose it
	$(BIN)/mypy --strict clients/python/controlplane

# Unit, property, simulation, integration and interop tiers.
# Atheris harnesses (fuzz/), one after another, each for FUZZ_SECONDS, in-process and
# offline; each prints one summary line (executions, crashes). Inputs that crash are kept
# in fuzz/crashes/<harness>/; fuzz-smoke is the short run `make test` includes.
FUZZ_SECONDS ?= 60
FUZZ_HARNESSES := gossip_packet direct_frame push_pull stream_ping snapshot ring_state \
	keyring_file epoch_file servicers
fuzz: venv
	@set -o pipefail; failed=0; for harness in $(FUZZ_HARNESSES); do \
		$(PY) -m fuzz.$$harness --seconds $(FUZZ_SECONDS) 2>&1 \
			| grep -v -e '^INFO: Instrumenting' -e '^WARNING: It looks like' || failed=1; \
	done; exit $$failed

fuzz-smoke: venv
	@$(MAKE) --no-print-directory fuzz FUZZ_SECONDS=3

# Test files run side by side, one worker per core: most of the time of the
# integration tier is agents waiting for timeouts, not CPU. A file stays whole on one
# worker (--dist loadfile), so a file's own fixtures and order hold as in a serial run.
PYTEST_WORKERS ?= 2
PYTEST_PARALLEL := -n $(PYTEST_WORKERS) --dist loadfile
pytest: venv
	$(BIN)/pytest -m "not cluster" $(PYTEST_PARALLEL) --durations=20

# The agent-cluster tests once more, every agent with mTLS (verify_incoming and
# verify_outgoing) and a scoped token file, every call with a client certificate and
# an operator token (tests/conftest.py, controlplane/testing/agents.py SecureSetup).
SECURE_TESTS := $(addprefix tests/integration/,test_membership_cluster.py \
	test_heartbeat_cluster.py test_ring_cluster.py test_election_cluster.py \
	test_keyring_cluster.py test_client_cluster.py test_client_watches.py test_server_pool_service.py test_cli.py)
pytest-secure: venv
	$(BIN)/pytest -m "not cluster" --secure-agents $(SECURE_TESTS) $(PYTEST_PARALLEL) --durations=10

# Containers on a local Docker engine (scripts/docker-engine.sh starts one; with
# CI=true a missing engine fails the run instead of skipping the tier).
cluster-test: venv
	$(BIN)/pytest -m cluster tests/cluster --durations=0

clean:
	rm -rf $(VENV) $(NODE_DIR)/node_modules .mypy_cache .ruff_cache .pytest_cache
