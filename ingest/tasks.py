"""The pipeline steps as Celery tasks: ids in, ids out, so adding workers adds throughput.

    submit(path)                          stores the original (in the caller), queues start_batch
    start_batch(batch_id)                 counts and orders the pages, queues the first of each chain
    process_page(batch_id, n)             a page; then the next page of its chain, or finish_batch
    finish_batch(batch_id)                split, assemble every dossier, final status

An upload is answered as soon as its original is stored: that must come first, and costs only the
file's size (hashing, writing). Counting pages (a 2,000-frame TIFF takes about a second), ordering
them and queueing them is start_batch's work, on a worker, so no page count keeps a client waiting.

Big beside small. The queue is first in, first out: a batch that put all its pages in it at once
(3,000 of them) would keep every batch sent after it waiting for all of them. So a batch has at
most `pages_in_flight` pages (W, SOHOA_PAGES_IN_FLIGHT, 8) in the queue or in workers' hands.
start_batch stores in the batch record the order of its pages (heaviest first, `page_order`; null
when that is the page order) and W (`pages_in_flight`), which cut the pages into W chains: chain s
is the pages at positions s, s+W, s+2W... of the order. It queues the first page of each chain,
and the worker that did a page queues the next page of its chain (the next one without a result).
A batch sent after others thus waits behind at most W pages of each, and the workers take pages
of all running batches in turn. The chain whose last page is done looks whether the whole batch
is, and queues finish_batch.

Tasks are acknowledged late (a worker that dies mid-page leaves the task for another) and retried
a few times in place on tool or storage trouble. Every step is idempotent (ingest/pipeline.py), so
a task delivered twice changes nothing, and finish_batch needs no result backend or chord. Nor does
a second delivery widen a batch's window: only the delivery that did the page goes on with its
chain (a second copy finds the page done, or held, and stops there), or a redelivery or retry
(the worker that had it before vanished, or the task failed, maybe between storing the page and
queueing the next: at worst one copy too many, which stops at its page).

What Celery leaves out, sohoa adds (see ingest/watchdog.py):
- a worker holds a lease (storage/leases.py) on the page or batch it works on, so a second
  delivery of the same task waits instead of doing the work twice, and work whose worker died is
  seen as such when its lease expires;
- the watchdog, in every worker, queues again the work of a batch that nobody holds and nothing in
  the queue will do (a task lost with its worker, a broker that forgot its messages), and resumes
  batches that wait for a dependency: the first page without a result of each chain that nobody
  holds (at most W per batch), the chains going on from there;
- a task that gives up because a dependency is down (registry, object store, database) makes its
  batch `waiting`, never `failed`: it is tried again, with a growing pause, until it answers. Its
  chain stops there, and starts again when the batch is resumed.

The same file sent again queues nothing while its batch is under way (its start queued, or its
pages moving): only a `waiting` batch is resumed at once, and work nobody holds is queued again
if the queue is empty (as the watchdog would).

Broker: SOHOA_BROKER_URL (redis://, amqp://); by default kombu's SQLAlchemy transport on a SQLite
file in the data dir, so one machine needs no server (the Celery app: ingest/broker.py).
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Callable
from datetime import UTC, datetime
from functools import cache
from pathlib import Path
from typing import Any

from celery import Task
from celery.signals import worker_ready, worker_shutdown

from ingest import webhooks
from ingest.broker import DELIVER_WEBHOOK, app
from ingest.pipeline import FINAL, Pipeline
from ingest.settings import get_settings
from ocr.errors import ToolError
from storage import layout
from storage.errors import TRANSIENT, describe
from storage.leases import Leases, finish_key, page_key
from storage.records import BatchRecord

log = logging.getLogger(__name__)


@cache
def _pipeline() -> Pipeline:
    return Pipeline.from_settings(get_settings())


@cache
def _leases() -> Leases:
    return Leases(get_settings().storage.catalog_url)


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
        if record.status not in FINAL:
            record.status = "failed"
            record.error = f"unexpected: {type(exc).__name__}: {exc}"[:2000]
            pipeline.save_record(record)


@app.task(name="sohoa.start_batch", base=SettlesBatch, **RETRY)
def start_batch(batch_id: str) -> str:
    """Counts the pages of a batch whose original is stored, orders them and queues the first
    page of each chain. A batch already ordered is left to its chains (a second delivery)."""
    pipeline = _pipeline()
    record = pipeline.inspect(batch_id)
    if record.status in FINAL or not record.pages or _ordered(record):
        return batch_id
    record = _order(pipeline, batch_id)
    _queue_heads(pipeline, record)
    return batch_id


@app.task(name="sohoa.process_page", base=SettlesBatch, **RETRY)
def process_page(batch_id: str, index: int) -> int:
    pipeline = _pipeline()
    did = False
    if not pipeline.store.exists(layout.page_facts(batch_id, index)):
        with _leases().holding(page_key(batch_id, index), _lease_s(), batch_id=batch_id) as mine:
            if not mine:  # another worker has it now; look again once its lease could be dead
                process_page.apply_async((batch_id, index), countdown=_lease_s())
                return index
            # None: done meanwhile, by the worker that held the lease before
            did = pipeline.process_new_page(batch_id, index) is not None
    # A redelivery or a retry may follow a delivery that stored the page and then died or
    # failed before queueing the next: it goes on with the chain (at worst one copy too many).
    request = process_page.request
    again = bool((request.delivery_info or {}).get("redelivered") or request.retries)
    _after_page(pipeline, batch_id, index, go_on=did or again)
    return index


def _after_page(pipeline: Pipeline, batch_id: str, index: int, go_on: bool) -> None:
    """With `go_on`, queues the next page of this page's chain that has no result; once the chain
    has none left, queues finish_batch if every page of the batch has its result."""
    record = pipeline.record(batch_id)
    if record.status in FINAL:
        return
    order, window = _plan(record)
    done = _has_result(pipeline, batch_id)
    position = order.index(index) if index in order else len(order)
    for later in order[position + window::window]:
        if not done(later):
            if go_on:
                process_page.delay(batch_id, later)
            return
    if len(pipeline.pages_done(batch_id)) >= record.pages:
        finish_batch.delay(batch_id)


@app.task(name="sohoa.finish_batch", base=SettlesBatch, **RETRY)
def finish_batch(batch_id: str) -> str:
    pipeline = _pipeline()
    if pipeline.record(batch_id).status in FINAL:
        return batch_id
    with _leases().holding(finish_key(batch_id), _lease_s(), batch_id=batch_id) as mine:
        if not mine:
            finish_batch.apply_async((batch_id,), countdown=_lease_s())
            return batch_id
        pipeline.finalize(batch_id)
    _leases().forget_batch(batch_id)
    return batch_id


@app.task(name=DELIVER_WEBHOOK, autoretry_for=(webhooks.Retryable,), retry_backoff=5,
          retry_backoff_max=3600, retry_jitter=True, max_retries=12)
def deliver_webhook(target_index: int, event: dict[str, Any]) -> int | None:
    settings = get_settings()
    try:
        return webhooks.deliver(settings.webhooks.targets[target_index], event,
                                settings.webhooks.allow_private)
    except webhooks.Refused as e:
        log.error("webhook %d refused: %s", target_index, e)
        return None


def ensure_queue(attempts: int = 5) -> None:
    """Declares the task queue before a worker consumes it. On the embedded (SQLite) broker,
    kombu creates a queue's row by "look, then insert": two workers starting at once (serve's and
    another) both insert, and the loser's consumer dies at start. A second look finds the row."""
    for attempt in range(attempts):
        try:
            with app.connection_for_write() as connection:
                connection.default_channel.queue_declare(queue=get_settings().broker.queue,
                                                         durable=True, auto_delete=False)
            return
        except Exception:
            if attempt == attempts - 1:
                raise
            time.sleep(0.2 * (attempt + 1))


