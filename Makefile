# Two commands for a new machine:
#   make demo   set up .venv, train a small EDSR on the bundled sample photos, log it to MLflow
#   make test   set up .venv, lint (ruff) and run the whole test suite
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
export MLFLOW_TRACKING_URI ?= sqlite:///mlflow.db

.PHONY: setup demo test test-fast lint ui server server-stop clean

setup: $(VENV)/.installed

# uv installs in seconds what pip --quiet took minutes over, silently; --compile-bytecode, as pip
# does, else the first processes to import TensorFlow (the test workers, at once) each compile it.
$(VENV)/.installed: pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	@echo "setup: installing TensorFlow, MLflow and the rest into $(VENV) with uv (under a minute on a fast network; once)"
	$(BIN)/python -m pip install --quiet --upgrade uv
	$(BIN)/uv pip install --compile-bytecode --python $(BIN)/python -e '.[dev,server]'
	touch $@

# A short run on the sample images that ship with scikit-image: no download, a few minutes on a laptop CPU.
# In the experiment `edsr`, where `edsr-mlflow train` puts runs (mlflow run's own default is "Default").
# MLflow's INFO lines ("Creating initial MLflow database tables...") off; its errors still show.
demo: setup
	PATH="$(abspath $(BIN)):$$PATH" MLFLOW_LOGGING_LEVEL=WARNING $(BIN)/mlflow run . --env-manager local --experiment-name edsr \
		-P dataset=sample -P blocks=4 -P filters=32 -P patch_size=32 \
		-P epochs=3 -P steps_per_epoch=40

# Three workers on two cores: many tests wait on a server or a child process, and the longest
# (marked slow) start first (tests/conftest.py), so the suite ends when its longest test does.
PYTEST_WORKERS ?= 3
PYTEST_PARALLEL := -n $(PYTEST_WORKERS) --dist worksteal

test: lint
	$(BIN)/python -m pytest $(PYTEST_PARALLEL)

# The suite without the end-to-end runs marked slow: a quick check while editing.
test-fast: setup
	$(BIN)/python -m pytest $(PYTEST_PARALLEL) -m "not slow"

lint: setup
	$(BIN)/ruff check .

ui: setup
	$(BIN)/mlflow ui --backend-store-uri $(MLFLOW_TRACKING_URI)

# The team's tracking server: PostgreSQL backend, artifacts served over HTTP (see README).
server: setup
	MLFLOW=$(abspath $(BIN))/mlflow scripts/tracking_server.sh start

server-stop:
	scripts/tracking_server.sh stop

# The local store and checkpoints, and what a killed command or benchmark can leave in the temp
# folder (a finished one leaves nothing): only the folders named by this project's prefixes.
TMP := $(or $(TMPDIR),/tmp)
clean:
	rm -rf $(VENV) mlflow.db mlruns mlartifacts checkpoints .pytest_cache
	rm -rf $(TMP)/edsr-mlflow-* $(TMP)/edsr-bench-* $(TMP)/edsr-model-*
