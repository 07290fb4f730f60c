# make demo: a real GA search on digits (local Ray instance, MLflow store ./mlflow.db).
# make test: the test suite. Both create .venv and install everything on a fresh machine first.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
# The stamp records what was installed; it is remade when the dependencies change.
STAMP := $(VENV)/.installed

.PHONY: demo test install clean

install: $(STAMP)

$(STAMP): pyproject.toml constraints.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -c constraints.txt -e '.[test]'
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/popplast run search_spaces/digits_gencnn.yaml --workers 2

test: $(STAMP)
	$(BIN)/python -m pytest -q $(PYTEST_ARGS)

clean:
	rm -rf $(VENV) mlflow.db mlruns mlartifacts .pytest_cache