_declared: list[bool] = []


def _declare_once() -> None:
    """A process that queues work on the embedded broker declares the queue as a worker does
    (ensure_queue): its publish would otherwise race a starting worker's insert of the row."""
    if not _declared and app.conf.broker_url.startswith("sqla+"):
        try:
            ensure_queue()
            _declared.append(True)
        except Exception as e:  # the publish that follows says what is wrong, or works
            log.debug("queue not declared before publishing: %s", e)


def queued_messages() -> int | None:
    """Tasks waiting in the queue (not those a worker holds); None if the broker cannot say."""
    from kombu.exceptions import ChannelError

    try:
        with app.connection_for_read() as connection:
            connection.ensure_connection(max_retries=1)
            channel = connection.channel()
            try:
                queue = get_settings().broker.queue
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
    """Queues the work of a batch that nobody holds: its start if it was never begun, else the
    first page without a result of each chain, if nobody holds it (at most `pages_in_flight`:
    the chains go on from there), or its finishing once every page has one.
    With `only_if_idle`, only when the queue is empty (otherwise the work may be in it)."""
    pipeline = _pipeline()
    record = pipeline.record(batch_id)
    if record.status in FINAL:
        return []
    if only_if_idle and queued_messages() != 0:
        return []
    if record.status == "received" or not record.pages:
        start_batch.delay(batch_id)
        return ["start"]
    if not _ordered(record):  # counted, but its start was cut short (or began before orders)
        record = _order(pipeline, batch_id)
    return _queue_heads(pipeline, record)


