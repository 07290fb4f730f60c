"""Why evolved rules can generalise far below chance (issue 15, item 4); prints the evidence as a table.

    .venv/bin/python benchmarks/rules_generalisation_probe.py [--generations 100] [--seed 1]

Evolves rules as `popplast evolve-rules search_spaces/rules_classification.yaml --generations 100 --seed 1`
(local executor, a temporary MLflow store), then measures the rules under both protocols (one batch of 100
from reset weights; 50 online passes with the weights never reset) on the task they were evolved on and on
the fresh generalisation task, with three controls: training labels shuffled or all 0 (does the fitness use
the labels?), the output rule made label-blind (its is_label entries set to its other entries), and the
output rule's two columns swapped (is the label's role inverted?). A logistic regression on the fresh split
checks that its train and test labels agree (a class-order mismatch would show here).
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import tempfile

import numpy as np
import torch

SPACE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "search_spaces", "rules_classification.yaml")


def online(genome, net, data, passes):
    from popplast.plasticity.plastic_rnn import frozen_accuracy, plastic_pass

    weights = None
    with torch.no_grad():
        for _ in range(passes):
            weights = plastic_pass(genome, net, data.x_train, data.y_train, start=weights)
        return float(frozen_accuracy(weights, net, data.x_test, data.y_test)[0])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--generations", type=int, default=100)
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    from sklearn.linear_model import LogisticRegression

    from popplast.plasticity.plastic_rnn import rule_sizes
    from popplast.search.evolve_rules import evolve_rules
    from popplast.spec.rules import RulesSpec
    from popplast.training.rule_evaluator import RuleEvaluator, batch_protocol, build_network
    from popplast.training.rule_tasks import generalisation_task

    torch.set_num_threads(2)
    spec = RulesSpec.from_yaml(SPACE).with_overrides(generations=args.generations, seed=args.seed)
    with tempfile.TemporaryDirectory() as tmp:
        result = evolve_rules(spec, executor="local", tracking_uri=f"sqlite:///{tmp}/m.db", progress=False)
    print(
        f"evolve-rules: train {result.train_accuracy:.3f}, test {result.test_accuracy:.3f}, generalisation "
        f"online {result.generalisation_accuracy:.3f}, one batch {result.generalisation_batch_accuracy:.3f}, "
        f"chance {result.chance:.2f}\n"
    )
    rules = np.asarray(result.rules)
    evaluator = RuleEvaluator(spec, threads=2)
    original, net = evaluator.data, evaluator.net
    fresh = generalisation_task(spec.task, spec.generalisation)
    fresh_net = build_network(spec, fresh)
    batch, passes = spec.strategy.batch_size, spec.generalisation.passes
    a, b, _ = rule_sizes(spec.network.rounds)
    out = rules[a + b :].reshape(-1, 2)  # r_out[code, is_label]
    variants = {
        "as evolved": rules,
        "output rule label-blind": _with_out(rules, a + b, np.stack([out[:, 0]] * 2, 1)),
        "output rule's label columns swapped": _with_out(rules, a + b, out[:, ::-1]),
    }
    print(
        "| rules | original task, one batch from reset (test) | original task, 50 online passes (test) | "
        "fresh task, one batch from reset (test) | fresh task, 50 online passes (test) |"
    )
    print("|---|---|---|---|---|")
    for name, vector in variants.items():
        g = torch.tensor(vector[None], dtype=torch.float32)
        cells = [
            batch_protocol(g, net, original, batch, "cpu")["test_accuracy"],
            online(g, net, original, passes),
            batch_protocol(g, fresh_net, fresh, batch, "cpu")["test_accuracy"],
            online(g, fresh_net, fresh, passes),
        ]
        print(f"| {name} | " + " | ".join(f"{c:.3f}" for c in cells) + " |")
    g = torch.tensor(rules[None], dtype=torch.float32)
    shuffled = torch.as_tensor(np.random.default_rng(0).permutation(len(original.y_train)))
    controls = {
        "true labels": original,
        "training labels shuffled": dataclasses.replace(original, y_train=original.y_train[shuffled]),
        "every training label 0": dataclasses.replace(original, y_train=torch.zeros_like(original.y_train)),
    }
    print("\n| original task, one batch from reset, labels the plastic pass sees | train | test |\n|---|---|---|")
    for name, data in controls.items():
        m = batch_protocol(g, net, data, batch, "cpu")
        print(f"| {name} | {m['train_accuracy']:.3f} | {m['test_accuracy']:.3f} |")
    check = LogisticRegression(max_iter=1000).fit(fresh.x_train.numpy(), fresh.y_train.numpy())
    score = check.score(fresh.x_test.numpy(), fresh.y_test.numpy())
    print(f"\nlogistic regression on the fresh task: test accuracy {score:.3f}")


def _with_out(rules: np.ndarray, start: int, out: np.ndarray) -> np.ndarray:
    changed = rules.copy()
    changed[start:] = out.reshape(-1)
    return changed


if __name__ == "__main__":
    main()
