"""Search files generated from a valid one by mutation (hypothesis): each either runs a tiny search or exits
2 with one line naming what is wrong, and then with no traceback and no MLflow store left behind."""

from __future__ import annotations

import contextlib
import copy
import io
import tempfile
from pathlib import Path

import yaml
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from popplast.cli.main import main

VALID = {
    "dataset": {"name": "digits", "split_seed": 0},
    "fidelity": {"image_size": 8, "epochs": 1, "batch_size": 64, "max_train_samples": 100},
    "strategy": {"method": "ga", "population": 2, "generations": 1, "seed": 3, "crossover": 0.5, "mutation": 0.2},
    "space": {
        "architecture": {"type": "categorical", "choices": ["lenet5", "small_vgg"]},
        "lr_scale": {"type": "float", "low": 0.1, "high": 3.0, "log": True},
    },
}

# where a mutation lands: every key of the valid file, and a few it does not have
PATHS = [(section, key) for section, values in VALID.items() if isinstance(values, dict) for key in values] + [
    (None, "dataset"),
    (None, "fixed"),
    (None, "unknown"),
    ("strategy", "sigma"),
    ("fidelity", "scheduler"),
]
VALUES = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(10**12), max_value=10**12),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=12),
    st.lists(st.integers(min_value=-3, max_value=3), max_size=3),
    st.dictionaries(st.sampled_from(["type", "low", "high", "choices", "name"]), st.integers(-2, 5), max_size=2),
    st.sampled_from(["ga", "gensoup", "tpe", "cifar10", "float", "int", "lenet5", "cosine", "imagefolder"]),
)
# keys whose large values are valid and make the search large (fidelity.epochs = 1,000,000,001 once trained
# for as long as CI lasts): small integers, either side of their minimum, for them; any value for the rest
SIZES = {("fidelity", k) for k in ("epochs", "batch_size", "image_size", "max_train_samples")} | {
    ("strategy", k) for k in ("population", "generations")
}
SMALL = st.one_of(VALUES.filter(lambda v: not isinstance(v, int) or isinstance(v, bool)), st.integers(-3, 6))
MUTATION = st.one_of(
    st.tuples(st.sampled_from([p for p in PATHS if p not in SIZES]), st.one_of(VALUES, st.just("<delete>"))),
    st.tuples(st.sampled_from(sorted(SIZES)), st.one_of(SMALL, st.just("<delete>"))),
)


def mutated(mutations) -> dict:
    data = copy.deepcopy(VALID)
    for (section, key), value in mutations:
        target = data if section is None else data.setdefault(section, {})
        if not isinstance(target, dict):
            continue
        if value == "<delete>":
            target.pop(key, None)
        else:
            target[key] = value
    return data


# no example database: a test leaves nothing in the working tree (.hypothesis/)
@settings(max_examples=40, deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(MUTATION, min_size=1, max_size=3))
def test_a_mutated_file_runs_or_is_one_line_and_exit_2(mutations):
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        path = folder / "search.yaml"
        data = mutated(mutations)
        text = yaml.safe_dump(data) if _dumpable(data) else "strategy: [unclosed\n"
        path.write_text(text)
        store = folder / "m.db"
        err = io.StringIO()
        with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
            code = main(["run", str(path), "--executor", "local", "--tracking-uri", f"sqlite:///{store}", "--quiet"])
        event(f"exit {code}")
        lines = [line for line in err.getvalue().splitlines() if line.startswith("popplast:")]
        assert "Traceback" not in err.getvalue(), (text, err.getvalue())
        if code == 2:
            assert len(lines) == 1 and lines[0].startswith("popplast: error: "), (text, err.getvalue())
            assert not store.exists(), f"bad input left an MLflow store: {text}"
        else:  # a search ran: all its evaluations may have failed (exit 1), and it says so in one line
            assert code in (0, 1), (code, text, err.getvalue())


def _dumpable(data) -> bool:
    """Whether YAML can write the mutated file (else the test writes a file that is not valid YAML)."""
    try:
        yaml.safe_dump(data)
    except yaml.YAMLError:
        return False
    return True
