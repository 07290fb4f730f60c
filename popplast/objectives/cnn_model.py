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
    measured = measure(model, data, torch.device("cpu"))
    result.model_metrics = {k: v for k, v in measured.items() if k.startswith("test_")}
    result.model_uri = tracker.log_model(model, _example(cfg, shape, budget.image_size))


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
