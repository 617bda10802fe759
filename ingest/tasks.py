"""The pipeline steps as Celery tasks: ids in, ids out, so adding workers adds throughput.

    submit(path)                          receive + inspect here, then one task per page
    process_page(batch_id, n)             a page; the last page to finish queues finish_batch
    finish_batch(batch_id)                split, assemble every dossier, final status

Tasks are acknowledged late (a worker that dies mid-page leaves the task for another) and retried
with exponential backoff on tool or storage trouble. Every step is idempotent (ingest/pipeline.py),
so a task delivered twice changes nothing, and finish_batch needs no result backend or chord: the
page that completes the set queues it, and running it twice writes the same objects.

Broker: SOHOA_BROKER_URL (redis://, amqp://); by default kombu's SQLAlchemy transport on a SQLite
file in the data dir, so one machine needs no server.
"""

from __future__ import annotations

import logging
from functools import cache
from pathlib import Path
from typing import Any

from celery import Celery, Task

from ingest import webhooks
from ingest.pipeline import Pipeline
from ingest.settings import Settings, get_settings
from ocr.errors import ToolError
from storage import layout
from storage.errors import TRANSIENT

app = Celery("sohoa")
log = logging.getLogger(__name__)


def configure(settings: Settings) -> Celery:
    app.conf.update(
        broker_url=settings.broker,
        broker_connection_retry_on_startup=True,
        task_acks_late=True,
        task_reject_on_worker_lost=True,
        worker_prefetch_multiplier=1,  # a page is seconds of work: do not hoard
        task_serializer="json", accept_content=["json"], task_ignore_result=True,
        task_default_queue="sohoa",
    )
    if settings.broker.startswith("sqla+sqlite"):
        # Worker and submitters share one SQLite file: wait for its lock instead of failing.
        app.conf.broker_transport_options = {"connect_args": {"timeout": 60}}
    return app


configure(get_settings())


@cache
def _pipeline() -> Pipeline:
    return Pipeline.from_settings(get_settings())


RETRY = {"autoretry_for": (ToolError, *TRANSIENT), "retry_backoff": 2,
         "retry_backoff_max": 120, "retry_jitter": True, "max_retries": 6}


@app.task(name="sohoa.process_page", **RETRY)
def process_page(batch_id: str, index: int) -> int:
    pipeline = _pipeline()
    pipeline.process_page(batch_id, index)
    record = pipeline.record(batch_id)
    if all(pipeline.store.exists(layout.page_facts(batch_id, i)) for i in range(record["pages"])):
        finish_batch.delay(batch_id)
    return index


class RecordsFailure(Task):  # type: ignore[misc]
    """A batch whose finishing failed for good (retries spent, or an error no retry can fix) is
    recorded as failed with the error, instead of staying `processing` with nobody told."""

    def on_failure(self, exc: BaseException, task_id: str, args: tuple[Any, ...],
                   kwargs: dict[str, Any], einfo: Any) -> None:
        pipeline = _pipeline()
        record = pipeline.record(args[0])
        if record["status"] not in ("done", "needs_review"):
            record.update(status="failed", error=f"unexpected: {type(exc).__name__}: {exc}"[:2000])
            pipeline.save_record(record)


@app.task(name="sohoa.finish_batch", base=RecordsFailure, **RETRY)
def finish_batch(batch_id: str) -> str:
    pipeline = _pipeline()
    if pipeline.record(batch_id)["status"] in ("done", "needs_review"):
        return batch_id
    pipeline.finalize(batch_id)
    return batch_id


@app.task(name="sohoa.deliver_webhook", autoretry_for=(webhooks.Retryable,), retry_backoff=5,
          retry_backoff_max=3600, retry_jitter=True, max_retries=12)
def deliver_webhook(target_index: int, event: dict[str, Any]) -> int | None:
    settings = get_settings()
    try:
        return webhooks.deliver(settings.webhooks[target_index], event,
                                settings.webhook_allow_private)
    except webhooks.Refused as e:
        log.error("webhook %d refused: %s", target_index, e)
        return None


def announce(event: dict[str, Any]) -> None:
    """Queues one delivery per configured webhook that wants this dossier's agency."""
    for i, target in enumerate(get_settings().webhooks):
        if target.wants(event["agency"]):
            deliver_webhook.delay(i, event)


def submit(path: Path, dossier: str | None = None, source: str = "upload",
           file_name: str | None = None, agency: str | None = None, device: str | None = None,
           incomplete: str | None = None) -> dict[str, Any]:
    """Stores the original, validates it, and queues its pages; returns the batch record."""
    pipeline = _pipeline()
    batch_id = pipeline.receive(path, source=source, dossier=dossier, file_name=file_name,
                                agency=agency, device=device, incomplete=incomplete)
    record = pipeline.inspect(batch_id)
    if record["status"] == "processing":
        todo = [i for i in range(record["pages"])
                if not pipeline.store.exists(layout.page_facts(batch_id, i))]
        for i in pipeline.heaviest_first(batch_id, todo):
            process_page.delay(batch_id, i)
    return record
