"""The Celery app that sohoa's tasks (ingest/tasks.py) run on, configured from the settings, and
what queues a task without loading the pipeline's tasks: `announce`, which the pipeline calls with
each feed event when webhooks are configured (ingest/services.py registers it as a listener
of dossier changes).

Broker: SOHOA_BROKER_URL (redis://, amqp://); by default kombu's SQLAlchemy transport on a SQLite
file in the data dir, so one machine needs no server.
"""

from __future__ import annotations

from typing import Any

from celery import Celery

from ingest.settings import Settings, get_settings

app = Celery("sohoa")
DELIVER_WEBHOOK = "sohoa.deliver_webhook"  # the task of ingest/tasks.py that delivers one event
EMBEDDED_POLL_S = 0.02  # seconds between polls of the embedded broker's table


def configure(settings: Settings) -> Celery:
    app.conf.update(
        broker_url=settings.broker.url,
        broker_connection_retry_on_startup=True,
        task_acks_late=True,
        task_reject_on_worker_lost=True,
        worker_prefetch_multiplier=1,  # a page is seconds of work: do not hoard
        task_serializer="json", accept_content=["json"], task_ignore_result=True,
        task_default_queue=settings.broker.queue,
    )
    if settings.broker.url.startswith("sqla+sqlite"):
        # Worker and submitters share one SQLite file: wait for its lock instead of failing.
        app.conf.broker_transport_options = {"connect_args": {"timeout": 60}}
        # The transport polls its table; kombu's default second between polls is a second lost
        # at every hand-off of a page chain (a worker whose pages are all taken looks again
        # only at its next poll). A fiftieth of a second: a 24-page batch through `sohoa serve`
        # in 9.3 s against 9.9 at a tenth, for 3-5 % of a core while idle against 1-2 %
        # (BENCHMARKS.md). (Set on the class: this transport hands every transport option to
        # SQLAlchemy's create_engine, which refuses `polling_interval`.)
        from kombu.transport import sqlalchemy as kombu_sqla

        kombu_sqla.Transport.polling_interval = EMBEDDED_POLL_S
    elif settings.broker.url.startswith(("redis", "rediss")):
        # Redis hands out a vanished worker's unacknowledged task again only after this; Celery's
        # default is an hour. Leases make an early second delivery harmless.
        app.conf.broker_transport_options = {
            "visibility_timeout": settings.recovery.visibility_timeout_s}
    return app


configure(get_settings())


def announce(event: dict[str, Any]) -> None:
    """Queues one delivery per configured webhook that wants this dossier's agency."""
    for i, target in enumerate(get_settings().webhooks.targets):
        if target.wants(event["agency"]):
            app.send_task(DELIVER_WEBHOOK, args=(i, event))
