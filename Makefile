# pocketrec: the two commands a fresh machine needs are `make quickstart` and `make test`.
#
# Everything installs into .venv. torch comes first and pinned, so the range the [distill]
# extra asks for is already met and pip never pulls a multi-GB CUDA build onto a CPU machine.
# On a machine where PyPI's torch is a CUDA build you do not want, pass a CPU wheel instead:
#   make setup TORCH_SPEC="torch==2.13.0 --index-url https://download.pytorch.org/whl/cpu"

PYTHON ?= python3
VENV ?= .venv
TORCH_SPEC ?= torch==2.13.0
DATASET ?= beauty
SEEDS ?= 0,1,2
RUN_DIR ?= runs/quickstart
PRESET ?= quick
export POCKETREC_DATA ?= $(abspath ../shared/datasets)

BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: setup quickstart baseline test lint typecheck unit clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet $(TORCH_SPEC)
	$(BIN)/python -m pip install --quiet -e ".[distill,export,npu,federated,signing,dev]"
	touch $(STAMP)

setup: $(STAMP)

# The main job: semantic IDs, teacher, distilled student, every precision, SDK evaluation,
# benchmarks and runs/quickstart/report.md. A rerun reuses what already finished.
quickstart: setup
	$(BIN)/pocketrec data stats $(DATASET)
	$(BIN)/pocketrec quickstart $(DATASET) --preset $(PRESET) --out $(RUN_DIR)

# The SASRec baseline a user would pick instead (3 seeds), under the same protocol.
baseline: setup
	$(BIN)/pocketrec baseline $(DATASET) --seeds $(SEEDS) --out runs/baseline-$(DATASET)

lint: setup
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

# mypy checks a symlink tree shaped like the installed package, since it cannot map folders
# to other import names itself (see pyproject.toml).
typecheck: setup
	rm -rf build/typecheck && mkdir -p build/typecheck/pocketrec
	ln -s $(CURDIR)/sdk/*.py $(CURDIR)/sdk/py.typed build/typecheck/pocketrec/
	ln -s $(CURDIR)/distill build/typecheck/pocketrec/distill
	ln -s $(CURDIR)/export build/typecheck/pocketrec/export
	cd build/typecheck && $(CURDIR)/$(BIN)/mypy --config-file $(CURDIR)/pyproject.toml -p pocketrec

unit: setup
	$(BIN)/python -m pytest

test: lint typecheck unit android

# The Android demo's JVM core (javac + JUnit 4; installs default-jdk-headless junit4 if missing).
.PHONY: android
android:
	android_demo/core/run-tests.sh

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
