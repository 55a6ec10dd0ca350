# make test  - install what the tests need (venv, pip, Azurite from npm) and run the whole suite
# make demo  - Azurite + 3 instances in this terminal with a live panel and failovers to watch
#              (DEMO_SECONDS=N ends it after N seconds with a summary); installs only what the demo
#              needs: requirements.txt into the venv, and Azurite only for ELECTION_BACKEND=azure
# make lint  - ruff
# make chaos - the fault-injection harness on its own: rounds of faults, then the report table
#              on each of CHAOS_BACKENDS ("azure postgres redis"; CHAOS_ARGS="--rounds 21 --instances 3
#              --seed 1"); then
#              distributed-mutex run's faults on Raft, ZooKeeper, PostgreSQL and Redis (WRAPPER_CHAOS_ARGS=
#              "--seconds 60 --backends raft,zookeeper,postgres,redis"); then the partitions on real sockets,
#              every scenario x backend (root, ip, nft; says why it skips otherwise): its own table
#              (PARTITION_ARGS="--backend raft --scenario isolation"; --help for all options); then the
#              APScheduler and Celery beat integrations through SCHEDULER_ROUNDS (4) rounds of SIGKILL,
#              SIGTERM and SIGSTOP of the leader, on Raft, ZooKeeper, PostgreSQL, Redis and the blob lease (make test: one
#              round on Raft and ZooKeeper, APScheduler also on PostgreSQL, Celery beat also on Redis), with
#              their runs counted per interval
# make bench - the failover/cost benchmark (starts its own Azurite; needs MariaDB/MySQL as for the tests):
#              table on stdout, results.json and timeline.png in bench-results/<time>/
#              (BENCH_ARGS="--trials 2 --contenders 3,10" for a smaller run; --help for all options)
# make azurite - run Azurite (blob service) on 127.0.0.1:$(AZURITE_PORT) (10000) in the foreground, for the demo
#                (no line per request: AZURITE_ARGS="--debug FILE" logs them to FILE)
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
AZURITE_PORT ?= 10000
# Test processes side by side: most tests wait on leases and failovers, not on the CPU.
TEST_WORKERS ?= 3
# make chaos: the lease backends its rounds run on, one after the other.
CHAOS_BACKENDS ?= azure postgres redis
# make chaos: rounds of faults for the scheduler integrations (the short form in make test is one).
SCHEDULER_ROUNDS ?= 4
# The demo needs Azurite only for the blob lease (the default backend; ZooKeeper, Raft and Redis need none).
DEMO_BACKEND = $(or $(ELECTION_BACKEND),azure)
DEMO_DEPS = $(VENV)/.demo-installed $(if $(filter zookeeper raft postgres redis,$(DEMO_BACKEND)),,node_modules/.installed)

.PHONY: test demo lint chaos bench deps demo-deps azurite clean

test: deps
	$(VENV)/bin/ruff check src tests bench harness
	$(VENV)/bin/mypy
	$(PY) -m pytest -n $(TEST_WORKERS) --dist loadfile

demo: demo-deps
	DEMO_SECONDS=$(DEMO_SECONDS) PYTHONPATH=src $(PY) -m distributed_mutex_demo.demo

lint: deps
	$(VENV)/bin/ruff check src tests bench harness
	$(VENV)/bin/mypy

chaos: deps
	for backend in $(CHAOS_BACKENDS); do PYTHONPATH=src:. $(PY) -m harness.chaos --backend $$backend $(CHAOS_ARGS) || exit 1; done
	PYTHONPATH=src:. $(PY) -m harness.wrapper_chaos $(WRAPPER_CHAOS_ARGS)
	PYTHONPATH=src:. $(PY) -m harness.partitions $(PARTITION_ARGS)
	SCHEDULER_FAULT_ROUNDS=$(SCHEDULER_ROUNDS) $(PY) -m pytest -q -s -p no:cacheprovider \
		tests/test_apscheduler_processes.py tests/test_celery_beat_processes.py

bench: deps $(VENV)/.bench-installed
	PYTHONPATH=src:. $(PY) -m bench $(BENCH_ARGS)

$(VENV)/.bench-installed: requirements-bench.txt $(VENV)/.installed
	$(PY) -m pip install --quiet --disable-pip-version-check -r requirements-bench.txt
	touch $@

# Everything: the tests' tools too (requirements-dev.txt includes requirements.txt).
deps: $(VENV)/.installed node_modules/.installed

# The demo alone: its packages, and Azurite if its backend needs it.
demo-deps: $(DEMO_DEPS)

$(VENV)/.installed: requirements.txt requirements-dev.txt
	@echo "installing the Python packages for the demo and the tests into $(VENV) (about 15 s from pip's cache, a minute or more from PyPI)"
	@$(PYTHON) -m venv $(VENV)
	@$(PY) -m pip install --quiet --disable-pip-version-check -r requirements-dev.txt
	@touch $@ $(VENV)/.demo-installed

# A venv made by `make test` has these already (requirements-dev.txt includes them): no pip then.
$(VENV)/.demo-installed: requirements.txt
	@if [ -f $(VENV)/.installed ] && [ $(VENV)/.installed -nt requirements.txt ]; then touch $@; else \
	echo "installing the demo's Python packages (requirements.txt) into $(VENV) (about 6 s from pip's cache, 30 s or more from PyPI)" && \
	$(PYTHON) -m venv $(VENV) && \
	$(PY) -m pip install --quiet --disable-pip-version-check -r requirements.txt && touch $@; fi

# Azurite from npm; without Node.js the demo runs Azurite's Docker image instead.
node_modules/.installed: package.json package-lock.json
	@if command -v npm >/dev/null; then \
	echo "installing Azurite (the Azure Storage emulator the blob lease runs on) from npm into node_modules (about 30 s)" && \
	npm ci --no-audit --no-fund --loglevel=error --progress=false && touch $@; \
	elif command -v docker >/dev/null; then echo "no npm: Azurite will run in Docker"; \
	else echo "Azurite needs Node.js (npm) or Docker: install one of them" >&2; exit 1; fi

# --silent: Azurite's access log would print a line for every request (a renewal every few seconds).
azurite: node_modules/.installed
	mkdir -p .azurite
	node_modules/.bin/azurite-blob --blobHost 127.0.0.1 --blobPort $(AZURITE_PORT) --location .azurite \
		--disableTelemetry --silent $(AZURITE_ARGS)

clean:
	rm -rf $(VENV) node_modules .pytest_cache .ruff_cache .hypothesis .azurite build dist src/*.egg-info
