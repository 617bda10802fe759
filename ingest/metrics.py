"""What the pipeline counts for Prometheus: pages by outcome, page time by stage, batches
finished by status, OCR and signature failures.

Pages are processed in Celery's pool processes, not in the web process that answers
`GET /metrics` (api/status_routes.py). `sohoa serve` and `sohoa worker` therefore call `use_dir`
before any metric exists: every process then writes its figures to files in that directory
(prometheus_client's multiprocess mode) and the web process adds them up. Without it (tests,
`sohoa ingest`) the figures stay in the process. The state of things (batches by status, the
queue, scanners, workers) is read at scrape time instead (api/status_routes.py).
"""

from __future__ import annotations

import os
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from storage.records import PageFacts

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"
# Page stages take from a few milliseconds (blank) to a minute (OCR of a dense page).
STAGE_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0)


def use_dir(path: Path, fresh: bool = False) -> None:
    """Figures of this process and its children go to files in `path`; `fresh` removes those
    of an earlier run (the one process that starts the others does, once)."""
    path.mkdir(parents=True, exist_ok=True)
    if fresh:
        for old in path.glob("*.db"):
            old.unlink(missing_ok=True)
    os.environ[MULTIPROC_ENV] = str(path)


def multiproc_dir() -> Path | None:
    found = os.environ.get(MULTIPROC_ENV)
    return Path(found) if found else None


@dataclass(frozen=True)
class _Metrics:
    pages: Any
    stage_seconds: Any
    batches: Any
    ocr_failures: Any
    signature_failures: Any


_made: list[_Metrics] = []
_making = threading.Lock()


def _metrics() -> _Metrics:
    """Made at first use, after `use_dir` (prometheus_client picks its mode when they are), once
    even when two page threads finish their first page together (a second registration of the
    same name is an error)."""
    with _making:
        if not _made:
            _made.append(_make())
        return _made[0]


def _make() -> _Metrics:
    from prometheus_client import Counter, Histogram

    return _Metrics(
        Counter("sohoa_pages_processed", "Pages processed, by outcome", ["outcome"]),
        Histogram("sohoa_page_stage_seconds", "Time of a page in each stage", ["stage"],
                  buckets=STAGE_BUCKETS),
        Counter("sohoa_batches_finished", "Batches split and stored, by status", ["status"]),
        Counter("sohoa_ocr_failures", "Pages whose OCR failed (Tesseract crashed or ran out "
                                      "of time)"),
        Counter("sohoa_signature_failures", "Documents the agency's signer could not sign, by "
                                            "kind", ["kind"]))


def touch() -> None:
    """Makes the metrics (at zero) if no page made them yet."""
    _metrics()


def page_outcome(facts: PageFacts) -> str:
    if facts.status == "failed":
        return "failed"
    if facts.separator:
        return "separator"
    if facts.blank:
        return "blank"
    return "ok"


def page_processed(facts: PageFacts) -> None:
    m = _metrics()
    m.pages.labels(page_outcome(facts)).inc()
    for stage, seconds in (facts.seconds or {}).items():
        m.stage_seconds.labels(stage).observe(seconds)
    if facts.status == "failed" and (facts.error or "").startswith("tool: tesseract"):
        m.ocr_failures.inc()


def batch_finished(status: str) -> None:
    _metrics().batches.labels(status).inc()


def signature_failed(kind: str) -> None:
    """`kind`: unavailable (the token or timestamp server is away: retried) or refused."""
    _metrics().signature_failures.labels(kind).inc()


def mark_process_dead(pid: int) -> None:
    """A pool process ended: its live gauges go (its counters stay in the sums)."""
    if multiproc_dir() is not None:
        from prometheus_client import multiprocess

        multiprocess.mark_process_dead(pid)
