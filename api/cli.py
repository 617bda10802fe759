"""The `sohoa` command line."""

from __future__ import annotations

import contextlib
import getpass
import json
import logging
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import click
from pydantic import ValidationError

from ingest import logs, metrics
from ingest.pipeline import Pipeline
from ingest.runner import public_view, run_file
from ingest.settings import Settings
from ingest.signing import SignerRefused
from storage.errors import TRANSIENT, describe
from storage.records import BatchRecord, ReviewEntry


def _pipeline() -> Pipeline:
    try:
        settings = Settings()
    except ValidationError as e:
        raise click.ClickException(f"invalid configuration:\n{e}") from e
    try:
        return Pipeline.from_settings(settings)
    except TRANSIENT as e:
        raise click.ClickException(describe(e)) from e


def _reason(e: BaseException) -> str:
    return str(e).splitlines()[0][:300]


@click.group()
def main() -> None:
    """sohoa: digitize scanned batches of one-stop-shop dossiers."""


@main.command()
@click.argument("files", nargs=-1, required=True,
                type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--dossier", "dossier", metavar="CODE",
              help="Dossier code for pages before the first barcoded code (one dossier per file).")
@click.option("--result", "result", metavar="CODE",
              help="The files are the result (decision, certificate, licence) of dossier CODE.")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON document on stdout.")
def ingest(files: tuple[Path, ...], dossier: str | None, result: str | None,
           as_json: bool) -> None:
    """Digitize FILE... (PDF, TIFF, JPEG, PNG) and wait until each batch is stored."""
    pipeline = _pipeline()
    logs.configure(pipeline.settings.monitoring.log_format, logging.WARNING)
    if dossier and not pipeline.grammar.match(dossier):
        raise click.BadParameter(f"{dossier!r} is not a dossier code", param_hint="--dossier")
    if result:
        if dossier:
            raise click.BadParameter("give --dossier or --result, not both",
                                     param_hint="--result")
        if (found := pipeline.grammar.match(result)) is None:
            raise click.BadParameter(f"{result!r} is not a dossier code", param_hint="--result")
        dossier = found.code
    batches = []
    for path in files:
        try:
            record = run_file(pipeline, path, dossier, result=bool(result)) if as_json \
                else _run_with_bar(pipeline, path, dossier, bool(result))
        except SignerRefused as e:  # not retried by itself: a retry could lock a USB token
            raise click.ClickException(
                f"{path.name}: not stored, the agency's signer refused: {e}. The pages are kept: "
                "fix the signer (`sohoa signer add`) and run the same command again.") from e
        except TRANSIENT as e:
            raise click.ClickException(
                f"{path.name}: interrupted, {describe(e)}. What was received is kept: run the "
                "same command again to resume (a running `sohoa serve` resumes it by itself "
                "when the dependency answers).") from e
        if not as_json:
            _print_summary(record)
        batches.append(public_view(record))
    if as_json:
        click.echo(json.dumps({"batches": batches}, ensure_ascii=False, indent=1))
    if any(b["status"] == "failed" for b in batches):
        sys.exit(1)


def _run_with_bar(pipeline: Pipeline, path: Path, dossier: str | None,
                  result: bool = False) -> BatchRecord:
    bar: Any = None

    def progress(step: int, total: int) -> None:
        nonlocal bar
        if not sys.stderr.isatty():
            return
        if bar is None:
            bar = click.progressbar(length=total, label=f"{path.name}", file=sys.stderr,
                                    show_pos=True)
            bar.__enter__()
        bar.update(step)

    try:
        return run_file(pipeline, path, dossier, progress=progress, result=result)
    finally:
        if bar is not None:
            bar.__exit__(None, None, None)


def _print_summary(record: BatchRecord) -> None:
    status = record.status
    colour = {"done": "green", "needs_review": "yellow", "failed": "red"}.get(status, "white")
    click.echo(f"{record.file}: {click.style(status, fg=colour)} "
               f"(batch {record.batch_id}, {record.pages} pages)")
    if record.already_ingested:
        click.echo(f"  already ingested at {record.received_at} (same SHA-256): nothing new")
    if record.error:
        click.echo(f"  error: {record.error}")
    for d in record.dossiers:
        pages = ", ".join(str(p + 1) for p in d.pages)
        click.echo(f"  {d.dossier_id}  pages {pages}  -> {d.pdf}")
    for r in record.results or []:
        pages = ", ".join(str(p + 1) for p in r["pages"])
        click.echo(f"  {r['dossier_id']}  result v{r['version']}  pages {pages}  -> {r['pdf']}")
    failed = {f.page: f.error for f in record.failed_pages}
    for page, error in failed.items():
        click.echo(f"  page {page + 1} could not be read: {error}")
    for item in record.review:
        if line := _review_line(item):
            click.echo(f"  {line}")
    for dropped in record.dropped_pages:
        click.echo(f"  dropped page {dropped.page + 1}: {dropped.reason}")


def _review_line(item: ReviewEntry) -> str | None:
    """One review reason (ingest/pipeline.py review_entries) as the summary line staff read;
    unreadable pages are listed with their errors already."""
    pages = ", ".join(str(p + 1) for p in item.pages)
    reason, code = item.reason, item.code
    if reason == "no_dossier":
        return f"for review (a result for {code}, which has no dossier): pages {pages}"
    if reason == "no_code":
        return f"for review (no dossier code): pages {pages}"
    if reason == "unknown_to_registry":
        return f"for review ({code} is unknown to the registry): pages {pages}"
    if reason == "incomplete_rescan":
        return (f"held for review ({code}: a rescan that may lack pages; the current version "
                f"v{item.current_version} has {item.current_pages} pages and "
                f"stays): pages {pages}")
    if reason == "incomplete_scan":
        return f"held for review ({code}: from a scan that stopped early): pages {pages}"
    if reason == "incomplete":
        return f"the scan may lack pages: {item.detail}"
    if reason != "unreadable":
        return f"for review ({code or 'no code'}: {reason}): pages {pages}"
    return None


def _scanners(settings: Settings, discovery: bool) -> Any:
    from scanners.devices import Scanners

    return Scanners.from_config(settings.scanners, settings.storage.data_dir, discovery)


@main.group()
def scanners() -> None:
    """The office's eSCL scanners (SOHOA_SCANNERS, and those found over mDNS)."""


