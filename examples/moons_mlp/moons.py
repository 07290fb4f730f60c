"""A user's own torch model and training loop as a popplast objective: an MLP on scikit-learn's two moons.

Each call trains `trial.fidelity.epochs` epochs, starting from the state it inherits (Gen-Soup: the better
parent's weights or both parents' fused), and returns the validation loss (minimised), the validation accuracy
and the parameter count with its weights.
"""

import torch
from sklearn.datasets import make_moons
from torch import nn


def data(seed: int = 0):
    x, y = make_moons(n_samples=600, noise=0.25, random_state=seed)
    x, y = torch.tensor(x, dtype=torch.float32), torch.tensor(y, dtype=torch.long)
    return (x[:400], y[:400]), (x[400:], y[400:])


def model(hidden: int) -> nn.Module:
    return nn.Sequential(nn.Linear(2, hidden), nn.Tanh(), nn.Linear(hidden, hidden), nn.Tanh(), nn.Linear(hidden, 2))


def fit(config, trial):
    (x, y), (x_val, y_val) = data()
    torch.manual_seed(trial.seed)
    net = model(int(config["hidden"]))
    inherited = trial.inherited_state()
    if inherited is not None and all(inherited[k].shape == v.shape for k, v in net.state_dict().items()):
        net.load_state_dict(inherited)  # a parent of another width (moons_pareto.yaml) has nothing to give
    optimizer = torch.optim.Adam(net.parameters(), lr=config["lr"], weight_decay=config["weight_decay"])
    generator = torch.Generator().manual_seed(trial.seed)
    for epoch in range(1, trial.fidelity.epochs + 1):
        for batch in torch.randperm(len(x), generator=generator).split(32):
            optimizer.zero_grad()
            nn.functional.cross_entropy(net(x[batch]), y[batch]).backward()
            optimizer.step()
        with torch.no_grad():
            logits = net(x_val)
            val_loss = float(nn.functional.cross_entropy(logits, y_val))
        trial.report(epoch, val_loss=val_loss)
        if trial.should_stop():  # a stopper judged this epoch's report (False when the search has none)
            break
    accuracy = float((logits.argmax(1) == y_val).float().mean())
    params = float(sum(p.numel() for p in net.parameters()))  # moons_pareto.yaml's second objective
    return {"val_loss": val_loss, "val_accuracy": accuracy, "params": params}, net.state_dict()
