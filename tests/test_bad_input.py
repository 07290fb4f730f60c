"""Bad input stops before any work with exit code 2 and one paragraph naming file, key and expectation."""

import os
import subprocess
import sys

import pytest

from popplast.cli.main import main
from tests.helpers import TINY_SPEC, write_spec, write_user_objective

BIN = os.path.join(os.path.dirname(sys.executable), "popplast")


def spec_with(old: str, new: str) -> str:
    assert old in TINY_SPEC
    return TINY_SPEC.replace(old, new)


CASES = {
    "malformed YAML": (spec_with("population: 4", "population: [4"), "not valid YAML (line"),
    "unknown top-level key": (TINY_SPEC + "budget: 3\n", "at budget: unknown key"),
    "unknown nested key": (spec_with("population: 4", "populaton: 4"), "at strategy.populaton: unknown key"),
    "unknown architecture": (
        spec_with("[lenet5, small_vgg]", "[lenet5, alexnet9]"),
        "at space.architecture.choices: unknown architecture 'alexnet9'",
    ),
    "unknown loss": (TINY_SPEC + "fixed: {loss: hinge}\n", "at fixed.loss: unknown loss 'hinge'"),
    "unknown optimizer": (
        spec_with("[adam, rmsprop]", "[adam, adamm]"),
        "at space.optimizer.choices: unknown optimizer 'adamm'",
    ),
    "low > high": (
        spec_with("low: 0.1, high: 3.0", "low: 5.0, high: 3.0"),
        "at space.lr_scale.low: expected low <= high, got low = 5.0 and high = 3.0",
    ),
    "empty choices": (spec_with("[adam, rmsprop]", "[]"), "at space.optimizer.choices: expected a non-empty list"),
    "missing image folder": (
        spec_with("{name: digits, split_seed: 0}", "{name: imagefolder, path: no/such/dir}"),
        "at dataset.path: expected an existing image folder",
    ),
    "unknown hyperparameter": (
        spec_with(
            "  crossover: {architecture: 0.0, optimizer: 0.0, lr_scale: 0.9}\n"
            "  mutation: {architecture: 0.4, optimizer: 0.4, lr_scale: 0.3}\n",
            "",
        )
        + "  dropout: {type: float, low: 0.0, high: 0.5}\n",
        "at space.dropout: unknown hyperparameter; expected one of: architecture, loss",
    ),
    "probability out of range": (
        spec_with("lr_scale: 0.9}", "lr_scale: 1.5}"),
        "at strategy.crossover.lr_scale: expected a probability in [0, 1], got 1.5",
    ),
    "probabilities missing a gene": (
        spec_with("optimizer: 0.0, lr_scale: 0.9", "optimizer: 0.0"),
        "at strategy.crossover.lr_scale: this key is required",
    ),
    "wrong type": (spec_with("population: 4", "population: four"), "at strategy.population: expected an integer"),
    "unknown data set": (
        spec_with("{name: digits, split_seed: 0}", "{name: letters}"),
        "at dataset.name: unknown data set 'letters'",
    ),
    "pretrained built-in": (
        TINY_SPEC + "fixed: {pretrained: true}\n",
        "at fixed.pretrained: the built-in architecture",
    ),
    "gensoup key for ga": (
        spec_with("population: 4", "population: 4\n  population_step: 1"),
        "at strategy.population_step: only gensoup takes population_step; this search's method is ga.",
    ),
    "unknown method": (spec_with("method: ga", "method: pso"), "at strategy.method: expected one of ga, gensoup"),
    "duplicate key": (
        spec_with("population: 4", "population: 4\n  population: 6"),
        "the key 'population' is written twice, on lines",
    ),
    "nan bound": (
        spec_with("low: 0.1, high: 3.0", "low: .nan, high: 3.0"),
        "at space.lr_scale.low: expected a finite number, got nan.",
    ),
    "infinite fixed value": (
        TINY_SPEC + "fixed: {weight_decay: .inf}\n",
        "at fixed.weight_decay: expected a finite number, got inf.",
    ),
    "negative seed": (spec_with("seed: 7", "seed: -1"), "at strategy.seed: expected an integer >= 0, got -1."),
    "negative split seed": (
        spec_with("split_seed: 0", "split_seed: -3"),
        "at dataset.split_seed: expected an integer >= 0, got -3.",
    ),
    "huge image": (
        spec_with("image_size: 8", "image_size: 1000000"),
        "at fidelity.image_size: expected at most 1024 pixels, got 1000000",
    ),
    "sigma for ga": (
        spec_with("population: 4", "population: 4\n  sigma: 0.1"),
        "at strategy.sigma: sigma is a setting of elitist, openai, snes; this search's method is ga",
    ),
    "learning rate for snes": (
        spec_with("method: ga", "method: snes\n  learning_rate: 0.1"),
        "at strategy.learning_rate: learning_rate is a setting of openai",
    ),
    "sigma not positive": (
        spec_with("method: ga", "method: elitist\n  sigma: 0"),
        "at strategy.sigma: expected a number > 0, got 0.",
    ),
    "odd openai population": (
        spec_with("method: ga\n  population: 4", "method: openai\n  population: 5"),
        "at strategy.population: openai samples antithetic pairs: expected an even population, got 5.",
    ),
    "alias loop": (
        "space: &a {x: *a}\n",
        "at space.x: an alias stands for a value that contains it (anchored on line 1)",
    ),
    "alias loop inside a value": (
        TINY_SPEC + "fixed: {head: &h [1, *h]}\n",
        "at fixed.head.1: an alias stands for a value that contains it",
    ),
    "nested too deeply": (
        TINY_SPEC + "fixed: {deep: " + "[" * 2000 + "]" * 2000 + "}\n",
        "it is nested too deeply for the YAML parser.",
    ),
}


