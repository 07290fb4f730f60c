"""Gen-Soup's fusion options end to end (ALGORITHMS.md §12, issue 33): every fused child's cost recorded
against its parents, weight matching before the average, a shared initialisation, children that take the
better parent's weights only, and the greedy soup as the answer; on Ray with 2 workers, generational and
asynchronous."""

from __future__ import annotations

import itertools
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from mlflow import MlflowClient

import popplast
from popplast.core.individual import Individual
from popplast.errors import SpecError
from popplast.execution.fusion_cost import fusion_barriers
from popplast.objectives.cnn import cnn_evaluator
from popplast.spec.search import DatasetSpec, Fidelity, SearchSpec
from popplast.spec.strategy import FusionSpec
from popplast.training.build import model_for, split_for
from popplast.training.config import resolve
from popplast.training.data import batches
from popplast.training.fusion import align_parents, load_fused, reestimate_batchnorm
from popplast.training.soup import greedy_soup, improved
from popplast.training.weights import state_dict_hash
from tests.helpers import write_spec

SPEC = """
dataset: {name: digits}
fidelity: {image_size: 8, epochs: 1, batch_size: 64, max_train_samples: 400}
fixed: {architecture: small_vgg, bn_reestimate_batches: 2}
strategy:
  method: gensoup
  population: 4
  generations: 3
  seed: 5
  crossover: {optimizer: 0.0, lr_scale: 0.9}
  mutation: {optimizer: 0.25, lr_scale: 0.25}
  fusion: {FUSION}
  final: {soup: greedy}
space:
  optimizer: {type: categorical, choices: [adam, rmsprop]}
  lr_scale: {type: float, low: 0.3, high: 3.0, log: true}
"""


def _runs(tracking_uri: str, result) -> dict[str, object]:
    client = MlflowClient(tracking_uri)
    runs = client.search_runs([result.experiment_id], f"tags.mlflow.parentRunId = '{result.search_run_id}'")
    return {r.data.tags["popplast.individual_id"]: r for r in runs}


def _check_fusions_recorded(tracking_uri: str, result, aligned: bool) -> int:
    """Every fused child: its validation MCC before training at step 0 and as a tag, and its barriers equal
    to its parents' fitness minus that; the search run's summary counts them."""
    client = MlflowClient(tracking_uri)
    runs = _runs(tracking_uri, result)
    fused = [r for r in runs.values() if r.data.tags["popplast.operator"] == "fusion"]
    for run in fused:
        tags, metrics = run.data.tags, run.data.metrics
        before = float(tags["popplast.fused_val_mcc"])
        series = client.get_metric_history(run.info.run_id, "val_mcc")
        assert [m.value for m in series if m.step == 0][0] == pytest.approx(before, abs=1e-5)
        assert max(m.step for m in series) == 1  # the trained value at the epoch it was trained to
        parents = tags["popplast.parent_ids"].split(",")
        fitness = [runs[p].data.metrics["fitness"] for p in parents]
        weights = [float(w) for w in tags["popplast.fusion_weights"].split(",")]
        assert metrics["fusion_barrier"] == pytest.approx(max(fitness) - before, abs=1e-5)
        mean = sum(f * w for f, w in zip(fitness, weights)) / sum(weights)
        assert metrics["fusion_barrier_mean"] == pytest.approx(mean - before, abs=1e-5)
        note = tags.get("popplast.fusion_alignment", "")
        assert note.startswith("weight_matching: 6 permutation groups, 224 units") == aligned
        assert ("popplast.fusion_alignment" in tags) == aligned
    search = client.get_run(result.search_run_id).data.metrics
    assert search.get("fusions", 0) == len(fused) == result.fusion.get("fusions", 0)
    return len(fused)


def _check_soup(tracking_uri: str, result) -> None:
    soup = result.soup
    assert soup["ingredients"][0] == result.best.id and set(soup["ingredients"]) <= set(soup["candidates"])
    assert soup["val_mcc"] >= soup["best_val_mcc"]
    run = MlflowClient(tracking_uri).get_run(result.search_run_id)
    search = run.data.metrics
    assert search["soup_ingredients"] == len(soup["ingredients"])
    assert search["soup_is_answer"] == float(soup["answer"])
    said = "greedy soup of " + ",".join(soup["ingredients"]) if soup["answer"] else f"best individual {result.best.id}"
    assert run.data.tags["popplast.model"].startswith(said)
    assert "greedy soup:" in result.summary()


