"""The model a search hands back: Gen-Soup's best individual as trained, or the best configuration retrained
at the final fidelity; both measured on the test split and logged with mlflow.pytorch on the search run."""

from __future__ import annotations

from typing import Any

import numpy as np

from popplast.core.result import SearchResult
from popplast.errors import SearchFailed
from popplast.spec.search import SearchSpec


def log_soup_model(
    spec: SearchSpec, outcome: Any, workers: Any, tracker: Any, result: SearchResult, shape: tuple[int, int]
) -> None:
    """Gen-Soup's answer is a trained model: the best individual's weights, measured again here on the
    test split before they are logged, so the logged model is known to reproduce the reported metrics."""
    import torch

    from popplast.training.build import split_for
    from popplast.training.train import measure

    if outcome.best_weights is None:
        return
    model, cfg = _rebuilt(result, shape, _state(workers.fetch(outcome.best_weights)))  # fetched once, at the end
    budget = outcome.best_budget
    data = split_for(spec.dataset, cfg, budget, shape[0])
    if spec.strategy.soup == "greedy":
        _souped(spec, outcome, workers, result, model, cfg, data)
    measured = measure(model, data, torch.device("cpu"))
    result.model_metrics = {k: v for k, v in measured.items() if k.startswith("test_")}
    result.model_uri = tracker.log_model(model, _example(cfg, shape, budget.image_size))


SOUP_BN_BATCHES = 10  # BatchNorm statistics of a trial soup re-estimated on this many training batches at least


def _souped(
    spec: SearchSpec, outcome: Any, workers: Any, result: SearchResult, model: Any, cfg: Any, data: Any
) -> None:
    """The greedy soup over the final population's members of the best individual's configuration's (`cfg`)
    architecture (ALGORITHMS.md §12); `model` (the best individual's) takes the soup's weights when the soup
    scores higher on validation than the best alone, and `result.soup` records what was tried."""
    import itertools

    import torch

    from popplast.execution.work import configuration
    from popplast.training.config import resolve
    from popplast.training.data import batches
    from popplast.training.fusion import reestimate_batchnorm
    from popplast.training.soup import greedy_soup, improved
    from popplast.training.train import measure_split

    best_state = {k: v.clone() for k, v in model.state_dict().items()}
    shapes = {k: tuple(v.shape) for k, v in best_state.items()}
    fitness = {k: r.fitness for k, r in outcome.results.items() if r.ok}
    others = []
    for individual, weights in outcome.final_weights:
        if individual.id == result.best.id or individual.id not in fitness:
            continue
        if resolve(configuration(spec, individual), {}).architecture != cfg.architecture:
            continue
        state = _state(workers.fetch(weights))
        if {k: tuple(v.shape) for k, v in state.items()} == shapes:
            others.append((fitness[individual.id], individual.id, state))
    others.sort(key=lambda o: -o[0])  # stable: on ties, in the population's order
    generator = torch.Generator().manual_seed(spec.strategy.seed)
    size = cfg.batch_size or outcome.best_budget.batch_size

    def score(state: Any, averaged: bool) -> tuple[float, dict[str, Any]]:
        model.load_state_dict(state)
        if averaged:
            inputs = (x for x, _ in batches(data.train, size, shuffle=True, generator=generator))
            reestimate_batchnorm(model, itertools.islice(inputs, max(cfg.bn_reestimate_batches, SOUP_BN_BATCHES)))
        value = measure_split(model, data.val, torch.device("cpu"), "val")["val_mcc"]
        return value, {k: v.clone() for k, v in model.state_dict().items()}

    with torch.random.fork_rng(devices=[]):  # layers that draw in train mode (dropout) draw from the seed
        torch.manual_seed(spec.strategy.seed)
        soup = greedy_soup([(result.best.id, best_state), *[(i, st) for _, i, st in others]], score)
    result.soup = {
        "ingredients": soup.ingredients,
        "candidates": [result.best.id, *(i for _, i, _ in others)],
        "tried": [{"individual": i, "val_mcc": v, "kept": k} for i, v, k in soup.tried],
        "val_mcc": soup.metric,
        "best_val_mcc": soup.start,
        "answer": improved(soup),
    }
    model.load_state_dict(soup.state if improved(soup) else best_state)
    model.eval()


def retrain_best(spec: SearchSpec, workers: Any, tracker: Any, result: SearchResult, shape: tuple[int, int]) -> None:
    """Train the best configuration at the final fidelity and log the model."""
    trained = workers.train(result.best, result.best_config, spec.final)
    if not trained.ok:
        raise SearchFailed(f"retraining the best configuration failed: {trained.error}")
    model, cfg = _rebuilt(result, shape, _state(workers.fetch(trained.weights)))
    result.retrain_metrics = dict(trained.metrics)
    result.model_uri = tracker.log_model(model, _example(cfg, shape, spec.final.image_size))


def _rebuilt(result: SearchResult, shape: tuple[int, int], weights: Any) -> tuple[Any, Any]:
    """The best configuration's model, built as its evaluation built it, holding `weights`; and its config.

    `shape`: (native channels, classes) of the whole data set."""
    from popplast.training.build import model_for
    from popplast.training.config import resolve

    cfg = resolve(result.best_config, {})
    model = model_for(cfg, *shape)
    model.load_state_dict(weights)
    model.eval()
    return model, cfg


def _example(cfg: Any, shape: tuple[int, int], image_size: int) -> np.ndarray:
    from popplast.training.models import input_channels

    return np.zeros((1, input_channels(cfg.architecture, shape[0]), image_size, image_size), dtype=np.float32)


def _state(weights: Any) -> Any:
    """Trained weights as a state dict of tensors (workers exchange them as arrays: training/weights.py)."""
    from popplast.training.weights import from_shareable

    return from_shareable(weights)
