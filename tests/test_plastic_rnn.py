"""The plastic recurrent network of paper 004: genome sizes, pattern codes and rule lookups by hand,
the vectorised population pass against the per-individual reference, gradients for the baseline."""

import dataclasses

import pytest
import torch

from popplast.plasticity.plastic_rnn import (
    PlasticNet,
    forward,
    genome_size,
    plastic_pass,
    population_accuracy,
    rule_sizes,
    single_accuracy,
)


@pytest.mark.parametrize("rounds, sizes, total", [(1, (4, 16, 8), 28), (2, (8, 64, 16), 88), (3, (16, 256, 32), 304)])
def test_genome_sizes(rounds, sizes, total):
    assert rule_sizes(rounds) == sizes and genome_size(rounds) == total


def hand_net(eta: float = 1.0) -> PlasticNet:
    """3 hidden units, 1 input, 2 classes, cap 1, one recurrent round; every mask entry on except self-loops."""
    w_in = torch.tensor([[1.0], [2.0], [3.0]])
    w_g = torch.tensor([[0.0, 0.0, 5.0], [0.0, 0.0, 0.0], [0.0, 0.0, 0.0]])
    w_out = torch.tensor([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0]])
    return PlasticNet(
        torch.ones(3, 1, dtype=torch.bool), ~torch.eye(3, dtype=torch.bool), w_in, w_g, w_out, cap=1, rounds=1, eta=eta
    )


def test_pattern_codes_hand_worked():
    # u = W_in x = [1, 2, 3] → h0 keeps unit 2 only: bits (0, 0, 1)
    # W_g (h0 + u) = [5·(3 + σ(3)), 0, 0] → h1 keeps unit 0: bits (1, 0, 0)
    # code = 2·bit0 + bit1 (h0 most significant): unit 0 → 01 = 1, unit 1 → 00 = 0, unit 2 → 10 = 2
    net = hand_net()
    logits, codes = forward(net.w_in[None], net.w_g[None], net.w_out[None], torch.tensor([[1.0]]), 1, 1)
    assert codes[0, 0].tolist() == [1, 0, 2]
    assert logits[0, 0].tolist() == pytest.approx(
        [torch.sigmoid(torch.tensor(5 * (3 + torch.sigmoid(torch.tensor(3.0)).item()))).item(), 0.0]
    )


def test_rule_lookup_and_update_hand_worked():
    """One sample, η = 1: each weight moves by its table entry, then columns are scaled to unit norm."""
    net = hand_net()
    r_in = torch.tensor([10.0, 11.0, 12.0, 13.0])  # indexed by P_post
    r_g = 100 + torch.arange(16.0)  # index P_pre·4 + P_post
    r_out = 200 + torch.arange(8.0)  # index P·2 + is_label
    genome = torch.cat([r_in, r_g, r_out])[None]
    codes, label = [1, 0, 2], 1
    d_in = torch.tensor([[r_in[c].item()] for c in codes])  # [[11], [10], [12]]
    d_g = torch.tensor([[0.0 if i == j else r_g[codes[j] * 4 + codes[i]].item() for j in range(3)] for i in range(3)])
    d_out = torch.tensor([[r_out[codes[i] * 2 + int(c == label)].item() for i in range(3)] for c in range(2)])
    assert d_g[0, 2] == 109 and d_g[2, 0] == 106 and d_out.tolist() == [[202, 200, 204], [203, 201, 205]]
    unit = lambda w: w / w.norm(dim=0, keepdim=True)  # noqa: E731
    w_in, w_g, w_out = plastic_pass(genome, net, torch.tensor([[1.0]]), torch.tensor([label]))
    assert torch.allclose(w_in[0], unit(net.w_in + d_in))
    assert torch.allclose(w_g[0], unit(net.w_g + d_g))
    assert torch.allclose(w_out[0], unit(net.w_out + d_out))


def test_a_correctly_classified_sample_changes_no_weight():
    """update: misclassified: a sample the network gets right is no update, so the (unnormalised) initial
    weights stay as they are; the population pass once normalised them anyway."""
    net = dataclasses.replace(hand_net(), misclassified_only=True)
    genome = torch.randn(1, genome_size(1), generator=torch.Generator().manual_seed(0))
    label = 0  # the hand-worked logits are [σ(5·(3 + σ(3))), 0]: class 0 wins
    w_in, w_g, w_out = plastic_pass(genome, net, torch.tensor([[1.0]]), torch.tensor([label]))
    assert torch.equal(w_in[0], net.w_in) and torch.equal(w_g[0], net.w_g) and torch.equal(w_out[0], net.w_out)
    moved = plastic_pass(genome, net, torch.tensor([[1.0]]), torch.tensor([1]))  # wrong: it learns
    assert not torch.equal(moved[2][0], net.w_out)


