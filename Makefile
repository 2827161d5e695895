# `make demo` and `make test` set everything up on a fresh machine, then run.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test fuzz readme bench setup graphviz clean

demo: setup
	$(BIN)/tinygrad-rnn demo

test: setup
	$(BIN)/python -m pytest -q

# the differential test's long run: 20,000 random graphs from new seeds, both modes, two oracles each
# (PyTorch among them, so it installs the bench extra); any change to the engine, an op or a fused step runs it
fuzz: setup
	$(BIN)/pip install -q -e ".[test,bench]"
	$(BIN)/python tests/fuzz.py --graphs 20000

# every shell command of README.md, in order, in a fresh clone (slow: it trains and runs make test)
readme: setup
	$(BIN)/python -m pytest -q -m slow tests/test_readme.py

bench: setup
	$(BIN)/pip install -q -e ".[test,bench]"
	$(BIN)/python benchmarks/op_overhead.py
	$(BIN)/python benchmarks/bench.py

setup: $(STAMP) graphviz

# Debian's python3 makes venvs only with python3-venv; as root we install it, else we say so.
$(BIN)/python:
	@if ! $(PYTHON) -c "import ensurepip" >/dev/null 2>&1 && [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
		echo "Installing python3-venv (Debian) so that $(PYTHON) can create $(VENV)"; \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq python3-venv >/dev/null; \
	fi
	$(PYTHON) -m venv $(VENV) || { rm -rf $(VENV); echo "cannot create $(VENV); on Debian or Ubuntu: apt-get install python3-venv"; exit 1; }

# Reinstall only when the metadata changes, so a set-up tree is quick.
$(STAMP): setup.cfg pyproject.toml | $(BIN)/python
	$(BIN)/pip install -q -e ".[test,plot]"
	touch $(STAMP)

# Graphviz's `dot` renders the pictures; everything else works without it.
graphviz:
	@if command -v dot >/dev/null 2>&1; then :; \
	elif [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
		echo "Installing Graphviz (Debian package graphviz) for rendering pictures"; \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq graphviz >/dev/null \
		|| echo "Could not install graphviz; pictures will be written as .dot source"; \
	else \
		echo "Graphviz's dot is missing: pictures are written as .dot source. To render them: sudo apt-get install graphviz"; \
	fi

clean:
	rm -rf $(VENV) build *.egg-info
