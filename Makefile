# kfp-tf-gate: make help lists the targets.
PY ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-$(shell cksum pyproject.toml | cut -d' ' -f1)
PYTEST_ARGS ?=

# REHEARSE_ARGS, e.g. --preempt train, --data t.csv --label y
REHEARSE_TARGET ?= kubeflow
REHEARSE_ARGS ?=

.PHONY: help venv run rehearse test test-containers compile check-compiled bench bench-tfx bench-predict bench-tasks lint fmt clean

help: ## list targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-16s %s\n", $$1, $$2}'

# The big install shows pip's own progress (a line per package, bars for large downloads).
$(STAMP): pyproject.toml
	@echo "installing kfp-tf-gate and its dependencies into $(VENV) (first time only, usually 3-5 minutes)..."
	@start=$$(date +%s) \
	  && { test -x $(BIN)/python || $(PY) -m venv $(VENV); } \
	  && $(BIN)/python -m pip install -q --upgrade pip \
	  && $(BIN)/python -m pip install --progress-bar on -e '.[all]' \
	  && rm -f $(VENV)/.installed-* && touch $(STAMP) \
	  && echo "done in $$(( $$(date +%s) - start )) s"

venv: $(STAMP) ## create .venv and install the project with all extras (once)

run: venv ## run the training pipeline locally on the embedded dataset (runs/)
	$(BIN)/python -m pipelines run

rehearse: venv ## run compiled/$(REHEARSE_TARGET)/training.yaml as the cluster would (REHEARSE_TARGET=vertex)
	$(BIN)/python -m pipelines rehearse --target $(REHEARSE_TARGET) $(REHEARSE_ARGS)

test: venv ## the whole test suite (unit, component, kfp.local, compile)
	$(BIN)/python -m pytest -q -m "not heavy" $(PYTEST_ARGS)

test-containers: venv ## container contract: fresh venv per image role runs its components (slow)
	$(BIN)/python -m pytest -q -m heavy $(PYTEST_ARGS)

compile: venv ## write compiled/{kubeflow,vertex}/*.yaml
	$(BIN)/python -m pipelines compile

check-compiled: venv ## fail when compiled/ is stale
	$(BIN)/python -m pipelines compile --check

bench: venv ## benchmarks at 100k and 1M rows (BENCH_ARGS="--rows 10000000" for 10M)
	$(BIN)/python -m tests.benchmarks $(BENCH_ARGS)

bench-tfx: venv ## ours vs TFX 1.16 (LocalDagRunner) end to end at 1M rows, 2 epochs; first run creates TFX's Python 3.10 venv (~5 min)
	$(BIN)/python -m tests.benchmarks --tfx --rows 1000000 --parts pipeline $(BENCH_ARGS)

bench-predict: venv ## batch scoring rows/s and peak RSS at 1M rows (BENCH_ARGS="--rows 10000000 --formats parquet")
	$(BIN)/python -m tests.benchmarks.predict $(BENCH_ARGS)

bench-tasks: venv ## each task type (regression, multiclass, binary) vs a HistGradientBoosting baseline on the same rows
	$(BIN)/python -m tests.benchmarks.tasks $(BENCH_ARGS)

.PHONY: bench-memory
bench-memory: venv ## peak RSS of each data step at 1M, 10M, 50M rows (issue 19; BENCH_ARGS="--rows 1000000 10000000")
	$(BIN)/python -m tests.benchmarks.memory --rows 1000000 10000000 50000000 $(BENCH_ARGS)

lint: venv ## ruff lint (formatting is not enforced yet: see README)
	$(BIN)/ruff check components pipelines tests

fmt: venv ## ruff format
	$(BIN)/ruff format components pipelines tests

clean: ## remove runs and caches (keeps .venv)
	rm -rf runs .pytest_cache bench-results