@scanners.command("list")
@click.option("--no-discovery", is_flag=True, help="Only the configured scanners.")
@click.option("--json", "as_json", is_flag=True)
def scanners_list(no_discovery: bool, as_json: bool) -> None:
    """Each scanner with its state: idle, ready (paper loaded), feeder_empty, jammed, busy..."""
    try:
        settings = Settings()
    except ValidationError as e:
        raise click.ClickException(f"invalid configuration:\n{e}") from e
    devices = _scanners(settings, not no_discovery).refresh()
    if as_json:
        click.echo(json.dumps({"scanners": [d.public() for d in devices]}, ensure_ascii=False,
                              indent=1))
        return
    if not devices:
        click.echo("no scanners configured or found")
    for d in devices:
        colour = {"idle": "green", "ready": "green", "feeder_empty": "yellow"}.get(d.state, "red")
        click.echo(f"{d.name:30} {click.style(d.state, fg=colour):12} {d.id}  {d.url}  [{d.origin}]"
                   + (f"\n    {d.error}" if d.error else ""))


@main.command()
@click.argument("device")
@click.option("--dossier", metavar="CODE", help="Dossier code for pages before the first barcode.")
@click.option("--source", type=click.Choice(["feeder", "platen"]), default="feeder",
              show_default=True)
@click.option("--duplex", is_flag=True, help="Both sides of each sheet (feeder only).")
@click.option("--color", "color_mode", type=click.Choice(["Grayscale8", "RGB24", "BlackAndWhite1"]),
              default="Grayscale8", show_default=True)
@click.option("--resolution", type=int, default=300, show_default=True)
@click.option("--json", "as_json", is_flag=True)
def scan(device: str, dossier: str | None, source: str, duplex: bool, color_mode: str,
         resolution: int, as_json: bool) -> None:
    """Scan on DEVICE (UUID, name or URL) and digitize the pages; waits for the dossiers.

    Exit status 1 if the scan failed, 2 if it stopped early (jam, misfeed): the pages received
    are kept and digitized, and the batch is marked incomplete."""
    from scanners.escl_xml import ScanRequest
    from scanners.scan import run_scan
    from scanners.spool import Spool

    pipeline = _pipeline()
    settings = pipeline.settings
    if dossier and not pipeline.grammar.match(dossier):
        raise click.BadParameter(f"{dossier!r} is not a dossier code", param_hint="--dossier")
    if duplex and source != "feeder":
        raise click.BadParameter("duplex needs the feeder", param_hint="--duplex")
    registry = _scanners(settings, True)
    try:
        found, _ = registry.find(device)
    except KeyError:
        raise click.ClickException(f"no scanner {device!r}: see `sohoa scanners list`") from None
    request = ScanRequest(source=source, duplex=duplex, color_mode=color_mode,
                          resolution=resolution)

    def accept(path: Path, **kwargs: Any) -> BatchRecord:
        return run_file(pipeline, path, **kwargs)

    progress = run_scan(registry, found, request, Spool(settings.scanners.spool_dir), accept, dossier)
    record = pipeline.record(progress.batch_id) if progress.batch_id else None
    if as_json:
        click.echo(json.dumps({"scan": progress.public(),
                               "batch": public_view(record) if record else None},
                              ensure_ascii=False, indent=1))
    else:
        click.echo(f"{found.name}: {progress.pages} page(s); {progress.message}")
        if record:
            _print_summary(record)
    if progress.state == "failed":
        sys.exit(1)
    if progress.state == "incomplete":
        sys.exit(2)


@main.group()
def dossier() -> None:
    """Look up stored dossiers."""


def _find(pipeline: Pipeline, code: str, action: str) -> dict[str, Any]:
    """The dossier, its read written to the audit log as the local user."""
    assert pipeline.catalog is not None and pipeline.audit is not None
    found = pipeline.catalog.dossier(code.strip().upper())
    if found is None:
        raise click.ClickException(f"no dossier {code}")
    pipeline.audit.append(f"cli:{getpass.getuser()}", action, found["dossier_id"],
                          found["agency"], "localhost", {"version": found["version"]})
    return found


@dossier.command("show")
@click.argument("code")
@click.option("--json", "as_json", is_flag=True)
def dossier_show(code: str, as_json: bool) -> None:
    """Fields, pages and versions of dossier CODE."""
    found = _find(_pipeline(), code, "dossier.read")
    if as_json:
        click.echo(json.dumps(found, ensure_ascii=False, indent=1))
        return
    click.echo(f"{found['dossier_id']}  (agency {found['agency']}, version {found['version']})")
    click.echo(f"  PDF: {found['pdf']}")
    for name, f in found["fields"].items():
        click.echo(f"  {name:18} {f['value']}  [{f['source']}, p.{f['page'] + 1}, "
                   f"{f['confidence']:.2f}]")
    for v in found["versions"]:
        click.echo(f"  v{v['version']}  batch {v['batch_id']}  {v['created_at']}")


@dossier.command("pdf")
@click.argument("code")
@click.option("-o", "--output", required=True, type=click.Path(dir_okay=False, path_type=Path))
@click.option("--version", "version", type=int, help="An older version (default: the latest).")
def dossier_pdf(code: str, output: Path, version: int | None) -> None:
    """Write the PDF/A of dossier CODE to a file."""
    pipeline = _pipeline()
    found = _find(pipeline, code, "dossier.pdf.read")
    key = found["pdf"]
    if version is not None:
        matches = [v["pdf"] for v in found["versions"] if v["version"] == version]
        if not matches:
            raise click.ClickException(f"dossier {code} has no version {version}")
        key = matches[0]
    with pipeline.store.local_path(key) as src:
        shutil.copyfile(src, output)
    click.echo(f"{output}")


def _monitor(pipeline: Pipeline, fresh: bool) -> None:
    """Logs in the configured format; metrics of this process and its children to the data dir's
    `metrics/` (ingest/metrics.py), emptied first by the process that starts the others."""
    logs.configure(pipeline.settings.monitoring.log_format)
    metrics.use_dir(pipeline.settings.storage.data_dir / "metrics", fresh=fresh)


