"""popplast's CNN trainer as an objective, on the protocol users' objectives get: `fit(config, trial)`.

A search file that names no objective gets this one: genome's configuration → trained CNN → validation MCC
(the fitness) and the test metrics. Children of Gen-Soup and PBT start from `trial.parents`, fused straight
into the new model's tensors (training/fusion.py, `load_fused`), and with several parents the BatchNorm
statistics are re-estimated; the trained state goes back for the children.
"""

from __future__ import annotations

import itertools
import time
from typing import Any, Mapping

import torch

from popplast.objectives.function import FunctionEvaluator
from popplast.objectives.trial import Trial
from popplast.spec.fitness import FitnessSpec
from popplast.spec.search import DatasetSpec, Fidelity
from popplast.spec.strategy import PLAIN_FUSION, FusionSpec
from popplast.training.build import model_for, split_for
from popplast.training.config import resolve
from popplast.training.data import batches, native_channels
from popplast.training.fusion import align_parents, load_fused, reestimate_batchnorm
from popplast.training.train import measure, measure_split, train
from popplast.training.weights import state_dict_hash

FITNESS = FitnessSpec("val_mcc", "maximize")


class CNNObjective:
    """Trains one individual's CNN; a worker builds one, and its data splits are loaded once per image size
    and cached in the process.

    Args:
        dataset: the data set.
        fixed: hyperparameters that are not genes.
    """

    def __init__(self, dataset: DatasetSpec, fixed: Mapping[str, Any] | None = None) -> None:
        self.dataset = dataset
        self.fixed = dict(fixed or {})
        self._channels = native_channels(dataset)

    def __call__(self, config: Mapping[str, Any], trial: Trial) -> tuple[dict[str, float], dict[str, torch.Tensor]]:
        cfg = resolve(config, self.fixed)
        budget = trial.fidelity
        device = torch.device(trial.device)
        data = split_for(self.dataset, cfg, budget, self._channels)
        generator = torch.Generator().manual_seed(trial.seed)
        if trial.fusion.init == "shared":  # the same weights for every individual of the architecture
            model = _shared_init(cfg, self._channels, data.num_classes, trial.init_seed(cfg.architecture))
        else:
            model = model_for(cfg, self._channels, data.num_classes, generator)
        model = model.to(device)
        if trial.parents:
            states, factors = zip(*trial.parents)
            if len(states) > 1 and trial.fusion.align == "weight_matching":
                example = next(iter(batches(data.val, 2, shuffle=False)))[0].to(device)
                states, trial.tags["fusion_alignment"] = align_parents(model, states, example, trial.seed)
            load_fused(model, states, factors)
            reestimated = _bn_batches(cfg, trial) if len(states) > 1 else 0
            if reestimated:
                size = cfg.batch_size or budget.batch_size
                inputs = (x for x, _ in batches(data.train, size, shuffle=True, generator=generator))
                reestimate_batchnorm(model, itertools.islice(inputs, reestimated), device)
            if len(states) > 1:  # what the fusion itself gave, before any training (ALGORITHMS.md §12)
                try:
                    trial.fused(**measure_split(model, data.val, device, "val"))
                except FloatingPointError as e:  # the fused model diverges: training may still recover it
                    trial.set_tag("fused", f"not measured: {e}")
        trial.set_tag("initial_weights_hash", state_dict_hash(model.state_dict()))
        start = time.perf_counter()
        watching = trial.watched is not None
        history, backwards = train(model, cfg, data, budget, device, generator, _judged(trial, model, data, device))
        seconds = time.perf_counter() - start
        if not watching:
            for epoch, loss in enumerate(history, start=1):
                trial.report(epoch, train_loss=loss)
        metrics = measure(model, data, device)
        trial.set_tag("trained_weights_hash", state_dict_hash(model.state_dict()))
        # what a comparison counts as training spent, and what it trained on
        metrics.update(
            train_seconds=seconds,
            epochs=float(len(history)),  # fewer than the budget's when a stopper stopped it
            backward_passes=float(backwards),
            image_size=float(budget.image_size),
        )
        return metrics, model.state_dict()


ALIGNED_BN_BATCHES = 4  # an aligned fusion re-estimates BatchNorm statistics (§12) on this many batches unless set


def _bn_batches(cfg: Any, trial: Trial) -> int:
    """The batches BatchNorm statistics are re-estimated on after a fusion: `bn_reestimate_batches`; an aligned
    fusion always re-estimates them (ALGORITHMS.md §12), on ALIGNED_BN_BATCHES when the setting is 0."""
    if trial.fusion.align == "weight_matching":
        return cfg.bn_reestimate_batches or ALIGNED_BN_BATCHES
    return cfg.bn_reestimate_batches


def _shared_init(cfg: Any, channels: int, classes: int, seed: int) -> torch.nn.Module:
    """The model built from `seed` alone: torch's generator (which layers initialise from) and the heads'
    generator both seeded by it, and torch's restored afterwards, so training draws as the trial's seed says."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return model_for(cfg, channels, classes, torch.Generator().manual_seed(seed))


def _judged(trial: Trial, model: torch.nn.Module, data: Any, device: torch.device) -> Any:
    """With a stopper watching: each epoch's training loss and validation metrics reported, and its verdict
    asked (the validation pass runs without gradients or random draws, so the training is unchanged)."""
    if trial.watched is None:
        return None

    def after_epoch(epoch: int, loss: float) -> bool:
        val = {} if trial.watched == "train_loss" else measure_split(model, data.val, device, "val")
        trial.report(epoch, train_loss=loss, **val)
        return trial.should_stop()

    return after_epoch


def cnn_evaluator(
    dataset: DatasetSpec,
    fidelity: Fidelity,
    fixed: Mapping[str, Any] | None = None,
    threads: int | None = None,
    device: str = "auto",
    fusion: FusionSpec = PLAIN_FUSION,
    search_seed: int = 0,
) -> FunctionEvaluator:
    """The evaluator of a search that names no objective: CNNObjective behind FunctionEvaluator."""
    return FunctionEvaluator(
        CNNObjective(dataset, fixed), FITNESS, fidelity, threads, device, fusion=fusion, search_seed=search_seed
    )