def alias_bomb(levels: int = 10) -> str:
    """A billion laughs under `fixed`: each alias list repeats the one before 9 times (9**9 values at l9)."""
    lines = ["fixed:", "  l0: &l0 [lol]"]
    lines += [f"  l{i}: &l{i} [{', '.join([f'*l{i - 1}'] * 9)}]" for i in range(1, levels)]
    return TINY_SPEC + "\n".join(lines) + "\n"


@pytest.mark.parametrize("case", sorted(CASES))
def test_bad_file(case, tmp_path, capsys):
    text, expected = CASES[case]
    path = write_spec(tmp_path, text)
    code = main(["run", str(path), "--executor", "local", "--tracking-uri", f"sqlite:///{tmp_path}/m.db"])
    err = capsys.readouterr().err
    assert code == 2
    assert err.startswith(f"popplast: error: Invalid search specification in {path}")
    assert expected in err
    assert "Traceback" not in err and err.count("\n") == 1
    assert not (tmp_path / "m.db").exists(), "nothing may start before the input is checked"


def test_a_binary_file_is_one_line_not_a_traceback(tmp_path, capsys):
    path = tmp_path / "model.yaml"
    path.write_bytes(bytes(range(256)) * 4)
    assert main(["run", str(path)]) == 2
    err = capsys.readouterr().err
    assert "expected a YAML text file (UTF-8)" in err and "Traceback" not in err and len(err.splitlines()) == 1


def test_missing_file(tmp_path, capsys):
    assert main(["run", str(tmp_path / "nope.yaml")]) == 2
    assert "nope.yaml: the file does not exist." in capsys.readouterr().err


@pytest.mark.parametrize(
    "flags, expected",
    [
        (["--population", "1"], "Invalid option --population: expected an integer >= 2, got 1."),
        (["--workers", "0"], "Invalid option --workers: expected an integer >= 1, got 0."),
        (["--cpus-per-worker", "inf"], "Invalid option --cpus-per-worker: expected a finite number > 0, got inf."),
        (["--budget-evals", "10000000000"], "Invalid option --budget-evals: expected an integer from 1 to 10,000,000"),
        (["--image-size", "5000"], "Invalid option --image-size: expected at most 1024 pixels, got 5000"),
        (["--method", "openai", "--population", "5"], "Invalid option --population: openai samples antithetic pairs"),
        (["--cpus-per-worker", "0"], "Invalid option --cpus-per-worker: expected a finite number > 0, got 0.0"),
        (["--tracking-uri", "nosuch://x"], "Invalid option --tracking-uri: cannot open the MLflow tracking store"),
    ],
)
def test_bad_flag(flags, expected, tiny_spec, tmp_path, capsys):
    assert (
        main(["run", str(tiny_spec), "--executor", "local", "--tracking-uri", f"sqlite:///{tmp_path}/m.db", *flags])
        == 2
    )
    assert expected in capsys.readouterr().err


