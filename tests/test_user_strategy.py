"""A user's own strategy, written in a folder outside the package and named in a search file, runs like a
built-in method: popplast.testing's suite, 2 Ray workers with a stopper, a comparison beside ga and tpe, a
killed driver resumed to the uninterrupted lineage, an instance passed from Python; and what is wrong with
one is a one-line error naming the key."""

from __future__ import annotations

import dataclasses
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from mlflow import MlflowClient

import popplast
from popplast.core.loading import load_attribute
from popplast.errors import SpecError
from popplast.testing import check_strategy
from tests.helpers import individuals, lineage

pytestmark = pytest.mark.slow
EXAMPLE = Path(__file__).resolve().parent.parent / "examples" / "moons_mlp"
BIN = os.path.join(os.path.dirname(sys.executable), "popplast")
NAME = "user_de_strategy:DifferentialEvolution"  # a module name nothing else in the test process imports


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    """The example as a user's own files: the strategy under another module name, its objective, its file."""
    where = tmp_path / "mine"
    where.mkdir()
    shutil.copy(EXAMPLE / "de.py", where / "user_de_strategy.py")
    shutil.copy(EXAMPLE / "moons.py", where / "moons.py")
    text = (EXAMPLE / "moons_de.yaml").read_text().replace("de:DifferentialEvolution", NAME)
    (where / "search.yaml").write_text(text)
    return where


