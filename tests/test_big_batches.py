"""Big inputs neither block nor starve (issue 10, part 3). Through a real `sohoa serve` and `sohoa
worker` on the embedded broker: a 3,000-page PDF is answered 202 at once, a 7-page batch sent right
after it finishes while the big one is still being processed, the same big file sent again queues
nothing, and an upload over SOHOA_MAX_UPLOAD_MB is refused with 413, nothing of it stored. Then the
window of ingest/tasks.py one decision at a time: tasks called directly, the broker stood in for.

As a program, the scenario with its figures (BENCHMARKS.md): python -m tests.test_big_batches
"""

from __future__ import annotations

import contextlib
import io
import json
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pikepdf
import pytest
from PIL import Image

from tests.faults import Group, api_key, free_port, queued, session_gone, sohoa_env
from tests.test_recovery import SAMPLE, SAMPLE_DOSSIERS, wait_until

SOHOA = Path(sys.executable).parent / "sohoa"
BIG_PAGES = 3000
WINDOW = 8  # SOHOA_PAGES_IN_FLIGHT's default
UPLOAD_MB = 4  # above the sample's 2.9 MB


def big_pdf(path: Path, pages: int, dpi: int = 50) -> Path:
    """An A4 PDF of `pages` blank pages scanned at `dpi` (one small JPEG shared by every page:
    3,000 pages weigh 0.5 MB and take ~0.1 s each to process, dropped as blank)."""
    w, h = round(8.27 * dpi), round(11.69 * dpi)
    jpeg = io.BytesIO()
    Image.new("L", (w, h), 255).save(jpeg, "JPEG", quality=50)
    pdf = pikepdf.new()
    image = pikepdf.Stream(pdf, jpeg.getvalue(), Type=pikepdf.Name.XObject,
                           Subtype=pikepdf.Name.Image, Width=w, Height=h, BitsPerComponent=8,
                           ColorSpace=pikepdf.Name.DeviceGray, Filter=pikepdf.Name.DCTDecode)
    pw, ph = 8.27 * 72, 11.69 * 72
    content = pikepdf.Stream(pdf, f"q {pw:.2f} 0 0 {ph:.2f} 0 0 cm /Im0 Do Q".encode())
    resources = pikepdf.Dictionary(XObject=pikepdf.Dictionary(Im0=image))
    for _ in range(pages):
        pdf.pages.append(pikepdf.Page(pikepdf.Dictionary(
            Type=pikepdf.Name.Page, MediaBox=[0, 0, pw, ph], Contents=content,
            Resources=resources)))
    pdf.save(path, deterministic_id=True)
    return path


def big_tiff(path: Path, frames: int) -> Path:
    """A TIFF of `frames` blank A4 pages at 50 dpi, CCITT G4 (2,000 frames: 0.7 MB)."""
    page = Image.new("1", (413, 584), 1)
    page.save(path, save_all=True, append_images=[page] * (frames - 1), compression="group4",
              dpi=(50, 50))
    return path


# ---- through the API, real processes -------------------------------------------------------


@dataclass
class Site:
    """`sohoa serve --no-worker` and one `sohoa worker` on a data dir of their own."""

    env: dict[str, str]
    url: str
    key: str
    data: Path
    big: Path
    serve: Group
    worker: Group
    batch: dict[str, str] = field(default_factory=dict)  # name -> batch id

    @property
    def logs(self) -> list[Path]:
        return [self.serve.log, self.worker.log]

    def upload(self, path: Path, timeout: float = 60) -> tuple[httpx.Response, float]:
        start = time.monotonic()
        with path.open("rb") as f:
            answer = httpx.post(f"{self.url}/api/v1/batches",
                                files={"file": (path.name, f, "application/pdf")},
                                headers=self.auth, timeout=timeout)
        return answer, time.monotonic() - start

    def status(self, batch_id: str) -> dict[str, Any]:
        answer = httpx.get(f"{self.url}/api/v1/batches/{batch_id}", headers=self.auth, timeout=30)
        assert answer.status_code == 200, answer.text
        return answer.json()

    @property
    def auth(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.key}"}

    def batches(self) -> set[str]:
        return {p.name for p in (self.data / "objects" / "batches").glob("b*")}


