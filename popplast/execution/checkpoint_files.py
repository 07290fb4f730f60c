"""A checkpoint's files as they lie on disk, the format the loop writes (execution/checkpoint.py) and the
stores read back (tracking/checkpoint_store.py, tracking/journal.py): the state file's name, individual ids
checked before they become part of a path, and weights as plain arrays in an .npz with a digest, so that
reading a checkpoint never runs code and a file cut short or changed is refused."""

from __future__ import annotations

import hashlib
import os
import re
import zipfile
from typing import Any, Mapping

import numpy as np

ID_PATTERN = re.compile(r"g\d{3,}-i\d{3,}")
BFLOAT16 = "__bfloat16__"  # the .npz entry naming the arrays that hold bfloat16 bits (numpy has no bfloat16)


def write_weights(path: str, state: Mapping[str, Any]) -> str:
    """Weights in the form workers exchange them (numpy arrays) as an .npz of plain arrays: a bfloat16
    tensor is stored as its bits (uint16) and named in the BFLOAT16 entry. Nothing in it is pickled, so
    reading it can run no code. Returns its digest (weights_digest)."""
    arrays: dict[str, Any] = {}  # ndarrays; Any keeps **arrays off np.savez's allow_pickle keyword
    bfloat16 = []
    for key, value in state.items():
        if isinstance(value, np.ndarray):
            arrays[key] = value
        else:  # a torch bfloat16 tensor (training/weights.py keeps those as tensors)
            import torch  # only a bfloat16 entry needs it: execution stays importable without torch

            arrays[key] = value.detach().cpu().contiguous().view(torch.uint16).numpy()
            bfloat16.append(key)
    if bfloat16:
        arrays[BFLOAT16] = np.array(bfloat16)
    np.savez(path, **arrays)
    digest = weights_digest(path)
    assert digest is not None  # just written whole
    return digest


def read_weights(path: str) -> dict[str, Any]:
    """An .npz that write_weights wrote; one holding a pickled object is refused (ValueError from numpy)."""
    with np.load(path, allow_pickle=False) as data:
        arrays = {key: data[key] for key in data.files}
    bfloat16 = [str(k) for k in arrays.pop(BFLOAT16, ())]
    if bfloat16:
        import torch

        for key in bfloat16:
            arrays[key] = torch.from_numpy(arrays[key].copy()).view(torch.bfloat16)
    return arrays


def weights_digest(path: str) -> str | None:
    """A digest of a weights file, recorded in the state file and checked on resume: SHA-256 over the
    file's size and its members' names, CRC-32s and sizes, read from the zip's central directory (not the
    whole file: hashing every byte tripled a checkpoint's cost). A file cut short has no central
    directory (None); whether the bytes still match those CRC-32s, `weights_whole` checks on resume.
    """
    try:
        with zipfile.ZipFile(path) as archive:
            members = sorted((i.filename, i.CRC, i.file_size) for i in archive.infolist())
    except (zipfile.BadZipFile, OSError):
        return None
    return hashlib.sha256(repr((os.path.getsize(path), members)).encode()).hexdigest()


def weights_whole(path: str, digest: str | None) -> bool:
    """A downloaded weights file is the one the state file recorded (`digest`; None: an older checkpoint
    without digests) and every member's bytes match their CRC-32 (a full read: resume only)."""
    if digest is not None and weights_digest(path) != digest:
        return False
    try:
        with zipfile.ZipFile(path) as archive:
            return archive.testzip() is None
    except (zipfile.BadZipFile, OSError):
        return False


def check_id(name: str, where: str) -> str:
    """An individual id read from a checkpoint, before it becomes part of a path."""
    if not ID_PATTERN.fullmatch(name):
        raise CheckpointError(f"{where} names the weights {name!r}, which is no individual id (gNNN-iNNN)")
    return name


class CheckpointError(ValueError):
    """A checkpoint that popplast did not write as it reads it: refused, never interpreted."""


def state_file(generation: int) -> str:
    return f"state-g{generation:04d}.json"


STATE_FILE = re.compile(r"state-g(\d+)\.json")


def is_state_file(path: str) -> bool:
    """Whether `path` names a state file (state_file's name), whatever folder it is in."""
    return STATE_FILE.fullmatch(os.path.basename(path)) is not None
