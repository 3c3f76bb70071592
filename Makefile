# Custody Watch — the two commands are `make run` and `make test`; everything else is for developers and CI.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: install run demo test test-fast lint format contracts infra-up infra-down bench clean

$(STAMP): pyproject.toml deploy/local/pyproject.toml deploy/local/bootstrap.sh
	@deploy/local/bootstrap.sh
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	@$(BIN)/python -m pip install -q --upgrade pip==25.3
	@$(BIN)/python -m pip install -q -e '.[dev]'
	@$(BIN)/python -m pip install -q --no-deps -e deploy/local
	@touch $(STAMP)

install: $(STAMP)

## Run the whole system locally: Kafka, PostgreSQL, the four services and the local SMS/email sinks.
run: install
	@$(BIN)/python -m devservers.stack run

## The whole system plus a short scripted story: subscribe, verify, a booking, a release, the notices arriving.
demo: install
	@$(BIN)/python -m devservers.stack run --demo

## The whole test suite against real Kafka and PostgreSQL (started and stopped by the tests themselves). The
## scenarios that mostly wait out minute-long outages (marker "waits") run beside the rest, on servers of their own.
test: install
	@mkdir -p .local
	@$(BIN)/python -m pytest -q -m waits > .local/test-waits.log 2>&1 & waits=$$!; \
	$(BIN)/python -m pytest -q -m "not waits"; rest=$$?; \
	wait $$waits; waited=$$?; \
	echo; echo "--- the outage scenarios (marker waits), run alongside:"; cat .local/test-waits.log; \
	[ $$rest -eq 0 ] && [ $$waited -eq 0 ]

## Only the tests that need no server.
test-fast: install
	@$(BIN)/python -m pytest -q -m "not integration and not e2e and not slow"

lint: install
	@$(BIN)/ruff check .
	@$(BIN)/ruff format --check .
	@$(BIN)/mypy shared services cli deploy/local/devservers tests
	@$(BIN)/python -m shared.contracts --check

format: install
	@$(BIN)/ruff check --fix .
	@$(BIN)/ruff format .

contracts: install
	@$(BIN)/python -m shared.contracts

infra-up: install
	@$(BIN)/python -m devservers up

infra-down: install
	@$(BIN)/python -m devservers down

## Latency, throughput, burst and memory of the real system on this machine (`make bench ARGS=--quick`).
bench: install
	@$(BIN)/python -m tests.bench $(ARGS)

clean:
	@$(BIN)/python -m devservers down 2>/dev/null || true
	rm -rf .local $(VENV)