@pytest.mark.parametrize("seed", range(6))
@pytest.mark.parametrize("misclassified_only", [False, True])
def test_population_pass_equals_a_loop_over_individuals(misclassified_only, seed):
    g = torch.Generator().manual_seed(seed)
    net = PlasticNet.random(6, 12, 3, 5, 2, 0.5, g, misclassified_only=misclassified_only)
    genomes = torch.randn(9, genome_size(2), generator=g, dtype=torch.float64)
    x = torch.randn(40, 6, generator=g, dtype=torch.float64)
    y = torch.randint(0, 3, (40,), generator=g)
    x_eval = torch.randn(25, 6, generator=g, dtype=torch.float64)
    y_eval = torch.randint(0, 3, (25,), generator=g)
    together = population_accuracy(genomes, net, x, y, x_eval, y_eval)
    one_by_one = torch.tensor([single_accuracy(r, net, x, y, x_eval, y_eval) for r in genomes], dtype=torch.float64)
    assert torch.allclose(together, one_by_one, atol=1e-6)
    assert len(set(together.tolist())) > 1, "the individuals must differ for the comparison to mean anything"


def test_gradients_reach_every_rule_table():
    g = torch.Generator().manual_seed(0)
    net = PlasticNet.random(5, 10, 3, 4, 2, 0.6, g, dtype=torch.float32)
    rules = torch.randn(1, genome_size(2), generator=g, requires_grad=True)
    x, y = torch.randn(30, 5, generator=g), torch.randint(0, 3, (30,), generator=g)
    weights = plastic_pass(rules, net, x, y)
    logits, _ = forward(*weights, x, net.cap, net.rounds)
    torch.nn.functional.cross_entropy(logits[0], y).backward()
    a, b, _ = rule_sizes(2)
    grad = rules.grad[0]
    assert grad[:a].abs().sum() > 0 and grad[a : a + b].abs().sum() > 0 and grad[a + b :].abs().sum() > 0


def test_cap_keeps_exactly_k_units():
    g = torch.Generator().manual_seed(1)
    net = PlasticNet.random(4, 15, 2, 6, 3, 0.5, g, dtype=torch.float32)
    _, codes = forward(net.w_in[None], net.w_g[None], net.w_out[None], torch.randn(7, 4, generator=g), 6, 3)
    bits = torch.stack([(codes >> k) & 1 for k in range(4)])  # (rounds + 1, P, B, n)
    assert (bits.sum(dim=-1) == 6).all()


@pytest.mark.gpu
def test_population_pass_on_cuda_equals_cpu():
    g = torch.Generator().manual_seed(4)
    net = PlasticNet.random(10, 20, 4, 10, 3, 0.5, g, dtype=torch.float64)
    genomes = torch.randn(32, genome_size(3), generator=g, dtype=torch.float64)
    x, y = torch.randn(50, 10, generator=g, dtype=torch.float64), torch.randint(0, 4, (50,), generator=g)
    cpu = population_accuracy(genomes, net, x, y, x, y)
    cuda = population_accuracy(genomes.cuda(), net.to("cuda"), x.cuda(), y.cuda(), x.cuda(), y.cuda())
    assert torch.allclose(cpu, cuda.cpu(), atol=1e-6)


@pytest.mark.gpu
def test_the_per_individual_reference_on_cuda_equals_cpu():
    g = torch.Generator().manual_seed(5)
    net = PlasticNet.random(10, 20, 4, 10, 3, 0.5, g, dtype=torch.float64)
    genomes = torch.randn(3, genome_size(3), generator=g, dtype=torch.float64)
    x, y = torch.randn(30, 10, generator=g, dtype=torch.float64), torch.randint(0, 4, (30,), generator=g)
    on_cuda = net.to("cuda")
    for rules in genomes:
        cpu = single_accuracy(rules, net, x, y, x, y)
        assert cpu == single_accuracy(rules.cuda(), on_cuda, x.cuda(), y.cuda(), x.cuda(), y.cuda())
