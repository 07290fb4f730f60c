"""popplast's copy of MLflow's name rule (core/names.py: the core imports no MLflow) against MLflow's own
validator, on names built from the characters either side of the rule."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st
from mlflow.exceptions import MlflowException
from mlflow.utils.validation import _validate_metric, _validate_param, _validate_tag

from popplast.core.names import MAX_LENGTH, name_problem

PIECES = list("aZ09_-. :/") + ["é", "ß", "(", ")", "%", "\\", "*", "\t", "\n", "..", "//", "./", "/.", "λ", "\x00"]
NAMES = (
    st.lists(st.sampled_from(PIECES), max_size=12).map("".join)
    | st.text(max_size=16)
    | st.integers(MAX_LENGTH - 3, MAX_LENGTH + 3).map(lambda n: "x" * n)
)


def mlflow_takes(name: str) -> bool:
    """As a param, a metric and a tag name (MLflow checks each the same way, the param and metric with the
    length limit too)."""
    try:
        _validate_param(name, "v")
        _validate_metric(name, 1.0, 0, 0)
        _validate_tag(name, "v")
    except MlflowException:
        return False
    return True


# no example database: a test leaves nothing in the working tree (.hypothesis/)
@settings(max_examples=3000, deadline=None, database=None)
@given(NAMES)
def test_popplast_takes_a_name_when_mlflow_does(name):
    ours = name_problem(name) is None
    if name.endswith("\n"):  # MLflow's pattern ends in `$`, which lets one trailing newline by; we refuse it
        assert not ours
    else:
        assert ours == mlflow_takes(name), (name, name_problem(name))


def test_the_names_of_the_issue():
    for name in ("lr(x)", "acc(%)", "", "a//b", "/abs", "../up", "a/", "x" * (MAX_LENGTH + 1)):
        assert name_problem(name) is not None and not mlflow_takes(name), name
    for name in ("lr", "a b", "val/acc", "step:1", "x" * MAX_LENGTH):
        assert name_problem(name) is None and mlflow_takes(name), name
    assert name_problem("x" * (MAX_LENGTH - 4), "gene.") is not None  # gene.NAME is past the limit
