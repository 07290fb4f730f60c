"""Checkpoint files are data: a weights file carrying a pickled object is refused without running it, a
weights file cut short makes the resume fall back to the state before, an id that is no id never becomes a
path, and a resumed driver never rewrites weights already in the store."""

from __future__ import annotations

import json
import os
import pickle
import zipfile
from pathlib import Path

import numpy as np
import pytest
from mlflow import MlflowClient

import popplast
from popplast.errors import SpecError
from popplast.execution.checkpoint_files import read_weights, weights_digest, write_weights
from tests.helpers import individuals, lineage, write_user_objective

pytestmark = pytest.mark.slow


class _Marker:
    """Unpickling this writes the file its path names: the code a tampered checkpoint would run."""

    def __init__(self, path: str) -> None:
        self.path = path

    def __reduce__(self):
        return (open, (self.path, "w"))


@pytest.fixture
def soup(tmp_path):
    """A finished Gen-Soup search of a user's objective (3 generations, local): its checkpoint folder."""
    spec = write_user_objective(tmp_path / "project")
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    result = popplast.run(spec, method="gensoup", executor="local", tracking_uri=uri, progress=False)
    folder = Path(MlflowClient(uri).get_run(result.search_run_id).info.artifact_uri.removeprefix("file://"))
    return result, uri, folder / "checkpoint"


def _resume(result, uri, generations=4):
    return popplast.run(
        resume=result.search_run_id, generations=generations, executor="local", tracking_uri=uri, progress=False
    )


def _newest(checkpoint: Path) -> tuple[Path, dict]:
    path = sorted(checkpoint.glob("state-g*.json"))[-1]
    return path, json.loads(path.read_text())


def test_bfloat16_weights_are_stored_as_plain_arrays(tmp_path):
    import torch

    state = {"w": np.arange(6, dtype=np.float32).reshape(2, 3), "b": torch.tensor([1.5, -2.0], dtype=torch.bfloat16)}
    path = str(tmp_path / "w.npz")
    write_weights(path, state)
    with np.load(path, allow_pickle=False) as data:  # no entry needs unpickling
        assert {data[k].dtype for k in data.files} <= {np.dtype("float32"), np.dtype("uint16"), np.dtype("<U1")}
    back = read_weights(path)
    assert np.array_equal(back["w"], state["w"]) and torch.equal(back["b"], state["b"])


def test_a_pickled_object_in_a_weights_file_is_refused_and_never_run(soup, tmp_path):
    result, uri, checkpoint = soup
    state_path, state = _newest(checkpoint)
    victim = checkpoint / "weights" / f"{state['weights'][0]}.npz"
    marker = tmp_path / "the-code-ran"
    holder = np.empty((), dtype=object)
    holder[()] = _Marker(str(marker))
    np.savez(victim, w=holder)  # what someone who can write the run's artifacts could put there
    state["weight_hashes"][state["weights"][0]] = weights_digest(str(victim))  # and the digest beside it
    state_path.write_text(json.dumps(state))
    with pytest.raises(SpecError, match="--resume: state-g0002.json: a weights file is not plain arrays"):
        _resume(result, uri)
    assert not marker.exists()
    pickle.dumps(_Marker(str(marker)))  # the marker is a real payload: unpickling it would have made the file


def test_a_weights_file_cut_short_falls_back_to_the_state_before(soup, tmp_path):
    result, uri, checkpoint = soup
    _, state = _newest(checkpoint)
    victim = checkpoint / "weights" / f"{state['weights'][0]}.npz"
    victim.write_bytes(victim.read_bytes()[:100])  # a copy the driver's death cut short
    with pytest.raises(zipfile.BadZipFile):
        np.load(victim)
    resumed = _resume(result, uri)  # from generation 1's state, whose weights are kept beside it
    reference_uri = f"sqlite:///{tmp_path / 'reference.db'}"
    spec = tmp_path / "project" / "search.yaml"
    reference = popplast.run(
        spec, method="gensoup", generations=4, executor="local", tracking_uri=reference_uri, progress=False
    )
    got, expected = individuals(uri, resumed.search_run_id), individuals(reference_uri, reference.search_run_id)
    assert lineage(got) == lineage(expected) and [r["fitness"] for r in got] == [r["fitness"] for r in expected]


def test_an_id_that_is_no_id_never_becomes_a_path(soup):
    result, uri, checkpoint = soup
    state_path, state = _newest(checkpoint)
    state["weights"].append("../../../../etc/passwd")
    state_path.write_text(json.dumps(state))
    with pytest.raises(
        SpecError, match=r"names the weights '\.\./\.\./\.\./\.\./etc/passwd', which is no individual id"
    ):
        _resume(result, uri)


def test_a_resumed_driver_rewrites_no_weights_in_place(soup):
    result, uri, checkpoint = soup
    _, state = _newest(checkpoint)
    before = {p.name: os.stat(p).st_mtime_ns for p in (checkpoint / "weights").iterdir()}
    assert {f"{k}.npz" for k in state["weights"]} <= set(before)
    _resume(result, uri)
    after = {p.name: os.stat(p).st_mtime_ns for p in (checkpoint / "weights").iterdir()}
    kept = set(before) & set(after)
    assert kept >= {f"{k}.npz" for k in state["weights"]}  # the resumed-from state's weights stay for fallback
    assert all(after[name] == before[name] for name in kept)


def test_files_in_the_checkpoint_folder_that_are_no_state_files_are_passed_over(soup):
    result, uri, checkpoint = soup
    (checkpoint / "notes.json").write_text('{"mine": true}')  # what someone, or another tool, left there
    (checkpoint / "README.txt").write_text("do not delete")
    (checkpoint / "state-g0009.json.bak").write_text("{}")
    resumed = _resume(result, uri)
    rows = individuals(uri, resumed.search_run_id)
    assert len(rows) == 16 and max(r["generation"] for r in rows) == 3


@pytest.mark.parametrize(
    "key, value",
    [
        ("rng", {"bit_generator": "PCG64"}),  # numpy: KeyError
        ("rng", {"bit_generator": "MT19937", "state": {}}),  # numpy: ValueError
        ("rng", "seed 7"),
        ("state", {}),  # the strategy: KeyError
        ("state", [1, 2]),
        ("results", {"g000-i000": {"fitness": 1.0}}),
        ("generation", "two"),
    ],
)
def test_a_malformed_entry_of_a_state_file_is_a_checkpoint_error_naming_file_and_key(soup, key, value):
    result, uri, checkpoint = soup
    state_path, state = _newest(checkpoint)
    state[key] = value
    state_path.write_text(json.dumps(state))
    with pytest.raises(SpecError, match=f"--resume: state-g0002.json: its '{key}' is missing or malformed"):
        _resume(result, uri)


def test_a_missing_entry_of_a_state_file_is_a_checkpoint_error_naming_file_and_key(soup):
    result, uri, checkpoint = soup
    state_path, state = _newest(checkpoint)
    del state["rng"]
    state_path.write_text(json.dumps(state))
    with pytest.raises(SpecError, match="--resume: state-g0002.json: its 'rng' is missing or malformed"):
        _resume(result, uri)