@pytest.mark.parametrize("fusion", ["{align: weight_matching}", "{align: none}"])
def test_every_fusion_is_measured_before_training(tmp_path, tracking_uri, fusion):
    path = write_spec(tmp_path, SPEC.replace("{FUSION}", fusion))
    result = popplast.run(path, executor="local", workers=1, tracking_uri=tracking_uri, progress=False)
    assert _check_fusions_recorded(tracking_uri, result, "weight_matching" in fusion) > 0
    assert "barrier before training" in result.summary()
    _check_soup(tracking_uri, result)


def test_without_fusion_children_take_the_better_parents_weights_only(tmp_path, tracking_uri):
    path = write_spec(tmp_path, SPEC.replace("{FUSION}", "{weights: better}"))
    result = popplast.run(path, executor="local", workers=1, tracking_uri=tracking_uri, progress=False)
    runs = _runs(tracking_uri, result)
    operators = {r.data.tags["popplast.operator"] for r in runs.values()}
    assert "fusion" not in operators and "inherit" in operators
    for run in runs.values():
        tags = run.data.tags
        taken = [
            p
            for p, w in zip(tags["popplast.parent_ids"].split(","), tags["popplast.fusion_weights"].split(","))
            if w and float(w) > 0
        ]
        if tags["popplast.operator"] in ("inherit", "elite") and taken:
            assert len(taken) == 1
            assert tags["popplast.initial_weights_hash"] == runs[taken[0]].data.tags["popplast.trained_weights_hash"]
    assert not result.fusion


@pytest.mark.parametrize("schedule", ["generational", "async"])
def test_aligned_fusion_and_shared_initialisation_on_ray(tmp_path, tracking_uri, ray_address, schedule):
    text = SPEC.replace("{FUSION}", "{align: weight_matching, init: shared}")
    text = text.replace("  seed: 5\n", f"  seed: 5\n  schedule: {schedule}\n")
    result = popplast.run(write_spec(tmp_path, text), workers=2, tracking_uri=tracking_uri, progress=False)
    runs = _runs(tracking_uri, result)
    first = {
        r.data.tags["popplast.initial_weights_hash"]
        for r in runs.values()
        if r.data.tags["popplast.operator"] == "init"
    }
    assert len(first) == 1  # every individual that started from scratch started from the same weights
    assert _check_fusions_recorded(tracking_uri, result, aligned=True) > 0
    _check_soup(tracking_uri, result)


def _trained_parents(evaluator, config, n: int = 2) -> list:
    results = []
    for k in range(n):
        parent = Individual(f"g000-i{k:03d}", (0.0,), 0, seed=100 + k)
        result = evaluator.evaluate(parent, config, return_weights=True)
        assert result.ok
        results.append(result)
    return results


def test_a_fused_childs_initial_weights_are_the_aligned_average_of_its_parents():
    """The documented function of the parents' weights: the other parent permuted to the better one by weight
    matching (seeded by the child's seed), then the fitness-weighted average, computed here from the public
    functions and compared by hash with what the trainer started from."""
    fidelity = Fidelity(image_size=8, epochs=1, batch_size=64, max_train_samples=300)
    config = {"architecture": "small_vgg", "optimizer": "adam"}
    aligned = cnn_evaluator(DatasetSpec("digits"), fidelity, threads=1, fusion=FusionSpec(align="weight_matching"))
    a, b = _trained_parents(aligned, config)
    child = Individual("g001-i000", (0.0,), 1, (a.individual_id, b.individual_id), "fusion", (0.7, 0.3), seed=9)
    result = aligned.evaluate(child, config, ((a.weights, 0.7), (b.weights, 0.3)), return_weights=True)
    assert result.ok and result.tags["fusion_alignment"].startswith("weight_matching")
    cfg = resolve(config, {})
    model = model_for(cfg, 1, 10)
    states, _ = align_parents(model, [a.weights, b.weights], torch.zeros(2, 1, 8, 8), seed=9)
    load_fused(model, states, (0.7, 0.3))
    # then BatchNorm statistics re-estimated on 4 training batches drawn with the child's seed (§12)
    data = split_for(DatasetSpec("digits"), cfg, fidelity, 1)
    batches_of = batches(data.train, 64, shuffle=True, generator=torch.Generator().manual_seed(9))
    reestimate_batchnorm(model, itertools.islice((x for x, _ in batches_of), 4))
    assert result.tags["initial_weights_hash"] == state_dict_hash(model.state_dict())
    assert result.metrics["fused_fitness"] == pytest.approx(float(result.tags["fused_val_mcc"]), abs=1e-5)
    assert result.history["val_mcc"][0][0] == 0


