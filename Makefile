# The README's contract: `make demo` runs the main job against the local emulator,
# `make test` runs every test. Each installs what it needs itself.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
OAV := tools/oav/node_modules/.bin/oav
AZURITE := tools/azurite/node_modules/.bin/azurite-table
CHECKOV := tools/checkov/.venv/bin/checkov

.PHONY: demo test lint emulator bench clean

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

emulator: $(STAMP)
	$(PY) -m emulator serve --state-dir .state/emulator --seed

lint: $(STAMP)
	$(PY) -m ruff check .
	$(PY) -m ruff format --check .

# The soak (tests/soak, minutes of mostly waiting) runs beside the rest of the suite; both must pass.
# The suite runs on TEST_WORKERS workers, each with its own emulator and Azurite (it mostly waits too);
# then oav checks the ARM traffic every worker recorded into .state/arm-traffic.
TEST_WORKERS ?= 4
test: $(STAMP) $(OAV) $(AZURITE) $(CHECKOV)
	$(PY) -m ruff check .
	$(PY) -m ruff format --check .
	mkdir -p .state && rm -rf .state/arm-traffic
	$(PY) -m pytest -q -s -p no:cacheprovider tests/soak > .state/soak.log 2>&1 & soak=$$!; \
	ARM_TRAFFIC_DIR=$(CURDIR)/.state/arm-traffic $(PY) -m pytest -q -p no:cacheprovider -n $(TEST_WORKERS) \
		--ignore=tests/soak --ignore=tests/emulator/test_zz_spec_traffic.py; suite=$$?; \
	ARM_TRAFFIC_DIR=$(CURDIR)/.state/arm-traffic $(PY) -m pytest -q -p no:cacheprovider \
		tests/emulator/test_zz_spec_traffic.py; traffic=$$?; \
	wait $$soak; soaked=$$?; echo "--- tests/soak"; cat .state/soak.log; \
	test $$suite -eq 0 && test $$traffic -eq 0 && test $$soaked -eq 0

bench: $(STAMP) $(AZURITE)
	-$(PY) -m bench.fanout
	-$(PY) -m bench.invocations
	-$(PY) -m bench.coldstart
	-$(PY) -m bench.catalog
	$(PY) -m bench.verify

clean:
	rm -rf $(VENV) tools/oav/node_modules tools/azurite/node_modules tools/checkov/.venv .state
