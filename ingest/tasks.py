"""The pipeline steps as Celery tasks: ids in, ids out, so adding workers adds throughput.

    submit(path)                          receive + inspect here, then one task per page
    start_batch(batch_id)                 inspect + queue the pages (a batch received but not begun)
    process_page(batch_id, n)             a page; the last page to finish queues finish_batch
    finish_batch(batch_id)                split, assemble every dossier, final status

Tasks are acknowledged late (a worker that dies mid-page leaves the task for another) and retried
a few times in place on tool or storage trouble. Every step is idempotent (ingest/pipeline.py), so
a task delivered twice changes nothing, and finish_batch needs no result backend or chord: the
page that completes the set queues it, and running it twice writes the same objects.

What Celery leaves out, sohoa adds (see ingest/watchdog.py):
- a worker holds a lease (storage/leases.py) on the page or batch it works on, so a second
  delivery of the same task waits instead of doing the work twice, and work whose worker died is
  seen as such when its lease expires;
- the watchdog, in every worker, queues again the work of a batch that nobody holds and nothing in
  the queue will do (a task lost with its worker, a broker that forgot its messages), and resumes
  batches that wait for a dependency;
- a task that gives up because a dependency is down (registry, object store, database) makes its
  batch `waiting`, never `failed`: it is tried again, with a growing pause, until it answers.

Broker: SOHOA_BROKER_URL (redis://, amqp://); by default kombu's SQLAlchemy transport on a SQLite
file in the data dir, so one machine needs no server.
"""

from __future__ import annotations

import contextlib
import logging
import time
from functools import cache
from pathlib import Path
from typing import Any

from celery import Celery, Task
from celery.signals import worker_ready, worker_shutdown

from ingest import webhooks
from ingest.pipeline import FINAL, Pipeline
from ingest.settings import Settings, get_settings
from ocr.errors import ToolError
from storage import layout
from storage.errors import TRANSIENT, describe
from storage.leases import Leases, finish_key, page_key

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
        task_default_queue=settings.broker_queue,
    )
    if settings.broker.startswith("sqla+sqlite"):
        # Worker and submitters share one SQLite file: wait for its lock instead of failing.
        app.conf.broker_transport_options = {"connect_args": {"timeout": 60}}
    elif settings.broker.startswith(("redis", "rediss")):
        # Redis hands out a vanished worker's unacknowledged task again only after this; Celery's
        # default is an hour. Leases make an early second delivery harmless.
        app.conf.broker_transport_options = {
            "visibility_timeout": settings.recovery.visibility_timeout_s}
    return app


configure(get_settings())


@cache
def _pipeline() -> Pipeline:
    return Pipeline.from_settings(get_settings())


@cache
def _leases() -> Leases:
    return Leases(get_settings().catalog_url)


def _lease_s() -> float:
    return get_settings().recovery.lease_s


RETRY = {"autoretry_for": (ToolError, *TRANSIENT), "retry_backoff": 2,
         "retry_backoff_max": 30, "retry_jitter": True,
         "max_retries": get_settings().recovery.task_retries}


class SettlesBatch(Task):  # type: ignore[misc]
    """When a task of a batch gives up: a dependency that is down makes the batch wait for it
    (resumed by the watchdog, `sohoa batch retry` or the same file sent again); any other error
    while finishing fails the batch with the error, instead of leaving it `processing` with
    nobody told."""

    def on_failure(self, exc: BaseException, task_id: str, args: tuple[Any, ...],
                   kwargs: dict[str, Any], einfo: Any) -> None:
        batch_id = args[0]
        pipeline = _pipeline()
        if isinstance(exc, TRANSIENT):
            log.warning("batch %s waits: %s", batch_id, describe(exc))
            try:
                pipeline.wait(batch_id, exc)
            except Exception:  # the store or database is down too: the watchdog finds it later
                log.warning("could not record that batch %s waits", batch_id, exc_info=True)
            return
        if self.name != finish_batch.name:
            return
        record = pipeline.record(batch_id)
        if record["status"] not in FINAL:
            record.update(status="failed", error=f"unexpected: {type(exc).__name__}: {exc}"[:2000])
            pipeline.save_record(record)


@app.task(name="sohoa.start_batch", base=SettlesBatch, **RETRY)
def start_batch(batch_id: str) -> str:
    """Inspects a batch whose original is stored but whose pages were never queued."""
    record = _pipeline().inspect(batch_id)
    if record["status"] == "processing":
        queue_missing(batch_id, only_if_idle=False)
    return batch_id


@app.task(name="sohoa.process_page", base=SettlesBatch, **RETRY)
def process_page(batch_id: str, index: int) -> int:
    pipeline = _pipeline()
    if not pipeline.store.exists(layout.page_facts(batch_id, index)):
        with _leases().holding(page_key(batch_id, index), _lease_s(), batch_id=batch_id) as mine:
            if not mine:  # another worker has it now; look again once its lease could be dead
                process_page.apply_async((batch_id, index), countdown=_lease_s())
                return index
            pipeline.process_page(batch_id, index)
    record = pipeline.record(batch_id)
    if record["status"] not in FINAL and all(
            pipeline.store.exists(layout.page_facts(batch_id, i)) for i in range(record["pages"])):
        finish_batch.delay(batch_id)
    return index


