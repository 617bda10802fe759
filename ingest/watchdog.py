"""The watchdog: finds batches that nothing will finish, and sets them going again.

Celery hands a task to another worker only if its broker notices the first one is gone: RabbitMQ
does at once, Redis after its visibility timeout, the embedded SQLite broker never. A broker that
restarts without its messages (Redis keeps nothing on disk), or a process killed between storing
an upload and queueing its pages, strands a batch the same way. So every worker's main process
runs this loop (one of them at a time, by lease), every `tick_s`:

- a batch `waiting` for a dependency whose pause is over is resumed (its missing work queued);
- a batch `received` or `processing` is suspect when the queue is empty; still suspect one tick
  later (the queue still empty), its work that no live lease covers is queued again: its start
  if it was never begun, else the first page with no result of each of its chains (at most
  `pages_in_flight` pages: ingest/tasks.py, the chains go on from there), else its finishing.
  Work still in the queue, or in the hands of a live worker, is never queued twice by the
  watchdog.

Queueing work twice is harmless anyway: every step is idempotent and a second delivery of work
another worker holds waits for that worker's lease.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from datetime import UTC, datetime

from ingest.pipeline import Pipeline
from ingest.settings import RecoveryConfig
from storage.errors import TRANSIENT, describe
from storage.leases import Leases, batch_key, this_process

log = logging.getLogger(__name__)
WATCHDOG = "watchdog"


class Watchdog:
    def __init__(self, pipeline: Pipeline, leases: Leases, recovery: RecoveryConfig,
                 queue_missing: Callable[..., list[str]],
                 queued_messages: Callable[[], int | None]) -> None:
        """`queue_missing(batch_id, only_if_idle=)` queues what nobody holds and says what;
        `queued_messages()` counts the tasks waiting in the queue (None: cannot tell)."""
        self.pipeline, self.leases, self.recovery = pipeline, leases, recovery
        self.queue_missing, self.queued_messages = queue_missing, queued_messages
        self.holder = f"watchdog@{this_process()}"
        self._suspects: set[str] = set()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="sohoa-watchdog", daemon=True)

    def start(self) -> Watchdog:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout=10)

    def _run(self) -> None:
        while not self._stop.wait(self.recovery.tick_s):
            try:
                if self.leases.take(WATCHDOG, self.holder, self.recovery.tick_s * 3):
                    self.tick()
            except TRANSIENT as e:  # database or broker down: look again at the next tick
                log.warning("watchdog round skipped: %s", describe(e))
            except Exception:
                log.exception("watchdog round failed")

    def tick(self) -> list[str]:
        """One round; returns what it did, one line per batch set going."""
        assert self.pipeline.catalog is not None
        batches = self.pipeline.catalog.unfinished_batches()
        idle: bool | None = None
        suspects: set[str] = set()
        actions = []
        now = datetime.now(UTC)
        for record in batches:
            batch_id = record.batch_id
            try:
                if self.leases.is_live(batch_key(batch_id)):
                    continue  # `sohoa ingest` runs it on its own machine
                if record.status == "waiting":
                    due = (record.waiting_for or {}).get("next_try")
                    if due is None or datetime.fromisoformat(due) <= now:
                        try:
                            self.pipeline.resume(batch_id)
                        except TRANSIENT as e:  # still down: the next try moves on
                            self.pipeline.wait(batch_id, e)
                            continue
                        done = self.queue_missing(batch_id, only_if_idle=False)
                        actions.append(f"{batch_id}: resumed ({', '.join(done) or 'nothing to queue'})")
                    continue
                if idle is None:
                    idle = self.queued_messages() == 0
                if not idle:
                    continue
                suspects.add(batch_id)
                if batch_id in self._suspects:
                    done = self.queue_missing(batch_id, only_if_idle=True)
                    if done:
                        actions.append(f"{batch_id}: queued again {', '.join(done)}")
            except Exception:  # one batch's trouble must not stop the round
                log.warning("watchdog: batch %s", batch_id, exc_info=True)
        self._suspects = suspects
        for line in actions:
            log.warning("watchdog: %s", line)
        return actions
