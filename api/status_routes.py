"""What the system is doing, for admins: `GET /api/v1/status` (the web's /admin/status shows the
same) and `GET /metrics` for Prometheus.

The status is read when asked: batches by status, failed pages waiting for review, each intake
channel's last file and last failure (storage/queries.py), the task queue's depth (the broker),
workers alive (their `worker:` leases, storage/leases.py) and scanners as last read. An admin of
some agencies sees the batches and channels of those; the queue and the workers are the
installation's.

`/metrics` adds the same state as gauges to what the pipeline counted (ingest/metrics.py: pages
by outcome, page time by stage, batches finished, OCR and signature failures), summed over every
process of this machine. Its figures cover every agency, so it answers only an admin of all
agencies (`*`); `SOHOA_METRICS_PORT` serves it without a key on a local address instead.
"""

from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass
from datetime import datetime
from typing import Annotated, Any

from fastapi import Depends, FastAPI, HTTPException
from fastapi.responses import Response

from api.errors import answers
from api.keys import Principal
from ingest import metrics
from ingest.pipeline import Pipeline
from scanners.devices import Scanners
from storage import queries
from storage.leases import WORKER_PREFIX, Leases


@dataclass(frozen=True)
class WorkerState:
    node: str
    holder: str
    seen_until: datetime


@dataclass(frozen=True)
class ScannerState:
    name: str
    state: str
    agency: str | None
    error: str | None


@dataclass(frozen=True)
class SystemStatus:
    batches: dict[str, int]
    failed_pages_waiting: int
    channels: list[queries.ChannelState]
    queue: str
    queue_depth: int | None  # None: the broker did not answer
    broker_error: str | None
    workers: list[WorkerState]
    scanners: list[ScannerState]

    def to_dict(self) -> dict[str, Any]:
        def plain(value: Any) -> Any:
            if isinstance(value, datetime):
                return value.isoformat()
            if isinstance(value, dict):
                return {k: plain(v) for k, v in value.items()}
            if isinstance(value, list):
                return [plain(v) for v in value]
            return value
        return plain(asdict(self))


def queue_depth(queue: str) -> tuple[int | None, str | None]:
    """Tasks waiting in the broker's queue, or None and why not."""
    from ingest.broker import app

    try:
        with app.connection_for_read() as connection:
            connection.ensure_connection(max_retries=1, timeout=2)
            declared = connection.default_channel.queue_declare(queue=queue, passive=True)
            return int(declared.message_count), None
    except Exception as e:  # any broker, any failure: the page says so, it does not fail
        return None, f"{type(e).__name__}: {str(e)[:200]}"


def system_status(pipeline: Pipeline, scanners: Scanners | None,
                  scope: tuple[str, ...] | None) -> SystemStatus:
    catalog = pipeline.catalog
    assert catalog is not None
    settings = pipeline.settings
    depth, broker_error = queue_depth(settings.broker.queue)
    prefix = len(WORKER_PREFIX)
    workers = [WorkerState(lease.key[prefix:], lease.holder, lease.expires_at)
               for lease in Leases(settings.storage.catalog_url).live_with_prefix(WORKER_PREFIX)]
    seen = [ScannerState(d.name, d.state, d.agency, d.error)
            for d in (scanners.known() if scanners else [])
            if scope is None or d.agency is None or d.agency in scope]
    return SystemStatus(queries.batch_counts(catalog, scope),
                        queries.failed_pages_waiting(catalog, scope),
                        queries.intake_channels(catalog, scope), settings.broker.queue, depth,
                        broker_error, workers, seen)


class StateCollector:
    """The status as Prometheus gauges, read at each scrape."""

    def __init__(self, pipeline: Pipeline, scanners: Scanners | None) -> None:
        self.pipeline, self.scanners = pipeline, scanners

    def collect(self) -> Iterator[Any]:
        from prometheus_client.core import GaugeMetricFamily

        status = system_status(self.pipeline, self.scanners, None)
        batches = GaugeMetricFamily("sohoa_batches", "Batches by status", labels=["status"])
        for name, count in sorted(status.batches.items()):
            batches.add_metric([name], count)
        yield batches
        yield GaugeMetricFamily("sohoa_failed_pages_waiting",
                                "Pages that could not be read, waiting for review",
                                value=status.failed_pages_waiting)
        yield GaugeMetricFamily("sohoa_broker_up", "Whether the task broker answered",
                                value=0 if status.queue_depth is None else 1)
        if status.queue_depth is not None:
            yield GaugeMetricFamily("sohoa_queue_depth", "Tasks waiting in the queue",
                                    value=status.queue_depth)
        yield GaugeMetricFamily("sohoa_workers_alive", "Workers holding their presence lease",
                                value=len(status.workers))
        scanners = GaugeMetricFamily("sohoa_scanners", "Scanners by state, as last read",
                                     labels=["state"])
        states: dict[str, int] = {}
        for scanner in status.scanners:
            states[scanner.state] = states.get(scanner.state, 0) + 1
        for state, count in sorted(states.items()):
            scanners.add_metric([state], count)
        yield scanners


def metrics_registry(pipeline: Pipeline, scanners: Scanners | None) -> Any:
    """Every process's counters (from the metrics directory when there is one, else this
    process's own) and the state gauges, read now."""
    from prometheus_client import REGISTRY, CollectorRegistry
    from prometheus_client.multiprocess import MultiProcessCollector

    registry = CollectorRegistry(auto_describe=False)
    directory = metrics.multiproc_dir()
    if directory is None:
        metrics.touch()  # the counters exist (at zero) before the first page
        registry.register(_ThisProcess(REGISTRY))  # type: ignore[arg-type]
    else:
        MultiProcessCollector(registry, path=str(directory))
    registry.register(StateCollector(pipeline, scanners))  # type: ignore[arg-type]
    return registry


class _ThisProcess:
    def __init__(self, registry: Any) -> None:
        self.registry = registry

    def collect(self) -> Iterator[Any]:
        yield from self.registry.collect()


def exposition(registry: Any) -> Response:
    from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

    return Response(generate_latest(registry), media_type=CONTENT_TYPE_LATEST)


def add_status_routes(app: FastAPI, pipeline: Pipeline, scanners: Scanners | None,
                      role: Callable[..., Any], log: Callable[..., None]) -> None:
    Admin = Annotated[Principal, Depends(role("admin"))]

    @app.get("/api/v1/status", responses=answers())
    def status(who: Admin) -> dict[str, Any]:
        """Batches by status, failed pages waiting, each intake channel's last file and last
        failure, the queue's depth, workers alive and scanners, for the admin's agencies."""
        return system_status(pipeline, scanners, who.scope()).to_dict()

    @app.get("/metrics", response_class=Response, include_in_schema=False)
    def prometheus(who: Admin) -> Response:
        if not who.all_agencies:
            raise HTTPException(403, "the metrics cover every agency: an admin of all "
                                     "agencies (*) may read them")
        return exposition(metrics_registry(pipeline, scanners))
