# Two commands: `make dev` runs the engine on embedded servers; `make test` runs every test.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: dev test chaos lint typecheck bench clean browser pgbouncer

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $(STAMP)

# Every JOBENGINE_* variable reaches the fleet, e.g. JOBENGINE_HANDLER_MODULES=myapp.jobs make dev
# or JOBENGINE_SEALED=1 make dev; the demo turns on command-running types unless they are set.
dev: $(STAMP)
	$(BIN)/jobengine dev

test: $(STAMP) browser pgbouncer
	$(BIN)/pytest

# Debian's Chromium and its driver for the console's browser test (tests/console), installed
# when missing; without root or apt the step says so and that test skips, naming the reason.
browser:
	@if [ -x /usr/bin/chromium ] && [ -x /usr/bin/chromedriver ]; then :; \
	elif [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
		echo "installing chromium and chromium-driver for the console's browser test"; \
		(apt-get install -y -q chromium chromium-driver >/dev/null 2>&1 || \
		 (apt-get update -q >/dev/null && apt-get install -y -q chromium chromium-driver >/dev/null)) \
		|| echo "could not install chromium: the console's browser test will skip"; \
	else echo "chromium is missing and this is not root with apt: the browser test will skip"; fi

# Debian's PgBouncer for the transaction-mode tests (tests/pgbouncer), installed when missing;
# without root or apt the step says so and those tests skip, naming the reason.
pgbouncer:
	@if command -v pgbouncer >/dev/null || [ -x /usr/sbin/pgbouncer ]; then :; \
	elif [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
		echo "installing pgbouncer for the transaction-mode tests"; \
		(apt-get install -y -q pgbouncer >/dev/null 2>&1 || \
		 (apt-get update -q >/dev/null && apt-get install -y -q pgbouncer >/dev/null)) \
		|| echo "could not install pgbouncer: the transaction-mode tests will skip"; \
	else echo "pgbouncer is missing and this is not root with apt: its tests will skip"; fi

# Every chaos scenario at full size (tests/chaos and PgBouncer's restart in tests/pgbouncer;
# sizes: CHAOS_* variables, see the README).
chaos: $(STAMP) pgbouncer
	CHAOS_FULL=1 $(BIN)/pytest -m chaos tests/chaos tests/pgbouncer

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck: $(STAMP)
	$(BIN)/mypy

bench: $(STAMP) pgbouncer
	$(BIN)/python bench/transitions.py
	$(BIN)/python bench/round_trips.py
	$(BIN)/python bench/limits.py
	$(BIN)/python bench/dag.py
	$(BIN)/python bench/quotas.py
	$(BIN)/python bench/console_counts.py
	$(BIN)/python bench/backfill.py
	$(BIN)/python bench/replication.py
	$(BIN)/python bench/pgbouncer.py

# jobengine against bare Celery, Procrastinate and PgQueuer (README: Benchmarks); options in
# PEERS_ARGS, e.g. make bench-peers PEERS_ARGS='--jobs 2000 --rounds 2'.
BENCH_STAMP := $(VENV)/.bench-installed
.PHONY: bench-peers
$(BENCH_STAMP): $(STAMP) pyproject.toml
	$(BIN)/pip install --quiet -e '.[bench]'
	touch $(BENCH_STAMP)

bench-peers: $(BENCH_STAMP)
	$(BIN)/python bench/peers.py $(PEERS_ARGS)

clean:
	rm -rf $(VENV) .jobengine