def _serve_metrics(pipeline: Pipeline) -> str:
    """/metrics without a key on SOHOA_METRICS_HOST:SOHOA_METRICS_PORT, in a thread."""
    from prometheus_client import start_http_server

    from api.status_routes import metrics_registry
    from scanners.devices import Scanners

    monitoring, settings = pipeline.settings.monitoring, pipeline.settings
    scanners = Scanners.from_config(settings.scanners, settings.storage.data_dir)
    start_http_server(monitoring.metrics_port, monitoring.metrics_host,
                      metrics_registry(pipeline, scanners))
    return f"http://{monitoring.metrics_host}:{monitoring.metrics_port}/metrics"


def _clean_leftovers(pipeline: Pipeline) -> None:
    """What crashed processes left half written (older than an hour) goes, one log line each."""
    import logging

    from storage.cleanup import log, remove_leftovers

    if not log.handlers:
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter("[%(asctime)s: %(levelname)s/%(name)s] %(message)s"))
        log.addHandler(handler)
        log.setLevel(logging.INFO)
        log.propagate = False
    remove_leftovers(pipeline.store, pipeline.settings.storage.data_dir)


@main.command()
@click.option("--concurrency", type=int, help="Worker processes (default: SOHOA_WORKERS).")
@click.option("--hostname", "-n", help="Node name (default: sohoa-<pid>@<host>; Celery's %h, %n "
                                       "and %d work). Each worker needs its own.")
@click.option("--broker-retries", type=click.IntRange(min=0),
              help="Attempts to reach the broker before giving up with exit status 1 (default: "
                   "Celery's 100, about 45 minutes).")
@click.option("--metrics-port", type=click.IntRange(1, 65535),
              help="Also serve this worker's metrics (Prometheus) on this port, for a worker on "
                   "a machine without `sohoa serve`.")
@click.option("--metrics-host", default="127.0.0.1", show_default=True)
def worker(concurrency: int | None, hostname: str | None, broker_retries: int | None,
           metrics_port: int | None, metrics_host: str) -> None:
    """Run pipeline tasks from the broker (SOHOA_BROKER_URL) on this machine.

    SIGTERM or SIGINT: pages in hand finish (25 s at most, then they go back to the queue); a
    second signal stops at once. Exit status 1 if the worker could not start or stop cleanly."""
    from ingest.worker import main as run_worker

    pipeline = _pipeline()
    _monitor(pipeline, fresh=False)
    if metrics_port:
        from prometheus_client import CollectorRegistry, start_http_server
        from prometheus_client.multiprocess import MultiProcessCollector

        registry = CollectorRegistry()
        MultiProcessCollector(registry)
        start_http_server(metrics_port, metrics_host, registry)
        click.echo(f"metrics: http://{metrics_host}:{metrics_port}/metrics", err=True)
    _clean_leftovers(pipeline)
    run_worker(concurrency or pipeline.settings.workers, hostname, broker_retries)


@main.command()
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", default=8000, show_default=True, type=int)
@click.option("--no-worker", is_flag=True, help="Serve only; workers run elsewhere.")
@click.option("--processes", default=1, show_default=True, type=int,
              help="API server processes (one per core serves most).")
def serve(host: str, port: int, no_worker: bool, processes: int) -> None:
    """Serve the API, with a worker on this machine (embedded broker unless SOHOA_BROKER_URL).

    SIGTERM or SIGINT stops the API, the worker (pages in hand finish or go back to the queue) and
    the receivers within 30 s; a second signal forces the stop. Exit status 0 on a clean stop."""
    from multiprocessing import resource_tracker

    import uvicorn

    from ingest.tasks import submit
    from ingest.worker import become_subreaper, die_with_parent, end_children
    from scanners.receivers import start_receivers
    from scanners.receiving import Drainer
    from scanners.spool import Spool

    pipeline = _pipeline()  # fail early and clearly on bad configuration or storage
    settings = pipeline.settings
    _monitor(pipeline, fresh=True)  # before the worker starts: it writes where serve reads
    _clean_leftovers(pipeline)
    become_subreaper()  # what outlives the worker (its pool's Tesseract children) comes back here
    json_logs = settings.monitoring.log_format == "json"
    config = uvicorn.Config("api.app:app_from_env", factory=True, host=host, port=port,
                            workers=processes, log_level="info",
                            # JSON: uvicorn's lines go through the root logger's format
                            **({"log_config": None} if json_logs else {}),
                            timeout_graceful_shutdown=_API_STOP_SECONDS)
    stop = _ServeStop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, stop.on_signal)
    # In a process group of its own: Ctrl-C on a terminal reaches serve alone, which stops the
    # worker itself (one warm stop, then cold on a second signal).
    if not no_worker:
        stop.worker = subprocess.Popen([sys.argv[0], "worker"], stdin=subprocess.DEVNULL,
                                       process_group=0, preexec_fn=die_with_parent)
        if stop.started:  # a signal came before it was there
            stop.worker.send_signal(signal.SIGTERM)
    receivers: list[Any] = []
    drainer = None
    try:
        # What scanners push (folder, FTP, e-mail), and scans an earlier run left in the spool; the
        # drainer retries items whose storing failed (storage down) once a minute.
        spool = Spool(settings.scanners.spool_dir)
        receivers = start_receivers(spool, submit, settings.scanners)  # its sections (RECEIVERS)
        drainer = Drainer(spool, submit).start()
        for receiver in receivers:
            where = f" on port {receiver.port}" if hasattr(receiver, "port") else ""
            click.echo(f"receiving scans: {type(receiver).__name__}{where}", err=True)
        if settings.monitoring.metrics_port:
            where = _serve_metrics(pipeline)
            click.echo(f"metrics: {where} (no key: keep it local or behind a firewall)", err=True)
        click.echo(f"web app and API: http://{host}:{port}/ ({processes} process"
                   f"{'es' if processes > 1 else ''})"
                   + ("; no worker here (--no-worker)" if no_worker else ""), err=True)
        stop.run_api(config)
    finally:
        stop.begin()  # the API ended on its own (it could not start, say): stop the rest
        stopping = [*receivers, *([drainer] if drainer else [])]
        closer = threading.Thread(target=lambda: [r.stop() for r in stopping], daemon=True)
        closer.start()
        stop.end_worker()
        closer.join(max(0.0, stop.deadline - time.monotonic()) if not stop.forced else 0)
        # multiprocessing's resource tracker (--processes N) ends once told, and is waited for
        getattr(resource_tracker._resource_tracker, "_stop", lambda: None)()
        left = end_children()
        if left:
            click.echo(f"ended {len(left)} processes left behind: {left}", err=True)
    status = stop.status(closer.is_alive() or bool(left))
    click.echo(f"stopped in {time.monotonic() - stop.started:.1f} s"
               + ("" if status == 0 else " (not cleanly: forced, cut short or failed)"), err=True)
    if closer.is_alive():  # a receiver still storing, forced: its item stays in the spool
        sys.stderr.flush()
        os._exit(status or 1)
    sys.exit(status)


