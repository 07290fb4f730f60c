"""Recurrent network with plasticity-rule lookup tables (Joosten 2021, after Cristian et al. 2021; ALGORITHMS.md §7).

h0 = cap_k(σ(W_in x)); h_t = cap_k(σ(W_g (h_{t−1} + W_in x))) for t = 1..R; y = softmax(W_out h_R).
Unit i's pattern code P_i has R+1 bits, bit t = [h_t,i ≠ 0], h_0 the most significant (the paper's tables).
Rules, after each sample, with learning rate η:
    ΔW_in[i, j] = r_in[P_i]                    on the input mask        (2^(R+1) entries)
    ΔW_g[i, j]  = r_g[P_j, P_i]                on the recurrent graph   (2^(2R+2) entries, pre j, post i)
    ΔW_out[c, i] = r_out[P_i, c == label]                               (2^(R+2) entries)
then every presynaptic unit's outgoing weights are scaled to unit L2 norm (the paper's Appendix A fix).

Deviations: W_in x (not h_0) is added at every round, as ALGORITHMS.md §7 writes it; cap_k keeps exactly k
units (top-k of the pre-activations, which σ does not reorder). Shapes: P individuals, n hidden units, d inputs,
K classes, B samples.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch


def rule_sizes(rounds: int) -> tuple[int, int, int]:
    """Sizes of the input, hidden and output tables: 2^(R+1), 2^(2R+2), 2^(R+2)."""
    return 2 ** (rounds + 1), 2 ** (2 * rounds + 2), 2 ** (rounds + 2)


def genome_size(rounds: int) -> int:
    return sum(rule_sizes(rounds))


@dataclass(frozen=True)
class PlasticNet:
    """Structure and initial weights of one plastic network; every individual starts each pass from these."""

    mask_in: torch.Tensor  # (n, d) bool
    mask_g: torch.Tensor  # (n, n) bool, no self-loops
    w_in: torch.Tensor  # (n, d)
    w_g: torch.Tensor  # (n, n)
    w_out: torch.Tensor  # (K, n)
    cap: int
    rounds: int
    eta: float = 0.01
    misclassified_only: bool = False

    @classmethod
    def random(
        cls,
        inputs: int,
        hidden: int,
        classes: int,
        cap: int,
        rounds: int,
        p: float,
        generator: torch.Generator,
        eta: float = 0.01,
        misclassified_only: bool = False,
        dtype: torch.dtype = torch.float64,
    ) -> "PlasticNet":
        """Random input mask and recurrent graph with edge probability p; weights N(0, 1) on their edges."""
        if not 0 < cap <= hidden:
            raise ValueError(f"cap must be in 1..{hidden}, got {cap}")
        mask_in = torch.rand(hidden, inputs, generator=generator) < p
        mask_g = (torch.rand(hidden, hidden, generator=generator) < p) & ~torch.eye(hidden, dtype=torch.bool)
        normal = lambda *shape: torch.randn(*shape, generator=generator, dtype=dtype)  # noqa: E731
        return cls(
            mask_in,
            mask_g,
            normal(hidden, inputs) * mask_in,
            normal(hidden, hidden) * mask_g,
            normal(classes, hidden),
            cap,
            rounds,
            eta,
            misclassified_only,
        )

    def to(self, device: torch.device | str) -> "PlasticNet":
        move = {k: getattr(self, k).to(device) for k in ("mask_in", "mask_g", "w_in", "w_g", "w_out")}
        return PlasticNet(
            **move, cap=self.cap, rounds=self.rounds, eta=self.eta, misclassified_only=self.misclassified_only
        )


def split_rules(genomes: torch.Tensor, rounds: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(P, D) genomes → r_in (P, C), r_g (P, C, C) indexed [pre, post], r_out (P, C, 2) indexed [code, is_label]."""
    a, b, _ = rule_sizes(rounds)
    codes = 2 ** (rounds + 1)
    return (genomes[:, :a], genomes[:, a : a + b].reshape(-1, codes, codes), genomes[:, a + b :].reshape(-1, codes, 2))


def cap_k(z: torch.Tensor, k: int) -> torch.Tensor:
    """σ(z) on the k largest entries of the last dimension, 0 elsewhere."""
    keep = torch.zeros_like(z).scatter(-1, z.topk(k, dim=-1).indices, 1.0)
    return torch.sigmoid(z) * keep


