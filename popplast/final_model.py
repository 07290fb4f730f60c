"""The model a search hands back: Gen-Soup's best individual as trained, or the best configuration retrained
at the final fidelity; both measured on the test split and logged with mlflow.pytorch on the search run."""

from __future__ import annotations

from typing import Any

import numpy as np

from popplast.core.result import SearchResult
from popplast.core.spec import SearchSpec


class SearchFailed(RuntimeError):
    """The search ran but no individual could be evaluated (or the best could not be retrained)."""


def log_soup_model(spec: SearchSpec, outcome: Any, tracker: Any, result: SearchResult, shape: tuple[int, int]) -> None:
    """Gen-Soup's answer is a trained model: the best individual's weights, measured again here on the
    test split before they are logged, so the logged model is known to reproduce the reported metrics."""
    from popplast.training.config import resolve
    from popplast.training.data import load_split
    from popplast.training.models import build_model, input_channels
    from popplast.training.train import measure

    if outcome.best_weights is None:
        return
    weights = fetch_weights(outcome.best_weights)  # fetched once, at the end: the final model
    cfg = resolve(result.best_config, {})
    native, classes = shape
    channels = input_channels(cfg.architecture, native)
    budget = outcome.best_budget
    model = build_model(cfg.architecture, channels, classes, pretrained=False)
    model.load_state_dict(weights)
    data = load_split(spec.dataset, budget.image_size, channels, budget.max_train_samples)
    result.model_metrics = {k: v for k, v in measure(model, data, "cpu").items() if k.startswith("test_")}
    example = np.zeros((1, channels, budget.image_size, budget.image_size), dtype=np.float32)
    result.model_uri = tracker.log_model(model, example)


def retrain_best(spec: SearchSpec, pool: Any, tracker: Any, result: SearchResult, shape: tuple[int, int]) -> None:
    """Train the best configuration at the final fidelity and log the model."""
    from popplast.execution.executor import Evaluation
    from popplast.training.config import resolve
    from popplast.training.models import build_model, input_channels

    [trained] = list(pool.map([Evaluation(result.best, result.best_config, spec.final, return_weights=True)]))
    if not trained.ok:
        raise SearchFailed(f"retraining the best configuration failed: {trained.error}")
    cfg = resolve(result.best_config, {})
    channels, classes = shape
    model = build_model(cfg.architecture, input_channels(cfg.architecture, channels), classes, pretrained=False)
    model.load_state_dict(fetch_weights(trained.weights))
    model.eval()
    example = np.zeros((1, input_channels(cfg.architecture, channels), spec.final.image_size, spec.final.image_size),
                       dtype=np.float32)
    result.retrain_metrics = dict(trained.metrics)
    result.model_uri = tracker.log_model(model, example)


def fetch_weights(weights: Any) -> Any:
    """Trained weights as a state dict of tensors: the Ray pool hands back an object-store reference."""
    from popplast.training.weights import from_shareable

    if type(weights).__name__ == "ObjectRef":
        import ray

        weights = ray.get(weights)
    return from_shareable(weights)
