"""Errors that mean "a server or disk is unavailable right now", not "this input is bad".

They are retried (Celery tasks), make a batch wait for the dependency to answer again (never
`failed` for good), or are reported as an interruption to resume (CLI); everything else that goes
wrong on a page is recorded on that page. `dependency_of` names what failed, for the people told.
"""

from sqlalchemy.exc import OperationalError as DatabaseUnavailable
from urllib3.exceptions import HTTPError as ObjectStoreUnreachable


class Unavailable(ConnectionError):
    """A named outside service did not answer (e.g. the processing system's registry)."""

    dependency = "a service"


TRANSIENT: tuple[type[BaseException], ...] = (OSError, ConnectionError, DatabaseUnavailable,
                                               ObjectStoreUnreachable)


def dependency_of(error: BaseException) -> str:
    """The dependency a transient error comes from: registry, database, object storage..."""
    if isinstance(error, Unavailable):
        return error.dependency
    if isinstance(error, DatabaseUnavailable):
        return "database"
    if isinstance(error, (ObjectStoreUnreachable, OSError)):
        return "object storage"
    return "a service"


def describe(error: BaseException) -> str:
    """One line for staff and logs: `registry unavailable: <first line of the error>`."""
    first = (str(error).splitlines() or [type(error).__name__])[0][:300]
    return f"{dependency_of(error)} unavailable: {first}"
