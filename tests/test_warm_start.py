"""Warm starts (`warm_start:`, `--warm-start`): the first generation (the first trials) holds the source
search's best configurations, one per configuration and best first, for the GA, Gen-Soup, the steady-state GA
and TPE; Gen-Soup's warm individuals start from the source's trained states (their hashes match); a sampler
replayed from its state asks the same trials again; `compare` warm-starts every method from one source; a bad
source, a method that cannot start warm and a configuration off the space are one line with exit 2."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest
from mlflow import MlflowClient

import popplast
from popplast.errors import SpecError
from popplast.integrations.suites import import_suites
from popplast.spec.search import SearchSpec
from popplast.strategies.build import build_strategy, with_warm_start
from tests.helpers import individuals, write_spec

BIN = os.path.join(os.path.dirname(sys.executable), "popplast")
GENES = [f"Op{i}" for i in range(6)]


@pytest.fixture(scope="module")
def task(tmp_path_factory):
    [files] = import_suites(["nasbench201/cifar10"], str(tmp_path_factory.mktemp("suites")), progress=False)
    return files


def options(tmp_path, **more):
    return {
        "executor": "simulated",
        "tracking_uri": f"sqlite:///{tmp_path / 'm.db'}",
        "optuna_storage": f"sqlite:///{tmp_path / 'optuna.db'}",
        "progress": False,
        "population": 6,
        "generations": 3,
        **more,
    }


def best_configs(uri, result, k):
    """The source's k best configurations, best first, one per configuration (ties: the earlier individual)."""
    rows = sorted(individuals(uri, result.search_run_id), key=lambda r: (-r["fitness"], r["id"]))
    client, chosen = MlflowClient(uri), []
    for r in rows:
        params = client.get_run(r["run_id"]).data.params
        config = [params[g] for g in GENES]
        if config not in [c for _, c in chosen]:
            chosen.append((r["id"], config))
    return chosen[:k]


def first_generation(uri, search_run_id):
    client = MlflowClient(uri)
    rows = [r for r in individuals(uri, search_run_id) if r["generation"] == 0]
    return [(r["operator"], [client.get_run(r["run_id"]).data.params[g] for g in GENES]) for r in rows]


@pytest.mark.parametrize("method, schedule", [("ga", None), ("gensoup", None), ("ga", "async"), ("tpe", None)])
def test_the_first_generation_holds_the_sources_best_configurations(task, tmp_path, method, schedule):
    o = options(tmp_path)
    source = popplast.run(task.search_file, method="ga", **o)
    warm = popplast.run(
        task.search_file, method=method, schedule=schedule, seed=7, warm_start=source.search_run_id, **o
    )
    best = best_configs(o["tracking_uri"], source, 3)  # half the population of 6
    first = first_generation(o["tracking_uri"], warm.search_run_id)
    assert first[:3] == [("warm", config) for _, config in best]
    assert all(operator != "warm" for operator, _ in first[3:])
    recorded = MlflowClient(o["tracking_uri"]).get_run(warm.search_run_id).data.params["warm_start"]
    assert recorded == ",".join(f"{source.search_run_id}/{i}" for i, _ in best)


def test_a_list_of_configurations_starts_the_search(task, tmp_path):
    text = open(task.search_file).read().replace("suite_table: cifar10.npz", f"suite_table: {task.table}")
    configs = [
        {g: c for g, c in zip(GENES, ["nor_conv_3x3"] * 6)},
        {g: c for g, c in zip(GENES, ["skip_connect"] * 6)},
    ]
    text += "warm_start:\n  configs:\n" + "".join(f"    - {c}\n" for c in configs)
    path = write_spec(tmp_path, text, "warm.yaml")
    o = options(tmp_path)
    result = popplast.run(str(path), method="tpe", **o)
    first = first_generation(o["tracking_uri"], result.search_run_id)
    assert first[:2] == [("warm", list(c.values())) for c in configs]
    assert SearchSpec.from_yaml(str(path)).warm_start.configs == tuple(configs)