def test_a_shared_initialisation_is_one_per_architecture_and_search_seed():
    fidelity = Fidelity(image_size=8, epochs=1, batch_size=64, max_train_samples=100)
    hashes = {}
    for init in ("own", "shared"):
        for search_seed in (0, 1):
            evaluator = cnn_evaluator(
                DatasetSpec("digits"), fidelity, threads=1, fusion=FusionSpec(init=init), search_seed=search_seed
            )
            for arch in ("lenet5", "small_vgg"):
                results = _trained_parents(evaluator, {"architecture": arch}, n=2)
                hashes[init, search_seed, arch] = [r.tags["initial_weights_hash"] for r in results]
    for search_seed in (0, 1):
        for arch in ("lenet5", "small_vgg"):
            shared = hashes["shared", search_seed, arch]
            assert shared[0] == shared[1]  # two individuals, two seeds: one initialisation
            own = hashes["own", search_seed, arch]
            assert own[0] != own[1]
    assert hashes["shared", 0, "lenet5"] != hashes["shared", 1, "lenet5"]


def test_a_user_objective_aligns_to_the_model_it_passes():
    from popplast.objectives.trial import Trial
    from tests.test_permutations import ResidualMLP

    torch.manual_seed(0)
    a, b = ResidualMLP().state_dict(), ResidualMLP().state_dict()
    child = Individual("g001-i000", (0.0,), 1, ("p", "q"), "fusion", (0.5, 0.5), seed=1)
    trial = Trial(child, "cpu", Fidelity(), ((a, 0.5), (b, 0.5)), fusion=FusionSpec(align="weight_matching"))
    assert trial.inherited_state(ResidualMLP()) is not None
    assert trial.tags["fusion_alignment"].startswith("weight_matching: 1 permutation groups")
    plain = Trial(child, "cpu", Fidelity(), ((a, 0.5), (b, 0.5)), fusion=FusionSpec(align="weight_matching"))
    plain.inherited_state()
    assert plain.tags["fusion_alignment"].startswith("none: inherited_state() was given no model")
    assert plain.inherited_hash != trial.inherited_hash
    shared = Trial(child, "cpu", Fidelity(), fusion=FusionSpec(init="shared"), search_seed=3)
    other = Trial(
        Individual("x", (0.0,), 0, seed=2), "cpu", Fidelity(), fusion=FusionSpec(init="shared"), search_seed=3
    )
    assert shared.init_seed("mlp") == other.init_seed("mlp") != shared.init_seed("cnn")
    assert Trial(child, "cpu", Fidelity()).init_seed("mlp") == child.seed


def test_barriers_are_against_the_better_parent_and_the_weighted_mean():
    child = Individual("c", (0.0,), 1, ("a", "b", "z"), "fusion", (0.75, 0.25, 0.0))
    costs = fusion_barriers(child, 0.5, {"a": 0.9, "b": 0.5, "z": 0.99})  # z took no part: weight 0
    assert costs == pytest.approx({"fusion_barrier": 0.4, "fusion_barrier_mean": 0.8 - 0.5})
    assert fusion_barriers(child, 0.5, {"a": 0.9}) == {}  # only one fused parent known


@settings(max_examples=60, deadline=None)
@given(values=st.lists(st.floats(-3, 3), min_size=1, max_size=7), target=st.floats(-3, 3))
def test_the_greedy_soup_keeps_an_ingredient_only_when_the_soup_does_not_drop(values, target):
    """Candidates are one-number models; the validation metric is closeness of their mean to a target. Checked
    against Recipe 1 written out: the soup's metric never falls below the best candidate's, each kept
    ingredient scored at least the soup before it, each refused one less."""
    candidates = [(f"m{i}", {"w": torch.tensor([v], dtype=torch.float64)}) for i, v in enumerate(values)]

    def score(state, averaged):
        return -abs(float(state["w"][0]) - target), dict(state)

    soup = greedy_soup(candidates, score)
    kept, best = [values[0]], -abs(values[0] - target)
    for (cid, _), (tried, value, accepted) in zip(candidates[1:], soup.tried):
        trial = -abs(float(np.mean(kept + [values[int(cid[1:])]])) - target)
        assert tried == cid and value == pytest.approx(trial)
        assert accepted == (value >= best)
        if accepted:
            kept.append(values[int(cid[1:])])
            best = value
    assert soup.ingredients == ["m0"] + [c for c, _, k in soup.tried if k]
    assert soup.metric == pytest.approx(best) and soup.metric >= soup.start
    assert improved(soup) == (len(soup.ingredients) > 1 and soup.metric > soup.start)


