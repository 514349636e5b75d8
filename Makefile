# The README's contract: `make demo` runs the main job against the local emulator, `make test` runs
# every test but the soak (`make soak`, which CI runs after it). Each installs what it needs itself.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
OAV := tools/oav/node_modules/.bin/oav
AZURITE := tools/azurite/node_modules/.bin/azurite-table
CHECKOV := tools/checkov/.venv/bin/checkov

.PHONY: demo test soak lint emulator local-settings bench clean

$(STAMP): requirements.txt requirements-dev.txt
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -r requirements-dev.txt
	touch $(STAMP)

$(OAV): tools/oav/package.json tools/oav/package-lock.json
	cd tools/oav && npm ci --no-audit --no-fund --loglevel=error
	touch $(OAV)

$(AZURITE): tools/azurite/package.json tools/azurite/package-lock.json
	cd tools/azurite && npm ci --no-audit --no-fund --loglevel=error
	touch $(AZURITE)

$(CHECKOV): tools/checkov/requirements.txt
	$(PYTHON) -m venv tools/checkov/.venv
	tools/checkov/.venv/bin/python -m pip install --quiet --upgrade pip
	tools/checkov/.venv/bin/python -m pip install --quiet --no-deps -r tools/checkov/requirements.txt
	touch $(CHECKOV)

demo: $(STAMP) $(AZURITE)
	$(PY) -m scripts.demo

# The seeded emulator and Azurite (Blob, Queue, Table on 10000-10002) until Ctrl-C, and a ready
# local.settings.json for `func start` in another terminal.
emulator: $(STAMP) $(AZURITE)
	$(PY) -m devhost emulator

# local.settings.json again, from the emulator `make emulator` keeps running.
local-settings: $(STAMP)
	$(PY) -m devhost local-settings

lint: $(STAMP)
	$(PY) -m ruff check .
	$(PY) -m ruff format --check .

# The suite runs on TEST_WORKERS workers, each with its own emulator and Azurite (it mostly waits);
# then oav checks the ARM traffic every worker recorded into .state/arm-traffic.
TEST_WORKERS ?= 6
test: $(STAMP) $(OAV) $(AZURITE) $(CHECKOV)
	$(PY) -m ruff check .
	$(PY) -m ruff format --check .
	mkdir -p .state && rm -rf .state/arm-traffic
	ARM_TRAFFIC_DIR=$(CURDIR)/.state/arm-traffic $(PY) -m pytest -q -p no:cacheprovider -n $(TEST_WORKERS) \
		--dist worksteal --ignore=tests/soak --ignore=tests/emulator/test_zz_spec_traffic.py
	ARM_TRAFFIC_DIR=$(CURDIR)/.state/arm-traffic $(PY) -m pytest -q -p no:cacheprovider \
		tests/emulator/test_zz_spec_traffic.py

# 200 scheduled rounds over 20 targets with random faults (about ten minutes): nothing lost, nothing
# made twice. CI runs it after `make test`.
soak: $(STAMP) $(AZURITE)
	$(PY) -m pytest -q -s -p no:cacheprovider tests/soak

bench: $(STAMP) $(AZURITE)
	-$(PY) -m bench.fanout
	-$(PY) -m bench.invocations
	-$(PY) -m bench.coldstart
	-$(PY) -m bench.catalog
	$(PY) -m bench.verify

clean:
	rm -rf $(VENV) tools/oav/node_modules tools/azurite/node_modules tools/checkov/.venv .state