_STOP_SECONDS = 30.0  # a stop of serve, from the first signal: API, worker, receivers, children
_API_STOP_SECONDS = 20  # requests in flight (an upload arriving) may finish meanwhile
_COLD_SECONDS = 10.0  # for a forced worker to hand its pages back (Celery takes ~5 s) before it is killed


class _ServeStop:
    """The stop of `sohoa serve`: the first SIGTERM/SIGINT asks the API and the worker to stop
    (warm), a second one forces both (cold stop of the worker: its pages go back to the queue)."""

    def __init__(self) -> None:
        self.signals = 0
        self.forced = False
        self.started = self.deadline = 0.0
        self.worker: Any = None  # subprocess.Popen of `sohoa worker`
        self.api: Any = None  # uvicorn.Server, or its Multiprocess supervisor
        self.api_failed = False

    def on_signal(self, sig: int, frame: Any) -> None:
        self.signals += 1
        if self.signals == 1:
            click.echo(f"{signal.Signals(sig).name}: stopping within {_STOP_SECONDS:.0f} s "
                       "(again to force)", err=True)
            self.begin()
        elif not self.forced:
            click.echo(f"{signal.Signals(sig).name} again: forcing the stop", err=True)
            self.force()

    def begin(self) -> None:
        if self.started:
            return
        self.started = time.monotonic()
        self.deadline = self.started + _STOP_SECONDS - 2  # leaves time to kill what is left
        if self.worker is not None and self.worker.poll() is None:
            self.worker.send_signal(signal.SIGTERM)  # warm stop, cold by itself after 25 s
        self._stop_api(force=False)

    def force(self) -> None:
        self.begin()
        self.forced = True
        self.deadline = min(self.deadline, time.monotonic() + _COLD_SECONDS)
        if self.worker is not None and self.worker.poll() is None:
            self.worker.send_signal(signal.SIGQUIT)  # cold stop: pages in hand go back to the queue
        self._stop_api(force=True)

    def _stop_api(self, force: bool) -> None:
        from uvicorn.supervisors import Multiprocess

        if isinstance(self.api, Multiprocess):
            self.api.should_exit.set()
            if force:
                for process in self.api.processes:
                    with contextlib.suppress(ProcessLookupError, TypeError):
                        os.kill(process.pid, signal.SIGKILL)
        elif self.api is not None:
            self.api.should_exit = True
            self.api.force_exit = self.api.force_exit or force

    def run_api(self, config: Any) -> None:
        import uvicorn
        from uvicorn.supervisors import Multiprocess

        class Server(uvicorn.Server):
            def capture_signals(self) -> contextlib.AbstractContextManager[None]:
                # uvicorn would take SIGTERM/SIGINT, then raise it again with the handler from
                # before it ran: SIGTERM's default ended serve before it stopped the worker.
                return contextlib.nullcontext()

        if config.workers > 1:
            self.api = Multiprocess(config, sockets=[config.bind_socket()])
            for sig in (signal.SIGINT, signal.SIGTERM):  # it takes them in its constructor
                signal.signal(sig, self.on_signal)
            if self.started:
                self.api.should_exit.set()
            self.api.run()
        else:
            self.api = Server(config)
            if self.started:
                self.api.should_exit = True
            self.api.run()
            self.api_failed = not self.api.started

    def end_worker(self) -> None:
        if self.worker is None:
            return
        while self.worker.poll() is None and time.monotonic() < self.deadline:
            time.sleep(0.1)  # polled: a second signal shortens the deadline
        if self.worker.poll() is not None:
            return
        if not self.forced:  # past the warm stop and the cold one: force it
            self.force()
        click.echo(f"worker {self.worker.pid} did not stop: killed", err=True)
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.worker.pid, signal.SIGKILL)  # acks are late: its pages are redelivered
        self.worker.wait()

    def status(self, cut_short: bool) -> int:
        # (ended by the SIGTERM it was sent before it had set up its own stop: nothing was running)
        worker_failed = self.worker is not None and self.worker.returncode not in (0, -signal.SIGTERM)
        return 1 if self.forced or cut_short or worker_failed or self.api_failed else 0


@main.group()
def batch() -> None:
    """Batches: their state, and resuming one now."""


@batch.command("show")
@click.argument("batch_id")
@click.option("--json", "as_json", is_flag=True)
def batch_show(batch_id: str, as_json: bool) -> None:
    """The state of batch BATCH_ID (and what it waits for, if it waits)."""
    pipeline = _pipeline()
    record = _batch_record(pipeline, batch_id)
    if as_json:
        click.echo(json.dumps({**public_view(record), "waiting_for": record.waiting_for},
                              ensure_ascii=False, indent=1))
        return
    _print_summary(record)
    if waiting := record.waiting_for:
        click.echo(f"  waiting for the {waiting['dependency']} since {waiting['since']}"
                   + (f"; next try at {waiting['next_try']}" if waiting.get("next_try") else ""))


@batch.command("retry")
@click.argument("batch_id")
def batch_retry(batch_id: str) -> None:
    """Resume BATCH_ID now: one waiting for a dependency, one that failed, or one whose work
    was lost; the workers of `sohoa serve` / `sohoa worker` take it (nothing runs here)."""
    from kombu.exceptions import OperationalError

    from ingest.tasks import retry

    pipeline = _pipeline()
    record = _batch_record(pipeline, batch_id)
    if record.status in ("done", "needs_review"):
        raise click.ClickException(f"batch {batch_id} is already {record.status}")
    try:
        record = retry(record.batch_id)
    except TRANSIENT as e:
        raise click.ClickException(f"batch {batch_id} not resumed: {describe(e)}") from e
    except OperationalError as e:
        raise click.ClickException(f"batch {batch_id} not resumed: task broker unavailable: "
                                   f"{_reason(e)}") from e
    click.echo(f"batch {record.batch_id}: {record.status}, queued for the workers")


