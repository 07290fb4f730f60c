"""Fitness, final evaluation and the generalisation test of plasticity-rule vectors (paper 004's protocol)."""

from __future__ import annotations

import os
import socket
from dataclasses import dataclass

import numpy as np
import torch

from popplast.plasticity.plastic_rnn import (
    PlasticNet,
    forward,
    frozen_accuracy,
    genome_size,
    plastic_pass,
    population_accuracy,
)
from popplast.spec.rules import RulesSpec
from popplast.training.rule_tasks import RuleData, generalisation_task, load_task


def build_network(
    spec: RulesSpec,
    data: RuleData,
    device: str = "cpu",
    dtype: torch.dtype = torch.float32,
) -> PlasticNet:
    n = spec.network
    generator = torch.Generator().manual_seed(n.seed)
    net = PlasticNet.random(
        data.features,
        n.hidden,
        data.classes,
        n.cap,
        n.rounds,
        n.edge_probability,
        generator,
        eta=n.eta,
        misclassified_only=n.update == "misclassified",
        dtype=dtype,
    )
    return net.to(device)


class RuleEvaluator:
    """Holds the task and the network (built from seeds, so every worker has the same ones)."""

    def __init__(self, spec: RulesSpec, threads: int | None = None, device: str = "auto") -> None:
        if threads:
            torch.set_num_threads(threads)
        if device == "auto":
            device = "cuda" if torch.cuda.is_available() else "cpu"
        self.device = device
        self.spec = spec
        self.data = load_task(spec.task)
        self.net = build_network(spec, self.data, device)
        self.where = f"{socket.gethostname()}:{os.getpid()}"

    def _tensor(self, genomes: np.ndarray) -> torch.Tensor:
        return torch.as_tensor(genomes, dtype=torch.float32, device=self.device)

    def fitness(self, genomes: np.ndarray, batch: np.ndarray) -> np.ndarray:
        """Plastic pass over the training batch from reset weights, then accuracy on that batch, frozen."""
        x, y = self.data.x_train[batch].to(self.device), self.data.y_train[batch].to(self.device)
        return population_accuracy(self._tensor(genomes), self.net, x, y, x, y).cpu().numpy().astype(float)

    def final_accuracy(self, rules: np.ndarray) -> dict[str, float]:
        """Train: the fitness protocol averaged over every training batch. Test: after a plastic pass over a
        training batch, frozen accuracy on the whole test split, averaged over the training batches."""
        return batch_protocol(
            self._tensor(rules[None]), self.net, self.data, self.spec.strategy.batch_size, self.device
        )

    def generalisation(self, rules: np.ndarray) -> "Generalisation":
        """On a fresh data set, with the rules frozen: (1) the issue's test, one sample at a time for `passes`
        passes with the weights never reset; (2) the protocol the rules were selected under, a plastic pass
        over one batch from reset weights, then frozen accuracy on the fresh test split."""
        spec = self.spec.generalisation
        data = generalisation_task(self.spec.task, spec)
        net = build_network(self.spec, data, self.device)
        genome = self._tensor(rules[None])
        x, y = data.x_train.to(self.device), data.y_train.to(self.device)
        weights, curve = None, []
        with torch.no_grad():
            for _ in range(spec.passes):
                weights = plastic_pass(genome, net, x, y, start=weights)
                curve.append(float(frozen_accuracy(weights, net, x, y)[0]))
            test = float(frozen_accuracy(weights, net, data.x_test.to(self.device), data.y_test.to(self.device))[0])
        batches = batch_protocol(genome, net, data, self.spec.strategy.batch_size, self.device)
        return Generalisation(curve, test, batches["test_accuracy"])


def batch_protocol(genome: torch.Tensor, net: PlasticNet, data: RuleData, batch: int, device: str) -> dict[str, float]:
    """Mean over the training batches of: plastic pass from reset weights, then frozen accuracy on the batch
    (train) and on the whole test split (test)."""
    train, test = [], []
    x_test, y_test = data.x_test.to(device), data.y_test.to(device)
    with torch.no_grad():
        for start in range(0, len(data.y_train) - batch + 1, batch):
            x, y = data.x_train[start : start + batch].to(device), data.y_train[start : start + batch].to(device)
            weights = plastic_pass(genome, net, x, y)
            train.append(float(frozen_accuracy(weights, net, x, y)[0]))
            test.append(float(frozen_accuracy(weights, net, x_test, y_test)[0]))
    return {"train_accuracy": float(np.mean(train)), "test_accuracy": float(np.mean(test))}


@dataclass
class Generalisation:
    train_curve: list[float]  # frozen accuracy on the fresh training split after each online pass
    test_accuracy: float  # on the fresh test split after the last online pass
    batch_test_accuracy: float  # fresh data under the selection protocol (one batch from reset weights)


def train_rules_by_gradient(
    spec: RulesSpec, evaluator: RuleEvaluator, rng: np.random.Generator, on_step=None
) -> np.ndarray:
    """The paper's gradient comparison: rules trained with Adam through the unrolled plastic pass; the loss is
    cross-entropy on the batch shown again with the weights frozen. One step per generation, same batches."""
    s = spec.strategy
    rules = torch.tensor(
        rng.standard_normal(genome_size(spec.network.rounds)),
        dtype=torch.float32,
        device=evaluator.device,
        requires_grad=True,
    )
    optimizer = torch.optim.Adam([rules], lr=s.learning_rate)
    n_train = len(evaluator.data.y_train)
    for step in range(s.generations):
        batch = rng.choice(n_train, size=s.batch_size, replace=False)
        x = evaluator.data.x_train[batch].to(evaluator.device)
        y = evaluator.data.y_train[batch].to(evaluator.device)
        weights = plastic_pass(rules[None], evaluator.net, x, y)
        logits, _ = forward(*weights, x, evaluator.net.cap, evaluator.net.rounds)
        loss = torch.nn.functional.cross_entropy(logits[0], y)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        if on_step is not None:
            accuracy = float((logits[0].argmax(-1) == y).float().mean())
            on_step(step, {"loss": float(loss.detach()), "best": accuracy, "mean": accuracy})
    return rules.detach().cpu().numpy().astype(float)
