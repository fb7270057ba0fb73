# The two commands a newcomer needs: `make run` and `make test`.
# Both set themselves up on a fresh machine: a .venv with the package, and the
# Debian packages the tests use (installed with apt-get only when missing).
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
DEBIAN_PACKAGES := prometheus prometheus-alertmanager
# apt-get needs root: as anyone else, go through sudo.
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
TEST_ARGS ?=
SERVE_ARGS ?=

.PHONY: run test lint install system-deps bench clean

run: $(STAMP)
	$(BIN)/recovery serve $(SERVE_ARGS)

test: $(STAMP) system-deps
	$(BIN)/ruff check engine webhook tests bench
	$(BIN)/python -m pytest $(TEST_ARGS)

lint: $(STAMP)
	$(BIN)/ruff check engine webhook tests bench

install: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e '.[test,chromadb]'
	touch $(STAMP)

system-deps:
	@missing=""; for p in $(DEBIAN_PACKAGES); do \
	  dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then \
	  echo "installing Debian packages:$$missing"; \
	  $(SUDO) apt-get update -qq && \
	  $(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $$missing; \
	fi

bench: $(STAMP)
	for b in bench/*.py; do $(BIN)/python $$b || exit 1; done

clean:
	rm -rf $(VENV) var .pytest_cache .ruff_cache
