# mibench — `make run` runs the default benchmark suite, `make test` the test suite.
# Both bootstrap .venv on a fresh machine first.

VENV   ?= .venv
PY     := $(VENV)/bin/python
PIP    := $(PY) -m pip
STAMP  := $(VENV)/.installed
PYTEST_ARGS ?=

.PHONY: run test install lint bench clean-venv

install: $(STAMP)

$(STAMP): pyproject.toml Makefile
	python3 -m venv $(VENV)
	# Exactly these builds: they are served from this machine's disk (a plain `torch` would pull
	# a several-GB build from the network).
	$(PIP) install torch==2.14.1 torchvision==0.29.1
	$(PIP) install -e '.[dev]' pytorch-fid==0.3.0 requests
	# facenet-pytorch 2.6.0 declares torch<2.3 and numpy<2, but works with torch 2.14 / numpy 2:
	# --no-deps keeps pip from downgrading torch and numpy (requests, its only other need, is above).
	$(PIP) install --no-deps facenet-pytorch==2.6.0
	touch $(STAMP)

run: $(STAMP)
	$(VENV)/bin/mibench run

test: $(STAMP)
	$(PY) -m pytest $(PYTEST_ARGS)

lint: $(STAMP)
	$(VENV)/bin/ruff check mibench tests benchmarks

bench: $(STAMP)
	$(PY) benchmarks/render_synthfaces.py
	$(PY) benchmarks/attack_throughput.py

clean-venv:
	rm -rf $(VENV)
