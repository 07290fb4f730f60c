# make demo: a real GA search on digits (local Ray instance, MLflow store ./mlflow.db).
# make test: the test suite but its slow tier; make test-cluster: that tier (real `ray start` clusters, MLflow
# outages and locks, several drivers, the long fault schedules, Ray against local for every method: the
# README's Development section lists it and gives both durations). CI runs both.
# All of them create .venv and install everything on a fresh machine first.
# make lint: ruff (lint and format) over the code, mypy over the core, the objectives and the execution layer (pyproject.toml).
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
# The stamp records what was installed; it is remade when the dependencies change.
STAMP := $(VENV)/.installed

.PHONY: demo test test-cluster lint bench bench-scale install browser slurm clean

install: $(STAMP)

$(STAMP): pyproject.toml constraints.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -c constraints.txt -e '.[test]'
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/popplast run search_spaces/digits_gencnn.yaml --workers 2

test: $(STAMP) browser
	$(BIN)/python -m pytest -q -m "not cluster" --durations=15 $(PYTEST_ARGS)

test-cluster: $(STAMP) slurm
	$(BIN)/python -m pytest -q -m cluster --durations=15 $(PYTEST_ARGS)

LINTED := popplast tests benchmarks examples

lint: $(STAMP)
	$(BIN)/ruff check $(LINTED)
	$(BIN)/ruff format --check $(LINTED)
	$(BIN)/mypy

# The browser test drives Debian's chromium (no browser download); installed here when we are root.
browser:
	@command -v chromium >/dev/null 2>&1 || { \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; \
	  else echo "chromium is not installed and this is not root: the browser test will be skipped"; fi; }

# The SLURM tests start a real slurmctld, three slurmd and munged on this machine (tests/slurm_cluster.py):
# Debian's slurm-wlm and munge, installed here when we are root (the tests skip, saying why, otherwise).
slurm:
	@{ test -x /usr/sbin/slurmctld && test -x /usr/sbin/munged; } || { \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq slurm-wlm munge >/dev/null; \
	  else echo "slurm-wlm and munge are not installed and this is not root: the SLURM tests will be skipped"; fi; }

# The CPU benchmarks (docs/benchmarks.md), ratios first; about 7 minutes on 2 cores.
bench: $(STAMP)
	$(BIN)/python benchmarks/cpu_set.py

# The driver's throughput and memory at scale and the simulated cluster (docs/benchmarks.md); about 30 minutes.
bench-scale: $(STAMP)
	$(BIN)/python benchmarks/scale_set.py

clean:
	rm -rf $(VENV) mlflow.db mlflow-artifacts mlruns mlartifacts popplast-journal .pytest_cache
