"""The evaluator: genome's configuration → trained model → fitness (validation MCC) and metrics."""

from __future__ import annotations

import itertools
import os
import socket
import time
import traceback
from typing import Any, Mapping, Sequence

import torch

from popplast.core.individual import Individual
from popplast.core.result import EvalResult
from popplast.core.spec import DatasetSpec, Fidelity
from popplast.training.build import model_for, split_for
from popplast.training.config import resolve
from popplast.training.data import batches, native_channels
from popplast.training.fusion import load_fused, reestimate_batchnorm
from popplast.training.train import measure, train
from popplast.training.weights import state_dict_hash, to_shareable


class CNNEvaluator:
    """Evaluates individuals of a CNN hyperparameter search; one per worker process.

    Args:
        dataset: the data set; its split is loaded once per image size and cached in the process.
        fidelity: how each individual trains during the search.
        fixed: hyperparameters that are not genes.
        threads: torch intra-op threads in this process (the executor sets workers × threads ≤ CPUs).
        device: "auto" (CUDA when this process sees a GPU), "cpu" or "cuda".
    """

    def __init__(
        self,
        dataset: DatasetSpec,
        fidelity: Fidelity,
        fixed: Mapping[str, Any] | None = None,
        threads: int | None = None,
        device: str = "auto",
    ) -> None:
        self.dataset = dataset
        self.fidelity = fidelity
        self.fixed = dict(fixed or {})
        if threads:
            torch.set_num_threads(threads)
        if device == "auto":
            device = "cuda" if torch.cuda.is_available() else "cpu"
        self.device = torch.device(device)
        self._channels = native_channels(dataset)
        self.where = f"{socket.gethostname()}:{os.getpid()}"

    def evaluate(
        self,
        individual: Individual,
        config: Mapping[str, Any],
        parents_weights: Any = None,
        budget: Fidelity | None = None,
        return_weights: bool = False,
    ) -> EvalResult:
        """Train and measure one individual; never raises: a failure comes back as a failed EvalResult.

        `parents_weights`: (state dict, factor) pairs the model starts from, fused by their factors
        (Gen-Soup); None or empty: a fresh initialisation from the individual's seed.
        """
        budget = budget or self.fidelity
        hashes: dict[str, str] = {}
        try:
            metrics, history, weights = self._train(
                individual, config, budget, return_weights, hashes, parents_weights or ()
            )
        except Exception as e:
            result = EvalResult.failed(individual.id, describe_error(e), worker=self.where)
            result.tags = hashes
            return result
        return EvalResult(
            individual.id,
            metrics["val_mcc"],
            metrics,
            {"train_loss": history},
            weights=weights,
            worker=self.where,
            tags=hashes,
        )

    def _train(
        self,
        individual: Individual,
        config: Mapping[str, Any],
        budget: Fidelity,
        return_weights: bool,
        hashes: dict[str, str],
        parents_weights: Sequence[tuple[Mapping[str, torch.Tensor], float]],
    ):
        cfg = resolve(config, self.fixed)
        data = split_for(self.dataset, cfg, budget, self._channels)
        devices = [self.device.index or 0] if self.device.type == "cuda" else []
        with torch.random.fork_rng(devices=devices):  # the individual's seed, never the global RNG state
            torch.manual_seed(individual.seed)
            generator = torch.Generator().manual_seed(individual.seed)
            model = model_for(cfg, self._channels, data.num_classes, generator).to(self.device)
            if parents_weights:
                states, factors = zip(*parents_weights)
                load_fused(model, states, factors)
                if len(states) > 1 and cfg.bn_reestimate_batches:
                    size = cfg.batch_size or budget.batch_size
                    inputs = (x for x, _ in batches(data.train, size, shuffle=True, generator=generator))
                    reestimate_batchnorm(model, itertools.islice(inputs, cfg.bn_reestimate_batches), self.device)
            hashes["initial_weights_hash"] = state_dict_hash(model.state_dict())
            start = time.perf_counter()
            history, backwards = train(model, cfg, data, budget, self.device, generator)
            seconds = time.perf_counter() - start
            metrics = measure(model, data, self.device)
        metrics["train_seconds"] = seconds
        # what a comparison counts as training spent, and what it trained on
        metrics["epochs"] = float(budget.epochs)
        metrics["backward_passes"] = backwards
        metrics["image_size"] = float(budget.image_size)
        hashes["trained_weights_hash"] = state_dict_hash(model.state_dict())
        weights = to_shareable(model.state_dict()) if return_weights else None
        if weights is not None:
            metrics["weights_bytes"] = float(sum(w.nbytes for w in weights.values()))
        return metrics, history, weights


def describe_error(e: BaseException) -> str:
    """The exception in one line, then where it happened (the last three frames)."""
    frames = traceback.format_tb(e.__traceback__)[-3:]
    return f"{type(e).__name__}: {e}\n" + "".join(frames)
