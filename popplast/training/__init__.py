"""Training: data, models, losses, optimizers, the train loop and the evaluator (torch)."""