def test_fusion_settings_are_checked_and_belong_to_gensoup(tmp_path):
    base = SPEC.replace("{FUSION}", "{align: weight_matching, init: shared}")
    spec = SearchSpec.from_yaml(write_spec(tmp_path, base))
    assert spec.strategy.fusion == FusionSpec("weight_matching", "shared", "average") and spec.strategy.soup == "greedy"
    assert SearchSpec.from_dict(spec.to_dict(), spec.source) == spec
    with pytest.raises(
        SpecError, match=r"strategy\.fusion\.align.*expected one of none, weight_matching, got str 'rebasin'"
    ):
        SearchSpec.from_yaml(write_spec(tmp_path, SPEC.replace("{FUSION}", "{align: rebasin}"), "bad.yaml"))
    with pytest.raises(SpecError, match=r"strategy\.fusion\.steps"):
        SearchSpec.from_yaml(write_spec(tmp_path, SPEC.replace("{FUSION}", "{steps: 3}"), "bad2.yaml"))
    ga = base.replace("method: gensoup", "method: ga").replace("  final: {soup: greedy}\n", "")
    with pytest.raises(SpecError, match=r"strategy\.fusion.*only gensoup takes fusion"):
        SearchSpec.from_yaml(write_spec(tmp_path, ga, "ga.yaml"))
    switched = spec.with_overrides(method="ga")  # the flag leaves what only Gen-Soup takes behind
    assert switched.strategy.method == "ga" and switched.strategy.fusion == FusionSpec()
    assert spec.with_overrides(method="pbt").strategy.soup == "greedy"  # PBT ends with a soup too


def test_a_comparison_runs_fusion_variants_and_reports_their_fusions_per_generation(tmp_path):
    """`--methods gensoup,gensoup[fusion.align=weight_matching],ga`: each variant's cells run with its settings
    and are labelled by them in MLflow and the report, which holds one row per method and generation with as
    many fusions as the searches' runs hold, and none for a method that does not fuse."""
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    spec = write_spec(tmp_path, SPEC.replace("{FUSION}", "{}").replace("  final: {soup: greedy}\n", ""))
    aligned = "gensoup[fusion.align=weight_matching]"
    result = popplast.compare(
        spec,
        methods=f"gensoup,{aligned},ga",
        seeds=2,
        workers=1,
        executor="local",
        tracking_uri=uri,
        optuna_storage=f"sqlite:///{tmp_path / 'optuna.db'}",
        out=str(tmp_path / "report"),
        progress=False,
    )
    assert (result.cells_run, result.failed_cells) == (6, [])
    text = (tmp_path / "report" / "report.md").read_text()
    section = text.split("## Fusions")[1].split("## Anytime")[0]
    rows = [line.split(" | ") for line in section.splitlines() if line.startswith("| gensoup")]
    client = MlflowClient(uri)
    experiments = [e.experiment_id for e in client.search_experiments()]
    searches = {
        r.info.run_id: r.data.params
        for r in client.search_runs(experiments, "tags.`popplast.role` = 'search'", max_results=100)
    }
    assert (
        sorted(p.get("fusion.align", "-") for p in searches.values())
        == ["-", "-"] + ["none"] * 2 + ["weight_matching"] * 2
    )
    per_generation: dict[tuple[str, str], int] = {}
    for run in client.search_runs(experiments, "tags.`popplast.operator` = 'fusion'", max_results=1000):
        label = aligned if searches[run.data.tags["mlflow.parentRunId"]]["fusion.align"] != "none" else "gensoup"
        assert ("popplast.fusion_alignment" in run.data.tags) == (label == aligned)
        key = (label, run.data.tags["popplast.generation"])
        per_generation[key] = per_generation.get(key, 0) + 1
    assert {(r[0][2:], r[1]): int(r[2]) for r in rows} == per_generation and len(per_generation) >= 4
    assert "| ga |" not in section
    assert f"| {aligned} | 2 |" in text  # its row in the per-method table


