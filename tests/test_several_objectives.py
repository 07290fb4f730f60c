"""Several objectives end to end (issue 34): a two-objective objective written outside the package runs with
every method that ranks by Pareto fronts, on Ray with 2 workers; every individual's run holds both
objectives; the search run's front, hypervolume and pareto_front.json agree with what its runs hold; the same
seed gives the same front; a driver killed mid-search and resumed gives the front of the uninterrupted one."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
from mlflow import MlflowClient

import popplast
from popplast.core import pareto
from tests.helpers import individuals, lineage, wait_for_search_run

OBJECTIVE = '''
import torch


def fit(config, trial):
    """w moves towards (x, y); the two objectives pull it towards different corners."""
    inherited = trial.inherited_state()
    w = inherited["w"].clone() if inherited is not None else torch.zeros(2)
    target = torch.tensor([config["x"], config["y"]])
    for step in range(1, trial.fidelity.epochs + 1):
        w += 0.5 * (target - w)
        near = float((w - torch.tensor([0.5, -0.5])).norm())
        far = float((w - torch.tensor([-0.5, 0.5])).norm())
        trial.report(step, near=near, far=far, w0=float(w[0]))
        if trial.should_stop():
            break
    return {"near": near, "far": far, "w0": float(w[0])}, {"w": w}
'''

SPEC = """
objective: twoobj:fit
fitness:
  - {metric: near, mode: minimize}
  - {metric: far, mode: minimize}
fidelity: {epochs: 3}
strategy: {method: ga, population: 6, generations: 4, seed: 3}
space:
  x: {type: float, low: -1.0, high: 1.0}
  y: {type: float, low: -1.0, high: 1.0}
