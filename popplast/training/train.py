"""Train one model at one fidelity, and measure it."""

from __future__ import annotations

import contextlib
from typing import Callable, Iterator

import numpy as np
import torch
from torch import nn

from popplast.plasticity.astrocytes import Astrocytes
from popplast.plasticity.metaplasticity import Metaplasticity
from popplast.plasticity.positionwise import PositionWise, blocks_of
from popplast.spec.search import Fidelity
from popplast.training.config import TrainConfig
from popplast.training.data import SplitData, batches
from popplast.training.losses import LOSSES
from popplast.training.metrics import classification_metrics
from popplast.training.optimizers import OPTIMIZERS


def train(
    model: nn.Module,
    config: TrainConfig,
    data: SplitData,
    fidelity: Fidelity,
    device: torch.device,
    generator: torch.Generator,
    after_epoch: Callable[[int, float], bool] | None = None,
) -> tuple[list[float], float]:
    """Train for `fidelity.epochs`; returns the mean training loss of each epoch and the gradient work done,
    in backward passes through the whole model (a position-wise step through K blocks is (K+1)/2 of them;
    LBFGS may take several per step). `after_epoch(epoch, loss)` returning True ends training there (an
    early-stopping rule's verdict).

    Raises FloatingPointError as soon as the loss is not finite, so a diverging individual fails fast.
    """
    loss_fn = LOSSES[config.loss]
    entry = OPTIMIZERS[config.optimizer]
    optimizer = entry.build(model.parameters(), config.lr_scale, config.weight_decay)
    l2 = 0.0 if entry.takes_weight_decay else config.weight_decay
    scheduler = None
    if fidelity.scheduler == "cosine":
        scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(
            optimizer, T_max=fidelity.epochs, eta_min=0.1 * config.learning_rate
        )
    # an ndhtl head learns from episodes: one batch is one episode of K images
    batch_size = config.ndhtl_episode if config.head == "ndhtl" else (config.batch_size or fidelity.batch_size)
    stepper = PositionWise(blocks_of(model), optimizer) if entry.position_wise else None
    history, backwards = [], 0
    with _astrocytes(model, optimizer, config), Metaplasticity(model, config.metaplastic_b):
        for epoch in range(fidelity.epochs):
            model.train()
            total, count = 0.0, 0
            for step, (x, y) in enumerate(batches(data.train, batch_size, shuffle=True, generator=generator)):
                x, y = x.to(device), y.to(device)

                def closure(x: torch.Tensor = x, y: torch.Tensor = y) -> torch.Tensor:
                    nonlocal backwards
                    backwards += 1
                    optimizer.zero_grad(set_to_none=True)
                    loss = loss_fn(model(x), y)
                    if l2:
                        loss = loss + 0.5 * l2 * sum(p.pow(2).sum() for p in model.parameters())
                    loss.backward()
                    return loss

                if stepper is not None:
                    loss = stepper.step(x, y, loss_fn)
                else:
                    loss = optimizer.step(closure)  # every torch optimizer takes a closure; LBFGS needs one
                value = float(loss.detach())
                if not np.isfinite(value):
                    raise FloatingPointError(f"the training loss became {value} at epoch {epoch + 1}, step {step + 1}")
                total += value * len(y)
                count += len(y)
            if scheduler is not None:
                scheduler.step()
            history.append(total / max(count, 1))
            if after_epoch is not None and after_epoch(epoch + 1, history[-1]):
                break
    if stepper is not None:
        backwards = stepper.block_backwards / len(stepper.blocks)
    return history, float(backwards)


@contextlib.contextmanager
def _astrocytes(model: nn.Module, optimizer: torch.optim.Optimizer, config: TrainConfig) -> Iterator[None]:
    """Artificial astrocytes on every Conv2d while training, when the configuration asks for them."""
    if not config.astrocytes:
        yield
        return
    astrocytes = Astrocytes(
        model,
        strong=1.0 if config.astro_str is None else config.astro_str,
        weak=1.0 if config.astro_weak is None else config.astro_weak,
        ng=config.astro_ng,
        sensitivity=config.astro_as,
        counter=config.astro_counter,
    )
    astrocytes.attach(optimizer)
    try:
        yield
    finally:
        astrocytes.remove()


@torch.no_grad()
def measure(model: nn.Module, data: SplitData, device: torch.device, batch_size: int = 256) -> dict[str, float]:
    """Accuracy, macro F1 and MCC on the validation and test splits."""
    return {
        **measure_split(model, data.val, device, "val", batch_size),
        **measure_split(model, data.test, device, "test", batch_size),
    }


@torch.no_grad()
def measure_split(
    model: nn.Module, dataset, device: torch.device, prefix: str, batch_size: int = 256
) -> dict[str, float]:
    """Accuracy, macro F1 and MCC on one split, as `PREFIX_accuracy`, ...; leaves the model in eval mode."""
    model.eval()
    truth, predicted = [], []
    for x, y in batches(dataset, batch_size, shuffle=False):
        logits = model(x.to(device))
        if not torch.isfinite(logits).all():
            raise FloatingPointError(f"the model outputs non-finite logits on the {prefix} split")
        predicted.append(logits.argmax(dim=1).cpu().numpy())
        truth.append(np.asarray(y))
    return classification_metrics(np.concatenate(truth), np.concatenate(predicted), prefix)