@contextlib.contextmanager
def site_on(root: Path, big_pages: int = BIG_PAGES, **extra: str) -> Iterator[Site]:
    """A site with its big file made; both processes stopped at the end, nothing left running."""
    data = root / "data"
    env = sohoa_env(data, SOHOA_MAX_PAGES="5000", SOHOA_MAX_UPLOAD_MB=str(UPLOAD_MB), **extra)
    big = big_pdf(root / "big.pdf", big_pages)
    key = api_key(env)
    port = free_port()
    serve = Group([str(SOHOA), "serve", "--no-worker", "--port", str(port)], env,
                  root / "serve.log")
    worker = None
    try:
        worker = Group([str(SOHOA), "worker", "--concurrency", "2"], env, root / "worker.log")
        site = Site(env, f"http://127.0.0.1:{port}", key, data, big, serve, worker)
        wait_until(lambda: b"Uvicorn running on" in serve.log.read_bytes(), 60, "serve started",
                   site.logs)
        wait_until(lambda: b" ready." in worker.log.read_bytes(), 60, "worker ready", site.logs)
        yield site
    finally:
        for group in (worker, serve):
            if group is not None:
                group.stop()
                assert session_gone(group.proc.pid) == []


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Site]:
    with site_on(tmp_path_factory.mktemp("big")) as found:
        yield found


def big_batch(site: Site) -> str:
    """The big file's batch (uploaded here if no test did before)."""
    if "big" not in site.batch:
        answer, _ = site.upload(site.big)
        assert answer.status_code == 202, answer.text
        site.batch["big"] = answer.json()["batch_id"]
    return site.batch["big"]


def test_a_3000_page_upload_is_answered_at_once_and_a_small_batch_sent_after_it_finishes_first(
        site: Site) -> None:
    """Given a server and a worker (2 processes), when a 3,000-page PDF is uploaded and a 7-page
    batch right after it, then the upload is answered 202 within seconds (its pages are counted
    and queued by the worker), and the small batch is done, its two dossiers made, while the big
    one is still being processed: it waited behind a window of the big one's pages, not all."""
    answer, took = site.upload(site.big)
    print(f"\n{BIG_PAGES}-page upload answered {answer.status_code} in {took:.2f} s")
    assert answer.status_code == 202, answer.text
    assert answer.json()["status"] == "received"
    site.batch["big"] = answer.json()["batch_id"]
    assert took < 10  # about 0.1 s here; it was more than 45 s (BENCHMARKS.md)
    small, _ = site.upload(SAMPLE)
    assert small.status_code == 202, small.text
    site.batch["small"] = small_id = small.json()["batch_id"]
    sent = time.monotonic()
    wait_until(lambda: site.status(small_id)["status"] in ("done", "needs_review", "failed"), 90,
               "the small batch finished", site.logs)
    small_took = time.monotonic() - sent
    big = site.status(site.batch["big"])
    print(f"7-page batch sent after it finished in {small_took:.1f} s; the big one then had "
          f"{big['pages_done']} of {big['pages']} pages done")
    done = site.status(small_id)
    assert done["status"] == "done", done
    assert [(d["dossier_id"], d["pages"]) for d in done["dossiers"]] == SAMPLE_DOSSIERS
    assert big["status"] == "processing" and big["pages"] == BIG_PAGES
    assert big["pages_done"] < BIG_PAGES


def test_the_same_big_file_sent_again_while_it_is_processed_queues_nothing(site: Site) -> None:
    """Given the big batch under way and its worker killed (so the queue holds still), when the
    same file is uploaded again, then the answer names the same batch, and the queue holds
    exactly the tasks it held before: at most a window of the batch's pages, none added."""
    batch_id = big_batch(site)
    wait_until(lambda: site.status(batch_id)["pages_done"] >= 1, 60, "the big batch under way",
               site.logs)
    site.worker.kill()  # nothing takes from the queue or adds to it any more
    before = queued(site.env)
    answer, _ = site.upload(site.big)
    after = queued(site.env)
    print(f"\nqueued before the same file again: {before}, after: {after}")
    assert answer.status_code == 202, answer.text
    assert (answer.json()["batch_id"], answer.json()["status"]) == (batch_id, "processing")
    assert before is not None and 1 <= before <= WINDOW
    assert after == before


