# make test  - install what the tests need (venv, pip, Azurite from npm) and run the whole suite
# make demo  - Azurite + 3 instances in this terminal with a live panel and failovers to watch
#              (DEMO_SECONDS=N ends it after N seconds with a summary)
# make lint  - ruff
# make chaos - the fault-injection harness on its own: rounds of faults, then the report table
#              (CHAOS_ARGS="--rounds 21 --instances 3 --seed 1"); then the partitions on real sockets,
#              every scenario x backend (root, ip, nft; says why it skips otherwise): its own table
#              (PARTITION_ARGS="--backend raft --scenario isolation"; --help for all options)
# make bench - the failover/cost benchmark (starts its own Azurite; needs MariaDB/MySQL as for the tests):
#              table on stdout, results.json and timeline.png in bench-results/<time>/
#              (BENCH_ARGS="--trials 2 --contenders 3,10" for a smaller run; --help for all options)
# make azurite - run Azurite (blob service) on 127.0.0.1:$(AZURITE_PORT) (10000) in the foreground, for the demo
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
AZURITE_PORT ?= 10000
# Test processes side by side: most tests wait on leases and failovers, not on the CPU.
TEST_WORKERS ?= 3

.PHONY: test demo lint chaos bench deps azurite clean

test: deps
	$(VENV)/bin/ruff check src tests bench harness
	$(VENV)/bin/mypy
	$(PY) -m pytest -n $(TEST_WORKERS) --dist loadfile

demo: deps
	DEMO_SECONDS=$(DEMO_SECONDS) PYTHONPATH=src $(PY) -m distributed_mutex_demo.demo

lint: deps
	$(VENV)/bin/ruff check src tests bench harness
	$(VENV)/bin/mypy

chaos: deps
	PYTHONPATH=src:. $(PY) -m harness.chaos $(CHAOS_ARGS)
	PYTHONPATH=src:. $(PY) -m harness.partitions $(PARTITION_ARGS)

bench: deps $(VENV)/.bench-installed
	PYTHONPATH=src:. $(PY) -m bench $(BENCH_ARGS)

$(VENV)/.bench-installed: requirements-bench.txt $(VENV)/.installed
	$(PY) -m pip install --quiet --disable-pip-version-check -r requirements-bench.txt
	touch $@

deps: $(VENV)/.installed node_modules/.installed

$(VENV)/.installed: requirements.txt requirements-dev.txt
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check -r requirements-dev.txt
	touch $@

# Azurite from npm; without Node.js the demo runs Azurite's Docker image instead.
node_modules/.installed: package.json package-lock.json
	@if command -v npm >/dev/null; then npm ci --no-audit --no-fund --loglevel=error && touch $@; \
	elif command -v docker >/dev/null; then echo "no npm: Azurite will run in Docker"; \
	else echo "Azurite needs Node.js (npm) or Docker: install one of them" >&2; exit 1; fi

azurite: node_modules/.installed
	mkdir -p .azurite
	node_modules/.bin/azurite-blob --blobHost 127.0.0.1 --blobPort $(AZURITE_PORT) --location .azurite --disableTelemetry

clean:
	rm -rf $(VENV) node_modules .pytest_cache .ruff_cache .hypothesis .azurite build dist src/*.egg-info
