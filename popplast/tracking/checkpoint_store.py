"""A search run's checkpoint files in MLflow: uploaded beside the run (weights before the state file that
names them), the newest whole state downloaded and verified for a resume. MLflowTracker inherits this; it
needs the tracker's `client`, `search_run_id` and `tracking_uri`."""

from __future__ import annotations

import contextlib
import json
import os
from typing import Any, Iterable, Iterator

from popplast.errors import COMMAND_LINE, SpecError
from popplast.execution.checkpoint_files import STATE_FILE, CheckpointError, check_id, is_state_file, weights_whole

CHECKPOINT_DIR = "checkpoint"


class CheckpointStore:
    client: Any
    search_run_id: str
    tracking_uri: str

    def save_checkpoint(self, directory: str, keep_weights: set[str]) -> None:
        """Upload a checkpoint's files (`directory`: weights/*.npz and state-*.json) beside the search run."""
        weights = os.path.join(directory, "weights")
        names = sorted(os.listdir(weights)) if os.path.isdir(weights) else []
        states = sorted(n for n in os.listdir(directory) if n.endswith(".json"))
        self.upload_checkpoint(
            [os.path.join(weights, n) for n in names], [os.path.join(directory, n) for n in states], keep_weights
        )

    def upload_checkpoint(self, weights: list[str], states: list[str], keep_weights: set[str]) -> None:
        """Upload weights files, then the state files that name them (a driver killed in between leaves the
        previous state file the newest whole one); then drop weights no later state file needs."""
        for path in weights:
            self.client.log_artifact(self.search_run_id, path, f"{CHECKPOINT_DIR}/weights")
        for path in states:
            self.client.log_artifact(self.search_run_id, path, CHECKPOINT_DIR)
        stale = [
            f.path
            for f in self._listed(f"{CHECKPOINT_DIR}/weights")
            if os.path.splitext(os.path.basename(f.path))[0] not in keep_weights
        ]
        if stale:
            from mlflow.store.artifact.artifact_repository_registry import get_artifact_repository

            repo = get_artifact_repository(self.client.get_run(self.search_run_id).info.artifact_uri)
            for path in stale:
                with contextlib.suppress(NotImplementedError):  # a store that cannot delete keeps them
                    repo.delete_artifacts(path)

    def newest_state(self) -> str | None:
        """The name of the newest checkpoint state file the search run holds (whole or not), or None."""
        states = self._states()
        return os.path.basename(states[0]) if states else None

    def _states(self) -> list[str]:
        """The state files in the checkpoint folder, newest first. Other files there are not popplast's (a
        note someone left, a tool's file): passed over, as MLflow lets anyone add artifacts and a search
        should not become unresumable for one it never reads."""
        return newest_first(f.path for f in self._listed(CHECKPOINT_DIR) if is_state_file(f.path))

    def load_checkpoint(self, directory: str) -> str | None:
        """Download the newest readable state file and the weights it names into `directory`; its path
        (None when the search has no checkpoint yet)."""
        with no_progress_bars():
            return self._download_newest_whole(directory)

    def _download_newest_whole(self, directory: str) -> str | None:
        import mlflow.artifacts

        states = self._states()
        for path in states:
            local = mlflow.artifacts.download_artifacts(
                run_id=self.search_run_id, artifact_path=path, dst_path=directory, tracking_uri=self.tracking_uri
            )
            try:
                with open(local) as f:
                    data = json.load(f)
                names, hashes = list(data["weights"]), dict(data.get("weight_hashes", {}))
            except (ValueError, KeyError, TypeError):  # cut short by the driver's death; the one before is whole
                continue
            weights = os.path.join(os.path.dirname(local), "weights")
            os.makedirs(weights, exist_ok=True)
            try:
                for name in names:
                    check_id(name, os.path.basename(path))  # before it becomes part of a path
                    mlflow.artifacts.download_artifacts(
                        run_id=self.search_run_id,
                        artifact_path=f"{CHECKPOINT_DIR}/weights/{name}.npz",
                        dst_path=weights,
                        tracking_uri=self.tracking_uri,
                    )
            except CheckpointError:
                raise
            except Exception:  # MLflow's own types for a missing artifact: this state is not whole
                continue
            files = {name: os.path.join(weights, f"{name}.npz") for name in names}
            if not all(weights_whole(file, hashes.get(name)) for name, file in files.items()):
                continue  # a weights file cut short or changed since: the state before is whole
            return local  # the weights lie in weights/ beside it
        if states:  # starting again from nothing would throw away every finished generation
            raise SpecError(
                COMMAND_LINE,
                "--resume",
                f"the search run {self.search_run_id} has checkpoints "
                f"({', '.join(os.path.basename(p) for p in states)}) but none "
                "is whole with its weights; it cannot be resumed exactly.",
            )
        return None

    def _listed(self, path: str) -> list[Any]:
        return [f for f in self.client.list_artifacts(self.search_run_id, path) if not f.is_dir]


def newest_first(state_files: Iterable[str]) -> list[str]:
    """Checkpoint state files (`state-gNNNN.json`), the latest generation first: by the number, since text
    order puts state-g10000 before state-g9999."""
    return sorted(state_files, key=lambda path: int(STATE_FILE.fullmatch(os.path.basename(path))[1]), reverse=True)


@contextlib.contextmanager
def no_progress_bars() -> Iterator[None]:
    """MLflow draws a progress bar per downloaded artifact: a checkpoint's many small files would flood the
    log. Off for the downloads only; the variable is set back as it was."""
    name = "MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR"
    saved = os.environ.get(name)
    os.environ[name] = "false"
    try:
        yield
    finally:
        if saved is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = saved