def _batch_record(pipeline: Pipeline, batch_id: str) -> BatchRecord:
    from storage.objects import ObjectMissing

    try:
        return pipeline.record(batch_id.strip())
    except (ObjectMissing, ValueError, OSError):
        raise click.ClickException(f"no batch {batch_id}") from None


@main.group()
def apikey() -> None:
    """API keys for processing systems, scanners, auditors and admins."""


@apikey.command("create")
@click.option("--role", required=True, type=click.Choice(["scanner", "processor", "auditor",
                                                          "admin"]))
@click.option("--agency", "agencies", multiple=True, required=True,
              help="Agency code the key may see (repeat for several; * for all).")
@click.option("--name", default="", help="Who holds the key.")
def apikey_create(role: str, agencies: tuple[str, ...], name: str) -> None:
    """Create a key and print it once (only its SHA-256 digest is stored)."""
    from api.keys import KeyStore

    settings = _pipeline().settings
    click.echo(KeyStore(settings.storage.catalog_url).create(role, list(agencies), name))


@main.command()
@click.argument("code", required=False)
@click.option("--json", "as_json", is_flag=True)
def verify(code: str | None, as_json: bool) -> None:
    """Prove the archive (or one dossier CODE) unchanged and complete: every stored object
    against its manifest, every manifest against the checksum the audit log recorded when its
    version was made, every version the catalog or the audit log knows present in storage;
    for the whole archive, also the audit log's own chain.

    Exit status 1 if anything changed or is missing."""
    from storage.integrity import problems
    from storage.integrity import verify as run_verify

    pipeline = _pipeline()
    code = code.strip().upper() if code else None
    findings = run_verify(pipeline.store, code, pipeline.catalog, pipeline.audit,
                          pipeline.settings.signing.trust_root_files)
    if code and not findings:
        raise click.ClickException(f"no dossier {code}")
    bad = problems(findings)
    breaks = pipeline.audit.verify() if pipeline.audit is not None and not code else []
    if as_json:
        click.echo(json.dumps({"checked": len(findings), "problems": [f.to_dict() for f in bad],
                               "findings": [f.to_dict() for f in findings],
                               "audit_breaks": [{"seq": b.seq, "problem": b.problem}
                                                for b in breaks]}, indent=1))
    else:
        for f in bad:
            if f.key.endswith("#signature"):  # a signature's finding: what was wrong with it
                click.echo(f"{f.problem.upper():8} {f.dossier_id} v{f.version} {f.key}"
                           f"  {f.actual or '-'}")
                continue
            click.echo(f"{f.problem.upper():8} {f.dossier_id} v{f.version} {f.key}"
                       f"  expected {f.expected[:16]}… got {(f.actual or '-')[:16]}")
        for b in breaks:
            click.echo(f"AUDIT    entry {b.seq}: {b.problem}")
        dossiers = {f.dossier_id for f in findings}
        click.echo(f"{len(findings)} objects and manifests of {len(dossiers)} dossiers checked: "
                   + ("all unchanged and present" if not bad and not breaks
                      else f"{len(bad) + len(breaks)} problems"))
    if bad or breaks:
        sys.exit(1)


@main.group()
def audit() -> None:
    """The hash-chained audit log."""


@audit.command("verify")
def audit_verify() -> None:
    """Check the chain and its anchor; exit 1 if an entry was changed or removed."""
    pipeline = _pipeline()
    assert pipeline.audit is not None
    breaks = pipeline.audit.verify()
    for b in breaks:
        click.echo(f"entry {b.seq}: {b.problem}")
    if breaks:
        sys.exit(1)
    count = len(pipeline.audit.entries(limit=10**9))
    click.echo(f"audit log intact: {count} entries")


@main.command()
def reindex() -> None:
    """Rebuild the catalog from object storage alone (and an empty audit table from its copies)."""
    pipeline = _pipeline()
    assert pipeline.catalog is not None and pipeline.audit is not None
    batches, versions = pipeline.catalog.rebuild(pipeline.store)
    click.echo(f"indexed {batches} batches and {versions} dossier versions")
    if not pipeline.audit.entries(limit=1):
        restored = pipeline.audit.restore()
        if restored:
            click.echo(f"restored {restored} audit log entries from object storage")
    # what object storage does not hold is not rebuilt: say so, with what the database has now
    from api.keys import KeyStore
    from api.web.users import UserStore

    url = pipeline.settings.storage.catalog_url
    keys, users = len(KeyStore(url).export_records()), len(UserStore(url).users())
    click.echo(f"API keys and web users are not in object storage and were not rebuilt: "
               f"{_plural(keys, 'key')} and {_plural(users, 'user')} in the catalog now; restore "
               "them with `sohoa restore FILE` (a file written by `sohoa backup FILE`)")


def _plural(count: int, noun: str) -> str:
    return f"{count} {noun}" + ("" if count == 1 else "s")


BACKUP_FORMAT, BACKUP_VERSION = "sohoa-backup", 1
_BACKUP_FIELDS = ("format", "version", "created_at", "sohoa_version", "api_keys", "users")


def _sohoa_version() -> str | None:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("sohoa")
    except PackageNotFoundError:
        return None


def _write_private(path: Path, data: bytes) -> None:
    """Replaces `path` with `data` at once, readable by its owner only: a temporary file beside it
    (mode 0600, written and fsynced), renamed over it, and the directory fsynced."""
    path = path.absolute()
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}-{os.urandom(4).hex()}")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(fd, "wb") as handle:
            os.fchmod(handle.fileno(), 0o600)  # whatever the umask
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    directory = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(directory)
    finally:
        os.close(directory)