def test_an_upload_over_the_limit_is_refused_with_413_and_nothing_is_stored(site: Site) -> None:
    """Given SOHOA_MAX_UPLOAD_MB=4, when a 5 MB file is uploaded (with its length declared, then
    chunked with no length), then both are answered 413 saying why, no batch is made and no
    temporary file is left."""
    batches = site.batches()
    body = b"%PDF-1.4\n" + b"0" * (5 * 1024 * 1024)
    declared = httpx.post(f"{site.url}/api/v1/batches", headers=site.auth, timeout=60,
                          files={"file": ("big.pdf", body, "application/pdf")})
    assert declared.status_code == 413, declared.text
    assert "SOHOA_MAX_UPLOAD_MB" in declared.json()["detail"]

    boundary = "sohoa-big-upload"

    def chunked() -> Iterator[bytes]:
        yield (f"--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; "
               f"filename=\"big.pdf\"\r\nContent-Type: application/pdf\r\n\r\n").encode()
        for start in range(0, len(body), 256 * 1024):
            yield body[start:start + 256 * 1024]
        yield f"\r\n--{boundary}--\r\n".encode()

    streamed = httpx.post(f"{site.url}/api/v1/batches", content=chunked(), timeout=60,
                          headers={**site.auth,
                                   "Content-Type": f"multipart/form-data; boundary={boundary}"})
    assert streamed.status_code == 413, streamed.text
    assert site.batches() == batches
    assert list((site.data / "incoming").iterdir()) == []


# ---- the window, one decision at a time ------------------------------------------------------


class Broker:
    """Stands in for the queue: what is queued, in order, and a worker taking it first in, first
    out, one task at a time."""

    def __init__(self, tasks: Any) -> None:
        self.tasks = tasks
        self.messages: list[tuple[Any, ...]] = []
        self.peak: dict[str, int] = {}  # batch -> most of its pages queued at once

    def put(self, *message: Any) -> None:
        self.messages.append(message)
        if message[0] == "page":
            batch_id = message[1]
            now = sum(1 for m in self.messages if m[0] == "page" and m[1] == batch_id)
            self.peak[batch_id] = max(self.peak.get(batch_id, 0), now)

    def pages(self, batch_id: str) -> list[int]:
        return [m[2] for m in self.messages if m[0] == "page" and m[1] == batch_id]

    def run_one(self) -> tuple[Any, ...]:
        kind, *args = message = self.messages.pop(0)
        {"start": self.tasks.start_batch, "page": self.tasks.process_page,
         "finish": self.tasks.finish_batch}[kind].run(*args)
        return message