OBJECTIVE = """
import numpy as np

def fit(config, trial):
    state = trial.inherited_state()
    start = np.zeros(3) if state is None else np.asarray(state["w"], dtype=float)
    w = start + config["x"]
    return {"score": float(-abs(w.sum() - 3.0))}, {"w": w}
"""


def test_gensoup_starts_from_the_sources_trained_states(tmp_path):
    """The source's last checkpoint holds its last generation's and its best's states: a warm individual
    started from one of those inherits exactly the state it returned; from another, nothing."""
    (tmp_path / "warmobj.py").write_text(textwrap.dedent(OBJECTIVE))
    spec = write_spec(
        tmp_path,
        """
        objective: warmobj:fit
        fitness: {metric: score, mode: maximize}
        strategy: {method: gensoup, population: 4, generations: 3, seed: 0, population_step: 0, min_population: 2}
        space:
          x: {type: float, low: 0.0, high: 1.0}
        """,
    )
    o = {"executor": "local", "tracking_uri": f"sqlite:///{tmp_path / 'm.db'}", "progress": False}
    source = popplast.run(str(spec), **o)
    warm = popplast.run(str(spec), seed=3, warm_start=source.search_run_id, **o)
    client = MlflowClient(o["tracking_uri"])
    returned = {
        r["id"]: client.get_run(r["run_id"]).data.tags.get("popplast.returned_state_hash")
        for r in individuals(o["tracking_uri"], source.search_run_id)
    }
    sources = client.get_run(warm.search_run_id).data.params["warm_start"].split(",")
    # the last checkpoint keeps the last generation's states and the best's
    held = {r["id"] for r in individuals(o["tracking_uri"], source.search_run_id) if r["generation"] == 2}
    held.add(source.best.id)
    inherited = 0
    for r in individuals(o["tracking_uri"], warm.search_run_id):
        if r["operator"] != "warm":
            continue
        tags = client.get_run(r["run_id"]).data.tags
        source_id = sources[int(r["id"].split("-i")[1])].split("/")[1]
        if source_id in held:
            assert tags["popplast.inherited_state_hash"] == returned[source_id]
            inherited += 1
        else:
            assert "popplast.inherited_state_hash" not in tags  # its state was released: it trains afresh
    assert inherited >= 1


def test_a_warm_sampler_replayed_from_its_state_asks_the_same_trials(task):
    """A resumed TPE search rebuilds its study from the state: the enqueued trials come first again."""
    spec = SearchSpec.from_yaml(task.search_file).with_overrides(method="tpe", population=4, generations=3)
    genomes = tuple(tuple(spec.space.encode({g: "nor_conv_3x3" for g in GENES})) for _ in range(1)) + (
        tuple(spec.space.encode({g: "none" for g in GENES})),
    )

    def drive(round_trip):
        strategy = with_warm_start(build_strategy(spec), genomes)
        state, rng, asked = strategy.init(), np.random.default_rng(0), []
        for _ in range(3):
            if round_trip:  # a new adapter meets a state it did not make: it replays the study
                strategy = with_warm_start(build_strategy(spec), genomes)
                state = strategy.state_from_dict(state.to_dict())
            population, state = strategy.ask(state, rng)
            asked.append([(i.operator, i.genome) for i in population])
            state, _ = strategy.tell(state, {i.id: float(sum(i.genome)) for i in population})
        return asked

    straight = drive(False)
    assert [op for op, _ in straight[0][:2]] == ["warm", "warm"] and straight[0][0][1] == genomes[0]
    assert drive(True) == straight


