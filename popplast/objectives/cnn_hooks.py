"""popplast's CNN trainer's hooks around a search (objectives/hooks.py): its names, data and pretrained
weights checked in the driver first (cnn_prepare.py), and its answer, a trained model (cnn_model.py):
Gen-Soup's and PBT's best individual as trained, or with `--retrain` the best configuration trained again at
the file's final fidelity."""

from __future__ import annotations

from typing import Any, Callable

from popplast.spec.search import SearchSpec


class CNNHooks:
    label = "validation MCC"

    def __init__(self) -> None:
        self.shape = (0, 0)  # (native channels, classes) of the data set, once prepared

    def check(self, spec: SearchSpec, entry: Any, retrain: bool) -> None:
        pass  # the trainer runs with every method and option

    def prepare(self, spec: SearchSpec, say: Callable[[str], None]) -> None:
        from popplast.objectives.cnn_prepare import preflight

        self.shape = preflight(spec, say)

    def answer(self, spec: SearchSpec, outcome: Any, workers: Any, tracker: Any, result: Any, retrain: bool) -> None:
        from popplast.objectives.cnn_model import log_soup_model, retrain_best

        if outcome.best_weights is not None:  # an inheriting method's best, as trained
            log_soup_model(spec, outcome, workers, tracker, result, self.shape)
        if retrain:
            retrain_best(spec, workers, tracker, result, self.shape)