@pytest.mark.parametrize(
    "methods, expected",
    [
        ("gensoup[fusion.align=rebasin]", "'fusion.align=rebasin' in 'gensoup[fusion.align=rebasin]': expected"),
        ("gensoup[lr=3]", "'lr=3'"),
        ("ga[fusion.align=weight_matching]", "only gensoup takes fusion"),
        (
            "gensoup,gensoup[fusion.align=none]",
            "gensoup and gensoup[fusion.align=none] run the same searches (gensoup[final.soup=greedy])",
        ),
    ],
)
def test_a_bad_variant_is_refused_before_anything_runs(tmp_path, methods, expected):
    spec = write_spec(tmp_path, SPEC.replace("{FUSION}", "{}"))
    with pytest.raises(SpecError, match="--methods") as e:
        popplast.compare(spec, methods=methods, tracking_uri=f"sqlite:///{tmp_path / 'm.db'}", progress=False)
    assert expected in str(e.value)


def test_the_lineage_pages_details_show_what_a_fusion_cost(tmp_path, tracking_uri):
    """In a real browser: a fused child's details panel holds its fitness after fusion, its barriers and its
    alignment, as its run records them; an individual that was not fused shows none of them."""
    from popplast.reports.lineage import draw_lineage
    from tests.helpers import lineage_page

    path = write_spec(tmp_path, SPEC.replace("{FUSION}", "{align: weight_matching}"))
    result = popplast.run(path, executor="local", workers=1, tracking_uri=tracking_uri, progress=False)
    html_path, _ = draw_lineage(tracking_uri, result.search_run_id, str(tmp_path / "tree"), log=False)
    runs = _runs(tracking_uri, result)
    fused = next(k for k, r in sorted(runs.items()) if r.data.tags["popplast.operator"] == "fusion")
    metrics = runs[fused].data.metrics
    with lineage_page(html_path) as page:
        page.locator(f'a.node[data-individual="{fused}"] circle').click()
        text = page.locator("#details").inner_text()
        assert f"after fusion, before training\t{metrics['fused_fitness']:.4f}" in text
        assert f"barrier vs better parent\t{metrics['fusion_barrier']:+.4f}" in text
        assert f"barrier vs weighted mean\t{metrics['fusion_barrier_mean']:+.4f}" in text
        assert "alignment\tweight_matching: 6 permutation groups, 224 units" in text
        page.locator('a.node[data-individual="g000-i000"] circle').click()
        assert "barrier" not in page.locator("#details").inner_text()


def test_a_child_whose_parents_do_not_fit_together_says_it_took_the_better_parent_alone():
    """A 'fusion' of parents whose states differ in shape (a user's width gene): the child's state is the
    better parent's, `inherited_from` is 1 and the run's `popplast.inherited` tag says why; the record does
    not pass it off as a fusion of both."""
    from popplast.objectives.trial import Trial

    narrow, wide = nn_state(4), nn_state(8)
    child = Individual("g001-i000", (0.0,), 1, ("p", "q"), "fusion", (0.6, 0.4), seed=1)
    trial = Trial(child, "cpu", Fidelity(), ((narrow, 0.6), (wide, 0.4)))
    state = trial.inherited_state()
    assert all(torch.equal(state[k], narrow[k]) for k in narrow)
    assert trial.inherited_from == 1
    assert trial.tags["inherited"].startswith("the better parent's state alone: '0.weight' has shape (8, 3)")
    same = Trial(child, "cpu", Fidelity(), ((narrow, 0.6), (nn_state(4, seed=2), 0.4)))
    same.inherited_state()
    assert same.inherited_from == 2 and "inherited" not in same.tags


def nn_state(width: int, seed: int = 0) -> dict:
    torch.manual_seed(seed)
    return torch.nn.Sequential(torch.nn.Linear(3, width), torch.nn.ReLU(), torch.nn.Linear(width, 2)).state_dict()


def test_a_user_objective_cannot_ask_for_the_greedy_soup(tmp_path):
    """The soup measures popplast's CNN trainer's models; a file with an objective that asks for it is refused
    rather than recorded as souped."""
    text = (Path(__file__).parent.parent / "search_spaces" / "noisy_digits.yaml").read_text()
    text = text.replace("  method: ga\n", "  method: gensoup\n  final: {soup: greedy}\n")
    with pytest.raises(SpecError, match=r"strategy\.final\.soup: the greedy soup measures popplast's CNN"):
        SearchSpec.from_yaml(write_spec(tmp_path, text, "noisy.yaml"))
