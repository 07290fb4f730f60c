"""The benchmark task on which search methods differ (docs/experiments.md, "A benchmark where methods differ"):
a small CNN on corrupted digits, where the configuration decides much more than on the demo's clean digits.

Data: scikit-learn's bundled 8×8 digits (the UCI optdigits test set, Alpaydin & Kaynak 1998), corrupted once
with a fixed seed: each image shifted by up to one pixel, Gaussian pixel noise (σ 0.2 on a 0–1 scale), and
30% of the training labels replaced by random ones (symmetric label noise, as in the noisy-label literature's
standard protocol). Split 50/25/25, stratified; validation and test labels are clean. Nothing is downloaded.

Model: conv(1→c) → ReLU → conv(c→c) → ReLU → max-pool 2 → dropout → linear(16c → 10), trained with the
chosen optimizer for `trial.fidelity.epochs` epochs, reporting its validation MCC after each (so stoppers
can judge it); `metaplastic_b` switches on metaplastic conv updates (paper 000,
popplast.plasticity.metaplasticity; 0 is plain training). An inherited state is loaded when its shapes fit.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

LABEL_NOISE = 0.3
PIXEL_NOISE = 0.2


_DATA: dict[int, tuple] = {}  # made once per worker process (not functools.lru_cache: Ray ships this module by value)


def data(seed: int = 0) -> tuple:
    if seed not in _DATA:
        _DATA[seed] = _make(seed)
    return _DATA[seed]


def _make(seed: int) -> tuple:
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    digits = load_digits()
    rng = np.random.default_rng(seed)
    x = digits.images.astype(np.float32) / 16.0
    shifted = np.zeros_like(x)
    for k, (dy, dx) in enumerate(rng.integers(-1, 2, size=(len(x), 2))):
        shifted[k] = np.roll(np.roll(x[k], dy, axis=0), dx, axis=1)
    x = np.clip(shifted + rng.normal(0.0, PIXEL_NOISE, size=x.shape).astype(np.float32), 0.0, 1.0)
    y = digits.target
    x_train, x_rest, y_train, y_rest = train_test_split(x, y, test_size=0.5, stratify=y, random_state=seed)
    x_val, x_test, y_val, y_test = train_test_split(x_rest, y_rest, test_size=0.5, stratify=y_rest, random_state=seed)
    noisy = rng.random(len(y_train)) < LABEL_NOISE
    y_train = np.where(noisy, rng.integers(0, 10, size=len(y_train)), y_train)

    def tensors(a, b):
        return torch.tensor(a).unsqueeze(1), torch.tensor(b, dtype=torch.long)

    return tensors(x_train, y_train), tensors(x_val, y_val), tensors(x_test, y_test)


def model(width: int, dropout: float) -> nn.Module:
    return nn.Sequential(
        nn.Conv2d(1, width, 3, padding=1),
        nn.ReLU(),
        nn.Conv2d(width, width, 3, padding=1),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Flatten(),
        nn.Dropout(dropout),
        nn.Linear(16 * width, 10),
    )


def optimizer(name: str, params, lr: float, weight_decay: float) -> torch.optim.Optimizer:
    if name == "sgd":
        return torch.optim.SGD(params, lr=lr, momentum=0.9, weight_decay=weight_decay)
    if name == "adam":
        return torch.optim.Adam(params, lr=lr, weight_decay=weight_decay)
    if name == "rmsprop":
        return torch.optim.RMSprop(params, lr=lr, weight_decay=weight_decay)
    raise ValueError(f"unknown optimizer {name!r}")


def mcc(logits: torch.Tensor, y: torch.Tensor) -> float:
    from sklearn.metrics import matthews_corrcoef

    return float(matthews_corrcoef(y.numpy(), logits.argmax(1).numpy()))


def fit(config, trial):
    from popplast.plasticity.metaplasticity import Metaplasticity

    (x, y), (x_val, y_val), (x_test, y_test) = data()
    width = int(config["width"])
    if trial.fusion.init == "shared":  # every network of this width starts from the same weights
        with torch.random.fork_rng():
            torch.manual_seed(trial.init_seed(f"width-{width}"))
            net = model(width, float(config["dropout"]))
    else:
        net = model(width, float(config["dropout"]))
    inherited = trial.inherited_state(net, x_val[:2])  # fusion.align: weight_matching aligns to `net` first
    if inherited is not None and all(
        k in inherited and inherited[k].shape == v.shape for k, v in net.state_dict().items()
    ):
        net.load_state_dict(inherited)
        if trial.inherited_from > 1:  # what the fusion gave, before any training
            net.eval()
            with torch.no_grad():
                trial.fused(val_mcc=mcc(net(x_val), y_val))
    elif inherited is not None:
        trial.set_tag("inherited", f"nothing: width {width} differs from the inherited state's")
    opt = optimizer(config["optimizer"], net.parameters(), float(config["lr"]), float(config["weight_decay"]))
    size = float(sum(p.numel() for p in net.parameters()))  # the second objective of noisy_digits_pareto.yaml
    generator = torch.Generator().manual_seed(trial.seed)
    value = 0.0
    with Metaplasticity(net, b=float(config["metaplastic_b"])):
        for epoch in range(1, trial.fidelity.epochs + 1):
            net.train()
            for batch in torch.randperm(len(x), generator=generator).split(int(config["batch_size"])):
                opt.zero_grad()
                loss = nn.functional.cross_entropy(net(x[batch]), y[batch])
                if not torch.isfinite(loss):  # diverged: it predicts nothing better than a constant
                    break
                loss.backward()
                opt.step()
            net.eval()
            with torch.no_grad():
                value = mcc(net(x_val), y_val) if torch.isfinite(loss) else 0.0
            trial.report(epoch, val_mcc=value, params=size)  # both: a multi-objective stopper judges them together
            if trial.should_stop():
                break
    with torch.no_grad():
        test = mcc(net(x_test), y_test) if torch.isfinite(loss) else 0.0
    return {"val_mcc": value, "test_mcc": test, "epochs": float(epoch), "params": size}, net.state_dict()