def _cli(args: list[str], cwd: Path, ray_address: str) -> subprocess.Popen:
    env = {**os.environ, "RAY_ADDRESS": ray_address}
    return subprocess.Popen([BIN, *args], cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def _search_id(out: str) -> str:
    return out.split("MLflow: search run ")[1].split(",")[0]


def test_it_passes_the_suite_and_runs_on_two_ray_workers_with_a_stopper(folder, ray_address):
    strategy = load_attribute(NAME, str(folder))
    check_strategy(lambda: strategy(n_genes=2, population=6), n_genes=2, population=6)
    uri = f"sqlite:///{folder / 'm.db'}"
    args = ["run", "search.yaml", "--workers", "2", "--address", ray_address, "--tracking-uri", uri, "--quiet"]
    proc = _cli([*args, "--generations", "3"], folder, ray_address)
    out, _ = proc.communicate(timeout=300)
    assert proc.returncode == 0, out
    rows = individuals(uri, _search_id(out))
    assert len(rows) == 24 and {r["method"] for r in rows} == {NAME}
    assert {r["status"] for r in rows} == {"ok", "stopped"}  # the median rule stopped some, not all
    later = [r for r in rows if r["generation"] > 0]
    assert later and all(r["operator"] == "crossover+mutation" and len(r["parents"]) == 4 for r in later)
    assert len({r["run_id"] for r in rows}) == 24 and all(len(r["parent_runs"]) == 4 for r in later)
    search = MlflowClient(uri).get_run(_search_id(out))
    assert search.data.params["method"] == NAME and search.data.params["strategy.F"] == "0.7"


@pytest.mark.cluster  # the slow tier (make test-cluster): three searches
def test_it_is_compared_beside_ga_and_tpe(folder, ray_address):
    uri = f"sqlite:///{folder / 'm.db'}"
    result = popplast.compare(
        folder / "search.yaml",
        methods=f"{NAME},ga,tpe",
        budget_evals=16,
        seeds=1,
        workers=2,
        address=ray_address,
        tracking_uri=uri,
        optuna_storage=f"sqlite:///{folder / 'o.db'}",
        out=str(folder / "report"),
        progress=False,
    )
    assert result.cells_run == 3 and not result.failed_cells
    report = (folder / "report" / "report.md").read_text()
    for method in (NAME, "ga", "tpe"):
        assert f"| {method} |" in report


@pytest.mark.cluster  # the slow tier (make test-cluster): a killed driver, as tests/test_faults.py's
def test_killed_mid_search_and_resumed_it_gives_the_uninterrupted_lineage(folder, ray_address):
    # no stopper here: which individuals the median rule stops depends on the order results arrive
    flags = ["--stopper", "none", "--generations", "4", "--epochs", "8", "--workers", "2", "--quiet"]
    reference_uri = f"sqlite:///{folder / 'reference.db'}"
    reference = _cli(["run", "search.yaml", *flags, "--tracking-uri", reference_uri], folder, ray_address)
    out, _ = reference.communicate(timeout=300)
    assert reference.returncode == 0, out
    expected = individuals(reference_uri, _search_id(out))

    uri = f"sqlite:///{folder / 'm.db'}"
    proc = _cli(["run", "search.yaml", *flags, "--tracking-uri", uri], folder, ray_address)
    client = MlflowClient(uri)
    run = _wait(lambda: _search_run(client))
    _wait(lambda: any(f.path.endswith("state-g0001.json") for f in client.list_artifacts(run, "checkpoint")))
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert client.get_run(run).info.status == "RUNNING"  # killed before its end
    resumed = _cli(["run", "--resume", run, "--workers", "2", "--tracking-uri", uri, "--quiet"], folder, ray_address)
    out, _ = resumed.communicate(timeout=300)
    assert resumed.returncode == 0, out
    got = individuals(uri, run)
    assert lineage(got) == lineage(expected) and len(got) == 32
    assert [r["fitness"] for r in got] == [r["fitness"] for r in expected]


def test_an_instance_passed_from_python_is_recorded_and_resumed_by_its_settings(folder, tracking_uri):
    strategy = load_attribute(NAME, str(folder))
    spec = folder / "search.yaml"
    options = dict(executor="local", tracking_uri=tracking_uri, progress=False, stopper="none")
    first = popplast.run(spec, strategy=strategy(n_genes=2, population=4, F=0.5), generations=2, **options)
    assert first.evaluations == 8
    params = MlflowClient(tracking_uri).get_run(first.search_run_id).data.params
    assert (params["method"], params["population"], params["strategy.F"], params["strategy.CR"]) == (
        NAME,
        "4",
        "0.5",
        "0.9",
    )
    with pytest.raises(SpecError, match=r"was started with strategy.F = 0.5, but the flags say 0.6"):
        popplast.run(
            resume=first.search_run_id, strategy=strategy(n_genes=2, population=4, F=0.6), generations=3, **options
        )
    again = strategy(n_genes=2, population=4, F=0.5)  # given again with its file: the search it started
    longer = popplast.run(spec, resume=first.search_run_id, strategy=again, generations=3, **options)
    assert longer.evaluations == 12
    longest = popplast.run(resume=first.search_run_id, generations=4, **options)  # the class found by its name
    assert longest.evaluations == 16
    with pytest.raises(SpecError, match="option strategy: a strategy passed from Python .* make Plain a dataclass"):
        popplast.run(spec, strategy=Plain(), **options)
    with pytest.raises(SpecError, match="Local is defined in a function, where a resumed search cannot import it"):

        @dataclasses.dataclass(frozen=True)
        class Local(strategy):
            pass

        popplast.run(spec, strategy=Local(n_genes=2, population=4), **options)


class Plain:
    """Not a dataclass: its settings cannot be read back."""


DE = load_attribute("de:DifferentialEvolution", str(EXAMPLE))


@dataclasses.dataclass(frozen=True)
class WithTuple(DE):
    weights: tuple = (0.1, 0.9)  # JSON gives a list back


@dataclasses.dataclass(frozen=True)
class WithSeed(DE):
    seed: int = 0  # the search's own key


@dataclasses.dataclass(frozen=True)
class CapabilityField(DE):
    stoppable: bool = True  # a field, so an instance could say otherwise than the class


class NoInherits:
    init = ask = tell = state_from_dict = print


class Async(DE):
    schedule = "async"


@pytest.mark.parametrize(
    "strategy, message",
    [
        (WithTuple(n_genes=2, population=4), "is not the strategy passed .*a tuple comes back a list"),
        (WithSeed(n_genes=2, population=4), "has a field 'seed', a key of the search's own"),
        (CapabilityField(n_genes=2, population=4), "stoppable is a dataclass field; a capability is a class attribute"),
        (DE(n_genes=3, population=4), "made for 3 genes; the search space has 2"),
        (Async(n_genes=2, population=4), "schedule is 'async'; a strategy of your own runs generational"),
    ],
)
def test_an_instance_that_cannot_be_recorded_as_it_is_is_refused(strategy, message):
    from popplast.core.loading import LoadError
    from popplast.strategies.user_strategy import described, entry_of

    with pytest.raises(LoadError, match=message):
        described(strategy, 2)
    with pytest.raises(LoadError, match="does not say whether children inherit trained states"):
        entry_of("x:NoInherits", NoInherits)


@pytest.mark.parametrize(
    "strategy, key, message",
    [
        ("{method: nowhere_module:DE}", "strategy.method", "cannot import 'nowhere_module'"),
        ("{method: 'user_de_strategy:Nothing'}", "strategy.method", "has no 'Nothing'"),
        ("{method: 'user_de_strategy:DEState'}", "strategy.method", "is no Strategy .*: it has no init, ask, tell"),
        (f"{{method: '{NAME}', G: 3}}", "strategy.G", "takes no setting 'G' \\(its settings: F, CR\\)"),
        (f"{{method: '{NAME}', F: 5}}", "strategy.method", "refused its settings .*F must lie in \\(0, 2\\]"),
        (f"{{method: '{NAME}', schedule: async}}", "strategy.schedule", "a strategy of your own runs generational"),
        (f"{{method: '{NAME}', population: 3}}", "strategy.method", "population >= 4"),
    ],
)
def test_a_bad_strategy_is_a_one_line_error_naming_the_key(folder, strategy, key, message):
    text = (folder / "search.yaml").read_text()
    start = text.index("\nstrategy:")
    end = text.index("\nstopper:")
    (folder / "search.yaml").write_text(text[:start] + f"\nstrategy: {strategy}" + text[end:])
    with pytest.raises(SpecError, match=f"at {key}: .*{message}"):
        popplast.run(folder / "search.yaml", executor="local", progress=False)
    done = subprocess.run([BIN, "run", "search.yaml"], cwd=folder, capture_output=True, text=True, timeout=120)
    assert done.returncode == 2 and len(done.stderr.strip().splitlines()) == 1 and "Traceback" not in done.stderr


def test_a_stopper_is_refused_for_a_strategy_that_does_not_take_stopped_results(folder):
    (folder / "nostop.py").write_text(
        "from user_de_strategy import DifferentialEvolution\n\n\nclass NoStop(DifferentialEvolution):\n"
        "    stoppable = False\n"
    )
    spec = folder / "search.yaml"
    spec.write_text(spec.read_text().replace(f"method: {NAME}", "method: nostop:NoStop"))
    with pytest.raises(SpecError, match="at stopper: nostop:NoStop cannot stop .* declares stoppable = True"):
        popplast.run(spec, executor="local", progress=False)


def test_a_comparison_names_its_methods_flag_for_a_strategy_it_cannot_import(folder, tmp_path):
    with pytest.raises(SpecError, match="Invalid option --methods: nowhere_module:X: cannot import 'nowhere_module'"):
        popplast.compare(
            folder / "search.yaml",
            methods="ga,nowhere_module:X",
            executor="local",
            tracking_uri=f"sqlite:///{tmp_path / 'c.db'}",
            progress=False,
        )
    assert not (tmp_path / "c.db").exists()  # refused before anything was created


def _search_run(client: MlflowClient) -> str | None:
    found = client.get_experiment_by_name("search")
    runs = client.search_runs([found.experiment_id], "tags.`popplast.role` = 'search'") if found else []
    return runs[0].info.run_id if runs else None


def _wait(condition, timeout: float = 120):
    import time

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = condition()
        if found:
            return found
        time.sleep(0.05)
    raise AssertionError("timed out waiting")