def _queue_heads(pipeline: Pipeline, record: BatchRecord) -> list[str]:
    batch_id = record.batch_id
    live = _leases().live(batch_id)
    done = pipeline.pages_done(batch_id)
    order, window = _plan(record)
    todo = [i for i in order if i not in done]
    if not todo:
        if finish_key(batch_id) in live:
            return []
        finish_batch.delay(batch_id)
        return ["finish"]
    missing = set(todo)
    queued = []
    for chain in range(min(window, len(order))):
        head = next((i for i in order[chain::window] if i in missing), None)
        if head is not None and page_key(batch_id, head) not in live:
            process_page.delay(batch_id, head)
            queued.append(f"page {head}")
    return queued


# ---- the order pages are queued in ---------------------------------------------------------

def _ordered(record: BatchRecord) -> bool:
    return record.has("pages_in_flight")


def _order(pipeline: Pipeline, batch_id: str) -> BatchRecord:
    """Stores in the batch record the order its pages are queued in (heaviest first; null for
    the page order) and its window, once: every later task reads them there."""
    record = pipeline.record(batch_id)
    order = pipeline.heaviest_first(batch_id, list(range(record.pages)))
    record = pipeline.record(batch_id)
    record.page_order = None if order == sorted(order) else order
    record.pages_in_flight = get_settings().broker.pages_in_flight
    pipeline._save_record(record)  # the store's copy only: the catalog has nothing to index
    return record


def _plan(record: BatchRecord) -> tuple[list[int], int]:
    """The order of a batch's pages and its window; for a batch begun before they were stored,
    the page order and the window of the settings."""
    pages = record.pages
    order = record.page_order
    if not order or len(order) != pages:
        order = list(range(pages))
    return order, max(1, record.pages_in_flight or get_settings().broker.pages_in_flight)


def _has_result(pipeline: Pipeline, batch_id: str) -> Callable[[int], bool]:
    return lambda i: pipeline.store.exists(layout.page_facts(batch_id, i))


def submit(path: Path, dossier: str | None = None, source: str = "upload",
           file_name: str | None = None, agency: str | None = None, device: str | None = None,
           incomplete: str | None = None, scope: list[str] | None = None,
           result: bool = False) -> BatchRecord:
    """Stores the original and queues its start; returns the batch record (`received`). Nothing
    here depends on the number of pages. The same file again queues nothing while its batch is
    under way; it resumes it if it waits, or queues what nobody holds if the queue is empty."""
    pipeline = _pipeline()
    batch_id = pipeline.receive(path, source=source, dossier=dossier, file_name=file_name,
                                agency=agency, device=device, incomplete=incomplete, scope=scope,
                                result=result)
    record = pipeline.record(batch_id)
    if record.status == "received" and not record.start_queued_at:
        # Marked before it is queued: a start_batch that ran first would see its record undone.
        record.start_queued_at = datetime.now(UTC).isoformat(timespec="seconds")
        pipeline._save_record(record)
        try:
            _declare_once()
            start_batch.delay(batch_id)
        except Exception:  # broker down: the same file sent again must queue it
            record.unset("start_queued_at")
            pipeline._save_record(record)
            raise
    elif record.status == "waiting":
        record = retry(batch_id)
    elif record.status in ("received", "processing"):
        queue_missing(batch_id, only_if_idle=True)
    return record


def retry(batch_id: str) -> BatchRecord:
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
