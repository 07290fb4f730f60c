"""What a tracking store's failure means for the event that met it: an outage or a refusal.

An outage is the store, or the way to it, not answering as it should: no connection, a timeout, a 5xx or 429
from a server, a database that is locked, restarting, failing over or out of connections, an artifact store
that is down. It is waited out, for as long as it lasts; nothing is passed over because it lasted long.

Everything else is a refusal: MLflow naming the payload (invalid parameter value, a run that does not exist
or is not active, a row that already exists), credentials it does not take, an HTTP answer in the 4xx range
but 408 and 429 (an auth proxy's 403, a 413 for weights too large), a folder it may not write, and failures
of popplast's own code or a library's that no waiting changes. Sending the event again as it is gets the
same answer, so it is kept in the journal as refused with the answer, and the events behind it go on;
`popplast sync` tries it again once the cause is fixed. Which way a failure goes is decided positively for
outages (`unreachable`): a bug is never waited on for ever.
"""

from __future__ import annotations

from typing import Any

# MLflow's error codes (mlflow.protos.databricks_pb2.ErrorCode) that say the store could not answer now
OUTAGE_CODES = frozenset(
    {
        "TEMPORARILY_UNAVAILABLE",
        "INTERNAL_ERROR",
        "IO_ERROR",
        "SERVICE_UNDER_MAINTENANCE",
        "WORKSPACE_TEMPORARILY_UNAVAILABLE",
        "DEADLINE_EXCEEDED",
        "CANCELLED",
        "RESOURCE_EXHAUSTED",
        "ABORTED",
        "REQUEST_LIMIT_EXCEEDED",
        "COULD_NOT_ACQUIRE_LOCK",
        "UNPARSEABLE_HTTP_ERROR",
    }
)
# what a database says when it cannot answer rather than when it refuses a row: MLflow's store turns all but
# OperationalError into BAD_REQUEST, and a server passes on only the message
UNREACHABLE = (
    "OperationalError",
    "InterfaceError",
    "DisconnectionError",
    "TimeoutError",
    "PendingRollbackError",
    "database is locked",
    "timed out",
    "QueuePool limit",
    "read-only transaction",
    "server closed the connection",
    "could not connect",
    "connection refused",
    "Connection refused",
)


def unreachable(error: BaseException) -> bool:
    """Whether the store could not be reached or could not answer now: an outage (see the module's docstring)."""
    import sqlalchemy.exc
    from mlflow.exceptions import MlflowException

    database = (
        sqlalchemy.exc.OperationalError,
        sqlalchemy.exc.InterfaceError,
        sqlalchemy.exc.DisconnectionError,
        sqlalchemy.exc.TimeoutError,  # the engine's pool: every connection busy for its timeout
        sqlalchemy.exc.PendingRollbackError,
    )
    for cause in _chain(error):
        # a journalled file that is gone, a store's folder it may not write: waiting changes neither
        if isinstance(cause, (FileNotFoundError, PermissionError, IsADirectoryError, NotADirectoryError)):
            return False
        status = getattr(getattr(cause, "response", None), "status_code", None)
        if isinstance(status, int):  # an HTTP answer (requests' HTTPError is an OSError): a 403 or 413 stays one
            return status in (408, 429) or status >= 500
        if isinstance(cause, database) or isinstance(cause, OSError):  # requests' errors are OSErrors too
            return True
    if isinstance(error, MlflowException):
        code = str(error.error_code)
        return code in OUTAGE_CODES or (code == "BAD_REQUEST" and any(m in str(error) for m in UNREACHABLE))
    return False


def refused(error: BaseException) -> bool:
    """Whether to keep the event as refused and go on (everything that is not an outage)."""
    return not unreachable(error)


def describe(error: BaseException) -> str:
    """The failure in one line of at most 300 characters."""
    text = str(error).splitlines()[0] if str(error) else ""
    return f"{type(error).__name__}: {text}"[:300]


def _chain(error: BaseException) -> list[Any]:
    out, seen = [], set()
    cause: BaseException | None = error
    while cause is not None and id(cause) not in seen:
        seen.add(id(cause))
        out.append(cause)
        cause = cause.__cause__ or cause.__context__
    return out