@main.command()
@click.argument("file", type=click.Path(dir_okay=False, allow_dash=True, path_type=Path))
def backup(file: Path) -> None:
    """Write every API key and web user to FILE (- for stdout): one JSON document, mode 0600.

    Keys are kept as their SHA-256 digests and passwords as scrypt hashes, so the file holds no
    secret, yet it lets whoever has it restore these logins: keep it as safely as the database.
    Object storage holds neither, so `sohoa reindex` cannot bring them back: `sohoa restore` does."""
    from api.keys import ALL_AGENCIES, KeyStore
    from api.web.users import UserStore

    pipeline = _pipeline()
    assert pipeline.audit is not None
    url = pipeline.settings.storage.catalog_url
    keys, users = KeyStore(url).export_records(), UserStore(url).export_records()
    document = {"format": BACKUP_FORMAT, "version": BACKUP_VERSION,
                "created_at": datetime.now(UTC).isoformat(), "sohoa_version": _sohoa_version(),
                "api_keys": keys, "users": users}
    data = (json.dumps(document, ensure_ascii=False, indent=1) + "\n").encode()
    to_stdout = str(file) == "-"
    if to_stdout:
        sys.stdout.buffer.write(data)
        sys.stdout.buffer.flush()
    else:
        try:
            _write_private(file, data)
        except OSError as e:
            raise click.ClickException(f"{file}: cannot write: {e.strerror or e}") from e
    pipeline.audit.append(f"cli:{getpass.getuser()}", "backup.create",
                          "(stdout)" if to_stdout else str(file.absolute()), ALL_AGENCIES,
                          "localhost", {"api_keys": len(keys), "users": len(users)})
    click.echo(f"backed up {_plural(len(keys), 'API key')} and {_plural(len(users), 'web user')}"
               f" to {'stdout' if to_stdout else file}", err=to_stdout)


def _read_backup(file: Path) -> dict[str, Any]:
    """The document of a backup file, its frame checked (the records are checked on restore)."""
    from api.keys import check_fields, parse_time

    where = "stdin" if str(file) == "-" else str(file)
    try:
        raw = sys.stdin.buffer.read() if str(file) == "-" else file.read_bytes()
    except OSError as e:
        raise click.ClickException(f"{where}: cannot read: {e.strerror or e}; nothing restored") \
            from e
    try:
        document = json.loads(raw)
    except ValueError as e:  # JSONDecodeError and UnicodeDecodeError alike
        raise click.ClickException(f"{where}: not a sohoa backup (not JSON: {_reason(e)}); "
                                   "nothing restored") from e
    if not isinstance(document, dict) or document.get("format") != BACKUP_FORMAT:
        raise click.ClickException(f'{where}: not a sohoa backup (no "format": '
                                   f'"{BACKUP_FORMAT}"); nothing restored')
    if document.get("version") != BACKUP_VERSION:
        raise click.ClickException(f"{where}: backup format version {document.get('version')!r}; "
                                   f"this sohoa reads version {BACKUP_VERSION}; nothing restored")
    try:
        check_fields(document, _BACKUP_FIELDS, "document")
        parse_time(document["created_at"], "created_at")
    except ValueError as e:
        raise click.ClickException(f"{where}: malformed backup: {e}; nothing restored") from e
    return document


@main.command()
@click.argument("file", type=click.Path(dir_okay=False, allow_dash=True, path_type=Path))
@click.option("--dry-run", is_flag=True, help="Say what would be done; write nothing.")
@click.option("--replace", is_flag=True,
              help="Overwrite keys and users that differ from the file's (by default they are "
                   "kept and reported as skipped).")
def restore(file: Path, dry_run: bool, replace: bool) -> None:
    """Add the API keys and web users of FILE (written by `sohoa backup`; - for stdin).

    Keys are matched by id and users by username, all in one transaction: a malformed file
    changes nothing (exit status 1). Records equal to the database's are unchanged; differing
    ones are skipped unless --replace; keys and users only in the database stay."""
    from sqlalchemy.orm import Session

    from api.keys import ALL_AGENCIES, KeyStore
    from api.web.users import UserStore

    document = _read_backup(file)
    where = "stdin" if str(file) == "-" else str(file)
    pipeline = _pipeline()
    assert pipeline.audit is not None
    url = pipeline.settings.storage.catalog_url
    keys, users = KeyStore(url), UserStore(url)
    before_keys = {k["id"] for k in keys.export_records()}
    before_users = {u["username"] for u in users.export_records()}
    with Session(keys.engine) as session:
        try:
            restored_keys = keys.import_records(document["api_keys"], replace, session)
            restored_users = users.import_records(document["users"], replace, session)
        except ValueError as e:
            session.rollback()
            raise click.ClickException(f"{where}: malformed backup: {e}; nothing restored") from e
        if dry_run:
            session.rollback()
        else:
            session.commit()
    add, replaced = ("would add", "would replace") if dry_run else ("added", "replaced")
    for kind, done in (("key", restored_keys), ("user", restored_users)):
        for name in done.added:
            click.echo(f"{add} {kind} {name}")
        for name in done.replaced:
            click.echo(f"{replaced} {kind} {name} ({', '.join(done.differences[name])} differed)")
        for name in done.skipped:
            click.echo(f"skipped {kind} {name}: differs from the database in "
                       f"{', '.join(done.differences[name])} (kept as it is; --replace takes "
                       "the file's)")
    kept_keys = before_keys - {k["id"] for k in keys.check_records(document["api_keys"])}
    kept_users = before_users - {u["username"]
                                 for u in users.check_records(document["users"])}
    if kept_keys or kept_users:
        click.echo(f"{_plural(len(kept_keys), 'key')} and {_plural(len(kept_users), 'user')} "
                   "of the database are not in the file: left as they are")
    if not dry_run:
        pipeline.audit.append(f"cli:{getpass.getuser()}", "backup.restore", where, ALL_AGENCIES,
                              "localhost", {"replace": replace,
                                            "api_keys": restored_keys.counts(),
                                            "users": restored_users.counts(),
                                            "keys_added": restored_keys.added,
                                            "keys_replaced": restored_keys.replaced,
                                            "users_added": restored_users.added,
                                            "users_replaced": restored_users.replaced})

    def counts(done: Any) -> str:
        return ", ".join(f"{n} {outcome}" for outcome, n in done.counts().items())

    click.echo(("dry run, nothing written: " if dry_run else f"restored from {where}: ")
               + f"API keys {counts(restored_keys)}; web users {counts(restored_users)}")


@main.group()
def signer() -> None:
    """The agencies' signing keys: a PKCS#12 file, or a key on a PKCS#11 USB token."""


