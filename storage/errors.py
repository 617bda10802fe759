"""Errors that mean "a server or disk is unavailable right now", not "this input is bad".

They are retried (Celery tasks) or reported as an interruption to resume (CLI); everything else
that goes wrong on a page is recorded on that page.
"""

from sqlalchemy.exc import OperationalError as DatabaseUnavailable
from urllib3.exceptions import HTTPError as ObjectStoreUnreachable

TRANSIENT: tuple[type[BaseException], ...] = (OSError, ConnectionError, DatabaseUnavailable,
                                               ObjectStoreUnreachable)
