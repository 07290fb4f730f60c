"""What a tracking store's failure means for the event that met it: refused or an outage.

A refusal is the store naming the payload: MLflow said the value, the name or the run it was sent to is
wrong (invalid parameter value, a run that does not exist or is not active, a row that already exists).
Sending it again as it is gets the same answer, so the event is kept in the journal as refused and the
events behind it go on. Everything else is an outage, whatever the store said about it: no connection, a
timeout, a 5xx or 429 from a server, a database that is locked, restarting or full, an artifact store that
is down, credentials a proxy no longer takes. An outage is waited out, for as long as it lasts; nothing is
passed over because it lasted long.
"""

from __future__ import annotations

from typing import Any

# MLflow's error codes (mlflow.protos.databricks_pb2.ErrorCode) that name the payload
REFUSALS = frozenset(
    {
        "INVALID_PARAMETER_VALUE",
        "MALFORMED_REQUEST",
        "INVALID_STATE",
        "INVALID_STATE_TRANSITION",
        "RESOURCE_ALREADY_EXISTS",
        "ALREADY_EXISTS",
        "RESOURCE_DOES_NOT_EXIST",
        "NOT_FOUND",
        "RESOURCE_CONFLICT",
        "MAX_BLOCK_SIZE_EXCEEDED",
        "MAX_READ_SIZE_EXCEEDED",
        "MAX_LIST_SIZE_EXCEEDED",
        "BAD_REQUEST",
    }
)
# what a database says when it is unreachable rather than when it refuses a row; MLflow's store turns some of
# them into BAD_REQUEST, and a server passes on only their names
UNREACHABLE = ("OperationalError", "InterfaceError", "DisconnectionError", "TimeoutError", "database is locked")


def refused(error: BaseException) -> bool:
    """True when the store refused the payload; False for an outage (see the module's docstring)."""
    import sqlalchemy.exc
    from mlflow.exceptions import MlflowException

    for cause in _chain(error):
        if isinstance(cause, FileNotFoundError):  # a journalled file that is gone does not come back by waiting
            return True
        if isinstance(cause, (sqlalchemy.exc.OperationalError, sqlalchemy.exc.InterfaceError, OSError)):
            return False  # the database or the network, not the row
        if isinstance(cause, (sqlalchemy.exc.IntegrityError, sqlalchemy.exc.DataError)):
            return True
    if isinstance(error, MlflowException):
        code = str(error.error_code)
        if code == "BAD_REQUEST" and any(name in str(error) for name in UNREACHABLE):
            return False
        return code in REFUSALS
    # popplast's own checks of what it writes (a deleted experiment, an unknown event): the same every time
    return isinstance(error, (ValueError, TypeError, KeyError))


def unreachable(error: BaseException) -> bool:
    """Whether the store could not be reached or could not answer (the network, a server's 5xx or 429, a
    locked or restarting database), as opposed to code of popplast's or a library's failing on its own."""
    import sqlalchemy.exc
    from mlflow.exceptions import MlflowException

    for cause in _chain(error):
        if isinstance(cause, (sqlalchemy.exc.OperationalError, sqlalchemy.exc.InterfaceError)):
            return True
        if isinstance(cause, OSError) and not isinstance(cause, FileNotFoundError):
            return True
    return isinstance(error, MlflowException) and not refused(error)


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