def _signers(pipeline: Pipeline) -> Any:
    from storage.signers import Signers

    return Signers(pipeline.settings.storage.catalog_url, pipeline.settings.signing.secrets_dir)


def _secret_input(from_stdin: bool, prompt: str) -> Any:
    from pydantic import SecretStr

    if from_stdin:
        return SecretStr(sys.stdin.readline().rstrip("\r\n"))
    return SecretStr(click.prompt(prompt, hide_input=True, default="", show_default=False))


_AGENCY = r"[^\s*/\\]{1,100}"


@signer.command("add")
@click.option("--agency", required=True, help="Agency code, as in its dossier codes (000.00.04.H40).")
@click.option("--pkcs12", "pkcs12_file", type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="A PKCS#12 file (.p12, .pfx) with the key and its certificate; it is copied.")
@click.option("--password-stdin", is_flag=True, help="Read the PKCS#12 password from stdin.")
@click.option("--pkcs11-module", metavar="LIB", help="The token's PKCS#11 library (.so).")
@click.option("--token-label", metavar="T", help="The token's label.")
@click.option("--key-label", metavar="K", help="The label of the key (and its certificate).")
@click.option("--pin-stdin", is_flag=True, help="Read the token's user PIN from stdin.")
@click.option("--name", default=None, help="Agency name printed in the note (default: from the "
              "certificate's subject).")
def signer_add(agency: str, pkcs12_file: Path | None, password_stdin: bool,
               pkcs11_module: str | None, token_label: str | None, key_label: str | None,
               pin_stdin: bool, name: str | None) -> None:
    """Register the key that signs AGENCY's electronic copies (replacing any before). The key is
    opened once now: a wrong password or PIN is refused here, not at the first dossier."""
    import re

    from ingest import signing
    from storage.signers import SignerConfigError

    agency = agency.strip()
    if not re.fullmatch(_AGENCY, agency):
        raise click.BadParameter("an agency code (no spaces, no *)", param_hint="--agency")
    if bool(pkcs12_file) == bool(pkcs11_module):
        raise click.UsageError("give either --pkcs12 FILE or --pkcs11-module LIB")
    if pkcs11_module and not (token_label and key_label):
        raise click.UsageError("a PKCS#11 signer needs --token-label and --key-label")
    pipeline = _pipeline()
    signers = _signers(pipeline)
    try:
        signers.check_owner()
    except SignerConfigError as e:
        raise click.ClickException(str(e)) from e
    try:
        if pkcs12_file:
            secret = _secret_input(password_stdin, "PKCS#12 password")
            data = pkcs12_file.read_bytes()
            cert = signing.load_pkcs12(data, secret).signing_cert
        else:
            secret = _secret_input(pin_stdin, "Token PIN")
            with signing.pkcs11_signer(pkcs11_module or "", token_label or "", key_label or "",
                                       secret) as found:
                cert = found.signing_cert
    except signing.SigningError as e:
        raise click.ClickException(str(e)) from e
    info = signing.describe_certificate(cert)
    if info.not_after < datetime.now(UTC):
        raise click.ClickException(f"the certificate expired on {info.not_after:%Y-%m-%d}")
    actor = f"cli:{getpass.getuser()}"
    try:
        entry = signers.add(agency, "pkcs12" if pkcs12_file else "pkcs11",
                            (name or "").strip() or info.name, info.fingerprint, info.subject,
                            actor, secret, pkcs12=data if pkcs12_file else None,
                            module=pkcs11_module, token_label=token_label, key_label=key_label,
                            not_after=info.not_after)
    except SignerConfigError as e:
        raise click.ClickException(str(e)) from e
    if pipeline.audit is not None:
        pipeline.audit.append(actor, "signer.add", agency, agency, "localhost",
                              {"kind": entry.kind, "fingerprint": entry.fingerprint,
                               "name": entry.name})
    click.echo(f"agency {agency} signs as \"{entry.name}\" ({entry.kind}, certificate "
               f"{entry.fingerprint[:16]}…, valid until {info.not_after:%Y-%m-%d})")


@signer.command("list")
@click.option("--agency", "agencies", multiple=True, help="Only these agencies.")
@click.option("--json", "as_json", is_flag=True)
def signer_list(agencies: tuple[str, ...], as_json: bool) -> None:
    """The registered signers: where each key is and whose certificate (never a secret)."""
    found = _signers(_pipeline()).all(list(agencies) or None)
    if as_json:
        click.echo(json.dumps([e.to_dict() for e in found], ensure_ascii=False, indent=1))
        return
    for e in found:
        where = (f"token {e.token_label} key {e.key_label} ({e.module})" if e.kind == "pkcs11"
                 else e.pkcs12_path)
        until = f"{e.not_after:%Y-%m-%d}" if e.not_after else "?"
        click.echo(f"{e.agency:20} {e.kind:7} {e.fingerprint[:16]}…  until {until}  {e.name}  "
                   f"[{where}]")
    if not found:
        click.echo("no signers: every dossier is stored unsigned")


@signer.command("remove")
@click.option("--agency", required=True)
def signer_remove(agency: str) -> None:
    """Forget AGENCY's signer and delete its copy and secret; its new dossiers are unsigned."""
    from storage.signers import SignerConfigError

    pipeline = _pipeline()
    try:
        gone = _signers(pipeline).remove(agency.strip())
    except SignerConfigError as e:
        raise click.ClickException(str(e)) from e
    if gone is None:
        raise click.ClickException(f"agency {agency.strip()} has no signer")
    if pipeline.audit is not None:
        pipeline.audit.append(f"cli:{getpass.getuser()}", "signer.remove", gone.agency,
                              gone.agency, "localhost", {"fingerprint": gone.fingerprint})
    click.echo(f"removed the signer of agency {gone.agency}")


@main.group()
def user() -> None:
    """Users of the web app (same roles and agencies as API keys)."""


def _users() -> Any:
    from api.web.users import UserStore

    return UserStore(_pipeline().settings.storage.catalog_url)


def _new_password(from_stdin: bool) -> str:
    if from_stdin:
        return sys.stdin.readline().rstrip("\r\n")
    return click.prompt("Password", hide_input=True, confirmation_prompt=True)