def test_an_mlflow_server_that_does_not_answer_fails_in_seconds(tiny_spec, tmp_path):
    """Without the check, MLflow's client retries an address nobody listens on for minutes (the Ray address
    has its own test in test_search.py)."""
    args = [BIN, "run", str(tiny_spec), "--tracking-uri", "http://127.0.0.1:9"]
    out = subprocess.run(args, capture_output=True, text=True, cwd=tmp_path, timeout=120)
    assert out.returncode == 2 and "Traceback" not in out.stderr
    assert "Invalid option --tracking-uri: no MLflow server answers at http://127.0.0.1:9" in out.stderr


def test_a_cluster_without_the_gpus_asked_for(ray_address, tiny_spec, tmp_path, capsys):
    code = main(
        [
            "run",
            str(tiny_spec),
            "--gpus-per-worker",
            "1",
            "--workers",
            "2",
            "--tracking-uri",
            f"sqlite:///{tmp_path}/m.db",
        ]
    )
    err = capsys.readouterr().err
    assert code == 2 and "2 workers × --gpus-per-worker 1 need 2 GPUs, but the Ray cluster has 0" in err


def test_console_script_exit_code_and_message(tmp_path):
    path = write_spec(tmp_path, CASES["low > high"][0])
    out = subprocess.run([BIN, "run", str(path)], capture_output=True, text=True, cwd=tmp_path)
    assert out.returncode == 2
    assert CASES["low > high"][1] in out.stderr and "Traceback" not in out.stderr


def test_an_alias_bomb_is_refused_at_once_not_expanded(tmp_path):
    """Ten lines that expand to billions of values: refused while composing (the limit), in seconds; a timeout
    here means they were walked."""
    path = write_spec(tmp_path, alias_bomb())
    args = [BIN, "run", str(path), "--tracking-uri", f"sqlite:///{tmp_path}/m.db"]
    out = subprocess.run(args, capture_output=True, text=True, cwd=tmp_path, timeout=60)
    assert out.returncode == 2 and "Traceback" not in out.stderr and len(out.stderr.splitlines()) == 1
    assert f"Invalid search specification in {path}, at fixed.l5: its aliases expand to more than 100,000" in out.stderr
    assert not (tmp_path / "m.db").exists()


def test_record_table_reads_params_with_the_same_loader():
    """A param's text is read back by popplast's one YAML loader: a loop stays text, not a list that contains
    itself (which the table's JSON cannot hold)."""
    from popplast.reports.record_table import param_value as _value

    assert _value("&a [1, *a]") == "&a [1, *a]"
    assert _value("[1, {a: 2}]") == [1, {"a": 2}] and _value("0.5") == 0.5