@pytest.fixture
def local(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[Any, Broker, list]]:
    """ingest.tasks on settings of this test with a window of 3 pages, the broker stood in for,
    and page work reduced to storing its result (listed in `done`)."""
    from ingest import tasks
    from ingest.pipeline import Pipeline
    from storage import layout

    monkeypatch.setenv("SOHOA_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("SOHOA_PAGES_IN_FLIGHT", "3")
    caches = (tasks.get_settings, tasks._pipeline, tasks._leases)
    for cached in caches:
        cached.cache_clear()
    broker = Broker(tasks)
    done: list[tuple[str, int]] = []

    def process_new_page(self: Pipeline, batch_id: str, index: int, read_ahead: Any = None
                         ) -> dict:
        done.append((batch_id, index))
        facts = {"index": index, "status": "ok", "blank": True}
        self.store.put(layout.page_facts(batch_id, index), json.dumps(facts).encode(),
                       overwrite=True)
        return facts

    monkeypatch.setattr(Pipeline, "process_new_page", process_new_page)
    monkeypatch.setattr(tasks.start_batch, "delay", lambda b: broker.put("start", b))
    monkeypatch.setattr(tasks.process_page, "delay", lambda b, i: broker.put("page", b, i))
    monkeypatch.setattr(tasks.finish_batch, "delay", lambda b: broker.put("finish", b))
    monkeypatch.setattr(tasks, "queued_messages", lambda: len(broker.messages))
    try:
        yield tasks, broker, done
    finally:
        for cached in caches:
            cached.cache_clear()


def test_a_small_batch_sent_after_a_big_one_waits_behind_a_window_of_its_pages_only(
        local: tuple[Any, Broker, list], tmp_path: Path) -> None:
    """Given a window of 3, when a 30-page file and then a 4-page one are submitted and one worker
    takes the queue first in, first out, then never more than 3 pages of either are queued at
    once, the small batch's pages are all done while the big one has pages left, every page is
    done once, and each batch's finishing is queued once, after its last page."""
    tasks, broker, done = local
    big = tasks.submit(big_pdf(tmp_path / "big.pdf", 30)).batch_id
    small = tasks.submit(big_pdf(tmp_path / "small.pdf", 4, dpi=40)).batch_id
    assert broker.messages == [("start", big), ("start", small)]
    finished = []  # (batch, pages done by then)
    while broker.messages:
        message = broker.run_one()
        if message[0] == "finish":
            finished.append((message[1], len(done)))
    assert broker.peak == {big: 3, small: 3}
    assert sorted(done) == sorted([(big, i) for i in range(30)] + [(small, i) for i in range(4)])
    assert [b for b, _ in finished] == [small, big]
    # Behind 3 pages of the big one, then in turn with it: its 4 pages are done among the first 10.
    assert max(n for n, (b, _) in enumerate(done) if b == small) < 10
    assert finished[0][1] < 30 + 4  # (its finishing queued behind the big one's next window)
    pipeline = tasks._pipeline()
    assert pipeline.record(big).status == pipeline.record(small).status == "done"
    assert pipeline.record(big).pages_in_flight == 3


def test_a_task_delivered_twice_does_not_widen_the_window(
        local: tuple[Any, Broker, list], tmp_path: Path) -> None:
    """Given a started 12-page batch (window 3: pages 0, 1, 2 queued), when its start and its
    page 0 are each delivered twice, then page 0's chain goes on once (page 3) and the start
    queues nothing more; a redelivery (its worker vanished, maybe before queueing the next)
    goes on with the chain, and the copy it makes stops at its page."""
    tasks, broker, done = local
    batch_id = tasks.submit(big_pdf(tmp_path / "b.pdf", 12)).batch_id
    broker.run_one()
    assert broker.pages(batch_id) == [0, 1, 2]
    tasks.start_batch.run(batch_id)
    tasks.process_page.run(batch_id, 0)
    tasks.process_page.run(batch_id, 0)
    assert broker.pages(batch_id) == [0, 1, 2, 3]
    assert done == [(batch_id, 0)]
    tasks.process_page.push_request(delivery_info={"redelivered": True})
    try:
        tasks.process_page.run(batch_id, 0)
    finally:
        tasks.process_page.pop_request()
    assert broker.pages(batch_id) == [0, 1, 2, 3, 3]
    tasks.process_page.run(batch_id, 3)
    tasks.process_page.run(batch_id, 3)  # the copy: page 3 is done, its chain went on once
    assert broker.pages(batch_id) == [0, 1, 2, 3, 3, 6]


def test_stranded_work_is_queued_again_a_window_at_most_and_never_what_a_worker_holds(
        local: tuple[Any, Broker, list], tmp_path: Path) -> None:
    """Given a 12-page batch whose queued tasks were lost (pages 0 and 4 done, page 1 held by a
    live worker), when the watchdog looks with the queue empty, then it queues the first page
    without a result of each chain nobody holds (3 and 2), not every missing page; with tasks
    waiting in the queue it queues nothing."""
    from storage.leases import page_key

    tasks, broker, _ = local
    batch_id = tasks.submit(big_pdf(tmp_path / "b.pdf", 12)).batch_id
    broker.run_one()
    broker.messages.clear()  # a broker that forgot its messages
    for index in (0, 4):
        tasks._pipeline().process_page(batch_id, index)
    tasks._leases().take(page_key(batch_id, 1), "other-worker", 30, batch_id)
    broker.put("page", "b-another-batch", 0)
    assert tasks.queue_missing(batch_id, only_if_idle=True) == []
    broker.messages.clear()
    assert tasks.queue_missing(batch_id, only_if_idle=True) == ["page 3", "page 2"]
    assert broker.pages(batch_id) == [3, 2]


def test_the_same_file_sent_again_queues_nothing_while_its_batch_is_under_way(
        local: tuple[Any, Broker, list], tmp_path: Path) -> None:
    """Given a file submitted (its start queued), when it is sent again before and after its
    start ran, then nothing more is queued either time: the same batch, the same tasks."""
    tasks, broker, _ = local
    path = big_pdf(tmp_path / "b.pdf", 12)
    batch_id = tasks.submit(path).batch_id
    again = tasks.submit(path)
    assert (again.batch_id, again.status) == (batch_id, "received")
    assert broker.messages == [("start", batch_id)]
    broker.run_one()
    assert tasks.submit(path).status == "processing"
    assert broker.messages == [("page", batch_id, i) for i in (0, 1, 2)]


# ---- the figures of BENCHMARKS.md --------------------------------------------------------------


def main(pages: int = BIG_PAGES) -> None:
    """The scenario once, timed: the big upload's answer, the 7-page batch sent right after it
    (from its upload to its end), the queue then, and the answer to a 2,000-frame TIFF. The
    server and worker run the code on PYTHONPATH if set (e.g. a worktree of an older commit)."""
    final = ("done", "needs_review", "failed")
    with tempfile.TemporaryDirectory(prefix="sohoa-big-") as tmp, \
            site_on(Path(tmp), pages) as site:
        answer, took = site.upload(site.big, timeout=3600)
        small, _ = site.upload(SAMPLE, timeout=3600)
        sent = time.monotonic()
        small_id, big_id = small.json()["batch_id"], answer.json()["batch_id"]
        wait_until(lambda: site.status(small_id)["status"] in final, 7200, "the small batch",
                   site.logs)
        small_took = time.monotonic() - sent
        big = site.status(big_id)
        waiting = queued(site.env)
        tiff, tiff_took = site.upload(big_tiff(Path(tmp) / "big.tif", 2000), timeout=3600)
        print(json.dumps({
            "big_pages": pages, "big_upload_answer_s": round(took, 2),
            "big_upload": answer.json(), "small_done_after_s": round(small_took, 1),
            "small_status": site.status(small_id)["status"],
            "big_pages_done_then": big["pages_done"], "queued_then": waiting,
            "tiff_2000_upload_answer_s": round(tiff_took, 2), "tiff_upload": tiff.json()},
            indent=1))


if __name__ == "__main__":
    main(*(int(a) for a in sys.argv[1:2]))


def test_pages_are_queued_heaviest_first(local: tuple[Any, Broker, list], tmp_path: Path) -> None:
    """Given a 6-page file whose page 4 carries the most image data, when its batch starts, then
    its order (stored once, in the record) begins with page 4, and the first window follows it."""
    tasks, broker, _ = local
    path = big_pdf(tmp_path / "b.pdf", 6)
    noisy = io.BytesIO()
    Image.effect_noise((413, 585), 64).convert("L").save(noisy, "JPEG", quality=90)
    with pikepdf.open(path, allow_overwriting_input=True) as pdf:
        pdf.pages[4].Resources.XObject.Im0 = pikepdf.Stream(
            pdf, noisy.getvalue(), Type=pikepdf.Name.XObject, Subtype=pikepdf.Name.Image,
            Width=413, Height=585, BitsPerComponent=8, ColorSpace=pikepdf.Name.DeviceGray,
            Filter=pikepdf.Name.DCTDecode)
        pdf.save(path)
    batch_id = tasks.submit(path).batch_id
    broker.run_one()
    order = tasks._pipeline().record(batch_id).page_order
    assert order[0] == 4 and sorted(order) == list(range(6))
    assert broker.pages(batch_id) == order[:3]


def test_a_page_stopped_by_a_dependency_stops_its_chain_until_the_batch_is_resumed(
        local: tuple[Any, Broker, list], tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Given a started 9-page batch, when page 0 keeps meeting object storage down (its quick
    retries spent), then the batch waits and page 0's chain goes no further; resumed, the first
    page without a result of each chain is queued again, nothing more."""
    from ingest.pipeline import Pipeline

    tasks, broker, _ = local
    batch_id = tasks.submit(big_pdf(tmp_path / "b.pdf", 9)).batch_id
    broker.run_one()
    broker.messages.clear()

    def down(self: Pipeline, batch_id: str, index: int) -> dict:
        raise ConnectionRefusedError("object storage refused the connection")

    with monkeypatch.context() as m:
        m.setattr(Pipeline, "process_new_page", down)
        tasks.process_page.apply(args=(batch_id, 0))
    record = tasks._pipeline().record(batch_id)
    assert record.status == "waiting"
    assert broker.messages == []
    tasks.retry(batch_id)
    assert broker.pages(batch_id) == [0, 1, 2]