"""


def write(folder: Path, extra: str = "") -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "twoobj.py").write_text(textwrap.dedent(OBJECTIVE))
    path = folder / "search.yaml"
    path.write_text(textwrap.dedent(SPEC) + extra)
    return path


def front_of_runs(rows: list[dict], constraint: float | None = None) -> list[str]:
    """The front by the definition, from the runs alone: feasible, non-dominated (both minimised)."""
    ok = [r for r in rows if r["status"] in ("ok", "stopped")]
    values = [
        [-r["metrics"]["near"], -r["metrics"]["far"], max(0.0, r["metrics"]["w0"] - constraint) if constraint else 0.0]
        for r in ok
    ]
    return sorted(
        ok[i]["id"] for i, v in enumerate(values) if v[-1] == 0 and not any(pareto.dominates(u, v) for u in values)
    )


def metrics_of(uri: str, rows: list[dict]) -> list[dict]:
    client = MlflowClient(uri)
    return [{**r, "metrics": client.get_run(r["run_id"]).data.metrics} for r in rows]


def artifact(uri: str, run_id: str, name: str, tmp_path: Path) -> dict:
    with open(MlflowClient(uri).download_artifacts(run_id, name, str(tmp_path))) as f:
        return json.load(f)


@pytest.mark.parametrize(
    "method, schedule",
    [("ga", None), ("gensoup", None), ("pbt", None), ("gensoup", "async"), ("nsga2", None)],
    ids=["ga", "gensoup", "pbt", "gensoup-async", "nsga2"],
)
def test_a_two_objective_objective_runs_on_two_ray_workers_and_its_front_is_recorded(
    method, schedule, ray_address, tmp_path
):
    spec = write(tmp_path / "project")
    uri = f"sqlite:///{tmp_path / 'm.db'}"
    result = popplast.run(
        spec,
        method=method,
        schedule=schedule,
        workers=2,
        address=ray_address,
        tracking_uri=uri,
        optuna_storage=f"sqlite:///{tmp_path / 'optuna.db'}",
        progress=False,
    )
    rows = metrics_of(uri, individuals(uri, result.search_run_id))
    assert len(rows) == result.evaluations == 24
    assert all({"near", "far"} <= set(r["metrics"]) for r in rows), "every individual's run holds both objectives"
    members = sorted(m["id"] for m in result.front["members"])
    assert members == front_of_runs(rows)
    document = artifact(uri, result.search_run_id, "pareto_front.json", tmp_path)
    assert sorted(m["id"] for m in document["members"]) == members
    by_id = {r["id"]: r for r in rows}
    for member in document["members"]:  # each member's run, configuration and objectives are its run's
        row = by_id[member["id"]]
        assert member["run_id"] == row["run_id"]
        assert member["config"]["x"] == float(MlflowClient(uri).get_run(row["run_id"]).data.params["x"])
        assert member["objectives"] == {"near": row["metrics"]["near"], "far": row["metrics"]["far"]}
    # the hypervolume against the stated reference point, computed again from the runs
    reference = np.array([-document["reference"]["near"], -document["reference"]["far"]])
    points = np.array([[-r["metrics"]["near"], -r["metrics"]["far"]] for r in rows])
    assert document["hypervolume"] == pytest.approx(pareto.hypervolume(points, reference))
    search = MlflowClient(uri).get_run(result.search_run_id).data
    assert search.metrics["hypervolume"] == pytest.approx(document["hypervolume"])
    assert search.params["fitness.objectives"] == "near:minimize,far:minimize"
    history = MlflowClient(uri).get_metric_history(result.search_run_id, "generation_hypervolume")
    assert len(history) >= 4 and all(a.value <= b.value for a, b in zip(history, history[1:]))  # anytime: grows
    names = {a.path for a in MlflowClient(uri).list_artifacts(result.search_run_id)}
    assert {"pareto_front.json", "pareto_front.png"} <= names


def test_the_same_seed_gives_the_same_front_and_a_constraint_is_kept(ray_address, tmp_path):
    spec = write(tmp_path / "project", "constraints: ['w0 <= 0.2']\n")
    fronts = []
    for name in ("a", "b"):
        uri = f"sqlite:///{tmp_path / (name + '.db')}"
        result = popplast.run(spec, method="gensoup", workers=2, address=ray_address, tracking_uri=uri, progress=False)
        rows = metrics_of(uri, individuals(uri, result.search_run_id))
        fronts.append((lineage(rows), result.front["members"]))
        assert sorted(m["id"] for m in result.front["members"]) == front_of_runs(rows, constraint=0.2)
        assert all(by["metrics"]["w0"] <= 0.2 for by in rows if by["id"] in {m["id"] for m in result.front["members"]})
        assert any(r["metrics"]["w0"] > 0.2 for r in rows), "the test's constraint must bind"
    assert fronts[0] == fronts[1]


@pytest.mark.cluster  # a driver process killed and resumed: the slow tier
@pytest.mark.parametrize("method", ["ga", "gensoup"])
def test_a_killed_and_resumed_search_ends_with_the_uninterrupted_front(method, ray_address, tmp_path):
    spec = write(tmp_path / "project")
    whole_uri = f"sqlite:///{tmp_path / 'whole.db'}"
    whole = popplast.run(spec, method=method, workers=2, address=ray_address, tracking_uri=whole_uri, progress=False)
    expected = lineage(individuals(whole_uri, whole.search_run_id))

    store = tmp_path / "killed.db"
    command = [sys.executable, "-m", "popplast.cli.main", "run", str(spec), "--method", method, "--workers", "2"]
    proc = subprocess.Popen(
        [*command, "--address", ray_address, "--tracking-uri", f"sqlite:///{store}", "--quiet"],
        env={**os.environ, "PYTHONPATH": os.getcwd()},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )

    def generation_two_started(client: MlflowClient, run) -> bool:
        children = client.search_runs([run.info.experiment_id], f"tags.mlflow.parentRunId = '{run.info.run_id}'")
        return any(c.data.tags.get("popplast.generation") == "2" for c in children)

    try:
        search_run = wait_for_search_run(store, generation_two_started)
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    killed = MlflowClient(f"sqlite:///{store}").get_run(search_run)
    assert killed.info.status == "RUNNING", "killed mid-search, not after it ended"
    resumed = popplast.run(
        resume=search_run, workers=2, address=ray_address, tracking_uri=f"sqlite:///{store}", progress=False
    )
    assert resumed.search_run_id == search_run
    assert lineage(individuals(f"sqlite:///{store}", search_run)) == expected
    assert resumed.front["members"] == whole.front["members"]
    assert resumed.front["hypervolume"] == whole.front["hypervolume"]
    assert resumed.front["reference"] == whole.front["reference"]


def test_compare_scores_each_search_by_its_hypervolume_against_one_reference_point(tmp_path, capsys):
    """`popplast compare` on a multi-objective file: one reference point for every search, each search's final
    hypervolume (computed again here from its runs), the paired tests on it, the fronts side by side; and
    `popplast report` rebuilds the same report from MLflow."""
    from popplast.cli.main import main
    from popplast.reports.comparison import read_comparison

    spec = write(tmp_path / "project", "constraints: ['w0 <= 0.3']\n")
    uri = f"sqlite:///{tmp_path / 'm.db'}"
    out = tmp_path / "report"
    args = ["compare", str(spec), "--methods", "ga,nsga2", "--seeds", "2", "--executor", "local"]
    assert (
        main(
            [
                *args,
                "--tracking-uri",
                uri,
                "--out",
                str(out),
                "--quiet",
                "--optuna-storage",
                f"sqlite:///{tmp_path / 'o.db'}",
            ]
        )
        == 0
    )
    text = (out / "report.md").read_text()
    run_id = text.splitlines()[0].split()[-1]
    c = read_comparison(MlflowClient(uri), run_id)
    assert c.fitness_name == "hypervolume" and set(c.reference) == {"near", "far"}
    reference = np.array([-c.reference["near"], -c.reference["far"]])
    for (method, seed), cell in c.cells.items():
        rows = metrics_of(uri, individuals(uri, cell.search_run_id))
        feasible = [[-r["metrics"]["near"], -r["metrics"]["far"]] for r in rows if r["metrics"]["w0"] <= 0.3]
        assert cell.best_fitness == pytest.approx(pareto.hypervolume(np.array(feasible), reference))
        assert cell.fitness[-1] == pytest.approx(cell.best_fitness)
        assert all(a <= b for a, b in zip(cell.fitness, cell.fitness[1:]))
        assert f"| {method} | {seed} | {cell.search_run_id} | {cell.best_fitness:.4f} |" in text
    assert "### final hypervolume" in text and "## Pareto fronts" in text and "near (minimised)" in text
    assert f"near {c.reference['near']:.6g}" in text and "under the constraints w0 <= 0.3" in text
    assert (out / "fronts.png").stat().st_size > 10_000
    again = tmp_path / "again"
    assert main(["report", run_id, "--tracking-uri", uri, "--out", str(again)]) == 0
    assert (again / "report.md").read_text() == text


def test_the_lineage_page_marks_the_front_and_colours_by_any_objective(tmp_path):
    """In a real browser: the nodes ringed as the front are pareto_front.json's members; colouring by an
    objective repaints every node with that objective's colour (yellow: its best end); a member's details
    panel holds its objectives."""
    from popplast.reports.lineage import draw_lineage, read_lineage
    from popplast.reports.lineage_page import colour_scales
    from tests.helpers import lineage_page

    spec = write(tmp_path / "project")
    uri = f"sqlite:///{tmp_path / 'm.db'}"
    result = popplast.run(spec, executor="local", workers=1, tracking_uri=uri, progress=False)
    members = {m["id"] for m in artifact(uri, result.search_run_id, "pareto_front.json", tmp_path)["members"]}
    assert members == {m["id"] for m in result.front["members"]} and len(members) >= 2
    html_path, _ = draw_lineage(uri, result.search_run_id, str(tmp_path / "tree"), log=False)
    lineage = read_lineage(MlflowClient(uri), result.search_run_id)
    scored = [n.fitness for n in lineage.nodes.values() if n.fitness is not None]
    far = colour_scales(lineage, min(scored), max(scored))["far"][3]
    best_far = min(lineage.nodes.values(), key=lambda n: n.objectives["far"]).individual_id
    assert far[best_far] == "#fde725"  # viridis' yellow end: the smallest of a minimised objective
    with lineage_page(html_path) as page:
        ringed = page.eval_on_selector_all("a.node.front", "els => els.map(e => e.dataset.individual)")
        assert set(ringed) == members
        page.select_option("#colour-by", "far")
        fills = page.eval_on_selector_all(
            "a.node",
            "els => Object.fromEntries(els.map(e => [e.dataset.individual, "
            "e.querySelector('circle.dot').getAttribute('fill')]))",
        )
        assert fills == far
        assert "far (minimised)" in page.locator("#scale").inner_text()
        member = sorted(members)[0]
        page.locator(f'a.node[data-individual="{member}"] circle.dot').click()
        text = page.locator("#details").inner_text()
        node = lineage.nodes[member]
        shown = dict(line.split("\t", 1) for line in text.splitlines() if "\t" in line)
        assert float(shown["near"]) == pytest.approx(node.objectives["near"], rel=1e-4)
        assert float(shown["far"]) == pytest.approx(node.objectives["far"], rel=1e-4)
        assert "Pareto front\ton it" in text
