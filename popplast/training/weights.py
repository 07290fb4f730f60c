"""Identity of trained weights: a short content hash of a state dict."""

from __future__ import annotations

import hashlib
from typing import Mapping

import torch


def state_dict_hash(state: Mapping[str, torch.Tensor]) -> str:
    """SHA-256 over every entry's name, dtype, shape and bytes, in key order; the first 16 hex digits.

    Equal for bit-identical weights, whatever device or process they came from, so individuals that share
    weights (an elite, a child that inherited them) show the same hash in MLflow.
    """
    digest = hashlib.sha256()
    for key in sorted(state):
        tensor = state[key].detach().cpu().contiguous()
        digest.update(f"{key}|{tensor.dtype}|{tuple(tensor.shape)}|".encode())
        digest.update(tensor.reshape(-1).view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()[:16]
