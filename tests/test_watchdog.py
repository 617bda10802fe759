"""Leases and the watchdog, one decision at a time: what counts as stranded, what is queued again,
and what is left alone (work in the queue, in a live worker's hands, or run by `sohoa ingest`)."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from ingest.page_stages import DetectBlank, ReadBarcodes
from ingest.pipeline import Pipeline
from ingest.registry import RegistryUnavailable
from ingest.settings import RecoveryConfig, Settings
from ingest.watchdog import Watchdog
from storage.leases import Leases, batch_key, page_key

ROOT = Path(__file__).resolve().parents[1]
SAMPLE = ROOT / "examples" / "sample-batch.pdf"


@pytest.fixture
def pipeline(tmp_path: Path) -> Pipeline:
    settings = Settings(data_dir=tmp_path / "data", workers=1, scanner_discovery=False,
                        recovery=RecoveryConfig(lease_s=5, tick_s=1, backoff_s=60,
                                                backoff_max_s=240))
    found = Pipeline.from_settings(settings)
    found.page_stages = [ReadBarcodes(), DetectBlank()]
    return found


@pytest.fixture
def leases(pipeline: Pipeline) -> Leases:
    return Leases(pipeline.settings.storage.catalog_url)


class Queue:
    """Stands in for the broker: how many tasks wait, and what the watchdog queued."""

    def __init__(self) -> None:
        self.waiting: int | None = 0
        self.queued: list[tuple[str, bool]] = []

    def missing(self, batch_id: str, only_if_idle: bool = True) -> list[str]:
        self.queued.append((batch_id, only_if_idle))
        return ["page 1"]

    def count(self) -> int | None:
        return self.waiting


def watchdog(pipeline: Pipeline, leases: Leases, queue: Queue) -> Watchdog:
    return Watchdog(pipeline, leases, pipeline.settings.recovery, queue.missing, queue.count)


def started(pipeline: Pipeline, pages_done: int) -> str:
    """A batch received and counted, `pages_done` of its pages processed."""
    batch_id = pipeline.receive(SAMPLE)
    pipeline.inspect(batch_id)
    for i in range(pages_done):
        pipeline.process_page(batch_id, i)
    return batch_id


def test_a_lease_is_one_holders_until_it_expires(leases: Leases) -> None:
    assert leases.take("page:b1:0", "worker-a", 0.5, "b1")
    assert not leases.take("page:b1:0", "worker-b", 0.5, "b1")
    assert leases.take("page:b1:0", "worker-a", 0.5, "b1")  # its own again
    time.sleep(0.7)
    assert leases.take("page:b1:0", "worker-b", 5, "b1")  # dead: taken over
    assert set(leases.live("b1")) == {"page:b1:0"}


def test_a_held_lease_is_renewed_while_the_work_runs_and_released_after(leases: Leases) -> None:
    with leases.holding("page:b1:0", 0.6, holder="worker-a", batch_id="b1") as mine:
        assert mine
        time.sleep(1.2)  # twice the lease: alive only because it is renewed
        assert not leases.take("page:b1:0", "worker-b", 5, "b1")
    assert leases.live("b1") == {}


def test_a_stranded_batch_is_queued_again_only_when_seen_twice_with_an_idle_queue(
        pipeline: Pipeline, leases: Leases) -> None:
    """Given a batch with pages nobody holds and an empty queue, when the watchdog looks, then it
    waits for a second look before queueing (a task between queue and worker is not lost)."""
    batch_id = started(pipeline, pages_done=2)
    queue = Queue()
    dog = watchdog(pipeline, leases, queue)
    assert dog.tick() == [] and queue.queued == []
    assert dog.tick() == [f"{batch_id}: queued again page 1"]
    assert queue.queued == [(batch_id, True)]


def test_nothing_is_queued_again_while_tasks_wait_in_the_queue(pipeline: Pipeline,
                                                              leases: Leases) -> None:
    started(pipeline, pages_done=0)
    queue = Queue()
    queue.waiting = 3
    dog = watchdog(pipeline, leases, queue)
    for _ in range(3):
        dog.tick()
    assert queue.queued == []


def test_nothing_is_queued_when_the_broker_cannot_say_what_waits(pipeline: Pipeline,
                                                                 leases: Leases) -> None:
    started(pipeline, pages_done=0)
    queue = Queue()
    queue.waiting = None
    dog = watchdog(pipeline, leases, queue)
    dog.tick()
    dog.tick()
    assert queue.queued == []


def test_a_batch_run_by_sohoa_ingest_is_left_to_it(pipeline: Pipeline, leases: Leases) -> None:
    batch_id = started(pipeline, pages_done=0)
    leases.take(batch_key(batch_id), "cli@host:1", 30, batch_id)
    queue = Queue()
    dog = watchdog(pipeline, leases, queue)
    dog.tick()
    dog.tick()
    assert queue.queued == []


def test_a_waiting_batch_is_resumed_when_its_pause_is_over_and_not_before(
        pipeline: Pipeline, leases: Leases) -> None:
    """Given a batch waiting for the registry, when its next try is due, then the watchdog
    resumes it and queues its work even with a busy queue; before that, it leaves it."""
    batch_id = started(pipeline, pages_done=7)
    pipeline.wait(batch_id, RegistryUnavailable("registry answered 503"))
    queue = Queue()
    queue.waiting = 12
    dog = watchdog(pipeline, leases, queue)
    assert dog.tick() == []  # the pause (60 s) is not over
    record = pipeline.record(batch_id)
    record.waiting_for["next_try"] = "2000-01-01T00:00:00+00:00"
    pipeline.save_record(record)
    assert dog.tick() == [f"{batch_id}: resumed (page 1)"]
    assert queue.queued == [(batch_id, False)]
    after = pipeline.record(batch_id)
    assert after.status == "waiting" and after.waiting_for["tries"] == 1


def test_the_pause_between_tries_doubles_and_a_second_failure_does_not_push_it_later(
        pipeline: Pipeline) -> None:
    batch_id = started(pipeline, pages_done=7)
    first = pipeline.wait(batch_id, RegistryUnavailable("registry answered 503"))
    again = pipeline.wait(batch_id, RegistryUnavailable("registry answered 502"))
    assert again.waiting_for["next_try"] == first.waiting_for["next_try"]
    assert again.waiting_for["dependency"] == "registry"
    assert again.error == "registry unavailable: registry answered 502"
    tried = pipeline.resume(batch_id)
    from datetime import datetime

    since = datetime.fromisoformat(tried.waiting_for["since"])
    pause = datetime.fromisoformat(tried.waiting_for["next_try"]) - since
    assert 115 <= pause.total_seconds() <= 125  # 60 s, doubled for the second try


def test_a_person_can_retry_a_failed_batch(pipeline: Pipeline) -> None:
    batch_id = started(pipeline, pages_done=7)
    record = pipeline.record(batch_id)
    record.status, record.error = "failed", "unexpected: RegistryUnavailable: down"
    pipeline.save_record(record)
    assert pipeline.resume(batch_id).status == "failed"  # not by itself
    resumed = pipeline.resume(batch_id, reset=True)
    assert (resumed.status, resumed.error) == ("processing", None)
    assert resumed.retried_failure == "unexpected: RegistryUnavailable: down"
    assert pipeline.finalize(batch_id).status == "done"


def test_a_second_delivery_of_a_page_another_worker_holds_waits_for_its_lease(
        pipeline: Pipeline, leases: Leases, monkeypatch: pytest.MonkeyPatch) -> None:
    """Given page 0 held by a live worker, when its task is delivered to another worker, then
    that one does not process it but looks again once the lease could have expired."""
    from ingest import tasks

    monkeypatch.setenv("SOHOA_DATA_DIR", str(pipeline.settings.storage.data_dir))
    tasks.get_settings.cache_clear()
    tasks._pipeline.cache_clear()
    tasks._leases.cache_clear()
    try:
        batch_id = started(tasks._pipeline(), pages_done=0)
        tasks._leases().take(page_key(batch_id, 0), "other-worker", 30, batch_id)
        later: list[tuple] = []
        monkeypatch.setattr(tasks.process_page, "apply_async",
                            lambda args, countdown: later.append((args, countdown)))
        tasks.process_page.run(batch_id, 0)
        assert later == [((batch_id, 0), tasks.get_settings().recovery.lease_s)]
        assert not (pipeline.settings.storage.data_dir / "objects" / "batches" / batch_id / "pages" /
                    "00000.json").exists()
    finally:
        tasks.get_settings.cache_clear()
        tasks._pipeline.cache_clear()
        tasks._leases.cache_clear()
