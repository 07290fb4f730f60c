"""MLflow's client set to fail fast while a search runs: an outage is noticed in seconds, not minutes."""

from __future__ import annotations

import contextlib
import os
from typing import Iterator, Mapping


@contextlib.contextmanager
def failing_fast() -> Iterator[None]:
    """MLflow's HTTP client retries a call for minutes by default; the sender retries forever itself and
    must notice an outage soon to say so. And MLflow's client, terminating a run on a server, fetches it
    again to print two lines with its URL: a request and two lines on the search's console per individual.
    Set for the search unless the user set them, then put back."""
    settings = {
        "MLFLOW_HTTP_REQUEST_MAX_RETRIES": "1",
        "MLFLOW_HTTP_REQUEST_TIMEOUT": "15",
        "MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT": "true",
    }
    with environment(settings, keep_set=True):
        yield


@contextlib.contextmanager
def environment(values: Mapping[str, str], keep_set: bool = False) -> Iterator[None]:
    """Environment variables set for a while, then put back as they were; `keep_set`: those already set stay."""
    saved = {k: os.environ.get(k) for k in values}
    for key, value in values.items():
        if not keep_set or key not in os.environ:
            os.environ[key] = value
    try:
        yield
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