@user.command("create")
@click.option("--username", required=True, help="Login name (case-insensitive).")
@click.option("--role", required=True, type=click.Choice(["scanner", "processor", "auditor", "admin"]))
@click.option("--agency", "agencies", multiple=True, required=True,
              help="Agency code the user may see (repeat for several; * for all).")
@click.option("--name", default="", help="Display name, e.g. \"Nguyễn Văn An\".")
@click.option("--password-stdin", is_flag=True, help="Read the password from stdin (one line).")
def user_create(username: str, role: str, agencies: tuple[str, ...], name: str,
                password_stdin: bool) -> None:
    """Create a web user; the password is prompted for twice (or read from stdin)."""
    from api.web.users import UserError

    store = _users()
    try:
        created = store.create(username, _new_password(password_stdin), role, list(agencies), name)
    except UserError as e:
        raise click.ClickException(str(e)) from e
    click.echo(f"created user {created.username} ({created.role}; {', '.join(created.agencies)})")


@user.command("list")
@click.option("--json", "as_json", is_flag=True)
def user_list(as_json: bool) -> None:
    """Web users with their role, agencies and state."""
    found = _users().users()
    if as_json:
        click.echo(json.dumps([{"username": u.username, "name": u.display_name, "role": u.role,
                                "agencies": list(u.agencies), "active": u.active,
                                "created_at": u.created_at.isoformat()} for u in found],
                              ensure_ascii=False, indent=1))
        return
    for u in found:
        state = "active" if u.active else "disabled"
        click.echo(f"{u.username:24} {u.role:10} {state:9} {','.join(u.agencies):30} {u.display_name}")


@user.command("disable")
@click.argument("username")
def user_disable(username: str) -> None:
    """Disable a user (their sessions end at once)."""
    from api.web.users import UserError

    try:
        _users().set_active(username, False)
    except UserError as e:
        raise click.ClickException(str(e)) from e
    click.echo(f"disabled {username.strip().lower()}")


@user.command("password")
@click.argument("username")
@click.option("--password-stdin", is_flag=True, help="Read the password from stdin (one line).")
def user_password(username: str, password_stdin: bool) -> None:
    """Set a new password (their sessions end at once)."""
    from api.web.users import UserError

    try:
        _users().set_password(username, _new_password(password_stdin))
    except UserError as e:
        raise click.ClickException(str(e)) from e
    click.echo(f"new password set for {username.strip().lower()}")



@main.group()
def report() -> None:
    """Reports on what was digitized."""


def _day(value: str, name: str) -> date:
    try:
        return date.fromisoformat(value)
    except ValueError:
        raise click.BadParameter(f"{value!r} is not a date (YYYY-MM-DD)",
                                 param_hint=name) from None


@report.command("digitization")
@click.option("--from", "start", required=True, metavar="YYYY-MM-DD",
              help="First day of receipt (Vietnam time).")
@click.option("--to", "end", required=True, metavar="YYYY-MM-DD",
              help="Last day of receipt, included.")
@click.option("--agency", "agencies", multiple=True, metavar="A", help="Only this agency.")
@click.option("--json", "as_json", is_flag=True, help="One JSON document.")
@click.option("--csv", "as_csv", is_flag=True, help="CSV, the columns of README.")
def report_digitization(start: str, end: str, agencies: tuple[str, ...], as_json: bool,
                        as_csv: bool) -> None:
    """Dossiers received, digitized, digitized in full by component, with a digitized result,
    signed, and their shares, per agency and month of receipt (README: the definitions)."""
    from storage import reports

    first, last = _day(start, "--from"), _day(end, "--to")
    if last < first:
        raise click.BadParameter("--to is before --from", param_hint="--to")
    if as_json and as_csv:
        raise click.BadParameter("give --json or --csv, not both", param_hint="--csv")
    pipeline = _pipeline()
    assert pipeline.catalog is not None and pipeline.audit is not None
    scope = tuple(a.strip().upper() for a in agencies) or None
    found = reports.digitization(pipeline.catalog, first, last, scope)
    pipeline.audit.append("cli", "report.digitization", "digitization",
                          (",".join(scope) if scope else "*")[:40],
                          detail={"from": first.isoformat(), "to": last.isoformat(),
                                  "via": "cli", "format": "json" if as_json else
                                  "csv" if as_csv else "text"})
    if as_json:
        click.echo(json.dumps(found.to_dict(), ensure_ascii=False, indent=1))
        return
    if as_csv:
        click.echo(found.to_csv(), nl=False)
        return
    click.echo(f"digitization report, received {first} to {last} (Vietnam time)")
    header = f"{'agency':<16} {'month':<8} " + " ".join(f"{f:>16}" for f in reports.FIGURES)
    click.echo(header)
    for row in [*found.rows, *found.totals, found.total]:
        shares = row.shares()
        cells = [f"{row.counts['received']:>16}"] + [
            f"{row.counts[f]:>8} {'' if shares[f] is None else f'{shares[f]:.1f}%':>7}"
            for f in reports.SHARES]
        click.echo(f"{row.agency or 'all':<16} {row.month or 'total':<8} " + " ".join(cells))


if __name__ == "__main__":
    main()


@main.command()
@click.argument("kind", type=click.Choice(["result", "separator"]))
@click.option("-o", "--output", required=True, type=click.Path(dir_okay=False, path_type=Path))
def sheet(kind: str, output: Path) -> None:
    """Write a printable sheet (PDF, A4) to put into a stack: `result` (KẾT QUẢ: the pages after
    it are results of the dossiers whose codes they carry) or `separator` (a new dossier starts).
    Its barcode is the first value of SOHOA_RESULT_SEPARATOR_BARCODES / SOHOA_SEPARATOR_BARCODES."""
    from ocr import sheets

    try:
        barcodes = Settings().barcodes
    except ValidationError as e:
        raise click.ClickException(f"invalid configuration:\n{e}") from e
    values = barcodes.result_separators if kind == "result" else barcodes.separators
    if not values:
        raise click.ClickException(f"no {kind} barcode is configured")
    made = sheets.result_sheet(values[0]) if kind == "result" else sheets.separator_sheet(values[0])
    output.write_bytes(sheets.sheet_pdf(made))
    click.echo(f"{output}: {kind} sheet, barcode {values[0]} (Code 39); print it at 100 %")