def forward(
    w_in: torch.Tensor,
    w_g: torch.Tensor,
    w_out: torch.Tensor,
    x: torch.Tensor,
    cap: int,
    rounds: int,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Logits and pattern codes for every individual and sample.

    w_in (P, n, d), w_g (P, n, n), w_out (P, K, n), x (B, d) → logits (P, B, K), codes (P, B, n) int64.
    """
    u = torch.einsum("pnd,bd->pbn", w_in, x)  # W_in x
    h = cap_k(u, cap)
    codes = (h != 0).long()
    for _ in range(rounds):
        h = cap_k(torch.einsum("pnm,pbm->pbn", w_g, h + u), cap)
        codes = codes * 2 + (h != 0).long()
    return torch.einsum("pkn,pbn->pbk", w_out, h), codes


Weights = tuple[torch.Tensor, torch.Tensor, torch.Tensor]


def plastic_pass(
    genomes: torch.Tensor, net: PlasticNet, x: torch.Tensor, y: torch.Tensor, start: Weights | None = None
) -> Weights:
    """Show samples one at a time to P networks (one per rule vector), updating after each; no loop over P.

    genomes (P, D), x (B, d), y (B,) → final weights (W_in, W_g, W_out) of every individual, starting from
    `start` (default: the network's initial weights). Written without in-place updates so that gradients
    reach the rule tables (the gradient baseline).
    """
    r_in, r_g, r_out = split_rules(genomes, net.rounds)
    pop, dtype = genomes.shape[0], genomes.dtype
    codes_n = r_in.shape[1]
    r_g, r_out = r_g.reshape(pop, -1), r_out.reshape(pop, -1)  # flat tables: one gather per lookup
    mask_in, mask_g = net.mask_in.to(dtype), net.mask_g.to(dtype)
    initial = start or tuple(w.to(dtype).expand(pop, *w.shape) for w in (net.w_in, net.w_g, net.w_out))
    w_in, w_g, w_out = initial
    classes, hidden = net.w_out.shape
    labels = torch.arange(classes, device=x.device)
    x = x.to(dtype)
    for b in range(x.shape[0]):
        u = torch.matmul(w_in, x[b])  # (P, n)
        h = cap_k(u, net.cap)
        codes = (h != 0).long()
        for _ in range(net.rounds):
            h = cap_k(torch.bmm(w_g, (h + u).unsqueeze(-1)).squeeze(-1), net.cap)
            codes = codes * 2 + (h != 0).long()
        d_in = r_in.gather(1, codes).unsqueeze(-1) * mask_in  # (P, n, d)
        pair = codes.unsqueeze(1) * codes_n + codes.unsqueeze(2)  # [p, post i, pre j] → P_j·C + P_i
        d_g = r_g.gather(1, pair.reshape(pop, -1)).reshape(pop, hidden, hidden) * mask_g
        out = codes.unsqueeze(1) * 2 + (labels == y[b]).long().view(1, classes, 1)  # [p, c, i] → P_i·2 + is_label
        d_out = r_out.gather(1, out.reshape(pop, -1)).reshape(pop, classes, hidden)
        new = (
            _normalise_outgoing(w_in + net.eta * d_in),
            _normalise_outgoing(w_g + net.eta * d_g),
            _normalise_outgoing(w_out + net.eta * d_out),
        )
        if net.misclassified_only:  # a correct sample is no update at all: no step and no normalisation
            logits = torch.bmm(w_out, h.unsqueeze(-1)).squeeze(-1)
            wrong = (logits.argmax(-1) != y[b]).view(pop, 1, 1)
            new = tuple(torch.where(wrong, n, w) for n, w in zip(new, (w_in, w_g, w_out)))
        w_in, w_g, w_out = new
    return w_in, w_g, w_out


def _normalise_outgoing(w: torch.Tensor) -> torch.Tensor:
    """Scale each presynaptic unit's outgoing weights (a column: dim −2 indexes the targets) to unit norm."""
    return w / (w * w).sum(dim=-2, keepdim=True).sqrt().clamp_min(1e-12)


def frozen_accuracy(weights: Weights, net: PlasticNet, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """(P,) accuracies of networks with the given weights, no plasticity."""
    logits, _ = forward(*weights, x.to(weights[0].dtype), net.cap, net.rounds)
    return (logits.argmax(-1) == y).to(weights[0].dtype).mean(dim=1)


def population_accuracy(
    genomes: torch.Tensor,
    net: PlasticNet,
    x_learn: torch.Tensor,
    y_learn: torch.Tensor,
    x_eval: torch.Tensor,
    y_eval: torch.Tensor,
) -> torch.Tensor:
    """Fitness: plastic pass over (x_learn, y_learn) from the initial weights, then accuracy on (x_eval, y_eval)
    with the weights frozen. Returns (P,) accuracies."""
    with torch.no_grad():
        return frozen_accuracy(plastic_pass(genomes, net, x_learn, y_learn), net, x_eval, y_eval)


def single_accuracy(
    rules: torch.Tensor,
    net: PlasticNet,
    x_learn: torch.Tensor,
    y_learn: torch.Tensor,
    x_eval: torch.Tensor,
    y_eval: torch.Tensor,
) -> float:
    """The same fitness for one rule vector, written plainly for one network: the reference that the
    population version is tested against, and the per-individual baseline of benchmarks/plastic_population.py."""
    codes_n = 2 ** (net.rounds + 1)
    a, b, _ = rule_sizes(net.rounds)
    r_in, r_g, r_out = rules[:a], rules[a : a + b].reshape(codes_n, codes_n), rules[a + b :].reshape(codes_n, 2)
    w_in, w_g, w_out = net.w_in.clone(), net.w_g.clone(), net.w_out.clone()

    def run(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        u = w_in @ x
        h = cap_k(u, net.cap)
        code = (h != 0).long()
        for _ in range(net.rounds):
            h = cap_k(w_g @ (h + u), net.cap)
            code = code * 2 + (h != 0).long()
        return w_out @ h, code

    for x, label in zip(x_learn, y_learn):
        logits, code = run(x)
        if net.misclassified_only and int(logits.argmax()) == int(label):
            continue
        w_in += net.eta * r_in[code][:, None] * net.mask_in
        w_g += net.eta * r_g[code[None, :], code[:, None]] * net.mask_g
        w_out += (
            net.eta * r_out[code[None, :], (torch.arange(len(w_out), device=w_out.device)[:, None] == label).long()]
        )
        for w in (w_in, w_g, w_out):
            w /= w.norm(dim=0, keepdim=True).clamp_min(1e-12)
    correct = sum(int(run(x)[0].argmax()) == int(label) for x, label in zip(x_eval, y_eval))
    return correct / len(y_eval)