# each: what is appended to the file (or an (old, new) replacement in it), and what the error says
USER_CASES = {
    "date in fixed": (
        "fixed: {start: 2024-01-01}\n",
        "at fixed.start: expected a value JSON holds as it is (text, a number, true or false, null, a list, or a "
        "mapping with text keys), got date (datetime.date(2024, 1, 1)).",
    ),
    "set in fixed": ("fixed: {groups: !!set {a, b}}\n", "at fixed.groups: expected a value JSON holds as it is"),
    "bytes in fixed": ("fixed: {blob: !!binary aGVsbG8=}\n", "at fixed.blob: expected a value JSON holds as it is"),
    "number key inside a fixed value": (
        "fixed: {weights: {0: 1.0, 1: 2.0}}\n",
        "at fixed.weights.0: expected a value JSON holds as it is (text, a number, true or false, null, a list, or "
        "a mapping with text keys), got the int key 0 (write it in quotes).",
    ),
    "gene name MLflow refuses": (
        "  lr(x): {type: float, low: 0.1, high: 1.0}\n",
        "at space.lr(x): 'lr(x)' is no name MLflow takes: names may only contain letters, digits, underscores, "
        "dashes, periods, spaces, colons (:) and slashes (/).",
    ),
    "gene name written as a number": (
        "  1: {type: float, low: 0.1, high: 1.0}\n",
        "at space.1: 1 is no name MLflow takes: a name is text, got int 1 (write it in quotes).",
    ),
    "fixed key written as a number": (
        "fixed: {1: 2}\n",
        "at fixed.1: 1 is no name MLflow takes: a name is text, got int 1 (write it in quotes).",
    ),
    "fixed name MLflow reads as another path": (
        "fixed: {a//b: 2}\n",
        "at fixed.a//b: 'a//b' is no name MLflow takes: it reads names as file paths",
    ),
    "fitness metric MLflow refuses": (
        ("metric: loss", "metric: acc(%)"),
        "at fitness.metric: 'acc(%)' is no name MLflow takes",
    ),
    "several objectives with a method that ranks by one number": (
        [
            ("fitness: {metric: loss, mode: minimize}", "fitness: [{metric: loss, mode: minimize}, {metric: w0}]"),
            ("method: ga", "method: cmaes"),
        ],
        "at fitness: cmaes ranks individuals by one number; several objectives or constraints go with ga, gensoup, "
        "pbt, tpe, gp, random, nsga2, and a strategy of your own that declares several = True.",
    ),
    "an objective listed twice": (
        ("fitness: {metric: loss, mode: minimize}", "fitness: [{metric: loss}, {metric: loss, mode: minimize}]"),
        "at fitness[1].metric: 'loss' is listed twice.",
    ),
    "an objective's bad mode": (
        ("fitness: {metric: loss, mode: minimize}", "fitness: [{metric: loss}, {metric: w0, mode: down}]"),
        "at fitness[1].mode: expected maximize or minimize, got str 'down'.",
    ),
    "a reference point with a value missing": (
        ("fitness: {metric: loss, mode: minimize}", "fitness: [{metric: loss, reference: 2}, {metric: w0}]"),
        "at fitness[1].reference: a reference point has a value for every objective or none.",
    ),
    "a constraint that is no inequality": (
        "constraints: ['w0 < 1']\n",
        "at constraints[0]: expected 'METRIC <= NUMBER' or 'METRIC >= NUMBER', got str 'w0 < 1'.",
    ),
    "a constraint bound that is no number": (
        "constraints: ['w0 <= one']\n",
        "at constraints[0]: expected 'METRIC <= NUMBER' or 'METRIC >= NUMBER', got str 'w0 <= one'.",
    ),
    "the median rule with several objectives": (
        "constraints: ['w0 <= 1']\nstopper: median\n",
        "at stopper: median judges one metric; with several objectives or constraints the stopper is asha",
    ),
    "date among the choices": (
        "  z: {type: categorical, choices: [1, 2024-01-01]}\n",
        "at space.z.choices.1: expected a value JSON holds as it is",
    ),
}


@pytest.mark.parametrize("case", sorted(USER_CASES))
def test_bad_file_with_a_users_objective(case, tmp_path, capsys):
    """What a user's objective may take that popplast's CNN trainer's table of names already refuses; the
    file's objective exists, so only the file's own problem can stop the search."""
    edit, expected = USER_CASES[case]
    path = write_user_objective(tmp_path / "project")
    text = path.read_text()
    if isinstance(edit, list):  # several replacements
        for pair in edit:
            text = text.replace(*pair)
    path.write_text(text.replace(*edit) if isinstance(edit, tuple) else text if isinstance(edit, list) else text + edit)
    code = main(["run", str(path), "--executor", "local", "--tracking-uri", f"sqlite:///{tmp_path}/m.db"])
    err = capsys.readouterr().err
    assert code == 2 and err.startswith(f"popplast: error: Invalid search specification in {path}, at ")
    assert expected in err
    assert "Traceback" not in err and err.count("\n") == 1
    assert not (tmp_path / "m.db").exists(), "nothing may start before the input is checked"


def test_every_error_a_user_sees_is_a_popplast_error_and_the_cli_has_one_handler_for_them():
    """Issue 32: one base error; the CLI prints any of them as one line with its exit code, in one place."""
    import ast
    import inspect

    import popplast.cli.main as cli
    from popplast.errors import PopplastError, SearchFailed, SpecError
    from popplast.execution.ray_session import ClusterError
    from popplast.reports.comparison import ComparisonError
    from popplast.reports.lineage import LineageError
    from popplast.tracking.journal import JournalBusy
    from popplast.tracking.journal_sync import SyncError
    from popplast.tracking.lease import LeaseLost

    seen = (SpecError, ClusterError, SearchFailed, ComparisonError, JournalBusy, SyncError, LeaseLost, LineageError)
    assert all(issubclass(kind, PopplastError) for kind in seen)
    handlers = [n for n in ast.walk(ast.parse(inspect.getsource(cli))) if isinstance(n, ast.ExceptHandler)]
    caught = [ast.unparse(h.type) for h in handlers if h.type is not None]
    assert caught.count("PopplastError") == 1
    assert [c for c in caught if "Error" in c and c != "PopplastError"] == [], caught
