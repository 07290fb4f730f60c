"""Joining or starting Ray, with errors a user can act on."""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import socket
import threading
from typing import Iterator

import ray

from popplast.errors import PopplastError


class ClusterError(PopplastError, RuntimeError):
    """Ray cannot be reached, or lacks the resources the search asks for."""


@contextlib.contextmanager
def ray_session(address: str | None = None) -> Iterator[None]:
    """Use the Ray instance already initialised in this process, join `address`, or start a local one.

    Only a Ray instance started here is shut down on exit.
    """
    if ray.is_initialized():
        yield
        return
    if address:
        _check_reachable(address)
    handlers = {signum: signal.getsignal(signum) for signum in (signal.SIGTERM, signal.SIGUSR1)}
    try:
        # "local" when no address is given: ray.init(None) would join whatever cluster this machine last
        # started with `ray start` (/tmp/ray/ray_current_cluster), and wait forever if that one is gone
        ray.init(address=address or "local", include_dashboard=False, logging_level=logging.ERROR, log_to_driver=False)
        if threading.current_thread() is threading.main_thread():
            # Ray's core installs its own SIGTERM handler, which aborts the process; the caller's (the
            # command's: mark the search KILLED, stop Ray) come back
            for signum, handler in handlers.items():
                if callable(handler):
                    signal.signal(signum, handler)
    except (ConnectionError, RuntimeError, ValueError) as e:
        target = f"the Ray cluster at {address!r}" if address else "a local Ray instance"
        hint = ""
        if address and not os.environ.get("RAY_AUTH_MODE"):
            hint = (
                " If the cluster uses Ray's token authentication (on by default in Ray 2.60), set "
                "RAY_AUTH_MODE=token and make its token available (~/.ray/auth_token or RAY_AUTH_TOKEN)."
            )
        raise ClusterError(f"could not start or join {target}: {e}.{hint}") from None
    try:
        yield
    finally:
        ray.shutdown()


def _check_reachable(address: str, timeout: float = 5.0) -> None:
    """Fail fast on a host:port nothing listens on: ray.init would retry it for many minutes in silence."""
    if address in ("auto", "local") or "://" in address:
        return
    host, _, port = address.rpartition(":")
    try:
        with socket.create_connection((host or "127.0.0.1", int(port)), timeout=timeout):
            pass
    except (OSError, ValueError) as e:
        raise ClusterError(
            f"no Ray cluster answers at {address!r} ({e}); check the head node's address "
            "(`ray status` on it prints it) or use --address auto on a cluster node."
        ) from None


def default_workers(population: int, cpus_per_worker: float) -> int:
    """As many workers as the cluster's CPUs allow, at most one per individual of a generation."""
    return max(1, min(population, int(ray.cluster_resources().get("CPU", 1) // cpus_per_worker)))


def check_resources(workers: int, cpus_per_worker: float, gpus_per_worker: float) -> None:
    """Refuse a pool the cluster can never place (Ray would wait for it forever)."""
    have = ray.cluster_resources()
    for name, per in (("CPU", cpus_per_worker), ("GPU", gpus_per_worker)):
        need = workers * per
        if need > have.get(name, 0) + 1e-9:
            flag = "--cpus-per-worker" if name == "CPU" else "--gpus-per-worker"
            raise ClusterError(
                f"{workers} workers × {flag} {per:g} need {need:g} {name}s, but the Ray cluster has "
                f"{have.get(name, 0):g}; use fewer --workers or a smaller {flag}."
            )
