"""popplast's CNN trainer, an objective behind FunctionEvaluator: fitness is validation MCC; every failure comes back
as data, the process survives."""

import torch

from popplast.core.individual import Individual
from popplast.objectives.cnn import cnn_evaluator
from popplast.spec.search import DatasetSpec, Fidelity

FIDELITY = Fidelity(image_size=8, epochs=1, batch_size=64, max_train_samples=300)


def evaluate(config, seed=1):
    evaluator = cnn_evaluator(DatasetSpec("digits"), FIDELITY, threads=1)
    return evaluator.evaluate(Individual("g000-i000", (), 0, seed=seed), config)


def test_fitness_is_validation_mcc_and_metrics_are_complete():
    result = evaluate({"architecture": "small_vgg", "optimizer": "adam", "lr_scale": 3.0})
    assert result.ok and result.fitness == result.metrics["val_mcc"]
    assert {"val_accuracy", "val_f1", "test_accuracy", "test_f1", "test_mcc", "train_seconds"} <= set(result.metrics)
    assert len(result.history["train_loss"]) == 1


def test_gradient_work_and_image_size_are_recorded():
    """300 training samples in batches of 64: 5 steps. Plain Adam: one backward pass a step; position-wise
    through LeNet-5's K blocks: K(K+1)/2 block-backwards a step, (K+1)/2 whole-model passes."""
    from popplast.plasticity.positionwise import blocks_of
    from popplast.training.models import build_model

    k = len(blocks_of(build_model("lenet5", 1, 10)))
    plain = evaluate({"architecture": "lenet5", "optimizer": "adam"})
    stepped = evaluate({"architecture": "lenet5", "optimizer": "positionwise_adam"})
    assert plain.metrics["backward_passes"] == 5 and plain.metrics["image_size"] == 8
    assert k > 1 and stepped.metrics["backward_passes"] == 5 * (k + 1) / 2


def test_same_seed_same_result_and_global_rng_untouched():
    before = torch.random.get_rng_state()
    a = evaluate({"architecture": "lenet5"}, seed=3)
    b = evaluate({"architecture": "lenet5"}, seed=3)
    c = evaluate({"architecture": "lenet5"}, seed=4)
    assert a.metrics == {**b.metrics, "train_seconds": a.metrics["train_seconds"]}
    assert a.history == b.history != c.history
    assert torch.equal(before, torch.random.get_rng_state())


def test_diverging_training_is_a_failed_result():
    result = evaluate({"architecture": "small_vgg", "optimizer": "sgd", "lr_scale": 1e20})
    assert not result.ok and result.fitness is None
    assert result.error.startswith("FloatingPointError")


def test_an_exception_inside_training_is_a_failed_result():
    # inception_v3 needs at least 75×75 pixels: on 8×8 images its forward pass raises, and that comes back as data
    result = evaluate({"architecture": "inception_v3"})
    assert not result.ok and result.error and "\n" in result.error


def test_lbfgs_and_rprop_train():
    for optimizer in ("lbfgs", "rprop"):
        result = evaluate({"architecture": "lenet5", "optimizer": optimizer, "lr_scale": 0.1, "weight_decay": 1e-4})
        assert result.ok, result.error


def test_weight_hashes_identify_weights():
    a = evaluate({"architecture": "lenet5"}, seed=3)
    b = evaluate({"architecture": "lenet5"}, seed=3)
    c = evaluate({"architecture": "lenet5"}, seed=4)
    hashes = ("initial_weights_hash", "trained_weights_hash")
    assert [a.tags[k] for k in hashes] == [b.tags[k] for k in hashes]  # same seed: bit-identical weights
    assert float(a.tags["started"]) <= float(a.tags["ended"]) <= float(b.tags["started"])  # when each ran
    assert a.tags["initial_weights_hash"] != c.tags["initial_weights_hash"]
    assert a.tags["initial_weights_hash"] != a.tags["trained_weights_hash"]
    assert len(a.tags["trained_weights_hash"]) == 16