def test_compare_warm_starts_every_method_from_one_source(task, tmp_path):
    o = options(tmp_path)
    source = popplast.run(task.search_file, method="ga", **o)
    result = popplast.compare(
        task.search_file,
        methods=["ga", "tpe", "random"],
        seeds=1,
        executor="simulated",
        tracking_uri=o["tracking_uri"],
        optuna_storage=o["optuna_storage"],
        warm_start=source.search_run_id,
        out=str(tmp_path / "report"),
        progress=False,
        budget_evals=20,
    )
    client = MlflowClient(o["tracking_uri"])
    searches = client.search_runs(
        [client.get_run(result.run_id).info.experiment_id],
        f"tags.mlflow.parentRunId = '{result.run_id}'",
    )
    assert len(searches) == 3
    best = [config for _, config in best_configs(o["tracking_uri"], source, 5)]  # half the file's population
    for search in searches:
        assert search.data.params["warm_start"].startswith(source.search_run_id)
        firsts = first_generation(o["tracking_uri"], search.info.run_id)
        assert [c for op, c in firsts if op == "warm"] == best


def run_cli(*args, cwd):
    return subprocess.run([BIN, *args], capture_output=True, text=True, cwd=cwd, timeout=120)


def test_an_unknown_source_is_one_line_and_leaves_no_run(task, tmp_path):
    out = run_cli(
        "run", task.search_file, "--executor", "simulated", "--warm-start", "0123abcd",
        "--tracking-uri", f"sqlite:///{tmp_path / 'm.db'}", cwd=tmp_path,
    )  # fmt: skip
    said = [line for line in out.stderr.splitlines() if " INFO " not in line]  # MLflow's note of a new store
    assert out.returncode == 2 and len(said) == 1 and "Traceback" not in out.stderr, out.stderr
    assert "at warm_start.run: no search run '0123abcd' in the MLflow store" in said[0]
    client = MlflowClient(f"sqlite:///{tmp_path / 'm.db'}")
    assert not [r for e in client.search_experiments() for r in client.search_runs([e.experiment_id])]


@pytest.mark.parametrize(
    "section, method, says",
    [
        ("{run: abc}", "openai", "at warm_start: openai cannot start warm; ga, gensoup, pbt, tpe, cmaes, gp,"),
        ("{run: abc, configs: []}", "ga", "at warm_start: expected either run: SEARCH_RUN_ID or configs"),
        ("{configs: [{Op0: none}]}", "ga", "at warm_start.configs[0]: no value for the gene 'Op1'."),
        ("{configs: [{Op9: none}]}", "ga", "at warm_start.configs[0].Op9: not a gene of the space"),
        ("{run: abc, best: 0}", "ga", "at warm_start.best: expected a number >= 1"),
    ],
)
def test_a_bad_warm_start_is_one_line(task, tmp_path, section, method, says):
    text = open(task.search_file).read().replace("method: ga", f"method: {method}")
    text = text.replace("suite_table: cifar10.npz", f"suite_table: {task.table}") + f"warm_start: {section}\n"
    path = write_spec(tmp_path, text, "bad.yaml")
    with pytest.raises(SpecError) as e:
        SearchSpec.from_yaml(str(path))
    assert says in str(e.value) and "\n" not in str(e.value)


def test_a_configuration_off_the_space_names_its_gene(task, tmp_path):
    configs = "{" + ", ".join(f"{g}: none" for g in GENES[:5]) + ", Op5: conv_7x7}"
    text = open(task.search_file).read() + f"warm_start: {{configs: [{configs}]}}\n"
    path = write_spec(tmp_path, text, "off.yaml")
    with pytest.raises(SpecError, match=r"at warm_start.configs\[0\].Op5: expected one of \['none',"):
        SearchSpec.from_yaml(str(path))


@pytest.mark.parametrize("text", ["abc", "nan", "1e999", ""])
def test_a_source_value_that_is_not_a_number_is_one_line(text):
    """A source run whose numeric gene holds something else (written by hand, or by another tool) is refused by
    name, as one that is out of bounds is."""
    from popplast.reports.warm_source import typed
    from popplast.spec.space import Gene

    with pytest.raises(
        SpecError, match=r"at warm_start.run: the search run r1's lr = '.*' is not a number from 0.001 to 1"
    ) as e:
        typed(Gene("lr", "float", low=0.001, high=1.0), text, "r1", "f.yaml")
    assert "\n" not in str(e.value)