@app.task(name="sohoa.finish_batch", base=SettlesBatch, **RETRY)
def finish_batch(batch_id: str) -> str:
    pipeline = _pipeline()
    if pipeline.record(batch_id)["status"] in FINAL:
        return batch_id
    with _leases().holding(finish_key(batch_id), _lease_s(), batch_id=batch_id) as mine:
        if not mine:
            finish_batch.apply_async((batch_id,), countdown=_lease_s())
            return batch_id
        pipeline.finalize(batch_id)
    _leases().forget_batch(batch_id)
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


def ensure_queue(attempts: int = 5) -> None:
    """Declares the task queue before a worker consumes it. On the embedded (SQLite) broker,
    kombu creates a queue's row by "look, then insert": two workers starting at once (serve's and
    another) both insert, and the loser's consumer dies at start. A second look finds the row."""
    for attempt in range(attempts):
        try:
            with app.connection_for_write() as connection:
                connection.default_channel.queue_declare(queue=get_settings().broker_queue,
                                                         durable=True, auto_delete=False)
            return
        except Exception:
            if attempt == attempts - 1:
                raise
            time.sleep(0.2 * (attempt + 1))


def queued_messages() -> int | None:
    """Tasks waiting in the queue (not those a worker holds); None if the broker cannot say."""
    from kombu.exceptions import ChannelError

    try:
        with app.connection_for_read() as connection:
            connection.ensure_connection(max_retries=1)
            channel = connection.channel()
            try:
                queue = get_settings().broker_queue
                return int(channel.queue_declare(queue=queue, passive=True).message_count)
            except ChannelError:  # never declared (nothing ever queued): nothing waits
                return 0
            finally:
                with contextlib.suppress(Exception):  # a channel the broker closed (AMQP 404)
                    channel.close()
    except Exception:
        log.warning("could not count the queued tasks", exc_info=True)
        return None


def queue_missing(batch_id: str, only_if_idle: bool = True) -> list[str]:
    """Queues the work of a batch that nobody holds: the pages without a result and without a
    live lease, or its finishing once every page has one, or its start if it was never begun.
    With `only_if_idle`, only when the queue is empty (otherwise the work may be in it)."""
    pipeline = _pipeline()
    record = pipeline.record(batch_id)
    if record["status"] in FINAL:
        return []
    if only_if_idle and queued_messages() != 0:
        return []
    if record["status"] == "received":
        start_batch.delay(batch_id)
        return ["start"]
    live = _leases().live(batch_id)
    missing = [i for i in range(record["pages"])
               if not pipeline.store.exists(layout.page_facts(batch_id, i))]
    if not missing:
        if finish_key(batch_id) in live:
            return []
        finish_batch.delay(batch_id)
        return ["finish"]
    todo = [i for i in missing if page_key(batch_id, i) not in live]
    for i in pipeline.heaviest_first(batch_id, todo):
        process_page.delay(batch_id, i)
    return [f"page {i}" for i in todo]


def submit(path: Path, dossier: str | None = None, source: str = "upload",
           file_name: str | None = None, agency: str | None = None, device: str | None = None,
           incomplete: str | None = None) -> dict[str, Any]:
    """Stores the original, validates it, and queues its pages; returns the batch record. The
    same file again resumes its batch if it waits, or if its work is in nobody's hands."""
    pipeline = _pipeline()
    batch_id = pipeline.receive(path, source=source, dossier=dossier, file_name=file_name,
                                agency=agency, device=device, incomplete=incomplete)
    before = pipeline.record(batch_id)["status"]
    record = pipeline.inspect(batch_id)
    if before == "received" and record["status"] == "processing":
        todo = [i for i in range(record["pages"])
                if not pipeline.store.exists(layout.page_facts(batch_id, i))]
        for i in pipeline.heaviest_first(batch_id, todo):
            process_page.delay(batch_id, i)
    elif record["status"] == "waiting":
        record = retry(batch_id)
    elif record["status"] == "processing":
        queue_missing(batch_id, only_if_idle=True)
    return record


def retry(batch_id: str) -> dict[str, Any]:
    """Resumes a batch now: one that waits for a dependency, one that failed, or one whose work
    may be lost; queues what nobody holds. Returns the record as it now stands."""
    record = _pipeline().resume(batch_id, reset=True)
    queue_missing(batch_id, only_if_idle=False)
    return record


# ---- the watchdog runs in each worker's main process -------------------------------------

_watchdog: Any = None


@worker_ready.connect
def _start_watchdog(**_: Any) -> None:
    from ingest.watchdog import Watchdog

    global _watchdog
    settings = get_settings()
    _watchdog = Watchdog(_pipeline(), _leases(), settings.recovery, queue_missing,
                         queued_messages).start()


@worker_shutdown.connect
def _stop_watchdog(**_: Any) -> None:
    if _watchdog is not None:
        _watchdog.stop()
