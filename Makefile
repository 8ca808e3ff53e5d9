# srcaffe: `make demo` runs the tutorial end to end, `make test` runs the test suite.
# Both (re)create .venv and install everything pinned in constraints.txt.

PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
# The folder holding T91/ Set5/ Set14/ General100/ BSD100/ (make prep SR_DATA=/data/sr). Unset,
# ../shared/data; where that is absent too, each dataset is fetched (sha256 verified) into
# ~/.cache/srcaffe/datasets the first time it is needed.
SR_DATA ?=
export SR_DATA

PREP_CONFIG ?= configs/prep_x3.yaml
PYTEST_ARGS ?=

.PHONY: install demo prep test bench bench-train clean

install: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -c constraints.txt -e '.[test,bench]'
	touch $@

prep: install
	$(BIN)/python -m prep --config $(PREP_CONFIG)

# The tutorial end to end: prep, train, resume under a raised max_iter, super-resolve, score.
DEMO_RUN := results/runs/demo/fsrcnn
demo: install
	$(BIN)/python -m prep --config configs/prep_x3_valid.yaml
	rm -f $(DEMO_RUN)_*
	$(BIN)/runner train --solver configs/demo_solver.yaml
	$(BIN)/runner train --solver configs/demo_solver_more.yaml \
	    --snapshot $(DEMO_RUN)_iter_1000.solverstate
	set5="$$($(BIN)/python -m prep where Set5)" && \
	    $(BIN)/runner predict "$$set5/butterfly_GT.bmp" --degrade \
	    --model $(DEMO_RUN)_iter_2000.model --out results/predict/demo
	$(BIN)/runner test --model $(DEMO_RUN)_iter_2000.model --sets Set5 --out results/test/demo
	$(BIN)/runner plot $(DEMO_RUN)
	@echo
	@echo "make demo wrote:"
	@echo "  data:       results/data/x3_valid/{train,test}.h5"
	@echo "  snapshots:  $(DEMO_RUN)_iter_{500,1000,1500,2000}.{model,solverstate}"
	@echo "  logs:       $(DEMO_RUN)_train.log, $(DEMO_RUN)_log.jsonl, curves $(DEMO_RUN)_curves.png"
	@echo "  butterfly:  results/predict/demo/ (ground truth | bicubic | FSRCNN figure)"
	@echo "  Set5 table: results/test/demo/ (Markdown and CSV)"

test: install
	$(BIN)/python -m pytest $(PYTEST_ARGS)

# Ours against the usual PyTorch loop and OpenCV dnn_superres, side by side: results/bench.md.
# Runs `make prep` first if its data is missing. Every core by default; BENCH_THREADS=1 on a
# machine that other processes keep busy.
BENCH_THREADS ?= $(shell nproc)
bench: install
	$(BIN)/python -m runner.bench --threads $(BENCH_THREADS)

# Set5 PSNR against wall-clock time: the time-to-quality recipe, the tutorial's solver and
# yjn870's loop, BENCH_TRAIN_BUDGET seconds each, one after the other (~45 minutes by default):
# results/time_to_quality.{png,md,csv}. Prepares the data it needs first (not counted).
BENCH_TRAIN_BUDGET ?= 900
bench-train: install
	$(BIN)/python -m runner.bench.time_to_quality --budget $(BENCH_TRAIN_BUDGET) \
	    --threads $(BENCH_THREADS)

clean:
	rm -rf $(VENV) results/data results/runs
